/* SPDX-License-Identifier: Apache-2.0 */
/* A string-keyed hash map (chained, SipHash-2-4 under a random per-process
 * key: keys are often names strangers choose). Keys are copied; values are
 * opaque pointers owned by the caller. Used on the SPOE path: O(1) lookups. */
#ifndef ACME_SPOA_HMAP_H
#define ACME_SPOA_HMAP_H

#include <stddef.h>

struct hmap_entry {
	struct hmap_entry *next;
	void *val;
	char key[];
};

struct hmap {
	struct hmap_entry **buckets;
	size_t nbuckets;
	size_t count;
};

/* Initializes an empty map. Returns 0 or -1 on allocation failure. */
int hmap_init(struct hmap *m);
/* Frees the table and keys; calls <free_val> on each value when not NULL. */
void hmap_clear(struct hmap *m, void (*free_val)(void *val));
/* The value stored under <key>, or NULL. */
void *hmap_get(const struct hmap *m, const char *key);
/* Stores <val> under <key>; returns the previous value (or NULL) through
 * <old> when not NULL. Returns 0 or -1 on allocation failure. */
int hmap_put(struct hmap *m, const char *key, void *val, void **old);
/* Removes <key>; returns its value or NULL. */
void *hmap_del(struct hmap *m, const char *key);
/* Calls <fn> for every entry; <fn> must not modify the map. */
void hmap_foreach(const struct hmap *m, void (*fn)(void *arg, const char *key, void *val), void *arg);

#endif
