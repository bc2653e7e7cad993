/* SPDX-License-Identifier: Apache-2.0 */
/* The compact name index (nameidx.h): 8 bytes a slot, at most 3/4 of the
 * slots taken (live or tombstone), and the names' own bytes in an arena that
 * grows by half. At a million names of ~20 characters: 2^21 slots (16 MiB)
 * and ~21-32 MiB of arena. */
#include <stdlib.h>
#include <string.h>

#include "core/nameidx.h"
#include "lib/siphash.h"

#define NAMEIDX_EMPTY	0u	/* slot never used */
#define NAMEIDX_TOMB	1u	/* slot of a removed name */
#define NAMEIDX_OFF0	2u	/* off - NAMEIDX_OFF0 is the arena offset */
#define NAMEIDX_MIN_SLOTS 64
#define NAMEIDX_MIN_ARENA 4096
#define NAMEIDX_DEAD_MIN (64 * 1024)	/* dead arena bytes worth a rebuild */

struct nameidx_slot {
	uint32_t off;			/* NAMEIDX_EMPTY, NAMEIDX_TOMB or offset + OFF0 */
	uint32_t tag;			/* high 32 bits of the name's hash */
};

struct nameidx {
	uint64_t (*hash)(const char *name);
	struct nameidx_slot *slots;
	size_t nslots;			/* a power of two, or 0 */
	size_t count, tombs;
	char *arena;
	size_t len, cap;		/* arena bytes used and allocated */
	size_t dead;			/* of <len>: names removed */
	unsigned long gen;
};

struct nameidx *nameidx_new(uint64_t (*hash)(const char *name))
{
	struct nameidx *ix = calloc(1, sizeof(*ix));

	if (ix)
		ix->hash = hash ? hash : siphash_str;
	return ix;
}

void nameidx_free(struct nameidx *ix)
{
	if (!ix)
		return;
	free(ix->slots);
	free(ix->arena);
	free(ix);
}

static const char *nameidx_name(const struct nameidx *ix, const struct nameidx_slot *s)
{
	return ix->arena + (s->off - NAMEIDX_OFF0);
}

/* The slot holding <name> (hash <h>), or NULL. */
static struct nameidx_slot *nameidx_find(const struct nameidx *ix, const char *name, uint64_t h)
{
	size_t mask = ix->nslots - 1, i;
	uint32_t tag = (uint32_t)(h >> 32);
	struct nameidx_slot *s;

	if (!ix->nslots)
		return NULL;
	for (i = (size_t)h & mask;; i = (i + 1) & mask) {
		s = &ix->slots[i];
		if (s->off == NAMEIDX_EMPTY)
			return NULL;
		if (s->off != NAMEIDX_TOMB && s->tag == tag && strcmp(nameidx_name(ix, s), name) == 0)
			return s;
	}
}

/* Places arena offset <off> of a name of hash <h> in the first free slot of
 * <slots> (no tombstone there: a fresh table). */
static void nameidx_place(struct nameidx_slot *slots, size_t nslots, uint64_t h, uint32_t off)
{
	size_t mask = nslots - 1, i;

	for (i = (size_t)h & mask; slots[i].off != NAMEIDX_EMPTY; i = (i + 1) & mask)
		;
	slots[i].off = off;
	slots[i].tag = (uint32_t)(h >> 32);
}

/* A fresh table of <nslots> and a compact arena holding the live names: the
 * tombstones and dead bytes go. Hashes are computed again (8 bytes a slot
 * leave no room to keep them). 0, or -1 with <ix> unchanged. */
static int nameidx_rebuild(struct nameidx *ix, size_t nslots)
{
	struct nameidx_slot *slots = calloc(nslots, sizeof(*slots));
	size_t live = ix->len - ix->dead, cap = live + live / 2, i, n, len = 0;
	char *arena;
	const char *name;

	if (cap < NAMEIDX_MIN_ARENA)
		cap = NAMEIDX_MIN_ARENA;
	arena = malloc(cap);
	if (!slots || !arena) {
		free(slots);
		free(arena);
		return -1;
	}
	for (i = 0; i < ix->nslots; i++) {
		if (ix->slots[i].off < NAMEIDX_OFF0)
			continue;
		name = nameidx_name(ix, &ix->slots[i]);
		n = strlen(name) + 1;
		memcpy(arena + len, name, n);
		nameidx_place(slots, nslots, ix->hash(name), (uint32_t)(len + NAMEIDX_OFF0));
		len += n;
	}
	free(ix->slots);
	free(ix->arena);
	ix->slots = slots;
	ix->nslots = nslots;
	ix->tombs = 0;
	ix->arena = arena;
	ix->len = len;
	ix->cap = cap;
	ix->dead = 0;
	ix->gen++;
	return 0;
}

/* Room in the arena for <n> more bytes: grows it by half. 0 or -1. */
static int nameidx_arena_room(struct nameidx *ix, size_t n)
{
	size_t cap = ix->cap;
	char *p;

	if (ix->len + n <= ix->cap)
		return 0;
	if (ix->len + n > UINT32_MAX - NAMEIDX_OFF0)
		return -1;
	if (cap < NAMEIDX_MIN_ARENA)
		cap = NAMEIDX_MIN_ARENA;
	while (cap < ix->len + n)
		cap += cap / 2;
	if (cap > UINT32_MAX)
		cap = UINT32_MAX;
	p = realloc(ix->arena, cap);
	if (!p)
		return -1;
	ix->arena = p;
	ix->cap = cap;
	return 0;
}

int nameidx_reserve(struct nameidx *ix, size_t names)
{
	size_t nslots = ix->nslots ? ix->nslots : NAMEIDX_MIN_SLOTS;

	if (names > UINT32_MAX / 24)
		return -1;
	/* as nameidx_add grows it: live names within half of the slots */
	while (names * 2 > nslots)
		nslots *= 2;
	if (nslots > ix->nslots && nameidx_rebuild(ix, nslots) == -1)
		return -1;
	if (names > ix->count && ix->len + (names - ix->count) * 24 > ix->cap) {
		size_t cap = ix->len + (names - ix->count) * 24;
		char *p;

		if (cap > UINT32_MAX - NAMEIDX_OFF0 || !(p = realloc(ix->arena, cap)))
			return -1;
		ix->arena = p;
		ix->cap = cap;
	}
	return 0;
}

uint64_t nameidx_hash(const struct nameidx *ix, const char *name)
{
	return ix->hash(name);
}

void nameidx_prefetch(const struct nameidx *ix, uint64_t h)
{
	if (ix->nslots)
		__builtin_prefetch(&ix->slots[(size_t)h & (ix->nslots - 1)]);
}

int nameidx_add(struct nameidx *ix, const char *name)
{
	return nameidx_add_hashed(ix, name, ix->hash(name));
}

int nameidx_add_hashed(struct nameidx *ix, const char *name, uint64_t h)
{
	size_t n = strlen(name) + 1, nslots = ix->nslots ? ix->nslots : NAMEIDX_MIN_SLOTS;
	size_t mask, i;
	struct nameidx_slot *s, *free_slot = NULL;

	if (nameidx_find(ix, name, h))
		return 0;
	/* live and tombstones stay within 3/4 of the slots, so probes end */
	if ((ix->count + ix->tombs + 1) * 4 > ix->nslots * 3) {
		while ((ix->count + 1) * 2 > nslots)
			nslots *= 2;
		if (nameidx_rebuild(ix, nslots) == -1)
			return -1;
	}
	if (nameidx_arena_room(ix, n) == -1)
		return -1;
	mask = ix->nslots - 1;
	for (i = (size_t)h & mask;; i = (i + 1) & mask) {
		s = &ix->slots[i];
		if (s->off == NAMEIDX_TOMB) {
			free_slot = s;	/* find() said it is nowhere further */
			ix->tombs--;
			break;
		}
		if (s->off == NAMEIDX_EMPTY) {
			free_slot = s;
			break;
		}
	}
	memcpy(ix->arena + ix->len, name, n);
	free_slot->off = (uint32_t)(ix->len + NAMEIDX_OFF0);
	free_slot->tag = (uint32_t)(h >> 32);
	ix->len += n;
	ix->count++;
	return 1;
}

int nameidx_contains(const struct nameidx *ix, const char *name)
{
	return nameidx_find(ix, name, ix->hash(name)) != NULL;
}

int nameidx_remove(struct nameidx *ix, const char *name)
{
	struct nameidx_slot *s = nameidx_find(ix, name, ix->hash(name));

	if (!s)
		return 0;
	ix->dead += strlen(nameidx_name(ix, s)) + 1;
	s->off = NAMEIDX_TOMB;
	ix->count--;
	ix->tombs++;
	/* a churn of names must not grow the arena without end; a failed
	 * rebuild only leaves the bytes for later */
	if (ix->dead >= NAMEIDX_DEAD_MIN && ix->dead * 2 > ix->len)
		nameidx_rebuild(ix, ix->nslots);
	return 1;
}

size_t nameidx_count(const struct nameidx *ix)
{
	return ix->count;
}

size_t nameidx_bytes(const struct nameidx *ix)
{
	return sizeof(*ix) + ix->nslots * sizeof(*ix->slots) + ix->cap;
}

unsigned long nameidx_gen(const struct nameidx *ix)
{
	return ix->gen;
}

const char *nameidx_next(const struct nameidx *ix, size_t *pos)
{
	for (; *pos < ix->nslots; (*pos)++) {
		if (ix->slots[*pos].off >= NAMEIDX_OFF0)
			return nameidx_name(ix, &ix->slots[(*pos)++]);
	}
	return NULL;
}
