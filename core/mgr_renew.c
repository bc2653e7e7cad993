/* The renewal scheduler. A certificate is due when fewer than
 * renew_threshold_days remain, or less than a third of its lifetime remains
 * (safe for 6-day certificates), or when the CA's ARI window (RFC 9773) has
 * opened. One timer sits on the earliest due time, re-checked at least hourly.
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

static void mgr_renew_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mgr *m = w->data;

	mgr_renew_pass(m, 0);
	mgr_renew_schedule(m);
}

void mgr_renew_init(struct mgr *m)
{
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
}

struct mgr_earliest {
	struct mgr *m;
	time_t t;
};

static void mgr_earliest_cb(void *arg, const char *host, void *val)
{
	struct mgr_earliest *e = arg;
	struct mgr_cert *c = val;

	if (hmap_get(&e->m->jobs, host))
		return;
	if (c->due < e->t)
		e->t = c->due;
	if (c->ari_next && c->ari_next < e->t && acme_has_ari(e->m->acme))
		e->t = c->ari_next;
}

void mgr_renew_schedule(struct mgr *m)
{
	struct mgr_earliest e = { m, time(NULL) + (time_t)RENEW_RECHECK_S };
	double delay;

	hmap_foreach(&m->certs, mgr_earliest_cb, &e);
	delay = (double)(e.t - time(NULL));
	if (delay < 0)
		delay = 0;
	if (delay > RENEW_RECHECK_S)
		delay = RENEW_RECHECK_S;
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

struct mgr_pass {
	struct mgr *m;
	int force_all;
	time_t now;
	const char **due;
	size_t ndue, cap;
	unsigned ari_started;
};

static void mgr_pass_cb(void *arg, const char *host, void *val)
{
	struct mgr_pass *p = arg;
	struct mgr_cert *c = val;
	struct mgr *m = p->m;

	if (hmap_get(&m->jobs, host))
		return;
	if (acme_has_ari(m->acme) && c->ari_next <= p->now &&
	    p->ari_started >= RENEW_ARI_PER_PASS) {
		/* thousands of certificates: ask the CA a slice at a time */
		c->ari_next = p->now + RENEW_ARI_SPREAD_S;
	} else if (acme_has_ari(m->acme) && c->ari_next <= p->now) {
		struct mgr_ari_req *r = calloc(1, sizeof(*r));

		p->ari_started++;

		c->ari_next = p->now + RENEW_ARI_RETRY_S;	/* at most one request in flight */
		if (r) {
			r->m = m;
			snprintf(r->host, sizeof(r->host), "%s", host);
			snprintf(r->serial, sizeof(r->serial), "%s", c->info.serial_hex);
			if (acme_renewal_info(m->acme, c->pem, mgr_ari_done, r) == -1)
				free(r);
		}
	}
	if (!p->force_all && c->due > p->now)
		return;
	if (p->ndue == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 16;
		const char **nd = realloc(p->due, ncap * sizeof(*nd));

		if (!nd)
			return;
		p->due = nd;
		p->cap = ncap;
	}
	p->due[p->ndue++] = c->host;
}

void mgr_renew_pass(struct mgr *m, int force_all)
{
	struct mgr_pass p = { .m = m, .force_all = force_all, .now = time(NULL) };
	size_t i, started = 0, skipped = 0;

	/* collect first: starting a job may not modify the map we walk */
	hmap_foreach(&m->certs, mgr_pass_cb, &p);
	for (i = 0; i < p.ndue; i++) {
		char host[MGR_HOST_MAX];

		snprintf(host, sizeof(host), "%s", p.due[i]);
		if (!force_all && mgr_backoff_active(m, host, NULL)) {
			skipped++;
			continue;
		}
		/* one failing renewal never stops the others */
		if (mgr_issue(m, host, 1, 0, NULL) == 0)
			started++;
	}
	free(p.due);
	if (started || skipped)
		log_info("renewal pass: %zu started, %zu waiting for backoff, %zu certificates",
			 started, skipped, m->certs.count);
}
