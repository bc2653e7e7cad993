/* SPDX-License-Identifier: Apache-2.0 */
/* Issuance jobs (jobs.h).
 *
 * Each step waits for one storage call or HTTP request at a time (j->req);
 * ending a job cancels it. Queued jobs start from a timer on the next loop
 * turn, so a chain of failing jobs never recurses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "acme/acme.h"
#include "acme/crypto.h"
#include "acme/http.h"
#include "admin/admin.h"
#include "core/certstore.h"
#include "core/config.h"
#include "core/health.h"
#include "core/issuers.h"
#include "core/jobs.h"
#include "core/ratelimit.h"
#include "lib/hmap.h"
#include "lib/host.h"
#include "lib/log.h"
#include "storage/storage.h"

/* the issuance lock lives lock_lease seconds unextended, extended every
 * quarter of it */
#define JOB_LOCK_LEASE_MS(js)	((unsigned)(js)->cfg->lock_lease * 1000u)
#define JOB_LOCK_EXTEND_S(js)	((js)->cfg->lock_lease / 4.0)
#define JOB_LOCK_RETRY_S	2.0
#define JOB_LOCK_MAX_TRIES	150	/* 5 minutes of waiting for another node */
#define JOB_BACKOFF_MAX_S	(24 * 3600)
#define JOB_BACKOFF_SWEEP_S	300.0
/* in-memory bound: strangers choose SNI names */
#define JOBS_BACKOFF_MEM_MAX	50000
#define JOBS_NODE_ID_BYTES	16	/* of the digest, in hex in the lock owner token */

enum job_state {
	JOB_QUEUED = 0,		/* waiting for a slot under max_concurrent_orders */
	JOB_BACKOFF,		/* reading the shared failure backoff */
	JOB_ASKING,		/* ask_url request in flight */
	JOB_LOCK,		/* lock request in flight */
	JOB_LOCKING,		/* another node holds the issuance lock: waiting */
	JOB_CHECK,		/* reading the certificate another node may have stored */
	JOB_BUDGET,		/* checking the CA's rate limits (core/ratelimit.c) */
	JOB_ORDERING,		/* ACME order running */
	JOB_STORING,		/* storing the new certificate */
	JOB__MAX
};

/* A failure backoff known in memory (this node's failures, ask_url's
 * refusals and the records read from shared storage), so the SPOE path never
 * asks storage. Bounded: the least recently recorded goes first. */
struct job_backoff {
	TAILQ_ENTRY(job_backoff) lru;
	time_t until;
	long failures;
	char host[];
};

struct job_waiter {
	struct job_waiter *next;
	struct admin_req *req;
};

/* One issuance or renewal of one host, however many requests asked for it. */
struct job {
	struct jobs *js;
	char host[CERTSTORE_HOST_MAX];
	enum job_state state;
	int renewal;			/* replaces an existing certificate */
	int forced;			/* admin request: skip allow-list and backoff */
	int resumed;			/* resumed from "pending/<host>": dropped when refused */
	int lock_tries;
	int locked;			/* holds the issuance lock */
	int lost;			/* ... lost it: paused past its lease, another
					 * node may have taken over (nothing more is
					 * written) */
	uint64_t gen;			/* the lock's fencing generation */
	struct storage_req *lease_req;	/* the lease extension in flight */
	ev_tstamp lease_ok;		/* when the lease was last taken or extended */
	char *failed_why;		/* a failed order waiting for the lease check */
	char serial0[130];		/* serial held when the job began ("" if none) */
	ev_timer timer;			/* lease extension / lock retry */
	struct storage_req *req;	/* the storage call the job waits for */
	struct ratelimit_check *rlc;	/* the rate limit check the job waits for */
	enum ratelimit_class rl_class;	/* what the CA's budgets count it as */
	size_t plan[CONFIG_ISSUERS_MAX];	/* issuers to try, in order (issuers_plan()) */
	size_t nplan, step;		/* plan[step] is the issuer of the order */
	int preferred;			/* the first choice: the current certificate's
					 * issuer for a renewal, else the first */
	int cert_issuer;		/* issuer of the current certificate, -1 unknown */
	struct job *next_queued;
	struct job_waiter *waiters;
};

struct jobs {
	struct ev_loop *loop;
	const struct config *cfg;
	struct storage *st;
	struct issuers *iss;
	struct http_client *http;
	struct certstore *cs;
	struct health *health;
	struct jobs_hooks hooks;
	char node_id[2 * JOBS_NODE_ID_BYTES + 1];	/* lock owner token of this process */
	struct hmap map;		/* host -> struct job */
	struct hmap backoff;		/* host -> struct job_backoff */
	TAILQ_HEAD(, job_backoff) backoff_lru;	/* least recently recorded first */
	struct job *queue_head, *queue_tail;
	size_t queued;			/* jobs in the queue */
	unsigned orders_running;
	ev_timer kick;			/* starts queued jobs on the next turn */
	ev_tstamp queue_full_logged;	/* last "queue full" log line */
	ev_timer backoff_sweep;
	struct jobs_stats stats;	/* counters; gauges filled by jobs_stats() */
	/* the resume of cut-off issuances, in the background: the listing of
	 * "pending/" (redis: a SCAN of the whole keyspace), then each record */
	struct storage_req *resume_req;	/* the listing or one record's read */
	struct storage_res resume_list;	/* the listed keys (taken from the listing) */
	size_t resume_next;		/* the next of them to read */
};

static void job_kick(struct jobs *js);
static void job_lock(struct job *j);

/* ---- backoff ------------------------------------------------------------- */

int jobs_backoff_active(const struct jobs *js, const char *host, time_t *until)
{
	struct job_backoff *b = hmap_get(&js->backoff, host);

	if (!b)
		return 0;
	if (until)
		*until = b->until;
	return b->until > time(NULL);
}

void jobs_backoff_remember(struct jobs *js, const char *host, time_t until, long failures)
{
	struct job_backoff *b = hmap_get(&js->backoff, host);
	size_t hl = strlen(host);

	if (b) {
		TAILQ_REMOVE(&js->backoff_lru, b, lru);
	} else {
		if (js->backoff.count >= JOBS_BACKOFF_MEM_MAX) {
			struct job_backoff *old = TAILQ_FIRST(&js->backoff_lru);

			/* the shared record, if any, still holds it: a job reads it */
			TAILQ_REMOVE(&js->backoff_lru, old, lru);
			hmap_del(&js->backoff, old->host);
			free(old);
			js->stats.backoff_evicted++;
		}
		if (!(b = calloc(1, sizeof(*b) + hl + 1)))
			return;
		memcpy(b->host, host, hl + 1);
		if (hmap_put(&js->backoff, host, b, NULL) == -1) {
			free(b);
			return;
		}
	}
	TAILQ_INSERT_TAIL(&js->backoff_lru, b, lru);
	b->until = until;
	b->failures = failures;
}

static void job_backoff_forget(struct jobs *js, const char *host)
{
	struct job_backoff *b = hmap_del(&js->backoff, host);

	if (b) {
		TAILQ_REMOVE(&js->backoff_lru, b, lru);
		free(b);
	}
}

/* Drops the entries whose wait ended a day ago (the failure count matters
 * for a day after the wait ends), walking the LRU list: no second map. */
static void cb_jobs_backoff_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct jobs *js = w->data;
	struct job_backoff *b, *next;
	time_t now = time(NULL);

	for (b = TAILQ_FIRST(&js->backoff_lru); b; b = next) {
		next = TAILQ_NEXT(b, lru);
		if (b->until + JOB_BACKOFF_MAX_S < now)
			job_backoff_forget(js, b->host);
	}
}

static void job_backoff_init(struct jobs *js)
{
	hmap_init(&js->backoff);
	TAILQ_INIT(&js->backoff_lru);
	ev_timer_init(&js->backoff_sweep, cb_jobs_backoff_sweep, JOB_BACKOFF_SWEEP_S, JOB_BACKOFF_SWEEP_S);
	js->backoff_sweep.data = js;
	ev_timer_start(js->loop, &js->backoff_sweep);
	ev_init(&js->kick, NULL);
}

static void job_backoff_stop(struct jobs *js)
{
	ev_timer_stop(js->loop, &js->backoff_sweep);
	hmap_clear(&js->backoff, free);
}

/* Parses a stored backoff record; 0 when it is readable. */
static int job_backoff_parse(const char *val, size_t len, time_t *until, long *failures)
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

static void cb_job_storage_ignore(void *arg, struct storage_res *res)
{
	health_storage_result(((struct jobs *)arg)->health, res);
}

/* Records a failure: the wait starts at fail_backoff_minutes and doubles on
 * each consecutive failure, capped at a day; a CA's Retry-After wins if
 * longer, up to a week. Memory first, storage for the fleet. */
static void job_backoff_record(struct jobs *js, const char *host, const char *why, long retry_after,
			       int store)
{
	struct job_backoff *b = hmap_get(&js->backoff, host);
	char key[STORAGE_KEY_MAX], *text;
	long failures = (b ? b->failures : 0) + 1, wait;
	time_t now = time(NULL);
	json_t *j;

	wait = (long)js->cfg->fail_backoff_minutes * 60;
	for (long i = 1; i < failures && wait < JOB_BACKOFF_MAX_S; i++)
		wait *= 2;
	if (wait > JOB_BACKOFF_MAX_S)
		wait = JOB_BACKOFF_MAX_S;
	if (retry_after > 7 * JOB_BACKOFF_MAX_S)
		retry_after = 7 * JOB_BACKOFF_MAX_S;
	if (retry_after > wait)
		wait = retry_after;
	jobs_backoff_remember(js, host, now + wait, failures);
	if (!store) {
		log_info("host=%s not issued (%ld in a row), next attempt not before %lds: %s",
			 host, failures, wait, why ? why : "");
		return;
	}
	snprintf(key, sizeof(key), "backoff/%s", host);
	j = json_pack("{s:I, s:I, s:s}", "failures", (json_int_t)failures,
		      "until", (json_int_t)(now + wait), "error", why ? why : "");
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (text)
		storage_put(js->st, key, text, strlen(text), (unsigned)(wait + JOB_BACKOFF_MAX_S),
			    cb_job_storage_ignore, js);
	free(text);
	log_warn("host=%s issuance failed (%ld in a row), next attempt not before %lds: %s",
		 host, failures, wait, why ? why : "");
}

static void job_backoff_clear(struct jobs *js, const char *host)
{
	char key[STORAGE_KEY_MAX];

	job_backoff_forget(js, host);
	snprintf(key, sizeof(key), "backoff/%s", host);
	storage_del(js->st, key, cb_job_storage_ignore, js);
}

/* ---- jobs ---------------------------------------------------------------- */

static void job_reply(struct job *j, unsigned status, const char *msg)
{
	struct job_waiter *w, *next;

	for (w = j->waiters; w; w = next) {
		next = w->next;
		admin_reply_message(w->req, status, msg);
		free(w);
	}
	j->waiters = NULL;
}

/* How a job that did not issue ended. */
enum job_fail {
	JOB_FAILED = 0,		/* a failure: backoff in memory and in storage */
	JOB_REFUSED_BACKOFF,	/* the shared backoff refused it: nothing new recorded */
	JOB_REFUSED_ASK,	/* ask_url refused it: backoff in memory only (no
				 * record a stranger's names could multiply) */
	JOB_REFUSED_BUDGET,	/* the CA's rate limits refused it (the caller set
				 * the memory backoff to when the window frees) */
	JOB_REFUSED_LOST,	/* the issuance lock was lost: nothing recorded */
};

/* Ends <j>: <ok> issued (here or elsewhere); else ended as <refused> says,
 * for <why>. Frees <j>. */
static void job_finish(struct job *j, int ok, enum job_fail refused, const char *why,
		       long retry_after)
{
	struct jobs *js = j->js;
	char key[STORAGE_KEY_MAX], msg[1024], host[CERTSTORE_HOST_MAX];

	ev_timer_stop(js->loop, &j->timer);
	storage_cancel(j->req);
	j->req = NULL;
	storage_cancel(j->lease_req);
	j->lease_req = NULL;
	ratelimit_check_cancel(j->rlc);
	j->rlc = NULL;
	/* under a lost lease this node writes nothing more: the pending mark,
	 * the lock and the backoff are the new holder's */
	if (j->lost) {
		refused = JOB_REFUSED_LOST;
		j->locked = 0;
		if (j->state == JOB_ORDERING || j->state == JOB_STORING)
			js->orders_running--;
	} else if (j->state == JOB_ORDERING || j->state == JOB_STORING) {
		js->orders_running--;
		snprintf(key, sizeof(key), "pending/%s", j->host);
		storage_del(js->st, key, cb_job_storage_ignore, js);
	} else if (j->resumed) {
		/* refused before its order (backoff, ask_url): not resumed again */
		snprintf(key, sizeof(key), "pending/%s", j->host);
		storage_del(js->st, key, cb_job_storage_ignore, js);
	}
	if (j->locked) {
		snprintf(key, sizeof(key), "issue/%s", j->host);
		storage_unlock(js->st, key, js->node_id, cb_job_storage_ignore, js);
	}
	if (ok) {
		snprintf(msg, sizeof(msg), "certificate for host %s is created", j->host);
		job_reply(j, 201, msg);
	} else {
		if (refused == JOB_REFUSED_ASK)
			job_backoff_record(js, j->host, why, -1, 0);
		else if (refused == JOB_FAILED && (!j->forced || j->state == JOB_ORDERING ||
						   j->state == JOB_STORING))
			job_backoff_record(js, j->host, why, retry_after, 1);
		snprintf(msg, sizeof(msg), "failed to create certificate for host %s: %s", j->host,
			 why ? why : "unknown error");
		job_reply(j, refused == JOB_REFUSED_BUDGET ? 429 : refused == JOB_REFUSED_LOST ? 409 :
			  j->state == JOB_ASKING || refused ? 400 : 500, msg);
	}
	snprintf(host, sizeof(host), "%s", j->host);
	hmap_del(&js->map, j->host);
	free(j->failed_why);
	free(j);
	job_kick(js);
	if (js->hooks.ended)
		js->hooks.ended(js->hooks.arg, host, ok);
}

static void job_end(struct job *j, int ok, const char *why, long retry_after)
{
	job_finish(j, ok, JOB_FAILED, why, retry_after);
}

/* The issuer of <j>'s order (its plan is made at the budget check). */
static const char *job_issuer_name(const struct job *j)
{
	return issuers_conf(j->js->iss, j->plan[j->step])->name;
}

static struct ratelimit *job_rl(const struct job *j)
{
	return issuers_ratelimit(j->js->iss, j->plan[j->step]);
}

static int job_fall_through(struct job *j);

/* After the lease was lost, the certificate stored meanwhile (by the node
 * that took over) replaces whatever this node holds; the job ends. */
static void cb_job_lost_read(void *arg, struct storage_res *res)
{
	struct job *j = arg;
	struct certstore_cert *c;

	j->req = NULL;
	health_storage_result(j->js->health, res);
	if (res->rc == 0)
		certstore_take(j->js->cs, j->host, res->val, res->len, 1);
	c = certstore_get(j->js->cs, j->host);
	job_finish(j, c && strcmp(c->info.serial_hex, j->serial0) != 0, JOB_REFUSED_LOST,
		   "another node took over the issuance lock", -1);
}

/* <j> lost its issuance lock (<why>): it writes nothing more and orders
 * nothing more; it takes what storage holds now. */
static void job_lost(struct job *j, const char *why)
{
	char key[STORAGE_KEY_MAX];

	j->lost = 1;
	log_warn("host=%s %s: the issuance lock was lost (paused past its lease?), "
		 "this node's result is discarded and the stored certificate taken", j->host, why);
	ev_timer_stop(j->js->loop, &j->timer);
	storage_cancel(j->req);
	snprintf(key, sizeof(key), "certs/%s", j->host);
	j->req = storage_get(j->js->st, key, cb_job_lost_read, j);
	if (!j->req)
		job_finish(j, 0, JOB_REFUSED_LOST, "out of memory", -1);
}

/* The end of a stored issuance: the change is announced to the fleet. */
static void job_stored_end(struct job *j)
{
	struct certstore_cert *c = certstore_get(j->js->cs, j->host);

	if (c)
		certstore_announce(j->js->cs, j->host, c->info.serial_hex);
	job_backoff_clear(j->js, j->host);
	job_end(j, 1, NULL, -1);
}

static void cb_job_meta_stored(void *arg, struct storage_res *res)
{
	struct job *j = arg;

	j->req = NULL;
	health_storage_result(j->js->health, res);
	if (res->rc == 1)
		log_warn("host=%s metadata record not written: the issuance lock was taken over "
			 "meanwhile (the new holder writes its own)", j->host);
	else if (res->rc == -1)
		log_err("host=%s cannot write its metadata record: %s", j->host, res->err);
	job_stored_end(j);
}

/* "meta/<host>" of <c>, fenced like the certificate. The job waits for it
 * before it ends and releases the lock: a release first would make the
 * store refuse the fenced write (on Consul the two race as separate HTTP
 * requests). NULL when there is nothing to write (or out of memory). */
static struct storage_req *job_meta_put(struct job *j, const struct certstore_cert *c)
{
	char key[STORAGE_KEY_MAX], lock[STORAGE_KEY_MAX], *text;
	struct storage_req *req;
	size_t len;

	if (!c->has_info)
		return NULL;
	if (!(text = certstore_meta_encode(c->host, &c->info, &len))) {
		log_err("host=%s cannot write its metadata record: out of memory", c->host);
		return NULL;
	}
	snprintf(key, sizeof(key), "meta/%s", c->host);
	snprintf(lock, sizeof(lock), "issue/%s", c->host);
	req = storage_put_fenced(j->js->st, key, text, len, lock, j->js->node_id, j->gen,
				 cb_job_meta_stored, j);
	free(text);
	return req;
}

static void cb_job_stored(void *arg, struct storage_res *res)
{
	struct job *j = arg;
	struct jobs *js = j->js;
	struct certstore_cert *c;
	char why[512];

	j->req = NULL;
	health_storage_result(js->health, res);
	if (res->rc == 1) {	/* fenced: another node holds the lock now */
		job_lost(j, "certificate not stored");
		return;
	}
	if (res->rc == -1) {
		js->stats.fail_storage++;
		js->stats.orders_failed++;
		log_err("host=%s certificate issued but not stored: %s", j->host, res->err);
		snprintf(why, sizeof(why), "certificate issued but not stored: %s", res->err);
		job_end(j, 0, why, -1);
		return;
	}
	c = certstore_get(js->cs, j->host);
	if (!c) {
		job_end(j, 0, "certificate lost after storing", -1);
		return;
	}
	js->stats.orders_ok++;
	if (j->renewal)
		js->stats.renewals++;
	/* after the certificate: a record never names one not stored */
	j->req = job_meta_put(j, c);
	if (!j->req)
		job_stored_end(j);
}

/* The answer of the lease check a failed order waited for: lost, the
 * failure is this node's pause, not the name's or the CA's, and the node
 * takes what the new holder stored; still held (the loop only stalled), the
 * order failed without recording a backoff or marking the CA down, as that
 * failure cannot be told from the stall. */
static void cb_job_recheck(void *arg, struct storage_res *res)
{
	struct job *j = arg;

	j->lease_req = NULL;
	health_storage_result(j->js->health, res);
	if (res->rc == 1) {
		job_lost(j, "order failed");
		return;
	}
	job_finish(j, 0, JOB_REFUSED_LOST, j->failed_why, -1);
}

/* 1 when <j>'s order ended with its lease not confirmed for a whole lease
 * (this node was paused, or its loop stalled): another node may hold the
 * lock now. */
static int job_lease_stale(const struct job *j)
{
	return j->locked && !j->lost &&
	       ev_now(j->js->loop) - j->lease_ok >= (double)j->js->cfg->lock_lease;
}

static void job_order_done(void *arg, const char *host, const struct acme_result *res)
{
	struct job *j = arg;
	struct jobs *js = j->js;
	char key[STORAGE_KEY_MAX], lock[STORAGE_KEY_MAX], why[1024], na[CERTSTORE_TIME_STR];
	struct certstore_cert *c;
	size_t clen, klen;
	char *bundle;

	if (j->lost) {	/* ended while this node was paused past its lease */
		js->stats.orders_failed++;
		job_lost(j, res->ok ? "certificate issued" : "order failed");
		return;
	}
	if (!res->ok && job_lease_stale(j)) {
		/* a request that timed out while this node was paused says
		 * nothing of the CA nor of the name: whether the lock is still
		 * ours decides what is written */
		js->stats.orders_failed++;
		log_warn("host=%s order failed after the lease went unconfirmed for %.0f s: "
			 "checking the issuance lock before recording anything", host,
			 ev_now(js->loop) - j->lease_ok);
		ev_timer_stop(js->loop, &j->timer);
		storage_cancel(j->lease_req);
		j->failed_why = strdup(res->problem.detail ? res->problem.detail : "order failed");
		snprintf(lock, sizeof(lock), "issue/%s", host);
		j->lease_req = storage_lock_fenced(js->st, lock, js->node_id, j->gen,
						   JOB_LOCK_LEASE_MS(js), cb_job_recheck, j);
		if (!j->lease_req)
			job_finish(j, 0, JOB_REFUSED_LOST, "out of memory", -1);
		return;
	}
	if (!res->ok) {
		const struct acme_problem *p = &res->problem;
		int ca_fault = issuers_ca_fault(p);

		js->stats.orders_failed++;
		if (p->status == 429)
			js->stats.fail_rate_limited++;
		else if (p->status == 0)
			js->stats.fail_transport++;
		else
			js->stats.fail_ca++;
		if (ratelimit_is_validation_failure(p->type))
			ratelimit_record_failure(job_rl(j), host, j->rl_class);
		snprintf(why, sizeof(why), "%s%s%s%s%s", p->type ? p->type : "error",
			 p->detail ? ": " : "", p->detail ? p->detail : "",
			 p->subproblems ? " " : "", p->subproblems ? p->subproblems : "");
		log_err("host=%s issuer=%s order=%s failed: %s", host, job_issuer_name(j),
			res->order_url ? res->order_url : "-", why);
		issuers_order_failed(js->iss, j->plan[j->step], ca_fault, why, p->retry_after);
		if (ca_fault && job_fall_through(j))
			return;
		if (j->renewal)
			js->stats.renewals_failed++;
		job_end(j, 0, why, p->retry_after);
		return;
	}
	clen = strlen(res->cert_pem);
	klen = strlen(res->key_pem);
	bundle = malloc(clen + klen + 2);
	if (!bundle) {
		job_end(j, 0, "out of memory", -1);
		return;
	}
	memcpy(bundle, res->cert_pem, clen);
	if (clen && bundle[clen - 1] != '\n')
		bundle[clen++] = '\n';
	memcpy(bundle + clen, res->key_pem, klen + 1);
	ratelimit_record_issued(job_rl(j), host, j->rl_class);
	/* known before the install computes the next due time: no renewal loop */
	if (j->renewal)
		if (js->hooks.renewed)
			js->hooks.renewed(js->hooks.arg, host, time(NULL));
	/* memory and HAProxy first: the certificate serves while storage writes */
	c = certstore_install(js->cs, host, bundle, clen + klen);
	if (c)
		certstore_deploy_issued(js->cs, c, j->renewal);
	if (!c) {
		crypto_secret_free(bundle, clen + klen);
		js->stats.orders_failed++;
		job_end(j, 0, "the CA returned an unreadable certificate", -1);
		return;
	}
	log_info("host=%s issuer=%s order=%s certificate issued serial=%s not_after=%s issuer_cn=\"%s\"",
		 host, job_issuer_name(j), res->order_url ? res->order_url : "-", c->info.serial_hex,
		 certstore_time_str(c->info.not_after, na), c->info.issuer_cn);
	issuers_issued(js->iss, j->plan[j->step], c->info.issuer_cn,
		       (int)j->plan[j->step] != j->preferred);
	snprintf(key, sizeof(key), "certs/%s", host);
	snprintf(lock, sizeof(lock), "issue/%s", host);
	j->state = JOB_STORING;
	/* refused when another node took the lock over (this one was paused) */
	j->req = storage_put_fenced(js->st, key, bundle, clen + klen, lock, js->node_id, j->gen,
				    cb_job_stored, j);
	crypto_secret_free(bundle, clen + klen);
	if (!j->req)
		job_end(j, 0, "out of memory", -1);
}

static void cb_job_leased(void *arg, struct storage_res *res)
{
	struct job *j = arg;

	j->lease_req = NULL;
	health_storage_result(j->js->health, res);
	if (res->rc == 0)
		j->lease_ok = ev_now(j->js->loop);
	if (res->rc != 1 || j->lost)
		return;	/* an error: the fenced write decides */
	/* the order's end (ORDERING) or the write's (STORING) takes it on */
	j->lost = 1;
	ev_timer_stop(j->js->loop, &j->timer);
	log_warn("host=%s the issuance lock's lease was lost: this node writes nothing more for it",
		 j->host);
}

/* Extends only the lease this job holds: one lost meanwhile (this node
 * paused past it) is not taken again. */
static void cb_job_lease(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct job *j = w->data;
	struct jobs *js = j->js;
	char key[STORAGE_KEY_MAX];

	if (j->lease_req)
		return;
	snprintf(key, sizeof(key), "issue/%s", j->host);
	j->lease_req = storage_lock_fenced(js->st, key, js->node_id, j->gen, JOB_LOCK_LEASE_MS(js),
					   cb_job_leased, j);
}

static void job_order(struct job *j)
{
	struct jobs *js = j->js;
	struct certstore_cert *c = certstore_get(js->cs, j->host);
	char key[STORAGE_KEY_MAX];
	const char *mark = j->renewal ? "renewal" : "new";

	snprintf(key, sizeof(key), "pending/%s", j->host);
	storage_put(js->st, key, mark, strlen(mark), 0, cb_job_storage_ignore, js);
	j->state = JOB_ORDERING;
	js->orders_running++;
	js->stats.orders_started++;
	ev_timer_stop(js->loop, &j->timer);
	ev_timer_init(&j->timer, cb_job_lease, JOB_LOCK_EXTEND_S(js), JOB_LOCK_EXTEND_S(js));
	j->timer.data = j;
	ev_timer_start(js->loop, &j->timer);
	log_info("host=%s %s started issuer=%s", j->host, j->renewal ? "renewal" : "issuance",
		 job_issuer_name(j));
	/* `replaces` means something only to the CA that issued the certificate */
	if (acme_order_start(issuers_acme(js->iss, j->plan[j->step]), j->host,
			     j->renewal && c && c->info.ari_cert_id[0] &&
			     (int)j->plan[j->step] == j->cert_issuer ? c->info.ari_cert_id : NULL,
			     job_order_done, j) == -1)
		job_end(j, 0, "the ACME client could not start the order", -1);
}

/* ---- rate limits: after ask_url and the fleet lock, before the order ------ */

static void job_budget_done(void *arg, int rc, const char *why, time_t until)
{
	struct job *j = arg;

	j->rlc = NULL;
	if (rc == 0) {
		job_order(j);
		return;
	}
	if (rc == 1) {
		/* this CA's budget is spent: the next one may have room */
		if (job_fall_through(j))
			return;
		/* no retry before the window frees: renewals and SNI both wait */
		jobs_backoff_remember(j->js, j->host, until, 0);
		if (!j->forced && !j->renewal)
			j->js->stats.refused_budget++;
		job_finish(j, 0, JOB_REFUSED_BUDGET, why, -1);
		return;
	}
	job_end(j, 0, why, -1);
}

static void job_budget(struct job *j)
{
	struct jobs *js = j->js;
	struct certstore_cert *c = certstore_get(js->cs, j->host);
	size_t cur;

	if (!j->nplan) {
		/* renewals go first to the CA of the current certificate; one no
		 * CA of the list is known to have issued (imported, or issued
		 * before issuers) counts as the first's, as ARI asks it */
		j->cert_issuer = c ? issuers_for_cn(js->iss, c->info.issuer_cn) : -1;
		if (c && j->cert_issuer < 0)
			j->cert_issuer = 0;
		j->preferred = j->renewal && j->cert_issuer >= 0 ? j->cert_issuer : 0;
		j->nplan = issuers_plan(js->iss, j->preferred, j->plan);
		j->step = 0;
	}
	cur = j->plan[j->step];
	if (j->renewal && c && c->info.ari_cert_id[0] && (int)cur == j->cert_issuer &&
	    acme_has_ari(issuers_acme(js->iss, cur)))
		j->rl_class = RATELIMIT_EXEMPT;	/* sends `replaces` */
	else
		j->rl_class = j->renewal || j->serial0[0] ? RATELIMIT_RENEWAL : RATELIMIT_NEW;
	j->state = JOB_BUDGET;
	j->rlc = ratelimit_check(job_rl(j), j->host, j->rl_class, job_budget_done, j);
	if (!j->rlc)
		job_end(j, 0, "out of memory", -1);
}

/* After a failure for the CA's reasons: the job's next issuer, at once and
 * under the same lock, so a held ClientHello still gets a certificate when
 * any CA works. Returns 1 when it goes on there, 0 when none is left. */
static int job_fall_through(struct job *j)
{
	struct jobs *js = j->js;
	const char *from = job_issuer_name(j);

	if (j->step + 1 >= j->nplan)
		return 0;
	if (j->state == JOB_ORDERING) {
		js->orders_running--;
		ev_timer_stop(js->loop, &j->timer);
	}
	j->step++;
	log_warn("host=%s issuer=%s failed: falling back to issuer=%s", j->host, from,
		 job_issuer_name(j));
	job_budget(j);
	return 1;
}

/* The certificate another node may have stored while this job waited. */
static void cb_job_checked(void *arg, struct storage_res *res)
{
	struct job *j = arg;
	struct jobs *js = j->js;
	struct certstore_cert *c;

	j->req = NULL;
	health_storage_result(js->health, res);
	if (res->rc == 0)
		certstore_take(js->cs, j->host, res->val, res->len, 1);
	c = certstore_get(js->cs, j->host);
	if (c && strcmp(c->info.serial_hex, j->serial0) != 0) {
		log_info("host=%s certificate issued by another node", j->host);
		job_end(j, 1, NULL, -1);
		return;
	}
	if (j->locked)
		job_budget(j);
	else
		job_lock(j);
}

static void job_check(struct job *j)
{
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "certs/%s", j->host);
	j->state = JOB_CHECK;
	j->req = storage_get(j->js->st, key, cb_job_checked, j);
	if (!j->req)
		job_end(j, 0, "out of memory", -1);
}

static void cb_job_lock_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	/* the node holding the lock may have finished: take its certificate */
	job_check(w->data);
}

static void cb_job_locked(void *arg, struct storage_res *res)
{
	struct job *j = arg;
	struct jobs *js = j->js;

	j->req = NULL;
	health_storage_result(js->health, res);
	if (res->rc == 0) {
		j->locked = 1;
		j->gen = res->gen;
		j->lease_ok = ev_now(js->loop);
		/* the lock may have been released (or its lease lost) by a node
		 * that stored a certificate a moment ago: never order twice */
		job_check(j);
		return;
	}
	if (res->rc == -1 || ++j->lock_tries > JOB_LOCK_MAX_TRIES) {
		job_end(j, 0, res->rc == -1 ? res->err : "another node held the issuance lock too long", -1);
		return;
	}
	if (j->lock_tries == 1)
		log_info("host=%s another node is issuing, waiting for it", j->host);
	j->state = JOB_LOCKING;
	ev_timer_stop(js->loop, &j->timer);
	ev_timer_init(&j->timer, cb_job_lock_retry, JOB_LOCK_RETRY_S, 0);
	j->timer.data = j;
	ev_timer_start(js->loop, &j->timer);
}

static void job_lock(struct job *j)
{
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "issue/%s", j->host);
	j->state = JOB_LOCK;
	j->req = storage_lock(j->js->st, key, j->js->node_id, JOB_LOCK_LEASE_MS(j->js), cb_job_locked, j);
	if (!j->req)
		job_end(j, 0, "out of memory", -1);
}

static void job_ask_done(void *arg, const struct http_response *res)
{
	struct job *j = arg;
	char why[512];

	if (res->status >= 200 && res->status < 300) {
		job_lock(j);
		return;
	}
	j->js->stats.refused_ask++;
	if (res->status == 0)
		snprintf(why, sizeof(why), "ask_url unreachable: %s", res->error ? res->error : "?");
	else
		snprintf(why, sizeof(why), "ask_url refused the name (HTTP %ld)", res->status);
	job_finish(j, 0, JOB_REFUSED_ASK, why, -1);
}

static void job_ask(struct job *j)
{
	struct jobs *js = j->js;
	char url[2048];

	if (!js->cfg->ask_url || j->forced || j->renewal) {
		job_lock(j);
		return;
	}
	/* host names are LDH: nothing to escape */
	snprintf(url, sizeof(url), "%s%sdomain=%s", js->cfg->ask_url,
		 strchr(js->cfg->ask_url, '?') ? "&" : "?", j->host);
	j->state = JOB_ASKING;
	if (http_request(js->http, "GET", url, NULL, NULL, 0, 10000, job_ask_done, j) == -1)
		job_end(j, 0, "ask_url request not started", -1);
}

/* The fleet's record of past failures for the host: another node may have
 * failed on it a moment ago. */
static void cb_job_backoff(void *arg, struct storage_res *res)
{
	struct job *j = arg;
	struct jobs *js = j->js;
	time_t until;
	long failures;

	j->req = NULL;
	health_storage_result(js->health, res);
	if (res->rc == 0 && job_backoff_parse(res->val, res->len, &until, &failures) == 0) {
		jobs_backoff_remember(js, j->host, until, failures);
		if (until > time(NULL)) {
			js->stats.refused_backoff++;
			log_info("host=%s not issued: in failure backoff for %llds", j->host,
				 (long long)(until - time(NULL)));
			job_finish(j, 0, JOB_REFUSED_BACKOFF, "in failure backoff", -1);
			return;
		}
	}
	/* unreadable or unreachable: storage errors surface at the lock */
	job_ask(j);
}

static void job_start(struct job *j)
{
	char key[STORAGE_KEY_MAX];

	if (j->forced || j->renewal) {
		job_ask(j);
		return;
	}
	snprintf(key, sizeof(key), "backoff/%s", j->host);
	j->state = JOB_BACKOFF;
	j->req = storage_get(j->js->st, key, cb_job_backoff, j);
	if (!j->req)
		job_end(j, 0, "out of memory", -1);
}

/* Jobs past the queue count against max_concurrent_orders at every stage
 * (backoff check, ask_url, lock, order). */
static unsigned jobs_running(const struct jobs *js)
{
	return (unsigned)(js->map.count - js->queued);
}

static void cb_job_next(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct jobs *js = w->data;

	while (js->queue_head && jobs_running(js) < (unsigned)js->cfg->max_orders) {
		struct job *j = js->queue_head;

		js->queue_head = j->next_queued;
		if (!js->queue_head)
			js->queue_tail = NULL;
		j->next_queued = NULL;
		js->queued--;
		job_start(j);
	}
}

static void job_kick(struct jobs *js)
{
	if (!js->queue_head || ev_is_active(&js->kick))
		return;
	ev_timer_init(&js->kick, cb_job_next, 0., 0.);
	js->kick.data = js;
	ev_timer_start(js->loop, &js->kick);
}

int jobs_queue_full(const struct jobs *js)
{
	return js->queued >= (size_t)js->cfg->max_queued;
}

int jobs_issue(struct jobs *js, const char *host, int renewal, int forced, struct admin_req *req)
{
	struct job *j = hmap_get(&js->map, host);
	struct job_waiter *w = NULL;

	if (!j && !renewal && !forced && jobs_queue_full(js)) {
		ev_tstamp now = ev_now(js->loop);

		js->stats.refused_queue++;
		if (now - js->queue_full_logged >= 60.) {
			js->queue_full_logged = now;
			log_warn("host=%s on-demand issuance refused: %zu names already wait "
				 "(max_queued_orders); %llu refused so far", host, js->queued,
				 (unsigned long long)js->stats.refused_queue);
		}
		return JOBS_QUEUE_FULL;
	}

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
	if (!j || hmap_put(&js->map, host, j, NULL) == -1) {
		free(j);
		free(w);
		return -1;
	}
	j->js = js;
	snprintf(j->host, sizeof(j->host), "%s", host);
	{
		struct certstore_cert *c = certstore_get(js->cs, host);

		snprintf(j->serial0, sizeof(j->serial0), "%s", c ? c->info.serial_hex : "");
	}
	j->renewal = renewal;
	j->forced = forced;
	j->waiters = w;
	ev_init(&j->timer, NULL);
	j->state = JOB_QUEUED;
	if (js->queue_tail)
		js->queue_tail->next_queued = j;
	else
		js->queue_head = j;
	js->queue_tail = j;
	js->queued++;
	job_kick(js);
	return 0;
}

void jobs_settle(struct jobs *js, const char *host)
{
	struct job *j = hmap_get(&js->map, host);
	struct certstore_cert *c = certstore_get(js->cs, host);

	if (!j || j->state != JOB_LOCKING || !c || strcmp(c->info.serial_hex, j->serial0) == 0)
		return;
	log_info("host=%s certificate issued by another node", j->host);
	job_end(j, 1, NULL, -1);
}

static void job_free(void *p)
{
	struct job *j = p;
	struct job_waiter *w, *next;

	for (w = j->waiters; w; w = next) {
		next = w->next;
		admin_reply_message(w->req, 503, "the agent is shutting down");
		free(w);
	}
	storage_cancel(j->req);
	ratelimit_check_cancel(j->rlc);
	ev_timer_stop(j->js->loop, &j->timer);
	free(j);
}

int jobs_active(const struct jobs *js, const char *host)
{
	return hmap_get(&js->map, host) != NULL;
}

void jobs_stats(const struct jobs *js, struct jobs_stats *out)
{
	*out = js->stats;
	out->jobs = js->map.count;
	out->queued = js->queued;
	out->backoff_mem = js->backoff.count;
	out->orders_running = js->orders_running;
}

struct ratelimit *jobs_ratelimit(const struct jobs *js)
{
	return issuers_ratelimit(js->iss, 0);
}

void jobs_set_hooks(struct jobs *js, const struct jobs_hooks *hooks)
{
	js->hooks = *hooks;
}

/* A name a resumed record may still be issued for now: allowed by domains
 * (or allow_any_domain) as on-demand and POST /acme require, or the
 * "*.<zone>" certificate of a zone of wildcard_domains. */
static int jobs_resume_allowed(const struct jobs *js, const char *host)
{
	char wc[CERTSTORE_HOST_MAX];

	if (config_domain_allowed(js->cfg, host))
		return 1;
	return host[0] == '*' && host[1] == '.' &&
	       config_wildcard_name(js->cfg, host + 2, wc, sizeof(wc)) && strcmp(wc, host) == 0;
}

static void jobs_resume_step(struct jobs *js);

/* One cut-off issuance's record read: resumed under today's policy. */
static void cb_jobs_resume_get(void *arg, struct storage_res *res)
{
	struct jobs *js = arg;
	const char *key = js->resume_list.keys[js->resume_next];
	char host[CERTSTORE_HOST_MAX];
	int renewal;
	struct job *j;

	js->resume_req = NULL;
	js->resume_next++;
	if (host_normalize(key + strlen("pending/"), host, sizeof(host), HOST_WILDCARD) == -1)
		goto next;	/* checked before the read */
	renewal = res->rc == 0 && res->len == 7 && memcmp(res->val, "renewal", 7) == 0;
	/* the record is storage's word: a renewal only of a certificate held
	 * here, which renewal policy covers; anything else is a new name and
	 * must pass what an on-demand name passes now (domains, then the
	 * fleet's backoff and ask_url in the job) */
	if (!certstore_stored(js->cs, host))
		renewal = 0;
	if (!renewal && !jobs_resume_allowed(js, host)) {
		log_warn("host=%s issuance cut off by a stop not resumed: the name is not "
			 "allowed now", host);
		storage_del(js->st, key, cb_job_storage_ignore, js);
		goto next;
	}
	log_info("host=%s resuming an issuance cut off by a stop", host);
	if (jobs_issue(js, host, renewal, 0, NULL) == 0 && (j = hmap_get(&js->map, host)))
		j->resumed = 1;
next:
	jobs_resume_step(js);
}

/* Reads the next listed record, or ends the resume. */
static void jobs_resume_step(struct jobs *js)
{
	char host[CERTSTORE_HOST_MAX];

	while (js->resume_next < js->resume_list.n) {
		const char *key = js->resume_list.keys[js->resume_next];

		if (host_normalize(key + strlen("pending/"), host, sizeof(host), HOST_WILDCARD) == -1) {
			js->resume_next++;
			continue;
		}
		js->resume_req = storage_get(js->st, key, cb_jobs_resume_get, js);
		if (js->resume_req)
			return;
		js->resume_next++;
	}
	storage_res_clear(&js->resume_list);
	js->resume_next = 0;
}

static void cb_jobs_resume_list(void *arg, struct storage_res *res)
{
	struct jobs *js = arg;

	js->resume_req = NULL;
	if (res->rc != 0) {
		log_err("cannot list cut-off issuances: %s", res->err);
		return;
	}
	js->resume_list.keys = res->keys;
	js->resume_list.n = res->n;
	res->keys = NULL;
	res->n = 0;
	js->resume_next = 0;
	jobs_resume_step(js);
}

void jobs_resume_pending(struct jobs *js)
{
	if (js->resume_req)
		return;		/* under way */
	js->resume_req = storage_list(js->st, "pending/", cb_jobs_resume_list, js);
	if (!js->resume_req)
		log_err("cannot list cut-off issuances: out of memory");
}

int jobs_resuming(const struct jobs *js)
{
	return js->resume_req != NULL;
}

/* The lock owner token: a digest of the host name and spoa.listen. */
void jobs_owner_token(const struct config *cfg, char out[JOBS_OWNER_TOKEN_LEN])
{
	char hn[256] = "", id[600];
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	size_t i;

	gethostname(hn, sizeof(hn) - 1);
	snprintf(id, sizeof(id), "%s|%s", hn, cfg->spoa_listen);
	if (!EVP_Digest(id, strlen(id), md, &mdlen, EVP_sha256(), NULL))
		RAND_bytes(md, JOBS_NODE_ID_BYTES);
	for (i = 0; i < JOBS_NODE_ID_BYTES; i++)
		sprintf(out + i * 2, "%02x", md[i]);
}

static void jobs_node_id(struct jobs *js)
{
	_Static_assert(sizeof(js->node_id) == JOBS_OWNER_TOKEN_LEN, "one token size");
	jobs_owner_token(js->cfg, js->node_id);
}

struct jobs *jobs_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
		      struct issuers *iss, struct http_client *http, struct certstore *cs,
		      struct health *health)
{
	struct jobs *js = calloc(1, sizeof(*js));

	if (!js)
		goto out;
	js->loop = loop;
	js->queue_full_logged = -1e9;
	js->cfg = cfg;
	js->st = st;
	js->iss = iss;
	js->http = http;
	js->cs = cs;
	js->health = health;
	hmap_init(&js->map);
	job_backoff_init(js);
	jobs_node_id(js);
out:
	return js;
}

void jobs_free(struct jobs *js)
{
	if (!js)
		return;
	ev_timer_stop(js->loop, &js->kick);
	storage_cancel(js->resume_req);
	storage_res_clear(&js->resume_list);
	hmap_clear(&js->map, job_free);
	job_backoff_stop(js);
	free(js);
}
