/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for runtime/: the prompt-mode reply parser fed with bytes, then the
 * client against a real HAProxy (Debian's 2.6, or $HAPROXY_BIN) started in master-worker mode
 * in a temp dir: push new and updated certificates and check what a TLS
 * client is served, 200 pushes on one connection, stale and foreign
 * transactions, remove, restart and reload detection, dead sockets. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <ev.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/log.h"
#include "runtime/runtime.h"
#include "runtime/rt_int.h"

static struct {
	char dir[64], cfg[96], sock[96], msock[96], certs[96];
	int port;
	pid_t pid;
	struct ev_loop *loop;
	EVP_PKEY *key;
} fx;

/* ---- helpers ---- */

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	if (fd == -1 || strlen(path) >= sizeof(sun.sun_path)) {
		if (fd != -1)
			close(fd);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One non-interactive command on CLI socket <path>; the reply (until HAProxy closes) in <out>. */
static int raw_cli_at(const char *path, const char *cmd, char *out, size_t outlen)
{
	struct timeval tv = { 2, 0 };
	int fd = unix_connect(path);
	size_t o = 0;
	ssize_t n;

	if (fd == -1)
		return -1;
	/* the master CLI keeps the connection open after its reply */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd)) {
		close(fd);
		return -1;
	}
	while (o + 1 < outlen && (n = read(fd, out + o, outlen - o - 1)) > 0) {
		o += (size_t)n;
		if (path == fx.msock && o >= 2 && out[o - 1] == '\n' && out[o - 2] == '\n')
			break;
	}
	out[o] = '\0';
	close(fd);
	return 0;
}

static int raw_cli(const char *cmd, char *out, size_t outlen)
{
	return raw_cli_at(fx.sock, cmd, out, outlen);
}

/* "show ssl cert" into <out>, asserting HAProxy answered with its list
 * (default.pem is always in it): a check that something is absent from <out>
 * must not pass on an empty or cut answer. */
static void show_ssl_cert(char *out, size_t outlen)
{
	assert_int_equal(raw_cli("show ssl cert\n", out, outlen), 0);
	if (!strstr(out, "# filename\n") || !strstr(out, "/default.pem\n"))
		fail_msg("\"show ssl cert\" did not list default.pem: \"%s\"", out);
}

/* A self-signed certificate for <cn> (SAN too), as leaf+key PEM; SHA-256 of the cert in <md>. */
static char *make_pem(const char *cn, unsigned char md[32])
{
	X509 *x = X509_new();
	X509_NAME *name;
	X509_EXTENSION *ext;
	BIO *bio = BIO_new(BIO_s_mem());
	char san[300], *data, *pem;
	unsigned int mdlen = 32;
	long len;
	static long serial = 1000;

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++ + (long)time(NULL) % 100000 * 10000);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, fx.key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	snprintf(san, sizeof(san), "DNS:%s", cn);
	ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, fx.key, EVP_sha256()) > 0);
	X509_digest(x, EVP_sha256(), md, &mdlen);
	PEM_write_bio_X509(bio, x);
	/* a blank line between the blocks: the client must strip it */
	BIO_puts(bio, "\r\n\n");
	PEM_write_bio_PrivateKey(bio, fx.key, NULL, NULL, 0, NULL, NULL);
	len = BIO_get_mem_data(bio, &data);
	pem = malloc((size_t)len + 1);
	memcpy(pem, data, (size_t)len);
	pem[len] = '\0';
	BIO_free(bio);
	X509_free(x);
	return pem;
}

/* SHA-256 of the certificate served for SNI <sni> into <md>. */
static int served_digest(const char *sni, unsigned char md[32])
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)fx.port) };
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;
	X509 *peer = NULL;
	unsigned int mdlen = 32;
	int fd = socket(AF_INET, SOCK_STREAM, 0), rc = -1;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		goto out;
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, sni);
	if (SSL_connect(ssl) != 1)
		goto out;
	peer = SSL_get1_peer_certificate(ssl);
	if (peer && X509_digest(peer, EVP_sha256(), md, &mdlen))
		rc = 0;
out:
	X509_free(peer);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return rc;
}

static void haproxy_start(void)
{
	char log[300], out[4096];
	const char *hap;
	int i, fd;

	snprintf(log, sizeof(log), "%s/haproxy.log", fx.dir);
	fx.pid = fork();
	assert_true(fx.pid != -1);
	if (fx.pid == 0) {
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		/* HAPROXY_BIN: another line than Debian's (tests/integration/test_lines.sh) */
		hap = getenv("HAPROXY_BIN") && *getenv("HAPROXY_BIN") ? getenv("HAPROXY_BIN") : "haproxy";
		execlp(hap, hap, "-W", "-db", "-S", fx.msock, "-f", fx.cfg, (char *)NULL);
		_exit(127);
	}
	/* ready when the master answers on its CLI (it handles reloads from
	 * then on) and lists a worker, and the worker answers too */
	for (i = 0; i < 250; i++) {	/* up to 5 s */
		if (raw_cli_at(fx.msock, "show proc\n", out, sizeof(out)) == 0 && strstr(out, "worker") &&
		    raw_cli("show info\n", out, sizeof(out)) == 0 && strstr(out, "Pid:"))
			return;
		sleep_ms(20);
	}
	fail_msg("haproxy did not open %s", fx.sock);
}

static void haproxy_stop(void)
{
	int i, st;

	if (fx.pid <= 0)
		return;
	kill(fx.pid, SIGTERM);
	for (i = 0; i < 250 && waitpid(fx.pid, &st, WNOHANG) == 0; i++)
		sleep_ms(20);
	if (i == 250) {
		kill(fx.pid, SIGKILL);
		waitpid(fx.pid, &st, 0);
	}
	fx.pid = 0;
}

struct waiter {
	int calls, ok;
	const char *errp;
	char err[1024];
};

static void cb_done(void *arg, int ok, const char *err)
{
	struct waiter *w = arg;

	w->calls++;
	w->ok = ok;
	w->errp = err;
	snprintf(w->err, sizeof(w->err), "%s", err ? err : "");
}

static void cb_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
}

/* Runs the loop until <cond>(<arg>) or <secs> pass; returns the condition. */
static int run_until(int (*cond)(void *), void *arg, double secs)
{
	ev_timer tick;
	ev_tstamp end;

	ev_now_update(fx.loop);
	end = ev_now(fx.loop) + secs;
	ev_timer_init(&tick, cb_tick, 0.01, 0.01);
	ev_timer_start(fx.loop, &tick);
	while (!cond(arg) && ev_now(fx.loop) < end)
		ev_run(fx.loop, EVRUN_ONCE);
	ev_timer_stop(fx.loop, &tick);
	return cond(arg);
}

static int cond_called(void *arg)
{
	return ((struct waiter *)arg)->calls > 0;
}

struct counter {
	int n, want;
};

static int cond_count(void *arg)
{
	struct counter *c = arg;

	return c->n >= c->want;
}

static int cond_up(void *arg)
{
	return rt_socket_up(arg, 0);
}

static int cond_down(void *arg)
{
	return !rt_socket_up(arg, 0);
}

static struct rt *rt_open(void (*on_reload)(void *, size_t), void *arg)
{
	char addr[320], err[256];
	const char *addrs[1] = { addr };
	struct rt *rt;

	snprintf(addr, sizeof(addr), "unix:%s", fx.sock);
	rt = rt_new(fx.loop, addrs, 1, on_reload, arg, err, sizeof(err));
	assert_non_null(rt);
	rt_set_timeouts(rt, 3000, 300);
	assert_true(run_until(cond_up, rt, 5));
	return rt;
}

static void push_sync(struct rt *rt, const char *host, const char *pem, int want_ok)
{
	char path[400];
	struct waiter w = { 0 };

	snprintf(path, sizeof(path), "%s/%s.pem", fx.certs, host);
	assert_int_equal(rt_push_cert(rt, path, fx.certs, pem, strlen(pem), cb_done, &w), 0);
	assert_int_equal(w.calls, 0);	/* never called from inside rt_push_cert */
	assert_true(run_until(cond_called, &w, 8));
	assert_int_equal(w.calls, 1);
	if (want_ok && !w.ok)
		fail_msg("push %s failed: %s", host, w.err);
	assert_int_equal(w.ok, want_ok);
}

struct listing {
	int calls, ok, has;
	const char *want;
	size_t n;
};

static void cb_list(void *arg, int ok, const char *const *names, size_t n)
{
	struct listing *l = arg;
	size_t i;

	l->calls++;
	l->ok = ok;
	l->n = n;
	for (i = 0; i < n; i++)
		if (strcmp(names[i], l->want) == 0)
			l->has = 1;
}

static int cond_list(void *arg)
{
	return ((struct listing *)arg)->calls > 0;
}

static int listed(struct rt *rt, const char *host)
{
	char path[400];
	struct listing l = { .want = path };

	snprintf(path, sizeof(path), "%s/%s.pem", fx.certs, host);
	assert_int_equal(rt_list_certs(rt, 0, cb_list, &l), 0);
	assert_true(run_until(cond_list, &l, 5));
	assert_int_equal(l.ok, 1);
	return l.has;
}

/* ---- group setup: a HAProxy with a default certificate in <dir>/certs ---- */

static int setup(void **state)
{
	char pemfile[400];
	unsigned char md[32];
	char *pem;
	FILE *f;
	EVP_PKEY_CTX *kctx;

	signal(SIGPIPE, SIG_IGN);
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/test_runtime.XXXXXX");
	if (!mkdtemp(fx.dir))
		return -1;
	snprintf(fx.cfg, sizeof(fx.cfg), "%s/haproxy.cfg", fx.dir);
	snprintf(fx.sock, sizeof(fx.sock), "%s/admin.sock", fx.dir);
	snprintf(fx.msock, sizeof(fx.msock), "%s/master.sock", fx.dir);
	snprintf(fx.certs, sizeof(fx.certs), "%s/certs", fx.dir);
	mkdir(fx.certs, 0700);
	kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
	EVP_PKEY_keygen_init(kctx);
	EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kctx, NID_X9_62_prime256v1);
	EVP_PKEY_keygen(kctx, &fx.key);
	EVP_PKEY_CTX_free(kctx);
	pem = make_pem("default.test", md);
	snprintf(pemfile, sizeof(pemfile), "%s/default.pem", fx.certs);
	f = fopen(pemfile, "w");
	fputs(pem, f);
	fclose(f);
	free(pem);
	fx.port = free_port();
	f = fopen(fx.cfg, "w");
	/* a short stats timeout: the client must keep its idle connection alive */
	fprintf(f, "global\n  nbthread 1\n  stats socket %s level admin\n  stats timeout 1s\n"
		"defaults\n  mode http\n  timeout client 5s\n  timeout server 5s\n  timeout connect 5s\n"
		"frontend fe\n  bind 127.0.0.1:%d ssl crt %s/\n"
		"  http-request return status 200 content-type text/plain string ok\n",
		fx.sock, fx.port, fx.certs);
	fclose(f);
	fx.loop = ev_loop_new(EVFLAG_AUTO);
	haproxy_start();
	return 0;
}

static int teardown(void **state)
{
	char cmd[400];

	haproxy_stop();
	ev_loop_destroy(fx.loop);
	EVP_PKEY_free(fx.key);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx.dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- tests ---- */

static void test_reply_parse(void **state)
{
	const char *body;
	size_t blen, used;

	assert_int_equal(rt_reply_parse("\n> ", 3, &body, &blen, &used), 1);
	assert_int_equal(blen, 0);
	assert_int_equal(used, 3);
	assert_int_equal(rt_reply_parse("Success!\n\n", 10, &body, &blen, &used), 0);
	assert_int_equal(rt_reply_parse("Committing x\nSuccess!\n\n> ", 25, &body, &blen, &used), 1);
	assert_int_equal(blen, 21);
	assert_memory_equal(body, "Committing x\nSuccess!", 21);
	/* payload prompts come first; output may hold empty lines */
	assert_int_equal(rt_reply_parse("+ + + Transaction created!\n\n> ", 30, &body, &blen, &used), 1);
	assert_int_equal(blen, 20);
	assert_memory_equal(body, "Transaction created!", 20);
	assert_int_equal(rt_reply_parse("can't!\n\n\n> ", 11, &body, &blen, &used), 1);
	assert_int_equal(blen, 6);
	assert_int_equal(rt_reply_parse("+ + ", 4, &body, &blen, &used), 0);
	assert_int_equal(rt_reply_parse("> ", 2, &body, &blen, &used), 0);
}

/* The line from "show info" and each line's form of a foreign transaction:
 * a line never reads another line's form. */
static void test_line(void **state)
{
	struct rt_line l26, l30, l34, bad;
	char err[200], *f;

	assert_int_equal(rt_line_from_info("Name: HAProxy\nVersion: 2.6.12-1+deb12u1\nPid: 7\n", &l26,
					   err, sizeof(err)), 0);
	assert_string_equal(l26.name, "2.6");
	assert_string_equal(l26.version, "2.6.12-1+deb12u1");
	assert_int_equal(rt_line_from_info("Name: HAProxy\nVersion: 3.0.11-346f58f\n", &l30, err, sizeof(err)), 0);
	assert_string_equal(l30.name, "3.0");
	assert_int_equal(rt_line_from_info("Version: 3.4.0-64a335366\nRelease_date: 2026/06/03\n", &l34, err,
					   sizeof(err)), 0);
	assert_string_equal(l34.name, "3.0");
	assert_string_equal(l34.version, "3.4.0-64a335366");
	assert_int_equal(rt_line_from_info("Version: 2.4.22\n", &bad, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "older than 2.6"));
	assert_int_equal(rt_line_from_info("Name: HAProxy\nPid: 7\n", &bad, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "Version"));
	assert_int_equal(rt_line_from_info("XVersion: 3.0.1\n", &bad, err, sizeof(err)), -1);

	f = rt_line_foreign(&l26, "Transaction updated for certificate /c/d.pem!\n");
	assert_string_equal(f, "/c/d.pem");
	free(f);
	f = rt_line_foreign(&l30, "The ongoing transaction is about '/c/d.pem' but you are trying to set "
			    "'/c/a.pem'\nCan't update /c/a.pem!");
	assert_string_equal(f, "/c/d.pem");
	free(f);
	assert_null(rt_line_foreign(&l26, "The ongoing transaction is about '/c/d.pem' but you are trying"));
	assert_null(rt_line_foreign(&l30, "Transaction updated for certificate /c/d.pem!\n"));
	assert_null(rt_line_foreign(&l30, "Can't load the payload"));
}

static void test_bad_args(void **state)
{
	const char *addrs[] = { "nocolon" };
	char err[256] = "";
	struct rt *rt;

	assert_null(rt_new(fx.loop, addrs, 1, NULL, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "nocolon"));
	rt = rt_open(NULL, NULL);
	assert_int_equal(rt_push_cert(rt, "/a b.pem", NULL, "x\n", 2, cb_done, NULL), -1);
	assert_int_equal(rt_push_cert(rt, "/a;show info", NULL, "x\n", 2, cb_done, NULL), -1);
	assert_int_equal(rt_push_cert(rt, "/a.pem", "/l\n", "x\n", 2, cb_done, NULL), -1);
	assert_int_equal(rt_push_cert(rt, "/a.pem", NULL, "\r\n\n  \n", 6, cb_done, NULL), -1);
	assert_int_equal(rt_list_certs(rt, 1, cb_list, NULL), -1);
	assert_int_equal(rt_count(rt), 1);
	rt_free(rt);
	rt_free(NULL);
}

static void test_push_new_and_update(void **state)
{
	unsigned char md1[32], md2[32], got[32], def[32];
	char *pem1 = make_pem("a.test", md1), *pem2 = make_pem("a.test", md2);
	struct rt *rt = rt_open(NULL, NULL);
	struct rt_stats st;
	uint64_t c0;

	assert_int_equal(served_digest("a.test", def), 0);
	assert_memory_not_equal(def, md1, 32);	/* the default certificate before */
	assert_int_equal(listed(rt, "a.test"), 0);
	rt_set_timeouts(rt, 0, 60000);	/* no keepalive in the counts below */
	rt_stats(rt, &st);
	c0 = st.commands;
	push_sync(rt, "a.test", pem1, 1);
	rt_stats(rt, &st);
	/* show ssl crt-list (once), new, set, commit, add */
	assert_int_equal(st.commands - c0, 5);
	assert_int_equal(served_digest("a.test", got), 0);
	assert_memory_equal(got, md1, 32);
	assert_int_equal(listed(rt, "a.test"), 1);
	rt_stats(rt, &st);
	c0 = st.commands;
	push_sync(rt, "a.test", pem2, 1);
	rt_stats(rt, &st);
	assert_int_equal(st.commands - c0, 2);	/* known name: set, commit */
	assert_int_equal(served_digest("a.test", got), 0);
	assert_memory_equal(got, md2, 32);
	/* other names still get the default */
	assert_int_equal(served_digest("other.test", got), 0);
	assert_memory_equal(got, def, 32);
	rt_stats(rt, &st);
	assert_int_equal(st.pushes_ok, 2);
	assert_int_equal(st.pushes_failed, 0);
	assert_int_equal(st.reconnects, 0);
	rt_free(rt);
	free(pem1);
	free(pem2);
}

static void cb_count_ok(void *arg, int ok, const char *err)
{
	struct counter *c = arg;

	if (!ok)
		fail_msg("push failed: %s", err);
	c->n++;
}

static void test_push_200(void **state)
{
	struct rt *rt = rt_open(NULL, NULL);
	/* RT_TEST_BULK=3000 measures a bigger load by hand */
	int total = getenv("RT_TEST_BULK") ? atoi(getenv("RT_TEST_BULK")) : 200;
	struct counter c = { 0, total };
	ev_tstamp t0;
	unsigned char md[32], md150[32], got[32];
	char host[64], path[400], *pem;
	struct rt_stats st;
	int i;

	assert_true(total > 150);
	ev_now_update(fx.loop);
	t0 = ev_now(fx.loop);
	for (i = 0; i < total; i++) {
		snprintf(host, sizeof(host), "h%d.bulk.test", i);
		snprintf(path, sizeof(path), "%s/%s.pem", fx.certs, host);
		pem = make_pem(host, i == 150 ? md150 : md);
		assert_int_equal(rt_push_cert(rt, path, fx.certs, pem, strlen(pem), cb_count_ok, &c), 0);
		free(pem);
	}
	assert_true(run_until(cond_count, &c, 40 + total / 50));
	if (getenv("RT_TEST_BULK"))
		fprintf(stderr, "%d pushes in %.2fs\n", total, ev_now(fx.loop) - t0);
	rt_stats(rt, &st);
	assert_int_equal(st.pushes_ok, (uint64_t)total);
	assert_int_equal(st.reconnects, 0);
	assert_true(st.commands >= 4 * (uint64_t)total);	/* new, set, commit, add each */
	assert_int_equal(served_digest("h150.bulk.test", got), 0);
	assert_memory_equal(got, md150, 32);
	rt_free(rt);
}

static void test_stale_transaction(void **state)
{
	unsigned char md[32], got[32];
	char *pem = make_pem("a.test", md), *junk = make_pem("junk.test", got);
	char cmd[8192], out[8192];
	const char *p;
	size_t o;
	struct rt *rt;

	/* a transaction left open by someone else before we connect */
	snprintf(cmd, sizeof(cmd), "set ssl cert %s/default.pem <<\n", fx.certs);
	for (p = junk, o = strlen(cmd); *p; p++)	/* without its blank line */
		if (*p != '\r' && !(*p == '\n' && (p == junk || p[-1] == '\n' || p[-1] == '\r')))
			cmd[o++] = *p;
	cmd[o++] = '\n';
	cmd[o] = '\0';
	assert_int_equal(raw_cli(cmd, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "Transaction created"));
	show_ssl_cert(out, sizeof(out));
	assert_non_null(strstr(out, "*"));
	rt = rt_open(NULL, NULL);	/* aborts it at connect */
	push_sync(rt, "a.test", pem, 1);
	assert_int_equal(served_digest("a.test", got), 0);
	assert_memory_equal(got, md, 32);
	show_ssl_cert(out, sizeof(out));
	assert_null(strstr(out, "*"));

	/* one opened while we are connected: HAProxy 2.6 would load our payload
	 * into it; the client aborts it and sets again */
	assert_int_equal(raw_cli(cmd, out, sizeof(out)), 0);
	free(pem);
	pem = make_pem("a.test", md);
	push_sync(rt, "a.test", pem, 1);
	assert_int_equal(served_digest("a.test", got), 0);
	assert_memory_equal(got, md, 32);
	show_ssl_cert(out, sizeof(out));
	assert_null(strstr(out, "*"));
	rt_free(rt);
	free(pem);
	free(junk);
}

static void test_bad_pem_fails(void **state)
{
	struct rt *rt = rt_open(NULL, NULL);
	char out[4096];
	struct waiter w = { 0 };
	char path[400];

	snprintf(path, sizeof(path), "%s/bad.test.pem", fx.certs);
	assert_int_equal(rt_push_cert(rt, path, fx.certs, "garbage\n", 8, cb_done, &w), 0);
	assert_true(run_until(cond_called, &w, 5));
	assert_int_equal(w.ok, 0);
	assert_non_null(strstr(w.err, "set ssl cert"));
	assert_non_null(strstr(w.err, "Can't load the payload"));
	assert_non_null(strstr(w.err, fx.sock));
	/* no transaction left behind, and the connection still works */
	show_ssl_cert(out, sizeof(out));
	assert_null(strstr(out, "*"));
	assert_true(rt_socket_up(rt, 0));
	rt_free(rt);
}

/* The X.Y of the HAProxy under test, from its "show info". */
static void hap_version(int *major, int *minor)
{
	char out[8192];
	const char *v;

	assert_int_equal(raw_cli("show info\n", out, sizeof(out)), 0);
	v = strstr(out, "\nVersion: ");
	assert_non_null(v);
	assert_int_equal(sscanf(v + 10, "%d.%d", major, minor), 2);
}

static void test_oversized_payload(void **state)
{
	struct rt *rt = rt_open(NULL, NULL);
	struct waiter w = { 0 };
	unsigned char md[32];
	char path[400], *big = malloc(40001), *pem = make_pem("after.test", md);
	struct rt_stats st;
	size_t i;
	int major, minor;

	/* A 40 kB payload: up to 3.0, HAProxy closes the CLI connection when a
	 * payload exceeds its buffer, so the push is tried twice, then fails
	 * with a clear error; 3.4 takes payloads that large and refuses this
	 * one as no certificate. Either way it fails clearly and the client
	 * goes on. */
	hap_version(&major, &minor);
	for (i = 0; i < 40000; i++)
		big[i] = (i % 64 == 63) ? '\n' : 'A';
	big[40000] = '\0';
	snprintf(path, sizeof(path), "%s/big.test.pem", fx.certs);
	assert_int_equal(rt_push_cert(rt, path, fx.certs, big, 40000, cb_done, &w), 0);
	assert_true(run_until(cond_called, &w, 8));
	assert_int_equal(w.ok, 0);
	if (major < 3 || (major == 3 && minor < 4)) {
		assert_non_null(strstr(w.err, "connection lost during \"set ssl cert"));
		assert_non_null(strstr(w.err, "tune.bufsize"));
	} else {
		assert_non_null(strstr(w.err, "set ssl cert"));
		assert_non_null(strstr(w.err, "Can't load the payload"));
	}
	/* the client is back and works */
	push_sync(rt, "after.test", pem, 1);
	rt_stats(rt, &st);
	assert_int_equal(st.reconnects, (major < 3 || (major == 3 && minor < 4)) ? 2 : 0);
	rt_free(rt);
	free(big);
	free(pem);
}

static void test_remove(void **state)
{
	unsigned char md[32], def[32], got[32];
	char *pem = make_pem("b.test", md), path[400];
	struct rt *rt = rt_open(NULL, NULL);
	struct waiter w = { 0 };

	assert_int_equal(served_digest("default.test", def), 0);
	push_sync(rt, "b.test", pem, 1);
	assert_int_equal(served_digest("b.test", got), 0);
	assert_memory_equal(got, md, 32);
	snprintf(path, sizeof(path), "%s/b.test.pem", fx.certs);
	assert_int_equal(rt_remove_cert(rt, path, fx.certs, cb_done, &w), 0);
	assert_true(run_until(cond_called, &w, 5));
	if (!w.ok)
		fail_msg("remove failed: %s", w.err);
	assert_int_equal(listed(rt, "b.test"), 0);
	assert_int_equal(served_digest("b.test", got), 0);
	assert_memory_equal(got, def, 32);
	/* removing what is absent succeeds; pushing it again works */
	memset(&w, 0, sizeof(w));
	assert_int_equal(rt_remove_cert(rt, path, fx.certs, cb_done, &w), 0);
	assert_true(run_until(cond_called, &w, 5));
	assert_int_equal(w.ok, 1);
	push_sync(rt, "b.test", pem, 1);
	assert_int_equal(listed(rt, "b.test"), 1);
	/* a certificate named by "crt" in the configuration cannot be deleted */
	snprintf(path, sizeof(path), "%s/default.pem", fx.certs);
	memset(&w, 0, sizeof(w));
	assert_int_equal(rt_remove_cert(rt, path, NULL, cb_done, &w), 0);
	assert_true(run_until(cond_called, &w, 5));
	assert_int_equal(w.ok, 0);
	assert_non_null(strstr(w.err, "del ssl cert"));
	rt_free(rt);
	free(pem);
}

static void cb_reload(void *arg, size_t idx)
{
	(*(int *)arg)++;
	assert_int_equal(idx, 0);
}

static int cond_int(void *arg)
{
	return *(int *)arg > 0;
}

static void test_restart_and_reload(void **state)
{
	int reloads = 0;
	struct rt *rt = rt_open(cb_reload, &reloads);
	unsigned char md[32], got[32];
	char *pem = make_pem("c.test", md), out[4096];
	struct rt_stats st;

	/* restart: the connection drops, comes back, on_reload fires */
	haproxy_stop();
	assert_true(run_until(cond_down, rt, 5));
	haproxy_start();
	assert_true(run_until(cond_int, &reloads, 6));
	assert_int_equal(reloads, 1);
	assert_true(rt_socket_up(rt, 0));
	rt_stats(rt, &st);
	assert_true(st.reconnects >= 1);
	assert_int_equal(st.reloads_seen, 1);
	push_sync(rt, "c.test", pem, 1);

	/* master-worker reload: the old worker keeps our connection open, the
	 * probe sees a new pid on the socket and the client moves over */
	reloads = 0;
	assert_int_equal(raw_cli_at(fx.msock, "reload\n", out, sizeof(out)), 0);
	if (!run_until(cond_int, &reloads, 8)) {
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "cat %s/haproxy.log >&2; grep Sig /proc/%d/status >&2", fx.dir, (int)fx.pid);
		assert_int_equal(system(cmd), 0);
		fail_msg("no reload seen");
	}
	assert_int_equal(reloads, 1);
	assert_true(run_until(cond_up, rt, 5));
	/* the new process loaded only what is on disk: push again */
	push_sync(rt, "c.test", pem, 1);
	assert_int_equal(served_digest("c.test", got), 0);
	assert_memory_equal(got, md, 32);
	rt_free(rt);
	free(pem);
}

static void test_idle_keepalive(void **state)
{
	struct rt *rt = rt_open(NULL, NULL);
	struct counter never = { 0, 1 };
	struct rt_stats st;
	unsigned char md[32];
	char *pem = make_pem("k.test", md);

	/* idle for 2.5x HAProxy's "stats timeout" (2.6 does not apply it to a
	 * prompt-mode session, later versions may): keepalives are sent and the
	 * connection is kept */
	run_until(cond_count, &never, 2.5);
	assert_true(rt_socket_up(rt, 0));
	rt_stats(rt, &st);
	assert_int_equal(st.reconnects, 0);
	assert_true(st.commands > 3);	/* prompt, show info, show ssl cert + keepalives */
	push_sync(rt, "k.test", pem, 1);
	rt_free(rt);
	free(pem);
}

static void test_queued_while_down(void **state)
{
	unsigned char md[32], got[32];
	char *pem = make_pem("q.test", md), path[400];
	struct rt *rt = rt_open(NULL, NULL);
	struct waiter w = { 0 };

	haproxy_stop();
	assert_true(run_until(cond_down, rt, 5));
	snprintf(path, sizeof(path), "%s/q.test.pem", fx.certs);
	assert_int_equal(rt_push_cert(rt, path, fx.certs, pem, strlen(pem), cb_done, &w), 0);
	haproxy_start();	/* well within the 3 s timeout */
	assert_true(run_until(cond_called, &w, 5));
	if (!w.ok)
		fail_msg("push failed: %s", w.err);
	assert_int_equal(served_digest("q.test", got), 0);
	assert_memory_equal(got, md, 32);
	rt_free(rt);
	free(pem);
}

/* A fake runtime socket: answers the client's init commands as HAProxy
 * would (a new Pid on every connection), then never answers anything else. */
struct fake {
	int lfd, stop, conns;
	int certs;	/* answer new/set/commit ssl cert (else stay silent to them) */
	int locked;	/* answer this many of them "currently locked" first */
	pthread_t th;
};

static void *fake_main(void *arg)
{
	struct fake *fk = arg;
	struct pollfd pfd[2] = { { .fd = fk->lfd, .events = POLLIN }, { .fd = -1, .events = POLLIN } };
	char buf[8192], out[256], *nl;
	size_t len = 0;
	ssize_t n;

	while (!__atomic_load_n(&fk->stop, __ATOMIC_SEQ_CST)) {
		if (poll(pfd, 2, 50) <= 0)
			continue;
		if (pfd[0].revents & POLLIN) {
			if (pfd[1].fd != -1)
				close(pfd[1].fd);
			pfd[1].fd = accept(fk->lfd, NULL, NULL);
			len = 0;
			__atomic_add_fetch(&fk->conns, 1, __ATOMIC_SEQ_CST);
		}
		if (pfd[1].fd == -1 || !(pfd[1].revents & (POLLIN | POLLHUP)))
			continue;
		n = read(pfd[1].fd, buf + len, sizeof(buf) - len - 1);
		if (n <= 0) {
			close(pfd[1].fd);
			pfd[1].fd = -1;
			continue;
		}
		len += (size_t)n;
		buf[len] = '\0';
		while ((nl = strchr(buf, '\n'))) {
			*nl = '\0';
			out[0] = '\0';
			if (strcmp(buf, "prompt") == 0)
				snprintf(out, sizeof(out), "\n> ");
			else if (strcmp(buf, "show info") == 0)
				snprintf(out, sizeof(out), "Name: HAProxy\nVersion: 2.6.12\nPid: %d\nStart_time_sec: 1000\n\n> ",
					 100 + __atomic_load_n(&fk->conns, __ATOMIC_SEQ_CST));
			else if (strcmp(buf, "show ssl cert") == 0)
				snprintf(out, sizeof(out), "# filename\n/x/existing.pem\n\n> ");
			else if (fk->certs && strncmp(buf, "new ssl cert ", 13) == 0 && fk->locked > 0 && fk->locked--)
				snprintf(out, sizeof(out), "Can't create a certificate!\n"
					 "Operations on certificates are currently locked!\n\n> ");
			else if (fk->certs && strncmp(buf, "new ssl cert ", 13) == 0)
				snprintf(out, sizeof(out), "New empty certificate store '%.200s'!\n\n> ", buf + 13);
			else if (fk->certs && strncmp(buf, "set ssl cert ", 13) == 0)
				snprintf(out, sizeof(out), "Transaction created for certificate %.*s!\n\n> ",
					 (int)(strlen(buf + 13) - 3), buf + 13);
			else if (fk->certs && strncmp(buf, "commit ssl cert ", 16) == 0 && fk->locked > 0 && fk->locked--)
				snprintf(out, sizeof(out), "Operations on certificates are currently locked!\n\n> ");
			else if (fk->certs && strncmp(buf, "commit ssl cert ", 16) == 0)
				snprintf(out, sizeof(out), "Committing %.200s\nSuccess!\n\n> ", buf + 16);
			if (out[0] && write(pfd[1].fd, out, strlen(out)) < 0)
				break;
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len + 1);
		}
	}
	if (pfd[1].fd != -1)
		close(pfd[1].fd);
	return NULL;
}

static void test_reply_timeout(void **state)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct fake fk = { 0 };
	char addr[128], err[256];
	const char *addrs[1] = { addr };
	struct waiter w = { 0 };
	int reloads = 0;
	ev_tstamp t0;
	struct rt *rt;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%.90s/fake.sock", fx.dir);
	fk.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fk.lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fk.lfd, 8), 0);
	assert_int_equal(pthread_create(&fk.th, NULL, fake_main, &fk), 0);
	snprintf(addr, sizeof(addr), "unix:%s", sun.sun_path);
	rt = rt_new(fx.loop, addrs, 1, cb_reload, &reloads, err, sizeof(err));
	assert_non_null(rt);
	rt_set_timeouts(rt, 1000, 60000);
	assert_true(run_until(cond_up, rt, 3));
	ev_now_update(fx.loop);
	t0 = ev_now(fx.loop);
	assert_int_equal(rt_push_cert(rt, "/x/existing.pem", NULL, "x\n", 2, cb_done, &w), 0);
	assert_true(run_until(cond_called, &w, 4));
	/* the name was known from "show ssl cert": no "new ssl cert", set times out */
	assert_int_equal(w.ok, 0);
	assert_non_null(strstr(w.err, "timeout after 1.0s waiting for the reply to \"set ssl cert /x/existing.pem <<\""));
	assert_true(ev_now(fx.loop) - t0 < 1.8);
	/* then the client reconnects; the new connection reports another Pid */
	assert_true(run_until(cond_int, &reloads, 4));
	assert_int_equal(reloads, 1);
	assert_int_equal(__atomic_load_n(&fk.conns, __ATOMIC_SEQ_CST), 2);
	rt_free(rt);
	__atomic_store_n(&fk.stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(fk.th, NULL);
	close(fk.lfd);
}

/* HAProxy answers "Operations on certificates are currently locked!" while
 * another runtime client holds its certificate lock (an operator's command,
 * another agent): the push waits and retries instead of failing. Found by
 * the 3000-certificate bench, where such pushes were lost for good. */
static void test_locked_retried(void **state)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct fake fk = { .certs = 1, .locked = 3 };
	char addr[128], err[256];
	const char *addrs[1] = { addr };
	struct waiter w = { 0 };
	struct rt *rt;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%.90s/fake-locked.sock", fx.dir);
	unlink(sun.sun_path);
	fk.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fk.lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fk.lfd, 8), 0);
	assert_int_equal(pthread_create(&fk.th, NULL, fake_main, &fk), 0);
	snprintf(addr, sizeof(addr), "unix:%s", sun.sun_path);
	rt = rt_new(fx.loop, addrs, 1, NULL, NULL, err, sizeof(err));
	assert_non_null(rt);
	assert_true(run_until(cond_up, rt, 3));
	assert_int_equal(rt_push_cert(rt, "/x/new.pem", NULL, "x\n", 2, cb_done, &w), 0);
	assert_true(run_until(cond_called, &w, 5));
	if (!w.ok)
		fail_msg("push failed: %s", w.err);
	assert_int_equal(__atomic_load_n(&fk.locked, __ATOMIC_SEQ_CST), 0);	/* all three seen */
	rt_free(rt);
	__atomic_store_n(&fk.stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(fk.th, NULL);
	close(fk.lfd);
	unlink(sun.sun_path);
}

static void test_dead_socket(void **state)
{
	char a1[320], a2[64], err[256], path[400];
	const char *addrs[2] = { a1, a2 };
	struct waiter w = { 0 };
	struct rt *rt;
	ev_tstamp t0;
	int lfd;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	/* a socket file nobody listens on, and a TCP port that is closed */
	snprintf(a1, sizeof(a1), "unix:%s/none.sock", fx.dir);
	snprintf(a2, sizeof(a2), "127.0.0.1:%d", free_port());
	rt = rt_new(fx.loop, addrs, 2, NULL, NULL, err, sizeof(err));
	assert_non_null(rt);
	rt_set_timeouts(rt, 1000, 300);
	snprintf(path, sizeof(path), "%s/d.test.pem", fx.certs);
	ev_now_update(fx.loop);
	t0 = ev_now(fx.loop);
	assert_int_equal(rt_push_cert(rt, path, fx.certs, "x\n", 2, cb_done, &w), 0);
	assert_true(run_until(cond_called, &w, 5));
	assert_true(ev_now(fx.loop) - t0 < 2.0);
	assert_int_equal(w.ok, 0);
	assert_non_null(strstr(w.err, "none.sock"));
	assert_non_null(strstr(w.err, a2));
	assert_non_null(strstr(w.err, "not connected"));
	assert_false(rt_socket_up(rt, 0));
	rt_free(rt);

	/* a peer that accepts but never answers: the reply timeout applies */
	assert_true(strlen(fx.dir) + 11 < sizeof(sun.sun_path));
	memcpy(sun.sun_path, fx.dir, strlen(fx.dir));
	memcpy(sun.sun_path + strlen(fx.dir), "/mute.sock", 11);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(lfd, 8), 0);
	snprintf(a1, sizeof(a1), "unix:%s", sun.sun_path);
	rt = rt_new(fx.loop, addrs, 1, NULL, NULL, err, sizeof(err));
	rt_set_timeouts(rt, 1000, 300);
	memset(&w, 0, sizeof(w));
	ev_now_update(fx.loop);
	t0 = ev_now(fx.loop);
	assert_int_equal(rt_push_cert(rt, path, NULL, "x\n", 2, cb_done, &w), 0);
	assert_true(run_until(cond_called, &w, 5));
	assert_true(ev_now(fx.loop) - t0 < 2.5);
	assert_int_equal(w.ok, 0);
	assert_non_null(strstr(w.err, "no answer to \"prompt\""));
	rt_free(rt);
	close(lfd);

	/* rt_free cuts queued work off with rt_err_shutdown (the very pointer:
	 * certstore tells a stop from a failure by it, and logs no error) */
	snprintf(a1, sizeof(a1), "unix:%s/none.sock", fx.dir);
	rt = rt_new(fx.loop, addrs, 1, NULL, NULL, err, sizeof(err));
	memset(&w, 0, sizeof(w));
	assert_int_equal(rt_push_cert(rt, path, NULL, "x\n", 2, cb_done, &w), 0);
	rt_free(rt);
	assert_int_equal(w.calls, 1);
	assert_int_equal(w.ok, 0);
	assert_ptr_equal(w.errp, rt_err_shutdown);
	assert_non_null(strstr(w.err, "shutting down"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_parse),
		cmocka_unit_test(test_line),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_push_new_and_update),
		cmocka_unit_test(test_push_200),
		cmocka_unit_test(test_stale_transaction),
		cmocka_unit_test(test_bad_pem_fails),
		cmocka_unit_test(test_oversized_payload),
		cmocka_unit_test(test_remove),
		cmocka_unit_test(test_idle_keepalive),
		cmocka_unit_test(test_queued_while_down),
		cmocka_unit_test(test_restart_and_reload),
		cmocka_unit_test(test_reply_timeout),
		cmocka_unit_test(test_locked_retried),
		cmocka_unit_test(test_dead_socket),
	};

	log_level_max = getenv("RT_TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARN;
	return cmocka_run_group_tests(tests, setup, teardown);
}
