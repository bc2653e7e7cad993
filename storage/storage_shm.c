/* SPDX-License-Identifier: Apache-2.0 */
/* shm backend: in-process hash tables, lost on restart. Each storage_open()
 * gets its own tables. Expiry uses CLOCK_MONOTONIC; expired entries are
 * dropped lazily when met. A mutex makes it safe across threads. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/siphash.h"
#include "storage/storage.h"

#define SHM_BUCKETS 256

struct shm_entry {
	struct shm_entry *next;
	char *key;
	char *val;            /* value, or owner for a lock */
	size_t len;
	uint64_t expires_ms;  /* monotonic; 0 = never */
};

struct shm_table {
	struct shm_entry *b[SHM_BUCKETS];
	size_t count;
};

struct shm_be {
	pthread_mutex_t mu;
	struct shm_table kv;
	struct shm_table locks;
};

static uint64_t shm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* keys hold names strangers choose (tokens, SNI): keyed, see lib/siphash.h */
static unsigned shm_hash(const char *s)
{
	return (unsigned)(siphash_str(s) % SHM_BUCKETS);
}

static void shm_entry_free(struct shm_entry *e)
{
	if (e == NULL)
		return;
	free(e->key);
	free(e->val);
	free(e);
}

static int shm_expired(const struct shm_entry *e, uint64_t now)
{
	return e->expires_ms != 0 && now >= e->expires_ms;
}

/* Returns the link pointing at <key>'s live entry (dropping it if expired),
 * or NULL. */
static struct shm_entry **shm_find(struct shm_table *t, const char *key)
{
	struct shm_entry **pp = &t->b[shm_hash(key)];

	for (; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->key, key) != 0)
			continue;
		if (shm_expired(*pp, shm_now_ms())) {
			struct shm_entry *dead = *pp;

			*pp = dead->next;
			shm_entry_free(dead);
			t->count--;
			return NULL;
		}
		return pp;
	}
	return NULL;
}

static void shm_remove(struct shm_table *t, const char *key)
{
	struct shm_entry **pp = shm_find(t, key);
	struct shm_entry *e;

	if (pp == NULL)
		return;
	e = *pp;
	*pp = e->next;
	shm_entry_free(e);
	t->count--;
}

/* Sets <key> to a copy of <val>/<len>, replacing any entry. Returns 0 or -1. */
static int shm_set(struct shm_table *t, const char *key, const char *val, size_t len,
		   uint64_t expires_ms)
{
	struct shm_entry **pp = shm_find(t, key);
	char *copy = malloc(len + 1);
	struct shm_entry *e;

	if (copy == NULL)
		return -1;
	memcpy(copy, val, len);
	copy[len] = '\0';
	if (pp != NULL) {
		e = *pp;
		free(e->val);
	} else {
		e = calloc(1, sizeof(*e));
		if (e == NULL || (e->key = strdup(key)) == NULL) {
			free(e);
			free(copy);
			return -1;
		}
		e->next = t->b[shm_hash(key)];
		t->b[shm_hash(key)] = e;
		t->count++;
	}
	e->val = copy;
	e->len = len;
	e->expires_ms = expires_ms;
	return 0;
}

static void shm_table_clear(struct shm_table *t)
{
	size_t i;

	for (i = 0; i < SHM_BUCKETS; i++) {
		while (t->b[i] != NULL) {
			struct shm_entry *e = t->b[i];

			t->b[i] = e->next;
			shm_entry_free(e);
		}
	}
	t->count = 0;
}

static void *shm_open_be(struct ev_loop *loop, const struct storage_conf *conf, char *err, size_t errlen)
{
	struct shm_be *be = calloc(1, sizeof(*be));

	if (be == NULL) {
		snprintf(err, errlen, "storage shm: out of memory");
		return NULL;
	}
	pthread_mutex_init(&be->mu, NULL);
	return be;
}

static void shm_close_be(void *p)
{
	struct shm_be *be = p;

	if (be == NULL)
		return;
	shm_table_clear(&be->kv);
	shm_table_clear(&be->locks);
	pthread_mutex_destroy(&be->mu);
	free(be);
}

static int shm_get(void *p, const char *key, char **val, size_t *len, char *err, size_t errlen)
{
	struct shm_be *be = p;
	struct shm_entry **pp;
	int ret = 1;

	pthread_mutex_lock(&be->mu);
	pp = shm_find(&be->kv, key);
	if (pp == NULL)
		goto out;
	*val = malloc((*pp)->len + 1);
	if (*val == NULL) {
		snprintf(err, errlen, "storage shm: get %s: out of memory", key);
		ret = -1;
		goto out;
	}
	memcpy(*val, (*pp)->val, (*pp)->len + 1);
	*len = (*pp)->len;
	ret = 0;
out:
	pthread_mutex_unlock(&be->mu);
	return ret;
}

static int shm_put(void *p, const char *key, const char *val, size_t len, unsigned ttl_sec,
		   char *err, size_t errlen)
{
	struct shm_be *be = p;
	uint64_t exp = ttl_sec ? shm_now_ms() + (uint64_t)ttl_sec * 1000 : 0;
	int ret;

	pthread_mutex_lock(&be->mu);
	ret = shm_set(&be->kv, key, val, len, exp);
	pthread_mutex_unlock(&be->mu);
	if (ret == -1)
		snprintf(err, errlen, "storage shm: put %s: out of memory", key);
	return ret;
}

static int shm_del(void *p, const char *key, char *err, size_t errlen)
{
	struct shm_be *be = p;

	pthread_mutex_lock(&be->mu);
	shm_remove(&be->kv, key);
	pthread_mutex_unlock(&be->mu);
	return 0;
}

static int shm_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int shm_list(void *p, const char *prefix, char ***keys, size_t *n,
		    char *err, size_t errlen)
{
	struct shm_be *be = p;
	size_t plen = strlen(prefix), i, cnt = 0;
	uint64_t now = shm_now_ms();
	char **out = NULL;
	int ret = -1;

	pthread_mutex_lock(&be->mu);
	out = calloc(be->kv.count + 1, sizeof(*out));
	if (out == NULL)
		goto out;
	for (i = 0; i < SHM_BUCKETS; i++) {
		struct shm_entry *e;

		for (e = be->kv.b[i]; e != NULL; e = e->next) {
			if (shm_expired(e, now) || strncmp(e->key, prefix, plen) != 0)
				continue;
			if ((out[cnt] = strdup(e->key)) == NULL)
				goto out;
			cnt++;
		}
	}
	qsort(out, cnt, sizeof(*out), shm_cmp_str);
	*keys = out;
	*n = cnt;
	out = NULL;
	ret = 0;
out:
	pthread_mutex_unlock(&be->mu);
	if (ret == -1) {
		storage_list_free(out, cnt);
		snprintf(err, errlen, "storage shm: list %s: out of memory", prefix);
	}
	return ret;
}

/* A live lock's holder: 0 absent (or expired), 1 held by <owner> (its
 * generation in <gen>), 2 held by another. A lock's value is "<owner> <gen>". */
static int shm_lock_holder(struct shm_be *be, const char *name, const char *owner, uint64_t *gen)
{
	struct shm_entry **pp = shm_find(&be->locks, name);
	const char *sp;
	size_t n = strlen(owner);

	if (pp == NULL)
		return 0;
	sp = strchr((*pp)->val, ' ');
	if (sp == NULL || (size_t)(sp - (*pp)->val) != n || memcmp((*pp)->val, owner, n) != 0)
		return 2;
	*gen = strtoull(sp + 1, NULL, 10);
	return 1;
}

static int shm_lock(void *p, const char *name, const char *owner, unsigned lease_ms,
		    uint64_t want, uint64_t *gen, char *err, size_t errlen)
{
	struct shm_be *be = p;
	char val[STORAGE_OWNER_MAX + 32];
	uint64_t cur = 0;
	int ret, h;

	pthread_mutex_lock(&be->mu);
	h = shm_lock_holder(be, name, owner, &cur);
	/* another's, or (fenced) not the very lease held at <want> */
	if (h == 2 || (want && (h != 1 || cur != want))) {
		ret = 1;
		goto out;
	}
	if (h == 1)
		*gen = cur;
	snprintf(val, sizeof(val), "%s %llu", owner, (unsigned long long)*gen);
	ret = shm_set(&be->locks, name, val, strlen(val), shm_now_ms() + lease_ms);
	if (ret == -1)
		snprintf(err, errlen, "storage shm: lock %s: out of memory", name);
out:
	pthread_mutex_unlock(&be->mu);
	return ret;
}

static int shm_unlock(void *p, const char *name, const char *owner, char *err, size_t errlen)
{
	struct shm_be *be = p;
	uint64_t gen;
	int ret = 1;

	pthread_mutex_lock(&be->mu);
	if (shm_lock_holder(be, name, owner, &gen) == 1) {
		shm_remove(&be->locks, name);
		ret = 0;
	}
	pthread_mutex_unlock(&be->mu);
	return ret;
}

static int shm_put_fenced(void *p, const char *key, const char *val, size_t len,
			  const char *fence, const char *owner, uint64_t gen, char *err, size_t errlen)
{
	struct shm_be *be = p;
	uint64_t cur = 0;
	int ret = 1;

	pthread_mutex_lock(&be->mu);
	if (shm_lock_holder(be, fence, owner, &cur) == 1 && cur == gen) {
		ret = shm_set(&be->kv, key, val, len, 0);
		if (ret == -1)
			snprintf(err, errlen, "storage shm: put %s: out of memory", key);
	}
	pthread_mutex_unlock(&be->mu);
	return ret;
}

static int shm_ping(void *p, char *err, size_t errlen)
{
	return 0;
}

const struct storage_ops storage_shm_ops = {
	.name = "shm",
	.front_expiry = 1,
	.open = shm_open_be,
	.close = shm_close_be,
	.get = shm_get,
	.put = shm_put,
	.del = shm_del,
	.list = shm_list,
	.lock = shm_lock,
	.put_fenced = shm_put_fenced,
	.unlock = shm_unlock,
	.ping = shm_ping,
};
