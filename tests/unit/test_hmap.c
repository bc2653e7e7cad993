/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "lib/hmap.h"
#include "lib/siphash.h"

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

/* issue 19 finding 4: names a client chose to collide under the old unseeded
 * FNV-1a (the same low 16 bits, so one bucket of any table up to 65,536
 * buckets) must not make look-ups slower than names at random. FNV-1a's low
 * k bits after a byte depend only on the low k bits before it, so strings
 * that collide from one state collide from any state with the same low bits:
 * three sets of 18 four-letter blocks give 18^3 colliding names. */
static uint64_t fnv1a_low(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h;
}

#define COLL_BLOCKS	18
#define COLL_NAMES	5000
static const char coll_alpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";

/* Fills <out> with COLL_BLOCKS 4-letter blocks whose FNV-1a from state <h>
 * ends with the same low 16 bits; returns one of those end states. */
static uint64_t coll_blocks(uint64_t h, char out[COLL_BLOCKS][5])
{
	static uint32_t count[65536];
	uint32_t best = 0, n = 0;
	uint64_t end = 0;
	char b[5] = { 0 };

	memset(count, 0, sizeof(count));
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < 36u * 36 * 36 * 36; i++) {
			unsigned v = i;
			uint64_t e;

			for (int j = 0; j < 4; j++, v /= 36)
				b[j] = coll_alpha[v % 36];
			e = fnv1a_low(h, b, 4);
			if (pass == 0) {
				if (++count[e & 0xffff] > count[best])
					best = e & 0xffff;
			} else if ((e & 0xffff) == best && n < COLL_BLOCKS) {
				memcpy(out[n++], b, 5);
				end = e;
			}
		}
	}
	assert_true(n == COLL_BLOCKS);
	return end;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The shortest time of 5 rounds of looking every name of <names> up in <m>. */
static double lookup_cost(const struct hmap *m, char (*names)[40], size_t n)
{
	double best = 1e9;

	for (int r = 0; r < 5; r++) {
		double t0 = now_s();

		for (size_t i = 0; i < n; i++)
			assert_non_null(hmap_get(m, names[i]));
		if (now_s() - t0 < best)
			best = now_s() - t0;
	}
	return best;
}

static void test_hmap_colliding_names_flat(void **state)
{
	static char a[COLL_BLOCKS][5], b[COLL_BLOCKS][5], c[COLL_BLOCKS][5];
	static char coll[COLL_NAMES][40], rnd[COLL_NAMES][40];
	struct hmap mc, mr;
	uint64_t h = fnv1a_low(1469598103934665603ULL, "n", 1), low = 0;
	double tc, tr;
	size_t i;

	(void)state;
	h = coll_blocks(h, a);
	h = coll_blocks(h, b);
	coll_blocks(h, c);
	for (i = 0; i < COLL_NAMES; i++) {
		snprintf(coll[i], sizeof(coll[i]), "n%s%s%s.example.test", a[i / (COLL_BLOCKS * COLL_BLOCKS)],
			 b[(i / COLL_BLOCKS) % COLL_BLOCKS], c[i % COLL_BLOCKS]);
		snprintf(rnd[i], sizeof(rnd[i]), "r%08lx.example.test", (unsigned long)random());
		/* the set is what it claims: one low-16-bit FNV-1a value for all */
		h = fnv1a_low(1469598103934665603ULL, coll[i], strlen(coll[i]));
		if (i == 0)
			low = h & 0xffff;
		assert_true((h & 0xffff) == low);
	}
	assert_int_equal(hmap_init(&mc), 0);
	assert_int_equal(hmap_init(&mr), 0);
	for (i = 0; i < COLL_NAMES; i++) {
		assert_int_equal(hmap_put(&mc, coll[i], coll[i], NULL), 0);
		assert_int_equal(hmap_put(&mr, rnd[i], rnd[i], NULL), 0);
	}
	assert_int_equal(mc.count, COLL_NAMES);
	tc = lookup_cost(&mc, coll, COLL_NAMES);
	tr = lookup_cost(&mr, rnd, COLL_NAMES);
	print_message("# %d look-ups: colliding names %.3f ms, random names %.3f ms, ratio %.2f\n",
		      COLL_NAMES, tc * 1e3, tr * 1e3, tc / tr);
	/* chained in one bucket the ratio is in the hundreds; keyed, about 1 */
	if (tc > 8 * tr + 0.001)
		fail_msg("colliding names cost %.1f times random ones", tc / tr);
	hmap_clear(&mc, NULL);
	hmap_clear(&mr, NULL);
}

/* The paper's test vectors (appendix A and the reference implementation's
 * table): key 00..0f, messages 00..(n-1). */
static void test_siphash24_vectors(void **state)
{
	uint8_t key[16], msg[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)i;
	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)i;
	assert_true(siphash24(key, msg, 15) == 0xa129ca6149be45e5ULL);
	assert_true(siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
	/* the process key: one per process, the same for every call */
	assert_true(siphash_str("a.example") == siphash_str("a.example"));
	assert_true(siphash_str("a.example") != siphash24(key, "a.example", 9));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hmap_put_get_del),
		cmocka_unit_test(test_siphash24_vectors),
		cmocka_unit_test(test_hmap_colliding_names_flat),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
