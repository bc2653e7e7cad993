/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/nameidx.h"

/* every name in one run of slots: probes, tombstones and rebuilds under the
 * worst case */
static uint64_t same_hash(const char *name)
{
	(void)name;
	return 0x123456789abcdef0ULL;
}

static void test_nameidx_add_contains_remove(void **state)
{
	struct nameidx *ix = nameidx_new(NULL);
	char name[64];
	size_t i;

	(void)state;
	assert_non_null(ix);
	assert_int_equal(nameidx_contains(ix, "a.example.com"), 0);
	assert_int_equal(nameidx_remove(ix, "a.example.com"), 0);
	for (i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "h%zu.example.com", i);
		assert_int_equal(nameidx_add(ix, name), 1);
	}
	assert_int_equal(nameidx_add(ix, "h42.example.com"), 0);
	assert_int_equal(nameidx_count(ix), 10000);
	for (i = 0; i < 10000; i += 2) {
		snprintf(name, sizeof(name), "h%zu.example.com", i);
		assert_int_equal(nameidx_remove(ix, name), 1);
		assert_int_equal(nameidx_remove(ix, name), 0);
	}
	assert_int_equal(nameidx_count(ix), 5000);
	for (i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "h%zu.example.com", i);
		assert_int_equal(nameidx_contains(ix, name), i % 2);
	}
	assert_int_equal(nameidx_contains(ix, "h1.example.co"), 0);
	assert_int_equal(nameidx_contains(ix, "*.example.com"), 0);
	assert_int_equal(nameidx_add(ix, "*.example.com"), 1);
	assert_int_equal(nameidx_contains(ix, "*.example.com"), 1);
	nameidx_free(ix);
	nameidx_free(NULL);
}

static void test_nameidx_collisions(void **state)
{
	struct nameidx *ix = nameidx_new(same_hash);
	char name[64];
	size_t i;

	(void)state;
	for (i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "c%zu.test", i);
		assert_int_equal(nameidx_add(ix, name), 1);
	}
	/* a tombstone in the middle of the run must not end a probe */
	assert_int_equal(nameidx_remove(ix, "c10.test"), 1);
	assert_int_equal(nameidx_contains(ix, "c499.test"), 1);
	assert_int_equal(nameidx_contains(ix, "c10.test"), 0);
	/* nor let a name present further along be added twice */
	assert_int_equal(nameidx_add(ix, "c499.test"), 0);
	assert_int_equal(nameidx_add(ix, "c10.test"), 1);
	assert_int_equal(nameidx_count(ix), 500);
	for (i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "c%zu.test", i);
		assert_int_equal(nameidx_contains(ix, name), 1);
	}
	nameidx_free(ix);
}

/* Churn: names come and go; the rebuilds keep the table and arena bounded by
 * what is live, and every name still answers. */
static void test_nameidx_rebuild(void **state)
{
	struct nameidx *ix = nameidx_new(NULL);
	char name[64];
	size_t i, round, bytes_first = 0;
	unsigned long gen0;

	(void)state;
	for (round = 0; round < 20; round++) {
		for (i = 0; i < 20000; i++) {
			snprintf(name, sizeof(name), "r%zu-%zu.example.net", round, i);
			assert_int_equal(nameidx_add(ix, name), 1);
		}
		if (round == 0) {
			bytes_first = nameidx_bytes(ix);
			gen0 = nameidx_gen(ix);
		}
		for (i = 0; i < 20000; i++) {
			snprintf(name, sizeof(name), "r%zu-%zu.example.net", round, i);
			assert_int_equal(nameidx_remove(ix, name), 1);
		}
	}
	assert_int_equal(nameidx_count(ix), 0);
	assert_true(nameidx_gen(ix) > gen0);
	/* 400,000 names went through: what is held stays that of 20,000 */
	assert_true(nameidx_bytes(ix) <= 2 * bytes_first);
	assert_int_equal(nameidx_add(ix, "last.example.net"), 1);
	assert_int_equal(nameidx_contains(ix, "r3-5.example.net"), 0);
	assert_int_equal(nameidx_contains(ix, "last.example.net"), 1);
	nameidx_free(ix);
}

static void test_nameidx_iterate(void **state)
{
	struct nameidx *ix = nameidx_new(NULL);
	char name[64];
	unsigned char *seen = calloc(3000, 1);
	const char *n;
	size_t i, pos = 0, total = 0;
	unsigned long k;

	(void)state;
	assert_non_null(seen);
	for (i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "i%zu.example.org", i);
		nameidx_add(ix, name);
	}
	for (i = 0; i < 3000; i += 3) {
		snprintf(name, sizeof(name), "i%zu.example.org", i);
		nameidx_remove(ix, name);
	}
	while ((n = nameidx_next(ix, &pos))) {
		assert_int_equal(sscanf(n, "i%lu.example.org", &k), 1);
		assert_true(k < 3000 && k % 3 != 0);
		assert_int_equal(seen[k], 0);	/* each once */
		seen[k] = 1;
		total++;
	}
	assert_int_equal(total, 2000);
	assert_null(nameidx_next(ix, &pos));
	free(seen);
	nameidx_free(ix);
}

/* Issue 23: the SNI path knows every stored name within 64 MiB at 1,000,000
 * names, counted from the module's own accounting (table and arena at their
 * capacity), not RSS. Not timed. */
static void test_nameidx_million_fits(void **state)
{
	struct nameidx *ix = nameidx_new(NULL);
	char name[64];
	size_t i, bytes;

	(void)state;
	for (i = 0; i < 1000000; i++) {
		/* ~20 characters, as customer domains */
		snprintf(name, sizeof(name), "c%07zu.shop-host.io", i);
		assert_int_equal(nameidx_add(ix, name), 1);
	}
	assert_int_equal(nameidx_count(ix), 1000000);
	assert_int_equal(nameidx_contains(ix, "c0999999.shop-host.io"), 1);
	assert_int_equal(nameidx_contains(ix, "c1000000.shop-host.io"), 0);
	bytes = nameidx_bytes(ix);
	print_message("nameidx: 1,000,000 names in %zu bytes (%.1f bytes a name, %.1f MiB)\n",
		      bytes, (double)bytes / 1e6, (double)bytes / (1024.0 * 1024.0));
	assert_true(bytes <= (size_t)64 * 1024 * 1024);
	nameidx_free(ix);
}

/* Sized ahead (the start-up load knows the feed's count): adding that many
 * rebuilds nothing, and the memory stays within the same 64 MiB. */
static void test_nameidx_reserve(void **state)
{
	struct nameidx *ix = nameidx_new(NULL);
	unsigned long gen;
	char name[64];
	size_t i;

	(void)state;
	assert_int_equal(nameidx_add(ix, "before.test"), 1);
	assert_int_equal(nameidx_reserve(ix, 1000001), 0);
	gen = nameidx_gen(ix);
	assert_int_equal(nameidx_contains(ix, "before.test"), 1);	/* kept across the resize */
	for (i = 0; i < 1000000; i++) {
		snprintf(name, sizeof(name), "c%07zu.shop-host.io", i);
		assert_int_equal(nameidx_add(ix, name), 1);
	}
	assert_int_equal(nameidx_gen(ix), gen);
	assert_int_equal(nameidx_count(ix), 1000001);
	assert_true(nameidx_bytes(ix) <= (size_t)64 * 1024 * 1024);
	/* a smaller reserve changes nothing; an impossible one fails, unchanged */
	assert_int_equal(nameidx_reserve(ix, 10), 0);
	assert_int_equal(nameidx_gen(ix), gen);
	assert_int_equal(nameidx_reserve(ix, (size_t)1 << 40), -1);
	assert_int_equal(nameidx_contains(ix, "c0999999.shop-host.io"), 1);
	nameidx_free(ix);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nameidx_add_contains_remove),
		cmocka_unit_test(test_nameidx_collisions),
		cmocka_unit_test(test_nameidx_rebuild),
		cmocka_unit_test(test_nameidx_iterate),
		cmocka_unit_test(test_nameidx_million_fits),
		cmocka_unit_test(test_nameidx_reserve),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
