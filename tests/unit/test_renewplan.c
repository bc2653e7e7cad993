/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/renewplan's planner (renewplan_compute): 1,000
 * certificates due within 3 hours against orders_per_3h 300 with the
 * new-name reserve (240 for renewals), without and with ARI exemptions and
 * with orders already spent in the window; each checked for earliest expiry
 * first, no 3-hour window over the budget (a brute-force count at every
 * order), every planned time inside its certificate's window, and the
 * shortfall count and first unrenewed expiry exact. Also a fleet's share
 * (weight), windows that open later, and a budget of nothing. Then the
 * plan on a real libev loop over real issuers (shm storage): held renewals
 * started through the callback in plan order within the budget, an ARI one
 * at once, an urgent one the budget cannot take counted short with its date
 * (and in /metrics), dropped, and a CA without an orders limit not held. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/unit/core_fixture.h"

#include "core/issuers.h"
#include "core/ratelimit.h"
#include "core/renewplan.h"
#include "lib/metrics.h"

#define NOW	((time_t)1800000000)
#define SPAN	RENEWPLAN_SPAN_S
#define MARGIN	RENEWPLAN_MARGIN_S

struct fixture {
	struct renewplan_item it[1000];
	struct renewplan_item *v[1000];
	char host[1000][32];
	size_t n;
};

/* <n> certificates due within the last 3 hours, whose expiries are
 * <e0> + rank * <step> after NOW, given in a shuffled order (rank 7i mod n,
 * n not a multiple of 7) so that the input order is not the expiry order. */
static void fixture_fill(struct fixture *f, size_t n, time_t e0, time_t step)
{
	size_t i, rank;

	memset(f, 0, sizeof(*f));
	f->n = n;
	for (i = 0; i < n; i++) {
		rank = (i * 7) % n;
		snprintf(f->host[i], sizeof(f->host[i]), "h%04zu.test", rank);
		f->it[i].host = f->host[i];
		f->it[i].start = NOW - SPAN + (time_t)((i * 37) % SPAN);
		f->it[i].expiry = NOW + e0 + (time_t)rank * step;
		f->v[i] = &f->it[i];
	}
}

static size_t rank_of(const struct renewplan_item *it)
{
	return (size_t)strtoul(it->host + 1, NULL, 10);
}

/* The brute-force check: at every order the plan places, the orders in the
 * 3 hours ending there (spent ones count 1, planned ones <w>) are within
 * <cap>; returns the most seen in one window. */
static unsigned max_window(const struct fixture *f, const time_t *spent, size_t nspent,
			   unsigned w)
{
	unsigned worst = 0, sum;
	size_t i, j;

	for (i = 0; i < f->n; i++) {
		time_t p = f->it[i].planned;

		if (f->it[i].exempt)
			continue;
		sum = 0;
		for (j = 0; j < f->n; j++)
			if (!f->it[j].exempt && f->it[j].planned > p - SPAN && f->it[j].planned <= p)
				sum += w;
		for (j = 0; j < nspent; j++)
			if (spent[j] > p - SPAN && spent[j] <= p)
				sum++;
		if (sum > worst)
			worst = sum;
	}
	return worst;
}

/* Planned times inside each window: never before it opens nor before now;
 * a certificate not late starts by expiry - margin. */
static void assert_inside_windows(const struct fixture *f)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		const struct renewplan_item *it = &f->it[i];

		assert_true(it->planned >= NOW && it->planned >= it->start);
		if (!it->late)
			assert_true(it->planned <= it->expiry - MARGIN);
		else
			assert_true(it->planned > it->expiry - MARGIN);
	}
}

/* Earliest expiry first among the counted ones (all due already): an
 * earlier expiry is never planned after a later one. */
static void assert_edf(const struct fixture *f)
{
	size_t i, j;

	for (i = 0; i < f->n; i++)
		for (j = 0; j < f->n; j++)
			if (!f->it[i].exempt && !f->it[j].exempt &&
			    f->it[i].expiry < f->it[j].expiry)
				assert_true(f->it[i].planned <= f->it[j].planned);
}

/* 1,000 due, orders_per_3h 300, renewal_reserve 0.2: 240 renewals every
 * 3 hours, by rank: rank k starts at NOW + (k / 240) * 3h. Expiries 4 h +
 * 20 s * rank: rank k is late when (k / 240) * 3h > 3 h + 20 s * k, that is
 * ranks 480..539 (window 2), 720..959 (window 3) and 960..999 (window 4):
 * 340 late, the first expiring at rank 480's expiry, NOW + 4h + 9600 s. */
static void test_plan_1000_vs_300(void **state)
{
	static struct fixture f;
	struct renewplan_budget b = { .weight = 1, .span = SPAN, .margin = MARGIN };
	struct renewplan_result res;
	size_t i, late = 0;

	b.cap = ratelimit_allowed(300, 0.2, RATELIMIT_NEW);
	assert_int_equal(b.cap, 240);
	fixture_fill(&f, 1000, 4 * 3600, 20);
	assert_int_equal(renewplan_compute(f.v, f.n, &b, NOW, &res), 0);
	for (i = 0; i < f.n; i++) {
		size_t k = rank_of(&f.it[i]);
		time_t want = NOW + (time_t)(k / 240) * SPAN;

		assert_int_equal(f.it[i].planned, want);
		/* the test's own model of lateness */
		assert_int_equal(f.it[i].late, (k / 240) * SPAN > 3 * 3600 + 20 * k);
		late += f.it[i].late;
	}
	assert_int_equal(late, 340);
	assert_int_equal(res.late, 340);
	assert_int_equal(res.first_late, NOW + 4 * 3600 + 480 * 20);
	assert_string_equal(res.first_host, "h0480.test");
	assert_int_equal(res.last, NOW + 4 * SPAN);
	assert_int_equal(max_window(&f, NULL, 0, 1), 240);
	assert_inside_windows(&f);
	assert_edf(&f);
}

/* Every 4th certificate (by rank) renews with ARI: the CA does not count it,
 * it starts now; the other 750 take the 240 per window, earliest first. */
static void test_plan_ari_exempt(void **state)
{
	static struct fixture f;
	struct renewplan_budget b = { .cap = 240, .weight = 1, .span = SPAN, .margin = MARGIN };
	struct renewplan_result res;
	size_t i, counted_rank, exempt = 0, late = 0;

	fixture_fill(&f, 1000, 4 * 3600, 20);
	for (i = 0; i < f.n; i++)
		f.it[i].exempt = rank_of(&f.it[i]) % 4 == 0;
	assert_int_equal(renewplan_compute(f.v, f.n, &b, NOW, &res), 0);
	for (i = 0; i < f.n; i++) {
		size_t k = rank_of(&f.it[i]);

		if (f.it[i].exempt) {
			assert_int_equal(f.it[i].planned, NOW);
			assert_false(f.it[i].late);
			exempt++;
			continue;
		}
		/* its place among the counted ones: 3 of every 4 ranks */
		counted_rank = k - k / 4 - 1;
		assert_int_equal(f.it[i].planned, NOW + (time_t)(counted_rank / 240) * SPAN);
		assert_int_equal(f.it[i].late,
				 (counted_rank / 240) * SPAN > 3 * 3600 + 20 * k);
		late += f.it[i].late;
	}
	assert_int_equal(exempt, 250);
	/* window 2 (counted ranks 480..719, ranks 641..959) all in time; window
	 * 3 (counted 720..749, ranks 961..999) all late */
	assert_int_equal(late, 30);
	assert_int_equal(res.late, 30);
	assert_int_equal(res.first_late, NOW + 4 * 3600 + 961 * 20);
	assert_int_equal(res.last, NOW + 3 * SPAN);
	assert_int_equal(max_window(&f, NULL, 0, 1), 240);
	assert_inside_windows(&f);
	assert_edf(&f);
}

/* Without the reserve (300 for renewals) and 100 orders already spent an
 * hour ago (new names, other nodes): 200 now, 100 more when those leave at
 * NOW + 2h, then 200 at NOW + 3h, ... never more than 300 in a window. */
static void test_plan_spent_no_reserve(void **state)
{
	static struct fixture f;
	static time_t spent[100];
	struct renewplan_budget b = { .weight = 1, .span = SPAN, .margin = MARGIN };
	struct renewplan_result res;
	size_t i, at_now = 0, at_2h = 0, at_3h = 0;

	for (i = 0; i < 100; i++)
		spent[i] = NOW - 3600;
	b.cap = ratelimit_allowed(300, 0, RATELIMIT_NEW);
	assert_int_equal(b.cap, 300);
	b.spent = spent;
	b.nspent = 100;
	fixture_fill(&f, 1000, 30 * 86400, 20);
	assert_int_equal(renewplan_compute(f.v, f.n, &b, NOW, &res), 0);
	for (i = 0; i < f.n; i++) {
		size_t k = rank_of(&f.it[i]);

		at_now += f.it[i].planned == NOW;
		at_2h += f.it[i].planned == NOW + 7200;
		at_3h += f.it[i].planned == NOW + SPAN;
		if (k < 200)
			assert_int_equal(f.it[i].planned, NOW);
		else if (k < 300)
			assert_int_equal(f.it[i].planned, NOW + 7200);
		else if (k < 500)
			assert_int_equal(f.it[i].planned, NOW + SPAN);
	}
	assert_int_equal(at_now, 200);
	assert_int_equal(at_2h, 100);
	assert_int_equal(at_3h, 200);
	assert_int_equal(res.late, 0);
	assert_int_equal(res.first_late, 0);
	assert_int_equal(max_window(&f, spent, 100, 1), 300);
	assert_inside_windows(&f);
	assert_edf(&f);
}

/* One node of three: its share is planned at a third of the budget (80 of
 * 240 per window), so that the fleet keeps within it. */
static void test_plan_fleet_share(void **state)
{
	static struct fixture f;
	struct renewplan_budget b = { .cap = 240, .weight = 3, .span = SPAN, .margin = MARGIN };
	struct renewplan_result res;
	size_t i;

	fixture_fill(&f, 333, 30 * 86400, 20);
	assert_int_equal(renewplan_compute(f.v, f.n, &b, NOW, &res), 0);
	for (i = 0; i < f.n; i++)
		assert_int_equal(f.it[i].planned, NOW + (time_t)(rank_of(&f.it[i]) / 80) * SPAN);
	assert_int_equal(max_window(&f, NULL, 0, 3), 240);
	assert_int_equal(res.last, NOW + 4 * SPAN);
	/* more members than orders: one each per window, never none */
	b.cap = 2;
	b.weight = 5;
	assert_int_equal(renewplan_compute(f.v, 3, &b, NOW, &res), 0);
	assert_int_equal(res.last, NOW + 2 * SPAN);
}

/* A window that opens later does not hold back one already open that
 * expires after it; nor is it planned before it opens. A budget of nothing
 * plans nothing: all late, the first at the earliest expiry. */
static void test_plan_later_windows_and_none(void **state)
{
	struct renewplan_item a = { .start = NOW - 60, .expiry = NOW + 9 * 86400, .host = "a" };
	struct renewplan_item c = { .start = NOW + 5000, .expiry = NOW + 86400, .host = "c" };
	struct renewplan_item d = { .start = NOW - 10, .expiry = NOW + 2 * 86400, .host = "d" };
	struct renewplan_item *v[] = { &a, &c, &d };
	struct renewplan_budget b = { .cap = 1, .weight = 1, .span = SPAN, .margin = MARGIN };
	struct renewplan_result res;

	assert_int_equal(renewplan_compute(v, 3, &b, NOW, &res), 0);
	/* d (open, expires first among the open) now; c when it opens and the
	 * window has room (NOW + 3h); a after it */
	assert_int_equal(d.planned, NOW);
	assert_int_equal(c.planned, NOW + SPAN);
	assert_int_equal(a.planned, NOW + 2 * SPAN);
	assert_int_equal(res.late, 0);

	b.cap = 0;
	assert_int_equal(renewplan_compute(v, 3, &b, NOW, &res), 0);
	assert_int_equal(res.late, 3);
	assert_int_equal(res.first_late, NOW + 86400);
	assert_string_equal(res.first_host, "c");

	/* nothing to plan */
	b.cap = 10;
	assert_int_equal(renewplan_compute(v, 0, &b, NOW, &res), 0);
	assert_int_equal(res.late, 0);
	assert_int_equal(res.last, 0);
}

/* A certificate already inside its margin is renewed at once and is not
 * counted short when the plan starts it as early as it can; one the plan
 * delays past expiry - margin is. */
static void test_plan_late_only_when_delayed(void **state)
{
	struct renewplan_item x = { .start = NOW - 600, .expiry = NOW + 600, .host = "x" };
	struct renewplan_item y = { .start = NOW - 600, .expiry = NOW + 700, .host = "y" };
	struct renewplan_item *v[] = { &y, &x };
	struct renewplan_budget b = { .cap = 1, .weight = 1, .span = SPAN, .margin = MARGIN };
	struct renewplan_result res;

	assert_int_equal(renewplan_compute(v, 2, &b, NOW, &res), 0);
	assert_int_equal(x.planned, NOW);
	assert_false(x.late);
	assert_int_equal(y.planned, NOW + SPAN);
	assert_true(y.late);
	assert_int_equal(res.late, 1);
	assert_int_equal(res.first_late, NOW + 700);
}

/* ---- the plan on the loop ------------------------------------------------ */

struct started {
	char host[16][32];
	size_t n;
};

static void cb_started(void *arg, const char *host)
{
	struct started *st = arg;

	if (st->n < 16)
		snprintf(st->host[st->n], sizeof(st->host[0]), "%s", host);
	st->n++;
}

static struct issuers *open_issuers(struct fx *f, const char *limits)
{
	char json[512], err[256] = "";
	struct issuers *is;

	snprintf(json, sizeof(json), "\"api_uri\":\"http://127.0.0.1:9/dir\"%s%s",
		 limits[0] ? "," : "", limits);
	fx_open(f, json);
	is = issuers_new(f->loop, f->cfg, f->st, &f->health, NULL, NULL, "node-a", err, sizeof(err));
	if (!is)
		fail_msg("issuers_new: %s", err);
	return is;
}

static void test_plan_on_the_loop(void **state)
{
	struct fx f;
	struct issuers *is = open_issuers(&f, "\"rate_limits\":{\"orders_per_3h\":10,"
					  "\"renewal_reserve\":0.2}");
	struct started st = { 0 };
	struct renewplan *p = renewplan_new(f.loop, is, cb_started, &st);
	struct metrics_buf b = { 0 };
	time_t now = time(NULL), first = 0;
	char host[32], want[128];
	int i;

	assert_non_null(p);
	/* 12 due, expiring a minute apart from tomorrow, held in reverse */
	for (i = 11; i >= 0; i--) {
		snprintf(host, sizeof(host), "h%02d.example.com", i);
		assert_int_equal(renewplan_hold(p, host, 0, now - 60, now + 86400 + i * 60, 0), 1);
	}
	assert_int_equal(st.n, 0);	/* never inside the call */
	fx_run_for(&f, 0.2);
	/* 10 - floor(10 * 0.2) = 8 now, earliest expiry first */
	assert_int_equal(st.n, 8);
	for (i = 0; i < 8; i++) {
		snprintf(host, sizeof(host), "h%02d.example.com", i);
		assert_string_equal(st.host[i], host);
	}
	assert_int_equal(renewplan_waiting(p), 4);
	assert_int_equal(renewplan_shortfall(p, &first), 0);

	/* an ARI renewal starts at once, whatever the budget */
	assert_int_equal(renewplan_hold(p, "ari.example.com", 0, now - 60, now + 86400, 1), 1);
	fx_run_for(&f, 0.2);
	assert_int_equal(st.n, 9);
	assert_string_equal(st.host[8], "ari.example.com");

	/* one expiring in 50 minutes: the 8 just started fill the window, so
	 * it would wait 3 hours: short, with its expiry as the date */
	assert_int_equal(renewplan_hold(p, "urgent.example.com", 0, now - 60, now + 3000, 0), 1);
	fx_run_for(&f, 0.2);
	assert_int_equal(st.n, 9);
	assert_int_equal(renewplan_shortfall(p, &first), 1);
	assert_int_equal(first, now + 3000);
	assert_int_equal(renewplan_waiting(p), 5);
	renewplan_metrics(p, &b);
	assert_non_null(strstr(b.data, "\nacme_spoa_renewal_shortfall 1\n"));
	snprintf(want, sizeof(want), "\nacme_spoa_renewal_shortfall_first_expiry_timestamp_seconds %lld\n",
		 (long long)(now + 3000));
	assert_non_null(strstr(b.data, want));
	assert_non_null(strstr(b.data, "\nacme_spoa_renewal_planned 5\n"));
	metrics_buf_free(&b);

	/* renewed elsewhere meanwhile: no longer short */
	renewplan_drop(p, "urgent.example.com");
	fx_run_for(&f, 0.2);
	assert_int_equal(renewplan_shortfall(p, &first), 0);
	assert_int_equal(first, 0);
	assert_int_equal(renewplan_waiting(p), 4);

	renewplan_free(p);
	issuers_free(is);
	fx_close(&f);
}

/* A CA without an orders limit: nothing to plan, the caller starts it. */
static void test_plan_without_limit(void **state)
{
	struct fx f;
	struct issuers *is = open_issuers(&f, "");
	struct started st = { 0 };
	struct renewplan *p = renewplan_new(f.loop, is, cb_started, &st);

	assert_int_equal(renewplan_hold(p, "a.example.com", 0, time(NULL) - 60, time(NULL) + 86400, 0), 0);
	fx_run_for(&f, 0.1);
	assert_int_equal(st.n, 0);
	assert_int_equal(renewplan_waiting(p), 0);
	renewplan_free(p);
	issuers_free(is);
	fx_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_1000_vs_300),
		cmocka_unit_test(test_plan_ari_exempt),
		cmocka_unit_test(test_plan_spent_no_reserve),
		cmocka_unit_test(test_plan_fleet_share),
		cmocka_unit_test(test_plan_later_windows_and_none),
		cmocka_unit_test(test_plan_late_only_when_delayed),
		cmocka_unit_test(test_plan_on_the_loop),
		cmocka_unit_test(test_plan_without_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
