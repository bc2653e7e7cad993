/* SPDX-License-Identifier: Apache-2.0 */
/* acme_issue: issues N certificates concurrently through acme/acme.c, answering
 * http-01 through pebble-challtestsrv's management API. Test tool only: its hook
 * makes a blocking curl call, which the daemon never does.
 *
 * acme_issue --directory URL --ca-file F --host H --challtestsrv http://127.0.0.1:PORT
 *            [--key ec256|ec384|rsa2048|rsa3072|rsa4096] [--count N]
 *            [--eab-kid K --eab-hmac H] [--preferred-chain CN] [--profile P] [--ari]
 *            [--renew] [--revoke] [--no-tos] [--email E] [--out DIR] [--timeout S] [-v]
 * Prints one line per result and exits 0 only if all succeeded. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>

#include "acme/acme.h"
#include "acme/crypto.h"
#include "lib/log.h"

struct tool {
	struct ev_loop *loop;
	struct acme_client *acme;
	const char *challtestsrv, *out_dir;
	int ari, revoke, renew;
	int pending, ok, failed;
	ev_timer deadline;
};

struct job {
	struct tool *t;
	char host[300];
	char *cert;
	char ari_id[512];
	int renewed;
};

static void cb_done(void *arg, const char *host, const struct acme_result *res);

static void tool_maybe_stop(struct tool *t)
{
	if (t->pending == 0)
		ev_break(t->loop, EVBREAK_ALL);
}

static int challtestsrv_post(const char *base, const char *path, json_t *body)
{
	CURL *e = curl_easy_init();
	char url[512], *text = json_dumps(body, JSON_COMPACT);
	long status = 0;
	CURLcode rc = CURLE_FAILED_INIT;

	if (e && text) {
		snprintf(url, sizeof(url), "%s%s", base, path);
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, text);
		curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
		rc = curl_easy_perform(e);
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	}
	free(text);
	curl_easy_cleanup(e);
	return rc == CURLE_OK && status == 200 ? 0 : -1;
}

static int hook_set(void *arg, const char *host, const char *token, const char *key_auth)
{
	struct tool *t = arg;
	json_t *b = json_pack("{s:s,s:s}", "token", token, "content", key_auth);
	int rc = b ? challtestsrv_post(t->challtestsrv, "/add-http01", b) : -1;

	json_decref(b);
	return rc;
}

static void hook_clear(void *arg, const char *host, const char *token)
{
	struct tool *t = arg;
	json_t *b = json_pack("{s:s}", "token", token);

	if (b)
		challtestsrv_post(t->challtestsrv, "/del-http01", b);
	json_decref(b);
}

static void job_end(struct job *j)
{
	struct tool *t = j->t;

	free(j->cert);
	free(j);
	t->pending--;
	tool_maybe_stop(t);
}

static void cb_revoked(void *arg, int ok, const char *err)
{
	struct job *j = arg;

	if (ok) {
		printf("revoked host=%s\n", j->host);
	} else {
		printf("revoke-failed host=%s err=%s\n", j->host, err);
		j->t->failed++;
	}
	fflush(stdout);
	job_end(j);
}

static void job_after_ari(struct job *j)
{
	if (j->t->renew && !j->renewed && j->ari_id[0]) {
		j->renewed = 1;
		if (acme_order_start(j->t->acme, j->host, j->ari_id, cb_done, j) == 0)
			return;
		printf("renew-failed host=%s detail=could not start\n", j->host);
		j->t->failed++;
	}
	if (j->t->revoke && acme_revoke(j->t->acme, j->cert, cb_revoked, j) == 0)
		return;
	job_end(j);
}

static void cb_ari(void *arg, int ok, time_t start, time_t end, long retry_after, const char *err)
{
	struct job *j = arg;

	if (ok) {
		printf("ari host=%s start=%lld end=%lld retry_after=%ld\n", j->host, (long long)start,
		       (long long)end, retry_after);
	} else {
		printf("ari-failed host=%s err=%s\n", j->host, err);
		j->t->failed++;
	}
	fflush(stdout);
	job_after_ari(j);
}

static void write_file(const char *dir, const char *host, const char *ext, const char *data)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.%s", dir, host, ext);
	f = fopen(path, "w");
	if (!f)
		return;
	fputs(data, f);
	fclose(f);
}

static void cb_done(void *arg, const char *host, const struct acme_result *res)
{
	struct job *j = arg;
	struct tool *t = j->t;
	struct crypto_cert_info ci;
	char err[256], top[256] = "?";

	if (!res->ok) {
		printf("%s host=%s status=%ld type=%s retry_after=%ld detail=%s%s%s\n",
		       j->renewed ? "renew-failed" : "failed", host, res->problem.status, res->problem.type ? res->problem.type : "-",
		       res->problem.retry_after, res->problem.detail ? res->problem.detail : "",
		       res->problem.subproblems ? " subproblems=" : "",
		       res->problem.subproblems ? res->problem.subproblems : "");
		t->failed++;
		fflush(stdout);
		job_end(j);
		return;
	}
	if (crypto_cert_info(res->cert_pem, strlen(res->cert_pem), &ci, err, sizeof(err)) < 0) {
		printf("failed host=%s detail=issued certificate unreadable: %s\n", host, err);
		t->failed++;
		fflush(stdout);
		job_end(j);
		return;
	}
	crypto_chain_top_issuer_cn(res->cert_pem, strlen(res->cert_pem), top, sizeof(top));
	printf("%s host=%s subject=%s issuer=%s top_issuer=%s pubkey=%s not_before=%lld not_after=%lld"
	       " lifetime_s=%lld order=%s\n", j->renewed ? "renewed" : "issued", host, ci.subject_cn,
	       ci.issuer_cn, top, ci.pubkey_type, (long long)ci.not_before, (long long)ci.not_after,
	       (long long)(ci.not_after - ci.not_before),
	       res->order_url ? res->order_url : "-");
	fflush(stdout);
	snprintf(j->ari_id, sizeof(j->ari_id), "%s", ci.ari_cert_id);
	crypto_cert_info_clear(&ci);
	free(j->cert);
	j->cert = strdup(res->cert_pem);
	if (j->renewed) {
		job_after_ari(j);
		return;
	}
	t->ok++;
	if (t->out_dir) {
		write_file(t->out_dir, host, "crt", res->cert_pem);
		write_file(t->out_dir, host, "key", res->key_pem);
	}
	if (t->ari && j->cert && acme_renewal_info(t->acme, j->cert, cb_ari, j) == 0)
		return;
	job_after_ari(j);
}

static void cb_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct tool *t = w->data;

	printf("timeout: %d order(s) still running\n", t->pending);
	t->failed += t->pending;
	ev_break(loop, EVBREAK_ALL);
}

static int parse_key(const char *s, struct acme_conf *conf)
{
	static const struct { const char *name; enum crypto_key_type type; int bits; } keys[] = {
		{ "ec256", CRYPTO_KEY_EC_P256, 0 }, { "ec384", CRYPTO_KEY_EC_P384, 0 },
		{ "rsa2048", CRYPTO_KEY_RSA, 2048 }, { "rsa3072", CRYPTO_KEY_RSA, 3072 },
		{ "rsa4096", CRYPTO_KEY_RSA, 4096 },
	};
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (!strcmp(s, keys[i].name)) {
			conf->cert_key_type = keys[i].type;
			conf->rsa_bits = keys[i].bits;
			return 0;
		}
	}
	return -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: acme_issue --directory URL --ca-file F --host H --challtestsrv URL\n"
		"  [--key ec256|ec384|rsa2048|rsa3072|rsa4096] [--count N] [--eab-kid K --eab-hmac H]\n"
		"  [--preferred-chain CN] [--profile P] [--ari] [--renew] [--revoke] [--no-tos] [--email E]\n"
		"  [--out DIR] [--timeout S] [-v]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "directory", required_argument, NULL, 'd' }, { "ca-file", required_argument, NULL, 'c' },
		{ "host", required_argument, NULL, 'H' }, { "key", required_argument, NULL, 'k' },
		{ "count", required_argument, NULL, 'n' }, { "eab-kid", required_argument, NULL, 'K' },
		{ "eab-hmac", required_argument, NULL, 'M' }, { "preferred-chain", required_argument, NULL, 'p' },
		{ "profile", required_argument, NULL, 'P' }, { "ari", no_argument, NULL, 'a' },
		{ "revoke", no_argument, NULL, 'r' }, { "renew", no_argument, NULL, 'R' }, { "no-tos", no_argument, NULL, 'T' },
		{ "email", required_argument, NULL, 'e' }, { "out", required_argument, NULL, 'o' },
		{ "timeout", required_argument, NULL, 't' }, { "challtestsrv", required_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' }, { NULL, 0, NULL, 0 },
	};
	struct acme_conf conf = { .tos_accepted = 1, .email = "admin@acme-spoa.test",
				  .cert_key_type = CRYPTO_KEY_EC_P256 };
	struct acme_hooks hooks = { .challenge_set = hook_set, .challenge_clear = hook_clear };
	struct tool t = { 0 };
	const char *host = NULL;
	int count = 1, timeout = 300, ch, i;
	EVP_PKEY *account_key;
	char err[512];

	while ((ch = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': conf.directory_url = optarg; break;
		case 'c': conf.ca_file = optarg; break;
		case 'H': host = optarg; break;
		case 'k':
			if (parse_key(optarg, &conf) < 0) {
				usage();
				return 2;
			}
			break;
		case 'n': count = atoi(optarg); break;
		case 'K': conf.eab_kid = optarg; break;
		case 'M': conf.eab_hmac_key = optarg; break;
		case 'p': conf.preferred_chain = optarg; break;
		case 'P': conf.profile = optarg; break;
		case 'a': t.ari = 1; break;
		case 'r': t.revoke = 1; break;
		case 'R': t.renew = 1; break;
		case 'T': conf.tos_accepted = 0; break;
		case 'e': conf.email = optarg; break;
		case 'o': t.out_dir = optarg; break;
		case 't': timeout = atoi(optarg); break;
		case 'C': t.challtestsrv = optarg; break;
		case 'v': log_level_max = LOG_LVL_DEBUG; break;
		default: usage(); return 2;
		}
	}
	if (!conf.directory_url || !host || !t.challtestsrv || count < 1 || count > 1000) {
		usage();
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	t.loop = EV_DEFAULT;
	account_key = crypto_key_generate(CRYPTO_KEY_EC_P256, 0, err, sizeof(err));
	if (!account_key) {
		fprintf(stderr, "acme_issue: %s\n", err);
		return 1;
	}
	t.acme = acme_client_new(t.loop, &conf, account_key, &hooks, &t, err, sizeof(err));
	if (!t.acme) {
		fprintf(stderr, "acme_issue: %s\n", err);
		return 1;
	}
	for (i = 0; i < count; i++) {
		struct job *j = calloc(1, sizeof(*j));

		if (!j)
			return 1;
		j->t = &t;
		if (i == 0)
			snprintf(j->host, sizeof(j->host), "%s", host);
		else
			snprintf(j->host, sizeof(j->host), "%d.%s", i, host);
		if (acme_order_start(t.acme, j->host, NULL, cb_done, j) < 0) {
			printf("failed host=%s detail=could not start\n", j->host);
			free(j);
			t.failed++;
			continue;
		}
		t.pending++;
	}
	ev_timer_init(&t.deadline, cb_deadline, timeout, 0.);
	t.deadline.data = &t;
	ev_timer_start(t.loop, &t.deadline);
	if (t.pending)
		ev_run(t.loop, 0);
	ev_timer_stop(t.loop, &t.deadline);
	acme_client_free(t.acme);
	crypto_async_shutdown();
	curl_global_cleanup();
	printf("summary ok=%d failed=%d\n", t.ok, t.failed);
	return t.failed == 0 && t.ok == count ? 0 : 1;
}
