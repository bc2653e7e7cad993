/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for acme/crypto: base64url, keys, CSR, certificate facts, bundles,
 * chain helpers and key generation off the event loop. Certificates are made here
 * with OpenSSL so every expected value is known independently. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "acme/crypto.h"

static EVP_PKEY *t_gen(enum crypto_key_type type, int bits)
{
	char err[256] = "";
	EVP_PKEY *key = crypto_key_generate(type, bits, err, sizeof(err));

	if (!key)
		fail_msg("keygen: %s", err);
	return key;
}

/* ------------------------------------------------------------- base64url */

static void test_b64url(void **state)
{
	static const struct { const char *plain, *enc; } vec[] = {
		{ "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" }, { "foobar", "Zm9vYmFy" },
		{ "\xfb\xff", "-_8" }, { "\xff\xff\xfe", "___-" },
	};
	static const char *const bad[] = {
		"Z", "Zg=", "Zg===", "Z===", "====", "Zm9v=", "Z=g=", "Zm+v", "Zm/v", " Zg", "Zg\n",
		"Zm9v!", "Zm9vY", "\xc3\xa9Zg",
	};
	unsigned char buf[70], *dec;
	size_t i, len, outlen;
	char *enc;

	(void)state;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		enc = crypto_b64url((const unsigned char *)vec[i].plain, strlen(vec[i].plain));
		assert_non_null(enc);
		assert_string_equal(enc, vec[i].enc);
		dec = crypto_b64url_decode(vec[i].enc, strlen(vec[i].enc), &outlen);
		assert_non_null(dec);
		assert_int_equal(outlen, strlen(vec[i].plain));
		assert_memory_equal(dec, vec[i].plain, outlen);
		free(dec);
		free(enc);
	}
	/* padded input is accepted too */
	dec = crypto_b64url_decode("Zg==", 4, &outlen);
	assert_non_null(dec);
	assert_int_equal(outlen, 1);
	assert_int_equal(dec[0], 'f');
	free(dec);
	dec = crypto_b64url_decode("Zm8=", 4, &outlen);
	assert_non_null(dec);
	assert_int_equal(outlen, 2);
	free(dec);
	/* <len> is honoured: the tail after it is not read */
	dec = crypto_b64url_decode("Zm9v!!!", 4, &outlen);
	assert_non_null(dec);
	assert_int_equal(outlen, 3);
	free(dec);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		dec = crypto_b64url_decode(bad[i], strlen(bad[i]), &outlen);
		if (dec)
			fail_msg("accepted bad base64url #%zu \"%s\"", i, bad[i]);
	}
	assert_null(crypto_b64url_decode(NULL, 0, &outlen));
	/* every length and byte value round-trips */
	for (len = 0; len < sizeof(buf); len++) {
		for (i = 0; i < len; i++)
			buf[i] = (unsigned char)(i * 37 + len * 11);
		enc = crypto_b64url(buf, len);
		assert_non_null(enc);
		assert_null(strpbrk(enc, "=+/"));
		assert_int_equal(strlen(enc), (len * 4 + 2) / 3);
		dec = crypto_b64url_decode(enc, strlen(enc), &outlen);
		assert_non_null(dec);
		assert_int_equal(outlen, len);
		assert_memory_equal(dec, buf, len);
		free(dec);
		free(enc);
	}
}

/* ------------------------------------------------------------------ keys */

static void test_keys_pem(void **state)
{
	static const struct { enum crypto_key_type type; int bits; const char *name; } cases[] = {
		{ CRYPTO_KEY_EC_P256, 0, "EC" }, { CRYPTO_KEY_EC_P384, 0, "EC" }, { CRYPTO_KEY_RSA, 2048, "RSA" },
	};
	char err[256], *pem;
	size_t i, len = 0;

	(void)state;
	for (i = 0; i < 3; i++) {
		EVP_PKEY *key = t_gen(cases[i].type, cases[i].bits), *back;

		assert_true(EVP_PKEY_is_a(key, cases[i].name));
		if (cases[i].type == CRYPTO_KEY_RSA)
			assert_int_equal(EVP_PKEY_get_bits(key), 2048);
		if (cases[i].type == CRYPTO_KEY_EC_P384)
			assert_int_equal(EVP_PKEY_get_bits(key), 384);
		pem = crypto_key_to_pem(key, &len);
		assert_non_null(pem);
		assert_int_equal(strlen(pem), len);
		assert_true(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
		back = crypto_key_from_pem(pem, len, err, sizeof(err));
		assert_non_null(back);
		assert_int_equal(EVP_PKEY_eq(key, back), 1);
		crypto_secret_free(pem, len);
		EVP_PKEY_free(back);
		EVP_PKEY_free(key);
	}
	crypto_secret_free(NULL, 0);
	assert_string_equal(crypto_key_type_names[CRYPTO_KEY_RSA], "rsa");

	err[0] = '\0';
	assert_null(crypto_key_generate(CRYPTO_KEY_RSA, 1024, err, sizeof(err)));
	assert_non_null(strstr(err, "1024"));
	err[0] = '\0';
	assert_null(crypto_key_generate(CRYPTO_KEY__MAX, 0, err, sizeof(err)));
	assert_true(err[0]);
	assert_null(crypto_key_to_pem(NULL, &len));
}

static void test_key_from_pem_garbage(void **state)
{
	EVP_PKEY *key = t_gen(CRYPTO_KEY_EC_P256, 0);
	size_t len;
	char *pem = crypto_key_to_pem(key, &len), *enc = NULL, err[256];
	const char *const bad[] = { "", "garbage", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" };
	BIO *b = BIO_new(BIO_s_mem());
	size_t i;
	long n;

	(void)state;
	for (i = 0; i < 3; i++) {
		err[0] = '\0';
		assert_null(crypto_key_from_pem(bad[i], strlen(bad[i]), err, sizeof(err)));
		assert_true(err[0]);
	}
	/* truncated at every few bytes */
	for (i = 0; i < len; i += 7) {
		EVP_PKEY *k = crypto_key_from_pem(pem, i, err, sizeof(err));

		assert_null(k);
	}
	assert_null(crypto_key_from_pem(NULL, 10, err, sizeof(err)));
	/* an encrypted key fails without prompting for a pass phrase */
	assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, key, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)"pw"), 1);
	n = BIO_get_mem_data(b, &enc);
	err[0] = '\0';
	assert_null(crypto_key_from_pem(enc, (size_t)n, err, sizeof(err)));
	assert_true(err[0]);
	assert_int_equal(ERR_peek_error(), 0);
	BIO_free(b);
	crypto_secret_free(pem, len);
	EVP_PKEY_free(key);
}

/* ------------------------------------------------------------------- CSR */

static X509_REQ *t_csr_parse(const char *b64)
{
	size_t len;
	unsigned char *der = crypto_b64url_decode(b64, strlen(b64), &len);
	const unsigned char *p = der;
	X509_REQ *req;

	assert_non_null(der);
	req = d2i_X509_REQ(NULL, &p, (long)len);
	assert_non_null(req);
	assert_ptr_equal(p, der + len);
	free(der);
	return req;
}

static void t_csr_check(X509_REQ *req, EVP_PKEY *key, const char *cn, const char *const *names, size_t n)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	GENERAL_NAMES *gens = NULL;
	X509_NAME *subj = X509_REQ_get_subject_name(req);
	char buf[256];
	size_t i;

	assert_int_equal(X509_REQ_verify(req, key), 1);
	assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(req), key), 1);
	assert_int_equal(X509_REQ_get_signature_nid(req) == NID_ecdsa_with_SHA256 ||
			 X509_REQ_get_signature_nid(req) == NID_sha256WithRSAEncryption, 1);
	if (cn) {
		assert_true(X509_NAME_get_text_by_NID(subj, NID_commonName, buf, sizeof(buf)) > 0);
		assert_string_equal(buf, cn);
	} else {
		assert_int_equal(X509_NAME_get_index_by_NID(subj, NID_commonName, -1), -1);
	}
	assert_non_null(exts);
	for (i = 0; i < (size_t)sk_X509_EXTENSION_num(exts); i++) {
		X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, (int)i);

		if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) == NID_subject_alt_name)
			gens = X509V3_EXT_d2i(ext);
	}
	assert_non_null(gens);
	assert_int_equal(sk_GENERAL_NAME_num(gens), n);
	for (i = 0; i < n; i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, (int)i);

		assert_int_equal(gn->type, GEN_DNS);
		assert_int_equal(ASN1_STRING_length(gn->d.dNSName), strlen(names[i]));
		assert_memory_equal(ASN1_STRING_get0_data(gn->d.dNSName), names[i], strlen(names[i]));
	}
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}

static void test_csr(void **state)
{
	static const char *const names[] = { "a.test", "www.a.test", "*.w.a.test" };
	static const char *const long_first[] = {
		"a-very-long-label-for-testing-the-common-name-limit-of-sixty-four.example.test", "b.test",
	};
	static const char *const bad1[] = { "a.test", "bad name" };
	static const char *const bad2[] = { "a.test,DNS:evil.test" };
	static const char *const bad3[] = { "" };
	EVP_PKEY *ec = t_gen(CRYPTO_KEY_EC_P256, 0), *rsa = t_gen(CRYPTO_KEY_RSA, 2048);
	char err[256], *csr;
	X509_REQ *req;

	(void)state;
	csr = crypto_csr_b64url(ec, names, 3, err, sizeof(err));
	assert_non_null(csr);
	req = t_csr_parse(csr);
	t_csr_check(req, ec, "a.test", names, 3);
	/* a different key must not verify it: the check above is not vacuous */
	assert_int_not_equal(X509_REQ_verify(req, rsa), 1);
	ERR_clear_error();
	X509_REQ_free(req);
	free(csr);

	csr = crypto_csr_b64url(rsa, long_first, 2, err, sizeof(err));
	assert_non_null(csr);
	req = t_csr_parse(csr);
	t_csr_check(req, rsa, NULL, long_first, 2);
	X509_REQ_free(req);
	free(csr);

	err[0] = '\0';
	assert_null(crypto_csr_b64url(ec, bad1, 2, err, sizeof(err)));
	assert_true(err[0]);
	assert_null(crypto_csr_b64url(ec, bad2, 1, err, sizeof(err)));
	assert_null(crypto_csr_b64url(ec, bad3, 1, err, sizeof(err)));
	assert_null(crypto_csr_b64url(ec, names, 0, err, sizeof(err)));
	assert_null(crypto_csr_b64url(NULL, names, 1, err, sizeof(err)));
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa);
}

/* ---------------------------------------------------------- certificates */

struct t_cert_opts {
	EVP_PKEY *key;            /* subject key */
	EVP_PKEY *issuer_key;     /* signer; NULL = self-signed */
	const char *cn, *issuer_cn;
	const char *const *sans;
	size_t nsans;
	const unsigned char *serial;
	size_t serial_len;
	const unsigned char *aki;
	size_t aki_len;
	time_t not_before, not_after;
};

static X509 *t_cert(const struct t_cert_opts *o)
{
	X509 *x = X509_new();
	X509_NAME *subj = X509_NAME_new(), *iss = X509_NAME_new();
	BIGNUM *bn = BN_bin2bn(o->serial, (int)o->serial_len, NULL);
	size_t i;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
	BN_free(bn);
	assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), o->not_before));
	assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), o->not_after));
	assert_int_equal(X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)o->cn, -1, -1, 0), 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(iss, "O", MBSTRING_ASC, (const unsigned char *)"Test Org", -1, -1, 0), 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(iss, "CN", MBSTRING_ASC,
						    (const unsigned char *)(o->issuer_cn ? o->issuer_cn : o->cn), -1, -1, 0), 1);
	assert_int_equal(X509_set_subject_name(x, subj), 1);
	assert_int_equal(X509_set_issuer_name(x, iss), 1);
	assert_int_equal(X509_set_pubkey(x, o->key), 1);
	if (o->nsans) {
		GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
		GENERAL_NAME *ip = GENERAL_NAME_new();
		ASN1_OCTET_STRING *ipo = ASN1_OCTET_STRING_new();

		for (i = 0; i < o->nsans; i++) {
			GENERAL_NAME *gn = GENERAL_NAME_new();
			ASN1_IA5STRING *s = ASN1_IA5STRING_new();

			assert_int_equal(ASN1_STRING_set(s, o->sans[i], -1), 1);
			GENERAL_NAME_set0_value(gn, GEN_DNS, s);
			assert_true(sk_GENERAL_NAME_push(gens, gn) > 0);
		}
		/* an IP SAN, which must not show up among the DNS names */
		assert_int_equal(ASN1_OCTET_STRING_set(ipo, (const unsigned char *)"\x0a\x01\x02\x03", 4), 1);
		GENERAL_NAME_set0_value(ip, GEN_IPADD, ipo);
		assert_true(sk_GENERAL_NAME_push(gens, ip) > 0);
		assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0), 1);
		GENERAL_NAMES_free(gens);
	}
	if (o->aki) {
		AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();

		akid->keyid = ASN1_OCTET_STRING_new();
		assert_int_equal(ASN1_OCTET_STRING_set(akid->keyid, o->aki, (int)o->aki_len), 1);
		assert_int_equal(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0), 1);
		AUTHORITY_KEYID_free(akid);
	}
	assert_true(X509_sign(x, o->issuer_key ? o->issuer_key : o->key, EVP_sha256()) > 0);
	X509_NAME_free(subj);
	X509_NAME_free(iss);
	return x;
}

/* Appends the PEM of <x> (and of <key> if not NULL) to the malloc'd string *<pem>. */
static void t_pem_append(char **pem, X509 *x, EVP_PKEY *key)
{
	BIO *b = BIO_new(BIO_s_mem());
	size_t old = *pem ? strlen(*pem) : 0;
	char *data;
	long n;

	if (x)
		assert_int_equal(PEM_write_bio_X509(b, x), 1);
	if (key)
		assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), 1);
	n = BIO_get_mem_data(b, &data);
	*pem = realloc(*pem, old + (size_t)n + 1);
	assert_non_null(*pem);
	memcpy(*pem + old, data, (size_t)n);
	(*pem)[old + (size_t)n] = '\0';
	BIO_free(b);
}

/* RFC 9773 §4.1 example values: AKI 69:88:5B:..., serial 0x87654321 */
static const unsigned char ari_aki[] = {
	0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
	0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
};
static const unsigned char ari_serial[] = { 0x87, 0x65, 0x43, 0x21 };

static void t_check_info(X509 *x, const struct crypto_cert_info *ci)
{
	unsigned char md[20];
	unsigned int mdlen = 0;
	char want[60];
	size_t i;

	assert_int_equal(X509_digest(x, EVP_sha1(), md, &mdlen), 1);
	assert_int_equal(mdlen, 20);
	for (i = 0; i < 20; i++)
		sprintf(want + 3 * i, "%02X%s", md[i], i < 19 ? ":" : "");
	assert_string_equal(ci->digest_sha1, want);
}

static void test_cert_info(void **state)
{
	static const char *const sans[] = { "a.test", "www.a.test" };
	static const unsigned char serial2[] = { 0x01, 0x02, 0xAB };
	EVP_PKEY *ec = t_gen(CRYPTO_KEY_EC_P256, 0), *rsa = t_gen(CRYPTO_KEY_RSA, 2048);
	struct t_cert_opts o = {
		.key = ec, .cn = "a.test", .issuer_cn = "Test CA R1", .sans = sans, .nsans = 2,
		.serial = ari_serial, .serial_len = 4, .aki = ari_aki, .aki_len = sizeof(ari_aki),
		.not_before = 1700000000, .not_after = 1700000000 + 90 * 86400 - 1,
	};
	struct crypto_cert_info ci;
	char *pem = NULL, err[256];
	X509 *x = t_cert(&o);

	(void)state;
	t_pem_append(&pem, x, NULL);
	assert_int_equal(crypto_cert_info(pem, strlen(pem), &ci, err, sizeof(err)), 0);
	assert_int_equal(ci.not_before, 1700000000);
	assert_int_equal(ci.not_after, 1700000000 + 90 * 86400 - 1);
	assert_string_equal(ci.not_before_str, "2023-11-14 22:13:20");
	assert_string_equal(ci.not_after_str, "2024-02-12 22:13:19");
	assert_string_equal(ci.serial_hex, "87654321");
	assert_string_equal(ci.issuer_cn, "Test CA R1");
	assert_string_equal(ci.subject_cn, "a.test");
	assert_string_equal(ci.pubkey_type, "id-ecPublicKey");
	assert_string_equal(ci.ari_cert_id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
	assert_int_equal(ci.nsans, 2);
	assert_string_equal(ci.sans[0], "a.test");
	assert_string_equal(ci.sans[1], "www.a.test");
	t_check_info(x, &ci);
	crypto_cert_info_clear(&ci);
	assert_null(ci.sans);
	crypto_cert_info_clear(NULL);
	X509_free(x);
	free(pem);
	pem = NULL;

	/* RSA, no AKI, no SAN, a serial without the high bit set */
	o = (struct t_cert_opts){ .key = rsa, .cn = "r.test", .serial = serial2, .serial_len = 3,
				  .not_before = 0, .not_after = 4102444800 };
	x = t_cert(&o);
	t_pem_append(&pem, x, NULL);
	assert_int_equal(crypto_cert_info(pem, strlen(pem), &ci, err, sizeof(err)), 0);
	assert_string_equal(ci.pubkey_type, "rsaEncryption");
	assert_string_equal(ci.ari_cert_id, "");
	assert_string_equal(ci.serial_hex, "0102AB");
	assert_string_equal(ci.not_before_str, "1970-01-01 00:00:00");
	assert_string_equal(ci.not_after_str, "2100-01-01 00:00:00");
	assert_int_equal(ci.not_after, (time_t)4102444800);
	assert_int_equal(ci.nsans, 0);
	assert_string_equal(ci.issuer_cn, "r.test");
	t_check_info(x, &ci);
	crypto_cert_info_clear(&ci);
	X509_free(x);
	free(pem);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa);
}

static void test_cert_garbage(void **state)
{
	static const unsigned char serial[] = { 1 };
	EVP_PKEY *ec = t_gen(CRYPTO_KEY_EC_P256, 0);
	struct t_cert_opts o = { .key = ec, .cn = "g.test", .serial = serial, .serial_len = 1,
				 .not_before = 1700000000, .not_after = 1800000000 };
	X509 *x = t_cert(&o);
	unsigned char *der = NULL;
	int derlen = i2d_X509(x, &der);
	char *pem = NULL, err[256], **certs = NULL, cn[64];
	const char *bad[] = { "", "junk", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n" };
	struct crypto_cert_info ci;
	size_t i, n = 0;
	int half, rc;

	(void)state;
	for (i = 0; i < 3; i++) {
		err[0] = '\0';
		assert_int_equal(crypto_cert_info(bad[i], strlen(bad[i]), &ci, err, sizeof(err)), -1);
		assert_true(err[0]);
		assert_int_equal(crypto_bundle_check(bad[i], strlen(bad[i]), NULL, err, sizeof(err)), -1);
		assert_int_equal(crypto_pem_split_certs(bad[i], strlen(bad[i]), &certs, &n), -1);
		assert_int_equal(crypto_chain_top_issuer_cn(bad[i], strlen(bad[i]), cn, sizeof(cn)), -1);
	}
	/* well-armoured PEM around truncated DER */
	for (half = 1; half < derlen; half += derlen / 7 + 1) {
		BIO *b = BIO_new(BIO_s_mem());
		char *data;
		long dl;

		assert_true(PEM_write_bio(b, "CERTIFICATE", "", der, half) > 0);
		dl = BIO_get_mem_data(b, &data);
		err[0] = '\0';
		assert_int_equal(crypto_cert_info(data, (size_t)dl, &ci, err, sizeof(err)), -1);
		assert_true(err[0]);
		assert_int_equal(crypto_pem_split_certs(data, (size_t)dl, &certs, &n), -1);
		BIO_free(b);
	}
	/* a good PEM cut short anywhere */
	t_pem_append(&pem, x, NULL);
	for (i = 0; i < strlen(pem); i += 13) {
		rc = crypto_cert_info(pem, i, &ci, err, sizeof(err));
		if (rc == 0)
			crypto_cert_info_clear(&ci);
		assert_int_equal(rc, -1);
	}
	/* a good certificate followed by damage is refused as a chain */
	pem = realloc(pem, strlen(pem) + 64);
	strcat(pem, "-----BEGIN CERTIFICATE-----\nMIIB\n");
	assert_int_equal(crypto_pem_split_certs(pem, strlen(pem), &certs, &n), -1);
	assert_int_equal(crypto_cert_info(NULL, 5, &ci, err, sizeof(err)), -1);
	assert_int_equal(ERR_peek_error(), 0);
	free(pem);
	OPENSSL_free(der);
	X509_free(x);
	EVP_PKEY_free(ec);
}

/* The bundle check at a fixed time inside the test certificates' validity. */
static int t_check(const char *pem, const char *host, char *err, size_t errlen)
{
	return crypto_bundle_check_at(pem, strlen(pem), host, 1750000000, err, errlen);
}

static void test_bundle_and_chain(void **state)
{
	static const char *const sans[] = { "b.test", "*.b.test" };
	static const unsigned char s1[] = { 0x11 }, s2[] = { 0x22 };
	EVP_PKEY *leaf_key = t_gen(CRYPTO_KEY_EC_P256, 0), *ca_key = t_gen(CRYPTO_KEY_EC_P384, 0);
	EVP_PKEY *other = t_gen(CRYPTO_KEY_EC_P256, 0);
	struct t_cert_opts lo = { .key = leaf_key, .issuer_key = ca_key, .cn = "b.test", .issuer_cn = "Inter CA",
				  .sans = sans, .nsans = 2, .serial = s1, .serial_len = 1,
				  .not_before = 1700000000, .not_after = 1800000000 };
	struct t_cert_opts co = { .key = ca_key, .cn = "Inter CA", .issuer_cn = "Root X9", .serial = s2,
				  .serial_len = 1, .not_before = 1700000000, .not_after = 1900000000 };
	X509 *leaf = t_cert(&lo), *ca = t_cert(&co);
	char *bundle = NULL, *wrong = NULL, *nokey = NULL, err[256], **certs = NULL, cn[64];
	size_t n = 0, i;

	(void)state;
	t_pem_append(&bundle, leaf, NULL);
	t_pem_append(&bundle, ca, leaf_key);
	t_pem_append(&wrong, leaf, NULL);
	t_pem_append(&wrong, ca, other);
	t_pem_append(&nokey, leaf, NULL);
	t_pem_append(&nokey, ca, NULL);

	assert_int_equal(t_check(bundle, NULL, err, sizeof(err)), 0);
	assert_int_equal(t_check(bundle, "b.test", err, sizeof(err)), 0);
	assert_int_equal(t_check(bundle, "x.b.test", err, sizeof(err)), 0);
	err[0] = '\0';
	assert_int_equal(t_check(bundle, "c.test", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "does not cover"));
	err[0] = '\0';
	assert_int_equal(t_check(wrong, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "does not match"));
	err[0] = '\0';
	assert_int_equal(t_check(nokey, NULL, err, sizeof(err)), -1);
	assert_true(err[0]);
	/* the key matches the second certificate only, not the leaf */
	free(wrong);
	wrong = NULL;
	t_pem_append(&wrong, leaf, NULL);
	t_pem_append(&wrong, ca, ca_key);
	assert_int_equal(t_check(wrong, NULL, err, sizeof(err)), -1);

	/* a wildcard host is one of the leaf's names as such, not a pattern match */
	assert_int_equal(t_check(bundle, "*.b.test", err, sizeof(err)), 0);
	assert_int_equal(t_check(bundle, "*.c.test", err, sizeof(err)), -1);
	/* expired at <now>; valid the second before */
	err[0] = '\0';
	assert_int_equal(crypto_bundle_check_at(bundle, strlen(bundle), "b.test", 1800000001, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "expired"));
	assert_int_equal(crypto_bundle_check_at(bundle, strlen(bundle), "b.test", 1799999999, err, sizeof(err)), 0);
	/* a second key, before ours (HAProxy would take it) or after: refused */
	{
		char *two = NULL;

		t_pem_append(&two, NULL, other);
		t_pem_append(&two, leaf, NULL);
		t_pem_append(&two, ca, leaf_key);
		err[0] = '\0';
		assert_int_equal(t_check(two, "b.test", err, sizeof(err)), -1);
		assert_non_null(strstr(err, "2 private keys"));
		free(two);
		two = NULL;
		t_pem_append(&two, leaf, leaf_key);
		t_pem_append(&two, ca, other);
		assert_int_equal(t_check(two, "b.test", err, sizeof(err)), -1);
		free(two);
	}
	/* empty and oversized */
	assert_int_equal(crypto_bundle_check_at("", 0, NULL, 1750000000, err, sizeof(err)), -1);
	assert_int_equal(crypto_bundle_check_at(bundle, CRYPTO_BUNDLE_MAX + 1, NULL, 1750000000, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too large"));

	assert_int_equal(crypto_pem_split_certs(bundle, strlen(bundle), &certs, &n), 2);
	assert_int_equal(n, 2);
	for (i = 0; i < 2; i++) {
		struct crypto_cert_info ci;

		assert_non_null(strstr(certs[i], "-----BEGIN CERTIFICATE-----"));
		assert_null(strstr(certs[i], "PRIVATE KEY"));
		assert_int_equal(crypto_cert_info(certs[i], strlen(certs[i]), &ci, err, sizeof(err)), 0);
		assert_string_equal(ci.subject_cn, i == 0 ? "b.test" : "Inter CA");
		crypto_cert_info_clear(&ci);
	}
	crypto_pem_certs_free(certs, n);
	crypto_pem_certs_free(NULL, 0);

	assert_int_equal(crypto_chain_top_issuer_cn(bundle, strlen(bundle), cn, sizeof(cn)), 0);
	assert_string_equal(cn, "Root X9");
	assert_int_equal(crypto_chain_top_issuer_cn(nokey, strlen(nokey), cn, 4), 0);
	assert_string_equal(cn, "Roo");

	free(bundle);
	free(wrong);
	free(nokey);
	X509_free(leaf);
	X509_free(ca);
	EVP_PKEY_free(leaf_key);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(other);
}

/* ------------------------------------------------------ async generation */

struct t_async {
	struct ev_loop *loop;
	ev_timer tick, guard;
	pthread_t loop_thread;
	int ticks;
	int ticks_at_rsa;
	int delivered, expected;
	int wrong_thread;
	EVP_PKEY *keys[4];
	int cancelled_called;
	char last_err[256];
};

struct t_job {
	struct t_async *t;
	int slot;
};

static void t_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct t_async *t = w->data;

	(void)loop; (void)revents;
	t->ticks++;
}

static void t_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w; (void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void t_keygen_done(void *arg, EVP_PKEY *key, const char *err)
{
	struct t_job *j = arg;
	struct t_async *t = j->t;

	if (!pthread_equal(pthread_self(), t->loop_thread))
		t->wrong_thread++;
	if (!key)
		snprintf(t->last_err, sizeof(t->last_err), "%s", err ? err : "(null)");
	t->keys[j->slot] = key;
	if (j->slot == 1)
		t->ticks_at_rsa = t->ticks;
	if (++t->delivered == t->expected) {
		ev_timer_stop(t->loop, &t->tick);
		ev_timer_stop(t->loop, &t->guard);
	}
}

static void t_cancelled_cb(void *arg, EVP_PKEY *key, const char *err)
{
	struct t_async *t = arg;

	(void)err;
	t->cancelled_called++;
	EVP_PKEY_free(key);
}

static void test_async_keygen(void **state)
{
	struct t_async t = { 0 };
	struct t_job jobs[3] = { { &t, 0 }, { &t, 1 }, { &t, 2 } };
	int i;

	(void)state;
	crypto_async_shutdown();   /* nothing started yet: must be harmless */
	t.loop = ev_loop_new(EVFLAG_AUTO);
	t.loop_thread = pthread_self();
	t.expected = 3;
	ev_timer_init(&t.tick, t_tick, 0.002, 0.002);
	t.tick.data = &t;
	ev_timer_start(t.loop, &t.tick);
	ev_timer_init(&t.guard, t_guard, 120., 0.);
	ev_timer_start(t.loop, &t.guard);

	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_EC_P256, 0, t_keygen_done, &jobs[0]), 0);
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_RSA, 2048, t_keygen_done, &jobs[1]), 0);
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_EC_P384, 0, t_keygen_done, &jobs[2]), 0);
	assert_int_equal(t.delivered, 0);   /* never from inside the call */
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY__MAX, 0, t_keygen_done, &jobs[0]), -1);
	assert_int_equal(crypto_key_generate_async(NULL, CRYPTO_KEY_EC_P256, 0, t_keygen_done, &jobs[0]), -1);
	ev_run(t.loop, 0);

	assert_int_equal(t.delivered, 3);
	assert_int_equal(t.wrong_thread, 0);
	for (i = 0; i < 3; i++)
		assert_non_null(t.keys[i]);
	assert_true(EVP_PKEY_is_a(t.keys[0], "EC"));
	assert_true(EVP_PKEY_is_a(t.keys[1], "RSA"));
	assert_int_equal(EVP_PKEY_get_bits(t.keys[1]), 2048);
	assert_int_equal(EVP_PKEY_get_bits(t.keys[2]), 384);
	/* the loop kept turning while RSA was generated */
	if (t.ticks_at_rsa < 3)
		fail_msg("timer fired only %d times before the RSA key arrived", t.ticks_at_rsa);
	for (i = 0; i < 3; i++)
		EVP_PKEY_free(t.keys[i]);

	/* a failing job reports its error through the callback */
	memset(t.keys, 0, sizeof(t.keys));
	t.delivered = 0;
	t.expected = 1;
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_RSA, 512, t_keygen_done, &jobs[0]), 0);
	ev_timer_start(t.loop, &t.guard);
	ev_run(t.loop, 0);
	assert_int_equal(t.delivered, 1);
	assert_null(t.keys[0]);
	assert_non_null(strstr(t.last_err, "512"));

	crypto_async_shutdown();
	ev_loop_destroy(t.loop);
}

static void test_async_cancel_shutdown(void **state)
{
	struct t_async t = { 0 };
	struct t_job job = { &t, 0 };

	(void)state;
	t.loop = ev_loop_new(EVFLAG_AUTO);
	t.loop_thread = pthread_self();
	t.expected = 1;
	ev_timer_init(&t.tick, t_tick, 0.01, 0.01);
	t.tick.data = &t;
	ev_timer_init(&t.guard, t_guard, 120., 0.);
	ev_timer_start(t.loop, &t.guard);

	/* cancelled jobs (running or queued) never call back; the other one does */
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_RSA, 2048, t_cancelled_cb, &t), 0);
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_RSA, 2048, t_cancelled_cb, &t), 0);
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_RSA, 2048, t_cancelled_cb, &t), 0);
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_EC_P256, 0, t_keygen_done, &job), 0);
	assert_int_equal(crypto_key_generate_cancel(&t), 3);
	assert_int_equal(crypto_key_generate_cancel(&t), 0);
	ev_run(t.loop, 0);
	assert_int_equal(t.delivered, 1);
	assert_non_null(t.keys[0]);
	assert_int_equal(t.cancelled_called, 0);
	EVP_PKEY_free(t.keys[0]);

	/* shutdown drops undelivered jobs without calling them, then the service restarts */
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_RSA, 2048, t_cancelled_cb, &t), 0);
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_EC_P256, 0, t_cancelled_cb, &t), 0);
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_EC_P256, 0, t_cancelled_cb, &t), 0);
	crypto_async_shutdown();
	ev_run(t.loop, 0);         /* returns at once: no watcher left behind */
	assert_int_equal(t.cancelled_called, 0);

	t.delivered = 0;
	t.keys[0] = NULL;
	assert_int_equal(crypto_key_generate_async(t.loop, CRYPTO_KEY_EC_P256, 0, t_keygen_done, &job), 0);
	ev_timer_start(t.loop, &t.guard);
	ev_run(t.loop, 0);
	assert_int_equal(t.delivered, 1);
	assert_non_null(t.keys[0]);
	EVP_PKEY_free(t.keys[0]);
	crypto_async_shutdown();
	crypto_async_shutdown();
	ev_loop_destroy(t.loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64url),
		cmocka_unit_test(test_keys_pem),
		cmocka_unit_test(test_key_from_pem_garbage),
		cmocka_unit_test(test_csr),
		cmocka_unit_test(test_cert_info),
		cmocka_unit_test(test_cert_garbage),
		cmocka_unit_test(test_bundle_and_chain),
		cmocka_unit_test(test_async_keygen),
		cmocka_unit_test(test_async_cancel_shutdown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
