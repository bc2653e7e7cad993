/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/members:
 *   - rendezvous hashing: 30,000 names over 3 members land within 10 % of a
 *     third each; a 4th member takes a fair share and only from the others
 *     (no name moves between two old members); a member leaving hands over
 *     only its own names;
 *   - membership on real file storage (two nodes sharing one directory, as
 *     agents on one box do): both see each other; a member that stops
 *     writing (a record with a short TTL, no node behind it) drops out once
 *     its lease runs out and the hook says so; a clean stop deletes its
 *     record at once;
 *   - shm: one process, the only member. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/core_fixture.h"

#include "core/members.h"
#include "lib/log.h"

#define NAMES 30000

static const char *const ids[] = {
	"5d0c1f0e2a9b4c7d8e6f", "a1b2c3d4e5f60718293a", "0f1e2d3c4b5a69788796", "77aa55cc33ee11ff0022",
};

static void pick_all(size_t nm, size_t *owner, size_t *count)
{
	uint64_t h[4];
	char name[64];
	size_t i;

	for (i = 0; i < nm; i++)
		h[i] = members_key_hash(ids[i]);
	memset(count, 0, nm * sizeof(*count));
	for (i = 0; i < NAMES; i++) {
		snprintf(name, sizeof(name), "host%zu.customer.example", i);
		owner[i] = members_pick(h, nm, members_key_hash(name));
		count[owner[i]]++;
	}
}

static void test_balance(void **state)
{
	size_t *o = malloc(NAMES * sizeof(*o)), c[3], i;

	assert_non_null(o);
	pick_all(3, o, c);
	for (i = 0; i < 3; i++) {
		print_message("member %zu: %zu of %d names\n", i, c[i], NAMES);
		assert_true(c[i] >= NAMES / 3 * 9 / 10 && c[i] <= NAMES / 3 * 11 / 10);
	}
	free(o);
}

static void test_minimal_movement(void **state)
{
	size_t *o3 = malloc(NAMES * sizeof(*o3)), *o4 = malloc(NAMES * sizeof(*o4));
	size_t *o2 = malloc(NAMES * sizeof(*o2));
	size_t c[4], i, moved = 0;
	uint64_t h[2];
	char name[64];

	assert_non_null(o3);
	assert_non_null(o4);
	assert_non_null(o2);
	pick_all(3, o3, c);
	pick_all(4, o4, c);
	/* a 4th member joins: whatever moves, moves to it */
	for (i = 0; i < NAMES; i++) {
		if (o4[i] == o3[i])
			continue;
		assert_int_equal(o4[i], 3);
		moved++;
	}
	print_message("a 4th member took %zu of %d names\n", moved, NAMES);
	assert_true(moved >= NAMES / 4 * 9 / 10 && moved <= NAMES / 4 * 11 / 10);
	/* member 2 leaves the three: only its names move, spread over the two */
	h[0] = members_key_hash(ids[0]);
	h[1] = members_key_hash(ids[1]);
	memset(c, 0, sizeof(c));
	for (i = 0; i < NAMES; i++) {
		snprintf(name, sizeof(name), "host%zu.customer.example", i);
		o2[i] = members_pick(h, 2, members_key_hash(name));
		if (o3[i] != 2)
			assert_int_equal(o2[i], o3[i]);
		else
			c[o2[i]]++;
	}
	print_message("member 2's names went %zu / %zu to the other two\n", c[0], c[1]);
	assert_true(c[0] + c[1] > 0);
	assert_true(c[0] * 10 >= (c[0] + c[1]) * 4 && c[1] * 10 >= (c[0] + c[1]) * 4);
	free(o2);
	free(o3);
	free(o4);
}

/* ---- membership on file storage ------------------------------------------ */

struct node {
	struct members *m;
	int changes;
};

static void on_change(void *arg)
{
	((struct node *)arg)->changes++;
}

struct two {
	struct node *a, *b;
	size_t want;
};

static int cond_both_see(void *arg)
{
	struct two *w = arg;

	return members_count(w->a->m) == w->want && (!w->b || members_count(w->b->m) == w->want);
}

static void test_file_membership_and_expiry(void **state)
{
	struct fx f;
	char dir[96], err[256] = "";
	struct storage_conf sc = { 0 };
	struct storage *st;
	struct storage_res res;
	struct node a = { 0 }, b = { 0 };
	struct two w = { &a, &b, 2 };
	uint64_t kh;
	int owned;

	fx_open(&f, "");
	snprintf(dir, sizeof(dir), "%s/store", f.dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	sc.file_path = dir;
	st = storage_open("file", &sc, f.loop, err, sizeof(err));
	assert_non_null(st);
	a.m = members_new(f.loop, st, &f.health, ids[0], 2);
	b.m = members_new(f.loop, st, &f.health, ids[1], 2);
	assert_non_null(a.m);
	assert_non_null(b.m);
	assert_null(members_new(f.loop, st, &f.health, "a/b", 2));	/* not a key segment */
	assert_null(members_new(f.loop, st, &f.health, "x", 1));	/* lease too short */
	members_set_hook(a.m, on_change, &a);
	members_set_hook(b.m, on_change, &b);
	/* before the first read, a node owns nothing: it may not be alone */
	assert_int_equal(members_count(a.m), 1);
	assert_false(members_owns(a.m, members_key_hash("any.example")));
	members_start(a.m);
	members_start(b.m);
	assert_true(fx_run_until(&f, cond_both_see, &w, 3.0));
	/* both agree on every owner */
	kh = members_key_hash("one.example");
	assert_string_equal(members_owner(a.m, kh), members_owner(b.m, kh));
	owned = members_owns(a.m, kh);
	assert_int_equal(owned, !members_owns(b.m, kh));

	/* a member with no node behind it: in for its lease, then out */
	a.changes = 0;
	assert_int_equal(storage_wait(st, storage_put(st, "members/deadbeef00", "x", 1, 2, NULL, NULL),
				      &res, err, sizeof(err)), 0);
	storage_res_clear(&res);
	w.want = 3;
	assert_true(fx_run_until(&f, cond_both_see, &w, 2.0));
	assert_true(a.changes >= 1);
	w.want = 2;
	/* gone within the lease (2 s) and one read (0.5 s) */
	assert_true(fx_run_until(&f, cond_both_see, &w, 3.0));
	assert_true(a.changes >= 2);

	/* b stops cleanly: its record is deleted, a sees it at its next read */
	members_free(b.m);
	w.b = NULL;
	w.want = 1;
	assert_true(fx_run_until(&f, cond_both_see, &w, 1.5));
	assert_true(members_owns(a.m, kh));
	members_free(a.m);
	storage_close(st);
	fx_close(&f);
}

static void test_shm_solo(void **state)
{
	struct fx f;
	struct members *m;

	fx_open(&f, "");
	m = members_new(f.loop, f.st, &f.health, ids[2], 30);
	assert_non_null(m);
	members_start(m);
	fx_run_for(&f, 0.2);
	assert_int_equal(members_count(m), 1);
	assert_string_equal(members_self(m), ids[2]);
	assert_string_equal(members_owner(m, members_key_hash("x.example")), ids[2]);
	assert_true(members_owns(m, members_key_hash("x.example")));
	members_free(m);
	fx_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_balance),
		cmocka_unit_test(test_minimal_movement),
		cmocka_unit_test(test_file_membership_and_expiry),
		cmocka_unit_test(test_shm_solo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
