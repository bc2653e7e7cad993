/* SPDX-License-Identifier: Apache-2.0 */
/* What the redis backend's two files share: the connection and pipeline
 * (storage_redis.c) and the commands of each operation
 * (storage_redis_cmd.c). Not for use outside storage/. */
#ifndef ACME_SPOA_STORAGE_REDIS_INT_H
#define ACME_SPOA_STORAGE_REDIS_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "storage/storage.h"
#include "storage/storage_redis_conn.h"

/* a namespaced key, lock or feed key: ns (128) + kind + key + suffix */
#define REDIS_KEYBUF (STORAGE_KEY_MAX + 256)

enum redis_state {
	REDIS_DOWN = 0,		/* backoff after a failure: operations fail at once */
	REDIS_CONNECTING,	/* connect, AUTH, SELECT, PING under way: operations wait */
	REDIS_READY,		/* operations are sent, pipelined */
	REDIS__MAX
};

enum redis_where {
	REDIS_NOWHERE = 0,	/* being handled (between two commands of one operation) */
	REDIS_QUEUED,		/* in be->queue: waits for the connection */
	REDIS_INFLIGHT,		/* in be->inflight: one command sent, its reply awaited */
	REDIS_WHERE__MAX
};

/* One operation in the backend. An operation has at most one command in
 * flight at a time (LIST and LOCK chain theirs over callbacks), so the
 * in-flight list is in send order: its head is the oldest command. */
struct redis_req {
	struct redis_be *be;
	struct storage_op *op;
	TAILQ_ENTRY(redis_req) link;
	enum redis_where where;
	uint64_t seq;			/* its current command's place in the send order */
	int step;			/* lock: 0 lock script sent, 2 WAIT sent */
	int replays;			/* times sent again after a failover */
	int attempt;			/* lock: SET NX attempts so far */
	char cursor[24];		/* list: SCAN cursor */
	char **keys;			/* list: keys found so far (malloc'd) */
	size_t n, cap;
};

TAILQ_HEAD(redis_req_list, redis_req);

struct redis_node {
	char host[256];
	int port;
};

struct redis_sub;
TAILQ_HEAD(redis_sub_list, redis_sub);

struct redis_be {
	struct ev_loop *loop;
	char host[256];			/* the server; with sentinels, the master they named */
	int port;
	int db;
	char *username;			/* "" => AUTH <password> only */
	char *auth;			/* "" => no AUTH */
	char *ns;			/* "" when unset */
	struct rconn_tls tls;		/* tls.ctx NULL => plain TCP */
	struct rconn_resolver *resolver;	/* host names, on worker threads */
	char *server_name;
	long conn_timeout_ms;		/* connect + AUTH + SELECT + PING */
	double stall;			/* s: the oldest command waited longer: drop the connection */
	uint64_t next_seq;		/* numbers the commands sent */
	uint64_t wd_seq;		/* the oldest command at the watchdog's last tick */
	int wd_ticks;			/* ticks it has stayed the oldest */
	enum redis_state state;
	struct rconn *conn;		/* NULL unless connecting or ready */
	struct redis_req_list queue;	/* waiting for the connection */
	struct redis_req_list inflight;	/* sent, oldest first */
	size_t nqueue, ninflight;
	ev_timer conn_timer;		/* connect timeout (and one sentinel's answer) */
	ev_timer retry;			/* next connect attempt */
	ev_timer watchdog;		/* checks the oldest in-flight command */
	long backoff_ms;		/* 250 doubling to 5000; 0 after a success */
	char last_err[256];		/* why the last connect failed ("" when connected) */
	char drop_why[128];		/* why we dropped the connection ourselves */
	int replay;			/* the connection ends in a failover: send its commands again */
	int closing;
	int nreplicas;			/* the master's replicas at connect (ROLE) */
	/* Sentinel: NULL sentinel_master => none */
	char *sentinel_master;
	struct redis_node *sentinels;
	size_t nsentinels;
	char *sentinel_username, *sentinel_password;
	struct rconn *sq;		/* asking sentinels[sq_idx] for the master */
	size_t sq_idx, sq_tried;
	char sq_err[256];
	int sq_refused;			/* a sentinel refused our AUTH */
	struct rconn *sw;		/* subscribed to +switch-master on sentinels[sw_idx] */
	size_t sw_idx;
	ev_timer sw_retry;
	double lost_at;			/* ev_now() when the master was lost (0: never) */
	struct redis_sub_list subs;	/* live subscriptions (they follow the master) */
};

/* Writes "<ns>:<kind><key><suffix>" (no "<ns>:" without a namespace) into
 * <buf> of <size>. Returns its length, or -1 when it does not fit. */
int redis_key(const struct redis_be *be, const char *kind, const char *key, const char *suffix,
	      char *buf, size_t size);

/* Sends one command of <req> (argv copied) and puts it in
 * flight; its reply goes to redis_cmd_reply(). On failure, completes <req>
 * with an error: the caller must not touch <req> after this call. */
void redis_req_send(struct redis_req *req, int argc, const char **argv, const size_t *lens);

/* Completes <req> with <rc> (its op's res filled by the caller), frees it
 * and hands its op back to the front. */
void redis_req_finish(struct redis_req *req, int rc);

/* Completes <req> with rc -1 and "storage redis: <op> <key>: <fmt...>". */
void redis_req_fail(struct redis_req *req, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* storage_redis_cmd.c: sends the first command of <req>'s operation. */
void redis_cmd_start(struct redis_req *req);

/* storage_redis_cmd.c: handles reply <r> (never NULL) to <req>'s current
 * command: completes <req> or sends its next command. <r> is hiredis's. */
void redis_cmd_reply(struct redis_req *req, redisReply *r);

/* Sends AUTH [<user>] <password> on <c> (nothing when <password> is ""). */
int redis_send_auth(struct rconn *c, rconn_reply_cb *cb, void *priv, const char *user,
		    const char *password);

/* storage_redis_sub.c: pub/sub connections (they follow the master) and the
 * sentinels' +switch-master watch. */
void redis_subs_master_changed(struct redis_be *be);
void redis_subs_detach(struct redis_be *be);
void redis_watch_start(struct redis_be *be);
void redis_watch_stop(struct redis_be *be);
/* A sentinel says the master moved: connect again (storage_redis.c). */
void redis_master_switched(struct redis_be *be, const char *host, int port);
void *redis_subscribe(void *p, struct ev_loop *loop, const char *channel,
		      void (*cb)(void *arg, const char *msg, size_t len), void *arg, char *err,
		      size_t errlen);
void redis_sub_free(void *p);
int redis_sub_ready(const void *p);

#endif
