/* SPDX-License-Identifier: Apache-2.0 */
/* Issuance jobs: one per host however many requests ask (single flight),
 * queued under max_concurrent_orders (every stage counts: backoff read,
 * ask_url, lock, order), checked against the failure backoff and ask_url,
 * guarded by a storage lock so that a fleet orders each name once, marked
 * "pending/<host>" while the order runs so that a stop resumes it, installed
 * through the certificate store, and followed by a per-host failure backoff
 * that doubles on each consecutive failure. */
#ifndef ACME_SPOA_JOBS_H
#define ACME_SPOA_JOBS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct admin_req;
struct certstore;
struct config;
struct ev_loop;
struct health;
struct http_client;
struct issuers;
struct storage;

/* What jobs report to their owner; every member may be NULL. */
struct jobs_hooks {
	/* a renewal of <host> issued a certificate at <t>: called before it is
	 * installed, so that its next due time knows it */
	void (*renewed)(void *arg, const char *host, time_t t);
	/* <host>'s job ended (<ok>: a certificate is in memory); a seam for
	 * observers such as the unit tests */
	void (*ended)(void *arg, const char *host, int ok);
	void *arg;
};

struct ratelimit;

struct jobs_stats {
	uint64_t orders_started, orders_ok, orders_failed, renewals, renewals_failed;
	uint64_t fail_rate_limited, fail_ca, fail_transport, fail_storage;
	uint64_t refused_backoff;	/* by the shared backoff record */
	uint64_t refused_ask;		/* by ask_url */
	uint64_t refused_budget;	/* on-demand names refused by the CA's rate limits */
	uint64_t refused_queue;
	uint64_t backoff_evicted;	/* backoff entries dropped from memory by the bound */		/* on-demand names refused: max_queued_orders reached */
	size_t jobs;			/* jobs in memory, queued included */
	size_t queued;			/* jobs waiting for a slot */
	size_t backoff_mem;		/* backoff entries in memory */
	unsigned orders_running;	/* jobs ordering or storing */
};

/* Creates the job table. <cfg> (live keys read at each use), <st>, <iss>
 * (the CAs, tried in order: an order that fails for the CA's reasons falls
 * through to the next within the job), <http>, <cs> and <health> are
 * borrowed and must outlive it. The lock owner
 * token is stable across restarts of this node (host name and spoa.listen),
 * so a node killed mid-order takes its own locks back at once. Returns NULL
 * when out of memory. */
struct jobs *jobs_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
		      struct issuers *iss, struct http_client *http, struct certstore *cs,
		      struct health *health);

/* This node's lock owner token (hex, NUL-terminated) into <out>: a digest
 * of the host name and spoa.listen, stable across restarts. */
#define JOBS_OWNER_TOKEN_LEN 33
void jobs_owner_token(const struct config *cfg, char out[JOBS_OWNER_TOKEN_LEN]);

/* Sets the hooks (copied) through which <j> reports. */
void jobs_set_hooks(struct jobs *j, const struct jobs_hooks *hooks);

/* Frees every job (admin requests waiting get a 503, storage calls are
 * cancelled), the backoff memory and <j>. Call it before the admin server is
 * freed. Accepts NULL. */
void jobs_free(struct jobs *j);

/* Starts (or joins) issuance for <host>. <req> is an admin request answered
 * when the job ends, or NULL. <renewal> sends `replaces` and skips the
 * backoff read and ask_url; <forced> (admin) skips them too and records no
 * backoff for a failure before the order. The job starts on a later loop
 * turn. An on-demand job (neither) is refused when max_queued_orders jobs
 * already wait for a slot (counted, logged at most once a minute; no record
 * is written): renewals and admin requests are bounded by what is stored
 * and by who may call the admin API. Returns 0, JOBS_QUEUE_FULL, or -1 when
 * out of memory (<req> is then not answered). */
#define JOBS_QUEUE_FULL 1
int jobs_issue(struct jobs *j, const char *host, int renewal, int forced, struct admin_req *req);

/* 1 when an on-demand job would be refused now (the queue is full). */
int jobs_queue_full(const struct jobs *j);

/* 1 when a job for <host> is queued or running, else 0. */
int jobs_active(const struct jobs *j, const char *host);

/* Ends <host>'s job when it waits for another node's lock and memory now
 * holds a different certificate than when it began (received from that
 * node). */
void jobs_settle(struct jobs *j, const char *host);

/* 1 if on-demand issuance of <host> is refused now by its failure backoff
 * known in memory; the end of the wait in <until> (when not NULL) whenever
 * one is known. */
int jobs_backoff_active(const struct jobs *j, const char *host, time_t *until);

/* Sets <host>'s backoff in memory: wait until <until>, <failures> in a row
 * (bounded; entries a day past their end are swept). */
void jobs_backoff_remember(struct jobs *j, const char *host, time_t until, long failures);

/* Resumes, in the background (the listing of "pending/" can take seconds
 * at a million names), the issuances a stop cut off
 * ("pending/<host>"), under today's policy: a renewal of a certificate held
 * here as a renewal; any other name only when domains (or wildcard_domains)
 * allow it now, then through the fleet's backoff and ask_url like an
 * on-demand name. A record refused (now or by those checks) is deleted. */
void jobs_resume_pending(struct jobs *j);

/* 1 while jobs_resume_pending()'s reads are under way. */
int jobs_resuming(const struct jobs *j);

/* The rate limits of the first CA (core/ratelimit.h; each issuer has its own). */
struct ratelimit *jobs_ratelimit(const struct jobs *j);

/* Copies <j>'s counters and gauges into <out>. */
void jobs_stats(const struct jobs *j, struct jobs_stats *out);

#endif
