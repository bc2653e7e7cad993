/* SPDX-License-Identifier: Apache-2.0 */
/* Keys, CSRs, certificate facts, base64url (async key generation: crypto_async.c). */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "acme/crypto.h"

const char *const crypto_key_type_names[CRYPTO_KEY__MAX] = {
	[CRYPTO_KEY_EC_P256] = "ec-p256",
	[CRYPTO_KEY_EC_P384] = "ec-p384",
	[CRYPTO_KEY_RSA] = "rsa",
};

void crypto_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void crypto_ssl_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	if (reason)
		crypto_errf(err, errlen, "%s: %s", what, reason);
	else if (e)
		crypto_errf(err, errlen, "%s: OpenSSL error %lx", what, e);
	else
		crypto_errf(err, errlen, "%s", what);
	ERR_clear_error();
}

/* Never prompt on a terminal for the pass phrase of an encrypted key. */
static int crypto_no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return -1;
}

static BIO *crypto_mem_bio(const char *pem, size_t len, char *err, size_t errlen)
{
	BIO *b;

	if (!pem || len > INT_MAX) {
		crypto_errf(err, errlen, "invalid PEM input");
		return NULL;
	}
	b = BIO_new_mem_buf(pem, (int)len);
	if (!b)
		crypto_ssl_err(err, errlen, "out of memory");
	return b;
}

/* ------------------------------------------------------------------ keys */

EVP_PKEY *crypto_key_generate(enum crypto_key_type type, int rsa_bits, char *err, size_t errlen)
{
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *key = NULL;
	const char *curve = NULL;

	switch (type) {
	case CRYPTO_KEY_EC_P256: curve = "P-256"; break;
	case CRYPTO_KEY_EC_P384: curve = "P-384"; break;
	case CRYPTO_KEY_RSA:
		if (rsa_bits < 2048 || rsa_bits > 8192) {
			crypto_errf(err, errlen, "keygen: RSA size %d is not within 2048..8192", rsa_bits);
			goto out;
		}
		break;
	default:
		crypto_errf(err, errlen, "keygen: unknown key type %d", (int)type);
		goto out;
	}
	ctx = EVP_PKEY_CTX_new_from_name(NULL, curve ? "EC" : "RSA", NULL);
	if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0) {
		crypto_ssl_err(err, errlen, "keygen: init");
		goto out;
	}
	if (curve ? EVP_PKEY_CTX_set_group_name(ctx, curve) <= 0
		  : EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, rsa_bits) <= 0) {
		crypto_ssl_err(err, errlen, "keygen: parameters");
		goto out;
	}
	if (EVP_PKEY_generate(ctx, &key) <= 0) {
		key = NULL;
		crypto_ssl_err(err, errlen, "keygen: generate");
	}
out:
	EVP_PKEY_CTX_free(ctx);
	return key;
}

char *crypto_key_to_pem(EVP_PKEY *key, size_t *len)
{
	BIO *b = NULL;
	char *data, *out = NULL;
	long n;

	if (!key)
		goto out;
	/* secure-heap memory BIO: the key text is cleansed when the BIO is freed */
	b = BIO_new(BIO_s_secmem());
	if (!b || !PEM_write_bio_PKCS8PrivateKey(b, key, NULL, NULL, 0, NULL, NULL))
		goto out;
	n = BIO_get_mem_data(b, &data);
	if (n <= 0 || !(out = malloc((size_t)n + 1)))
		goto out;
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	if (len)
		*len = (size_t)n;
out:
	if (!out)
		ERR_clear_error();
	BIO_free(b);
	return out;
}

EVP_PKEY *crypto_key_from_pem(const char *pem, size_t len, char *err, size_t errlen)
{
	BIO *b = crypto_mem_bio(pem, len, err, errlen);
	EVP_PKEY *key = NULL;

	if (!b)
		return NULL;
	key = PEM_read_bio_PrivateKey(b, NULL, crypto_no_password, NULL);
	if (!key)
		crypto_ssl_err(err, errlen, "private key PEM");
	BIO_free(b);
	return key;
}

void crypto_secret_free(char *s, size_t len)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, len);
	free(s);
}

/* ------------------------------------------------------------- base64url */

static const char crypto_b64url_chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *crypto_b64url(const unsigned char *data, size_t len)
{
	char *out, *p;
	size_t i;

	if (len > (SIZE_MAX - 4) / 4 * 3)
		return NULL;
	out = p = malloc(len / 3 * 4 + 4);
	if (!out)
		return NULL;
	for (i = 0; i + 2 < len; i += 3) {
		unsigned long v = (unsigned long)data[i] << 16 | (unsigned long)data[i + 1] << 8 | data[i + 2];

		*p++ = crypto_b64url_chars[v >> 18 & 63];
		*p++ = crypto_b64url_chars[v >> 12 & 63];
		*p++ = crypto_b64url_chars[v >> 6 & 63];
		*p++ = crypto_b64url_chars[v & 63];
	}
	if (len - i == 1) {
		*p++ = crypto_b64url_chars[data[i] >> 2];
		*p++ = crypto_b64url_chars[(data[i] & 3) << 4];
	} else if (len - i == 2) {
		*p++ = crypto_b64url_chars[data[i] >> 2];
		*p++ = crypto_b64url_chars[(data[i] & 3) << 4 | data[i + 1] >> 4];
		*p++ = crypto_b64url_chars[(data[i + 1] & 15) << 2];
	}
	*p = '\0';
	return out;
}

static int crypto_b64url_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

unsigned char *crypto_b64url_decode(const char *s, size_t len, size_t *outlen)
{
	unsigned char *out = NULL, *p;
	size_t i, pad = 0;
	unsigned long acc = 0;
	int bits = 0;

	if (!s)
		return NULL;
	while (pad < len && pad < 2 && s[len - 1 - pad] == '=')
		pad++;
	/* padded input must be whole quanta; unpadded input never leaves 6 lone bits */
	if ((pad && len % 4) || (len - pad) % 4 == 1)
		return NULL;
	len -= pad;
	if (!(out = p = malloc(len / 4 * 3 + 3)))
		return NULL;
	for (i = 0; i < len; i++) {
		int v = crypto_b64url_value(s[i]);

		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = (acc << 6 | (unsigned long)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			*p++ = (unsigned char)(acc >> bits);
		}
	}
	*p = '\0';
	if (outlen)
		*outlen = (size_t)(p - out);
	return out;
}

/* ------------------------------------------------------------------- CSR */

static int crypto_name_ok(const char *name)
{
	size_t i, len = name ? strlen(name) : 0;

	if (len == 0 || len > 253)
		return 0;
	for (i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_' || c == '*'))
			return 0;
	}
	return 1;
}

char *crypto_csr_b64url(EVP_PKEY *key, const char *const *names, size_t n, char *err, size_t errlen)
{
	X509_REQ *req = NULL;
	GENERAL_NAMES *gens = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *ext = NULL;
	unsigned char *der = NULL;
	char *out = NULL;
	size_t i;
	int derlen;

	if (!key || !names || n == 0 || n > 100) {
		crypto_errf(err, errlen, "csr: needs a key and 1..100 names");
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (!crypto_name_ok(names[i])) {
			crypto_errf(err, errlen, "csr: invalid name #%zu", i);
			goto out;
		}
	}
	if (!(req = X509_REQ_new()) || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
	    !(gens = sk_GENERAL_NAME_new_null()) || !(exts = sk_X509_EXTENSION_new_null()))
		goto ssl_err;
	/* CN is limited to 64 bytes; longer names live in the SAN only */
	if (strlen(names[0]) <= 64 &&
	    !X509_NAME_add_entry_by_NID(X509_REQ_get_subject_name(req), NID_commonName, MBSTRING_ASC,
					(const unsigned char *)names[0], -1, -1, 0))
		goto ssl_err;
	for (i = 0; i < n; i++) {
		GENERAL_NAME *gn = GENERAL_NAME_new();
		ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

		if (!gn || !ia5 || !ASN1_STRING_set(ia5, names[i], (int)strlen(names[i]))) {
			GENERAL_NAME_free(gn);
			ASN1_IA5STRING_free(ia5);
			goto ssl_err;
		}
		GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
		if (!sk_GENERAL_NAME_push(gens, gn)) {
			GENERAL_NAME_free(gn);
			goto ssl_err;
		}
	}
	if (!(ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens)) || !sk_X509_EXTENSION_push(exts, ext))
		goto ssl_err;
	ext = NULL;
	if (!X509_REQ_add_extensions(req, exts) || !X509_REQ_set_pubkey(req, key) ||
	    X509_REQ_sign(req, key, EVP_sha256()) <= 0)
		goto ssl_err;
	derlen = i2d_X509_REQ(req, &der);
	if (derlen <= 0)
		goto ssl_err;
	if (!(out = crypto_b64url(der, (size_t)derlen)))
		crypto_errf(err, errlen, "csr: out of memory");
	goto out;
ssl_err:
	crypto_ssl_err(err, errlen, "csr");
out:
	OPENSSL_free(der);
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	sk_GENERAL_NAME_pop_free(gens, GENERAL_NAME_free);
	X509_REQ_free(req);
	return out;
}

/* ---------------------------------------------------------- certificates */

/* Reads every certificate of <pem>. Returns a stack with at least one, or NULL. */
static STACK_OF(X509) *crypto_read_certs(const char *pem, size_t len, char *err, size_t errlen)
{
	STACK_OF(X509) *sk = NULL;
	BIO *b = crypto_mem_bio(pem, len, err, errlen);
	X509 *x;
	unsigned long e;

	if (!b || !(sk = sk_X509_new_null()))
		goto fail;
	while ((x = PEM_read_bio_X509(b, NULL, crypto_no_password, NULL))) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			goto fail;
		}
	}
	/* running out of PEM blocks ends the loop with "no start line"; anything else is damage */
	e = ERR_peek_last_error();
	if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
		goto fail;
	ERR_clear_error();
	if (sk_X509_num(sk) == 0) {
		crypto_errf(err, errlen, "certificate PEM: no certificate found");
		goto fail_quiet;
	}
	BIO_free(b);
	return sk;
fail:
	crypto_ssl_err(err, errlen, "certificate PEM");
fail_quiet:
	sk_X509_pop_free(sk, X509_free);
	BIO_free(b);
	return NULL;
}

/* Copies the first CN of <name> into <out>, control characters replaced. 0 or -1. */
static int crypto_name_cn(const X509_NAME *name, char *out, size_t outlen)
{
	int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	unsigned char *utf8 = NULL;
	int n, i;

	out[0] = '\0';
	if (idx < 0)
		return -1;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
	if (n < 0) {
		ERR_clear_error();
		return -1;
	}
	for (i = 0; i < n && (size_t)i + 1 < outlen; i++)
		out[i] = (utf8[i] < 0x20 || utf8[i] == 0x7f) ? '?' : (char)utf8[i];
	out[i] = '\0';
	OPENSSL_free(utf8);
	return 0;
}

static int crypto_time(const ASN1_TIME *t, time_t *out, char *str, size_t strlen_)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return -1;
	*out = timegm(&tm);
	return strftime(str, strlen_, "%Y-%m-%d %H:%M:%S", &tm) ? 0 : -1;
}

static void crypto_hex(const unsigned char *p, size_t n, char sep, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < n; i++) {
		if (sep && i)
			*out++ = sep;
		*out++ = hex[p[i] >> 4];
		*out++ = hex[p[i] & 15];
	}
	*out = '\0';
}

/* RFC 9773 §4.1: base64url(AKI keyIdentifier) "." base64url(serial DER content octets) */
static void crypto_ari_cert_id(X509 *x, char *out, size_t outlen)
{
	const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
	unsigned char *der = NULL, *content;
	char *a = NULL, *s = NULL;
	int derlen;
	size_t hdr;

	out[0] = '\0';
	if (!aki || ASN1_STRING_length(aki) <= 0)
		goto out;
	derlen = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &der);
	if (derlen < 2 || der[0] != V_ASN1_INTEGER)
		goto out;
	hdr = der[1] < 0x80 ? 2 : 2 + (size_t)(der[1] & 0x7f);
	if (hdr >= (size_t)derlen)
		goto out;
	content = der + hdr;
	a = crypto_b64url(ASN1_STRING_get0_data(aki), (size_t)ASN1_STRING_length(aki));
	s = crypto_b64url(content, (size_t)derlen - hdr);
	if (a && s && strlen(a) + strlen(s) + 2 <= outlen) {
		size_t al = strlen(a);

		memcpy(out, a, al);
		out[al] = '.';
		memcpy(out + al + 1, s, strlen(s) + 1);
	}
out:
	ERR_clear_error();
	OPENSSL_free(der);
	free(a);
	free(s);
}

static int crypto_cert_sans(X509 *x, struct crypto_cert_info *out)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int i, num, rc = -1;

	ERR_clear_error();
	if (!gens)
		return 0;
	num = sk_GENERAL_NAME_num(gens);
	if (!(out->sans = calloc((size_t)num + 1, sizeof(*out->sans))))
		goto out;
	for (i = 0; i < num; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *d;
		int n;

		if (gn->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(gn->d.dNSName);
		n = ASN1_STRING_length(gn->d.dNSName);
		if (n <= 0 || memchr(d, '\0', (size_t)n))
			continue;
		if (!(out->sans[out->nsans] = strndup((const char *)d, (size_t)n)))
			goto out;
		out->nsans++;
	}
	rc = 0;
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

static int crypto_cert_info_x509(X509 *x, struct crypto_cert_info *out, char *err, size_t errlen)
{
	const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	X509_PUBKEY *xpk = X509_get_X509_PUBKEY(x);
	ASN1_OBJECT *alg = NULL;

	memset(out, 0, sizeof(*out));
	if (crypto_time(X509_get0_notBefore(x), &out->not_before, out->not_before_str,
			sizeof(out->not_before_str)) == -1 ||
	    crypto_time(X509_get0_notAfter(x), &out->not_after, out->not_after_str,
			sizeof(out->not_after_str)) == -1) {
		crypto_ssl_err(err, errlen, "certificate: bad validity dates");
		return -1;
	}
	if (!serial || ASN1_STRING_length(serial) * 2 + 1 > (int)sizeof(out->serial_hex)) {
		crypto_errf(err, errlen, "certificate: bad serial number");
		return -1;
	}
	if (ASN1_STRING_length(serial) == 0)
		strcpy(out->serial_hex, "00");
	else
		crypto_hex(ASN1_STRING_get0_data(serial), (size_t)ASN1_STRING_length(serial), 0, out->serial_hex);
	if (!X509_digest(x, EVP_sha1(), md, &mdlen) || mdlen * 3 > sizeof(out->digest_sha1)) {
		crypto_ssl_err(err, errlen, "certificate: digest");
		return -1;
	}
	crypto_hex(md, mdlen, ':', out->digest_sha1);
	crypto_name_cn(X509_get_issuer_name(x), out->issuer_cn, sizeof(out->issuer_cn));
	crypto_name_cn(X509_get_subject_name(x), out->subject_cn, sizeof(out->subject_cn));
	if (!xpk || !X509_PUBKEY_get0_param(&alg, NULL, NULL, NULL, xpk) ||
	    OBJ_obj2txt(out->pubkey_type, sizeof(out->pubkey_type), alg, 0) <= 0) {
		crypto_ssl_err(err, errlen, "certificate: public key algorithm");
		return -1;
	}
	crypto_ari_cert_id(x, out->ari_cert_id, sizeof(out->ari_cert_id));
	if (crypto_cert_sans(x, out) == -1) {
		crypto_cert_info_clear(out);
		crypto_errf(err, errlen, "certificate: out of memory");
		return -1;
	}
	return 0;
}

int crypto_cert_info(const char *pem, size_t len, struct crypto_cert_info *out, char *err, size_t errlen)
{
	BIO *b;
	X509 *x;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (!(b = crypto_mem_bio(pem, len, err, errlen)))
		return -1;
	x = PEM_read_bio_X509(b, NULL, crypto_no_password, NULL);
	if (!x)
		crypto_ssl_err(err, errlen, "certificate PEM");
	else
		rc = crypto_cert_info_x509(x, out, err, errlen);
	X509_free(x);
	BIO_free(b);
	return rc;
}

void crypto_cert_info_clear(struct crypto_cert_info *ci)
{
	size_t i;

	if (!ci)
		return;
	for (i = 0; i < ci->nsans; i++)
		free(ci->sans[i]);
	free(ci->sans);
	memset(ci, 0, sizeof(*ci));
}

/* Counts the private-key PEM blocks ("-----BEGIN ... PRIVATE KEY-----") of
 * <pem>: HAProxy takes the first it finds, so there must be exactly one. */
static size_t crypto_key_blocks(const char *pem, size_t len)
{
	static const char begin[] = "-----BEGIN ", tail[] = "PRIVATE KEY-----";
	const char *p = pem, *end = pem + len;
	size_t n = 0;

	while ((p = memmem(p, (size_t)(end - p), begin, sizeof(begin) - 1)) != NULL) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *stop = eol ? eol : end;

		while (stop > p && (stop[-1] == '\r' || stop[-1] == ' '))
			stop--;
		if ((size_t)(stop - p) >= sizeof(begin) - 1 + sizeof(tail) - 1 &&
		    memcmp(stop - (sizeof(tail) - 1), tail, sizeof(tail) - 1) == 0)
			n++;
		p += sizeof(begin) - 1;
	}
	return n;
}

/* 1 when <leaf> covers <host>; a wildcard <host> ("*.zone") must be one of
 * the leaf's DNS names as such (X509_check_host matches names, not patterns). */
static int crypto_leaf_covers(X509 *leaf, const char *host)
{
	GENERAL_NAMES *gens;
	int i, found = 0;

	if (strncmp(host, "*.", 2) != 0) {
		found = X509_check_host(leaf, host, strlen(host), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
					NULL) == 1;
		ERR_clear_error();
		return found;
	}
	gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	for (i = 0; gens && !found && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *d;
		int dl;

		if (g->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(g->d.dNSName);
		dl = ASN1_STRING_length(g->d.dNSName);
		found = dl >= 0 && (size_t)dl == strlen(host) && strncasecmp((const char *)d, host, (size_t)dl) == 0;
	}
	GENERAL_NAMES_free(gens);
	ERR_clear_error();
	return found;
}

int crypto_bundle_check_info(const char *pem, size_t len, const char *host, time_t now,
			     struct crypto_cert_info *info, char *err, size_t errlen)
{
	struct crypto_cert_info ci;
	STACK_OF(X509) *sk = NULL;
	EVP_PKEY *key = NULL;
	size_t keys;
	X509 *leaf;
	int rc = -1;

	if (!pem || len == 0 || len > CRYPTO_BUNDLE_MAX) {
		crypto_errf(err, errlen, "bundle: %s", !pem || len == 0 ? "empty" : "too large");
		goto out;
	}
	if ((keys = crypto_key_blocks(pem, len)) != 1) {
		crypto_errf(err, errlen, "bundle: %zu private keys (one expected)", keys);
		goto out;
	}
	if (!(sk = crypto_read_certs(pem, len, err, errlen)))
		goto out;
	if (!(key = crypto_key_from_pem(pem, len, err, errlen)))
		goto out;
	leaf = sk_X509_value(sk, 0);
	if (EVP_PKEY_eq(X509_get0_pubkey(leaf), key) != 1) {
		ERR_clear_error();
		crypto_errf(err, errlen, "bundle: the certificate does not match the private key");
		goto out;
	}
	if (host && !crypto_leaf_covers(leaf, host)) {
		crypto_errf(err, errlen, "bundle: the certificate does not cover host %.253s", host);
		goto out;
	}
	/* the facts the agent keeps (dates, serial, names) must read back */
	if (crypto_cert_info_x509(leaf, &ci, err, errlen) == -1) {
		crypto_cert_info_clear(&ci);
		goto out;
	}
	if (ci.not_after <= now) {
		crypto_cert_info_clear(&ci);
		crypto_errf(err, errlen, "bundle: the certificate has expired");
		goto out;
	}
	if (info)
		*info = ci;
	else
		crypto_cert_info_clear(&ci);
	rc = 0;
out:
	EVP_PKEY_free(key);
	sk_X509_pop_free(sk, X509_free);
	return rc;
}

int crypto_bundle_check_at(const char *pem, size_t len, const char *host, time_t now,
			   char *err, size_t errlen)
{
	return crypto_bundle_check_info(pem, len, host, now, NULL, err, errlen);
}

int crypto_bundle_check(const char *pem, size_t len, const char *host, char *err, size_t errlen)
{
	return crypto_bundle_check_at(pem, len, host, time(NULL), err, errlen);
}

int crypto_pem_split_certs(const char *pem, size_t len, char ***certs, size_t *n)
{
	STACK_OF(X509) *sk = crypto_read_certs(pem, len, NULL, 0);
	char **out = NULL;
	size_t i, num = 0;
	BIO *b = NULL;
	int rc = -1;

	if (!sk)
		goto out;
	num = (size_t)sk_X509_num(sk);
	if (!(out = calloc(num, sizeof(*out))))
		goto out;
	for (i = 0; i < num; i++) {
		char *data;
		long dl;

		BIO_free(b);
		if (!(b = BIO_new(BIO_s_mem())) || !PEM_write_bio_X509(b, sk_X509_value(sk, (int)i)))
			goto out;
		dl = BIO_get_mem_data(b, &data);
		if (dl <= 0 || !(out[i] = malloc((size_t)dl + 1)))
			goto out;
		memcpy(out[i], data, (size_t)dl);
		out[i][dl] = '\0';
	}
	*certs = out;
	*n = num;
	out = NULL;
	rc = (int)num;
out:
	crypto_pem_certs_free(out, num);
	if (rc == -1)
		ERR_clear_error();
	BIO_free(b);
	sk_X509_pop_free(sk, X509_free);
	return rc;
}

void crypto_pem_certs_free(char **certs, size_t n)
{
	size_t i;

	if (!certs)
		return;
	for (i = 0; i < n; i++)
		free(certs[i]);
	free(certs);
}

int crypto_chain_top_issuer_cn(const char *pem, size_t len, char *out, size_t outlen)
{
	STACK_OF(X509) *sk = crypto_read_certs(pem, len, NULL, 0);
	int rc = -1;

	if (outlen)
		out[0] = '\0';
	if (sk && outlen)
		rc = crypto_name_cn(X509_get_issuer_name(sk_X509_value(sk, sk_X509_num(sk) - 1)), out, outlen);
	sk_X509_pop_free(sk, X509_free);
	return rc;
}
