/* SPDX-License-Identifier: Apache-2.0 */
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

#include "lib/addr.h"
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
 * an empty page). <host> arguments are valid (host_normalize() with HOST_WILDCARD:
 * a DNS name, optionally "*."-prefixed, never an IP address) and lower-case. */
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
	/* The same answered later (what memory does not hold is read from
	 * storage): via admin_reply_*; used instead of cert_list when set. */
	void (*cert_list_async)(void *ctx, int invalid_only, struct admin_req *req);
	/* New reference to a CERT object, or NULL => 404. */
	json_t *(*cert_get)(void *ctx, const char *host);
	/* GET /acme/certificates/H answered later (what memory does not hold
	 * is read from storage): via admin_reply_*; used instead of cert_get
	 * when set. */
	void (*cert_get_async)(void *ctx, const char *host, struct admin_req *req);
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
	const struct addr *addr;	/* <listen> already parsed (config), or NULL */
	const char *token;	/* Bearer token required on every route but /healthz; NULL = none */
	size_t max_body;	/* request body limit in bytes; 0 => 64 KiB */
	unsigned max_conns;	/* concurrent connections; 0 => 256 */
	unsigned conn_timeout;	/* idle seconds before a connection is closed; 0 => 10 */
};

/* Starts the admin API on <conf>->addr, or when that is NULL on <conf>->listen
 * (read by addr_parse() with ADDR_LISTEN: "*:port", ":port" and port 0 allowed),
 * driven by <loop>. <ops> and <ctx> must outlive the admin; <conf> is not kept.
 * Returns the admin, or NULL with the reason in <err>. Free with admin_free(). */
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

#endif
