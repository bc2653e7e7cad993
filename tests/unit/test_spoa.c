/* SPDX-License-Identifier: Apache-2.0 */
/* SPOA server driven over loopback by a blocking client acting as HAProxy:
 * handshake, pipelining, limits, malformed input, back-pressure. Deferred
 * replies are in test_spoa_defer.c; the fixture in spoa_fixture.h. */
#include <errno.h>
#include <grp.h>
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
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <cmocka.h>
#include <ev.h>

#include "spoa/spoa.h"
#include "spoa/spop.h"
#include "spoa_fixture.h"

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
	/* the latency histogram counts ACKs, the unknown message's included */
	assert_true(fx->stats.lat_count == 101);
	{
		uint64_t sum = 0;
		int b;

		for (b = 0; b < SPOA_LAT_BUCKETS; b++)
			sum += fx->stats.lat_buckets[b];
		assert_true(sum == 101);
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
	/* the server sees a peer's close on a later loop turn: wait for it (3 s) */
	for (i = 0; i < 300 && fx_live(fx)->conns_current != 0; i++)
		usleep(10000);
	fx_stop(fx);
	assert_true(fx->stats.malformed == sizeof(cases) / sizeof(cases[0]) + 3);
	/* every connection above was accepted, and every one was closed */
	assert_int_equal(fx->stats.conns_total, sizeof(cases) / sizeof(cases[0]) + 3);
	assert_int_equal(fx->stats.conns_current, 0);
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

/* Issue 19 finding 8: under the unit's UMask=0077 a unix socket would be
 * 0700, unusable by HAProxy's user: spoa.socket_mode and socket_group set it;
 * a group that does not exist fails the start and leaves no socket. */
static void test_unix_perms(void **state)
{
	char dir[] = "/tmp/test_spoa.XXXXXX", path[128], listen[160], err[256];
	struct spoa_server_conf conf = { .handlers = handlers, .socket_mode = 0660 };
	struct spoa_server *srv;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct group *gr = getgrgid(65534);
	struct stat st;
	mode_t old = umask(077);

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/spoa.sock", dir);
	snprintf(listen, sizeof(listen), "unix:%s", path);
	conf.listen = listen;
	conf.socket_group = gr ? gr->gr_name : "65534";
	srv = spoa_server_new(loop, &conf, err, sizeof(err));
	if (!srv)
		fail_msg("%s", err);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(st.st_gid, 65534);
	spoa_server_free(srv);
	/* by number, another mode */
	conf.socket_group = "65534";
	conf.socket_mode = 0666;
	srv = spoa_server_new(loop, &conf, err, sizeof(err));
	assert_non_null(srv);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0666);
	assert_int_equal(st.st_gid, 65534);
	spoa_server_free(srv);
	/* without them the umask rules */
	conf.socket_group = NULL;
	conf.socket_mode = 0;
	srv = spoa_server_new(loop, &conf, err, sizeof(err));
	assert_non_null(srv);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	spoa_server_free(srv);
	conf.socket_group = "no-such-group-x";
	assert_null(spoa_server_new(loop, &conf, err, sizeof(err)));
	assert_string_equal(err, "spoa.socket_group: no-such-group-x: no such group");
	assert_int_equal(access(path, F_OK), -1);
	umask(old);
	rmdir(dir);
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
		cmocka_unit_test(test_unix_perms),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
