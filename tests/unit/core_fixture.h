/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the core/ unit tests (test_certstore, test_jobs, test_renew): a
 * real libev loop, shm storage, a config over a temp dir (cert_dir, a runtime
 * socket nobody listens on), self-signed certificates with chosen dates, and
 * running the loop until a condition holds. Include after cmocka.h. */
#ifndef TESTS_CORE_FIXTURE_H
#define TESTS_CORE_FIXTURE_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/config.h"
#include "core/health.h"
#include "storage/storage.h"

struct fx {
	struct ev_loop *loop;
	char dir[64];			/* temp dir: certs/ and the runtime socket path */
	char cert_dir[96];
	struct config *cfg;
	struct storage *st;
	struct health health;
};

static inline int fx_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* Opens <f>: a config of <extra> JSON members (may be "") on top of shm
 * storage, cert_dir in a temp dir and a runtime socket nobody listens on;
 * <hap_extra> (may be "") adds members to the "haproxy" object. */
static inline void fx_open_hap(struct fx *f, const char *extra, const char *hap_extra)
{
	char json[4096], errs[4096] = "", err[256] = "";

	memset(f, 0, sizeof(*f));
	f->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(f->loop);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_core.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->cert_dir, sizeof(f->cert_dir), "%s/certs", f->dir);
	snprintf(json, sizeof(json),
		 "{\"account_email\":\"ops@example.com\",\"storage\":\"shm\","
		 "\"domains\":[\"*.example.com\"],"
		 "\"haproxy\":{\"cert_dir\":\"%s\",\"runtime\":[\"unix:%s/none.sock\"]%s%s}%s%s}",
		 f->cert_dir, f->dir, hap_extra[0] ? "," : "", hap_extra, extra[0] ? "," : "", extra);
	f->cfg = config_load_json(json, errs, sizeof(errs));
	if (!f->cfg)
		fail_msg("config: %s", errs);
	f->st = storage_open("shm", NULL, f->loop, err, sizeof(err));
	if (!f->st)
		fail_msg("storage: %s", err);
	health_init(&f->health);
}

static inline void fx_open(struct fx *f, const char *extra)
{
	fx_open_hap(f, extra, "");
}

static inline void fx_close(struct fx *f)
{
	storage_close(f->st);
	config_free(f->cfg);
	ev_loop_destroy(f->loop);
	nftw(f->dir, fx_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A self-signed EC certificate for <host> valid from <nb> to <na> with a
 * random serial, followed by its private key: the agent's bundle layout.
 * Returns malloc'd PEM (length in <len>). */
static inline char *fx_pem(const char *host, time_t nb, time_t na, size_t *len)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	unsigned char sn[16];
	BIGNUM *bn;
	BIO *b = BIO_new(BIO_s_mem());
	char san[300], *data, *out;
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	long n;

	assert_non_null(key);
	assert_non_null(x);
	RAND_bytes(sn, sizeof(sn));
	sn[0] &= 0x7f;
	sn[0] |= 0x10;
	bn = BN_bin2bn(sn, sizeof(sn), NULL);
	assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
	BN_free(bn);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), nb));
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), na));
	/* CN holds 64 bytes at most; a longer name is in the SAN only, as a CA does */
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
						    (const unsigned char *)(strlen(host) <= 64 ? host : "long name"),
						    -1, -1, 0), 1);
	assert_int_equal(X509_set_subject_name(x, name), 1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	assert_int_equal(X509_set_pubkey(x, key), 1);
	snprintf(san, sizeof(san), "DNS:%s", host);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	assert_int_equal(PEM_write_bio_X509(b, x), 1);
	assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), 1);
	n = BIO_get_mem_data(b, &data);
	out = malloc((size_t)n + 1);
	assert_non_null(out);
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	*len = (size_t)n;
	BIO_free(b);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(key);
	return out;
}

static inline void fx_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* Runs <f>'s loop until <cond>(<arg>) holds or <secs> pass; returns the
 * condition's last value. */
static inline int fx_run_until(struct fx *f, int (*cond)(void *), void *arg, double secs)
{
	ev_timer tick;
	ev_tstamp end;
	int ok;

	ev_now_update(f->loop);
	end = ev_now(f->loop) + secs;
	ev_timer_init(&tick, fx_tick, 0.01, 0.01);
	ev_timer_start(f->loop, &tick);
	while (!(ok = cond(arg)) && ev_now(f->loop) < end)
		ev_run(f->loop, EVRUN_ONCE);
	ev_timer_stop(f->loop, &tick);
	return ok;
}

static inline int fx_never(void *arg)
{
	return 0;
}

/* Runs <f>'s loop for <secs>. */
static inline void fx_run_for(struct fx *f, double secs)
{
	fx_run_until(f, fx_never, NULL, secs);
}

/* Stores <len> bytes of <val> under <key> and waits for it. */
static inline void fx_put(struct fx *f, const char *key, const char *val, size_t len)
{
	struct storage_res res;
	char err[256];

	assert_int_equal(storage_wait(f->st, storage_put(f->st, key, val, len, 0, NULL, NULL), &res,
				      err, sizeof(err)), 0);
	storage_res_clear(&res);
}

/* Deletes <key> and waits for it. */
static inline void fx_del(struct fx *f, const char *key)
{
	struct storage_res res;
	char err[256];

	assert_int_equal(storage_wait(f->st, storage_del(f->st, key, NULL, NULL), &res, err,
				      sizeof(err)), 0);
	storage_res_clear(&res);
}

#endif
