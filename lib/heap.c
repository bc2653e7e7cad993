/* SPDX-License-Identifier: Apache-2.0 */
/* Indexed binary min-heap: see heap.h. */
#include <stdlib.h>

#include "lib/heap.h"

void heap_init(struct heap *h, int (*less)(const void *, const void *),
	       void (*set_index)(void *, size_t))
{
	h->v = NULL;
	h->n = h->cap = 0;
	h->less = less;
	h->set_index = set_index;
}

void heap_clear(struct heap *h)
{
	size_t i;

	for (i = 0; i < h->n; i++)
		h->set_index(h->v[i], HEAP_NONE);
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

static void heap_place(struct heap *h, size_t i, void *e)
{
	h->v[i] = e;
	h->set_index(e, i);
}

static void heap_up(struct heap *h, size_t i)
{
	void *e = h->v[i];

	while (i > 0 && h->less(e, h->v[(i - 1) / 2])) {
		heap_place(h, i, h->v[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_place(h, i, e);
}

static void heap_down(struct heap *h, size_t i)
{
	void *e = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->less(h->v[c + 1], h->v[c]))
			c++;
		if (!h->less(h->v[c], e))
			break;
		heap_place(h, i, h->v[c]);
		i = c;
	}
	heap_place(h, i, e);
}

int heap_push(struct heap *h, void *e)
{
	if (h->n == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 64;
		void **nv = realloc(h->v, ncap * sizeof(*nv));

		if (!nv)
			return -1;
		h->v = nv;
		h->cap = ncap;
	}
	h->v[h->n] = e;
	heap_up(h, h->n++);
	return 0;
}

void *heap_peek(const struct heap *h)
{
	return h->n ? h->v[0] : NULL;
}

void heap_remove(struct heap *h, size_t idx)
{
	void *e;

	if (idx >= h->n)
		return;
	e = h->v[idx];
	h->set_index(e, HEAP_NONE);
	if (idx == --h->n)
		return;
	h->v[idx] = h->v[h->n];
	heap_update(h, idx);
}

void *heap_pop(struct heap *h)
{
	void *e = heap_peek(h);

	if (e)
		heap_remove(h, 0);
	return e;
}

void heap_update(struct heap *h, size_t idx)
{
	if (idx >= h->n)
		return;
	if (idx > 0 && h->less(h->v[idx], h->v[(idx - 1) / 2]))
		heap_up(h, idx);
	else
		heap_down(h, idx);
}
