/* redis backend: every command goes through hiredis's async API on the
 * caller's libev loop, pipelined on one connection; each pub/sub
 * subscription has a connection of its own. Nothing here blocks the loop.
 *
 * The command connection is a small state machine (enum redis_state):
 *   CONNECTING  redisAsyncConnect, then AUTH, SELECT and PING pipelined; the
 *               PING's reply makes it READY. Operations submitted meanwhile
 *               wait in a queue. A connect timer (redis_timeout_ms) bounds
 *               the whole handshake.
 *   READY       operations are sent at once, their commands pipelined.
 *   DOWN        the last connect failed (or AUTH/SELECT were refused):
 *               operations fail at once with that reason until the next
 *               attempt (250 ms doubling to 5 s).
 * A lost connection fails its in-flight commands (hiredis calls their
 * callbacks with a NULL reply) and reconnects at once. Queued plus in-flight
 * operations are bounded (REDIS_MAX_OPS), and a connection whose oldest
 * command has waited twice the operation deadline is dropped, so a frozen
 * server (SIGSTOP) cannot make us accumulate memory.
 *
 * Keys, locks, feeds and channels are "<ns>:" prefixed when a namespace is
 * set; locks are "<ns>:lock:<name>" and feeds "<ns>:feed:<name>:...", which no
 * key can collide with (':' is not in the key grammar); a feed is three keys,
 * ":gen" (its generation counter), ":log" (a sorted set: member -> generation
 * of its last change) and ":ver" (a hash: member -> version). This hiredis
 * (0.14) has no TLS: asking for it is a clear error. hiredis resolves a host
 * name with getaddrinfo() at each connect: where DNS may be slow, configure
 * an address. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>

#include "lib/log.h"
#include "storage/storage.h"
#include "storage/storage_redis_int.h"

#define REDIS_MAX_OPS		10000	/* queued + in flight */
#define REDIS_BACKOFF_MIN_MS	250
#define REDIS_BACKOFF_MAX_MS	5000
#define REDIS_DEF_CONNECT_MS	500
#define REDIS_DEF_OP_MS		3000	/* the front's default deadline */
#define REDIS_WD_TICKS		4	/* watchdog ticks per stall period */

static const char *const redis_state_names[REDIS__MAX] = {
	[REDIS_DOWN] = "down", [REDIS_CONNECTING] = "connecting", [REDIS_READY] = "ready",
};

int redis_key(const struct redis_be *be, const char *kind, const char *key, const char *suffix,
	      char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s%s%s%s%s", be->ns, be->ns[0] ? ":" : "", kind, key, suffix);

	return (n < 0 || (size_t)n >= size) ? -1 : n;
}

/* ---- completing operations ---------------------------------------------- */

/* Completes <op> with rc -1 and "storage redis: <op> <key>: <fmt...>". */
static void redis_op_vfail(struct storage_op *op, const char *fmt, va_list ap)
{
	char why[STORAGE_ERR_MAX];
	int n;

	vsnprintf(why, sizeof(why), fmt, ap);
	if (op->kind == STORAGE_OP_FEED_PUT)
		n = snprintf(op->err, sizeof(op->err), "storage redis: %s %s %s: %s",
			     storage_op_name(op->kind), op->key, op->member, why);
	else
		n = snprintf(op->err, sizeof(op->err), "storage redis: %s%s%s: %s",
			     storage_op_name(op->kind), op->key[0] ? " " : "", op->key, why);
	if (n < 0 || (size_t)n >= sizeof(op->err))
		memcpy(op->err + sizeof(op->err) - 4, "...", 4);
	op->res.rc = -1;
	storage_op_done(op);
}

static void redis_op_fail(struct storage_op *op, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void redis_op_fail(struct storage_op *op, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	redis_op_vfail(op, fmt, ap);
	va_end(ap);
}

/* Takes <req> out of the queue or the in-flight list. */
static void redis_req_unlink(struct redis_req *req)
{
	struct redis_be *be = req->be;

	if (req->where == REDIS_QUEUED) {
		TAILQ_REMOVE(&be->queue, req, link);
		be->nqueue--;
	} else if (req->where == REDIS_INFLIGHT) {
		TAILQ_REMOVE(&be->inflight, req, link);
		be->ninflight--;
	}
	req->where = REDIS_NOWHERE;
}

static void redis_req_free(struct redis_req *req)
{
	redis_req_unlink(req);
	storage_list_free(req->keys, req->n);
	req->op->be_data = NULL;
	free(req);
}

void redis_req_finish(struct redis_req *req, int rc)
{
	struct storage_op *op = req->op;

	redis_req_free(req);
	op->res.rc = rc;
	storage_op_done(op);
}

void redis_req_fail(struct redis_req *req, const char *fmt, ...)
{
	struct storage_op *op = req->op;
	va_list ap;

	redis_req_free(req);
	va_start(ap, fmt);
	redis_op_vfail(op, fmt, ap);
	va_end(ap);
}

/* ---- the connection ------------------------------------------------------ */

static void redis_connect(struct redis_be *be);

/* Forgets the connection and frees it. hiredis calls every pending callback
 * with a NULL reply, at once (or, from inside one of its callbacks, when
 * that returns): the in-flight operations fail with <why>. */
static void redis_drop(struct redis_be *be, const char *why)
{
	redisAsyncContext *ac = be->ac;

	be->ac = NULL;
	ev_timer_stop(be->loop, &be->conn_timer);
	ev_timer_stop(be->loop, &be->watchdog);
	if (ac == NULL)
		return;
	snprintf(be->drop_why, sizeof(be->drop_why), "%s", why);
	ac->data = NULL;	/* its connect and disconnect callbacks ignore it now */
	redisAsyncFree(ac);
}

/* The connection is gone (no ac left): connect again on the next turn; the
 * operations submitted meanwhile wait. */
static void redis_reconnect_soon(struct redis_be *be)
{
	be->state = REDIS_CONNECTING;
	ev_timer_stop(be->loop, &be->retry);
	ev_timer_set(&be->retry, 0., 0.);
	ev_timer_start(be->loop, &be->retry);
}

/* A connect attempt failed for <why> (no ac left): DOWN until the next
 * attempt; the queued operations fail. Logs when the reason changes, as an
 * error when <refused> (a configuration problem: AUTH, SELECT, NOAUTH). */
static void redis_conn_failed(struct redis_be *be, const char *why, int refused)
{
	char prev[sizeof(be->last_err)];
	struct redis_req *req;

	ev_timer_stop(be->loop, &be->conn_timer);
	be->state = REDIS_DOWN;
	be->backoff_ms = be->backoff_ms ? be->backoff_ms * 2 : REDIS_BACKOFF_MIN_MS;
	if (be->backoff_ms > REDIS_BACKOFF_MAX_MS)
		be->backoff_ms = REDIS_BACKOFF_MAX_MS;
	ev_timer_stop(be->loop, &be->retry);
	ev_timer_set(&be->retry, be->backoff_ms / 1000., 0.);
	ev_timer_start(be->loop, &be->retry);
	memcpy(prev, be->last_err, sizeof(prev));
	snprintf(be->last_err, sizeof(be->last_err), "%s:%d: %s", be->host, be->port, why);
	if (strcmp(prev, be->last_err) != 0) {
		if (refused)
			log_err("storage redis: %s (check redis_auth and redis_database; "
				"retrying in %ld ms, operations fail meanwhile)", be->last_err,
				be->backoff_ms);
		else
			log_warn("storage redis: %s (retrying in %ld ms, operations fail "
				 "meanwhile)", be->last_err, be->backoff_ms);
	}
	while ((req = TAILQ_FIRST(&be->queue)) != NULL)
		redis_req_fail(req, "%s", be->last_err);
}

static void redis_ready(struct redis_be *be)
{
	struct redis_req *req;

	ev_timer_stop(be->loop, &be->conn_timer);
	be->state = REDIS_READY;
	be->backoff_ms = 0;
	if (be->last_err[0])
		log_info("storage redis: %s:%d: connected", be->host, be->port);
	be->last_err[0] = '\0';
	while ((req = TAILQ_FIRST(&be->queue)) != NULL) {
		redis_req_unlink(req);
		redis_cmd_start(req);
	}
}

static void cb_redis_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	redis_connect(w->data);
}

static void cb_redis_conn_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_be *be = w->data;
	char why[128];

	snprintf(why, sizeof(why), "connect: no answer, timed out after %ld ms",
		 be->conn_timeout_ms);
	redis_drop(be, why);
	redis_conn_failed(be, why, 0);
}

/* Drops the connection when its oldest command has waited too long: a frozen
 * server must not hold our operations (and their memory) forever. Runs every
 * stall/4 while commands are in flight; the oldest one has waited a whole
 * stall once it is still the oldest REDIS_WD_TICKS ticks after first seen
 * there (counting ticks rather than comparing times keeps a stale ev_now()
 * at send time from dropping a healthy connection). */
static void cb_redis_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_be *be = w->data;
	struct redis_req *oldest = TAILQ_FIRST(&be->inflight);
	char why[128];

	if (oldest == NULL) {
		ev_timer_stop(loop, w);
		return;
	}
	if (oldest->seq != be->wd_seq) {
		be->wd_seq = oldest->seq;
		be->wd_ticks = 0;
		return;
	}
	if (++be->wd_ticks < REDIS_WD_TICKS)
		return;
	snprintf(why, sizeof(why), "timed out: no reply for over %.0f ms, connection dropped",
		 be->stall * 1000.);
	log_warn("storage redis: %s:%d: %s (%zu commands in flight), reconnecting", be->host,
		 be->port, why, be->ninflight);
	redis_drop(be, why);
	redis_reconnect_soon(be);
}

static void cb_redis_connect(const redisAsyncContext *ac, int status)
{
	struct redis_be *be = ac->data;
	char why[256];

	if (be == NULL || be->ac != ac || status == REDIS_OK)
		return;
	/* hiredis frees <ac> after this callback */
	be->ac = NULL;
	snprintf(why, sizeof(why), "connect: %s", ac->errstr);
	redis_conn_failed(be, why, 0);
}

static void cb_redis_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis_be *be = ac->data;
	char why[256];

	if (be == NULL || be->ac != ac)
		return;
	/* the in-flight commands have had their NULL replies; hiredis frees <ac> */
	be->ac = NULL;
	ev_timer_stop(be->loop, &be->conn_timer);
	ev_timer_stop(be->loop, &be->watchdog);
	snprintf(why, sizeof(why), "connection lost: %s", ac->errstr[0] ? ac->errstr : "closed");
	if (be->state == REDIS_READY) {
		log_warn("storage redis: %s:%d: %s, reconnecting", be->host, be->port, why);
		redis_reconnect_soon(be);
	} else {
		redis_conn_failed(be, why, 0);
	}
}

/* Replies to AUTH, SELECT and PING (<privdata> names the step). */
static void cb_redis_hello(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct redis_be *be = ac->data;
	const char *step = privdata;
	redisReply *r = reply;
	char why[256];

	if (be == NULL || be->ac != ac || r == NULL)
		return;	/* stale, or lost: the connect/disconnect callback handles it */
	if (r->type == REDIS_REPLY_ERROR) {
		/* AUTH, SELECT or a missing password are configuration errors; a
		 * PING may also meet a server still loading its data */
		snprintf(why, sizeof(why), "%s refused: %s", step, r->str);
		redis_drop(be, why);
		redis_conn_failed(be, why, strcmp(step, "PING") != 0 ||
				  strncmp(r->str, "NOAUTH", 6) == 0);
		return;
	}
	if (strcmp(step, "PING") == 0)
		redis_ready(be);
}

/* Starts a connection: AUTH, SELECT and PING go first, pipelined. */
static void redis_connect(struct redis_be *be)
{
	redisAsyncContext *ac;
	char why[256];
	int ok = 1;

	ev_timer_stop(be->loop, &be->retry);
	be->drop_why[0] = '\0';
	be->state = REDIS_CONNECTING;
	ac = redisAsyncConnect(be->host, be->port);
	if (ac == NULL || ac->err) {
		snprintf(why, sizeof(why), "connect: %s", ac ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		redis_conn_failed(be, why, 0);
		return;
	}
	ac->data = be;
	be->ac = ac;
	if (redisLibevAttach(be->loop, ac) != REDIS_OK) {
		redis_drop(be, "connect: out of memory");
		redis_conn_failed(be, "connect: out of memory", 0);
		return;
	}
	redisAsyncSetConnectCallback(ac, cb_redis_connect);
	redisAsyncSetDisconnectCallback(ac, cb_redis_disconnect);
	redisEnableKeepAlive(&ac->c);
	if (be->auth[0] != '\0')
		ok = redisAsyncCommand(ac, cb_redis_hello, "AUTH", "AUTH %s", be->auth) == REDIS_OK;
	if (ok && be->db != 0)
		ok = redisAsyncCommand(ac, cb_redis_hello, "SELECT", "SELECT %d", be->db) == REDIS_OK;
	if (ok)
		ok = redisAsyncCommand(ac, cb_redis_hello, "PING", "PING") == REDIS_OK;
	if (!ok) {
		snprintf(why, sizeof(why), "connect: %s", ac->errstr[0] ? ac->errstr : "failed");
		redis_drop(be, why);
		redis_conn_failed(be, why, 0);
		return;
	}
	ev_timer_set(&be->conn_timer, be->conn_timeout_ms / 1000., 0.);
	ev_timer_start(be->loop, &be->conn_timer);
	log_debug("storage redis: %s:%d: %s", be->host, be->port, redis_state_names[be->state]);
}

/* ---- the pipeline -------------------------------------------------------- */

static void cb_redis_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct redis_req *req = privdata;
	struct redis_be *be = req->be;

	redis_req_unlink(req);
	if (reply == NULL) {
		/* lost (ac->err set), dropped by us (watchdog, close) or refused */
		if (ac->err)
			redis_req_fail(req, "%s:%d: connection lost: %s", be->host, be->port,
				       ac->errstr);
		else
			redis_req_fail(req, "%s:%d: %s", be->host, be->port,
				       be->drop_why[0] ? be->drop_why : "connection closed");
		return;
	}
	redis_cmd_reply(req, reply);
}

void redis_req_send(struct redis_req *req, int argc, const char **argv, const size_t *lens)
{
	struct redis_be *be = req->be;

	if (be->state != REDIS_READY || be->ac == NULL) {
		redis_req_fail(req, "%s", be->last_err[0] ? be->last_err : "connection lost");
		return;
	}
	if (redisAsyncCommandArgv(be->ac, cb_redis_reply, req, argc, argv, lens) != REDIS_OK) {
		redis_req_fail(req, "%s:%d: %s", be->host, be->port,
			       be->ac->errstr[0] ? be->ac->errstr : "connection closing");
		return;
	}
	req->seq = ++be->next_seq;
	req->where = REDIS_INFLIGHT;
	TAILQ_INSERT_TAIL(&be->inflight, req, link);
	be->ninflight++;
	if (!ev_is_active(&be->watchdog)) {
		be->wd_seq = 0;
		ev_timer_set(&be->watchdog, be->stall / REDIS_WD_TICKS, be->stall / REDIS_WD_TICKS);
		ev_timer_start(be->loop, &be->watchdog);
	}
}

static void redis_submit(void *p, struct storage_op *op)
{
	struct redis_be *be = p;
	struct redis_req *req;

	if (be->state == REDIS_DOWN) {
		redis_op_fail(op, "%s (down, next attempt in %.0f ms)", be->last_err,
			      ev_timer_remaining(be->loop, &be->retry) * 1000.);
		return;
	}
	if (be->nqueue + be->ninflight >= REDIS_MAX_OPS) {
		redis_op_fail(op, "too many operations in flight (%d)", REDIS_MAX_OPS);
		return;
	}
	req = calloc(1, sizeof(*req));
	if (req == NULL) {
		redis_op_fail(op, "out of memory");
		return;
	}
	req->be = be;
	req->op = op;
	op->be_data = req;
	if (be->state == REDIS_CONNECTING) {
		req->where = REDIS_QUEUED;
		TAILQ_INSERT_TAIL(&be->queue, req, link);
		be->nqueue++;
		return;
	}
	redis_cmd_start(req);
}

/* ---- open and close ------------------------------------------------------ */

static void redis_close_be(void *p)
{
	struct redis_be *be = p;
	struct redis_req *req;

	if (be == NULL)
		return;
	ev_timer_stop(be->loop, &be->retry);
	ev_timer_stop(be->loop, &be->conn_timer);
	ev_timer_stop(be->loop, &be->watchdog);
	/* never called from inside one of this connection's callbacks (they only
	 * hand results to the front), so hiredis frees it here and now, failing
	 * every command in flight: none is left pointing at <be> */
	redis_drop(be, "storage closing");
	while ((req = TAILQ_FIRST(&be->queue)) != NULL)
		redis_req_fail(req, "storage closing");
	free(be->host);
	free(be->auth);
	free(be->ns);
	free(be);
}

static void *redis_open_be(struct ev_loop *loop, const struct storage_conf *conf, char *err,
			   size_t errlen)
{
	struct storage_conf none = { 0 };
	struct redis_be *be = NULL;
	const char *ns;

	if (conf == NULL)
		conf = &none;
	if (conf->redis_ssl) {
		snprintf(err, errlen, "storage redis: ssl: not supported by this build "
			 "(hiredis %d.%d has no TLS, hiredis_ssl missing)",
			 HIREDIS_MAJOR, HIREDIS_MINOR);
		return NULL;
	}
	ns = conf->redis_namespace ? conf->redis_namespace : "";
	if (strpbrk(ns, "*?[]\\ \r\n") != NULL || strlen(ns) > 128) {
		snprintf(err, errlen, "storage redis: namespace \"%.64s\": must be at most 128 "
			 "bytes without glob characters or spaces", ns);
		return NULL;
	}
	be = calloc(1, sizeof(*be));
	if (be == NULL)
		goto oom;
	be->host = strdup(conf->redis_host && *conf->redis_host ? conf->redis_host : "127.0.0.1");
	be->auth = strdup(conf->redis_auth ? conf->redis_auth : "");
	be->ns = strdup(ns);
	if (be->host == NULL || be->auth == NULL || be->ns == NULL)
		goto oom;
	be->loop = loop;
	be->port = conf->redis_port > 0 ? conf->redis_port : 6379;
	be->db = conf->redis_database;
	be->conn_timeout_ms = conf->redis_timeout_ms > 0 ? conf->redis_timeout_ms :
			      REDIS_DEF_CONNECT_MS;
	be->stall = 2. * (conf->timeout_ms > 0 ? conf->timeout_ms : REDIS_DEF_OP_MS) / 1000.;
	TAILQ_INIT(&be->queue);
	TAILQ_INIT(&be->inflight);
	ev_init(&be->conn_timer, cb_redis_conn_timeout);
	ev_init(&be->retry, cb_redis_retry);
	ev_init(&be->watchdog, cb_redis_watchdog);
	be->conn_timer.data = be->retry.data = be->watchdog.data = be;
	/* an unreachable server is not an error: operations fail until it answers */
	redis_connect(be);
	return be;
oom:
	snprintf(err, errlen, "storage redis: out of memory");
	if (be != NULL) {
		free(be->host);
		free(be->auth);
		free(be->ns);
		free(be);
	}
	return NULL;
}

/* ---- pub/sub on connections of their own --------------------------------- */

struct storage_sub {
	struct ev_loop *loop;
	char *host;
	int port;
	char *auth;
	char *channel;      /* namespaced */
	long timeout_ms;
	void (*cb)(void *arg, const char *msg, size_t len);
	void *arg;
	redisAsyncContext *ac;
	ev_timer retry;     /* reconnect after backoff */
	ev_timer deadline;  /* not subscribed in time: drop and retry */
	double backoff;
	int ready;
};

static void sub_connect(struct storage_sub *sub);

/* Forgets the async connection; our callbacks ignore it from here on
 * (ac->data NULL), even those hiredis runs while tearing it down. */
static void sub_drop(struct storage_sub *sub)
{
	redisAsyncContext *ac = sub->ac;

	sub->ac = NULL;
	sub->ready = 0;
	ev_timer_stop(sub->loop, &sub->deadline);
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
}

static void sub_schedule_retry(struct storage_sub *sub)
{
	ev_timer_stop(sub->loop, &sub->deadline);
	ev_timer_stop(sub->loop, &sub->retry);
	ev_timer_set(&sub->retry, sub->backoff, 0.);
	ev_timer_start(sub->loop, &sub->retry);
	sub->backoff = sub->backoff * 2 > 5. ? 5. : sub->backoff * 2;
}

static void cb_sub_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	sub_connect(w->data);
}

static void cb_sub_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct storage_sub *sub = w->data;

	log_warn("storage redis: channel=%s not subscribed within the deadline, reconnecting",
		 sub->channel);
	sub_drop(sub);
	sub_schedule_retry(sub);
}

static void cb_sub_connect(const redisAsyncContext *ac, int status)
{
	struct storage_sub *sub = ac->data;

	if (sub == NULL || status == REDIS_OK)
		return;
	log_warn("storage redis: channel=%s %s:%d: connect: %s", sub->channel, sub->host,
		 sub->port, ac->errstr);
	/* hiredis frees <ac> after this callback */
	sub->ac = NULL;
	sub->ready = 0;
	sub_schedule_retry(sub);
}

static void cb_sub_disconnect(const redisAsyncContext *ac, int status)
{
	struct storage_sub *sub = ac->data;

	if (sub == NULL)
		return;
	log_warn("storage redis: channel=%s %s:%d: connection lost: %s", sub->channel,
		 sub->host, sub->port, ac->errstr[0] ? ac->errstr : "closed");
	sub->ac = NULL;
	sub->ready = 0;
	sub_schedule_retry(sub);
}

static void cb_sub_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct storage_sub *sub = ac->data;
	redisReply *r = reply;

	if (sub == NULL || r == NULL || r->type != REDIS_REPLY_ERROR)
		return;
	log_err("storage redis: channel=%s %s:%d: AUTH refused: %s", sub->channel, sub->host,
		sub->port, r->str);
	sub_drop(sub);
	sub->backoff = 5.;
	sub_schedule_retry(sub);
}

static void cb_sub_message(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct storage_sub *sub = ac->data;
	redisReply *r = reply;

	if (sub == NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "subscribe") == 0) {
		ev_timer_stop(sub->loop, &sub->deadline);
		sub->ready = 1;
		sub->backoff = 0.1;
		log_debug("storage redis: channel=%s subscribed", sub->channel);
	} else if (strcmp(r->element[0]->str, "message") == 0 &&
		   r->element[2]->type == REDIS_REPLY_STRING) {
		sub->cb(sub->arg, r->element[2]->str, r->element[2]->len);
	}
}

static void sub_connect(struct storage_sub *sub)
{
	redisAsyncContext *ac = redisAsyncConnect(sub->host, sub->port);

	if (ac == NULL || ac->err) {
		log_warn("storage redis: channel=%s %s:%d: connect: %s", sub->channel, sub->host,
			 sub->port, ac ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		sub_schedule_retry(sub);
		return;
	}
	ac->data = sub;
	sub->ac = ac;
	redisLibevAttach(sub->loop, ac);
	redisAsyncSetConnectCallback(ac, cb_sub_connect);
	redisAsyncSetDisconnectCallback(ac, cb_sub_disconnect);
	redisEnableKeepAlive(&ac->c);
	if (sub->auth[0] != '\0')
		redisAsyncCommand(ac, cb_sub_auth, NULL, "AUTH %s", sub->auth);
	redisAsyncCommand(ac, cb_sub_message, NULL, "SUBSCRIBE %s", sub->channel);
	ev_timer_set(&sub->deadline, sub->timeout_ms * 2 / 1000. + 1., 0.);
	ev_timer_start(sub->loop, &sub->deadline);
}

static void redis_sub_free(void *p)
{
	struct storage_sub *sub = p;

	if (sub == NULL)
		return;
	sub_drop(sub);
	ev_timer_stop(sub->loop, &sub->retry);
	ev_timer_stop(sub->loop, &sub->deadline);
	free(sub->host);
	free(sub->auth);
	free(sub->channel);
	free(sub);
}

static int redis_sub_ready(const void *p)
{
	const struct storage_sub *sub = p;

	return sub != NULL && sub->ready;
}

static void *redis_subscribe(void *p, struct ev_loop *loop, const char *channel,
					   void (*cb)(void *arg, const char *msg, size_t len),
					   void *arg, char *err, size_t errlen)
{
	struct redis_be *be = p;
	struct storage_sub *sub = calloc(1, sizeof(*sub));
	char k[REDIS_KEYBUF];

	if (sub == NULL || redis_key(be, "", channel, "", k, sizeof(k)) < 0 ||
	    (sub->host = strdup(be->host)) == NULL || (sub->auth = strdup(be->auth)) == NULL ||
	    (sub->channel = strdup(k)) == NULL) {
		snprintf(err, errlen, "storage redis: subscribe %s: out of memory", channel);
		if (sub != NULL) {
			free(sub->host);
			free(sub->auth);
		}
		free(sub);
		return NULL;
	}
	sub->loop = loop;
	sub->port = be->port;
	sub->timeout_ms = be->conn_timeout_ms;
	sub->cb = cb;
	sub->arg = arg;
	sub->backoff = 0.1;
	ev_timer_init(&sub->retry, cb_sub_retry, 0., 0.);
	ev_timer_init(&sub->deadline, cb_sub_deadline, 0., 0.);
	sub->retry.data = sub;
	sub->deadline.data = sub;
	sub_connect(sub);
	return sub;
}

/* Down only when the last connection attempt failed: a connection being
 * made after a drop is not yet an outage. */
static int redis_state_be(void *p, char *err, size_t errlen)
{
	struct redis_be *be = p;

	if (be->state != REDIS_DOWN)
		return 1;
	snprintf(err, errlen, "storage redis: %s", be->last_err[0] ? be->last_err : "down");
	return 0;
}

const struct storage_ops storage_redis_ops = {
	.name = "redis",
	.state = redis_state_be,
	.open = redis_open_be,
	.close = redis_close_be,
	.blocking = 0,
	.submit = redis_submit,
	.subscribe = redis_subscribe,
	.sub_free = redis_sub_free,
	.sub_ready = redis_sub_ready,
};
