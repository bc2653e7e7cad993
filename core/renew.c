/* SPDX-License-Identifier: Apache-2.0 */
/* The renewal scheduler (renew.h). Each certificate the store holds has an
 * entry here, in a min-heap by wake time (the earlier of its due time and
 * the next ARI question); one timer sits on the heap's top. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>

#include "acme/acme.h"
#include "core/certstore.h"
#include "core/config.h"
#include "core/health.h"
#include "core/issuers.h"
#include "core/jobs.h"
#include "core/members.h"
#include "core/renew.h"
#include "core/renewplan.h"
#include "lib/heap.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "storage/storage.h"

#define RENEW_RECHECK_S		3600.0
#define RENEW_ARI_DEFAULT_S	(6 * 3600)
#define RENEW_ARI_RETRY_S	(15 * 60)
#define RENEW_ARI_PER_PASS	64	/* renewalInfo requests started by one pass */
#define RENEW_ARI_SPREAD_S	30

/* What the scheduler knows of one host's certificate: kept small, one per
 * certificate held (the certificate itself is the store's). */
struct renew_ent {
	uint64_t serial_hash;		/* of the certificate indexed (FNV-1a of serial_hex) */
	time_t not_before, not_after;
	time_t ari_start, ari_end;	/* 0 when unknown */
	time_t ari_next;		/* when to ask the CA again */
	time_t renewed_at;		/* when this host was last renewed (renewals/<host>) */
	time_t due;			/* renewal due time */
	time_t wake;			/* min(due, ari_next): key in the heap */
	size_t hidx;			/* position in the heap, HEAP_NONE when out */
	uint64_t host_hash;		/* members_key_hash(host): its owner in the fleet */
	unsigned renewed_at_pending:1;	/* "renewals/<host>" being read */
	unsigned owned:1;		/* this node renews it (members_owns) */
	unsigned parked:1;		/* due, another member's: out of the heap until
					 * it is renewed or the members change */
	char host[];
};

struct renew {
	struct ev_loop *loop;
	const struct config *cfg;
	struct storage *st;
	struct issuers *iss;
	struct certstore *cs;
	struct jobs *jobs;
	struct health *health;
	struct hmap ents;		/* host -> struct renew_ent */
	struct heap due;		/* entries by wake time */
	struct members *members;	/* NULL: this node renews everything */
	struct renewplan *plan;		/* due renewals against the CA's orders budget */
	size_t share;			/* entries owned */
	ev_timer timer;
	int started;
};

static void renew_schedule(struct renew *r);

static uint64_t renew_serial_hash(const char *serial)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *serial; serial++)
		h = (h ^ (unsigned char)*serial) * 1099511628211ULL;
	return h;
}

static int renew_wake_less(const void *a, const void *b)
{
	return ((const struct renew_ent *)a)->wake < ((const struct renew_ent *)b)->wake;
}

/* The client of the CA that issued <host>'s certificate (its ARI). */
static struct acme_client *renew_acme(struct renew *r, const char *host)
{
	struct certstore_cert *c = certstore_get(r->cs, host);

	return issuers_acme_for_cn(r->iss, c ? c->info.issuer_cn : NULL);
}

static void renew_wake_set_index(void *e, size_t idx)
{
	((struct renew_ent *)e)->hidx = idx;
}

/* (Re)places <e> in the wake-time index, not before <floor>. */
static void renew_index(struct renew *r, struct renew_ent *e, time_t floor)
{
	time_t wake = e->due;

	if (acme_has_ari(renew_acme(r, e->host)) && e->ari_next < wake)
		wake = e->ari_next;
	if (wake < floor)
		wake = floor;
	e->wake = wake;
	e->parked = 0;
	if (e->hidx != HEAP_NONE)
		heap_update(&r->due, e->hidx);
	else if (heap_push(&r->due, e) == -1)
		log_err("host=%s out of memory: not scheduled for renewal", e->host);
}

/* Computes <e>'s due time from its dates, renew_threshold_days and ARI, and
 * indexes it. */
static void renew_compute(struct renew *r, struct renew_ent *e)
{
	time_t nb = e->not_before, na = e->not_after;
	time_t life = na > nb ? na - nb : 0;
	time_t by_threshold = na - (time_t)r->cfg->renew_threshold_days * 86400;
	time_t by_fraction = nb + life - life / 3;
	time_t due = by_threshold < by_fraction ? by_threshold : by_fraction;

	/* A threshold longer than the lifetime makes every new certificate due at
	 * once: renewed once, it must not be renewed again in a loop, so a host
	 * renewed lately waits a third of the lifetime before the next one. */
	if (e->renewed_at && due < e->renewed_at + life / 3)
		due = e->renewed_at + life / 3;
	if (e->ari_start && e->ari_end >= e->ari_start) {
		/* a fixed point in the window, spread over hosts (RFC 9773 §4.2) */
		time_t span = e->ari_end - e->ari_start, ari_due = e->ari_start;
		unsigned h = 0;
		const char *p;

		for (p = e->host; *p; p++)
			h = h * 31 + (unsigned char)*p;
		if (span > 0)
			ari_due += (time_t)(h % (unsigned)(span > 0x7fffffff ? 0x7fffffff : span));
		if (ari_due < due)
			due = ari_due;
	}
	e->due = due;
	if (due > time(NULL))
		renewplan_drop(r->plan, e->host);	/* renewed, or due later now */
	renew_index(r, e, 0);
}

static void renew_ent_free(struct renew *r, struct renew_ent *e)
{
	if (!e)
		return;
	r->share -= e->owned;
	renewplan_drop(r->plan, e->host);
	if (e->hidx != HEAP_NONE)
		heap_remove(&r->due, e->hidx);
	free(e);
}

/* ---- the store's events --------------------------------------------------- */

static void cb_renew_storage_log(void *arg, struct storage_res *res)
{
	struct renew *r = arg;

	health_storage_result(r->health, res);
	if (res->rc == -1)
		log_err("%s", res->err);
}

/* "renewals/<host>": when <host> was last renewed, against renewal loops. */
static void cb_renew_renewed_at(void *arg, struct storage_res *res)
{
	struct renew *r = arg;
	struct renew_ent *e = hmap_get(&r->ents, res->key + strlen("renewals/"));
	json_int_t t = 0;
	json_t *j;

	health_storage_result(r->health, res);
	if (!e)
		return;
	e->renewed_at_pending = 0;
	if (res->rc == 0 && (j = json_loadb(res->val, res->len, 0, NULL))) {
		if (json_unpack(j, "{s:I}", "renewed_at", &t) == 0 && (time_t)t > e->renewed_at)
			e->renewed_at = (time_t)t;
		json_decref(j);
	}
	renew_compute(r, e);
	renew_schedule(r);
}

void renew_installed(struct renew *r, const struct certstore_cert *c)
{
	struct renew_ent *e = hmap_get(&r->ents, c->host);
	uint64_t serial_hash = renew_serial_hash(c->info.serial_hex);
	char key[STORAGE_KEY_MAX];
	size_t hlen = strlen(c->host);
	time_t life;

	if (!e) {
		e = calloc(1, sizeof(*e) + hlen + 1);
		if (!e || hmap_put(&r->ents, c->host, e, NULL) == -1) {
			free(e);
			log_err("host=%s out of memory: not scheduled for renewal", c->host);
			return;
		}
		memcpy(e->host, c->host, hlen + 1);
		e->hidx = HEAP_NONE;
		e->host_hash = members_key_hash(e->host);
		e->owned = !r->members || members_owns(r->members, e->host_hash);
		r->share += e->owned;
	} else if (e->serial_hash != serial_hash || e->not_before != c->info.not_before ||
		   e->not_after != c->info.not_after) {
		/* a new certificate, or its facts corrected from its PEM (a
		 * record's were wrong): the ARI facts learnt are not its own */
		e->ari_start = e->ari_end = e->ari_next = 0;
	}
	e->serial_hash = serial_hash;
	e->not_before = c->info.not_before;
	e->not_after = c->info.not_after;
	e->renewed_at_pending = 0;
	renew_compute(r, e);
	/* Only a certificate the threshold makes due within a third of its life
	 * can loop: its last renewal time decides, so read it before the pass. */
	life = e->not_after - e->not_before;
	if (life > 0 && e->due < e->not_before + life / 3 && !e->renewed_at) {
		e->renewed_at_pending = 1;
		snprintf(key, sizeof(key), "renewals/%s", e->host);
		storage_get(r->st, key, cb_renew_renewed_at, r);
	}
	if (r->started)
		renew_schedule(r);
}

void renew_removed(struct renew *r, const char *host)
{
	renew_ent_free(r, hmap_del(&r->ents, host));
}

void renew_renewed(struct renew *r, const char *host, time_t t)
{
	char key[STORAGE_KEY_MAX], val[64];
	struct renew_ent *e = hmap_get(&r->ents, host);

	if (e)
		e->renewed_at = t;
	snprintf(key, sizeof(key), "renewals/%s", host);
	snprintf(val, sizeof(val), "{\"renewed_at\":%lld}", (long long)t);
	storage_put(r->st, key, val, strlen(val), 0, cb_renew_storage_log, r);
}

void renew_forget(struct renew *r, const char *host)
{
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "renewals/%s", host);
	storage_del(r->st, key, NULL, NULL);
}

/* ---- the timer and the passes -------------------------------------------- */

/* Re-arms the timer on the earliest wake time (at most an hour away). */
static void renew_schedule(struct renew *r)
{
	struct renew_ent *e = heap_peek(&r->due);
	double delay = RENEW_RECHECK_S;

	if (e) {
		delay = (double)(e->wake - time(NULL));
		if (delay < 0)
			delay = 0;
		if (delay > RENEW_RECHECK_S)
			delay = RENEW_RECHECK_S;
	}
	/* a pass already due sooner stays: thousands of installs a second
	 * (the background read, a take-over) must not keep pushing it back */
	if (ev_is_active(&r->timer) && ev_timer_remaining(r->loop, &r->timer) <= delay + 0.5)
		return;
	ev_timer_stop(r->loop, &r->timer);
	ev_timer_set(&r->timer, delay + 0.5, 0.);
	ev_timer_start(r->loop, &r->timer);
}

struct renew_ari_req {
	struct renew *r;
	char host[CERTSTORE_HOST_MAX];
	char serial[130];
};

static void renew_ari_done(void *arg, int ok, time_t start, time_t end, long retry_after,
			   const char *err)
{
	struct renew_ari_req *q = arg;
	struct renew_ent *e = hmap_get(&q->r->ents, q->host);
	struct certstore_cert *c = certstore_get(q->r->cs, q->host);
	time_t now = time(NULL);

	if (!e || !c || strcmp(c->info.serial_hex, q->serial) != 0)
		goto out;	/* replaced meanwhile */
	if (!ok) {
		log_warn("host=%s renewal info not available: %s", q->host, err ? err : "?");
		e->ari_next = now + RENEW_ARI_RETRY_S;
		goto out;
	}
	e->ari_start = start;
	e->ari_end = end;
	e->ari_next = now + (retry_after > 0 ? retry_after : RENEW_ARI_DEFAULT_S);
	renew_compute(q->r, e);
	log_debug("host=%s ARI window %ld..%ld", q->host, (long)start, (long)end);
out:
	renew_schedule(q->r);
	free(q);
}

static void renew_ari_ask(struct renew *r, struct renew_ent *e, time_t now)
{
	struct certstore_cert *c = certstore_get(r->cs, e->host);
	struct renew_ari_req *q;

	e->ari_next = now + RENEW_ARI_RETRY_S;	/* at most one request in flight */
	if (!c || !(q = calloc(1, sizeof(*q))))
		return;
	q->r = r;
	snprintf(q->host, sizeof(q->host), "%s", e->host);
	snprintf(q->serial, sizeof(q->serial), "%s", c->info.serial_hex);
	if (acme_renewal_info_id(issuers_acme_for_cn(r->iss, c->info.issuer_cn), c->info.ari_cert_id, renew_ari_done, q) == -1)
		free(q);
}

/* Hands due <e> to the renewal plan. Returns 1 when the plan starts it
 * (renewplan_hold()), else 0: it starts now. */
static int renew_plan_hold(struct renew *r, const struct renew_ent *e)
{
	struct certstore_cert *c = certstore_get(r->cs, e->host);
	const char *cn = c ? c->info.issuer_cn : NULL;
	/* as jobs counts it: an ARI renewal sends `replaces`, which the CA exempts */
	int exempt = c && c->info.ari_cert_id[0] && acme_has_ari(issuers_acme_for_cn(r->iss, cn));

	return renewplan_hold(r->plan, e->host, c ? issuers_for_cn(r->iss, cn) : 0, e->due,
			      e->not_after, exempt) == 1;
}

/* The plan's time for <host> has come. */
static void cb_renew_planned(void *arg, const char *host)
{
	struct renew *r = arg;

	if (!jobs_active(r->jobs, host))
		jobs_issue(r->jobs, host, 1, 0, NULL);
}

/* One certificate whose time has come (or every one when <force>): asks ARI,
 * starts its renewal, and puts it back with its next wake time. Returns 1
 * when a renewal started. */
static int renew_one(struct renew *r, struct renew_ent *e, time_t now, int force,
		     unsigned *ari_started, size_t *skipped)
{
	time_t until = 0, floor = 0;
	int started = 0;

	if (!force && !e->owned) {
		/* another member's: it asks the CA and renews. Due, it waits out
		 * of the index until it is renewed (installed again) or the
		 * members change (renew_members_changed); otherwise it comes
		 * back at its due time, never for ARI. */
		if (e->ari_next <= now)
			e->ari_next = now + RENEW_ARI_DEFAULT_S;
		if (e->due <= now) {
			heap_remove(&r->due, e->hidx);
			e->parked = 1;
		} else {
			renew_index(r, e, 0);
		}
		return 0;
	}
	if (acme_has_ari(renew_acme(r, e->host)) && e->ari_next <= now) {
		if (*ari_started >= RENEW_ARI_PER_PASS) {
			/* thousands of certificates: ask the CA a slice at a time */
			e->ari_next = now + RENEW_ARI_SPREAD_S;
		} else {
			(*ari_started)++;
			renew_ari_ask(r, e, now);
		}
	}
	if (jobs_active(r->jobs, e->host) || e->renewed_at_pending) {
		floor = now + (time_t)RENEW_RECHECK_S;	/* the job's end re-indexes it */
	} else if (force || e->due <= now) {
		if (!force && jobs_backoff_active(r->jobs, e->host, &until)) {
			(*skipped)++;
			floor = until;
		} else if (!force && renew_plan_hold(r, e)) {
			floor = now + (time_t)RENEW_RECHECK_S;	/* the plan starts it in time */
		} else {
			/* one failing renewal never stops the others */
			started = jobs_issue(r->jobs, e->host, 1, 0, NULL) == 0;
			if (started)
				log_info("host=%s renewal due: queued", e->host);
			floor = now + (time_t)RENEW_RECHECK_S;
		}
	}
	renew_index(r, e, floor);
	return started;
}

struct renew_all {
	struct renew_ent **v;
	size_t n;
};

static void renew_all_cb(void *arg, const char *host, void *val)
{
	struct renew_all *a = arg;

	a->v[a->n++] = val;
}

void renew_pass(struct renew *r, int force_all)
{
	time_t now = time(NULL);
	size_t i, started = 0, skipped = 0;
	unsigned ari_started = 0;
	struct renew_all a = { 0 };
	struct renew_ent *e;

	if (force_all) {
		/* an operator's request: every certificate, once */
		a.v = calloc(r->ents.count + 1, sizeof(*a.v));
		if (!a.v)
			goto out;
		hmap_foreach(&r->ents, renew_all_cb, &a);
		for (i = 0; i < a.n; i++)
			started += renew_one(r, a.v[i], now, 1, &ari_started, &skipped);
		free(a.v);
	} else {
		/* re-indexing puts each one later than <now>: the loop ends */
		while ((e = heap_peek(&r->due)) && e->wake <= now) {
			started += renew_one(r, e, now, 0, &ari_started, &skipped);
			if (!e->parked && e->wake <= now)
				renew_index(r, e, now + (time_t)RENEW_RECHECK_S);
		}
	}
	if (started || skipped)
		log_info("renewal pass: %zu started, %zu waiting for backoff, %zu certificates",
			 started, skipped, certstore_count(r->cs));
out:
	renew_schedule(r);
}

static void cb_renew_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	renew_pass(w->data, 0);
}

static void renew_recompute_cb(void *arg, const char *host, void *val)
{
	renew_compute(arg, val);
}

static void renew_owner_cb(void *arg, const char *host, void *val)
{
	struct renew *r = arg;
	struct renew_ent *e = val;
	unsigned owned = members_owns(r->members, e->host_hash);

	if (owned == e->owned)
		return;
	e->owned = owned;
	if (!owned)
		renewplan_drop(r->plan, e->host);
	if (owned)
		r->share++;
	else
		r->share--;
	if (owned && e->parked)
		renew_index(r, e, 0);	/* due: renewed by the next pass */
}

void renew_members_changed(struct renew *r)
{
	if (!r->members)
		return;
	/* one hash per member and certificate, in memory, no storage work,
	 * and only when a node joins or leaves; the due ones another member
	 * owned (parked) go back in the index if they are this node's now */
	hmap_foreach(&r->ents, renew_owner_cb, r);
	if (r->started)
		renew_schedule(r);
}

void renew_set_members(struct renew *r, struct members *m)
{
	r->members = m;
	renewplan_set_members(r->plan, m);
	renew_members_changed(r);
}

struct renewplan *renew_plan(const struct renew *r)
{
	return r->plan;
}

size_t renew_share(const struct renew *r)
{
	return r->share;
}

const char *renew_owner(const struct renew *r, const char *host)
{
	return r->members ? members_owner(r->members, members_key_hash(host)) : NULL;
}

void renew_reload(struct renew *r)
{
	hmap_foreach(&r->ents, renew_recompute_cb, r);
	renew_schedule(r);
}

void renew_start(struct renew *r)
{
	r->started = 1;
	renew_schedule(r);
}

const char *renew_first(const struct renew *r, time_t *wake)
{
	struct renew_ent *e = heap_peek(&r->due);

	if (e && wake)
		*wake = e->wake;
	return e ? e->host : NULL;
}

int renew_times(const struct renew *r, const char *host, time_t *due, time_t *wake)
{
	struct renew_ent *e = hmap_get(&r->ents, host);

	if (!e || e->hidx == HEAP_NONE)
		return -1;
	*due = e->due;
	*wake = e->wake;
	return 0;
}

struct renew *renew_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
			struct issuers *iss, struct certstore *cs, struct jobs *jobs,
			struct health *health)
{
	struct renew *r = calloc(1, sizeof(*r));

	if (!r)
		goto out;
	r->loop = loop;
	r->cfg = cfg;
	r->st = st;
	r->iss = iss;
	r->cs = cs;
	r->jobs = jobs;
	r->health = health;
	r->plan = renewplan_new(loop, iss, cb_renew_planned, r);
	if (!r->plan) {
		free(r);
		r = NULL;
		goto out;
	}
	hmap_init(&r->ents);
	heap_init(&r->due, renew_wake_less, renew_wake_set_index);
	ev_init(&r->timer, cb_renew_timer);
	r->timer.data = r;
out:
	return r;
}

static void renew_ent_free_cb(void *p)
{
	free(p);
}

void renew_free(struct renew *r)
{
	if (!r)
		return;
	ev_timer_stop(r->loop, &r->timer);
	heap_clear(&r->due);
	hmap_clear(&r->ents, renew_ent_free_cb);
	renewplan_free(r->plan);
	free(r);
}
