/* SPDX-License-Identifier: Apache-2.0 */
/* The SPOA server test fixture shared by test_spoa.c and test_spoa_defer.c:
 * the server runs its own libev loop in a thread; a blocking client acting
 * as HAProxy drives it over loopback, every socket read with a timeout so a
 * hang fails the test instead of stalling it. Functions are static inline:
 * each test file uses a part of them. */
#ifndef TESTS_SPOA_FIXTURE_H
#define TESTS_SPOA_FIXTURE_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <cmocka.h>
#include <ev.h>

#include "spoa/spoa.h"
#include "spoa/spop.h"

struct engine_call {
	char id[64];
	int is_new;
};

enum fx_cmd_kind {
	FX_CMD_DONE = 0,     /* add actions to held[idx] (if it still takes them), done() it */
	FX_CMD_STATS,        /* snapshot the server's counters into <live> */
	FX_CMD__MAX
};

#define FX_HELD_MAX 64

struct fixture {
	struct ev_loop *loop;
	struct spoa_server *srv;
	pthread_t th;
	ev_async stop;
	struct spoa_stats stats;
	int port;
	int sni_calls;
	int big_actions;
	struct engine_call engines[8];
	int nengines;
	/* deferred replies: handles taken by the handlers, completed on the loop
	 * thread at the test's request (libev and the server are not thread-safe) */
	struct spoa_deferred *held[FX_HELD_MAX];
	int nheld;
	int refused;
	ev_async cmd;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int cmd_pending;
	enum fx_cmd_kind cmd_kind;
	int cmd_idx;
	const char *cmd_val;
	int cmd_fill;            /* add int actions until the ACK is full */
	int cmd_reply_null;      /* result: spoa_deferred_reply() gave NULL */
	int cmd_filled;          /* result: actions added by cmd_fill */
	struct spoa_stats live;
	int loop_errors;         /* checks that failed on the loop thread */
};

/* ---- handlers (run on the server thread) ------------------------------ */

static inline void h_sni(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
{
	struct fixture *fx = ctx;

	fx->sni_calls++;
	if (nargs == 1 && args[0].val.type == SPOP_T_STR)
		spoa_reply_set_bool(r, SPOP_SCOPE_SESS, "seen", 1);
}

static inline void h_http01(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
{
	size_t i;

	for (i = 0; i < nargs; i++) {
		if (args[i].name_len == 5 && memcmp(args[i].name, "token", 5) == 0 &&
		    args[i].val.type == SPOP_T_STR && args[i].val.u.s.len == 5 &&
		    memcmp(args[i].val.u.s.ptr, "known", 5) == 0)
			spoa_reply_set_str(r, SPOP_SCOPE_TXN, "keyauth", "known.thumb", 11);
	}
}

static inline void h_big(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
{
	struct fixture *fx = ctx;
	char name[32];
	int i;

	for (i = 0; i < 100000; i++) {
		snprintf(name, sizeof(name), "v%d", i);
		if (spoa_reply_set_int(r, SPOP_SCOPE_REQ, name, i) == -1)
			break;
	}
	fx->big_actions = i;
	spoa_reply_unset(r, SPOP_SCOPE_RES, "x");
}

static inline void on_engine(void *ctx, const char *id, int is_new)
{
	struct fixture *fx = ctx;

	if (fx->nengines < 8) {
		snprintf(fx->engines[fx->nengines].id, sizeof(fx->engines[0].id), "%s", id);
		fx->engines[fx->nengines].is_new = is_new;
		fx->nengines++;
	}
}

/* Adds txn.pre=1, then defers; when refused, answers txn.keyauth=now. */
static inline void h_defer(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
{
	struct fixture *fx = ctx;
	struct spoa_deferred *d;

	spoa_reply_set_int(r, SPOP_SCOPE_TXN, "pre", 1);
	d = spoa_reply_defer(r);
	if (!d) {
		fx->refused++;
		spoa_reply_set_str(r, SPOP_SCOPE_TXN, "keyauth", "now", 3);
		return;
	}
	if (fx->nheld >= FX_HELD_MAX) {
		fx->loop_errors++;
		spoa_deferred_done(d);
		return;
	}
	fx->held[fx->nheld++] = d;
	/* the builder still works until the handler returns */
	spoa_reply_set_bool(r, SPOP_SCOPE_TXN, "after", 1);
}

/* Defers and completes at once: the ACK goes out as if not deferred. */
static inline void h_defer_sync(void *ctx, const struct spop_arg *args, size_t nargs,
			 struct spoa_reply *r)
{
	struct fixture *fx = ctx;
	struct spoa_deferred *d = spoa_reply_defer(r);

	if (!d || spoa_deferred_reply(d) != r) {
		fx->loop_errors++;
		return;
	}
	spoa_reply_set_str(spoa_deferred_reply(d), SPOP_SCOPE_TXN, "keyauth", "sync", 4);
	spoa_deferred_done(d);
}

/* Completes every held deferral from inside a handler of another frame. */
static inline void h_release(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
{
	struct fixture *fx = ctx;
	int i;

	for (i = 0; i < fx->nheld; i++) {
		struct spoa_reply *dr = spoa_deferred_reply(fx->held[i]);

		if (dr)
			spoa_reply_set_str(dr, SPOP_SCOPE_TXN, "keyauth", "released", 8);
		spoa_deferred_done(fx->held[i]);
	}
	fx->nheld = 0;
	spoa_reply_set_bool(r, SPOP_SCOPE_SESS, "seen", 1);
}

/* Defers without adding anything: a timeout sends the default action. */
static inline void h_defer_bare(void *ctx, const struct spop_arg *args, size_t nargs,
			 struct spoa_reply *r)
{
	struct fixture *fx = ctx;
	struct spoa_deferred *d = spoa_reply_defer(r);

	if (d && fx->nheld < FX_HELD_MAX)
		fx->held[fx->nheld++] = d;
	else
		spoa_deferred_done(d);
}

/* Defers with its own timeout (0.6 s) instead of the server's. */
static inline void h_defer_long(void *ctx, const struct spop_arg *args, size_t nargs,
				struct spoa_reply *r)
{
	struct fixture *fx = ctx;
	struct spoa_deferred *d = spoa_reply_defer(r);

	spoa_deferred_set_timeout(d, 0.6);
	if (d && fx->nheld < FX_HELD_MAX)
		fx->held[fx->nheld++] = d;
	else
		spoa_deferred_done(d);
}

static const struct spoa_handler handlers[] = {
	{ "acme-sni", h_sni },
	{ "acme-http01", h_http01 },
	{ "big", h_big },
	{ "defer", h_defer },
	{ "defer-sync", h_defer_sync },
	{ "release", h_release },
	{ "defer-bare", h_defer_bare },
	{ "defer-long", h_defer_long },
	{ NULL, NULL },
};

/* ---- server thread ---------------------------------------------------- */

static inline void cb_stop(struct ev_loop *loop, ev_async *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

/* Completes held[cmd_idx]: adds txn.keyauth=cmd_val and, with cmd_fill, int
 * actions until the ACK is full, when it still takes actions; then done(). */
static inline void fx_cmd_done(struct fixture *fx)
{
	struct spoa_deferred *d;
	struct spoa_reply *r;
	char name[32];

	fx->cmd_reply_null = 1;
	fx->cmd_filled = 0;
	if (fx->cmd_idx >= fx->nheld) {
		fx->loop_errors++;
		return;
	}
	d = fx->held[fx->cmd_idx];
	r = spoa_deferred_reply(d);
	fx->cmd_reply_null = r == NULL;
	if (r && fx->cmd_val)
		spoa_reply_set_str(r, SPOP_SCOPE_TXN, "keyauth", fx->cmd_val, strlen(fx->cmd_val));
	while (r && fx->cmd_fill) {
		snprintf(name, sizeof(name), "f%d", fx->cmd_filled);
		if (spoa_reply_set_int(r, SPOP_SCOPE_REQ, name, fx->cmd_filled) == -1)
			break;
		fx->cmd_filled++;
	}
	spoa_deferred_done(d);
}

static inline void cb_cmd(struct ev_loop *loop, ev_async *w, int revents)
{
	struct fixture *fx = w->data;

	pthread_mutex_lock(&fx->mu);
	if (fx->cmd_pending) {
		if (fx->cmd_kind == FX_CMD_STATS)
			spoa_server_stats(fx->srv, &fx->live);
		else
			fx_cmd_done(fx);
		fx->cmd_pending = 0;
		pthread_cond_signal(&fx->cv);
	}
	pthread_mutex_unlock(&fx->mu);
}

/* Runs a command on the loop thread and waits for it. */
static inline void fx_cmd(struct fixture *fx, enum fx_cmd_kind kind, int idx, const char *val, int fill)
{
	pthread_mutex_lock(&fx->mu);
	fx->cmd_kind = kind;
	fx->cmd_idx = idx;
	fx->cmd_val = val;
	fx->cmd_fill = fill;
	fx->cmd_pending = 1;
	ev_async_send(fx->loop, &fx->cmd);
	while (fx->cmd_pending)
		pthread_cond_wait(&fx->cv, &fx->mu);
	pthread_mutex_unlock(&fx->mu);
}

/* Completes held[<idx>], adding txn.keyauth=<val> when not NULL. Returns 1
 * when the ACK could still take actions. */
static inline int fx_done(struct fixture *fx, int idx, const char *val)
{
	fx_cmd(fx, FX_CMD_DONE, idx, val, 0);
	return !fx->cmd_reply_null;
}

static inline const struct spoa_stats *fx_live(struct fixture *fx)
{
	fx_cmd(fx, FX_CMD_STATS, 0, NULL, 0);
	return &fx->live;
}

static inline void *loop_main(void *arg)
{
	struct fixture *fx = arg;

	ev_run(fx->loop, 0);
	return NULL;
}

static inline struct fixture *fx_start_with(struct spoa_server_conf conf)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char err[256];

	assert_non_null(fx);
	conf.handlers = handlers;
	conf.on_engine = on_engine;
	conf.ctx = fx;
	pthread_mutex_init(&fx->mu, NULL);
	pthread_cond_init(&fx->cv, NULL);
	fx->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(fx->loop);
	fx->srv = spoa_server_new(fx->loop, &conf, err, sizeof(err));
	if (!fx->srv)
		fail_msg("spoa_server_new: %s", err);
	fx->port = spoa_server_port(fx->srv);
	ev_async_init(&fx->stop, cb_stop);
	ev_async_start(fx->loop, &fx->stop);
	ev_async_init(&fx->cmd, cb_cmd);
	fx->cmd.data = fx;
	ev_async_start(fx->loop, &fx->cmd);
	assert_int_equal(pthread_create(&fx->th, NULL, loop_main, fx), 0);
	return fx;
}

static inline struct fixture *fx_start_conf(const char *listen, uint32_t max_frame, double idle,
				     unsigned max_conns)
{
	struct spoa_server_conf conf = {
		.listen = listen,
		.max_frame_size = max_frame,
		.idle_timeout = idle,
		.max_conns = max_conns,
	};

	return fx_start_with(conf);
}

static inline struct fixture *fx_start(void)
{
	struct fixture *fx = fx_start_conf("127.0.0.1:0", 0, 0, 0);

	assert_true(fx->port > 0);
	return fx;
}

/* Stops the loop thread: the server is the test thread's alone after. */
static inline void fx_halt(struct fixture *fx)
{
	ev_async_send(fx->loop, &fx->stop);
	pthread_join(fx->th, NULL);
}

/* After fx_halt(): snapshots the stats, frees everything but <fx>. */
static inline void fx_free(struct fixture *fx)
{
	spoa_server_stats(fx->srv, &fx->stats);
	spoa_server_free(fx->srv);
	ev_loop_destroy(fx->loop);
	pthread_mutex_destroy(&fx->mu);
	pthread_cond_destroy(&fx->cv);
}

/* Stops the loop thread, snapshots the stats, frees everything but <fx>. */
static inline void fx_stop(struct fixture *fx)
{
	fx_halt(fx);
	fx_free(fx);
}

/* ---- client side ------------------------------------------------------ */

static inline int cl_connect(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 3 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static inline void cl_send(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		assert_true(n > 0);
		buf += n;
		len -= (size_t)n;
	}
}

static inline int cl_read_n(int fd, char *buf, size_t len)
{
	while (len) {
		ssize_t n = recv(fd, buf, len, 0);

		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one frame into <buf> and parses its header. Returns 0, or -1 on EOF,
 * reset or timeout. */
static inline int cl_read_frame(int fd, char *buf, size_t cap, struct spop_frame *f)
{
	size_t flen;

	if (cl_read_n(fd, buf, 4) == -1)
		return -1;
	assert_int_equal(spop_frame_peek(buf, 4, (uint32_t)cap - 4, &flen), 0);
	flen = ((size_t)(unsigned char)buf[0] << 24) | ((size_t)(unsigned char)buf[1] << 16) |
	       ((size_t)(unsigned char)buf[2] << 8) | (unsigned char)buf[3];
	assert_true(flen + 4 <= cap);
	if (cl_read_n(fd, buf + 4, flen) == -1)
		return -1;
	assert_int_equal(spop_frame_parse(buf + 4, flen, f), 0);
	return 0;
}

/* Asserts the peer closes (EOF or reset) within the receive timeout. */
static inline void cl_expect_close(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, 0);

	assert_true(n == 0 || (n == -1 && errno == ECONNRESET));
}

static inline void cl_expect_disconnect(int fd, unsigned status)
{
	char buf[1024];
	struct spop_frame f;
	struct spop_disconnect d;

	assert_int_equal(cl_read_frame(fd, buf, sizeof(buf), &f), 0);
	assert_int_equal(f.type, SPOP_FRM_AGENT_DISCONNECT);
	assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), 0);
	assert_true(d.has_status_code);
	if (d.status_code != status)
		fail_msg("status %llu (%.*s), expected %u", (unsigned long long)d.status_code,
			 (int)d.message_len, d.message, status);
	assert_true(d.message_len > 0);
	cl_expect_close(fd);
}

/* HELLO; returns the negotiated max-frame-size and checks the AGENT-HELLO. */
static inline uint32_t cl_hello(int fd, uint32_t max_frame, const char *engine)
{
	char buf[1024];
	struct spop_frame f;
	struct spop_arg kv;
	const char *p;
	uint32_t mfs = 0;
	int n, seen = 0;

	n = spop_encode_haproxy_hello(buf, sizeof(buf), "2.0", max_frame,
				      "pipelining,async,fragmentation", 0, engine);
	assert_true(n > 0);
	cl_send(fd, buf, (size_t)n);
	assert_int_equal(cl_read_frame(fd, buf, sizeof(buf), &f), 0);
	assert_int_equal(f.type, SPOP_FRM_AGENT_HELLO);
	assert_true(f.flags & SPOP_FRAME_FL_FIN);
	p = f.payload;
	while (spop_kv_next(&p, f.payload + f.payload_len, &kv) == 1) {
		if (kv.name_len == 7 && !memcmp(kv.name, "version", 7)) {
			assert_int_equal(kv.val.u.s.len, 3);
			assert_memory_equal(kv.val.u.s.ptr, "2.0", 3);
			seen |= 1;
		} else if (kv.name_len == 14 && !memcmp(kv.name, "max-frame-size", 14)) {
			mfs = (uint32_t)kv.val.u.u;
			seen |= 2;
		} else if (kv.name_len == 12 && !memcmp(kv.name, "capabilities", 12)) {
			/* pipelining only, whatever HAProxy offers */
			assert_int_equal(kv.val.u.s.len, 10);
			assert_memory_equal(kv.val.u.s.ptr, "pipelining", 10);
			seen |= 4;
		}
	}
	assert_int_equal(seen, 7);
	return mfs;
}

/* Appends a NOTIFY with one message <msg> and (name, string value) args. */
static inline size_t add_notify(char *buf, size_t cap, uint64_t sid, uint64_t fid, const char *msg,
			 unsigned nargs, const char *const *kv)
{
	char *p = buf, *start;
	unsigned i;

	assert_int_equal(spop_frame_begin(&p, buf + cap, &start, SPOP_FRM_NOTIFY, SPOP_FRAME_FL_FIN,
					  sid, fid), 0);
	assert_int_equal(spop_encode_message(&p, buf + cap, msg, strlen(msg), nargs), 0);
	for (i = 0; i < nargs; i++) {
		struct spop_data d = { .type = SPOP_T_STR };

		d.u.s.ptr = kv[2 * i + 1];
		d.u.s.len = strlen(kv[2 * i + 1]);
		assert_int_equal(spop_encode_kv(&p, buf + cap, kv[2 * i], &d), 0);
	}
	return spop_frame_end(start, p);
}

/* Reads one ACK, checks ids, returns the action count; <keyauth> gets the
 * txn keyauth value if present. */
static inline unsigned cl_read_ack(int fd, uint64_t sid, uint64_t fid, char *keyauth, size_t klen)
{
	char buf[20000];
	struct spop_frame f;
	struct spop_action a;
	const char *p;
	unsigned n = 0;
	int r;

	assert_int_equal(cl_read_frame(fd, buf, sizeof(buf), &f), 0);
	assert_int_equal(f.type, SPOP_FRM_ACK);
	assert_true(f.flags & SPOP_FRAME_FL_FIN);
	assert_true(f.stream_id == sid);
	assert_true(f.frame_id == fid);
	if (keyauth)
		keyauth[0] = '\0';
	p = f.payload;
	while ((r = spop_action_next(&p, f.payload + f.payload_len, &a)) == 1) {
		n++;
		if (keyauth && a.type == SPOP_ACT_SET_VAR && a.name_len == 7 &&
		    !memcmp(a.name, "keyauth", 7) && a.val.type == SPOP_T_STR)
			snprintf(keyauth, klen, "%.*s", (int)a.val.u.s.len, a.val.u.s.ptr);
	}
	assert_int_equal(r, 0);
	return n;
}

#endif
