/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the import readers' pure parts (core/import_crt.c): certbot's
 * JWK account keys (RFC 7515 A.3 P-256 key; an RSA key exported by OpenSSL
 * itself), and how a crt-list line and HAProxy's side files become bundles
 * and names. The readers against real tools' storage: test_import.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "acme/crypto.h"
#include "acme/jws.h"
#include "core/config.h"
#include "core/import_int.h"

/* RFC 7515 Appendix A.3 P-256 key */
static const char a3_x[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
static const char a3_y[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
static const char a3_d[] = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";

static void test_jwk_ec(void **state)
{
	char json[512], err[256], *pem;
	size_t len = 0;
	EVP_PKEY *pk;
	json_t *jwk;

	snprintf(json, sizeof(json), "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\",\"d\":\"%s\"}",
		 a3_x, a3_y, a3_d);
	pem = imp_jwk_to_pem(json, strlen(json), &len, err, sizeof(err));
	assert_non_null(pem);
	pk = crypto_key_from_pem(pem, len, err, sizeof(err));
	assert_non_null(pk);
	/* its public half is the JWK's point */
	jwk = jws_jwk(pk);
	assert_non_null(jwk);
	assert_string_equal(json_string_value(json_object_get(jwk, "x")), a3_x);
	assert_string_equal(json_string_value(json_object_get(jwk, "y")), a3_y);
	assert_string_equal(jws_alg(pk), "ES256");
	json_decref(jwk);
	EVP_PKEY_free(pk);
	crypto_secret_free(pem, len);
}

static char *t_bn_b64url(EVP_PKEY *pk, const char *param)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1024];
	int n;
	char *s;

	assert_int_equal(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
	n = BN_bn2bin(bn, buf);
	s = crypto_b64url(buf, (size_t)n);
	BN_clear_free(bn);
	return s;
}

static void test_jwk_rsa(void **state)
{
	static const char *const names[] = { "n", "e", "d", "p", "q", "dp", "dq", "qi" };
	static const char *const params[] = {
		OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
		OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2,
		OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
		OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	char err[256], *pem, *text;
	EVP_PKEY *orig = crypto_key_generate(CRYPTO_KEY_RSA, 2048, err, sizeof(err)), *pk;
	json_t *jwk = json_object();
	size_t i, len = 0;

	assert_non_null(orig);
	json_object_set_new(jwk, "kty", json_string("RSA"));
	for (i = 0; i < 8; i++) {
		char *v = t_bn_b64url(orig, params[i]);

		json_object_set_new(jwk, names[i], json_string(v));
		free(v);
	}
	text = json_dumps(jwk, 0);
	pem = imp_jwk_to_pem(text, strlen(text), &len, err, sizeof(err));
	assert_non_null(pem);
	pk = crypto_key_from_pem(pem, len, err, sizeof(err));
	assert_non_null(pk);
	assert_int_equal(EVP_PKEY_eq(pk, orig), 1);
	/* without a CRT parameter it is refused, naming it */
	json_object_del(jwk, "qi");
	free(text);
	text = json_dumps(jwk, 0);
	assert_null(imp_jwk_to_pem(text, strlen(text), &len, err, sizeof(err)));
	assert_non_null(strstr(err, "\"qi\""));
	free(text);
	json_decref(jwk);
	EVP_PKEY_free(pk);
	EVP_PKEY_free(orig);
	crypto_secret_free(pem, len);
}

static void test_jwk_bad(void **state)
{
	static const char *const bad[] = {
		"not json", "{}", "{\"kty\":\"oct\",\"k\":\"AAAA\"}",
		"{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\",\"y\":\"AA\",\"d\":\"AA\"}",
		"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\"}",
		/* a point that is not on the curve */
		"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AQ\",\"y\":\"AQ\",\"d\":\"AQ\"}",
	};
	char err[256];
	size_t i, len;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_null(imp_jwk_to_pem(bad[i], strlen(bad[i]), &len, err, sizeof(err)));
		assert_true(err[0] != '\0');
	}
}

/* ---- crt-list, crt-dir -------------------------------------------------- */

static char tdir[64];

static void t_write(const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tdir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void t_set_free(struct imp_set *s)
{
	size_t i;

	for (i = 0; i < s->ncands; i++) {
		free(s->cands[i].origin);
		crypto_secret_free(s->cands[i].pem, s->cands[i].len);
		free(s->cands[i].name);
	}
	for (i = 0; i < s->nrefs; i++) {
		free(s->refs[i].origin);
		free(s->refs[i].reason);
	}
	free(s->cands);
	free(s->refs);
	memset(s, 0, sizeof(*s));
}

#define CERT "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
#define KEY "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n"

static int t_setup(void **state)
{
	snprintf(tdir, sizeof(tdir), "/tmp/test_import.XXXXXX");
	return mkdtemp(tdir) ? 0 : -1;
}

static int t_teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_crt_list(void **state)
{
	struct imp_set s = { 0 };
	char list[256], err[256];

	t_write("one.pem", CERT KEY);
	t_write("two.pem", CERT);
	t_write("two.pem.key", KEY);
	t_write("three.crt", CERT);
	t_write("three.key", KEY);
	t_write("list.txt",
		"# comment\n"
		"\n"
		"one.pem [alpn h2 ocsp-update off] www.example.com !bad.example.com\n"
		"two.pem !skip.example.com *.apps.example.com\n"
		"  three.crt\n"
		"missing.pem site.example.com\n"
		"one.pem [unterminated a.example.com\n");
	snprintf(list, sizeof(list), "%s/list.txt", tdir);
	assert_int_equal(imp_read_crt_list(&s, list, err, sizeof(err)), 0);
	assert_int_equal(s.ncands, 3);
	/* the first positive SNI filter names it; options are skipped */
	assert_string_equal(s.cands[0].name, "www.example.com");
	assert_non_null(strstr(s.cands[0].pem, "PRIVATE KEY"));
	/* "<file>.key" completes a PEM without a key */
	assert_string_equal(s.cands[1].name, "*.apps.example.com");
	assert_non_null(strstr(s.cands[1].pem, "BBBB"));
	/* "<stem>.key" for a ".crt"; no filter and a stem that is no host name */
	assert_null(s.cands[2].name);
	assert_non_null(strstr(s.cands[2].pem, "BBBB"));
	/* what cannot be read is a refusal naming the file or line */
	assert_int_equal(s.nrefs, 2);
	assert_non_null(strstr(s.refs[0].origin, "missing.pem"));
	assert_non_null(strstr(s.refs[1].reason, "unterminated"));
	t_set_free(&s);
	/* a missing list is an error, not an empty import */
	snprintf(list, sizeof(list), "%s/nope.txt", tdir);
	assert_int_equal(imp_read_crt_list(&s, list, err, sizeof(err)), -1);
	t_set_free(&s);
}

static void test_crt_dir(void **state)
{
	struct imp_set s = { 0 };
	char err[256];
	size_t i;
	int seen_wild = 0, seen_nokey = 0;

	t_write("_wildcard_.zone.example.pem", CERT KEY);
	t_write("nokey.example.pem", CERT);
	t_write("lone.example.pem", CERT);
	t_write("lone.example.pem.key", KEY);
	t_write("lone.example.pem.issuer", "-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n");
	t_write("lone.example.pem.ocsp", "not a certificate");
	t_write(".hidden.pem", CERT KEY);
	assert_int_equal(imp_read_crt_dir(&s, tdir, err, sizeof(err)), 0);
	for (i = 0; i < s.ncands; i++) {
		if (s.cands[i].name && !strcmp(s.cands[i].name, "*.zone.example"))
			seen_wild = 1;
		if (s.cands[i].name && !strcmp(s.cands[i].name, "lone.example"))
			/* leaf, then its .issuer, then the .key */
			assert_true(strstr(s.cands[i].pem, "AAAA") < strstr(s.cands[i].pem, "CCCC") &&
				    strstr(s.cands[i].pem, "CCCC") < strstr(s.cands[i].pem, "BBBB"));
		assert_null(strstr(s.cands[i].origin, ".hidden"));
		assert_null(strstr(s.cands[i].origin, ".ocsp"));
	}
	for (i = 0; i < s.nrefs; i++)
		if (strstr(s.refs[i].origin, "nokey.example.pem") && strstr(s.refs[i].reason, "no private key"))
			seen_nokey = 1;
	assert_true(seen_wild);
	assert_true(seen_nokey);
	t_set_free(&s);
}

/* lego --no-bundle: the .crt holds the leaf alone, <domain>.issuer.crt the
 * chain; the name comes from <domain>.json ('*' is '_' in file names) */
static void test_lego_no_bundle(void **state)
{
	struct imp_set s = { .api_uri = "https://127.0.0.1:14000/dir" };
	char err[256], sub[128];

	snprintf(sub, sizeof(sub), "%s/certificates", tdir);
	assert_int_equal(mkdir(sub, 0700), 0);
	t_write("certificates/_.zone.example.crt", CERT);
	t_write("certificates/_.zone.example.issuer.crt", "-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n");
	t_write("certificates/_.zone.example.key", KEY);
	t_write("certificates/_.zone.example.json", "{\"domain\":\"*.zone.example\"}");
	assert_int_equal(imp_read_lego(&s, tdir, err, sizeof(err)), 0);
	assert_int_equal(s.ncands, 1);
	assert_string_equal(s.cands[0].name, "*.zone.example");
	assert_true(strstr(s.cands[0].pem, "AAAA") < strstr(s.cands[0].pem, "CCCC"));
	assert_non_null(strstr(s.cands[0].pem, "BBBB"));
	t_set_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jwk_ec),
		cmocka_unit_test(test_jwk_rsa),
		cmocka_unit_test(test_jwk_bad),
		cmocka_unit_test_setup_teardown(test_crt_list, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_crt_dir, t_setup, t_teardown),
		cmocka_unit_test_setup_teardown(test_lego_no_bundle, t_setup, t_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
