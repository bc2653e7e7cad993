/* SPDX-License-Identifier: Apache-2.0 */
/* RFC 8555 ACME client as a state machine on libev: directory, nonces, account,
 * orders with http-01, finalize, certificate download with alternate chains,
 * RFC 9773 renewal information and revocation. Never blocks the loop. */
#ifndef ACME_SPOA_ACME_H
#define ACME_SPOA_ACME_H

#include <time.h>

#include <openssl/evp.h>

#include "acme/crypto.h"

struct ev_loop;
struct acme_client;

struct acme_conf {
	const char *directory_url;   /* required */
	const char *ca_file;         /* extra CA bundle to trust for the CA, or NULL */
	const char *email;           /* account contact (mailto:), or NULL */
	int tos_accepted;            /* must be set when the directory has meta.termsOfService */
	const char *eab_kid, *eab_hmac_key;  /* external account binding, both or neither */
	const char *preferred_chain; /* issuer CN of the alternate chain to prefer, or NULL */
	const char *profile;         /* newOrder profile, used when the CA offers it, or NULL */
	enum crypto_key_type cert_key_type;
	int rsa_bits;                /* for CRYPTO_KEY_RSA */
	long timeout_ms;             /* bound of one request to the CA; 0: 30 s */
	/* challenge types for a plain name in order of preference ("http-01",
	 * "tls-alpn-01"); none: http-01. Wildcards use dns-01. */
	const char *const *challenges;
	size_t nchallenges;
};

struct acme_problem {
	long status;        /* HTTP status of the failing response, 0 if none */
	char *type;         /* problem type URN, or NULL for a local error */
	char *detail;       /* human-readable text, never NULL once set */
	char *subproblems;  /* flattened "dns:x: type: detail; ..." or NULL */
	long retry_after;   /* seconds from Retry-After (429, 503), -1 none */
	int unreachable;    /* the CA did not answer (transport error, timeout) or
			     * sent no usable directory: its fault, not the name's */
	int account;        /* the account could not be set up at the CA */
};

struct acme_result {
	int ok;
	struct acme_problem problem;  /* when !ok */
	char *cert_pem;               /* leaf + chain, when ok */
	char *key_pem;                /* PKCS#8 PEM of the certificate key, when ok: a secret */
	char *order_url;              /* order URL, when known */
};

struct acme_hooks {
	/* Both hooks must not free the client (they run inside its state machine).
	 * Stores token -> key authorization (so any node can answer); the client
	 * answers the challenge only after this returns 0 (-1 fails the order).
	 * Called on the loop thread. <key_auth> is a secret: never log it. */
	int (*challenge_set)(void *arg, const char *host, const char *token, const char *key_auth);
	/* Removes what challenge_set stored; called once per token at the end of an
	 * order, success or failure. May be NULL. */
	void (*challenge_clear)(void *arg, const char *host, const char *token);
	/* Asynchronous form of challenge_set, used instead when set: starts storing
	 * and returns 0, then calls <done>(<ctx>, ok, err) on the loop, never before
	 * returning; the client answers the challenge only after ok. Returns -1
	 * when it cannot start (<done> is then never called). */
	int (*challenge_store)(void *arg, const char *host, const char *token, const char *key_auth,
			       void (*done)(void *ctx, int ok, const char *err), void *ctx);
	/* Drops the pending <done> of every challenge_store started with <ctx>
	 * (the order is freed). Required with challenge_store. */
	void (*challenge_store_cancel)(void *arg, void *ctx);
	/* tls-alpn-01 (RFC 8737): stores <host>'s key authorization so that any
	 * node can make the validation certificate when the CA connects; then
	 * <done>(<ctx>, ok, err) on the loop, never before returning (cancelled
	 * by challenge_store_cancel). Returns -1 when it cannot start. Required
	 * for tls-alpn-01. */
	int (*alpn_store)(void *arg, const char *host, const char *key_auth,
			  void (*done)(void *ctx, int ok, const char *err), void *ctx);
	/* Removes what alpn_store stored, and the validation certificate from
	 * HAProxy; called once at the end of the order. */
	void (*alpn_clear)(void *arg, const char *host);
};

/* The tls-alpn-01 validation certificate (RFC 8737 §3) for <host> and
 * <key_auth>: self-signed, <host> its only subjectAltName, the critical
 * acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding the DER OCTET STRING
 * of SHA-256(<key_auth>), a new P-256 key, valid a week. Returns the
 * certificate and key in one malloc'd PEM (length in <len>; a secret: free
 * with crypto_secret_free()), or NULL with <err> set. */
char *acme_tlsalpn01_cert(const char *host, const char *key_auth, size_t *len, char *err,
			  size_t errlen);

/* dns-01 (RFC 8555 §8.4): the solver that publishes TXT records. Orders for a
 * wildcard name ("*.example.com") use it for every authorization. */
struct acme_dns_hooks {
	/* Publishes TXT <value> at <fqdn> ("_acme-challenge.<name>", no trailing
	 * dot) for <host>'s order and waits until the zone's servers answer it;
	 * then calls <done>(<ctx>, ok, err) on the loop, never before returning.
	 * The client answers the challenge only after ok. Returns -1 when it
	 * cannot start (<done> is then never called). */
	int (*present)(void *arg, const char *host, const char *fqdn, const char *value,
		       void (*done)(void *ctx, int ok, const char *err), void *ctx);
	/* Drops the pending <done> of every present started with <ctx> (the order
	 * is freed); what was published stays until cleaned up. */
	void (*cancel)(void *arg, void *ctx);
	/* Removes the record of one present (started, successful or not), in the
	 * background; called at the end of the order, success or failure. */
	void (*cleanup)(void *arg, const char *host, const char *fqdn, const char *value);
};

/* The TXT value of a dns-01 challenge: base64url(SHA-256(<key_auth>)), no
 * padding (43 characters). malloc'd, NULL when out of memory. */
char *acme_dns01_txt(const char *key_auth);

/* Creates a client for the CA of <conf> (strings are copied) on <loop>. Takes
 * ownership of <account_key> (even on failure); NULL: set later with
 * acme_client_set_account_key(), orders and revocations are refused until
 * then. Nothing is sent before the first order. Returns NULL with a message
 * in <err>. Free with acme_client_free(). */
struct acme_client *acme_client_new(struct ev_loop *loop, const struct acme_conf *conf,
				    EVP_PKEY *account_key, const struct acme_hooks *hooks,
				    void *hooks_arg, char *err, size_t errlen);

/* Gives <c>, created without one, its account key (ownership taken, even on
 * failure). Returns 0, or -1 when <c> has a key already or <account_key> is
 * of an unsupported type. */
int acme_client_set_account_key(struct acme_client *c, EVP_PKEY *account_key);

/* Tells <c> the account URL of its key, known from elsewhere (an account
 * imported from another client): requests are signed with it at once, no
 * newAccount; if the CA answers accountDoesNotExist it is dropped and
 * newAccount finds the key's account. Returns 0, or -1 when <c> knows its
 * account already (or out of memory). */
int acme_client_set_account_url(struct acme_client *c, const char *url);

/* Sets the dns-01 solver (copied); without one, wildcard orders fail. */
void acme_client_set_dns(struct acme_client *c, const struct acme_dns_hooks *hooks, void *arg);

/* Aborts every in-flight operation without calling its callback (pending
 * challenges are not cleared) and frees <c>. Accepts NULL. May be called from
 * inside any acme callback. */
void acme_client_free(struct acme_client *c);

/* Issues a certificate for <host> in the background: directory and account are set
 * up on first use. A wildcard <host> "*.example.com" orders "*.example.com" and
 * "example.com" in one certificate, validated by dns-01; other names by http-01. <replaces> is the ARI certificate id of the certificate being
 * renewed, or NULL. <done> is called exactly once on the loop thread (never from
 * inside this call) with a result freed after it returns. Returns 0 if started,
 * -1 (done never called) on a bad argument or no memory. */
int acme_order_start(struct acme_client *c, const char *host, const char *replaces,
		     void (*done)(void *arg, const char *host, const struct acme_result *res),
		     void *arg);

/* RFC 9773: fetches the renewal window of the first certificate of <cert_pem>.
 * done(arg, ok, start, end, retry_after, err): on success <ok> is 1, <start>/<end>
 * the suggested window and <retry_after> the seconds until the next check (-1 if the
 * CA gave none); otherwise <err> says why (e.g. the CA has no renewalInfo).
 * <done> runs once on the loop thread, never inside this call. Returns 0 if started. */
int acme_renewal_info(struct acme_client *c, const char *cert_pem,
		      void (*done)(void *arg, int ok, time_t start, time_t end, long retry_after,
				   const char *err),
		      void *arg);

/* The same from the certificate's RFC 9773 certID (crypto_cert_info()'s
 * ari_cert_id; "" fails as "no ARI id"), for a caller that keeps the id and
 * not the PEM. */
int acme_renewal_info_id(struct acme_client *c, const char *cert_id,
			 void (*done)(void *arg, int ok, time_t start, time_t end, long retry_after,
				      const char *err),
			 void *arg);

/* Revokes the first certificate of <cert_pem> with the account key (reason
 * unspecified). done(arg, ok, err) runs once on the loop thread, never inside this
 * call. Returns 0 if started. */
int acme_revoke(struct acme_client *c, const char *cert_pem,
		void (*done)(void *arg, int ok, const char *err), void *arg);

/* 1 when the directory was loaded and offers renewalInfo, else 0. */
int acme_has_ari(const struct acme_client *c);

/* Account URL (kid) once the account is known, else NULL. Owned by <c>. */
const char *acme_account_url(const struct acme_client *c);

/* Number of orders, renewal-info and revoke operations in flight. */
size_t acme_client_pending(const struct acme_client *c);

/* Free the members of <r> / <p> and reset them; NULL ok. key_pem is cleansed. */
void acme_result_clear(struct acme_result *r);
void acme_problem_clear(struct acme_problem *p);

#endif
