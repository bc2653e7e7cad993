/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the storage backend unit tests that start their own server
 * (test_storage_redis, test_storage_consul): a free loopback port, the
 * monotonic clock, running a private loop until a counter is reached, the
 * change feed's calls made synchronous, and the change feed's behaviour table
 * (the backends that keep one). Include after cmocka.h and
 * tests/tools/storage_sync.h. */
#ifndef TESTS_STORAGE_FIXTURE_H
#define TESTS_STORAGE_FIXTURE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "storage/storage.h"

/* A TCP port free on 127.0.0.1 right now (the kernel's pick), or -1. */
static inline int sfx_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static inline double sfx_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline void sfx_cb_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* Runs <loop> until *<flag> reaches <want> or <secs> pass (a 10 ms tick keeps
 * it turning). 1 when the flag got there. */
static inline int sfx_run_until(struct ev_loop *loop, const int *flag, int want, double secs)
{
	double end = sfx_now_s() + secs;
	ev_timer tick;

	ev_timer_init(&tick, sfx_cb_tick, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	while (*flag < want && sfx_now_s() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return *flag >= want;
}

static inline void sfx_run_for(struct ev_loop *loop, double secs)
{
	int never = 0;

	sfx_run_until(loop, &never, 1, secs);
}

/* storage_feed_since() waited for; a failure fails the test. */
static inline int sfx_feed_since(struct storage *st, const char *feed, uint64_t since,
				 struct storage_res *res)
{
	char err[512];
	int rc = storage_wait(st, storage_feed_since(st, feed, since, NULL, NULL), res, err,
			      sizeof(err));

	if (rc != 0)
		fail_msg("feed_since %s %llu: %s", feed, (unsigned long long)since, err);
	return rc;
}

/* storage_feed_put() waited for: the member's new generation; a failure
 * fails the test. */
static inline uint64_t sfx_feed_put(struct storage *st, const char *feed, const char *member,
				    const char *version)
{
	struct storage_res res;
	char err[512];

	if (storage_wait(st, storage_feed_put(st, feed, member, version, NULL, NULL), &res, err,
			 sizeof(err)) != 0)
		fail_msg("feed_put %s %s: %s", feed, member, err);
	return res.gen;
}

/* The change feed's behaviour on an empty feed "certs" of <st>: generations
 * count from 1, a change moves the member to the end of the log, a NULL
 * version is a removal, STORAGE_FEED_NOW and an up-to-date generation give
 * nothing, an unknown feed is generation 0. Leaves "certs" at generation 4:
 * a.test "v3", b.test removed. */
static inline void sfx_feed_behaviour(struct storage *st)
{
	struct storage_res res;

	assert_int_equal(sfx_feed_put(st, "certs", "a.test", "v1"), 1);
	assert_int_equal(sfx_feed_put(st, "certs", "b.test", "v2"), 2);
	sfx_feed_since(st, "certs", 0, &res);
	assert_int_equal(res.n, 2);
	assert_string_equal(res.keys[0], "a.test");
	assert_string_equal(res.vals[0], "v1");
	assert_string_equal(res.keys[1], "b.test");
	assert_string_equal(res.vals[1], "v2");
	assert_int_equal(res.gen, 2);
	assert_int_equal(res.more, 0);
	storage_res_clear(&res);
	/* a change moves the member to the end of the log */
	assert_int_equal(sfx_feed_put(st, "certs", "a.test", "v3"), 3);
	sfx_feed_since(st, "certs", 2, &res);
	assert_int_equal(res.n, 1);
	assert_string_equal(res.keys[0], "a.test");
	assert_string_equal(res.vals[0], "v3");
	assert_int_equal(res.gen, 3);
	storage_res_clear(&res);
	/* removal: a NULL version */
	assert_int_equal(sfx_feed_put(st, "certs", "b.test", NULL), 4);
	sfx_feed_since(st, "certs", 3, &res);
	assert_int_equal(res.n, 1);
	assert_string_equal(res.keys[0], "b.test");
	assert_null(res.vals[0]);
	assert_int_equal(res.gen, 4);
	storage_res_clear(&res);
	sfx_feed_since(st, "certs", 0, &res);
	assert_int_equal(res.n, 2);
	assert_string_equal(res.keys[0], "a.test");
	assert_string_equal(res.keys[1], "b.test");
	assert_null(res.vals[1]);
	storage_res_clear(&res);
	/* up to date, or from now on: nothing; an unknown feed is generation 0 */
	sfx_feed_since(st, "certs", 4, &res);
	assert_int_equal(res.n, 0);
	assert_int_equal(res.gen, 4);
	assert_int_equal(res.more, 0);
	storage_res_clear(&res);
	sfx_feed_since(st, "certs", STORAGE_FEED_NOW, &res);
	assert_int_equal(res.n, 0);
	assert_int_equal(res.gen, 4);
	storage_res_clear(&res);
	sfx_feed_since(st, "renewals", 0, &res);
	assert_int_equal(res.n, 0);
	assert_int_equal(res.gen, 0);
	storage_res_clear(&res);
}


/* <n> random letters (a-z, so any backend stores them as text), malloc'd and
 * not NUL-terminated: the caller cleanses and frees them. */
static inline char *sfx_random_letters(size_t n)
{
	char *v = malloc(n);
	size_t i;

	assert_non_null(v);
	assert_int_equal(RAND_bytes((unsigned char *)v, (int)n), 1);
	for (i = 0; i < n; i++)
		v[i] = 'a' + (unsigned char)v[i] % 26;
	return v;
}

/* Stores <n> bytes <val> under <key>, reads them back and checks they are
 * the same; the copy read is cleansed and freed, <val> is the caller's. */
static inline void sfx_put_get_same(struct storage *st, const char *key, const char *val, size_t n)
{
	char *v = NULL, err[512];
	size_t len = 0;

	assert_int_equal(ss_put(st, key, val, n, 0, err, sizeof(err)), 0);
	assert_int_equal(ss_get(st, key, &v, &len, err, sizeof(err)), 0);
	assert_int_equal(len, n);
	assert_memory_equal(v, val, n);
	OPENSSL_cleanse(v, len);
	free(v);
}

#endif
