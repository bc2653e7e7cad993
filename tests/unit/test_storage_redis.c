/* SPDX-License-Identifier: Apache-2.0 */
/* Storage behaviour table against a real redis-server started here on a free
 * loopback port (no persistence, temp dir, killed at the end), plus what only
 * redis has: namespaces, AUTH/SELECT, the change feed, pipelining and its
 * bounds, a frozen (SIGSTOP) or killed server while the loop keeps running,
 * close with operations in flight, and pub/sub. The same server also listens
 * with TLS (a test CA made here with the openssl tool): the behaviour table,
 * the feed, the pipeline, a killed server and pub/sub run again over TLS,
 * and a wrong server name or an untrusted certificate are refused. Host
 * names: "localhost" is resolved on a worker thread (getaddrinfo() is
 * wrapped here to see where it runs, and to slow one name down), an
 * address never reaches the resolver, an unresolvable name fails with a
 * clear error while the loop keeps running, and the system CA store
 * ($SSL_CERT_FILE) is parsed at open. A missing redis-server is a failure,
 * not a skip. */
#define STORAGE_TEST_NO_MAIN
#include "tests/unit/test_storage.c"
#include "tests/unit/storage_fixture.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <ev.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "tests/tools/storage_sync.h"

static pid_t redis_pid = -1;
static int redis_port;
static int tls_port;		/* > 0: the server also speaks TLS there */
static int use_tls;		/* the storages opened use it */
static char redis_dir[256];
static unsigned ns_seq;
static char cur_ns[64];

/* ---- getaddrinfo(), watched ---------------------------------------------- */

/* The process's getaddrinfo(): this definition comes first, and hands every
 * call to the C library's after counting it. A name starting with "slow-"
 * waits GAI_SLOW_MS first, like a resolver whose server does not answer. */
#define GAI_SLOW_MS 1000
static pthread_t main_thread;
static int gai_calls;		/* every call (atomic) */
static int gai_on_loop;		/* calls made on the loop thread (atomic) */
static int gai_literal;		/* calls for "127.0.0.1" or "::1" (atomic) */

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *,
			   struct addrinfo **);

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	__atomic_add_fetch(&gai_calls, 1, __ATOMIC_SEQ_CST);
	if (pthread_equal(pthread_self(), main_thread))
		__atomic_add_fetch(&gai_on_loop, 1, __ATOMIC_SEQ_CST);
	if (node != NULL && (strcmp(node, "127.0.0.1") == 0 || strcmp(node, "::1") == 0))
		__atomic_add_fetch(&gai_literal, 1, __ATOMIC_SEQ_CST);
	if (node != NULL && strncmp(node, "slow-", 5) == 0)
		usleep(GAI_SLOW_MS * 1000);
	return real(node, service, hints, res);
}

static int gai_get(int *v)
{
	return __atomic_load_n(v, __ATOMIC_SEQ_CST);
}
/* a private loop: the default one reaps children (SIGCHLD) behind waitpid() */
static struct ev_loop *rloop;

/* ---- the server ---------------------------------------------------------- */

/* A blocking client of the test's own (the code under test has none). */
static int redis_answers(int port)
{
	struct timeval tv = { 0, 200000 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	redisReply *r = NULL;
	int ok = 0;

	if (c != NULL && !c->err) {
		r = redisCommand(c, "PING");
		ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
	}
	if (r != NULL)
		freeReplyObject(r);
	if (c != NULL)
		redisFree(c);
	return ok;
}

static void redis_stop(void)
{
	int i;

	if (redis_pid <= 0)
		return;
	kill(redis_pid, SIGCONT);	/* a test may have left it frozen */
	kill(redis_pid, SIGTERM);
	for (i = 0; i < 300; i++) {
		if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid)
			break;
		sbt_sleep_ms(10);
	}
	if (i == 300) {
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, NULL, 0);
	}
	redis_pid = -1;
}

static void redis_kill9(void)
{
	kill(redis_pid, SIGKILL);
	waitpid(redis_pid, NULL, 0);
	redis_pid = -1;
}

/* Starts redis-server on <port>; polls PING for up to 5 s. 0 or -1. */
static int redis_start_on(int port)
{
	char ports[16], tports[16], logf[300], cert[300], key[300], ca[300];
	const char *argv[32] = { "redis-server", "--port", ports, "--bind", "127.0.0.1", "--save", "",
				 "--appendonly", "no", "--dir", redis_dir, "--daemonize", "no" };
	int i, argc = 13;

	snprintf(ports, sizeof(ports), "%d", port);
	if (tls_port > 0) {
		snprintf(tports, sizeof(tports), "%d", tls_port);
		snprintf(cert, sizeof(cert), "%s/server.pem", redis_dir);
		snprintf(key, sizeof(key), "%s/server.key", redis_dir);
		snprintf(ca, sizeof(ca), "%s/ca.pem", redis_dir);
		argv[argc++] = "--tls-port";
		argv[argc++] = tports;
		argv[argc++] = "--tls-cert-file";
		argv[argc++] = cert;
		argv[argc++] = "--tls-key-file";
		argv[argc++] = key;
		argv[argc++] = "--tls-ca-cert-file";
		argv[argc++] = ca;
		argv[argc++] = "--tls-auth-clients";
		argv[argc++] = "no";
	}
	snprintf(logf, sizeof(logf), "%s/redis.log", redis_dir);
	redis_pid = fork();
	if (redis_pid < 0)
		return -1;
	if (redis_pid == 0) {
		int fd = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp("redis-server", (char *const *)argv);
		dprintf(2, "exec redis-server: %s\n", strerror(errno));
		_exit(127);
	}
	for (i = 0; i < 250; i++) {
		if (waitpid(redis_pid, NULL, WNOHANG) == redis_pid) {
			redis_pid = -1;
			return -1;
		}
		if (redis_answers(port))
			return 0;
		sbt_sleep_ms(20);
	}
	redis_stop();
	return -1;
}

static int redis_start(void)
{
	int tries;

	for (tries = 0; tries < 5; tries++) {
		redis_port = sfx_free_port();
		if (redis_port > 0 && redis_start_on(redis_port) == 0)
			return 0;
	}
	return -1;
}

static void redis_cleanup(void)
{
	redis_stop();
	if (redis_dir[0])
		sbt_rm_rf(redis_dir);
}

/* Runs one command on the test's own blocking connection. */
static void redis_admin(const char *cmd, const char *arg)
{
	redisContext *c = redisConnect("127.0.0.1", redis_port);
	redisReply *r;

	assert_true(c != NULL && !c->err);
	r = arg ? redisCommand(c, cmd, arg) : redisCommand(c, cmd);
	assert_non_null(r);
	if (r->type == REDIS_REPLY_ERROR)
		fail_msg("%s: %s", cmd, r->str);
	freeReplyObject(r);
	redisFree(c);
}

/* ---- opening, the loop --------------------------------------------------- */

static struct storage *redis_open_conf(struct storage_conf *conf, const char *ns)
{
	char err[512];
	struct storage *st;

	if (!conf->redis_host)
		conf->redis_host = "127.0.0.1";
	if (!conf->redis_port)
		conf->redis_port = redis_port;
	if (use_tls && conf->redis_port == redis_port) {
		static char ca[300];

		snprintf(ca, sizeof(ca), "%s/ca.pem", redis_dir);
		conf->redis_port = tls_port;
		conf->redis_ssl = 1;
		conf->redis_ssl_verify = 1;
		if (!conf->redis_ssl_ca_file)
			conf->redis_ssl_ca_file = ca;
		if (!conf->redis_ssl_server_name)
			conf->redis_ssl_server_name = "redis.test";
	}
	conf->redis_namespace = ns;
	conf->redis_timeout_ms = conf->redis_timeout_ms ? conf->redis_timeout_ms : 2000;
	st = storage_open("redis", conf, rloop, err, sizeof(err));
	if (st == NULL)
		fail_msg("open redis: %s", err);
	return st;
}

static struct storage *redis_open_ns(const char *ns, int db, const char *auth)
{
	struct storage_conf conf = { .redis_database = db, .redis_auth = auth };

	return redis_open_conf(&conf, ns);
}

static const char *fresh_ns(void)
{
	snprintf(cur_ns, sizeof(cur_ns), "t%ld-%u", (long)getpid(), ns_seq++);
	return cur_ns;
}

static struct storage *redis_open_fresh(void)
{
	return redis_open_ns(fresh_ns(), 0, NULL);
}

/* Pings until the storage answers (it reconnects by itself), running the
 * loop meanwhile. 1 when it did within <secs>. */
static int wait_ping(struct storage *st, double secs)
{
	double end = sfx_now_s() + secs;
	char err[512];

	while (sfx_now_s() < end) {
		if (ss_ping(st, err, sizeof(err)) == 0)
			return 1;
		sfx_run_for(rloop, 0.05);
	}
	return 0;
}

/* One operation's outcome, filled by cb_rec. */
struct rec {
	int *count;		/* bumped on completion */
	int rc;
	double at;
	char err[STORAGE_ERR_MAX];
	char *val;
	size_t len;
	uint64_t gen;
};

static void cb_rec(void *arg, struct storage_res *res)
{
	struct rec *r = arg;

	r->rc = res->rc;
	r->at = sfx_now_s();
	snprintf(r->err, sizeof(r->err), "%s", res->err ? res->err : "");
	r->val = res->val;	/* ours now */
	r->len = res->len;
	res->val = NULL;
	r->gen = res->gen;
	(*r->count)++;
}

/* Measures the longest gap between the ticks of a 10 ms timer. */
struct gap_meter {
	ev_timer w;
	double last, max;
};

static void cb_gap(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct gap_meter *g = w->data;
	double t = sfx_now_s();

	if (g->last > 0 && t - g->last > g->max)
		g->max = t - g->last;
	g->last = t;
}

static void gap_start(struct gap_meter *g)
{
	memset(g, 0, sizeof(*g));
	ev_timer_init(&g->w, cb_gap, 0.01, 0.01);
	g->w.data = g;
	ev_timer_start(rloop, &g->w);
}

/* ---- tests --------------------------------------------------------------- */

static void r_namespaces(void **state)
{
	struct storage *a = *state, *b, *none, *db2;
	char err[512], **keys = NULL;
	size_t n = 0;

	b = redis_open_ns("other", 0, NULL);
	sbt_put(a, "certs/x.test", "from-a", 6, 0);
	sbt_put(b, "certs/x.test", "from-b", 6, 0);
	sbt_put(b, "certs/y.test", "only-b", 6, 0);
	sbt_expect(a, "certs/x.test", "from-a", 6);
	sbt_expect(b, "certs/x.test", "from-b", 6);
	sbt_expect_absent(a, "certs/y.test");
	sbt_expect_list(a, "", (const char *const[]){ "certs/x.test", NULL });
	assert_int_equal(ss_lock(a, "issue/x", "A", 5000, err, sizeof(err)), 0);
	assert_int_equal(ss_lock(b, "issue/x", "B", 5000, err, sizeof(err)), 0);
	assert_int_equal(ss_del(b, "certs/x.test", err, sizeof(err)), 0);
	sbt_expect(a, "certs/x.test", "from-a", 6);
	/* no namespace: raw keys; the namespaced keys, locks and feeds (with ':')
	 * are not listed */
	sfx_feed_put(b, "certs", "x.test", "1");
	none = redis_open_ns(NULL, 0, NULL);
	assert_int_equal(ss_list(none, "", &keys, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	storage_list_free(keys, n);
	sbt_put(none, "certs/z", "raw", 3, 0);
	sbt_expect_list(none, "", (const char *const[]){ "certs/z", NULL });
	/* SELECT: another database is another keyspace */
	db2 = redis_open_ns(cur_ns, 2, NULL);
	sbt_expect_absent(db2, "certs/x.test");
	sbt_put(db2, "certs/x.test", "db2", 3, 0);
	sbt_expect(a, "certs/x.test", "from-a", 6);
	sbt_expect(db2, "certs/x.test", "db2", 3);
	assert_int_equal(ss_del(none, "certs/z", err, sizeof(err)), 0);
	storage_close(db2);
	storage_close(none);
	storage_close(b);
}

static void r_conf_errors(void **state)
{
	struct storage_conf conf = { .redis_port = redis_port, .redis_ssl = 1,
				     .redis_ssl_verify = 1,
				     .redis_ssl_ca_file = "/nonexistent/ca.pem" };
	const char *nodes[] = { "127.0.0.1:1", "not an address" };
	char err[512] = "";
	struct storage *st;

	/* TLS files are read at open: a missing one is a clear error */
	assert_null(storage_open("redis", &conf, rloop, err, sizeof(err)));
	assert_non_null(strstr(err, "ssl_ca_file /nonexistent/ca.pem"));
	conf.redis_ssl_ca_file = NULL;
	conf.redis_ssl_cert = "/nonexistent/cert.pem";
	assert_null(storage_open("redis", &conf, rloop, err, sizeof(err)));
	assert_non_null(strstr(err, "go together"));
	conf.redis_ssl_cert = NULL;
	conf.redis_ssl = 0;
	/* sentinels: master and nodes go together, nodes are host:port */
	conf.redis_sentinel_master = "m";
	assert_null(storage_open("redis", &conf, rloop, err, sizeof(err)));
	assert_non_null(strstr(err, "sentinel_nodes is empty"));
	conf.redis_sentinel_nodes = nodes;
	conf.redis_nsentinel_nodes = 2;
	assert_null(storage_open("redis", &conf, rloop, err, sizeof(err)));
	assert_non_null(strstr(err, "sentinel_nodes[1]"));
	conf.redis_sentinel_master = NULL;
	assert_null(storage_open("redis", &conf, rloop, err, sizeof(err)));
	assert_non_null(strstr(err, "without sentinel_master"));
	conf.redis_sentinel_nodes = NULL;
	conf.redis_nsentinel_nodes = 0;
	conf.redis_namespace = "bad*ns";
	assert_null(storage_open("redis", &conf, rloop, err, sizeof(err)));
	assert_non_null(strstr(err, "namespace"));
	/* unreachable server: open succeeds, operations fail with a reason */
	conf.redis_namespace = NULL;
	conf.redis_port = sfx_free_port();
	st = storage_open("redis", &conf, rloop, err, sizeof(err));
	assert_non_null(st);
	assert_int_equal(ss_ping(st, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "ping"));
	assert_non_null(strstr(err, "connect"));
	storage_close(st);
	/* AUTH: the right password works; a wrong one, a missing one or a bad
	 * SELECT do not stop open() (nothing blocks there) but every operation
	 * fails saying why, and it keeps retrying */
	redis_admin("CONFIG SET requirepass s3cret", NULL);
	st = redis_open_ns("auth", 0, "s3cret");
	assert_int_equal(ss_ping(st, err, sizeof(err)), 0);
	storage_close(st);
	st = redis_open_ns("auth", 0, "Xyzzy-pw");
	assert_int_equal(ss_ping(st, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "AUTH refused"));
	assert_null(strstr(err, "Xyzzy"));	/* never the password */
	storage_close(st);
	st = redis_open_ns("auth", 0, NULL);
	assert_int_equal(ss_ping(st, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "NOAUTH"));
	{
		redisContext *c = redisConnect("127.0.0.1", redis_port);
		redisReply *r = redisCommand(c, "AUTH s3cret");

		freeReplyObject(r);
		r = redisCommand(c, "CONFIG SET requirepass %s", "");
		assert_non_null(r);
		freeReplyObject(r);
		redisFree(c);
	}
	/* the refusal is retried: once the server agrees, so does the storage */
	assert_true(wait_ping(st, 8.));
	storage_close(st);
	st = redis_open_ns("sel", 99, NULL);
	assert_int_equal(ss_get(st, "certs/a", &(char *){ NULL }, &(size_t){ 0 }, err,
				sizeof(err)), -1);
	assert_non_null(strstr(err, "SELECT refused"));
	assert_non_null(strstr(err, "certs/a"));
	storage_close(st);
}

/* Killed: operations fail fast and say why; restarted: it reconnects by
 * itself. */
static void r_killed(void **state)
{
	struct storage *st = *state;
	char err[512], *v = NULL;
	size_t len;
	double t0;
	int i, port = redis_port;

	sbt_put(st, "certs/r.test", "before", 6, 0);
	redis_kill9();
	/* at once: a call that waited for the connection would take the 2 s
	 * timeout; 0.5 s leaves room for a loaded machine */
	for (i = 0; i < 5; i++) {
		t0 = sfx_now_s();
		assert_int_equal(ss_get(st, "certs/r.test", &v, &len, err, sizeof(err)), -1);
		if (sfx_now_s() - t0 > 0.5)
			fail_msg("get %d took %.0f ms: %s", i, (sfx_now_s() - t0) * 1000, err);
		assert_non_null(strstr(err, "certs/r.test"));
	}
	/* while down, calls fail at once and say when the next attempt is */
	assert_int_equal(ss_ping(st, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "next attempt"));
	if (redis_start_on(port) != 0)
		fail_msg("could not restart redis-server on port %d", port);
	/* then it reconnects by itself once the 250 ms..5 s backoff has passed */
	assert_true(wait_ping(st, 8.));
	sbt_expect_absent(st, "certs/r.test");   /* no persistence: a new server */
	sbt_put(st, "certs/r.test", "after", 5, 0);
	sbt_expect(st, "certs/r.test", "after", 5);
}

/* Frozen server: every operation completes "timed out" by its deadline, the
 * loop is never blocked, the frozen connection is dropped (nothing piles
 * up), and once the server runs again so do we. */
static void r_sigstop(void **state)
{
	struct storage_conf conf = { .timeout_ms = 300 };
	struct storage *st = redis_open_conf(&conf, fresh_ns());
	struct rec first[20], later[20];
	struct gap_meter gap;
	int nfirst = 0, nlater = 0, i, ok = 0;
	double t0, t[20];

	sbt_put(st, "certs/s.test", "v", 1, 0);
	memset(first, 0, sizeof(first));
	memset(later, 0, sizeof(later));
	gap_start(&gap);
	kill(redis_pid, SIGSTOP);
	t0 = sfx_now_s();
	for (i = 0; i < 20; i++) {
		first[i].count = &nfirst;
		assert_non_null(storage_get(st, "certs/s.test", cb_rec, &first[i]));
	}
	assert_true(sfx_run_until(rloop, &nfirst, 20, 2.));
	for (i = 0; i < 20; i++) {
		assert_int_equal(first[i].rc, -1);
		assert_non_null(strstr(first[i].err, "timed out"));
		if (first[i].at - t0 > 0.45)
			fail_msg("op %d answered after %.0f ms", i, (first[i].at - t0) * 1000);
	}
	/* meanwhile: one operation every 100 ms, through drop, reconnect
	 * attempts and backoff; each is answered by its deadline */
	for (i = 0; i < 20; i++) {
		later[i].count = &nlater;
		t[i] = sfx_now_s();
		assert_non_null(storage_get(st, "certs/s.test", cb_rec, &later[i]));
		sfx_run_for(rloop, 0.1);
	}
	assert_true(sfx_run_until(rloop, &nlater, 20, 1.));
	for (i = 0; i < 20; i++) {
		assert_int_equal(later[i].rc, -1);
		if (strstr(later[i].err, "timed out") == NULL)
			fail_msg("op %d: %s", i, later[i].err);
		if (later[i].at - t[i] > 0.45)
			fail_msg("op %d answered after %.0f ms", i, (later[i].at - t[i]) * 1000);
	}
	/* the frozen connection was dropped: the backend holds nothing */
	sfx_run_for(rloop, 1.);
	assert_int_equal(storage_inflight(st), 0);
	kill(redis_pid, SIGCONT);
	for (i = 0; i < 100 && !ok; i++) {
		struct rec r = { .count = &nlater };
		int want = nlater + 1;

		assert_non_null(storage_get(st, "certs/s.test", cb_rec, &r));
		assert_true(sfx_run_until(rloop, &nlater, want, 1.));
		ok = r.rc == 0 && r.len == 1 && r.val[0] == 'v';
		free(r.val);
		if (!ok)
			sfx_run_for(rloop, 0.1);
	}
	assert_true(ok);
	ev_timer_stop(rloop, &gap.w);
	/* a wait on the frozen server would show as 300 ms; the bar leaves room
	 * for a loaded 2-core machine */
	if (gap.max > 0.15)
		fail_msg("the loop stalled %.0f ms", gap.max * 1000);
	storage_close(st);
}

/* 1000 operations in flight at once on the one connection; none completes
 * inside the call that started it. */
static void r_pipeline(void **state)
{
	struct storage *st = *state;
	static struct rec recs[1000];
	char key[64], val[64];
	int n = 0, i;

	memset(recs, 0, sizeof(recs));
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "p/%04d", i);
		snprintf(val, sizeof(val), "value-%d", i);
		recs[i].count = &n;
		assert_non_null(storage_put(st, key, val, strlen(val), 0, cb_rec, &recs[i]));
	}
	assert_int_equal(n, 0);
	assert_int_equal(storage_inflight(st), 1000);
	assert_true(sfx_run_until(rloop, &n, 1000, 10.));
	for (i = 0; i < 1000; i++)
		assert_int_equal(recs[i].rc, 0);
	n = 0;
	memset(recs, 0, sizeof(recs));
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "p/%04d", i);
		recs[i].count = &n;
		assert_non_null(storage_get(st, key, cb_rec, &recs[i]));
	}
	assert_int_equal(n, 0);
	assert_true(sfx_run_until(rloop, &n, 1000, 10.));
	for (i = 0; i < 1000; i++) {
		snprintf(val, sizeof(val), "value-%d", i);
		assert_int_equal(recs[i].rc, 0);
		assert_int_equal(recs[i].len, strlen(val));
		assert_memory_equal(recs[i].val, val, recs[i].len);
		free(recs[i].val);
	}
}

/* Past REDIS_MAX_OPS operations in flight, the next fails at once. */
static void r_bound(void **state)
{
	struct storage *st = *state;
	enum { N = 10001 };
	struct rec *recs = calloc(N, sizeof(*recs));
	int n = 0, i, over = 0, found = 0;

	assert_non_null(recs);
	sbt_put(st, "b/k", "x", 1, 0);
	for (i = 0; i < N; i++) {
		recs[i].count = &n;
		assert_non_null(storage_get(st, "b/k", cb_rec, &recs[i]));
	}
	assert_int_equal(n, 0);
	assert_true(sfx_run_until(rloop, &n, N, 20.));
	for (i = 0; i < N; i++) {
		if (recs[i].rc == 0)
			found++;
		else if (strstr(recs[i].err, "too many operations in flight"))
			over++;
		else
			fail_msg("op %d: rc %d %s", i, recs[i].rc, recs[i].err);
		free(recs[i].val);
	}
	assert_int_equal(over, 1);
	assert_int_equal(recs[N - 1].rc, -1);
	assert_int_equal(found, N - 1);
	free(recs);
}

/* Whatever the connection's state, a completion runs on a later loop turn. */
static void r_never_inside(void **state)
{
	struct storage *st = *state, *down, *fresh;
	struct storage_conf conf = { .redis_port = sfx_free_port() };
	struct rec r;
	int n;

#define EXPECT_LATER(call) do {						\
		n = 0;							\
		memset(&r, 0, sizeof(r));				\
		r.count = &n;						\
		assert_non_null(call);					\
		assert_int_equal(n, 0);					\
		assert_true(sfx_run_until(rloop, &n, 1, 5.));			\
		free(r.val);						\
	} while (0)

	EXPECT_LATER(storage_get(st, "certs/none", cb_rec, &r));	/* ready */
	assert_int_equal(r.rc, 1);
	EXPECT_LATER(storage_get(st, "../bad", cb_rec, &r));	/* invalid */
	assert_int_equal(r.rc, -1);
	fresh = redis_open_ns(cur_ns, 0, NULL);		/* connecting: queued */
	EXPECT_LATER(storage_ping(fresh, cb_rec, &r));
	assert_int_equal(r.rc, 0);
	storage_close(fresh);
	down = redis_open_conf(&conf, NULL);		/* unreachable */
	EXPECT_LATER(storage_ping(down, cb_rec, &r));
	assert_int_equal(r.rc, -1);
	EXPECT_LATER(storage_ping(down, cb_rec, &r));	/* down: fails at once */
	assert_int_equal(r.rc, -1);
	assert_non_null(strstr(r.err, "next attempt"));
	storage_close(down);
#undef EXPECT_LATER
}

static void r_close_inflight(void **state)
{
	struct storage_conf conf = { .timeout_ms = 300 };
	struct storage *st;
	struct rec r = { 0 };
	char key[32];
	int n = 0, i;

	r.count = &n;
	/* ready, commands not yet written */
	st = redis_open_fresh();
	sbt_put(st, "c/a", "x", 1, 0);
	for (i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "c/%d", i);
		storage_get(st, key, cb_rec, &r);
		storage_put(st, key, "v", 1, 0, cb_rec, &r);
	}
	storage_list(st, "", cb_rec, &r);
	storage_lock(st, "c/l", "me", 1000, cb_rec, &r);
	storage_feed_put(st, "f", "m", "1", cb_rec, &r);
	storage_feed_since(st, "f", 0, cb_rec, &r);
	storage_close(st);
	/* ready, commands written, replies on their way */
	st = redis_open_fresh();
	sbt_put(st, "c/a", "x", 1, 0);
	for (i = 0; i < 200; i++)
		storage_list(st, "", cb_rec, &r);
	ev_run(rloop, EVRUN_NOWAIT);
	storage_close(st);
	/* connecting: queued */
	st = redis_open_fresh();
	for (i = 0; i < 10; i++)
		storage_get(st, "c/a", cb_rec, &r);
	storage_close(st);
	/* frozen server: sent, no reply coming */
	st = redis_open_conf(&conf, fresh_ns());
	sbt_put(st, "c/a", "x", 1, 0);
	kill(redis_pid, SIGSTOP);
	for (i = 0; i < 50; i++)
		storage_get(st, "c/a", cb_rec, &r);
	sfx_run_for(rloop, 0.1);
	storage_close(st);
	kill(redis_pid, SIGCONT);
	/* no callback ran after close, nothing fires later */
	sfx_run_for(rloop, 0.3);
	assert_int_equal(n, 0);
}

static void r_feed(void **state)
{
	struct storage *st = *state, *other;
	static struct rec recs[2500];
	struct storage_res res;
	char member[32], ver[32];
	uint64_t since;
	size_t total;
	int n = 0, i;

	sfx_feed_behaviour(st);
	/* feeds are namespaced, and never listed as keys */
	other = redis_open_ns("other-feed", 0, NULL);
	sfx_feed_since(other, "certs", 0, &res);
	assert_int_equal(res.n, 0);
	storage_res_clear(&res);
	storage_close(other);
	sbt_put(st, "certs/a.test", "pem", 3, 0);
	sbt_expect_list(st, "", (const char *const[]){ "certs/a.test", NULL });
	/* more than one batch: pipelined puts, then read in order, batch by batch */
	memset(recs, 0, sizeof(recs));
	for (i = 0; i < 2500; i++) {
		snprintf(member, sizeof(member), "m%04d", i);
		snprintf(ver, sizeof(ver), "v%d", i);
		recs[i].count = &n;
		assert_non_null(storage_feed_put(st, "big", member, ver, cb_rec, &recs[i]));
	}
	assert_true(sfx_run_until(rloop, &n, 2500, 10.));
	for (i = 0; i < 2500; i++) {
		assert_int_equal(recs[i].rc, 0);
		assert_int_equal(recs[i].gen, i + 1);
	}
	for (since = 0, total = 0;; since = res.gen) {
		sfx_feed_since(st, "big", since, &res);
		for (i = 0; i < (int)res.n; i++) {
			snprintf(member, sizeof(member), "m%04zu", total + i);
			snprintf(ver, sizeof(ver), "v%zu", total + i);
			assert_string_equal(res.keys[i], member);
			assert_string_equal(res.vals[i], ver);
		}
		total += res.n;
		if (!res.more) {
			assert_int_equal(res.n, 500);
			assert_int_equal(res.gen, 2500);
			storage_res_clear(&res);
			break;
		}
		assert_int_equal(res.n, STORAGE_FEED_BATCH);
		assert_int_equal(res.gen, total);
		storage_res_clear(&res);
	}
	assert_int_equal(total, 2500);
}

/* storage_feed_members() waited for; a failure fails the test. */
static void feed_members(struct storage *st, const char *feed, uint64_t after,
			 struct storage_res *res)
{
	char err[512];

	if (storage_wait(st, storage_feed_members(st, feed, after, NULL, NULL), res, err,
			 sizeof(err)) != 0)
		fail_msg("feed_members %s %llu: %s", feed, (unsigned long long)after, err);
}

/* The members a feed holds now, read in pages: the removed ones are not
 * among them, yet feed_since still reports their removal in order; a feed an
 * older writer left (removed members kept in "log") is moved on the first
 * page and reads the same. */
static void r_feed_members(void **state)
{
	struct storage *st = *state;
	static struct rec recs[STORAGE_FEED_MEMBERS_BATCH + 700];
	const int total = STORAGE_FEED_MEMBERS_BATCH + 700;
	struct storage_res res;
	char member[32], key[160], arg[256];
	uint64_t after = 0;
	size_t seen = 0, pages = 0;
	int n = 0, i, more;

	memset(recs, 0, sizeof(recs));
	for (i = 0; i < total; i++) {
		snprintf(member, sizeof(member), "h%05d.test", i);
		recs[i].count = &n;
		assert_non_null(storage_feed_put(st, "certs", member, "v", cb_rec, &recs[i]));
	}
	assert_true(sfx_run_until(rloop, &n, total, 10.));
	/* every tenth removed, h00000 put again after it (it moves to the end) */
	for (i = 0; i < total; i += 10) {
		snprintf(member, sizeof(member), "h%05d.test", i);
		sfx_feed_put(st, "certs", member, NULL);
	}
	sfx_feed_put(st, "certs", "h00000.test", "v2");
	do {
		const char *name;
		size_t bytes = 0;

		feed_members(st, "certs", after, &res);
		for (i = 0, name = res.val; i < (int)res.n; i++, name += strlen(name) + 1) {
			int k = atoi(name + 1);

			if (strncmp(name, "h", 1) != 0 || strcmp(name + 6, ".test") != 0)
				fail_msg("member %s is not one put", name);
			if (k % 10 == 0 && k != 0)
				fail_msg("removed member %s listed", name);
			bytes += strlen(name) + 1;
			seen++;
		}
		assert_int_equal(bytes, res.len);
		/* the first page says how many there are in all */
		assert_int_equal(res.total, after == 0 ? (size_t)(total - total / 10 + 1) : 0);
		if (res.n)
			assert_true(res.gen > after);
		after = res.gen;
		more = res.more;
		pages++;
		storage_res_clear(&res);
	} while (more);
	assert_int_equal(seen, total - total / 10 + 1);
	assert_int_equal(pages, 2);
	/* the removals still come through feed_since, in order, without a
	 * version; a member once each (h00000's removal gave way to its put) */
	sfx_feed_since(st, "certs", (uint64_t)total, &res);
	assert_int_equal(res.n, total / 10);
	assert_string_equal(res.keys[0], "h00010.test");
	assert_null(res.vals[0]);
	assert_string_equal(res.keys[res.n - 1], "h00000.test");
	assert_string_equal(res.vals[res.n - 1], "v2");
	storage_res_clear(&res);

	/* an older writer's feed: a removed member left in "log", no version */
	snprintf(key, sizeof(key), "%s:feed:old:log", cur_ns);
	snprintf(arg, sizeof(arg), "ZADD %s 1 gone.test 2 kept.test 3 gone2.test", key);
	redis_admin(arg, NULL);
	snprintf(arg, sizeof(arg), "HSET %s:feed:old:ver kept.test 7", cur_ns);
	redis_admin(arg, NULL);
	snprintf(arg, sizeof(arg), "SET %s:feed:old:gen 3", cur_ns);
	redis_admin(arg, NULL);
	feed_members(st, "old", 0, &res);
	assert_int_equal(res.n, 1);
	assert_string_equal(res.val, "kept.test");
	assert_int_equal(res.total, 1);
	assert_int_equal(res.more, 0);
	storage_res_clear(&res);
	sfx_feed_since(st, "old", 0, &res);
	assert_int_equal(res.n, 3);
	assert_string_equal(res.keys[0], "gone.test");
	assert_null(res.vals[0]);
	assert_string_equal(res.keys[1], "kept.test");
	assert_string_equal(res.vals[1], "7");
	assert_string_equal(res.keys[2], "gone2.test");
	assert_null(res.vals[2]);
	storage_res_clear(&res);
	/* an empty feed: one empty page */
	feed_members(st, "none", 0, &res);
	assert_int_equal(res.n, 0);
	assert_int_equal(res.more, 0);
	storage_res_clear(&res);
}

/* storage_scan(): a listing a page at a time, from a cursor, at bounded
 * memory; together the pages hold every key of the prefix (and nothing
 * else: not another prefix, not another namespace's, not a lock). */
static void r_scan_pages(void **state)
{
	struct storage *st = *state, *other;
	static struct rec recs[1200];
	struct storage_res res;
	char key[64], err[256], *seen;
	uint64_t cursor = 0;
	size_t pages = 0, total = 0, i;
	int n = 0, k, more;

	memset(recs, 0, sizeof(recs));
	for (k = 0; k < 1200; k++) {
		snprintf(key, sizeof(key), k < 1000 ? "certs/p%04d.test" : "meta/p%04d.test", k);
		recs[k].count = &n;
		assert_non_null(storage_put(st, key, "v", 1, 0, cb_rec, &recs[k]));
	}
	assert_true(sfx_run_until(rloop, &n, 1200, 10.));
	other = redis_open_ns("other-scan", 0, NULL);
	sbt_put(other, "certs/elsewhere.test", "v", 1, 0);
	storage_close(other);
	seen = calloc(1000, 1);
	assert_non_null(seen);
	do {
		if (storage_wait(st, storage_scan(st, "certs/", cursor, NULL, NULL), &res, err,
				 sizeof(err)) != 0)
			fail_msg("scan: %s", err);
		for (i = 0; i < res.n; i++) {
			if (strncmp(res.keys[i], "certs/p", 7) != 0)
				fail_msg("scan of certs/ gave %s", res.keys[i]);
			k = atoi(res.keys[i] + 7);
			assert_true(k >= 0 && k < 1000);
			total += !seen[k];
			seen[k] = 1;
		}
		assert_true(res.n <= 1200);
		cursor = res.gen;
		more = res.more;
		assert_int_equal(more, cursor != 0);
		pages++;
		storage_res_clear(&res);
	} while (more);
	assert_int_equal(total, 1000);
	assert_true(pages > 1);		/* paged, not one listing */
	free(seen);
}

struct sub_rec {
	int n;
	char last[64];
	size_t last_len;
	struct storage_sub *self_free;   /* freed from its own callback */
};

static void sub_cb(void *arg, const char *msg, size_t len)
{
	struct sub_rec *rec = arg;

	rec->n++;
	rec->last_len = len < sizeof(rec->last) ? len : sizeof(rec->last);
	memcpy(rec->last, msg, rec->last_len);
	if (rec->self_free != NULL) {
		storage_sub_free(rec->self_free);
		rec->self_free = NULL;
	}
}

struct ready_watch {
	struct storage_sub *sub;
	int ready;
	ev_timer w;
};

static void cb_ready(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ready_watch *rw = w->data;

	rw->ready = storage_sub_ready(rw->sub);
}

static int wait_ready(struct storage_sub *sub, double secs)
{
	struct ready_watch rw = { .sub = sub };

	ev_timer_init(&rw.w, cb_ready, 0.01, 0.01);
	rw.w.data = &rw;
	ev_timer_start(rloop, &rw.w);
	sfx_run_until(rloop, &rw.ready, 1, secs);
	ev_timer_stop(rloop, &rw.w);
	return rw.ready;
}

static void r_pubsub(void **state)
{
	struct storage *st = *state, *other;
	struct sub_rec rec = { 0 }, rec2 = { 0 };
	struct storage_sub *sub, *sub2;
	char err[512];
	int port = redis_port;

	sub = storage_subscribe(st, "certs", sub_cb, &rec, err, sizeof(err));
	if (sub == NULL)
		fail_msg("subscribe: %s", err);
	assert_true(wait_ready(sub, 5.));
	assert_int_equal(ss_publish(st, "certs", "a.test\0bin", 10, err, sizeof(err)), 0);
	assert_true(sfx_run_until(rloop, &rec.n, 1, 5.));
	assert_int_equal(rec.last_len, 10);
	assert_memory_equal(rec.last, "a.test\0bin", 10);
	/* another namespace, or another channel, does not reach us */
	other = redis_open_ns("elsewhere", 0, NULL);
	assert_int_equal(ss_publish(other, "certs", "nope", 4, err, sizeof(err)), 0);
	assert_int_equal(ss_publish(st, "renewals", "nope", 4, err, sizeof(err)), 0);
	assert_int_equal(ss_publish(st, "certs", "second", 6, err, sizeof(err)), 0);
	assert_true(sfx_run_until(rloop, &rec.n, 2, 5.));
	sfx_run_for(rloop, 0.2);
	assert_int_equal(rec.n, 2);
	assert_memory_equal(rec.last, "second", 6);
	/* the subscription survives a redis restart by itself */
	redis_stop();
	sfx_run_for(rloop, 0.3);
	assert_false(storage_sub_ready(sub));
	if (redis_start_on(port) != 0)
		fail_msg("could not restart redis-server on port %d", port);
	assert_true(wait_ready(sub, 8.));
	assert_true(wait_ping(st, 8.));
	assert_int_equal(ss_publish(st, "certs", "third", 5, err, sizeof(err)), 0);
	assert_true(sfx_run_until(rloop, &rec.n, 3, 5.));
	assert_memory_equal(rec.last, "third", 5);
	/* freeing a subscription from its own callback is safe */
	sub2 = storage_subscribe(st, "certs", sub_cb, &rec2, err, sizeof(err));
	assert_non_null(sub2);
	rec2.self_free = sub2;
	assert_true(wait_ready(sub2, 5.));
	assert_int_equal(ss_publish(st, "certs", "fourth", 6, err, sizeof(err)), 0);
	assert_true(sfx_run_until(rloop, &rec2.n, 1, 5.));
	assert_true(sfx_run_until(rloop, &rec.n, 4, 5.));
	assert_null(rec2.self_free);
	sfx_run_for(rloop, 0.1);
	storage_sub_free(sub);
	storage_close(other);
}

/* A test CA, a server certificate for redis.test and 127.0.0.1, and another
 * CA that signed nothing of this server: made with the openssl tool. */
static int tls_make_certs(void)
{
	char cmd[4096];

	snprintf(cmd, sizeof(cmd),
		 "cd %s && for ca in ca other; do openssl req -x509 -newkey ec -pkeyopt "
		 "ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-$ca -keyout $ca.key "
		 "-out $ca.pem || exit 1; done && openssl req -newkey ec -pkeyopt "
		 "ec_paramgen_curve:P-256 -nodes -subj /CN=server -keyout server.key -out server.csr "
		 "&& printf 'subjectAltName=DNS:redis.test,IP:127.0.0.1\n' > server.ext && "
		 "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
		 "-extfile server.ext -out server.pem", redis_dir);
	strncat(cmd, " >/dev/null 2>&1", sizeof(cmd) - strlen(cmd) - 1);
	return system(cmd) == 0 ? 0 : -1;
}

/* TLS: the certificate must carry the name asked for and chain to a trusted
 * CA; each failure says which. Without ssl_verify any certificate goes. */
static void r_tls_refused(void **state)
{
	struct storage_conf conf = { .redis_ssl_server_name = "wrong.test" };
	char err[512], other[300];
	struct storage *st;

	st = redis_open_conf(&conf, "tls");
	assert_int_equal(ss_ping(st, err, sizeof(err)), -1);
	if (strstr(err, "TLS: server certificate refused: hostname mismatch") == NULL)
		fail_msg("wrong name: %s", err);
	storage_close(st);
	snprintf(other, sizeof(other), "%s/other.pem", redis_dir);
	memset(&conf, 0, sizeof(conf));
	conf.redis_ssl_ca_file = other;
	st = redis_open_conf(&conf, "tls");
	assert_int_equal(ss_ping(st, err, sizeof(err)), -1);
	if (strstr(err, "TLS: server certificate refused: ") == NULL)
		fail_msg("untrusted: %s", err);
	storage_close(st);
	/* no verification: the same wrong name (and the system store) go */
	{
		struct storage_conf noverify = { .redis_port = tls_port, .redis_ssl = 1,
						 .redis_ssl_server_name = "wrong.test" };

		st = redis_open_conf(&noverify, "tls");
		assert_int_equal(ss_ping(st, err, sizeof(err)), 0);
		storage_close(st);
	}
	/* plain TCP to the TLS port: no answer to a PING, a clear failure */
	{
		struct storage_conf plain = { .redis_port = tls_port, .redis_timeout_ms = 300 };
		int saved = use_tls;

		use_tls = 0;
		st = redis_open_conf(&plain, "tls");
		use_tls = saved;
		assert_int_equal(ss_ping(st, err, sizeof(err)), -1);
		storage_close(st);
	}
}

/* An ACL user (AUTH user password), on the command and pub/sub
 * connections; a wrong password is refused and never logged. */
static void r_acl(void **state)
{
	char err[512];
	struct storage *st;

	redis_admin("ACL SETUSER agent on >Agent-pw ~* &* +@all", NULL);
	{
		struct storage_conf acl = { .redis_username = "agent", .redis_auth = "Agent-pw" };
		struct storage_sub *sub;

		st = redis_open_conf(&acl, "acl");
		assert_int_equal(ss_ping(st, err, sizeof(err)), 0);
		assert_int_equal(ss_put(st, "certs/acl", "v", 1, 0, err, sizeof(err)), 0);
		sub = storage_subscribe(st, "certs", sub_cb, &(struct sub_rec){ 0 }, err, sizeof(err));
		assert_non_null(sub);
		assert_true(wait_ready(sub, 5.));
		storage_sub_free(sub);
		storage_close(st);
		acl.redis_auth = "Xyzzy-pw";
		st = redis_open_conf(&acl, "acl");
		assert_int_equal(ss_ping(st, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "AUTH refused: WRONGPASS"));
		assert_null(strstr(err, "Xyzzy"));
		storage_close(st);
	}
	redis_admin("ACL DELUSER agent", NULL);
}

/* Values far larger than a socket buffer or a TLS record go out in pieces
 * and come back whole (partial writes, replies fed to the reader in parts),
 * with small operations pipelined behind them. */
static void r_big(void **state)
{
	struct storage *st = *state;
	size_t n = 3 * 1024 * 1024 + 7, len = 0, i;
	char *big = malloc(n), *v = NULL, err[512];

	assert_non_null(big);
	for (i = 0; i < n; i++)
		big[i] = (char)(i * 2654435761u >> 13);
	assert_int_equal(ss_put(st, "certs/big", big, n, 0, err, sizeof(err)), 0);
	assert_int_equal(ss_put(st, "certs/small", "s", 1, 0, err, sizeof(err)), 0);
	assert_int_equal(ss_get(st, "certs/big", &v, &len, err, sizeof(err)), 0);
	assert_int_equal(len, n);
	assert_memory_equal(v, big, n);
	free(v);
	sbt_expect(st, "certs/small", "s", 1);
	free(big);
}

/* A listing longer than one deadline completes: each SCAN page starts the
 * deadline again, which bounds a store that stopped answering, not the size
 * of a listing (issue 23: at 1,000,000 names the start-up listing of
 * "certs/" timed out after 3 s and nodes started knowing no certificate). */
static void r_list_long(void **state)
{
	struct storage_conf conf = { .timeout_ms = 100 };
	const char *ns = fresh_ns();
	redisContext *c = redisConnect("127.0.0.1", redis_port);
	struct storage *st;
	redisReply *r;
	char prefix[128], **keys = NULL, err[512];
	size_t n = 0;
	double t0, took;

	assert_true(c != NULL && !c->err);
	snprintf(prefix, sizeof(prefix), "%s:certs/h", ns);
	r = redisCommand(c, "EVAL %s 0 %s",
			 "for i = 1, 300000 do redis.call('SET', ARGV[1] .. i, 'x') end return 1", prefix);
	assert_true(r != NULL && r->type == REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	st = redis_open_conf(&conf, ns);
	t0 = sfx_now_s();
	if (ss_list(st, "certs/", &keys, &n, err, sizeof(err)) != 0)
		fail_msg("list: %s", err);
	took = sfx_now_s() - t0;
	assert_int_equal(n, 300000);
	storage_list_free(keys, n);
	/* the listing must have outlasted one deadline, or this proves nothing */
	if (took <= 0.1)
		fail_msg("the listing took %.3f s, within one deadline: make it longer", took);
	print_message("listing 300,000 keys: %.2f s against a 100 ms deadline\n", took);
	storage_close(st);
	r = redisCommand(c, "EVAL %s 0 %s",
			 "for i = 1, 300000 do redis.call('DEL', ARGV[1] .. i) end return 1", prefix);
	freeReplyObject(r);
	redisFree(c);
}

/* 1 when <needle> (<n> bytes) is anywhere in the process's [heap] now,
 * freed chunks included. */
static int heap_holds(const char *needle, size_t n)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long lo, hi;
	int found = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "[heap]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2 &&
		    memmem((void *)lo, hi - lo, needle, n))
			found = 1;
	fclose(f);
	return found;
}

/* Issue 19 finding 10: a value (a private key, the account key) written and
 * read back leaves no copy in the heap once the caller cleansed its own: the
 * transport cleanses its output buffer, the formatted command, the reply and
 * the reader's buffer before they are freed. (Plain TCP: over TLS, OpenSSL's
 * read buffer of the live connection holds the record, which is not ours.) */
static void r_cleansed(void **state)
{
	struct storage *st = *state;
	size_t n = 6000;
	char *secret = sfx_random_letters(n);
	char probe[48];

	/* the probe: 48 bytes from the middle, kept on the stack */
	memcpy(probe, secret + n / 2, sizeof(probe));
	sfx_put_get_same(st, "certs/secret.test", secret, n);
	OPENSSL_cleanse(secret, n);
	free(secret);
	if (heap_holds(probe, sizeof(probe)))
		fail_msg("a copy of the stored value is left in the heap");
	OPENSSL_cleanse(probe, sizeof(probe));
}

/* A failed test must not leave the server frozen for the next ones. */
static int r_thaw(void **state)
{
	if (redis_pid > 0)
		kill(redis_pid, SIGCONT);
	return 0;
}

static void t_redis_missing(void **state)
{
	char path[300], log[2048] = "";
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/redis.log", redis_dir);
	fd = open(path, O_RDONLY);
	if (fd >= 0) {
		n = read(fd, log, sizeof(log) - 1);
		log[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	fail_msg("redis-server could not be started (is it installed? `make test` "
		 "installs it); its output: %s", log[0] ? log : "(none)");
}

/* ---- host names ---------------------------------------------------------- */

/* "localhost" works: resolved on a worker thread, never on the loop (with
 * TLS the certificate is still checked against server_name). */
static void r_dns_localhost(void **state)
{
	struct storage_conf conf = { .redis_host = "localhost" };
	int calls = gai_get(&gai_calls), on_loop = gai_get(&gai_on_loop);
	struct storage *st = redis_open_conf(&conf, fresh_ns());
	char *val = NULL, err[512];
	size_t len = 0;

	assert_true(wait_ping(st, 5.));
	sbt_put(st, "certs/dns.test", "by-name", 7, 0);
	if (ss_get(st, "certs/dns.test", &val, &len, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_int_equal(len, 7);
	assert_memory_equal(val, "by-name", 7);
	free(val);
	assert_true(gai_get(&gai_calls) > calls);
	assert_int_equal(gai_get(&gai_on_loop), on_loop);
	storage_close(st);
}

/* An address (v4 or v6) never reaches the resolver. */
static void r_dns_literal(void **state)
{
	struct storage_conf conf = { 0 }, v6 = { .redis_host = "::1", .redis_port = 1,
						  .redis_timeout_ms = 300 };
	int literal = gai_get(&gai_literal);
	struct storage *st = redis_open_conf(&conf, fresh_ns());
	char err[512];

	assert_true(wait_ping(st, 5.));
	storage_close(st);
	st = storage_open("redis", &v6, rloop, err, sizeof(err));
	assert_non_null(st);
	sfx_run_for(rloop, 0.2);
	assert_int_equal(storage_state(st, err, sizeof(err)), 0);
	if (strstr(err, "resolve") != NULL)
		fail_msg("::1: %s", err);
	storage_close(st);
	assert_int_equal(gai_get(&gai_literal), literal);
}

/* A name that does not resolve fails the connect with a clear error, like a
 * refused one (operations fail, the health says why); the slow resolution
 * runs beside the loop, which keeps ticking. */
static void r_dns_unresolvable(void **state)
{
	struct storage_conf conf = { .redis_host = "slow-no-such-host.invalid",
				     .redis_timeout_ms = 3000 };
	struct rec r = { 0 };
	struct gap_meter gap;
	int n = 0, on_loop = gai_get(&gai_on_loop);
	struct storage *st;
	char err[512];
	double t0;

	gap_start(&gap);
	t0 = sfx_now_s();
	st = redis_open_conf(&conf, fresh_ns());
	assert_true(sfx_now_s() - t0 < 0.2);
	r.count = &n;
	assert_non_null(storage_get(st, "certs/x.test", cb_rec, &r));
	assert_true(sfx_run_until(rloop, &n, 1, 5.));
	ev_timer_stop(rloop, &gap.w);
	assert_int_equal(r.rc, -1);
	if (strstr(r.err, "cannot resolve slow-no-such-host.invalid: ") == NULL)
		fail_msg("error: %s", r.err);
	/* the resolver took GAI_SLOW_MS, the loop did not wait for it */
	assert_true(r.at - t0 >= GAI_SLOW_MS / 1000. - 0.05);
	if (gap.max > 0.25)
		fail_msg("the loop stalled %.0f ms", gap.max * 1000);
	assert_int_equal(storage_state(st, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "cannot resolve slow-no-such-host.invalid"));
	assert_int_equal(gai_get(&gai_on_loop), on_loop);
	storage_close(st);

	/* the same without the delay: fails as fast as the resolver answers */
	conf.redis_host = "no-such-host.invalid";
	st = redis_open_conf(&conf, fresh_ns());
	sfx_run_for(rloop, 0.3);
	assert_int_equal(storage_state(st, err, sizeof(err)), 0);
	if (strstr(err, "cannot resolve no-such-host.invalid: ") == NULL)
		fail_msg("state: %s", err);
	storage_close(st);
}

/* A connection given up while its name is being resolved (connect timeout,
 * close): the late answer touches nothing (ASan watches). */
static void r_dns_cancel(void **state)
{
	struct storage_conf conf = { .redis_host = "slow-no-such-host.invalid",
				     .redis_timeout_ms = 200 };
	struct rec r = { 0 };
	struct storage *st;
	int n = 0;
	double t0 = sfx_now_s();

	st = redis_open_conf(&conf, fresh_ns());
	r.count = &n;
	assert_non_null(storage_get(st, "certs/x.test", cb_rec, &r));
	assert_true(sfx_run_until(rloop, &n, 1, 3.));
	assert_int_equal(r.rc, -1);
	/* the connect timeout, not the resolver, ended the attempt */
	if (r.at - t0 > 0.8)
		fail_msg("answered after %.0f ms: %s", (r.at - t0) * 1000, r.err);
	if (strstr(r.err, "cannot resolve slow-no-such-host.invalid: no answer within 200 ms") ==
	    NULL)
		fail_msg("error: %s", r.err);
	sfx_run_for(rloop, 1.5);	/* the late answers land while retries go on */
	storage_close(st);
	/* closed at once, the resolution still under way */
	st = redis_open_conf(&conf, fresh_ns());
	storage_close(st);
}

/* With ssl_verify and no ssl_ca_file the system store is used, parsed at
 * open: a bundle ($SSL_CERT_FILE) removed right after the open still
 * verifies the server; a missing bundle is a clear error at open. */
static void r_tls_system_store(void **state)
{
	struct storage_conf conf = { .redis_host = "localhost", .redis_port = tls_port,
				     .redis_ssl = 1, .redis_ssl_verify = 1,
				     .redis_ssl_server_name = "redis.test",
				     .redis_timeout_ms = 2000 };
	char bundle[300], cmd[700], err[512], *val = NULL;
	struct storage *st;
	size_t len = 0;

	snprintf(bundle, sizeof(bundle), "%s/bundle.pem", redis_dir);
	snprintf(cmd, sizeof(cmd), "cp %s/ca.pem %s", redis_dir, bundle);
	assert_int_equal(system(cmd), 0);
	setenv("SSL_CERT_FILE", bundle, 1);
	conf.redis_namespace = fresh_ns();
	st = storage_open("redis", &conf, rloop, err, sizeof(err));
	unlink(bundle);
	if (st == NULL)
		fail_msg("open: %s", err);
	assert_true(wait_ping(st, 5.));
	sbt_put(st, "certs/sys.test", "v", 1, 0);
	if (ss_get(st, "certs/sys.test", &val, &len, err, sizeof(err)) != 0)
		fail_msg("get: %s", err);
	assert_int_equal(len, 1);
	free(val);
	storage_close(st);

	st = storage_open("redis", &conf, rloop, err, sizeof(err));
	unsetenv("SSL_CERT_FILE");
	assert_null(st);
	if (strstr(err, "system CA store") == NULL || strstr(err, bundle) == NULL)
		fail_msg("open: %s", err);
}

int main(void)
{
	static const struct CMUnitTest behaviour[] = {
		STORAGE_BEHAVIOUR_TESTS,
		cmocka_unit_test_setup_teardown(r_namespaces, sbt_setup, sbt_teardown),
		cmocka_unit_test(r_conf_errors),
		cmocka_unit_test_setup_teardown(r_feed, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_feed_members, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_scan_pages, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_pipeline, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_bound, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_never_inside, sbt_setup, sbt_teardown),
		cmocka_unit_test_teardown(r_close_inflight, r_thaw),
		cmocka_unit_test_teardown(r_sigstop, r_thaw),
		cmocka_unit_test_setup_teardown(r_killed, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_pubsub, sbt_setup, sbt_teardown),
		cmocka_unit_test(r_acl),
		cmocka_unit_test_setup_teardown(r_big, sbt_setup, sbt_teardown),
		cmocka_unit_test(r_list_long),
		cmocka_unit_test_setup_teardown(r_cleansed, sbt_setup, sbt_teardown),
		cmocka_unit_test(r_dns_localhost),
		cmocka_unit_test(r_dns_literal),
		cmocka_unit_test(r_dns_unresolvable),
		cmocka_unit_test(r_dns_cancel),
	};
	static const struct CMUnitTest over_tls[] = {
		STORAGE_BEHAVIOUR_TESTS,
		cmocka_unit_test_setup_teardown(r_feed, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_pipeline, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_bound, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_killed, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_pubsub, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_big, sbt_setup, sbt_teardown),
		cmocka_unit_test(r_tls_refused),
		cmocka_unit_test(r_dns_localhost),
		cmocka_unit_test(r_tls_system_store),
	};
	static const struct CMUnitTest missing[] = {
		cmocka_unit_test(t_redis_missing),
	};
	int fails;

	snprintf(redis_dir, sizeof(redis_dir), "/tmp/test_storage_redis.XXXXXX");
	if (mkdtemp(redis_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	atexit(redis_cleanup);
	main_thread = pthread_self();
	signal(SIGPIPE, SIG_IGN);
	rloop = ev_loop_new(EVFLAG_AUTO);
	if (rloop == NULL)
		return 1;
	if (tls_make_certs() != 0) {
		fprintf(stderr, "openssl could not make the test CA\n");
		return 1;
	}
	tls_port = sfx_free_port();
	if (redis_start() != 0)
		return cmocka_run_group_tests_name("storage_redis", missing, NULL, NULL) ? 1 : 1;
	sbt_open = redis_open_fresh;
	sbt_close = storage_close;
	fails = cmocka_run_group_tests_name("storage_redis", behaviour, NULL, NULL);
	use_tls = 1;
	fails += cmocka_run_group_tests_name("storage_redis_tls", over_tls, NULL, NULL);
	ev_loop_destroy(rloop);
	return fails ? 1 : 0;
}
