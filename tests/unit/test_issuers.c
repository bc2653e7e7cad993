/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/issuers: which failures are the CA's (fall through) and
 * which the name's, the order a job tries the CAs in, the down mark shared
 * through storage by two agents, and the CA of a certificate learnt from
 * its issuer CN. Nobody listens on the CAs' port: their probes fail. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "acme/crypto.h"
#include "acme/acme.h"
#include "core/issuers.h"
#include "lib/metrics.h"
#include "tests/unit/core_fixture.h"

#define TWO_CAS "\"issuers\":[{\"name\":\"one\",\"api_uri\":\"http://127.0.0.1:9/one\",\"timeout\":1}," \
		"{\"name\":\"two\",\"api_uri\":\"http://127.0.0.1:9/two\",\"timeout\":1}]"

struct t {
	struct fx f;
	struct issuers *a, *b;	/* two agents over one store */
};

static struct issuers *open_one(struct t *t, const char *owner)
{
	char err[256] = "";
	struct issuers *is = issuers_new(t->f.loop, t->f.cfg, t->f.st, &t->f.health, NULL, NULL, owner,
					 err, sizeof(err));
	int down;

	if (!is)
		fail_msg("issuers_new: %s", err);
	if (issuers_attach(is, &down, err, sizeof(err)) == -1)
		fail_msg("issuers_attach: %s", err);
	return is;
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	fx_open(&t->f, TWO_CAS);
	t->a = open_one(t, "node-a");
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	issuers_free(t->a);
	issuers_free(t->b);
	fx_close(&t->f);
	free(t);
	return 0;
}

static void test_ca_fault(void **state)
{
	static const struct {
		long status;
		const char *type;
		int unreachable, account, fault;
	} cases[] = {
		{ 0, NULL, 1, 0, 1 },		/* no answer, a timeout */
		{ 0, NULL, 0, 1, 1 },		/* the account could not be set up */
		{ 503, NULL, 0, 0, 1 },
		{ 500, "urn:ietf:params:acme:error:serverInternal", 0, 0, 1 },
		{ 429, "urn:ietf:params:acme:error:rateLimited", 0, 0, 1 },
		{ 403, "urn:ietf:params:acme:error:externalAccountRequired", 0, 0, 1 },
		{ 400, "urn:ietf:params:acme:error:badNonce", 0, 0, 1 },
		{ 0, "urn:ietf:params:acme:error:unauthorized", 0, 0, 0 },
		{ 0, "urn:ietf:params:acme:error:connection", 0, 0, 0 },
		{ 0, "urn:ietf:params:acme:error:dns", 0, 0, 0 },
		{ 0, "urn:ietf:params:acme:error:caa", 0, 0, 0 },
		{ 0, "urn:ietf:params:acme:error:incorrectResponse", 0, 0, 0 },
		{ 0, "urn:ietf:params:acme:error:tls", 0, 0, 0 },
		{ 400, "urn:ietf:params:acme:error:rejectedIdentifier", 0, 0, 0 },
		{ 0, NULL, 0, 0, 0 },		/* a local error (storage, memory) */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct acme_problem p = { .status = cases[i].status, .type = (char *)cases[i].type,
					  .unreachable = cases[i].unreachable,
					  .account = cases[i].account, .retry_after = -1 };

		if (issuers_ca_fault(&p) != cases[i].fault)
			fail_msg("case %zu (%ld %s): expected %d", i, cases[i].status,
				 cases[i].type ? cases[i].type : "-", cases[i].fault);
	}
}

static void test_plan(void **state)
{
	struct t *t = *state;
	size_t order[2], n;

	assert_int_equal(issuers_count(t->a), 2);
	n = issuers_plan(t->a, 0, order);
	assert_int_equal(n, 2);
	assert_int_equal(order[0], 0);
	assert_int_equal(order[1], 1);
	/* a renewal of a certificate of the second: the second first */
	n = issuers_plan(t->a, 1, order);
	assert_int_equal(n, 2);
	assert_int_equal(order[0], 1);
	assert_int_equal(order[1], 0);
	/* the first down: skipped */
	issuers_order_failed(t->a, 0, 1, "test: unreachable", -1);
	assert_false(issuers_up(t->a, 0));
	n = issuers_plan(t->a, 0, order);
	assert_int_equal(n, 1);
	assert_int_equal(order[0], 1);
	/* a validation failure marks nothing down */
	issuers_order_failed(t->a, 1, 0, "test: unauthorized", -1);
	assert_true(issuers_up(t->a, 1));
	/* both down: the one whose while ends first is still tried */
	issuers_order_failed(t->a, 1, 1, "test: 503", 3600);
	n = issuers_plan(t->a, 1, order);
	assert_int_equal(n, 1);
	assert_int_equal(order[0], 0);
}

static int b_sees_first_down(void *arg)
{
	return !issuers_up(((struct t *)arg)->b, 0);
}

static int b_knows_cn(void *arg)
{
	return issuers_for_cn(((struct t *)arg)->b, "Test Intermediate R2") == 1;
}

/* The fleet: agent b learns from storage that a marked the first CA down,
 * and which CA issued under which issuer CN, without ordering anything. */
static void test_shared_by_the_fleet(void **state)
{
	struct t *t = *state;
	size_t order[2];

	t->b = open_one(t, "node-b");
	issuers_start(t->b);
	assert_true(issuers_up(t->b, 0));
	issuers_order_failed(t->a, 0, 1, "test: unreachable", -1);
	assert_true(fx_run_until(&t->f, b_sees_first_down, t, 10));
	assert_int_equal(issuers_plan(t->b, 0, order), 1);
	assert_int_equal(order[0], 1);

	assert_int_equal(issuers_for_cn(t->a, "Test Intermediate R2"), -1);
	issuers_issued(t->a, 1, "Test Intermediate R2", 1);
	assert_int_equal(issuers_for_cn(t->a, "Test Intermediate R2"), 1);
	assert_true(fx_run_until(&t->f, b_knows_cn, t, 40));
}

static void test_metrics(void **state)
{
	struct t *t = *state;
	struct metrics_buf b = { 0 };
	const char *txt;

	issuers_order_failed(t->a, 0, 1, "test: unreachable", -1);
	issuers_issued(t->a, 1, "Test Intermediate R2", 1);
	issuers_order_failed(t->a, 1, 0, "test: unauthorized", -1);
	issuers_metrics(t->a, &b);
	txt = b.data;
	assert_non_null(strstr(txt, "acme_spoa_issuer_up{issuer=\"one\"} 0\n"));
	assert_non_null(strstr(txt, "acme_spoa_issuer_up{issuer=\"two\"} 1\n"));
	assert_non_null(strstr(txt, "acme_spoa_issuer_orders_total{issuer=\"one\",result=\"ca_error\"} 1\n"));
	assert_non_null(strstr(txt, "acme_spoa_issuer_orders_total{issuer=\"two\",result=\"issued\"} 1\n"));
	assert_non_null(strstr(txt, "acme_spoa_issuer_orders_total{issuer=\"two\",result=\"failed\"} 1\n"));
	assert_non_null(strstr(txt, "acme_spoa_issuer_fallbacks_total{issuer=\"two\"} 1\n"));
	metrics_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ca_fault),
		cmocka_unit_test_setup_teardown(test_plan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_by_the_fleet, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
	};

	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	/* a key generation an ended order left on a worker thread must not run
	 * into OpenSSL's clean-up at exit (the agent's main does the same) */
	crypto_async_shutdown();
	return rc;
}
