/* SPDX-License-Identifier: Apache-2.0 */
/* tls-alpn-01 on HAProxy (alpn.h).
 *
 * One entry per name under way: its key authorization once known, the push
 * state, the ACKs held for it. An entry whose push is in flight is freed by
 * the push's callback (the runtime client has no cancel). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "acme/acme.h"
#include "acme/crypto.h"
#include "core/alpn.h"
#include "core/certstore.h"
#include "core/config.h"
#include "core/health.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "runtime/runtime.h"
#include "spoa/spoa.h"
#include "storage/storage.h"

#define ALPN_WAITERS_MAX	16	/* held ACKs per name (the CA's few connections) */

enum alpn_state {
	ALPN_IDLE = 0,		/* key authorization known, not in HAProxy */
	ALPN_LOOKUP,		/* reading "alpn/<host>" (another node ordered) */
	ALPN_PUSHING,
	ALPN_PUSHED,
	ALPN__MAX
};

struct alpn_ent {
	struct alpn *al;
	enum alpn_state state;
	char *key_auth;			/* NULL until known */
	int ours;			/* this node ordered: removed by alpn_clear() */
	int cleared;			/* alpn_clear() during the push: remove when it ends */
	struct storage_req *req;
	ev_timer ttl;			/* removal: the order ended (another node's), or at the latest */
	ev_tstamp pushed_at;
	struct spoa_deferred *waiters[ALPN_WAITERS_MAX];
	size_t nwaiters;
	char host[];
};

struct alpn_store_req {
	LIST_ENTRY(alpn_store_req) link;
	struct alpn *al;
	struct storage_req *req;
	void (*done)(void *ctx, int ok, const char *err);
	void *ctx;
};

struct alpn {
	struct ev_loop *loop;
	const struct config *cfg;
	struct storage *st;
	struct health *health;
	struct certstore *cs;
	struct hmap map;		/* host -> struct alpn_ent */
	LIST_HEAD(, alpn_store_req) stores;
	unsigned lookups;
	int stopping;
	struct alpn_stats stats;
};

static void alpn_cert_path(const struct alpn *al, const char *host, char *out, size_t outlen)
{
	const char *list = al->cfg->alpn_crt_list;
	const char *slash = strrchr(list, '/');

	/* a name in HAProxy's store only (never a file): beside the crt-list */
	snprintf(out, outlen, "%.*s/acme-alpn/%s.pem", (int)(slash ? slash - list : 0), list, host);
}

static void alpn_release(struct alpn_ent *e)
{
	size_t i;

	for (i = 0; i < e->nwaiters; i++)
		spoa_deferred_done(e->waiters[i]);
	e->nwaiters = 0;
}

static void alpn_ent_free(struct alpn_ent *e)
{
	alpn_release(e);
	storage_cancel(e->req);
	ev_timer_stop(e->al->loop, &e->ttl);
	if (e->key_auth)
		OPENSSL_cleanse(e->key_auth, strlen(e->key_auth));
	free(e->key_auth);
	free(e);
}

/* Drops <e> from the map; removes its certificate from HAProxy when pushed. */
static void alpn_drop(struct alpn_ent *e)
{
	struct alpn *al = e->al;
	char path[CERTSTORE_HOST_MAX + 512];

	if (e->state == ALPN_PUSHING) {
		e->cleared = 1;		/* the push's callback finishes it */
		return;
	}
	if (e->state == ALPN_PUSHED) {
		alpn_cert_path(al, e->host, path, sizeof(path));
		if (rt_remove_cert(certstore_runtime(al->cs), path, al->cfg->alpn_crt_list, NULL, NULL) == 0)
			al->stats.removed++;
		log_info("host=%s tls-alpn-01 certificate removed from HAProxy", e->host);
	}
	if (e->req)
		al->lookups--;
	hmap_del(&al->map, e->host);
	alpn_ent_free(e);
}

/* Another node's order: its "alpn/<host>" is deleted when the order ends. */
static void cb_alpn_recheck(void *arg, struct storage_res *res)
{
	struct alpn_ent *e = arg;
	struct alpn *al = e->al;

	e->req = NULL;
	al->lookups--;
	health_storage_result(al->health, res);
	if (res->rc == 1 || ev_now(al->loop) - e->pushed_at >= ALPN_PUSHED_TTL_S) {
		alpn_drop(e);
		return;
	}
	ev_timer_set(&e->ttl, ALPN_RECHECK_S, 0.);
	ev_timer_start(al->loop, &e->ttl);
}

static void cb_alpn_ttl(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct alpn_ent *e = w->data;
	struct alpn *al = e->al;
	char key[STORAGE_KEY_MAX];

	if (e->ours || ev_now(loop) - e->pushed_at >= ALPN_PUSHED_TTL_S) {
		alpn_drop(e);
		return;
	}
	snprintf(key, sizeof(key), "alpn/%s", e->host);
	e->req = storage_get(al->st, key, cb_alpn_recheck, e);
	if (e->req)
		al->lookups++;
	else
		alpn_drop(e);
}

static void cb_alpn_pushed(void *arg, int ok, const char *err)
{
	struct alpn_ent *e = arg;
	struct alpn *al = e->al;

	if (al->stopping) {
		/* alpn_stop() answered its ACKs; alpn_free() frees it */
		e->state = ALPN_IDLE;
		return;
	}
	if (!ok) {
		al->stats.push_failed++;
		log_err("host=%s tls-alpn-01 certificate not pushed: %s", e->host, err ? err : "?");
		e->state = ALPN_IDLE;
	} else {
		al->stats.pushed++;
		e->state = ALPN_PUSHED;
		log_info("host=%s tls-alpn-01 certificate in HAProxy", e->host);
		e->pushed_at = ev_now(al->loop);
		ev_timer_set(&e->ttl, e->ours ? ALPN_PUSHED_TTL_S : ALPN_RECHECK_S, 0.);
		ev_timer_start(al->loop, &e->ttl);
	}
	alpn_release(e);
	if (e->cleared)
		alpn_drop(e);
}

static void alpn_push(struct alpn_ent *e)
{
	struct alpn *al = e->al;
	char path[CERTSTORE_HOST_MAX + 512], err[256];
	size_t len = 0;
	char *pem = acme_tlsalpn01_cert(e->host, e->key_auth, &len, err, sizeof(err));

	if (!pem) {
		log_err("host=%s %s", e->host, err);
		alpn_release(e);
		return;
	}
	alpn_cert_path(al, e->host, path, sizeof(path));
	e->state = ALPN_PUSHING;
	if (rt_push_cert(certstore_runtime(al->cs), path, al->cfg->alpn_crt_list, pem, len,
			 cb_alpn_pushed, e) == -1) {
		e->state = ALPN_IDLE;
		al->stats.push_failed++;
		alpn_release(e);
	}
	crypto_secret_free(pem, len);
}

static struct alpn_ent *alpn_ent_new(struct alpn *al, const char *host)
{
	size_t hl = strlen(host);
	struct alpn_ent *e;

	if (al->map.count >= ALPN_MAX || !(e = calloc(1, sizeof(*e) + hl + 1)))
		return NULL;
	memcpy(e->host, host, hl + 1);
	e->al = al;
	ev_timer_init(&e->ttl, cb_alpn_ttl, ALPN_PUSHED_TTL_S, 0.);
	e->ttl.data = e;
	if (hmap_put(&al->map, e->host, e, NULL) == -1) {
		free(e);
		return NULL;
	}
	return e;
}

/* ---- the ordering node ------------------------------------------------------- */

static void cb_alpn_stored(void *arg, struct storage_res *res)
{
	struct alpn_store_req *s = arg;

	health_storage_result(s->al->health, res);
	LIST_REMOVE(s, link);
	s->done(s->ctx, res->rc == 0, res->rc == 0 ? NULL : res->err);
	free(s);
}

int alpn_store(struct alpn *al, const char *host, const char *key_auth,
	       void (*done)(void *ctx, int ok, const char *err), void *ctx)
{
	struct alpn_ent *e = hmap_get(&al->map, host);
	struct alpn_store_req *s;
	char key[STORAGE_KEY_MAX];
	char *ka = strdup(key_auth);

	if (!ka || (!e && !(e = alpn_ent_new(al, host))) || !(s = calloc(1, sizeof(*s)))) {
		free(ka);
		return -1;
	}
	if (e->key_auth)
		OPENSSL_cleanse(e->key_auth, strlen(e->key_auth));
	free(e->key_auth);
	e->key_auth = ka;
	e->ours = 1;
	s->al = al;
	s->done = done;
	s->ctx = ctx;
	snprintf(key, sizeof(key), "alpn/%s", host);
	s->req = storage_put(al->st, key, key_auth, strlen(key_auth), ALPN_TTL_S, cb_alpn_stored, s);
	if (!s->req) {
		free(s);
		return -1;
	}
	LIST_INSERT_HEAD(&al->stores, s, link);
	/* in HAProxy before the CA is told: its first connection finds it */
	if (e->state == ALPN_IDLE)
		alpn_push(e);
	return 0;
}

void alpn_cancel(struct alpn *al, void *ctx)
{
	struct alpn_store_req *s, *next;

	for (s = LIST_FIRST(&al->stores); s; s = next) {
		next = LIST_NEXT(s, link);
		if (s->ctx != ctx)
			continue;
		storage_cancel(s->req);
		LIST_REMOVE(s, link);
		free(s);
	}
}

static void cb_alpn_ignore(void *arg, struct storage_res *res)
{
	health_storage_result(((struct alpn *)arg)->health, res);
}

void alpn_clear(struct alpn *al, const char *host)
{
	struct alpn_ent *e = hmap_get(&al->map, host);
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "alpn/%s", host);
	storage_del(al->st, key, cb_alpn_ignore, al);
	if (e)
		alpn_drop(e);
}

/* ---- any node: the CA's ClientHello ------------------------------------------ */

static void cb_alpn_lookup(void *arg, struct storage_res *res)
{
	struct alpn_ent *e = arg;
	struct alpn *al = e->al;

	e->req = NULL;
	al->lookups--;
	health_storage_result(al->health, res);
	if (res->rc == 0 && res->len > 0 && res->len < 1024 && (e->key_auth = malloc(res->len + 1))) {
		memcpy(e->key_auth, res->val, res->len);
		e->key_auth[res->len] = '\0';
		e->state = ALPN_IDLE;
		log_info("host=%s tls-alpn-01 challenge of another node: pushing its certificate", e->host);
		alpn_push(e);
		return;
	}
	/* no order knows the name: the CA (or anyone) gets the default certificate */
	alpn_release(e);
	hmap_del(&al->map, e->host);
	alpn_ent_free(e);
}

void alpn_hello(struct alpn *al, const char *host, struct spoa_reply *reply)
{
	struct alpn_ent *e = hmap_get(&al->map, host);
	struct spoa_deferred *d;
	char key[STORAGE_KEY_MAX];

	al->stats.hellos++;
	if (e && e->state == ALPN_PUSHED)
		return;
	if (!e) {
		if (al->lookups >= ALPN_LOOKUPS_MAX || !(e = alpn_ent_new(al, host))) {
			al->stats.refused++;
			return;
		}
		snprintf(key, sizeof(key), "alpn/%s", host);
		e->state = ALPN_LOOKUP;
		e->req = storage_get(al->st, key, cb_alpn_lookup, e);
		if (!e->req) {
			hmap_del(&al->map, e->host);
			alpn_ent_free(e);
			return;
		}
		al->lookups++;
	}
	if (e->nwaiters >= ALPN_WAITERS_MAX || !(d = spoa_reply_defer(reply))) {
		al->stats.refused++;
		return;
	}
	spoa_deferred_set_timeout(d, al->cfg->hold_timeout > 0 ? al->cfg->hold_timeout : 5);
	e->waiters[e->nwaiters++] = d;
	if (e->state == ALPN_IDLE && e->key_auth)
		alpn_push(e);
}

/* ---- life ------------------------------------------------------------------- */

struct alpn *alpn_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
		      struct health *health, struct certstore *cs)
{
	struct alpn *al = calloc(1, sizeof(*al));

	if (!al)
		return NULL;
	al->loop = loop;
	al->cfg = cfg;
	al->st = st;
	al->health = health;
	al->cs = cs;
	hmap_init(&al->map);
	LIST_INIT(&al->stores);
	return al;
}

static void alpn_stop_one(void *arg, const char *key, void *val)
{
	struct alpn_ent *e = val;

	alpn_release(e);
	storage_cancel(e->req);
	e->req = NULL;
	ev_timer_stop(e->al->loop, &e->ttl);
}

void alpn_stop(struct alpn *al)
{
	if (!al)
		return;
	al->stopping = 1;
	hmap_foreach(&al->map, alpn_stop_one, al);
	while (!LIST_EMPTY(&al->stores)) {
		struct alpn_store_req *s = LIST_FIRST(&al->stores);

		storage_cancel(s->req);
		LIST_REMOVE(s, link);
		free(s);
	}
}

static void alpn_free_one(void *val)
{
	alpn_ent_free(val);
}

void alpn_free(struct alpn *al)
{
	if (!al)
		return;
	alpn_stop(al);
	hmap_clear(&al->map, alpn_free_one);
	free(al);
}

void alpn_stats(const struct alpn *al, struct alpn_stats *out)
{
	*out = al->stats;
}
