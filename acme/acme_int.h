/* SPDX-License-Identifier: Apache-2.0 */
/* Internals of the ACME client shared by acme.c, acme_order.c, acme_ari.c and
 * acme_parse.c, and the pure parsers the unit tests feed fixtures to. */
#ifndef ACME_SPOA_ACME_INT_H
#define ACME_SPOA_ACME_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <time.h>

#include <ev.h>

#include "acme/acme.h"
#include "acme/http.h"

#define ACME_ERR_PREFIX "urn:ietf:params:acme:error:"
/* badNonce retries per request. Every poll is a signed POST too, so an order
 * makes dozens: at Pebble's 50% rejection, 10 retries lost about one order
 * in twenty; 20 make it one in millions and still end a CA that rejects all. */
#define ACME_MAX_BADNONCE_RETRIES 20
#define ACME_HTTP_TIMEOUT_MS 30000L
#define ACME_NONCE_POOL 64
#define ACME_ZEROSSL_EAB_URL "https://api.zerossl.com/acme/eab-credentials-email"

/* ---- pure parsers (acme_parse.c) ---- */

struct acme_dir {
	char *new_nonce, *new_account, *new_order, *revoke_cert, *key_change, *renewal_info;
	char *tos;             /* meta.termsOfService or NULL */
	int eab_required;      /* meta.externalAccountRequired */
	char **profiles;       /* names of meta.profiles */
	size_t nprofiles;
};

struct acme_order_obj {
	char *status;          /* never NULL after a successful parse */
	char *finalize, *certificate;
	char **authz;
	size_t nauthz;
	int has_error;
	struct acme_problem error;
};

struct acme_authz_obj {
	char *status;          /* never NULL after a successful parse */
	char *identifier;      /* identifier value */
	int wildcard;          /* "wildcard": true (the order named "*.<identifier>") */
	int has_http01;        /* the challenge of the asked type (http-01 unless
				* acme_parse_authz_type()) is there: the fields below
				* are set only when 1 */
	char *chall_url, *chall_token, *chall_status;
	int has_error;         /* the http-01 challenge carries an error */
	struct acme_problem error;
};

/* Fills <out> from a CA error response: a problem document (RFC 7807) gives type,
 * detail and flattened subproblems; anything else gives a detail naming the status
 * and the start of the body. <retry_after> is the header value or NULL. Returns 0
 * when <body> was a problem document, -1 otherwise (<out> is filled either way). */
int acme_problem_parse(long status, const char *body, size_t len, const char *retry_after,
		       struct acme_problem *out);

/* Sets <p> to a local error: status 0 or <status>, no type, <detail>. */
void acme_problem_vset(struct acme_problem *p, long status, const char *fmt, va_list ap);
void acme_problem_set(struct acme_problem *p, long status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Deep copy of <src> into <dst> (cleared first). Returns 0 or -1 on OOM. */
int acme_problem_copy(struct acme_problem *dst, const struct acme_problem *src);

/* 1 when <p> has type urn:ietf:params:acme:error:<short>. */
int acme_problem_is(const struct acme_problem *p, const char *short_type);

/* Parse a directory / order / authorization object. Return 0, or -1 with a message
 * naming the bad field in <err> (nothing to clear then). Clear with the _clear(). */
int acme_parse_directory(const char *body, size_t len, struct acme_dir *d, char *err, size_t errlen);
void acme_dir_clear(struct acme_dir *d);
int acme_parse_order(const char *body, size_t len, struct acme_order_obj *o, char *err, size_t errlen);
void acme_order_obj_clear(struct acme_order_obj *o);
int acme_parse_authz(const char *body, size_t len, struct acme_authz_obj *a, char *err, size_t errlen);
/* The same, for the challenge of type <want> ("http-01", "dns-01"). */
int acme_parse_authz_type(const char *body, size_t len, const char *want, struct acme_authz_obj *a,
			  char *err, size_t errlen);
void acme_authz_obj_clear(struct acme_authz_obj *a);

/* RFC 9773 renewalInfo body: suggestedWindow start/end into <start>/<end>.
 * Returns 0, or -1 with a message (missing fields, end before start, bad dates). */
int acme_parse_renewal_info(const char *body, size_t len, time_t *start, time_t *end,
			    char *err, size_t errlen);

/* RFC 3339 date-time ("2025-01-02T04:00:00Z", fractions and offsets allowed). */
int acme_parse_rfc3339(const char *s, time_t *out);

/* URLs of the Link header values in <links> whose rel is <rel> (values may hold
 * several comma-separated links). Returns the count and a malloc'd array of
 * malloc'd strings in *<out> (NULL when 0), or -1 on OOM. Free with acme_strv_free. */
int acme_links_find(const char *const *links, size_t nlinks, const char *rel, char ***out);
void acme_strv_free(char **v, size_t n);

/* ZeroSSL EAB answer {"success":true,"eab_kid":..,"eab_hmac_key":..}. */
int acme_parse_zerossl_eab(const char *body, size_t len, char **kid, char **hmac,
			   char *err, size_t errlen);

/* 1 when <directory_url>'s host is ZeroSSL's ACME server. */
int acme_is_zerossl(const char *directory_url);

/* ---- client internals (acme.c) ---- */

enum acme_op_kind {
	ACME_OP_ACCOUNT = 0,
	ACME_OP_ORDER,
	ACME_OP_ARI,
	ACME_OP_REVOKE,
	ACME_OP__MAX
};

struct acme_op;

struct acme_op_vt {
	/* directory (and account when need_account) ready: <prob> NULL; or failed */
	void (*resume)(struct acme_op *op, const struct acme_problem *prob);
	/* deferred completion: unlink from the client, call the user callback, free */
	void (*complete)(struct acme_op *op);
	/* free without calling anything (client teardown) */
	void (*destroy)(struct acme_op *op);
};

typedef void acme_post_cb(struct acme_op *op, const struct http_response *res, const char *err);

struct acme_op {
	struct acme_op *prev, *next;   /* client's list */
	struct acme_op *wnext;         /* waiting for directory/account */
	struct acme_client *c;         /* NULL once unlinked */
	struct ev_loop *loop;
	const struct acme_op_vt *vt;
	enum acme_op_kind kind;
	int need_account;
	int waiting;
	int inflight;                  /* one request at most */
	ev_timer timer;                /* poll delays, then the deferred completion */
	void (*timer_fn)(struct acme_op *op);
	/* the signed POST in progress */
	char *post_url, *post_payload;
	int post_pem, post_tries;
	int unreachable;               /* the last POST got no answer from the CA */
	int repost;                    /* waits for the account, then resends the POST */
	int acct_retried;              /* resent once after accountDoesNotExist */
	acme_post_cb *post_cb;
};

struct acme_client {
	struct ev_loop *loop;
	struct http_client *http;
	char *directory_url, *email, *eab_kid, *eab_hmac_key, *preferred_chain, *profile;
	int tos_accepted;
	long timeout_ms;               /* of each request to the CA */
	const char *chall[2];          /* challenge types in order of preference */
	size_t nchall;
	enum crypto_key_type cert_key_type;
	int rsa_bits;
	EVP_PKEY *account_key;
	struct acme_hooks hooks;
	void *hooks_arg;
	struct acme_dns_hooks dns;     /* present NULL: no dns-01 solver */
	void *dns_arg;

	int dir_state;                 /* 0 none, 1 loading, 2 loaded */
	struct acme_dir dir;
	int acct_state;                /* 0 none, 1 loading, 2 ready */
	char *kid;
	struct acme_op *acct_op;

	char *nonces[ACME_NONCE_POOL];
	size_t nnonces;

	struct acme_op *ops;           /* every live op */
	struct acme_op *waiters;
	size_t nuser_ops;
};

/* Links <op> into <c> and initialises its watcher. */
void acme_op_init(struct acme_client *c, struct acme_op *op, enum acme_op_kind kind,
		  const struct acme_op_vt *vt, int need_account);
/* Unlinks <op> from its client (idempotent). */
void acme_op_unlink(struct acme_op *op);
/* Frees what acme_op_init and the POST machinery own (not <op> itself). */
void acme_op_release(struct acme_op *op);
/* Queues <op> until the directory (and account) are ready; resume is then called,
 * possibly from inside this call. */
void acme_op_wait_ready(struct acme_op *op);
/* Runs <fn> after <delay> seconds on <op>'s timer. */
void acme_op_later(struct acme_op *op, double delay, void (*fn)(struct acme_op *op));
/* Schedules op->vt->complete on the next loop iteration. */
void acme_op_finish(struct acme_op *op);
/* Signed POST of <payload> (NULL: POST-as-GET) to <url> with the account kid (or
 * the jwk when no kid yet), retrying badNonce. <pem> asks for a PEM chain. <cb> gets
 * the CA response, or err when no response came. Returns -1 with <err> if it could
 * not start (cb not called). */
int acme_op_post(struct acme_op *op, const char *url, const char *payload, int pem,
		 acme_post_cb *cb, char *err, size_t errlen);

/* Order / ARI / revoke entry points live in acme_order.c / acme_ari.c. */
void acme_account_start(struct acme_client *c);

#endif
