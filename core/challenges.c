/* http-01 challenges (challenges.h). The ACME client answers a challenge
 * only once storage has it; a key authorization another node stored is kept
 * a minute once found, since the CA asks for one token several times. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "acme/acme.h"
#include "core/alpn.h"
#include "core/challenges.h"
#include "core/health.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "spoa/spoa.h"
#include "storage/storage.h"

#define CH_TTL		3600
#define CH_TOKEN_MAX	256
#define CH_LOOKUPS_MAX	1024	/* http-01 storage look-ups in flight */
#define CH_CACHE_MAX	1024	/* key authorizations found in shared storage */
#define CH_CACHE_TTL	60	/* seconds: a CA validates from several places */

/* An http-01 look-up in shared storage while HAProxy waits for the ACK. */
struct ch_lookup {
	struct challenges *ch;
	struct spoa_deferred *d;
	struct storage_req *req;
	LIST_ENTRY(ch_lookup) link;
};

/* A challenge being stored for the ACME client, which waits for it. */
struct ch_store {
	struct challenges *ch;
	LIST_ENTRY(ch_store) link;
	struct storage_req *req;
	void (*done)(void *ctx, int ok, const char *err);
	void *ctx;
	char token[CH_TOKEN_MAX + 1];
};

struct challenges {
	struct storage *st;
	struct health *health;
	struct alpn *alpn;		/* tls-alpn-01 solver, or NULL */
	struct hmap local;		/* token -> key authorization (malloc'd) */
	struct hmap cache;		/* token -> struct ch_cached */
	LIST_HEAD(, ch_lookup) lookups;	/* look-ups in flight */
	unsigned nlookups;
	LIST_HEAD(, ch_store) stores;	/* stores in flight */
	uint64_t lookup_hits;
};

static void ch_put_local(struct challenges *ch, const char *token, const char *keyauth)
{
	char *old = NULL, *v = strdup(keyauth);

	if (!v || hmap_put(&ch->local, token, v, (void **)&old) == -1)
		free(v);
	free(old);
}

int challenges_token_valid(const char *token)
{
	const char *p;

	if (!*token || strlen(token) > CH_TOKEN_MAX)
		return 0;
	for (p = token; *p; p++)
		if (!(*p == '-' || *p == '_' || (*p >= '0' && *p <= '9') ||
		      (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
			return 0;
	return 1;
}

/* A key authorization read from storage is "<token>.<thumbprint>", both
 * base64url: anything else is not sent to HAProxy. */
static int ch_keyauth_valid(const char *v, size_t len)
{
	size_t i, dots = 0;

	if (len == 0 || len > 2 * CH_TOKEN_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		if (v[i] == '.')
			dots++;
		else if (!(v[i] == '-' || v[i] == '_' || (v[i] >= '0' && v[i] <= '9') ||
			   (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z')))
			return 0;
	}
	return dots == 1;
}

static void ch_key(const char *token, char *key, size_t keylen)
{
	snprintf(key, keylen, "challenges/%s", token);
}

static void cb_ch_put(void *arg, struct storage_res *res)
{
	struct challenges *ch = arg;

	health_storage_result(ch->health, res);
	if (res->rc == -1)
		log_err("challenge not shared through storage: %s", res->err);
}

void challenges_store(struct challenges *ch, const char *token, const char *keyauth, unsigned ttl)
{
	char key[STORAGE_KEY_MAX];

	ch_put_local(ch, token, keyauth);
	ch_key(token, key, sizeof(key));
	storage_put(ch->st, key, keyauth, strlen(keyauth), ttl, cb_ch_put, ch);
}

void challenges_forget(struct challenges *ch, const char *token)
{
	char key[STORAGE_KEY_MAX];

	free(hmap_del(&ch->local, token));
	free(hmap_del(&ch->cache, token));
	ch_key(token, key, sizeof(key));
	storage_del(ch->st, key, cb_ch_put, ch);
}

/* A key authorization another node stored, kept a minute: the CA asks for
 * one token several times, from several places. */
struct ch_cached {
	time_t expires;
	char keyauth[];
};

static void ch_cache_put(struct challenges *ch, const char *token, const char *ka, size_t len)
{
	struct ch_cached *c = malloc(sizeof(*c) + len + 1), *old = NULL;

	if (!c)
		return;
	if (ch->cache.count >= CH_CACHE_MAX) {
		/* strangers choose tokens: a full cache starts over */
		hmap_clear(&ch->cache, free);
		hmap_init(&ch->cache);
	}
	c->expires = time(NULL) + CH_CACHE_TTL;
	memcpy(c->keyauth, ka, len);
	c->keyauth[len] = '\0';
	if (hmap_put(&ch->cache, token, c, (void **)&old) == -1)
		free(c);
	free(old);
}

const char *challenges_local(struct challenges *ch, const char *token)
{
	struct ch_cached *c;
	const char *ka = hmap_get(&ch->local, token);

	if (ka)
		return ka;
	c = hmap_get(&ch->cache, token);
	if (!c)
		return NULL;
	if (c->expires > time(NULL))
		return c->keyauth;
	free(hmap_del(&ch->cache, token));
	return NULL;
}

/* ---- look-ups for the SPOE path ------------------------------------------ */

static void ch_lookup_unlink(struct ch_lookup *l)
{
	LIST_REMOVE(l, link);
	l->ch->nlookups--;
}

static void cb_ch_lookup(void *arg, struct storage_res *res)
{
	struct ch_lookup *l = arg;
	struct spoa_reply *r = spoa_deferred_reply(l->d);

	health_storage_result(l->ch->health, res);
	if (res->rc == 0 && ch_keyauth_valid(res->val, res->len)) {
		ch_cache_put(l->ch, res->key + strlen("challenges/"), res->val, res->len);
		if (r) {
			l->ch->lookup_hits++;
			spoa_reply_set_str(r, SPOP_SCOPE_TXN, "keyauth", res->val, res->len);
		}
	}
	ch_lookup_unlink(l);
	spoa_deferred_done(l->d);
	free(l);
}

int challenges_lookup_shared(struct challenges *ch, const char *token, struct spoa_deferred *d)
{
	struct ch_lookup *l;
	char key[STORAGE_KEY_MAX];

	if (ch->nlookups >= CH_LOOKUPS_MAX || !(l = calloc(1, sizeof(*l))))
		return -1;
	ch_key(token, key, sizeof(key));
	l->ch = ch;
	l->d = d;
	l->req = storage_get(ch->st, key, cb_ch_lookup, l);
	if (!l->req) {
		free(l);
		return -1;
	}
	LIST_INSERT_HEAD(&ch->lookups, l, link);
	ch->nlookups++;
	return 0;
}

void challenges_free(struct challenges *ch)
{
	struct ch_lookup *l;
	struct ch_store *c;

	if (!ch)
		return;
	while ((l = LIST_FIRST(&ch->lookups))) {
		storage_cancel(l->req);
		ch_lookup_unlink(l);
		spoa_deferred_done(l->d);
		free(l);
	}
	while ((c = LIST_FIRST(&ch->stores))) {
		LIST_REMOVE(c, link);
		storage_cancel(c->req);
		free(c);
	}
	hmap_clear(&ch->local, free);
	hmap_clear(&ch->cache, free);
	free(ch);
}

struct challenges *challenges_new(struct storage *st, struct health *health)
{
	struct challenges *ch = calloc(1, sizeof(*ch));

	if (!ch)
		goto out;
	ch->st = st;
	ch->health = health;
	LIST_INIT(&ch->lookups);
	LIST_INIT(&ch->stores);
	hmap_init(&ch->local);
	hmap_init(&ch->cache);
out:
	return ch;
}

uint64_t challenges_lookup_hits(const struct challenges *ch)
{
	return ch->lookup_hits;
}

/* ---- the ACME client's hooks --------------------------------------------- */

static void cb_ch_store(void *arg, struct storage_res *res)
{
	struct ch_store *c = arg;
	struct challenges *ch = c->ch;

	health_storage_result(ch->health, res);
	LIST_REMOVE(c, link);
	if (res->rc == -1) {
		/* the CA may ask any node: never answer a challenge only this one knows */
		free(hmap_del(&ch->local, c->token));
		log_err("challenge not shared through storage: %s", res->err);
	}
	c->done(c->ctx, res->rc == 0, res->rc == 0 ? NULL : res->err);
	free(c);
}

static int ch_hook_store(void *arg, const char *host, const char *token, const char *keyauth,
			 void (*done)(void *ctx, int ok, const char *err), void *ctx)
{
	struct challenges *ch = arg;
	struct ch_store *c;
	char key[STORAGE_KEY_MAX];

	if (!challenges_token_valid(token) || !(c = calloc(1, sizeof(*c))))
		return -1;
	c->ch = ch;
	c->done = done;
	c->ctx = ctx;
	snprintf(c->token, sizeof(c->token), "%s", token);
	ch_put_local(ch, token, keyauth);
	ch_key(token, key, sizeof(key));
	c->req = storage_put(ch->st, key, keyauth, strlen(keyauth), CH_TTL, cb_ch_store, c);
	if (!c->req) {
		free(hmap_del(&ch->local, token));
		free(c);
		return -1;
	}
	LIST_INSERT_HEAD(&ch->stores, c, link);
	return 0;
}

static void ch_hook_store_cancel(void *arg, void *ctx)
{
	struct challenges *ch = arg;
	struct ch_store *c, *next;

	for (c = LIST_FIRST(&ch->stores); c; c = next) {
		next = LIST_NEXT(c, link);
		if (c->ctx != ctx)
			continue;
		storage_cancel(c->req);
		LIST_REMOVE(c, link);
		free(c);
	}
	if (ch->alpn)
		alpn_cancel(ch->alpn, ctx);
}

static void ch_hook_clear(void *arg, const char *host, const char *token)
{
	challenges_forget(arg, token);
}

/* tls-alpn-01: the solver set by challenges_set_alpn() */
static int ch_hook_alpn_store(void *arg, const char *host, const char *key_auth,
			      void (*done)(void *ctx, int ok, const char *err), void *ctx)
{
	struct challenges *ch = arg;

	return ch->alpn ? alpn_store(ch->alpn, host, key_auth, done, ctx) : -1;
}

static void ch_hook_alpn_clear(void *arg, const char *host)
{
	struct challenges *ch = arg;

	if (ch->alpn)
		alpn_clear(ch->alpn, host);
}

void challenges_set_alpn(struct challenges *ch, struct alpn *al)
{
	ch->alpn = al;
}

const struct acme_hooks challenges_acme_hooks = {
	.challenge_store = ch_hook_store,
	.challenge_store_cancel = ch_hook_store_cancel,
	.challenge_clear = ch_hook_clear,
	.alpn_store = ch_hook_alpn_store,
	.alpn_clear = ch_hook_alpn_clear,
};
