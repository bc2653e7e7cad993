/* SPDX-License-Identifier: Apache-2.0 */
/* The tls-alpn-01 validation certificate (RFC 8737 §3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "acme/acme.h"
#include "acme/crypto.h"

/* id-pe-acmeIdentifier (RFC 8737 §6.1) */
#define TLSALPN_OID "1.3.6.1.5.5.7.1.31"

/* The critical acmeIdentifier extension: its extnValue is the DER of
 * Authorization ::= OCTET STRING (SIZE (32)), SHA-256 of <key_auth>. */
static X509_EXTENSION *tlsalpn_ext(const char *key_auth)
{
	unsigned char md[32], der[2 + sizeof(md)];
	unsigned int mdlen = sizeof(md);
	ASN1_OBJECT *obj = NULL;
	ASN1_OCTET_STRING *val = NULL;
	X509_EXTENSION *ext = NULL;

	if (!EVP_Digest(key_auth, strlen(key_auth), md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		goto out;
	der[0] = V_ASN1_OCTET_STRING;
	der[1] = 32;
	memcpy(der + 2, md, 32);
	obj = OBJ_txt2obj(TLSALPN_OID, 1);
	val = ASN1_OCTET_STRING_new();
	if (!obj || !val || !ASN1_OCTET_STRING_set(val, der, sizeof(der)))
		goto out;
	ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, val);
out:
	ASN1_OBJECT_free(obj);
	ASN1_OCTET_STRING_free(val);
	return ext;
}

static int tlsalpn_add_san(X509 *x, const char *host)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	GENERAL_NAME *gen = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	int ok = 0;

	if (!gens || !gen || !ia5 || !ASN1_STRING_set(ia5, host, (int)strlen(host)))
		goto out;
	GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(gens, gen))
		goto out;
	gen = NULL;
	ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0) == 1;
out:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	return ok;
}

char *acme_tlsalpn01_cert(const char *host, const char *key_auth, size_t *len, char *err,
			  size_t errlen)
{
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	X509_NAME *name = NULL;
	X509_EXTENSION *ext = NULL;
	BIO *b = NULL;
	BIGNUM *bn = NULL;
	unsigned char sn[16];
	char *data, *out = NULL;
	time_t now = time(NULL);
	long n;

	key = EVP_EC_gen("P-256");
	x = X509_new();
	name = X509_NAME_new();
	b = BIO_new(BIO_s_mem());
	if (!key || !x || !name || !b || RAND_bytes(sn, sizeof(sn)) != 1)
		goto fail;
	sn[0] &= 0x7f;
	sn[0] |= 0x10;
	if (!(bn = BN_bin2bn(sn, sizeof(sn), NULL)) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !X509_set_version(x, X509_VERSION_3) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), now - 3600) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), now + 7 * 86400) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0) ||
	    !X509_set_subject_name(x, name) || !X509_set_issuer_name(x, name) ||
	    !X509_set_pubkey(x, key) || !tlsalpn_add_san(x, host) ||
	    !(ext = tlsalpn_ext(key_auth)) || !X509_add_ext(x, ext, -1) ||
	    !X509_sign(x, key, EVP_sha256()))
		goto fail;
	if (!PEM_write_bio_X509(b, x) || !PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL))
		goto fail;
	n = BIO_get_mem_data(b, &data);
	if (n <= 0 || !(out = malloc((size_t)n + 1)))
		goto fail;
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	*len = (size_t)n;
	goto done;
fail:
	snprintf(err, errlen, "cannot make the tls-alpn-01 certificate for %s", host);
done:
	/* the memory BIO held the key: wipe it before freeing */
	if (b && BIO_get_mem_data(b, &data) > 0)
		OPENSSL_cleanse(data, (size_t)BIO_get_mem_data(b, &data));
	BIO_free(b);
	BN_free(bn);
	X509_EXTENSION_free(ext);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(key);
	return out;
}
