/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the ACME client: the parsers fed fixture JSON (problem documents,
 * malformed CA objects, Link headers, renewalInfo), and the client against a fake
 * CA on 127.0.0.1:0 that answers what Pebble never would (garbage, endless
 * badNonce, 429, invalid authorizations). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ev.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "acme/acme.h"
#include "acme/acme_int.h"
#include "lib/log.h"
#include "mini_httpd.h"

#define P ACME_ERR_PREFIX
#define SL(s) (s), strlen(s)

/* ---- problem documents ---- */

static void test_problem_full(void **state)
{
	const char *doc = "{\"type\":\"" P "rejectedIdentifier\",\"detail\":\"Error creating new order\","
			  "\"status\":400,\"subproblems\":[{\"type\":\"" P "malformed\",\"detail\":\"Invalid "
			  "underscore\",\"identifier\":{\"type\":\"dns\",\"value\":\"_x.test\"}},{\"type\":\"" P
			  "rejectedIdentifier\",\"detail\":\"forbidden\",\"identifier\":{\"type\":\"dns\","
			  "\"value\":\"b.test\"}}]}";
	struct acme_problem p = { 0 };

	assert_int_equal(acme_problem_parse(400, doc, strlen(doc), NULL, &p), 0);
	assert_int_equal(p.status, 400);
	assert_string_equal(p.type, P "rejectedIdentifier");
	assert_string_equal(p.detail, "Error creating new order");
	assert_string_equal(p.subproblems, "dns:_x.test: malformed: Invalid underscore; "
			    "dns:b.test: rejectedIdentifier: forbidden");
	assert_int_equal(p.retry_after, -1);
	assert_true(acme_problem_is(&p, "rejectedIdentifier"));
	assert_false(acme_problem_is(&p, "malformed"));
	acme_problem_clear(&p);
	assert_null(p.type);
}

static void test_problem_rate_limited(void **state)
{
	const char *doc = "{\"type\":\"" P "rateLimited\",\"detail\":\"too many certificates\"}";
	struct acme_problem p = { 0 }, q = { 0 };

	assert_int_equal(acme_problem_parse(429, doc, strlen(doc), "3600", &p), 0);
	assert_int_equal(p.status, 429);
	assert_int_equal(p.retry_after, 3600);
	assert_null(p.subproblems);
	assert_int_equal(acme_problem_copy(&q, &p), 0);
	assert_string_equal(q.detail, "too many certificates");
	assert_int_equal(q.retry_after, 3600);
	acme_problem_clear(&p);
	acme_problem_clear(&q);
}

static void test_problem_not_json(void **state)
{
	const char *html = "<html><body>502 Bad Gateway\r\n</body></html>";
	struct acme_problem p = { 0 };

	assert_int_equal(acme_problem_parse(502, html, strlen(html), "bogus", &p), -1);
	assert_int_equal(p.status, 502);
	assert_null(p.type);
	assert_non_null(strstr(p.detail, "HTTP 502"));
	assert_non_null(strstr(p.detail, "502 Bad Gateway"));
	assert_null(strchr(p.detail, '\r'));     /* control characters never reach logs */
	assert_int_equal(p.retry_after, -1);
	acme_problem_clear(&p);

	assert_int_equal(acme_problem_parse(500, "", 0, NULL, &p), -1);
	assert_non_null(strstr(p.detail, "empty body"));
	acme_problem_clear(&p);
	assert_int_equal(acme_problem_parse(500, SL("[1,2]"), NULL, &p), -1);
	assert_non_null(strstr(p.detail, "HTTP 500"));
	acme_problem_clear(&p);
	assert_int_equal(acme_problem_parse(400, SL("{\"type\":5,\"detail\":[]}"), NULL, &p), -1);
	acme_problem_clear(&p);
	/* odd subproblems are skipped, not fatal */
	assert_int_equal(acme_problem_parse(400, SL("{\"type\":\"x\",\"subproblems\":[1,\"a\",{}]}"), NULL, &p), 0);
	assert_string_equal(p.detail, "x");
	acme_problem_clear(&p);
}

static void test_problem_long_detail(void **state)
{
	char doc[8192];
	struct acme_problem p = { 0 };
	int n;

	n = snprintf(doc, sizeof(doc), "{\"type\":\"" P "serverInternal\",\"detail\":\"");
	memset(doc + n, 'a', 5000);
	strcpy(doc + n + 5000, "\\n\"}");
	assert_int_equal(acme_problem_parse(500, doc, strlen(doc), NULL, &p), 0);
	assert_true(strlen(p.detail) <= 1024);
	assert_null(strchr(p.detail, '\n'));
	acme_problem_clear(&p);
}

/* ---- directory / order / authz ---- */

static void test_directory(void **state)
{
	const char *ok = "{\"newNonce\":\"https://ca/nonce\",\"newAccount\":\"https://ca/acct\","
			 "\"newOrder\":\"https://ca/order\",\"revokeCert\":\"https://ca/revoke\","
			 "\"renewalInfo\":\"https://ca/ari\",\"meta\":{\"termsOfService\":\"https://ca/tos\","
			 "\"externalAccountRequired\":true,\"profiles\":{\"classic\":\"x\",\"shortlived\":\"y\"}}}";
	struct acme_dir d;
	char err[256];

	assert_int_equal(acme_parse_directory(ok, strlen(ok), &d, err, sizeof(err)), 0);
	assert_string_equal(d.new_order, "https://ca/order");
	assert_string_equal(d.renewal_info, "https://ca/ari");
	assert_string_equal(d.tos, "https://ca/tos");
	assert_int_equal(d.eab_required, 1);
	assert_int_equal(d.nprofiles, 2);
	assert_string_equal(d.profiles[1], "shortlived");
	assert_null(d.key_change);
	acme_dir_clear(&d);
}

static void test_directory_malformed(void **state)
{
	static const struct { const char *doc, *want; } cases[] = {
		{ "", "empty directory" },
		{ "<html>", "not JSON" },
		{ "[]", "not a JSON object" },
		{ "{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\"}", "\"newOrder\" is missing" },
		{ "{\"newNonce\":\"https://ca/n\",\"newAccount\":5,\"newOrder\":\"https://ca/o\"}",
		  "\"newAccount\" is not a URL" },
		{ "{\"newNonce\":\"ftp://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\"}",
		  "\"newNonce\" is not a URL" },
		{ "{\"newNonce\":\"https://ca/n\",\"newAccount\":\"https://ca/a\",\"newOrder\":\"https://ca/o\","
		  "\"renewalInfo\":null}", "\"renewalInfo\" is not a URL" },
	};
	struct acme_dir d;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(acme_parse_directory(cases[i].doc, strlen(cases[i].doc), &d, err, sizeof(err)), -1);
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].want);
		assert_null(d.new_nonce);
	}
}

static void test_order(void **state)
{
	const char *ok = "{\"status\":\"pending\",\"finalize\":\"https://ca/fin/1\",\"authorizations\":"
			 "[\"https://ca/authz/1\",\"https://ca/authz/2\"],\"identifiers\":[]}";
	const char *inv = "{\"status\":\"invalid\",\"finalize\":\"https://ca/fin/1\",\"authorizations\":[],"
			  "\"error\":{\"type\":\"" P "unauthorized\",\"detail\":\"no way\"}}";
	struct acme_order_obj o;
	char err[256];

	assert_int_equal(acme_parse_order(ok, strlen(ok), &o, err, sizeof(err)), 0);
	assert_string_equal(o.status, "pending");
	assert_int_equal(o.nauthz, 2);
	assert_string_equal(o.authz[1], "https://ca/authz/2");
	assert_null(o.certificate);
	assert_int_equal(o.has_error, 0);
	acme_order_obj_clear(&o);

	assert_int_equal(acme_parse_order(inv, strlen(inv), &o, err, sizeof(err)), 0);
	assert_int_equal(o.has_error, 1);
	assert_string_equal(o.error.type, P "unauthorized");
	assert_string_equal(o.error.detail, "no way");
	acme_order_obj_clear(&o);
}

static void test_order_malformed(void **state)
{
	static const struct { const char *doc, *want; } cases[] = {
		{ "{bad", "not JSON" },
		{ "{\"finalize\":\"https://ca/f\",\"authorizations\":[]}", "\"status\" is missing" },
		{ "{\"status\":7,\"finalize\":\"https://ca/f\",\"authorizations\":[]}", "\"status\" is missing" },
		{ "{\"status\":\"pending\",\"authorizations\":[]}", "\"finalize\" is missing" },
		{ "{\"status\":\"pending\",\"finalize\":\"https://ca/f\"}", "\"authorizations\" is missing" },
		{ "{\"status\":\"pending\",\"finalize\":\"https://ca/f\",\"authorizations\":{}}",
		  "\"authorizations\" is not an array" },
		{ "{\"status\":\"pending\",\"finalize\":\"https://ca/f\",\"authorizations\":[\"https://ca/a\",3]}",
		  "authorizations[1] is not a URL" },
		{ "{\"status\":\"valid\",\"finalize\":\"https://ca/f\",\"authorizations\":[]}",
		  "without \"certificate\"" },
		{ "{\"status\":\"valid\",\"finalize\":\"https://ca/f\",\"authorizations\":[],\"certificate\":true}",
		  "\"certificate\" is not a URL" },
	};
	struct acme_order_obj o;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(acme_parse_order(cases[i].doc, strlen(cases[i].doc), &o, err, sizeof(err)), -1);
		if (!strstr(err, cases[i].want) || !strstr(err, "malformed order"))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].want);
	}
}

static void test_authz(void **state)
{
	const char *ok = "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.test\"},"
			 "\"challenges\":[{\"type\":\"dns-01\",\"url\":\"https://ca/c/1\",\"token\":\"AAA\"},"
			 "{\"type\":\"http-01\",\"url\":\"https://ca/c/2\",\"token\":\"tok-EN_1\",\"status\":\"pending\"}]}";
	const char *bad = "{\"status\":\"invalid\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.test\"},"
			  "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca/c/2\",\"token\":\"t\","
			  "\"status\":\"invalid\",\"error\":{\"type\":\"" P "connection\",\"detail\":\"refused\"}}]}";
	const char *dnsonly = "{\"status\":\"pending\",\"identifier\":{\"value\":\"a.test\"},"
			      "\"challenges\":[{\"type\":\"dns-01\",\"url\":\"https://ca/c/1\",\"token\":\"AAA\"}]}";
	struct acme_authz_obj a;
	char err[256];

	assert_int_equal(acme_parse_authz(ok, strlen(ok), &a, err, sizeof(err)), 0);
	assert_int_equal(a.has_http01, 1);
	assert_string_equal(a.chall_url, "https://ca/c/2");
	assert_string_equal(a.chall_token, "tok-EN_1");
	assert_string_equal(a.identifier, "a.test");
	acme_authz_obj_clear(&a);

	assert_int_equal(acme_parse_authz(bad, strlen(bad), &a, err, sizeof(err)), 0);
	assert_string_equal(a.status, "invalid");
	assert_int_equal(a.has_error, 1);
	assert_string_equal(a.error.type, P "connection");
	acme_authz_obj_clear(&a);

	assert_int_equal(acme_parse_authz(dnsonly, strlen(dnsonly), &a, err, sizeof(err)), 0);
	assert_int_equal(a.has_http01, 0);
	acme_authz_obj_clear(&a);
}

static void test_authz_malformed(void **state)
{
	static const struct { const char *doc, *want; } cases[] = {
		{ "null", "not JSON" },
		{ "[1]", "not a JSON object" },
		{ "{\"identifier\":{\"value\":\"a\"},\"challenges\":[]}", "\"status\" is missing" },
		{ "{\"status\":\"pending\",\"challenges\":[]}", "\"identifier\" is missing" },
		{ "{\"status\":\"pending\",\"identifier\":{\"value\":\"a\"}}", "\"challenges\" is missing" },
		{ "{\"status\":\"pending\",\"identifier\":{\"value\":\"a\"},\"challenges\":[{\"type\":\"http-01\","
		  "\"token\":\"abc\"}]}", "\"url\" is missing" },
		{ "{\"status\":\"pending\",\"identifier\":{\"value\":\"a\"},\"challenges\":[{\"type\":\"http-01\","
		  "\"url\":\"https://ca/c\",\"token\":\"../../etc\"}]}", "\"token\" is not base64url" },
		{ "{\"status\":\"pending\",\"identifier\":{\"value\":\"a\"},\"challenges\":[{\"type\":\"http-01\","
		  "\"url\":\"https://ca/c\"}]}", "\"token\" is missing" },
	};
	struct acme_authz_obj a;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(acme_parse_authz(cases[i].doc, strlen(cases[i].doc), &a, err, sizeof(err)), -1);
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].want);
	}
}

/* ---- renewalInfo, dates, links, ZeroSSL ---- */

static void test_renewal_info(void **state)
{
	const char *ok = "{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Z\",\"end\":\"2025-01-03T04:00:00.123+02:00\"},"
			 "\"explanationURL\":\"https://ca/why\"}";
	time_t s, e;
	char err[256];

	assert_int_equal(acme_parse_renewal_info(ok, strlen(ok), &s, &e, err, sizeof(err)), 0);
	assert_int_equal(s, 1735790400);
	assert_int_equal(e, 1735790400 + 86400 - 7200);
	assert_int_equal(acme_parse_renewal_info(SL("{}"), &s, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "suggestedWindow"));
	assert_int_equal(acme_parse_renewal_info(SL("{\"suggestedWindow\":{\"start\":\"2025-01-03T00:00:00Z\","
						    "\"end\":\"2025-01-02T00:00:00Z\"}}"), &s, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "ends before"));
	assert_int_equal(acme_parse_renewal_info(SL("{\"suggestedWindow\":{\"start\":\"yesterday\","
						    "\"end\":\"2025-01-02T00:00:00Z\"}}"), &s, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bad date"));
}

static void test_rfc3339(void **state)
{
	time_t t;

	assert_int_equal(acme_parse_rfc3339("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(acme_parse_rfc3339("2025-01-02T04:00:00-01:30", &t), 0);
	assert_int_equal(t, 1735790400 + 5400);
	assert_int_equal(acme_parse_rfc3339("2025-01-02T04:00:00", &t), -1);
	assert_int_equal(acme_parse_rfc3339("2025-13-02T04:00:00Z", &t), -1);
	assert_int_equal(acme_parse_rfc3339("2025-01-02T04:00:00.Z", &t), -1);
	assert_int_equal(acme_parse_rfc3339("2025-01-02T04:00:00Zjunk", &t), -1);
	assert_int_equal(acme_parse_rfc3339(NULL, &t), -1);
}

static void test_links(void **state)
{
	const char *links[] = {
		"<https://ca/dir>;rel=\"index\"",
		"<https://ca/cert/1/alt/1>;rel=\"alternate\"",
		"<https://ca/cert/1/alt/2>; rel=alternate, <https://ca/up>;rel=\"up\"",
		"<https://ca/cert/1/alt/3>;title=\"a, b\";rel=\"next alternate\"",
		"garbage without brackets",
		"<javascript:x>;rel=\"alternate\"",
	};
	char **v = NULL;
	int n;

	n = acme_links_find(links, 6, "alternate", &v);
	assert_int_equal(n, 3);
	assert_string_equal(v[0], "https://ca/cert/1/alt/1");
	assert_string_equal(v[1], "https://ca/cert/1/alt/2");
	assert_string_equal(v[2], "https://ca/cert/1/alt/3");
	acme_strv_free(v, (size_t)n);
	n = acme_links_find(links, 6, "up", &v);
	assert_int_equal(n, 1);
	assert_string_equal(v[0], "https://ca/up");
	acme_strv_free(v, (size_t)n);
	assert_int_equal(acme_links_find(links, 6, "nothing", &v), 0);
	assert_null(v);
	assert_int_equal(acme_links_find(NULL, 0, "alternate", &v), 0);
}

static void test_zerossl(void **state)
{
	const char *ok = "{\"success\":true,\"eab_kid\":\"kid1\",\"eab_hmac_key\":\"hmac1\"}";
	const char *no = "{\"success\":false,\"error\":{\"code\":2,\"type\":\"invalid_email\"}}";
	char *k, *h, err[256];

	assert_int_equal(acme_parse_zerossl_eab(ok, strlen(ok), &k, &h, err, sizeof(err)), 0);
	assert_string_equal(k, "kid1");
	assert_string_equal(h, "hmac1");
	free(k);
	free(h);
	assert_int_equal(acme_parse_zerossl_eab(no, strlen(no), &k, &h, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "invalid_email"));
	assert_null(k);
	assert_int_equal(acme_parse_zerossl_eab(SL("nope"), &k, &h, err, sizeof(err)), -1);
	assert_true(acme_is_zerossl("https://acme.zerossl.com/v2/DV90"));
	assert_true(acme_is_zerossl("https://ACME.zerossl.com:443/v2/DV90"));
	assert_false(acme_is_zerossl("https://acme.zerossl.com.evil.test/v2"));
	assert_false(acme_is_zerossl("https://notacme.zerossl.com/v2"));
	assert_false(acme_is_zerossl("http://acme.zerossl.com/v2"));
	assert_false(acme_is_zerossl("https://acme-v02.api.letsencrypt.org/directory"));
}

/* ---- the client against a fake CA ---- */

enum fake_mode {
	FAKE_DIR_GARBAGE = 0,
	FAKE_TOS,
	FAKE_EAB,
	FAKE_BADNONCE,
	FAKE_RATELIMIT,
	FAKE_MALFORMED_ORDER,
	FAKE_NO_HTTP01,
	FAKE_AUTHZ_INVALID,
	FAKE_SLOW,
	FAKE_PLAIN_HTTP,	/* the order names plain-http URLs off loopback */
	FAKE_ACCT_GONE,		/* the first order: accountDoesNotExist */
	FAKE__MAX
};

struct fake {
	enum fake_mode mode;
	pthread_mutex_t mu;
	int order_posts, chall_posts, nonce_ctr, acct_posts;
	int chall_posted_before_set;
	volatile int set_calls, clear_calls;
};

static struct fake g_fake = { .mu = PTHREAD_MUTEX_INITIALIZER };
static struct mini_httpd g_srv;

static char *fake_handler(const struct mini_req *req, size_t *len, int *delay_ms, void *arg)
{
	struct fake *f = arg;
	char hdr[512], body[2048], base[64];
	int n, status = 200;

	snprintf(base, sizeof(base), "http://127.0.0.1:%d", g_srv.port);
	pthread_mutex_lock(&f->mu);
	n = ++f->nonce_ctr;
	pthread_mutex_unlock(&f->mu);
	snprintf(hdr, sizeof(hdr), "Replay-Nonce: nonce%d\r\nContent-Type: application/json\r\n", n);
	if (!strcmp(req->path, "/dir")) {
		if (f->mode == FAKE_DIR_GARBAGE)
			return mini_response(200, hdr, "<html>hello</html>", strlen("<html>hello</html>"), len);
		n = snprintf(body, sizeof(body), "{\"newNonce\":\"%s/nonce\",\"newAccount\":\"%s/acct\","
			     "\"newOrder\":\"%s/order\",\"meta\":{%s}}", base, base, base,
			     f->mode == FAKE_TOS ? "\"termsOfService\":\"https://ca.test/tos\"" :
			     f->mode == FAKE_EAB ? "\"externalAccountRequired\":true" : "");
		return mini_response(200, hdr, body, (size_t)n, len);
	}
	if (!strcmp(req->path, "/nonce"))
		return mini_response(200, hdr, "", strlen(""), len);
	if (!strcmp(req->path, "/acct")) {
		char h2[640];

		pthread_mutex_lock(&f->mu);
		f->acct_posts++;
		pthread_mutex_unlock(&f->mu);
		snprintf(h2, sizeof(h2), "%sLocation: %s/acct/1\r\n", hdr, base);
		return mini_response(201, h2, "{\"status\":\"valid\"}", strlen("{\"status\":\"valid\"}"), len);
	}
	if (!strcmp(req->path, "/order")) {
		char h2[640];

		pthread_mutex_lock(&f->mu);
		f->order_posts++;
		pthread_mutex_unlock(&f->mu);
		snprintf(h2, sizeof(h2), "%sLocation: %s/order/1\r\n", hdr, base);
		switch (f->mode) {
		case FAKE_BADNONCE:
			n = snprintf(body, sizeof(body), "{\"type\":\"" P "badNonce\",\"detail\":\"stale\"}");
			return mini_response(400, hdr, body, (size_t)n, len);
		case FAKE_ACCT_GONE:
			if (f->order_posts == 1) {
				n = snprintf(body, sizeof(body), "{\"type\":\"" P "accountDoesNotExist\",\"detail\":\"no such account\"}");
				return mini_response(400, hdr, body, (size_t)n, len);
			}
			n = snprintf(body, sizeof(body), "{\"status\":\"pending\",\"finalize\":\"%s/fin\","
				     "\"authorizations\":[\"%s/authz\"]}", base, base);
			return mini_response(201, h2, body, (size_t)n, len);
		case FAKE_RATELIMIT:
			n = snprintf(body, sizeof(body), "{\"type\":\"" P "rateLimited\",\"detail\":\"slow down\"}");
			strcat(hdr, "Retry-After: 120\r\n");
			return mini_response(429, hdr, body, (size_t)n, len);
		case FAKE_MALFORMED_ORDER:
			return mini_response(201, h2, "{\"status\":\"pending\",\"authorizations\":\"x\"", strlen("{\"status\":\"pending\",\"authorizations\":\"x\""), len);
		case FAKE_PLAIN_HTTP:
			n = snprintf(body, sizeof(body), "{\"status\":\"pending\",\"finalize\":\"http://ca.example.net/fin\","
				     "\"authorizations\":[\"http://ca.example.net/authz\"]}");
			return mini_response(201, h2, body, (size_t)n, len);
		case FAKE_SLOW:
			*delay_ms = 1000;
			/* fall through */
		default:
			n = snprintf(body, sizeof(body), "{\"status\":\"pending\",\"finalize\":\"%s/fin\","
				     "\"authorizations\":[\"%s/authz\"]}", base, base);
			return mini_response(201, h2, body, (size_t)n, len);
		}
	}
	if (!strcmp(req->path, "/authz")) {
		int posted;

		pthread_mutex_lock(&f->mu);
		posted = f->chall_posts;
		pthread_mutex_unlock(&f->mu);
		n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.test\"},"
			     "\"challenges\":[{\"type\":\"%s\",\"url\":\"%s/chall\",\"token\":\"tok123\",\"status\":\"%s\""
			     "%s}]}", posted ? "invalid" : "pending", f->mode == FAKE_NO_HTTP01 ? "dns-01" : "http-01",
			     base, posted ? "invalid" : "pending",
			     posted ? ",\"error\":{\"type\":\"" P "unauthorized\",\"detail\":\"wrong key authorization\"}" : "");
		return mini_response(200, hdr, body, (size_t)n, len);
	}
	if (!strcmp(req->path, "/chall")) {
		pthread_mutex_lock(&f->mu);
		f->chall_posts++;
		if (f->set_calls == 0)
			f->chall_posted_before_set = 1;
		pthread_mutex_unlock(&f->mu);
		return mini_response(200, hdr, "{\"type\":\"http-01\",\"status\":\"processing\"}", strlen("{\"type\":\"http-01\",\"status\":\"processing\"}"), len);
	}
	status = 404;
	return mini_response(status, hdr, "{\"type\":\"" P "malformed\",\"detail\":\"no such thing\"}", strlen("{\"type\":\"" P "malformed\",\"detail\":\"no such thing\"}"), len);
}

static int hook_set(void *arg, const char *host, const char *token, const char *key_auth)
{
	struct fake *f = arg;

	assert_string_equal(token, "tok123");
	assert_non_null(strstr(key_auth, "tok123."));
	f->set_calls++;
	return 0;
}

static void hook_clear(void *arg, const char *host, const char *token)
{
	struct fake *f = arg;

	f->clear_calls++;
}

struct outcome {
	int calls;
	int ok;
	long status, retry_after;
	char type[128], detail[512];
};

static int g_pending;

static void cb_done(void *arg, const char *host, const struct acme_result *res)
{
	struct outcome *o = arg;

	o->calls++;
	o->ok = res->ok;
	o->status = res->problem.status;
	o->retry_after = res->problem.retry_after;
	snprintf(o->type, sizeof(o->type), "%s", res->problem.type ? res->problem.type : "-");
	snprintf(o->detail, sizeof(o->detail), "%s", res->problem.detail ? res->problem.detail : "-");
	if (--g_pending == 0)
		ev_break(EV_DEFAULT, EVBREAK_ALL);
}

static void cb_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void run_loop(double secs)
{
	ev_timer guard;

	ev_timer_init(&guard, cb_guard, secs, 0.);
	ev_timer_start(EV_DEFAULT, &guard);
	ev_run(EV_DEFAULT, 0);
	ev_timer_stop(EV_DEFAULT, &guard);
}

static struct acme_client *fake_client_url(enum fake_mode mode, int tos, const char *account_url)
{
	struct acme_hooks hooks = { .challenge_set = hook_set, .challenge_clear = hook_clear };
	struct acme_conf conf = { .email = "t@acme-spoa.test", .tos_accepted = tos,
				  .cert_key_type = CRYPTO_KEY_EC_P256 };
	char dir[128], err[256];
	EVP_PKEY *key = crypto_key_generate(CRYPTO_KEY_EC_P256, 0, err, sizeof(err));
	struct acme_client *c;

	assert_non_null(key);
	pthread_mutex_lock(&g_fake.mu);
	g_fake.mode = mode;
	g_fake.order_posts = g_fake.chall_posts = 0;
	g_fake.chall_posted_before_set = 0;
	g_fake.set_calls = g_fake.clear_calls = 0;
	g_fake.acct_posts = 0;
	pthread_mutex_unlock(&g_fake.mu);
	snprintf(dir, sizeof(dir), "http://127.0.0.1:%d/dir", g_srv.port);
	conf.directory_url = dir;
	c = acme_client_new(EV_DEFAULT, &conf, key, &hooks, &g_fake, err, sizeof(err));
	assert_non_null(c);
	if (account_url)
		assert_int_equal(acme_client_set_account_url(c, account_url), 0);
	return c;
}

static struct acme_client *fake_client(enum fake_mode mode, int tos)
{
	return fake_client_url(mode, tos, NULL);
}

/* Runs one order on a fresh client in <mode>; returns its outcome. */
static struct outcome run_order(enum fake_mode mode, int tos)
{
	struct acme_client *c = fake_client(mode, tos);
	struct outcome o = { 0 };

	g_pending = 1;
	assert_int_equal(acme_order_start(c, "a.test", NULL, cb_done, &o), 0);
	assert_int_equal(o.calls, 0);
	run_loop(20);
	assert_int_equal(o.calls, 1);
	assert_int_equal(acme_client_pending(c), 0);
	acme_client_free(c);
	return o;
}

static void test_client_directory_garbage(void **state)
{
	struct outcome o = run_order(FAKE_DIR_GARBAGE, 1);

	assert_false(o.ok);
	assert_non_null(strstr(o.detail, "directory"));
	assert_non_null(strstr(o.detail, "not JSON"));
}

static void test_client_tos_not_accepted(void **state)
{
	struct outcome o = run_order(FAKE_TOS, 0);

	assert_false(o.ok);
	assert_non_null(strstr(o.detail, "terms of service"));
	assert_non_null(strstr(o.detail, "tos_accepted"));
}

static void test_client_eab_required(void **state)
{
	struct outcome o = run_order(FAKE_EAB, 1);

	assert_false(o.ok);
	assert_non_null(strstr(o.detail, "external account binding"));
}

static void test_client_badnonce_bounded(void **state)
{
	struct outcome o = run_order(FAKE_BADNONCE, 1);

	assert_false(o.ok);
	assert_string_equal(o.type, P "badNonce");
	assert_int_equal(o.status, 400);
	assert_int_equal(g_fake.order_posts, 1 + ACME_MAX_BADNONCE_RETRIES);
}

static void test_client_rate_limited(void **state)
{
	struct outcome o = run_order(FAKE_RATELIMIT, 1);

	assert_false(o.ok);
	assert_string_equal(o.type, P "rateLimited");
	assert_int_equal(o.status, 429);
	assert_int_equal(o.retry_after, 120);
	assert_non_null(strstr(o.detail, "slow down"));
}

static void test_client_malformed_order(void **state)
{
	struct outcome o = run_order(FAKE_MALFORMED_ORDER, 1);

	assert_false(o.ok);
	assert_non_null(strstr(o.detail, "malformed order"));
}

static void test_client_no_http01(void **state)
{
	struct outcome o = run_order(FAKE_NO_HTTP01, 1);

	assert_false(o.ok);
	assert_non_null(strstr(o.detail, "no http-01"));
	assert_int_equal(g_fake.set_calls, 0);
}

static void test_client_authz_invalid(void **state)
{
	struct outcome o = run_order(FAKE_AUTHZ_INVALID, 1);

	assert_false(o.ok);
	assert_string_equal(o.type, P "unauthorized");
	assert_string_equal(o.detail, "wrong key authorization");
	/* the hook ran before the CA was told, and its token was cleared at the end */
	assert_int_equal(g_fake.set_calls, 1);
	assert_int_equal(g_fake.chall_posts, 1);
	assert_int_equal(g_fake.chall_posted_before_set, 0);
	assert_int_equal(g_fake.clear_calls, 1);
}

/* A URL the CA gives is followed only over https (or plain http to
 * loopback): an authorization URL in clear off loopback is refused. */
static void test_client_plain_http_refused(void **state)
{
	struct outcome o = run_order(FAKE_PLAIN_HTTP, 1);

	assert_false(o.ok);
	assert_non_null(strstr(o.detail, "http://ca.example.net/authz"));
	assert_non_null(strstr(o.detail, "plain http"));
}

static void test_client_many_orders_then_free(void **state)
{
	struct acme_client *c = fake_client(FAKE_SLOW, 1);
	struct outcome o[25];
	char host[32];
	int i;

	memset(o, 0, sizeof(o));
	for (i = 0; i < 25; i++) {
		snprintf(host, sizeof(host), "%d.a.test", i);
		assert_int_equal(acme_order_start(c, host, NULL, cb_done, &o[i]), 0);
	}
	assert_int_equal(acme_client_pending(c), 25);
	g_pending = 1000;
	run_loop(0.5); /* newOrder requests are in flight (the CA answers after 1 s) */
	acme_client_free(c);
	run_loop(0.2);
	for (i = 0; i < 25; i++)
		assert_int_equal(o[i].calls, 0);
	crypto_async_shutdown();
}

/* An account URL imported with its key is used at once (no newAccount); when
 * the CA does not know it (another tool's, deactivated, or a CA that lost its
 * state), the key's account is found with newAccount and the refused POST is
 * sent again under it: that very order goes on, once. */
static void test_client_imported_account(void **state)
{
	char url[128];
	struct acme_client *c;
	struct outcome o = { 0 }, o2 = { 0 };

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/acct/imported", g_srv.port);
	c = fake_client_url(FAKE_AUTHZ_INVALID, 1, url);
	assert_string_equal(acme_account_url(c), url);
	g_pending = 1;
	assert_int_equal(acme_order_start(c, "a.test", NULL, cb_done, &o), 0);
	run_loop(20);
	assert_int_equal(o.calls, 1);
	assert_int_equal(g_fake.order_posts, 1);
	assert_int_equal(g_fake.acct_posts, 0);
	assert_string_equal(acme_account_url(c), url);
	acme_client_free(c);

	c = fake_client_url(FAKE_ACCT_GONE, 1, url);
	g_pending = 1;
	o = (struct outcome){ 0 };
	assert_int_equal(acme_order_start(c, "a.test", NULL, cb_done, &o), 0);
	run_loop(20);
	assert_int_equal(o.calls, 1);
	/* the order went on to its authorization (the fake's: invalid) */
	assert_string_not_equal(o.type, P "accountDoesNotExist");
	assert_int_equal(g_fake.acct_posts, 1);
	assert_int_equal(g_fake.order_posts, 2);
	assert_true(g_fake.chall_posts >= 1);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/acct/1", g_srv.port);
	assert_string_equal(acme_account_url(c), url);
	g_pending = 1;
	assert_int_equal(acme_order_start(c, "a.test", NULL, cb_done, &o2), 0);
	run_loop(20);
	assert_int_equal(o2.calls, 1);
	assert_int_equal(g_fake.acct_posts, 1);
	assert_int_equal(g_fake.order_posts, 3);
	acme_client_free(c);
}

static void test_client_bad_args(void **state)
{
	struct acme_conf conf = { .directory_url = "ftp://x" };
	char err[256];
	EVP_PKEY *key = crypto_key_generate(CRYPTO_KEY_EC_P256, 0, err, sizeof(err));
	struct acme_client *c;

	assert_null(acme_client_new(EV_DEFAULT, &conf, key, NULL, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "not an http(s) URL"));
	key = crypto_key_generate(CRYPTO_KEY_EC_P256, 0, err, sizeof(err));
	conf.directory_url = "https://ca.test/dir";
	conf.eab_kid = "kid";
	assert_null(acme_client_new(EV_DEFAULT, &conf, key, NULL, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "eab_kid and eab_hmac_key"));
	c = fake_client(FAKE_SLOW, 1);
	assert_int_equal(acme_order_start(c, "", NULL, cb_done, NULL), -1);
	assert_int_equal(acme_order_start(c, "a.test", NULL, NULL, NULL), -1);
	assert_int_equal(acme_has_ari(c), 0);
	assert_null(acme_account_url(c));
	acme_client_free(c);
	acme_client_free(NULL);
	acme_result_clear(NULL);
	acme_problem_clear(NULL);
}

static int setup(void **state)
{
	return mini_httpd_start(&g_srv, fake_handler, &g_fake);
}

static int teardown(void **state)
{
	mini_httpd_stop(&g_srv);
	crypto_async_shutdown();
	return 0;
}

/* RFC 8737 §3: self-signed, the name as its only SAN, and the critical
 * acmeIdentifier extension whose value is the DER OCTET STRING of
 * SHA-256(key authorization). */
static void test_tlsalpn01_cert(void **state)
{
	static const char ka[] = "token.thumbprint";
	unsigned char md[32], want[34];
	unsigned int mdlen = sizeof(md);
	char err[128] = "";
	size_t len = 0;
	char *pem = acme_tlsalpn01_cert("alpn.example.com", ka, &len, err, sizeof(err));
	BIO *b;
	X509 *x;
	EVP_PKEY *k;
	GENERAL_NAMES *gens;
	ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
	X509_EXTENSION *ext;
	const ASN1_OCTET_STRING *val;
	int idx;

	(void)state;
	assert_non_null(pem);
	assert_int_equal(strlen(pem), len);
	b = BIO_new_mem_buf(pem, (int)len);
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	assert_non_null(x);
	assert_non_null(k);
	assert_int_equal(X509_check_private_key(x, k), 1);
	assert_int_equal(X509_verify(x, k), 1);		/* self-signed */
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(gens);
	assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
	assert_int_equal(sk_GENERAL_NAME_value(gens, 0)->type, GEN_DNS);
	assert_string_equal((const char *)ASN1_STRING_get0_data(sk_GENERAL_NAME_value(gens, 0)->d.dNSName),
			    "alpn.example.com");
	GENERAL_NAMES_free(gens);
	idx = X509_get_ext_by_OBJ(x, oid, -1);
	assert_true(idx >= 0);
	ext = X509_get_ext(x, idx);
	assert_int_equal(X509_EXTENSION_get_critical(ext), 1);
	val = X509_EXTENSION_get_data(ext);
	assert_true(EVP_Digest(ka, strlen(ka), md, &mdlen, EVP_sha256(), NULL));
	want[0] = 0x04;
	want[1] = 32;
	memcpy(want + 2, md, 32);
	assert_int_equal(ASN1_STRING_length(val), 34);
	assert_memory_equal(ASN1_STRING_get0_data(val), want, 34);
	ASN1_OBJECT_free(oid);
	EVP_PKEY_free(k);
	X509_free(x);
	BIO_free(b);
	OPENSSL_cleanse(pem, len);
	free(pem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_problem_full),
		cmocka_unit_test(test_client_imported_account),
		cmocka_unit_test(test_problem_rate_limited),
		cmocka_unit_test(test_problem_not_json),
		cmocka_unit_test(test_problem_long_detail),
		cmocka_unit_test(test_directory),
		cmocka_unit_test(test_directory_malformed),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_order_malformed),
		cmocka_unit_test(test_authz),
		cmocka_unit_test(test_authz_malformed),
		cmocka_unit_test(test_renewal_info),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_links),
		cmocka_unit_test(test_zerossl),
		cmocka_unit_test(test_client_directory_garbage),
		cmocka_unit_test(test_client_tos_not_accepted),
		cmocka_unit_test(test_client_eab_required),
		cmocka_unit_test(test_client_badnonce_bounded),
		cmocka_unit_test(test_client_rate_limited),
		cmocka_unit_test(test_client_malformed_order),
		cmocka_unit_test(test_client_no_http01),
		cmocka_unit_test(test_tlsalpn01_cert),
		cmocka_unit_test(test_client_authz_invalid),
		cmocka_unit_test(test_client_plain_http_refused),
		cmocka_unit_test(test_client_many_orders_then_free),
		cmocka_unit_test(test_client_bad_args),
	};

	log_level_max = -1;
	return cmocka_run_group_tests(tests, setup, teardown);
}
