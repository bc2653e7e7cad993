#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "lib/hmap.h"

static void count_cb(void *arg, const char *key, void *val)
{
	(void)key;
	*(size_t *)arg += (size_t)(uintptr_t)val;
}

static void test_hmap_put_get_del(void **state)
{
	struct hmap m;
	char key[32];
	void *old;
	size_t i, sum = 0;

	(void)state;
	assert_int_equal(hmap_init(&m), 0);
	for (i = 1; i <= 5000; i++) {
		snprintf(key, sizeof(key), "host%zu.test", i);
		assert_int_equal(hmap_put(&m, key, (void *)(uintptr_t)i, &old), 0);
		assert_null(old);
	}
	assert_int_equal(m.count, 5000);
	assert_ptr_equal(hmap_get(&m, "host4242.test"), (void *)(uintptr_t)4242);
	assert_null(hmap_get(&m, "host0.test"));
	assert_int_equal(hmap_put(&m, "host7.test", (void *)(uintptr_t)70, &old), 0);
	assert_ptr_equal(old, (void *)(uintptr_t)7);
	assert_ptr_equal(hmap_del(&m, "host7.test"), (void *)(uintptr_t)70);
	assert_null(hmap_get(&m, "host7.test"));
	assert_null(hmap_del(&m, "host7.test"));
	hmap_foreach(&m, count_cb, &sum);
	assert_int_equal(sum, 5000ULL * 5001 / 2 - 7);
	hmap_clear(&m, NULL);
	assert_null(hmap_get(&m, "host1.test"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hmap_put_get_del),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
