/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/hold: waiters per host released together, in order,
 * by their deadline otherwise, bounded per host and in all, each given back
 * exactly once (also at free). Runs a real libev loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <ev.h>

#include "core/hold.h"

struct rec {
	int order[64];
	int n;
	struct hold *h;
	int readd;		/* the release function holds "again" once */
};

static void rec_release(void *arg, void *item)
{
	struct rec *r = arg;
	int v = (int)(intptr_t)item;

	assert_true(r->n < 64);
	r->order[r->n++] = v;
	if (r->readd && v == 100) {
		r->readd = 0;
		assert_int_equal(hold_add(r->h, "again.test", (void *)(intptr_t)101, 0.01), 0);
	}
}

static void test_hold_release_in_order(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	struct hold *h = hold_new(loop, rec_release, &r, 8, 100);
	struct hold_stats st;

	r.h = h;
	assert_int_equal(hold_add(h, "a.test", (void *)1, 5.0), 0);
	assert_int_equal(hold_add(h, "b.test", (void *)2, 5.0), 0);
	assert_int_equal(hold_add(h, "a.test", (void *)3, 5.0), 0);
	assert_int_equal(hold_add(h, "a.test", (void *)4, 5.0), 0);
	assert_int_equal(hold_waiting(h, "a.test"), 3);
	assert_int_equal(r.n, 0);		/* never released from inside add */
	assert_int_equal(hold_release(h, "a.test"), 3);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.order[0], 1);
	assert_int_equal(r.order[1], 3);
	assert_int_equal(r.order[2], 4);
	assert_int_equal(hold_waiting(h, "a.test"), 0);
	assert_int_equal(hold_release(h, "a.test"), 0);
	hold_stats(h, &st);
	assert_true(st.held == 4 && st.released == 3 && st.waiting == 1 && st.hosts == 1);
	hold_free(h);		/* gives b's back */
	assert_int_equal(r.n, 4);
	assert_int_equal(r.order[3], 2);
	ev_loop_destroy(loop);
}

static void test_hold_deadline(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	struct hold *h = hold_new(loop, rec_release, &r, 8, 100);
	struct hold_stats st;
	ev_tstamp t0;

	r.h = h;
	ev_now_update(loop);
	t0 = ev_now(loop);
	assert_int_equal(hold_add(h, "slow.test", (void *)7, 0.05), 0);
	assert_int_equal(hold_add(h, "slow.test", (void *)8, 0.05), 0);
	while (r.n < 2 && ev_now(loop) - t0 < 2.0)
		ev_run(loop, EVRUN_ONCE);
	assert_int_equal(r.n, 2);
	assert_true(ev_now(loop) - t0 >= 0.045);
	hold_stats(h, &st);
	assert_true(st.timeouts == 2 && st.waiting == 0 && st.hosts == 0);
	/* the host is gone: a new waiter gets a fresh timer */
	r.readd = 1;
	assert_int_equal(hold_add(h, "again.test", (void *)100, 0.01), 0);
	while (r.n < 4 && ev_now(loop) - t0 < 2.0)
		ev_run(loop, EVRUN_ONCE);
	assert_int_equal(r.n, 4);
	assert_int_equal(r.order[3], 101);
	hold_free(h);
	assert_int_equal(r.n, 4);
	ev_loop_destroy(loop);
}

static void test_hold_bounds(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	struct hold *h = hold_new(loop, rec_release, &r, 2, 3);
	struct hold_stats st;

	assert_int_equal(hold_add(h, "a.test", (void *)1, 5.0), 0);
	assert_int_equal(hold_add(h, "a.test", (void *)2, 5.0), 0);
	assert_int_equal(hold_add(h, "a.test", (void *)3, 5.0), -1);	/* per host */
	assert_int_equal(hold_add(h, "b.test", (void *)4, 5.0), 0);
	assert_int_equal(hold_add(h, "c.test", (void *)5, 5.0), -1);	/* in all */
	hold_stats(h, &st);
	assert_true(st.refused == 2 && st.waiting == 3);
	assert_int_equal(r.n, 0);		/* refused items are the caller's */
	hold_release(h, "a.test");
	assert_int_equal(hold_add(h, "c.test", (void *)5, 5.0), 0);
	hold_free(h);
	assert_int_equal(r.n, 4);
	ev_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hold_release_in_order),
		cmocka_unit_test(test_hold_deadline),
		cmocka_unit_test(test_hold_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
