/* Internals of the certificate manager, shared by core/manager.c (state,
 * push, fleet feed), core/mgr_job.c (issuance), core/mgr_challenge.c,
 * core/mgr_renew.c (scheduler) and core/mgr_api.c (SPOE handlers, admin API,
 * metrics).
 *
 * The loop never waits: every storage call is asynchronous (storage.h), disk
 * writes to cert_dir run on a worker queue, and the SPOE handlers answer from
 * memory (certificates, jobs, backoff, this node's challenges); the one
 * exception, an http-01 token another node created, defers its ACK. */
#ifndef ACME_SPOA_MGR_INT_H
#define ACME_SPOA_MGR_INT_H

#include <ev.h>
#include <stdint.h>
#include <time.h>

#include "acme/crypto.h"
#include "lib/heap.h"
#include "lib/hmap.h"
#include "lib/workq.h"

struct acme_client;
struct admin;
struct admin_req;
struct config;
struct http_client;
struct rt;
struct spoa_server;
struct mgr_chstore;
struct mgr_sync;
struct spoa_deferred;
struct storage;
struct storage_req;
struct storage_res;
struct storage_sub;

#define MGR_HOST_MAX 256
/* pub/sub channel announcing "<host>" when a node stores a new certificate */
#define MGR_CERTS_CHANNEL "certs"
/* change feed of certificates: member host, version serial_hex */
#define MGR_CERTS_FEED "certs"
/* in-memory bounds: strangers choose SNI names and tokens */
#define MGR_BACKOFF_MEM_MAX	100000
#define MGR_LOOKUPS_MAX		1024	/* http-01 storage look-ups in flight */
#define MGR_CHCACHE_MAX		1024	/* key authorizations found in shared storage */
#define MGR_CHCACHE_TTL		60	/* seconds: a CA validates from several places */

/* A certificate the manager holds: in memory for O(1) lookups on the SPOE path. */
struct mgr_cert {
	struct mgr *m;
	char host[MGR_HOST_MAX];
	char *pem;			/* chain + key bundle as stored */
	size_t len;
	int on_disk;			/* this very PEM is in haproxy.cert_dir */
	struct crypto_cert_info info;
	time_t ari_start, ari_end;	/* 0 when unknown */
	time_t ari_next;		/* when to ask the CA again */
	time_t renewed_at;		/* when this host was last renewed (renewals/<host>) */
	time_t due;			/* renewal due time */
	time_t wake;			/* min(due, ari_next): key in m->due */
	size_t hidx;			/* position in m->due, HEAP_NONE when out */
	unsigned writing;		/* cert_dir writes in flight */
	int renewed_at_pending;		/* "renewals/<host>" being read */
};

/* A failure backoff known in memory (this node's failures and those read
 * from shared storage), so the SPOE path never asks storage. */
struct mgr_backoff {
	time_t until;
	long failures;
};

enum mgr_job_state {
	MGR_JOB_QUEUED = 0,		/* waiting for a slot under max_concurrent_orders */
	MGR_JOB_BACKOFF,		/* reading the shared failure backoff */
	MGR_JOB_ASKING,			/* ask_url request in flight */
	MGR_JOB_LOCK,			/* lock request in flight */
	MGR_JOB_LOCKING,		/* another node holds the issuance lock: waiting */
	MGR_JOB_CHECK,			/* reading the certificate another node may have stored */
	MGR_JOB_ORDERING,		/* ACME order running */
	MGR_JOB_STORING,		/* storing the new certificate */
	MGR_JOB__MAX
};

struct mgr_waiter {
	struct mgr_waiter *next;
	struct admin_req *req;
};

/* One issuance or renewal of one host, however many requests asked for it. */
struct mgr_job {
	struct mgr *m;
	char host[MGR_HOST_MAX];
	enum mgr_job_state state;
	int renewal;			/* replaces an existing certificate */
	int forced;			/* admin request: skip allow-list and backoff */
	int lock_tries;
	int locked;			/* holds the issuance lock */
	char serial0[130];		/* serial held when the job began ("" if none) */
	ev_timer timer;			/* lease extension / lock retry */
	struct storage_req *req;	/* the storage call the job waits for */
	struct mgr_job *next_queued;
	struct mgr_waiter *waiters;
};

struct mgr_counters {
	uint64_t orders_started, orders_ok, orders_failed, renewals, renewals_failed;
	uint64_t fail_rate_limited, fail_ca, fail_transport, fail_storage, fail_push;
	uint64_t sni_msgs, http01_msgs, http01_hits, refused_name, refused_backoff, refused_ask;
	uint64_t storage_errors, push_ok, push_failed;
	uint64_t http01_deferred, http01_lookup_busy, feed_reads, feed_changes;
};

/* An http-01 look-up in shared storage while HAProxy waits for the ACK. */
struct mgr_lookup {
	struct mgr *m;
	struct spoa_deferred *d;
	struct storage_req *req;
	struct mgr_lookup *prev, *next;
};

struct mgr {
	struct ev_loop *loop;
	struct config *cfg;
	struct storage *st;
	struct storage_sub *sub;
	struct acme_client *acme;
	struct http_client *http;
	struct rt *rt;
	struct spoa_server *spoa;
	struct admin *admin;
	char node_id[40];		/* lock owner token of this process */
	char account_id[40];		/* storage id of (CA, email) */
	struct hmap certs;		/* host -> struct mgr_cert */
	struct hmap jobs;		/* host -> struct mgr_job */
	struct hmap challenges;		/* token -> key authorization (malloc'd) */
	struct hmap backoff;		/* host -> struct mgr_backoff */
	struct hmap chcache;		/* token -> struct mgr_chcached */
	struct mgr_job *queue_head, *queue_tail;
	size_t queued;			/* jobs in the queue */
	unsigned orders_running;
	ev_timer job_kick;		/* starts queued jobs on the next turn */
	struct heap due;		/* certificates by wake time */
	ev_timer renew_timer;
	ev_timer reconcile_timer;
	ev_timer backoff_sweep;
	int renew_running;
	struct workq *wq;		/* cert_dir writes and unlinks */
	struct mgr_lookup *lookups;	/* http-01 look-ups in flight */
	unsigned nlookups;
	struct mgr_chstore *chstores;	/* challenge stores in flight */
	uint64_t feed_gen;		/* change feed read up to here */
	int feed_reading;
	int storage_ok;			/* last storage answer was not an error */
	char storage_err[256];
	ev_tstamp storage_pinged;	/* when /healthz last pinged storage */
	int closing;			/* mgr_free() runs */
	struct mgr_sync *syncs;		/* HAProxy sync rounds in progress */
	size_t loading;			/* start-up: certificate reads in flight */
	struct mgr_counters cnt;
	time_t started;
};

/* manager.c */
struct mgr_cert *mgr_cert_get(struct mgr *m, const char *host);
/* Parses and installs <pem> for <host> in memory (replacing any older one). */
struct mgr_cert *mgr_cert_install(struct mgr *m, const char *host, const char *pem, size_t len);
/* Writes <c> to haproxy.cert_dir (on the worker queue), then pushes it over
 * every runtime socket. */
void mgr_cert_deploy(struct mgr *m, struct mgr_cert *c);
void mgr_cert_remove(struct mgr *m, const char *host);
/* Starts reading "certs/<host>" from storage; when it differs from what
 * memory holds it is installed and deployed (absent: removed when
 * <absent_removes>). Completes on the loop later. */
void mgr_cert_fetch(struct mgr *m, const char *host, int absent_removes);
/* Installs <pem> read from "certs/<host>" unless memory holds that very
 * certificate; deploys it when <deploy>. Returns the certificate when it
 * changed, else NULL. */
struct mgr_cert *mgr_cert_take(struct mgr *m, const char *host, const char *pem, size_t len,
			       int deploy);
/* Records that <host> was renewed at <t> ("renewals/<host>"). */
void mgr_renewed_at_store(struct mgr *m, const char *host, time_t t);
/* Tells the fleet that <host>'s certificate changed (NULL <serial>: deleted):
 * change feed, then pub/sub. */
void mgr_announce(struct mgr *m, const char *host, const char *serial);
/* Counts a storage result: keeps the health state and the error counter. */
void mgr_storage_result(struct mgr *m, const struct storage_res *res);
/* mgr_challenge.c: token -> key authorization, in memory and in storage
 * (TTL) so that any node answers; lookup falls back to storage. The two
 * hooks are the ACME client's (struct acme_hooks). */
int mgr_hook_challenge_store(void *arg, const char *host, const char *token, const char *keyauth,
			     void (*done)(void *ctx, int ok, const char *err), void *ctx);
void mgr_hook_challenge_store_cancel(void *arg, void *ctx);
void mgr_hook_challenge_clear(void *arg, const char *host, const char *token);
void mgr_challenge_put_local(struct mgr *m, const char *token, const char *keyauth);
/* 1 when <token> has the shape of an ACME token (base64url, 1..256). */
int mgr_token_valid(const char *token);
/* The key authorization for <token> that memory holds: this node's
 * challenges, or one found in shared storage a moment ago. NULL if none. */
const char *mgr_challenge_local(struct mgr *m, const char *token);
/* Looks <token> up in shared storage and completes <d> (the deferred ACK)
 * with the answer. Returns 0 started, -1 (bounds reached: <d> untouched). */
int mgr_challenge_lookup_shared(struct mgr *m, const char *token, struct spoa_deferred *d);
/* Completes every look-up in flight (shutdown). */
void mgr_challenge_shutdown(struct mgr *m);
/* Stores in memory and in storage (<done> when storage answered, may be NULL). */
void mgr_challenge_store(struct mgr *m, const char *token, const char *keyauth, unsigned ttl);
void mgr_challenge_forget(struct mgr *m, const char *token);
/* Pushes every certificate HAProxy behind socket <sock_idx> lacks. */
void mgr_sync_haproxy(struct mgr *m, size_t sock_idx);

/* mgr_job.c */
/* Starts (or joins) issuance for <host>; <req> is an admin request to answer
 * when it ends, or NULL. <renewal> sends `replaces`; <forced> skips the
 * ask_url check. Returns 0 or -1 (out of memory). */
int mgr_issue(struct mgr *m, const char *host, int renewal, int forced, struct admin_req *req);
/* Ends <host>'s job when it waits for another node's lock and that node's
 * certificate has arrived (pub/sub or reconcile). */
void mgr_job_settle(struct mgr *m, const char *host);
/* Frees a job at shutdown (hmap_clear callback): waiters get a 503. */
void mgr_job_free(void *p);
/* 1 if on-demand issuance of <host> is refused now by its failure backoff
 * known in memory; the end of the wait in <until> when not NULL. */
int mgr_backoff_active(struct mgr *m, const char *host, time_t *until);
/* Sets <host>'s backoff in memory (bounded, expired entries swept). */
void mgr_backoff_remember(struct mgr *m, const char *host, time_t until, long failures);
void mgr_backoff_init(struct mgr *m);
void mgr_backoff_stop(struct mgr *m);

/* mgr_renew.c */
void mgr_renew_init(struct mgr *m);
/* Computes <c>'s due time from its dates, renew_threshold_days and ARI. */
void mgr_renew_compute(struct mgr *m, struct mgr_cert *c);
/* (Re)places <c> in the wake-time index, not before <floor>. */
void mgr_renew_index(struct mgr *m, struct mgr_cert *c, time_t floor);
void mgr_renew_unindex(struct mgr *m, struct mgr_cert *c);
/* Re-arms the scheduler on the earliest due time (at most an hour away). */
void mgr_renew_schedule(struct mgr *m);
/* Runs a renewal pass now: every due certificate gets a renewal job. */
void mgr_renew_pass(struct mgr *m, int force_all);
void mgr_renew_stop(struct mgr *m);

/* mgr_api.c: the handler table (NULL-terminated) and the admin operations */
extern const struct spoa_handler *const mgr_spoa_handlers;
extern const struct admin_ops mgr_admin_ops;
/* manager.c */
void mgr_on_engine(void *ctx, const char *engine_id, int is_new);

#endif
