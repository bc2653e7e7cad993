/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/jobs against shm storage on a real libev loop, with a
 * real ACME client and HTTP client pointed at 127.0.0.1:9 (nothing listens:
 * orders and ask_url requests fail fast, the way a CA that cannot be reached
 * fails them):
 *   - single flight: several requests for one host make one job, one order;
 *   - max_concurrent_orders counts every stage: jobs held at ask_url (a
 *     server that accepts and never answers) and at another node's lock keep
 *     the rest queued;
 *   - backoff: memory answers; a shared record refuses a job without an
 *     order and without a new failure; an admin (forced) job skips it;
 *   - the queue never recurses: 1000 jobs failing at once all end, each end
 *     at a bounded stack depth, none inside jobs_issue().
 * The jobs' `ended` hook is the observation seam. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "acme/crypto.h"
#include "tests/unit/core_fixture.h"

#include "acme/acme.h"
#include "acme/http.h"
#include "core/certstore.h"
#include "core/challenges.h"
#include "core/issuers.h"
#include "core/jobs.h"
#include "lib/log.h"

struct t {
	struct fx f;
	struct certstore *cs;
	struct challenges *ch;
	struct http_client *http;
	struct issuers *iss;
	struct jobs *js;
	int ended, ended_ok;
	int in_issue;		/* set around jobs_issue() */
	int ended_inside;	/* an end reported inside jobs_issue() */
	char *stack_base;
	size_t max_depth;
	int listen_fd;		/* a server that never answers */
};

static void on_ended(void *arg, const char *host, int ok)
{
	struct t *t = arg;
	char here;

	t->ended++;
	t->ended_ok += ok;
	if (t->in_issue)
		t->ended_inside = 1;
	if (t->stack_base && (size_t)(t->stack_base - &here) > t->max_depth)
		t->max_depth = (size_t)(t->stack_base - &here);
}

/* Opens the modules over a config of <extra> JSON members. */
static struct t *open_jobs(const char *extra)
{
	struct t *t = calloc(1, sizeof(*t));
	struct jobs_hooks h = { .ended = on_ended };
	char err[256] = "", json[1024];
	int down;

	assert_non_null(t);
	t->listen_fd = -1;
	snprintf(json, sizeof(json), "\"api_uri\":\"http://127.0.0.1:9/directory\"%s%s",
		 extra[0] ? "," : "", extra);
	fx_open(&t->f, json);
	t->cs = certstore_new(t->f.loop, t->f.cfg, t->f.st, &t->f.health, err, sizeof(err));
	assert_non_null(t->cs);
	assert_int_equal(certstore_runtime_open(t->cs, err, sizeof(err)), 0);
	t->ch = challenges_new(t->f.st, &t->f.health);
	assert_non_null(t->ch);
	t->http = http_client_new(t->f.loop, NULL, err, sizeof(err));
	assert_non_null(t->http);
	/* the CA: nobody listens on port 9, orders fail at once */
	t->iss = issuers_new(t->f.loop, t->f.cfg, t->f.st, &t->f.health, &challenges_acme_hooks, t->ch,
			     "node", err, sizeof(err));
	if (!t->iss)
		fail_msg("issuers_new: %s", err);
	if (issuers_attach(t->iss, &down, err, sizeof(err)) == -1)
		fail_msg("issuers_attach: %s", err);
	t->js = jobs_new(t->f.loop, t->f.cfg, t->f.st, t->iss, t->http, t->cs, &t->f.health);
	assert_non_null(t->js);
	h.arg = t;
	jobs_set_hooks(t->js, &h);
	return t;
}

static int teardown(void **state)
{
	struct t *t = *state;

	if (!t)
		return 0;
	issuers_close_clients(t->iss);
	challenges_free(t->ch);
	jobs_free(t->js);
	issuers_free(t->iss);
	certstore_free(t->cs);
	http_client_free(t->http);
	if (t->listen_fd != -1)
		close(t->listen_fd);
	fx_close(&t->f);
	free(t);
	return 0;
}

static int issue(struct t *t, const char *host, int renewal, int forced)
{
	int rc;

	t->in_issue = 1;
	rc = jobs_issue(t->js, host, renewal, forced, NULL);
	t->in_issue = 0;
	return rc;
}

static struct jobs_stats stats(struct t *t)
{
	struct jobs_stats s;

	jobs_stats(t->js, &s);
	return s;
}

static int cond_ended(void *arg)
{
	struct t *t = arg;

	return stats(t).jobs == 0;
}

/* The resume in the background read every record, and its jobs ended. */
static int cond_resumed(void *arg)
{
	struct t *t = arg;

	return !jobs_resuming(t->js) && stats(t).jobs == 0;
}

/* A TCP server on 127.0.0.1 that accepts (through the backlog) and never
 * answers. Returns its port. */
static int silent_server(struct t *t)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(t->listen_fd >= 0);
	assert_int_equal(bind(t->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(t->listen_fd, 64), 0);
	assert_int_equal(getsockname(t->listen_fd, (struct sockaddr *)&sa, &sl), 0);
	return ntohs(sa.sin_port);
}

static void test_single_flight(void **state)
{
	struct t *t = open_jobs("");
	struct jobs_stats s;
	time_t until = 0;

	*state = t;
	assert_int_equal(issue(t, "one.example.com", 0, 0), 0);
	assert_int_equal(issue(t, "one.example.com", 0, 0), 0);
	assert_int_equal(issue(t, "one.example.com", 0, 1), 0);
	s = stats(t);
	assert_int_equal(s.jobs, 1);
	assert_int_equal(s.queued, 1);
	assert_true(jobs_active(t->js, "one.example.com"));
	assert_false(jobs_active(t->js, "two.example.com"));
	/* nothing happens inside the calls: the job starts on a later turn */
	assert_int_equal(t->ended, 0);

	assert_true(fx_run_until(&t->f, cond_ended, t, 20));
	s = stats(t);
	assert_int_equal(t->ended, 1);
	assert_int_equal(t->ended_ok, 0);
	assert_int_equal(s.orders_started, 1);
	assert_int_equal(s.orders_failed, 1);
	assert_int_equal(s.orders_running, 0);
	assert_false(jobs_active(t->js, "one.example.com"));
	/* the failure is remembered in memory for the SPOE path */
	assert_true(jobs_backoff_active(t->js, "one.example.com", &until));
	assert_true(until > time(NULL));
	assert_int_equal(t->ended_inside, 0);
}

static void test_cap_counts_ask_stage(void **state)
{
	struct t *t;
	char extra[256], host[64];
	struct jobs_stats s;
	int port, i;

	t = open_jobs("\"max_concurrent_orders\":2");
	*state = t;
	port = silent_server(t);
	/* ask_url is a live key: set as a reload would */
	snprintf(extra, sizeof(extra), "http://127.0.0.1:%d/ask", port);
	free(t->f.cfg->ask_url);
	t->f.cfg->ask_url = strdup(extra);
	for (i = 0; i < 5; i++) {
		snprintf(host, sizeof(host), "cap%d.example.com", i);
		assert_int_equal(issue(t, host, 0, 0), 0);
	}
	fx_run_for(&t->f, 0.5);
	s = stats(t);
	/* two wait for ask_url, no order runs, three stay queued */
	assert_int_equal(s.jobs, 5);
	assert_int_equal(s.queued, 3);
	assert_int_equal(s.orders_running, 0);
	assert_int_equal(s.orders_started, 0);
	assert_int_equal(t->ended, 0);
	/* joining a running job adds none */
	assert_int_equal(issue(t, "cap0.example.com", 0, 0), 0);
	assert_int_equal(stats(t).jobs, 5);
}

static void test_cap_counts_lock_stage(void **state)
{
	struct t *t = open_jobs("\"max_concurrent_orders\":1");
	struct storage_res res;
	char err[256];
	struct jobs_stats s;

	*state = t;
	/* another node holds the issuance lock of the first host */
	assert_int_equal(storage_wait(t->f.st, storage_lock(t->f.st, "issue/lk1.example.com", "other-node",
							  60000, NULL, NULL), &res, err, sizeof(err)), 0);
	assert_int_equal(issue(t, "lk1.example.com", 0, 1), 0);
	assert_int_equal(issue(t, "lk2.example.com", 0, 1), 0);
	fx_run_for(&t->f, 0.5);
	s = stats(t);
	assert_int_equal(s.jobs, 2);
	assert_int_equal(s.queued, 1);
	assert_int_equal(s.orders_started, 0);
	assert_int_equal(t->ended, 0);
}

static void test_backoff(void **state)
{
	struct t *t = open_jobs("");
	time_t now = time(NULL), until = 0;
	char rec[128];
	struct jobs_stats s;

	*state = t;
	/* memory */
	assert_false(jobs_backoff_active(t->js, "m.example.com", NULL));
	jobs_backoff_remember(t->js, "m.example.com", now + 600, 1);
	assert_true(jobs_backoff_active(t->js, "m.example.com", &until));
	assert_int_equal(until, now + 600);
	jobs_backoff_remember(t->js, "m.example.com", now - 1, 2);
	assert_false(jobs_backoff_active(t->js, "m.example.com", &until));
	assert_int_equal(until, now - 1);

	/* another node's record refuses the job: no order, no new failure */
	snprintf(rec, sizeof(rec), "{\"failures\":3,\"until\":%lld,\"error\":\"x\"}",
		 (long long)(now + 600));
	fx_put(&t->f, "backoff/b.example.com", rec, strlen(rec));
	assert_int_equal(issue(t, "b.example.com", 0, 0), 0);
	assert_true(fx_run_until(&t->f, cond_ended, t, 10));
	s = stats(t);
	assert_int_equal(t->ended, 1);
	assert_int_equal(s.refused_backoff, 1);
	assert_int_equal(s.orders_started, 0);
	assert_true(jobs_backoff_active(t->js, "b.example.com", &until));
	assert_int_equal(until, now + 600);

	/* an admin request skips it and orders */
	assert_int_equal(issue(t, "b.example.com", 0, 1), 0);
	assert_true(fx_run_until(&t->f, cond_ended, t, 20));
	s = stats(t);
	assert_int_equal(t->ended, 2);
	assert_int_equal(s.orders_started, 1);
	assert_int_equal(s.refused_backoff, 1);
}

static void test_queue_never_recurses(void **state)
{
	struct t *t = open_jobs("\"ask_url\":\"http://127.0.0.1:9/ask\"");
	char host[64], base;
	struct jobs_stats s;
	int i;

	*state = t;
	log_level_max = LOG_LVL_ERR;	/* 1000 failures, 2000 lines */
	t->stack_base = &base;
	for (i = 0; i < 1000; i++) {
		snprintf(host, sizeof(host), "q%04d.example.com", i);
		assert_int_equal(issue(t, host, 0, 0), 0);
	}
	assert_int_equal(stats(t).queued, 1000);
	assert_true(fx_run_until(&t->f, cond_ended, t, 60));
	log_level_max = LOG_LVL_WARN;
	s = stats(t);
	assert_int_equal(t->ended, 1000);
	assert_int_equal(s.refused_ask, 1000);
	assert_int_equal(s.queued, 0);
	assert_int_equal(t->ended_inside, 0);
	/* one level per queued job would be hundreds of KB deep */
	print_message("deepest job end: %zu bytes below the test\n", t->max_depth);
	assert_true(t->max_depth < 64 * 1024);
	assert_true(jobs_backoff_active(t->js, "q0999.example.com", NULL));
	/* ask_url's refusals are remembered in memory only: strangers' names
	 * leave no stored record */
	{
		struct storage_res res;
		char err[256];

		assert_int_equal(storage_wait(t->f.st, storage_list(t->f.st, "backoff/", NULL, NULL),
					      &res, err, sizeof(err)), 0);
		assert_int_equal(res.n, 0);
		storage_res_clear(&res);
	}
}

/* Issue 19 finding 7: cut-off issuances are resumed under today's policy. A
 * name no longer allowed is dropped, a new name passes the fleet's backoff
 * and ask_url, a "renewal" record of a certificate not held is a new name;
 * nothing is ordered without them, and refused records are deleted. */
static void test_resume_policy(void **state)
{
	struct t *t = open_jobs("\"ask_url\":\"http://127.0.0.1:9/ask\"");
	char rec[128], err[256];
	struct storage_res res;
	struct jobs_stats s;

	*state = t;
	fx_put(&t->f, "pending/evil.other.org", "new", 3);		/* not in domains */
	fx_put(&t->f, "pending/asked.example.com", "new", 3);		/* ask_url refuses */
	fx_put(&t->f, "pending/forged.example.com", "renewal", 7);	/* no certificate held */
	fx_put(&t->f, "pending/bo.example.com", "new", 3);		/* in the fleet's backoff */
	snprintf(rec, sizeof(rec), "{\"failures\":3,\"until\":%lld,\"error\":\"x\"}",
		 (long long)time(NULL) + 600);
	fx_put(&t->f, "backoff/bo.example.com", rec, strlen(rec));
	jobs_resume_pending(t->js);
	assert_true(jobs_resuming(t->js));	/* in the background: nothing read yet */
	assert_true(fx_run_until(&t->f, cond_resumed, t, 20));
	s = stats(t);
	assert_int_equal(t->ended, 3);
	assert_int_equal(s.orders_started, 0);
	assert_int_equal(s.refused_ask, 2);
	assert_int_equal(s.refused_backoff, 1);
	/* every refused record is gone: the next start does not try them again */
	fx_run_for(&t->f, 0.1);
	assert_int_equal(storage_wait(t->f.st, storage_list(t->f.st, "pending/", NULL, NULL), &res,
				      err, sizeof(err)), 0);
	assert_int_equal(res.n, 0);
	storage_res_clear(&res);
}

/* max_queued_orders bounds the on-demand names waiting for a slot; renewals
 * and admin requests are not refused by it. */
static void test_queue_bound(void **state)
{
	struct t *t = open_jobs("\"max_concurrent_orders\":1, \"max_queued_orders\":3");
	char extra[256], host[64];
	struct jobs_stats s;
	int port, i;

	*state = t;
	port = silent_server(t);
	snprintf(extra, sizeof(extra), "http://127.0.0.1:%d/ask", port);
	free(t->f.cfg->ask_url);
	t->f.cfg->ask_url = strdup(extra);
	assert_int_equal(issue(t, "qb0.example.com", 0, 0), 0);
	fx_run_for(&t->f, 0.2);		/* qb0 leaves the queue: it asks */
	for (i = 1; i <= 3; i++) {
		snprintf(host, sizeof(host), "qb%d.example.com", i);
		assert_int_equal(issue(t, host, 0, 0), 0);
	}
	assert_true(jobs_queue_full(t->js));
	for (i = 4; i < 1004; i++) {
		snprintf(host, sizeof(host), "qb%d.example.com", i);
		assert_int_equal(issue(t, host, 0, 0), JOBS_QUEUE_FULL);
	}
	/* joining a queued name is no new job */
	assert_int_equal(issue(t, "qb2.example.com", 0, 0), 0);
	assert_int_equal(issue(t, "renew.example.com", 1, 0), 0);
	assert_int_equal(issue(t, "admin.example.com", 0, 1), 0);
	s = stats(t);
	assert_int_equal(s.refused_queue, 1000);
	assert_int_equal(s.queued, 5);
	assert_int_equal(s.jobs, 6);
	assert_int_equal(s.orders_started, 0);
	assert_false(jobs_active(t->js, "qb4.example.com"));
	assert_false(jobs_backoff_active(t->js, "qb4.example.com", NULL));
}

/* The backoff memory is bounded: the least recently recorded goes. */
static void test_backoff_lru(void **state)
{
	struct t *t = open_jobs("");
	time_t now = time(NULL);
	char host[64];
	int i;

	*state = t;
	for (i = 0; i < 50000; i++) {
		snprintf(host, sizeof(host), "b%05d.example.com", i);
		jobs_backoff_remember(t->js, host, now + 600, 1);
	}
	assert_int_equal(stats(t).backoff_mem, 50000);
	/* recorded again: now the most recent */
	jobs_backoff_remember(t->js, "b00000.example.com", now + 900, 2);
	jobs_backoff_remember(t->js, "new1.example.com", now + 600, 1);
	jobs_backoff_remember(t->js, "new2.example.com", now + 600, 1);
	assert_int_equal(stats(t).backoff_mem, 50000);
	assert_int_equal(stats(t).backoff_evicted, 2);
	assert_true(jobs_backoff_active(t->js, "b00000.example.com", NULL));
	assert_false(jobs_backoff_active(t->js, "b00001.example.com", NULL));
	assert_false(jobs_backoff_active(t->js, "b00002.example.com", NULL));
	assert_true(jobs_backoff_active(t->js, "b00003.example.com", NULL));
	assert_true(jobs_backoff_active(t->js, "new2.example.com", NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_single_flight, teardown),
		cmocka_unit_test_teardown(test_cap_counts_ask_stage, teardown),
		cmocka_unit_test_teardown(test_resume_policy, teardown),
		cmocka_unit_test_teardown(test_cap_counts_lock_stage, teardown),
		cmocka_unit_test_teardown(test_backoff, teardown),
		cmocka_unit_test_teardown(test_queue_never_recurses, teardown),
		cmocka_unit_test_teardown(test_queue_bound, teardown),
		cmocka_unit_test_teardown(test_backoff_lru, teardown),
	};

	log_level_max = LOG_LVL_WARN;
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	/* a key generation an ended order left on a worker thread must not run
	 * into OpenSSL's clean-up at exit (the agent's main does the same) */
	crypto_async_shutdown();
	return rc;
}
