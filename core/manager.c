/* The certificate manager: state, issuance jobs, deployment into HAProxy.
 *
 * Every certificate lives in storage as "certs/<host>" (chain + key PEM),
 * in memory for O(1) lookups on the SPOE path, and in haproxy.cert_dir so a
 * HAProxy restart serves it. An issuance is one job per host (single flight),
 * guarded by a storage lock so that a fleet orders each name once, and marked
 * "pending/<host>" while it runs so that a crash resumes it at the next start.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "acme/acme.h"
#include "acme/crypto.h"
#include "acme/http.h"
#include "admin/admin.h"
#include "core/config.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "core/manager.h"
#include "core/mgr_int.h"
#include "runtime/runtime.h"
#include "spoa/spoa.h"
#include "storage/storage.h"

#define MGR_RECONCILE_S		60.0
#define MGR_SYNC_RETRY_S	5.0

/* ---- certificates -------------------------------------------------------- */

static void mgr_cert_free(void *p)
{
	struct mgr_cert *c = p;

	if (!c)
		return;
	mgr_renew_unindex(c->m, c);
	crypto_cert_info_clear(&c->info);
	crypto_secret_free(c->pem, c->len);
	free(c);
}

struct mgr_cert *mgr_cert_get(struct mgr *m, const char *host)
{
	return hmap_get(&m->certs, host);
}

void mgr_storage_result(struct mgr *m, const struct storage_res *res)
{
	if (res->rc != -1) {
		m->storage_ok = 1;
		return;
	}
	m->cnt.storage_errors++;
	m->storage_ok = 0;
	snprintf(m->storage_err, sizeof(m->storage_err), "%s", res->err ? res->err : "error");
}

static void cb_mgr_storage_log(void *arg, struct storage_res *res)
{
	struct mgr *m = arg;

	mgr_storage_result(m, res);
	if (res->rc == -1)
		log_err("%s", res->err);
}

/* "renewals/<host>": when <host> was last renewed, against renewal loops. */
static void cb_mgr_renewed_at(void *arg, struct storage_res *res)
{
	struct mgr *m = arg;
	const char *host = res->key + strlen("renewals/");
	struct mgr_cert *c = mgr_cert_get(m, host);
	json_int_t t = 0;
	json_t *j;

	mgr_storage_result(m, res);
	if (!c)
		return;
	c->renewed_at_pending = 0;
	if (res->rc == 0 && (j = json_loadb(res->val, res->len, 0, NULL))) {
		if (json_unpack(j, "{s:I}", "renewed_at", &t) == 0 && (time_t)t > c->renewed_at)
			c->renewed_at = (time_t)t;
		json_decref(j);
	}
	mgr_renew_compute(m, c);
	mgr_renew_schedule(m);
}

void mgr_renewed_at_store(struct mgr *m, const char *host, time_t t)
{
	char key[STORAGE_KEY_MAX], val[64];
	struct mgr_cert *c = mgr_cert_get(m, host);

	if (c)
		c->renewed_at = t;
	snprintf(key, sizeof(key), "renewals/%s", host);
	snprintf(val, sizeof(val), "{\"renewed_at\":%lld}", (long long)t);
	storage_put(m->st, key, val, strlen(val), 0, cb_mgr_storage_log, m);
}

struct mgr_cert *mgr_cert_install(struct mgr *m, const char *host, const char *pem, size_t len)
{
	struct mgr_cert *c, *old = NULL;
	char err[256], key[STORAGE_KEY_MAX];
	time_t life;

	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->m = m;
	c->hidx = HEAP_NONE;
	snprintf(c->host, sizeof(c->host), "%s", host);
	if (crypto_cert_info(pem, len, &c->info, err, sizeof(err)) == -1) {
		log_err("host=%s stored certificate unreadable: %s", host, err);
		free(c);
		return NULL;
	}
	c->pem = malloc(len + 1);
	if (!c->pem) {
		mgr_cert_free(c);
		return NULL;
	}
	memcpy(c->pem, pem, len);
	c->pem[len] = '\0';
	c->len = len;
	old = hmap_get(&m->certs, host);
	if (old) {
		c->renewed_at = old->renewed_at;
		if (strcmp(old->info.serial_hex, c->info.serial_hex) == 0) {
			/* same certificate: keep the ARI facts already learnt */
			c->ari_start = old->ari_start;
			c->ari_end = old->ari_end;
			c->ari_next = old->ari_next;
		}
	}
	if (hmap_put(&m->certs, host, c, (void **)&old) == -1) {
		mgr_cert_free(c);
		return NULL;
	}
	mgr_cert_free(old);
	mgr_renew_compute(m, c);
	/* Only a certificate the threshold makes due within a third of its life
	 * can loop: its last renewal time decides, so read it before the pass. */
	life = c->info.not_after - c->info.not_before;
	if (life > 0 && c->due < c->info.not_before + life / 3 && !c->renewed_at) {
		c->renewed_at_pending = 1;
		snprintf(key, sizeof(key), "renewals/%s", host);
		storage_get(m->st, key, cb_mgr_renewed_at, m);
	}
	return c;
}

static void mgr_cert_path(const struct mgr *m, const char *host, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/%s.pem", m->cfg->cert_dir, host);
}

/* HAProxy names a crt-list made from a directory without the trailing '/'. */
static void mgr_crt_list_name(const struct mgr *m, char *out, size_t outlen)
{
	size_t n;

	snprintf(out, outlen, "%s", m->cfg->crt_list);
	n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
}

static void mgr_push_done(void *arg, int ok, const char *err)
{
	struct mgr *m = arg;

	if (ok) {
		m->cnt.push_ok++;
	} else {
		m->cnt.push_failed++;
		log_err("push failed: %s", err ? err : "unknown error");
	}
}

static void mgr_push(struct mgr *m, const char *host, const char *pem, size_t len)
{
	char path[4096], list[4096];

	mgr_cert_path(m, host, path, sizeof(path));
	mgr_crt_list_name(m, list, sizeof(list));
	if (rt_push_cert(m->rt, path, list, pem, len, mgr_push_done, m) == -1) {
		m->cnt.push_failed++;
		log_err("host=%s push not started", host);
	}
}

/* A write (or removal) of one cert_dir file on the worker queue. */
struct mgr_write {
	struct workq_item it;
	struct mgr *m;
	char host[MGR_HOST_MAX];
	char path[4096];
	char *pem;		/* NULL: unlink */
	size_t len;
	int rc;
	char err[256];
};

static void mgr_write_run(struct workq_item *it)
{
	struct mgr_write *w = (struct mgr_write *)it;

	if (w->pem) {
		w->rc = fs_write_atomic(w->path, w->pem, w->len, 0600, w->err, sizeof(w->err));
	} else if (unlink(w->path) == -1 && errno != ENOENT) {
		w->rc = -1;
		snprintf(w->err, sizeof(w->err), "cannot remove %.200s: %s", w->path, strerror(errno));
	}
}

static void mgr_write_done(struct workq_item *it)
{
	struct mgr_write *w = (struct mgr_write *)it;
	struct mgr *m = w->m;
	struct mgr_cert *c = w->pem ? mgr_cert_get(m, w->host) : NULL;

	if (c) {
		c->writing--;
		/* newer versions may have been queued behind this one */
		if (w->rc == 0 && c->len == w->len && memcmp(c->pem, w->pem, w->len) == 0)
			c->on_disk = 1;
	}
	if (w->rc == -1)
		log_err("host=%s %s", w->host, w->err);
	if (w->pem && !m->closing && c && c->len == w->len && memcmp(c->pem, w->pem, w->len) == 0)
		mgr_push(m, w->host, w->pem, w->len);
	crypto_secret_free(w->pem, w->len);
	free(w);
}

/* Queues a write of <pem> (or a removal when NULL) of <host>'s file; writes
 * of one host stay in order (one shard per path). */
static int mgr_write_queue(struct mgr *m, const char *host, const char *pem, size_t len)
{
	struct mgr_write *w = calloc(1, sizeof(*w));

	if (!w || (pem && !(w->pem = malloc(len + 1)))) {
		free(w);
		return -1;
	}
	w->it.run = mgr_write_run;
	w->it.done = mgr_write_done;
	w->m = m;
	snprintf(w->host, sizeof(w->host), "%s", host);
	mgr_cert_path(m, host, w->path, sizeof(w->path));
	if (pem) {
		memcpy(w->pem, pem, len);
		w->pem[len] = '\0';
		w->len = len;
	}
	workq_submit(m->wq, &w->it, workq_shard(w->path));
	return 0;
}

void mgr_cert_deploy(struct mgr *m, struct mgr_cert *c)
{
	if (c->on_disk) {
		mgr_push(m, c->host, c->pem, c->len);
		return;
	}
	/* pushed once the file is written, so a restart serves what HAProxy has */
	if (mgr_write_queue(m, c->host, c->pem, c->len) == -1) {
		log_err("host=%s cannot queue the certificate file write: out of memory", c->host);
		mgr_push(m, c->host, c->pem, c->len);
		return;
	}
	c->writing++;
}

void mgr_cert_remove(struct mgr *m, const char *host)
{
	char path[4096], list[4096];

	mgr_cert_free(hmap_del(&m->certs, host));
	if (mgr_write_queue(m, host, NULL, 0) == -1)
		log_err("host=%s cannot queue the certificate file removal: out of memory", host);
	mgr_cert_path(m, host, path, sizeof(path));
	mgr_crt_list_name(m, list, sizeof(list));
	rt_remove_cert(m->rt, path, list, mgr_push_done, m);
}

struct mgr_cert *mgr_cert_take(struct mgr *m, const char *host, const char *pem, size_t len,
			       int deploy)
{
	struct mgr_cert *old = mgr_cert_get(m, host), *c;

	if (old && old->len == len && memcmp(old->pem, pem, len) == 0)
		return NULL;
	c = mgr_cert_install(m, host, pem, len);
	if (c && deploy)
		mgr_cert_deploy(m, c);
	return c;
}

static void mgr_cert_fetched(struct mgr *m, struct storage_res *res, int absent_removes)
{
	const char *host = res->key + strlen("certs/");

	mgr_storage_result(m, res);
	if (res->rc == -1) {
		log_err("host=%s %s", host, res->err);
		return;
	}
	if (res->rc == 1) {
		if (absent_removes && mgr_cert_get(m, host)) {
			log_info("host=%s certificate deleted by another node", host);
			mgr_cert_remove(m, host);
		}
		return;
	}
	if (mgr_cert_take(m, host, res->val, res->len, 1)) {
		log_info("host=%s certificate received from another node", host);
		mgr_job_settle(m, host);
		mgr_renew_schedule(m);
	}
}

static void cb_mgr_fetch(void *arg, struct storage_res *res)
{
	mgr_cert_fetched(arg, res, 0);
}

static void cb_mgr_fetch_rm(void *arg, struct storage_res *res)
{
	mgr_cert_fetched(arg, res, 1);
}

void mgr_cert_fetch(struct mgr *m, const char *host, int absent_removes)
{
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "certs/%s", host);
	storage_get(m->st, key, absent_removes ? cb_mgr_fetch_rm : cb_mgr_fetch, m);
}

void mgr_announce(struct mgr *m, const char *host, const char *serial)
{
	/* the feed first: a node that reads it on the message sees the change */
	storage_feed_put(m->st, MGR_CERTS_FEED, host, serial, cb_mgr_storage_log, m);
	storage_publish(m->st, MGR_CERTS_CHANNEL, host, strlen(host), cb_mgr_storage_log, m);
}

/* ---- HAProxy sync -------------------------------------------------------- */

/* One "which certificates do you hold?" round with one HAProxy, retried
 * until HAProxy answers; kept in m->syncs so that a stop frees it. */
struct mgr_sync {
	struct mgr *m;
	size_t idx;
	ev_timer retry;
	struct mgr_sync *prev, *next;
};

static void mgr_sync_free(struct mgr_sync *s)
{
	struct mgr *m = s->m;

	if (s->prev)
		s->prev->next = s->next;
	else
		m->syncs = s->next;
	if (s->next)
		s->next->prev = s->prev;
	ev_timer_stop(m->loop, &s->retry);
	free(s);
}

struct mgr_missing {
	struct mgr *m;
	const struct hmap *have;	/* names HAProxy holds */
	size_t pushed;
};

static void mgr_push_missing_cb(void *arg, const char *host, void *val)
{
	struct mgr_missing *mi = arg;
	char path[4096];

	mgr_cert_path(mi->m, host, path, sizeof(path));
	if (!hmap_get(mi->have, path)) {
		mgr_cert_deploy(mi->m, val);
		mi->pushed++;
	}
}

static void mgr_sync_names(void *arg, int ok, const char *const *names, size_t n)
{
	struct mgr_sync *s = arg;
	struct mgr *m = s->m;
	struct hmap have;
	size_t i, pushed;

	if (m->closing)
		return;		/* mgr_free() frees it */
	if (!ok) {
		/* HAProxy may not be up yet: the first connection fires no reload */
		log_warn("runtime socket %zu: cannot list certificates, retrying in %.0fs", s->idx,
			 MGR_SYNC_RETRY_S);
		ev_timer_set(&s->retry, MGR_SYNC_RETRY_S, 0.);
		ev_timer_start(m->loop, &s->retry);
		return;
	}
	hmap_init(&have);
	for (i = 0; i < n; i++)
		hmap_put(&have, names[i], (void *)1, NULL);
	{
		struct mgr_missing mi = { m, &have, 0 };

		hmap_foreach(&m->certs, mgr_push_missing_cb, &mi);
		pushed = mi.pushed;
	}
	hmap_clear(&have, NULL);
	log_info("runtime socket %zu: HAProxy holds %zu certificates, pushed %zu missing", s->idx, n, pushed);
	mgr_sync_free(s);
}

static void cb_mgr_sync_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mgr_sync *s = w->data;

	if (rt_list_certs(s->m->rt, s->idx, mgr_sync_names, s) == -1)
		mgr_sync_free(s);
}

void mgr_sync_haproxy(struct mgr *m, size_t idx)
{
	struct mgr_sync *s = calloc(1, sizeof(*s));

	if (!s)
		return;
	s->m = m;
	s->idx = idx;
	ev_init(&s->retry, cb_mgr_sync_retry);
	s->retry.data = s;
	s->next = m->syncs;
	if (s->next)
		s->next->prev = s;
	m->syncs = s;
	if (rt_list_certs(m->rt, idx, mgr_sync_names, s) == -1)
		mgr_sync_free(s);
}

static void mgr_on_rt_reload(void *arg, size_t idx)
{
	struct mgr *m = arg;

	log_info("runtime socket %zu: HAProxy restarted or reloaded, re-syncing certificates", idx);
	mgr_sync_haproxy(m, idx);
}

void mgr_on_engine(void *ctx, const char *engine_id, int is_new)
{
	struct mgr *m = ctx;
	size_t i;

	if (!is_new)
		return;
	log_info("spoe: new HAProxy engine-id %s, re-syncing certificates", engine_id);
	for (i = 0; i < rt_count(m->rt); i++)
		mgr_sync_haproxy(m, i);
}


/* ---- cluster ------------------------------------------------------------- */

static void mgr_on_cert_msg(void *arg, const char *msg, size_t len)
{
	struct mgr *m = arg;
	char raw[MGR_HOST_MAX], host[MGR_HOST_MAX];

	if (len == 0 || len >= sizeof(raw))
		return;
	memcpy(raw, msg, len);
	raw[len] = '\0';
	if (host_normalize(raw, host, sizeof(host), 0) == -1) {
		log_warn("pub/sub: ignoring a message that is no host name");
		return;
	}
	mgr_cert_fetch(m, host, 1);
}

static void mgr_feed_read(struct mgr *m);

/* Changes since the last read: only the certificates whose version differs
 * from memory's are read. */
static void cb_mgr_feed(void *arg, struct storage_res *res)
{
	struct mgr *m = arg;
	char host[MGR_HOST_MAX];
	size_t i;

	m->feed_reading = 0;
	mgr_storage_result(m, res);
	if (res->rc == -1) {
		log_err("change feed: %s", res->err);
		return;
	}
	m->cnt.feed_reads++;
	if (res->gen < m->feed_gen) {
		/* the feed restarted (the store was emptied): compare everything */
		log_warn("change feed: generation went back from %llu to %llu, reading it all",
			 (unsigned long long)m->feed_gen, (unsigned long long)res->gen);
		m->feed_gen = 0;
		mgr_feed_read(m);
		return;
	}
	for (i = 0; i < res->n; i++) {
		struct mgr_cert *c;

		if (host_normalize(res->keys[i], host, sizeof(host), 0) == -1)
			continue;
		c = mgr_cert_get(m, host);
		if (!res->vals[i]) {
			if (c) {
				log_info("host=%s certificate deleted by another node", host);
				mgr_cert_remove(m, host);
				m->cnt.feed_changes++;
			}
		} else if (!c || strcmp(c->info.serial_hex, res->vals[i]) != 0) {
			mgr_cert_fetch(m, host, 1);
			m->cnt.feed_changes++;
		}
	}
	m->feed_gen = res->gen;
	if (res->more)
		mgr_feed_read(m);
}

static void mgr_feed_read(struct mgr *m)
{
	if (m->feed_reading)
		return;
	if (storage_feed_since(m->st, MGR_CERTS_FEED, m->feed_gen, cb_mgr_feed, m))
		m->feed_reading = 1;
}

static void cb_mgr_reconcile(struct ev_loop *loop, ev_timer *w, int revents)
{
	/* in case a message was missed: one read of the feed when nothing changed */
	mgr_feed_read(w->data);
}

/* ---- set-up -------------------------------------------------------------- */

static EVP_PKEY *mgr_account_key(struct mgr *m, char *err, size_t errlen)
{
	char key[STORAGE_KEY_MAX], *pem = NULL;
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY *pk = NULL;
	struct storage_res res;
	size_t len = 0;
	int rc, i;

	if (!ctx)
		return NULL;
	/* one account per (CA, email): the id is a digest, so the email stays out of key names */
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, m->cfg->api_uri, strlen(m->cfg->api_uri));
	EVP_DigestUpdate(ctx, "\n", 1);
	EVP_DigestUpdate(ctx, m->cfg->account_email, strlen(m->cfg->account_email));
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (i = 0; i < 16; i++)
		sprintf(m->account_id + i * 2, "%02x", md[i]);
	snprintf(key, sizeof(key), "accounts/%s/key", m->account_id);
	/* start-up, before any server listens: waiting here stalls nobody */
	rc = storage_wait(m->st, storage_get(m->st, key, NULL, NULL), &res, err, errlen);
	if (rc == -1)
		return NULL;
	if (rc == 0) {
		pk = crypto_key_from_pem(res.val, res.len, err, errlen);
		storage_res_clear(&res);
		if (!pk)
			snprintf(err + strlen(err), errlen - strlen(err), " (stored account key %s)", key);
		return pk;
	}
	pk = crypto_key_generate(CRYPTO_KEY_EC_P256, 0, err, errlen);
	if (!pk)
		return NULL;
	pem = crypto_key_to_pem(pk, &len);
	if (!pem || storage_wait(m->st, storage_put(m->st, key, pem, len, 0, NULL, NULL), &res,
				 err, errlen) == -1) {
		if (!pem)
			snprintf(err, errlen, "cannot encode the account key");
		crypto_secret_free(pem, len);
		EVP_PKEY_free(pk);
		return NULL;
	}
	crypto_secret_free(pem, len);
	log_info("account: new ACME account key created for %s", m->cfg->api_uri);
	return pk;
}

static void mgr_resume_pending(struct mgr *m)
{
	struct storage_res list, v;
	char err[256], host[MGR_HOST_MAX];
	size_t i;

	if (storage_wait(m->st, storage_list(m->st, "pending/", NULL, NULL), &list, err,
			 sizeof(err)) == -1) {
		log_err("cannot list cut-off issuances: %s", err);
		return;
	}
	for (i = 0; i < list.n; i++) {
		int renewal = 0;

		if (host_normalize(list.keys[i] + strlen("pending/"), host, sizeof(host), 0) == -1)
			continue;
		if (storage_wait(m->st, storage_get(m->st, list.keys[i], NULL, NULL), &v, err,
				 sizeof(err)) == 0) {
			renewal = v.len == 7 && memcmp(v.val, "renewal", 7) == 0;
			storage_res_clear(&v);
		}
		log_info("host=%s resuming an issuance cut off by a stop", host);
		mgr_issue(m, host, renewal, 1, NULL);
	}
	storage_res_clear(&list);
}

/* Start-up load: one certificate read back from storage. */
static void cb_mgr_load(void *arg, struct storage_res *res)
{
	struct mgr *m = arg;
	const char *host = res->key + strlen("certs/");

	m->loading--;
	mgr_storage_result(m, res);
	if (res->rc == -1)
		log_err("host=%s %s", host, res->err);
	else if (res->rc == 0)
		mgr_cert_take(m, host, res->val, res->len, 0);
}

#define MGR_LOAD_WINDOW 256

/* Start-up, before any server listens: reads every stored certificate with
 * up to MGR_LOAD_WINDOW reads in flight. Returns how many memory holds. */
static size_t mgr_load_all(struct mgr *m)
{
	struct storage_res list, g;
	char err[256], host[MGR_HOST_MAX];
	size_t i;

	/* the feed's position first: what changes during the load is read again */
	if (m->sub && storage_wait(m->st, storage_feed_since(m->st, MGR_CERTS_FEED, STORAGE_FEED_NOW,
							     NULL, NULL), &g, err, sizeof(err)) == 0) {
		m->feed_gen = g.gen;
		storage_res_clear(&g);
	}
	if (storage_wait(m->st, storage_list(m->st, "certs/", NULL, NULL), &list, err,
			 sizeof(err)) == -1) {
		m->cnt.storage_errors++;
		log_err("cannot list stored certificates: %s", err);
		return 0;
	}
	for (i = 0; i < list.n; i++) {
		if (host_normalize(list.keys[i] + strlen("certs/"), host, sizeof(host), 0) == -1 ||
		    strcmp(host, list.keys[i] + strlen("certs/")) != 0) {
			log_warn("storage: ignoring %s: not a host name", list.keys[i]);
			continue;
		}
		while (m->loading >= MGR_LOAD_WINDOW)
			ev_run(m->loop, EVRUN_ONCE);
		if (storage_get(m->st, list.keys[i], cb_mgr_load, m))
			m->loading++;
	}
	while (m->loading > 0)
		ev_run(m->loop, EVRUN_ONCE);
	storage_res_clear(&list);
	return m->certs.count;
}

static int mgr_open_storage(struct mgr *m, char *err, size_t errlen)
{
	static const char *const names[CONFIG_STORAGE__MAX] = {
		[CONFIG_STORAGE_FILE] = "file",
		[CONFIG_STORAGE_REDIS] = "redis",
		[CONFIG_STORAGE_SHM] = "shm",
	};
	const struct config *cfg = m->cfg;
	struct storage_conf sc = {
		.file_path = cfg->file_path,
		.redis_host = cfg->redis_host,
		.redis_port = cfg->redis_port,
		.redis_database = cfg->redis_database,
		.redis_auth = cfg->redis_auth,
		.redis_ssl = cfg->redis_ssl,
		.redis_ssl_verify = cfg->redis_ssl_verify,
		.redis_ssl_server_name = cfg->redis_ssl_server_name,
		.redis_namespace = cfg->redis_namespace,
	};

	m->st = storage_open(names[cfg->storage], &sc, m->loop, err, errlen);
	return m->st ? 0 : -1;
}

/* Start-up: writes <val>'s PEM to cert_dir unless a file of its size is
 * there; counts writes in <arg>. */
static void mgr_file_ensure_cb(void *arg, const char *host, void *val)
{
	struct mgr_cert *c = val;
	struct mgr *m = c->m;
	char path[4096], werr[256];
	struct stat sb;

	mgr_cert_path(m, host, path, sizeof(path));
	if (stat(path, &sb) == 0 && (size_t)sb.st_size == c->len) {
		c->on_disk = 1;
		return;
	}
	if (fs_write_atomic_nosync(path, c->pem, c->len, 0600, werr, sizeof(werr)) == -1) {
		log_err("host=%s %s", host, werr);
		return;
	}
	c->on_disk = 1;
	(*(size_t *)arg)++;
}

static const struct acme_hooks mgr_acme_hooks = {
	.challenge_store = mgr_hook_challenge_store,
	.challenge_store_cancel = mgr_hook_challenge_store_cancel,
	.challenge_clear = mgr_hook_challenge_clear,
};

struct mgr *mgr_new(struct ev_loop *loop, struct config *cfg, char *err, size_t errlen)
{
	struct mgr *m = calloc(1, sizeof(*m));
	unsigned char rnd[16];	/* node id length */
	EVP_PKEY *account = NULL;
	size_t i, loaded;

	if (!m) {
		config_free(cfg);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->loop = loop;
	m->cfg = cfg;
	m->started = time(NULL);
	hmap_init(&m->certs);
	hmap_init(&m->jobs);
	hmap_init(&m->challenges);
	hmap_init(&m->chcache);
	mgr_backoff_init(m);
	m->storage_ok = 1;
	ev_init(&m->reconcile_timer, cb_mgr_reconcile);
	m->reconcile_timer.data = m;
	mgr_renew_init(m);
	/* The lock owner token is stable across restarts of this node (host name
	 * and SPOA address), so that a node killed mid-order takes its own locks
	 * back at once instead of waiting for their leases to run out. */
	{
		char hn[256] = "", id[600];
		unsigned char md[32];
		unsigned int mdlen = sizeof(md);

		gethostname(hn, sizeof(hn) - 1);
		snprintf(id, sizeof(id), "%s|%s", hn, cfg->spoa_listen);
		if (!EVP_Digest(id, strlen(id), md, &mdlen, EVP_sha256(), NULL))
			RAND_bytes(md, sizeof(rnd));
		for (i = 0; i < sizeof(rnd); i++)
			sprintf(m->node_id + i * 2, "%02x", md[i]);
	}

	m->wq = workq_new(loop, 2, err, errlen);
	if (!m->wq || mgr_open_storage(m, err, errlen) == -1)
		goto fail;
	if (mkdir(cfg->cert_dir, 0750) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "haproxy.cert_dir: %s: %s", cfg->cert_dir, strerror(errno));
		goto fail;
	}
	account = mgr_account_key(m, err, errlen);
	if (!account)
		goto fail;
	m->http = http_client_new(loop, NULL, err, errlen);
	if (!m->http)
		goto fail;
	{
		struct acme_conf ac = {
			.directory_url = cfg->api_uri,
			.ca_file = cfg->api_ca_file,
			.email = cfg->account_email,
			.tos_accepted = cfg->tos_accepted,
			.eab_kid = cfg->eab_kid,
			.eab_hmac_key = cfg->eab_hmac_key,
			.preferred_chain = cfg->preferred_chain,
			.profile = cfg->profile,
			.cert_key_type = cfg->cert_type == CONFIG_CERT_ECC ? CRYPTO_KEY_EC_P256 : CRYPTO_KEY_RSA,
			.rsa_bits = cfg->rsa_key_size,
		};

		m->acme = acme_client_new(loop, &ac, account, &mgr_acme_hooks, m, err, errlen);
		account = NULL;
		if (!m->acme)
			goto fail;
	}
	m->rt = rt_new(loop, (const char *const *)cfg->runtime, cfg->nruntime, mgr_on_rt_reload, m,
		       err, errlen);
	if (!m->rt)
		goto fail;

	{
		char serr[256];

		/* a fleet: other nodes announce their changes (before the load, so
		 * that nothing announced meanwhile is missed) */
		m->sub = storage_subscribe(m->st, MGR_CERTS_CHANNEL, mgr_on_cert_msg, m,
					   serr, sizeof(serr));
	}
	loaded = mgr_load_all(m);
	log_info("storage=%s: %zu certificates loaded", storage_name(m->st), loaded);
	/* restart safety: every stored certificate also exists in cert_dir.
	 * Storage is the durable source, so these are written without an fsync
	 * each and flushed once: thousands of certificates start in a second. */
	{
		size_t written = 0;

		hmap_foreach(&m->certs, mgr_file_ensure_cb, &written);
		if (written && fs_sync_dir(cfg->cert_dir) == -1)
			log_err("haproxy.cert_dir: %s: sync: %s", cfg->cert_dir, strerror(errno));
		if (written)
			log_info("haproxy.cert_dir: %zu certificate files written from storage", written);
	}
	for (i = 0; i < rt_count(m->rt); i++)
		mgr_sync_haproxy(m, i);

	{
		struct spoa_server_conf sc = {
			.listen = cfg->spoa_listen,
			.handlers = mgr_spoa_handlers,
			.ctx = m,
			.on_engine = mgr_on_engine,
			/* under the examples' "timeout processing 500ms" */
			.defer_timeout = 0.4,
		};

		m->spoa = spoa_server_new(loop, &sc, err, errlen);
		if (!m->spoa)
			goto fail;
	}
	{
		struct admin_conf ac = {
			.listen = cfg->admin_listen,
			.addr = &cfg->admin_addr,
			.token = cfg->admin_token,
		};

		m->admin = admin_new(loop, &ac, &mgr_admin_ops, m, err, errlen);
		if (!m->admin)
			goto fail;
	}
	if (m->sub) {
		ev_timer_set(&m->reconcile_timer, MGR_RECONCILE_S, MGR_RECONCILE_S);
		ev_timer_start(loop, &m->reconcile_timer);
	}
	if (cfg->ndomains == 0 && !cfg->allow_any_domain)
		log_warn("domains is empty and allow_any_domain is false: no on-demand issuance, "
			 "certificates are issued through the admin API only");
	mgr_resume_pending(m);
	mgr_renew_schedule(m);
	log_info("ready: spoa=%s admin=%s storage=%s certificates=%zu", cfg->spoa_listen,
		 cfg->admin_listen, storage_name(m->st), m->certs.count);
	return m;
fail:
	EVP_PKEY_free(account);
	mgr_free(m);
	return NULL;
}

static void mgr_recompute_cb(void *arg, const char *host, void *val)
{
	mgr_renew_compute(arg, val);
}

void mgr_reload(struct mgr *m, struct config *cfg)
{
	char report[4096] = "";
	int restart;

	restart = config_diff(m->cfg, cfg, report, sizeof(report));
	if (report[0])
		log_info("config reloaded:\n%s", report);
	if (restart)
		log_warn("config: %d changed key(s) need a restart to apply; the rest is applied now",
			 restart);
	/* live keys are read from m->cfg at each use: the table says which */
	config_apply_reload(m->cfg, cfg);
	config_free(cfg);
	admin_set_token(m->admin, m->cfg->admin_token);
	hmap_foreach(&m->certs, mgr_recompute_cb, m);
	mgr_renew_schedule(m);
}

void mgr_free(struct mgr *m)
{
	if (!m)
		return;
	m->closing = 1;
	ev_timer_stop(m->loop, &m->reconcile_timer);
	ev_timer_stop(m->loop, &m->job_kick);
	mgr_renew_stop(m);
	/* the ACME client first: it must not call back into a half-freed manager */
	acme_client_free(m->acme);
	mgr_challenge_shutdown(m);
	hmap_clear(&m->jobs, mgr_job_free);
	admin_free(m->admin);
	spoa_server_free(m->spoa);
	/* cert_dir writes in progress complete; nothing more is pushed */
	workq_free(m->wq);
	rt_free(m->rt);
	while (m->syncs)
		mgr_sync_free(m->syncs);
	http_client_free(m->http);
	storage_sub_free(m->sub);
	storage_close(m->st);
	mgr_backoff_stop(m);
	heap_clear(&m->due);
	hmap_clear(&m->certs, mgr_cert_free);
	hmap_clear(&m->challenges, free);
	hmap_clear(&m->chcache, free);
	config_free(m->cfg);
	free(m);
}
