/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/renew against shm storage on a real libev loop, wired
 * to a certificate store and jobs as the agent wires them (store hooks ->
 * renew, jobs' renewed hook -> renew); the ACME client points at 127.0.0.1:9
 * (renewal orders fail fast, no ARI):
 *   - the index keeps certificates by due time, follows installs and removals;
 *   - a due certificate gets a renewal job on a pass, one not due does not;
 *   - a job in progress or a failure backoff reschedules the certificate
 *     (to the recheck or the end of the backoff) and the pass ends;
 *   - a certificate the threshold would renew in a loop waits for its last
 *     renewal time ("renewals/<host>") and is due a third of its life later;
 *   - in a fleet of three (member records on real file storage), a pass
 *     renews only this node's share; when the two others' leases are gone,
 *     the due certificates they owned are renewed here by the next pass. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "acme/crypto.h"
#include "tests/unit/core_fixture.h"

#include "acme/acme.h"
#include "acme/http.h"
#include "core/certstore.h"
#include "core/challenges.h"
#include "core/issuers.h"
#include "core/jobs.h"
#include "core/members.h"
#include "core/renew.h"
#include "lib/log.h"

#define DAY 86400

struct t {
	struct fx f;
	struct certstore *cs;
	struct challenges *ch;
	struct http_client *http;
	struct issuers *iss;
	struct jobs *js;
	struct renew *r;
};

static void on_installed(void *arg, const struct certstore_cert *c)
{
	renew_installed(((struct t *)arg)->r, c);
}

static void on_removed(void *arg, const char *host)
{
	renew_removed(((struct t *)arg)->r, host);
}

static void on_renewed(void *arg, const char *host, time_t at)
{
	renew_renewed(((struct t *)arg)->r, host, at);
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	struct certstore_hooks ch = { .installed = on_installed, .removed = on_removed };
	struct jobs_hooks jh = { .renewed = on_renewed };
	char err[256] = "";
	int down;

	assert_non_null(t);
	fx_open(&t->f, "\"api_uri\":\"http://127.0.0.1:9/directory\"");
	t->cs = certstore_new(t->f.loop, t->f.cfg, t->f.st, &t->f.health, err, sizeof(err));
	assert_non_null(t->cs);
	assert_int_equal(certstore_runtime_open(t->cs, err, sizeof(err)), 0);
	t->ch = challenges_new(t->f.st, &t->f.health);
	t->http = http_client_new(t->f.loop, NULL, err, sizeof(err));
	assert_non_null(t->http);
	t->iss = issuers_new(t->f.loop, t->f.cfg, t->f.st, &t->f.health, &challenges_acme_hooks, t->ch,
			     "node", err, sizeof(err));
	assert_non_null(t->iss);
	assert_int_equal(issuers_attach(t->iss, &down, err, sizeof(err)), 0);
	t->js = jobs_new(t->f.loop, t->f.cfg, t->f.st, t->iss, t->http, t->cs, &t->f.health);
	assert_non_null(t->js);
	t->r = renew_new(t->f.loop, t->f.cfg, t->f.st, t->iss, t->cs, t->js, &t->f.health);
	assert_non_null(t->r);
	ch.arg = jh.arg = t;
	certstore_set_hooks(t->cs, &ch);
	jobs_set_hooks(t->js, &jh);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	issuers_close_clients(t->iss);
	challenges_free(t->ch);
	jobs_free(t->js);
	issuers_free(t->iss);
	certstore_free(t->cs);
	renew_free(t->r);
	http_client_free(t->http);
	fx_close(&t->f);
	free(t);
	return 0;
}

static void install(struct t *t, const char *host, time_t nb, time_t na)
{
	size_t len;
	char *pem = fx_pem(host, nb, na, &len);

	assert_non_null(certstore_install(t->cs, host, pem, len));
	free(pem);
}

static size_t njobs(struct t *t)
{
	struct jobs_stats s;

	jobs_stats(t->js, &s);
	return s.jobs;
}

static void test_heap_order(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL), due, wake;

	assert_null(renew_first(t->r, NULL));
	/* threshold 14 days; due = min(not_after - 14 d, 2/3 of the life) */
	install(t, "x.example.com", now - 30 * DAY, now + 60 * DAY);	/* now + 30 d */
	install(t, "y.example.com", now - 10 * DAY, now + 80 * DAY);	/* now + 50 d */
	install(t, "z.example.com", now - 80 * DAY, now + 10 * DAY);	/* now - 20 d */
	assert_string_equal(renew_first(t->r, &wake), "z.example.com");
	assert_int_equal(wake, now - 20 * DAY);
	assert_int_equal(renew_times(t->r, "x.example.com", &due, &wake), 0);
	assert_int_equal(due, now + 30 * DAY);
	assert_int_equal(renew_times(t->r, "y.example.com", &due, &wake), 0);
	assert_int_equal(due, now + 50 * DAY);

	certstore_remove(t->cs, "z.example.com");
	assert_int_equal(renew_times(t->r, "z.example.com", &due, &wake), -1);
	assert_string_equal(renew_first(t->r, NULL), "x.example.com");
	/* a newer certificate for x moves it behind y */
	install(t, "x.example.com", now, now + 90 * DAY);		/* now + 60 d */
	assert_string_equal(renew_first(t->r, NULL), "y.example.com");
	certstore_remove(t->cs, "y.example.com");
	assert_string_equal(renew_first(t->r, NULL), "x.example.com");
	certstore_remove(t->cs, "x.example.com");
	assert_null(renew_first(t->r, NULL));
	/* nothing was due: no job */
	assert_int_equal(njobs(t), 0);
}

static void test_due_starts_renewal(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL), due, wake;

	install(t, "due.example.com", now - 80 * DAY, now + 10 * DAY);
	install(t, "later.example.com", now - 10 * DAY, now + 80 * DAY);
	renew_pass(t->r, 0);
	assert_true(jobs_active(t->js, "due.example.com"));
	assert_false(jobs_active(t->js, "later.example.com"));
	assert_int_equal(njobs(t), 1);
	/* back in the index at the recheck, not at its due time: the pass ended */
	assert_int_equal(renew_times(t->r, "due.example.com", &due, &wake), 0);
	assert_int_equal(due, now - 20 * DAY);
	assert_true(wake >= now + 3600 && wake <= time(NULL) + 3600);
	assert_string_equal(renew_first(t->r, NULL), "due.example.com");
	/* a second pass now has nothing due */
	renew_pass(t->r, 0);
	assert_int_equal(njobs(t), 1);
}

struct steady {
	struct t *t;
	ev_timer w;
	int n;
};

static void cb_steady_install(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct steady *st = w->data;
	char host[64];
	time_t now = time(NULL);

	snprintf(host, sizeof(host), "s%03d.example.com", st->n++);
	install(st->t, host, now - 10 * DAY, now + 80 * DAY);
}

static int cond_due_job(void *arg)
{
	return jobs_active(((struct t *)arg)->js, "due.example.com");
}

/* The timer's pass comes within its half second of a due certificate even
 * while other certificates keep being installed (a background read, a
 * take-over: thousands a second); each install used to push the pass back,
 * so that nothing due was renewed before they stopped. */
static void test_pass_not_postponed(void **state)
{
	struct t *t = *state;
	struct steady st = { .t = t };
	time_t now = time(NULL);
	double t0;

	renew_start(t->r);
	fx_run_for(&t->f, 0.6);		/* the start's pass: nothing installed yet */
	ev_timer_init(&st.w, cb_steady_install, 0.05, 0.05);
	st.w.data = &st;
	ev_timer_start(t->f.loop, &st.w);
	fx_run_for(&t->f, 0.3);
	install(t, "due.example.com", now - 80 * DAY, now + 10 * DAY);
	t0 = ev_time();
	assert_true(fx_run_until(&t->f, cond_due_job, t, 3.0));
	ev_timer_stop(t->f.loop, &st.w);
	assert_true(ev_time() - t0 < 1.5);
	assert_true(st.n >= 10);	/* the installs went on meanwhile */
}

static void test_job_or_backoff_reschedules(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL), due, wake;

	install(t, "busy.example.com", now - 80 * DAY, now + 10 * DAY);
	install(t, "failing.example.com", now - 80 * DAY, now + 10 * DAY);
	assert_int_equal(jobs_issue(t->js, "busy.example.com", 0, 1, NULL), 0);
	jobs_backoff_remember(t->js, "failing.example.com", now + 600, 2);
	renew_pass(t->r, 0);
	/* no second job for the busy host, none for the failing one */
	assert_int_equal(njobs(t), 1);
	assert_false(jobs_active(t->js, "failing.example.com"));
	assert_int_equal(renew_times(t->r, "busy.example.com", &due, &wake), 0);
	assert_true(wake >= now + 3600);
	assert_int_equal(renew_times(t->r, "failing.example.com", &due, &wake), 0);
	assert_int_equal(wake, now + 600);
	assert_string_equal(renew_first(t->r, NULL), "failing.example.com");
	renew_pass(t->r, 0);
	assert_int_equal(njobs(t), 1);
}

struct due_cond {
	struct t *t;
	const char *host;
	time_t want;
};

static int cond_due(void *arg)
{
	struct due_cond *c = arg;
	time_t due, wake;

	return renew_times(c->t->r, c->host, &due, &wake) == 0 && due == c->want;
}

static void test_no_renewal_loop(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL), nb = now - 3600, na = nb + 6 * DAY, due, wake;
	char rec[64];
	struct due_cond c = { t, "short.example.com", now - 3600 + 2 * DAY };

	/* a 6-day certificate under a 14-day threshold is due at once... */
	snprintf(rec, sizeof(rec), "{\"renewed_at\":%lld}", (long long)(now - 3600));
	fx_put(&t->f, "renewals/short.example.com", rec, strlen(rec));
	install(t, "short.example.com", nb, na);
	assert_int_equal(renew_times(t->r, "short.example.com", &due, &wake), 0);
	assert_int_equal(due, na - 14 * DAY);
	/* ...but its last renewal time is being read: no job meanwhile */
	renew_pass(t->r, 0);
	assert_int_equal(njobs(t), 0);
	/* renewed an hour ago: due a third of its life after that */
	assert_true(fx_run_until(&t->f, cond_due, &c, 5));

	/* a renewal recorded now (jobs' hook) moves the next one further */
	renew_renewed(t->r, "short.example.com", now);
	install(t, "short.example.com", now, now + 6 * DAY);
	assert_int_equal(renew_times(t->r, "short.example.com", &due, &wake), 0);
	assert_int_equal(due, now + 2 * DAY);
}

static void on_members(void *arg)
{
	renew_members_changed(arg);
}

struct count_cond {
	struct members *m;
	size_t want;
};

static int cond_count(void *arg)
{
	struct count_cond *c = arg;

	return members_count(c->m) == c->want;
}

static void test_fleet_share(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL), until;
	char dir[96], err[256] = "", host[64];
	struct storage_conf sc = { 0 };
	struct storage *st;
	struct storage_res res;
	struct members *m;
	struct count_cond c;
	size_t i, mine = 0;
	int was_mine[30];
	const char *self = "0123456789abcdef";

	snprintf(dir, sizeof(dir), "%s/fleet", t->f.dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	sc.file_path = dir;
	st = storage_open("file", &sc, t->f.loop, err, sizeof(err));
	assert_non_null(st);
	/* two other live members (records with a lease, no node behind them) */
	assert_int_equal(storage_wait(st, storage_put(st, "members/other1", "x", 1, 60, NULL, NULL),
				      &res, err, sizeof(err)), 0);
	assert_int_equal(storage_wait(st, storage_put(st, "members/other2", "x", 1, 60, NULL, NULL),
				      &res, err, sizeof(err)), 0);
	m = members_new(t->f.loop, st, &t->f.health, self, 4);
	assert_non_null(m);
	members_set_hook(m, on_members, t->r);
	renew_set_members(t->r, m);
	members_start(m);
	c.m = m;
	c.want = 3;
	assert_true(fx_run_until(&t->f, cond_count, &c, 3.0));

	for (i = 0; i < 30; i++) {
		snprintf(host, sizeof(host), "h%zu.example.com", i);
		install(t, host, now - 80 * DAY, now + 10 * DAY);
	}
	renew_pass(t->r, 0);
	for (i = 0; i < 30; i++) {
		snprintf(host, sizeof(host), "h%zu.example.com", i);
		was_mine[i] = strcmp(renew_owner(t->r, host), self) == 0;
		mine += was_mine[i];
		/* only this node's share was started */
		assert_int_equal(jobs_active(t->js, host), was_mine[i]);
	}
	print_message("this node's share: %zu of 30\n", mine);
	assert_int_equal(renew_share(t->r), mine);
	assert_true(mine > 0 && mine < 30);
	/* another pass starts none of the others' */
	renew_pass(t->r, 0);
	for (i = 0; i < 30; i++) {
		snprintf(host, sizeof(host), "h%zu.example.com", i);
		if (!was_mine[i])
			assert_false(jobs_active(t->js, host));
	}

	/* the two others are gone: their share is this node's now */
	assert_int_equal(storage_wait(st, storage_del(st, "members/other1", NULL, NULL), &res, err,
				      sizeof(err)), 0);
	assert_int_equal(storage_wait(st, storage_del(st, "members/other2", NULL, NULL), &res, err,
				      sizeof(err)), 0);
	c.want = 1;
	assert_true(fx_run_until(&t->f, cond_count, &c, 3.0));
	assert_int_equal(renew_share(t->r), 30);
	renew_pass(t->r, 0);
	for (i = 0; i < 30; i++) {
		snprintf(host, sizeof(host), "h%zu.example.com", i);
		if (!was_mine[i])
			assert_true(jobs_active(t->js, host));
		else
			assert_true(jobs_active(t->js, host) ||
				    jobs_backoff_active(t->js, host, &until));
	}
	renew_set_members(t->r, NULL);
	members_free(m);
	storage_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_heap_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_due_starts_renewal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pass_not_postponed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_or_backoff_reschedules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_renewal_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fleet_share, setup, teardown),
	};

	log_level_max = LOG_LVL_WARN;
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	/* a key generation an ended order left on a worker thread must not run
	 * into OpenSSL's clean-up at exit (the agent's main does the same) */
	crypto_async_shutdown();
	return rc;
}
