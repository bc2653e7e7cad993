/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/ratelimit: the window arithmetic on its own (load,
 * expiry, bound, reserve, when a full window frees, malformed records), the
 * registered domain by the Public Suffix List, the rate_limits config
 * defaults, and the budgets over real shm storage on a real libev loop:
 * orders spent at the check, the reserve kept for renewals, ARI renewals
 * exempt, certificates and failed validations recorded and refused, a
 * malformed stored record counted as empty and rewritten, two agents on one
 * store sharing one budget, cancelled checks never calling back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/core_fixture.h"

#include "core/ratelimit.h"
#include "lib/log.h"
#include "lib/metrics.h"

/* ---- window arithmetic --------------------------------------------------- */

static void test_window_load_expire_bound(void **state)
{
	struct ratelimit_window w = { 0 };
	time_t now = 1800000000;
	char err[128], text[256], *dump;

	/* out of order, one expired, one absurdly far ahead */
	snprintf(text, sizeof(text), "{\"v\":1,\"t\":[%lld,%lld,%lld,%lld]}", (long long)now - 10,
		 (long long)now - 4000, (long long)now - 100, (long long)now + 999999);
	assert_int_equal(ratelimit_window_load(&w, text, strlen(text), now, 3600, 10, err,
					       sizeof(err)), 0);
	assert_int_equal(w.n, 2);
	assert_true(w.t[0] == now - 100 && w.t[1] == now - 10);

	/* bounded: only the newest <keep> stay */
	assert_int_equal(ratelimit_window_add(&w, now, 2), 0);
	assert_int_equal(w.n, 2);
	assert_true(w.t[0] == now - 10 && w.t[1] == now);
	/* a clock that stepped back still leaves the window sorted */
	assert_int_equal(ratelimit_window_add(&w, now - 5, 3), 0);
	assert_true(w.n == 3 && w.t[0] == now - 10 && w.t[1] == now - 5 && w.t[2] == now);

	/* expiry at exactly the span */
	ratelimit_window_expire(&w, now - 10 + 3600, 3600);
	assert_int_equal(w.n, 2);

	/* round trip through the stored text */
	dump = ratelimit_window_dump(&w);
	assert_non_null(dump);
	ratelimit_window_clear(&w);
	assert_int_equal(ratelimit_window_load(&w, dump, strlen(dump), now, 3600, 10, err,
					       sizeof(err)), 0);
	assert_int_equal(w.n, 2);
	assert_true(w.t[0] == now - 5 && w.t[1] == now);
	free(dump);
	ratelimit_window_clear(&w);
}

static void test_window_malformed(void **state)
{
	static const char *const bad[] = {
		"", "garbage", "[]", "{}", "{\"v\":2,\"t\":[]}", "{\"v\":1,\"t\":\"x\"}",
		"{\"v\":1,\"t\":[1800000000,\"a\"]}", "{\"v\":1,\"t\":[-5]}", "{\"v\":1,\"t\":[0]}",
		"{\"v\":\"1\",\"t\":[]}", "{\"v\":1,\"t\":[1.5]}", "{\"v\":1}", "\xff\xfe{",
		NULL,
	};
	struct ratelimit_window w = { 0 };
	char err[128];
	size_t i;

	for (i = 0; bad[i]; i++) {
		/* a stamp left over from a previous load must not survive */
		assert_int_equal(ratelimit_window_add(&w, 1800000000, 10), 0);
		err[0] = '\0';
		assert_int_equal(ratelimit_window_load(&w, bad[i], strlen(bad[i]), 1800000000, 3600,
						       10, err, sizeof(err)), -1);
		assert_int_equal(w.n, 0);
		assert_true(err[0] != '\0');
	}
	ratelimit_window_clear(&w);
}

static void test_reserve(void **state)
{
	/* Let's Encrypt's defaults with a reserve of 0.2 */
	assert_int_equal(ratelimit_allowed(300, 0.2, RATELIMIT_NEW), 240);
	assert_int_equal(ratelimit_allowed(50, 0.2, RATELIMIT_NEW), 40);
	assert_int_equal(ratelimit_allowed(5, 0.2, RATELIMIT_NEW), 4);
	assert_int_equal(ratelimit_allowed(5, 0.2, RATELIMIT_RENEWAL), 5);
	/* floor: a small budget keeps nothing back unless asked */
	assert_int_equal(ratelimit_allowed(3, 0.2, RATELIMIT_NEW), 3);
	assert_int_equal(ratelimit_allowed(3, 0.34, RATELIMIT_NEW), 2);
	assert_int_equal(ratelimit_allowed(10, 0.3, RATELIMIT_NEW), 7);
	assert_int_equal(ratelimit_allowed(100, 0.29, RATELIMIT_NEW), 71);
	assert_int_equal(ratelimit_allowed(7, 0.0, RATELIMIT_NEW), 7);
	assert_int_equal(ratelimit_allowed(7, 1.0, RATELIMIT_NEW), 0);
	assert_int_equal(ratelimit_allowed(7, 1.0, RATELIMIT_RENEWAL), 7);
}

static void test_admits_and_frees(void **state)
{
	struct ratelimit_window w = { 0 };
	time_t now = 1800000000, frees = 0;
	long span = 3 * 3600;
	int i;

	/* 5 orders, 1 kept for renewals: stamps at now-50, -40, -30, -20 */
	for (i = 5; i >= 2; i--)
		assert_int_equal(ratelimit_window_add(&w, now - 10 * i, 10), 0);
	assert_false(ratelimit_window_admits(&w, 5, 0.2, RATELIMIT_NEW, now, span, &frees));
	/* a new name fits again when the oldest stamp leaves */
	assert_true(frees == now - 50 + span);
	assert_true(ratelimit_window_admits(&w, 5, 0.2, RATELIMIT_RENEWAL, now, span, &frees));
	assert_int_equal(ratelimit_window_add(&w, now, 10), 0);
	assert_false(ratelimit_window_admits(&w, 5, 0.2, RATELIMIT_RENEWAL, now, span, &frees));
	assert_true(frees == now - 50 + span);
	/* a new name then waits for two stamps to leave */
	assert_false(ratelimit_window_admits(&w, 5, 0.2, RATELIMIT_NEW, now, span, &frees));
	assert_true(frees == now - 40 + span);
	/* exempt, and a limit that is off, always fit */
	assert_true(ratelimit_window_admits(&w, 5, 0.2, RATELIMIT_EXEMPT, now, span, &frees));
	assert_true(ratelimit_window_admits(&w, 0, 0.2, RATELIMIT_NEW, now, span, &frees));
	/* the whole budget reserved: a new name never fits, the wait is a window */
	assert_false(ratelimit_window_admits(&w, 9, 1.0, RATELIMIT_NEW, now, span, &frees));
	assert_true(frees == now + span);
	/* after the window the record is empty and everything fits */
	ratelimit_window_expire(&w, now + span, span);
	assert_int_equal(w.n, 0);
	assert_true(ratelimit_window_admits(&w, 5, 0.2, RATELIMIT_NEW, now + span, span, &frees));
	ratelimit_window_clear(&w);
}

static void test_validation_failure_types(void **state)
{
	assert_true(ratelimit_is_validation_failure("urn:ietf:params:acme:error:unauthorized"));
	assert_true(ratelimit_is_validation_failure("urn:ietf:params:acme:error:connection"));
	assert_true(ratelimit_is_validation_failure("urn:ietf:params:acme:error:dns"));
	assert_true(ratelimit_is_validation_failure("urn:ietf:params:acme:error:incorrectResponse"));
	assert_false(ratelimit_is_validation_failure("urn:ietf:params:acme:error:rateLimited"));
	assert_false(ratelimit_is_validation_failure("urn:ietf:params:acme:error:badNonce"));
	assert_false(ratelimit_is_validation_failure("urn:ietf:params:acme:error:unauthorizedx"));
	assert_false(ratelimit_is_validation_failure("unauthorized"));
	assert_false(ratelimit_is_validation_failure(NULL));
}

/* ---- config -------------------------------------------------------------- */

static struct config *load(const char *extra, char *errs, size_t errlen)
{
	char json[1024];

	snprintf(json, sizeof(json), "{\"account_email\":\"ops@example.com\"%s%s}",
		 extra[0] ? "," : "", extra);
	return config_load_json(json, errs, errlen);
}

static void test_config_defaults(void **state)
{
	char errs[2048] = "";
	struct config *c;

	/* api_uri left out: Let's Encrypt, its limits */
	c = load("", errs, sizeof(errs));
	assert_non_null(c);
	assert_int_equal(c->rl_orders_per_3h, 300);
	assert_int_equal(c->rl_certs_per_domain_week, 50);
	assert_int_equal(c->rl_certs_per_exact_set_week, 5);
	assert_int_equal(c->rl_failures_per_host_hour, 5);
	assert_true(c->rl_renewal_reserve > 0.19 && c->rl_renewal_reserve < 0.21);
	config_free(c);
	/* staging too; one key given, the others still default */
	c = load("\"api_uri\":\"https://ACME-staging-v02.api.letsencrypt.org/directory\","
		 "\"rate_limits\":{\"orders_per_3h\":7}", errs, sizeof(errs));
	assert_non_null(c);
	assert_int_equal(c->rl_orders_per_3h, 7);
	assert_int_equal(c->rl_certs_per_domain_week, 50);
	config_free(c);
	/* another CA: off unless given */
	c = load("\"api_uri\":\"https://acme.zerossl.com/v2/DV90\","
		 "\"rate_limits\":{\"certs_per_domain_week\":3,\"renewal_reserve\":0.5}", errs,
		 sizeof(errs));
	assert_non_null(c);
	assert_int_equal(c->rl_orders_per_3h, 0);
	assert_int_equal(c->rl_certs_per_domain_week, 3);
	assert_int_equal(c->rl_failures_per_host_hour, 0);
	assert_true(c->rl_renewal_reserve == 0.5);
	config_free(c);
	/* a host that only looks like Let's Encrypt's is another CA */
	c = load("\"api_uri\":\"https://acme-v02.api.letsencrypt.org.evil.test/directory\"", errs,
		 sizeof(errs));
	assert_non_null(c);
	assert_int_equal(c->rl_orders_per_3h, 0);
	config_free(c);
}

static void test_config_errors(void **state)
{
	char errs[2048] = "";

	assert_null(load("\"rate_limits\":{\"renewal_reserve\":1.5}", errs, sizeof(errs)));
	assert_non_null(strstr(errs, "config: rate_limits.renewal_reserve: 1.5 is not between 0 and 1"));
	assert_null(load("\"rate_limits\":{\"orders_per_3h\":-1}", errs, sizeof(errs)));
	assert_non_null(strstr(errs, "config: rate_limits.orders_per_3h: -1 is not between 0 and 10000"));
	assert_null(load("\"rate_limits\":{\"renewal_reserve\":\"0.2\"}", errs, sizeof(errs)));
	assert_non_null(strstr(errs, "expected a number"));
	assert_null(load("\"rate_limits\":{\"orders_per_hour\":3}", errs, sizeof(errs)));
	assert_non_null(strstr(errs, "rate_limits.orders_per_hour: unknown key"));
	assert_null(load("\"rate_limits\":5", errs, sizeof(errs)));
	assert_non_null(strstr(errs, "expected an object"));
}

static void test_config_warning(void **state)
{
	char errs[2048] = "", w[2048];
	struct config *c;

	/* Let's Encrypt: its limits bound what strangers' names can cost */
	c = load("\"allow_any_domain\":true", errs, sizeof(errs));
	assert_non_null(c);
	assert_int_equal(config_warnings(c, w, sizeof(w)), 1);
	assert_non_null(strstr(w, "without ask_url: "));
	assert_non_null(strstr(w, "and rate_limits"));
	config_free(c);
	/* another CA, no limits given: nothing does */
	c = load("\"allow_any_domain\":true,\"api_uri\":\"https://ca.example.net/dir\"", errs,
		 sizeof(errs));
	assert_non_null(c);
	assert_int_equal(config_warnings(c, w, sizeof(w)), 1);
	assert_non_null(strstr(w, "without ask_url and without rate_limits"));
	config_free(c);
	/* limits given: the milder line */
	c = load("\"allow_any_domain\":true,\"api_uri\":\"https://ca.example.net/dir\","
		 "\"rate_limits\":{\"orders_per_3h\":10}", errs, sizeof(errs));
	assert_non_null(c);
	assert_int_equal(config_warnings(c, w, sizeof(w)), 1);
	assert_null(strstr(w, "without rate_limits"));
	config_free(c);
}

/* ---- budgets over storage ------------------------------------------------ */

struct t {
	struct fx f;
	struct ratelimit *rl, *rl2;
	int calls, rc;
	time_t until;
	char why[512];
};

static struct t *open_rl(const char *extra)
{
	struct t *t = calloc(1, sizeof(*t));
	char json[512];

	assert_non_null(t);
	snprintf(json, sizeof(json), "\"api_uri\":\"https://ca.example.net/dir\","
		 "\"rate_limits\":{%s}", extra);
	fx_open(&t->f, json);
	t->rl = ratelimit_new(t->f.loop, &t->f.cfg->issuers[0], t->f.st, "node-a");
	assert_non_null(t->rl);
	return t;
}

static int teardown(void **state)
{
	struct t *t = *state;

	if (!t)
		return 0;
	ratelimit_free(t->rl);
	ratelimit_free(t->rl2);
	fx_close(&t->f);
	free(t);
	return 0;
}

static void on_checked(void *arg, int rc, const char *why, time_t until)
{
	struct t *t = arg;

	t->calls++;
	t->rc = rc;
	t->until = until;
	snprintf(t->why, sizeof(t->why), "%s", why ? why : "");
}

static int cond_called(void *arg)
{
	return ((struct t *)arg)->calls > 0;
}

/* One check of <host> as <cls> on <rl>, run to its end; returns its rc. */
static int check(struct t *t, struct ratelimit *rl, const char *host, enum ratelimit_class cls)
{
	t->calls = 0;
	t->why[0] = '\0';
	assert_non_null(ratelimit_check(rl, host, cls, on_checked, t));
	/* never inside the call */
	assert_int_equal(t->calls, 0);
	assert_true(fx_run_until(&t->f, cond_called, t, 10));
	assert_int_equal(t->calls, 1);
	return t->rc;
}

/* The stored keys under "rl/" (sorted), joined by spaces. */
static void stored_keys(struct t *t, char *out, size_t outlen)
{
	struct storage_res res;
	char err[256];
	size_t i;

	out[0] = '\0';
	assert_int_equal(storage_wait(t->f.st, storage_list(t->f.st, "rl/", NULL, NULL), &res, err,
				      sizeof(err)), 0);
	for (i = 0; i < res.n; i++)
		snprintf(out + strlen(out), outlen - strlen(out), "%s%s", i ? " " : "", res.keys[i]);
	storage_res_clear(&res);
}

static int spends_done(void *arg)
{
	/* records are written in the background */
	return ratelimit_pending(((struct t *)arg)->rl) == 0;
}

static void test_orders_reserve_exempt(void **state)
{
	struct t *t = open_rl("\"orders_per_3h\":3,\"renewal_reserve\":0.34");
	time_t now;
	char keys[1024];
	struct metrics_buf b = { 0 };

	*state = t;
	assert_int_equal(check(t, t->rl, "a.example.com", RATELIMIT_NEW), 0);
	assert_int_equal(check(t, t->rl, "b.example.com", RATELIMIT_NEW), 0);
	assert_int_equal(ratelimit_orders_left(t->rl), 1);
	/* the third is kept for renewals */
	now = time(NULL);
	assert_int_equal(check(t, t->rl, "c.example.com", RATELIMIT_NEW), 1);
	assert_non_null(strstr(t->why, "orders_per_3h"));
	assert_non_null(strstr(t->why, "1 kept for renewals"));
	assert_true(t->until >= now + 3 * 3600 - 5 && t->until <= now + 3 * 3600 + 5);
	assert_int_equal(ratelimit_refused(t->rl, RATELIMIT_ORDERS), 1);
	/* a renewal takes it */
	assert_int_equal(check(t, t->rl, "a.example.com", RATELIMIT_RENEWAL), 0);
	assert_int_equal(ratelimit_orders_left(t->rl), 0);
	assert_int_equal(check(t, t->rl, "b.example.com", RATELIMIT_RENEWAL), 1);
	/* an ARI renewal sending replaces is not counted */
	assert_int_equal(check(t, t->rl, "b.example.com", RATELIMIT_EXEMPT), 0);
	assert_int_equal(ratelimit_refused(t->rl, RATELIMIT_ORDERS), 2);
	stored_keys(t, keys, sizeof(keys));
	assert_non_null(strstr(keys, "/orders"));
	/* the gauges */
	ratelimit_metrics(t->rl, &b);
	assert_non_null(b.data);
	assert_non_null(strstr(b.data, "acme_spoa_rate_limit{limit=\"orders_per_3h\"} 3\n"));
	assert_non_null(strstr(b.data, "acme_spoa_rate_limit_reserved{limit=\"orders_per_3h\"} 1\n"));
	assert_non_null(strstr(b.data, "acme_spoa_rate_limit_remaining{limit=\"orders_per_3h\",class=\"renewal\"} 0\n"));
	assert_non_null(strstr(b.data, "acme_spoa_rate_limit_refused_total{limit=\"orders_per_3h\"} 2\n"));
	assert_non_null(strstr(b.data, "acme_spoa_rate_limit{limit=\"failures_per_host_hour\"} 0\n"));
	metrics_buf_free(&b);
}

static void test_domain_and_exact_set(void **state)
{
	struct t *t = open_rl("\"certs_per_domain_week\":2,\"certs_per_exact_set_week\":1,"
			      "\"renewal_reserve\":0");

	*state = t;
	/* nothing spent at the check: certificates count when issued */
	assert_int_equal(check(t, t->rl, "a.shop.example.co.uk", RATELIMIT_NEW), 0);
	assert_int_equal(check(t, t->rl, "a.shop.example.co.uk", RATELIMIT_NEW), 0);
	ratelimit_record_issued(t->rl, "a.shop.example.co.uk", RATELIMIT_NEW);
	assert_true(fx_run_until(&t->f, spends_done, t, 5));
	/* the exact set is spent */
	assert_int_equal(check(t, t->rl, "a.shop.example.co.uk", RATELIMIT_RENEWAL), 1);
	assert_non_null(strstr(t->why, "certs_per_exact_set_week"));
	/* the registered domain example.co.uk has one left */
	ratelimit_record_issued(t->rl, "b.example.co.uk", RATELIMIT_NEW);
	assert_true(fx_run_until(&t->f, spends_done, t, 5));
	assert_int_equal(check(t, t->rl, "c.other.example.co.uk", RATELIMIT_NEW), 1);
	assert_non_null(strstr(t->why, "certs_per_domain_week reached for example.co.uk"));
	assert_int_equal(ratelimit_refused(t->rl, RATELIMIT_DOMAIN), 1);
	/* another registered domain is untouched; github.io names are each their own */
	assert_int_equal(check(t, t->rl, "c.example.org", RATELIMIT_NEW), 0);
	ratelimit_record_issued(t->rl, "foo.github.io", RATELIMIT_NEW);
	ratelimit_record_issued(t->rl, "a.foo.github.io", RATELIMIT_NEW);
	assert_true(fx_run_until(&t->f, spends_done, t, 5));
	assert_int_equal(check(t, t->rl, "bar.github.io", RATELIMIT_NEW), 0);
	assert_int_equal(check(t, t->rl, "b.foo.github.io", RATELIMIT_NEW), 1);
	/* exempt renewals are neither checked nor counted */
	ratelimit_record_issued(t->rl, "x.example.net", RATELIMIT_EXEMPT);
	ratelimit_record_issued(t->rl, "y.example.net", RATELIMIT_EXEMPT);
	assert_true(fx_run_until(&t->f, spends_done, t, 5));
	assert_int_equal(check(t, t->rl, "z.example.net", RATELIMIT_NEW), 0);
}

static void test_failures(void **state)
{
	struct t *t = open_rl("\"failures_per_host_hour\":2,\"renewal_reserve\":0");
	time_t now = time(NULL);

	*state = t;
	ratelimit_record_failure(t->rl, "f.example.com", RATELIMIT_NEW);
	assert_true(fx_run_until(&t->f, spends_done, t, 5));
	assert_int_equal(check(t, t->rl, "f.example.com", RATELIMIT_NEW), 0);
	ratelimit_record_failure(t->rl, "f.example.com", RATELIMIT_NEW);
	assert_true(fx_run_until(&t->f, spends_done, t, 5));
	assert_int_equal(check(t, t->rl, "f.example.com", RATELIMIT_RENEWAL), 1);
	assert_non_null(strstr(t->why, "failures_per_host_hour"));
	assert_true(t->until > now && t->until <= now + 3600 + 5);
	assert_int_equal(check(t, t->rl, "g.example.com", RATELIMIT_NEW), 0);
}

static void test_psl(void **state)
{
	struct t *t = open_rl("");
	char d[256];

	*state = t;
	assert_int_equal(ratelimit_registered_domain(t->rl, "a.b.example.co.uk", d, sizeof(d)), 0);
	assert_string_equal(d, "example.co.uk");
	assert_int_equal(ratelimit_registered_domain(t->rl, "foo.github.io", d, sizeof(d)), 0);
	assert_string_equal(d, "foo.github.io");
	assert_int_equal(ratelimit_registered_domain(t->rl, "x.y.foo.github.io", d, sizeof(d)), 0);
	assert_string_equal(d, "foo.github.io");
	assert_int_equal(ratelimit_registered_domain(t->rl, "www.example.com", d, sizeof(d)), 0);
	assert_string_equal(d, "example.com");
	assert_int_equal(ratelimit_registered_domain(t->rl, "*.a.example.com", d, sizeof(d)), 0);
	assert_string_equal(d, "example.com");
	/* a name outside any listed suffix: the last label is the suffix */
	assert_int_equal(ratelimit_registered_domain(t->rl, "x.rl.test", d, sizeof(d)), 0);
	assert_string_equal(d, "rl.test");
	/* a public suffix itself is its own */
	assert_int_equal(ratelimit_registered_domain(t->rl, "github.io", d, sizeof(d)), 0);
	assert_string_equal(d, "github.io");
	assert_int_equal(ratelimit_registered_domain(t->rl, "example.co.uk", d, 5), -1);
}

static void test_malformed_record(void **state)
{
	struct t *t = open_rl("\"orders_per_3h\":2,\"renewal_reserve\":0");
	struct storage_res res;
	char keys[1024], err[256], *sp;
	struct ratelimit_window w = { 0 };

	*state = t;
	assert_int_equal(check(t, t->rl, "a.example.com", RATELIMIT_NEW), 0);
	stored_keys(t, keys, sizeof(keys));
	sp = strchr(keys, ' ');
	if (sp)
		*sp = '\0';
	assert_non_null(strstr(keys, "/orders"));
	/* someone wrote garbage: counted as empty (logged), never a crash */
	fx_put(&t->f, keys, "{\"v\":1,\"t\":[\"oops", 16);
	assert_int_equal(check(t, t->rl, "b.example.com", RATELIMIT_NEW), 0);
	assert_int_equal(check(t, t->rl, "c.example.com", RATELIMIT_NEW), 0);
	assert_int_equal(check(t, t->rl, "d.example.com", RATELIMIT_NEW), 1);
	/* and rewritten readable */
	assert_int_equal(storage_wait(t->f.st, storage_get(t->f.st, keys, NULL, NULL), &res, err,
				      sizeof(err)), 0);
	assert_int_equal(ratelimit_window_load(&w, res.val, res.len, time(NULL), 3 * 3600, 10, err,
					       sizeof(err)), 0);
	assert_int_equal(w.n, 2);
	ratelimit_window_clear(&w);
	storage_res_clear(&res);
}

/* A per-host record of another version (a newer agent of the fleet wrote it)
 * counts as empty, is logged, and is rewritten in this version by the next
 * spend; the same stamps in this version count. */
static void test_other_version_record(void **state)
{
	struct t *t = open_rl("\"failures_per_host_hour\":1,\"renewal_reserve\":0");
	struct storage_res res;
	struct ratelimit_window w = { 0 };
	char keys[1024], prefix[256], key[512], rec[128], err[256], *p;

	*state = t;
	/* the per-host key, as the agent names it: one failure of x.example.com */
	ratelimit_record_failure(t->rl, "x.example.com", RATELIMIT_NEW);
	assert_true(fx_run_until(&t->f, spends_done, t, 5));
	stored_keys(t, keys, sizeof(keys));
	p = strstr(keys, "/fail/x.example.com");
	assert_non_null(p);
	assert_int_equal(check(t, t->rl, "x.example.com", RATELIMIT_NEW), 1);
	snprintf(prefix, sizeof(prefix), "%.*s/fail/", (int)(p - keys), keys);
	snprintf(rec, sizeof(rec), "{\"v\":1,\"t\":[%lld]}", (long long)time(NULL) - 5);
	/* this version, written by hand: counted (the limit is used up) */
	snprintf(key, sizeof(key), "%sb.example.com", prefix);
	fx_put(&t->f, key, rec, strlen(rec));
	assert_int_equal(check(t, t->rl, "b.example.com", RATELIMIT_NEW), 1);
	/* another version with the same stamp: empty, so b's neighbour is admitted */
	snprintf(rec, sizeof(rec), "{\"v\":2,\"t\":[%lld]}", (long long)time(NULL) - 5);
	snprintf(key, sizeof(key), "%sa.example.com", prefix);
	fx_put(&t->f, key, rec, strlen(rec));
	assert_int_equal(check(t, t->rl, "a.example.com", RATELIMIT_NEW), 0);
	/* the next failure rewrites it in this version, with that one stamp */
	ratelimit_record_failure(t->rl, "a.example.com", RATELIMIT_NEW);
	assert_true(fx_run_until(&t->f, spends_done, t, 5));
	assert_int_equal(storage_wait(t->f.st, storage_get(t->f.st, key, NULL, NULL), &res, err,
				      sizeof(err)), 0);
	assert_int_equal(ratelimit_window_load(&w, res.val, res.len, time(NULL), 3600, 10, err,
					       sizeof(err)), 0);
	assert_int_equal(w.n, 1);
	ratelimit_window_clear(&w);
	storage_res_clear(&res);
	assert_int_equal(check(t, t->rl, "a.example.com", RATELIMIT_NEW), 1);
}

static void test_shared_by_two_agents(void **state)
{
	struct t *t = open_rl("\"orders_per_3h\":2,\"renewal_reserve\":0");

	*state = t;
	/* a second agent over the same store (one Redis for a fleet) */
	t->rl2 = ratelimit_new(t->f.loop, &t->f.cfg->issuers[0], t->f.st, "node-b");
	assert_non_null(t->rl2);
	assert_int_equal(check(t, t->rl, "a.example.com", RATELIMIT_NEW), 0);
	assert_int_equal(check(t, t->rl, "b.example.com", RATELIMIT_NEW), 0);
	assert_int_equal(check(t, t->rl2, "c.example.com", RATELIMIT_NEW), 1);
	assert_int_equal(ratelimit_refused(t->rl2, RATELIMIT_ORDERS), 1);
	assert_int_equal(ratelimit_orders_left(t->rl2), 0);
}

struct many {
	struct t *t;
	int ok, refused, other;
};

static void on_many(void *arg, int rc, const char *why, time_t until)
{
	struct many *m = arg;

	if (rc == 0)
		m->ok++;
	else if (rc == 1)
		m->refused++;
	else
		m->other++;
}

static int cond_many(void *arg)
{
	struct many *m = arg;

	return m->ok + m->refused + m->other == 40;
}

static void test_concurrent_spends(void **state)
{
	struct t *t = open_rl("\"orders_per_3h\":10,\"renewal_reserve\":0");
	struct many m = { .t = t };
	char host[64];
	int i;

	*state = t;
	t->rl2 = ratelimit_new(t->f.loop, &t->f.cfg->issuers[0], t->f.st, "node-b");
	assert_non_null(t->rl2);
	log_level_max = LOG_LVL_ERR;
	/* 40 checks at once from two agents: the lock lets exactly 10 through */
	for (i = 0; i < 40; i++) {
		snprintf(host, sizeof(host), "h%d.example.com", i);
		assert_non_null(ratelimit_check(i % 2 ? t->rl : t->rl2, host, RATELIMIT_NEW, on_many, &m));
	}
	assert_true(fx_run_until(&t->f, cond_many, &m, 30));
	log_level_max = LOG_LVL_WARN;
	assert_int_equal(m.ok, 10);
	assert_int_equal(m.refused, 30);
	assert_int_equal(m.other, 0);
}

static int cond_many200(void *arg)
{
	struct many *m = arg;

	return m->ok + m->refused + m->other == 200;
}

static void test_flood_refused_from_memory(void **state)
{
	struct t *t = open_rl("\"orders_per_3h\":2,\"certs_per_domain_week\":50,"
			      "\"failures_per_host_hour\":5,\"renewal_reserve\":0");
	struct many m = { .t = t };
	char keys[1024], host[64], *sp;
	int i;

	*state = t;
	assert_int_equal(check(t, t->rl, "a.example.com", RATELIMIT_NEW), 0);
	assert_int_equal(check(t, t->rl, "b.example.com", RATELIMIT_NEW), 0);
	/* the record goes away: only memory can refuse now */
	stored_keys(t, keys, sizeof(keys));
	sp = strchr(keys, ' ');
	if (sp)
		*sp = '\0';
	assert_non_null(strstr(keys, "/orders"));
	fx_del(&t->f, keys);
	log_level_max = LOG_LVL_ERR;
	for (i = 0; i < 200; i++) {
		snprintf(host, sizeof(host), "n%d.example%d.com", i, i);
		assert_non_null(ratelimit_check(t->rl, host, RATELIMIT_NEW, on_many, &m));
	}
	assert_true(fx_run_until(&t->f, cond_many200, &m, 10));
	log_level_max = LOG_LVL_WARN;
	assert_int_equal(m.refused, 200);
	assert_int_equal(ratelimit_refused(t->rl, RATELIMIT_ORDERS), 200);
	/* nothing was written: the store is still empty */
	stored_keys(t, keys, sizeof(keys));
	assert_string_equal(keys, "");
}

static void test_cancel_and_free(void **state)
{
	struct t *t = open_rl("\"orders_per_3h\":5,\"failures_per_host_hour\":5");
	struct ratelimit_check *c;

	*state = t;
	c = ratelimit_check(t->rl, "a.example.com", RATELIMIT_NEW, on_checked, t);
	assert_non_null(c);
	ratelimit_check_cancel(c);
	fx_run_for(&t->f, 0.1);
	assert_int_equal(t->calls, 0);
	/* checks and records in flight when the module is freed (leaks: ASan) */
	assert_non_null(ratelimit_check(t->rl, "b.example.com", RATELIMIT_NEW, on_checked, t));
	ratelimit_record_failure(t->rl, "b.example.com", RATELIMIT_NEW);
	ratelimit_record_issued(t->rl, "b.example.com", RATELIMIT_NEW);
	ev_run(t->f.loop, EVRUN_NOWAIT);
	ratelimit_free(t->rl);
	t->rl = NULL;
	fx_run_for(&t->f, 0.1);
	assert_int_equal(t->calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_load_expire_bound),
		cmocka_unit_test(test_window_malformed),
		cmocka_unit_test(test_reserve),
		cmocka_unit_test(test_admits_and_frees),
		cmocka_unit_test(test_validation_failure_types),
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_config_warning),
		cmocka_unit_test_teardown(test_orders_reserve_exempt, teardown),
		cmocka_unit_test_teardown(test_domain_and_exact_set, teardown),
		cmocka_unit_test_teardown(test_failures, teardown),
		cmocka_unit_test_teardown(test_psl, teardown),
		cmocka_unit_test_teardown(test_malformed_record, teardown),
		cmocka_unit_test_teardown(test_other_version_record, teardown),
		cmocka_unit_test_teardown(test_shared_by_two_agents, teardown),
		cmocka_unit_test_teardown(test_concurrent_spends, teardown),
		cmocka_unit_test_teardown(test_flood_refused_from_memory, teardown),
		cmocka_unit_test_teardown(test_cancel_and_free, teardown),
	};

	log_level_max = LOG_LVL_WARN;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
