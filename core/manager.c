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
	crypto_cert_info_clear(&c->info);
	crypto_secret_free(c->pem, c->len);
	free(c);
}

struct mgr_cert *mgr_cert_get(struct mgr *m, const char *host)
{
	return hmap_get(&m->certs, host);
}

/* The time of the last renewal of <host> ("renewals/<host>"), 0 if none. */
static time_t mgr_renewed_at_load(struct mgr *m, const char *host)
{
	char key[STORAGE_KEY_MAX], err[256], *val = NULL;
	size_t len;
	json_t *j;
	time_t t = 0;

	snprintf(key, sizeof(key), "renewals/%s", host);
	if (storage_get(m->st, key, &val, &len, err, sizeof(err)) != 0)
		return 0;
	j = json_loadb(val, len, 0, NULL);
	free(val);
	if (j)
		t = (time_t)json_integer_value(json_object_get(j, "renewed_at"));
	json_decref(j);
	return t;
}

void mgr_renewed_at_store(struct mgr *m, const char *host, time_t t)
{
	char key[STORAGE_KEY_MAX], err[256], val[64];

	snprintf(key, sizeof(key), "renewals/%s", host);
	snprintf(val, sizeof(val), "{\"renewed_at\":%lld}", (long long)t);
	if (storage_put(m->st, key, val, strlen(val), 0, err, sizeof(err)) == -1) {
		m->cnt.storage_errors++;
		log_err("host=%s cannot store renewal record: %s", host, err);
	}
}

struct mgr_cert *mgr_cert_install(struct mgr *m, const char *host, const char *pem, size_t len)
{
	struct mgr_cert *c, *old = NULL;
	char err[256];

	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->m = m;
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
	if (old && strcmp(old->info.serial_hex, c->info.serial_hex) == 0) {
		/* same certificate: keep the ARI facts already learnt */
		c->ari_start = old->ari_start;
		c->ari_end = old->ari_end;
		c->ari_next = old->ari_next;
	}
	c->renewed_at = mgr_renewed_at_load(m, host);
	if (hmap_put(&m->certs, host, c, (void **)&old) == -1) {
		mgr_cert_free(c);
		return NULL;
	}
	mgr_cert_free(old);
	mgr_renew_compute(m, c);
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

void mgr_cert_deploy(struct mgr *m, struct mgr_cert *c)
{
	char path[4096], list[4096], err[512];

	mgr_cert_path(m, c->host, path, sizeof(path));
	if (!c->on_disk) {
		if (fs_write_atomic(path, c->pem, c->len, 0600, err, sizeof(err)) == -1)
			log_err("host=%s cannot write certificate file: %s", c->host, err);
		else
			c->on_disk = 1;
	}
	mgr_crt_list_name(m, list, sizeof(list));
	if (rt_push_cert(m->rt, path, list, c->pem, c->len, mgr_push_done, m) == -1) {
		m->cnt.push_failed++;
		log_err("host=%s push not started", c->host);
	}
}

void mgr_cert_remove(struct mgr *m, const char *host)
{
	char path[4096], list[4096];

	mgr_cert_free(hmap_del(&m->certs, host));
	mgr_cert_path(m, host, path, sizeof(path));
	if (unlink(path) == -1 && errno != ENOENT)
		log_warn("host=%s cannot remove %s: %s", host, path, strerror(errno));
	mgr_crt_list_name(m, list, sizeof(list));
	rt_remove_cert(m->rt, path, list, mgr_push_done, m);
}

/* Loads "certs/<host>" from storage into memory (and HAProxy when <deploy>)
 * unless memory already holds that very certificate. Returns 1 when changed. */
int mgr_cert_load(struct mgr *m, const char *host, int deploy)
{
	char key[STORAGE_KEY_MAX], err[256];
	struct mgr_cert *old = mgr_cert_get(m, host), *c;
	char *pem = NULL;
	size_t len = 0;
	int rc;

	snprintf(key, sizeof(key), "certs/%s", host);
	rc = storage_get(m->st, key, &pem, &len, err, sizeof(err));
	if (rc != 0) {
		if (rc == -1) {
			m->cnt.storage_errors++;
			log_err("host=%s %s", host, err);
		}
		return 0;
	}
	if (old && old->len == len && memcmp(old->pem, pem, len) == 0) {
		crypto_secret_free(pem, len);
		return 0;
	}
	c = mgr_cert_install(m, host, pem, len);
	crypto_secret_free(pem, len);
	if (!c)
		return 0;
	if (deploy)
		mgr_cert_deploy(m, c);
	return 1;
}

/* ---- HAProxy sync -------------------------------------------------------- */

struct mgr_sync {
	struct mgr *m;
	size_t idx;
};

static void mgr_sync_retry_cb(int revents, void *arg);

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

	if (!ok) {
		/* HAProxy may not be up yet: the first connection fires no reload */
		log_warn("runtime socket %zu: cannot list certificates, retrying in %.0fs", s->idx,
			 MGR_SYNC_RETRY_S);
		ev_once(m->loop, -1, 0, MGR_SYNC_RETRY_S, mgr_sync_retry_cb, s);
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
	free(s);
}

static void mgr_sync_retry_cb(int revents, void *arg)
{
	struct mgr_sync *s = arg;

	if (rt_list_certs(s->m->rt, s->idx, mgr_sync_names, s) == -1)
		free(s);
}

void mgr_sync_haproxy(struct mgr *m, size_t idx)
{
	struct mgr_sync *s = malloc(sizeof(*s));

	if (!s)
		return;
	s->m = m;
	s->idx = idx;
	if (rt_list_certs(m->rt, idx, mgr_sync_names, s) == -1)
		free(s);
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

/* 1 when storage answers that it holds no certificate for <host>. */
static int mgr_cert_absent(struct mgr *m, const char *host)
{
	char key[STORAGE_KEY_MAX], err[256], *val = NULL;
	size_t len = 0;
	int rc;

	snprintf(key, sizeof(key), "certs/%s", host);
	rc = storage_get(m->st, key, &val, &len, err, sizeof(err));
	if (rc == 0)
		crypto_secret_free(val, len);
	return rc == 1;
}

static void mgr_on_cert_msg(void *arg, const char *msg, size_t len)
{
	struct mgr *m = arg;
	char host[MGR_HOST_MAX];

	if (len == 0 || len >= sizeof(host))
		return;
	memcpy(host, msg, len);
	host[len] = '\0';
	if (mgr_cert_load(m, host, 1)) {
		log_info("host=%s certificate received from another node", host);
		mgr_job_settle(m, host);
		mgr_renew_schedule(m);
	} else if (mgr_cert_get(m, host) && mgr_cert_absent(m, host)) {
		log_info("host=%s certificate deleted by another node", host);
		mgr_cert_remove(m, host);
	}
}

struct mgr_unlisted {
	struct mgr *m;
	struct hmap listed;	/* hosts storage lists */
	struct hmap gone;	/* hosts memory holds and storage does not list */
	size_t removed;
};

static void mgr_unlisted_cb(void *arg, const char *host, void *val)
{
	struct mgr_unlisted *u = arg;

	if (!hmap_get(&u->listed, host))
		hmap_put(&u->gone, host, (void *)1, NULL);
}

/* walks u->gone, so removing from the certificate map is safe here */
static void mgr_gone_cb(void *arg, const char *host, void *val)
{
	struct mgr_unlisted *u = arg;

	if (!mgr_cert_absent(u->m, host))
		return;
	log_info("host=%s certificate deleted by another node", host);
	mgr_cert_remove(u->m, host);
	u->removed++;
}

/* Loads every stored certificate that memory lacks or holds in an older
 * version: at start, and periodically in a fleet in case a message was missed. */
static size_t mgr_reconcile(struct mgr *m, int deploy)
{
	char **keys = NULL, err[256];
	size_t n = 0, i, changed = 0;

	if (storage_list(m->st, "certs/", &keys, &n, err, sizeof(err)) == -1) {
		m->cnt.storage_errors++;
		log_err("cannot list stored certificates: %s", err);
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (mgr_cert_load(m, keys[i] + strlen("certs/"), deploy)) {
			changed++;
			mgr_job_settle(m, keys[i] + strlen("certs/"));
		}
	}
	if (deploy) {
		/* deleted on another node while a message was missed */
		struct mgr_unlisted u = { .m = m };

		hmap_init(&u.listed);
		hmap_init(&u.gone);
		for (i = 0; i < n; i++)
			hmap_put(&u.listed, keys[i] + strlen("certs/"), (void *)1, NULL);
		hmap_foreach(&m->certs, mgr_unlisted_cb, &u);
		hmap_foreach(&u.gone, mgr_gone_cb, &u);
		changed += u.removed;
		hmap_clear(&u.listed, NULL);
		hmap_clear(&u.gone, NULL);
	}
	storage_list_free(keys, n);
	return changed;
}

static void mgr_reconcile_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mgr *m = w->data;

	if (mgr_reconcile(m, 1))
		mgr_renew_schedule(m);
}

/* ---- set-up -------------------------------------------------------------- */

static EVP_PKEY *mgr_account_key(struct mgr *m, char *err, size_t errlen)
{
	char key[STORAGE_KEY_MAX], *pem = NULL;
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY *pk = NULL;
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
	rc = storage_get(m->st, key, &pem, &len, err, errlen);
	if (rc == -1)
		return NULL;
	if (rc == 0) {
		pk = crypto_key_from_pem(pem, len, err, errlen);
		crypto_secret_free(pem, len);
		if (!pk)
			snprintf(err + strlen(err), errlen - strlen(err), " (stored account key %s)", key);
		return pk;
	}
	pk = crypto_key_generate(CRYPTO_KEY_EC_P256, 0, err, errlen);
	if (!pk)
		return NULL;
	pem = crypto_key_to_pem(pk, &len);
	if (!pem || storage_put(m->st, key, pem, len, 0, err, errlen) == -1) {
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
	char **keys = NULL, err[256], *val;
	size_t n = 0, i, len;

	if (storage_list(m->st, "pending/", &keys, &n, err, sizeof(err)) == -1)
		return;
	for (i = 0; i < n; i++) {
		const char *host = keys[i] + strlen("pending/");
		int renewal = 0;

		if (storage_get(m->st, keys[i], &val, &len, err, sizeof(err)) == 0) {
			renewal = strcmp(val, "renewal") == 0;
			free(val);
		}
		log_info("host=%s resuming an issuance cut off by a stop", host);
		mgr_issue(m, host, renewal, 1, NULL);
	}
	storage_list_free(keys, n);
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

	m->st = storage_open(names[cfg->storage], &sc, err, errlen);
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
	.challenge_set = mgr_hook_challenge_set,
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
	ev_init(&m->reconcile_timer, mgr_reconcile_cb);
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

	if (mgr_open_storage(m, err, errlen) == -1)
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

	loaded = mgr_reconcile(m, 0);
	log_info("storage=%s: %zu certificates loaded", m->st->name, loaded);
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
		};

		m->spoa = spoa_server_new(loop, &sc, err, errlen);
		if (!m->spoa)
			goto fail;
	}
	{
		struct admin_conf ac = {
			.listen = cfg->admin_listen,
			.token = cfg->admin_token,
		};

		m->admin = admin_new(loop, &ac, &mgr_admin_ops, m, err, errlen);
		if (!m->admin)
			goto fail;
	}
	{
		char serr[256];

		m->sub = storage_subscribe(m->st, loop, MGR_CERTS_CHANNEL, mgr_on_cert_msg, m,
					   serr, sizeof(serr));
		if (m->sub) {
			ev_timer_set(&m->reconcile_timer, MGR_RECONCILE_S, MGR_RECONCILE_S);
			ev_timer_start(loop, &m->reconcile_timer);
		}
	}
	if (cfg->ndomains == 0 && !cfg->allow_any_domain)
		log_warn("domains is empty and allow_any_domain is false: no on-demand issuance, "
			 "certificates are issued through the admin API only");
	mgr_resume_pending(m);
	mgr_renew_schedule(m);
	log_info("ready: spoa=%s admin=%s storage=%s certificates=%zu", cfg->spoa_listen,
		 cfg->admin_listen, m->st->name, m->certs.count);
	return m;
fail:
	EVP_PKEY_free(account);
	mgr_free(m);
	return NULL;
}

static void mgr_free_job(void *p)
{
	struct mgr_job *j = p;
	struct mgr_waiter *w, *next;

	for (w = j->waiters; w; w = next) {
		next = w->next;
		admin_reply_message(w->req, 503, "the agent is shutting down");
		free(w);
	}
	ev_timer_stop(j->m->loop, &j->timer);
	free(j);
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
	/* live keys are read from m->cfg at each use: move them into the running
	 * config, keep the values that only a restart can change */
#define MGR_SWAP(a, b) do { __typeof__(a) t_ = (a); (a) = (b); (b) = t_; } while (0)
	MGR_SWAP(m->cfg->domains, cfg->domains);
	MGR_SWAP(m->cfg->ndomains, cfg->ndomains);
	MGR_SWAP(m->cfg->ask_url, cfg->ask_url);
	MGR_SWAP(m->cfg->admin_token, cfg->admin_token);
#undef MGR_SWAP
	m->cfg->allow_any_domain = cfg->allow_any_domain;
	m->cfg->fail_backoff_minutes = cfg->fail_backoff_minutes;
	m->cfg->renew_threshold_days = cfg->renew_threshold_days;
	config_free(cfg);
	admin_set_token(m->admin, m->cfg->admin_token);
	hmap_foreach(&m->certs, mgr_recompute_cb, m);
	mgr_renew_schedule(m);
}

void mgr_free(struct mgr *m)
{
	if (!m)
		return;
	ev_timer_stop(m->loop, &m->reconcile_timer);
	mgr_renew_stop(m);
	/* the ACME client first: it must not call back into a half-freed manager */
	acme_client_free(m->acme);
	hmap_clear(&m->jobs, mgr_free_job);
	admin_free(m->admin);
	spoa_server_free(m->spoa);
	rt_free(m->rt);
	http_client_free(m->http);
	storage_sub_free(m->sub);
	storage_close(m->st);
	hmap_clear(&m->certs, mgr_cert_free);
	hmap_clear(&m->challenges, free);
	config_free(m->cfg);
	free(m);
}
