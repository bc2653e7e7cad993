/* SPDX-License-Identifier: Apache-2.0 */
/* Another program's Redis, read on the loop: see redis_peek.h. */
#include "storage/redis_peek.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "storage/storage_redis_conn.h"

#define REDIS_PEEK_SCAN_COUNT "1000"

struct redis_peek {
	struct ev_loop *loop;
	struct rconn_resolver *resolver;
	struct rconn *conn;		/* NULL once it ended */
	char why[256];			/* why it ended */
	double timeout;			/* seconds */
	ev_timer timer;
	int timed_out;
};

/* One command awaited: what its callback keeps of the reply. */
struct peek_call {
	struct redis_peek *p;
	int done, failed;
	char err[256];
	/* SCAN */
	char cursor[32];
	char **keys;
	size_t n, cap;
	/* GET */
	char *val;
	size_t len;
	int absent;
};

static void cb_peek_closed(struct rconn *c, void *arg, enum rconn_end how, const char *why)
{
	struct redis_peek *p = arg;

	if (p->conn == c)
		p->conn = NULL;
	snprintf(p->why, sizeof(p->why), "%s", why ? why : "connection ended");
}

static const struct rconn_cbs peek_cbs = { .closed = cb_peek_closed };

static int redis_peek_ping(struct redis_peek *p, char *err, size_t errlen);

static void cb_peek_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	((struct redis_peek *)w->data)->timed_out = 1;
}

struct redis_peek *redis_peek_open(struct ev_loop *loop, const char *host, int port,
				   long timeout_ms, char *err, size_t errlen)
{
	struct redis_peek *p = calloc(1, sizeof(*p));

	if (!p || !(p->resolver = rconn_resolver_new(loop))) {
		snprintf(err, errlen, "out of memory");
		free(p);
		return NULL;
	}
	p->loop = loop;
	p->timeout = (timeout_ms > 0 ? timeout_ms : 2000) / 1000.;
	ev_timer_init(&p->timer, cb_peek_timer, p->timeout, 0.);
	p->timer.data = p;
	p->conn = rconn_new(loop, p->resolver, host, port, NULL, &peek_cbs, p, err, errlen);
	if (!p->conn || redis_peek_ping(p, err, errlen) == -1) {
		redis_peek_close(p);
		return NULL;
	}
	return p;
}

/* Marks <call> failed from a NULL or error reply <r>; 1 when it did. */
static int peek_failed(struct peek_call *call, struct rconn *c, const redisReply *r)
{
	if (r && r->type != REDIS_REPLY_ERROR)
		return 0;
	call->failed = 1;
	snprintf(call->err, sizeof(call->err), "%s",
		 r ? r->str : call->p->conn ? rconn_errstr(c) : call->p->why);
	return 1;
}

/* Runs the loop until <call> is answered or the deadline passes (the
 * connection is then ended: its pending reply comes as a failure). */
static int peek_wait(struct redis_peek *p, struct peek_call *call, char *err, size_t errlen)
{
	p->timed_out = 0;
	ev_now_update(p->loop);
	ev_timer_set(&p->timer, p->timeout, 0.);
	ev_timer_start(p->loop, &p->timer);
	while (!call->done && !p->timed_out)
		ev_run(p->loop, EVRUN_ONCE);
	ev_timer_stop(p->loop, &p->timer);
	if (!call->done) {
		snprintf(p->why, sizeof(p->why), "no reply within %.0f ms", p->timeout * 1000.);
		rconn_free(p->conn, p->why);
		p->conn = NULL;
		snprintf(err, errlen, "%s", p->why);
		return -1;
	}
	if (call->failed) {
		snprintf(err, errlen, "%s", call->err);
		return -1;
	}
	return 0;
}

static int peek_ready(struct redis_peek *p, char *err, size_t errlen)
{
	if (p->conn)
		return 0;
	snprintf(err, errlen, "%s", p->why[0] ? p->why : "not connected");
	return -1;
}

static void cb_peek_ping(struct rconn *c, redisReply *r, void *priv)
{
	struct peek_call *call = priv;

	call->done = 1;
	peek_failed(call, c, r);
}

/* The server answers (a refused or dead address fails here, at open). */
static int redis_peek_ping(struct redis_peek *p, char *err, size_t errlen)
{
	struct peek_call call = { .p = p };

	if (rconn_command(p->conn, cb_peek_ping, &call, "PING") == -1) {
		snprintf(err, errlen, "PING: cannot send");
		return -1;
	}
	return peek_wait(p, &call, err, errlen);
}

static void cb_peek_scan(struct rconn *c, redisReply *r, void *priv)
{
	struct peek_call *call = priv;
	size_t i;

	call->done = 1;
	if (peek_failed(call, c, r))
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[0]->len >= sizeof(call->cursor) ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		call->failed = 1;
		snprintf(call->err, sizeof(call->err), "unexpected SCAN reply");
		return;
	}
	memcpy(call->cursor, r->element[0]->str, r->element[0]->len + 1);
	for (i = 0; i < r->element[1]->elements; i++) {
		const redisReply *e = r->element[1]->element[i];

		if (e->type != REDIS_REPLY_STRING)
			continue;
		if (call->n == call->cap) {
			size_t cap = call->cap ? call->cap * 2 : 64;
			char **grown = realloc(call->keys, cap * sizeof(*grown));

			if (!grown)
				goto oom;
			call->keys = grown;
			call->cap = cap;
		}
		if (!(call->keys[call->n] = strdup(e->str)))
			goto oom;
		call->n++;
	}
	return;
oom:
	call->failed = 1;
	snprintf(call->err, sizeof(call->err), "out of memory");
}

int redis_peek_scan(struct redis_peek *p, const char *pattern, char ***keys, size_t *n,
		    char *err, size_t errlen)
{
	struct peek_call call = { .p = p, .cursor = "0" };

	*keys = NULL;
	*n = 0;
	do {
		if (peek_ready(p, err, errlen) == -1)
			goto fail;
		call.done = 0;
		if (rconn_command(p->conn, cb_peek_scan, &call, "SCAN %s MATCH %s COUNT %s",
				  call.cursor, pattern, REDIS_PEEK_SCAN_COUNT) == -1) {
			snprintf(err, errlen, "SCAN: cannot send");
			goto fail;
		}
		if (peek_wait(p, &call, err, errlen) == -1)
			goto fail;
	} while (strcmp(call.cursor, "0") != 0);
	*keys = call.keys;
	*n = call.n;
	return 0;
fail:
	redis_peek_keys_free(call.keys, call.n);
	return -1;
}

void redis_peek_keys_free(char **keys, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

static void cb_peek_get(struct rconn *c, redisReply *r, void *priv)
{
	struct peek_call *call = priv;

	call->done = 1;
	if (peek_failed(call, c, r))
		return;
	if (r->type != REDIS_REPLY_STRING) {
		call->absent = 1;
		return;
	}
	if (!(call->val = malloc(r->len + 1))) {
		call->failed = 1;
		snprintf(call->err, sizeof(call->err), "out of memory");
		return;
	}
	memcpy(call->val, r->str, r->len);
	call->val[r->len] = '\0';
	call->len = r->len;
}

int redis_peek_get(struct redis_peek *p, const char *key, char **val, size_t *len,
		   char *err, size_t errlen)
{
	struct peek_call call = { .p = p };

	*val = NULL;
	*len = 0;
	if (peek_ready(p, err, errlen) == -1)
		return -1;
	if (rconn_command(p->conn, cb_peek_get, &call, "GET %s", key) == -1) {
		snprintf(err, errlen, "GET: cannot send");
		return -1;
	}
	if (peek_wait(p, &call, err, errlen) == -1)
		return -1;
	if (call.absent)
		return 1;
	*val = call.val;
	*len = call.len;
	return 0;
}

void redis_peek_close(struct redis_peek *p)
{
	if (!p)
		return;
	ev_timer_stop(p->loop, &p->timer);
	rconn_free(p->conn, "closed");
	rconn_resolver_free(p->resolver);
	free(p);
}
