/* SPDX-License-Identifier: Apache-2.0 */
/* The renewal plan (renewplan.h). The planner is a sweep forward in time
 * over one sliding window: the next slot is the earliest time the window
 * admits one more order, and it goes to the certificate whose window has
 * opened and that expires first (earliest deadline first). The plan on the
 * loop holds the due certificates of this node's share, plans them again
 * when they change (once per loop turn) and at least once a minute (other
 * nodes spend the same budget), and starts each at its time. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "core/issuers.h"
#include "core/members.h"
#include "core/ratelimit.h"
#include "core/renewplan.h"
#include "lib/heap.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define RP_RECHECK_S	60.0	/* plan again while renewals wait: the fleet spends too */
#define RP_SEEN_S	120	/* a renewal started here shows in the shared record
				 * within this (the record is read again every minute) */

/* ---- the planner --------------------------------------------------------- */

static int rp_item_less(const void *a, const void *b)
{
	const struct renewplan_item *x = a, *y = b;

	if (x->expiry != y->expiry)
		return x->expiry < y->expiry;
	return x->host && y->host && strcmp(x->host, y->host) < 0;
}

static void rp_item_index(void *e, size_t idx)
{
	/* items are only popped, never updated in place */
}

static int rp_item_start_cmp(const void *a, const void *b)
{
	const struct renewplan_item *x = *(struct renewplan_item *const *)a;
	const struct renewplan_item *y = *(struct renewplan_item *const *)b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Marks <it>, planned, as late when the plan, not its own dates, puts it
 * past the last moment its renewal can safely start. */
static void rp_settle(struct renewplan_item *it, time_t now, long margin,
		      struct renewplan_result *res)
{
	time_t earliest = it->start > now ? it->start : now;

	it->late = it->planned > it->expiry - margin && it->planned > earliest;
	if (it->late && (!res->late || it->expiry < res->first_late)) {
		res->first_late = it->expiry;
		res->first_host = it->host;
	}
	res->late += it->late;
	if (it->planned > res->last)
		res->last = it->planned;
}

int renewplan_compute(struct renewplan_item **v, size_t n, const struct renewplan_budget *b,
		      time_t now, struct renewplan_result *res)
{
	struct renewplan_item **rel = NULL, *it;
	time_t *qt = NULL, t = now;
	unsigned *qw = NULL, w = b->weight ? b->weight : 1, cap = b->cap;
	unsigned long sum = 0;
	size_t i, nrel = 0, next = 0, m = 0, lo = 0;
	struct heap h;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	heap_init(&h, rp_item_less, rp_item_index);
	rel = malloc((n ? n : 1) * sizeof(*rel));
	qt = malloc((b->nspent + n + 1) * sizeof(*qt));
	qw = malloc((b->nspent + n + 1) * sizeof(*qw));
	if (!rel || !qt || !qw)
		goto out;
	for (i = 0; i < n; i++) {
		if (!v[i]->exempt) {
			rel[nrel++] = v[i];
			continue;
		}
		/* the CA does not count it: its window opening is its time */
		v[i]->planned = v[i]->start > now ? v[i]->start : now;
		rp_settle(v[i], now, b->margin, res);
	}
	qsort(rel, nrel, sizeof(*rel), rp_item_start_cmp);
	for (i = 0; i < b->nspent; i++) {
		/* a stamp from a clock ahead of this one counts as now */
		qt[m] = b->spent[i] < now ? b->spent[i] : now;
		qw[m++] = 1;
		sum++;
	}
	if (cap && cap < w)
		cap = w;	/* more members than orders: one each per span */
	for (i = 0; i < nrel; i++) {
		if (!cap) {
			rel[i]->planned = 0;
			rel[i]->late = 1;
			if (!res->late || rel[i]->expiry < res->first_late) {
				res->first_late = rel[i]->expiry;
				res->first_host = rel[i]->host;
			}
			res->late++;
			continue;
		}
		/* the earliest time one more fits: the oldest orders leave at
		 * their time + span (as ratelimit_window_admits() counts) */
		for (;;) {
			while (lo < m && qt[lo] <= t - b->span)
				sum -= qw[lo++];
			if (sum + w <= cap)
				break;
			t = qt[lo] + b->span;
		}
		if (!h.n && rel[next]->start > t)
			t = rel[next]->start;	/* nothing open yet: the next window */
		while (next < nrel && rel[next]->start <= t)
			if (heap_push(&h, rel[next++]) == -1)
				goto out;
		it = heap_pop(&h);
		it->planned = t;
		rp_settle(it, now, b->margin, res);
		qt[m] = t;
		qw[m++] = w;
		sum += w;
	}
	rc = 0;
out:
	heap_clear(&h);
	free(rel);
	free(qt);
	free(qw);
	return rc;
}

/* ---- the plan on the loop ------------------------------------------------ */

struct rp_ent {
	struct renewplan_item it;	/* it.host is host below */
	int issuer;
	unsigned started:1;		/* its renewal was started; held until it is
					 * renewed (dropped) or due again (held) */
	char host[];
};

/* A renewal this node started, until the shared record shows it. */
struct rp_local {
	int issuer;
	time_t t;
};

struct renewplan {
	struct ev_loop *loop;
	struct issuers *iss;
	const struct members *members;
	renewplan_start_cb *start;
	void *arg;
	struct hmap ents;		/* host -> struct rp_ent */
	struct rp_local *local;
	size_t nlocal, caplocal;
	ev_timer timer;
	size_t waiting;			/* held, not started */
	struct renewplan_result res;	/* of the last planning, over every issuer */
	char first_host[256];
	size_t logged_late;		/* the last shortfall logged */
	time_t logged_first;
	int spread;			/* renewals wait for their planned time */
};

struct rp_collect {
	struct renewplan *p;
	struct rp_ent **v;
	size_t n;
};

static void rp_collect_cb(void *arg, const char *host, void *val)
{
	struct rp_collect *c = arg;

	c->v[c->n++] = val;
}

static void rp_date(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "%lld", (long long)t);
}

static void rp_kick(struct renewplan *p, double delay)
{
	ev_timer_stop(p->loop, &p->timer);
	ev_timer_set(&p->timer, delay, 0.);
	ev_timer_start(p->loop, &p->timer);
}

static int rp_time_cmp(const void *a, const void *b)
{
	time_t x = *(const time_t *)a, y = *(const time_t *)b;

	return x < y ? -1 : x > y;
}

/* The orders issuer <i>'s account already placed in the window: what the
 * shared record held when last read, and the renewals started here since
 * that the record may not show yet (the more of the two for the last
 * RP_SEEN_S, so that one order is never counted twice). Returns a malloc'd
 * sorted array (NULL when empty or out of memory) and its size in <n>. */
static time_t *rp_spent(struct renewplan *p, int i, const struct ratelimit_window *seen,
			time_t now, size_t *n)
{
	size_t k, cnt = 0, shared_recent = 0, local_recent = 0, extra;
	time_t *v;

	*n = 0;
	for (k = 0; k < p->nlocal; k++)
		local_recent += p->local[k].issuer == i;
	v = malloc(((seen ? seen->n : 0) + local_recent + 1) * sizeof(*v));
	if (!v)
		return NULL;
	for (k = 0; seen && k < seen->n; k++) {
		if (seen->t[k] <= now - RENEWPLAN_SPAN_S)
			continue;
		v[cnt++] = seen->t[k];
		shared_recent += seen->t[k] > now - RP_SEEN_S;
	}
	extra = local_recent > shared_recent ? local_recent - shared_recent : 0;
	/* the newest of this node's own starts are the ones not read back yet */
	for (k = p->nlocal; k > 0 && extra; k--)
		if (p->local[k - 1].issuer == i) {
			v[cnt++] = p->local[k - 1].t;
			extra--;
		}
	qsort(v, cnt, sizeof(*v), rp_time_cmp);
	*n = cnt;
	return v;
}

static void rp_local_add(struct renewplan *p, int issuer, time_t t)
{
	struct rp_local *l;

	if (p->nlocal == p->caplocal) {
		size_t cap = p->caplocal ? p->caplocal * 2 : 64;

		if (!(l = realloc(p->local, cap * sizeof(*l))))
			return;	/* counted once the shared record is read again */
		p->local = l;
		p->caplocal = cap;
	}
	p->local[p->nlocal].issuer = issuer;
	p->local[p->nlocal++].t = t;
}

static void rp_local_expire(struct renewplan *p, time_t now)
{
	size_t k = 0;

	while (k < p->nlocal && p->local[k].t <= now - RP_SEEN_S)
		k++;
	if (!k)
		return;
	memmove(p->local, p->local + k, (p->nlocal - k) * sizeof(*p->local));
	p->nlocal -= k;
}

/* Plans the items of issuer <i> among <all>; adds to <tot>. Returns 0 or -1. */
static int rp_plan_issuer(struct renewplan *p, int i, struct rp_ent **all, size_t n, time_t now,
			  struct renewplan_result *tot)
{
	struct ratelimit *rl = issuers_ratelimit(p->iss, (size_t)i);
	struct renewplan_item **v = malloc((n ? n : 1) * sizeof(*v));
	struct renewplan_budget b = { .span = RENEWPLAN_SPAN_S, .margin = RENEWPLAN_MARGIN_S };
	struct renewplan_result res;
	time_t *spent = NULL;
	double reserve = 0;
	unsigned limit;
	size_t k, cnt = 0;
	int rc = -1;

	if (!v)
		goto out;
	for (k = 0; k < n; k++)
		if (all[k]->issuer == i && !all[k]->started)
			v[cnt++] = &all[k]->it;
	if (!cnt) {
		rc = 0;
		goto out;
	}
	limit = rl ? ratelimit_orders_limit(rl, &reserve) : 0;
	if (!limit) {
		/* the budget was turned off (reload): nothing to wait for */
		for (k = 0; k < cnt; k++)
			v[k]->planned = now;
		rc = 0;
		goto out;
	}
	/* renewals are planned within what new names may use too: the
	 * reserve stays free, and as renewals are admitted up to the whole
	 * limit, an order placed between two plannings (a new name, another
	 * node) never makes a planned one refused. A reserve of 1 leaves new
	 * names nothing: renewals are planned on the whole limit. */
	b.cap = ratelimit_allowed(limit, reserve, RATELIMIT_NEW);
	if (!b.cap)
		b.cap = limit;
	b.weight = p->members && members_count(p->members) > 1 ?
		   (unsigned)members_count(p->members) : 1;
	spent = rp_spent(p, i, ratelimit_orders_seen(rl), now, &b.nspent);
	b.spent = spent;
	if (renewplan_compute(v, cnt, &b, now, &res) == -1)
		goto out;
	if (res.late && (!tot->late || res.first_late < tot->first_late)) {
		tot->first_late = res.first_late;
		tot->first_host = res.first_host;
	}
	tot->late += res.late;
	if (res.last > tot->last)
		tot->last = res.last;
	rc = 0;
out:
	free(spent);
	free(v);
	return rc;
}

/* Says what changed in the shortfall, once per change. */
static void rp_log(struct renewplan *p, time_t now)
{
	char when[32];

	if (p->res.late == p->logged_late && p->res.first_late == p->logged_first)
		return;
	if (p->res.late) {
		rp_date(p->res.first_late, when, sizeof(when));
		log_warn("renewal plan: %zu certificate(s) would expire unrenewed: the CA's orders "
			 "budget (orders_per_3h) cannot renew them in time; the first expires %s "
			 "(host=%s)", p->res.late, when, p->first_host);
	} else {
		log_info("renewal plan: every due certificate is planned before its expiry");
	}
	p->logged_late = p->res.late;
	p->logged_first = p->res.first_late;
}

/* Plan order: by planned time, then earliest expiry first. */
static int rp_ent_plan_cmp(const void *a, const void *b)
{
	const struct rp_ent *x = *(struct rp_ent *const *)a, *y = *(struct rp_ent *const *)b;

	if (x->it.planned != y->it.planned)
		return x->it.planned < y->it.planned ? -1 : 1;
	return rp_item_less(&x->it, &y->it) ? -1 : rp_item_less(&y->it, &x->it);
}

static void cb_rp_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct renewplan *p = w->data;
	struct rp_collect c = { p, NULL, 0 };
	struct renewplan_result tot = { 0 };
	time_t now = time(NULL), next = 0;
	size_t k, nstart = 0, issuers = issuers_count(p->iss);
	char when[32];
	int i, failed = 0;

	rp_local_expire(p, now);
	c.v = malloc((p->ents.count + 1) * sizeof(*c.v));
	if (!c.v) {
		log_err("renewal plan: out of memory");
		rp_kick(p, RP_RECHECK_S);
		return;
	}
	hmap_foreach(&p->ents, rp_collect_cb, &c);
	for (i = 0; (size_t)i < issuers; i++)
		failed |= rp_plan_issuer(p, i, c.v, c.n, now, &tot) == -1;
	if (failed)
		log_err("renewal plan: out of memory: planned in part");
	p->res = tot;
	snprintf(p->first_host, sizeof(p->first_host), "%s", tot.first_host ? tot.first_host : "");
	p->res.first_host = p->first_host;
	/* due ones start now, in plan order */
	p->waiting = 0;
	for (k = 0; k < c.n; k++) {
		struct rp_ent *e = c.v[k];

		if (e->started)
			continue;
		if (e->it.planned > now) {
			p->waiting++;
			if (!next || e->it.planned < next)
				next = e->it.planned;
			continue;
		}
		c.v[nstart++] = e;
	}
	if (p->waiting && !p->spread) {
		rp_date(tot.last, when, sizeof(when));
		log_info("renewal plan: more renewals due than the CA's orders budget admits: %zu "
			 "spread until %s, earliest expiry first", p->waiting, when);
	}
	p->spread = p->waiting > 0;
	rp_log(p, now);
	qsort(c.v, nstart, sizeof(*c.v), rp_ent_plan_cmp);
	for (k = 0; k < nstart; k++) {
		struct rp_ent *e = c.v[k];

		e->started = 1;
		if (!e->it.exempt)
			rp_local_add(p, e->issuer, now);
		p->start(p->arg, e->host);
	}
	free(c.v);
	if (p->waiting)
		rp_kick(p, next - now < RP_RECHECK_S ? (double)(next - now) : RP_RECHECK_S);
	else
		ev_timer_stop(p->loop, &p->timer);
}

int renewplan_hold(struct renewplan *p, const char *host, int issuer, time_t due, time_t expiry,
		   int exempt)
{
	struct ratelimit *rl;
	struct rp_ent *e;
	size_t hlen = strlen(host);

	if (issuer < 0 || (size_t)issuer >= issuers_count(p->iss))
		issuer = 0;
	rl = issuers_ratelimit(p->iss, (size_t)issuer);
	if (!rl || !ratelimit_orders_limit(rl, NULL)) {
		renewplan_drop(p, host);
		return 0;
	}
	e = hmap_get(&p->ents, host);
	if (!e) {
		e = calloc(1, sizeof(*e) + hlen + 1);
		if (!e || hmap_put(&p->ents, host, e, NULL) == -1) {
			free(e);
			log_err("host=%s out of memory: renewed without the plan", host);
			return -1;
		}
		memcpy(e->host, host, hlen + 1);
		e->it.host = e->host;
		e->started = 1;		/* "changed" below */
	}
	if (e->started || e->it.start != due || e->it.expiry != expiry ||
	    e->it.exempt != !!exempt || e->issuer != issuer) {
		e->started = 0;
		e->it.start = due;
		e->it.expiry = expiry;
		e->it.exempt = !!exempt;
		e->issuer = issuer;
		rp_kick(p, 0.);	/* once per loop turn, however many changed */
	}
	return 1;
}

void renewplan_drop(struct renewplan *p, const char *host)
{
	struct rp_ent *e = p->ents.count ? hmap_del(&p->ents, host) : NULL;

	if (!e)
		return;
	if (!e->started)
		rp_kick(p, 0.);
	free(e);
}

void renewplan_set_members(struct renewplan *p, const struct members *m)
{
	p->members = m;
	if (p->ents.count)
		rp_kick(p, 0.);
}

size_t renewplan_waiting(const struct renewplan *p)
{
	return p->waiting;
}

size_t renewplan_shortfall(const struct renewplan *p, time_t *first)
{
	if (first)
		*first = p->res.first_late;
	return p->res.late;
}

void renewplan_metrics(const struct renewplan *p, struct metrics_buf *b)
{
	metrics_header(b, "acme_spoa_renewal_planned", "gauge",
		       "Due renewals of this node's share waiting for their planned time "
		       "(the CA's orders budget spreads them).");
	metrics_value(b, "acme_spoa_renewal_planned", NULL, (double)p->waiting);
	metrics_header(b, "acme_spoa_renewal_plan_end_timestamp_seconds", "gauge",
		       "When the last planned renewal starts (0: none waits).");
	metrics_value(b, "acme_spoa_renewal_plan_end_timestamp_seconds", NULL,
		      p->waiting ? (double)p->res.last : 0.);
	metrics_header(b, "acme_spoa_renewal_shortfall", "gauge",
		       "Certificates of this node's share that would expire unrenewed: the "
		       "orders budget cannot renew them before expiry.");
	metrics_value(b, "acme_spoa_renewal_shortfall", NULL, (double)p->res.late);
	metrics_header(b, "acme_spoa_renewal_shortfall_first_expiry_timestamp_seconds", "gauge",
		       "When the first certificate would expire unrenewed (0: none).");
	metrics_value(b, "acme_spoa_renewal_shortfall_first_expiry_timestamp_seconds", NULL,
		      p->res.late ? (double)p->res.first_late : 0.);
}

struct renewplan *renewplan_new(struct ev_loop *loop, struct issuers *iss,
				renewplan_start_cb *start, void *arg)
{
	struct renewplan *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->loop = loop;
	p->iss = iss;
	p->start = start;
	p->arg = arg;
	hmap_init(&p->ents);
	ev_init(&p->timer, cb_rp_timer);
	p->timer.data = p;
	return p;
}

void renewplan_free(struct renewplan *p)
{
	if (!p)
		return;
	ev_timer_stop(p->loop, &p->timer);
	hmap_clear(&p->ents, free);
	free(p->local);
	free(p);
}
