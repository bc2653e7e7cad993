/* SPDX-License-Identifier: Apache-2.0 */
/* What the consul backend's two files share: the HTTP transport, the lock
 * session and the subscriptions (storage_consul.c) and the requests of each
 * operation (storage_consul_cmd.c). Not for use outside storage/. */
#ifndef ACME_SPOA_STORAGE_CONSUL_INT_H
#define ACME_SPOA_STORAGE_CONSUL_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <ev.h>

#include "lib/hmap.h"
#include "storage/storage.h"

/* one Consul path: "kv/" + kv_path (at most STORAGE_KEY_MAX) + kind + key
 * (each byte at most 3 when escaped) + query */
#define CONSUL_PATHBUF (4 * STORAGE_KEY_MAX + 512)

enum consul_sess_state {
	CONSUL_SESS_NONE = 0,	/* no session: the next lock creates one */
	CONSUL_SESS_CREATING,	/* PUT session/create under way: locks wait */
	CONSUL_SESS_READY,	/* <session> valid as far as we know, renewed */
	CONSUL_SESS__MAX
};

/* One HTTP answer. <status> 0: no answer, <err> says why. */
struct consul_resp {
	long status;
	const char *err;	/* transport error (status 0), else NULL */
	const char *body;	/* NUL-terminated; "" when empty */
	size_t len;
	uint64_t index;		/* X-Consul-Index, 0 when absent */
};

typedef void consul_http_cb(void *arg, const struct consul_resp *r);

struct consul_http;
struct consul_req;

TAILQ_HEAD(consul_http_list, consul_http);
TAILQ_HEAD(consul_req_list, consul_req);

/* The operations waiting for one key (the one holding it is not listed). */
struct consul_keyq {
	struct consul_req_list waiting;
	char name[];
};
LIST_HEAD(consul_sub_list, consul_sub);

/* One operation in the backend: at most one HTTP request in flight (GET,
 * then the transaction that depends on what it read, retried on a race). */
struct consul_req {
	struct consul_be *be;
	struct storage_op *op;
	TAILQ_ENTRY(consul_req) link;	/* be->reqs, or the list <waiting> */
	struct consul_req_list *waiting; /* be->sess_wait or be->feed_wait, else NULL */
	int feed_turn;			/* the feed_put in flight (be->feed_busy) */
	struct consul_keyq *kq;		/* its key's queue when it holds the key */
	struct consul_http *h;		/* the request in flight */
	int step;
	int attempt;
};

struct consul_be {
	struct ev_loop *loop;
	struct curlev *cv;
	char *base;			/* "http://127.0.0.1:8500/v1/" */
	char *kv;			/* kv_path: key grammar, no '/' at the ends */
	char *token_hdr;		/* "X-Consul-Token: ..." or NULL; never logged */
	long timeout_ms;		/* one HTTP request (Kong's timeout) */
	struct consul_http_list https;	/* in flight */
	size_t nhttp;
	struct consul_req_list reqs;	/* operations in the backend */
	struct consul_req_list sess_wait; /* locks waiting for the session */
	struct consul_req_list feed_wait; /* feed_puts waiting for their turn */
	int feed_busy;			/* a feed_put is in flight: the others wait (one
					 * process never races itself on a counter) */
	struct hmap keys;		/* "<class>:<key>" -> struct consul_keyq: the
					 * operations of one key run one at a time, in
					 * submission order (HTTP requests on several
					 * connections would not keep it) */
	size_t nreqs;
	enum consul_sess_state sess_state;
	char session[64];
	struct consul_http *sess_h;	/* create or renew in flight */
	ev_timer renew;
	struct consul_sub_list subs;
	int up;				/* the last answer came (and was no 5xx) */
	int closing;			/* close: waiting operations fail, none starts */
	char last_err[STORAGE_ERR_MAX];
};

/* Appends "<kv_path>/<kind><name>" to <buf> at <*off> (name escaped for a
 * URL path), for a path under "kv/". Returns 0, -1 when it does not fit. */
int consul_path(const struct consul_be *be, char *buf, size_t size, size_t *off,
		const char *kind, const char *name);

/* Starts <method> on <base><path> (path escaped, with its query) with <body>
 * (copied; NULL = none) and a transfer timeout of <timeout_ms> (0: the
 * backend's). <cb> runs once on the loop, never inside this call. Returns the
 * request, or NULL when it could not be set up (<cb> never runs). */
struct consul_http *consul_http_start(struct consul_be *be, const char *method, const char *path,
				      const char *body, size_t len, long timeout_ms,
				      consul_http_cb *cb, void *arg);

/* Stops <h> without calling its callback. Accepts NULL. */
void consul_http_cancel(struct consul_http *h);

/* Writes why <r> failed: "HTTP 409: <Consul's message>" or the transport
 * error. */
void consul_resp_why(const struct consul_resp *r, char *buf, size_t size);

/* The wall clock in ms (expiries travel between nodes). */
uint64_t consul_now_ms(void);

/* Base64 of <len> bytes of <in> (malloc'd, NUL-terminated) or NULL. */
char *consul_b64(const char *in, size_t len);
/* Decodes a JSON Value (NULL: empty) into a malloc'd NUL-terminated buffer
 * and its length. Returns 0, -1 on bad input or no memory. */
int consul_unb64(const char *in, char **out, size_t *len);

/* Completes <req> with <rc> (its op's res filled by the caller), frees it. */
void consul_req_finish(struct consul_req *req, int rc);
/* Completes <req> with rc -1 and "storage consul: <op> <key>: <fmt...>". */
void consul_req_fail(struct consul_req *req, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Sends <req>'s next request; its answer goes to consul_cmd_answer(). On
 * failure, completes <req>: the caller must not touch it afterwards. */
void consul_req_send(struct consul_req *req, const char *method, const char *path,
		     const char *body, size_t len);

/* Fires a DELETE ?cas=<index> of "<kind><name>" whose answer is dropped
 * (expired values, dropped lazily). */
void consul_delete_cas(struct consul_be *be, const char *kind, const char *name, uint64_t index);

/* One feed_put at a time: 1 when it is <req>'s turn, or 0 once <req> waits
 * (restarted by consul_cmd_start when the one before completes). */
int consul_feed_turn(struct consul_req *req);

/* The session for locks: READY (1), or 0 once <req> waits for it (it is
 * restarted by consul_cmd_start when ready, failed otherwise). */
int consul_session_need(struct consul_req *req);
/* The session is gone (Consul said so): a new one is made on the next lock. */
void consul_session_lost(struct consul_be *be);

/* storage_consul_sub.c: the subscribe, sub_free and sub_ready of the ops;
 * consul_subs_detach() stops every subscription of <be> (closing), which
 * their owners free later. */
void *consul_subscribe(void *p, struct ev_loop *loop, const char *channel,
		       void (*cb)(void *arg, const char *msg, size_t len), void *arg,
		       char *err, size_t errlen);
void consul_sub_free(void *p);
int consul_sub_ready(const void *p);
void consul_subs_detach(struct consul_be *be);

/* storage_consul_cmd.c: sends the first request of <req>'s operation. */
void consul_cmd_start(struct consul_req *req);
/* storage_consul_cmd.c: handles the answer <r> to <req>'s current request. */
void consul_cmd_answer(struct consul_req *req, const struct consul_resp *r);

#endif
