/* SPDX-License-Identifier: Apache-2.0 */
/* consul backend: Consul's HTTP API (KV, sessions, transactions, blocking
 * queries) over libcurl's multi interface on the caller's libev loop
 * (lib/curlev.c). Nothing here blocks the loop.
 *
 * Layout under kv_path (Kong's field, "acme" by default):
 *   <kv>/k/<key>              values; the entry's Flags hold the expiry
 *                             (unix ms, 0 = none): Consul KV has no TTL, so
 *                             an expired value reads as absent on every
 *                             node and is deleted when met (DELETE
 *                             ?cas=<index>), and by the front when due
 *                             (front_expiry) on the node that put it
 *   <kv>/lock/<name>          locks: acquired with this process's Consul
 *                             session, value {"owner":..,"exp":unix ms}
 *   <kv>/feed/<feed>/gen      a feed's generation counter (check-and-set)
 *   <kv>/feed/<feed>/m/<mbr>  its members: {"g":generation,"v":version|null}
 *   <kv>/chan/<ch>/<hash>     pub/sub messages, one key per distinct message,
 *                             read by a blocking query (?index=) on the prefix
 * A lock's lease is the "exp" in its value (wall clock: keep the nodes'
 * clocks in sync); the session (TTL 15 s, renewed every 5 s, behavior
 * "delete", lock-delay 1 s) removes the locks of a node that died or lost
 * Consul: after such an invalidation Consul refuses the name for the
 * lock-delay, which reads as "held by another" (rc 1), as a live lease does.
 *
 * Each operation's HTTP requests have Kong's timeout (storage_config.consul.
 * timeout, 2000 ms); the front's deadline bounds the whole operation. At most
 * CONSUL_MAX_OPS operations are in the backend. Health (storage_state) is the
 * outcome of the last answer: no answer or a 5xx means down. The token goes
 * in X-Consul-Token and is never logged; https uses the system's CAs. */
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "lib/curlev.h"
#include "lib/log.h"
#include "storage/storage.h"
#include "storage/storage_consul_int.h"

#define CONSUL_MAX_OPS		10000
#define CONSUL_MAX_BODY		(64L * 1024 * 1024)
#define CONSUL_MAX_CONNS	32L
#define CONSUL_DEF_TIMEOUT_MS	2000
#define CONSUL_SESSION_TTL	"15s"
#define CONSUL_RENEW_S		5.
#define CONSUL_LOCK_DELAY	"1s"

struct consul_http {
	TAILQ_ENTRY(consul_http) link;
	struct consul_be *be;
	CURL *easy;
	struct curl_slist *hdrs;	/* the token's among them */
	char *req;			/* the request body (curl reads it from here) */
	size_t reqlen;
	char *body;
	size_t len, cap;
	int too_big;
	uint64_t index;
	consul_http_cb *cb;
	void *arg;
	char errbuf[CURL_ERROR_SIZE];
};

/* ---- helpers ------------------------------------------------------------- */

uint64_t consul_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *consul_b64(const char *in, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
	return out;
}

int consul_unb64(const char *in, char **out, size_t *len)
{
	size_t n = in ? strlen(in) : 0;
	int got;

	*out = malloc(3 * (n / 4) + 1);
	if (!*out)
		return -1;
	*len = 0;
	(*out)[0] = '\0';
	if (n == 0)
		return 0;
	if (n % 4 != 0 || n > INT32_MAX)
		goto bad;
	got = EVP_DecodeBlock((unsigned char *)*out, (const unsigned char *)in, (int)n);
	if (got < 0) {
		OPENSSL_cleanse(*out, 3 * (n / 4) + 1);
		goto bad;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes */
	if (in[n - 1] == '=')
		got--;
	if (in[n - 2] == '=')
		got--;
	*len = got;
	(*out)[got] = '\0';
	return 0;
bad:
	free(*out);
	*out = NULL;
	return -1;
}

int consul_path(const struct consul_be *be, char *buf, size_t size, size_t *off,
		const char *kind, const char *name)
{
	size_t o = *off;
	const char *s;
	int n = snprintf(buf + o, size - o, "%s/%s", be->kv, kind);

	if (n < 0 || (size_t)n >= size - o)
		return -1;
	o += n;
	/* the key grammar leaves only '*' to escape */
	for (s = name; *s; s++) {
		if (o + 4 >= size)
			return -1;
		if (*s == '*') {
			memcpy(buf + o, "%2A", 3);
			o += 3;
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = '\0';
	*off = o;
	return 0;
}

/* Consul's error bodies are plain text, transactions' JSON: the first
 * "What" or the text's first line. */
void consul_resp_why(const struct consul_resp *r, char *buf, size_t size)
{
	json_t *j, *what;
	size_t n;

	if (r->status == 0) {
		snprintf(buf, size, "%s", r->err ? r->err : "no answer");
		return;
	}
	j = r->len ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	what = json_object_get(json_array_get(json_object_get(j, "Errors"), 0), "What");
	if (json_is_string(what)) {
		snprintf(buf, size, "HTTP %ld: %s", r->status, json_string_value(what));
	} else {
		n = strcspn(r->body, "\r\n");
		snprintf(buf, size, "HTTP %ld%s%.*s", r->status, n ? ": " : "",
			 (int)(n > 160 ? 160 : n), r->body);
	}
	json_decref(j);
}

/* ---- the HTTP transport ---------------------------------------------------- */

/* Request and answer bodies carry values (private keys, the account key) and
 * their base64, the headers the token: cleansed before they are freed. What
 * libcurl copies inside itself is beyond reach. */
static void consul_hdrs_free(struct curl_slist *l)
{
	struct curl_slist *i;

	for (i = l; i; i = i->next)
		if (i->data)
			OPENSSL_cleanse(i->data, strlen(i->data));
	curl_slist_free_all(l);
}

static void consul_http_free(struct consul_http *h)
{
	struct consul_be *be = h->be;

	TAILQ_REMOVE(&be->https, h, link);
	be->nhttp--;
	curl_multi_remove_handle(curlev_multi(be->cv), h->easy);
	curl_easy_cleanup(h->easy);
	consul_hdrs_free(h->hdrs);
	if (h->req)
		OPENSSL_cleanse(h->req, h->reqlen);
	free(h->req);
	if (h->body)
		OPENSSL_cleanse(h->body, h->cap);
	free(h->body);
	free(h);
}

void consul_http_cancel(struct consul_http *h)
{
	if (h)
		consul_http_free(h);
}

static size_t cb_consul_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct consul_http *h = userp;
	size_t len = size * nmemb;

	if (h->len + len > (size_t)CONSUL_MAX_BODY) {
		h->too_big = 1;
		return 0;
	}
	if (h->len + len + 1 > h->cap) {
		size_t cap = h->cap ? h->cap : 4096;
		char *nb;

		while (cap < h->len + len + 1)
			cap *= 2;
		/* not realloc: the old block would be freed with its bytes */
		if (!(nb = malloc(cap)))
			return 0;
		if (h->body) {
			memcpy(nb, h->body, h->len);
			OPENSSL_cleanse(h->body, h->cap);
			free(h->body);
		}
		h->body = nb;
		h->cap = cap;
	}
	memcpy(h->body + h->len, data, len);
	h->len += len;
	h->body[h->len] = '\0';
	return len;
}

static size_t cb_consul_header(char *buf, size_t size, size_t nitems, void *userp)
{
	static const char name[] = "X-Consul-Index:";
	struct consul_http *h = userp;
	size_t len = size * nitems;

	if (len > sizeof(name) && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
		char v[32];
		size_t n = len - (sizeof(name) - 1);

		if (n >= sizeof(v))
			n = sizeof(v) - 1;
		memcpy(v, buf + sizeof(name) - 1, n);
		v[n] = '\0';
		h->index = strtoull(v, NULL, 10);
	}
	return len;
}

/* Health from what came back: an answer below 500 means Consul is there. */
static void consul_health(struct consul_be *be, const struct consul_resp *r)
{
	char why[STORAGE_ERR_MAX];

	if (r->status > 0 && r->status < 500) {
		if (!be->up)
			log_info("storage consul: %s: answering", be->base);
		be->up = 1;
		be->last_err[0] = '\0';
		return;
	}
	consul_resp_why(r, why, sizeof(why));
	if (be->up || strcmp(why, be->last_err) != 0)
		log_warn("storage consul: %s: %s", be->base, why);
	be->up = 0;
	snprintf(be->last_err, sizeof(be->last_err), "%s", why);
}

static void cb_consul_progress(void *arg)
{
	struct consul_be *be = arg;
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(curlev_multi(be->cv), &left))) {
		struct consul_http *h = NULL;
		struct consul_resp r = { 0 };

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&h);
		if (!h)
			continue;
		if (msg->data.result == CURLE_OK) {
			curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &r.status);
			if (r.status == 0)
				r.err = "no HTTP status received";
		} else {
			if (h->too_big)
				snprintf(h->errbuf, sizeof(h->errbuf), "answer over %ld bytes",
					 CONSUL_MAX_BODY);
			else if (!h->errbuf[0])
				snprintf(h->errbuf, sizeof(h->errbuf), "%s",
					 curl_easy_strerror(msg->data.result));
			r.err = h->errbuf;
		}
		r.body = h->body && r.status ? h->body : "";
		r.len = r.status ? h->len : 0;
		r.index = h->index;
		consul_health(be, &r);
		/* the callback may start requests, never free <be> */
		h->cb(h->arg, &r);
		consul_http_free(h);
	}
}

struct consul_http *consul_http_start(struct consul_be *be, const char *method, const char *path,
				      const char *body, size_t len, long timeout_ms,
				      consul_http_cb *cb, void *arg)
{
	struct consul_http *h = calloc(1, sizeof(*h));
	struct curl_slist *l;
	char *url = NULL;

	if (!h)
		return NULL;
	h->be = be;
	h->cb = cb;
	h->arg = arg;
	if (!(h->easy = curl_easy_init()) || asprintf(&url, "%s%s", be->base, path) == -1)
		goto fail;
	if (!(l = curl_slist_append(NULL, "Expect:")))
		goto fail;
	h->hdrs = l;
	if (be->token_hdr && !(l = curl_slist_append(h->hdrs, be->token_hdr)))
		goto fail;
	h->hdrs = l;
	curl_easy_setopt(h->easy, CURLOPT_URL, url);
	curl_easy_setopt(h->easy, CURLOPT_PRIVATE, h);
	curl_easy_setopt(h->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h->easy, CURLOPT_ERRORBUFFER, h->errbuf);
	if (timeout_ms <= 0)
		timeout_ms = be->timeout_ms;
	curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h->easy, CURLOPT_CONNECTTIMEOUT_MS, be->timeout_ms);
	curl_easy_setopt(h->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h->easy, CURLOPT_USERAGENT, "acme-spoa (storage consul)");
	curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->hdrs);
	curl_easy_setopt(h->easy, CURLOPT_HEADERFUNCTION, cb_consul_header);
	curl_easy_setopt(h->easy, CURLOPT_HEADERDATA, h);
	curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, cb_consul_write);
	curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
	if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(h->easy, CURLOPT_CUSTOMREQUEST, method);
		if (body || strcmp(method, "PUT") == 0) {
			curl_easy_setopt(h->easy, CURLOPT_POST, 1L);
			/* our copy, not curl's (COPYPOSTFIELDS): cleansed at the end */
			if (!(h->req = malloc(body ? len + 1 : 1)))
				goto fail;
			h->reqlen = body ? len : 0;
			if (body)
				memcpy(h->req, body, len);
			h->req[h->reqlen] = '\0';
			curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)h->reqlen);
			curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, h->req);
		}
	}
	free(url);
	url = NULL;
	TAILQ_INSERT_TAIL(&be->https, h, link);
	be->nhttp++;
	if (curl_multi_add_handle(curlev_multi(be->cv), h->easy) != CURLM_OK) {
		TAILQ_REMOVE(&be->https, h, link);
		be->nhttp--;
		goto fail;
	}
	return h;
fail:
	free(url);
	if (h->easy)
		curl_easy_cleanup(h->easy);
	consul_hdrs_free(h->hdrs);
	if (h->req)
		OPENSSL_cleanse(h->req, h->reqlen);
	free(h->req);
	free(h);
	return NULL;
}

static void cb_consul_drop(void *arg, const struct consul_resp *r)
{
}

void consul_delete_cas(struct consul_be *be, const char *kind, const char *name, uint64_t index)
{
	char path[CONSUL_PATHBUF] = "kv/";
	size_t off = 3;

	if (be->nhttp >= CONSUL_MAX_OPS || consul_path(be, path, sizeof(path), &off, kind, name) ||
	    (size_t)snprintf(path + off, sizeof(path) - off, "?cas=%llu",
			     (unsigned long long)index) >= sizeof(path) - off)
		return;
	consul_http_start(be, "DELETE", path, NULL, 0, 0, cb_consul_drop, NULL);
}

/* ---- operations ---------------------------------------------------------- */

static void consul_op_vfail(struct storage_op *op, const char *fmt, va_list ap)
{
	char why[STORAGE_ERR_MAX];
	int n;

	vsnprintf(why, sizeof(why), fmt, ap);
	if (op->kind == STORAGE_OP_FEED_PUT)
		n = snprintf(op->err, sizeof(op->err), "storage consul: %s %s %s: %s",
			     storage_op_name(op->kind), op->key, op->member, why);
	else
		n = snprintf(op->err, sizeof(op->err), "storage consul: %s%s%s: %s",
			     storage_op_name(op->kind), op->key[0] ? " " : "", op->key, why);
	if (n < 0 || (size_t)n >= sizeof(op->err))
		memcpy(op->err + sizeof(op->err) - 4, "...", 4);
	op->res.rc = -1;
	storage_op_done(op);
}

static void consul_op_fail(struct storage_op *op, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void consul_op_fail(struct storage_op *op, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	consul_op_vfail(op, fmt, ap);
	va_end(ap);
}

/* Frees <req>; the operations it held back (the next of its key, the next
 * feed_put) go to be->reqs and into <next> (up to 2, NULL-terminated), to be
 * started once <req>'s own completion is handed over, so that completions
 * keep the submission order. */
static void consul_req_release(struct consul_req *req, struct consul_req *next[3])
{
	struct consul_be *be = req->be;
	struct consul_req *n;
	int k = 0;

	if (req->waiting)
		TAILQ_REMOVE(req->waiting, req, link);
	else
		TAILQ_REMOVE(&be->reqs, req, link);
	be->nreqs--;
	consul_http_cancel(req->h);
	req->op->be_data = NULL;
	if (req->kq) {
		struct consul_keyq *kq = req->kq;

		if ((n = TAILQ_FIRST(&kq->waiting))) {
			TAILQ_REMOVE(&kq->waiting, n, link);
			n->waiting = NULL;
			n->kq = kq;
			TAILQ_INSERT_TAIL(&be->reqs, n, link);
			next[k++] = n;
		} else {
			hmap_del(&be->keys, kq->name);
			free(kq);
		}
	}
	if (req->feed_turn) {
		be->feed_busy = 0;
		if ((n = TAILQ_FIRST(&be->feed_wait))) {
			TAILQ_REMOVE(&be->feed_wait, n, link);
			n->waiting = NULL;
			TAILQ_INSERT_TAIL(&be->reqs, n, link);
			next[k++] = n;
		}
	}
	next[k] = NULL;
	free(req);
}

/* Starts what consul_req_release() held back (nothing while closing: the
 * close fails them all). */
static void consul_req_start_next(struct consul_be *be, struct consul_req *next[3])
{
	int k;

	for (k = 0; next[k] && !be->closing; k++)
		consul_cmd_start(next[k]);
}

int consul_feed_turn(struct consul_req *req)
{
	struct consul_be *be = req->be;

	if (req->feed_turn)
		return 1;
	if (!be->feed_busy) {
		be->feed_busy = req->feed_turn = 1;
		return 1;
	}
	TAILQ_REMOVE(&be->reqs, req, link);
	TAILQ_INSERT_TAIL(&be->feed_wait, req, link);
	req->waiting = &be->feed_wait;
	return 0;
}

void consul_req_finish(struct consul_req *req, int rc)
{
	struct storage_op *op = req->op;
	struct consul_be *be = req->be;
	struct consul_req *next[3];

	consul_req_release(req, next);
	op->res.rc = rc;
	storage_op_done(op);
	consul_req_start_next(be, next);
}

void consul_req_fail(struct consul_req *req, const char *fmt, ...)
{
	struct storage_op *op = req->op;
	struct consul_be *be = req->be;
	struct consul_req *next[3];
	va_list ap;

	consul_req_release(req, next);
	va_start(ap, fmt);
	consul_op_vfail(op, fmt, ap);
	va_end(ap);
	consul_req_start_next(be, next);
}

static void cb_consul_req(void *arg, const struct consul_resp *r)
{
	struct consul_req *req = arg;

	req->h = NULL;	/* freed by the transport after this returns */
	consul_cmd_answer(req, r);
}

void consul_req_send(struct consul_req *req, const char *method, const char *path,
		     const char *body, size_t len)
{
	req->h = consul_http_start(req->be, method, path, body, len, 0, cb_consul_req, req);
	if (!req->h)
		consul_req_fail(req, "cannot start an HTTP request (out of memory)");
}

/* The ordering class of <op>'s key: values, locks and feeds are separate
 * names; list, ping and publish keep no order. 0 for none. */
static char consul_key_class(const struct storage_op *op)
{
	switch (op->kind) {
	case STORAGE_OP_GET:
	case STORAGE_OP_PUT:
	case STORAGE_OP_DEL:
		return 'k';
	case STORAGE_OP_LOCK:
	case STORAGE_OP_UNLOCK:
		return 'l';
	case STORAGE_OP_FEED_PUT:
	case STORAGE_OP_FEED_SINCE:
		return 'f';
	default:
		return 0;
	}
}

/* Takes <req>'s key: 1 when it may start now, 0 when it waits behind an
 * earlier operation of that key (started when that one completes), -1 out
 * of memory. */
static int consul_key_take(struct consul_req *req)
{
	struct consul_be *be = req->be;
	struct consul_keyq *kq;
	char name[STORAGE_KEY_MAX + 4];
	char cls = consul_key_class(req->op);

	if (!cls)
		return 1;
	snprintf(name, sizeof(name), "%c:%s", cls, req->op->key);
	if ((kq = hmap_get(&be->keys, name))) {
		TAILQ_REMOVE(&be->reqs, req, link);
		TAILQ_INSERT_TAIL(&kq->waiting, req, link);
		req->waiting = &kq->waiting;
		return 0;
	}
	if (!(kq = calloc(1, sizeof(*kq) + strlen(name) + 1)))
		return -1;
	strcpy(kq->name, name);
	TAILQ_INIT(&kq->waiting);
	if (hmap_put(&be->keys, name, kq, NULL) == -1) {
		free(kq);
		return -1;
	}
	req->kq = kq;
	return 1;
}

static void consul_submit(void *p, struct storage_op *op)
{
	struct consul_be *be = p;
	struct consul_req *req;
	int rc;

	if (be->nreqs >= CONSUL_MAX_OPS) {
		consul_op_fail(op, "too many operations in flight (%d)", CONSUL_MAX_OPS);
		return;
	}
	if (!(req = calloc(1, sizeof(*req)))) {
		consul_op_fail(op, "out of memory");
		return;
	}
	req->be = be;
	req->op = op;
	op->be_data = req;
	TAILQ_INSERT_TAIL(&be->reqs, req, link);
	be->nreqs++;
	if ((rc = consul_key_take(req)) == 1)
		consul_cmd_start(req);
	else if (rc == -1)
		consul_req_fail(req, "out of memory");
}

/* ---- the lock session ---------------------------------------------------- */

static void consul_session_create(struct consul_be *be);

static void cb_consul_renewed(void *arg, const struct consul_resp *r)
{
	struct consul_be *be = arg;

	be->sess_h = NULL;
	if (r->status == 404) {
		log_warn("storage consul: session %s is gone (its locks with it), a new one "
			 "comes with the next lock", be->session);
		consul_session_lost(be);
	} else if (r->status != 200) {
		char why[STORAGE_ERR_MAX];

		consul_resp_why(r, why, sizeof(why));
		log_warn("storage consul: session renew: %s (retrying)", why);
	}
}

static void cb_consul_renew(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct consul_be *be = w->data;
	char path[128];

	if (be->sess_state != CONSUL_SESS_READY || be->sess_h)
		return;
	snprintf(path, sizeof(path), "session/renew/%s", be->session);
	be->sess_h = consul_http_start(be, "PUT", path, NULL, 0, 0, cb_consul_renewed, be);
}

void consul_session_lost(struct consul_be *be)
{
	if (be->sess_state == CONSUL_SESS_CREATING)
		return;
	ev_timer_stop(be->loop, &be->renew);
	consul_http_cancel(be->sess_h);
	be->sess_h = NULL;
	be->sess_state = CONSUL_SESS_NONE;
	be->session[0] = '\0';
}

static void cb_consul_session(void *arg, const struct consul_resp *r)
{
	struct consul_be *be = arg;
	struct consul_req *req;
	json_t *j = NULL, *id;
	char why[STORAGE_ERR_MAX] = "";

	be->sess_h = NULL;
	if (r->status == 200 && (j = json_loadb(r->body, r->len, 0, NULL)) &&
	    (id = json_object_get(j, "ID")) && json_is_string(id) &&
	    strlen(json_string_value(id)) < sizeof(be->session)) {
		snprintf(be->session, sizeof(be->session), "%s", json_string_value(id));
		be->sess_state = CONSUL_SESS_READY;
		ev_timer_set(&be->renew, CONSUL_RENEW_S, CONSUL_RENEW_S);
		ev_timer_start(be->loop, &be->renew);
		log_debug("storage consul: session %s", be->session);
	} else {
		if (r->status == 200)
			snprintf(why, sizeof(why), "session create: unexpected answer");
		else
			consul_resp_why(r, why, sizeof(why));
		be->sess_state = CONSUL_SESS_NONE;
	}
	json_decref(j);
	while ((req = TAILQ_FIRST(&be->sess_wait))) {
		TAILQ_REMOVE(&be->sess_wait, req, link);
		req->waiting = NULL;
		TAILQ_INSERT_TAIL(&be->reqs, req, link);
		if (why[0])
			consul_req_fail(req, "session: %s", why);
		else
			consul_cmd_start(req);
	}
}

static void consul_session_create(struct consul_be *be)
{
	static const char body[] = "{\"Name\":\"acme-spoa\",\"TTL\":\"" CONSUL_SESSION_TTL
		"\",\"LockDelay\":\"" CONSUL_LOCK_DELAY "\",\"Behavior\":\"delete\"}";

	be->sess_state = CONSUL_SESS_CREATING;
	be->sess_h = consul_http_start(be, "PUT", "session/create", body, sizeof(body) - 1, 0,
				       cb_consul_session, be);
	if (!be->sess_h) {
		struct consul_resp r = { .err = "out of memory" };

		cb_consul_session(be, &r);
	}
}

int consul_session_need(struct consul_req *req)
{
	struct consul_be *be = req->be;

	if (be->sess_state == CONSUL_SESS_READY)
		return 1;
	TAILQ_REMOVE(&be->reqs, req, link);
	TAILQ_INSERT_TAIL(&be->sess_wait, req, link);
	req->waiting = &be->sess_wait;
	if (be->sess_state == CONSUL_SESS_NONE)
		consul_session_create(be);
	return 0;
}

/* ---- open and close ------------------------------------------------------ */

static void consul_close_be(void *p)
{
	struct consul_be *be = p;
	struct consul_req *req;

	if (!be)
		return;
	ev_timer_stop(be->loop, &be->renew);
	be->closing = 1;	/* nothing starts from here on */
	while ((req = TAILQ_FIRST(&be->sess_wait)))
		consul_req_fail(req, "storage closing");
	while ((req = TAILQ_FIRST(&be->feed_wait)))
		consul_req_fail(req, "storage closing");
	while ((req = TAILQ_FIRST(&be->reqs)))
		consul_req_fail(req, "storage closing");
	consul_subs_detach(be);
	while (!TAILQ_EMPTY(&be->https))
		consul_http_free(TAILQ_FIRST(&be->https));
	curlev_free(be->cv);
	hmap_clear(&be->keys, free);
	free(be->base);
	free(be->kv);
	if (be->token_hdr) {
		OPENSSL_cleanse(be->token_hdr, strlen(be->token_hdr));
		free(be->token_hdr);
	}
	free(be);
}

/* Every block jansson frees is cleansed first: Consul's answers hold values
 * in base64, and jansson's parser keeps copies of the tokens it reads. Set
 * for the whole process when a Consul store opens (jansson has one set of
 * allocation functions); the blocks come from malloc either way. */
static void consul_json_free(void *p)
{
	if (p)
		OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}

static void *consul_open_be(struct ev_loop *loop, const struct storage_conf *conf, char *err,
			    size_t errlen)
{
	struct storage_conf none = { 0 };
	struct consul_be *be = NULL;
	const char *host, *kv;
	char e[128];

	if (!conf)
		conf = &none;
	host = conf->consul_host && *conf->consul_host ? conf->consul_host : "127.0.0.1";
	kv = conf->consul_kv_path ? conf->consul_kv_path : "acme";
	if (!storage_key_valid(kv) || strlen(kv) > 128) {
		snprintf(err, errlen, "storage consul: kv_path \"%.64s\": want '/'-separated "
			 "segments of [A-Za-z0-9._*-], at most 128 bytes", kv);
		return NULL;
	}
	if (strpbrk(host, "/?#@ ") || strlen(host) > 253) {
		snprintf(err, errlen, "storage consul: host \"%.64s\": not a host name or address",
			 host);
		return NULL;
	}
	if (conf->consul_token && strpbrk(conf->consul_token, "\r\n")) {
		snprintf(err, errlen, "storage consul: token: holds a line break");
		return NULL;
	}
	json_set_alloc_funcs(malloc, consul_json_free);
	if (!(be = calloc(1, sizeof(*be))))
		goto oom;
	be->loop = loop;
	TAILQ_INIT(&be->https);
	TAILQ_INIT(&be->reqs);
	TAILQ_INIT(&be->sess_wait);
	TAILQ_INIT(&be->feed_wait);
	if (hmap_init(&be->keys) == -1)
		goto oom;
	LIST_INIT(&be->subs);
	be->up = 1;
	be->timeout_ms = conf->consul_timeout_ms > 0 ? conf->consul_timeout_ms :
			 CONSUL_DEF_TIMEOUT_MS;
	ev_init(&be->renew, cb_consul_renew);
	be->renew.data = be;
	if (asprintf(&be->base, "%s://%s%s%s:%d/v1/", conf->consul_https ? "https" : "http",
		     strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
		     conf->consul_port > 0 ? conf->consul_port : 8500) == -1) {
		be->base = NULL;
		goto oom;
	}
	if (!(be->kv = strdup(kv)))
		goto oom;
	if (conf->consul_token && *conf->consul_token &&
	    asprintf(&be->token_hdr, "X-Consul-Token: %s", conf->consul_token) == -1) {
		be->token_hdr = NULL;
		goto oom;
	}
	if (!(be->cv = curlev_new(loop, cb_consul_progress, be, e, sizeof(e)))) {
		snprintf(err, errlen, "storage consul: %s", e);
		consul_close_be(be);
		return NULL;
	}
	curl_multi_setopt(curlev_multi(be->cv), CURLMOPT_MAX_HOST_CONNECTIONS, CONSUL_MAX_CONNS);
	/* nothing is asked here: an unreachable Consul fails operations, not open */
	return be;
oom:
	snprintf(err, errlen, "storage consul: out of memory");
	consul_close_be(be);
	return NULL;
}

static int consul_state_be(void *p, char *err, size_t errlen)
{
	struct consul_be *be = p;

	if (be->up)
		return 1;
	snprintf(err, errlen, "storage consul: %s: %s", be->base, be->last_err);
	return 0;
}

const struct storage_ops storage_consul_ops = {
	.name = "consul",
	.front_expiry = 1,
	.state = consul_state_be,
	.open = consul_open_be,
	.close = consul_close_be,
	.blocking = 0,
	.submit = consul_submit,
	.subscribe = consul_subscribe,
	.sub_free = consul_sub_free,
	.sub_ready = consul_sub_ready,
};
