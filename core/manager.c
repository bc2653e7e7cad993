/* SPDX-License-Identifier: Apache-2.0 */
/* The agent: creates each module, wires their hooks, reloads and frees.
 *
 * Dependencies run one way; each module has its own state:
 *   certstore  certificates in memory, storage, cert_dir and HAProxy
 *   fleet      change feed and pub/sub -> certstore
 *   challenges http-01 tokens (the ACME clients' hooks)
 *   issuers    the CAs: one ACME client and account each, up or down
 *   jobs       issuance: admission, backoff, ask_url, lock, order -> certstore
 *   members    the fleet's live nodes (leases in storage) -> renew
 *   renew      due-time index, ARI -> jobs; only this node's share
 *   api        SPOE and admin handlers over all of them
 * The store reports up through hooks set here: a certificate installed or
 * removed reaches the scheduler, one received from another node settles the
 * job waiting for it; a renewal's time reaches the scheduler from jobs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <openssl/evp.h>

#include "acme/acme.h"
#include "acme/crypto.h"
#include "acme/http.h"
#include "core/alpn.h"
#include "core/api.h"
#include "core/certstore.h"
#include "core/challenges.h"
#include "core/config.h"
#include "core/fleet.h"
#include "core/health.h"
#include "core/issuers.h"
#include "core/jobs.h"
#include "core/manager.h"
#include "core/members.h"
#include "core/renew.h"
#include "dns/dns01.h"
#include "lib/host.h"
#include "lib/log.h"
#include "runtime/runtime.h"
#include "storage/storage.h"

struct mgr {
	struct ev_loop *loop;
	struct config *cfg;
	struct storage *st;
	struct issuers *iss;
	struct http_client *http;
	struct health health;
	struct certstore *cs;
	struct fleet *fleet;
	struct challenges *ch;
	struct dns01 *dns;		/* NULL without dns01.provider */
	struct alpn *alpn;		/* tls-alpn-01 solver */
	struct jobs *jobs;
	struct renew *renew;
	struct members *members;
	struct api *api;
	ev_timer attach_timer;		/* a start without the store: tries it again */
	double attach_delay;		/* its backoff, seconds */
	ev_tstamp attach_next;		/* next try, sooner when the backend reconnects */
	int indexed;			/* every stored name is in the index */
	int running;			/* mgr_run_store() ran */
};

/* A start without the store retries it after this long, doubling up to the
 * cap, or as soon as the backend says it is connected again (looked at every
 * tick, no traffic): the backends reconnect by themselves; this is the read
 * of the account, the index and the feed. */
#define MGR_ATTACH_TICK_S 0.25
#define MGR_ATTACH_MIN_S 0.5
#define MGR_ATTACH_MAX_S 10.0

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

static void mgr_on_members(void *arg)
{
	struct mgr *m = arg;

	renew_members_changed(m->renew);
	certstore_members_changed(m->cs);
}

/* on_demand: the certificates whose details this node keeps out of the hot
 * set: its renewal share, and the ones a job works on. */
static int mgr_on_detail(void *arg, const char *host)
{
	struct mgr *m = arg;

	return members_owns(m->members, members_key_hash(host)) || jobs_active(m->jobs, host);
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

/* A name whose "_acme-challenge" record this agent may have published: one
 * that on-demand or POST /acme could issue for ("name" or "*.name"), a zone of
 * wildcard_domains or a name under one, dns01.zone or a name under it. */
static int mgr_dns01_name_ok(void *arg, const char *name)
{
	const struct config *cfg = arg;
	char wc[HOST_MAXLEN + 3];
	size_t i, n = strlen(name), zl;

	if (config_domain_allowed(cfg, name) || config_wildcard_name(cfg, name, wc, sizeof(wc)))
		return 1;
	snprintf(wc, sizeof(wc), "*.%s", name);
	if (config_domain_allowed(cfg, wc))
		return 1;
	for (i = 0; i < cfg->nwildcard_domains; i++) {
		zl = strlen(cfg->wildcard_domains[i]);
		if (!strcmp(name, cfg->wildcard_domains[i]) ||
		    (n > zl && name[n - zl - 1] == '.' && !strcmp(name + n - zl, cfg->wildcard_domains[i])))
			return 1;
	}
	return 0;
}

/* The dns-01 solver of dns01.*, when a provider is set (the TXT records a
 * stop left behind are removed once the store answers: mgr_run_store). */
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
		.exec_env = (const char *const *)cfg->dns01_exec_env,
		.nexec_env = cfg->ndns01_exec_env,
		.propagation_timeout = cfg->dns01_propagation_timeout,
		.name_ok = mgr_dns01_name_ok,
		.name_ok_arg = m->cfg,
	};

	if (cfg->dns01_provider == CONFIG_DNS01_NONE)
		return 0;
	m->dns = dns01_new(m->loop, &dc, m->st, cfg->spoa_listen, err, errlen);
	if (!m->dns)
		return -1;
	issuers_set_dns(m->iss, &mgr_dns_hooks, m->dns);
	return 0;
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

/* What a start reads from storage once it answers: the index of stored
 * certificates (all of them with preload all), written to cert_dir and
 * pushed to HAProxy. */
/* The work that needs every stored name known: cut-off issuances resumed,
 * the background read of the share's metadata. */
static void mgr_run_indexed(struct mgr *m)
{
	char owner[JOBS_OWNER_TOKEN_LEN];

	jobs_resume_pending(m->jobs);
	certstore_start(m->cs);
	/* redis: the names came from the change feed; what is stored without
	 * an entry there is found by the fleet's sweep */
	jobs_owner_token(m->cfg, owner);
	certstore_sweep_start(m->cs, owner, (unsigned)m->cfg->sweep_interval);
}

static void mgr_on_indexed(void *arg, size_t n)
{
	struct mgr *m = arg;

	m->indexed = 1;
	if (m->running)
		mgr_run_indexed(m);
}

/* The stored names into memory. With preload on_demand in the background
 * (certstore_load_start: the node serves meanwhile, looking up in storage
 * an SNI of a name not indexed yet; what HAProxy holds is learnt again at
 * the end); with preload all every certificate is read now, and each is
 * made sure to be in cert_dir too (restart safety). Then what HAProxy holds
 * is learnt (preload all: what it lacks pushed). */
static void mgr_load(struct mgr *m)
{
	size_t i, loaded;

	if (certstore_load_start(m->cs, mgr_on_indexed, m) == -1) {
		loaded = certstore_load(m->cs);
		log_info("storage=%s: %zu certificates loaded", storage_name(m->st), loaded);
		certstore_ensure_files(m->cs);
		m->indexed = 1;
	}
	for (i = 0; i < rt_count(certstore_runtime(m->cs)); i++)
		certstore_sync_haproxy(m->cs, i);
}

/* Then the work that needs the store: the change feed's reconcile, the TXT
 * records a stop left, renewals; once the index is read, cut-off issuances
 * and the background reads. */
static void mgr_run_store(struct mgr *m)
{
	fleet_start(m->fleet);
	members_start(m->members);
	if (m->dns)
		dns01_cleanup_stale(m->dns);
	renew_start(m->renew);
	m->running = 1;
	if (m->indexed)
		mgr_run_indexed(m);
}

/* A start without the store: the account key, then the feed's position,
 * the index and the rest, as a start with it does; until then SPOE and the
 * admin API answer from memory (api.c checks health.store_ready). Runs the
 * loop inside (storage_wait) while it reads, as the start does. */
static void cb_mgr_attach(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mgr *m = w->data;
	char err[1024] = "";
	int down = 0;

	if (ev_now(loop) < m->attach_next && storage_state(m->st, err, sizeof(err)) != 1)
		return;		/* the repeating tick: not yet */
	/* stopped while the reads below run the loop: never re-entered */
	ev_timer_stop(loop, w);
	if (issuers_attach(m->iss, &down, err, sizeof(err)) == -1) {
		if (!down)
			log_err("storage=%s answers but the account cannot be used: %s (retried)",
				storage_name(m->st), err);
		m->attach_delay = m->attach_delay * 2 > MGR_ATTACH_MAX_S ? MGR_ATTACH_MAX_S :
				  m->attach_delay * 2;
		m->attach_next = ev_now(loop) + m->attach_delay;
		log_warn("storage=%s still not reached: %s; next try within %.1f s",
			 storage_name(m->st), err, m->attach_delay);
		ev_timer_set(w, MGR_ATTACH_TICK_S, MGR_ATTACH_TICK_S);
		ev_timer_start(loop, w);
		return;
	}
	log_info("storage=%s reached: reading the account, the index and the change feed",
		 storage_name(m->st));
	/* the feed's position first: what changes during the load is read again */
	if (fleet_mark(m->fleet) == -1)
		log_warn("storage=%s: change feed position unknown, reading the feed from its start",
			 storage_name(m->st));
	mgr_load(m);
	m->health.store_ready = 1;
	mgr_run_store(m);
	log_info("ready: storage=%s certificates=%zu%s", storage_name(m->st), certstore_count(m->cs),
		 m->indexed ? "" : " (the index is read in the background)");
}

struct mgr *mgr_new(struct ev_loop *loop, struct config *cfg, char *err, size_t errlen)
{
	struct mgr *m = calloc(1, sizeof(*m));
	char owner[JOBS_OWNER_TOKEN_LEN];
	int down = 0;

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
	ev_init(&m->attach_timer, cb_mgr_attach);
	m->attach_timer.data = m;
	m->http = http_client_new(loop, NULL, err, errlen);
	if (!m->http)
		goto fail;
	jobs_owner_token(cfg, owner);
	m->iss = issuers_new(loop, cfg, m->st, &m->health, &challenges_acme_hooks, m->ch, owner,
			     err, errlen);
	if (!m->iss)
		goto fail;
	if (issuers_attach(m->iss, &down, err, errlen) == -1) {
		if (!down)
			goto fail;
		/* a node that boots while its store reboots stays up: it serves
		 * what memory, cert_dir and HAProxy hold and reads the store when
		 * it answers */
		log_err("storage=%s not reached at start: %s; starting without it (memory only, "
			"nothing issued) and retrying", storage_name(m->st), err);
		m->health.store_ready = 0;
		err[0] = '\0';
	}
	if (mgr_open_dns01(m, err, errlen) == -1)
		goto fail;
	if (certstore_runtime_open(m->cs, err, errlen) == -1)
		goto fail;
	m->alpn = alpn_new(loop, cfg, m->st, &m->health, m->cs);
	if (!m->alpn) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	challenges_set_alpn(m->ch, m->alpn);
	m->jobs = jobs_new(loop, cfg, m->st, m->iss, m->http, m->cs, &m->health);
	m->renew = m->jobs ? renew_new(loop, cfg, m->st, m->iss, m->cs, m->jobs, &m->health) : NULL;
	/* the same id as the node's lock owner: stable across its restarts */
	m->members = m->renew ? members_new(loop, m->st, &m->health, owner,
					    (unsigned)cfg->member_lease) : NULL;
	if (!m->members) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	members_set_hook(m->members, mgr_on_members, m);
	renew_set_members(m->renew, m->members);
	{
		struct certstore_hooks ch = {
			.installed = mgr_on_installed,
			.removed = mgr_on_removed,
			.received = mgr_on_received,
			.loaded = mgr_on_loaded,
			.detail = mgr_on_detail,
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
	if (m->health.store_ready)
		mgr_load(m);
	{
		struct api_deps deps = {
			.cfg = cfg,
			.st = m->st,
			.iss = m->iss,
			.http = m->http,
			.cs = m->cs,
			.ch = m->ch,
			.jobs = m->jobs,
			.renew = m->renew,
			.members = m->members,
			.fleet = m->fleet,
			.health = &m->health,
			.dns = m->dns,
			.alpn = m->alpn,
		};

		m->api = api_new(loop, &deps, err, errlen);
		if (!m->api)
			goto fail;
	}
	{
		char warns[2048], *line, *save = NULL;

		config_warnings(cfg, warns, sizeof(warns));
		for (line = strtok_r(warns, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			log_warn("config: %s", line);
	}
	issuers_start(m->iss);
	if (!m->health.store_ready) {
		m->attach_delay = MGR_ATTACH_MIN_S;
		m->attach_next = ev_now(loop) + m->attach_delay;
		ev_timer_set(&m->attach_timer, MGR_ATTACH_TICK_S, MGR_ATTACH_TICK_S);
		ev_timer_start(loop, &m->attach_timer);
		log_info("serving: spoa=%s admin=%s storage=%s not reached yet", cfg->spoa_listen,
			 cfg->admin_listen, storage_name(m->st));
		return m;
	}
	mgr_run_store(m);
	log_info("ready: spoa=%s admin=%s storage=%s certificates=%zu%s", cfg->spoa_listen,
		 cfg->admin_listen, storage_name(m->st), certstore_count(m->cs),
		 m->indexed ? "" : " (the index is read in the background)");
	return m;
fail:
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
	ev_timer_stop(m->loop, &m->attach_timer);
	fleet_free(m->fleet);
	/* the ACME clients first: they must not call back into half-freed modules */
	issuers_close_clients(m->iss);
	/* after the client: its orders cancel their presents here */
	dns01_free(m->dns);
	/* deferred ACKs and waiting admin requests are answered while the
	 * servers still exist */
	alpn_stop(m->alpn);
	challenges_free(m->ch);
	jobs_free(m->jobs);
	issuers_free(m->iss);
	api_free(m->api);
	/* cert_dir writes in progress complete; nothing more is pushed */
	certstore_free(m->cs);
	/* after the runtime client: pushes in flight ended into it */
	alpn_free(m->alpn);
	renew_free(m->renew);
	/* its record deleted: the others take its share over now */
	members_free(m->members);
	http_client_free(m->http);
	storage_close(m->st);
	config_free(m->cfg);
	free(m);
}
