/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for acme/http.c: Retry-After parsing, and real requests through
 * curl-multi on libev against a tiny HTTP server on 127.0.0.1:0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ev.h>

#include "acme/http.h"
#include "mini_httpd.h"

/* ---- Retry-After ---- */

static void test_retry_after_delta(void **state)
{
	assert_int_equal(http_parse_retry_after("120", 0), 120);
	assert_int_equal(http_parse_retry_after("0", 0), 0);
	assert_int_equal(http_parse_retry_after("  7 ", 0), 7);
	assert_true(http_parse_retry_after("99999999999999999999999", 0) > 1000000);
}

static void test_retry_after_date(void **state)
{
	/* Sun, 06 Nov 1994 08:49:37 GMT = 784111777 */
	time_t t = 784111777;

	assert_int_equal(http_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", t - 100), 100);
	assert_int_equal(http_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", t - 5), 5);
	assert_int_equal(http_parse_retry_after("Sun Nov  6 08:49:37 1994", t - 60), 60);
	/* a date in the past means now */
	assert_int_equal(http_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", t + 100), 0);
}

static void test_retry_after_garbage(void **state)
{
	assert_int_equal(http_parse_retry_after(NULL, 0), -1);
	assert_int_equal(http_parse_retry_after("", 0), -1);
	assert_int_equal(http_parse_retry_after("   ", 0), -1);
	assert_int_equal(http_parse_retry_after("soon", 0), -1);
	assert_int_equal(http_parse_retry_after("12abc", 0), -1);
	assert_int_equal(http_parse_retry_after("-5", 0), -1);
	assert_int_equal(http_parse_retry_after("1.5", 0), -1);
	assert_int_equal(http_parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", 0), -1);
	assert_int_equal(http_parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", 0), -1);
	assert_int_equal(http_parse_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", 0), -1);
}

/* HTTP-dates are read by curl_getdate(): an obsolete zone counts, a word
 * after the date is ignored (RFC 9110 asks recipients to be lenient). */
/* https anywhere, plain http to loopback only */
static void test_url_check(void **state)
{
	static const char *const good[] = {
		"https://acme-v02.api.letsencrypt.org/directory", "https://10.1.2.3:14000/dir",
		"http://127.0.0.1:9/ask", "http://127.9.8.7/x", "http://localhost:80/a?b=c",
		"http://[::1]:8080/a", "HTTPS://CA.EXAMPLE/dir",
	};
	static const char *const bad[] = {
		"http://ca.example.com/acme/order/1", "http://10.0.0.1/", "http://[::2]/",
		"http://128.0.0.1/", "ftp://127.0.0.1/", "gopher://x/", "",
		"not a url", "http://localhost.evil.example/",
	};
	char err[300];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (http_url_check(good[i], err, sizeof(err)) != 0)
			fail_msg("%s refused: %s", good[i], err);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (http_url_check(bad[i], err, sizeof(err)) != -1)
			fail_msg("%s accepted", bad[i]);
		assert_true(err[0] != '\0');
	}
	assert_int_equal(http_url_check(NULL, err, sizeof(err)), -1);
}

static void test_retry_after_lenient_dates(void **state)
{
	assert_int_equal(http_parse_retry_after("Sun, 06 Nov 1994 08:49:37 PST", 784111777), 8 * 3600);
	assert_int_equal(http_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT trailing", 784111770), 7);
}

/* ---- requests against the mini server ---- */

static char *handler(const struct mini_req *req, size_t *len, int *delay_ms, void *arg)
{
	if (!strcmp(req->path, "/ok")) {
		return mini_response(201,
			"Content-Type: application/json\r\n"
			"Location: http://127.0.0.1/x/1\r\n"
			"Replay-Nonce: nonce-abc_123\r\n"
			"Retry-After: 30\r\n"
			"Link: <http://127.0.0.1/dir>;rel=\"index\"\r\n"
			"Link: <http://127.0.0.1/alt/1>;rel=\"alternate\"\r\n"
			"link: <http://127.0.0.1/alt/2>;rel=\"alternate\", <http://127.0.0.1/up>;rel=\"up\"\r\n",
			"{\"hello\":1}", 11, len);
	}
	if (!strcmp(req->path, "/echo")) {
		char body[70000];
		int n = snprintf(body, sizeof(body), "%s|%s|%s|%.*s", req->method, req->content_type,
				 req->accept, (int)req->body_len, req->body);

		return mini_response(200, NULL, body, (size_t)n, len);
	}
	if (!strcmp(req->path, "/big")) {
		size_t n = 2 * 1024 * 1024;
		char *b = malloc(n), *r;

		memset(b, 'x', n);
		r = mini_response(200, NULL, b, n, len);
		free(b);
		return r;
	}
	if (!strcmp(req->path, "/slow")) {
		*delay_ms = 1500;
		return mini_response(200, NULL, "late", 4, len);
	}
	if (!strcmp(req->path, "/empty"))
		return mini_response(204, "Replay-Nonce: n2\r\n", "", 0, len);
	return mini_response(404, "Content-Type: text/plain\r\n", "Not found\n", 10, len);
}

struct got {
	int calls;
	long status;
	char error[256];
	char body[256];
	size_t body_len;
	char ct[128], loc[128], nonce[128], ra[32];
	char links[4][128];
	size_t nlinks;
};

static void copy(char *dst, size_t n, const char *s)
{
	snprintf(dst, n, "%s", s ? s : "(null)");
}

static int g_outstanding;

static void cb_got(void *arg, const struct http_response *res)
{
	struct got *g = arg;
	size_t i;

	g->calls++;
	g->status = res->status;
	copy(g->error, sizeof(g->error), res->error);
	snprintf(g->body, sizeof(g->body), "%.*s", (int)(res->body_len < 200 ? res->body_len : 200), res->body);
	g->body_len = res->body_len;
	copy(g->ct, sizeof(g->ct), res->content_type);
	copy(g->loc, sizeof(g->loc), res->location);
	copy(g->nonce, sizeof(g->nonce), res->replay_nonce);
	copy(g->ra, sizeof(g->ra), res->retry_after);
	g->nlinks = res->nlinks;
	for (i = 0; i < res->nlinks && i < 4; i++)
		copy(g->links[i], sizeof(g->links[i]), res->links[i]);
	if (--g_outstanding == 0)
		ev_break(EV_DEFAULT, EVBREAK_ALL);
}

static void cb_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until every expected callback came, at most <secs>. */
static void run_loop(double secs)
{
	ev_timer guard;

	ev_timer_init(&guard, cb_guard, secs, 0.);
	ev_timer_start(EV_DEFAULT, &guard);
	if (g_outstanding > 0)
		ev_run(EV_DEFAULT, 0);
	ev_timer_stop(EV_DEFAULT, &guard);
}

static struct mini_httpd g_srv;

static int setup_srv(void **state)
{
	return mini_httpd_start(&g_srv, handler, NULL);
}

static int teardown_srv(void **state)
{
	mini_httpd_stop(&g_srv);
	return 0;
}

static void url(char *buf, size_t n, const char *path)
{
	snprintf(buf, n, "http://127.0.0.1:%d%s", g_srv.port, path);
}

static void test_request_headers_and_body(void **state)
{
	char err[256], u[256];
	struct http_client *c = http_client_new(EV_DEFAULT, NULL, err, sizeof(err));
	struct got g = { 0 };

	assert_non_null(c);
	url(u, sizeof(u), "/ok");
	g_outstanding = 1;
	assert_int_equal(http_request(c, "GET", u, NULL, NULL, 0, 5000, cb_got, &g), 0);
	assert_int_equal(g.calls, 0); /* never from inside http_request */
	run_loop(10);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.status, 201);
	assert_string_equal(g.error, "(null)");
	assert_string_equal(g.body, "{\"hello\":1}");
	assert_int_equal(g.body_len, 11);
	assert_string_equal(g.ct, "application/json");
	assert_string_equal(g.loc, "http://127.0.0.1/x/1");
	assert_string_equal(g.nonce, "nonce-abc_123");
	assert_string_equal(g.ra, "30");
	assert_int_equal(g.nlinks, 3);
	assert_string_equal(g.links[0], "<http://127.0.0.1/dir>;rel=\"index\"");
	assert_string_equal(g.links[1], "<http://127.0.0.1/alt/1>;rel=\"alternate\"");
	assert_string_equal(g.links[2], "<http://127.0.0.1/alt/2>;rel=\"alternate\", <http://127.0.0.1/up>;rel=\"up\"");
	assert_int_equal(http_client_pending(c), 0);
	http_client_free(c);
}

static void test_post_and_extra_headers(void **state)
{
	char err[256], u[256];
	struct http_client *c = http_client_new(EV_DEFAULT, NULL, err, sizeof(err));
	const char *hdrs[] = { "Content-Type: application/jose+json", "Accept: application/pem-certificate-chain" };
	struct got g1 = { 0 }, g2 = { 0 }, g3 = { 0 };

	assert_non_null(c);
	url(u, sizeof(u), "/echo");
	g_outstanding = 3;
	assert_int_equal(http_request(c, "POST", u, "application/x-www-form-urlencoded", "a=1&b=2", 7, 5000,
				      cb_got, &g1), 0);
	assert_int_equal(http_request_hdr(c, "POST", u, hdrs, 2, "{\"x\":1}", 7, 5000, cb_got, &g2), 0);
	url(u, sizeof(u), "/empty");
	assert_int_equal(http_request(c, "HEAD", u, NULL, NULL, 0, 5000, cb_got, &g3), 0);
	assert_int_equal(http_client_pending(c), 3);
	run_loop(10);
	assert_int_equal(g1.status, 200);
	assert_string_equal(g1.body, "POST|application/x-www-form-urlencoded|*/*|a=1&b=2");
	assert_int_equal(g2.status, 200);
	assert_string_equal(g2.body, "POST|application/jose+json|application/pem-certificate-chain|{\"x\":1}");
	assert_int_equal(g3.status, 204);
	assert_string_equal(g3.nonce, "n2");
	assert_int_equal(g3.body_len, 0);
	http_client_free(c);
}

static void test_404_and_refused(void **state)
{
	char err[256], u[256];
	struct http_client *c = http_client_new(EV_DEFAULT, NULL, err, sizeof(err));
	struct got g1 = { 0 }, g2 = { 0 };
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd, port;

	/* a port that was free a moment ago and has no listener */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	close(fd);

	assert_non_null(c);
	url(u, sizeof(u), "/nope");
	g_outstanding = 2;
	assert_int_equal(http_request(c, "GET", u, NULL, NULL, 0, 5000, cb_got, &g1), 0);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", port);
	assert_int_equal(http_request(c, "GET", u, NULL, NULL, 0, 5000, cb_got, &g2), 0);
	run_loop(10);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g1.status, 404);
	assert_string_equal(g1.body, "Not found\n");
	assert_int_equal(g2.calls, 1);
	assert_int_equal(g2.status, 0);
	assert_string_not_equal(g2.error, "(null)");
	assert_true(strlen(g2.error) > 0);
	assert_int_equal(g2.body_len, 0);
	http_client_free(c);
}

static void test_body_cap_and_timeout(void **state)
{
	char err[256], u[256];
	struct http_client *c = http_client_new(EV_DEFAULT, NULL, err, sizeof(err));
	struct got g1 = { 0 }, g2 = { 0 };

	assert_non_null(c);
	url(u, sizeof(u), "/big");
	g_outstanding = 2;
	assert_int_equal(http_request(c, "GET", u, NULL, NULL, 0, 5000, cb_got, &g1), 0);
	url(u, sizeof(u), "/slow");
	assert_int_equal(http_request(c, "GET", u, NULL, NULL, 0, 300, cb_got, &g2), 0);
	run_loop(10);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g1.status, 0);
	assert_non_null(strstr(g1.error, "response body over"));
	assert_int_equal(g2.calls, 1);
	assert_int_equal(g2.status, 0);
	assert_true(strlen(g2.error) > 0);
	http_client_free(c);
}

static void test_free_cancels_without_callbacks(void **state)
{
	char err[256], u[256];
	struct http_client *c = http_client_new(EV_DEFAULT, NULL, err, sizeof(err));
	struct got g[3];
	ev_timer t;
	int i;

	memset(g, 0, sizeof(g));
	assert_non_null(c);
	url(u, sizeof(u), "/slow");
	for (i = 0; i < 3; i++)
		assert_int_equal(http_request(c, "GET", u, NULL, NULL, 0, 5000, cb_got, &g[i]), 0);
	/* let the transfers start, then free with them in flight */
	ev_timer_init(&t, cb_guard, 0.2, 0.);
	ev_timer_start(EV_DEFAULT, &t);
	ev_run(EV_DEFAULT, 0);
	http_client_free(c);
	g_outstanding = 1;
	run_loop(0.5);
	for (i = 0; i < 3; i++)
		assert_int_equal(g[i].calls, 0);
	http_client_free(NULL);
}

struct freer {
	struct http_client *c;
	int calls;
};

static void cb_free_client(void *arg, const struct http_response *res)
{
	struct freer *f = arg;

	f->calls++;
	http_client_free(f->c);
	ev_break(EV_DEFAULT, EVBREAK_ALL);
}

static void test_free_from_callback(void **state)
{
	char err[256], u[256];
	struct freer f = { 0 };
	struct got g = { 0 };

	f.c = http_client_new(EV_DEFAULT, NULL, err, sizeof(err));
	assert_non_null(f.c);
	url(u, sizeof(u), "/ok");
	assert_int_equal(http_request(f.c, "GET", u, NULL, NULL, 0, 5000, cb_free_client, &f), 0);
	url(u, sizeof(u), "/slow");
	assert_int_equal(http_request(f.c, "GET", u, NULL, NULL, 0, 5000, cb_got, &g), 0);
	g_outstanding = 1;
	run_loop(5);
	assert_int_equal(f.calls, 1);
	run_loop(0.3);
	assert_int_equal(g.calls, 0);
}

static void test_bad_ca_file(void **state)
{
	char err[256] = "";
	char path[] = "/tmp/test_http_ca.XXXXXX";
	int fd;

	assert_null(http_client_new(EV_DEFAULT, "/nonexistent/ca.pem", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/ca.pem"));
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "not a cert\n", 11), 11);
	close(fd);
	err[0] = '\0';
	assert_null(http_client_new(EV_DEFAULT, path, err, sizeof(err)));
	assert_non_null(strstr(err, "no PEM certificate"));
	unlink(path);
}

static void test_bad_args(void **state)
{
	char err[256];
	struct http_client *c = http_client_new(EV_DEFAULT, NULL, err, sizeof(err));
	struct got g = { 0 };

	assert_int_equal(http_request(NULL, "GET", "http://127.0.0.1/", NULL, NULL, 0, 0, cb_got, &g), -1);
	assert_int_equal(http_request(c, "GET", NULL, NULL, NULL, 0, 0, cb_got, &g), -1);
	assert_int_equal(http_request(c, "GET", "http://127.0.0.1/", NULL, NULL, 0, 0, NULL, &g), -1);
	assert_int_equal(g.calls, 0);
	http_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retry_after_delta),
		cmocka_unit_test(test_retry_after_date),
		cmocka_unit_test(test_retry_after_garbage),
		cmocka_unit_test(test_url_check),
		cmocka_unit_test(test_retry_after_lenient_dates),
		cmocka_unit_test(test_request_headers_and_body),
		cmocka_unit_test(test_post_and_extra_headers),
		cmocka_unit_test(test_404_and_refused),
		cmocka_unit_test(test_body_cap_and_timeout),
		cmocka_unit_test(test_free_cancels_without_callbacks),
		cmocka_unit_test(test_free_from_callback),
		cmocka_unit_test(test_bad_ca_file),
		cmocka_unit_test(test_bad_args),
	};

	return cmocka_run_group_tests(tests, setup_srv, teardown_srv);
}
