/* SPDX-License-Identifier: Apache-2.0 */
/* The asynchronous storage front (storage/storage.c) over the file and shm
 * backends: a completion never runs inside the call that started it, chains
 * of completions never recurse, operations on one key complete in submission
 * order across worker threads, cancel, invalid input, deadlines, close with
 * work in flight, storage_wait and storage_inflight.
 *
 * The slow-disk cases run in a second process of this binary, re-executed
 * with tests/shim/slow_fsync.c preloaded ($(BUILD)/tools/slow_fsync.so,
 * SLOW_FSYNC_MS): a deadline shorter than an fsync answers on time, the loop
 * keeps a 10 ms cadence while every fsync takes SLOW_MS, close finishes the
 * writes in flight. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "lib/workq.h"
#include "storage/storage.h"
#include "tests/tools/storage_sync.h"

#define SLOW_MS		300	/* each fsync in the slow process */
#define SLOW_PREFIX	"/tmp/test_storage_async."

static struct ev_loop *loop;
static char dir[256];
static int in_call;		/* set around every storage_*() call that takes a callback */

/* What one callback saw. */
struct rec {
	int calls;
	int reentrant;		/* ran inside the call that started it */
	int rc;
	char *val;
	size_t len;
	size_t n;
	char err[STORAGE_ERR_MAX];
	char key[STORAGE_KEY_MAX + 1];	/* res->key */
	double at;		/* monotonic seconds */
	int seq;		/* order among all callbacks */
};

static int seq_counter;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void cb_rec(void *arg, struct storage_res *res)
{
	struct rec *r = arg;

	r->calls++;
	r->reentrant |= in_call;
	r->rc = res->rc;
	r->at = now_s();
	r->seq = ++seq_counter;
	r->n = res->n;
	snprintf(r->err, sizeof(r->err), "%s", res->err ? res->err : "");
	snprintf(r->key, sizeof(r->key), "%s", res->key ? res->key : "(null)");
	if (res->val) {
		free(r->val);
		r->val = res->val;	/* ours now */
		r->len = res->len;
		res->val = NULL;
	}
}

static void rec_clear(struct rec *r)
{
	free(r->val);
	memset(r, 0, sizeof(*r));
}

static void cb_tick(struct ev_loop *l, ev_timer *w, int revents)
{
}

/* Runs the loop until <st> has nothing in flight, or <secs> pass. */
static int drain(struct storage *st, double secs)
{
	double end = now_s() + secs;
	ev_timer tick;

	ev_timer_init(&tick, cb_tick, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	while (storage_inflight(st) > 0 && now_s() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return storage_inflight(st) == 0;
}

/* Runs the loop until *<flag> >= <want>, or <secs> pass. */
static int run_until(const int *flag, int want, double secs)
{
	double end = now_s() + secs;
	ev_timer tick;

	ev_timer_init(&tick, cb_tick, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	while (*flag < want && now_s() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return *flag >= want;
}

static struct storage *open_file(unsigned threads, long timeout_ms)
{
	struct storage_conf conf = { .file_path = dir, .file_threads = threads,
				     .timeout_ms = timeout_ms };
	char err[512];
	struct storage *st = storage_open("file", &conf, loop, err, sizeof(err));

	if (st == NULL)
		fail_msg("open file %s: %s", dir, err);
	return st;
}

static struct storage *open_shm(void)
{
	char err[512];
	struct storage *st = storage_open("shm", NULL, loop, err, sizeof(err));

	if (st == NULL)
		fail_msg("open shm: %s", err);
	return st;
}

static int setup_dir(void **state)
{
	snprintf(dir, sizeof(dir), SLOW_PREFIX "XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* Starts one operation of each kind on <st>, all on well-formed input. */
static void start_each_kind(struct storage *st, struct rec *r)
{
	in_call = 1;
	assert_non_null(storage_put(st, "k/a", "v", 1, 0, cb_rec, &r[0]));
	assert_non_null(storage_get(st, "k/a", cb_rec, &r[1]));
	assert_non_null(storage_list(st, "k/", cb_rec, &r[2]));
	assert_non_null(storage_lock(st, "issue/a", "me", 5000, cb_rec, &r[3]));
	assert_non_null(storage_unlock(st, "issue/a", "me", cb_rec, &r[4]));
	assert_non_null(storage_ping(st, cb_rec, &r[5]));
	assert_non_null(storage_publish(st, "events", "x", 1, cb_rec, &r[6]));
	assert_non_null(storage_feed_put(st, "certs", "a.test", "01", cb_rec, &r[7]));
	assert_non_null(storage_feed_since(st, "certs", 0, cb_rec, &r[8]));
	assert_non_null(storage_del(st, "k/a", cb_rec, &r[9]));
	in_call = 0;
}

static void check_each_kind(struct storage *st, struct rec *r)
{
	/* feed_since: file keeps a change feed, shm (one process) none */
	int feed = storage_has_feed(st);
	const int want[10] = { 0, 0, 0, 0, 0, 0, 0, 0, feed ? 0 : -1, 0 };
	int i;

	for (i = 0; i < 10; i++)
		assert_int_equal(r[i].calls, 0);	/* nothing before the loop runs */
	assert_int_equal(storage_inflight(st), 10);
	assert_true(drain(st, 5.));
	for (i = 0; i < 10; i++) {
		if (r[i].calls != 1 || r[i].reentrant || r[i].rc != want[i])
			fail_msg("op %d: calls=%d reentrant=%d rc=%d err=%s", i, r[i].calls,
				 r[i].reentrant, r[i].rc, r[i].err);
	}
	assert_int_equal(r[1].len, 1);
	assert_memory_equal(r[1].val, "v", 1);
	assert_string_equal(r[1].key, "k/a");
	assert_string_equal(r[3].key, "issue/a");
	assert_string_equal(r[7].key, "certs");
	assert_true(r[2].n <= 1);	/* "k/" is another key than "k/a": no order between them */
	if (feed)
		assert_int_equal(r[8].n, 1);	/* after the feed_put of the same feed */
	else
		assert_non_null(strstr(r[8].err, "not supported"));
	assert_true(r[0].seq < r[1].seq && r[1].seq < r[9].seq);	/* same key */
	for (i = 0; i < 10; i++)
		rec_clear(&r[i]);
}

/* Every kind of operation completes later, on the loop, never inside the call. */
static void a_never_inside_the_call(void **state)
{
	struct storage *st;
	struct rec r[10] = { { 0 } };

	st = open_shm();	/* answers at once: delivered on the next turn */
	start_each_kind(st, r);
	check_each_kind(st, r);
	storage_close(st);
	st = open_file(4, 0);	/* worker threads */
	start_each_kind(st, r);
	check_each_kind(st, r);
	storage_close(st);
}

/* A callback that starts the next operation: a chain of completions runs one
 * per loop turn, never nested. */
struct chain {
	struct storage *st;
	int left, depth, max_depth, done, turns_at_end;
};

static int turns;

static void cb_prepare(struct ev_loop *l, ev_prepare *w, int revents)
{
	turns++;
}

static void cb_chain(void *arg, struct storage_res *res)
{
	struct chain *c = arg;

	c->depth++;
	if (c->depth > c->max_depth)
		c->max_depth = c->depth;
	assert_int_equal(res->rc, 1);	/* absent */
	if (--c->left > 0) {
		in_call = 1;
		storage_get(c->st, "chain/x", cb_chain, c);
		in_call = 0;
	} else {
		c->done = 1;
		c->turns_at_end = turns;
	}
	c->depth--;
}

static void a_chain_no_recursion(void **state)
{
	struct chain c = { .left = 500 };
	ev_prepare prep;
	int turns0;

	ev_prepare_init(&prep, cb_prepare);
	ev_prepare_start(loop, &prep);
	turns0 = turns;
	c.st = open_shm();
	storage_get(c.st, "chain/x", cb_chain, &c);
	assert_true(run_until(&c.done, 1, 10.));
	assert_int_equal(c.max_depth, 1);
	assert_true(c.turns_at_end - turns0 >= 500);
	ev_prepare_stop(loop, &prep);
	storage_close(c.st);
}

/* put a, put b, get -> b: one key's operations keep their order on the file
 * backend's worker threads, for many keys at once. */
#define ORDER_KEYS 24
#define ORDER_OPS  6

static void order_run(unsigned threads)
{
	struct storage *st = open_file(threads, 0);
	struct rec r[ORDER_KEYS][ORDER_OPS];
	char key[32], val[32];
	int k, i;

	memset(r, 0, sizeof(r));
	/* interleaved across keys, in order within each */
	for (i = 0; i < ORDER_OPS; i++) {
		for (k = 0; k < ORDER_KEYS; k++) {
			snprintf(key, sizeof(key), "order/%d", k);
			snprintf(val, sizeof(val), "v%d-%d", k, i);
			switch (i) {
			case 0: case 1: case 3:
				storage_put(st, key, val, strlen(val), 0, cb_rec, &r[k][i]);
				break;
			case 2: case 4:
				storage_get(st, key, cb_rec, &r[k][i]);
				break;
			default:
				storage_del(st, key, cb_rec, &r[k][i]);
				break;
			}
		}
	}
	assert_true(drain(st, 10.));
	for (k = 0; k < ORDER_KEYS; k++) {
		for (i = 0; i < ORDER_OPS; i++) {
			assert_int_equal(r[k][i].calls, 1);
			assert_int_equal(r[k][i].rc, 0);
			if (i > 0 && r[k][i].seq <= r[k][i - 1].seq)
				fail_msg("threads=%u key %d: op %d completed before op %d",
					 threads, k, i, i - 1);
		}
		snprintf(val, sizeof(val), "v%d-1", k);	/* get after put a, put b */
		assert_int_equal(r[k][2].len, strlen(val));
		assert_memory_equal(r[k][2].val, val, strlen(val));
		snprintf(val, sizeof(val), "v%d-3", k);
		assert_int_equal(r[k][4].len, strlen(val));
		assert_memory_equal(r[k][4].val, val, strlen(val));
		for (i = 0; i < ORDER_OPS; i++)
			rec_clear(&r[k][i]);
		snprintf(key, sizeof(key), "order/%d", k);
		storage_get(st, key, cb_rec, &r[k][0]);
	}
	assert_true(drain(st, 10.));
	for (k = 0; k < ORDER_KEYS; k++) {
		assert_int_equal(r[k][0].rc, 1);	/* the del came last */
		rec_clear(&r[k][0]);
	}
	storage_close(st);
}

static void a_order_per_key(void **state)
{
	order_run(1);
	order_run(4);
	order_run(16);
}

static void cb_cancel_other(void *arg, struct storage_res *res)
{
	struct storage_req **other = arg;

	storage_cancel(*other);
	*other = NULL;
}

/* storage_cancel: the callback is never called, the operation still runs. */
static void a_cancel(void **state)
{
	struct storage *st = open_file(4, 0);
	struct storage *shm = open_shm();
	struct storage_req *req, *second;
	struct rec r = { 0 }, r2 = { 0 };
	char err[256], *v = NULL;
	size_t len = 0;

	req = storage_put(st, "c/put", "kept", 4, 0, cb_rec, &r);
	storage_cancel(req);
	req = storage_get(st, "c/put", cb_rec, &r);
	storage_cancel(req);
	req = storage_get(st, "bad//key", cb_rec, &r);
	storage_cancel(req);
	storage_cancel(NULL);
	assert_true(drain(st, 5.));
	assert_int_equal(r.calls, 0);
	assert_int_equal(ss_get(st, "c/put", &v, &len, err, sizeof(err)), 0);
	assert_memory_equal(v, "kept", 4);
	free(v);
	/* cancelled by a callback delivered in the same turn, just before it */
	storage_get(shm, "c/x", cb_cancel_other, &second);
	second = storage_get(shm, "c/y", cb_rec, &r2);
	assert_true(drain(shm, 5.));
	assert_null(second);
	assert_int_equal(r2.calls, 0);
	/* a NULL callback: the operation runs, its result is dropped */
	assert_non_null(storage_put(shm, "c/z", "z", 1, 0, NULL, NULL));
	assert_non_null(storage_get(shm, "c/z", NULL, NULL));
	assert_true(drain(shm, 5.));
	assert_int_equal(ss_get(shm, "c/z", &v, &len, err, sizeof(err)), 0);
	free(v);
	storage_close(shm);
	storage_close(st);
}

/* Invalid input completes with rc -1 and a reason on the next turn, and never
 * reaches the backend. */
static void a_invalid_next_turn(void **state)
{
	struct storage *st = open_file(2, 0);
	struct rec r[12];
	struct stat sb;
	char path[512], big[STORAGE_KEY_MAX + 8];
	int i;

	memset(r, 0, sizeof(r));
	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	in_call = 1;
	storage_put(st, "a/../b", "x", 1, 0, cb_rec, &r[0]);
	storage_get(st, "../etc/passwd", cb_rec, &r[1]);
	storage_del(st, "", cb_rec, &r[2]);
	storage_list(st, "/certs", cb_rec, &r[3]);
	storage_lock(st, "issue/a", "has space", 1000, cb_rec, &r[4]);
	storage_lock(st, "issue/a", "me", 0, cb_rec, &r[5]);
	storage_unlock(st, "issue/..", "me", cb_rec, &r[6]);
	storage_publish(st, "bad channel", "x", 1, cb_rec, &r[7]);
	storage_feed_put(st, "certs", "a/b", "1", cb_rec, &r[8]);
	storage_feed_since(st, "", 0, cb_rec, &r[9]);
	storage_get(st, big, cb_rec, &r[10]);
	storage_put(st, "ok/key", NULL, 3, 0, cb_rec, &r[11]);
	in_call = 0;
	for (i = 0; i < 12; i++)
		assert_int_equal(r[i].calls, 0);
	ev_run(loop, EVRUN_NOWAIT);	/* one turn is enough: nothing went to a worker */
	for (i = 0; i < 12; i++) {
		if (r[i].calls != 1 || r[i].reentrant || r[i].rc != -1 || !r[i].err[0])
			fail_msg("case %d: calls=%d reentrant=%d rc=%d err=%s", i, r[i].calls,
				 r[i].reentrant, r[i].rc, r[i].err);
	}
	assert_non_null(strstr(r[0].err, "a/../b"));
	assert_string_equal(r[0].key, "a/../b");
	assert_non_null(strstr(r[1].err, "invalid key"));
	assert_non_null(strstr(r[4].err, "owner"));
	assert_non_null(strstr(r[5].err, "lease"));
	assert_non_null(strstr(r[7].err, "channel"));
	assert_non_null(strstr(r[8].err, "member"));
	assert_int_equal(storage_inflight(st), 0);
	snprintf(path, sizeof(path), "%s/ok", dir);
	assert_int_equal(stat(path, &sb), -1);
	storage_close(st);
}

/* storage_inflight counts what was started and not delivered; storage_wait
 * hands over the result, the callback of a waited request is not called. */
static void a_inflight_and_wait(void **state)
{
	struct storage *st = open_file(4, 0);
	struct storage_res res;
	struct rec r = { 0 };
	char err[256] = "";

	assert_int_equal(storage_inflight(st), 0);
	storage_put(st, "w/a", "alpha", 5, 0, cb_rec, &r);
	storage_put(st, "w/b", "beta", 4, 0, NULL, NULL);
	storage_get(st, "w/none", cb_rec, &r);
	assert_int_equal(storage_inflight(st), 3);
	assert_true(drain(st, 5.));
	assert_int_equal(r.calls, 2);
	assert_int_equal(storage_inflight(st), 0);

	assert_int_equal(storage_wait(st, storage_get(st, "w/a", cb_rec, &r), &res, err,
				      sizeof(err)), 0);
	assert_int_equal(res.len, 5);
	assert_memory_equal(res.val, "alpha", 6);	/* NUL-terminated */
	storage_res_clear(&res);
	assert_int_equal(storage_wait(st, storage_list(st, "w/", NULL, NULL), &res, err,
				      sizeof(err)), 0);
	assert_int_equal(res.n, 2);
	assert_string_equal(res.keys[0], "w/a");
	assert_string_equal(res.keys[1], "w/b");
	storage_list_free(res.keys, res.n);
	assert_int_equal(storage_wait(st, storage_get(st, "w/none", NULL, NULL), &res, err,
				      sizeof(err)), 1);
	assert_null(res.val);
	assert_int_equal(storage_wait(st, storage_get(st, "w//", NULL, NULL), &res, err,
				      sizeof(err)), -1);
	assert_non_null(strstr(err, "invalid key"));
	assert_int_equal(storage_wait(st, NULL, &res, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "out of memory"));
	assert_int_equal(storage_inflight(st), 0);
	ev_run(loop, EVRUN_NOWAIT);
	assert_int_equal(r.calls, 2);	/* the waited get's callback never ran */
	rec_clear(&r);
	storage_close(st);
}

/* storage_close with operations started: no callback runs, writes handed to
 * the workers are on disk afterwards. */
static void a_close_drops_callbacks(void **state)
{
	struct storage *st = open_file(4, 0);
	struct storage *shm = open_shm();
	struct rec r = { 0 };
	char key[32], err[256], *v = NULL;
	size_t len;
	int i;

	for (i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "close/%d", i);
		storage_put(st, key, key, strlen(key), 0, cb_rec, &r);
	}
	storage_get(st, "close/0", cb_rec, &r);
	storage_get(shm, "x", cb_rec, &r);
	storage_close(st);
	storage_close(shm);
	ev_run(loop, EVRUN_NOWAIT);
	assert_int_equal(r.calls, 0);
	st = open_file(4, 0);
	for (i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "close/%d", i);
		assert_int_equal(ss_get(st, key, &v, &len, err, sizeof(err)), 0);
		assert_memory_equal(v, key, strlen(key));
		free(v);
	}
	storage_close(st);
}

/* The deadline passes while the loop is not running, and the result arrives
 * in the same turn as the time-out: one answer, nothing freed twice (the
 * request must not be freed while still queued for delivery). */
static void a_deadline_and_result_same_turn(void **state)
{
	struct storage *st = open_file(2, 50);
	struct storage_res res;
	struct rec r = { 0 };
	char err[256] = "", *v = NULL;
	size_t len;
	int rc;

	struct storage_req *req;

	assert_int_equal(ss_put(st, "t/a", "x", 1, 0, err, sizeof(err)), 0);
	/* through storage_wait: the worker is done long before the loop runs */
	req = storage_get(st, "t/a", NULL, NULL);
	sleep_ms(200);
	rc = storage_wait(st, req, &res, err, sizeof(err));
	if (rc == 0)
		assert_memory_equal(res.val, "x", 1);
	else
		assert_non_null(strstr(err, "timed out"));
	storage_res_clear(&res);
	assert_true(drain(st, 5.));
	/* and through a callback */
	storage_get(st, "t/a", cb_rec, &r);
	sleep_ms(200);
	assert_true(drain(st, 5.));
	assert_int_equal(r.calls, 1);
	assert_true(r.rc == 0 || strstr(r.err, "timed out"));
	rec_clear(&r);
	assert_int_equal(ss_get(st, "t/a", &v, &len, err, sizeof(err)), 0);
	free(v);
	storage_close(st);
}

/* A deadline counts from the call, not from the loop's last wake-up: blocking
 * work between two calls (a tool, start-up) does not time out the next one. */
static void a_deadline_counts_from_the_call(void **state)
{
	struct storage *st = open_file(2, 200);
	char err[256] = "", *v = NULL;
	size_t len;

	assert_int_equal(ss_get(st, "d/none", &v, &len, err, sizeof(err)), 1);
	sleep_ms(400);	/* the loop's clock is now 400 ms behind */
	if (ss_get(st, "d/none", &v, &len, err, sizeof(err)) != 1)
		fail_msg("get after 400 ms away from the loop: %s", err);
	storage_close(st);
}

/* ---- slow disk: run in a child with the slow_fsync shim preloaded ---- */

/* The shim is there: an fsync takes SLOW_MS. */
static void s_shim_active(void **state)
{
	char path[512];
	double t0;
	int fd;

	snprintf(path, sizeof(path), "%s/probe", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	t0 = now_s();
	assert_int_equal(fsync(fd), 0);
	close(fd);
	if (now_s() - t0 < SLOW_MS * 0.9 / 1000.)
		fail_msg("fsync took %.0f ms: slow_fsync.so is not preloaded",
			 (now_s() - t0) * 1000.);
}

/* A put that blocks in fsync past the deadline gets rc -1 "timed out" on
 * time; so does a get queued behind it on the same key; their late results
 * are dropped (no second callback, nothing leaked). */
static void s_deadline(void **state)
{
	struct storage *st = open_file(2, 100);
	struct rec put = { 0 }, get = { 0 };
	char err[256] = "", *v = NULL;
	size_t len;
	double t0, t1;

	t0 = now_s();
	storage_put(st, "slow/a", "late", 4, 0, cb_rec, &put);
	storage_get(st, "slow/a", cb_rec, &get);
	assert_true(run_until(&get.calls, 1, 5.));
	assert_int_equal(put.calls, 1);
	assert_int_equal(put.rc, -1);
	assert_non_null(strstr(put.err, "timed out"));
	assert_non_null(strstr(put.err, "slow/a"));
	assert_string_equal(put.key, "slow/a");
	if (put.at - t0 < 0.09 || put.at - t0 > 0.25)
		fail_msg("put timed out after %.0f ms, want ~100", (put.at - t0) * 1000.);
	assert_int_equal(get.rc, -1);
	assert_non_null(strstr(get.err, "timed out"));
	/* both are still at the worker until the fsyncs are over */
	assert_int_equal(storage_inflight(st), 2);
	assert_true(drain(st, 10.));
	assert_true(now_s() - t0 >= 2 * SLOW_MS / 1000.);
	assert_int_equal(put.calls, 1);
	assert_int_equal(get.calls, 1);
	assert_null(get.val);
	/* the write itself went through */
	assert_int_equal(ss_get(st, "slow/a", &v, &len, err, sizeof(err)), 0);
	assert_memory_equal(v, "late", 4);
	free(v);
	/* storage_wait gives up on time as well */
	t1 = now_s();
	assert_int_equal(ss_put(st, "slow/b", "w", 1, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "timed out"));
	assert_true(now_s() - t1 < 0.25);
	assert_true(drain(st, 10.));
	assert_int_equal(ss_get(st, "slow/b", &v, &len, err, sizeof(err)), 0);
	free(v);
	rec_clear(&put);
	rec_clear(&get);
	storage_close(st);
}

struct cadence {
	double last, max_gap;
	int ticks;
};

static void cb_cadence(struct ev_loop *l, ev_timer *w, int revents)
{
	struct cadence *c = w->data;
	double t = now_s();

	if (c->last > 0 && t - c->last > c->max_gap)
		c->max_gap = t - c->last;
	c->last = t;
	c->ticks++;
}

/* While every fsync takes SLOW_MS, a 10 ms timer on the same loop keeps its
 * cadence, and a read on an idle shard does not wait for the writes. */
static void s_loop_cadence(void **state)
{
	struct storage *st = open_file(4, 10000);
	struct cadence c = { 0 };
	struct rec puts[8], fast = { 0 };
	ev_timer tick;
	char key[32], fast_key[32];
	int i, j, done = 0;
	double t0;

	memset(puts, 0, sizeof(puts));
	ev_timer_init(&tick, cb_cadence, 0.01, 0.01);
	tick.data = &c;
	ev_timer_start(loop, &tick);
	t0 = now_s();
	/* eight writes on workers 0..2 (the front shards by workq_shard(key) %
	 * threads), leaving worker 3 idle for a read */
	for (i = 0, j = 0; i < 8; j++) {
		snprintf(key, sizeof(key), "cad/%d", j);
		if (workq_shard(key) % 4 == 3)
			continue;
		storage_put(st, key, "v", 1, 0, cb_rec, &puts[i++]);
	}
	for (j = 0;; j++) {
		snprintf(fast_key, sizeof(fast_key), "other/%d", j);
		if (workq_shard(fast_key) % 4 == 3)
			break;
	}
	storage_get(st, fast_key, cb_rec, &fast);
	while (done < 8 && now_s() - t0 < 20.) {
		ev_run(loop, EVRUN_ONCE);
		for (done = 0, i = 0; i < 8; i++)
			done += puts[i].calls;
	}
	ev_timer_stop(loop, &tick);
	assert_int_equal(done, 8);
	for (i = 0; i < 8; i++)
		assert_int_equal(puts[i].rc, 0);
	/* the puts took seconds of fsync in all ... */
	assert_true(now_s() - t0 >= 2 * SLOW_MS / 1000.);
	/* ... and the loop never waited on them (a gap of one fsync, 300 ms,
	 * would show it; the bar leaves room for a loaded 2-core machine) */
	if (c.max_gap > 0.15)
		fail_msg("max gap between 10 ms ticks %.1f ms over %d ticks", c.max_gap * 1000.,
			 c.ticks);
	assert_true(c.ticks >= (int)((now_s() - t0) / 0.01 / 2));
	/* a slow store delays only the operations that need it */
	assert_int_equal(fast.calls, 1);
	assert_int_equal(fast.rc, 1);
	if (fast.at - t0 > 0.15)
		fail_msg("read on an idle worker took %.0f ms", (fast.at - t0) * 1000.);
	rec_clear(&fast);
	for (i = 0; i < 8; i++)
		rec_clear(&puts[i]);
	storage_close(st);
}

/* storage_close while writes sit in fsync: it waits for them, calls no
 * callback, and the values are on disk afterwards. */
static void s_close_finishes_writes(void **state)
{
	struct storage *st = open_file(2, 100);
	struct rec r = { 0 };
	char key[32], err[256], *v = NULL;
	size_t len;
	double t0;
	int i;

	for (i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "shut/%d", i);
		storage_put(st, key, key, strlen(key), 0, cb_rec, &r);
	}
	assert_int_equal(storage_inflight(st), 4);
	t0 = now_s();
	storage_close(st);
	assert_true(now_s() - t0 >= SLOW_MS / 1000.);
	ev_run(loop, EVRUN_NOWAIT);
	assert_int_equal(r.calls, 0);
	st = open_file(2, 10000);
	for (i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "shut/%d", i);
		assert_int_equal(ss_get(st, key, &v, &len, err, sizeof(err)), 0);
		assert_memory_equal(v, key, strlen(key));
		free(v);
	}
	storage_close(st);
	/* the same after a time-out already answered the caller */
	st = open_file(2, 100);
	storage_put(st, "shut/late", "l", 1, 0, cb_rec, &r);
	assert_true(run_until(&r.calls, 1, 5.));
	assert_int_equal(r.rc, -1);
	assert_int_equal(storage_inflight(st), 1);
	storage_close(st);
	assert_int_equal(r.calls, 1);
	st = open_file(2, 10000);
	assert_int_equal(ss_get(st, "shut/late", &v, &len, err, sizeof(err)), 0);
	free(v);
	storage_close(st);
}

static char shim_why[PATH_MAX + 128];

static void t_shim_missing(void **state)
{
	fail_msg("%s", shim_why);
}

/* Path of the shim: $(BUILD)/tools/slow_fsync.so beside $(BUILD)/tests/. */
static int shim_path(char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (getenv("SLOW_FSYNC_SO")) {
		snprintf(buf, len, "%s", getenv("SLOW_FSYNC_SO"));
		return 0;
	}
	if (n == -1)
		return -1;
	exe[n] = '\0';
	snprintf(buf, len, "%s/../tools/slow_fsync.so", dirname(exe));
	return 0;
}

/* Runs the slow group in a copy of this binary with the shim preloaded.
 * Returns the number of failures. */
static int run_slow_child(char **argv)
{
	static const struct CMUnitTest missing[] = {
		cmocka_unit_test(t_shim_missing),
	};
	char so[PATH_MAX], env[PATH_MAX + 64], asan[1024];
	const char *prev;
	int status;
	pid_t pid;

	if (shim_path(so, sizeof(so)) == -1 || access(so, R_OK) == -1) {
		snprintf(shim_why, sizeof(shim_why), "%s: not found (make builds it from "
			 "tests/shim/slow_fsync.c)", so);
		return cmocka_run_group_tests_name("storage_async_slow", missing, NULL, NULL)
			? 1 : 1;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid == -1)
		return 1;
	if (pid == 0) {
		prev = getenv("LD_PRELOAD");
		snprintf(env, sizeof(env), "%s%s%s", so, prev ? " " : "", prev ? prev : "");
		setenv("LD_PRELOAD", env, 1);
		snprintf(env, sizeof(env), "%d", SLOW_MS);
		setenv("SLOW_FSYNC_MS", env, 1);
		setenv("SLOW_FSYNC_PATH", SLOW_PREFIX, 1);
		/* the shim precedes the ASan runtime in the library list */
		prev = getenv("ASAN_OPTIONS");
		snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", prev ? prev : "",
			 prev ? ":" : "");
		setenv("ASAN_OPTIONS", asan, 1);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid)
		return 1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

/* Stored records expire in every backend: file and shm through the front's
 * index (deleted when due, a later put without TTL keeps the key), and the
 * file backend removes what an earlier process left expired, at start. */
static void expiry_run(struct storage *st, int file)
{
	char err[256], path[PATH_MAX], *v = NULL;
	struct timespec ts = { 1, 200000000 };
	struct stat sb;
	size_t len;
	int i;

	for (i = 0; i < 50; i++) {
		char key[32];

		snprintf(key, sizeof(key), "backoff/e%d.test", i);
		assert_int_equal(ss_put(st, key, "x", 1, 1, err, sizeof(err)), 0);
	}
	assert_int_equal(ss_put(st, "backoff/keep.test", "x", 1, 1, err, sizeof(err)), 0);
	assert_int_equal(ss_put(st, "backoff/keep.test", "y", 1, 0, err, sizeof(err)), 0);
	assert_int_equal(ss_put(st, "backoff/later.test", "z", 1, 60, err, sizeof(err)), 0);
	assert_int_equal(storage_expiring(st), 51);
	nanosleep(&ts, NULL);
	/* the deletes run from a timer on the loop */
	for (i = 0; i < 100 && storage_expiring(st) > 1; i++)
		ev_run(loop, EVRUN_ONCE);
	assert_true(drain(st, 5.));
	assert_int_equal(storage_expiring(st), 1);
	if (file) {
		snprintf(path, sizeof(path), "%s/backoff/e7.test", dir);
		assert_int_not_equal(stat(path, &sb), 0);
	}
	assert_int_equal(ss_get(st, "backoff/e7.test", &v, &len, err, sizeof(err)), 1);
	assert_int_equal(ss_get(st, "backoff/keep.test", &v, &len, err, sizeof(err)), 0);
	free(v);
	assert_int_equal(ss_get(st, "backoff/later.test", &v, &len, err, sizeof(err)), 0);
	free(v);
}

static void a_expiry(void **state)
{
	struct storage *st = open_file(2, 0), *shm = open_shm();
	struct timespec ts = { 1, 200000000 };
	char err[256], path[PATH_MAX];
	struct stat sb;

	expiry_run(st, 1);
	expiry_run(shm, 0);
	storage_close(shm);
	/* expired while no process ran: removed at the next start */
	assert_int_equal(ss_put(st, "backoff/left.test", "x", 1, 1, err, sizeof(err)), 0);
	storage_close(st);
	nanosleep(&ts, NULL);
	snprintf(path, sizeof(path), "%s/backoff/left.test", dir);
	assert_int_equal(stat(path, &sb), 0);
	st = open_file(2, 0);
	assert_int_not_equal(stat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/backoff/later.test", dir);
	assert_int_equal(stat(path, &sb), 0);
	storage_close(st);
}

int main(int argc, char **argv)
{
	static const struct CMUnitTest fast[] = {
		cmocka_unit_test_setup_teardown(a_never_inside_the_call, setup_dir, teardown_dir),
		cmocka_unit_test(a_chain_no_recursion),
		cmocka_unit_test_setup_teardown(a_order_per_key, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(a_cancel, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(a_invalid_next_turn, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(a_inflight_and_wait, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(a_close_drops_callbacks, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(a_deadline_and_result_same_turn, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(a_deadline_counts_from_the_call, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(a_expiry, setup_dir, teardown_dir),
	};
	static const struct CMUnitTest slow[] = {
		cmocka_unit_test_setup_teardown(s_shim_active, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(s_deadline, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(s_loop_cadence, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(s_close_finishes_writes, setup_dir, teardown_dir),
	};
	int fails = 0;

	loop = ev_loop_new(EVFLAG_AUTO);
	if (loop == NULL)
		return 1;
	if (getenv("SLOW_FSYNC_MS")) {
		fails = cmocka_run_group_tests_name("storage_async_slow", slow, NULL, NULL);
	} else {
		fails = cmocka_run_group_tests_name("storage_async", fast, NULL, NULL);
		fails += run_slow_child(argv);
	}
	ev_loop_destroy(loop);
	return fails ? 1 : 0;
}
