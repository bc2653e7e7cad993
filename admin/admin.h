/* Admin HTTP API (Kong acme plugin compatible, SPEC §5) on libmicrohttpd,
 * driven from the libev loop: no second thread touches agent state.
 *
 * The admin layer knows nothing of the certificate manager: it calls it through
 * struct admin_ops. Requests the manager answers later (issue, sanity test,
 * delete) are suspended in MHD and answered with admin_reply_*(). */
#ifndef ACME_SPOA_ADMIN_H
#define ACME_SPOA_ADMIN_H

#include <stddef.h>
#include <ev.h>
#include <jansson.h>

#include "lib/metrics.h"

struct admin;
/* One HTTP request waiting for an answer (connection suspended in MHD). It stays
 * valid until answered with admin_reply_*(), even when the client went away or
 * the admin was freed meanwhile. */
struct admin_req;

/* Answers the waiting request <req> with <status> and the body
 * {"message": <message>}, and resumes its connection. Must be called exactly
 * once per request handed to the ops; <req> is invalid afterwards. */
void admin_reply_message(struct admin_req *req, unsigned status, const char *message);

/* Answers the waiting request <req> with <status> and the JSON <body>, whose
 * reference is stolen (may be NULL: empty object). Same rules as
 * admin_reply_message(). */
void admin_reply_json(struct admin_req *req, unsigned status, json_t *body);

/* The certificate manager as the admin API sees it. Every member may be NULL:
 * the route then answers 501 (health NULL counts as healthy, metrics NULL gives
 * an empty page). <host> arguments are valid (admin_host_valid) and lower-case. */
struct admin_ops {
	/* POST /acme host=H: issue or renew; answer later (or at once) via
	 * admin_reply_* (201/400/500). */
	void (*issue)(void *ctx, const char *host, struct admin_req *req);
	/* POST /acme host=H test_http_challenge_flow=true: answer 200 or 4xx/5xx
	 * via admin_reply_*. */
	void (*sanity_test)(void *ctx, const char *host, struct admin_req *req);
	/* PATCH /acme: start a renewal pass in the background, return at once. */
	void (*renew_all)(void *ctx);
	/* New reference to an array of CERT objects (NULL => 500). */
	json_t *(*cert_list)(void *ctx, int invalid_only);
	/* New reference to a CERT object, or NULL => 404. */
	json_t *(*cert_get)(void *ctx, const char *host);
	/* DELETE /acme/certificates/H[?revoke=true]: answer via admin_reply_*. */
	void (*cert_delete)(void *ctx, const char *host, int revoke, struct admin_req *req);
	/* Appends Prometheus text to <out>. */
	void (*metrics)(void *ctx, struct metrics_buf *out);
	/* Returns 1 when healthy. May set *<detail> to a new object naming what is
	 * down (e.g. {"storage":"down"}); the admin releases it. */
	int (*health)(void *ctx, json_t **detail);
};

struct admin_conf {
	const char *listen;	/* "127.0.0.1:8001", "[::1]:8001", port 0 = any free port */
	const char *token;	/* Bearer token required on every route but /healthz; NULL = none */
	size_t max_body;	/* request body limit in bytes; 0 => 64 KiB */
	unsigned max_conns;	/* concurrent connections; 0 => 256 */
	unsigned conn_timeout;	/* idle seconds before a connection is closed; 0 => 10 */
};

/* Starts the admin API on <conf>->listen, driven by <loop>. <ops> and <ctx> must
 * outlive the admin; <conf> strings are copied. Returns the admin, or NULL with
 * the reason in <err>. Free with admin_free(). */
struct admin *admin_new(struct ev_loop *loop, const struct admin_conf *conf,
			const struct admin_ops *ops, void *ctx, char *err, size_t errlen);

/* Replaces the Bearer token (copied; NULL or "" = no token). For SIGHUP. */
void admin_set_token(struct admin *a, const char *token);

/* Returns the TCP port <a> is bound to. */
int admin_port(const struct admin *a);

/* Stops listening, closes every connection and frees <a>. Requests still held
 * by the ops stay valid until answered (the answer then goes nowhere).
 * Accepts NULL. */
void admin_free(struct admin *a);

/* Returns 1 when <host> is a syntactically valid DNS name for a certificate:
 * LDH labels of 1..63 characters (no leading/trailing hyphen), at most 253
 * characters, at least two labels, optional leading "*.", not an IP literal.
 * Upper-case letters are accepted. Returns 0 otherwise. */
int admin_host_valid(const char *host);

/* Checks <host> with admin_host_valid() and writes it lower-cased to <out>
 * (<outlen> >= 254 always suffices). Returns 0, or -1 when invalid. */
int admin_host_normalize(const char *host, char *out, size_t outlen);

#endif
