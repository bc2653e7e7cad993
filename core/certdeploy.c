/* SPDX-License-Identifier: Apache-2.0 */
/* The certificate store's deployment (certstore_int.h): cert_dir writes on a
 * worker queue, pushes into HAProxy, the hot set (preload on_demand: loaded
 * names by last SNI, evicted beyond haproxy.max_loaded) and the re-sync
 * after a HAProxy reload.
 *
 * A write of a certificate file runs on a worker thread; the push follows it,
 * so a HAProxy restart serves what HAProxy has. Writes of one host stay in
 * order (one shard per path). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/evp.h>

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

/* ---- cert_dir and HAProxy ------------------------------------------------ */

/* cert_dir/<host>.pem; a wildcard "*.zone" is written "_wildcard_.zone.pem"
 * (no '*' in file names: shells and HAProxy's directory loading). A name of
 * more than CERTSTORE_FILE_HOST_MAX characters is written
 * "_long_<SHA-256 of the name, hex>.pem": "<host>.pem" and its temp name
 * "<host>.pem.<pid>.<seq>" would pass NAME_MAX (issue 19: a 253-character
 * name was pushed but lost at a HAProxy restart). HAProxy matches SNI against
 * the certificate, never the file name, and this one function names the file
 * for writes, pushes, removals and the sync after a reload; '_' is in no
 * host name, so no name's own file can take it. */
static void certstore_path(const struct certstore *cs, const char *host, char *out, size_t outlen)
{
	unsigned char md[32];
	char hex[2 * sizeof(md) + 1];
	unsigned int mdlen = 0;
	size_t i;

	if (strlen(host) > CERTSTORE_FILE_HOST_MAX &&
	    EVP_Digest(host, strlen(host), md, &mdlen, EVP_sha256(), NULL) == 1 &&
	    mdlen == sizeof(md)) {
		for (i = 0; i < sizeof(md); i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		snprintf(out, outlen, "%s/%s%s.pem", cs->cfg->cert_dir, CERTSTORE_LONG_FILE, hex);
	} else if (host[0] == '*' && host[1] == '.') {
		snprintf(out, outlen, "%s/%s%s.pem", cs->cfg->cert_dir, CERTSTORE_WILDCARD_FILE, host + 1);
	} else {
		snprintf(out, outlen, "%s/%s.pem", cs->cfg->cert_dir, host);
	}
}

/* HAProxy names a crt-list made from a directory without the trailing '/'. */
static void certstore_crt_list_name(const struct certstore *cs, char *out, size_t outlen)
{
	size_t n;

	snprintf(out, outlen, "%s", cs->cfg->crt_list);
	n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
}

static void certstore_push_done(void *arg, int ok, const char *err)
{
	struct certstore *cs = arg;

	if (ok) {
		cs->push_ok++;
	} else if (err == rt_err_shutdown) {
		/* stopping: HAProxy keeps what it had, the next start pushes again */
		log_info("push not finished: %s", err);
	} else {
		cs->push_failed++;
		log_err("push failed: %s", err ? err : "unknown error");
	}
}

/* <c> is in HAProxy now: the most recently used of the hot set. */
static void certstore_mark_loaded(struct certstore *cs, struct certstore_cert *c)
{
	if (c->loaded) {
		TAILQ_REMOVE(&cs->lru, c, lru);
	} else {
		c->loaded = 1;
		cs->nloaded++;
	}
	TAILQ_INSERT_HEAD(&cs->lru, c, lru);
}

static void certstore_mark_unloaded(struct certstore *cs, struct certstore_cert *c)
{
	if (!c->loaded)
		return;
	TAILQ_REMOVE(&cs->lru, c, lru);
	c->loaded = 0;
	cs->nloaded--;
}

static int certstore_write_queue(struct certstore *cs, const char *host, const char *pem, size_t len);

/* Beyond haproxy.max_loaded (preload on_demand), the names idle longest
 * leave HAProxy ("del ssl crt-list", "del ssl cert") and cert_dir. */
static void certstore_evict(struct certstore *cs)
{
	char path[4096], list[4096];
	struct certstore_cert *c;

	if (cs->cfg->preload != CONFIG_PRELOAD_ON_DEMAND || cs->cfg->max_loaded <= 0 || cs->closing)
		return;
	certstore_crt_list_name(cs, list, sizeof(list));
	while (cs->nloaded > (size_t)cs->cfg->max_loaded && (c = TAILQ_LAST(&cs->lru, certstore_lru))) {
		certstore_mark_unloaded(cs, c);
		c->on_disk = 0;
		cs->evicted++;
		log_debug("host=%s idle longest of %zu loaded: removed from HAProxy", c->host,
			  cs->nloaded + 1);
		if (certstore_write_queue(cs, c->host, NULL, 0) == -1)
			log_err("host=%s cannot queue the certificate file removal: out of memory", c->host);
		certstore_path(cs, c->host, path, sizeof(path));
		if (rt_remove_cert(cs->rt, path, list, certstore_push_done, cs) == -1)
			log_err("host=%s removal from HAProxy not started", c->host);
		certstore_demote(cs, c);	/* another member's: index-only again */
	}
}

/* One push of a host's certificate under way. */
struct certstore_pushing {
	struct certstore *cs;
	char host[CERTSTORE_HOST_MAX];
};

/* A deploy of <host> ended (<ok>: in HAProxy): its state, the hot set, and
 * the hook. */
static void certstore_deployed(struct certstore *cs, const char *host, int ok)
{
	struct certstore_cert *c = certstore_get(cs, host);

	if (c) {
		if (c->pushing)
			c->pushing--;
		if (ok)
			certstore_mark_loaded(cs, c);
		certstore_trim(cs, c);
	}
	if (cs->hooks.loaded)
		cs->hooks.loaded(cs->hooks.arg, host, ok);
	if (ok)
		certstore_evict(cs);
}

static void certstore_pushed(void *arg, int ok, const char *err)
{
	struct certstore_pushing *p = arg;
	struct certstore *cs = p->cs;

	certstore_push_done(cs, ok, err);
	if (!cs->closing)
		certstore_deployed(cs, p->host, ok);
	free(p);
}

static void certstore_push(struct certstore *cs, const char *host, const char *pem, size_t len)
{
	char path[4096], list[4096];
	struct certstore_pushing *p = calloc(1, sizeof(*p));

	certstore_path(cs, host, path, sizeof(path));
	certstore_crt_list_name(cs, list, sizeof(list));
	if (p) {
		p->cs = cs;
		snprintf(p->host, sizeof(p->host), "%s", host);
	}
	if (!p || rt_push_cert(cs->rt, path, list, pem, len, certstore_pushed, p) == -1) {
		free(p);
		cs->push_failed++;
		log_err("host=%s push not started", host);
		certstore_deployed(cs, host, 0);
	}
}

/* A write (or removal) of one cert_dir file on the worker queue. */
struct certstore_write {
	struct workq_item it;
	struct certstore *cs;
	char host[CERTSTORE_HOST_MAX];
	char serial[130];	/* of the certificate written */
	char path[4096];
	char *pem;		/* NULL: unlink */
	size_t len;
	int rc;
	char err[256];
};

static void certstore_write_run(struct workq_item *it)
{
	struct certstore_write *w = (struct certstore_write *)it;

	if (w->pem) {
		w->rc = fs_write_atomic(w->path, w->pem, w->len, 0600, w->err, sizeof(w->err));
	} else if (unlink(w->path) == -1 && errno != ENOENT) {
		w->rc = -1;
		snprintf(w->err, sizeof(w->err), "cannot remove %.200s: %s", w->path, strerror(errno));
	}
}

static void certstore_write_done(struct workq_item *it)
{
	struct certstore_write *w = (struct certstore_write *)it;
	struct certstore *cs = w->cs;
	struct certstore_cert *c = w->pem ? certstore_get(cs, w->host) : NULL;
	int current = c && strcmp(c->info.serial_hex, w->serial) == 0;

	if (c) {
		c->writing--;
		/* newer versions may have been queued behind this one */
		if (w->rc == 0 && current)
			c->on_disk = 1;
	}
	if (w->rc == -1)
		log_err("host=%s %s", w->host, w->err);
	if (w->pem && !cs->closing && current)
		certstore_push(cs, w->host, w->pem, w->len);
	else if (w->pem && c && c->pushing)
		c->pushing--;	/* a newer version's write pushes */
	else if (w->pem && !c && !cs->closing && cs->hooks.loaded)
		cs->hooks.loaded(cs->hooks.arg, w->host, 0);	/* removed meanwhile */
	crypto_secret_free(w->pem, w->len);
	free(w);
}

/* Queues a write of <pem> (or a removal when NULL) of <host>'s file. */
static int certstore_write_queue(struct certstore *cs, const char *host, const char *pem, size_t len)
{
	struct certstore_cert *c = pem ? certstore_get(cs, host) : NULL;
	struct certstore_write *w = calloc(1, sizeof(*w));

	if (!w || (pem && !(w->pem = malloc(len + 1)))) {
		free(w);
		return -1;
	}
	w->it.run = certstore_write_run;
	w->it.done = certstore_write_done;
	w->cs = cs;
	snprintf(w->host, sizeof(w->host), "%s", host);
	snprintf(w->serial, sizeof(w->serial), "%s", c ? c->info.serial_hex : "");
	certstore_path(cs, host, w->path, sizeof(w->path));
	if (pem) {
		memcpy(w->pem, pem, len);
		w->pem[len] = '\0';
		w->len = len;
	}
	workq_submit(cs->wq, &w->it, workq_shard(w->path));
	return 0;
}

/* Writes <pem> of <c> to cert_dir unless there, then pushes it (<c>'s
 * deploy already counted in pushing). */
static void certstore_deploy_pem(struct certstore *cs, struct certstore_cert *c, const char *pem,
				 size_t len)
{
	if (c->on_disk) {
		certstore_push(cs, c->host, pem, len);
		return;
	}
	/* pushed once the file is written, so a restart serves what HAProxy has */
	if (certstore_write_queue(cs, c->host, pem, len) == -1) {
		log_err("host=%s cannot queue the certificate file write: out of memory", c->host);
		certstore_push(cs, c->host, pem, len);
		return;
	}
	c->writing++;
}

/* on_demand: the PEM of a deploy, read back from storage and checked before
 * it reaches HAProxy. */
static void cb_certstore_deploy_read(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;
	const char *host = res->key + strlen("certs/");
	struct certstore_cert *c = certstore_get(cs, host);
	struct crypto_cert_info ci;
	int rc;

	health_storage_result(cs->health, res);
	if (!c) {
		/* removed meanwhile: whoever waits for it is told */
		if (cs->hooks.loaded)
			cs->hooks.loaded(cs->hooks.arg, host, 0);
		return;
	}
	if (c->probing) {
		/* looked up while the index is read: stored or not, now known */
		c->probing = 0;
		if (res->rc != 0) {
			char name[CERTSTORE_HOST_MAX];

			if (res->rc == 1 && !nameidx_contains(cs->names, host)) {
				if (cs->probed.count >= CERTSTORE_PROBED_MAX) {
					hmap_clear(&cs->probed, NULL);
					hmap_init(&cs->probed);
				}
				hmap_put(&cs->probed, host, (void *)1, NULL);
			} else if (res->rc == -1) {
				log_err("host=%s cannot look the certificate up: %s", host, res->err);
			}
			snprintf(name, sizeof(name), "%s", host);
			c->pushing--;
			hmap_del(&cs->certs, name);
			certstore_cert_free(c);
			if (cs->hooks.loaded)
				cs->hooks.loaded(cs->hooks.arg, name, 0);
			return;
		}
		if (nameidx_add(cs->names, host) == -1)
			log_err("host=%s cannot index the certificate: out of memory", host);
	}
	if (res->rc != 0) {
		log_err("host=%s cannot push: %s", host,
			res->rc == 1 ? "no longer in storage" : res->err);
		certstore_deployed(cs, host, 0);
		return;
	}
	/* the same check as certstore_install(): nothing unverified is pushed */
	if (certstore_verify(cs, host, res->val, res->len, CERTSTORE_SRC_STORAGE, &ci) == -1) {
		certstore_refused_put(cs, host);
		certstore_deployed(cs, host, 0);
		return;
	}
	rc = certstore_learn_pem(cs, c, &ci);
	crypto_cert_info_clear(&ci);
	if (rc == -1) {
		certstore_deployed(cs, host, 0);
		return;
	}
	certstore_deploy_pem(cs, c, res->val, res->len);
}

void certstore_deploy(struct certstore *cs, struct certstore_cert *c)
{
	char key[STORAGE_KEY_MAX];

	c->pushing++;
	if (c->pem) {
		certstore_deploy_pem(cs, c, c->pem, c->len);
		return;
	}
	snprintf(key, sizeof(key), "certs/%s", c->host);
	if (!storage_get(cs->st, key, cb_certstore_deploy_read, cs)) {
		log_err("host=%s cannot read the certificate to push: out of memory", c->host);
		c->pushing--;
		if (cs->hooks.loaded)
			cs->hooks.loaded(cs->hooks.arg, c->host, 0);
	}
}

void certstore_deploy_issued(struct certstore *cs, struct certstore_cert *c, int renewal)
{
	if (!renewal || certstore_keeps_pem(cs) || c->loaded || c->pushing)
		certstore_deploy(cs, c);
	else
		certstore_trim(cs, c);
}

void certstore_remove(struct certstore *cs, const char *host)
{
	char path[4096], list[4096];
	struct certstore_cert *c = hmap_del(&cs->certs, host);

	nameidx_remove(cs->names, host);
	if (c) {
		certstore_mark_unloaded(cs, c);
		certstore_cert_free(c);
		if (cs->hooks.removed)
			cs->hooks.removed(cs->hooks.arg, host);
	}
	if (certstore_write_queue(cs, host, NULL, 0) == -1)
		log_err("host=%s cannot queue the certificate file removal: out of memory", host);
	certstore_path(cs, host, path, sizeof(path));
	certstore_crt_list_name(cs, list, sizeof(list));
	rt_remove_cert(cs->rt, path, list, certstore_push_done, cs);
}

enum certstore_seen certstore_seen(struct certstore *cs, const char *host)
{
	struct certstore_cert *c = certstore_get(cs, host);

	if (!c && cs->indexing && !certstore_keeps_pem(cs) && !nameidx_contains(cs->names, host)) {
		/* the index is still being read: the name may be stored */
		if (hmap_get(&cs->probed, host) || certstore_refused_active(cs, host) ||
		    !(c = certstore_promote(cs, host)))
			return CERTSTORE_SEEN_ABSENT;
		c->probing = 1;
		log_debug("host=%s SNI while the index is read: looking it up in storage", host);
		certstore_deploy(cs, c);
		return c->pushing ? CERTSTORE_SEEN_LOADING : CERTSTORE_SEEN_ABSENT;
	}
	if (!c && (certstore_keeps_pem(cs) || !nameidx_contains(cs->names, host) ||
		   certstore_refused_active(cs, host) || !(c = certstore_promote(cs, host))))
		return CERTSTORE_SEEN_ABSENT;	/* index-only: made full, pushed below */
	if (c->loaded) {
		/* a renewal being pushed: HAProxy serves the older one meanwhile */
		certstore_mark_loaded(cs, c);
		return CERTSTORE_SEEN_LOADED;
	}
	if (c->pushing)
		return CERTSTORE_SEEN_LOADING;
	/* preload all: the start-up sync pushes what HAProxy lacks */
	if (cs->cfg->preload != CONFIG_PRELOAD_ON_DEMAND)
		return CERTSTORE_SEEN_LOADED;
	/* what storage holds cannot be served: as good as none */
	if (certstore_refused_active(cs, host))
		return CERTSTORE_SEEN_ABSENT;
	log_debug("host=%s first SNI: pushing the stored certificate", host);
	certstore_deploy(cs, c);
	return c->pushing ? CERTSTORE_SEEN_LOADING : CERTSTORE_SEEN_LOADED;
}

size_t certstore_loaded_count(const struct certstore *cs)
{
	return cs->nloaded;
}

struct certstore_ensure {
	struct certstore *cs;
	size_t written;
};

static void certstore_ensure_cb(void *arg, const char *host, void *val)
{
	struct certstore_ensure *e = arg;
	struct certstore_cert *c = val;
	char path[4096], werr[256];
	struct stat sb;

	certstore_path(e->cs, host, path, sizeof(path));
	if (stat(path, &sb) == 0 && (size_t)sb.st_size == c->len) {
		c->on_disk = 1;
		return;
	}
	if (fs_write_atomic_nosync(path, c->pem, c->len, 0600, werr, sizeof(werr)) == -1) {
		log_err("host=%s %s", host, werr);
		return;
	}
	c->on_disk = 1;
	e->written++;
}

size_t certstore_ensure_files(struct certstore *cs)
{
	struct certstore_ensure e = { cs, 0 };

	/* on_demand: cert_dir holds the hot set, filled as names are seen */
	if (cs->cfg->preload == CONFIG_PRELOAD_ON_DEMAND)
		return 0;
	/* Storage is the durable source, so these are written without an fsync
	 * each and flushed once: thousands of certificates start in a second. */
	hmap_foreach(&cs->certs, certstore_ensure_cb, &e);
	if (e.written && fs_sync_dir(cs->cfg->cert_dir) == -1)
		log_err("haproxy.cert_dir: %s: sync: %s", cs->cfg->cert_dir, strerror(errno));
	if (e.written)
		log_info("haproxy.cert_dir: %zu certificate files written from storage", e.written);
	return e.written;
}

/* ---- HAProxy sync -------------------------------------------------------- */

/* One "which certificates do you hold?" round with one HAProxy, retried
 * until HAProxy answers; kept in cs->syncs so that a stop frees it. */
struct certstore_sync {
	struct certstore *cs;
	size_t idx;
	ev_timer retry;
	LIST_ENTRY(certstore_sync) link;
};

struct certstore_missing {
	struct certstore *cs;
	const struct hmap *have;	/* names HAProxy holds */
	size_t pushed;
};

void certstore_sync_free(struct certstore_sync *s)
{
	struct certstore *cs = s->cs;

	ev_timer_stop(cs->loop, &s->retry);
	LIST_REMOVE(s, link);
	free(s);
}

static void certstore_push_missing_cb(void *arg, const char *host, void *val)
{
	struct certstore_missing *mi = arg;
	struct certstore_cert *c = val;
	char path[4096];

	certstore_path(mi->cs, host, path, sizeof(path));
	if (hmap_get(mi->have, path)) {
		if (!c->loaded)
			certstore_mark_loaded(mi->cs, c);
		return;
	}
	if (c->pushing)
		return;		/* on its way */
	certstore_mark_unloaded(mi->cs, c);
	/* on_demand: it enters HAProxy when its SNI is seen */
	if (mi->cs->cfg->preload == CONFIG_PRELOAD_ON_DEMAND)
		return;
	certstore_deploy(mi->cs, c);
	mi->pushed++;
}

/* The host whose cert_dir file is <path> (certstore_path() backwards), or
 * -1: not one of cert_dir's, or a long name (its file names a digest). */
static int certstore_host_of_path(const struct certstore *cs, const char *path, char *out,
				  size_t outlen)
{
	size_t dl = strlen(cs->cfg->cert_dir), n;
	const char *f;

	if (strncmp(path, cs->cfg->cert_dir, dl) != 0 || path[dl] != '/')
		return -1;
	f = path + dl + 1;
	n = strlen(f);
	if (n <= 4 || strcmp(f + n - 4, ".pem") != 0 ||
	    strncmp(f, CERTSTORE_LONG_FILE, strlen(CERTSTORE_LONG_FILE)) == 0)
		return -1;
	n -= 4;
	if (strncmp(f, CERTSTORE_WILDCARD_FILE, strlen(CERTSTORE_WILDCARD_FILE)) == 0) {
		f += strlen(CERTSTORE_WILDCARD_FILE);
		n -= strlen(CERTSTORE_WILDCARD_FILE);
		if (n + 2 > outlen)
			return -1;
		out[0] = '*';
		memcpy(out + 1, f, n);
		out[n + 1] = '\0';
		return 0;
	}
	if (n + 1 > outlen)
		return -1;
	memcpy(out, f, n);
	out[n] = '\0';
	return 0;
}

/* on_demand: the index-only names HAProxy holds (a restart kept cert_dir's)
 * join the hot set, in full. Returns how many. */
static size_t certstore_sync_hot(struct certstore *cs, const char *const *names, size_t n)
{
	char host[CERTSTORE_HOST_MAX];
	struct certstore_cert *c;
	size_t i, promoted = 0;

	for (i = 0; i < n; i++) {
		if (certstore_host_of_path(cs, names[i], host, sizeof(host)) == -1 ||
		    certstore_get(cs, host) || !nameidx_contains(cs->names, host) ||
		    !(c = certstore_promote(cs, host)))
			continue;
		c->on_disk = 1;
		certstore_mark_loaded(cs, c);
		promoted++;
	}
	return promoted;
}

static void certstore_sync_names(void *arg, int ok, const char *const *names, size_t n)
{
	struct certstore_sync *s = arg;
	struct certstore_missing mi = { s->cs, NULL, 0 };
	struct hmap have;
	size_t i;

	if (s->cs->closing)
		return;		/* certstore_free() frees it */
	if (!ok) {
		/* HAProxy may not be up yet: the first connection fires no reload */
		log_warn("runtime socket %zu: cannot list certificates, retrying in %.0fs", s->idx,
			 CERTSTORE_SYNC_RETRY_S);
		ev_timer_set(&s->retry, CERTSTORE_SYNC_RETRY_S, 0.);
		ev_timer_start(s->cs->loop, &s->retry);
		return;
	}
	hmap_init(&have);
	for (i = 0; i < n; i++)
		hmap_put(&have, names[i], (void *)1, NULL);
	mi.have = &have;
	hmap_foreach(&s->cs->certs, certstore_push_missing_cb, &mi);
	hmap_clear(&have, NULL);
	/* their metadata: read with the share's, or now when that is done */
	if (!certstore_keeps_pem(s->cs) && certstore_sync_hot(s->cs, names, n) &&
	    s->cs->started && !s->cs->filling)
		certstore_fill_start(s->cs);
	log_info("runtime socket %zu: HAProxy holds %zu certificates, pushed %zu missing", s->idx, n,
		 mi.pushed);
	certstore_sync_free(s);
	certstore_evict(mi.cs);
}

static void cb_certstore_sync_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct certstore_sync *s = w->data;

	if (rt_list_certs(s->cs->rt, s->idx, certstore_sync_names, s) == -1)
		certstore_sync_free(s);
}

void certstore_sync_haproxy(struct certstore *cs, size_t idx)
{
	struct certstore_sync *s = calloc(1, sizeof(*s));

	if (!s)
		return;
	s->cs = cs;
	s->idx = idx;
	ev_init(&s->retry, cb_certstore_sync_retry);
	s->retry.data = s;
	LIST_INSERT_HEAD(&cs->syncs, s, link);
	if (rt_list_certs(cs->rt, idx, certstore_sync_names, s) == -1)
		certstore_sync_free(s);
}

static void certstore_on_rt_reload(void *arg, size_t idx)
{
	log_info("runtime socket %zu: HAProxy restarted or reloaded, re-syncing certificates", idx);
	certstore_sync_haproxy(arg, idx);
}

int certstore_runtime_open(struct certstore *cs, char *err, size_t errlen)
{
	cs->rt = rt_new(cs->loop, (const char *const *)cs->cfg->runtime, cs->cfg->nruntime,
			certstore_on_rt_reload, cs, err, errlen);
	return cs->rt ? 0 : -1;
}

struct rt *certstore_runtime(const struct certstore *cs)
{
	return cs->rt;
}
