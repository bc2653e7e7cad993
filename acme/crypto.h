/* SPDX-License-Identifier: Apache-2.0 */
/* Keys, CSRs, certificate facts and base64url for the ACME client.
 * OpenSSL 3 EVP interfaces only. Everything here is synchronous except
 * crypto_key_generate_async(), which runs key generation on a worker thread. */
#ifndef ACME_SPOA_CRYPTO_H
#define ACME_SPOA_CRYPTO_H

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

struct ev_loop;

enum crypto_key_type {
	CRYPTO_KEY_EC_P256 = 0,
	CRYPTO_KEY_EC_P384,
	CRYPTO_KEY_RSA,
	CRYPTO_KEY__MAX
};

/* "ec-p256", "ec-p384", "rsa" (for logs) */
extern const char *const crypto_key_type_names[CRYPTO_KEY__MAX];

/* Generates a key of <type>; <rsa_bits> (2048..8192) is used for CRYPTO_KEY_RSA only.
 * Blocking: RSA takes up to seconds, so never call it on the event loop for RSA.
 * Returns a new key (free with EVP_PKEY_free) or NULL with a message in <err>. */
EVP_PKEY *crypto_key_generate(enum crypto_key_type type, int rsa_bits, char *err, size_t errlen);

/* Generates off the event loop in a worker thread; <cb> runs on the loop thread of
 * <loop> (never from inside this call) with the new key (ownership passes to <cb>)
 * or NULL and an error text. Must be called from <loop>'s thread. While a job is
 * pending it holds a watcher active on <loop>, so ev_run() does not return before
 * <cb> has run. Returns 0 if queued, -1 (and <cb> is never called) otherwise. */
int crypto_key_generate_async(struct ev_loop *loop, enum crypto_key_type type, int rsa_bits,
			      void (*cb)(void *arg, EVP_PKEY *key, const char *err), void *arg);

/* Drops every pending async job whose callback argument is <arg>: their callbacks
 * will not be called and their keys are freed. Call it from the loop thread before
 * freeing the object <arg> points to. Returns the number of jobs dropped. */
int crypto_key_generate_cancel(void *arg);

/* Stops and joins the worker threads; safe if none started. Jobs not yet delivered
 * are dropped without calling their callbacks. Call from the loop thread, or after
 * the loops are no longer running (the jobs' watchers are stopped on their loops).
 * The async service may be used again afterwards. */
void crypto_async_shutdown(void);

/* Unencrypted PKCS#8 PEM of <key>, NUL-terminated, its length in <len> (may be NULL).
 * Returns malloc'd text (free with crypto_secret_free) or NULL. */
char *crypto_key_to_pem(EVP_PKEY *key, size_t *len);

/* Reads the first private key of <pem>/<len> (PKCS#8 or traditional PEM).
 * Returns a new key (EVP_PKEY_free) or NULL with a message in <err>. */
EVP_PKEY *crypto_key_from_pem(const char *pem, size_t len, char *err, size_t errlen);

/* OPENSSL_cleanse() the <len> bytes of <s>, then free it; NULL ok. */
void crypto_secret_free(char *s, size_t len);

/* CSR (DER, base64url) for the <n> DNS <names> (first = CN when it fits in 64 bytes,
 * all of them in the SAN), signed by <key> with SHA-256. Returns malloc'd text or NULL
 * with a message in <err>. */
char *crypto_csr_b64url(EVP_PKEY *key, const char *const *names, size_t n, char *err, size_t errlen);

/* base64url of <data>/<len> without padding; malloc'd NUL-terminated text, NULL on OOM. */
char *crypto_b64url(const unsigned char *data, size_t len);

/* Decodes base64url <s>/<len>, with or without '=' padding. Returns malloc'd bytes
 * (NUL-terminated for convenience, length in <outlen>) or NULL on a bad character,
 * bad length or bad padding. Empty input gives an empty buffer. */
unsigned char *crypto_b64url_decode(const char *s, size_t len, size_t *outlen);

struct crypto_cert_info {
	time_t not_before, not_after;
	char not_before_str[20], not_after_str[20];   /* "YYYY-MM-DD HH:MM:SS" UTC */
	char serial_hex[130];                          /* upper-case hex, no colons */
	char digest_sha1[60];                          /* "AB:CD:..." upper-case, SHA-1 of DER */
	char issuer_cn[256], subject_cn[256];          /* UTF-8, control characters as '?' */
	char pubkey_type[32];                          /* "rsaEncryption" or "id-ecPublicKey" */
	char ari_cert_id[512];                         /* RFC 9773 certID; "" if no AKI */
	char **sans; size_t nsans;                     /* DNS SANs, malloc'd */
};

/* Facts about the first certificate of <pem>/<len> into <out> (overwritten).
 * Returns 0, or -1 with a message in <err> (and <out> needs no clearing).
 * Free with crypto_cert_info_clear(). */
int crypto_cert_info(const char *pem, size_t len, struct crypto_cert_info *out, char *err, size_t errlen);

/* Frees the SANs of <ci> and zeroes it; NULL ok. */
void crypto_cert_info_clear(struct crypto_cert_info *ci);

/* Largest bundle accepted anywhere (leaf + chain + key): a long chain of
 * RSA 4096 certificates is far below it. */
#define CRYPTO_BUNDLE_MAX (256 * 1024)

/* Checks a bundle "leaf + chain + private key" PEM before it is written,
 * pushed or loaded: exactly one private key (HAProxy uses the first it
 * finds), every certificate parses, the leaf (first certificate) matches the
 * key, covers <host> when not NULL (a "*.zone" host must be one of its names)
 * and has not expired at <now>. Returns 0 or -1 with the reason in <err>. */
int crypto_bundle_check_at(const char *pem, size_t len, const char *host, time_t now,
			   char *err, size_t errlen);
/* The same at time(NULL). */
int crypto_bundle_check(const char *pem, size_t len, const char *host, char *err, size_t errlen);
/* crypto_bundle_check_at() that also hands back the leaf's facts it read:
 * on success *<info> is filled (free with crypto_cert_info_clear()), so a
 * caller that keeps them does not parse the bundle again. */
int crypto_bundle_check_info(const char *pem, size_t len, const char *host, time_t now,
			     struct crypto_cert_info *info, char *err, size_t errlen);

/* Splits a PEM chain into its certificates: on success *<certs> is a malloc'd array of
 * *<n> malloc'd PEM strings (free with crypto_pem_certs_free) and the count is
 * returned; -1 (nothing allocated) on a bad certificate or when there is none. */
int crypto_pem_split_certs(const char *pem, size_t len, char ***certs, size_t *n);

/* Frees what crypto_pem_split_certs() returned; NULL ok. */
void crypto_pem_certs_free(char **certs, size_t n);

/* Issuer CN of the last (topmost) certificate of a chain PEM, for preferred_chain
 * matching, into <out>/<outlen>. Returns 0, or -1 (bad PEM, no CN). */
int crypto_chain_top_issuer_cn(const char *pem, size_t len, char *out, size_t outlen);

/* Writes "<what>: <OpenSSL's last error reason>" into <err> and clears OpenSSL's error
 * queue, so one failure's errors never leak into the next call. */
void crypto_ssl_err(char *err, size_t errlen, const char *what);
/* printf into the caller's error buffer <err> (nothing when NULL or 0). */
void crypto_errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
