/* SPDX-License-Identifier: Apache-2.0 */
/* An indexed binary min-heap of pointers: O(log n) push, pop, remove and
 * update, O(1) peek. Each element records its own position (through the
 * set_index callback), so it can be removed or re-keyed in place. */
#ifndef ACME_SPOA_HEAP_H
#define ACME_SPOA_HEAP_H

#include <stddef.h>

#define HEAP_NONE ((size_t)-1)

struct heap {
	void **v;
	size_t n, cap;
	/* 1 when <a> must come out before <b> */
	int (*less)(const void *a, const void *b);
	/* records that <e> is now at position <idx> (HEAP_NONE: out of the heap) */
	void (*set_index)(void *e, size_t idx);
};

/* Initializes an empty heap ordered by <less>. */
void heap_init(struct heap *h, int (*less)(const void *, const void *),
	       void (*set_index)(void *, size_t));
/* Frees the array (not the elements, which are told HEAP_NONE). */
void heap_clear(struct heap *h);
/* Adds <e>. Returns 0 or -1 on allocation failure. */
int heap_push(struct heap *h, void *e);
/* The least element, or NULL when empty. */
void *heap_peek(const struct heap *h);
/* Removes and returns the least element, or NULL when empty. */
void *heap_pop(struct heap *h);
/* Removes the element at position <idx> (as given to set_index). */
void heap_remove(struct heap *h, size_t idx);
/* Restores the order after the key of the element at <idx> changed. */
void heap_update(struct heap *h, size_t idx);

#endif
