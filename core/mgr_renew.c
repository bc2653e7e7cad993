/* The renewal scheduler. A certificate is due when fewer than
 * renew_threshold_days remain, or less than a third of its lifetime remains
 * (safe for 6-day certificates), or when the CA's ARI window (RFC 9773) has
 * opened. Certificates sit in a min-heap by wake time (the earlier of the due
 * time and the next ARI question); one timer sits on the heap's top, so a
 * pass touches only the certificates whose time has come, never them all.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acme/acme.h"
#include "core/config.h"
#include "lib/log.h"
#include "core/mgr_int.h"

#define RENEW_RECHECK_S		3600.0
#define RENEW_ARI_DEFAULT_S	(6 * 3600)
#define RENEW_ARI_RETRY_S	(15 * 60)
#define RENEW_ARI_PER_PASS	64	/* renewalInfo requests started by one pass */
#define RENEW_ARI_SPREAD_S	30

static int mgr_wake_less(const void *a, const void *b);
static void mgr_wake_set_index(void *e, size_t idx);

static void mgr_renew_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mgr *m = w->data;

	mgr_renew_pass(m, 0);
	mgr_renew_schedule(m);
}

void mgr_renew_init(struct mgr *m)
{
	heap_init(&m->due, mgr_wake_less, mgr_wake_set_index);
	ev_init(&m->renew_timer, mgr_renew_cb);
	m->renew_timer.data = m;
}

void mgr_renew_stop(struct mgr *m)
{
	ev_timer_stop(m->loop, &m->renew_timer);
}

void mgr_renew_compute(struct mgr *m, struct mgr_cert *c)
{
	time_t nb = c->info.not_before, na = c->info.not_after;
	time_t life = na > nb ? na - nb : 0;
	time_t by_threshold = na - (time_t)m->cfg->renew_threshold_days * 86400;
	time_t by_fraction = nb + life - life / 3;
	time_t due = by_threshold < by_fraction ? by_threshold : by_fraction;

	/* A threshold longer than the lifetime makes every new certificate due at
	 * once: renewed once, it must not be renewed again in a loop, so a host
	 * renewed lately waits a third of the lifetime before the next one. */
	if (c->renewed_at && due < c->renewed_at + life / 3)
		due = c->renewed_at + life / 3;
	if (c->ari_start && c->ari_end >= c->ari_start) {
		/* a fixed point in the window, spread over hosts (RFC 9773 §4.2) */
		time_t span = c->ari_end - c->ari_start, ari_due = c->ari_start;
		unsigned h = 0;
		const char *p;

		for (p = c->host; *p; p++)
			h = h * 31 + (unsigned char)*p;
		if (span > 0)
			ari_due += (time_t)(h % (unsigned)(span > 0x7fffffff ? 0x7fffffff : span));
		if (ari_due < due)
			due = ari_due;
	}
	c->due = due;
	mgr_renew_index(m, c, 0);
}

static int mgr_wake_less(const void *a, const void *b)
{
	return ((const struct mgr_cert *)a)->wake < ((const struct mgr_cert *)b)->wake;
}

static void mgr_wake_set_index(void *e, size_t idx)
{
	((struct mgr_cert *)e)->hidx = idx;
}

void mgr_renew_index(struct mgr *m, struct mgr_cert *c, time_t floor)
{
	time_t wake = c->due;

	if (acme_has_ari(m->acme) && c->ari_next < wake)
		wake = c->ari_next;
	if (wake < floor)
		wake = floor;
	c->wake = wake;
	if (c->hidx != HEAP_NONE)
		heap_update(&m->due, c->hidx);
	else if (heap_push(&m->due, c) == -1)
		log_err("host=%s out of memory: not scheduled for renewal", c->host);
}

void mgr_renew_unindex(struct mgr *m, struct mgr_cert *c)
{
	if (c->hidx != HEAP_NONE)
		heap_remove(&m->due, c->hidx);
}

void mgr_renew_schedule(struct mgr *m)
{
	struct mgr_cert *c = heap_peek(&m->due);
	double delay = RENEW_RECHECK_S;

	if (c) {
		delay = (double)(c->wake - time(NULL));
		if (delay < 0)
			delay = 0;
		if (delay > RENEW_RECHECK_S)
			delay = RENEW_RECHECK_S;
	}
	ev_timer_stop(m->loop, &m->renew_timer);
	ev_timer_set(&m->renew_timer, delay + 0.5, 0.);
	ev_timer_start(m->loop, &m->renew_timer);
}

struct mgr_ari_req {
	struct mgr *m;
	char host[MGR_HOST_MAX];
	char serial[130];
};

static void mgr_ari_done(void *arg, int ok, time_t start, time_t end, long retry_after, const char *err)
{
	struct mgr_ari_req *r = arg;
	struct mgr_cert *c = mgr_cert_get(r->m, r->host);
	time_t now = time(NULL);

	if (!c || strcmp(c->info.serial_hex, r->serial) != 0)
		goto out;	/* replaced meanwhile */
	if (!ok) {
		log_warn("host=%s renewal info not available: %s", r->host, err ? err : "?");
		c->ari_next = now + RENEW_ARI_RETRY_S;
		goto out;
	}
	c->ari_start = start;
	c->ari_end = end;
	c->ari_next = now + (retry_after > 0 ? retry_after : RENEW_ARI_DEFAULT_S);
	mgr_renew_compute(r->m, c);
	log_debug("host=%s ARI window %ld..%ld", r->host, (long)start, (long)end);
out:
	mgr_renew_schedule(r->m);
	free(r);
}

static void mgr_ari_ask(struct mgr *m, struct mgr_cert *c, time_t now)
{
	struct mgr_ari_req *r = calloc(1, sizeof(*r));

	c->ari_next = now + RENEW_ARI_RETRY_S;	/* at most one request in flight */
	if (!r)
		return;
	r->m = m;
	snprintf(r->host, sizeof(r->host), "%s", c->host);
	snprintf(r->serial, sizeof(r->serial), "%s", c->info.serial_hex);
	if (acme_renewal_info(m->acme, c->pem, mgr_ari_done, r) == -1)
		free(r);
}

/* One certificate whose time has come (out of the heap): asks ARI, starts
 * its renewal, and puts it back with its next wake time. */
static int mgr_renew_one(struct mgr *m, struct mgr_cert *c, time_t now, int force,
			 unsigned *ari_started, size_t *skipped)
{
	time_t until = 0, floor = 0;
	int started = 0;

	if (acme_has_ari(m->acme) && c->ari_next <= now) {
		if (*ari_started >= RENEW_ARI_PER_PASS) {
			/* thousands of certificates: ask the CA a slice at a time */
			c->ari_next = now + RENEW_ARI_SPREAD_S;
		} else {
			(*ari_started)++;
			mgr_ari_ask(m, c, now);
		}
	}
	if (hmap_get(&m->jobs, c->host) || c->renewed_at_pending) {
		floor = now + (time_t)RENEW_RECHECK_S;	/* the job's end re-indexes it */
	} else if (force || c->due <= now) {
		if (!force && mgr_backoff_active(m, c->host, &until)) {
			(*skipped)++;
			floor = until;
		} else {
			/* one failing renewal never stops the others */
			started = mgr_issue(m, c->host, 1, 0, NULL) == 0;
			floor = now + (time_t)RENEW_RECHECK_S;
		}
	}
	mgr_renew_index(m, c, floor);
	return started;
}

struct mgr_all {
	struct mgr_cert **v;
	size_t n;
};

static void mgr_all_cb(void *arg, const char *host, void *val)
{
	struct mgr_all *a = arg;

	a->v[a->n++] = val;
}

void mgr_renew_pass(struct mgr *m, int force_all)
{
	time_t now = time(NULL);
	size_t i, started = 0, skipped = 0;
	unsigned ari_started = 0;
	struct mgr_all a = { 0 };
	struct mgr_cert *c;

	if (force_all) {
		/* an operator's request: every certificate, once */
		a.v = calloc(m->certs.count + 1, sizeof(*a.v));
		if (!a.v)
			return;
		hmap_foreach(&m->certs, mgr_all_cb, &a);
		for (i = 0; i < a.n; i++)
			started += mgr_renew_one(m, a.v[i], now, 1, &ari_started, &skipped);
		free(a.v);
	} else {
		/* re-indexing puts each one later than <now>: the loop ends */
		while ((c = heap_peek(&m->due)) && c->wake <= now) {
			started += mgr_renew_one(m, c, now, 0, &ari_started, &skipped);
			if (c->wake <= now)
				mgr_renew_index(m, c, now + (time_t)RENEW_RECHECK_S);
		}
	}
	if (started || skipped)
		log_info("renewal pass: %zu started, %zu waiting for backoff, %zu certificates",
			 started, skipped, m->certs.count);
}
