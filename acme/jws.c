/* SPDX-License-Identifier: Apache-2.0 */
/* JWS/JWK/thumbprint/EAB for ACME (RFC 7515, RFC 7638, RFC 8555). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include "acme/crypto.h"
#include "acme/jws.h"

/* What a key means for JOSE. */
struct jws_keyinfo {
	const char *alg;        /* "ES256", "RS256", ... */
	const char *mdname;     /* digest for the signature */
	const char *crv;        /* EC only: JWK "crv" */
	size_t coord_len;       /* EC only: field size, the width of x, y, r and s */
	int is_ec;
};

static int jws_keyinfo(EVP_PKEY *key, struct jws_keyinfo *ki)
{
	char group[64];

	memset(ki, 0, sizeof(*ki));
	if (!key)
		return -1;
	if (EVP_PKEY_is_a(key, "RSA")) {
		ki->alg = "RS256";
		ki->mdname = "SHA256";
		return 0;
	}
	if (!EVP_PKEY_is_a(key, "EC") || !EVP_PKEY_get_group_name(key, group, sizeof(group), NULL)) {
		ERR_clear_error();
		return -1;
	}
	switch (OBJ_sn2nid(group)) {
	case NID_X9_62_prime256v1:
		*ki = (struct jws_keyinfo){ "ES256", "SHA256", "P-256", 32, 1 };
		return 0;
	case NID_secp384r1:
		*ki = (struct jws_keyinfo){ "ES384", "SHA384", "P-384", 48, 1 };
		return 0;
	case NID_secp521r1:
		*ki = (struct jws_keyinfo){ "ES512", "SHA512", "P-521", 66, 1 };
		return 0;
	default:
		return -1;
	}
}

const char *jws_alg(EVP_PKEY *key)
{
	struct jws_keyinfo ki;

	return jws_keyinfo(key, &ki) == 0 ? ki.alg : NULL;
}

/* base64url of <bn>, left-padded with zeros to <width> bytes, or minimal when 0. */
static char *jws_bn_b64url(const BIGNUM *bn, size_t width)
{
	unsigned char *buf;
	char *out = NULL;
	int n;

	if (!width)
		width = (size_t)BN_num_bytes(bn);
	if (!width || !(buf = malloc(width)))
		return NULL;
	n = BN_bn2binpad(bn, buf, (int)width);
	if (n >= 0)
		out = crypto_b64url(buf, (size_t)n);
	free(buf);
	return out;
}

/* The two variable members of the JWK: EC x and y, or RSA e and n. */
static int jws_jwk_members(EVP_PKEY *key, const struct jws_keyinfo *ki, char **m1, char **m2)
{
	BIGNUM *b1 = NULL, *b2 = NULL;
	int rc = -1;

	*m1 = *m2 = NULL;
	if (!EVP_PKEY_get_bn_param(key, ki->is_ec ? OSSL_PKEY_PARAM_EC_PUB_X : OSSL_PKEY_PARAM_RSA_E, &b1) ||
	    !EVP_PKEY_get_bn_param(key, ki->is_ec ? OSSL_PKEY_PARAM_EC_PUB_Y : OSSL_PKEY_PARAM_RSA_N, &b2))
		goto out;
	*m1 = jws_bn_b64url(b1, ki->coord_len);
	*m2 = jws_bn_b64url(b2, ki->coord_len);
	if (*m1 && *m2)
		rc = 0;
out:
	if (rc == -1) {
		ERR_clear_error();
		free(*m1);
		free(*m2);
		*m1 = *m2 = NULL;
	}
	BN_free(b1);
	BN_free(b2);
	return rc;
}

json_t *jws_jwk(EVP_PKEY *key)
{
	struct jws_keyinfo ki;
	char *m1, *m2;
	json_t *jwk;

	if (jws_keyinfo(key, &ki) == -1 || jws_jwk_members(key, &ki, &m1, &m2) == -1)
		return NULL;
	if (ki.is_ec)
		jwk = json_pack("{s:s, s:s, s:s, s:s}", "crv", ki.crv, "kty", "EC", "x", m1, "y", m2);
	else
		jwk = json_pack("{s:s, s:s, s:s}", "e", m1, "kty", "RSA", "n", m2);
	free(m1);
	free(m2);
	return jwk;
}

char *jws_thumbprint(EVP_PKEY *key)
{
	struct jws_keyinfo ki;
	char *m1, *m2, *canon = NULL, *out = NULL;
	unsigned char md[32];
	int n;

	if (jws_keyinfo(key, &ki) == -1 || jws_jwk_members(key, &ki, &m1, &m2) == -1)
		return NULL;
	/* RFC 7638 §3.2: required members only, sorted, no whitespace */
	if (ki.is_ec)
		n = asprintf(&canon, "{\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", ki.crv, m1, m2);
	else
		n = asprintf(&canon, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", m1, m2);
	if (n < 0)
		canon = NULL;
	else if (EVP_Digest(canon, (size_t)n, md, NULL, EVP_sha256(), NULL))
		out = crypto_b64url(md, sizeof(md));
	ERR_clear_error();
	free(canon);
	free(m1);
	free(m2);
	return out;
}

char *jws_key_authorization(const char *token, EVP_PKEY *account_key)
{
	size_t len, i;
	char *tp, *out = NULL;

	if (!token || !(len = strlen(token)))
		return NULL;
	/* the token becomes part of storage keys and URLs: base64url alphabet only */
	for (i = 0; i < len; i++) {
		char c = token[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return NULL;
	}
	if (!(tp = jws_thumbprint(account_key)))
		return NULL;
	if (asprintf(&out, "%s.%s", token, tp) < 0)
		out = NULL;
	free(tp);
	return out;
}

/* Signs <in> with <key>; JOSE form (ECDSA as raw r||s). *<sig> is OPENSSL_malloc'd. */
static int jws_sign_bytes(EVP_PKEY *key, const struct jws_keyinfo *ki, const char *in, size_t inlen,
			  unsigned char **sig, size_t *siglen, char *err, size_t errlen)
{
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	unsigned char *der = NULL, *raw = NULL;
	const unsigned char *p;
	const BIGNUM *r, *s;
	ECDSA_SIG *es = NULL;
	size_t derlen = 0;
	int rc = -1;

	if (!mctx || EVP_DigestSignInit_ex(mctx, NULL, ki->mdname, NULL, NULL, key, NULL) <= 0 ||
	    EVP_DigestSign(mctx, NULL, &derlen, (const unsigned char *)in, inlen) <= 0 ||
	    !(der = OPENSSL_malloc(derlen)) ||
	    EVP_DigestSign(mctx, der, &derlen, (const unsigned char *)in, inlen) <= 0) {
		crypto_ssl_err(err, errlen, "jws: sign");
		goto out;
	}
	if (!ki->is_ec) {
		*sig = der;
		*siglen = derlen;
		der = NULL;
		rc = 0;
		goto out;
	}
	p = der;
	if (!(es = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) || !(raw = OPENSSL_malloc(2 * ki->coord_len))) {
		crypto_ssl_err(err, errlen, "jws: ECDSA signature");
		goto out;
	}
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, raw, (int)ki->coord_len) < 0 ||
	    BN_bn2binpad(s, raw + ki->coord_len, (int)ki->coord_len) < 0) {
		crypto_ssl_err(err, errlen, "jws: ECDSA signature size");
		goto out;
	}
	*sig = raw;
	*siglen = 2 * ki->coord_len;
	raw = NULL;
	rc = 0;
out:
	OPENSSL_free(der);
	OPENSSL_free(raw);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(mctx);
	return rc;
}

/* Flattened JWS of header <prot> and <payload>, signed by <key> or, when <key> is NULL,
 * HMAC-SHA256 with <mac_key>. New reference or NULL with <err>. */
static json_t *jws_build(json_t *prot, const char *payload, EVP_PKEY *key, const struct jws_keyinfo *ki,
			 const unsigned char *mac_key, size_t mac_len, char *err, size_t errlen)
{
	char *prot_txt = NULL, *prot64 = NULL, *pay64 = NULL, *input = NULL, *sig64 = NULL;
	unsigned char *sig = NULL, mac[EVP_MAX_MD_SIZE];
	size_t siglen = 0;
	json_t *out = NULL;
	int n;

	if (!(prot_txt = json_dumps(prot, JSON_COMPACT | JSON_SORT_KEYS)) ||
	    !(prot64 = crypto_b64url((const unsigned char *)prot_txt, strlen(prot_txt))) ||
	    !(pay64 = crypto_b64url((const unsigned char *)payload, strlen(payload))) ||
	    (n = asprintf(&input, "%s.%s", prot64, pay64)) < 0) {
		input = NULL;
		crypto_errf(err, errlen, "jws: out of memory");
		goto out;
	}
	if (key) {
		if (jws_sign_bytes(key, ki, input, (size_t)n, &sig, &siglen, err, errlen) == -1)
			goto out;
		sig64 = crypto_b64url(sig, siglen);
	} else {
		if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, mac_key, mac_len,
			       (const unsigned char *)input, (size_t)n, mac, sizeof(mac), &siglen)) {
			crypto_ssl_err(err, errlen, "jws: HMAC");
			goto out;
		}
		sig64 = crypto_b64url(mac, siglen);
		OPENSSL_cleanse(mac, sizeof(mac));
	}
	if (!sig64 || !(out = json_pack("{s:s, s:s, s:s}", "protected", prot64, "payload", pay64,
					  "signature", sig64)))
		crypto_errf(err, errlen, "jws: out of memory");
out:
	free(prot_txt);
	free(prot64);
	free(pay64);
	free(input);
	free(sig64);
	OPENSSL_free(sig);
	return out;
}

char *jws_sign(EVP_PKEY *key, const char *url, const char *nonce, const char *kid, const char *payload,
	       char *err, size_t errlen)
{
	struct jws_keyinfo ki;
	json_t *prot = NULL, *jws = NULL;
	char *out = NULL;
	int bad;

	if (!url) {
		crypto_errf(err, errlen, "jws: no url");
		goto out;
	}
	if (jws_keyinfo(key, &ki) == -1) {
		crypto_errf(err, errlen, "jws: unsupported key type (need EC P-256/P-384/P-521 or RSA)");
		goto out;
	}
	if (!(prot = json_pack("{s:s}", "alg", ki.alg))) {
		crypto_errf(err, errlen, "jws: out of memory");
		goto out;
	}
	/* json_string() refuses invalid UTF-8, so a hostile nonce cannot corrupt the header */
	bad = json_object_set_new(prot, "url", json_string(url));
	if (nonce)
		bad |= json_object_set_new(prot, "nonce", json_string(nonce));
	if (kid)
		bad |= json_object_set_new(prot, "kid", json_string(kid));
	else
		bad |= json_object_set_new(prot, "jwk", jws_jwk(key));
	if (bad) {
		crypto_errf(err, errlen, "jws: cannot build the protected header (url, nonce, kid or key)");
		goto out;
	}
	if (!(jws = jws_build(prot, payload ? payload : "", key, &ki, NULL, 0, err, errlen)))
		goto out;
	if (!(out = json_dumps(jws, JSON_COMPACT)))
		crypto_errf(err, errlen, "jws: out of memory");
out:
	json_decref(prot);
	json_decref(jws);
	return out;
}

json_t *jws_eab(EVP_PKEY *account_key, const char *eab_kid, const char *eab_hmac_b64url,
		const char *new_account_url, char *err, size_t errlen)
{
	unsigned char *mac_key = NULL;
	size_t mac_len = 0;
	json_t *prot = NULL, *jwk = NULL, *out = NULL;
	char *payload = NULL;

	if (!eab_kid || !*eab_kid || !new_account_url) {
		crypto_errf(err, errlen, "eab: eab_kid and the newAccount URL are required");
		goto out;
	}
	if (!eab_hmac_b64url ||
	    !(mac_key = crypto_b64url_decode(eab_hmac_b64url, strlen(eab_hmac_b64url), &mac_len)) ||
	    mac_len == 0) {
		crypto_errf(err, errlen, "eab: eab_hmac_key is not a valid non-empty base64url string");
		goto out;
	}
	if (!(jwk = jws_jwk(account_key))) {
		crypto_errf(err, errlen, "eab: unsupported account key type");
		goto out;
	}
	if (!(payload = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS)) ||
	    !(prot = json_pack("{s:s}", "alg", "HS256")) ||
	    json_object_set_new(prot, "kid", json_string(eab_kid)) ||
	    json_object_set_new(prot, "url", json_string(new_account_url))) {
		crypto_errf(err, errlen, "eab: eab_kid or URL is not valid UTF-8");
		goto out;
	}
	out = jws_build(prot, payload, NULL, NULL, mac_key, mac_len, err, errlen);
out:
	if (mac_key)
		OPENSSL_cleanse(mac_key, mac_len);
	free(mac_key);
	free(payload);
	json_decref(jwk);
	json_decref(prot);
	return out;
}
