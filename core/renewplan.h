/* SPDX-License-Identifier: Apache-2.0 */
/* The renewal plan: when more renewals are due than the CA's orders budget
 * (rate_limits.orders_per_3h) admits, they are spread inside their renewal
 * windows, earliest expiry first, so that renewals never need more orders in
 * any 3 hours than the budget gives them and the CA never refuses one as
 * rateLimited. When the budget cannot renew every due certificate before
 * its expiry, the plan says so ahead of time: a warning (once per change),
 * and the shortfall metrics (count, and the date the first certificate
 * would expire unrenewed).
 *
 * The budget renewals are planned against, per issuer (an ACME account):
 * orders_per_3h minus the renewal_reserve part (what new names may use;
 * the whole limit with a reserve of 1), counting every order the account
 * already placed in the sliding window (the shared rl/<acct>/orders record
 * every node of the fleet spends, as this node last read it) and the
 * renewals this node just started. The reserve stays free: an order placed
 * between two plannings never makes a planned renewal refused. ARI renewals (sending `replaces`) are exempt: they start at their
 * due time and count for nothing. In a fleet of N live members each node
 * plans its own share (rendezvous hashing gives each about 1/N of the due
 * certificates) at 1/N of that budget, so that the fleet together keeps
 * within it; each node's shortfall is its share's.
 *
 * The planner itself (renewplan_compute) is pure, for tests; the rest runs
 * it on the loop over the due certificates the scheduler (renew.c) hands
 * over, and starts each renewal at its planned time through a callback. */
#ifndef ACME_SPOA_RENEWPLAN_H
#define ACME_SPOA_RENEWPLAN_H

#include <stddef.h>
#include <time.h>

struct ev_loop;
struct issuers;
struct members;
struct metrics_buf;

/* A planned renewal must start at least this long before its certificate
 * expires (time for the order, its validation and a retry). */
#define RENEWPLAN_MARGIN_S	3600
/* The span of the CA's orders budget (orders_per_3h). */
#define RENEWPLAN_SPAN_S	(3 * 3600)

/* ---- the planner: pure --------------------------------------------------- */

/* One due certificate to plan. */
struct renewplan_item {
	time_t start;		/* its renewal window opens (its due time) */
	time_t expiry;		/* its certificate's not_after */
	unsigned exempt:1;	/* ARI renewal: not counted by the CA */
	unsigned late:1;	/* out: planned after expiry - margin */
	time_t planned;		/* out: when its renewal starts */
	const char *host;	/* ties between equal expiries; logs */
};

struct renewplan_budget {
	unsigned cap;		/* orders renewals may take in any span (0: none) */
	unsigned weight;	/* the members sharing it: each planned renewal counts
				 * <weight> against <cap>, each spent order 1 */
	const time_t *spent;	/* orders already placed, oldest first, all <= now */
	size_t nspent;
	long span;		/* RENEWPLAN_SPAN_S */
	long margin;		/* RENEWPLAN_MARGIN_S */
};

struct renewplan_result {
	size_t late;		/* certificates that would expire unrenewed */
	time_t first_late;	/* the earliest expiry among them, 0 when none */
	const char *first_host;	/* the host of that one (an item's), NULL when none */
	time_t last;		/* the latest planned time, 0 when nothing is planned */
};

/* Plans the <n> items of <v> from <now>: an exempt one at max(<now>, its
 * start); the others one at a time, earliest expiry first among those whose
 * window has opened, each at the earliest time, never earlier than the one
 * planned before it, at which the weighted count of orders in the sliding
 * span ending there (spent and planned) stays within <b>->cap. An item is
 * late when the plan puts it after expiry - <b>->margin and after the
 * earliest it could start. A <cap> of 0 plans nothing (every counted item
 * late, planned at 0). Sets each item's <planned> and <late> and <res>.
 * Returns 0, or -1 when out of memory (then neither is to be trusted). */
int renewplan_compute(struct renewplan_item **v, size_t n, const struct renewplan_budget *b,
		      time_t now, struct renewplan_result *res);

/* ---- the plan on the loop ------------------------------------------------ */

struct renewplan;

/* Starts <host>'s renewal (its planned time has come). It must not call
 * renewplan_hold() nor renewplan_drop(). */
typedef void renewplan_start_cb(void *arg, const char *host);

/* Creates an empty plan over the issuers <iss> (borrowed: their budgets and
 * what each last read of its account's orders). <start> runs on the loop,
 * never inside a call of this module's API. Returns NULL when out of memory. */
struct renewplan *renewplan_new(struct ev_loop *loop, struct issuers *iss,
				renewplan_start_cb *start, void *arg);

/* Stops the timer and frees <p>. Accepts NULL. */
void renewplan_free(struct renewplan *p);

/* Plans each node's share against its part of the budget (<m> borrowed,
 * NULL: this node alone). */
void renewplan_set_members(struct renewplan *p, const struct members *m);

/* <host> is due (since <due>) and renewed by this node; its certificate,
 * from issuer <issuer> (an index of <iss>), expires at <expiry>; <exempt>
 * when its renewal sends `replaces` to a CA with ARI. Returns 1 when the plan
 * holds it (its renewal starts through <start> at its planned time: the
 * caller waits), 0 when that issuer's orders budget is off (the caller starts
 * it now), -1 when out of memory (likewise). Called again for a host the plan
 * holds, it updates it (a renewal started that did not end in a new
 * certificate is planned again). */
int renewplan_hold(struct renewplan *p, const char *host, int issuer, time_t due, time_t expiry,
		   int exempt);

/* <host> is no longer due here (renewed, removed, another member's). */
void renewplan_drop(struct renewplan *p, const char *host);

/* Certificates held and not yet started; the shortfall (certificates that
 * would expire unrenewed) and the first expiry among them (0 when none).
 * As of the last planning. For metrics and tests. */
size_t renewplan_waiting(const struct renewplan *p);
size_t renewplan_shortfall(const struct renewplan *p, time_t *first);

/* Appends the plan's metrics to <b>. */
void renewplan_metrics(const struct renewplan *p, struct metrics_buf *b);

#endif
