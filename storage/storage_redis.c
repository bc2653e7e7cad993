/* redis backend: a synchronous hiredis context with connect and command
 * timeouts, reconnected on the next call after a lost connection (and one
 * immediate retry, every command here being idempotent). Keys, locks and
 * channels are "<ns>:" prefixed when a namespace is set; locks are
 * "<ns>:lock:<name>", which no key can collide with (':' is not in the key
 * grammar). Pub/sub runs on its own async connection on the caller's libev
 * loop. This hiredis (0.14) has no TLS: asking for it is a clear error. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <ev.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>

#include "core/log.h"
#include "storage/storage.h"

#define REDIS_SCAN_COUNT "500"
#define REDIS_KEYBUF     (STORAGE_KEY_MAX + 256)

static const char redis_lua_extend[] =
	"if redis.call('get', KEYS[1]) == ARGV[1] then "
	"redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end return 0";
static const char redis_lua_unlock[] =
	"if redis.call('get', KEYS[1]) == ARGV[1] then "
	"return redis.call('del', KEYS[1]) end return 0";

struct redis_be {
	char *host;
	int port;
	int db;
	char *auth;
	char *ns;           /* "" when unset */
	long timeout_ms;
	redisContext *c;
	uint64_t retry_at_ms;   /* after a failed connect, fail fast until then */
	long holdoff_ms;        /* 250 ms doubling to 5 s, reset on success */
	char last_err[256];
};

struct storage_sub {
	struct ev_loop *loop;
	char *host;
	int port;
	char *auth;
	char *channel;      /* namespaced */
	long timeout_ms;
	void (*cb)(void *arg, const char *msg, size_t len);
	void *arg;
	redisAsyncContext *ac;
	ev_timer retry;     /* reconnect after backoff */
	ev_timer deadline;  /* not subscribed in time: drop and retry */
	double backoff;
	int ready;
};

static struct timeval redis_tv(long ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	return tv;
}

static uint64_t redis_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void redis_disconnect(struct redis_be *be)
{
	if (be->c != NULL)
		redisFree(be->c);
	be->c = NULL;
}

/* Runs one command on context <c>, turning error replies into -1 with
 * <err>. Returns the reply (caller frees) or NULL; *<io> set on I/O failure. */
static redisReply *redis_run(redisContext *c, int argc, const char **argv, const size_t *lens,
			     int *io, char *err, size_t errlen)
{
	redisReply *r = redisCommandArgv(c, argc, argv, lens);

	*io = 0;
	if (r == NULL) {
		*io = 1;
		snprintf(err, errlen, "%s", c->errstr[0] ? c->errstr : "connection lost");
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "%s", r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

/* (Re)connects. Returns 0, -1 on a network failure, -2 when the server
 * refused AUTH or SELECT (a configuration error); <why> gets the reason. */
static int redis_connect(struct redis_be *be, char *why, size_t whylen)
{
	char msg[256], dbs[16];
	const char *step = "AUTH";
	redisReply *r = NULL;
	int io;

	redis_disconnect(be);
	be->c = redisConnectWithTimeout(be->host, be->port, redis_tv(be->timeout_ms));
	if (be->c == NULL || be->c->err) {
		snprintf(why, whylen, "%s:%d: connect: %s", be->host, be->port,
			 be->c ? be->c->errstr : "out of memory");
		redis_disconnect(be);
		return -1;
	}
	redisSetTimeout(be->c, redis_tv(be->timeout_ms));
	redisEnableKeepAlive(be->c);
	if (be->auth[0] != '\0') {
		const char *argv[] = { "AUTH", be->auth };
		size_t lens[] = { 4, strlen(be->auth) };

		if ((r = redis_run(be->c, 2, argv, lens, &io, msg, sizeof(msg))) == NULL)
			goto fail;
		freeReplyObject(r);
	}
	if (be->db != 0) {
		const char *argv[] = { "SELECT", dbs };
		size_t lens[] = { 6, 0 };

		lens[1] = snprintf(dbs, sizeof(dbs), "%d", be->db);
		step = "SELECT";
		if ((r = redis_run(be->c, 2, argv, lens, &io, msg, sizeof(msg))) == NULL)
			goto fail;
		freeReplyObject(r);
	}
	return 0;
fail:
	snprintf(why, whylen, "%s:%d: %s %s: %s", be->host, be->port, step,
		 io ? "failed" : "refused", msg);
	redis_disconnect(be);
	return io ? -1 : -2;
}

/* Connects unless a recent attempt failed: while redis is down, calls fail
 * fast instead of blocking the loop for a connect timeout each time. */
static int redis_reconnect(struct redis_be *be, char *why, size_t whylen)
{
	uint64_t now = redis_now_ms();
	int ret;

	if (now < be->retry_at_ms) {
		snprintf(why, whylen, "%s (down, next attempt in %llu ms)", be->last_err,
			 (unsigned long long)(be->retry_at_ms - now));
		return -1;
	}
	ret = redis_connect(be, why, whylen);
	if (ret == 0) {
		be->holdoff_ms = 0;
		be->retry_at_ms = 0;
		return 0;
	}
	be->holdoff_ms = be->holdoff_ms ? be->holdoff_ms * 2 : 250;
	if (be->holdoff_ms > 5000)
		be->holdoff_ms = 5000;
	be->retry_at_ms = redis_now_ms() + be->holdoff_ms;
	snprintf(be->last_err, sizeof(be->last_err), "%s", why);
	return ret;
}

/* Runs a command on the backend, connecting first if needed and retrying
 * once on a fresh connection after an I/O failure. Returns the reply (caller
 * frees) or NULL with <err> "storage redis: <what>: <why>". */
static redisReply *redis_cmd(struct redis_be *be, const char *what, int argc, const char **argv,
			     const size_t *lens, char *err, size_t errlen)
{
	char why[320] = "", msg[256];
	redisReply *r = NULL;
	int attempt, io;

	for (attempt = 0; attempt < 2; attempt++) {
		if (be->c == NULL && redis_reconnect(be, why, sizeof(why)) != 0)
			break;
		r = redis_run(be->c, argc, argv, lens, &io, msg, sizeof(msg));
		if (r != NULL)
			return r;
		if (!io) {
			snprintf(why, sizeof(why), "%s", msg);
			break;
		}
		snprintf(why, sizeof(why), "%s:%d: %s", be->host, be->port, msg);
		redis_disconnect(be);
	}
	snprintf(err, errlen, "storage redis: %s: %s", what, why);
	return NULL;
}

static int redis_key(const struct redis_be *be, const char *kind, const char *key, char *buf,
		     size_t size)
{
	int n = snprintf(buf, size, "%s%s%s%s", be->ns, be->ns[0] ? ":" : "", kind, key);

	return (n < 0 || (size_t)n >= size) ? -1 : n;
}

static void redis_close_be(void *p)
{
	struct redis_be *be = p;

	if (be == NULL)
		return;
	redis_disconnect(be);
	free(be->host);
	free(be->auth);
	free(be->ns);
	free(be);
}

static void *redis_open_be(const struct storage_conf *conf, char *err, size_t errlen)
{
	struct storage_conf none = { 0 };
	struct redis_be *be = NULL;
	char why[320];
	const char *ns;

	if (conf == NULL)
		conf = &none;
	if (conf->redis_ssl) {
		snprintf(err, errlen, "storage redis: ssl: not supported by this build "
			 "(hiredis %d.%d has no TLS, hiredis_ssl missing)",
			 HIREDIS_MAJOR, HIREDIS_MINOR);
		return NULL;
	}
	ns = conf->redis_namespace ? conf->redis_namespace : "";
	if (strpbrk(ns, "*?[]\\ \r\n") != NULL || strlen(ns) > 128) {
		snprintf(err, errlen, "storage redis: namespace \"%.64s\": must be at most 128 "
			 "bytes without glob characters or spaces", ns);
		return NULL;
	}
	be = calloc(1, sizeof(*be));
	if (be == NULL)
		goto oom;
	be->host = strdup(conf->redis_host && *conf->redis_host ? conf->redis_host : "127.0.0.1");
	be->auth = strdup(conf->redis_auth ? conf->redis_auth : "");
	be->ns = strdup(ns);
	if (be->host == NULL || be->auth == NULL || be->ns == NULL)
		goto oom;
	be->port = conf->redis_port > 0 ? conf->redis_port : 6379;
	be->db = conf->redis_database;
	be->timeout_ms = conf->redis_timeout_ms > 0 ? conf->redis_timeout_ms : 500;
	switch (redis_reconnect(be, why, sizeof(why))) {
	case -2:
		snprintf(err, errlen, "storage redis: %s", why);
		redis_close_be(be);
		return NULL;
	case -1:
		log_warn("storage redis: %s (will retry on use)", why);
		break;
	}
	return be;
oom:
	snprintf(err, errlen, "storage redis: out of memory");
	redis_close_be(be);
	return NULL;
}

static int redis_get(void *p, const char *key, char **val, size_t *len, char *err, size_t errlen)
{
	struct redis_be *be = p;
	char k[REDIS_KEYBUF], what[REDIS_KEYBUF];
	const char *argv[] = { "GET", k };
	size_t lens[] = { 3, 0 };
	redisReply *r;
	int ret = -1;

	snprintf(what, sizeof(what), "get %s", key);
	if ((int)(lens[1] = redis_key(be, "", key, k, sizeof(k))) < 0) {
		snprintf(err, errlen, "storage redis: %s: key too long", what);
		return -1;
	}
	if ((r = redis_cmd(be, what, 2, argv, lens, err, errlen)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_NIL) {
		ret = 1;
	} else if (r->type == REDIS_REPLY_STRING) {
		*val = malloc(r->len + 1);
		if (*val == NULL) {
			snprintf(err, errlen, "storage redis: %s: out of memory", what);
			goto out;
		}
		memcpy(*val, r->str, r->len);
		(*val)[r->len] = '\0';
		*len = r->len;
		ret = 0;
	} else {
		snprintf(err, errlen, "storage redis: %s: unexpected reply type %d", what, r->type);
	}
out:
	freeReplyObject(r);
	return ret;
}

static int redis_put(void *p, const char *key, const char *val, size_t len, unsigned ttl_sec,
		     char *err, size_t errlen)
{
	struct redis_be *be = p;
	char k[REDIS_KEYBUF], what[REDIS_KEYBUF], px[32];
	const char *argv[] = { "SET", k, val, "PX", px };
	size_t lens[] = { 3, 0, len, 2, 0 };
	redisReply *r;

	snprintf(what, sizeof(what), "put %s", key);
	if ((int)(lens[1] = redis_key(be, "", key, k, sizeof(k))) < 0) {
		snprintf(err, errlen, "storage redis: %s: key too long", what);
		return -1;
	}
	lens[4] = snprintf(px, sizeof(px), "%llu", (unsigned long long)ttl_sec * 1000);
	if ((r = redis_cmd(be, what, ttl_sec ? 5 : 3, argv, lens, err, errlen)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

static int redis_del(void *p, const char *key, char *err, size_t errlen)
{
	struct redis_be *be = p;
	char k[REDIS_KEYBUF], what[REDIS_KEYBUF];
	const char *argv[] = { "DEL", k };
	size_t lens[] = { 3, 0 };
	redisReply *r;

	snprintf(what, sizeof(what), "del %s", key);
	if ((int)(lens[1] = redis_key(be, "", key, k, sizeof(k))) < 0) {
		snprintf(err, errlen, "storage redis: %s: key too long", what);
		return -1;
	}
	if ((r = redis_cmd(be, what, 2, argv, lens, err, errlen)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

static int redis_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends <s> to <out> with glob characters escaped. */
static size_t redis_glob_escape(char *out, const char *s)
{
	size_t n = 0;

	for (; *s; s++) {
		if (strchr("*?[]\\", *s) != NULL)
			out[n++] = '\\';
		out[n++] = *s;
	}
	return n;
}

static int redis_list(void *p, const char *prefix, char ***keys, size_t *n,
		      char *err, size_t errlen)
{
	struct redis_be *be = p;
	char pat[2 * REDIS_KEYBUF + 2], cursor[32] = "0", what[REDIS_KEYBUF];
	const char *argv[] = { "SCAN", cursor, "MATCH", pat, "COUNT", REDIS_SCAN_COUNT };
	size_t lens[] = { 4, 1, 5, 0, 5, strlen(REDIS_SCAN_COUNT) };
	size_t nslen = be->ns[0] ? strlen(be->ns) + 1 : 0, plen = strlen(prefix);
	size_t cnt = 0, cap = 0, i, j;
	char **out = NULL;
	redisReply *r = NULL;

	snprintf(what, sizeof(what), "list %s", prefix);
	lens[3] = redis_glob_escape(pat, be->ns);
	if (nslen)
		pat[lens[3]++] = ':';
	lens[3] += redis_glob_escape(pat + lens[3], prefix);
	pat[lens[3]++] = '*';
	pat[lens[3]] = '\0';
	do {
		lens[1] = strlen(cursor);
		if ((r = redis_cmd(be, what, 6, argv, lens, err, errlen)) == NULL)
			goto fail;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[0]->len >= sizeof(cursor) ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			snprintf(err, errlen, "storage redis: %s: unexpected SCAN reply", what);
			goto fail;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
		for (i = 0; i < r->element[1]->elements; i++) {
			const redisReply *e = r->element[1]->element[i];
			const char *key;

			if (e->type != REDIS_REPLY_STRING || e->len <= nslen ||
			    strlen(e->str) != e->len)
				continue;
			key = e->str + nslen;
			if (!storage_key_valid(key) || strncmp(key, prefix, plen) != 0)
				continue;
			if (cnt == cap) {
				char **grown = realloc(out, (cap = cap ? cap * 2 : 16) * sizeof(*out));

				if (grown == NULL)
					goto oom;
				out = grown;
			}
			if ((out[cnt] = strdup(key)) == NULL)
				goto oom;
			cnt++;
		}
		freeReplyObject(r);
		r = NULL;
	} while (strcmp(cursor, "0") != 0);
	if (out == NULL && (out = calloc(1, sizeof(*out))) == NULL)
		goto oom;
	qsort(out, cnt, sizeof(*out), redis_cmp_str);
	/* SCAN may return a key more than once */
	for (i = j = 0; i < cnt; i++) {
		if (j > 0 && strcmp(out[j - 1], out[i]) == 0)
			free(out[i]);
		else
			out[j++] = out[i];
	}
	*keys = out;
	*n = j;
	return 0;
oom:
	snprintf(err, errlen, "storage redis: %s: out of memory", what);
fail:
	freeReplyObject(r);
	storage_list_free(out, cnt);
	return -1;
}

/* Runs a Lua script on KEYS[1]=<k>, ARGV=<a1>,<a2>; returns its integer
 * result or -1. */
static long long redis_eval(struct redis_be *be, const char *what, const char *script,
			    const char *k, const char *a1, const char *a2, char *err, size_t errlen)
{
	const char *argv[] = { "EVAL", script, "1", k, a1, a2 };
	size_t lens[] = { 4, strlen(script), 1, strlen(k), strlen(a1), a2 ? strlen(a2) : 0 };
	redisReply *r;
	long long v;

	if ((r = redis_cmd(be, what, a2 ? 6 : 5, argv, lens, err, errlen)) == NULL)
		return -1;
	if (r->type != REDIS_REPLY_INTEGER) {
		snprintf(err, errlen, "storage redis: %s: unexpected script reply", what);
		freeReplyObject(r);
		return -1;
	}
	v = r->integer;
	freeReplyObject(r);
	return v;
}

static int redis_lock(void *p, const char *name, const char *owner, unsigned lease_ms,
		      char *err, size_t errlen)
{
	struct redis_be *be = p;
	char k[REDIS_KEYBUF], what[REDIS_KEYBUF], px[32];
	const char *argv[] = { "SET", k, owner, "NX", "PX", px };
	size_t lens[] = { 3, 0, strlen(owner), 2, 2, 0 };
	redisReply *r;
	int attempt, set;
	long long v;

	snprintf(what, sizeof(what), "lock %s", name);
	if ((int)(lens[1] = redis_key(be, "lock:", name, k, sizeof(k))) < 0) {
		snprintf(err, errlen, "storage redis: %s: name too long", what);
		return -1;
	}
	lens[5] = snprintf(px, sizeof(px), "%u", lease_ms);
	/* a lease may expire between SET NX and the extend script: try twice */
	for (attempt = 0; attempt < 2; attempt++) {
		if ((r = redis_cmd(be, what, 6, argv, lens, err, errlen)) == NULL)
			return -1;
		set = r->type == REDIS_REPLY_STATUS;
		freeReplyObject(r);
		if (set)
			return 0;
		v = redis_eval(be, what, redis_lua_extend, k, owner, px, err, errlen);
		if (v == -1)
			return -1;
		if (v == 1)
			return 0;
	}
	return 1;
}

static int redis_unlock(void *p, const char *name, const char *owner, char *err, size_t errlen)
{
	struct redis_be *be = p;
	char k[REDIS_KEYBUF], what[REDIS_KEYBUF];
	long long v;

	snprintf(what, sizeof(what), "unlock %s", name);
	if (redis_key(be, "lock:", name, k, sizeof(k)) < 0) {
		snprintf(err, errlen, "storage redis: %s: name too long", what);
		return -1;
	}
	v = redis_eval(be, what, redis_lua_unlock, k, owner, NULL, err, errlen);
	if (v == -1)
		return -1;
	return v == 1 ? 0 : 1;
}

static int redis_ping(void *p, char *err, size_t errlen)
{
	struct redis_be *be = p;
	const char *argv[] = { "PING" };
	size_t lens[] = { 4 };
	redisReply *r;

	if ((r = redis_cmd(be, "ping", 1, argv, lens, err, errlen)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

static int redis_publish(void *p, const char *channel, const char *msg, size_t len,
			 char *err, size_t errlen)
{
	struct redis_be *be = p;
	char k[REDIS_KEYBUF], what[REDIS_KEYBUF];
	const char *argv[] = { "PUBLISH", k, msg };
	size_t lens[] = { 7, 0, len };
	redisReply *r;

	snprintf(what, sizeof(what), "publish %s", channel);
	if ((int)(lens[1] = redis_key(be, "", channel, k, sizeof(k))) < 0) {
		snprintf(err, errlen, "storage redis: %s: channel too long", what);
		return -1;
	}
	if ((r = redis_cmd(be, what, 3, argv, lens, err, errlen)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* ---- pub/sub on the event loop ---- */

static void sub_connect(struct storage_sub *sub);

/* Forgets the async connection; our callbacks ignore it from here on
 * (ac->data NULL), even those hiredis runs while tearing it down. */
static void sub_drop(struct storage_sub *sub)
{
	redisAsyncContext *ac = sub->ac;

	sub->ac = NULL;
	sub->ready = 0;
	ev_timer_stop(sub->loop, &sub->deadline);
	if (ac != NULL) {
		ac->data = NULL;
		redisAsyncFree(ac);
	}
}

static void sub_schedule_retry(struct storage_sub *sub)
{
	ev_timer_stop(sub->loop, &sub->deadline);
	ev_timer_stop(sub->loop, &sub->retry);
	ev_timer_set(&sub->retry, sub->backoff, 0.);
	ev_timer_start(sub->loop, &sub->retry);
	sub->backoff = sub->backoff * 2 > 5. ? 5. : sub->backoff * 2;
}

static void cb_sub_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	sub_connect(w->data);
}

static void cb_sub_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct storage_sub *sub = w->data;

	log_warn("storage redis: channel=%s not subscribed within the deadline, reconnecting",
		 sub->channel);
	sub_drop(sub);
	sub_schedule_retry(sub);
}

static void cb_sub_connect(const redisAsyncContext *ac, int status)
{
	struct storage_sub *sub = ac->data;

	if (sub == NULL || status == REDIS_OK)
		return;
	log_warn("storage redis: channel=%s %s:%d: connect: %s", sub->channel, sub->host,
		 sub->port, ac->errstr);
	/* hiredis frees <ac> after this callback */
	sub->ac = NULL;
	sub->ready = 0;
	sub_schedule_retry(sub);
}

static void cb_sub_disconnect(const redisAsyncContext *ac, int status)
{
	struct storage_sub *sub = ac->data;

	if (sub == NULL)
		return;
	log_warn("storage redis: channel=%s %s:%d: connection lost: %s", sub->channel,
		 sub->host, sub->port, ac->errstr[0] ? ac->errstr : "closed");
	sub->ac = NULL;
	sub->ready = 0;
	sub_schedule_retry(sub);
}

static void cb_sub_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct storage_sub *sub = ac->data;
	redisReply *r = reply;

	if (sub == NULL || r == NULL || r->type != REDIS_REPLY_ERROR)
		return;
	log_err("storage redis: channel=%s %s:%d: AUTH refused: %s", sub->channel, sub->host,
		sub->port, r->str);
	sub_drop(sub);
	sub->backoff = 5.;
	sub_schedule_retry(sub);
}

static void cb_sub_message(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct storage_sub *sub = ac->data;
	redisReply *r = reply;

	if (sub == NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "subscribe") == 0) {
		ev_timer_stop(sub->loop, &sub->deadline);
		sub->ready = 1;
		sub->backoff = 0.1;
		log_debug("storage redis: channel=%s subscribed", sub->channel);
	} else if (strcmp(r->element[0]->str, "message") == 0 &&
		   r->element[2]->type == REDIS_REPLY_STRING) {
		sub->cb(sub->arg, r->element[2]->str, r->element[2]->len);
	}
}

static void sub_connect(struct storage_sub *sub)
{
	redisAsyncContext *ac = redisAsyncConnect(sub->host, sub->port);

	if (ac == NULL || ac->err) {
		log_warn("storage redis: channel=%s %s:%d: connect: %s", sub->channel, sub->host,
			 sub->port, ac ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		sub_schedule_retry(sub);
		return;
	}
	ac->data = sub;
	sub->ac = ac;
	redisLibevAttach(sub->loop, ac);
	redisAsyncSetConnectCallback(ac, cb_sub_connect);
	redisAsyncSetDisconnectCallback(ac, cb_sub_disconnect);
	redisEnableKeepAlive(&ac->c);
	if (sub->auth[0] != '\0')
		redisAsyncCommand(ac, cb_sub_auth, NULL, "AUTH %s", sub->auth);
	redisAsyncCommand(ac, cb_sub_message, NULL, "SUBSCRIBE %s", sub->channel);
	ev_timer_set(&sub->deadline, sub->timeout_ms * 2 / 1000. + 1., 0.);
	ev_timer_start(sub->loop, &sub->deadline);
}

void storage_sub_free(struct storage_sub *sub)
{
	if (sub == NULL)
		return;
	sub_drop(sub);
	ev_timer_stop(sub->loop, &sub->retry);
	ev_timer_stop(sub->loop, &sub->deadline);
	free(sub->host);
	free(sub->auth);
	free(sub->channel);
	free(sub);
}

int storage_sub_ready(const struct storage_sub *sub)
{
	return sub != NULL && sub->ready;
}

static struct storage_sub *redis_subscribe(void *p, struct ev_loop *loop, const char *channel,
					   void (*cb)(void *arg, const char *msg, size_t len),
					   void *arg, char *err, size_t errlen)
{
	struct redis_be *be = p;
	struct storage_sub *sub = calloc(1, sizeof(*sub));
	char k[REDIS_KEYBUF];

	if (sub == NULL || redis_key(be, "", channel, k, sizeof(k)) < 0 ||
	    (sub->host = strdup(be->host)) == NULL || (sub->auth = strdup(be->auth)) == NULL ||
	    (sub->channel = strdup(k)) == NULL) {
		snprintf(err, errlen, "storage redis: subscribe %s: out of memory", channel);
		if (sub != NULL) {
			free(sub->host);
			free(sub->auth);
		}
		free(sub);
		return NULL;
	}
	sub->loop = loop;
	sub->port = be->port;
	sub->timeout_ms = be->timeout_ms;
	sub->cb = cb;
	sub->arg = arg;
	sub->backoff = 0.1;
	ev_timer_init(&sub->retry, cb_sub_retry, 0., 0.);
	ev_timer_init(&sub->deadline, cb_sub_deadline, 0., 0.);
	sub->retry.data = sub;
	sub->deadline.data = sub;
	sub_connect(sub);
	return sub;
}

const struct storage_ops storage_redis_ops = {
	.name = "redis",
	.open = redis_open_be,
	.close = redis_close_be,
	.get = redis_get,
	.put = redis_put,
	.del = redis_del,
	.list = redis_list,
	.lock = redis_lock,
	.unlock = redis_unlock,
	.ping = redis_ping,
	.subscribe = redis_subscribe,
	.publish = redis_publish,
};
