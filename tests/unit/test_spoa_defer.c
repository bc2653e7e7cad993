/* SPDX-License-Identifier: Apache-2.0 */
/* Deferred replies of the SPOA server (spoa_reply_defer() and friends),
 * driven over loopback by a blocking client acting as HAProxy; deferrals are
 * completed on the server's loop thread at the test's request (fx_cmd). */
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
#include <cmocka.h>
#include <ev.h>

#include "spoa/spoa.h"
#include "spoa/spop.h"
#include "spoa_fixture.h"

/* ---- deferred replies -------------------------------------------------- */

struct ack_info {
	uint64_t sid, fid;
	unsigned actions;
	char keyauth[64];
	int pre, after, dflt;
	size_t frame_len;
};

/* Reads one ACK, whatever its ids, and sums up its actions. */
static void cl_read_ack_info(int fd, struct ack_info *ai)
{
	char buf[20000];
	struct spop_frame f;
	struct spop_action a;
	const char *p;
	int r;

	memset(ai, 0, sizeof(*ai));
	assert_int_equal(cl_read_frame(fd, buf, sizeof(buf), &f), 0);
	assert_int_equal(f.type, SPOP_FRM_ACK);
	assert_true(f.flags & SPOP_FRAME_FL_FIN);
	ai->sid = f.stream_id;
	ai->fid = f.frame_id;
	ai->frame_len = f.payload_len + (size_t)(f.payload - (buf + 4));
	p = f.payload;
	while ((r = spop_action_next(&p, f.payload + f.payload_len, &a)) == 1) {
		ai->actions++;
		if (a.type != SPOP_ACT_SET_VAR)
			continue;
		if (a.name_len == 7 && !memcmp(a.name, "keyauth", 7) && a.val.type == SPOP_T_STR)
			snprintf(ai->keyauth, sizeof(ai->keyauth), "%.*s", (int)a.val.u.s.len,
				 a.val.u.s.ptr);
		else if (a.name_len == 3 && !memcmp(a.name, "pre", 3))
			ai->pre++;
		else if (a.name_len == 5 && !memcmp(a.name, "after", 5))
			ai->after++;
		else if (a.name_len == 3 && !memcmp(a.name, "ack", 3))
			ai->dflt++;
	}
	assert_int_equal(r, 0);
}

/* Asserts nothing arrives on <fd> within <ms>. */
static void cl_expect_silence(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&pfd, 1, ms), 0);
}

/* A NOTIFY of <n> messages without args. */
static size_t add_notify_msgs(char *buf, size_t cap, uint64_t sid, uint64_t fid, unsigned n,
			      const char *const *names)
{
	char *p = buf, *start;
	unsigned i;

	assert_int_equal(spop_frame_begin(&p, buf + cap, &start, SPOP_FRM_NOTIFY, SPOP_FRAME_FL_FIN,
					  sid, fid), 0);
	for (i = 0; i < n; i++)
		assert_int_equal(spop_encode_message(&p, buf + cap, names[i], strlen(names[i]), 0), 0);
	return spop_frame_end(start, p);
}

/* Polls the live counters until <field> reaches <want> (3 s at most). */
#define FX_WAIT_STAT(fx, field, want)                                              \
	do {                                                                       \
		int tries_;                                                        \
		for (tries_ = 0; tries_ < 300 && fx_live(fx)->field != (want); tries_++) \
			usleep(10000);                                             \
		assert_true(fx->live.field == (want));                             \
	} while (0)

/* A deferred ACK goes out when done, with the actions added before, during
 * and after the deferral, and the ids of its NOTIFY. */
static void test_defer_later(void **state)
{
	struct fixture *fx = fx_start();
	struct ack_info ai;
	char buf[256];
	size_t len;
	int fd = cl_connect(fx->port);

	cl_hello(fd, 16380, NULL);
	len = add_notify(buf, sizeof(buf), 3, 7, "defer", 0, NULL);
	cl_send(fd, buf, len);
	cl_expect_silence(fd, 150);
	assert_true(fx_live(fx)->deferred_current == 1);
	assert_true(fx->live.deferred_total == 1);
	assert_true(fx->live.acks == 0);
	assert_true(fx_done(fx, 0, "later"));
	cl_read_ack_info(fd, &ai);
	assert_true(ai.sid == 3 && ai.fid == 7);
	assert_int_equal(ai.actions, 3);
	assert_int_equal(ai.pre, 1);
	assert_int_equal(ai.after, 1);
	assert_string_equal(ai.keyauth, "later");
	assert_true(fx_live(fx)->deferred_current == 0);
	assert_true(fx->live.acks == 1);
	assert_true(fx->live.lat_count == 1);
	assert_true(fx->live.deferred_timeouts == 0);
	close(fd);
	fx_stop(fx);
	assert_int_equal(fx->loop_errors, 0);
	free(fx);
}

/* ACKs go back in any order: a frame answered at once does not wait for a
 * deferred one before it; a frame of several messages waits for all of its
 * deferrals. */
static void test_defer_out_of_order(void **state)
{
	static const char *const sni[] = { "sni", "a.test" };
	static const char *const multi[] = { "defer", "acme-sni", "defer" };
	struct fixture *fx = fx_start();
	struct ack_info ai;
	char buf[512];
	size_t len;
	int fd = cl_connect(fx->port);

	cl_hello(fd, 16380, NULL);
	len = add_notify(buf, sizeof(buf), 1, 1, "defer", 0, NULL);
	len += add_notify(buf + len, sizeof(buf) - len, 2, 2, "acme-sni", 1, sni);
	len += add_notify_msgs(buf + len, sizeof(buf) - len, 3, 3, 3, multi);
	cl_send(fd, buf, len); /* one write */
	cl_read_ack_info(fd, &ai);
	assert_true(ai.sid == 2 && ai.fid == 2);
	assert_int_equal(ai.actions, 1);
	cl_expect_silence(fd, 100);
	assert_true(fx_live(fx)->deferred_current == 2);
	assert_int_equal(fx->nheld, 3);
	/* the two messages of frame 3 share its deferred ACK */
	assert_ptr_equal(fx->held[1], fx->held[2]);
	assert_true(fx_done(fx, 1, NULL));
	cl_expect_silence(fd, 100);
	assert_true(fx_done(fx, 0, "one"));
	cl_read_ack_info(fd, &ai);
	assert_true(ai.sid == 1 && ai.fid == 1);
	assert_string_equal(ai.keyauth, "one");
	assert_true(fx_done(fx, 2, "three"));
	cl_read_ack_info(fd, &ai);
	assert_true(ai.sid == 3 && ai.fid == 3);
	assert_string_equal(ai.keyauth, "three");
	assert_int_equal(ai.pre, 2);
	assert_int_equal(ai.after, 2);
	assert_int_equal(ai.actions, 5); /* 2 x (pre, after), keyauth (no sni: no seen) */
	close(fd);
	fx_stop(fx);
	assert_true(fx->stats.deferred_total == 2);
	assert_true(fx->stats.acks == 3);
	assert_true(fx->stats.messages == 5);
	assert_int_equal(fx->loop_errors, 0);
	free(fx);
}

/* defer_timeout sends the ACK with what it has (the default action when it
 * has nothing); a later done() only frees. */
static void test_defer_timeout(void **state)
{
	static const char *const sni[] = { "sni", "a.test" };
	struct spoa_server_conf conf = { .listen = "127.0.0.1:0", .defer_timeout = 0.2 };
	struct fixture *fx = fx_start_with(conf);
	struct ack_info ai[2];
	struct timespec t0, t1;
	char buf[256];
	size_t len;
	int fd = cl_connect(fx->port), i;

	cl_hello(fd, 16380, NULL);
	len = add_notify(buf, sizeof(buf), 5, 9, "defer", 0, NULL);
	len += add_notify(buf + len, sizeof(buf) - len, 6, 10, "defer-bare", 0, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cl_send(fd, buf, len);
	cl_read_ack_info(fd, &ai[0]);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 150);
	cl_read_ack_info(fd, &ai[1]);
	/* both timers fire together: either order */
	i = ai[0].fid == 9 ? 0 : 1;
	assert_true(ai[i].sid == 5 && ai[i].fid == 9);
	assert_true(ai[i].actions == 2 && ai[i].pre == 1 && ai[i].after == 1);
	assert_true(ai[1 - i].sid == 6 && ai[1 - i].fid == 10);
	assert_true(ai[1 - i].actions == 1 && ai[1 - i].dflt == 1);
	assert_true(fx_live(fx)->deferred_timeouts == 2);
	assert_true(fx->live.deferred_current == 0);
	/* too late to add anything: done() only frees */
	assert_false(fx_done(fx, 0, "late"));
	assert_false(fx_done(fx, 1, "late"));
	/* the connection goes on */
	len = add_notify(buf, sizeof(buf), 7, 11, "acme-sni", 1, sni);
	cl_send(fd, buf, len);
	assert_int_equal(cl_read_ack(fd, 7, 11, NULL, 0), 1);
	close(fd);
	fx_stop(fx);
	assert_int_equal(fx->loop_errors, 0);
	free(fx);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* spoa_deferred_set_timeout(): one ACK waits longer than the server's
 * defer_timeout (a held ClientHello beside http-01 look-ups), the others keep
 * the server's. */
static void test_defer_timeout_per_reply(void **state)
{
	struct spoa_server_conf conf = { .listen = "127.0.0.1:0", .defer_timeout = 0.15 };
	struct fixture *fx = fx_start_with(conf);
	struct ack_info ai;
	struct timespec t0;
	char buf[256];
	size_t len;
	long ms;
	int fd = cl_connect(fx->port);

	cl_hello(fd, 16380, NULL);
	len = add_notify(buf, sizeof(buf), 1, 1, "defer-long", 0, NULL);
	len += add_notify(buf + len, sizeof(buf) - len, 2, 2, "defer-bare", 0, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cl_send(fd, buf, len);
	cl_read_ack_info(fd, &ai);
	ms = ms_since(&t0);
	assert_true(ai.sid == 2 && ai.fid == 2);
	assert_true(ms >= 100 && ms < 450);
	cl_read_ack_info(fd, &ai);
	ms = ms_since(&t0);
	assert_true(ai.sid == 1 && ai.fid == 1);
	assert_true(ai.dflt == 1);
	assert_true(ms >= 550);
	assert_true(fx_live(fx)->deferred_timeouts == 2);
	assert_false(fx_done(fx, 0, "late"));
	assert_false(fx_done(fx, 1, "late"));
	close(fd);
	fx_stop(fx);
	assert_int_equal(fx->loop_errors, 0);
	free(fx);
}

/* The connection closes while an ACK is deferred: the handle stays valid,
 * its builder is gone, done() frees (ASan checks both). */
static void test_defer_conn_closed(void **state)
{
	struct fixture *fx = fx_start();
	char buf[256];
	size_t len;
	int fd = cl_connect(fx->port);

	cl_hello(fd, 16380, NULL);
	len = add_notify(buf, sizeof(buf), 1, 1, "defer", 0, NULL);
	len += add_notify(buf + len, sizeof(buf) - len, 1, 2, "defer", 0, NULL);
	cl_send(fd, buf, len);
	FX_WAIT_STAT(fx, deferred_current, 2);
	close(fd);
	FX_WAIT_STAT(fx, conns_current, 0);
	assert_true(fx->live.deferred_current == 0);
	assert_false(fx_done(fx, 0, "gone"));
	assert_false(fx_done(fx, 1, "gone"));
	fx_stop(fx);
	assert_true(fx->stats.acks == 0);
	assert_int_equal(fx->loop_errors, 0);
	free(fx);
}

/* At max_deferred_per_conn, then at max_deferred, spoa_reply_defer() says
 * NULL and the handler answers at once. */
static void test_defer_bounds(void **state)
{
	struct spoa_server_conf conf = {
		.listen = "127.0.0.1:0", .max_deferred_per_conn = 2, .max_deferred = 3,
	};
	struct fixture *fx = fx_start_with(conf);
	struct ack_info ai;
	char buf[512];
	size_t len = 0;
	int a = cl_connect(fx->port), b = cl_connect(fx->port), i;

	cl_hello(a, 16380, NULL);
	cl_hello(b, 16380, NULL);
	for (i = 1; i <= 3; i++)
		len += add_notify(buf + len, sizeof(buf) - len, 1, (uint64_t)i, "defer", 0, NULL);
	cl_send(a, buf, len);
	cl_read_ack_info(a, &ai);
	assert_true(ai.fid == 3);
	assert_string_equal(ai.keyauth, "now");
	assert_true(fx_live(fx)->deferred_refused == 1);
	assert_true(fx->live.deferred_current == 2);
	len = add_notify(buf, sizeof(buf), 2, 1, "defer", 0, NULL);
	len += add_notify(buf + len, sizeof(buf) - len, 2, 2, "defer", 0, NULL);
	cl_send(b, buf, len);
	cl_read_ack_info(b, &ai);
	assert_true(ai.sid == 2 && ai.fid == 2);
	assert_string_equal(ai.keyauth, "now");
	assert_true(fx_live(fx)->deferred_refused == 2);
	assert_true(fx->live.deferred_current == 3);
	assert_int_equal(fx->nheld, 3);
	for (i = 0; i < 3; i++)
		assert_true(fx_done(fx, i, "later"));
	cl_read_ack_info(a, &ai);
	assert_true(ai.fid == 1 || ai.fid == 2);
	assert_string_equal(ai.keyauth, "later");
	cl_read_ack_info(a, &ai);
	assert_true(ai.fid == 1 || ai.fid == 2);
	cl_read_ack_info(b, &ai);
	assert_true(ai.sid == 2 && ai.fid == 1);
	assert_string_equal(ai.keyauth, "later");
	close(a);
	close(b);
	fx_stop(fx);
	assert_true(fx->stats.deferred_current == 0);
	assert_true(fx->stats.deferred_total == 3);
	assert_true(fx->stats.acks == 5);
	assert_int_equal(fx->loop_errors, 0);
	free(fx);
}

/* spoa_server_free() with a handle outstanding: the handle stays valid,
 * detached, and done() after the free only frees it. */
static void test_defer_server_freed(void **state)
{
	struct fixture *fx = fx_start();
	char buf[256];
	size_t len;
	int fd = cl_connect(fx->port);

	cl_hello(fd, 16380, NULL);
	len = add_notify(buf, sizeof(buf), 1, 1, "defer", 0, NULL);
	cl_send(fd, buf, len);
	FX_WAIT_STAT(fx, deferred_current, 1);
	fx_stop(fx); /* the loop thread is gone: the handle is ours alone */
	assert_int_equal(fx->nheld, 1);
	assert_null(spoa_deferred_reply(fx->held[0]));
	spoa_deferred_done(fx->held[0]);
	spoa_deferred_done(NULL);
	cl_expect_close(fd);
	close(fd);
	assert_true(fx->stats.acks == 0);
	free(fx);
}

/* done() inside the handler that deferred answers at once; done() inside a
 * handler of another frame sends that ACK from the loop right after. */
static void test_defer_done_in_handler(void **state)
{
	struct fixture *fx = fx_start();
	struct ack_info ai[2];
	char buf[256];
	size_t len;
	int fd = cl_connect(fx->port), i;

	cl_hello(fd, 16380, NULL);
	len = add_notify(buf, sizeof(buf), 1, 1, "defer-sync", 0, NULL);
	cl_send(fd, buf, len);
	cl_read_ack_info(fd, &ai[0]);
	assert_true(ai[0].fid == 1);
	assert_string_equal(ai[0].keyauth, "sync");
	assert_true(fx_live(fx)->deferred_total == 1);
	assert_true(fx->live.deferred_current == 0);
	len = add_notify(buf, sizeof(buf), 1, 2, "defer", 0, NULL);
	len += add_notify(buf + len, sizeof(buf) - len, 1, 3, "release", 0, NULL);
	cl_send(fd, buf, len);
	cl_read_ack_info(fd, &ai[0]);
	cl_read_ack_info(fd, &ai[1]);
	i = ai[0].fid == 2 ? 0 : 1;
	assert_true(ai[i].fid == 2);
	assert_string_equal(ai[i].keyauth, "released");
	assert_true(ai[1 - i].fid == 3 && ai[1 - i].actions == 1);
	close(fd);
	fx_stop(fx);
	assert_true(fx->stats.acks == 3);
	assert_true(fx->stats.deferred_current == 0);
	assert_int_equal(fx->loop_errors, 0);
	free(fx);
}

/* A deferred ACK grows past its first buffer up to the negotiated
 * max-frame-size, and no further. */
static void test_defer_grows_bounded(void **state)
{
	struct fixture *fx = fx_start();
	struct ack_info ai;
	char buf[256];
	size_t len;
	int fd = cl_connect(fx->port);

	assert_int_equal(cl_hello(fd, 1024, NULL), 1024);
	len = add_notify(buf, sizeof(buf), 1, 1, "defer", 0, NULL);
	cl_send(fd, buf, len);
	FX_WAIT_STAT(fx, deferred_current, 1);
	fx_cmd(fx, FX_CMD_DONE, 0, NULL, 1);
	assert_false(fx->cmd_reply_null);
	assert_true(fx->cmd_filled > 50 && fx->cmd_filled < 200);
	cl_read_ack_info(fd, &ai);
	assert_true(ai.frame_len <= 1024);
	assert_true(ai.frame_len > 900);
	assert_int_equal(ai.actions, 2 + (unsigned)fx->cmd_filled);
	close(fd);
	fx_stop(fx);
	assert_int_equal(fx->loop_errors, 0);
	free(fx);
}

struct quiet_flood {
	int fd;
	int count;
};

/* Sends <count> "big" NOTIFYs (frame-id 1..count), stopping at the first
 * error (the agent may go away). */
static void *quiet_flood_main(void *arg)
{
	struct quiet_flood *fl = arg;
	char buf[128];
	int i;

	for (i = 1; i <= fl->count; i++) {
		size_t len = add_notify(buf, sizeof(buf), 9, (uint64_t)i, "big", 0, NULL);
		const char *p = buf;

		while (len) {
			ssize_t n = send(fl->fd, p, len, MSG_NOSIGNAL);

			if (n <= 0)
				return NULL;
			p += n;
			len -= (size_t)n;
		}
	}
	return NULL;
}

/* Connects with a tiny receive window, defers two ACKs, then floods
 * max-size ACKs without reading until the agent stalls. */
static int stalled_conn(struct fixture *fx, struct quiet_flood *fl, pthread_t *th)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 5 };
	char buf[128];
	size_t len;
	uint64_t prev = 0, base = fx_live(fx)->notify_frames;
	int small = 4096, stable = 0;

	fl->fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fl->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	sin.sin_port = htons((uint16_t)fx->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fl->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	setsockopt(fl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	cl_hello(fl->fd, 16380, NULL);
	len = add_notify(buf, sizeof(buf), 8, 100000, "defer", 0, NULL);
	len += add_notify(buf + len, sizeof(buf) - len, 8, 100001, "defer", 0, NULL);
	cl_send(fl->fd, buf, len);
	fl->count = 1500;
	assert_int_equal(pthread_create(th, NULL, quiet_flood_main, fl), 0);
	while (stable < 3) {
		usleep(50000);
		stable = fx_live(fx)->notify_frames == prev ? stable + 1 : 0;
		prev = fx->live.notify_frames;
	}
	if (!(prev - base > 2 && prev - base < 2 + (uint64_t)fl->count))
		fail_msg("no stall: %llu frames handled", (unsigned long long)(prev - base));
	return fl->fd;
}

/* Deferred ACKs completed while the peer does not read wait in their own
 * buffers (the write buffer, with room for one max-size frame at most, is not
 * grown) and go out once the peer reads. */
static void test_defer_backpressure(void **state)
{
	struct fixture *fx = fx_start();
	struct quiet_flood fl;
	struct ack_info ai;
	pthread_t th;
	int fd, i, found = 0;

	fd = stalled_conn(fx, &fl, &th);
	fx_cmd(fx, FX_CMD_DONE, 0, "bp", 1);
	assert_true(fx->cmd_filled > 500);
	fx_cmd(fx, FX_CMD_DONE, 1, "bp", 1);
	for (i = 0; i < 2 + fl.count; i++) {
		cl_read_ack_info(fd, &ai);
		if (ai.fid >= 100000) {
			assert_true(ai.sid == 8);
			assert_string_equal(ai.keyauth, "bp");
			assert_int_equal(ai.actions, 3 + (unsigned)fx->cmd_filled);
			found++;
		}
	}
	assert_int_equal(found, 2);
	pthread_join(th, NULL);
	close(fd);
	FX_WAIT_STAT(fx, conns_current, 0);
	assert_true(fx->live.deferred_current == 0);
	fx_stop(fx);
	assert_int_equal(fx->loop_errors, 0);
	free(fx);
}

/* A deferred ACK completed but not written yet when the server is freed
 * goes with its connection (ASan: no leak, no use after free). */
static void test_defer_ready_at_free(void **state)
{
	struct fixture *fx = fx_start();
	struct spoa_reply *r;
	char buf[256];
	size_t len;
	int fd = cl_connect(fx->port);

	cl_hello(fd, 16380, NULL);
	len = add_notify(buf, sizeof(buf), 1, 1, "defer", 0, NULL);
	len += add_notify(buf + len, sizeof(buf) - len, 1, 2, "defer", 0, NULL);
	cl_send(fd, buf, len);
	FX_WAIT_STAT(fx, deferred_current, 2);
	fx_halt(fx); /* no loop turn writes it from here on */
	r = spoa_deferred_reply(fx->held[0]);
	assert_non_null(r);
	assert_int_equal(spoa_reply_set_str(r, SPOP_SCOPE_TXN, "keyauth", "x", 1), 0);
	spoa_deferred_done(fx->held[0]); /* ready, queued for the next turn */
	assert_null(spoa_deferred_reply(fx->held[0]));
	fx_free(fx);
	assert_true(fx->stats.deferred_current == 2);
	/* the other one is still held: valid, detached */
	assert_null(spoa_deferred_reply(fx->held[1]));
	spoa_deferred_done(fx->held[1]);
	cl_expect_close(fd);
	close(fd);
	free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defer_later),
		cmocka_unit_test(test_defer_out_of_order),
		cmocka_unit_test(test_defer_timeout),
		cmocka_unit_test(test_defer_timeout_per_reply),
		cmocka_unit_test(test_defer_conn_closed),
		cmocka_unit_test(test_defer_bounds),
		cmocka_unit_test(test_defer_server_freed),
		cmocka_unit_test(test_defer_done_in_handler),
		cmocka_unit_test(test_defer_grows_bounded),
		cmocka_unit_test(test_defer_backpressure),
		cmocka_unit_test(test_defer_ready_at_free),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
