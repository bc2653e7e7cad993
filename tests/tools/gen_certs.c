/* SPDX-License-Identifier: Apache-2.0 */
/* gen_certs: writes many test certificates into acme-spoa storage, fast
 * (in-process OpenSSL, one test CA, EC P-256 leaves), for the benchmarks.
 *
 *   gen_certs --store file:/DIR|redis:HOST:PORT[:NS] [--count N] [--start I]
 *             [--domain bench.test] [--name HOST]... [--cert-dir DIR]
 *             [--ca-out FILE] [--days D | --hours H] [--no-meta] [--shared-key]
 *             [--window N] [--publish] [--version]
 *
 * Each certificate is for host<i>.<domain> (i from --start, --count of them)
 * or for every --name given; it is stored as "certs/<host>" holding leaf PEM,
 * CA PEM, then the leaf's private key PEM (the agent's bundle layout), then
 * its metadata record "meta/<host>" (certstore_meta_encode(); not with
 * --no-meta: a store as older versions wrote it), and once stored it is
 * recorded in the change feed "certs" (member <host>,
 * version: the leaf's serial as crypto_cert_info() writes it; a no-op on file
 * storage), as the agent does; with --publish it is also announced on the
 * "certs" channel, as the agent does too (running agents then read it at
 * once rather than at their next reconcile). Serials are random, so a certificate written
 * again for a host always has a new version. Up to GEN_WINDOW hosts are in
 * flight at once (--window, 64 by default: more hides the store's round
 * trips when filling a million). --hours makes certificates expire H hours
 * from now instead of D days (valid from an hour ago either way):
 * short-lived ones, due at once. --shared-key gives every leaf one key
 * made at start: a key pair per leaf is most of the CPU, and a benchmark's
 * store needs distinct certificates, not distinct keys. With --cert-dir the
 * same bundle is also written to DIR/<host>.pem (0600), the layout HAProxy
 * loads with "crt DIR". --version prints GEN_VERSION, bumped whenever what is
 * written changes (tests/bench/fleet1m.sh keys its cached Redis dump by it).
 * Exits 0 only when all were written. For more than one CPU, run one process
 * per range (--start, --count): each then has its own CA. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "acme/crypto.h"
#include "core/certstore.h"
#include "storage/storage.h"
#include "tests/tools/store_spec.h"

#define GEN_WINDOW 64	/* hosts being stored at once, by default */
#define GEN_VERSION 2	/* the layout and content of what is written */

struct gen {
	EVP_PKEY *ca_key;
	X509 *ca;
	char *ca_pem;
	size_t ca_len;
	long days;
	long hours;		/* --hours: the validity in hours instead of days */
	int no_meta;		/* --no-meta */
	EVP_PKEY *leaf_key;	/* --shared-key: every leaf's key */
	char *leaf_key_pem;	/* and its PEM */
	size_t leaf_key_len;
	size_t window;		/* --window */
	int publish;		/* --publish */
	struct storage *st;
	size_t inflight;	/* hosts whose put or feed_put is under way */
	int failed;
};

/* One host on its way into storage: put, meta put, then feed_put. */
struct gen_host {
	struct gen *g;
	char host[256];
	char serial[130];
	char *meta;		/* its "meta/<host>" record, NULL once written */
	size_t meta_len;
};

static double gen_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int gen_add_ext(X509 *crt, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int rc;

	X509V3_set_ctx(&ctx, issuer, crt, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	rc = X509_add_ext(crt, ext, -1) == 1 ? 0 : -1;
	X509_EXTENSION_free(ext);
	return rc;
}

/* A random positive serial of up to 127 bits, as CAs do (RFC 5280 4.1.2.2). */
static int gen_serial(X509 *crt)
{
	BIGNUM *bn = BN_new();
	int rc = -1;

	if (bn && BN_rand(bn, 127, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1 &&
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt)) != NULL)
		rc = 0;
	BN_free(bn);
	return rc;
}

/* A certificate for <cn> with <key>: self-signed CA when <is_ca>, else a
 * server leaf signed by the CA in <g>. Returns it (caller frees) or NULL. */
static X509 *gen_cert(struct gen *g, const char *cn, EVP_PKEY *key, int is_ca)
{
	X509 *crt = X509_new(), *issuer = g->ca;
	EVP_PKEY *sign_key = is_ca ? key : g->ca_key;
	X509_NAME *name = NULL;
	char san[400];
	int ok = 0;

	if (!crt)
		return NULL;
	if (X509_set_version(crt, 2) != 1 ||
	    gen_serial(crt) == -1 ||
	    !X509_gmtime_adj(X509_getm_notBefore(crt), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(crt), g->hours ? g->hours * 3600L : g->days * 86400L) ||
	    X509_set_pubkey(crt, key) != 1)
		goto out;
	name = X509_NAME_new();
	if (!name || X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
						(const unsigned char *)cn, -1, -1, 0) != 1)
		goto out;
	if (X509_set_subject_name(crt, name) != 1)
		goto out;
	if (X509_set_issuer_name(crt, is_ca ? name : X509_get_subject_name(issuer)) != 1)
		goto out;
	if (is_ca) {
		if (gen_add_ext(crt, crt, NID_basic_constraints, "critical,CA:TRUE") == -1 ||
		    gen_add_ext(crt, crt, NID_key_usage, "critical,keyCertSign,cRLSign") == -1 ||
		    gen_add_ext(crt, crt, NID_subject_key_identifier, "hash") == -1)
			goto out;
	} else {
		snprintf(san, sizeof(san), "DNS:%s", cn);
		if (gen_add_ext(crt, issuer, NID_basic_constraints, "critical,CA:FALSE") == -1 ||
		    gen_add_ext(crt, issuer, NID_key_usage, "critical,digitalSignature") == -1 ||
		    gen_add_ext(crt, issuer, NID_ext_key_usage, "serverAuth") == -1 ||
		    gen_add_ext(crt, issuer, NID_authority_key_identifier, "keyid") == -1 ||
		    gen_add_ext(crt, issuer, NID_subject_alt_name, san) == -1)
			goto out;
	}
	if (X509_sign(crt, sign_key, EVP_sha256()) <= 0)
		goto out;
	ok = 1;
out:
	X509_NAME_free(name);
	if (!ok) {
		X509_free(crt);
		crt = NULL;
	}
	return crt;
}

/* Appends the PEM of <crt> and/or <key> to the memory BIO <b>. */
static int gen_pem(BIO *b, X509 *crt, EVP_PKEY *key)
{
	if (crt && PEM_write_bio_X509(b, crt) != 1)
		return -1;
	if (key && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) != 1)
		return -1;
	return 0;
}

static int gen_write_file(const char *dir, const char *host, const char *buf, size_t len)
{
	char path[4096];
	ssize_t w;
	size_t off = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%s.pem", dir, host);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1) {
		fprintf(stderr, "gen_certs: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (off < len) {
		w = write(fd, buf + off, len - off);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "gen_certs: %s: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
		off += (size_t)w;
	}
	return close(fd);
}

static int gen_init_ca(struct gen *g, const char *ca_out)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL;
	long n;

	g->ca_key = EVP_EC_gen("P-256");
	if (!b || !g->ca_key)
		goto fail;
	g->ca = gen_cert(g, "acme-spoa bench CA", g->ca_key, 1);
	if (!g->ca || gen_pem(b, g->ca, NULL) == -1)
		goto fail;
	n = BIO_get_mem_data(b, &p);
	g->ca_pem = malloc((size_t)n + 1);
	if (!g->ca_pem)
		goto fail;
	memcpy(g->ca_pem, p, (size_t)n);
	g->ca_pem[n] = '\0';
	g->ca_len = (size_t)n;
	BIO_free(b);
	if (ca_out) {
		FILE *f = fopen(ca_out, "w");

		if (!f || fwrite(g->ca_pem, 1, g->ca_len, f) != g->ca_len) {
			if (f)
				fclose(f);
			fprintf(stderr, "gen_certs: cannot write %s\n", ca_out);
			return -1;
		}
		fclose(f);
	}
	return 0;
fail:
	BIO_free(b);
	ERR_print_errors_fp(stderr);
	return -1;
}

/* --shared-key: the one leaf key and its PEM. */
static int gen_init_leaf_key(struct gen *g)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL;
	long n;
	int rc = -1;

	g->leaf_key = EVP_EC_gen("P-256");
	if (!b || !g->leaf_key || gen_pem(b, NULL, g->leaf_key) == -1)
		goto out;
	n = BIO_get_mem_data(b, &p);
	g->leaf_key_pem = malloc((size_t)n);
	if (!g->leaf_key_pem)
		goto out;
	memcpy(g->leaf_key_pem, p, (size_t)n);
	g->leaf_key_len = (size_t)n;
	rc = 0;
out:
	if (rc == -1)
		ERR_print_errors_fp(stderr);
	BIO_free(b);
	return rc;
}

static void cb_gen_done(void *arg, struct storage_res *res)
{
	struct gen_host *h = arg;

	if (res->rc != 0) {
		fprintf(stderr, "gen_certs: host=%s %s\n", h->host, res->err);
		h->g->failed = 1;
	}
	h->g->inflight--;
	free(h->meta);
	free(h);
}

/* Recorded in the change feed: with --publish, announced on the channel
 * as the agent does (the fleet's nodes then read it at once, instead of at
 * their next reconcile of the feed). */
static void cb_gen_feed(void *arg, struct storage_res *res)
{
	struct gen_host *h = arg;

	if (res->rc == 0 && h->g->publish &&
	    storage_publish(h->g->st, CERTSTORE_CHANNEL, h->host, strlen(h->host), cb_gen_done, h))
		return;
	cb_gen_done(arg, res);
}

/* The bundle is stored: its metadata record, then its version in the change
 * feed. */
static void cb_gen_put(void *arg, struct storage_res *res)
{
	struct gen_host *h = arg;
	struct gen *g = h->g;
	char key[STORAGE_KEY_MAX];

	if (res->rc == 0 && h->meta) {
		snprintf(key, sizeof(key), CERTSTORE_META_PREFIX "%s", h->host);
		if (storage_put(g->st, key, h->meta, h->meta_len, 0, cb_gen_put, h)) {
			free(h->meta);
			h->meta = NULL;
			return;
		}
	}
	if (res->rc == 0 && !h->meta && storage_feed_put(g->st, "certs", h->host, h->serial, cb_gen_feed, h))
		return;
	fprintf(stderr, "gen_certs: host=%s %s\n", h->host, res->rc ? res->err : "out of memory");
	g->failed = 1;
	g->inflight--;
	free(h->meta);
	free(h);
}

/* Starts storing bundle <pem>/<len> of <host> in g->st (the bytes are copied). */
static int gen_store(struct gen *g, const char *host, const char *pem, size_t len)
{
	struct crypto_cert_info info;
	struct gen_host *h = NULL;
	char key_name[STORAGE_KEY_MAX], err[512];

	if (crypto_cert_info(pem, len, &info, err, sizeof(err)) == -1) {
		fprintf(stderr, "gen_certs: host=%s %s\n", host, err);
		return -1;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		goto fail;
	h->g = g;
	snprintf(h->host, sizeof(h->host), "%s", host);
	snprintf(h->serial, sizeof(h->serial), "%s", info.serial_hex);
	if (!g->no_meta) {
		struct certstore_info ri = {
			.not_before = info.not_before, .not_after = info.not_after,
			.serial_hex = info.serial_hex, .digest_sha1 = info.digest_sha1,
			.issuer_cn = info.issuer_cn, .pubkey_type = info.pubkey_type,
			.ari_cert_id = info.ari_cert_id,
		};

		h->meta = certstore_meta_encode(host, &ri, &h->meta_len);
		if (!h->meta)
			goto fail;
	}
	crypto_cert_info_clear(&info);
	snprintf(key_name, sizeof(key_name), "certs/%s", host);
	if (!storage_put(g->st, key_name, pem, len, 0, cb_gen_put, h))
		goto fail;
	g->inflight++;
	return 0;
fail:
	crypto_cert_info_clear(&info);
	if (h)
		free(h->meta);
	free(h);
	fprintf(stderr, "gen_certs: host=%s out of memory\n", host);
	return -1;
}

/* Runs the storage's loop until fewer than <max> hosts are in flight; one
 * turn without waiting in any case, so that replies (and the connection's
 * own handshake, which has a timeout) are read while a wide window fills. */
static void gen_wait(struct gen *g, size_t max)
{
	ev_run(EV_DEFAULT, EVRUN_NOWAIT);
	while (g->inflight > max)
		ev_run(EV_DEFAULT, EVRUN_ONCE);
}

/* One certificate for <host>: generated, stored, optionally written out. */
static int gen_one(struct gen *g, const char *cert_dir, const char *host)
{
	EVP_PKEY *key = g->leaf_key ? NULL : EVP_EC_gen("P-256");
	X509 *crt = NULL;
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL;
	long n;
	int rc = -1;

	if ((!key && !g->leaf_key) || !b)
		goto out;
	crt = gen_cert(g, host, key ? key : g->leaf_key, 0);
	if (!crt || gen_pem(b, crt, NULL) == -1 || BIO_write(b, g->ca_pem, (int)g->ca_len) <= 0)
		goto out;
	if (key ? gen_pem(b, NULL, key) == -1 : BIO_write(b, g->leaf_key_pem, (int)g->leaf_key_len) <= 0)
		goto out;
	n = BIO_get_mem_data(b, &p);
	if (g->st) {
		gen_wait(g, g->window - 1);
		if (g->failed || gen_store(g, host, p, (size_t)n) == -1)
			goto out;
	}
	if (cert_dir && gen_write_file(cert_dir, host, p, (size_t)n) == -1)
		goto out;
	rc = 0;
out:
	if (rc == -1)
		ERR_print_errors_fp(stderr);
	BIO_free(b);
	X509_free(crt);
	EVP_PKEY_free(key);
	return rc;
}

static struct storage *gen_open_store(const char *spec)
{
	char err[512];
	struct storage *st;

	if (strncmp(spec, "file:", 5) != 0 && strncmp(spec, "redis:", 6) != 0) {
		fprintf(stderr, "gen_certs: --store must be file:/DIR or redis:HOST:PORT[:NS]\n");
		return NULL;
	}
	st = store_spec_open(spec, err, sizeof(err));
	if (!st)
		fprintf(stderr, "gen_certs: %s\n", err);
	return st;
}

static void gen_usage(void)
{
	fprintf(stderr, "usage: gen_certs [--store file:/DIR|redis:HOST:PORT[:NS]] [--count N] "
		"[--start I] [--domain D] [--name HOST]... [--cert-dir DIR] [--ca-out FILE] "
		"[--days D | --hours H] [--no-meta] [--shared-key] [--window N] [--publish] [--version]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "count", required_argument, NULL, 'n' },
		{ "start", required_argument, NULL, 'i' },
		{ "domain", required_argument, NULL, 'd' },
		{ "name", required_argument, NULL, 'N' },
		{ "cert-dir", required_argument, NULL, 'c' },
		{ "ca-out", required_argument, NULL, 'a' },
		{ "days", required_argument, NULL, 'D' },
		{ "hours", required_argument, NULL, 'H' },
		{ "no-meta", no_argument, NULL, 'M' },
		{ "shared-key", no_argument, NULL, 'K' },
		{ "window", required_argument, NULL, 'w' },
		{ "publish", no_argument, NULL, 'P' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct gen g = { .days = 90, .window = GEN_WINDOW };
	const char *store = NULL, *cert_dir = NULL, *ca_out = NULL, *domain = "bench.test";
	const char **names = NULL;
	size_t nnames = 0;
	long count = 0, start = 0, i;
	double t0;
	long window = GEN_WINDOW;
	int c, rc = 1, shared_key = 0;

	names = calloc((size_t)argc, sizeof(*names));
	if (!names)
		return 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': store = optarg; break;
		case 'n': count = atol(optarg); break;
		case 'i': start = atol(optarg); break;
		case 'd': domain = optarg; break;
		case 'N': names[nnames++] = optarg; break;
		case 'c': cert_dir = optarg; break;
		case 'a': ca_out = optarg; break;
		case 'D': g.days = atol(optarg); break;
		case 'H': g.hours = atol(optarg); if (g.hours <= 0) g.hours = -1; break;
		case 'M': g.no_meta = 1; break;
		case 'K': shared_key = 1; break;
		case 'P': g.publish = 1; break;
		case 'w': window = atol(optarg); break;
		case 'V': printf("gen_certs %d\n", GEN_VERSION); free(names); return 0;
		default: gen_usage(); free(names); return 2;
		}
	}
	if ((!store && !cert_dir) || (count <= 0 && nnames == 0) || count < 0 || g.days <= 0 || g.hours < 0 ||
	    window < 1 || window > 100000) {
		gen_usage();
		free(names);
		return 2;
	}
	g.window = (size_t)window;
	t0 = gen_now();
	if (store) {
		g.st = gen_open_store(store);
		if (!g.st)
			goto out;
	}
	if (gen_init_ca(&g, ca_out) == -1 || (shared_key && gen_init_leaf_key(&g) == -1))
		goto out;
	for (i = 0; i < (long)nnames; i++)
		if (gen_one(&g, cert_dir, names[i]) == -1)
			goto out;
	for (i = start; i < start + count; i++) {
		char host[300];

		snprintf(host, sizeof(host), "host%ld.%s", i, domain);
		if (gen_one(&g, cert_dir, host) == -1)
			goto out;
	}
	gen_wait(&g, 0);
	if (g.failed)
		goto out;
	fprintf(stderr, "gen_certs: %ld certificates in %.2f s\n", count + (long)nnames,
		gen_now() - t0);
	rc = 0;
out:
	gen_wait(&g, 0);	/* what was started finishes (or times out) */
	storage_close(g.st);
	X509_free(g.ca);
	EVP_PKEY_free(g.ca_key);
	free(g.ca_pem);
	EVP_PKEY_free(g.leaf_key);
	free(g.leaf_key_pem);
	free(names);
	return rc;
}
