/* SPDX-License-Identifier: Apache-2.0 */
/* JWS (RFC 7515) as ACME uses it (RFC 8555 §6.2), JWK and JWK thumbprint
 * (RFC 7638), key authorizations and externalAccountBinding (RFC 8555 §7.3.4). */
#ifndef ACME_SPOA_JWS_H
#define ACME_SPOA_JWS_H

#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

/* JWS algorithm for <key>: "ES256" (P-256), "ES384" (P-384), "ES512" (P-521),
 * "RS256" (RSA); NULL if unsupported. Static string. */
const char *jws_alg(EVP_PKEY *key);

/* Public JWK object of <key> with the canonical members only (EC: crv,kty,x,y with
 * coordinates padded to the field size; RSA: e,kty,n without leading zero bytes).
 * New reference, or NULL if the key is unsupported. */
json_t *jws_jwk(EVP_PKEY *key);

/* RFC 7638 thumbprint: base64url(SHA-256(canonical JWK)). malloc'd, NULL on error. */
char *jws_thumbprint(EVP_PKEY *key);

/* Key authorization <token> "." thumbprint(<account_key>). malloc'd, NULL on error or
 * when <token> is empty or holds anything but base64url characters. A secret: never log it. */
char *jws_key_authorization(const char *token, EVP_PKEY *account_key);

/* Flattened JSON JWS for ACME: protected {alg, nonce, url, jwk|kid}: "kid" is <kid>
 * when not NULL, else the key's "jwk"; "nonce" is left out when <nonce> is NULL (only
 * for the inner JWS of a key change). <payload> NULL means POST-as-GET (payload "").
 * ECDSA signatures are raw r||s (fixed width). Returns malloc'd JSON text (free()) or
 * NULL with a message in <err>. */
char *jws_sign(EVP_PKEY *key, const char *url, const char *nonce, const char *kid, const char *payload,
	       char *err, size_t errlen);

/* RFC 8555 §7.3.4 externalAccountBinding: flattened JWS with HS256, protected
 * {alg:HS256, kid:<eab_kid>, url:<new_account_url>}, payload = the account's public JWK,
 * MAC key = base64url-decoded <eab_hmac_b64url>. Returns a new reference, or NULL with a
 * message in <err> (the key itself never appears in the message). */
json_t *jws_eab(EVP_PKEY *account_key, const char *eab_kid, const char *eab_hmac_b64url,
		const char *new_account_url, char *err, size_t errlen);

#endif
