/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for acme/jws: JWK, RFC 7638 thumbprint, JWS signatures, EAB.
 * Every check recomputes the expected value with OpenSSL directly (not through
 * acme/crypto's base64url) so an error in the module cannot hide itself. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>

#include "acme/crypto.h"
#include "acme/jws.h"

/* RFC 7638 §3.1 example key */
static const char rfc7638_n[] =
	"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKR"
	"XjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAt"
	"aSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPk"
	"sINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
static const char rfc7638_thumbprint[] = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

/* RFC 7515 Appendix A.3 P-256 key */
static const char a3_x[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
static const char a3_y[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
static const char a3_d[] = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";

/* ---- independent base64url via OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock ---- */

static char *t_b64url(const unsigned char *d, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	size_t i;
	int len;

	assert_non_null(out);
	len = EVP_EncodeBlock((unsigned char *)out, d, (int)n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (i = 0; out[i]; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return out;
}

static unsigned char *t_unb64url(const char *s, size_t *outlen)
{
	size_t n = strlen(s), i, pad = (4 - n % 4) % 4;
	char *tmp = malloc(n + 4);
	unsigned char *out = malloc(n + 4);
	int len;

	assert_non_null(tmp);
	assert_non_null(out);
	for (i = 0; i < n; i++)
		tmp[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	for (i = 0; i < pad; i++)
		tmp[n + i] = '=';
	tmp[n + pad] = '\0';
	len = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)(n + pad));
	assert_true(len >= 0);
	*outlen = (size_t)len - pad;
	out[*outlen] = '\0';
	free(tmp);
	return out;
}

static char *t_sha256_b64url(const char *s)
{
	unsigned char md[32];

	assert_true(EVP_Digest(s, strlen(s), md, NULL, EVP_sha256(), NULL));
	return t_b64url(md, sizeof(md));
}

static EVP_PKEY *t_fromdata(const char *type, OSSL_PARAM_BLD *bld, int selection)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *key = NULL;

	assert_non_null(params);
	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &key, selection, params), 1);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return key;
}

static EVP_PKEY *t_rfc7638_key(void)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	size_t nlen;
	unsigned char *n = t_unb64url(rfc7638_n, &nlen);
	BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_new();
	EVP_PKEY *key;

	assert_int_equal(nlen, 256);
	assert_true(BN_set_word(be, 65537));
	assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn));
	assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be));
	key = t_fromdata("RSA", bld, EVP_PKEY_PUBLIC_KEY);
	BN_free(bn);
	BN_free(be);
	free(n);
	return key;
}

static EVP_PKEY *t_a3_key(void)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	unsigned char pub[65], *x, *y, *d;
	size_t xl, yl, dl;
	BIGNUM *bd;
	EVP_PKEY *key;
	EVP_PKEY_CTX *ctx;

	x = t_unb64url(a3_x, &xl);
	y = t_unb64url(a3_y, &yl);
	d = t_unb64url(a3_d, &dl);
	assert_int_equal(xl, 32);
	assert_int_equal(yl, 32);
	pub[0] = 4;
	memcpy(pub + 1, x, 32);
	memcpy(pub + 33, y, 32);
	bd = BN_bin2bn(d, (int)dl, NULL);
	assert_true(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0));
	assert_true(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)));
	assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bd));
	key = t_fromdata("EC", bld, EVP_PKEY_KEYPAIR);
	/* the public point must belong to the private scalar, or the fixture is wrong */
	ctx = EVP_PKEY_CTX_new(key, NULL);
	assert_int_equal(EVP_PKEY_pairwise_check(ctx), 1);
	EVP_PKEY_CTX_free(ctx);
	BN_free(bd);
	free(x);
	free(y);
	free(d);
	return key;
}

static EVP_PKEY *t_gen(enum crypto_key_type type, int bits)
{
	char err[256] = "";
	EVP_PKEY *key = crypto_key_generate(type, bits, err, sizeof(err));

	if (!key)
		fail_msg("keygen: %s", err);
	return key;
}

/* ---------------------------------------------------------------- tests */

static void test_rfc7638_thumbprint(void **state)
{
	EVP_PKEY *key = t_rfc7638_key();
	char *tp = jws_thumbprint(key);
	json_t *jwk = jws_jwk(key);

	(void)state;
	assert_string_equal(jws_alg(key), "RS256");
	assert_non_null(tp);
	assert_string_equal(tp, rfc7638_thumbprint);
	assert_non_null(jwk);
	assert_int_equal(json_object_size(jwk), 3);
	assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "RSA");
	assert_string_equal(json_string_value(json_object_get(jwk, "e")), "AQAB");
	assert_string_equal(json_string_value(json_object_get(jwk, "n")), rfc7638_n);
	json_decref(jwk);
	free(tp);
	EVP_PKEY_free(key);
}

/* Checks the EC JWK of <key> against the raw public point and the thumbprint
 * against a canonical form built here. */
static void t_check_ec_jwk(EVP_PKEY *key, const char *crv, size_t coord)
{
	unsigned char pub[1 + 2 * 66], *x, *y;
	size_t publen = 0, xl, yl;
	json_t *jwk = jws_jwk(key);
	char canon[512], *tp, *want;

	assert_non_null(jwk);
	assert_int_equal(json_object_size(jwk), 4);
	assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "EC");
	assert_string_equal(json_string_value(json_object_get(jwk, "crv")), crv);
	assert_int_equal(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &publen), 1);
	assert_int_equal(publen, 1 + 2 * coord);
	assert_int_equal(pub[0], 4);
	x = t_unb64url(json_string_value(json_object_get(jwk, "x")), &xl);
	y = t_unb64url(json_string_value(json_object_get(jwk, "y")), &yl);
	assert_int_equal(xl, coord);
	assert_int_equal(yl, coord);
	assert_memory_equal(x, pub + 1, coord);
	assert_memory_equal(y, pub + 1 + coord, coord);

	snprintf(canon, sizeof(canon), "{\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", crv,
		 json_string_value(json_object_get(jwk, "x")), json_string_value(json_object_get(jwk, "y")));
	want = t_sha256_b64url(canon);
	tp = jws_thumbprint(key);
	assert_non_null(tp);
	assert_string_equal(tp, want);
	free(tp);
	free(want);
	free(x);
	free(y);
	json_decref(jwk);
}

static void test_ec_jwk_fixed(void **state)
{
	EVP_PKEY *key = t_a3_key();
	json_t *jwk = jws_jwk(key);

	(void)state;
	assert_string_equal(jws_alg(key), "ES256");
	assert_string_equal(json_string_value(json_object_get(jwk, "x")), a3_x);
	assert_string_equal(json_string_value(json_object_get(jwk, "y")), a3_y);
	t_check_ec_jwk(key, "P-256", 32);
	json_decref(jwk);
	EVP_PKEY_free(key);
}

/* A coordinate with a leading zero byte must still be 32 (48) bytes long. */
static void test_ec_jwk_padding(void **state)
{
	static const struct { enum crypto_key_type type; const char *crv; size_t coord; } cases[] = {
		{ CRYPTO_KEY_EC_P256, "P-256", 32 },
		{ CRYPTO_KEY_EC_P384, "P-384", 48 },
	};
	size_t c;
	int i;

	(void)state;
	for (c = 0; c < 2; c++) {
		for (i = 0; i < 20000; i++) {
			EVP_PKEY *key = t_gen(cases[c].type, 0);
			BIGNUM *x = NULL;
			int short_x;

			assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
			short_x = (size_t)BN_num_bytes(x) < cases[c].coord;
			BN_free(x);
			if (short_x) {
				t_check_ec_jwk(key, cases[c].crv, cases[c].coord);
				EVP_PKEY_free(key);
				break;
			}
			EVP_PKEY_free(key);
		}
		assert_true(i < 20000);
	}
}

/* Parses the JWS text, checks the header and verifies the signature with OpenSSL. */
static json_t *t_verify_jws(const char *text, EVP_PKEY *key, const char *mdname, size_t ec_coord,
			    const char *alg, const char *url, const char *nonce, const char *kid,
			    const char *payload, int expect_valid)
{
	json_error_t jerr;
	json_t *jws = json_loads(text, 0, &jerr), *prot;
	const char *p64, *pl64, *s64;
	unsigned char *ptxt, *pl, *sig, *der = NULL;
	size_t plen, pllen, siglen;
	int derlen;
	char *input;
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();

	assert_non_null(jws);
	assert_int_equal(json_object_size(jws), 3);
	p64 = json_string_value(json_object_get(jws, "protected"));
	pl64 = json_string_value(json_object_get(jws, "payload"));
	s64 = json_string_value(json_object_get(jws, "signature"));
	assert_non_null(p64);
	assert_non_null(pl64);
	assert_non_null(s64);
	ptxt = t_unb64url(p64, &plen);
	prot = json_loads((const char *)ptxt, 0, &jerr);
	assert_non_null(prot);
	assert_string_equal(json_string_value(json_object_get(prot, "alg")), alg);
	assert_string_equal(json_string_value(json_object_get(prot, "url")), url);
	assert_string_equal(json_string_value(json_object_get(prot, "nonce")), nonce);
	if (kid) {
		assert_string_equal(json_string_value(json_object_get(prot, "kid")), kid);
		assert_null(json_object_get(prot, "jwk"));
		assert_int_equal(json_object_size(prot), 4);
	} else {
		json_t *want = jws_jwk(key);

		assert_null(json_object_get(prot, "kid"));
		assert_true(json_equal(json_object_get(prot, "jwk"), want));
		assert_int_equal(json_object_size(prot), 4);
		json_decref(want);
	}
	pl = t_unb64url(pl64, &pllen);
	assert_int_equal(pllen, strlen(payload));
	assert_memory_equal(pl, payload, pllen);
	if (!*payload)
		assert_string_equal(pl64, "");

	sig = t_unb64url(s64, &siglen);
	if (ec_coord) {
		ECDSA_SIG *es = ECDSA_SIG_new();
		BIGNUM *r, *s;

		/* JOSE form is fixed-width r||s: convert back to DER for OpenSSL */
		assert_int_equal(siglen, 2 * ec_coord);
		r = BN_bin2bn(sig, (int)ec_coord, NULL);
		s = BN_bin2bn(sig + ec_coord, (int)ec_coord, NULL);
		assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
		derlen = i2d_ECDSA_SIG(es, &der);
		assert_true(derlen > 0);
		ECDSA_SIG_free(es);
	} else {
		der = OPENSSL_memdup(sig, siglen);
		derlen = (int)siglen;
	}
	assert_true(asprintf(&input, "%s.%s", p64, pl64) > 0);
	if (!expect_valid)
		input[0] ^= 1;
	assert_int_equal(EVP_DigestVerifyInit_ex(mctx, NULL, mdname, NULL, NULL, key, NULL), 1);
	assert_int_equal(EVP_DigestVerify(mctx, der, (size_t)derlen, (unsigned char *)input, strlen(input)),
			 expect_valid ? 1 : 0);
	EVP_MD_CTX_free(mctx);
	free(input);
	OPENSSL_free(der);
	free(sig);
	free(pl);
	free(ptxt);
	json_decref(jws);
	return prot;
}

static void t_sign_case(EVP_PKEY *key, const char *alg, const char *mdname, size_t coord)
{
	const char *url = "https://ca.test/acme/new-order";
	const char *payload = "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"a.test\"}]}";
	char err[256] = "", *text;
	json_t *prot;

	assert_string_equal(jws_alg(key), alg);
	/* jwk form */
	text = jws_sign(key, url, "nonce-1", NULL, payload, err, sizeof(err));
	assert_non_null(text);
	json_decref(t_verify_jws(text, key, mdname, coord, alg, url, "nonce-1", NULL, payload, 1));
	json_decref(t_verify_jws(text, key, mdname, coord, alg, url, "nonce-1", NULL, payload, 0));
	free(text);
	/* kid form, POST-as-GET */
	text = jws_sign(key, url, "nonce-2", "https://ca.test/acct/1", NULL, err, sizeof(err));
	assert_non_null(text);
	prot = t_verify_jws(text, key, mdname, coord, alg, url, "nonce-2", "https://ca.test/acct/1", "", 1);
	json_decref(prot);
	free(text);
	/* no nonce (inner key-change JWS) */
	text = jws_sign(key, url, NULL, NULL, "{}", err, sizeof(err));
	assert_non_null(text);
	assert_non_null(strstr(text, "\"payload\":\"e30\""));
	free(text);
}

static void test_jws_sign_es256(void **state)
{
	EVP_PKEY *key = t_a3_key();

	(void)state;
	t_sign_case(key, "ES256", "SHA256", 32);
	EVP_PKEY_free(key);
}

static void test_jws_sign_es384(void **state)
{
	EVP_PKEY *key = t_gen(CRYPTO_KEY_EC_P384, 0);

	(void)state;
	t_sign_case(key, "ES384", "SHA384", 48);
	EVP_PKEY_free(key);
}

static void test_jws_sign_rs256(void **state)
{
	EVP_PKEY *key = t_gen(CRYPTO_KEY_RSA, 2048);

	(void)state;
	t_sign_case(key, "RS256", "SHA256", 0);
	EVP_PKEY_free(key);
}

static void test_jws_errors(void **state)
{
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *ec = t_a3_key();
	char err[256];

	(void)state;
	assert_non_null(ed);
	assert_null(jws_alg(ed));
	assert_null(jws_alg(NULL));
	assert_null(jws_jwk(ed));
	assert_null(jws_thumbprint(ed));
	err[0] = '\0';
	assert_null(jws_sign(ed, "https://x", "n", NULL, "{}", err, sizeof(err)));
	assert_non_null(strstr(err, "unsupported key"));
	err[0] = '\0';
	assert_null(jws_sign(NULL, "https://x", "n", NULL, "{}", err, sizeof(err)));
	assert_true(err[0]);
	err[0] = '\0';
	assert_null(jws_sign(ec, "https://x", "bad\xff\xfe", NULL, "{}", err, sizeof(err)));
	assert_true(err[0]);
	err[0] = '\0';
	assert_null(jws_sign(ec, NULL, "n", NULL, "{}", err, sizeof(err)));
	assert_true(err[0]);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(ec);
}

static void test_eab(void **state)
{
	static const unsigned char hkey[32] = {
		0x00, 0xfb, 0xff, 0x10, 0x3e, 0x3f, 0xfe, 0x7f, 0x80, 0x81, 0x01, 0x02, 0xaa, 0x55, 0xc3, 0x3c,
		0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xfe, 0xff,
	};
	const char *url = "https://ca.test/acme/new-account";
	EVP_PKEY *acct = t_a3_key();
	char *hkey64 = t_b64url(hkey, sizeof(hkey)), *input, *padded, err[256];
	json_t *eab, *prot, *payload, *jwk = jws_jwk(acct);
	json_error_t jerr;
	unsigned char mac[32], *ptxt, *pl, *sig;
	unsigned int maclen = 0;
	size_t plen, pllen, siglen;
	const char *p64, *pl64;
	int round;

	(void)state;
	/* the key has '-' / '_' in base64url; test both unpadded and padded forms */
	assert_true(strchr(hkey64, '-') || strchr(hkey64, '_'));
	assert_true(asprintf(&padded, "%s=", hkey64) > 0);
	for (round = 0; round < 2; round++) {
		eab = jws_eab(acct, "kid-1", round ? padded : hkey64, url, err, sizeof(err));
		if (!eab)
			fail_msg("jws_eab: %s", err);
		assert_int_equal(json_object_size(eab), 3);
		p64 = json_string_value(json_object_get(eab, "protected"));
		pl64 = json_string_value(json_object_get(eab, "payload"));
		ptxt = t_unb64url(p64, &plen);
		prot = json_loads((const char *)ptxt, 0, &jerr);
		assert_non_null(prot);
		assert_int_equal(json_object_size(prot), 3);
		assert_string_equal(json_string_value(json_object_get(prot, "alg")), "HS256");
		assert_string_equal(json_string_value(json_object_get(prot, "kid")), "kid-1");
		assert_string_equal(json_string_value(json_object_get(prot, "url")), url);
		pl = t_unb64url(pl64, &pllen);
		payload = json_loads((const char *)pl, 0, &jerr);
		assert_non_null(payload);
		assert_true(json_equal(payload, jwk));

		assert_true(asprintf(&input, "%s.%s", p64, pl64) > 0);
		assert_non_null(HMAC(EVP_sha256(), hkey, sizeof(hkey), (unsigned char *)input, strlen(input),
				     mac, &maclen));
		sig = t_unb64url(json_string_value(json_object_get(eab, "signature")), &siglen);
		assert_int_equal(siglen, 32);
		assert_memory_equal(sig, mac, 32);
		free(sig);
		free(input);
		free(pl);
		free(ptxt);
		json_decref(payload);
		json_decref(prot);
		json_decref(eab);
	}

	/* bad keys: clear error, and the key never appears in it */
	static const char *const bad[] = { "", "not*base64", "abc+def/", "QQ=", "A", "QUJD\n" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_null(jws_eab(acct, "kid-1", bad[i], url, err, sizeof(err)));
		assert_non_null(strstr(err, "eab_hmac_key"));
		if (bad[i][0])
			assert_null(strstr(err, bad[i]));
	}
	err[0] = '\0';
	assert_null(jws_eab(acct, "", hkey64, url, err, sizeof(err)));
	assert_true(err[0]);
	err[0] = '\0';
	assert_null(jws_eab(NULL, "kid-1", hkey64, url, err, sizeof(err)));
	assert_true(err[0]);
	free(padded);
	free(hkey64);
	json_decref(jwk);
	EVP_PKEY_free(acct);
}

static void test_key_authorization(void **state)
{
	EVP_PKEY *key = t_rfc7638_key();
	char *ka = jws_key_authorization("tok-EN_123", key);

	(void)state;
	assert_non_null(ka);
	assert_string_equal(ka, "tok-EN_123.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	free(ka);
	assert_null(jws_key_authorization("", key));
	assert_null(jws_key_authorization(NULL, key));
	assert_null(jws_key_authorization("../etc/passwd", key));
	assert_null(jws_key_authorization("a b", key));
	assert_null(jws_key_authorization("abc", NULL));
	EVP_PKEY_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7638_thumbprint),
		cmocka_unit_test(test_ec_jwk_fixed),
		cmocka_unit_test(test_ec_jwk_padding),
		cmocka_unit_test(test_jws_sign_es256),
		cmocka_unit_test(test_jws_sign_es384),
		cmocka_unit_test(test_jws_sign_rs256),
		cmocka_unit_test(test_jws_errors),
		cmocka_unit_test(test_eab),
		cmocka_unit_test(test_key_authorization),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
