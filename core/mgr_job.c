/* Issuance jobs: one per host however many requests ask (single flight),
 * queued under max_concurrent_orders, checked against the shared failure
 * backoff and ask_url, guarded by a storage lock so that a fleet orders each
 * name once, marked "pending/<host>" while the order runs so that a crash
 * resumes it, and followed by a per-host failure backoff that doubles on each
 * consecutive failure.
 *
 * Each step waits for one storage call or HTTP request at a time (j->req);
 * ending a job cancels it. Queued jobs start from a timer on the next loop
 * turn, so a chain of failing jobs never recurses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "acme/acme.h"
#include "acme/crypto.h"
#include "acme/http.h"
#include "admin/admin.h"
#include "core/config.h"
#include "lib/log.h"
#include "core/mgr_int.h"
#include "storage/storage.h"

#define MGR_LOCK_LEASE_MS	120000
#define MGR_LOCK_EXTEND_S	30.0
#define MGR_LOCK_RETRY_S	2.0
#define MGR_LOCK_MAX_TRIES	150	/* 5 minutes of waiting for another node */
#define MGR_BACKOFF_MAX_S	(24 * 3600)
#define MGR_BACKOFF_SWEEP_S	300.0

static void mgr_job_kick(struct mgr *m);
static void mgr_job_lock(struct mgr_job *j);

/* ---- backoff ------------------------------------------------------------- */

int mgr_backoff_active(struct mgr *m, const char *host, time_t *until)
{
	struct mgr_backoff *b = hmap_get(&m->backoff, host);

	if (!b)
		return 0;
	if (until)
		*until = b->until;
	return b->until > time(NULL);
}

void mgr_backoff_remember(struct mgr *m, const char *host, time_t until, long failures)
{
	struct mgr_backoff *b = hmap_get(&m->backoff, host);

	if (!b) {
		if (m->backoff.count >= MGR_BACKOFF_MEM_MAX || !(b = calloc(1, sizeof(*b))))
			return;	/* the shared record still holds it: the job reads it */
		if (hmap_put(&m->backoff, host, b, NULL) == -1) {
			free(b);
			return;
		}
	}
	b->until = until;
	b->failures = failures;
}

static void mgr_backoff_forget(struct mgr *m, const char *host)
{
	free(hmap_del(&m->backoff, host));
}

struct mgr_sweep {
	struct mgr *m;
	time_t now;
	struct hmap gone;
};

static void mgr_sweep_cb(void *arg, const char *host, void *val)
{
	struct mgr_sweep *s = arg;
	struct mgr_backoff *b = val;

	/* the failure count matters for a day after the wait ends */
	if (b->until + MGR_BACKOFF_MAX_S < s->now)
		hmap_put(&s->gone, host, (void *)1, NULL);
}

static void mgr_sweep_gone_cb(void *arg, const char *host, void *val)
{
	mgr_backoff_forget(arg, host);
}

static void cb_mgr_backoff_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mgr_sweep s = { .m = w->data, .now = time(NULL) };

	if (s.m->backoff.count == 0)
		return;
	hmap_init(&s.gone);
	hmap_foreach(&s.m->backoff, mgr_sweep_cb, &s);
	hmap_foreach(&s.gone, mgr_sweep_gone_cb, s.m);
	hmap_clear(&s.gone, NULL);
}

void mgr_backoff_init(struct mgr *m)
{
	hmap_init(&m->backoff);
	ev_timer_init(&m->backoff_sweep, cb_mgr_backoff_sweep, MGR_BACKOFF_SWEEP_S, MGR_BACKOFF_SWEEP_S);
	m->backoff_sweep.data = m;
	ev_timer_start(m->loop, &m->backoff_sweep);
	ev_init(&m->job_kick, NULL);
}

void mgr_backoff_stop(struct mgr *m)
{
	ev_timer_stop(m->loop, &m->backoff_sweep);
	hmap_clear(&m->backoff, free);
}

/* Parses a stored backoff record; 0 when it is readable. */
static int mgr_backoff_parse(const char *val, size_t len, time_t *until, long *failures)
{
	json_t *j = json_loadb(val, len, 0, NULL);
	json_int_t u = 0, f = 0;
	int rc;

	rc = j && json_unpack(j, "{s:I, s:I}", "until", &u, "failures", &f) == 0 &&
	     u >= 0 && f >= 0 ? 0 : -1;
	json_decref(j);
	*until = (time_t)u;
	*failures = (long)f;
	return rc;
}

static void cb_mgr_storage_ignore(void *arg, struct storage_res *res)
{
	mgr_storage_result(arg, res);
}

/* Records a failure: the wait starts at fail_backoff_minutes and doubles on
 * each consecutive failure, capped at a day; a CA's Retry-After wins if
 * longer, up to a week. Memory first, storage for the fleet. */
static void mgr_backoff_record(struct mgr *m, const char *host, const char *why, long retry_after)
{
	struct mgr_backoff *b = hmap_get(&m->backoff, host);
	char key[STORAGE_KEY_MAX], *text;
	long failures = (b ? b->failures : 0) + 1, wait;
	time_t now = time(NULL);
	json_t *j;

	wait = (long)m->cfg->fail_backoff_minutes * 60;
	for (long i = 1; i < failures && wait < MGR_BACKOFF_MAX_S; i++)
		wait *= 2;
	if (wait > MGR_BACKOFF_MAX_S)
		wait = MGR_BACKOFF_MAX_S;
	if (retry_after > 7 * MGR_BACKOFF_MAX_S)
		retry_after = 7 * MGR_BACKOFF_MAX_S;
	if (retry_after > wait)
		wait = retry_after;
	mgr_backoff_remember(m, host, now + wait, failures);
	snprintf(key, sizeof(key), "backoff/%s", host);
	j = json_pack("{s:I, s:I, s:s}", "failures", (json_int_t)failures,
		      "until", (json_int_t)(now + wait), "error", why ? why : "");
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (text)
		storage_put(m->st, key, text, strlen(text), (unsigned)(wait + MGR_BACKOFF_MAX_S),
			    cb_mgr_storage_ignore, m);
	free(text);
	log_warn("host=%s issuance failed (%ld in a row), next attempt not before %lds: %s",
		 host, failures, wait, why ? why : "");
}

static void mgr_backoff_clear(struct mgr *m, const char *host)
{
	char key[STORAGE_KEY_MAX];

	mgr_backoff_forget(m, host);
	snprintf(key, sizeof(key), "backoff/%s", host);
	storage_del(m->st, key, cb_mgr_storage_ignore, m);
}

/* ---- jobs ---------------------------------------------------------------- */

static void mgr_job_reply(struct mgr_job *j, unsigned status, const char *msg)
{
	struct mgr_waiter *w, *next;

	for (w = j->waiters; w; w = next) {
		next = w->next;
		admin_reply_message(w->req, status, msg);
		free(w);
	}
	j->waiters = NULL;
}

/* Ends <j>: <ok> issued (here or elsewhere); <refused> ended by the shared
 * backoff (no new failure recorded); else a failure <why>. Frees <j>. */
static void mgr_job_finish(struct mgr_job *j, int ok, int refused, const char *why, long retry_after)
{
	struct mgr *m = j->m;
	char key[STORAGE_KEY_MAX], msg[1024];

	ev_timer_stop(m->loop, &j->timer);
	storage_cancel(j->req);
	j->req = NULL;
	if (j->state == MGR_JOB_ORDERING || j->state == MGR_JOB_STORING) {
		m->orders_running--;
		snprintf(key, sizeof(key), "pending/%s", j->host);
		storage_del(m->st, key, cb_mgr_storage_ignore, m);
	}
	if (j->locked) {
		snprintf(key, sizeof(key), "issue/%s", j->host);
		storage_unlock(m->st, key, m->node_id, cb_mgr_storage_ignore, m);
	}
	if (ok) {
		snprintf(msg, sizeof(msg), "certificate for host %s is created", j->host);
		mgr_job_reply(j, 201, msg);
	} else {
		if (!refused && (!j->forced || j->state == MGR_JOB_ORDERING ||
				 j->state == MGR_JOB_STORING))
			mgr_backoff_record(m, j->host, why, retry_after);
		snprintf(msg, sizeof(msg), "failed to create certificate for host %s: %s", j->host,
			 why ? why : "unknown error");
		mgr_job_reply(j, j->state == MGR_JOB_ASKING || refused ? 400 : 500, msg);
	}
	hmap_del(&m->jobs, j->host);
	free(j);
	mgr_job_kick(m);
}

static void mgr_job_end(struct mgr_job *j, int ok, const char *why, long retry_after)
{
	mgr_job_finish(j, ok, 0, why, retry_after);
}

static void cb_mgr_job_stored(void *arg, struct storage_res *res)
{
	struct mgr_job *j = arg;
	struct mgr *m = j->m;
	struct mgr_cert *c;
	char why[512];

	j->req = NULL;
	mgr_storage_result(m, res);
	if (res->rc == -1) {
		m->cnt.fail_storage++;
		m->cnt.orders_failed++;
		log_err("host=%s certificate issued but not stored: %s", j->host, res->err);
		snprintf(why, sizeof(why), "certificate issued but not stored: %s", res->err);
		mgr_job_end(j, 0, why, -1);
		return;
	}
	c = mgr_cert_get(m, j->host);
	if (!c) {
		mgr_job_end(j, 0, "certificate lost after storing", -1);
		return;
	}
	m->cnt.orders_ok++;
	if (j->renewal)
		m->cnt.renewals++;
	mgr_announce(m, j->host, c->info.serial_hex);
	mgr_backoff_clear(m, j->host);
	mgr_job_end(j, 1, NULL, -1);
	mgr_renew_schedule(m);
}

static void mgr_order_done(void *arg, const char *host, const struct acme_result *res)
{
	struct mgr_job *j = arg;
	struct mgr *m = j->m;
	char key[STORAGE_KEY_MAX], why[1024];
	struct mgr_cert *c;
	size_t clen, klen;
	char *bundle;

	if (!res->ok) {
		const struct acme_problem *p = &res->problem;

		m->cnt.orders_failed++;
		if (j->renewal)
			m->cnt.renewals_failed++;
		if (p->status == 429)
			m->cnt.fail_rate_limited++;
		else if (p->status == 0)
			m->cnt.fail_transport++;
		else
			m->cnt.fail_ca++;
		snprintf(why, sizeof(why), "%s%s%s%s%s", p->type ? p->type : "error",
			 p->detail ? ": " : "", p->detail ? p->detail : "",
			 p->subproblems ? " " : "", p->subproblems ? p->subproblems : "");
		log_err("host=%s order=%s failed: %s", host, res->order_url ? res->order_url : "-", why);
		mgr_job_end(j, 0, why, p->retry_after);
		return;
	}
	clen = strlen(res->cert_pem);
	klen = strlen(res->key_pem);
	bundle = malloc(clen + klen + 2);
	if (!bundle) {
		mgr_job_end(j, 0, "out of memory", -1);
		return;
	}
	memcpy(bundle, res->cert_pem, clen);
	if (clen && bundle[clen - 1] != '\n')
		bundle[clen++] = '\n';
	memcpy(bundle + clen, res->key_pem, klen + 1);
	/* known before the install computes the next due time: no renewal loop */
	if (j->renewal)
		mgr_renewed_at_store(m, host, time(NULL));
	/* memory and HAProxy first: the certificate serves while storage writes */
	c = mgr_cert_install(m, host, bundle, clen + klen);
	if (c)
		mgr_cert_deploy(m, c);
	if (!c) {
		crypto_secret_free(bundle, clen + klen);
		m->cnt.orders_failed++;
		mgr_job_end(j, 0, "the CA returned an unreadable certificate", -1);
		return;
	}
	log_info("host=%s order=%s certificate issued serial=%s not_after=%s issuer=\"%s\"", host,
		 res->order_url ? res->order_url : "-", c->info.serial_hex, c->info.not_after_str,
		 c->info.issuer_cn);
	snprintf(key, sizeof(key), "certs/%s", host);
	j->state = MGR_JOB_STORING;
	j->req = storage_put(m->st, key, bundle, clen + klen, 0, cb_mgr_job_stored, j);
	crypto_secret_free(bundle, clen + klen);
	if (!j->req)
		mgr_job_end(j, 0, "out of memory", -1);
}

static void cb_mgr_job_lease(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mgr_job *j = w->data;
	struct mgr *m = j->m;
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "issue/%s", j->host);
	storage_lock(m->st, key, m->node_id, MGR_LOCK_LEASE_MS, cb_mgr_storage_ignore, m);
}

static void mgr_job_order(struct mgr_job *j)
{
	struct mgr *m = j->m;
	struct mgr_cert *c = mgr_cert_get(m, j->host);
	char key[STORAGE_KEY_MAX];
	const char *mark = j->renewal ? "renewal" : "new";

	snprintf(key, sizeof(key), "pending/%s", j->host);
	storage_put(m->st, key, mark, strlen(mark), 0, cb_mgr_storage_ignore, m);
	j->state = MGR_JOB_ORDERING;
	m->orders_running++;
	m->cnt.orders_started++;
	ev_timer_stop(m->loop, &j->timer);
	ev_timer_init(&j->timer, cb_mgr_job_lease, MGR_LOCK_EXTEND_S, MGR_LOCK_EXTEND_S);
	j->timer.data = j;
	ev_timer_start(m->loop, &j->timer);
	log_info("host=%s %s started", j->host, j->renewal ? "renewal" : "issuance");
	if (acme_order_start(m->acme, j->host,
			     j->renewal && c && c->info.ari_cert_id[0] ? c->info.ari_cert_id : NULL,
			     mgr_order_done, j) == -1)
		mgr_job_end(j, 0, "the ACME client could not start the order", -1);
}

/* The certificate another node may have stored while this job waited. */
static void cb_mgr_job_checked(void *arg, struct storage_res *res)
{
	struct mgr_job *j = arg;
	struct mgr *m = j->m;
	struct mgr_cert *c;

	j->req = NULL;
	mgr_storage_result(m, res);
	if (res->rc == 0)
		mgr_cert_take(m, j->host, res->val, res->len, 1);
	c = mgr_cert_get(m, j->host);
	if (c && strcmp(c->info.serial_hex, j->serial0) != 0) {
		log_info("host=%s certificate issued by another node", j->host);
		mgr_job_end(j, 1, NULL, -1);
		return;
	}
	if (j->locked)
		mgr_job_order(j);
	else
		mgr_job_lock(j);
}

static void mgr_job_check(struct mgr_job *j)
{
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "certs/%s", j->host);
	j->state = MGR_JOB_CHECK;
	j->req = storage_get(j->m->st, key, cb_mgr_job_checked, j);
	if (!j->req)
		mgr_job_end(j, 0, "out of memory", -1);
}

static void cb_mgr_job_lock_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	/* the node holding the lock may have finished: take its certificate */
	mgr_job_check(w->data);
}

static void cb_mgr_job_locked(void *arg, struct storage_res *res)
{
	struct mgr_job *j = arg;
	struct mgr *m = j->m;

	j->req = NULL;
	mgr_storage_result(m, res);
	if (res->rc == 0) {
		j->locked = 1;
		/* the lock may have been released by a node that just finished */
		if (j->lock_tries > 0)
			mgr_job_check(j);
		else
			mgr_job_order(j);
		return;
	}
	if (res->rc == -1 || ++j->lock_tries > MGR_LOCK_MAX_TRIES) {
		mgr_job_end(j, 0, res->rc == -1 ? res->err : "another node held the issuance lock too long", -1);
		return;
	}
	if (j->lock_tries == 1)
		log_info("host=%s another node is issuing, waiting for it", j->host);
	j->state = MGR_JOB_LOCKING;
	ev_timer_stop(m->loop, &j->timer);
	ev_timer_init(&j->timer, cb_mgr_job_lock_retry, MGR_LOCK_RETRY_S, 0);
	j->timer.data = j;
	ev_timer_start(m->loop, &j->timer);
}

static void mgr_job_lock(struct mgr_job *j)
{
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "issue/%s", j->host);
	j->state = MGR_JOB_LOCK;
	j->req = storage_lock(j->m->st, key, j->m->node_id, MGR_LOCK_LEASE_MS, cb_mgr_job_locked, j);
	if (!j->req)
		mgr_job_end(j, 0, "out of memory", -1);
}

static void mgr_ask_done(void *arg, const struct http_response *res)
{
	struct mgr_job *j = arg;
	char why[512];

	if (res->status >= 200 && res->status < 300) {
		mgr_job_lock(j);
		return;
	}
	j->m->cnt.refused_ask++;
	if (res->status == 0)
		snprintf(why, sizeof(why), "ask_url unreachable: %s", res->error ? res->error : "?");
	else
		snprintf(why, sizeof(why), "ask_url refused the name (HTTP %ld)", res->status);
	log_info("host=%s not issued: %s", j->host, why);
	mgr_job_end(j, 0, why, -1);
}

static void mgr_job_ask(struct mgr_job *j)
{
	struct mgr *m = j->m;
	char url[2048];

	if (!m->cfg->ask_url || j->forced || j->renewal) {
		mgr_job_lock(j);
		return;
	}
	/* host names are LDH: nothing to escape */
	snprintf(url, sizeof(url), "%s%sdomain=%s", m->cfg->ask_url,
		 strchr(m->cfg->ask_url, '?') ? "&" : "?", j->host);
	j->state = MGR_JOB_ASKING;
	if (http_request(m->http, "GET", url, NULL, NULL, 0, 10000, mgr_ask_done, j) == -1)
		mgr_job_end(j, 0, "ask_url request not started", -1);
}

/* The fleet's record of past failures for the host: another node may have
 * failed on it a moment ago. */
static void cb_mgr_job_backoff(void *arg, struct storage_res *res)
{
	struct mgr_job *j = arg;
	struct mgr *m = j->m;
	time_t until;
	long failures;

	j->req = NULL;
	mgr_storage_result(m, res);
	if (res->rc == 0 && mgr_backoff_parse(res->val, res->len, &until, &failures) == 0) {
		mgr_backoff_remember(m, j->host, until, failures);
		if (until > time(NULL)) {
			m->cnt.refused_backoff++;
			log_info("host=%s not issued: in failure backoff for %llds", j->host,
				 (long long)(until - time(NULL)));
			mgr_job_finish(j, 0, 1, "in failure backoff", -1);
			return;
		}
	}
	/* unreadable or unreachable: storage errors surface at the lock */
	mgr_job_ask(j);
}

static void mgr_job_start(struct mgr_job *j)
{
	char key[STORAGE_KEY_MAX];

	if (j->forced || j->renewal) {
		mgr_job_ask(j);
		return;
	}
	snprintf(key, sizeof(key), "backoff/%s", j->host);
	j->state = MGR_JOB_BACKOFF;
	j->req = storage_get(j->m->st, key, cb_mgr_job_backoff, j);
	if (!j->req)
		mgr_job_end(j, 0, "out of memory", -1);
}

/* Jobs past the queue count against max_concurrent_orders at every stage
 * (backoff check, ask_url, lock, order). */
static unsigned mgr_jobs_active(const struct mgr *m)
{
	return (unsigned)(m->jobs.count - m->queued);
}

static void cb_mgr_job_next(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mgr *m = w->data;

	while (m->queue_head && mgr_jobs_active(m) < (unsigned)m->cfg->max_orders) {
		struct mgr_job *j = m->queue_head;

		m->queue_head = j->next_queued;
		if (!m->queue_head)
			m->queue_tail = NULL;
		j->next_queued = NULL;
		m->queued--;
		mgr_job_start(j);
	}
}

static void mgr_job_kick(struct mgr *m)
{
	if (!m->queue_head || ev_is_active(&m->job_kick))
		return;
	ev_timer_init(&m->job_kick, cb_mgr_job_next, 0., 0.);
	m->job_kick.data = m;
	ev_timer_start(m->loop, &m->job_kick);
}

int mgr_issue(struct mgr *m, const char *host, int renewal, int forced, struct admin_req *req)
{
	struct mgr_job *j = hmap_get(&m->jobs, host);
	struct mgr_waiter *w = NULL;

	if (req) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return -1;
		w->req = req;
	}
	if (j) {
		if (w) {
			w->next = j->waiters;
			j->waiters = w;
		}
		return 0;
	}
	j = calloc(1, sizeof(*j));
	if (!j || hmap_put(&m->jobs, host, j, NULL) == -1) {
		free(j);
		free(w);
		return -1;
	}
	j->m = m;
	snprintf(j->host, sizeof(j->host), "%s", host);
	{
		struct mgr_cert *c = mgr_cert_get(m, host);

		snprintf(j->serial0, sizeof(j->serial0), "%s", c ? c->info.serial_hex : "");
	}
	j->renewal = renewal;
	j->forced = forced;
	j->waiters = w;
	ev_init(&j->timer, NULL);
	j->state = MGR_JOB_QUEUED;
	if (m->queue_tail)
		m->queue_tail->next_queued = j;
	else
		m->queue_head = j;
	m->queue_tail = j;
	m->queued++;
	mgr_job_kick(m);
	return 0;
}

void mgr_job_settle(struct mgr *m, const char *host)
{
	struct mgr_job *j = hmap_get(&m->jobs, host);
	struct mgr_cert *c = mgr_cert_get(m, host);

	if (!j || j->state != MGR_JOB_LOCKING || !c || strcmp(c->info.serial_hex, j->serial0) == 0)
		return;
	log_info("host=%s certificate issued by another node", j->host);
	mgr_job_end(j, 1, NULL, -1);
}

void mgr_job_free(void *p)
{
	struct mgr_job *j = p;
	struct mgr_waiter *w, *next;

	for (w = j->waiters; w; w = next) {
		next = w->next;
		admin_reply_message(w->req, 503, "the agent is shutting down");
		free(w);
	}
	storage_cancel(j->req);
	ev_timer_stop(j->m->loop, &j->timer);
	free(j);
}
