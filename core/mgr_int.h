/* Internals of the certificate manager, shared by core/manager.c (state,
 * issuance, push), core/mgr_renew.c (scheduler) and core/mgr_api.c (SPOE
 * handlers, admin API, metrics). */
#ifndef ACME_SPOA_MGR_INT_H
#define ACME_SPOA_MGR_INT_H

#include <ev.h>
#include <stdint.h>
#include <time.h>

#include "acme/crypto.h"
#include "lib/hmap.h"

struct acme_client;
struct admin;
struct admin_req;
struct config;
struct http_client;
struct rt;
struct spoa_server;
struct storage;
struct storage_sub;

#define MGR_HOST_MAX 256
/* pub/sub channel announcing "<host>" when a node stores a new certificate */
#define MGR_CERTS_CHANNEL "certs"

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
};

enum mgr_job_state {
	MGR_JOB_QUEUED = 0,		/* waiting for a slot under max_concurrent_orders */
	MGR_JOB_ASKING,			/* ask_url request in flight */
	MGR_JOB_LOCKING,		/* another node holds the issuance lock */
	MGR_JOB_ORDERING,		/* ACME order running */
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
	char serial0[130];		/* serial held when the job began ("" if none) */
	ev_timer timer;			/* lease extension / lock retry */
	struct mgr_job *next_queued;
	struct mgr_waiter *waiters;
};

struct mgr_counters {
	uint64_t orders_started, orders_ok, orders_failed, renewals, renewals_failed;
	uint64_t fail_rate_limited, fail_ca, fail_transport, fail_storage, fail_push;
	uint64_t sni_msgs, http01_msgs, http01_hits, refused_name, refused_backoff, refused_ask;
	uint64_t storage_errors, push_ok, push_failed;
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
	struct mgr_job *queue_head, *queue_tail;
	unsigned orders_running;
	ev_timer renew_timer;
	ev_timer reconcile_timer;
	int renew_running;
	struct mgr_counters cnt;
	time_t started;
};

/* manager.c */
struct mgr_cert *mgr_cert_get(struct mgr *m, const char *host);
/* Parses and installs <pem> for <host> in memory (replacing any older one). */
struct mgr_cert *mgr_cert_install(struct mgr *m, const char *host, const char *pem, size_t len);
/* Writes <c> to haproxy.cert_dir and pushes it over every runtime socket. */
void mgr_cert_deploy(struct mgr *m, struct mgr_cert *c);
void mgr_cert_remove(struct mgr *m, const char *host);
/* Loads "certs/<host>" from storage unless memory holds that very
 * certificate; deploys it when <deploy>. Returns 1 when it changed. */
int mgr_cert_load(struct mgr *m, const char *host, int deploy);
/* Records that <host> was renewed at <t> ("renewals/<host>"). */
void mgr_renewed_at_store(struct mgr *m, const char *host, time_t t);
/* mgr_challenge.c: token -> key authorization, in memory and in storage
 * (TTL) so that any node answers; lookup falls back to storage. The two
 * hooks are the ACME client's (struct acme_hooks). */
int mgr_hook_challenge_set(void *arg, const char *host, const char *token, const char *keyauth);
void mgr_hook_challenge_clear(void *arg, const char *host, const char *token);
void mgr_challenge_put_local(struct mgr *m, const char *token, const char *keyauth);
const char *mgr_challenge_lookup(struct mgr *m, const char *token, char *buf, size_t buflen);
/* Stores in memory and in storage; -1 (memory entry kept) when storage failed. */
int mgr_challenge_store(struct mgr *m, const char *token, const char *keyauth, unsigned ttl);
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
/* 1 if on-demand issuance of <host> is refused now by its failure backoff;
 * the end of the wait in <until> when not NULL. */
int mgr_backoff_active(struct mgr *m, const char *host, time_t *until);

/* mgr_renew.c */
void mgr_renew_init(struct mgr *m);
/* Computes <c>'s due time from its dates, renew_threshold_days and ARI. */
void mgr_renew_compute(struct mgr *m, struct mgr_cert *c);
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
