/* SPDX-License-Identifier: Apache-2.0 */
/* The CA's rate limits (ratelimit.h).
 *
 * A check reads the per-host and per-domain records (a plain get each: they
 * are spent later, when a certificate is issued or a validation fails), then
 * spends the account's orders stamp under the record's lock. Every change of
 * a record is one "spend": lock, get, (admit,) append, put with the window as
 * TTL, unlock. Checks and spends own their storage call and timer and are
 * listed, so freeing the module cancels them. The window arithmetic is in
 * ratelimit_window.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <ev.h>
#include <libpsl.h>
#include <openssl/evp.h>

#include "core/config.h"
#include "core/ratelimit.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "storage/storage.h"

#define RL_LOCK_LEASE_MS	5000
#define RL_LOCK_RETRY_S		0.05
#define RL_LOCK_MAX_TRIES	100	/* about 5 s of another node's lock */
#define RL_LOG_EVERY_S		60
#define RL_REFRESH_S		60.0	/* re-read the orders record for /metrics */
#define RL_TTL_SLACK_S		60	/* clocks of the fleet differ a little */
#define RL_HOST_MAX		256

static const char *const rl_limit_names[RATELIMIT__MAX] = {
	[RATELIMIT_ORDERS] = "orders_per_3h",
	[RATELIMIT_DOMAIN] = "certs_per_domain_week",
	[RATELIMIT_EXACT_SET] = "certs_per_exact_set_week",
	[RATELIMIT_FAILURES] = "failures_per_host_hour",
};

static const long rl_spans[RATELIMIT__MAX] = {
	[RATELIMIT_ORDERS] = 3 * 3600,
	[RATELIMIT_DOMAIN] = 7 * 86400,
	[RATELIMIT_EXACT_SET] = 7 * 86400,
	[RATELIMIT_FAILURES] = 3600,
};

static const char *const rl_key_names[RATELIMIT__MAX] = {
	[RATELIMIT_ORDERS] = "orders",
	[RATELIMIT_DOMAIN] = "domain",
	[RATELIMIT_EXACT_SET] = "set",
	[RATELIMIT_FAILURES] = "fail",
};

struct rl_spend;

struct ratelimit {
	struct ev_loop *loop;
	const struct config_issuer *iss;	/* the CA whose limits these are */
	struct storage *st;
	psl_ctx_t *psl;
	char owner[64];			/* prefix of lock owner tokens */
	char acct[33];			/* digest of api_uri and account_email */
	unsigned long seq;		/* makes each lock owner token unique */
	LIST_HEAD(, ratelimit_check) checks;
	LIST_HEAD(, rl_spend) spends;
	struct ratelimit_window orders;	/* the orders record as last read */
	int orders_known;
	unsigned long refused[RATELIMIT__MAX];
	time_t logged[RATELIMIT__MAX];	/* last refusal line, per limit */
	unsigned long unlogged[RATELIMIT__MAX];
	ev_timer refresh;
	struct storage_req *refresh_req;
};

/* One change of one record: lock, get, (admit,) append, put, unlock. */
struct rl_spend {
	struct ratelimit *rl;
	LIST_ENTRY(rl_spend) link;
	enum ratelimit_limit lim;
	enum ratelimit_class cls;
	int admit;			/* check the budget before appending */
	int locked, tries;
	char key[STORAGE_KEY_MAX];
	char lock_owner[STORAGE_OWNER_MAX];
	char host[RL_HOST_MAX];		/* for logs */
	struct storage_req *req;
	ev_timer timer;			/* lock retry */
	ratelimit_cb *cb;		/* NULL: nobody waits */
	void *arg;
};

struct ratelimit_check {
	struct ratelimit *rl;
	LIST_ENTRY(ratelimit_check) link;
	char host[RL_HOST_MAX], domain[RL_HOST_MAX];
	enum ratelimit_class cls;
	int stage;			/* index into rl_check_order */
	struct storage_req *req;
	struct rl_spend *spend;
	ev_timer timer;			/* starts on the next loop turn */
	ratelimit_cb *cb;
	void *arg;
};

/* Per-host budgets first (cheap to refuse), the spent one last. */
static const enum ratelimit_limit rl_check_order[] = {
	RATELIMIT_FAILURES, RATELIMIT_EXACT_SET, RATELIMIT_DOMAIN, RATELIMIT_ORDERS,
};
#define RL_NCHECK (sizeof(rl_check_order) / sizeof(rl_check_order[0]))

const char *ratelimit_limit_name(enum ratelimit_limit l)
{
	return (unsigned)l < RATELIMIT__MAX ? rl_limit_names[l] : "?";
}

/* ---- configuration ------------------------------------------------------- */

static unsigned rl_limit(const struct ratelimit *rl, enum ratelimit_limit l)
{
	const struct config_issuer *c = rl->iss;
	int v = 0;

	switch (l) {
	case RATELIMIT_ORDERS: v = c->rl_orders_per_3h; break;
	case RATELIMIT_DOMAIN: v = c->rl_certs_per_domain_week; break;
	case RATELIMIT_EXACT_SET: v = c->rl_certs_per_exact_set_week; break;
	case RATELIMIT_FAILURES: v = c->rl_failures_per_host_hour; break;
	default: break;
	}
	return v > 0 ? (unsigned)v : 0;
}

static int rl_any(const struct ratelimit *rl)
{
	int l;

	for (l = 0; l < RATELIMIT__MAX; l++)
		if (rl_limit(rl, l))
			return 1;
	return 0;
}

int ratelimit_registered_domain(const struct ratelimit *rl, const char *host, char *out,
				size_t outlen)
{
	const char *d = NULL;

	/* a wildcard's registered domain is its base name's */
	if (host[0] == '*' && host[1] == '.')
		host += 2;
	if (rl->psl)
		d = psl_registrable_domain(rl->psl, host);
	if (!d)
		d = host;	/* a public suffix itself (or no list): its own */
	if ((size_t)snprintf(out, outlen, "%s", d) >= outlen)
		return -1;
	return 0;
}

/* The record key of limit <l> for <name> (a host or a domain; unused for
 * orders). Returns 0, -1 when it does not fit. */
static int rl_key(const struct ratelimit *rl, enum ratelimit_limit l, const char *name, char *key,
		  size_t keylen)
{
	int n;

	if (l == RATELIMIT_ORDERS)
		n = snprintf(key, keylen, "rl/%s/orders", rl->acct);
	else
		n = snprintf(key, keylen, "rl/%s/%s/%s", rl->acct, rl_key_names[l], name);
	return n > 0 && (size_t)n < keylen ? 0 : -1;
}

/* ---- refusals ------------------------------------------------------------ */

/* Counts a refusal, writes its reason into <why>, and logs it at most once a
 * minute per limit (a flood of names writes one line a minute). */
static void rl_refuse(struct ratelimit *rl, enum ratelimit_limit l, const char *host,
		      const char *what, size_t used, unsigned limit, unsigned allowed, time_t until,
		      char *why, size_t whylen)
{
	time_t now = time(NULL);

	rl->refused[l]++;
	snprintf(why, whylen, "rate limit %s reached for %s: %zu of %u used", rl_limit_names[l],
		 what, used, limit);
	if (allowed < limit)
		snprintf(why + strlen(why), whylen - strlen(why), " (%u kept for renewals)",
			 limit - allowed);
	snprintf(why + strlen(why), whylen - strlen(why), ", next one fits in %llds",
		 (long long)(until - now));
	if (rl->logged[l] && now - rl->logged[l] < RL_LOG_EVERY_S) {
		rl->unlogged[l]++;
		return;
	}
	if (rl->unlogged[l])
		log_warn("host=%s not issued: %s (and %lu more refused by %s since the last line)",
			 host, why, rl->unlogged[l], rl_limit_names[l]);
	else
		log_warn("host=%s not issued: %s", host, why);
	rl->logged[l] = now;
	rl->unlogged[l] = 0;
}

/* ---- spends: lock, get, admit, append, put, unlock ----------------------- */

static void rl_spend_step_lock(struct rl_spend *s);

static void rl_spend_free(struct rl_spend *s)
{
	struct ratelimit *rl = s->rl;

	storage_cancel(s->req);
	ev_timer_stop(rl->loop, &s->timer);
	if (s->locked)
		storage_unlock(rl->st, s->key, s->lock_owner, NULL, NULL);
	LIST_REMOVE(s, link);
	free(s);
}

static void rl_spend_end(struct rl_spend *s, int rc, const char *why, time_t until)
{
	ratelimit_cb *cb = s->cb;
	void *arg = s->arg;

	if (rc == -1 && !cb)
		log_err("host=%s rate limit %s not recorded: %s", s->host, rl_limit_names[s->lim],
			why);
	rl_spend_free(s);
	if (cb)
		cb(arg, rc, why, until);
}

static void cb_rl_spend_put(void *arg, struct storage_res *res)
{
	struct rl_spend *s = arg;
	char why[STORAGE_ERR_MAX + 64];

	s->req = NULL;
	if (res->rc == -1) {
		snprintf(why, sizeof(why), "rate limit record not written: %s", res->err);
		rl_spend_end(s, -1, why, 0);
		return;
	}
	rl_spend_end(s, 0, NULL, 0);
}

static void cb_rl_spend_got(void *arg, struct storage_res *res)
{
	struct rl_spend *s = arg;
	struct ratelimit *rl = s->rl;
	struct ratelimit_window w = { 0 };
	unsigned limit = rl_limit(rl, s->lim);
	long span = rl_spans[s->lim];
	time_t now = time(NULL), until = 0;
	char err[128], why[512], *text = NULL;

	s->req = NULL;
	if (res->rc == -1) {
		snprintf(why, sizeof(why), "rate limit record unreadable: %s", res->err);
		rl_spend_end(s, -1, why, 0);
		return;
	}
	if (res->rc == 0 &&
	    ratelimit_window_load(&w, res->val, res->len, now, span, limit, err, sizeof(err)) == -1)
		log_err("storage: %s: %s; counted as empty", s->key, err);
	if (s->lim == RATELIMIT_ORDERS) {
		/* what this node knows of the account's budget: metrics, early refusals */
		ratelimit_window_clear(&rl->orders);
		rl->orders = w;
		rl->orders_known = 1;
		w = (struct ratelimit_window){ 0 };
	}
	{
		struct ratelimit_window *cur = s->lim == RATELIMIT_ORDERS ? &rl->orders : &w;

		if (s->admit && !ratelimit_window_admits(cur, limit, rl->iss->rl_renewal_reserve,
							 s->cls, now, span, &until)) {
			rl_refuse(rl, s->lim, s->host, "this account", cur->n, limit,
				  ratelimit_allowed(limit, rl->iss->rl_renewal_reserve, s->cls),
				  until, why, sizeof(why));
			ratelimit_window_clear(&w);
			rl_spend_end(s, 1, why, until);
			return;
		}
		if (ratelimit_window_add(cur, now, limit) == 0)
			text = ratelimit_window_dump(cur);
	}
	ratelimit_window_clear(&w);
	if (!text) {
		rl_spend_end(s, -1, "out of memory", 0);
		return;
	}
	s->req = storage_put(rl->st, s->key, text, strlen(text), (unsigned)(span + RL_TTL_SLACK_S),
			     cb_rl_spend_put, s);
	free(text);
	if (!s->req)
		rl_spend_end(s, -1, "out of memory", 0);
}

static void cb_rl_spend_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	rl_spend_step_lock(w->data);
}

static void cb_rl_spend_locked(void *arg, struct storage_res *res)
{
	struct rl_spend *s = arg;
	struct ratelimit *rl = s->rl;
	char why[STORAGE_KEY_MAX + STORAGE_ERR_MAX + 64];

	s->req = NULL;
	if (res->rc == 0) {
		s->locked = 1;
		s->req = storage_get(rl->st, s->key, cb_rl_spend_got, s);
		if (!s->req)
			rl_spend_end(s, -1, "out of memory", 0);
		return;
	}
	if (res->rc == -1 || ++s->tries >= RL_LOCK_MAX_TRIES) {
		snprintf(why, sizeof(why), "rate limit record %s: %s", s->key,
			 res->rc == -1 ? res->err : "locked too long by another node");
		rl_spend_end(s, -1, why, 0);
		return;
	}
	/* another job or node is changing it: a few milliseconds */
	ev_timer_init(&s->timer, cb_rl_spend_retry,
		      RL_LOCK_RETRY_S * (1.0 + (double)(s->tries % 4) / 4.0), 0.);
	s->timer.data = s;
	ev_timer_start(rl->loop, &s->timer);
}

static void rl_spend_step_lock(struct rl_spend *s)
{
	s->req = storage_lock(s->rl->st, s->key, s->lock_owner, RL_LOCK_LEASE_MS, cb_rl_spend_locked, s);
	if (!s->req)
		rl_spend_end(s, -1, "out of memory", 0);
}

/* Starts one spend of limit <l> on <name>'s record. Returns it, or NULL
 * when out of memory (or the key is too long: logged). */
static struct rl_spend *rl_spend_start(struct ratelimit *rl, enum ratelimit_limit l, const char *name,
				       const char *host, enum ratelimit_class cls, int admit,
				       ratelimit_cb *cb, void *arg)
{
	struct rl_spend *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (rl_key(rl, l, name, s->key, sizeof(s->key)) == -1) {
		log_err("host=%s rate limit %s: name too long for a key", host, rl_limit_names[l]);
		free(s);
		return NULL;
	}
	s->rl = rl;
	s->lim = l;
	s->cls = cls;
	s->admit = admit;
	s->cb = cb;
	s->arg = arg;
	snprintf(s->host, sizeof(s->host), "%s", host);
	/* unique per spend: two jobs of one node must not share the lock */
	snprintf(s->lock_owner, sizeof(s->lock_owner), "%s-rl%lu", rl->owner, ++rl->seq);
	ev_init(&s->timer, NULL);
	LIST_INSERT_HEAD(&rl->spends, s, link);
	rl_spend_step_lock(s);
	return s;
}

/* ---- checks -------------------------------------------------------------- */

static void rl_check_next(struct ratelimit_check *c);

static void rl_check_end(struct ratelimit_check *c, int rc, const char *why, time_t until)
{
	ratelimit_cb *cb = c->cb;
	void *arg = c->arg;

	storage_cancel(c->req);
	ev_timer_stop(c->rl->loop, &c->timer);
	LIST_REMOVE(c, link);
	free(c);
	cb(arg, rc, why, until);
}

static void cb_rl_check_spent(void *arg, int rc, const char *why, time_t until)
{
	struct ratelimit_check *c = arg;

	c->spend = NULL;
	rl_check_end(c, rc, why, until);
}

static void cb_rl_check_got(void *arg, struct storage_res *res)
{
	struct ratelimit_check *c = arg;
	struct ratelimit *rl = c->rl;
	enum ratelimit_limit l = rl_check_order[c->stage];
	struct ratelimit_window w = { 0 };
	unsigned limit = rl_limit(rl, l);
	time_t now = time(NULL), until = 0;
	char err[128], why[512], key[STORAGE_KEY_MAX];

	c->req = NULL;
	if (res->rc == -1) {
		snprintf(why, sizeof(why), "rate limit record unreadable: %s", res->err);
		rl_check_end(c, -1, why, 0);
		return;
	}
	if (res->rc == 0 && ratelimit_window_load(&w, res->val, res->len, now, rl_spans[l], limit,
						  err, sizeof(err)) == -1) {
		rl_key(rl, l, l == RATELIMIT_DOMAIN ? c->domain : c->host, key, sizeof(key));
		log_err("storage: %s: %s; counted as empty", key, err);
	}
	if (!ratelimit_window_admits(&w, limit, rl->iss->rl_renewal_reserve, c->cls, now,
				     rl_spans[l], &until)) {
		rl_refuse(rl, l, c->host, l == RATELIMIT_DOMAIN ? c->domain : c->host, w.n, limit,
			  ratelimit_allowed(limit, rl->iss->rl_renewal_reserve, c->cls), until, why,
			  sizeof(why));
		ratelimit_window_clear(&w);
		rl_check_end(c, 1, why, until);
		return;
	}
	ratelimit_window_clear(&w);
	c->stage++;
	rl_check_next(c);
}

/* Stamps seen are real: when the orders window this node last read is full
 * for <c>'s class, <c> ends refused without asking storage (a flood of new
 * names costs no storage call). Returns 1 when it ended <c>. */
static int rl_check_orders_full(struct ratelimit_check *c)
{
	struct ratelimit *rl = c->rl;
	unsigned limit = rl_limit(rl, RATELIMIT_ORDERS);
	long span = rl_spans[RATELIMIT_ORDERS];
	double reserve = rl->iss->rl_renewal_reserve;
	time_t now = time(NULL), until = 0;
	char why[512];

	if (!limit || !rl->orders_known || c->cls == RATELIMIT_EXEMPT)
		return 0;
	ratelimit_window_expire(&rl->orders, now, span);
	if (ratelimit_window_admits(&rl->orders, limit, reserve, c->cls, now, span, &until))
		return 0;
	rl_refuse(rl, RATELIMIT_ORDERS, c->host, "this account", rl->orders.n, limit,
		  ratelimit_allowed(limit, reserve, c->cls), until, why, sizeof(why));
	rl_check_end(c, 1, why, until);
	return 1;
}

/* The next budget of <c> that is on: read it (or spend the orders stamp). */
static void rl_check_next(struct ratelimit_check *c)
{
	struct ratelimit *rl = c->rl;
	char key[STORAGE_KEY_MAX];
	unsigned limit;
	enum ratelimit_limit l;

	for (; c->cls != RATELIMIT_EXEMPT && (size_t)c->stage < RL_NCHECK; c->stage++) {
		l = rl_check_order[c->stage];
		limit = rl_limit(rl, l);
		if (!limit)
			continue;
		if (l == RATELIMIT_ORDERS) {
			if (rl_check_orders_full(c))
				return;
			c->spend = rl_spend_start(rl, l, "", c->host, c->cls, 1, cb_rl_check_spent, c);
			if (!c->spend)
				rl_check_end(c, -1, "out of memory", 0);
			return;
		}
		if (rl_key(rl, l, l == RATELIMIT_DOMAIN ? c->domain : c->host, key, sizeof(key)) == -1) {
			rl_check_end(c, -1, "host name too long for a rate limit record", 0);
			return;
		}
		c->req = storage_get(rl->st, key, cb_rl_check_got, c);
		if (!c->req)
			rl_check_end(c, -1, "out of memory", 0);
		return;
	}
	rl_check_end(c, 0, NULL, 0);
}

static void cb_rl_check_start(struct ev_loop *loop, ev_timer *w, int revents)
{
	if (!rl_check_orders_full(w->data))
		rl_check_next(w->data);
}

struct ratelimit_check *ratelimit_check(struct ratelimit *rl, const char *host,
					enum ratelimit_class cls, ratelimit_cb *cb, void *arg)
{
	struct ratelimit_check *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->rl = rl;
	c->cls = cls;
	c->cb = cb;
	c->arg = arg;
	snprintf(c->host, sizeof(c->host), "%s", host);
	ratelimit_registered_domain(rl, c->host, c->domain, sizeof(c->domain));
	LIST_INSERT_HEAD(&rl->checks, c, link);
	/* the callback never runs inside this call */
	ev_timer_init(&c->timer, cb_rl_check_start, 0., 0.);
	c->timer.data = c;
	ev_timer_start(rl->loop, &c->timer);
	return c;
}

void ratelimit_check_cancel(struct ratelimit_check *c)
{
	if (!c)
		return;
	if (c->spend)
		c->spend->cb = NULL;	/* the stamp is still written */
	storage_cancel(c->req);
	ev_timer_stop(c->rl->loop, &c->timer);
	LIST_REMOVE(c, link);
	free(c);
}

/* ---- records ------------------------------------------------------------- */

void ratelimit_record_issued(struct ratelimit *rl, const char *host, enum ratelimit_class cls)
{
	char domain[RL_HOST_MAX];

	if (cls == RATELIMIT_EXEMPT)
		return;
	if (rl_limit(rl, RATELIMIT_DOMAIN) &&
	    ratelimit_registered_domain(rl, host, domain, sizeof(domain)) == 0)
		rl_spend_start(rl, RATELIMIT_DOMAIN, domain, host, cls, 0, NULL, NULL);
	if (rl_limit(rl, RATELIMIT_EXACT_SET))
		rl_spend_start(rl, RATELIMIT_EXACT_SET, host, host, cls, 0, NULL, NULL);
}

void ratelimit_record_failure(struct ratelimit *rl, const char *host, enum ratelimit_class cls)
{
	if (cls != RATELIMIT_EXEMPT && rl_limit(rl, RATELIMIT_FAILURES))
		rl_spend_start(rl, RATELIMIT_FAILURES, host, host, cls, 0, NULL, NULL);
}

/* ---- metrics ------------------------------------------------------------- */

static void cb_rl_refreshed(void *arg, struct storage_res *res)
{
	struct ratelimit *rl = arg;
	char err[128], key[STORAGE_KEY_MAX];

	rl->refresh_req = NULL;
	if (res->rc == -1)
		return;
	if (res->rc == 1) {
		rl->orders.n = 0;
	} else if (ratelimit_window_load(&rl->orders, res->val, res->len, time(NULL),
					 rl_spans[RATELIMIT_ORDERS], rl_limit(rl, RATELIMIT_ORDERS),
					 err, sizeof(err)) == -1) {
		rl_key(rl, RATELIMIT_ORDERS, "", key, sizeof(key));
		log_err("storage: %s: %s; counted as empty", key, err);
	}
	rl->orders_known = 1;
}

/* Other nodes spend too: the orders gauge is read again once a minute (one
 * get), only while the limit is on. */
static void cb_rl_refresh(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ratelimit *rl = w->data;
	char key[STORAGE_KEY_MAX];

	if (rl->refresh_req || !rl_limit(rl, RATELIMIT_ORDERS))
		return;
	rl_key(rl, RATELIMIT_ORDERS, "", key, sizeof(key));
	rl->refresh_req = storage_get(rl->st, key, cb_rl_refreshed, rl);
}

long ratelimit_orders_left(const struct ratelimit *rl)
{
	unsigned limit = rl_limit(rl, RATELIMIT_ORDERS);
	time_t now = time(NULL);
	size_t i, used = 0;

	if (!limit)
		return -1;
	for (i = 0; i < rl->orders.n; i++)
		used += rl->orders.t[i] > now - rl_spans[RATELIMIT_ORDERS];
	return used >= limit ? 0 : (long)(limit - used);
}

unsigned ratelimit_orders_limit(const struct ratelimit *rl, double *reserve)
{
	if (reserve)
		*reserve = rl->iss->rl_renewal_reserve;
	return rl_limit(rl, RATELIMIT_ORDERS);
}

const struct ratelimit_window *ratelimit_orders_seen(const struct ratelimit *rl)
{
	return rl->orders_known ? &rl->orders : NULL;
}

size_t ratelimit_pending(const struct ratelimit *rl)
{
	const struct ratelimit_check *c;
	const struct rl_spend *s;
	size_t n = 0;

	LIST_FOREACH(c, &rl->checks, link)
		n++;
	LIST_FOREACH(s, &rl->spends, link)
		n++;
	return n;
}

unsigned long ratelimit_refused(const struct ratelimit *rl, enum ratelimit_limit l)
{
	return (unsigned)l < RATELIMIT__MAX ? rl->refused[l] : 0;
}

void ratelimit_metrics(const struct ratelimit *rl, struct metrics_buf *b)
{
	double reserve = rl->iss->rl_renewal_reserve;
	unsigned limit = rl_limit(rl, RATELIMIT_ORDERS);
	long left = ratelimit_orders_left(rl);
	char lbl[96];
	int l;

	metrics_header(b, "acme_spoa_rate_limit", "gauge",
		       "The CA's rate limits enforced before ordering (0: off), by limit.");
	for (l = 0; l < RATELIMIT__MAX; l++) {
		metrics_label(lbl, sizeof(lbl), "limit", rl_limit_names[l]);
		metrics_value(b, "acme_spoa_rate_limit", lbl, rl_limit(rl, l));
	}
	metrics_header(b, "acme_spoa_rate_limit_reserved", "gauge",
		       "Part of each budget kept for renewals, by limit.");
	for (l = 0; l < RATELIMIT__MAX; l++) {
		unsigned lim = rl_limit(rl, l);

		metrics_label(lbl, sizeof(lbl), "limit", rl_limit_names[l]);
		metrics_value(b, "acme_spoa_rate_limit_reserved", lbl,
			      lim - ratelimit_allowed(lim, reserve, RATELIMIT_NEW));
	}
	metrics_header(b, "acme_spoa_rate_limit_remaining", "gauge",
		       "What is left of the account-wide orders budget as this node last read it, "
		       "for renewals and for new names (absent when the limit is off).");
	if (left >= 0) {
		unsigned kept = limit - ratelimit_allowed(limit, reserve, RATELIMIT_NEW);
		long left_new = left > (long)kept ? left - (long)kept : 0;

		metrics_value(b, "acme_spoa_rate_limit_remaining",
			      "limit=\"orders_per_3h\",class=\"renewal\"", (double)left);
		metrics_value(b, "acme_spoa_rate_limit_remaining",
			      "limit=\"orders_per_3h\",class=\"new\"", (double)left_new);
	}
	metrics_header(b, "acme_spoa_rate_limit_refused_total", "counter",
		       "Orders not placed because a budget was spent, by limit.");
	for (l = 0; l < RATELIMIT__MAX; l++) {
		metrics_label(lbl, sizeof(lbl), "limit", rl_limit_names[l]);
		metrics_value(b, "acme_spoa_rate_limit_refused_total", lbl, (double)rl->refused[l]);
	}
}

/* ---- life ---------------------------------------------------------------- */

/* The account id of the account key's storage key: one budget per account. */
static void rl_account_id(struct ratelimit *rl)
{
	const struct config_issuer *cfg = rl->iss;
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int i;

	memset(md, 0, sizeof(md));
	if (ctx) {
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
		EVP_DigestUpdate(ctx, cfg->api_uri, strlen(cfg->api_uri));
		EVP_DigestUpdate(ctx, "\n", 1);
		EVP_DigestUpdate(ctx, cfg->account_email, strlen(cfg->account_email));
		EVP_DigestFinal_ex(ctx, md, &mdlen);
		EVP_MD_CTX_free(ctx);
	}
	for (i = 0; i < 16; i++)
		sprintf(rl->acct + i * 2, "%02x", md[i]);
}

struct ratelimit *ratelimit_new(struct ev_loop *loop, const struct config_issuer *cfg,
				struct storage *st, const char *owner)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));

	if (!rl)
		return NULL;
	rl->loop = loop;
	rl->iss = cfg;
	rl->st = st;
	snprintf(rl->owner, sizeof(rl->owner), "%s", owner && *owner ? owner : "node");
	LIST_INIT(&rl->checks);
	LIST_INIT(&rl->spends);
	rl_account_id(rl);
	/* the newer of libpsl's built-in list and Debian's publicsuffix file */
	rl->psl = psl_latest(NULL);
	if (!rl->psl)
		rl->psl = (psl_ctx_t *)psl_builtin();
	if (!rl->psl)
		log_warn("rate limits: no Public Suffix List (install publicsuffix): each host name "
			 "counts as its own registered domain");
	ev_timer_init(&rl->refresh, cb_rl_refresh, 1.0, RL_REFRESH_S);
	rl->refresh.data = rl;
	ev_timer_start(loop, &rl->refresh);
	if (rl_any(rl))
		log_info("rate limits: orders_per_3h=%d certs_per_domain_week=%d "
			 "certs_per_exact_set_week=%d failures_per_host_hour=%d renewal_reserve=%g "
			 "issuer=%s", cfg->rl_orders_per_3h, cfg->rl_certs_per_domain_week,
			 cfg->rl_certs_per_exact_set_week, cfg->rl_failures_per_host_hour,
			 cfg->rl_renewal_reserve, cfg->name);
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (!rl)
		return;
	ev_timer_stop(rl->loop, &rl->refresh);
	storage_cancel(rl->refresh_req);
	while (!LIST_EMPTY(&rl->checks))
		ratelimit_check_cancel(LIST_FIRST(&rl->checks));
	while (!LIST_EMPTY(&rl->spends))
		rl_spend_free(LIST_FIRST(&rl->spends));
	ratelimit_window_clear(&rl->orders);
	if (rl->psl && rl->psl != psl_builtin())
		psl_free(rl->psl);
	free(rl);
}
