/* SPDX-License-Identifier: Apache-2.0 */
/* Non-blocking HTTP client: libcurl's multi interface driven by libev watchers.
 * Every callback runs on the loop thread; nothing here blocks the loop. */
#ifndef ACME_SPOA_HTTP_H
#define ACME_SPOA_HTTP_H

#include <stddef.h>
#include <time.h>

struct ev_loop;
struct http_client;

/* The rule for every URL the agent is given or follows (api_uri, ask_url,
 * the CA's directory, order, authorization, challenge, certificate and ARI
 * URLs): https, or http only to a loopback host (127.0.0.0/8, ::1,
 * localhost), where nothing crosses a network. Returns 0, or -1 with the
 * reason in <err> (without the URL). */
int http_url_check(const char *url, char *err, size_t errlen);

/* Largest response body kept; a longer body fails the request (status 0). */
#define HTTP_MAX_BODY (1024 * 1024)

struct http_response {
	long status;                 /* HTTP status; 0 on a transport error */
	const char *error;           /* transport error text when status == 0, else NULL */
	const char *body;            /* NUL-terminated; "" when empty */
	size_t body_len;
	const char *content_type;    /* header values, NULL when absent */
	const char *location;
	const char *replay_nonce;
	const char *retry_after;
	const char *const *links;    /* every Link header value, in order */
	size_t nlinks;
};

/* Creates a client on <loop>. <ca_file>, when not NULL, is a PEM bundle trusted in
 * addition to the system store; it is read now (an unreadable or empty file fails).
 * Returns NULL with a message in <err> on failure. Free with http_client_free(). */
struct http_client *http_client_new(struct ev_loop *loop, const char *ca_file,
				    char *err, size_t errlen);

/* Cancels every in-flight request without calling its callback, then frees <c>.
 * Accepts NULL. Safe to call from inside a request callback. */
void http_client_free(struct http_client *c);

/* Starts a request. <method> is "GET", "HEAD" or "POST"; <content_type> (may be
 * NULL) and <body>/<body_len> are sent as is (body may be NULL). <timeout_ms> bounds
 * the whole transfer (<= 0 means 30 s). <cb> is called exactly once, on the loop
 * thread and never from inside this call; <res> and everything it points to are
 * freed after <cb> returns. Returns 0 when started, -1 (and <cb> is never called)
 * when the request could not be set up. */
int http_request(struct http_client *c, const char *method, const char *url,
		 const char *content_type, const char *body, size_t body_len,
		 long timeout_ms,
		 void (*cb)(void *arg, const struct http_response *res), void *arg);

/* Like http_request() with extra request headers: <headers> is an array of <nheaders>
 * complete "Name: value" lines (e.g. "Accept: application/pem-certificate-chain"),
 * copied before return. */
int http_request_hdr(struct http_client *c, const char *method, const char *url,
		     const char *const *headers, size_t nheaders,
		     const char *body, size_t body_len, long timeout_ms,
		     void (*cb)(void *arg, const struct http_response *res), void *arg);

/* Number of requests in flight on <c> (for tests and metrics). */
size_t http_client_pending(const struct http_client *c);

/* Parses a Retry-After header <value>: delta-seconds or an HTTP-date (IMF-fixdate,
 * RFC 850 or asctime form) taken relative to <now>. Returns seconds to wait (0 for a
 * date in the past), or -1 when <value> is NULL or invalid. */
long http_parse_retry_after(const char *value, time_t now);

#endif
