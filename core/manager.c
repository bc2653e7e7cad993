/* The agent: creates each module, wires their hooks, reloads and frees.
 *
 * Dependencies run one way; each module has its own state:
 *   certstore  certificates in memory, storage, cert_dir and HAProxy
 *   fleet      change feed and pub/sub -> certstore
 *   challenges http-01 tokens (the ACME client's hooks)
 *   jobs       issuance: admission, backoff, ask_url, lock, order -> certstore
 *   renew      due-time index, ARI -> jobs
 *   api        SPOE and admin handlers over all of them
 * The store reports up through hooks set here: a certificate installed or
 * removed reaches the scheduler, one received from another node settles the
 * job waiting for it; a renewal's time reaches the scheduler from jobs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "acme/acme.h"
#include "acme/crypto.h"
#include "acme/http.h"
#include "core/api.h"
#include "core/certstore.h"
#include "core/challenges.h"
#include "core/config.h"
#include "core/fleet.h"
#include "core/health.h"
#include "core/jobs.h"
#include "core/manager.h"
#include "core/renew.h"
#include "dns/dns01.h"
#include "lib/log.h"
#include "runtime/runtime.h"
#include "storage/storage.h"

struct mgr {
	struct ev_loop *loop;
	struct config *cfg;
	struct storage *st;
	struct acme_client *acme;
	struct http_client *http;
	struct health health;
	struct certstore *cs;
	struct fleet *fleet;
	struct challenges *ch;
	struct dns01 *dns;		/* NULL without dns01.provider */
	struct jobs *jobs;
	struct renew *renew;
	struct api *api;
	char *account_url;		/* imported with the key, or NULL (newAccount) */
};

/* ---- hooks --------------------------------------------------------------- */

static void mgr_on_installed(void *arg, const struct certstore_cert *c)
{
	struct mgr *m = arg;

	renew_installed(m->renew, c);
}

static void mgr_on_removed(void *arg, const char *host)
{
	struct mgr *m = arg;

	renew_removed(m->renew, host);
}

static void mgr_on_received(void *arg, const char *host)
{
	struct mgr *m = arg;

	jobs_settle(m->jobs, host);
}

static void mgr_on_loaded(void *arg, const char *host, int ok)
{
	struct mgr *m = arg;

	api_cert_loaded(m->api, host, ok);
}

static void mgr_on_ended(void *arg, const char *host, int ok)
{
	struct mgr *m = arg;

	api_job_ended(m->api, host, ok);
}

static void mgr_on_renewed(void *arg, const char *host, time_t t)
{
	struct mgr *m = arg;

	renew_renewed(m->renew, host, t);
}

/* the ACME client's dns-01 hooks over the solver */
static int mgr_dns_present(void *arg, const char *host, const char *fqdn, const char *value,
			   void (*done)(void *ctx, int ok, const char *err), void *ctx)
{
	return dns01_present(arg, host, fqdn, value, done, ctx);
}

static void mgr_dns_cancel(void *arg, void *ctx)
{
	dns01_cancel(arg, ctx);
}

static void mgr_dns_cleanup(void *arg, const char *host, const char *fqdn, const char *value)
{
	dns01_cleanup(arg, host, fqdn, value);
}

static const struct acme_dns_hooks mgr_dns_hooks = {
	.present = mgr_dns_present,
	.cancel = mgr_dns_cancel,
	.cleanup = mgr_dns_cleanup,
};

/* ---- set-up -------------------------------------------------------------- */

/* The dns-01 solver of dns01.*, when a provider is set; removes at once the
 * TXT records a stop left behind. */
static int mgr_open_dns01(struct mgr *m, char *err, size_t errlen)
{
	const struct config *cfg = m->cfg;
	struct dns01_conf dc = {
		.provider = cfg->dns01_provider == CONFIG_DNS01_EXEC ? DNS01_EXEC : DNS01_RFC2136,
		.server_host = cfg->dns01_server ? cfg->dns01_addr.host : NULL,
		.server_port = cfg->dns01_addr.port,
		.tsig_key_name = cfg->dns01_tsig_key_name,
		.tsig_algorithm = config_tsig_alg_name(cfg->dns01_tsig_algorithm),
		.tsig_secret = cfg->dns01_tsig_secret,
		.zone = cfg->dns01_zone,
		.exec = cfg->dns01_exec,
		.propagation_timeout = cfg->dns01_propagation_timeout,
	};

	if (cfg->dns01_provider == CONFIG_DNS01_NONE)
		return 0;
	m->dns = dns01_new(m->loop, &dc, m->st, cfg->spoa_listen, err, errlen);
	if (!m->dns)
		return -1;
	acme_client_set_dns(m->acme, &mgr_dns_hooks, m->dns);
	dns01_cleanup_stale(m->dns);
	return 0;
}


void mgr_account_id(const struct config *cfg, char out[MGR_ACCOUNT_ID_LEN + 1])
{
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int i;

	memset(md, 0, sizeof(md));
	/* one account per (CA, email): the id is a digest, so the email stays out of key names */
	if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		EVP_DigestUpdate(ctx, cfg->api_uri, strlen(cfg->api_uri));
		EVP_DigestUpdate(ctx, "\n", 1);
		EVP_DigestUpdate(ctx, cfg->account_email, strlen(cfg->account_email));
		EVP_DigestFinal_ex(ctx, md, &mdlen);
	}
	EVP_MD_CTX_free(ctx);
	for (i = 0; i < MGR_ACCOUNT_ID_LEN / 2; i++)
		sprintf(out + i * 2, "%02x", md[i]);
}

/* The account URL an import stored beside the key ("accounts/<id>/url"):
 * with it the client signs with that account at once, no newAccount. */
static char *mgr_account_url(struct mgr *m, const char *account_id)
{
	char key[STORAGE_KEY_MAX], err[256], *url = NULL;
	struct storage_res res;

	snprintf(key, sizeof(key), "accounts/%s/url", account_id);
	if (storage_wait(m->st, storage_get(m->st, key, NULL, NULL), &res, err, sizeof(err)) != 0)
		return NULL;
	if (res.len > 0 && res.len < 2048 && memchr(res.val, '\n', res.len) == NULL &&
	    (!strncmp(res.val, "https://", 8) || !strncmp(res.val, "http://", 7)))
		url = strndup(res.val, res.len);
	storage_res_clear(&res);
	return url;
}

static EVP_PKEY *mgr_account_key(struct mgr *m, char *err, size_t errlen)
{
	char key[STORAGE_KEY_MAX], account_id[MGR_ACCOUNT_ID_LEN + 1], *pem = NULL;
	EVP_PKEY *pk = NULL;
	struct storage_res res;
	size_t len = 0;
	int rc;

	mgr_account_id(m->cfg, account_id);
	snprintf(key, sizeof(key), "accounts/%s/key", account_id);
	/* start-up, before any server listens: waiting here stalls nobody */
	rc = storage_wait(m->st, storage_get(m->st, key, NULL, NULL), &res, err, errlen);
	if (rc == -1)
		return NULL;
	if (rc == 0) {
		pk = crypto_key_from_pem(res.val, res.len, err, errlen);
		storage_res_clear(&res);
		if (!pk)
			snprintf(err + strlen(err), errlen - strlen(err), " (stored account key %s)", key);
		else if ((m->account_url = mgr_account_url(m, account_id)))
			log_info("account: %s (imported with its key: no newAccount)", m->account_url);
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

const char *mgr_storage_conf(const struct config *cfg, struct storage_conf *out)
{
	static const char *const names[CONFIG_STORAGE__MAX] = {
		[CONFIG_STORAGE_FILE] = "file",
		[CONFIG_STORAGE_REDIS] = "redis",
		[CONFIG_STORAGE_SHM] = "shm",
		[CONFIG_STORAGE_CONSUL] = "consul",
	};
	struct storage_conf sc = {
		.file_path = cfg->file_path,
		.redis_host = cfg->redis_host,
		.redis_port = cfg->redis_port,
		.redis_database = cfg->redis_database,
		.redis_username = cfg->redis_username,
		.redis_auth = cfg->redis_auth,
		.redis_ssl = cfg->redis_ssl,
		.redis_ssl_verify = cfg->redis_ssl_verify,
		.redis_ssl_server_name = cfg->redis_ssl_server_name,
		.redis_ssl_ca_file = cfg->redis_ssl_ca_file,
		.redis_ssl_cert = cfg->redis_ssl_cert,
		.redis_ssl_key = cfg->redis_ssl_key,
		.redis_namespace = cfg->redis_namespace,
		.redis_sentinel_master = cfg->redis_sentinel_master,
		.redis_sentinel_nodes = (const char *const *)cfg->redis_sentinel_nodes,
		.redis_nsentinel_nodes = cfg->redis_nsentinel_nodes,
		.redis_sentinel_username = cfg->redis_sentinel_username,
		.redis_sentinel_password = cfg->redis_sentinel_password,
		.consul_host = cfg->consul_host,
		.consul_port = cfg->consul_port,
		.consul_https = cfg->consul_https,
		.consul_timeout_ms = cfg->consul_timeout_ms,
		.consul_token = cfg->consul_token,
		.consul_kv_path = cfg->consul_kv_path,
	};

	*out = sc;
	return names[cfg->storage];
}

static int mgr_open_storage(struct mgr *m, char *err, size_t errlen)
{
	struct storage_conf sc;
	const char *name = mgr_storage_conf(m->cfg, &sc);

	m->st = storage_open(name, &sc, m->loop, err, errlen);
	return m->st ? 0 : -1;
}

struct mgr *mgr_new(struct ev_loop *loop, struct config *cfg, char *err, size_t errlen)
{
	struct mgr *m = calloc(1, sizeof(*m));
	EVP_PKEY *account = NULL;
	size_t i, loaded;

	if (!m) {
		config_free(cfg);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->loop = loop;
	m->cfg = cfg;
	health_init(&m->health);
	if (mgr_open_storage(m, err, errlen) == -1)
		goto fail;
	m->cs = certstore_new(loop, cfg, m->st, &m->health, err, errlen);
	if (!m->cs)
		goto fail;
	m->ch = challenges_new(m->st, &m->health);
	if (!m->ch) {
		snprintf(err, errlen, "out of memory");
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
			.account_url = m->account_url,
		};

		m->acme = acme_client_new(loop, &ac, account, &challenges_acme_hooks, m->ch, err, errlen);
		account = NULL;
		if (!m->acme)
			goto fail;
	}
	if (mgr_open_dns01(m, err, errlen) == -1)
		goto fail;
	if (certstore_runtime_open(m->cs, err, errlen) == -1)
		goto fail;
	m->jobs = jobs_new(loop, cfg, m->st, m->acme, m->http, m->cs, &m->health);
	m->renew = m->jobs ? renew_new(loop, cfg, m->st, m->acme, m->cs, m->jobs, &m->health) : NULL;
	if (!m->renew) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	{
		struct certstore_hooks ch = {
			.installed = mgr_on_installed,
			.removed = mgr_on_removed,
			.received = mgr_on_received,
			.loaded = mgr_on_loaded,
			.arg = m,
		};
		struct jobs_hooks jh = { .renewed = mgr_on_renewed, .ended = mgr_on_ended, .arg = m };

		certstore_set_hooks(m->cs, &ch);
		jobs_set_hooks(m->jobs, &jh);
	}
	/* a fleet: subscribed before the load, so nothing announced meanwhile is missed */
	m->fleet = fleet_new(loop, m->st, m->cs, &m->health);
	if (!m->fleet) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	loaded = certstore_load(m->cs);
	log_info("storage=%s: %zu certificates loaded", storage_name(m->st), loaded);
	/* restart safety: every stored certificate also exists in cert_dir */
	certstore_ensure_files(m->cs);
	for (i = 0; i < rt_count(certstore_runtime(m->cs)); i++)
		certstore_sync_haproxy(m->cs, i);
	{
		struct api_deps deps = {
			.cfg = cfg,
			.st = m->st,
			.acme = m->acme,
			.http = m->http,
			.cs = m->cs,
			.ch = m->ch,
			.jobs = m->jobs,
			.renew = m->renew,
			.fleet = m->fleet,
			.health = &m->health,
			.dns = m->dns,
		};

		m->api = api_new(loop, &deps, err, errlen);
		if (!m->api)
			goto fail;
	}
	fleet_start(m->fleet);
	{
		char warns[2048], *line, *save = NULL;

		config_warnings(cfg, warns, sizeof(warns));
		for (line = strtok_r(warns, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			log_warn("config: %s", line);
	}
	jobs_resume_pending(m->jobs);
	renew_start(m->renew);
	certstore_start(m->cs);
	log_info("ready: spoa=%s admin=%s storage=%s certificates=%zu", cfg->spoa_listen,
		 cfg->admin_listen, storage_name(m->st), certstore_count(m->cs));
	return m;
fail:
	EVP_PKEY_free(account);
	mgr_free(m);
	return NULL;
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
	api_set_token(m->api, m->cfg->admin_token);
	renew_reload(m->renew);
}

void mgr_free(struct mgr *m)
{
	if (!m)
		return;
	fleet_free(m->fleet);
	/* the ACME client first: it must not call back into half-freed modules */
	acme_client_free(m->acme);
	/* after the client: its orders cancel their presents here */
	dns01_free(m->dns);
	/* deferred ACKs and waiting admin requests are answered while the
	 * servers still exist */
	challenges_free(m->ch);
	jobs_free(m->jobs);
	api_free(m->api);
	/* cert_dir writes in progress complete; nothing more is pushed */
	certstore_free(m->cs);
	renew_free(m->renew);
	http_client_free(m->http);
	storage_close(m->st);
	config_free(m->cfg);
	free(m->account_url);
	free(m);
}
