/* SPDX-License-Identifier: Apache-2.0 */
/* The certificate store's memory (certstore.h, certstore_int.h): the index
 * of every stored name, the full entries (with preload on_demand only the
 * share, the hot set and the ones touched lately), installs, and what is
 * learnt of a certificate. Storage reads are certread.c's, cert_dir and
 * HAProxy certdeploy.c's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>

#include <ev.h>

#include "core/certstore.h"
#include "core/certstore_int.h"
#include "core/config.h"
#include "core/health.h"
#include "core/nameidx.h"
#include "lib/fsutil.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "lib/workq.h"
#include "runtime/runtime.h"
#include "storage/storage.h"

/* ---- memory -------------------------------------------------------------- */

/* on_demand: <host>'s stored bundle failed the check. Until the window ends
 * its SNIs read nothing and find no certificate (an allowed name is issued
 * anew), and nothing more is logged (issue 19: every ClientHello read, parsed
 * and logged it). Bounded: a full table starts over. */
void certstore_refused_put(struct certstore *cs, const char *host)
{
	time_t *t = malloc(sizeof(*t)), *old = NULL;

	if (!t)
		return;
	if (cs->refused_until.count >= CERTSTORE_REFUSED_MAX) {
		hmap_clear(&cs->refused_until, free);
		hmap_init(&cs->refused_until);
	}
	*t = time(NULL) + CERTSTORE_REFUSED_S;
	if (hmap_put(&cs->refused_until, host, t, (void **)&old) == -1)
		free(t);
	free(old);
}

/* 1 while <host>'s stored bundle counts as refused. */
int certstore_refused_active(struct certstore *cs, const char *host)
{
	time_t *t = hmap_get(&cs->refused_until, host);

	if (!t)
		return 0;
	if (*t > time(NULL))
		return 1;
	free(hmap_del(&cs->refused_until, host));
	return 0;
}

void certstore_cert_free(void *p)
{
	struct certstore_cert *c = p;

	if (!c)
		return;
	free(c->info.strs);
	crypto_secret_free(c->pem, c->len);
	free(c);
}

/* Copies what memory keeps of <ci> into <out> (its strings in one block).
 * Returns 0, or -1 when out of memory. */
static int certstore_info_set(struct certstore_info *out, const struct crypto_cert_info *ci)
{
	const char *src[5] = { ci->serial_hex, ci->digest_sha1, ci->issuer_cn, ci->pubkey_type,
			       ci->ari_cert_id };
	const char **dst[5] = { &out->serial_hex, &out->digest_sha1, &out->issuer_cn,
				&out->pubkey_type, &out->ari_cert_id };
	size_t i, n = 0, l;
	char *p;

	for (i = 0; i < 5; i++)
		n += strlen(src[i]) + 1;
	p = malloc(n);
	if (!p)
		return -1;
	free(out->strs);
	out->strs = p;
	for (i = 0; i < 5; i++) {
		l = strlen(src[i]) + 1;
		memcpy(p, src[i], l);
		*dst[i] = p;
		p += l;
	}
	out->not_before = ci->not_before;
	out->not_after = ci->not_after;
	return 0;
}

/* A certificate of <host> with no metadata yet. */
static struct certstore_cert *certstore_cert_new(const char *host)
{
	size_t n = strlen(host) + 1;
	struct certstore_cert *c = calloc(1, sizeof(*c) + n);

	if (!c)
		return NULL;
	memcpy(c->host, host, n);
	c->info.serial_hex = c->info.digest_sha1 = c->info.issuer_cn = "";
	c->info.pubkey_type = c->info.ari_cert_id = "";
	return c;
}

int certstore_keeps_pem(const struct certstore *cs)
{
	return cs->cfg->preload != CONFIG_PRELOAD_ON_DEMAND;
}

/* on_demand: the PEM leaves memory once nothing under way needs it. */
void certstore_trim(struct certstore *cs, struct certstore_cert *c)
{
	if (certstore_keeps_pem(cs) || c->pushing || !c->pem)
		return;
	crypto_secret_free(c->pem, c->len);
	c->pem = NULL;
}

const char *certstore_time_str(time_t t, char out[CERTSTORE_TIME_STR])
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(out, CERTSTORE_TIME_STR, "%Y-%m-%d %H:%M:%S", &tm))
		out[0] = '\0';
	return out;
}

struct certstore_cert *certstore_get(const struct certstore *cs, const char *host)
{
	return hmap_get(&cs->certs, host);
}

size_t certstore_count(const struct certstore *cs)
{
	return nameidx_count(cs->names);
}

size_t certstore_detailed(const struct certstore *cs)
{
	return cs->certs.count;
}

int certstore_stored(const struct certstore *cs, const char *host)
{
	return nameidx_contains(cs->names, host);
}

size_t certstore_index_bytes(const struct certstore *cs)
{
	return nameidx_bytes(cs->names);
}

/* 1 when this node keeps <host>'s full entry whatever HAProxy holds: its
 * renewal share, or a job of it under way (the owner says; no hook: all). */
int certstore_wants(const struct certstore *cs, const char *host)
{
	return !cs->hooks.detail || cs->hooks.detail(cs->hooks.arg, host);
}

/* on_demand: a full entry, without metadata yet, for the stored index-only
 * <host>. NULL when out of memory. */
struct certstore_cert *certstore_promote(struct certstore *cs, const char *host)
{
	struct certstore_cert *c = certstore_cert_new(host);

	if (c && hmap_put(&cs->certs, host, c, NULL) == -1) {
		certstore_cert_free(c);
		c = NULL;
	}
	return c;
}

/* on_demand: <c> goes back to index-only (its name stays stored) when
 * nothing here needs its details: not this node's to renew, not in HAProxy
 * or cert_dir, nothing under way. Its renewal entry goes (removed fires).
 * Returns 1 when <c> was freed. */
int certstore_demote(struct certstore *cs, struct certstore_cert *c)
{
	char host[CERTSTORE_HOST_MAX];

	if (certstore_keeps_pem(cs) || c->loaded || c->pushing || c->writing || c->pem ||
	    c->on_disk || certstore_wants(cs, c->host))
		return 0;
	snprintf(host, sizeof(host), "%s", c->host);
	hmap_del(&cs->certs, host);
	certstore_cert_free(c);
	if (cs->hooks.removed)
		cs->hooks.removed(cs->hooks.arg, host);
	return 1;
}

/* One certstore_peek() of an index-only name under way. */
struct certstore_peek {
	struct certstore *cs;
	void (*cb)(void *arg, const struct certstore_cert *c);
	void *arg;
};

/* Ends <pk> with the facts <ci> (NULL: none) of <host>. */
static void certstore_peek_end(struct certstore_peek *pk, const char *host,
			       const struct crypto_cert_info *ci)
{
	struct certstore_cert *c = ci ? certstore_cert_new(host) : NULL;

	if (c && certstore_info_set(&c->info, ci) == 0) {
		c->has_info = 1;
		pk->cb(pk->arg, c);
	} else {
		pk->cb(pk->arg, NULL);
	}
	certstore_cert_free(c);
	free(pk);
}

static void cb_certstore_peek_pem(void *arg, struct storage_res *res)
{
	struct certstore_peek *pk = arg;
	const char *host = res->key + strlen("certs/");
	struct crypto_cert_info ci;
	char err[256];

	health_storage_result(pk->cs->health, res);
	if (res->rc == 0 && crypto_cert_info(res->val, res->len, &ci, err, sizeof(err)) == 0) {
		pk->cs->pem_parsed++;
		certstore_peek_end(pk, host, &ci);
		crypto_cert_info_clear(&ci);
		return;
	}
	if (res->rc == -1)
		log_err("host=%s %s", host, res->err);
	certstore_peek_end(pk, host, NULL);
}

static void cb_certstore_peek_meta(void *arg, struct storage_res *res)
{
	struct certstore_peek *pk = arg;
	const char *host = res->key + strlen(CERTSTORE_META_PREFIX);
	struct crypto_cert_info ci;
	char key[STORAGE_KEY_MAX], err[256];

	health_storage_result(pk->cs->health, res);
	if (res->rc == 0 && certstore_meta_decode(host, res->val, res->len, &ci, err, sizeof(err)) == 0) {
		certstore_peek_end(pk, host, &ci);
		return;
	}
	/* no good record: the certificate says */
	snprintf(key, sizeof(key), "certs/%s", host);
	if (!storage_get(pk->cs->st, key, cb_certstore_peek_pem, pk))
		certstore_peek_end(pk, host, NULL);
}

int certstore_peek(struct certstore *cs, const char *host,
		   void (*cb)(void *arg, const struct certstore_cert *c), void *arg)
{
	struct certstore_cert *c = certstore_get(cs, host);
	struct certstore_peek *pk;
	char key[STORAGE_KEY_MAX];

	if ((c && c->has_info) || !nameidx_contains(cs->names, host)) {
		cb(arg, c);
		return 0;
	}
	pk = calloc(1, sizeof(*pk));
	if (!pk)
		return -1;
	pk->cs = cs;
	pk->cb = cb;
	pk->arg = arg;
	snprintf(key, sizeof(key), CERTSTORE_META_PREFIX "%s", host);
	if (!storage_get(cs->st, key, cb_certstore_peek_meta, pk)) {
		free(pk);
		return -1;
	}
	return 0;
}

void certstore_foreach_name(const struct certstore *cs,
			    void (*fn)(void *arg, const char *host, struct certstore_cert *c),
			    void *arg)
{
	size_t pos = 0;
	const char *host;

	while ((host = nameidx_next(cs->names, &pos)))
		fn(arg, host, certstore_get(cs, host));
}

struct certstore_each {
	void (*fn)(void *arg, struct certstore_cert *c);
	void *arg;
};

static void certstore_each_cb(void *arg, const char *host, void *val)
{
	struct certstore_each *e = arg;

	e->fn(e->arg, val);
}

void certstore_foreach(const struct certstore *cs,
		       void (*fn)(void *arg, struct certstore_cert *c), void *arg)
{
	struct certstore_each e = { fn, arg };

	hmap_foreach(&cs->certs, certstore_each_cb, &e);
}

void certstore_set_hooks(struct certstore *cs, const struct certstore_hooks *hooks)
{
	cs->hooks = *hooks;
}

void certstore_storage_log(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;

	health_storage_result(cs->health, res);
	if (res->rc == -1)
		log_err("%s", res->err);
}

/* Nothing unverified is kept, written to cert_dir or pushed: checks <pem>
 * for <host> (crypto_bundle_check_info) and hands back the leaf's facts in
 * <ci> (to clear); a refusal is counted by <src> and logged. 0 or -1. */
int certstore_verify(struct certstore *cs, const char *host, const char *pem, size_t len,
		     enum certstore_src src, struct crypto_cert_info *ci)
{
	char err[256];

	if (crypto_bundle_check_info(pem, len, host, time(NULL), ci, err, sizeof(err)) == 0)
		return 0;
	cs->refused[src]++;
	log_err("host=%s certificate from %s refused: %s", host,
		src == CERTSTORE_SRC_CA ? "the CA" : "storage", err);
	return -1;
}

static struct certstore_cert *certstore_install_from(struct certstore *cs, const char *host,
						     const char *pem, size_t len,
						     enum certstore_src src)
{
	struct certstore_cert *c, *old = NULL;
	struct crypto_cert_info ci;
	int rc;

	if (certstore_verify(cs, host, pem, len, src, &ci) == -1)
		return NULL;
	c = certstore_cert_new(host);
	if (!c) {
		crypto_cert_info_clear(&ci);
		return NULL;
	}
	rc = certstore_info_set(&c->info, &ci);
	crypto_cert_info_clear(&ci);
	c->has_info = 1;
	c->pem = rc == 0 ? malloc(len + 1) : NULL;
	if (!c->pem) {
		certstore_cert_free(c);
		return NULL;
	}
	memcpy(c->pem, pem, len);
	c->pem[len] = '\0';
	c->len = len;
	if (nameidx_add(cs->names, host) == -1 || hmap_put(&cs->certs, host, c, (void **)&old) == -1) {
		certstore_cert_free(c);
		return NULL;
	}
	if (old) {
		/* what HAProxy and cert_dir hold of the host stays as it was */
		c->loaded = old->loaded;
		c->pushing = old->pushing;
		c->writing = old->writing;
		c->on_disk = old->on_disk && strcmp(old->info.serial_hex, c->info.serial_hex) == 0;
		if (old->loaded) {
			TAILQ_INSERT_BEFORE(old, c, lru);
			TAILQ_REMOVE(&cs->lru, old, lru);
		}
	}
	certstore_cert_free(old);
	free(hmap_del(&cs->refused_until, host));	/* a new certificate passed */
	if (cs->hooks.installed)
		cs->hooks.installed(cs->hooks.arg, c);
	return c;
}

struct certstore_cert *certstore_install(struct certstore *cs, const char *host, const char *pem,
					 size_t len)
{
	return certstore_install_from(cs, host, pem, len, CERTSTORE_SRC_CA);
}

unsigned long certstore_refused(const struct certstore *cs, enum certstore_src src)
{
	return cs->refused[src];
}

/* 1 when memory's facts of <c> are those of the certificate <ci>. */
static int certstore_info_same(const struct certstore_cert *c, const struct crypto_cert_info *ci)
{
	const struct certstore_info *i = &c->info;

	return c->has_info && strcmp(ci->serial_hex, i->serial_hex) == 0 &&
	       ci->not_before == i->not_before && ci->not_after == i->not_after &&
	       strcmp(ci->digest_sha1, i->digest_sha1) == 0 &&
	       strcmp(ci->issuer_cn, i->issuer_cn) == 0 &&
	       strcmp(ci->pubkey_type, i->pubkey_type) == 0 &&
	       strcmp(ci->ari_cert_id, i->ari_cert_id) == 0;
}

/* Fills <c>'s metadata from <ci> (a verified PEM) when it has none or other
 * facts: the certificate wins over a "meta/<host>" record, even one with its
 * serial (issue 19: forged dates or ARI id scheduled renewal). Fires
 * installed. Returns 1 when it changed, 0 when memory knew it, -1 when out
 * of memory. */
int certstore_learn_info(struct certstore *cs, struct certstore_cert *c,
			 const struct crypto_cert_info *ci)
{
	int same_serial = c->has_info && strcmp(ci->serial_hex, c->info.serial_hex) == 0;
	char was[CERTSTORE_TIME_STR];

	if (certstore_info_same(c, ci))
		return 0;
	if (same_serial)
		log_warn("host=%s serial=%s metadata record disagrees with the certificate "
			 "(not_after %s, certificate %s): the certificate's facts win", c->host,
			 ci->serial_hex, certstore_time_str(c->info.not_after, was),
			 ci->not_after_str);
	if (certstore_info_set(&c->info, ci) == -1)
		return -1;
	c->has_info = 1;
	if (!same_serial)
		c->on_disk = 0;
	if (cs->hooks.installed)
		cs->hooks.installed(cs->hooks.arg, c);
	return 1;
}

/* A PEM was read and parsed into <ci>: learns from it (certstore_learn_info)
 * and writes the metadata record when that changed. 0, or -1. */
int certstore_learn_pem(struct certstore *cs, struct certstore_cert *c,
			const struct crypto_cert_info *ci)
{
	int rc;

	cs->pem_parsed++;
	rc = certstore_learn_info(cs, c, ci);
	if (rc == 1)
		certstore_meta_put(cs, c);	/* the next start reads it */
	return rc == -1 ? -1 : 0;
}

/* Fills <c>'s metadata from <pem> when it has none or another serial (a
 * newer certificate than memory knew, or a stale "meta/<host>"): fires
 * installed and writes the metadata record. Returns 0, or -1 when <pem> is
 * unreadable. */
int certstore_learn(struct certstore *cs, struct certstore_cert *c, const char *pem,
		    size_t len)
{
	struct crypto_cert_info ci;
	char err[256];
	int rc;

	if (crypto_cert_info(pem, len, &ci, err, sizeof(err)) == -1) {
		cs->pem_parsed++;
		log_err("host=%s stored certificate unreadable: %s", c->host, err);
		return -1;
	}
	rc = certstore_learn_pem(cs, c, &ci);
	crypto_cert_info_clear(&ci);
	return rc;
}

struct certstore_cert *certstore_take(struct certstore *cs, const char *host, const char *pem,
				      size_t len, int deploy)
{
	struct certstore_cert *old = certstore_get(cs, host), *c;
	struct crypto_cert_info ci;
	char err[256];
	int same;

	if (old && old->pem && old->len == len && memcmp(old->pem, pem, len) == 0)
		return NULL;
	if (old && !old->pem && old->has_info &&
	    crypto_cert_info(pem, len, &ci, err, sizeof(err)) == 0) {
		same = strcmp(ci.serial_hex, old->info.serial_hex) == 0;
		crypto_cert_info_clear(&ci);
		if (same)
			return NULL;
	}
	c = certstore_install_from(cs, host, pem, len, CERTSTORE_SRC_STORAGE);
	if (c && deploy)
		certstore_deploy(cs, c);
	if (c)
		certstore_trim(cs, c);
	return c;
}

/* ---- life ---------------------------------------------------------------- */

struct certstore *certstore_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
				struct health *health, char *err, size_t errlen)
{
	struct certstore *cs = calloc(1, sizeof(*cs));

	if (!cs) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	cs->loop = loop;
	ev_init(&cs->fill_next, cb_certstore_fill_next);
	cs->fill_next.data = cs;
	cs->cfg = cfg;
	cs->st = st;
	cs->health = health;
	hmap_init(&cs->certs);
	hmap_init(&cs->refused_until);
	hmap_init(&cs->probed);
	hmap_init(&cs->fetches);
	TAILQ_INIT(&cs->fetch_wait);
	cs->names = nameidx_new(NULL);
	LIST_INIT(&cs->syncs);
	TAILQ_INIT(&cs->lru);
	cs->wq = cs->names ? workq_new(loop, 2, err, errlen) : NULL;
	if (!cs->wq) {
		if (!cs->names)
			snprintf(err, errlen, "out of memory");
		certstore_free(cs);
		cs = NULL;
	} else if (mkdir(cfg->cert_dir, 0750) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "haproxy.cert_dir: %s: %s", cfg->cert_dir, strerror(errno));
		certstore_free(cs);
		cs = NULL;
	} else {
		size_t n = fs_clean_tmp(cfg->cert_dir);

		if (n)
			log_info("haproxy.cert_dir: removed %zu temp files left by a stop", n);
	}
out:
	return cs;
}

void certstore_free(struct certstore *cs)
{
	if (!cs)
		return;
	cs->closing = 1;
	ev_timer_stop(cs->loop, &cs->fill_next);
	certstore_sweep_stop(cs);
	/* cert_dir writes in progress complete; nothing more is pushed */
	workq_free(cs->wq);
	rt_free(cs->rt);
	while (!LIST_EMPTY(&cs->syncs))
		certstore_sync_free(LIST_FIRST(&cs->syncs));
	nameidx_free(cs->names);
	hmap_clear(&cs->certs, certstore_cert_free);
	hmap_clear(&cs->refused_until, free);
	hmap_clear(&cs->probed, NULL);
	hmap_clear(&cs->fetches, free);
	storage_cancel(cs->index_req);
	for (size_t i = 0; i < CERTSTORE_RECENT_MAX; i++)
		free(cs->recent[i]);
	free(cs);
}
