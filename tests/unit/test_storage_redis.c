/* Storage behaviour table against a real redis-server started here on a free
 * loopback port (no persistence, temp dir, killed at the end), plus
 * namespace isolation, AUTH/SELECT, reconnect after a restart and pub/sub on
 * a libev loop. A missing redis-server is a failure, not a skip. */
#define STORAGE_TEST_NO_MAIN
#include "tests/unit/test_storage.c"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <ev.h>
#include <hiredis/hiredis.h>

static pid_t redis_pid = -1;
static int redis_port;
static char redis_dir[256];
static unsigned ns_seq;
static char cur_ns[64];

static int free_port(void)
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

/* Starts redis-server on <port>; polls PING for up to 5 s. 0 or -1. */
static int redis_start_on(int port)
{
	char ports[16], logf[300];
	int i;

	snprintf(ports, sizeof(ports), "%d", port);
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
		execlp("redis-server", "redis-server", "--port", ports, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", "--dir", redis_dir,
		       "--daemonize", "no", (char *)NULL);
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
		redis_port = free_port();
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

static struct storage *redis_open_ns(const char *ns, int db, const char *auth, char *err,
				     size_t errlen)
{
	struct storage_conf conf = {
		.redis_host = "127.0.0.1", .redis_port = redis_port, .redis_database = db,
		.redis_auth = auth, .redis_namespace = ns, .redis_timeout_ms = 500,
	};

	return storage_open("redis", &conf, err, errlen);
}

static struct storage *redis_open_fresh(void)
{
	char err[512];
	struct storage *st;

	snprintf(cur_ns, sizeof(cur_ns), "t%ld-%u", (long)getpid(), ns_seq++);
	st = redis_open_ns(cur_ns, 0, NULL, err, sizeof(err));
	if (st == NULL)
		print_error("open redis: %s\n", err);
	return st;
}

static void r_namespaces(void **state)
{
	struct storage *a = *state, *b, *none, *db2;
	char err[512], **keys = NULL;
	size_t n = 0;

	b = redis_open_ns("other", 0, NULL, err, sizeof(err));
	assert_non_null(b);
	sbt_put(a, "certs/x.test", "from-a", 6, 0);
	sbt_put(b, "certs/x.test", "from-b", 6, 0);
	sbt_put(b, "certs/y.test", "only-b", 6, 0);
	sbt_expect(a, "certs/x.test", "from-a", 6);
	sbt_expect(b, "certs/x.test", "from-b", 6);
	sbt_expect_absent(a, "certs/y.test");
	sbt_expect_list(a, "", (const char *const[]){ "certs/x.test", NULL });
	assert_int_equal(storage_lock(a, "issue/x", "A", 5000, err, sizeof(err)), 0);
	assert_int_equal(storage_lock(b, "issue/x", "B", 5000, err, sizeof(err)), 0);
	assert_int_equal(storage_del(b, "certs/x.test", err, sizeof(err)), 0);
	sbt_expect(a, "certs/x.test", "from-a", 6);
	/* no namespace: raw keys; the other namespaces' keys (with ':') are not listed */
	none = redis_open_ns(NULL, 0, NULL, err, sizeof(err));
	assert_non_null(none);
	assert_int_equal(storage_list(none, "", &keys, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	storage_list_free(keys, n);
	sbt_put(none, "certs/z", "raw", 3, 0);
	assert_true(redis_answers(redis_port));
	sbt_expect_list(none, "", (const char *const[]){ "certs/z", NULL });
	/* SELECT: another database is another keyspace */
	db2 = redis_open_ns(cur_ns, 2, NULL, err, sizeof(err));
	assert_non_null(db2);
	sbt_expect_absent(db2, "certs/x.test");
	sbt_put(db2, "certs/x.test", "db2", 3, 0);
	sbt_expect(a, "certs/x.test", "from-a", 6);
	assert_int_equal(storage_del(none, "certs/z", err, sizeof(err)), 0);
	storage_close(db2);
	storage_close(none);
	storage_close(b);
}

static void r_conf_errors(void **state)
{
	struct storage_conf conf = { .redis_port = redis_port, .redis_ssl = 1 };
	char err[512] = "";
	struct storage *st;
	redisContext *c;
	redisReply *r;

	assert_null(storage_open("redis", &conf, err, sizeof(err)));
	assert_non_null(strstr(err, "ssl"));
	conf.redis_ssl = 0;
	conf.redis_namespace = "bad*ns";
	assert_null(storage_open("redis", &conf, err, sizeof(err)));
	assert_non_null(strstr(err, "namespace"));
	/* unreachable server: open succeeds, operations fail with a reason */
	conf.redis_namespace = NULL;
	conf.redis_port = free_port();
	st = storage_open("redis", &conf, err, sizeof(err));
	assert_non_null(st);
	assert_int_equal(storage_ping(st, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "ping"));
	storage_close(st);
	/* AUTH: right password works, a wrong one is refused at open */
	c = redisConnect("127.0.0.1", redis_port);
	assert_true(c != NULL && !c->err);
	r = redisCommand(c, "CONFIG SET requirepass s3cret");
	assert_non_null(r);
	freeReplyObject(r);
	st = redis_open_ns("auth", 0, "s3cret", err, sizeof(err));
	assert_non_null(st);
	assert_int_equal(storage_ping(st, err, sizeof(err)), 0);
	storage_close(st);
	assert_null(redis_open_ns("auth", 0, "wrong", err, sizeof(err)));
	assert_non_null(strstr(err, "AUTH"));
	r = redisCommand(c, "AUTH s3cret");
	assert_non_null(r);
	freeReplyObject(r);
	r = redisCommand(c, "CONFIG SET requirepass %s", "");
	assert_non_null(r);
	freeReplyObject(r);
	redisFree(c);
}

static void r_reconnect(void **state)
{
	struct storage *st = *state;
	char err[512], *v = NULL;
	size_t len;
	int i, port = redis_port;

	sbt_put(st, "certs/r.test", "before", 6, 0);
	redis_stop();
	assert_int_equal(storage_get(st, "certs/r.test", &v, &len, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "certs/r.test"));
	/* while down, calls fail fast and say when the next attempt is */
	assert_int_equal(storage_ping(st, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "next attempt"));
	if (redis_start_on(port) != 0)
		fail_msg("could not restart redis-server on port %d", port);
	/* then it reconnects by itself once the 250 ms..5 s holdoff has passed */
	for (i = 0; i < 300 && storage_ping(st, err, sizeof(err)) != 0; i++)
		sbt_sleep_ms(20);
	assert_int_equal(storage_ping(st, err, sizeof(err)), 0);
	sbt_expect_absent(st, "certs/r.test");   /* no persistence: a new server */
	sbt_put(st, "certs/r.test", "after", 5, 0);
	sbt_expect(st, "certs/r.test", "after", 5);
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

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void cb_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* Runs <loop> until *<flag> reaches <want> or <secs> pass. */
static int run_until(struct ev_loop *loop, const int *flag, int want, double secs)
{
	double end = now_s() + secs;
	ev_timer tick;

	ev_timer_init(&tick, cb_tick, 0.02, 0.02);
	ev_timer_start(loop, &tick);
	while (*flag < want && now_s() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return *flag >= want;
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

static int wait_ready(struct ev_loop *loop, struct storage_sub *sub, double secs)
{
	struct ready_watch rw = { .sub = sub };

	ev_timer_init(&rw.w, cb_ready, 0.01, 0.01);
	rw.w.data = &rw;
	ev_timer_start(loop, &rw.w);
	run_until(loop, &rw.ready, 1, secs);
	ev_timer_stop(loop, &rw.w);
	return rw.ready;
}

static void r_pubsub(void **state)
{
	struct storage *st = *state, *other;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct sub_rec rec = { 0 }, rec2 = { 0 };
	struct storage_sub *sub, *sub2;
	char err[512];
	int port = redis_port, n;

	assert_non_null(loop);
	sub = storage_subscribe(st, loop, "certs", sub_cb, &rec, err, sizeof(err));
	if (sub == NULL)
		fail_msg("subscribe: %s", err);
	assert_true(wait_ready(loop, sub, 5.));
	assert_int_equal(storage_publish(st, "certs", "a.test\0bin", 10, err, sizeof(err)), 0);
	assert_true(run_until(loop, &rec.n, 1, 5.));
	assert_int_equal(rec.last_len, 10);
	assert_memory_equal(rec.last, "a.test\0bin", 10);
	/* another namespace, or another channel, does not reach us */
	other = redis_open_ns("elsewhere", 0, NULL, err, sizeof(err));
	assert_non_null(other);
	assert_int_equal(storage_publish(other, "certs", "nope", 4, err, sizeof(err)), 0);
	assert_int_equal(storage_publish(st, "renewals", "nope", 4, err, sizeof(err)), 0);
	assert_int_equal(storage_publish(st, "certs", "second", 6, err, sizeof(err)), 0);
	assert_true(run_until(loop, &rec.n, 2, 5.));
	n = 0;
	run_until(loop, &n, 1, 0.2);
	assert_int_equal(rec.n, 2);
	assert_memory_equal(rec.last, "second", 6);
	/* the subscription survives a redis restart by itself */
	redis_stop();
	run_until(loop, &n, 1, 0.3);
	assert_false(storage_sub_ready(sub));
	if (redis_start_on(port) != 0)
		fail_msg("could not restart redis-server on port %d", port);
	assert_true(wait_ready(loop, sub, 8.));
	assert_int_equal(storage_publish(st, "certs", "third", 5, err, sizeof(err)), 0);
	assert_true(run_until(loop, &rec.n, 3, 5.));
	assert_memory_equal(rec.last, "third", 5);
	/* freeing a subscription from its own callback is safe */
	sub2 = storage_subscribe(st, loop, "certs", sub_cb, &rec2, err, sizeof(err));
	assert_non_null(sub2);
	rec2.self_free = sub2;
	assert_true(wait_ready(loop, sub2, 5.));
	assert_int_equal(storage_publish(st, "certs", "fourth", 6, err, sizeof(err)), 0);
	assert_true(run_until(loop, &rec2.n, 1, 5.));
	assert_true(run_until(loop, &rec.n, 4, 5.));
	assert_null(rec2.self_free);
	run_until(loop, &n, 1, 0.1);
	storage_sub_free(sub);
	storage_close(other);
	ev_loop_destroy(loop);
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

int main(void)
{
	static const struct CMUnitTest behaviour[] = {
		STORAGE_BEHAVIOUR_TESTS,
		cmocka_unit_test_setup_teardown(r_namespaces, sbt_setup, sbt_teardown),
		cmocka_unit_test(r_conf_errors),
		cmocka_unit_test_setup_teardown(r_reconnect, sbt_setup, sbt_teardown),
		cmocka_unit_test_setup_teardown(r_pubsub, sbt_setup, sbt_teardown),
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
	signal(SIGPIPE, SIG_IGN);
	if (redis_start() != 0)
		return cmocka_run_group_tests_name("storage_redis", missing, NULL, NULL) ? 1 : 1;
	sbt_open = redis_open_fresh;
	sbt_close = storage_close;
	fails = cmocka_run_group_tests_name("storage_redis", behaviour, NULL, NULL);
	return fails ? 1 : 0;
}
