/* SPOA server driven over loopback by a blocking client acting as HAProxy.
 * The server runs its own libev loop in a thread; every socket read has a
 * timeout so a hang fails the test instead of stalling it. */
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

static void h_sni(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
{
	struct fixture *fx = ctx;

	fx->sni_calls++;
	if (nargs == 1 && args[0].val.type == SPOP_T_STR)
		spoa_reply_set_bool(r, SPOP_SCOPE_SESS, "seen", 1);
}

static void h_http01(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
{
	size_t i;

	for (i = 0; i < nargs; i++) {
		if (args[i].name_len == 5 && memcmp(args[i].name, "token", 5) == 0 &&
		    args[i].val.type == SPOP_T_STR && args[i].val.u.s.len == 5 &&
		    memcmp(args[i].val.u.s.ptr, "known", 5) == 0)
			spoa_reply_set_str(r, SPOP_SCOPE_TXN, "keyauth", "known.thumb", 11);
	}
}

static void h_big(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
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

static void on_engine(void *ctx, const char *id, int is_new)
{
	struct fixture *fx = ctx;

	if (fx->nengines < 8) {
		snprintf(fx->engines[fx->nengines].id, sizeof(fx->engines[0].id), "%s", id);
		fx->engines[fx->nengines].is_new = is_new;
		fx->nengines++;
	}
}

/* Adds txn.pre=1, then defers; when refused, answers txn.keyauth=now. */
static void h_defer(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
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
static void h_defer_sync(void *ctx, const struct spop_arg *args, size_t nargs,
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
static void h_release(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
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

static const struct spoa_handler handlers[] = {
	{ "acme-sni", h_sni },
	{ "acme-http01", h_http01 },
	{ "big", h_big },
	{ "defer", h_defer },
	{ "defer-sync", h_defer_sync },
	{ "release", h_release },
	{ NULL, NULL },
};

/* ---- server thread ---------------------------------------------------- */

static void cb_stop(struct ev_loop *loop, ev_async *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

/* Completes held[cmd_idx]: adds txn.keyauth=cmd_val and, with cmd_fill, int
 * actions until the ACK is full, when it still takes actions; then done(). */
static void fx_cmd_done(struct fixture *fx)
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

static void cb_cmd(struct ev_loop *loop, ev_async *w, int revents)
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
static void fx_cmd(struct fixture *fx, enum fx_cmd_kind kind, int idx, const char *val, int fill)
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
static int fx_done(struct fixture *fx, int idx, const char *val)
{
	fx_cmd(fx, FX_CMD_DONE, idx, val, 0);
	return !fx->cmd_reply_null;
}

static const struct spoa_stats *fx_live(struct fixture *fx)
{
	fx_cmd(fx, FX_CMD_STATS, 0, NULL, 0);
	return &fx->live;
}

static void *loop_main(void *arg)
{
	struct fixture *fx = arg;

	ev_run(fx->loop, 0);
	return NULL;
}

static struct fixture *fx_start_with(struct spoa_server_conf conf)
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

static struct fixture *fx_start_conf(const char *listen, uint32_t max_frame, double idle,
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

static struct fixture *fx_start(void)
{
	struct fixture *fx = fx_start_conf("127.0.0.1:0", 0, 0, 0);

	assert_true(fx->port > 0);
	return fx;
}

/* Stops the loop thread, snapshots the stats, frees everything but <fx>. */
static void fx_stop(struct fixture *fx)
{
	ev_async_send(fx->loop, &fx->stop);
	pthread_join(fx->th, NULL);
	spoa_server_stats(fx->srv, &fx->stats);
	spoa_server_free(fx->srv);
	ev_loop_destroy(fx->loop);
	pthread_mutex_destroy(&fx->mu);
	pthread_cond_destroy(&fx->cv);
}

/* ---- client side ------------------------------------------------------ */

static int cl_connect(int port)
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

static void cl_send(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		assert_true(n > 0);
		buf += n;
		len -= (size_t)n;
	}
}

static int cl_read_n(int fd, char *buf, size_t len)
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
static int cl_read_frame(int fd, char *buf, size_t cap, struct spop_frame *f)
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
static void cl_expect_close(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, 0);

	assert_true(n == 0 || (n == -1 && errno == ECONNRESET));
}

static void cl_expect_disconnect(int fd, unsigned status)
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
static uint32_t cl_hello(int fd, uint32_t max_frame, const char *engine)
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
static size_t add_notify(char *buf, size_t cap, uint64_t sid, uint64_t fid, const char *msg,
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
static unsigned cl_read_ack(int fd, uint64_t sid, uint64_t fid, char *keyauth, size_t klen)
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

/* ---- tests ------------------------------------------------------------ */

static void test_hello_and_disconnect(void **state)
{
	struct fixture *fx = fx_start();
	char buf[256];
	int fd = cl_connect(fx->port), n;

	assert_int_equal(cl_hello(fd, 16380, "engine-a"), 16380);
	n = spop_encode_disconnect(buf, sizeof(buf), SPOP_FRM_HAPROXY_DISCONNECT, 0, "bye");
	cl_send(fd, buf, (size_t)n);
	cl_expect_disconnect(fd, SPOP_ST_NORMAL);
	close(fd);
	/* a bigger HAProxy max is cut to ours */
	fd = cl_connect(fx->port);
	assert_int_equal(cl_hello(fd, 65536, "engine-a"), 16384);
	close(fd);
	fd = cl_connect(fx->port);
	assert_int_equal(cl_hello(fd, 1000, "engine-b"), 1000);
	close(fd);
	fx_stop(fx);
	assert_int_equal(fx->nengines, 3);
	assert_string_equal(fx->engines[0].id, "engine-a");
	assert_int_equal(fx->engines[0].is_new, 1);
	assert_int_equal(fx->engines[1].is_new, 0);
	assert_string_equal(fx->engines[2].id, "engine-b");
	assert_int_equal(fx->engines[2].is_new, 1);
	assert_true(fx->stats.hellos == 3);
	assert_true(fx->stats.disconnects == 1);
	assert_true(fx->stats.conns_total == 3);
	free(fx);
}

static void test_pipelined_100(void **state)
{
	static const char *const sni[] = { "sni", "a.test" };
	static const char *const known[] = { "host", "a.test", "token", "known" };
	static const char *const unknown[] = { "host", "a.test", "token", "nope" };
	struct fixture *fx = fx_start();
	char *out = malloc(100 * 128), ka[64];
	size_t len = 0;
	int fd = cl_connect(fx->port), i;

	cl_hello(fd, 16380, NULL);
	for (i = 0; i < 100; i++) {
		/* stream-id 0 happens with HAProxy 2.6 */
		uint64_t sid = i % 10 == 0 ? 0 : (uint64_t)i * 1000;

		if (i % 3 == 0)
			len += add_notify(out + len, 128, sid, (uint64_t)i + 1, "acme-sni", 1, sni);
		else if (i % 3 == 1)
			len += add_notify(out + len, 128, sid, (uint64_t)i + 1, "acme-http01", 2, known);
		else
			len += add_notify(out + len, 128, sid, (uint64_t)i + 1, "acme-http01", 2, unknown);
	}
	cl_send(fd, out, len); /* one write */
	for (i = 0; i < 100; i++) {
		uint64_t sid = i % 10 == 0 ? 0 : (uint64_t)i * 1000;
		unsigned n = cl_read_ack(fd, sid, (uint64_t)i + 1, ka, sizeof(ka));

		assert_true(n >= 1);
		if (i % 3 == 1)
			assert_string_equal(ka, "known.thumb");
		else
			assert_string_equal(ka, "");
	}
	/* an unknown message is ignored but still ACKed with the default action */
	len = add_notify(out, 128, 5, 6, "other", 1, sni);
	cl_send(fd, out, len);
	assert_int_equal(cl_read_ack(fd, 5, 6, NULL, 0), 1);
	close(fd);
	fx_stop(fx);
	assert_int_equal(fx->sni_calls, 34);
	assert_true(fx->stats.notify_frames == 101);
	assert_true(fx->stats.acks == 101);
	assert_true(fx->stats.messages == 100);
	assert_true(fx->stats.lat_count == 100);
	{
		uint64_t sum = 0;
		int b;

		for (b = 0; b < SPOA_LAT_BUCKETS; b++)
			sum += fx->stats.lat_buckets[b];
		assert_true(sum == 100);
	}
	assert_true(fx->stats.malformed == 0);
	free(out);
	free(fx);
}

static void test_big_reply_bounded(void **state)
{
	struct fixture *fx = fx_start();
	char buf[128];
	size_t len;
	int fd = cl_connect(fx->port);
	unsigned n;

	assert_int_equal(cl_hello(fd, 1024, NULL), 1024);
	len = add_notify(buf, sizeof(buf), 1, 1, "big", 0, NULL);
	cl_send(fd, buf, len);
	n = cl_read_ack(fd, 1, 1, NULL, 0); /* cl_read_frame checks it fits */
	close(fd);
	fx_stop(fx);
	assert_true(fx->big_actions > 10 && fx->big_actions < 200);
	/* unset fit or not; count matches what was added */
	assert_true(n == (unsigned)fx->big_actions || n == (unsigned)fx->big_actions + 1);
	free(fx);
}

static void send_raw(int fd, const char *frame, size_t len)
{
	char buf[512];

	assert_true(len + 4 <= sizeof(buf));
	buf[0] = (char)(len >> 24);
	buf[1] = (char)(len >> 16);
	buf[2] = (char)(len >> 8);
	buf[3] = (char)len;
	memcpy(buf + 4, frame, len);
	cl_send(fd, buf, len + 4); /* one write: no Nagle wait between parts */
}

static void test_malformed(void **state)
{
	static const struct {
		const char *name;
		int hello_first;
		const char *frame;
		size_t len;
		unsigned status;
	} cases[] = {
		{ "notify before hello", 0,
		  "\x03\x00\x00\x00\x01\x01\x01" "\x08" "acme-sni" "\x00", 17, SPOP_ST_INVALID },
		{ "unknown frame type", 1, "\x2a\x00\x00\x00\x01\x00\x00", 7, SPOP_ST_INVALID },
		{ "agent frame type from haproxy", 1, "\x67\x00\x00\x00\x01\x00\x00", 7, SPOP_ST_INVALID },
		{ "fragmented notify", 1,
		  "\x03\x00\x00\x00\x00\x01\x01" "\x08" "acme-sni" "\x00", 17, SPOP_ST_FRAG_NOT_SUPPORTED },
		{ "unset continuation", 1, "\x00\x00\x00\x00\x01\x01\x01", 7, SPOP_ST_FRAG_NOT_SUPPORTED },
		{ "truncated header varint", 1, "\x03\x00\x00\x00\x01\xff\xff\xff", 8, SPOP_ST_INVALID },
		{ "short header", 1, "\x03\x00", 2, SPOP_ST_INVALID },
		{ "lying arg count", 1,
		  "\x03\x00\x00\x00\x01\x01\x01" "\x08" "acme-sni" "\x02" "\x03" "sni" "\x08\x01" "a",
		  24, SPOP_ST_INVALID },
		{ "string past end", 1,
		  "\x03\x00\x00\x00\x01\x01\x01" "\x08" "acme-sni" "\x01" "\x03" "sni" "\x08\x7f" "a",
		  24, SPOP_ST_INVALID },
		{ "reserved data type", 1,
		  "\x03\x00\x00\x00\x01\x01\x01" "\x08" "acme-sni" "\x01" "\x03" "sni" "\x0c",
		  22, SPOP_ST_INVALID },
		{ "second hello", 1, NULL, 0, SPOP_ST_INVALID },
		{ "hello bad kv", 0, "\x01\x00\x00\x00\x01\x00\x00" "\x12" "supp", 12, SPOP_ST_INVALID },
		{ "hello nonzero ids", 0, "\x01\x00\x00\x00\x01\x05\x00", 7, SPOP_ST_INVALID },
		{ "hello no caps", 0,
		  "\x01\x00\x00\x00\x01\x00\x00"
		  "\x12" "supported-versions" "\x08\x03" "2.0"
		  "\x0e" "max-frame-size" "\x03\xfc\xf0\x06", 7 + 24 + 19, SPOP_ST_NO_CAPABILITIES },
		{ "hello no version", 0,
		  "\x01\x00\x00\x00\x01\x00\x00"
		  "\x0e" "max-frame-size" "\x03\xfc\xf0\x06", 7 + 19, SPOP_ST_NO_VERSION },
		{ "hello bad version", 0,
		  "\x01\x00\x00\x00\x01\x00\x00"
		  "\x12" "supported-versions" "\x08\x03" "1.0"
		  "\x0e" "max-frame-size" "\x03\xfc\xf0\x06"
		  "\x0c" "capabilities" "\x08\x00", 7 + 24 + 19 + 15, SPOP_ST_BAD_VERSION },
		{ "hello tiny max-frame-size", 0,
		  "\x01\x00\x00\x00\x01\x00\x00"
		  "\x12" "supported-versions" "\x08\x03" "2.0"
		  "\x0e" "max-frame-size" "\x03\x64"
		  "\x0c" "capabilities" "\x08\x00", 7 + 24 + 17 + 15, SPOP_ST_BAD_FRAME_SIZE },
	};
	struct fixture *fx = fx_start();
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int fd = cl_connect(fx->port);

		print_message("case: %s\n", cases[i].name);
		if (cases[i].hello_first)
			cl_hello(fd, 16380, NULL);
		if (cases[i].frame) {
			send_raw(fd, cases[i].frame, cases[i].len);
		} else {
			char buf[256];
			int n = spop_encode_haproxy_hello(buf, sizeof(buf), "2.0", 16380, "", 0, NULL);

			cl_send(fd, buf, (size_t)n);
		}
		cl_expect_disconnect(fd, cases[i].status);
		close(fd);
	}
	/* frames larger than the max: before HELLO (ours) and after (negotiated) */
	{
		int fd = cl_connect(fx->port);

		cl_send(fd, "\x00\x00\x50\x00", 4);
		cl_expect_disconnect(fd, SPOP_ST_TOO_BIG);
		close(fd);
		fd = cl_connect(fx->port);
		assert_int_equal(cl_hello(fd, 300, NULL), 300);
		cl_send(fd, "\x00\x00\x01\x2d", 4); /* 301 */
		cl_expect_disconnect(fd, SPOP_ST_TOO_BIG);
		close(fd);
	}
	/* good frames before a bad one in the same write are still answered */
	{
		static const char *const sni[] = { "sni", "b.test" };
		char buf[512];
		size_t len;
		int fd = cl_connect(fx->port);

		cl_hello(fd, 16380, NULL);
		len = add_notify(buf, sizeof(buf), 1, 1, "acme-sni", 1, sni);
		len += add_notify(buf + len, sizeof(buf) - len, 1, 2, "acme-sni", 1, sni);
		memcpy(buf + len, "\x00\x00\x00\x07\x2a\x00\x00\x00\x01\x00\x00", 11);
		cl_send(fd, buf, len + 11);
		assert_int_equal(cl_read_ack(fd, 1, 1, NULL, 0), 1);
		assert_int_equal(cl_read_ack(fd, 1, 2, NULL, 0), 1);
		cl_expect_disconnect(fd, SPOP_ST_INVALID);
		close(fd);
	}
	fx_stop(fx);
	assert_true(fx->stats.malformed == sizeof(cases) / sizeof(cases[0]) + 3);
	assert_true(fx->stats.conns_current == 0 || fx->stats.conns_current < 30);
	free(fx);
}

static void test_healthcheck(void **state)
{
	struct fixture *fx = fx_start();
	char buf[512];
	struct spop_frame f;
	int fd = cl_connect(fx->port);
	int n = spop_encode_haproxy_hello(buf, sizeof(buf), "2.0", 16380, "pipelining", 1, NULL);

	cl_send(fd, buf, (size_t)n);
	assert_int_equal(cl_read_frame(fd, buf, sizeof(buf), &f), 0);
	assert_int_equal(f.type, SPOP_FRM_AGENT_HELLO);
	cl_expect_close(fd);
	close(fd);
	fx_stop(fx);
	assert_true(fx->stats.healthchecks == 1);
	free(fx);
}

static void test_two_connections_interleaved(void **state)
{
	static const char *const sni[] = { "sni", "c.test" };
	static const char *const known[] = { "host", "c.test", "token", "known" };
	struct fixture *fx = fx_start();
	char buf[256], ka[64];
	size_t len;
	int a = cl_connect(fx->port), b = cl_connect(fx->port);

	cl_hello(a, 16380, "e1");
	cl_hello(b, 16380, "e2");
	len = add_notify(buf, sizeof(buf), 11, 1, "acme-sni", 1, sni);
	cl_send(a, buf, len);
	len = add_notify(buf, sizeof(buf), 22, 1, "acme-http01", 2, known);
	cl_send(b, buf, len);
	len = add_notify(buf, sizeof(buf), 22, 2, "acme-sni", 1, sni);
	cl_send(b, buf, len);
	assert_int_equal(cl_read_ack(b, 22, 1, ka, sizeof(ka)), 1);
	assert_string_equal(ka, "known.thumb");
	len = add_notify(buf, sizeof(buf), 11, 2, "acme-http01", 2, known);
	cl_send(a, buf, len);
	assert_int_equal(cl_read_ack(a, 11, 1, NULL, 0), 1);
	assert_int_equal(cl_read_ack(a, 11, 2, ka, sizeof(ka)), 1);
	assert_string_equal(ka, "known.thumb");
	assert_int_equal(cl_read_ack(b, 22, 2, NULL, 0), 1);
	close(a);
	close(b);
	fx_stop(fx);
	assert_true(fx->stats.acks == 4);
	free(fx);
}

static void test_idle_timeout(void **state)
{
	struct fixture *fx = fx_start_conf("127.0.0.1:0", 0, 0.3, 0);
	int fd = cl_connect(fx->port);

	cl_hello(fd, 16380, NULL);
	cl_expect_disconnect(fd, SPOP_ST_TIMEOUT);
	close(fd);
	/* a connection that never says anything is closed too */
	fd = cl_connect(fx->port);
	cl_expect_disconnect(fd, SPOP_ST_TIMEOUT);
	close(fd);
	fx_stop(fx);
	assert_true(fx->stats.idle_timeouts == 2);
	assert_true(fx->stats.malformed == 0);
	free(fx);
}

struct flood {
	int fd;
	int count;
};

static void *flood_main(void *arg)
{
	static const char *const sni[] = { "sni", "d.test" };
	struct flood *fl = arg;
	char buf[128];
	int i;

	for (i = 0; i < fl->count; i++) {
		/* every 10th asks for a max-size ACK, so replies outgrow socket buffers */
		size_t len = add_notify(buf, sizeof(buf), 7, (uint64_t)i, i % 10 ? "acme-sni" : "big",
					1, sni);

		cl_send(fl->fd, buf, len);
	}
	return NULL;
}

/* A peer that writes far more than it reads stalls, is not buffered without
 * bound, and gets every ACK once it reads. */
static void test_backpressure(void **state)
{
	struct fixture *fx = fx_start();
	struct flood fl;
	pthread_t th;
	int i, small = 4096;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 5 };

	/* a tiny receive window so the agent's own buffers fill */
	fl.fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fl.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sin.sin_port = htons((uint16_t)fx->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fl.fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	setsockopt(fl.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fl.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	fl.count = 5000;
	cl_hello(fl.fd, 16380, NULL);
	assert_int_equal(pthread_create(&th, NULL, flood_main, &fl), 0);
	usleep(200000); /* let buffers fill both ways before reading */
	for (i = 0; i < fl.count; i++) {
		unsigned n = cl_read_ack(fl.fd, 7, (uint64_t)i, NULL, 0);

		if (i % 10)
			assert_int_equal(n, 1);
		else
			assert_true(n > 100);
	}
	pthread_join(th, NULL);
	close(fl.fd);
	fx_stop(fx);
	assert_true(fx->stats.acks == 5000);
	free(fx);
}

/* At max_conns the agent stops accepting; a closed connection lets the
 * waiting one in. */
static void test_max_conns(void **state)
{
	struct fixture *fx = fx_start_conf("127.0.0.1:0", 0, 0, 2);
	struct timeval quick = { .tv_usec = 300000 }, slow = { .tv_sec = 3 };
	char buf[256], c;
	int a = cl_connect(fx->port), b = cl_connect(fx->port), d, n;

	cl_hello(a, 16380, NULL);
	cl_hello(b, 16380, NULL);
	d = cl_connect(fx->port); /* sits in the backlog */
	n = spop_encode_haproxy_hello(buf, sizeof(buf), "2.0", 16380, "pipelining", 0, NULL);
	cl_send(d, buf, (size_t)n);
	setsockopt(d, SOL_SOCKET, SO_RCVTIMEO, &quick, sizeof(quick));
	assert_int_equal(recv(d, &c, 1, MSG_PEEK), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	setsockopt(d, SOL_SOCKET, SO_RCVTIMEO, &slow, sizeof(slow));
	close(a);
	{
		struct spop_frame f;

		assert_int_equal(cl_read_frame(d, buf, sizeof(buf), &f), 0);
		assert_int_equal(f.type, SPOP_FRM_AGENT_HELLO);
	}
	close(b);
	close(d);
	fx_stop(fx);
	assert_true(fx->stats.conns_total == 3);
	free(fx);
}

static void test_unix_and_bad_listen(void **state)
{
	char dir[] = "/tmp/test_spoa.XXXXXX", path[128], listen[160], err[256];
	struct spoa_server_conf conf = { .handlers = handlers };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 3 };
	struct fixture *fx;
	struct ev_loop *loop;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/spoa.sock", dir);
	snprintf(listen, sizeof(listen), "unix:%s", path);
	fx = fx_start_conf(listen, 0, 0, 0);
	assert_int_equal(fx->port, 0);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(cl_hello(fd, 16380, NULL), 16380);
	close(fd);
	fx_stop(fx);
	assert_int_equal(access(path, F_OK), -1); /* unlinked by free */
	free(fx);
	rmdir(dir);

	loop = ev_loop_new(EVFLAG_AUTO);
	{
		static const char *const bad[] = { "127.0.0.1", "127.0.0.1:99999", "::1:80",
						   "[::1]80", "unix:", "127.0.0.1:x", "" };
		size_t i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			conf.listen = bad[i];
			err[0] = '\0';
			assert_null(spoa_server_new(loop, &conf, err, sizeof(err)));
			assert_true(strlen(err) > 0);
		}
		conf.listen = "127.0.0.1:0";
		conf.max_frame_size = 100;
		assert_null(spoa_server_new(loop, &conf, err, sizeof(err)));
	}
	/* IPv6 loopback, when the host has it */
	conf.listen = "[::1]:0";
	conf.max_frame_size = 0;
	{
		struct spoa_server *srv = spoa_server_new(loop, &conf, err, sizeof(err));

		if (srv)
			assert_true(spoa_server_port(srv) > 0);
		spoa_server_free(srv);
	}
	spoa_server_free(NULL);
	ev_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_and_disconnect),
		cmocka_unit_test(test_pipelined_100),
		cmocka_unit_test(test_big_reply_bounded),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_healthcheck),
		cmocka_unit_test(test_two_connections_interleaved),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_max_conns),
		cmocka_unit_test(test_unix_and_bad_listen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
