/* SPDX-License-Identifier: Apache-2.0 */
/* Non-blocking HTTP client: curl multi on the loop (lib/curlev.c feeds its
 * sockets and timer to ev_io/ev_timer). Requests complete from libev callbacks only. */
#include "acme/http.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <ev.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/curlev.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "lib/tlsstore.h"
#include "lib/version.h"

#define HTTP_DEFAULT_TIMEOUT_MS 30000L
#define HTTP_MAX_LINKS 32
#define HTTP_MAX_HEADERS 16

struct http_req {
	struct http_req *prev, *next;
	struct http_client *c;
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	size_t body_len, body_cap;
	int too_big;
	char *content_type, *location, *replay_nonce, *retry_after;
	char *links[HTTP_MAX_LINKS];
	size_t nlinks;
	void (*cb)(void *arg, const struct http_response *res);
	void *arg;
	char errbuf[CURL_ERROR_SIZE];
};

struct http_client {
	struct ev_loop *loop;
	struct curlev *cv;
	CURLM *multi;			/* cv's */
	struct http_req *reqs;
	size_t npending;
	STACK_OF(X509) *extra_ca;
	X509_STORE *store;		/* system roots + extra_ca, loaded once at start */
	int dispatching;
	int free_pending;
	char user_agent[96];		/* "acme-spoa/<version> libcurl/<version>" */
};

static void http_req_free(struct http_req *r)
{
	size_t i;

	if (!r)
		return;
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	free(r->body);
	free(r->content_type);
	free(r->location);
	free(r->replay_nonce);
	free(r->retry_after);
	for (i = 0; i < r->nlinks; i++)
		free(r->links[i]);
	free(r);
}

static void http_req_unlink(struct http_client *c, struct http_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		c->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	c->npending--;
}

static void http_client_destroy(struct http_client *c)
{
	struct http_req *r;

	while ((r = c->reqs)) {
		http_req_unlink(c, r);
		curl_multi_remove_handle(c->multi, r->easy);
		http_req_free(r);
	}
	curlev_free(c->cv);
	if (c->extra_ca)
		sk_X509_pop_free(c->extra_ca, X509_free);
	X509_STORE_free(c->store);
	free(c);
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	if (c->dispatching) {
		c->free_pending = 1;
		return;
	}
	http_client_destroy(c);
}

size_t http_client_pending(const struct http_client *c)
{
	return c ? c->npending : 0;
}

/* Completes every finished transfer. A callback may free the client: the loop then
 * stops and the client is destroyed once the outermost dispatch unwinds. */
static void http_check_done(struct http_client *c)
{
	CURLMsg *msg;
	int left;

	c->dispatching++;
	while (!c->free_pending && (msg = curl_multi_info_read(c->multi, &left))) {
		struct http_req *r = NULL;
		struct http_response res;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (!r)
			continue;
		memset(&res, 0, sizeof(res));
		if (msg->data.result == CURLE_OK) {
			curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
			if (res.status == 0)
				res.error = "no HTTP status received";
		} else {
			if (r->too_big)
				snprintf(r->errbuf, sizeof(r->errbuf), "response body over %d bytes",
					 HTTP_MAX_BODY);
			else if (!r->errbuf[0])
				snprintf(r->errbuf, sizeof(r->errbuf), "%s",
					 curl_easy_strerror(msg->data.result));
			res.error = r->errbuf;
		}
		curl_multi_remove_handle(c->multi, r->easy);
		http_req_unlink(c, r);
		res.body = r->body ? r->body : "";
		res.body_len = r->body_len;
		res.content_type = r->content_type;
		res.location = r->location;
		res.replay_nonce = r->replay_nonce;
		res.retry_after = r->retry_after;
		res.links = (const char *const *)r->links;
		res.nlinks = r->nlinks;
		if (res.status == 0) {
			res.body = "";
			res.body_len = 0;
		}
		r->cb(r->arg, &res);
		http_req_free(r);
	}
	c->dispatching--;
	if (!c->dispatching && c->free_pending)
		http_client_destroy(c);
}

static void cb_http_progress(void *arg)
{
	http_check_done(arg);
}

/* Hands every new TLS context the store loaded at start: curl would parse
 * the system bundle on the loop for the first connection (and again when its
 * CA cache expires), a stall of tens of milliseconds in the handshake path. */
static CURLcode cb_curl_ssl_ctx(CURL *easy, void *ssl_ctx, void *userp)
{
	struct http_client *c = userp;

	SSL_CTX_set1_cert_store((SSL_CTX *)ssl_ctx, c->store);
	return CURLE_OK;
}

/* The system's roots (lib/tlsstore) plus the extra ones, parsed once. Without
 * a system bundle the extra ones alone will do. */
static X509_STORE *http_store_new(STACK_OF(X509) *extra, char *err, size_t errlen)
{
	X509_STORE *store;
	char why[300];
	int i;

	store = tlsstore_system(why, sizeof(why));
	if (!store && extra && sk_X509_num(extra) > 0) {
		log_warn("http: %s: only ca_file is trusted", why);
		store = X509_STORE_new();
	}
	if (!store) {
		snprintf(err, errlen, "http: %s", why);
		return NULL;
	}
	for (i = 0; extra && i < sk_X509_num(extra); i++)
		X509_STORE_add_cert(store, sk_X509_value(extra, i)); /* duplicates are fine */
	return store;
}

static STACK_OF(X509) *http_load_ca(const char *path, char *err, size_t errlen)
{
	STACK_OF(X509) *sk = NULL;
	FILE *f = NULL;
	X509 *x;

	f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "http: ca_file %s: %s", path, strerror(errno));
		goto out;
	}
	sk = sk_X509_new_null();
	if (!sk) {
		snprintf(err, errlen, "http: out of memory");
		goto out;
	}
	while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			break;
		}
	}
	if (sk_X509_num(sk) == 0) {
		snprintf(err, errlen, "http: ca_file %s: no PEM certificate found", path);
		sk_X509_free(sk);
		sk = NULL;
	}
out:
	if (f)
		fclose(f);
	return sk;
}

struct http_client *http_client_new(struct ev_loop *loop, const char *ca_file,
				    char *err, size_t errlen)
{
	struct http_client *c = NULL;

	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "http: out of memory");
		return NULL;
	}
	c->loop = loop;
	/* RFC 8555 section 6.1: the client's name and version, then its HTTP library's */
	snprintf(c->user_agent, sizeof(c->user_agent), "acme-spoa/%s libcurl/%s", ACME_SPOA_VERSION,
		 curl_version_info(CURLVERSION_NOW)->version);
	if (ca_file && *ca_file) {
		c->extra_ca = http_load_ca(ca_file, err, errlen);
		if (!c->extra_ca)
			goto fail;
	}
	c->store = http_store_new(c->extra_ca, err, errlen);
	if (!c->store)
		goto fail;
	c->cv = curlev_new(loop, cb_http_progress, c, err, errlen);
	if (!c->cv)
		goto fail;
	c->multi = curlev_multi(c->cv);
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
	return c;
fail:
	http_client_destroy(c);
	return NULL;
}

static char *http_strndup_trim(const char *s, size_t n)
{
	char *out;

	while (n && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		n--;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	memcpy(out, s, n);
	out[n] = '\0';
	return out;
}

static void http_req_reset_headers(struct http_req *r)
{
	size_t i;

	free(r->content_type);
	free(r->location);
	free(r->replay_nonce);
	free(r->retry_after);
	r->content_type = r->location = r->replay_nonce = r->retry_after = NULL;
	for (i = 0; i < r->nlinks; i++)
		free(r->links[i]);
	r->nlinks = 0;
}

static void http_set_header(char **slot, const char *v, size_t n)
{
	free(*slot);
	*slot = http_strndup_trim(v, n);
}

static size_t cb_curl_header(char *buf, size_t size, size_t nitems, void *userp)
{
	struct http_req *r = userp;
	size_t len = size * nitems, nlen;
	const char *colon, *v;

	if (len >= 5 && !strncmp(buf, "HTTP/", 5)) {
		/* A new status line (after 1xx): forget earlier headers. */
		http_req_reset_headers(r);
		return len;
	}
	colon = memchr(buf, ':', len);
	if (!colon || buf[0] == ' ' || buf[0] == '\t')
		return len;
	nlen = (size_t)(colon - buf);
	v = colon + 1;
#define HDR_IS(name) (nlen == sizeof(name) - 1 && !strncasecmp(buf, name, nlen))
	if (HDR_IS("Content-Type"))
		http_set_header(&r->content_type, v, len - nlen - 1);
	else if (HDR_IS("Location"))
		http_set_header(&r->location, v, len - nlen - 1);
	else if (HDR_IS("Replay-Nonce"))
		http_set_header(&r->replay_nonce, v, len - nlen - 1);
	else if (HDR_IS("Retry-After"))
		http_set_header(&r->retry_after, v, len - nlen - 1);
	else if (HDR_IS("Link") && r->nlinks < HTTP_MAX_LINKS) {
		char *l = http_strndup_trim(v, len - nlen - 1);

		if (l)
			r->links[r->nlinks++] = l;
	}
#undef HDR_IS
	return len;
}

static size_t cb_curl_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_req *r = userp;
	size_t len = size * nmemb;

	if (len > HTTP_MAX_BODY || r->body_len + len > HTTP_MAX_BODY) {
		r->too_big = 1;
		return 0;
	}
	if (r->body_len + len + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 4096;
		char *nb;

		while (cap < r->body_len + len + 1)
			cap *= 2;
		nb = realloc(r->body, cap);
		if (!nb)
			return 0;
		r->body = nb;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return len;
}

int http_request_hdr(struct http_client *c, const char *method, const char *url,
		     const char *const *headers, size_t nheaders,
		     const char *body, size_t body_len, long timeout_ms,
		     void (*cb)(void *arg, const struct http_response *res), void *arg)
{
	struct http_req *r = NULL;
	struct curl_slist *l;
	size_t i;

	if (!c || !method || !url || !cb || c->free_pending)
		return -1;
	if (timeout_ms <= 0)
		timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
	r = calloc(1, sizeof(*r));
	if (!r)
		goto fail;
	r->c = c;
	r->cb = cb;
	r->arg = arg;
	r->easy = curl_easy_init();
	if (!r->easy)
		goto fail;
	for (i = 0; i < nheaders; i++) {
		l = curl_slist_append(r->hdrs, headers[i]);
		if (!l)
			goto fail;
		r->hdrs = l;
	}
	l = curl_slist_append(r->hdrs, "Expect:");
	if (!l)
		goto fail;
	r->hdrs = l;

	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 10000 ? timeout_ms : 10000L);
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, r->c->user_agent);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, cb_curl_header);
	curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, cb_curl_write);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	/* no file for curl to parse: the context gets c->store */
	curl_easy_setopt(r->easy, CURLOPT_CAINFO, NULL);
	curl_easy_setopt(r->easy, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(r->easy, CURLOPT_SSL_CTX_FUNCTION, cb_curl_ssl_ctx);
	curl_easy_setopt(r->easy, CURLOPT_SSL_CTX_DATA, c);
	if (!strcmp(method, "GET")) {
		curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
	} else if (!strcmp(method, "HEAD")) {
		curl_easy_setopt(r->easy, CURLOPT_NOBODY, 1L);
	} else {
		if (strcmp(method, "POST"))
			curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
		curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS, body ? body : "");
	}

	r->next = c->reqs;
	if (c->reqs)
		c->reqs->prev = r;
	c->reqs = r;
	c->npending++;
	if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
		http_req_unlink(c, r);
		goto fail;
	}
	return 0;
fail:
	http_req_free(r);
	return -1;
}

int http_request(struct http_client *c, const char *method, const char *url,
		 const char *content_type, const char *body, size_t body_len,
		 long timeout_ms,
		 void (*cb)(void *arg, const struct http_response *res), void *arg)
{
	char ct[256];
	const char *hdrs[1];
	size_t n = 0;

	if (content_type) {
		if ((size_t)snprintf(ct, sizeof(ct), "Content-Type: %s", content_type) >= sizeof(ct))
			return -1;
		hdrs[n++] = ct;
	}
	return http_request_hdr(c, method, url, hdrs, n, body, body_len, timeout_ms, cb, arg);
}

/* The three HTTP-date forms of RFC 9110 §5.6.7 (curl_getdate() reads them
 * all, and more). */
static int http_parse_date(const char *s, time_t *out)
{
	time_t t = curl_getdate(s, NULL);

	if (t == (time_t)-1)
		return -1;
	*out = t;
	return 0;
}

long http_parse_retry_after(const char *value, time_t now)
{
	const char *p;
	long v = 0;
	time_t t;

	if (!value)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	if (!*value)
		return -1;
	if (isdigit((unsigned char)*value)) {
		for (p = value; isdigit((unsigned char)*p); p++) {
			if (v > (LONG_MAX - 9) / 10)
				v = LONG_MAX / 10; /* saturate absurd values */
			else
				v = v * 10 + (*p - '0');
		}
		while (*p == ' ' || *p == '\t')
			p++;
		return *p ? -1 : v;
	}
	if (http_parse_date(value, &t) < 0)
		return -1;
	return t > now ? (long)(t - now) : 0;
}

int http_url_check(const char *url, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	int rc = -1;

	if (!u) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (!url || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(err, errlen, "is not a URL");
		goto out;
	}
	if (strcasecmp(scheme, "https") == 0 ||
	    (strcasecmp(scheme, "http") == 0 && addr_host_is_loopback(host))) {
		rc = 0;
		goto out;
	}
	snprintf(err, errlen, "%s", strcasecmp(scheme, "http") == 0 ?
		 "plain http is only allowed to a loopback host" : "is not an http(s) URL");
out:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return rc;
}
