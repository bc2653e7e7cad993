/* SPDX-License-Identifier: Apache-2.0 */
/* redis backend: every command goes over our own non-blocking connection on
 * the caller's libev loop (storage_redis_conn.c: plain TCP or TLS, hiredis's
 * formatter and reply reader), pipelined on one connection; each pub/sub
 * subscription has a connection of its own (storage_redis_sub.c). Nothing
 * here blocks the loop.
 *
 * The command connection is a small state machine (enum redis_state):
 *   CONNECTING  (with sentinels: ask them for the master first, one after
 *               the other, each within redis_timeout_ms) connect, then AUTH,
 *               SELECT, ROLE (sentinels: it must be a master) and PING
 *               pipelined; the PING's reply makes it READY. Operations
 *               submitted meanwhile wait in a queue. A connect timer
 *               (redis_timeout_ms) bounds the whole handshake.
 *   READY       operations are sent at once, their commands pipelined.
 *   DOWN        the last connect failed (or AUTH/SELECT/TLS were refused):
 *               operations fail at once with that reason until the next
 *               attempt (250 ms doubling to 5 s).
 * A lost connection fails its in-flight commands (their callbacks get a NULL
 * reply) and reconnects at once. With sentinels a lost master is routine:
 * in-flight commands are sent again on the next master (each operation here
 * may run twice), and operations wait rather than fail for
 * REDIS_FAILOVER_GRACE_S; a +switch-master or a -READONLY answer reconnects
 * at once. Queued plus in-flight operations are bounded (REDIS_MAX_OPS), and
 * a connection whose oldest command has waited twice the operation deadline
 * is dropped, so a frozen server (SIGSTOP) cannot make us accumulate memory.
 *
 * Keys, locks, feeds and channels are "<ns>:" prefixed when a namespace is
 * set; locks are "<ns>:lock:<name>" and feeds "<ns>:feed:<name>:...", which no
 * key can collide with (':' is not in the key grammar); a feed is three keys,
 * ":gen" (its generation counter), ":log" (a sorted set: member -> generation
 * of its last change) and ":ver" (a hash: member -> version). A host name
 * (the server's, a sentinel's, the master a sentinel names) is resolved at
 * each connect on a worker thread (struct rconn_resolver, lib/workq), the
 * connect going on once it is known; an address is used as is. A slow
 * resolver counts against redis_timeout_ms like a slow connect, and a name
 * that does not resolve fails the connect ("cannot resolve <host>: ..."). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "storage/storage.h"
#include "storage/storage_redis_int.h"

#define REDIS_MAX_OPS		10000	/* queued + in flight */
#define REDIS_BACKOFF_MIN_MS	250
#define REDIS_BACKOFF_MAX_MS	5000
#define REDIS_DEF_CONNECT_MS	500
#define REDIS_DEF_OP_MS		3000	/* the front's default deadline */
#define REDIS_WD_TICKS		4	/* watchdog ticks per stall period */
#define REDIS_FAILOVER_GRACE_S	10.	/* sentinel: operations wait this long for a new master */

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
static void redis_sentinel_ask(struct redis_be *be);

/* Within the grace after losing a master (sentinel mode), operations wait
 * for the next one instead of failing: a failover is routine there. */
static int redis_in_failover(const struct redis_be *be)
{
	return be->sentinel_master != NULL && be->lost_at > 0. && !be->closing &&
	       ev_now(be->loop) - be->lost_at < REDIS_FAILOVER_GRACE_S;
}

/* Forgets the connection and frees it: its pending commands get a NULL
 * reply at once, so the in-flight operations fail with <why> (or, when
 * <replay>, wait in the queue for the next connection). */
static void redis_drop(struct redis_be *be, const char *why, int replay)
{
	struct rconn *c = be->conn;

	be->conn = NULL;
	ev_timer_stop(be->loop, &be->conn_timer);
	ev_timer_stop(be->loop, &be->watchdog);
	if (be->sq != NULL) {
		struct rconn *sq = be->sq;

		be->sq = NULL;
		rconn_free(sq, why);
	}
	if (c == NULL)
		return;
	snprintf(be->drop_why, sizeof(be->drop_why), "%s", why);
	be->replay = replay;
	rconn_free(c, why);
	be->replay = 0;
}

/* The connection is gone (none left): connect again on the next turn; the
 * operations submitted meanwhile wait. */
static void redis_reconnect_soon(struct redis_be *be)
{
	be->state = REDIS_CONNECTING;
	ev_timer_stop(be->loop, &be->retry);
	ev_timer_set(&be->retry, 0., 0.);
	ev_timer_start(be->loop, &be->retry);
}

/* The master is gone (lost, demoted, switched): connect again at once,
 * asking the sentinels, with the in-flight operations kept for it. */
static void redis_master_lost(struct redis_be *be, const char *why)
{
	if (be->lost_at == 0. || be->state == REDIS_READY)
		be->lost_at = ev_now(be->loop);
	be->backoff_ms = 0;
	redis_drop(be, why, 1);
	redis_reconnect_soon(be);
}

/* A connect attempt failed for <why> (no connection left): DOWN until the
 * next attempt; the queued operations fail, unless a failover is under way.
 * Logs when the reason changes, as an error when <refused> (a configuration
 * problem: AUTH, SELECT, NOAUTH, TLS verification). */
static void redis_conn_failed_at(struct redis_be *be, int at_host, const char *why,
				 int refused)
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
	if (at_host && be->host[0])
		snprintf(be->last_err, sizeof(be->last_err), "%.200s:%d: %s", be->host, be->port,
			 why);
	else
		snprintf(be->last_err, sizeof(be->last_err), "%s", why);
	if (strcmp(prev, be->last_err) != 0) {
		if (refused)
			log_err("storage redis: %s (check the redis username, password, database "
				"and TLS settings; retrying in %ld ms, operations fail meanwhile)",
				be->last_err, be->backoff_ms);
		else
			log_warn("storage redis: %s (retrying in %ld ms, operations %s meanwhile)",
				 be->last_err, be->backoff_ms,
				 redis_in_failover(be) ? "wait" : "fail");
	}
	if (redis_in_failover(be))
		return;
	while ((req = TAILQ_FIRST(&be->queue)) != NULL)
		redis_req_fail(req, "%s", be->last_err);
}

static void redis_conn_failed(struct redis_be *be, const char *why, int refused)
{
	redis_conn_failed_at(be, 1, why, refused);
}

static void redis_ready(struct redis_be *be)
{
	struct redis_req *req;

	ev_timer_stop(be->loop, &be->conn_timer);
	be->state = REDIS_READY;
	be->backoff_ms = 0;
	if (be->last_err[0] || be->lost_at > 0.)
		log_info("storage redis: %s:%d: connected%s", be->host, be->port,
			 be->sentinel_master ? " (the sentinels' master)" : "");
	be->last_err[0] = '\0';
	be->lost_at = 0.;
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
	char why[384];

	if (be->sq != NULL) {	/* this sentinel is silent: ask the next one */
		struct rconn *sq = be->sq;

		be->sq = NULL;
		snprintf(be->sq_err, sizeof(be->sq_err), "sentinel %s: %s within %ld ms",
			 rconn_peer(sq), rconn_resolving(sq) ? "name not resolved" : "no answer",
			 be->conn_timeout_ms);
		rconn_free(sq, be->sq_err);
		be->sq_idx = (be->sq_idx + 1) % be->nsentinels;
		be->sq_tried++;
		redis_sentinel_ask(be);
		return;
	}
	if (be->conn != NULL && rconn_resolving(be->conn))
		snprintf(why, sizeof(why), "cannot resolve %s: no answer within %ld ms", be->host,
			 be->conn_timeout_ms);
	else
		snprintf(why, sizeof(why), "connect: no answer, timed out after %ld ms",
			 be->conn_timeout_ms);
	redis_drop(be, why, 0);
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
	redis_drop(be, why, 0);
	redis_reconnect_soon(be);
}

/* The connection ended by itself; its commands have had their NULL replies. */
static void cb_redis_closed(struct rconn *c, void *arg, enum rconn_end how, const char *why)
{
	struct redis_be *be = arg;

	if (be->conn != c)
		return;
	be->conn = NULL;
	ev_timer_stop(be->loop, &be->conn_timer);
	ev_timer_stop(be->loop, &be->watchdog);
	if (be->state == REDIS_READY) {
		log_warn("storage redis: %s:%d: %s, reconnecting", be->host, be->port, why);
		if (be->sentinel_master != NULL)
			redis_master_lost(be, why);
		else
			redis_reconnect_soon(be);
	} else {
		redis_conn_failed(be, why, how == RCONN_TLS_REFUSED);
	}
}

/* Replies to AUTH, SELECT, ROLE and PING (<priv> names the step). */
static void cb_redis_hello(struct rconn *c, redisReply *r, void *priv)
{
	struct redis_be *be = rconn_arg(c);
	const char *step = priv;
	char why[256];

	if (be == NULL || be->conn != c || r == NULL)
		return;	/* stale, or lost: the closed callback handles it */
	if (r->type == REDIS_REPLY_ERROR) {
		/* AUTH, SELECT or a missing password are configuration errors; a
		 * PING may also meet a server still loading its data */
		snprintf(why, sizeof(why), "%s refused: %s", step, r->str);
		redis_drop(be, why, 0);
		redis_conn_failed(be, why, strcmp(step, "PING") != 0 ||
				  strncmp(r->str, "NOAUTH", 6) == 0);
		return;
	}
	if (strcmp(step, "ROLE") == 0) {
		if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    strcmp(r->element[0]->str, "master") != 0) {
			snprintf(why, sizeof(why), "not a master (ROLE %s): the sentinels' answer "
				 "is stale, asking again", r->type == REDIS_REPLY_ARRAY &&
				 r->elements >= 1 && r->element[0]->type == REDIS_REPLY_STRING ?
				 r->element[0]->str : "?");
			redis_drop(be, why, 0);
			redis_conn_failed(be, why, 0);
			return;
		}
		be->nreplicas = r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY ?
				(int)r->element[2]->elements : 0;
	}
	if (strcmp(step, "PING") == 0)
		redis_ready(be);
}

int redis_send_auth(struct rconn *c, rconn_reply_cb *cb, void *priv, const char *user,
		    const char *password)
{
	if (password == NULL || password[0] == '\0')
		return 0;
	if (user != NULL && user[0] != '\0')
		return rconn_command(c, cb, priv, "AUTH %s %s", user, password);
	return rconn_command(c, cb, priv, "AUTH %s", password);
}

static const struct rconn_cbs redis_conn_cbs = {
	.closed = cb_redis_closed,
};

/* Connects to be->host:port: AUTH, SELECT, ROLE (sentinel mode) and PING go
 * first, pipelined. */
static void redis_master_connect(struct redis_be *be)
{
	char why[256];
	int ok = 1;

	be->conn = rconn_new(be->loop, be->resolver, be->host, be->port,
			     be->tls.ctx ? &be->tls : NULL, &redis_conn_cbs, be, why, sizeof(why));
	if (be->conn == NULL) {
		redis_conn_failed(be, why, 0);
		return;
	}
	ok = redis_send_auth(be->conn, cb_redis_hello, "AUTH", be->username, be->auth) == 0;
	if (ok && be->db != 0)
		ok = rconn_command(be->conn, cb_redis_hello, "SELECT", "SELECT %d", be->db) == 0;
	if (ok && be->sentinel_master != NULL)
		ok = rconn_command(be->conn, cb_redis_hello, "ROLE", "ROLE") == 0;
	if (ok)
		ok = rconn_command(be->conn, cb_redis_hello, "PING", "PING") == 0;
	if (!ok) {
		redis_drop(be, "connect: out of memory", 0);
		redis_conn_failed(be, "connect: out of memory", 0);
		return;
	}
	ev_timer_stop(be->loop, &be->conn_timer);
	ev_timer_set(&be->conn_timer, be->conn_timeout_ms / 1000., 0.);
	ev_timer_start(be->loop, &be->conn_timer);
	log_debug("storage redis: %s:%d: %s", be->host, be->port, redis_state_names[be->state]);
}

/* ---- asking the sentinels ------------------------------------------------ */

/* The sentinel asked has failed for be->sq_err: ask the next one. */
static void redis_sentinel_next(struct redis_be *be)
{
	struct rconn *sq = be->sq;

	be->sq = NULL;
	ev_timer_stop(be->loop, &be->conn_timer);
	rconn_free(sq, be->sq_err);
	be->sq_idx = (be->sq_idx + 1) % be->nsentinels;
	be->sq_tried++;
	redis_sentinel_ask(be);
}

void redis_master_switched(struct redis_be *be, const char *host, int port)
{
	/* already there (the sentinels were asked again after a loss) */
	if (be->state == REDIS_READY && strcmp(host, be->host) == 0 && port == be->port)
		return;
	log_info("storage redis: sentinel: master %s switched to %s:%d, reconnecting",
		 be->sentinel_master, host, port);
	redis_master_lost(be, "the sentinels switched the master");
}

/* SENTINEL get-master-addr-by-name answered (or AUTH, <priv> "AUTH"). */
static void cb_redis_sentinel_reply(struct rconn *c, redisReply *r, void *priv)
{
	struct redis_be *be = rconn_arg(c);
	char host[sizeof(be->host)];
	int port;

	if (be == NULL || be->sq != c || r == NULL)
		return;	/* lost: the closed callback moves on */
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(be->sq_err, sizeof(be->sq_err), "sentinel %s: %s refused: %s",
			 rconn_peer(c), priv ? "AUTH" : "SENTINEL get-master-addr-by-name", r->str);
		be->sq_refused |= priv != NULL;
		redis_sentinel_next(be);
		return;
	}
	if (priv != NULL)
		return;	/* AUTH +OK */
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
	    r->element[0]->len >= sizeof(host) || (port = atoi(r->element[1]->str)) <= 0 ||
	    port > 65535) {
		snprintf(be->sq_err, sizeof(be->sq_err), "sentinel %s: master %s unknown",
			 rconn_peer(c), be->sentinel_master);
		redis_sentinel_next(be);
		return;
	}
	memcpy(host, r->element[0]->str, r->element[0]->len + 1);
	be->sq = NULL;
	ev_timer_stop(be->loop, &be->conn_timer);
	rconn_free(c, "answered");
	if (strcmp(host, be->host) != 0 || port != be->port) {
		if (be->host[0])
			log_info("storage redis: sentinel: master %s is now %s:%d (was %s:%d)",
				 be->sentinel_master, host, port, be->host, be->port);
		else
			log_info("storage redis: sentinel: master %s is %s:%d",
				 be->sentinel_master, host, port);
		snprintf(be->host, sizeof(be->host), "%s", host);
		be->port = port;
		redis_subs_master_changed(be);
	}
	redis_master_connect(be);
}

static void cb_redis_sentinel_closed(struct rconn *c, void *arg, enum rconn_end how,
				     const char *why)
{
	struct redis_be *be = arg;

	if (be->sq != c)
		return;
	snprintf(be->sq_err, sizeof(be->sq_err), "sentinel %s: %s", rconn_peer(c), why);
	be->sq = NULL;
	ev_timer_stop(be->loop, &be->conn_timer);
	be->sq_idx = (be->sq_idx + 1) % be->nsentinels;
	be->sq_tried++;
	redis_sentinel_ask(be);
}

static const struct rconn_cbs redis_sentinel_cbs = {
	.closed = cb_redis_sentinel_closed,
};

/* Asks the sentinels in turn, from the one that answered last, until one
 * names the master or every one has failed. */
static void redis_sentinel_ask(struct redis_be *be)
{
	char why[320];

	while (be->sq_tried < be->nsentinels) {
		const struct redis_node *n = &be->sentinels[be->sq_idx];
		struct rconn *c;

		c = rconn_new(be->loop, be->resolver, n->host, n->port,
			      be->tls.ctx ? &be->tls : NULL, &redis_sentinel_cbs, be, why, sizeof(why));
		if (c != NULL &&
		    redis_send_auth(c, cb_redis_sentinel_reply, "AUTH", be->sentinel_username,
				    be->sentinel_password) == 0 &&
		    rconn_command(c, cb_redis_sentinel_reply, NULL,
				  "SENTINEL get-master-addr-by-name %s", be->sentinel_master) == 0) {
			be->sq = c;
			ev_timer_stop(be->loop, &be->conn_timer);
			ev_timer_set(&be->conn_timer, be->conn_timeout_ms / 1000., 0.);
			ev_timer_start(be->loop, &be->conn_timer);
			return;
		}
		if (c != NULL) {
			snprintf(why, sizeof(why), "out of memory");
			rconn_free(c, why);
		}
		snprintf(be->sq_err, sizeof(be->sq_err), "sentinel %.100s:%d: %.120s", n->host,
			 n->port, why);
		be->sq_idx = (be->sq_idx + 1) % be->nsentinels;
		be->sq_tried++;
	}
	snprintf(why, sizeof(why), "no sentinel named master %.64s (last: %.160s)",
		 be->sentinel_master, be->sq_err);
	redis_conn_failed_at(be, 0, why, be->sq_refused);
}

/* Starts a connection: to the configured server, or to the master the
 * sentinels name. */
static void redis_connect(struct redis_be *be)
{
	ev_timer_stop(be->loop, &be->retry);
	be->drop_why[0] = '\0';
	be->state = REDIS_CONNECTING;
	if (be->sentinel_master == NULL) {
		redis_master_connect(be);
		return;
	}
	be->sq_tried = 0;
	be->sq_refused = 0;
	be->sq_err[0] = '\0';
	redis_sentinel_ask(be);
}

/* ---- the pipeline -------------------------------------------------------- */

/* Starts <req>'s operation over (a command of it was lost with the
 * connection): every operation here may run twice (see redis_cmd_start). */
static void redis_req_requeue(struct redis_req *req)
{
	struct redis_be *be = req->be;

	storage_list_free(req->keys, req->n);
	req->keys = NULL;
	req->n = req->cap = 0;
	req->step = req->attempt = 0;
	req->replays++;
	req->where = REDIS_QUEUED;
	TAILQ_INSERT_TAIL(&be->queue, req, link);
	be->nqueue++;
}

static void cb_redis_reply(struct rconn *c, redisReply *r, void *priv)
{
	struct redis_req *req = priv;
	struct redis_be *be = req->be;
	char why[256];

	redis_req_unlink(req);
	if (r == NULL) {
		/* lost, dropped by us (watchdog, failover, close) or refused */
		if (be->sentinel_master != NULL && !be->closing && req->replays < 3 &&
		    (be->replay || be->conn == c)) {
			redis_req_requeue(req);
			return;
		}
		redis_req_fail(req, "%s:%d: %s", be->host, be->port,
			       be->conn == c ? rconn_errstr(c) :
			       be->drop_why[0] ? be->drop_why : "connection closed");
		return;
	}
	if (r->type == REDIS_REPLY_ERROR && be->sentinel_master != NULL && be->conn == c &&
	    strncmp(r->str, "READONLY", 8) == 0) {
		/* a replica now: nothing was done; the operation waits for the master */
		snprintf(why, sizeof(why), "%.200s:%d is no longer the master (READONLY)", be->host,
			 be->port);
		log_warn("storage redis: %s, asking the sentinels", why);
		redis_req_requeue(req);
		redis_master_lost(be, why);
		return;
	}
	redis_cmd_reply(req, r);
}

void redis_req_send(struct redis_req *req, int argc, const char **argv, const size_t *lens)
{
	struct redis_be *be = req->be;

	if (be->state != REDIS_READY || be->conn == NULL) {
		redis_req_fail(req, "%s", be->last_err[0] ? be->last_err : "connection lost");
		return;
	}
	if (rconn_command_argv(be->conn, cb_redis_reply, req, argc, argv, lens) != 0) {
		redis_req_fail(req, "%s:%d: %s", be->host, be->port, "out of memory");
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

	if (be->state == REDIS_DOWN && !redis_in_failover(be)) {
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
	if (be->state != REDIS_READY) {
		req->where = REDIS_QUEUED;
		TAILQ_INSERT_TAIL(&be->queue, req, link);
		be->nqueue++;
		return;
	}
	redis_cmd_start(req);
}

/* ---- open and close ------------------------------------------------------ */

static void redis_be_free(struct redis_be *be)
{
	free(be->username);
	if (be->auth != NULL)
		OPENSSL_cleanse(be->auth, strlen(be->auth));
	free(be->auth);
	free(be->ns);
	free(be->server_name);
	free(be->sentinel_master);
	free(be->sentinels);
	free(be->sentinel_username);
	if (be->sentinel_password != NULL)
		OPENSSL_cleanse(be->sentinel_password, strlen(be->sentinel_password));
	free(be->sentinel_password);
	if (be->tls.ctx != NULL)
		SSL_CTX_free(be->tls.ctx);
	rconn_resolver_free(be->resolver);	/* after every connection */
	free(be);
}

static void redis_close_be(void *p)
{
	struct redis_be *be = p;
	struct redis_req *req;

	if (be == NULL)
		return;
	be->closing = 1;
	ev_timer_stop(be->loop, &be->retry);
	ev_timer_stop(be->loop, &be->conn_timer);
	ev_timer_stop(be->loop, &be->watchdog);
	redis_watch_stop(be);
	redis_subs_detach(be);
	/* never called from inside one of this connection's callbacks (they only
	 * hand results to the front), so it is freed here and now, failing every
	 * command in flight: none is left pointing at <be> */
	redis_drop(be, "storage closing", 0);
	while ((req = TAILQ_FIRST(&be->queue)) != NULL)
		redis_req_fail(req, "storage closing");
	redis_be_free(be);
}

static char *redis_strdup0(const char *s)
{
	return strdup(s != NULL ? s : "");
}

/* Copies the sentinel settings of <conf> into <be>; -1 with <err> set. */
static int redis_open_sentinels(struct redis_be *be, const struct storage_conf *conf, char *err,
				size_t errlen)
{
	size_t i;

	if (conf->redis_sentinel_master == NULL || conf->redis_sentinel_master[0] == '\0') {
		if (conf->redis_nsentinel_nodes > 0) {
			snprintf(err, errlen, "storage redis: sentinel_nodes without sentinel_master");
			return -1;
		}
		return 0;
	}
	if (conf->redis_nsentinel_nodes == 0) {
		snprintf(err, errlen, "storage redis: sentinel_master %s: sentinel_nodes is empty",
			 conf->redis_sentinel_master);
		return -1;
	}
	if (strpbrk(conf->redis_sentinel_master, " \r\n\"'") != NULL) {
		snprintf(err, errlen, "storage redis: sentinel_master: spaces or quotes");
		return -1;
	}
	be->sentinels = calloc(conf->redis_nsentinel_nodes, sizeof(*be->sentinels));
	be->sentinel_master = strdup(conf->redis_sentinel_master);
	be->sentinel_username = redis_strdup0(conf->redis_sentinel_username);
	be->sentinel_password = redis_strdup0(conf->redis_sentinel_password);
	if (be->sentinels == NULL || be->sentinel_master == NULL ||
	    be->sentinel_username == NULL || be->sentinel_password == NULL) {
		snprintf(err, errlen, "storage redis: out of memory");
		return -1;
	}
	for (i = 0; i < conf->redis_nsentinel_nodes; i++) {
		struct addr a;
		char why[160];

		if (addr_parse(conf->redis_sentinel_nodes[i], 0, &a, why, sizeof(why)) == -1) {
			snprintf(err, errlen, "storage redis: sentinel_nodes[%zu]: \"%.100s\" %s", i,
				 conf->redis_sentinel_nodes[i], why);
			return -1;
		}
		snprintf(be->sentinels[i].host, sizeof(be->sentinels[i].host), "%s", a.host);
		be->sentinels[i].port = a.port;
	}
	be->nsentinels = conf->redis_nsentinel_nodes;
	return 0;
}

static void *redis_open_be(struct ev_loop *loop, const struct storage_conf *conf, char *err,
			   size_t errlen)
{
	struct storage_conf none = { 0 };
	struct redis_be *be = NULL;
	char why[256];
	const char *ns;

	if (conf == NULL)
		conf = &none;
	ns = conf->redis_namespace ? conf->redis_namespace : "";
	if (strpbrk(ns, "*?[]\\ \r\n") != NULL || strlen(ns) > 128) {
		snprintf(err, errlen, "storage redis: namespace \"%.64s\": must be at most 128 "
			 "bytes without glob characters or spaces", ns);
		return NULL;
	}
	be = calloc(1, sizeof(*be));
	if (be == NULL)
		goto oom;
	snprintf(be->host, sizeof(be->host), "%s",
		 conf->redis_host && *conf->redis_host ? conf->redis_host : "127.0.0.1");
	be->username = redis_strdup0(conf->redis_username);
	be->auth = redis_strdup0(conf->redis_auth);
	be->ns = strdup(ns);
	be->server_name = redis_strdup0(conf->redis_ssl_server_name);
	if (be->username == NULL || be->auth == NULL || be->ns == NULL || be->server_name == NULL)
		goto oom;
	if (redis_open_sentinels(be, conf, err, errlen) == -1)
		goto fail;
	if (be->sentinel_master != NULL)
		be->host[0] = '\0';	/* the sentinels name it */
	if (conf->redis_ssl) {
		be->tls.ctx = rconn_tls_ctx(conf->redis_ssl_verify, conf->redis_ssl_ca_file,
					    conf->redis_ssl_cert, conf->redis_ssl_key, why,
					    sizeof(why));
		if (be->tls.ctx == NULL) {
			snprintf(err, errlen, "storage redis: %s", why);
			goto fail;
		}
		be->tls.verify = conf->redis_ssl_verify;
		be->tls.server_name = be->server_name[0] ? be->server_name : NULL;
	}
	be->loop = loop;
	be->resolver = rconn_resolver_new(loop);
	if (be->resolver == NULL)
		goto oom;
	be->port = conf->redis_port > 0 ? conf->redis_port : 6379;
	be->db = conf->redis_database;
	be->conn_timeout_ms = conf->redis_timeout_ms > 0 ? conf->redis_timeout_ms :
			      REDIS_DEF_CONNECT_MS;
	be->stall = 2. * (conf->timeout_ms > 0 ? conf->timeout_ms : REDIS_DEF_OP_MS) / 1000.;
	TAILQ_INIT(&be->queue);
	TAILQ_INIT(&be->inflight);
	TAILQ_INIT(&be->subs);
	ev_init(&be->conn_timer, cb_redis_conn_timeout);
	ev_init(&be->retry, cb_redis_retry);
	ev_init(&be->watchdog, cb_redis_watchdog);
	be->conn_timer.data = be->retry.data = be->watchdog.data = be;
	/* an unreachable server is not an error: operations fail until it answers */
	redis_connect(be);
	if (be->sentinel_master != NULL)
		redis_watch_start(be);
	return be;
oom:
	snprintf(err, errlen, "storage redis: out of memory");
fail:
	if (be != NULL)
		redis_be_free(be);
	return NULL;
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
	.feed_members = 1,
	.scan = 1,
	.subscribe = redis_subscribe,
	.sub_free = redis_sub_free,
	.sub_ready = redis_sub_ready,
};
