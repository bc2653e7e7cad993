/* SPDX-License-Identifier: Apache-2.0 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hmap.h"
#include "lib/siphash.h"

/* Keys are names strangers choose (SNI, tokens): keyed, so that nobody can
 * pick names that share a bucket (issue 19: FNV-1a let 5,000 names do so). */
static uint64_t hmap_hash(const char *s)
{
	return siphash_str(s);
}

int hmap_init(struct hmap *m)
{
	m->nbuckets = 64;
	m->count = 0;
	m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
	if (!m->buckets) {
		m->nbuckets = 0;
		return -1;
	}
	return 0;
}

void hmap_clear(struct hmap *m, void (*free_val)(void *val))
{
	size_t i;

	if (!m->buckets)
		return;
	for (i = 0; i < m->nbuckets; i++) {
		struct hmap_entry *e = m->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			if (free_val)
				free_val(e->val);
			free(e);
		}
	}
	free(m->buckets);
	m->buckets = NULL;
	m->nbuckets = m->count = 0;
}

void *hmap_get(const struct hmap *m, const char *key)
{
	struct hmap_entry *e;

	if (!m->nbuckets)
		return NULL;
	for (e = m->buckets[hmap_hash(key) & (m->nbuckets - 1)]; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->val;
	return NULL;
}

static int hmap_grow(struct hmap *m)
{
	size_t n = m->nbuckets * 2, i;
	struct hmap_entry **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return -1;
	for (i = 0; i < m->nbuckets; i++) {
		struct hmap_entry *e = m->buckets[i], *next;

		for (; e; e = next) {
			size_t b = hmap_hash(e->key) & (n - 1);

			next = e->next;
			e->next = nb[b];
			nb[b] = e;
		}
	}
	free(m->buckets);
	m->buckets = nb;
	m->nbuckets = n;
	return 0;
}

int hmap_put(struct hmap *m, const char *key, void *val, void **old)
{
	struct hmap_entry *e;
	size_t b, klen;

	if (old)
		*old = NULL;
	if (!m->nbuckets && hmap_init(m) == -1)
		return -1;
	b = hmap_hash(key) & (m->nbuckets - 1);
	for (e = m->buckets[b]; e; e = e->next) {
		if (strcmp(e->key, key) == 0) {
			if (old)
				*old = e->val;
			e->val = val;
			return 0;
		}
	}
	if (m->count >= m->nbuckets && hmap_grow(m) == 0)
		b = hmap_hash(key) & (m->nbuckets - 1);
	klen = strlen(key);
	e = malloc(sizeof(*e) + klen + 1);
	if (!e)
		return -1;
	memcpy(e->key, key, klen + 1);
	e->val = val;
	e->next = m->buckets[b];
	m->buckets[b] = e;
	m->count++;
	return 0;
}

void *hmap_del(struct hmap *m, const char *key)
{
	struct hmap_entry **pp, *e;
	void *val;

	if (!m->nbuckets)
		return NULL;
	for (pp = &m->buckets[hmap_hash(key) & (m->nbuckets - 1)]; (e = *pp); pp = &e->next) {
		if (strcmp(e->key, key) == 0) {
			*pp = e->next;
			val = e->val;
			free(e);
			m->count--;
			return val;
		}
	}
	return NULL;
}

void hmap_foreach(const struct hmap *m, void (*fn)(void *arg, const char *key, void *val), void *arg)
{
	size_t i;

	for (i = 0; i < m->nbuckets; i++) {
		struct hmap_entry *e;

		for (e = m->buckets[i]; e; e = e->next)
			fn(arg, e->key, e->val);
	}
}
