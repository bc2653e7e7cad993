/* SPDX-License-Identifier: Apache-2.0 */
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
/* RFC 8555 §8.1: a token carries at least 128 bits, 22 base64url characters;
 * real ones are 43. A cap well below NAME_MAX keeps "challenges/<token>" a
 * valid file name in every store. */
#define CH_TOKEN_MIN	22
#define CH_TOKEN_MAX	128
#define CH_LOOKUPS_MAX	1024	/* http-01 storage look-ups in flight */
#define CH_CACHE_MAX	1024	/* key authorizations found in shared storage */
#define CH_CACHE_TTL	60	/* seconds: a CA validates from several places */
#define CH_NEG_MAX	4096	/* well-formed tokens storage did not hold */
#define CH_NEG_TTL	10	/* seconds; see ch_neg_put() */

/* Another deferred ACK waiting for the same token's look-up. */
struct ch_waiter {
	struct spoa_deferred *d;
	struct ch_waiter *next;
};

/* An http-01 look-up in shared storage while HAProxy waits for the ACK; the
 * same token asked again meanwhile joins it (one read: a CA validates from
 * several places at once, a scanner repeats itself). */
struct ch_lookup {
	struct challenges *ch;
	struct spoa_deferred *d;
	struct ch_waiter *more;
	struct storage_req *req;
	LIST_ENTRY(ch_lookup) link;
	char token[];
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
	struct hmap neg;		/* token -> time_t (malloc'd): absent until then */
	int shared;			/* another process may hold a token (not shm) */
	LIST_HEAD(, ch_lookup) lookups;	/* look-ups in flight */
	struct hmap inflight;		/* token -> its struct ch_lookup */
	unsigned nlookups;		/* deferred ACKs waiting for them */
	uint64_t lookup_reads;		/* storage reads they made */
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
	size_t n = strlen(token);

	if (n < CH_TOKEN_MIN || n > CH_TOKEN_MAX)
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

	free(hmap_del(&ch->neg, token));
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

/* A well-formed token storage did not hold, remembered CH_NEG_TTL seconds so
 * that a scanner repeating it costs no read. A real token cannot be in here:
 * nobody but the node that stored it and the CA knows it before it is stored,
 * and the CA asks only after that; this node's own stores drop the entry. */
static void ch_neg_put(struct challenges *ch, const char *token)
{
	time_t *t = malloc(sizeof(*t)), *old = NULL;

	if (!t)
		return;
	if (ch->neg.count >= CH_NEG_MAX) {
		/* strangers choose tokens: a full cache starts over */
		hmap_clear(&ch->neg, free);
		hmap_init(&ch->neg);
	}
	*t = time(NULL) + CH_NEG_TTL;
	if (hmap_put(&ch->neg, token, t, (void **)&old) == -1)
		free(t);
	free(old);
}

int challenges_known_absent(struct challenges *ch, const char *token)
{
	time_t *t;

	if (!ch->shared)
		return 1;
	t = hmap_get(&ch->neg, token);
	if (!t)
		return 0;
	if (*t > time(NULL))
		return 1;
	free(hmap_del(&ch->neg, token));
	return 0;
}

/* ---- look-ups for the SPOE path ------------------------------------------ */

/* Completes deferred ACK <d> with key authorization <ka> (NULL: unknown). */
static void ch_lookup_answer(struct challenges *ch, struct spoa_deferred *d, const char *ka,
			     size_t len)
{
	struct spoa_reply *r = spoa_deferred_reply(d);

	if (ka && r) {
		ch->lookup_hits++;
		spoa_reply_set_str(r, SPOP_SCOPE_TXN, "keyauth", ka, len);
	}
	spoa_deferred_done(d);
}

/* Answers every ACK waiting for <l> with <ka> and frees <l>. */
static void ch_lookup_end(struct ch_lookup *l, const char *ka, size_t len)
{
	struct challenges *ch = l->ch;
	struct ch_waiter *w;

	LIST_REMOVE(l, link);
	hmap_del(&ch->inflight, l->token);
	while ((w = l->more)) {
		l->more = w->next;
		ch->nlookups--;
		ch_lookup_answer(ch, w->d, ka, len);
		free(w);
	}
	ch->nlookups--;
	ch_lookup_answer(ch, l->d, ka, len);
	free(l);
}

static void cb_ch_lookup(void *arg, struct storage_res *res)
{
	struct ch_lookup *l = arg;
	int found = res->rc == 0 && ch_keyauth_valid(res->val, res->len);

	/* the key is a client's choice: its answer, whatever it is, says nothing
	 * of storage's health that the agent's own calls do not (issue 19) */
	if (res->rc == 1)
		ch_neg_put(l->ch, l->token);
	if (found)
		ch_cache_put(l->ch, l->token, res->val, res->len);
	ch_lookup_end(l, found ? res->val : NULL, found ? res->len : 0);
}

int challenges_lookup_shared(struct challenges *ch, const char *token, struct spoa_deferred *d)
{
	struct ch_lookup *l;
	struct ch_waiter *w;
	char key[STORAGE_KEY_MAX];
	size_t n = strlen(token);

	if (ch->nlookups >= CH_LOOKUPS_MAX || n > CH_TOKEN_MAX)
		return -1;
	l = hmap_get(&ch->inflight, token);
	if (l) {
		if (!(w = malloc(sizeof(*w))))
			return -1;
		w->d = d;
		w->next = l->more;
		l->more = w;
		ch->nlookups++;
		return 0;
	}
	if (!(l = calloc(1, sizeof(*l) + n + 1)))
		return -1;
	memcpy(l->token, token, n + 1);
	ch_key(token, key, sizeof(key));
	l->ch = ch;
	l->d = d;
	if (hmap_put(&ch->inflight, l->token, l, NULL) == -1) {
		free(l);
		return -1;
	}
	l->req = storage_get(ch->st, key, cb_ch_lookup, l);
	if (!l->req) {
		hmap_del(&ch->inflight, l->token);
		free(l);
		return -1;
	}
	LIST_INSERT_HEAD(&ch->lookups, l, link);
	ch->nlookups++;
	ch->lookup_reads++;
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
		ch_lookup_end(l, NULL, 0);
	}
	while ((c = LIST_FIRST(&ch->stores))) {
		LIST_REMOVE(c, link);
		storage_cancel(c->req);
		free(c);
	}
	hmap_clear(&ch->local, free);
	hmap_clear(&ch->cache, free);
	hmap_clear(&ch->neg, free);
	hmap_clear(&ch->inflight, NULL);
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
	hmap_init(&ch->neg);
	hmap_init(&ch->inflight);
	/* shm is this process's memory: every token it holds is in ch->local.
	 * The file store may be shared by several agents on one box (its locks
	 * are flock()ed for that), so it is looked up like Redis and Consul. */
	ch->shared = strcmp(storage_name(st), "shm") != 0;
out:
	return ch;
}

uint64_t challenges_lookup_hits(const struct challenges *ch)
{
	return ch->lookup_hits;
}

uint64_t challenges_lookup_reads(const struct challenges *ch)
{
	return ch->lookup_reads;
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
	free(hmap_del(&ch->neg, token));
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
