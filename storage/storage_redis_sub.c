/* SPDX-License-Identifier: Apache-2.0 */
/* redis backend: pub/sub, each subscription on a connection of its own to
 * the backend's server (with sentinels: to the master they last named,
 * moving when it moves), and the sentinels' +switch-master watch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "lib/log.h"
#include "storage/storage.h"
#include "storage/storage_redis_int.h"

#define SUB_BACKOFF_MIN_S	0.1
#define SUB_BACKOFF_MAX_S	5.
#define WATCH_RETRY_S		1.

struct redis_sub {
	struct redis_be *be;		/* NULL once the storage closed */
	TAILQ_ENTRY(redis_sub) link;
	struct ev_loop *loop;
	char *channel;			/* namespaced */
	void (*cb)(void *arg, const char *msg, size_t len);
	void *arg;
	struct rconn *conn;
	char peer[280];			/* "host:port" of <conn> */
	ev_timer retry;			/* reconnect after backoff */
	ev_timer deadline;		/* not subscribed in time: drop and retry */
	double backoff;
	int ready;
};

static void sub_connect(struct redis_sub *sub);

/* Forgets the connection; its callbacks are not called from here on. */
static void sub_drop(struct redis_sub *sub)
{
	struct rconn *c = sub->conn;

	sub->conn = NULL;
	sub->ready = 0;
	ev_timer_stop(sub->loop, &sub->deadline);
	rconn_free(c, "unsubscribed");
}

static void sub_schedule_retry(struct redis_sub *sub)
{
	ev_timer_stop(sub->loop, &sub->deadline);
	ev_timer_stop(sub->loop, &sub->retry);
	ev_timer_set(&sub->retry, sub->backoff, 0.);
	ev_timer_start(sub->loop, &sub->retry);
	sub->backoff = sub->backoff * 2 > SUB_BACKOFF_MAX_S ? SUB_BACKOFF_MAX_S : sub->backoff * 2;
}

static void cb_sub_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	sub_connect(w->data);
}

static void cb_sub_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct redis_sub *sub = w->data;

	log_warn("storage redis: channel=%s not subscribed within the deadline, reconnecting",
		 sub->channel);
	sub_drop(sub);
	sub_schedule_retry(sub);
}

static void cb_sub_closed(struct rconn *c, void *arg, enum rconn_end how, const char *why)
{
	struct redis_sub *sub = arg;

	if (sub->conn != c)
		return;
	if (how == RCONN_TLS_REFUSED)
		log_err("storage redis: channel=%s %s: %s", sub->channel, rconn_peer(c), why);
	else
		log_warn("storage redis: channel=%s %s: %s", sub->channel, rconn_peer(c), why);
	sub->conn = NULL;
	sub->ready = 0;
	sub_schedule_retry(sub);
}

/* Every reply of a subscription's connection: AUTH's, SUBSCRIBE's, messages. */
static void cb_sub_push(struct rconn *c, redisReply *r, void *arg)
{
	struct redis_sub *sub = arg;

	if (sub->conn != c)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		log_err("storage redis: channel=%s %s: refused: %s", sub->channel, rconn_peer(c),
			r->str);
		sub_drop(sub);
		sub->backoff = SUB_BACKOFF_MAX_S;
		sub_schedule_retry(sub);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "subscribe") == 0) {
		ev_timer_stop(sub->loop, &sub->deadline);
		sub->ready = 1;
		sub->backoff = SUB_BACKOFF_MIN_S;
		log_debug("storage redis: channel=%s subscribed on %s", sub->channel, sub->peer);
	} else if (strcmp(r->element[0]->str, "message") == 0 &&
		   r->element[2]->type == REDIS_REPLY_STRING) {
		sub->cb(sub->arg, r->element[2]->str, r->element[2]->len);
	}
}

static const struct rconn_cbs sub_cbs = {
	.push = cb_sub_push,
	.closed = cb_sub_closed,
};

static void sub_connect(struct redis_sub *sub)
{
	struct redis_be *be = sub->be;
	char why[256];

	if (be == NULL)
		return;
	if (be->host[0] == '\0') {	/* the sentinels have not named the master yet */
		sub_schedule_retry(sub);
		return;
	}
	sub->conn = rconn_new(sub->loop, be->resolver, be->host, be->port,
			      be->tls.ctx ? &be->tls : NULL, &sub_cbs, sub, why, sizeof(why));
	if (sub->conn == NULL) {
		log_warn("storage redis: channel=%s %s:%d: %s", sub->channel, be->host, be->port,
			 why);
		sub_schedule_retry(sub);
		return;
	}
	snprintf(sub->peer, sizeof(sub->peer), "%s", rconn_peer(sub->conn));
	if (redis_send_auth(sub->conn, NULL, NULL, be->username, be->auth) == -1 ||
	    rconn_command(sub->conn, NULL, NULL, "SUBSCRIBE %s", sub->channel) == -1) {
		sub_drop(sub);
		sub_schedule_retry(sub);
		return;
	}
	ev_timer_set(&sub->deadline, be->conn_timeout_ms * 2 / 1000. + 1., 0.);
	ev_timer_start(sub->loop, &sub->deadline);
}

void redis_sub_free(void *p)
{
	struct redis_sub *sub = p;

	if (sub == NULL)
		return;
	sub_drop(sub);
	ev_timer_stop(sub->loop, &sub->retry);
	ev_timer_stop(sub->loop, &sub->deadline);
	if (sub->be != NULL)
		TAILQ_REMOVE(&sub->be->subs, sub, link);
	free(sub->channel);
	free(sub);
}

int redis_sub_ready(const void *p)
{
	const struct redis_sub *sub = p;

	return sub != NULL && sub->ready;
}

void *redis_subscribe(void *p, struct ev_loop *loop, const char *channel,
		      void (*cb)(void *arg, const char *msg, size_t len), void *arg, char *err,
		      size_t errlen)
{
	struct redis_be *be = p;
	struct redis_sub *sub = calloc(1, sizeof(*sub));
	char k[REDIS_KEYBUF];

	if (sub == NULL || redis_key(be, "", channel, "", k, sizeof(k)) < 0 ||
	    (sub->channel = strdup(k)) == NULL) {
		snprintf(err, errlen, "storage redis: subscribe %s: out of memory", channel);
		free(sub);
		return NULL;
	}
	sub->be = be;
	sub->loop = loop;
	sub->cb = cb;
	sub->arg = arg;
	sub->backoff = SUB_BACKOFF_MIN_S;
	ev_timer_init(&sub->retry, cb_sub_retry, 0., 0.);
	ev_timer_init(&sub->deadline, cb_sub_deadline, 0., 0.);
	sub->retry.data = sub;
	sub->deadline.data = sub;
	TAILQ_INSERT_TAIL(&be->subs, sub, link);
	sub_connect(sub);
	return sub;
}

/* The sentinels named another master: every subscription elsewhere moves
 * now (a message published meanwhile reaches the nodes through the feed). */
void redis_subs_master_changed(struct redis_be *be)
{
	struct redis_sub *sub;
	char peer[sizeof(sub->peer)];

	snprintf(peer, sizeof(peer), "%s:%d", be->host, be->port);
	TAILQ_FOREACH(sub, &be->subs, link) {
		if (sub->conn != NULL && strcmp(sub->peer, peer) == 0)
			continue;
		sub_drop(sub);
		sub->backoff = SUB_BACKOFF_MIN_S;
		ev_timer_stop(sub->loop, &sub->retry);
		ev_timer_set(&sub->retry, 0., 0.);
		ev_timer_start(sub->loop, &sub->retry);
	}
}

/* The storage closes before its subscriptions are freed: they stay, idle. */
void redis_subs_detach(struct redis_be *be)
{
	struct redis_sub *sub;

	while ((sub = TAILQ_FIRST(&be->subs)) != NULL) {
		TAILQ_REMOVE(&be->subs, sub, link);
		sub_drop(sub);
		ev_timer_stop(sub->loop, &sub->retry);
		sub->be = NULL;
	}
}

/* ---- the sentinels' +switch-master --------------------------------------- */

static void watch_connect(struct redis_be *be);

static void watch_retry(struct redis_be *be)
{
	be->sw_idx = (be->sw_idx + 1) % be->nsentinels;
	ev_timer_stop(be->loop, &be->sw_retry);
	ev_timer_set(&be->sw_retry, WATCH_RETRY_S, 0.);
	ev_timer_start(be->loop, &be->sw_retry);
}

static void cb_watch_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	watch_connect(w->data);
}

static void cb_watch_closed(struct rconn *c, void *arg, enum rconn_end how, const char *why)
{
	struct redis_be *be = arg;

	if (be->sw != c)
		return;
	log_debug("storage redis: sentinel %s: watch: %s", rconn_peer(c), why);
	be->sw = NULL;
	watch_retry(be);
}

/* "+switch-master <name> <old ip> <old port> <new ip> <new port>" */
static void cb_watch_push(struct rconn *c, redisReply *r, void *arg)
{
	struct redis_be *be = arg;
	char name[256], oldip[64], newip[64];
	int oldport, newport;
	const char *msg;

	if (be->sw != c)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		log_err("storage redis: sentinel %s: refused: %s (check sentinel_username and "
			"sentinel_password)", rconn_peer(c), r->str);
		be->sw = NULL;
		rconn_free(c, "refused");
		watch_retry(be);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "subscribe") == 0) {	/* its third is a count */
		log_debug("storage redis: sentinel %s: watching +switch-master", rconn_peer(c));
		return;
	}
	if (strcmp(r->element[0]->str, "message") != 0 ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return;
	msg = r->element[2]->str;
	if (sscanf(msg, "%255s %63s %d %63s %d", name, oldip, &oldport, newip, &newport) != 5 ||
	    strcmp(name, be->sentinel_master) != 0 || newport <= 0 || newport > 65535)
		return;
	redis_master_switched(be, newip, newport);
}

static const struct rconn_cbs watch_cbs = {
	.push = cb_watch_push,
	.closed = cb_watch_closed,
};

static void watch_connect(struct redis_be *be)
{
	const struct redis_node *n = &be->sentinels[be->sw_idx];
	char why[256];

	be->sw = rconn_new(be->loop, be->resolver, n->host, n->port,
			   be->tls.ctx ? &be->tls : NULL, &watch_cbs, be, why, sizeof(why));
	if (be->sw == NULL) {
		log_debug("storage redis: sentinel %s:%d: watch: %s", n->host, n->port, why);
		watch_retry(be);
		return;
	}
	if (redis_send_auth(be->sw, NULL, NULL, be->sentinel_username,
			    be->sentinel_password) == -1 ||
	    rconn_command(be->sw, NULL, NULL, "SUBSCRIBE +switch-master") == -1) {
		rconn_free(be->sw, "out of memory");
		be->sw = NULL;
		watch_retry(be);
	}
}

void redis_watch_start(struct redis_be *be)
{
	ev_init(&be->sw_retry, cb_watch_retry);
	be->sw_retry.data = be;
	watch_connect(be);
}

void redis_watch_stop(struct redis_be *be)
{
	struct rconn *c = be->sw;

	if (be->sentinel_master == NULL)
		return;
	ev_timer_stop(be->loop, &be->sw_retry);
	be->sw = NULL;
	rconn_free(c, "closing");
}
