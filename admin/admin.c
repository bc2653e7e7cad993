/* SPDX-License-Identifier: Apache-2.0 */
/* Admin HTTP API on libmicrohttpd, driven from libev (see admin/admin.h).
 *
 * MHD runs with MHD_USE_EPOLL and no thread of its own: its epoll fd is watched
 * by an ev_io, its next timeout by an ev_timer, and MHD_run() is called after
 * each event, so every callback runs on the agent's loop thread.
 *
 * Request lifetime: a struct admin_req is created on MHD's first call for a
 * request and holds one reference for the connection (dropped in the
 * completion callback) and, while the ops hold it, one for the ops (dropped by
 * admin_reply_*). An answer that arrives after the client left, or after
 * admin_free(), is therefore dropped without touching freed memory. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <microhttpd.h>

#include "admin/admin.h"
#include "admin/admin_int.h"
#include "lib/addr.h"
#include "lib/host.h"
#include "lib/log.h"

#define ADMIN_DEF_MAX_BODY	(64 * 1024)
#define ADMIN_DEF_MAX_CONNS	256
#define ADMIN_DEF_TIMEOUT	10
/* a chunked body past the limit is read and dropped up to this, then cut */
#define ADMIN_DISCARD_MAX	(16 * 1024 * 1024)

enum admin_route {
	ADMIN_ROUTE_NONE = 0,
	ADMIN_ROUTE_ACME,
	ADMIN_ROUTE_CERTS,
	ADMIN_ROUTE_CERT,
	ADMIN_ROUTE_METRICS,
	ADMIN_ROUTE_HEALTHZ,
	ADMIN_ROUTE__MAX
};

/* Methods each route accepts, and the Allow header listing them. */
static const struct {
	const char *methods[3];
	const char *allow;
} admin_route_methods[ADMIN_ROUTE__MAX] = {
	[ADMIN_ROUTE_ACME] = { { "POST", "PATCH" }, "POST, PATCH" },
	[ADMIN_ROUTE_CERTS] = { { "GET", "HEAD" }, "GET, HEAD" },
	[ADMIN_ROUTE_CERT] = { { "GET", "HEAD", "DELETE" }, "GET, HEAD, DELETE" },
	[ADMIN_ROUTE_METRICS] = { { "GET", "HEAD" }, "GET, HEAD" },
	[ADMIN_ROUTE_HEALTHZ] = { { "GET", "HEAD" }, "GET, HEAD" },
};

enum admin_req_state {
	ADMIN_REQ_READING = 0,	/* receiving headers and body */
	ADMIN_REQ_WAITING,	/* handed to the ops, connection suspended */
	ADMIN_REQ_ANSWERED,	/* ops answered, response waits to be queued */
	ADMIN_REQ_DONE,		/* response queued */
	ADMIN_REQ__MAX
};

struct admin {
	struct ev_loop *loop;
	struct MHD_Daemon *mhd;
	ev_io io;
	ev_timer timer;
	const struct admin_ops *ops;
	void *ctx;
	char *token;
	size_t max_body;
	int port;
	struct admin_req *waiting;	/* requests held by the ops */
};

struct admin_req {
	struct admin *admin;		/* NULL once the admin is freed */
	struct MHD_Connection *conn;	/* NULL once MHD completed the request */
	int refs;
	enum admin_req_state state;
	int in_handler;			/* ops called from within the access handler */
	int suspended;
	struct admin_req *prev, *next;	/* in admin->waiting */
	enum admin_route route;
	char method[8];
	char host[ADMIN_HOST_MAX + 2];	/* raw host from the path */
	char *body;
	size_t body_len, body_seen;
	int too_large;
	unsigned status;
	struct MHD_Response *resp;	/* answer waiting to be queued */
};

static void admin_kick(struct admin *a);

/* ---- responses ---- */

/* Builds a response from the JSON <body> (stolen). */
static struct MHD_Response *admin_resp_json(json_t *body)
{
	struct MHD_Response *resp;
	char *s;

	s = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(body);
	if (!s)
		s = strdup("{}");
	if (!s)
		return NULL;
	resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_COPY);
	free(s);
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	return resp;
}

static struct MHD_Response *admin_resp_message(const char *message)
{
	return admin_resp_json(json_pack("{s:s}", "message", message ? message : ""));
}

/* Queues <resp> (consumed) on <r>'s connection. */
static enum MHD_Result admin_queue(struct admin_req *r, unsigned status,
				   struct MHD_Response *resp)
{
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	r->state = ADMIN_REQ_DONE;
	log_debug("admin: %s route=%d status=%u", r->method, (int)r->route, status);
	return ret;
}

static enum MHD_Result admin_queue_message(struct admin_req *r, unsigned status,
					   const char *message)
{
	return admin_queue(r, status, admin_resp_message(message));
}

/* ---- request lifetime ---- */

static void admin_req_unref(struct admin_req *r)
{
	if (--r->refs > 0)
		return;
	if (r->resp)
		MHD_destroy_response(r->resp);
	free(r->body);
	free(r);
}

static void admin_req_unlink(struct admin_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else if (r->admin && r->admin->waiting == r)
		r->admin->waiting = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

/* Hands <r> to the ops: it gains a reference the ops drop with admin_reply_*. */
static void admin_req_hold(struct admin_req *r)
{
	struct admin *a = r->admin;

	r->refs++;
	r->state = ADMIN_REQ_WAITING;
	r->in_handler = 1;
	r->next = a->waiting;
	if (a->waiting)
		a->waiting->prev = r;
	a->waiting = r;
}

/* After the ops call: answer now if they already did, else suspend. */
static enum MHD_Result admin_req_settle(struct admin_req *r)
{
	struct MHD_Response *resp;

	r->in_handler = 0;
	if (r->state == ADMIN_REQ_ANSWERED) {
		resp = r->resp;
		r->resp = NULL;
		return admin_queue(r, r->status, resp);
	}
	MHD_suspend_connection(r->conn);
	r->suspended = 1;
	return MHD_YES;
}

void admin_reply_json(struct admin_req *req, unsigned status, json_t *body)
{
	struct admin *a;

	if (!req) {
		json_decref(body);
		return;
	}
	a = req->admin;
	if (req->state != ADMIN_REQ_WAITING) {
		log_warn("admin: request answered twice, answer dropped");
		json_decref(body);
		return;
	}
	admin_req_unlink(req);
	if (!a || !req->conn) {
		/* the client or the admin went away: nobody to answer */
		json_decref(body);
		req->state = ADMIN_REQ_DONE;
		admin_req_unref(req);
		return;
	}
	req->resp = admin_resp_json(body);
	req->status = status;
	req->state = ADMIN_REQ_ANSWERED;
	if (!req->resp) {
		log_err("admin: out of memory building a response");
		req->resp = NULL;
	}
	if (req->suspended) {
		/* MHD calls the access handler again, which queues the response */
		req->suspended = 0;
		MHD_resume_connection(req->conn);
		admin_kick(a);
	}
	admin_req_unref(req);
}

void admin_reply_message(struct admin_req *req, unsigned status, const char *message)
{
	admin_reply_json(req, status, json_pack("{s:s}", "message", message ? message : ""));
}

/* ---- body and parameters ---- */

/* Keeps or drops <len> body bytes. Returns -1 to cut the connection. */
static int admin_req_body(struct admin_req *r, const char *data, size_t len)
{
	size_t max = r->admin->max_body;
	char *p;

	r->body_seen += len;
	if (r->body_seen > max) {
		r->too_large = 1;
		free(r->body);
		r->body = NULL;
		r->body_len = 0;
		return r->body_seen > ADMIN_DISCARD_MAX ? -1 : 0;
	}
	if (r->route != ADMIN_ROUTE_ACME)
		return 0;	/* only POST /acme reads its body */
	p = realloc(r->body, r->body_len + len + 1);
	if (!p)
		return -1;
	memcpy(p + r->body_len, data, len);
	r->body = p;
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return 0;
}

/* Returns 1 when the query argument <name> is "true". */
static int admin_query_true(struct admin_req *r, const char *name)
{
	const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);

	return v && strcasecmp(v, "true") == 0;
}

/* ---- routes ---- */

static enum MHD_Result admin_do_post_acme(struct admin_req *r)
{
	struct admin *a = r->admin;
	struct admin_params pp;
	const char *ctype, *msg = NULL, *q;
	char host[ADMIN_HOST_MAX + 1];
	size_t clen;

	memset(&pp, 0, sizeof(pp));
	ctype = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
					    MHD_HTTP_HEADER_CONTENT_TYPE);
	clen = ctype ? strcspn(ctype, ";") : 0;
	while (clen > 0 && ctype[clen - 1] == ' ')
		clen--;
	if (r->body_len == 0) {
		/* nothing to parse: parameters may come in the query string */
	} else if (ctype && clen == 16 && strncasecmp(ctype, "application/json", 16) == 0) {
		if (admin_parse_json(r->body, r->body_len, &pp, &msg))
			return admin_queue_message(r, MHD_HTTP_BAD_REQUEST, msg);
	} else if (!ctype ||
		   (clen == 33 && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0) ||
		   (clen == 19 && strncasecmp(ctype, "multipart/form-data", 19) == 0)) {
		/* a body without a type is read as a form, as before */
		if (!ctype)
			MHD_set_connection_value(r->conn, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_TYPE,
						 MHD_HTTP_POST_ENCODING_FORM_URLENCODED);
		if (admin_parse_form(r->conn, r->body, r->body_len, &pp, &msg))
			return admin_queue_message(r, MHD_HTTP_BAD_REQUEST, msg);
	} else {
		return admin_queue_message(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
			"Content-Type must be application/json, application/x-www-form-urlencoded "
			"or multipart/form-data");
	}
	if (pp.have_host == 0) {
		q = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "host");
		if (q && *q) {
			snprintf(pp.host, sizeof(pp.host), "%s", q);
			pp.have_host = strlen(q) <= ADMIN_HOST_MAX ? 1 : -1;
		}
		if (admin_query_true(r, "test_http_challenge_flow"))
			pp.test_flow = 1;
	}
	if (pp.have_host != 1)
		return admin_queue_message(r, MHD_HTTP_BAD_REQUEST,
					   "host must be provided and containing a single domain");
	if (host_normalize(pp.host, host, sizeof(host), HOST_WILDCARD) == -1)
		return admin_queue_message(r, MHD_HTTP_BAD_REQUEST,
					   "host is not a valid domain name");
	if ((pp.test_flow && !a->ops->sanity_test) || (!pp.test_flow && !a->ops->issue))
		return admin_queue_message(r, MHD_HTTP_NOT_IMPLEMENTED, "Not implemented");
	log_info("admin: host=%s %s requested", host,
		 pp.test_flow ? "sanity test" : "issuance");
	admin_req_hold(r);
	if (pp.test_flow)
		a->ops->sanity_test(a->ctx, host, r);
	else
		a->ops->issue(a->ctx, host, r);
	return admin_req_settle(r);
}

static enum MHD_Result admin_do_cert(struct admin_req *r)
{
	struct admin *a = r->admin;
	char host[ADMIN_HOST_MAX + 1];
	json_t *cert;

	if (host_normalize(r->host, host, sizeof(host), HOST_WILDCARD) == -1)
		return admin_queue_message(r, MHD_HTTP_BAD_REQUEST,
					   "host is not a valid domain name");
	if (strcmp(r->method, "DELETE") == 0) {
		if (!a->ops->cert_delete)
			return admin_queue_message(r, MHD_HTTP_NOT_IMPLEMENTED, "Not implemented");
		log_info("admin: host=%s delete requested", host);
		admin_req_hold(r);
		a->ops->cert_delete(a->ctx, host, admin_query_true(r, "revoke"), r);
		return admin_req_settle(r);
	}
	if (a->ops->cert_get_async) {
		admin_req_hold(r);
		a->ops->cert_get_async(a->ctx, host, r);
		return admin_req_settle(r);
	}
	if (!a->ops->cert_get)
		return admin_queue_message(r, MHD_HTTP_NOT_IMPLEMENTED, "Not implemented");
	cert = a->ops->cert_get(a->ctx, host);
	if (!cert)
		return admin_queue_message(r, MHD_HTTP_NOT_FOUND, "Not found");
	return admin_queue(r, MHD_HTTP_OK, admin_resp_json(json_pack("{s:o}", "data", cert)));
}

static enum MHD_Result admin_do_metrics(struct admin_req *r)
{
	struct admin *a = r->admin;
	struct metrics_buf b = {0};
	struct MHD_Response *resp;

	if (a->ops->metrics)
		a->ops->metrics(a->ctx, &b);
	resp = MHD_create_response_from_buffer(b.len, b.data ? b.data : (char *)"",
					       MHD_RESPMEM_MUST_COPY);
	metrics_buf_free(&b);
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
					"text/plain; version=0.0.4; charset=utf-8");
	return admin_queue(r, MHD_HTTP_OK, resp);
}

static enum MHD_Result admin_do_healthz(struct admin_req *r)
{
	struct admin *a = r->admin;
	json_t *detail = NULL;
	int ok = 1;

	if (a->ops->health)
		ok = a->ops->health(a->ctx, &detail) == 1;
	if (ok) {
		json_decref(detail);
		return admin_queue(r, MHD_HTTP_OK,
				   admin_resp_json(json_pack("{s:s}", "status", "ok")));
	}
	if (!detail)
		detail = json_object();
	log_warn("admin: health check failed");
	return admin_queue(r, MHD_HTTP_SERVICE_UNAVAILABLE,
			   admin_resp_json(json_pack("{s:s,s:o}", "status", "unavailable",
						     "down", detail)));
}

/* Called once the whole request is in. */
static enum MHD_Result admin_dispatch(struct admin_req *r)
{
	struct admin *a = r->admin;
	json_t *list;

	if (r->too_large)
		return admin_queue_message(r, MHD_HTTP_CONTENT_TOO_LARGE,
					   "Request body too large");
	switch (r->route) {
	case ADMIN_ROUTE_ACME:
		if (strcmp(r->method, "POST") == 0)
			return admin_do_post_acme(r);
		if (!a->ops->renew_all)
			return admin_queue_message(r, MHD_HTTP_NOT_IMPLEMENTED, "Not implemented");
		log_info("admin: renewal pass requested");
		a->ops->renew_all(a->ctx);
		return admin_queue_message(r, MHD_HTTP_ACCEPTED,
					   "Renewal process started successfully");
	case ADMIN_ROUTE_CERTS:
		if (a->ops->cert_list_async) {
			admin_req_hold(r);
			a->ops->cert_list_async(a->ctx, admin_query_true(r, "invalid_only"), r);
			return admin_req_settle(r);
		}
		if (!a->ops->cert_list)
			return admin_queue_message(r, MHD_HTTP_NOT_IMPLEMENTED, "Not implemented");
		list = a->ops->cert_list(a->ctx, admin_query_true(r, "invalid_only"));
		if (!list)
			return admin_queue_message(r, MHD_HTTP_INTERNAL_SERVER_ERROR,
						   "Cannot list certificates");
		return admin_queue(r, MHD_HTTP_OK, admin_resp_json(json_pack("{s:o}", "data", list)));
	case ADMIN_ROUTE_CERT:
		return admin_do_cert(r);
	case ADMIN_ROUTE_METRICS:
		return admin_do_metrics(r);
	case ADMIN_ROUTE_HEALTHZ:
		return admin_do_healthz(r);
	default:
		return admin_queue_message(r, MHD_HTTP_NOT_FOUND, "Not found");
	}
}

/* Maps <url> to a route; for a certificate, copies the raw host to <r>. */
static enum admin_route admin_route_of(struct admin_req *r, const char *url)
{
	static const char certs[] = "/acme/certificates";
	size_t len = strlen(url);
	const char *host;

	while (len > 1 && url[len - 1] == '/')
		len--;
	if (len == 5 && strncmp(url, "/acme", 5) == 0)
		return ADMIN_ROUTE_ACME;
	if (len == 8 && strncmp(url, "/metrics", 8) == 0)
		return ADMIN_ROUTE_METRICS;
	if (len == 8 && strncmp(url, "/healthz", 8) == 0)
		return ADMIN_ROUTE_HEALTHZ;
	if (len < sizeof(certs) - 1 || strncmp(url, certs, sizeof(certs) - 1) != 0)
		return ADMIN_ROUTE_NONE;
	if (len == sizeof(certs) - 1)
		return ADMIN_ROUTE_CERTS;
	if (url[sizeof(certs) - 1] != '/')
		return ADMIN_ROUTE_NONE;
	host = url + sizeof(certs);
	len -= sizeof(certs);
	if (memchr(host, '/', len))
		return ADMIN_ROUTE_NONE;
	/* too long: keep a marker the host check refuses */
	if (len > ADMIN_HOST_MAX)
		len = 0;
	memcpy(r->host, host, len);
	r->host[len] = '\0';
	return ADMIN_ROUTE_CERT;
}

static int admin_auth_ok(struct admin *a, struct MHD_Connection *c)
{
	const char *h;

	if (!a->token)
		return 1;
	h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	return admin_token_equal(h, a->token);
}

/* First call for a request: route, method, auth and declared size. Answers at
 * once (without reading the body) when one of them fails. */
static enum MHD_Result admin_begin(struct admin_req *r, const char *url, const char *method)
{
	struct admin *a = r->admin;
	struct MHD_Response *resp;
	const char *cl;
	size_t i;
	int allowed = 0;

	snprintf(r->method, sizeof(r->method), "%s", method);
	r->route = admin_route_of(r, url);
	if (r->route != ADMIN_ROUTE_HEALTHZ && !admin_auth_ok(a, r->conn)) {
		log_warn("admin: %s %s refused: missing or wrong token", r->method,
			 r->route == ADMIN_ROUTE_NONE ? "(unknown)" : "route");
		resp = admin_resp_message("Unauthorized");
		if (resp)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
		return admin_queue(r, MHD_HTTP_UNAUTHORIZED, resp);
	}
	if (r->route == ADMIN_ROUTE_NONE)
		return admin_queue_message(r, MHD_HTTP_NOT_FOUND, "Not found");
	for (i = 0; i < 3; i++) {
		const char *m = admin_route_methods[r->route].methods[i];

		if (m && strcmp(m, method) == 0)
			allowed = 1;
	}
	if (!allowed) {
		resp = admin_resp_message("Method not allowed");
		if (resp)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
						admin_route_methods[r->route].allow);
		return admin_queue(r, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
	}
	cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
					 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		char *end;
		unsigned long long n;

		errno = 0;
		n = strtoull(cl, &end, 10);
		if (errno || n > a->max_body) {
			r->too_large = 1;
			return admin_queue_message(r, MHD_HTTP_CONTENT_TOO_LARGE,
						   "Request body too large");
		}
	}
	return MHD_YES;
}

static enum MHD_Result cb_admin_access(void *cls, struct MHD_Connection *conn,
				       const char *url, const char *method,
				       const char *version, const char *upload_data,
				       size_t *upload_data_size, void **con_cls)
{
	struct admin *a = cls;
	struct admin_req *r = *con_cls;
	struct MHD_Response *resp;

	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->admin = a;
		r->conn = conn;
		r->refs = 1;
		*con_cls = r;
		return admin_begin(r, url, method);
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (r->state != ADMIN_REQ_READING)
			return MHD_YES;
		return admin_req_body(r, upload_data, n) ? MHD_NO : MHD_YES;
	}
	switch (r->state) {
	case ADMIN_REQ_READING:
		return admin_dispatch(r);
	case ADMIN_REQ_ANSWERED:
		resp = r->resp;
		r->resp = NULL;
		return resp ? admin_queue(r, r->status, resp) : MHD_NO;
	default:
		return MHD_YES;
	}
}

static void cb_admin_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			       enum MHD_RequestTerminationCode toe)
{
	struct admin_req *r = *con_cls;

	if (!r)
		return;
	*con_cls = NULL;
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
		log_debug("admin: %s request ended early (code %d)", r->method, (int)toe);
	r->conn = NULL;
	r->suspended = 0;
	admin_req_unref(r);
}

__attribute__((format(printf, 2, 0)))
static void cb_admin_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	log_warn("admin: mhd: %s", line);
}

/* ---- libev glue ---- */

/* Runs MHD and re-arms the timer with MHD's next deadline. */
static void admin_run(struct admin *a)
{
	MHD_UNSIGNED_LONG_LONG ms;

	MHD_run(a->mhd);
	ev_timer_stop(a->loop, &a->timer);
	if (MHD_get_timeout(a->mhd, &ms) == MHD_YES) {
		ev_timer_set(&a->timer, (double)ms / 1000.0, 0.);
		ev_timer_start(a->loop, &a->timer);
	}
}

static void cb_admin_io(struct ev_loop *loop, ev_io *w, int revents)
{
	admin_run(w->data);
}

static void cb_admin_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	admin_run(w->data);
}

/* Makes MHD run on the next loop iteration (never from inside MHD). */
static void admin_kick(struct admin *a)
{
	ev_timer_stop(a->loop, &a->timer);
	ev_timer_set(&a->timer, 0., 0.);
	ev_timer_start(a->loop, &a->timer);
}

struct admin *admin_new(struct ev_loop *loop, const struct admin_conf *conf,
			const struct admin_ops *ops, void *ctx, char *err, size_t errlen)
{
	struct admin *a = NULL, *ret = NULL;
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	char shown[300], why[160];
	socklen_t sslen;
	uint16_t port;

	if (conf->addr) {
		/* parsed by the config: only the name, if any, is left to resolve */
		addr_format(conf->addr, shown, sizeof(shown));
		if (addr_sockaddr(conf->addr, 1, &ss, &sslen, why, sizeof(why)) == -1) {
			snprintf(err, errlen, "admin.listen: %s: %s", shown, why);
			goto out;
		}
	} else {
		snprintf(shown, sizeof(shown), "%s", conf->listen ? conf->listen : "");
		if (admin_parse_listen(conf->listen, &ss, err, errlen))
			goto out;
	}
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {
		snprintf(err, errlen, "admin.listen: %s: not a TCP address", shown);
		goto out;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "admin: out of memory");
		goto out;
	}
	a->loop = loop;
	a->ops = ops;
	a->ctx = ctx;
	a->max_body = conf->max_body ? conf->max_body : ADMIN_DEF_MAX_BODY;
	admin_set_token(a, conf->token);
	if (ss.ss_family == AF_INET6) {
		flags |= MHD_USE_IPv6;
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	} else {
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	a->mhd = MHD_start_daemon(flags, port, NULL, NULL, cb_admin_access, a,
		MHD_OPTION_EXTERNAL_LOGGER, cb_admin_mhd_log, a,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_CONNECTION_LIMIT,
		(unsigned int)(conf->max_conns ? conf->max_conns : ADMIN_DEF_MAX_CONNS),
		MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)(conf->conn_timeout ? conf->conn_timeout : ADMIN_DEF_TIMEOUT),
		MHD_OPTION_NOTIFY_COMPLETED, cb_admin_completed, a,
		MHD_OPTION_END);
	if (!a->mhd) {
		snprintf(err, errlen, "admin.listen: %s: cannot listen (address in use?)", shown);
		goto out;
	}
	info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info) {
		snprintf(err, errlen, "admin: libmicrohttpd has no epoll support");
		goto out;
	}
	ev_io_init(&a->io, cb_admin_io, info->epoll_fd, EV_READ);
	a->io.data = a;
	ev_io_start(loop, &a->io);
	ev_init(&a->timer, cb_admin_timer);
	a->timer.data = a;
	info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_BIND_PORT);
	a->port = info ? info->port : port;
	admin_run(a);
	log_info("admin: listening on %s (port %d)", shown, a->port);
	ret = a;
	a = NULL;
out:
	admin_free(a);
	return ret;
}

void admin_set_token(struct admin *a, const char *token)
{
	char *nt = NULL;

	if (token && *token) {
		nt = strdup(token);
		if (!nt) {
			/* fail closed: keep the token in force rather than open the API */
			log_err("admin: out of memory storing the new token; the old one stays in force");
			return;
		}
	}
	if (a->token) {
		explicit_bzero(a->token, strlen(a->token));
		free(a->token);
	}
	a->token = nt;
}

int admin_port(const struct admin *a)
{
	return a->port;
}

void admin_free(struct admin *a)
{
	struct admin_req *r, *next;

	if (!a)
		return;
	/* MHD refuses to stop with suspended connections: resume them, and cut
	 * the requests the ops hold loose from this admin */
	for (r = a->waiting; r; r = next) {
		next = r->next;
		r->prev = r->next = NULL;
		r->admin = NULL;
		if (r->suspended && r->conn) {
			r->suspended = 0;
			MHD_resume_connection(r->conn);
		}
	}
	a->waiting = NULL;
	if (a->loop) {
		ev_io_stop(a->loop, &a->io);
		ev_timer_stop(a->loop, &a->timer);
	}
	if (a->mhd)
		MHD_stop_daemon(a->mhd);
	admin_set_token(a, NULL);
	free(a);
}
