/* SPDX-License-Identifier: Apache-2.0 */
/* A compact set of host names: every stored certificate's name, so that the
 * SNI path knows at once whether a name is stored, at a million names within
 * a few tens of MiB (issue 23: a full entry per name cost ~800 MiB there).
 *
 * The names live one after the other, NUL-terminated, in one arena; an
 * open-addressing table (linear probing) holds for each slot a uint32 offset
 * into the arena and 32 bits of the name's hash, so a probe compares strings
 * only when the hashes agree. The hash is SipHash-2-4 under the process's
 * random key: names come from outside, and nobody who does not know the key
 * can pick names that share a run of slots. A removal leaves a tombstone and
 * dead bytes in the arena; both are reclaimed by a rebuild when they pile
 * up. */
#ifndef ACME_SPOA_NAMEIDX_H
#define ACME_SPOA_NAMEIDX_H

#include <stddef.h>
#include <stdint.h>

struct nameidx;

/* An empty index hashing names with <hash> (NULL: siphash_str; another only
 * for tests that need collisions). NULL when out of memory. */
struct nameidx *nameidx_new(uint64_t (*hash)(const char *name));

/* Frees <ix>. Accepts NULL. */
void nameidx_free(struct nameidx *ix);

/* Adds <name> (copied). Returns 1 when added, 0 when it was there, -1 when
 * out of memory or the arena would pass 4 GiB (the index is unchanged). */
int nameidx_add(struct nameidx *ix, const char *name);

/* Makes room for <names> names in all (of about 24 bytes each), so that
 * adding them rebuilds nothing. 0, or -1 when out of memory (<ix> is
 * unchanged and still usable). */
int nameidx_reserve(struct nameidx *ix, size_t names);

/* Bulk adds (the start-up load): nameidx_hash() of each of a batch of
 * names, nameidx_prefetch() of each hash, then nameidx_add_hashed() of each,
 * so that the table's cache misses of the batch overlap. Same results as
 * nameidx_add(). */
uint64_t nameidx_hash(const struct nameidx *ix, const char *name);
void nameidx_prefetch(const struct nameidx *ix, uint64_t h);
int nameidx_add_hashed(struct nameidx *ix, const char *name, uint64_t h);

/* 1 when <name> is in <ix>, else 0. */
int nameidx_contains(const struct nameidx *ix, const char *name);

/* Removes <name>. Returns 1 when it was there, else 0. */
int nameidx_remove(struct nameidx *ix, const char *name);

/* How many names <ix> holds. */
size_t nameidx_count(const struct nameidx *ix);

/* Bytes <ix> holds from the heap: its table and arena at their capacity. */
size_t nameidx_bytes(const struct nameidx *ix);

/* Rebuilds counted so far: a cursor of nameidx_next() taken before a
 * different value may skip names (start over). */
unsigned long nameidx_gen(const struct nameidx *ix);

/* Iterates: with *<pos> 0 at first, returns the next name at or after
 * *<pos> and moves *<pos> past it, or NULL at the end. A name added or
 * removed meanwhile may or may not be seen; a rebuild (nameidx_gen) moves
 * the others. The name stays valid until the next change of <ix>. */
const char *nameidx_next(const struct nameidx *ix, size_t *pos);

#endif
