/* Issuance jobs: one per host however many requests ask (single flight),
 * queued under max_concurrent_orders, checked against ask_url, guarded by a
 * storage lock so that a fleet orders each name once, marked "pending/<host>"
 * while the order runs so that a crash resumes it, and followed by a per-host
 * failure backoff that doubles on each consecutive failure. */
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

static void mgr_job_next(struct mgr *m);

/* ---- backoff ------------------------------------------------------------- */

int mgr_backoff_active(struct mgr *m, const char *host, time_t *until)
{
	char key[STORAGE_KEY_MAX], err[256], *val = NULL;
	json_t *j;
	size_t len;
	time_t u = 0;

	snprintf(key, sizeof(key), "backoff/%s", host);
	if (storage_get(m->st, key, &val, &len, err, sizeof(err)) != 0)
		return 0;
	j = json_loadb(val, len, 0, NULL);
	free(val);
	if (!j)
		return 0;
	u = (time_t)json_integer_value(json_object_get(j, "until"));
	json_decref(j);
	if (until)
		*until = u;
	return u > time(NULL);
}

/* Records a failure: the wait starts at fail_backoff_minutes and doubles on
 * each consecutive failure, capped at a day; a CA's Retry-After wins if longer. */
static void mgr_backoff_record(struct mgr *m, const char *host, const char *why, long retry_after)
{
	char key[STORAGE_KEY_MAX], err[256], *val = NULL, *text;
	json_t *j = NULL;
	size_t len;
	long failures = 0, wait;
	time_t now = time(NULL);

	snprintf(key, sizeof(key), "backoff/%s", host);
	if (storage_get(m->st, key, &val, &len, err, sizeof(err)) == 0) {
		j = json_loadb(val, len, 0, NULL);
		failures = j ? (long)json_integer_value(json_object_get(j, "failures")) : 0;
		json_decref(j);
	}
	free(val);
	failures++;
	wait = (long)m->cfg->fail_backoff_minutes * 60;
	for (long i = 1; i < failures && wait < MGR_BACKOFF_MAX_S; i++)
		wait *= 2;
	if (wait > MGR_BACKOFF_MAX_S)
		wait = MGR_BACKOFF_MAX_S;
	if (retry_after > wait)
		wait = retry_after;
	j = json_pack("{s:I, s:I, s:s}", "failures", (json_int_t)failures,
		      "until", (json_int_t)(now + wait), "error", why ? why : "");
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (text && storage_put(m->st, key, text, strlen(text), wait + MGR_BACKOFF_MAX_S,
				err, sizeof(err)) == -1) {
		m->cnt.storage_errors++;
		log_err("host=%s cannot store backoff: %s", host, err);
	}
	free(text);
	log_warn("host=%s issuance failed (%ld in a row), next attempt not before %lds: %s",
		 host, failures, wait, why ? why : "");
}

static void mgr_backoff_clear(struct mgr *m, const char *host)
{
	char key[STORAGE_KEY_MAX], err[256];

	snprintf(key, sizeof(key), "backoff/%s", host);
	storage_del(m->st, key, err, sizeof(err));
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

static void mgr_job_end(struct mgr_job *j, int ok, const char *why, long retry_after)
{
	struct mgr *m = j->m;
	char key[STORAGE_KEY_MAX], err[256], msg[1024];

	ev_timer_stop(m->loop, &j->timer);
	if (j->state == MGR_JOB_ORDERING) {
		m->orders_running--;
		snprintf(key, sizeof(key), "pending/%s", j->host);
		storage_del(m->st, key, err, sizeof(err));
		snprintf(key, sizeof(key), "issue/%s", j->host);
		storage_unlock(m->st, key, m->node_id, err, sizeof(err));
	}
	if (ok) {
		snprintf(msg, sizeof(msg), "certificate for host %s is created", j->host);
		mgr_job_reply(j, 201, msg);
	} else {
		if (!j->forced || j->state == MGR_JOB_ORDERING)
			mgr_backoff_record(m, j->host, why, retry_after);
		snprintf(msg, sizeof(msg), "failed to create certificate for host %s: %s", j->host,
			 why ? why : "unknown error");
		mgr_job_reply(j, j->state == MGR_JOB_ASKING ? 400 : 500, msg);
	}
	hmap_del(&m->jobs, j->host);
	free(j);
	mgr_job_next(m);
}

static void mgr_order_done(void *arg, const char *host, const struct acme_result *res)
{
	struct mgr_job *j = arg;
	struct mgr *m = j->m;
	char key[STORAGE_KEY_MAX], err[256], why[1024];
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
	if (j->renewal)
		mgr_renewed_at_store(m, host, time(NULL));
	snprintf(key, sizeof(key), "certs/%s", host);
	if (storage_put(m->st, key, bundle, clen + klen, 0, err, sizeof(err)) == -1) {
		m->cnt.storage_errors++;
		m->cnt.fail_storage++;
		m->cnt.orders_failed++;
		log_err("host=%s certificate issued but not stored: %s", host, err);
		crypto_secret_free(bundle, clen + klen);
		mgr_job_end(j, 0, err, -1);
		return;
	}
	c = mgr_cert_install(m, host, bundle, clen + klen);
	crypto_secret_free(bundle, clen + klen);
	if (!c) {
		m->cnt.orders_failed++;
		mgr_job_end(j, 0, "the CA returned an unreadable certificate", -1);
		return;
	}
	m->cnt.orders_ok++;
	if (j->renewal)
		m->cnt.renewals++;
	log_info("host=%s order=%s certificate issued serial=%s not_after=%s issuer=\"%s\"", host,
		 res->order_url ? res->order_url : "-", c->info.serial_hex, c->info.not_after_str,
		 c->info.issuer_cn);
	mgr_cert_deploy(m, c);
	storage_publish(m->st, MGR_CERTS_CHANNEL, host, strlen(host), err, sizeof(err));
	mgr_backoff_clear(m, host);
	mgr_job_end(j, 1, NULL, -1);
	mgr_renew_schedule(m);
}

static void mgr_job_lease_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mgr_job *j = w->data;
	struct mgr *m = j->m;
	char key[STORAGE_KEY_MAX], err[256];

	snprintf(key, sizeof(key), "issue/%s", j->host);
	if (storage_lock(m->st, key, m->node_id, MGR_LOCK_LEASE_MS, err, sizeof(err)) != 0)
		log_warn("host=%s cannot extend issuance lock: %s", j->host, err);
}

static void mgr_job_order(struct mgr_job *j)
{
	struct mgr *m = j->m;
	struct mgr_cert *c = mgr_cert_get(m, j->host);
	char key[STORAGE_KEY_MAX], err[256];
	const char *mark = j->renewal ? "renewal" : "new";

	snprintf(key, sizeof(key), "pending/%s", j->host);
	storage_put(m->st, key, mark, strlen(mark), 0, err, sizeof(err));
	j->state = MGR_JOB_ORDERING;
	m->orders_running++;
	m->cnt.orders_started++;
	ev_timer_init(&j->timer, mgr_job_lease_cb, MGR_LOCK_EXTEND_S, MGR_LOCK_EXTEND_S);
	j->timer.data = j;
	ev_timer_start(m->loop, &j->timer);
	log_info("host=%s %s started", j->host, j->renewal ? "renewal" : "issuance");
	if (acme_order_start(m->acme, j->host,
			     j->renewal && c && c->info.ari_cert_id[0] ? c->info.ari_cert_id : NULL,
			     mgr_order_done, j) == -1)
		mgr_job_end(j, 0, "the ACME client could not start the order", -1);
}

static void mgr_job_lock(struct mgr_job *j);

/* 1 when another node has stored a newer certificate for the job's host
 * since the job began (then it is installed and deployed here). */
static int mgr_job_done_elsewhere(struct mgr_job *j)
{
	struct mgr_cert *c;

	mgr_cert_load(j->m, j->host, 1);
	c = mgr_cert_get(j->m, j->host);
	return c && strcmp(c->info.serial_hex, j->serial0) != 0;
}

static void mgr_job_lock_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mgr_job *j = w->data;

	/* the node holding the lock may have finished: take its certificate */
	if (mgr_job_done_elsewhere(j)) {
		log_info("host=%s certificate issued by another node", j->host);
		mgr_job_end(j, 1, NULL, -1);
		return;
	}
	mgr_job_lock(j);
}

static void mgr_job_lock(struct mgr_job *j)
{
	struct mgr *m = j->m;
	char key[STORAGE_KEY_MAX], err[256];
	int rc;

	snprintf(key, sizeof(key), "issue/%s", j->host);
	rc = storage_lock(m->st, key, m->node_id, MGR_LOCK_LEASE_MS, err, sizeof(err));
	if (rc == 0) {
		/* the lock may have been released by a node that just finished */
		if (j->lock_tries > 0 && mgr_job_done_elsewhere(j)) {
			storage_unlock(m->st, key, m->node_id, err, sizeof(err));
			log_info("host=%s certificate issued by another node", j->host);
			mgr_job_end(j, 1, NULL, -1);
			return;
		}
		mgr_job_order(j);
		return;
	}
	if (rc == -1 || ++j->lock_tries > MGR_LOCK_MAX_TRIES) {
		m->cnt.storage_errors += rc == -1;
		mgr_job_end(j, 0, rc == -1 ? err : "another node held the issuance lock too long", -1);
		return;
	}
	if (j->lock_tries == 1)
		log_info("host=%s another node is issuing, waiting for it", j->host);
	j->state = MGR_JOB_LOCKING;
	ev_timer_stop(m->loop, &j->timer);
	ev_timer_init(&j->timer, mgr_job_lock_retry_cb, MGR_LOCK_RETRY_S, 0);
	j->timer.data = j;
	ev_timer_start(m->loop, &j->timer);
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

static void mgr_job_start(struct mgr_job *j)
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

static void mgr_job_next(struct mgr *m)
{
	while (m->queue_head && m->orders_running < (unsigned)m->cfg->max_orders) {
		struct mgr_job *j = m->queue_head;

		m->queue_head = j->next_queued;
		if (!m->queue_head)
			m->queue_tail = NULL;
		j->next_queued = NULL;
		mgr_job_start(j);
	}
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
	mgr_job_next(m);
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
