/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for admin/: the HTTP layer against a fake certificate manager.
 * The admin runs in this thread's ev loop; libcurl drives it from a second
 * thread, which wakes the loop with an ev_async when its request is done. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <ev.h>

#include "admin/admin.h"
#include "lib/addr.h"
#include "lib/host.h"
#include "lib/metrics.h"

/* ---- fake certificate manager ---- */

struct delayed {
	ev_timer t;
	struct admin_req *req;
	unsigned status;
	char msg[256];
};

static struct fake {
	struct ev_loop *loop;
	int issue_calls, sanity_calls, renew_calls, delete_calls, list_calls;
	int replies_sent;
	int last_invalid_only, last_revoke;
	char last_host[256];
	int healthy;
	struct admin_req *held;		/* request kept unanswered on purpose */
} fake;

static void cb_delayed(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct delayed *d = w->data;

	(void)revents;
	ev_timer_stop(loop, w);
	admin_reply_message(d->req, d->status, d->msg);
	fake.replies_sent++;
	free(d);
}

/* Answers <req> from a timer <after> seconds later. */
static void reply_later(struct admin_req *req, double after, unsigned status, const char *msg)
{
	struct delayed *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	d->req = req;
	d->status = status;
	snprintf(d->msg, sizeof(d->msg), "%s", msg);
	ev_timer_init(&d->t, cb_delayed, after, 0.);
	d->t.data = d;
	ev_timer_start(fake.loop, &d->t);
}

static void fake_issue(void *ctx, const char *host, struct admin_req *req)
{
	char msg[300];

	(void)ctx;
	fake.issue_calls++;
	snprintf(fake.last_host, sizeof(fake.last_host), "%s", host);
	snprintf(msg, sizeof(msg), "certificate for host %s is created", host);
	if (strncmp(host, "sync.", 5) == 0) {
		admin_reply_message(req, 201, msg);
		fake.replies_sent++;
	} else if (strncmp(host, "fail.", 5) == 0) {
		reply_later(req, 0.05, 500, "urn:ietf:params:acme:error:rejectedIdentifier");
	} else if (strncmp(host, "slower.", 7) == 0) {
		reply_later(req, 1.6, 201, msg);
	} else if (strncmp(host, "slow.", 5) == 0) {
		reply_later(req, 0.4, 201, msg);
	} else if (strncmp(host, "hold.", 5) == 0) {
		fake.held = req;
	} else {
		reply_later(req, 0.1, 201, msg);
	}
}

static void fake_sanity(void *ctx, const char *host, struct admin_req *req)
{
	char msg[300];

	(void)ctx;
	fake.sanity_calls++;
	snprintf(fake.last_host, sizeof(fake.last_host), "%s", host);
	snprintf(msg, sizeof(msg), "sanity test for host %s passed", host);
	reply_later(req, 0.05, 200, msg);
}

static void fake_renew_all(void *ctx)
{
	(void)ctx;
	fake.renew_calls++;
}

static json_t *fake_cert(const char *host)
{
	return json_pack("{s:s,s:s,s:s,s:b,s:s,s:s,s:s,s:s}",
			 "host", host, "not_before", "2025-01-01 00:00:00",
			 "not_after", "2025-04-01 00:00:00", "valid", 1,
			 "serial_number", "0a1b", "digest", "AA:BB",
			 "issuer_cn", "Pebble", "pubkey_type", "id-ecPublicKey");
}

static json_t *fake_cert_list(void *ctx, int invalid_only)
{
	(void)ctx;
	fake.list_calls++;
	fake.last_invalid_only = invalid_only;
	if (invalid_only)
		return json_array();
	return json_pack("[o]", fake_cert("a.example.com"));
}

static json_t *fake_cert_get(void *ctx, const char *host)
{
	(void)ctx;
	snprintf(fake.last_host, sizeof(fake.last_host), "%s", host);
	return strcmp(host, "a.example.com") == 0 ? fake_cert(host) : NULL;
}

static void fake_cert_delete(void *ctx, const char *host, int revoke, struct admin_req *req)
{
	(void)ctx;
	fake.delete_calls++;
	fake.last_revoke = revoke;
	snprintf(fake.last_host, sizeof(fake.last_host), "%s", host);
	if (strcmp(host, "a.example.com") != 0) {
		admin_reply_message(req, 404, "Not found");
		return;
	}
	admin_reply_json(req, 200, json_pack("{s:s,s:b}", "message", "deleted", "revoked", revoke));
}

static void fake_metrics(void *ctx, struct metrics_buf *out)
{
	(void)ctx;
	metrics_header(out, "acme_spoa_test_total", "counter", "Test counter");
	metrics_value(out, "acme_spoa_test_total", NULL, 7);
}

static int fake_health(void *ctx, json_t **detail)
{
	(void)ctx;
	if (fake.healthy)
		return 1;
	*detail = json_pack("{s:s}", "storage", "down");
	return 0;
}

static const struct admin_ops fake_ops = {
	.issue = fake_issue,
	.sanity_test = fake_sanity,
	.renew_all = fake_renew_all,
	.cert_list = fake_cert_list,
	.cert_get = fake_cert_get,
	.cert_delete = fake_cert_delete,
	.metrics = fake_metrics,
	.health = fake_health,
};

/* ---- HTTP client in a thread ---- */

struct call {
	/* in */
	const char *method, *path, *ctype, *body, *auth;
	size_t body_len;
	long timeout_ms;
	int chunked;
	/* out */
	CURLcode rc;
	long status;
	char resp[8192];
	size_t resp_len;
	char ctype_out[128];
	char allow[128];
	double elapsed;
	/* chunked upload state */
	size_t sent;
};

static struct ev_loop *loop;
static struct admin *adm;
static ev_async done_async;
static ev_timer guard_timer;
static int guard_fired;

static size_t cb_write(char *p, size_t sz, size_t n, void *ud)
{
	struct call *c = ud;
	size_t len = sz * n, room = sizeof(c->resp) - 1 - c->resp_len;

	if (len < room)
		room = len;
	memcpy(c->resp + c->resp_len, p, room);
	c->resp_len += room;
	c->resp[c->resp_len] = '\0';
	return len;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name), n;

	if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	line += nl + 1;
	len -= nl + 1;
	while (len && *line == ' ')
		line++, len--;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	n = len < outlen - 1 ? len : outlen - 1;
	memcpy(out, line, n);
	out[n] = '\0';
}

static size_t cb_header(char *p, size_t sz, size_t n, void *ud)
{
	struct call *c = ud;

	header_value(p, sz * n, "Content-Type", c->ctype_out, sizeof(c->ctype_out));
	header_value(p, sz * n, "Allow", c->allow, sizeof(c->allow));
	return sz * n;
}

static size_t cb_read(char *buf, size_t sz, size_t n, void *ud)
{
	struct call *c = ud;
	size_t len = sz * n;

	if (len > c->body_len - c->sent)
		len = c->body_len - c->sent;
	memcpy(buf, c->body + c->sent, len);
	c->sent += len;
	return len;
}

static void *http_thread(void *ud)
{
	struct call *c = ud;
	struct curl_slist *hdrs = NULL;
	char url[512], line[512];
	CURL *h = curl_easy_init();

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", admin_port(adm), c->path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
	if (strcmp(c->method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cb_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cb_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms ? c->timeout_ms : 5000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (c->ctype) {
		snprintf(line, sizeof(line), "Content-Type: %s", c->ctype);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (c->auth) {
		snprintf(line, sizeof(line), "Authorization: %s", c->auth);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (c->chunked) {
		hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, cb_read);
		curl_easy_setopt(h, CURLOPT_READDATA, c);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
	} else if (c->body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	c->rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
	curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &c->elapsed);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	ev_async_send(loop, &done_async);
	return NULL;
}

static void cb_done(struct ev_loop *l, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(l, EVBREAK_ONE);
}

static void cb_guard(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	guard_fired = 1;
	ev_break(l, EVBREAK_ONE);
}

/* Runs the loop for at most <secs> seconds or until ev_break. */
static void run_loop_for(double secs)
{
	guard_fired = 0;
	ev_timer_set(&guard_timer, secs, 0.);
	ev_timer_start(loop, &guard_timer);
	ev_run(loop, 0);
	ev_timer_stop(loop, &guard_timer);
}

/* Performs <c> from a thread while the loop serves it. */
static void http(struct call *c)
{
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, http_thread, c), 0);
	run_loop_for(15.);
	assert_false(guard_fired);
	pthread_join(th, NULL);
}

static void do_req(struct call *c, const char *method, const char *path)
{
	memset(c, 0, sizeof(*c));
	c->method = method;
	c->path = path;
	http(c);
}

static void do_body(struct call *c, const char *method, const char *path,
		    const char *ctype, const char *body)
{
	memset(c, 0, sizeof(*c));
	c->method = method;
	c->path = path;
	c->ctype = ctype;
	c->body = body;
	c->body_len = strlen(body);
	http(c);
}

static void expect(const struct call *c, long status, const char *body)
{
	assert_int_equal(c->rc, CURLE_OK);
	if (c->status != status)
		fprintf(stderr, "unexpected answer %ld %s\n", c->status, c->resp);
	assert_int_equal(c->status, status);
	if (strcmp(c->resp, body))
		fprintf(stderr, "unexpected answer %s to %.200s\n", c->resp, c->body ? c->body : "");
	assert_string_equal(c->resp, body);
	assert_string_equal(c->ctype_out, "application/json");
}

/* ---- fixtures ---- */

static int setup(void **state)
{
	struct admin_conf conf = { .listen = "127.0.0.1:0" };
	char err[256] = "";

	(void)state;
	memset(&fake, 0, sizeof(fake));
	fake.loop = loop;
	fake.healthy = 1;
	adm = admin_new(loop, &conf, &fake_ops, NULL, err, sizeof(err));
	if (!adm) {
		fprintf(stderr, "admin_new: %s\n", err);
		return -1;
	}
	return admin_port(adm) > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	admin_free(adm);
	adm = NULL;
	/* let leftover delayed replies fire against the freed admin */
	run_loop_for(0.2);
	return 0;
}

/* ---- tests ---- */

/* The admin's host rule is lib/host.h with HOST_WILDCARD (all of it: test_lib). */
static void test_host_valid(void **state)
{
	char out[254];

	(void)state;
	assert_true(host_valid("a.example.com", HOST_WILDCARD));
	assert_true(host_valid("A-1.Example.COM", HOST_WILDCARD));
	assert_true(host_valid("*.example.com", HOST_WILDCARD));
	assert_true(host_valid("xn--bcher-kva.example", HOST_WILDCARD));
	assert_true(host_valid("1.2.3.example", HOST_WILDCARD));
	assert_false(host_valid(NULL, HOST_WILDCARD));
	assert_false(host_valid("", HOST_WILDCARD));
	assert_false(host_valid("localhost", HOST_WILDCARD));
	assert_false(host_valid("*.com", HOST_WILDCARD));
	assert_false(host_valid("a..b", HOST_WILDCARD));
	assert_false(host_valid(".a.b", HOST_WILDCARD));
	assert_false(host_valid("a.b.", HOST_WILDCARD));
	assert_false(host_valid("-a.b", HOST_WILDCARD));
	assert_false(host_valid("a-.b", HOST_WILDCARD));
	assert_false(host_valid("a_b.c", HOST_WILDCARD));
	assert_false(host_valid("a.*.c", HOST_WILDCARD));
	assert_false(host_valid("**.a.c", HOST_WILDCARD));
	assert_false(host_valid("1.2.3.4", HOST_WILDCARD));
	assert_false(host_valid("10.0.0.1", HOST_WILDCARD));
	assert_false(host_valid("::1", HOST_WILDCARD));
	assert_false(host_valid("[::1]", HOST_WILDCARD));
	assert_false(host_valid("a.b:443", HOST_WILDCARD));
	assert_false(host_valid("a b.c", HOST_WILDCARD));
	/* IPv4 in other spellings (curl reads 0x7f.0x1 as 127.0.0.1) */
	assert_false(host_valid("0x7f.0x1", HOST_WILDCARD));
	assert_false(host_valid("1.2.3.0x4", HOST_WILDCARD));
	assert_false(host_valid("127.1", HOST_WILDCARD));
	assert_false(host_valid("017.0.0.1", HOST_WILDCARD));
	assert_false(host_valid("*.0x7f.0x1", HOST_WILDCARD));
	{
		char l63[80], l64[80], big[300];

		memset(l63, 'a', 63);
		strcpy(l63 + 63, ".com");
		memset(l64, 'a', 64);
		strcpy(l64 + 64, ".com");
		assert_true(host_valid(l63, HOST_WILDCARD));
		assert_false(host_valid(l64, HOST_WILDCARD));
		/* 4 labels of 63 + 3 dots = 255 > 253 */
		snprintf(big, sizeof(big), "%.63s.%.63s.%.63s.%.61s", l63, l63, l63, l63);
		assert_int_equal(strlen(big), 253);
		assert_true(host_valid(big, HOST_WILDCARD));
		snprintf(big, sizeof(big), "%.63s.%.63s.%.63s.%.62s", l63, l63, l63, l63);
		assert_false(host_valid(big, HOST_WILDCARD));
	}
	assert_int_equal(host_normalize("WWW.Example.COM", out, sizeof(out), HOST_WILDCARD), 0);
	assert_string_equal(out, "www.example.com");
	assert_int_equal(host_normalize("bad_host", out, sizeof(out), HOST_WILDCARD), -1);
	assert_int_equal(host_normalize("a.example.com", out, 5, HOST_WILDCARD), -1);
}

static void test_post_acme_form(void **state)
{
	struct call c;

	(void)state;
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded",
		"host=Www.Example.com");
	expect(&c, 201, "{\"message\":\"certificate for host www.example.com is created\"}");
	assert_int_equal(fake.issue_calls, 1);
	assert_string_equal(fake.last_host, "www.example.com");

	/* percent-encoding, other keys, answered inside the ops call */
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded",
		"x=1&host=sync%2Eexample%2ecom&y");
	expect(&c, 201, "{\"message\":\"certificate for host sync.example.com is created\"}");
	assert_int_equal(fake.issue_calls, 2);

	/* issuance failure text is passed through */
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", "host=fail.example.com");
	expect(&c, 500, "{\"message\":\"urn:ietf:params:acme:error:rejectedIdentifier\"}");

	/* sanity test flag */
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded",
		"host=t.example.com&test_http_challenge_flow=true");
	expect(&c, 200, "{\"message\":\"sanity test for host t.example.com passed\"}");
	assert_int_equal(fake.sanity_calls, 1);
	assert_int_equal(fake.issue_calls, 3);

	/* no content type at all is read as a form, and the query string works */
	do_body(&c, "POST", "/acme?host=q.example.com", NULL, "");
	expect(&c, 201, "{\"message\":\"certificate for host q.example.com is created\"}");
}

static void test_post_acme_json(void **state)
{
	struct call c;

	(void)state;
	do_body(&c, "POST", "/acme", "application/json; charset=utf-8",
		"{\"host\":\"j.example.com\"}");
	expect(&c, 201, "{\"message\":\"certificate for host j.example.com is created\"}");
	assert_string_equal(fake.last_host, "j.example.com");

	do_body(&c, "POST", "/acme", "application/json",
		"{\"host\":\"j2.example.com\",\"test_http_challenge_flow\":true}");
	expect(&c, 200, "{\"message\":\"sanity test for host j2.example.com passed\"}");
	do_body(&c, "POST", "/acme", "application/json",
		"{\"host\":\"j3.example.com\",\"test_http_challenge_flow\":\"true\"}");
	expect(&c, 200, "{\"message\":\"sanity test for host j3.example.com passed\"}");
	assert_int_equal(fake.sanity_calls, 2);
}

static void test_post_acme_bad(void **state)
{
	struct call c;

	(void)state;
	do_body(&c, "POST", "/acme", "application/json", "{\"host\": ");
	expect(&c, 400, "{\"message\":\"Cannot parse JSON body\"}");
	do_body(&c, "POST", "/acme", "application/json", "[\"a.example.com\"]");
	expect(&c, 400, "{\"message\":\"JSON body must be an object\"}");
	do_body(&c, "POST", "/acme", "application/json", "{}");
	expect(&c, 400, "{\"message\":\"host must be provided and containing a single domain\"}");
	do_body(&c, "POST", "/acme", "application/json", "{\"host\":[\"a.example.com\"]}");
	expect(&c, 400, "{\"message\":\"host must be provided and containing a single domain\"}");
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", "hostx=a.example.com");
	expect(&c, 400, "{\"message\":\"host must be provided and containing a single domain\"}");
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", "host=");
	expect(&c, 400, "{\"message\":\"host must be provided and containing a single domain\"}");
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", "host=1.2.3.4");
	expect(&c, 400, "{\"message\":\"host is not a valid domain name\"}");
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", "host=0x7f.0x1");
	expect(&c, 400, "{\"message\":\"host is not a valid domain name\"}");
	do_body(&c, "POST", "/acme", "application/json", "{\"host\":\"1.2.3.0x4\"}");
	expect(&c, 400, "{\"message\":\"host is not a valid domain name\"}");
	do_body(&c, "POST", "/acme", "application/json", "{\"host\":\"a.b\\u0000c.com\"}");
	expect(&c, 400, "{\"message\":\"Cannot parse JSON body\"}");
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", "host=a%00b.example.com");
	expect(&c, 400, "{\"message\":\"host must be provided and containing a single domain\"}");
	do_body(&c, "POST", "/acme", "text/plain", "host=a.example.com");
	expect(&c, 415, "{\"message\":\"Content-Type must be application/json, "
		"application/x-www-form-urlencoded or multipart/form-data\"}");
	assert_int_equal(fake.issue_calls, 0);
	assert_int_equal(fake.sanity_calls, 0);
}

#define MP_CTYPE "multipart/form-data; boundary=------------------------b0undary"
#define MP_PART(name, value) \
	"--------------------------b0undary\r\n" \
	"Content-Disposition: form-data; name=\"" name "\"\r\n\r\n" value "\r\n"
#define MP_END "--------------------------b0undary--\r\n"

/* multipart/form-data (curl -F) is read like the urlencoded form, through
 * libmicrohttpd's post processor */
static void test_post_acme_multipart(void **state)
{
	struct call c;
	char big[8192], body[9000];

	(void)state;
	do_body(&c, "POST", "/acme", MP_CTYPE, MP_PART("host", "Mp.Example.com") MP_END);
	expect(&c, 201, "{\"message\":\"certificate for host mp.example.com is created\"}");
	assert_string_equal(fake.last_host, "mp.example.com");
	do_body(&c, "POST", "/acme", MP_CTYPE,
		MP_PART("x", "1") MP_PART("host", "mt.example.com")
		MP_PART("test_http_challenge_flow", "true") MP_END);
	expect(&c, 200, "{\"message\":\"sanity test for host mt.example.com passed\"}");
	assert_int_equal(fake.sanity_calls, 1);

	/* a field larger than the post processor's buffer before the host */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(body, sizeof(body),
		 "--------------------------b0undary\r\n"
		 "Content-Disposition: form-data; name=\"comment\"\r\n\r\n%s\r\n"
		 MP_PART("host", "big.example.com") MP_END, big);
	do_body(&c, "POST", "/acme", MP_CTYPE, body);
	expect(&c, 201, "{\"message\":\"certificate for host big.example.com is created\"}");
	/* and a host value longer than any name */
	snprintf(body, sizeof(body),
		 "--------------------------b0undary\r\n"
		 "Content-Disposition: form-data; name=\"host\"\r\n\r\n%.300s.example.com\r\n"
		 MP_END, big);
	do_body(&c, "POST", "/acme", MP_CTYPE, body);
	expect(&c, 400, "{\"message\":\"host must be provided and containing a single domain\"}");
	snprintf(body, sizeof(body), "host=%.300s.example.com", big);
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", body);
	expect(&c, 400, "{\"message\":\"host must be provided and containing a single domain\"}");

	/* bad bodies: clear 400s, nothing issued */
	do_body(&c, "POST", "/acme", MP_CTYPE, MP_PART("host", "cut.example.com"));
	expect(&c, 400, "{\"message\":\"Cannot parse form body\"}");
	do_body(&c, "POST", "/acme", "multipart/form-data", MP_PART("host", "nb.example.com") MP_END);
	expect(&c, 400, "{\"message\":\"Cannot parse form body: multipart/form-data needs a boundary\"}");
	/* text before the first boundary is a preamble (RFC 2046): no field */
	do_body(&c, "POST", "/acme", MP_CTYPE, "garbage\r\n\r\n");
	expect(&c, 400, "{\"message\":\"host must be provided and containing a single domain\"}");
	do_body(&c, "POST", "/acme", MP_CTYPE, MP_PART("hostx", "a.example.com") MP_END);
	expect(&c, 400, "{\"message\":\"host must be provided and containing a single domain\"}");
	assert_int_equal(fake.issue_calls, 2);
	assert_int_equal(fake.sanity_calls, 1);
}

static void test_patch_acme(void **state)
{
	struct call c;

	(void)state;
	do_req(&c, "PATCH", "/acme");
	expect(&c, 202, "{\"message\":\"Renewal process started successfully\"}");
	assert_int_equal(fake.renew_calls, 1);
}

static void test_certificates(void **state)
{
	struct call c;
	const char *cert = "{\"host\":\"a.example.com\",\"not_before\":\"2025-01-01 00:00:00\","
		"\"not_after\":\"2025-04-01 00:00:00\",\"valid\":true,\"serial_number\":\"0a1b\","
		"\"digest\":\"AA:BB\",\"issuer_cn\":\"Pebble\",\"pubkey_type\":\"id-ecPublicKey\"}";
	char want[1024];

	(void)state;
	do_req(&c, "GET", "/acme/certificates");
	snprintf(want, sizeof(want), "{\"data\":[%s]}", cert);
	expect(&c, 200, want);
	assert_int_equal(fake.last_invalid_only, 0);
	do_req(&c, "GET", "/acme/certificates?invalid_only=true");
	expect(&c, 200, "{\"data\":[]}");
	assert_int_equal(fake.last_invalid_only, 1);
	do_req(&c, "GET", "/acme/certificates/");
	expect(&c, 200, want);

	do_req(&c, "GET", "/acme/certificates/A.example.com");
	snprintf(want, sizeof(want), "{\"data\":%s}", cert);
	expect(&c, 200, want);
	do_req(&c, "GET", "/acme/certificates/b.example.com");
	expect(&c, 404, "{\"message\":\"Not found\"}");
	assert_string_equal(fake.last_host, "b.example.com");
	do_req(&c, "GET", "/acme/certificates/not_a_host");
	expect(&c, 400, "{\"message\":\"host is not a valid domain name\"}");
	do_req(&c, "GET", "/acme/certificates/0x7f.0x1");
	expect(&c, 400, "{\"message\":\"host is not a valid domain name\"}");
	do_req(&c, "HEAD", "/acme/certificates/a.example.com");
	assert_int_equal(c.status, 200);
	assert_string_equal(c.resp, "");

	do_req(&c, "DELETE", "/acme/certificates/a.example.com?revoke=true");
	expect(&c, 200, "{\"message\":\"deleted\",\"revoked\":true}");
	assert_int_equal(fake.last_revoke, 1);
	do_req(&c, "DELETE", "/acme/certificates/a.example.com");
	expect(&c, 200, "{\"message\":\"deleted\",\"revoked\":false}");
	assert_int_equal(fake.last_revoke, 0);
	do_req(&c, "DELETE", "/acme/certificates/z.example.com");
	expect(&c, 404, "{\"message\":\"Not found\"}");
	assert_int_equal(fake.delete_calls, 3);
}

static void test_metrics_healthz(void **state)
{
	struct call c;

	(void)state;
	do_req(&c, "GET", "/metrics");
	assert_int_equal(c.rc, CURLE_OK);
	assert_int_equal(c.status, 200);
	assert_string_equal(c.ctype_out, "text/plain; version=0.0.4; charset=utf-8");
	assert_string_equal(c.resp, "# HELP acme_spoa_test_total Test counter\n"
			    "# TYPE acme_spoa_test_total counter\n"
			    "acme_spoa_test_total 7\n");
	do_req(&c, "GET", "/healthz");
	expect(&c, 200, "{\"status\":\"ok\"}");
	fake.healthy = 0;
	do_req(&c, "GET", "/healthz");
	expect(&c, 503, "{\"status\":\"unavailable\",\"down\":{\"storage\":\"down\"}}");
}

static void test_not_found_and_methods(void **state)
{
	struct call c;

	(void)state;
	do_req(&c, "GET", "/nope");
	expect(&c, 404, "{\"message\":\"Not found\"}");
	do_req(&c, "GET", "/acme/certificates/a.example.com/x");
	expect(&c, 404, "{\"message\":\"Not found\"}");
	do_req(&c, "GET", "/acmex");
	expect(&c, 404, "{\"message\":\"Not found\"}");

	do_req(&c, "GET", "/acme");
	expect(&c, 405, "{\"message\":\"Method not allowed\"}");
	assert_string_equal(c.allow, "POST, PATCH");
	do_req(&c, "POST", "/acme/certificates");
	expect(&c, 405, "{\"message\":\"Method not allowed\"}");
	assert_string_equal(c.allow, "GET, HEAD");
	do_req(&c, "PUT", "/acme/certificates/a.example.com");
	expect(&c, 405, "{\"message\":\"Method not allowed\"}");
	assert_string_equal(c.allow, "GET, HEAD, DELETE");
	do_req(&c, "DELETE", "/metrics");
	expect(&c, 405, "{\"message\":\"Method not allowed\"}");
	do_req(&c, "POST", "/healthz");
	expect(&c, 405, "{\"message\":\"Method not allowed\"}");
	assert_int_equal(fake.issue_calls + fake.delete_calls + fake.renew_calls, 0);
}

static void test_token(void **state)
{
	struct call c;

	(void)state;
	admin_set_token(adm, "s3cret-token");
	do_req(&c, "GET", "/acme/certificates");
	expect(&c, 401, "{\"message\":\"Unauthorized\"}");
	memset(&c, 0, sizeof(c));
	c.method = "GET";
	c.path = "/acme/certificates";
	c.auth = "Bearer s3cret-tokeX";
	http(&c);
	expect(&c, 401, "{\"message\":\"Unauthorized\"}");
	memset(&c, 0, sizeof(c));
	c.method = "GET";
	c.path = "/acme/certificates";
	c.auth = "Bearer s3cret-token-longer";
	http(&c);
	expect(&c, 401, "{\"message\":\"Unauthorized\"}");
	memset(&c, 0, sizeof(c));
	c.method = "GET";
	c.path = "/acme/certificates";
	c.auth = "Basic czNjcmV0LXRva2Vu";
	http(&c);
	expect(&c, 401, "{\"message\":\"Unauthorized\"}");
	/* no route is revealed without the token */
	do_req(&c, "GET", "/nope");
	expect(&c, 401, "{\"message\":\"Unauthorized\"}");
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", "host=a.example.com");
	expect(&c, 401, "{\"message\":\"Unauthorized\"}");
	do_req(&c, "PATCH", "/acme");
	expect(&c, 401, "{\"message\":\"Unauthorized\"}");
	do_req(&c, "GET", "/metrics");
	assert_int_equal(c.status, 401);
	assert_int_equal(fake.list_calls + fake.issue_calls + fake.renew_calls, 0);

	memset(&c, 0, sizeof(c));
	c.method = "GET";
	c.path = "/acme/certificates";
	c.auth = "bearer s3cret-token";
	http(&c);
	assert_int_equal(c.status, 200);
	assert_int_equal(fake.list_calls, 1);
	/* /healthz needs none */
	do_req(&c, "GET", "/healthz");
	expect(&c, 200, "{\"status\":\"ok\"}");

	admin_set_token(adm, NULL);
	do_req(&c, "GET", "/acme/certificates");
	assert_int_equal(c.status, 200);
}

static int connect_raw(void)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)admin_port(adm));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void test_body_too_large(void **state)
{
	struct call c;
	size_t len = 10 * 1024 * 1024;
	char *big = malloc(len + 1);

	(void)state;
	assert_non_null(big);
	memset(big, 'a', len);
	memcpy(big, "host=", 5);
	big[len] = '\0';
	/* with Content-Length: refused before the body is read */
	memset(&c, 0, sizeof(c));
	c.method = "POST";
	c.path = "/acme";
	c.ctype = "application/x-www-form-urlencoded";
	c.body = big;
	c.body_len = len;
	http(&c);
	assert_int_equal(c.status, 413);
	assert_string_equal(c.resp, "{\"message\":\"Request body too large\"}");

	/* chunked, so the size is only known while receiving */
	memset(&c, 0, sizeof(c));
	c.method = "POST";
	c.path = "/acme";
	c.ctype = "application/x-www-form-urlencoded";
	c.body = big;
	c.body_len = len;
	c.chunked = 1;
	http(&c);
	assert_int_equal(c.status, 413);
	assert_string_equal(c.resp, "{\"message\":\"Request body too large\"}");
	/* just over the 64 KiB default, chunked */
	memset(&c, 0, sizeof(c));
	c.method = "POST";
	c.path = "/acme";
	c.ctype = "application/x-www-form-urlencoded";
	c.body = big;
	c.body_len = 64 * 1024 + 1;
	c.chunked = 1;
	http(&c);
	expect(&c, 413, "{\"message\":\"Request body too large\"}");
	free(big);
	assert_int_equal(fake.issue_calls, 0);

	/* the 413 comes before the body: the client sends 5 of 10 MB announced */
	{
		static const char req[] = "POST /acme HTTP/1.1\r\nHost: x\r\n"
			"Content-Type: application/x-www-form-urlencoded\r\n"
			"Content-Length: 10485760\r\n\r\nhost=";
		char buf[1024];
		ssize_t n;
		int fd = connect_raw();

		assert_true(send(fd, req, sizeof(req) - 1, 0) == (ssize_t)sizeof(req) - 1);
		run_loop_for(0.3);
		n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
		assert_true(n > 0);
		buf[n] = '\0';
		assert_true(strncmp(buf, "HTTP/1.1 413 ", 13) == 0);
		assert_non_null(strstr(buf, "\r\n\r\n{\"message\":\"Request body too large\"}"));
		close(fd);
	}

	/* the agent still answers */
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", "host=ok.example.com");
	expect(&c, 201, "{\"message\":\"certificate for host ok.example.com is created\"}");
}

static void test_slow_clients(void **state)
{
	static const char *halves[] = {
		"POST /acme HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhost=",
		"GET /acme/certif",
		"POST /acme HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nab",
		"",
	};
	int fds[50], i;
	struct call c;

	(void)state;
	for (i = 0; i < 50; i++) {
		const char *h = halves[i % 4];

		fds[i] = connect_raw();
		if (*h)
			assert_true(send(fds[i], h, strlen(h), 0) == (ssize_t)strlen(h));
	}
	run_loop_for(0.2);	/* let the admin accept and read them */
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", "host=sync.example.com");
	expect(&c, 201, "{\"message\":\"certificate for host sync.example.com is created\"}");
	assert_true(c.elapsed < 1.0);
	do_req(&c, "GET", "/healthz");
	expect(&c, 200, "{\"status\":\"ok\"}");
	assert_true(c.elapsed < 1.0);
	for (i = 0; i < 50; i++)
		close(fds[i]);
}

static void test_idle_timeout(void **state)
{
	struct admin_conf conf = { .listen = "127.0.0.1:0", .conn_timeout = 1, .max_conns = 4 };
	struct admin *keep = adm;
	struct call c;
	char err[256], buf[256];
	int fd;
	ssize_t n;
	struct timeval tv = { .tv_sec = 0, .tv_usec = 1000 };

	(void)state;
	adm = admin_new(loop, &conf, &fake_ops, NULL, err, sizeof(err));
	assert_non_null(adm);
	fd = connect_raw();
	assert_true(send(fd, "GET /heal", 9, 0) == 9);
	run_loop_for(2.5);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = recv(fd, buf, sizeof(buf), 0);
	assert_int_equal(n, 0);		/* closed by the admin's idle timeout */
	close(fd);
	/* a request waiting on the ops longer than the idle timeout is not cut */
	do_body(&c, "POST", "/acme", "application/x-www-form-urlencoded", "host=slower.example.com");
	expect(&c, 201, "{\"message\":\"certificate for host slower.example.com is created\"}");
	admin_free(adm);
	adm = keep;
}

static void test_client_gone(void **state)
{
	struct call c;

	(void)state;
	/* the answer comes 400 ms later; the client gives up after 100 ms */
	memset(&c, 0, sizeof(c));
	c.method = "POST";
	c.path = "/acme";
	c.ctype = "application/x-www-form-urlencoded";
	c.body = "host=slow.example.com";
	c.body_len = strlen(c.body);
	c.timeout_ms = 100;
	http(&c);
	assert_int_equal(c.rc, CURLE_OPERATION_TIMEDOUT);
	assert_int_equal(fake.issue_calls, 1);
	assert_int_equal(fake.replies_sent, 0);
	run_loop_for(0.6);
	assert_int_equal(fake.replies_sent, 1);
	/* still serving */
	do_req(&c, "GET", "/healthz");
	expect(&c, 200, "{\"status\":\"ok\"}");
}

static void cb_poll_held(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)revents;
	if (fake.held) {
		ev_timer_stop(l, w);
		ev_break(l, EVBREAK_ONE);
	}
}

static void test_free_with_waiting_request(void **state)
{
	struct call c;
	pthread_t th;
	ev_timer poll;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.method = "POST";
	c.path = "/acme";
	c.ctype = "application/x-www-form-urlencoded";
	c.body = "host=hold.example.com";
	c.body_len = strlen(c.body);
	c.timeout_ms = 3000;
	assert_int_equal(pthread_create(&th, NULL, http_thread, &c), 0);
	ev_timer_init(&poll, cb_poll_held, 0.01, 0.01);
	ev_timer_start(loop, &poll);
	run_loop_for(5.);
	ev_timer_stop(loop, &poll);
	assert_non_null(fake.held);
	/* the admin goes away while the ops still hold the request */
	admin_free(adm);
	adm = NULL;
	run_loop_for(5.);	/* until the client thread finishes */
	pthread_join(th, NULL);
	assert_int_not_equal(c.status, 201);
	/* a late answer goes nowhere, without touching freed memory */
	admin_reply_message(fake.held, 201, "too late");
	fake.held = NULL;
	assert_int_equal(setup(NULL), 0);
}

static void test_bad_listen(void **state)
{
	struct admin_conf conf = { .listen = "nonsense" };
	char err[256] = "";
	struct admin *a;

	(void)state;
	a = admin_new(loop, &conf, &fake_ops, NULL, err, sizeof(err));
	assert_null(a);
	assert_non_null(strstr(err, "admin.listen"));
	conf.listen = "[::1]:0";
	a = admin_new(loop, &conf, &fake_ops, NULL, err, sizeof(err));
	if (a) {	/* hosts without IPv6 cannot bind ::1 */
		assert_true(admin_port(a) > 0);
		admin_free(a);
	}
	conf.listen = "0x7f.0x1:0";	/* 127.0.0.1 to getaddrinfo, refused by the host rule */
	assert_null(admin_new(loop, &conf, &fake_ops, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "admin.listen: 0x7f.0x1:0: has an invalid host"));
	conf.listen = "127.0.0.1:65536";
	assert_null(admin_new(loop, &conf, &fake_ops, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "has an invalid port"));
	conf.listen = "unix:/tmp/admin.sock";
	assert_null(admin_new(loop, &conf, &fake_ops, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "admin.listen"));
	conf.listen = NULL;
	assert_null(admin_new(loop, &conf, &fake_ops, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "admin.listen"));
	{
		/* an address the config parsed is used as is */
		struct addr pa;
		char why[128];

		assert_int_equal(addr_parse("127.0.0.1:0", ADDR_LISTEN, &pa, why, sizeof(why)), 0);
		conf.listen = "ignored";
		conf.addr = &pa;
		a = admin_new(loop, &conf, &fake_ops, NULL, err, sizeof(err));
		assert_non_null(a);
		assert_true(admin_port(a) > 0);
		admin_free(a);
		assert_int_equal(addr_parse("unix:/tmp/x.sock", ADDR_UNIX, &pa, why, sizeof(why)), 0);
		assert_null(admin_new(loop, &conf, &fake_ops, NULL, err, sizeof(err)));
		assert_non_null(strstr(err, "admin.listen: unix:/tmp/x.sock: not a TCP address"));
	}
	admin_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_valid),
		cmocka_unit_test(test_bad_listen),
		cmocka_unit_test_setup_teardown(test_post_acme_form, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_acme_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_acme_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_acme_multipart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_patch_acme, setup, teardown),
		cmocka_unit_test_setup_teardown(test_certificates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics_healthz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_found_and_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_with_waiting_request, setup, teardown),
	};
	int rc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	loop = ev_loop_new(EVFLAG_AUTO);
	ev_async_init(&done_async, cb_done);
	ev_async_start(loop, &done_async);
	ev_init(&guard_timer, cb_guard);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	ev_async_stop(loop, &done_async);
	ev_loop_destroy(loop);
	curl_global_cleanup();
	return rc;
}
