/* Challenges: token -> key authorization, kept in memory for the SPOE path
 * and in storage (with a TTL) so that any node of a fleet answers the CA.
 * The ACME client answers a challenge only once storage has it; a node asked
 * for a token it does not hold defers that one ACK while it looks the token
 * up in shared storage (bounded in number; the deadline is storage's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acme/acme.h"
#include "lib/log.h"
#include "core/mgr_int.h"
#include "spoa/spoa.h"
#include "storage/storage.h"

#define MGR_CHALLENGE_TTL	3600
#define MGR_TOKEN_MAX		256

/* A challenge being stored for the ACME client, which waits for it. */
struct mgr_chstore {
	struct mgr *m;
	struct mgr_chstore *prev, *next;
	struct storage_req *req;
	void (*done)(void *ctx, int ok, const char *err);
	void *ctx;
	char token[MGR_TOKEN_MAX + 1];
};

void mgr_challenge_put_local(struct mgr *m, const char *token, const char *keyauth)
{
	char *old = NULL, *v = strdup(keyauth);

	if (!v || hmap_put(&m->challenges, token, v, (void **)&old) == -1)
		free(v);
	free(old);
}

int mgr_token_valid(const char *token)
{
	const char *p;

	if (!*token || strlen(token) > MGR_TOKEN_MAX)
		return 0;
	for (p = token; *p; p++)
		if (!(*p == '-' || *p == '_' || (*p >= '0' && *p <= '9') ||
		      (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
			return 0;
	return 1;
}

/* A key authorization read from storage is "<token>.<thumbprint>", both
 * base64url: anything else is not sent to HAProxy. */
static int mgr_keyauth_valid(const char *v, size_t len)
{
	size_t i, dots = 0;

	if (len == 0 || len > 2 * MGR_TOKEN_MAX)
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

static void mgr_challenge_key(const char *token, char *key, size_t keylen)
{
	snprintf(key, keylen, "challenges/%s", token);
}

static void cb_mgr_challenge_put(void *arg, struct storage_res *res)
{
	struct mgr *m = arg;

	mgr_storage_result(m, res);
	if (res->rc == -1)
		log_err("challenge not shared through storage: %s", res->err);
}

void mgr_challenge_store(struct mgr *m, const char *token, const char *keyauth, unsigned ttl)
{
	char key[STORAGE_KEY_MAX];

	mgr_challenge_put_local(m, token, keyauth);
	mgr_challenge_key(token, key, sizeof(key));
	storage_put(m->st, key, keyauth, strlen(keyauth), ttl, cb_mgr_challenge_put, m);
}

void mgr_challenge_forget(struct mgr *m, const char *token)
{
	char key[STORAGE_KEY_MAX];

	free(hmap_del(&m->challenges, token));
	free(hmap_del(&m->chcache, token));
	mgr_challenge_key(token, key, sizeof(key));
	storage_del(m->st, key, cb_mgr_challenge_put, m);
}

/* A key authorization another node stored, kept a minute: the CA asks for
 * one token several times, from several places. */
struct mgr_chcached {
	time_t expires;
	char keyauth[];
};

static void mgr_chcache_put(struct mgr *m, const char *token, const char *ka, size_t len)
{
	struct mgr_chcached *c = malloc(sizeof(*c) + len + 1), *old = NULL;

	if (!c)
		return;
	if (m->chcache.count >= MGR_CHCACHE_MAX) {
		/* strangers choose tokens: a full cache starts over */
		hmap_clear(&m->chcache, free);
		hmap_init(&m->chcache);
	}
	c->expires = time(NULL) + MGR_CHCACHE_TTL;
	memcpy(c->keyauth, ka, len);
	c->keyauth[len] = '\0';
	if (hmap_put(&m->chcache, token, c, (void **)&old) == -1)
		free(c);
	free(old);
}

const char *mgr_challenge_local(struct mgr *m, const char *token)
{
	struct mgr_chcached *c;
	const char *ka = hmap_get(&m->challenges, token);

	if (ka)
		return ka;
	c = hmap_get(&m->chcache, token);
	if (!c)
		return NULL;
	if (c->expires > time(NULL))
		return c->keyauth;
	free(hmap_del(&m->chcache, token));
	return NULL;
}

/* ---- look-ups for the SPOE path ------------------------------------------ */

static void mgr_lookup_unlink(struct mgr_lookup *l)
{
	struct mgr *m = l->m;

	if (l->prev)
		l->prev->next = l->next;
	else
		m->lookups = l->next;
	if (l->next)
		l->next->prev = l->prev;
	m->nlookups--;
}

static void cb_mgr_lookup(void *arg, struct storage_res *res)
{
	struct mgr_lookup *l = arg;
	struct spoa_reply *r = spoa_deferred_reply(l->d);

	mgr_storage_result(l->m, res);
	if (res->rc == 0 && mgr_keyauth_valid(res->val, res->len)) {
		mgr_chcache_put(l->m, res->key + strlen("challenges/"), res->val, res->len);
		if (r) {
			l->m->cnt.http01_hits++;
			spoa_reply_set_str(r, SPOP_SCOPE_TXN, "keyauth", res->val, res->len);
		}
	}
	mgr_lookup_unlink(l);
	spoa_deferred_done(l->d);
	free(l);
}

int mgr_challenge_lookup_shared(struct mgr *m, const char *token, struct spoa_deferred *d)
{
	struct mgr_lookup *l;
	char key[STORAGE_KEY_MAX];

	if (m->nlookups >= MGR_LOOKUPS_MAX || !(l = calloc(1, sizeof(*l))))
		return -1;
	mgr_challenge_key(token, key, sizeof(key));
	l->m = m;
	l->d = d;
	l->req = storage_get(m->st, key, cb_mgr_lookup, l);
	if (!l->req) {
		free(l);
		return -1;
	}
	l->next = m->lookups;
	if (l->next)
		l->next->prev = l;
	m->lookups = l;
	m->nlookups++;
	return 0;
}

void mgr_challenge_shutdown(struct mgr *m)
{
	struct mgr_lookup *l;
	struct mgr_chstore *c;

	while ((l = m->lookups)) {
		storage_cancel(l->req);
		mgr_lookup_unlink(l);
		spoa_deferred_done(l->d);
		free(l);
	}
	while ((c = m->chstores)) {
		m->chstores = c->next;
		storage_cancel(c->req);
		free(c);
	}
}

/* ---- the ACME client's hooks --------------------------------------------- */

static void mgr_chstore_unlink(struct mgr_chstore *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		c->m->chstores = c->next;
	if (c->next)
		c->next->prev = c->prev;
}

static void cb_mgr_chstore(void *arg, struct storage_res *res)
{
	struct mgr_chstore *c = arg;
	struct mgr *m = c->m;

	mgr_storage_result(m, res);
	mgr_chstore_unlink(c);
	if (res->rc == -1) {
		/* the CA may ask any node: never answer a challenge only this one knows */
		free(hmap_del(&m->challenges, c->token));
		log_err("challenge not shared through storage: %s", res->err);
	}
	c->done(c->ctx, res->rc == 0, res->rc == 0 ? NULL : res->err);
	free(c);
}

int mgr_hook_challenge_store(void *arg, const char *host, const char *token, const char *keyauth,
			     void (*done)(void *ctx, int ok, const char *err), void *ctx)
{
	struct mgr *m = arg;
	struct mgr_chstore *c;
	char key[STORAGE_KEY_MAX];

	if (!mgr_token_valid(token) || !(c = calloc(1, sizeof(*c))))
		return -1;
	c->m = m;
	c->done = done;
	c->ctx = ctx;
	snprintf(c->token, sizeof(c->token), "%s", token);
	mgr_challenge_put_local(m, token, keyauth);
	mgr_challenge_key(token, key, sizeof(key));
	c->req = storage_put(m->st, key, keyauth, strlen(keyauth), MGR_CHALLENGE_TTL,
			     cb_mgr_chstore, c);
	if (!c->req) {
		free(hmap_del(&m->challenges, token));
		free(c);
		return -1;
	}
	c->next = m->chstores;
	if (c->next)
		c->next->prev = c;
	m->chstores = c;
	return 0;
}

void mgr_hook_challenge_store_cancel(void *arg, void *ctx)
{
	struct mgr *m = arg;
	struct mgr_chstore *c, *next;

	for (c = m->chstores; c; c = next) {
		next = c->next;
		if (c->ctx != ctx)
			continue;
		storage_cancel(c->req);
		mgr_chstore_unlink(c);
		free(c);
	}
}

void mgr_hook_challenge_clear(void *arg, const char *host, const char *token)
{
	mgr_challenge_forget(arg, token);
}
