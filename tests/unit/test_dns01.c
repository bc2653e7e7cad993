/* Unit tests for dns-01 and wildcards: the TXT value, the dns01 and
 * wildcard_domains config keys, the wildcard name mapping, dns-01 in an
 * authorization, the solver's storage record keys, and the hook runner (real
 * /bin/sh children on libev's default loop). The DNS side itself runs
 * against a real BIND in tests/integration/test_dns01.sh. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <ev.h>

#include "acme/acme.h"
#include "acme/acme_int.h"
#include "core/config.h"
#include "dns/dns01.h"
#include "dns/hook.h"

#define BASE "{\"account_email\":\"ops@example.com\""
#define WITH(x) BASE "," x "}"

static char errs[8192];

static struct config *load(const char *json)
{
	return config_load_json(json, errs, sizeof(errs));
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

/* base64url(SHA-256(key authorization)), values computed independently
 * (python3 hashlib + base64.urlsafe_b64encode, padding stripped) */
static void test_txt_value(void **state)
{
	static const struct { const char *ka, *txt; } cases[] = {
		{ "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI",
		  "lCM7cZyQXcVHK2nnW3jjAhNT3Fvm18UN-kWZZknKoYM" },
		{ "a.b", "LnM23I66h-9HLfVow1SCq_JXXcPl6sDFxiuP-urCyTQ" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *v = acme_dns01_txt(cases[i].ka);

		assert_non_null(v);
		assert_string_equal(v, cases[i].txt);
		assert_int_equal(strlen(v), 43);
		free(v);
	}
	assert_null(acme_dns01_txt(NULL));
}

static void test_config_rfc2136(void **state)
{
	struct config *c;

	(void)state;
	c = load(WITH("\"dns01\": {\"provider\": \"rfc2136\", \"server\": \"127.0.0.1:5353\","
		      "\"tsig_key_name\": \"acme-key\", \"tsig_secret\": \"c2VjcmV0c2VjcmV0c2VjcmV0\","
		      "\"tsig_algorithm\": \"hmac-sha512\", \"zone\": \"Example.COM\"},"
		      "\"wildcard_domains\": [\"Apps.Example.com\", \"w.test\"]"));
	assert_non_null(c);
	assert_int_equal(c->dns01_provider, CONFIG_DNS01_RFC2136);
	assert_string_equal(c->dns01_addr.host, "127.0.0.1");
	assert_int_equal(c->dns01_addr.port, 5353);
	assert_string_equal(c->dns01_tsig_key_name, "acme-key");
	assert_string_equal(config_tsig_alg_name(c->dns01_tsig_algorithm), "hmac-sha512");
	assert_string_equal(c->dns01_tsig_secret, "c2VjcmV0c2VjcmV0c2VjcmV0");
	assert_string_equal(c->dns01_zone, "example.com");
	assert_int_equal(c->dns01_propagation_timeout, 120);
	assert_int_equal(c->nwildcard_domains, 2);
	assert_string_equal(c->wildcard_domains[0], "apps.example.com");
	assert_string_equal(c->wildcard_domains[1], "w.test");
	config_free(c);

	/* defaults: no provider, hmac-sha256 */
	c = load(BASE "}");
	assert_non_null(c);
	assert_int_equal(c->dns01_provider, CONFIG_DNS01_NONE);
	assert_int_equal(c->dns01_tsig_algorithm, CONFIG_TSIG_HMAC_SHA256);
	assert_int_equal(c->nwildcard_domains, 0);
	config_free(c);
}

static void test_config_secret_ref(void **state)
{
	struct config *c;

	(void)state;
	setenv("TEST_DNS01_TSIG", "QUJDRA==", 1);
	c = load(WITH("\"dns01\": {\"provider\": \"rfc2136\", \"server\": \"ns1.example.com:53\","
		      "\"tsig_key_name\": \"k\", \"tsig_secret\": \"{env://TEST_DNS01_TSIG}\"}"));
	assert_non_null(c);
	assert_string_equal(c->dns01_tsig_secret, "QUJDRA==");
	assert_string_equal(c->dns01_addr.host, "ns1.example.com");
	config_free(c);
	unsetenv("TEST_DNS01_TSIG");
	c = load(WITH("\"dns01\": {\"provider\": \"rfc2136\", \"server\": \"ns1.example.com:53\","
		      "\"tsig_key_name\": \"k\", \"tsig_secret\": \"{env://TEST_DNS01_TSIG}\"}"));
	assert_null(c);
	assert_contains(errs, "config: dns01.tsig_secret: ");
	assert_contains(errs, "TEST_DNS01_TSIG");
}

static void test_config_errors(void **state)
{
	struct config *c;

	(void)state;
	/* rfc2136 without what it needs: each key named */
	c = load(WITH("\"dns01\": {\"provider\": \"rfc2136\"}"));
	assert_null(c);
	assert_contains(errs, "config: dns01.server: missing (dns01.provider \"rfc2136\" needs it)");
	assert_contains(errs, "config: dns01.tsig_key_name: missing");
	assert_contains(errs, "config: dns01.tsig_secret: missing");
	/* exec without a program; a program that is not executable */
	c = load(WITH("\"dns01\": {\"provider\": \"exec\"}"));
	assert_null(c);
	assert_contains(errs, "config: dns01.exec: missing (dns01.provider \"exec\" needs it)");
	c = load(WITH("\"dns01\": {\"provider\": \"exec\", \"exec\": \"/etc/passwd\"}"));
	assert_null(c);
	assert_contains(errs, "config: dns01.exec: \"/etc/passwd\" is not an executable file");
	c = load(WITH("\"dns01\": {\"provider\": \"exec\", \"exec\": \"hook.sh\"}"));
	assert_null(c);
	assert_contains(errs, "config: dns01.exec: \"hook.sh\" is not an absolute path");
	/* bad values */
	c = load(WITH("\"dns01\": {\"provider\": \"route53\", \"tsig_algorithm\": \"hmac-md5\","
		      "\"server\": \"127.0.0.1\", \"tsig_secret\": \"not base64!\", \"zone\": \"*.x.com\","
		      "\"propagation_timeout\": 0}"));
	assert_null(c);
	assert_contains(errs, "config: dns01.provider: \"route53\" is not one of none, rfc2136, exec");
	assert_contains(errs, "config: dns01.tsig_algorithm: \"hmac-md5\" is not one of hmac-sha256, hmac-sha512");
	assert_contains(errs, "config: dns01.server: \"127.0.0.1\" has no :port");
	assert_contains(errs, "config: dns01.tsig_secret: (hidden value) is not valid base64");
	assert_contains(errs, "config: dns01.zone: \"*.x.com\" is not a zone name");
	assert_contains(errs, "config: dns01.propagation_timeout: 0 is not between");
	/* wildcard_domains need a solver, and are zones */
	c = load(WITH("\"wildcard_domains\": [\"apps.example.com\"]"));
	assert_null(c);
	assert_contains(errs, "config: wildcard_domains: needs dns01.provider");
	c = load(WITH("\"dns01\": {\"provider\": \"exec\", \"exec\": \"/bin/true\"},"
		      "\"wildcard_domains\": [\"*.apps.example.com\", \"bad name\"]"));
	assert_null(c);
	assert_contains(errs, "config: wildcard_domains[0]: \"*.apps.example.com\" is not a zone name");
	assert_contains(errs, "config: wildcard_domains[1]: \"bad name\" is not a zone name");
}

static void test_wildcard_name(void **state)
{
	struct config *c;
	char out[256];

	(void)state;
	c = load(WITH("\"dns01\": {\"provider\": \"exec\", \"exec\": \"/bin/true\"},"
		      "\"wildcard_domains\": [\"apps.example.com\", \"w.test\"]"));
	assert_non_null(c);
	/* one label under the zone, and the zone itself */
	assert_int_equal(config_wildcard_name(c, "a.apps.example.com", out, sizeof(out)), 1);
	assert_string_equal(out, "*.apps.example.com");
	assert_int_equal(config_wildcard_name(c, "apps.example.com", out, sizeof(out)), 1);
	assert_string_equal(out, "*.apps.example.com");
	assert_int_equal(config_wildcard_name(c, "b.w.test", out, sizeof(out)), 1);
	assert_string_equal(out, "*.w.test");
	/* not covered by the wildcard certificate, or another zone */
	strcpy(out, "untouched");
	assert_int_equal(config_wildcard_name(c, "x.a.apps.example.com", out, sizeof(out)), 0);
	assert_int_equal(config_wildcard_name(c, "example.com", out, sizeof(out)), 0);
	assert_int_equal(config_wildcard_name(c, "aapps.example.com", out, sizeof(out)), 0);
	assert_int_equal(config_wildcard_name(c, "a.other.test", out, sizeof(out)), 0);
	assert_int_equal(config_wildcard_name(c, "*.w.test", out, sizeof(out)), 0);
	assert_string_equal(out, "untouched");
	/* too small an output buffer: no mapping, no overflow */
	assert_int_equal(config_wildcard_name(c, "a.w.test", out, 5), 0);
	config_free(c);
}

static void test_authz_dns01(void **state)
{
	static const char doc[] =
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"w.test\"},"
		"\"wildcard\":true,\"challenges\":["
		"{\"type\":\"http-01\",\"url\":\"https://ca/c/1\",\"token\":\"tokhttp\",\"status\":\"pending\"},"
		"{\"type\":\"dns-01\",\"url\":\"https://ca/c/2\",\"token\":\"tokdns\",\"status\":\"pending\"}]}";
	static const char nodns[] =
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.test\"},"
		"\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca/c/1\",\"token\":\"t\"}]}";
	struct acme_authz_obj a;
	char err[256];

	(void)state;
	assert_int_equal(acme_parse_authz_type(doc, strlen(doc), "dns-01", &a, err, sizeof(err)), 0);
	assert_int_equal(a.has_http01, 1);	/* the asked type was found */
	assert_int_equal(a.wildcard, 1);
	assert_string_equal(a.identifier, "w.test");
	assert_string_equal(a.chall_url, "https://ca/c/2");
	assert_string_equal(a.chall_token, "tokdns");
	acme_authz_obj_clear(&a);
	assert_int_equal(acme_parse_authz(doc, strlen(doc), &a, err, sizeof(err)), 0);
	assert_string_equal(a.chall_token, "tokhttp");
	acme_authz_obj_clear(&a);
	assert_int_equal(acme_parse_authz_type(nodns, strlen(nodns), "dns-01", &a, err, sizeof(err)), 0);
	assert_int_equal(a.has_http01, 0);
	assert_int_equal(a.wildcard, 0);
	acme_authz_obj_clear(&a);
}

static void test_record_keys(void **state)
{
	char key[512], fqdn[256], value[128];

	(void)state;
	assert_int_equal(dns01_record_key("_acme-challenge.w.test", "LnM23I66h-9HLfVow1SCq_JXXcPl6sDFxiuP-urCyTQ",
					  key, sizeof(key)), 0);
	assert_string_equal(key, "_acme-challenge.w.test/LnM23I66h-9HLfVow1SCq_JXXcPl6sDFxiuP-urCyTQ");
	assert_int_equal(dns01_record_parse(key, fqdn, sizeof(fqdn), value, sizeof(value)), 0);
	assert_string_equal(fqdn, "_acme-challenge.w.test");
	assert_string_equal(value, "LnM23I66h-9HLfVow1SCq_JXXcPl6sDFxiuP-urCyTQ");
	/* what a key may not hold is refused both ways */
	assert_int_equal(dns01_record_key("a/b", "v", key, sizeof(key)), -1);
	assert_int_equal(dns01_record_key("a.test", "v v", key, sizeof(key)), -1);
	assert_int_equal(dns01_record_key("a.test", "..", key, sizeof(key)), -1);
	assert_int_equal(dns01_record_key("a.test", "", key, sizeof(key)), -1);
	assert_int_equal(dns01_record_key("a.test", "v", key, 5), -1);
	assert_int_equal(dns01_record_parse("noslash", fqdn, sizeof(fqdn), value, sizeof(value)), -1);
	assert_int_equal(dns01_record_parse("a/b/c", fqdn, sizeof(fqdn), value, sizeof(value)), -1);
	assert_int_equal(dns01_record_parse("/v", fqdn, sizeof(fqdn), value, sizeof(value)), -1);
	assert_int_equal(dns01_record_parse("a.test/v", fqdn, 3, value, sizeof(value)), -1);
}

/* ---- the hook runner ---------------------------------------------------- */

struct hook_result {
	int calls, ok;
	char err[4096];
};

static void hook_done(void *arg, int ok, const char *err)
{
	struct hook_result *r = arg;

	r->calls++;
	r->ok = ok;
	snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
	ev_break(EV_DEFAULT, EVBREAK_ALL);
}

static void cb_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

/* Runs "sh -c <script>" through dns_hook_run and the loop until it ends. */
static void run_hook(const char *script, double timeout, struct hook_result *r)
{
	char *argv[] = { "sh", "-c", (char *)script, "hook", NULL };
	char err[256] = "";
	struct dns_hook *h;
	ev_timer guard;

	memset(r, 0, sizeof(*r));
	h = dns_hook_run(EV_DEFAULT, "/bin/sh", argv, timeout, hook_done, r, err, sizeof(err));
	assert_non_null(h);
	assert_int_equal(r->calls, 0);	/* never inside the call */
	ev_timer_init(&guard, cb_guard, 10., 0.);
	ev_timer_start(EV_DEFAULT, &guard);
	ev_run(EV_DEFAULT, 0);
	ev_timer_stop(EV_DEFAULT, &guard);
	assert_int_equal(r->calls, 1);
}

static void test_hook_runs(void **state)
{
	struct hook_result r;
	char err[256], *argv[] = { "nope", NULL };

	(void)state;
	run_hook("echo fine; exit 0", 5, &r);
	assert_int_equal(r.ok, 1);
	assert_string_equal(r.err, "");
	/* status and what it printed (both streams, one line) reach the error */
	run_hook("echo 'line one'; echo 'line two' >&2; exit 3", 5, &r);
	assert_int_equal(r.ok, 0);
	assert_string_equal(r.err, "exit status 3: line one line two");
	/* killed at the timeout */
	run_hook("echo started; exec sleep 30", 0.3, &r);
	assert_int_equal(r.ok, 0);
	assert_contains(r.err, "killed after 0.3 s (timeout): started");
	/* a flood of output is cut, not grown without bound */
	run_hook("yes xxxxxxxx | head -c 100000; exit 1", 5, &r);
	assert_int_equal(r.ok, 0);
	assert_true(strlen(r.err) < DNS_HOOK_OUTPUT_MAX + 64);
	/* a program that is not there: refused at once */
	assert_null(dns_hook_run(EV_DEFAULT, "/nonexistent/hook", argv, 5, hook_done, &r, err, sizeof(err)));
	assert_contains(err, "cannot run /nonexistent/hook");
}

/* The hook's pid, once its shell wrote it to <path>; 0 before. */
static pid_t hook_pid(const char *path)
{
	FILE *f = fopen(path, "r");
	long pid = 0;

	if (f) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return (pid_t)pid;
}

/* dns_hook_abort ends the program (killed, then reaped by the loop) and never
 * calls back: the hook writes its pid, and that process must be gone. */
static void test_hook_abort(void **state)
{
	char pidfile[] = "/tmp/test_dns01_hook.XXXXXX";
	char script[128];
	char *argv[] = { "sh", "-c", script, NULL };
	struct hook_result r = { 0 };
	char err[256];
	struct dns_hook *h;
	ev_timer guard;
	pid_t pid = 0;
	int fd, i;

	(void)state;
	fd = mkstemp(pidfile);
	assert_true(fd >= 0);
	close(fd);
	snprintf(script, sizeof(script), "echo $$ > %s.new && mv %s.new %s && exec sleep 30",
		 pidfile, pidfile, pidfile);
	unlink(pidfile);
	h = dns_hook_run(EV_DEFAULT, "/bin/sh", argv, 30, hook_done, &r, err, sizeof(err));
	assert_non_null(h);
	for (i = 0; i < 200 && (pid = hook_pid(pidfile)) == 0; i++) {
		ev_timer_init(&guard, cb_guard, 0.01, 0.);
		ev_timer_start(EV_DEFAULT, &guard);
		ev_run(EV_DEFAULT, 0);
	}
	unlink(pidfile);
	assert_true(pid > 0);
	assert_int_equal(kill(pid, 0), 0);	/* running */
	dns_hook_abort(h);
	ev_timer_init(&guard, cb_guard, 0.3, 0.);
	ev_timer_start(EV_DEFAULT, &guard);
	ev_run(EV_DEFAULT, 0);
	assert_int_equal(r.calls, 0);	/* aborted: never called */
	/* killed and reaped: no such process any more (not even a zombie) */
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(errno, ESRCH);
	dns_hook_abort(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_txt_value),
		cmocka_unit_test(test_config_rfc2136),
		cmocka_unit_test(test_config_secret_ref),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_wildcard_name),
		cmocka_unit_test(test_authz_dns01),
		cmocka_unit_test(test_record_keys),
		cmocka_unit_test(test_hook_runs),
		cmocka_unit_test(test_hook_abort),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
