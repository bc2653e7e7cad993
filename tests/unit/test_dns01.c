/* SPDX-License-Identifier: Apache-2.0 */
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
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <ev.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include "acme/acme.h"
#include "acme/acme_int.h"
#include "core/config.h"
#include "dns/dns01.h"
#include "dns/hook.h"
#include "storage/storage.h"

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
static void run_hook_env(const char *script, char *const env[], double timeout,
			 struct hook_result *r)
{
	char *argv[] = { "sh", "-c", (char *)script, "hook", NULL };
	char err[256] = "";
	struct dns_hook *h;
	ev_timer guard;

	memset(r, 0, sizeof(*r));
	h = dns_hook_run(EV_DEFAULT, "/bin/sh", argv, env, timeout, hook_done, r, err, sizeof(err));
	assert_non_null(h);
	assert_int_equal(r->calls, 0);	/* never inside the call */
	ev_timer_init(&guard, cb_guard, 10., 0.);
	ev_timer_start(EV_DEFAULT, &guard);
	ev_run(EV_DEFAULT, 0);
	ev_timer_stop(EV_DEFAULT, &guard);
	assert_int_equal(r->calls, 1);
}

static void run_hook(const char *script, double timeout, struct hook_result *r)
{
	char *env[] = { "PATH=/usr/bin:/bin", NULL };

	run_hook_env(script, env, timeout, r);
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
	assert_null(dns_hook_run(EV_DEFAULT, "/nonexistent/hook", argv, NULL, 5, hook_done, &r, err,
				 sizeof(err)));
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
	h = dns_hook_run(EV_DEFAULT, "/bin/sh", argv, NULL, 30, hook_done, &r, err, sizeof(err));
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

/* Issue 19 finding 9: the hook gets the allow-listed variables only (not
 * the agent's secrets), and default signal dispositions with nothing blocked
 * although the agent ignores SIGPIPE. */
static void test_hook_env_signals(void **state)
{
	const char *extra[] = { "PROVIDER_TOKEN", "NOT_SET_HERE" };
	struct hook_result r;
	char **env;
	const char *p;
	sigset_t blk, old;
	void (*was)(int);

	(void)state;
	setenv("ACME_SPOA_ADMIN_TOKEN", "admin-s3cret", 1);
	setenv("PROVIDER_TOKEN", "provider-tok", 1);
	setenv("LANG", "C.UTF-8", 1);
	env = dns_hook_env_new(extra, 2);
	assert_non_null(env);
	was = signal(SIGPIPE, SIG_IGN);
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	sigprocmask(SIG_BLOCK, &blk, &old);
	/* exit 1: what it prints comes back in the error */
	run_hook_env("env; grep -E '^Sig(Ign|Blk)' /proc/self/status; exit 1", env, 5, &r);
	sigprocmask(SIG_SETMASK, &old, NULL);
	signal(SIGPIPE, was);
	dns_hook_env_free(env);
	assert_int_equal(r.ok, 0);
	assert_contains(r.err, "PROVIDER_TOKEN=provider-tok");
	assert_contains(r.err, "LANG=C.UTF-8");
	assert_contains(r.err, "PATH=");
	if (strstr(r.err, "admin-s3cret") || strstr(r.err, "NOT_SET_HERE"))
		fail_msg("the hook saw more than its allow-list: %s", r.err);
	/* tabs come back as spaces; signals 1 to 31 (glibc keeps its own two
	 * real-time signals, 32 and 33, ignored in a spawned child) */
	p = strstr(r.err, "SigIgn: ");
	assert_non_null(p);
	assert_int_equal(strtoull(p + 8, NULL, 16) & 0x7fffffffULL, 0);
	p = strstr(r.err, "SigBlk: ");
	assert_non_null(p);
	assert_int_equal(strtoull(p + 8, NULL, 16) & 0x7fffffffULL, 0);
}

static int stale_name_ok(void *arg, const char *name)
{
	return !strcmp(name, "ok.test");
}

/* The node's part of the record keys as dns01.c derives it (the documented
 * scheme: SHA-256 of "<hostname>|<node>", 8 bytes in hex). */
static void stale_prefix(const char *node, char *out, size_t outlen)
{
	char hn[256] = "", id[600], hex[17];
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	int i;

	gethostname(hn, sizeof(hn) - 1);
	snprintf(id, sizeof(id), "%s|%s", hn, node);
	EVP_Digest(id, strlen(id), md, &mdlen, EVP_sha256(), NULL);
	for (i = 0; i < 8; i++)
		sprintf(hex + i * 2, "%02x", md[i]);
	snprintf(out, outlen, "dns01/%s/", hex);
}

static void stale_put(struct storage *st, const char *prefix, const char *rest)
{
	char key[512], err[256];
	struct storage_res res;

	snprintf(key, sizeof(key), "%s%s", prefix, rest);
	assert_int_equal(storage_wait(st, storage_put(st, key, "h", 1, 0, NULL, NULL), &res, err,
				      sizeof(err)), 0);
	storage_res_clear(&res);
}

/* Issue 19 finding 6: the start-up clean-up trusts no stored record: only
 * "_acme-challenge." names of served zones reach the hook, never a name that
 * starts with '-', and the hook gets "--" before its arguments. */
static void test_stale_cleanup(void **state)
{
	static const char V[] = "-bcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";	/* 43, leading '-' */
	char dir[] = "/tmp/test_dns01_XXXXXX", hook[300], log[300], prefix[64], rest[400];
	char err[256], buf[4096] = "";
	struct dns01_conf dc = { .provider = DNS01_EXEC, .zone = "zone.test",
				 .propagation_timeout = 5, .name_ok = stale_name_ok };
	struct storage *st;
	struct dns01 *d;
	ev_timer guard;
	FILE *f;
	size_t n;
	int i;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(hook, sizeof(hook), "%s/hook.sh", dir);
	snprintf(log, sizeof(log), "%s/calls", dir);
	f = fopen(hook, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\necho \"$*\" >> %s\n", log);
	fclose(f);
	chmod(hook, 0755);
	dc.exec = hook;
	st = storage_open("shm", NULL, EV_DEFAULT, err, sizeof(err));
	assert_non_null(st);
	stale_prefix("node-a", prefix, sizeof(prefix));
	/* two good records: a name of name_ok, a name under dns01.zone */
	snprintf(rest, sizeof(rest), "_acme-challenge.ok.test/%s", V);
	stale_put(st, prefix, rest);
	snprintf(rest, sizeof(rest), "_acme-challenge.a.zone.test/%s", V);
	stale_put(st, prefix, rest);
	/* forged ones */
	snprintf(rest, sizeof(rest), "-rf.test/%s", V);
	stale_put(st, prefix, rest);
	snprintf(rest, sizeof(rest), "--help/%s", V);
	stale_put(st, prefix, rest);
	snprintf(rest, sizeof(rest), "www.ok.test/%s", V);		/* not _acme-challenge */
	stale_put(st, prefix, rest);
	snprintf(rest, sizeof(rest), "_acme-challenge.other.example/%s", V);	/* no zone here */
	stale_put(st, prefix, rest);
	snprintf(rest, sizeof(rest), "_acme-challenge.-x.zone.test/%s", V);
	stale_put(st, prefix, rest);
	stale_put(st, prefix, "_acme-challenge.ok.test/short");	/* not a digest */
	d = dns01_new(EV_DEFAULT, &dc, st, "node-a", err, sizeof(err));
	assert_non_null(d);
	assert_int_equal(dns01_cleanup_stale(d), 2);
	ev_timer_init(&guard, cb_guard, 0.05, 0.05);
	ev_timer_start(EV_DEFAULT, &guard);
	for (i = 0; i < 200 && dns01_pending(d) > 0; i++)
		ev_run(EV_DEFAULT, EVRUN_ONCE);
	ev_timer_stop(EV_DEFAULT, &guard);
	assert_int_equal(dns01_pending(d), 0);
	f = fopen(log, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	snprintf(rest, sizeof(rest), "-- cleanup _acme-challenge.ok.test %s\n", V);
	assert_contains(buf, rest);
	snprintf(rest, sizeof(rest), "-- cleanup _acme-challenge.a.zone.test %s\n", V);
	assert_contains(buf, rest);
	if (strstr(buf, "-rf") || strstr(buf, "--help") || strstr(buf, "www.") ||
	    strstr(buf, "example") || strstr(buf, "-x.") || strstr(buf, "short"))
		fail_msg("a forged record reached the hook:\n%s", buf);
	dns01_free(d);
	storage_close(st);
	unlink(log);
	unlink(hook);
	rmdir(dir);
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
		cmocka_unit_test(test_hook_env_signals),
		cmocka_unit_test(test_stale_cleanup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
