/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's faces (api.h): SPOE message handlers (the hot path), the
 * admin API operations, Prometheus metrics and health. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "acme/acme.h"
#include "acme/crypto.h"
#include "acme/http.h"
#include "admin/admin.h"
#include "core/alpn.h"
#include "core/api.h"
#include "core/certstore.h"
#include "core/challenges.h"
#include "core/clientbudget.h"
#include "core/config.h"
#include "core/fleet.h"
#include "core/health.h"
#include "core/hold.h"
#include "core/issuers.h"
#include "core/jobs.h"
#include "core/members.h"
#include "core/ratelimit.h"
#include "core/renew.h"
#include "core/renewplan.h"
#include "dns/dns01.h"
#include "lib/host.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/version.h"
#include "runtime/runtime.h"
#include "spoa/spoa.h"
#include "storage/storage.h"

#define API_HEALTH_PING_S 5.0
#define API_HOLD_PER_HOST 1024	/* held ClientHellos per name; more are answered at once */
#define API_HOLD_MAX 10000	/* and in all (the SPOA server's max_deferred) */
/* a held ACK's handle is kept this much past hold_timeout, so the SPOA
 * server's own timer (hold_timeout) always sends it first */
#define API_HOLD_SLACK_S 0.5
/* client networks whose new names are counted (core/clientbudget.h) */
#define API_CLIENT_NETS_MAX 100000

struct api_counters {
	uint64_t sni_msgs, http01_msgs, http01_hits, refused_name, refused_backoff;
	uint64_t http01_deferred, http01_lookup_busy, http01_known_absent;
	uint64_t peek_msgs, held, hold_refused;
	uint64_t refused_storage;	/* new names while storage was not reached since start */
	uint64_t refused_client;	/* on_demand.max_new_names_per_client */
};

struct api {
	struct ev_loop *loop;
	struct api_deps d;		/* what it serves from (borrowed) */
	struct spoa_server *spoa;
	struct admin *admin;
	struct hold *hold;		/* held acme-sni-peek ACKs, by name */
	struct clientbudget *budget;	/* new names per client network */
	ev_tstamp storage_pinged;	/* when /healthz last pinged storage */
	struct api_counters cnt;
};

/* ---- SPOE ---------------------------------------------------------------- */

static const struct spop_data *api_arg_str(const struct spop_arg *args, size_t nargs, const char *name)
{
	size_t i, n = strlen(name);

	for (i = 0; i < nargs; i++)
		if (args[i].name_len == n && memcmp(args[i].name, name, n) == 0 &&
		    (args[i].val.type == SPOP_T_STR || args[i].val.type == SPOP_T_BIN))
			return &args[i].val;
	return NULL;
}

/* The client network of the "src" argument into <net>; 0, or -1 when the
 * message has none (an older spoe-acme.conf: no budget applies). */
static int api_client_net(const struct spop_arg *args, size_t nargs, char *net)
{
	size_t i;

	for (i = 0; i < nargs; i++) {
		if (args[i].name_len != 3 || memcmp(args[i].name, "src", 3) != 0)
			continue;
		if (args[i].val.type == SPOP_T_IPV4) {
			clientbudget_net4(&args[i].val.u.v4, net);
			return 0;
		}
		if (args[i].val.type == SPOP_T_IPV6) {
			clientbudget_net6(&args[i].val.u.v6, net);
			return 0;
		}
	}
	return -1;
}

/* Holds <reply>'s ACK until <host>'s certificate is in HAProxy (released by
 * api_cert_loaded() or api_job_ended()) or hold_timeout passes; a bound
 * reached answers now. */
static void api_hold(struct api *a, const char *host, struct spoa_reply *reply)
{
	double t = a->d.cfg->hold_timeout;
	struct spoa_deferred *def = spoa_reply_defer(reply);

	if (!def) {
		a->cnt.hold_refused++;
		return;
	}
	spoa_deferred_set_timeout(def, t);
	if (hold_add(a->hold, host, def, t + API_HOLD_SLACK_S) == -1) {
		a->cnt.hold_refused++;
		spoa_deferred_done(def);
		return;
	}
	a->cnt.held++;
}

static void cb_api_hold_release(void *arg, void *item)
{
	spoa_deferred_done(item);
}

/* A name under wildcard_domains is served by its zone's wildcard
 * certificate: the certificate, its job and its backoff go by "*.<zone>". */
static int api_wildcard_key(const struct api *a, char *host, size_t hostlen)
{
	char wc[CERTSTORE_HOST_MAX];

	if (!config_wildcard_name(a->d.cfg, host, wc, sizeof(wc)))
		return 0;
	snprintf(host, hostlen, "%s", wc);
	return 1;
}

/* acme-sni and acme-sni-peek: answered from memory (certificates, jobs,
 * allow-list, backoff); issuance starts in the background. A peek (the
 * ClientHello, before HAProxy picks a certificate) of a name whose
 * certificate HAProxy lacks but will get is held (SPEC §4). */
static void api_spoe_sni_any(struct api *a, const struct spop_arg *args, size_t nargs,
			     struct spoa_reply *reply, int peek)
{
	const struct spop_data *d = api_arg_str(args, nargs, "sni");
	char raw[CERTSTORE_HOST_MAX], host[CERTSTORE_HOST_MAX];
	int hold = peek && a->d.cfg->hold_timeout > 0;
	unsigned limit = (unsigned)a->d.cfg->max_names_per_client;
	char net[CLIENTBUDGET_NET_MAX];
	int wildcard, has_net;

	a->cnt.sni_msgs++;
	spoa_reply_set_bool(reply, SPOP_SCOPE_SESS, "seen", 1);
	if (!d || d->u.s.len == 0 || d->u.s.len >= sizeof(raw))
		return;
	memcpy(raw, d->u.s.ptr, d->u.s.len);
	raw[d->u.s.len] = '\0';
	if (host_normalize(raw, host, sizeof(host), 0) == -1) {
		a->cnt.refused_name++;
		return;
	}
	/* wildcard_domains are allowed by being listed */
	wildcard = api_wildcard_key(a, host, sizeof(host));
	switch (certstore_seen(a->d.cs, host)) {
	case CERTSTORE_SEEN_LOADED:
		return;
	case CERTSTORE_SEEN_LOADING:
		if (hold)
			api_hold(a, host, reply);
		return;
	default:
		break;
	}
	if (jobs_active(a->d.jobs, host)) {
		if (hold)
			api_hold(a, host, reply);
		return;
	}
	if (!wildcard && !config_domain_allowed(a->d.cfg, host)) {
		a->cnt.refused_name++;
		log_debug("host=%s not allowed for on-demand issuance", host);
		return;
	}
	if (jobs_backoff_active(a->d.jobs, host, NULL)) {
		a->cnt.refused_backoff++;
		return;
	}
	if (!a->d.health->store_ready) {
		/* started without the store: no account, no lock, no index; the
		 * name may even be stored. Answered now, not held. */
		a->cnt.refused_storage++;
		return;
	}
	/* a new name: its client network's budget (answered at once, no order) */
	has_net = limit > 0 && api_client_net(args, nargs, net) == 0;
	if (has_net && clientbudget_over(a->budget, net, limit, time(NULL))) {
		a->cnt.refused_client++;
		log_debug("host=%s not issued: client network %s spent its %u new names this hour",
			  host, net, limit);
		return;
	}
	/* a full queue refuses the name (counted and logged by jobs): not held */
	if (jobs_issue(a->d.jobs, host, 0, 0, NULL) == 0) {
		log_info("host=%s on-demand issuance requested by SNI", host);
		if (has_net)
			clientbudget_count(a->budget, net, time(NULL));
		if (hold)	/* 0: the job exists now, queued or running */
			api_hold(a, host, reply);
	}
}

static void api_spoe_sni(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *reply)
{
	api_spoe_sni_any(ctx, args, nargs, reply, 0);
}

static void api_spoe_sni_peek(void *ctx, const struct spop_arg *args, size_t nargs,
			      struct spoa_reply *reply)
{
	struct api *a = ctx;

	a->cnt.peek_msgs++;
	api_spoe_sni_any(a, args, nargs, reply, 1);
}

void api_cert_loaded(struct api *a, const char *host, int ok)
{
	if (a)
		hold_release(a->hold, host);
}

void api_job_ended(struct api *a, const char *host, int ok)
{
	/* issued: the push that follows releases them (certstore_seen() also
	 * starts it for a name memory held but HAProxy did not) */
	if (a && (!ok || certstore_seen(a->d.cs, host) != CERTSTORE_SEEN_LOADING))
		hold_release(a->hold, host);
}

static void api_spoe_http01(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *reply)
{
	struct api *a = ctx;
	const struct spop_data *d = api_arg_str(args, nargs, "token");
	char token[257];
	struct spoa_deferred *def;
	const char *ka;

	a->cnt.http01_msgs++;
	/* no ACME token has this shape: unknown, from memory */
	if (!d || d->u.s.len == 0 || d->u.s.len >= sizeof(token)) {
		a->cnt.http01_known_absent++;
		return;
	}
	memcpy(token, d->u.s.ptr, d->u.s.len);
	token[d->u.s.len] = '\0';
	if (!challenges_token_valid(token)) {
		a->cnt.http01_known_absent++;
		return;
	}
	ka = challenges_local(a->d.ch, token);
	if (ka) {
		a->cnt.http01_hits++;
		spoa_reply_set_str(reply, SPOP_SCOPE_TXN, "keyauth", ka, strlen(ka));
		return;
	}
	if (challenges_known_absent(a->d.ch, token)) {
		a->cnt.http01_known_absent++;
		return;
	}
	/* another node sharing the store may have made it a moment ago */
	def = spoa_reply_defer(reply);
	if (!def) {
		a->cnt.http01_lookup_busy++;
		return;
	}
	if (challenges_lookup_shared(a->d.ch, token, def) == -1) {
		a->cnt.http01_lookup_busy++;
		spoa_deferred_done(def);
		return;
	}
	a->cnt.http01_deferred++;
}

/* acme-alpn: a ClientHello whose ALPN is acme-tls/1 (a CA validating
 * tls-alpn-01), from the peek frontend before it routes the connection to
 * the acme-tls/1 frontend: held while that name's validation certificate is
 * pushed there (alpn.h). */
static void api_spoe_alpn(void *ctx, const struct spop_arg *args, size_t nargs,
			  struct spoa_reply *reply)
{
	struct api *a = ctx;
	const struct spop_data *d = api_arg_str(args, nargs, "sni");
	char raw[CERTSTORE_HOST_MAX], host[CERTSTORE_HOST_MAX];

	if (!d || d->u.s.len == 0 || d->u.s.len >= sizeof(raw))
		return;
	memcpy(raw, d->u.s.ptr, d->u.s.len);
	raw[d->u.s.len] = '\0';
	if (host_normalize(raw, host, sizeof(host), 0) == -1)
		return;
	alpn_hello(a->d.alpn, host, reply);
}

static const struct spoa_handler api_spoa_handlers[] = {
	{ .message = "acme-sni", .fn = api_spoe_sni },
	/* the same, from a TCP frontend peeking at the ClientHello (req.ssl_sni) */
	{ .message = "acme-sni-peek", .fn = api_spoe_sni_peek },
	{ .message = "acme-http01", .fn = api_spoe_http01 },
	{ .message = "acme-alpn", .fn = api_spoe_alpn },
	{ .message = NULL },
};

/* ---- admin --------------------------------------------------------------- */

/* Kong's fields, the CA of "issuers" that issued it (name and directory
 * URL; null when no CA of the list is known to have issued it), and the id
 * of the fleet's member that renews it. */
static json_t *api_cert_json(const struct api *a, const struct certstore_cert *c)
{
	time_t now = time(NULL);
	char nb[CERTSTORE_TIME_STR], na[CERTSTORE_TIME_STR];
	int i = issuers_for_cn(a->d.iss, c->info.issuer_cn);
	const struct config_issuer *is = i >= 0 ? issuers_conf(a->d.iss, (size_t)i) : NULL;

	return json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?}",
			 "host", c->host,
			 "not_before", certstore_time_str(c->info.not_before, nb),
			 "not_after", certstore_time_str(c->info.not_after, na),
			 "valid", now >= c->info.not_before && now < c->info.not_after,
			 "serial_number", c->info.serial_hex,
			 "digest", c->info.digest_sha1,
			 "issuer_cn", c->info.issuer_cn,
			 "pubkey_type", c->info.pubkey_type,
			 "issuer_name", is ? is->name : NULL,
			 "issuer_url", is ? is->api_uri : NULL,
			 "renewal_owner", renew_owner(a->d.renew, c->host));
}

static void api_admin_issue(void *ctx, const char *raw, struct admin_req *req)
{
	struct api *a = ctx;
	char host[CERTSTORE_HOST_MAX], msg[512];
	int wildcard;

	if (host_normalize(raw, host, sizeof(host), HOST_WILDCARD) == -1) {
		snprintf(msg, sizeof(msg), "host %s is not a valid host name", raw);
		admin_reply_message(req, 400, msg);
		return;
	}
	/* "*.zone" (or a name of a wildcard_domains zone) is one dns-01 certificate */
	wildcard = api_wildcard_key(a, host, sizeof(host));
	if (host[0] == '*' && a->d.cfg->dns01_provider == CONFIG_DNS01_NONE) {
		snprintf(msg, sizeof(msg), "host %s is a wildcard: it needs dns-01 (dns01.provider)", host);
		admin_reply_message(req, 400, msg);
		return;
	}
	if (!wildcard && !config_domain_allowed(a->d.cfg, host)) {
		snprintf(msg, sizeof(msg), "host %s is not allowed: not in domains", host);
		admin_reply_message(req, 400, msg);
		return;
	}
	if (!a->d.health->store_ready) {
		admin_reply_message(req, 503, "storage not reached since start: nothing can be "
				    "issued yet (see /healthz and the log)");
		return;
	}
	if (jobs_issue(a->d.jobs, host, certstore_stored(a->d.cs, host), 1, req) == -1)
		admin_reply_message(req, 500, "out of memory");
}

struct api_sanity {
	struct api *a;
	struct admin_req *req;
	char host[CERTSTORE_HOST_MAX];
	char token[64];
	char keyauth[128];
};

static void api_sanity_done(void *arg, const struct http_response *res)
{
	struct api_sanity *s = arg;
	char msg[1024];

	challenges_forget(s->a->d.ch, s->token);
	if (res->status == 200 && res->body_len == strlen(s->keyauth) &&
	    memcmp(res->body, s->keyauth, res->body_len) == 0) {
		snprintf(msg, sizeof(msg), "sanity test for host %s passed", s->host);
		admin_reply_message(s->req, 200, msg);
	} else if (res->status == 0) {
		snprintf(msg, sizeof(msg), "problem found running sanity check for %s: %s", s->host,
			 res->error ? res->error : "request failed");
		admin_reply_message(s->req, 400, msg);
	} else {
		snprintf(msg, sizeof(msg), "problem found running sanity check for %s: "
			 "the challenge path answered HTTP %ld without this agent's reply", s->host,
			 res->status);
		admin_reply_message(s->req, 400, msg);
	}
	free(s);
}

static void api_admin_sanity(void *ctx, const char *raw, struct admin_req *req)
{
	struct api *a = ctx;
	struct api_sanity *s;
	unsigned char rnd[24];
	char url[1024], *tok;

	s = calloc(1, sizeof(*s));
	if (!s) {
		admin_reply_message(req, 500, "out of memory");
		return;
	}
	if (host_normalize(raw, s->host, sizeof(s->host), 0) == -1) {
		snprintf(url, sizeof(url), "host %s is not a valid host name", raw);
		admin_reply_message(req, 400, url);
		free(s);
		return;
	}
	RAND_bytes(rnd, sizeof(rnd));
	tok = crypto_b64url(rnd, sizeof(rnd));
	if (!tok) {
		admin_reply_message(req, 500, "out of memory");
		free(s);
		return;
	}
	s->a = a;
	s->req = req;
	snprintf(s->token, sizeof(s->token), "%s", tok);
	snprintf(s->keyauth, sizeof(s->keyauth), "%s.acme-spoa-sanity-check", tok);
	free(tok);
	challenges_store(a->d.ch, s->token, s->keyauth, 120);
	snprintf(url, sizeof(url), "http://%s/.well-known/acme-challenge/%s", s->host, s->token);
	if (http_request(a->d.http, "GET", url, NULL, NULL, 0, 10000, api_sanity_done, s) == -1) {
		challenges_forget(a->d.ch, s->token);
		admin_reply_message(req, 500, "sanity request not started");
		free(s);
	}
}

static void api_admin_renew_all(void *ctx)
{
	struct api *a = ctx;

	if (!a->d.health->store_ready) {
		log_warn("admin: PATCH /acme: storage not reached since start, nothing to renew yet");
		return;
	}
	renew_pass(a->d.renew, 0);
}

struct api_list {
	const struct api *a;
	json_t *arr;
	int invalid_only;
	time_t now;
};

static void api_list_cb(void *arg, struct certstore_cert *c)
{
	struct api_list *l = arg;

	if (l->invalid_only && l->now >= c->info.not_before && l->now < c->info.not_after)
		return;
	json_array_append_new(l->arr, api_cert_json(l->a, c));
}

#define API_LIST_WINDOW 64	/* index-only names read from storage at once */

/* GET /acme/certificates with preload on_demand: the full entries from
 * memory, then the index-only names (another member's, not hot) from their
 * metadata records, a window at a time, before the answer: the list is the
 * fleet's, as on a single node, on every node. */
struct api_listing {
	struct api_list l;
	struct admin_req *req;
	char **names;			/* to read */
	size_t n, cap, next, inflight;
	int pumping;
};

static void api_listing_pump(struct api_listing *ls);

static void api_listing_peeked(void *arg, const struct certstore_cert *c)
{
	struct api_listing *ls = arg;

	ls->inflight--;
	if (c)
		api_list_cb(&ls->l, (struct certstore_cert *)c);
	if (!ls->pumping)
		api_listing_pump(ls);
}

static void api_listing_name(void *arg, const char *host, struct certstore_cert *c)
{
	struct api_listing *ls = arg;
	char **v;

	if (c && c->has_info) {
		api_list_cb(&ls->l, c);
		return;
	}
	if (ls->n == ls->cap) {
		ls->cap = ls->cap ? 2 * ls->cap : 256;
		v = realloc(ls->names, ls->cap * sizeof(*v));
		if (!v)
			return;		/* the answer lists what memory allowed */
		ls->names = v;
	}
	if ((ls->names[ls->n] = strdup(host)))
		ls->n++;
}

static void api_listing_pump(struct api_listing *ls)
{
	size_t i;

	ls->pumping = 1;
	while (ls->inflight < API_LIST_WINDOW && ls->next < ls->n) {
		i = ls->next++;
		ls->inflight++;
		if (certstore_peek(ls->l.a->d.cs, ls->names[i], api_listing_peeked, ls) == -1)
			ls->inflight--;
		free(ls->names[i]);
		ls->names[i] = NULL;
	}
	ls->pumping = 0;
	if (ls->inflight || ls->next < ls->n)
		return;
	admin_reply_json(ls->req, 200, json_pack("{s:o}", "data", ls->l.arr));
	free(ls->names);
	free(ls);
}

static void api_admin_cert_list_async(void *ctx, int invalid_only, struct admin_req *req)
{
	struct api *a = ctx;
	struct api_listing *ls = calloc(1, sizeof(*ls));

	if (!ls || !(ls->l.arr = json_array())) {
		admin_reply_message(req, 500, "Cannot list certificates");
		free(ls);
		return;
	}
	ls->l.a = a;
	ls->l.invalid_only = invalid_only;
	ls->l.now = time(NULL);
	ls->req = req;
	certstore_foreach_name(a->d.cs, api_listing_name, ls);
	api_listing_pump(ls);
}

struct api_get {
	struct api *a;
	struct admin_req *req;
};

static void api_cert_peeked(void *arg, const struct certstore_cert *c)
{
	struct api_get *g = arg;
	json_t *cert = c ? api_cert_json(g->a, c) : NULL;

	if (cert)
		admin_reply_json(g->req, 200, json_pack("{s:o}", "data", cert));
	else
		admin_reply_message(g->req, 404, "Not found");
	free(g);
}

/* An index-only name (preload on_demand, another member's, not hot) is
 * answered from its metadata record, read from storage. */
static void api_admin_cert_get_async(void *ctx, const char *raw, struct admin_req *req)
{
	struct api *a = ctx;
	struct api_get *g = calloc(1, sizeof(*g));
	char host[CERTSTORE_HOST_MAX];

	if (!g || host_normalize(raw, host, sizeof(host), HOST_WILDCARD) == -1) {
		admin_reply_message(req, g ? 404 : 500, g ? "Not found" : "out of memory");
		free(g);
		return;
	}
	g->a = a;
	g->req = req;
	if (certstore_peek(a->d.cs, host, api_cert_peeked, g) == -1) {
		admin_reply_message(req, 500, "out of memory");
		free(g);
	}
}

struct api_del {
	struct api *a;
	struct admin_req *req;
	char host[CERTSTORE_HOST_MAX];
};

static void cb_api_del(void *arg, struct storage_res *res)
{
	struct api_del *d = arg;
	struct api *a = d->a;
	char key[STORAGE_KEY_MAX], msg[1024];

	health_storage_result(a->d.health, res);
	if (res->rc == -1) {
		snprintf(msg, sizeof(msg), "cannot delete certificate for host %s: %s", d->host,
			 res->err);
		admin_reply_message(d->req, 500, msg);
		free(d);
		return;
	}
	snprintf(key, sizeof(key), "renewals/%s", d->host);
	renew_forget(a->d.renew, d->host);
	certstore_remove(a->d.cs, d->host);
	/* the other nodes of a fleet drop it too */
	certstore_announce(a->d.cs, d->host, NULL);
	log_info("host=%s certificate deleted", d->host);
	snprintf(msg, sizeof(msg), "certificate for host %s is deleted", d->host);
	admin_reply_message(d->req, 200, msg);
	free(d);
}

static void api_del_finish(struct api_del *d)
{
	char key[STORAGE_KEY_MAX];

	/* the metadata record first: it never names a certificate not stored */
	certstore_meta_del(d->a->d.cs, d->host);
	snprintf(key, sizeof(key), "certs/%s", d->host);
	if (!storage_del(d->a->d.st, key, cb_api_del, d)) {
		admin_reply_message(d->req, 500, "out of memory");
		free(d);
	}
}

static void api_revoke_done(void *arg, int ok, const char *err)
{
	struct api_del *d = arg;
	char msg[1024];

	if (!ok) {
		snprintf(msg, sizeof(msg), "revocation of the certificate for host %s failed: %s",
			 d->host, err ? err : "unknown error");
		admin_reply_message(d->req, 500, msg);
		free(d);
		return;
	}
	log_info("host=%s certificate revoked", d->host);
	api_del_finish(d);
}

/* The client of the CA that issued <d>'s certificate. */
static struct acme_client *api_revoke_client(const struct api_del *d)
{
	struct certstore_cert *c = certstore_get(d->a->d.cs, d->host);

	return issuers_acme_for_cn(d->a->d.iss, c ? c->info.issuer_cn : NULL);
}

static void cb_api_revoke_read(void *arg, struct storage_res *res)
{
	struct api_del *d = arg;
	char msg[1024];

	health_storage_result(d->a->d.health, res);
	if (res->rc != 0) {
		snprintf(msg, sizeof(msg), "cannot read the certificate for host %s: %s", d->host,
			 res->rc == 1 ? "not in storage" : res->err);
		admin_reply_message(d->req, 500, msg);
		free(d);
		return;
	}
	if (acme_revoke(api_revoke_client(d), res->val, api_revoke_done, d) == -1) {
		admin_reply_message(d->req, 500, "revocation not started");
		free(d);
	}
}

static void api_admin_cert_delete(void *ctx, const char *raw, int revoke, struct admin_req *req)
{
	struct api *a = ctx;
	struct api_del *d = calloc(1, sizeof(*d));
	struct certstore_cert *c;

	if (!d) {
		admin_reply_message(req, 500, "out of memory");
		return;
	}
	d->a = a;
	d->req = req;
	if (host_normalize(raw, d->host, sizeof(d->host), HOST_WILDCARD) == -1 ||
	    !(c = certstore_get(a->d.cs, d->host))) {
		admin_reply_message(req, 404, "Not found");
		free(d);
		return;
	}
	if (revoke && !c->pem) {
		/* haproxy.preload on_demand keeps no PEM in memory */
		char key[STORAGE_KEY_MAX];

		snprintf(key, sizeof(key), "certs/%s", d->host);
		if (!storage_get(a->d.st, key, cb_api_revoke_read, d)) {
			admin_reply_message(req, 500, "out of memory");
			free(d);
		}
		return;
	}
	if (revoke) {
		if (acme_revoke(issuers_acme_for_cn(a->d.iss, c->info.issuer_cn), c->pem, api_revoke_done, d) == -1) {
			admin_reply_message(req, 500, "revocation not started");
			free(d);
		}
		return;
	}
	api_del_finish(d);
}

struct api_days {
	time_t now;
	uint64_t b[6];		/* expired, <1, <7, <14, <30, >=30 days */
	time_t earliest;	/* soonest not_after, 0 with no certificate */
};

static void api_days_cb(void *arg, struct certstore_cert *c)
{
	struct api_days *d = arg;
	double days = (double)(c->info.not_after - d->now) / 86400.0;

	if (!c->has_info)
		return;		/* on_demand start: not read yet */

	if (!d->earliest || c->info.not_after < d->earliest)
		d->earliest = c->info.not_after;

	d->b[days < 0 ? 0 : days < 1 ? 1 : days < 7 ? 2 : days < 14 ? 3 : days < 30 ? 4 : 5]++;
}

/* What /healthz answers from, also exported as gauges in /metrics. */
struct api_health_facts {
	int storage_ok;
	size_t rt_up, rt_total;
};

static void api_health_facts(struct api *a, struct api_health_facts *hf);
static void cb_api_ping(void *arg, struct storage_res *res);

static void api_counter(struct metrics_buf *b, const char *name, const char *help, const char *labels,
			uint64_t v)
{
	metrics_header(b, name, "counter", help);
	metrics_value(b, name, labels, (double)v);
}

static void api_admin_metrics(void *ctx, struct metrics_buf *b)
{
	static const char *const days_names[6] = { "expired", "1", "7", "14", "30", "+Inf" };
	struct api *a = ctx;
	struct api_counters *k = &a->cnt;
	struct jobs_stats js;
	struct fleet_stats fs;
	struct api_days d = { .now = time(NULL) };
	struct spoa_stats ss;
	struct rt_stats rs;
	struct api_health_facts hf;
	double bounds[SPOA_LAT_BUCKETS - 1];
	uint64_t cum[SPOA_LAT_BUCKETS];
	char lbl[64];
	size_t i;

	jobs_stats(a->d.jobs, &js);
	fleet_stats(a->d.fleet, &fs);
	metrics_header(b, "acme_spoa_build_info", "gauge", "Always 1; the version label is the release (file VERSION).");
	metrics_value(b, "acme_spoa_build_info", "version=\"" ACME_SPOA_VERSION "\"", 1);
	api_counter(b, "acme_spoa_orders_started_total", "ACME orders started.", NULL, js.orders_started);
	api_counter(b, "acme_spoa_orders_succeeded_total", "ACME orders that produced a certificate.", NULL, js.orders_ok);
	metrics_header(b, "acme_spoa_orders_failed_total", "counter", "ACME orders that failed, by reason.");
	metrics_value(b, "acme_spoa_orders_failed_total", "reason=\"ca\"", (double)js.fail_ca);
	metrics_value(b, "acme_spoa_orders_failed_total", "reason=\"rate_limited\"", (double)js.fail_rate_limited);
	metrics_value(b, "acme_spoa_orders_failed_total", "reason=\"transport\"", (double)js.fail_transport);
	metrics_value(b, "acme_spoa_orders_failed_total", "reason=\"storage\"", (double)js.fail_storage);
	api_counter(b, "acme_spoa_renewals_total", "Certificates renewed.", NULL, js.renewals);
	api_counter(b, "acme_spoa_renewal_failures_total", "Renewals that failed.", NULL, js.renewals_failed);
	metrics_header(b, "acme_spoa_on_demand_refused_total", "counter", "On-demand requests not issued, by reason.");
	metrics_value(b, "acme_spoa_on_demand_refused_total", "reason=\"name\"", (double)k->refused_name);
	metrics_value(b, "acme_spoa_on_demand_refused_total", "reason=\"backoff\"", (double)(k->refused_backoff + js.refused_backoff));
	metrics_value(b, "acme_spoa_on_demand_refused_total", "reason=\"ask_url\"", (double)js.refused_ask);
	metrics_value(b, "acme_spoa_on_demand_refused_total", "reason=\"queue_full\"", (double)js.refused_queue);
	metrics_value(b, "acme_spoa_on_demand_refused_total", "reason=\"rate_limit\"", (double)js.refused_budget);
	metrics_value(b, "acme_spoa_on_demand_refused_total", "reason=\"storage\"", (double)k->refused_storage);
	metrics_value(b, "acme_spoa_on_demand_refused_total", "reason=\"client_budget\"", (double)k->refused_client);
	metrics_header(b, "acme_spoa_orders_in_flight", "gauge", "ACME orders running now.");
	metrics_value(b, "acme_spoa_orders_in_flight", NULL, (double)js.orders_running);

	spoa_server_stats(a->spoa, &ss);
	metrics_header(b, "acme_spoa_spoe_messages_total", "counter", "SPOE messages handled, by message.");
	/* acme-sni counts acme-sni-peek too (one SNI report each) */
	metrics_value(b, "acme_spoa_spoe_messages_total", "message=\"acme-sni\"", (double)k->sni_msgs);
	metrics_value(b, "acme_spoa_spoe_messages_total", "message=\"acme-http01\"", (double)k->http01_msgs);
	api_counter(b, "acme_spoa_http01_answered_total", "http-01 requests answered with a key authorization.", NULL, k->http01_hits + challenges_lookup_hits(a->d.ch));
	api_counter(b, "acme_spoa_http01_deferred_total", "http-01 requests whose answer was looked up in shared storage.", NULL, k->http01_deferred);
	api_counter(b, "acme_spoa_http01_storage_reads_total", "storage reads made for http-01 look-ups (one for several requests of a token at once).", NULL, challenges_lookup_reads(a->d.ch));
	api_counter(b, "acme_spoa_http01_unknown_from_memory_total", "http-01 requests answered unknown without a look-up: not a token's shape, no other process holds tokens (shm), or storage said so a moment ago.", NULL, k->http01_known_absent);
	api_counter(b, "acme_spoa_http01_lookup_busy_total", "http-01 requests answered without a look-up: too many in flight.", NULL, k->http01_lookup_busy);
	{
		struct hold_stats hs;

		hold_stats(a->hold, &hs);
		api_counter(b, "acme_spoa_sni_peek_total", "acme-sni-peek messages (ClientHellos reported).", NULL, k->peek_msgs);
		api_counter(b, "acme_spoa_hold_total", "acme-sni-peek ACKs held until the name's certificate is in HAProxy.", NULL, k->held);
		api_counter(b, "acme_spoa_hold_released_total", "Held ACKs sent when the certificate was pushed or the issuance ended.", NULL, hs.released);
		api_counter(b, "acme_spoa_hold_refused_total", "acme-sni-peek ACKs not held: a bound was reached.", NULL, k->hold_refused);
		metrics_header(b, "acme_spoa_hold_waiting", "gauge", "acme-sni-peek ACKs held now.");
		metrics_value(b, "acme_spoa_hold_waiting", NULL, (double)hs.waiting);
		metrics_header(b, "acme_spoa_haproxy_loaded_certificates", "gauge", "Certificates the agent knows HAProxy holds (the hot set with haproxy.preload on_demand).");
		metrics_value(b, "acme_spoa_haproxy_loaded_certificates", NULL, (double)certstore_loaded_count(a->d.cs));
	}
	metrics_header(b, "acme_spoa_fleet_members", "gauge", "Live members of the fleet (nodes holding a lease in storage), this one included.");
	metrics_value(b, "acme_spoa_fleet_members", NULL, (double)members_count(a->d.members));
	metrics_header(b, "acme_spoa_renewal_share", "gauge", "Certificates whose renewal and ARI polling belong to this node.");
	metrics_value(b, "acme_spoa_renewal_share", NULL, (double)renew_share(a->d.renew));
	renewplan_metrics(renew_plan(a->d.renew), b);
	metrics_header(b, "acme_spoa_certificates_indexed", "gauge", "Stored certificates this node knows by name (the compact index the SNI path reads).");
	metrics_value(b, "acme_spoa_certificates_indexed", NULL, (double)certstore_count(a->d.cs));
	metrics_header(b, "acme_spoa_certificates_detailed", "gauge", "Of them, the ones held in full (metadata and renewal): with preload on_demand this node's share, its hot set and the ones touched lately.");
	metrics_value(b, "acme_spoa_certificates_detailed", NULL, (double)certstore_detailed(a->d.cs));
	metrics_header(b, "acme_spoa_certificates_index_bytes", "gauge", "Bytes the index of stored names holds.");
	metrics_value(b, "acme_spoa_certificates_index_bytes", NULL, (double)certstore_index_bytes(a->d.cs));
	api_counter(b, "acme_spoa_feed_reads_total", "Reads of the fleet's change feed.", NULL, fs.feed_reads);
	api_counter(b, "acme_spoa_feed_changes_total", "Certificate changes learnt from the change feed.", NULL, fs.feed_changes);
	api_counter(b, "acme_spoa_spoe_frames_total", "SPOE NOTIFY frames received.", NULL, ss.notify_frames);
	api_counter(b, "acme_spoa_spoe_malformed_frames_total", "SPOP frames refused as malformed.", NULL, ss.malformed);
	api_counter(b, "acme_spoa_spoe_deferred_total", "NOTIFY frames whose ACK was deferred.", NULL, ss.deferred_total);
	api_counter(b, "acme_spoa_spoe_deferred_timeouts_total", "Deferred ACKs sent when the defer timeout passed.", NULL, ss.deferred_timeouts);
	api_counter(b, "acme_spoa_spoe_deferred_refused_total", "Deferrals refused by a bound (answered at once).", NULL, ss.deferred_refused);
	metrics_header(b, "acme_spoa_spoe_deferred", "gauge", "ACKs deferred and not sent yet.");
	metrics_value(b, "acme_spoa_spoe_deferred", NULL, (double)ss.deferred_current);
	metrics_header(b, "acme_spoa_spoe_connections", "gauge", "SPOP connections from HAProxy now open.");
	metrics_value(b, "acme_spoa_spoe_connections", NULL, (double)ss.conns_current);
	for (i = 0; i < SPOA_LAT_BUCKETS; i++) {
		if (i < SPOA_LAT_BUCKETS - 1)
			bounds[i] = spoa_latency_bounds_us[i] / 1e6;
		cum[i] = ss.lat_buckets[i] + (i ? cum[i - 1] : 0);
	}
	metrics_header(b, "acme_spoa_spoe_processing_seconds", "histogram", "Time from reading a NOTIFY frame to queuing its ACK (deferred ACKs included).");
	metrics_histogram(b, "acme_spoa_spoe_processing_seconds", NULL, bounds, cum, SPOA_LAT_BUCKETS - 1,
			  ss.lat_sum_us / 1e6, ss.lat_count);

	rt_stats(certstore_runtime(a->d.cs), &rs);
	api_counter(b, "acme_spoa_runtime_pushes_total", "Certificate pushes into HAProxy that succeeded.", NULL, rs.pushes_ok);
	api_counter(b, "acme_spoa_runtime_push_errors_total", "Certificate pushes into HAProxy that failed.", NULL, rs.pushes_failed);
	api_counter(b, "acme_spoa_runtime_reloads_seen_total", "HAProxy restarts or reloads seen.", NULL, rs.reloads_seen);
	api_counter(b, "acme_spoa_storage_errors_total", "Storage operations that failed.", NULL, a->d.health->storage_errors);
	metrics_header(b, "acme_spoa_storage_inflight", "gauge", "Storage operations started and not yet answered.");
	metrics_value(b, "acme_spoa_storage_inflight", NULL, (double)storage_inflight(a->d.st));
	{
		struct dns01_stats ds;

		dns01_stats(a->d.dns, &ds);
		metrics_header(b, "acme_spoa_dns01_records_total", "counter", "dns-01 TXT records: published (and seen at the authoritative servers) and removed, by result.");
		metrics_value(b, "acme_spoa_dns01_records_total", "op=\"present\",result=\"ok\"", (double)ds.present_ok);
		metrics_value(b, "acme_spoa_dns01_records_total", "op=\"present\",result=\"error\"", (double)ds.present_failed);
		metrics_value(b, "acme_spoa_dns01_records_total", "op=\"cleanup\",result=\"ok\"", (double)ds.cleanup_ok);
		metrics_value(b, "acme_spoa_dns01_records_total", "op=\"cleanup\",result=\"error\"", (double)ds.cleanup_failed);
		metrics_header(b, "acme_spoa_dns01_pending", "gauge", "dns-01 publications and removals under way.");
		metrics_value(b, "acme_spoa_dns01_pending", NULL, (double)ds.pending);
	}
	metrics_header(b, "acme_spoa_certificates_refused_total", "counter", "Certificate bundles refused by the check before use (key, name, chain, expiry), by source.");
	metrics_value(b, "acme_spoa_certificates_refused_total", "source=\"ca\"", (double)certstore_refused(a->d.cs, CERTSTORE_SRC_CA));
	metrics_value(b, "acme_spoa_certificates_refused_total", "source=\"storage\"", (double)certstore_refused(a->d.cs, CERTSTORE_SRC_STORAGE));
	metrics_header(b, "acme_spoa_orders_queued", "gauge", "Issuances waiting for a free slot.");
	metrics_value(b, "acme_spoa_orders_queued", NULL, (double)js.queued);

	ratelimit_metrics(jobs_ratelimit(a->d.jobs), b);
	issuers_metrics(a->d.iss, b);
	{
		struct alpn_stats as;

		alpn_stats(a->d.alpn, &as);
		api_counter(b, "acme_spoa_tlsalpn_hellos_total", "ClientHellos with ALPN acme-tls/1 reported (acme-alpn).", NULL, as.hellos);
		metrics_header(b, "acme_spoa_tlsalpn_certificates_total", "counter", "tls-alpn-01 validation certificates pushed into HAProxy and removed, by result.");
		metrics_value(b, "acme_spoa_tlsalpn_certificates_total", "op=\"push\",result=\"ok\"", (double)as.pushed);
		metrics_value(b, "acme_spoa_tlsalpn_certificates_total", "op=\"push\",result=\"error\"", (double)as.push_failed);
		metrics_value(b, "acme_spoa_tlsalpn_certificates_total", "op=\"remove\",result=\"ok\"", (double)as.removed);
	}

	certstore_foreach(a->d.cs, api_days_cb, &d);
	metrics_header(b, "acme_spoa_certificates", "gauge", "Certificates held, by days left before expiry (upper bound).");
	for (i = 0; i < 6; i++) {
		metrics_label(lbl, sizeof(lbl), "days_left", days_names[i]);
		metrics_value(b, "acme_spoa_certificates", lbl, (double)d.b[i]);
	}
	if (d.earliest) {
		metrics_header(b, "acme_spoa_certificate_earliest_expiry_timestamp_seconds", "gauge",
			       "Expiry (not_after, Unix time) of the certificate that expires first.");
		metrics_value(b, "acme_spoa_certificate_earliest_expiry_timestamp_seconds", NULL,
			      (double)d.earliest);
	}
	api_health_facts(a, &hf);
	metrics_header(b, "acme_spoa_storage_up", "gauge", "1 when storage answers (the /healthz storage fact).");
	metrics_value(b, "acme_spoa_storage_up", NULL, hf.storage_ok);
	metrics_header(b, "acme_spoa_storage_ready", "gauge", "1 once the account, the certificate index and the change feed were read from storage; 0 while a start without the store serves memory only.");
	metrics_value(b, "acme_spoa_storage_ready", NULL, a->d.health->store_ready);
	metrics_header(b, "acme_spoa_runtime_sockets", "gauge", "HAProxy runtime sockets configured.");
	metrics_value(b, "acme_spoa_runtime_sockets", NULL, (double)hf.rt_total);
	metrics_header(b, "acme_spoa_runtime_sockets_up", "gauge", "HAProxy runtime sockets answering (the /healthz runtime fact).");
	metrics_value(b, "acme_spoa_runtime_sockets_up", NULL, (double)hf.rt_up);
	metrics_header(b, "acme_spoa_healthy", "gauge", "1 when /healthz answers 200: storage and at least one runtime socket up.");
	metrics_value(b, "acme_spoa_healthy", NULL, hf.storage_ok && hf.rt_up > 0);
}

static void cb_api_ping(void *arg, struct storage_res *res)
{
	struct api *a = arg;

	health_storage_result(a->d.health, res);
}

/* Answers from what is known now; asks storage again at most every few
 * seconds, so a probe or a scrape never waits and never floods the store. */
static void api_health_facts(struct api *a, struct api_health_facts *hf)
{
	struct rt *rt = certstore_runtime(a->d.cs);
	size_t i;
	ev_tstamp now = ev_now(a->loop);
	char err[256];

	hf->storage_ok = a->d.health->store_ready && a->d.health->storage_ok &&
			 storage_state(a->d.st, err, sizeof(err)) == 1;
	if (now - a->storage_pinged >= API_HEALTH_PING_S) {
		a->storage_pinged = now;
		storage_ping(a->d.st, cb_api_ping, a);
	}
	hf->rt_total = rt_count(rt);
	hf->rt_up = 0;
	for (i = 0; i < hf->rt_total; i++)
		hf->rt_up += rt_socket_up(rt, i) != 0;
}

static int api_admin_health(void *ctx, json_t **detail)
{
	struct api *a = ctx;
	struct api_health_facts hf;

	api_health_facts(a, &hf);
	/* the reason stays in the log: /healthz needs no token */
	*detail = json_pack("{s:s, s:s, s:s}", "loop", "ok",
			    "storage", hf.storage_ok ? "ok" : !a->d.health->store_ready ?
			    "storage not reached since start: serving memory only (see the log)" :
			    "storage does not answer (see the log)",
			    "runtime", hf.rt_up ? "ok" : "no runtime socket answers");
	if (*detail)
		json_object_set_new(*detail, "runtime_sockets_up",
				    json_sprintf("%zu/%zu", hf.rt_up, hf.rt_total));
	return hf.storage_ok && hf.rt_up > 0;
}

static const struct admin_ops api_admin_ops = {
	.issue = api_admin_issue,
	.sanity_test = api_admin_sanity,
	.renew_all = api_admin_renew_all,
	.cert_get_async = api_admin_cert_get_async,
	.cert_list_async = api_admin_cert_list_async,
	.cert_delete = api_admin_cert_delete,
	.metrics = api_admin_metrics,
	.health = api_admin_health,
};

/* A new HAProxy engine-id in SPOE HELLO: HAProxy restarted or reloaded. */
static void api_on_engine(void *ctx, const char *engine_id, int is_new)
{
	struct api *a = ctx;
	struct rt *rt = certstore_runtime(a->d.cs);
	size_t i;

	if (!is_new)
		return;
	log_info("spoe: new HAProxy engine-id %s, re-syncing certificates", engine_id);
	for (i = 0; i < rt_count(rt); i++)
		certstore_sync_haproxy(a->d.cs, i);
}

struct api *api_new(struct ev_loop *loop, const struct api_deps *deps, char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	struct spoa_server_conf sc = {
		.listen = deps->cfg->spoa_listen,
		.socket_mode = deps->cfg->spoa_socket_mode ?
			       (int)strtol(deps->cfg->spoa_socket_mode, NULL, 8) : 0,
		.socket_group = deps->cfg->spoa_socket_group,
		.handlers = api_spoa_handlers,
		.ctx = a,
		.on_engine = api_on_engine,
		/* under the examples' "timeout processing 500ms" */
		.defer_timeout = 0.4,
	};
	struct admin_conf ac = {
		.listen = deps->cfg->admin_listen,
		.addr = &deps->cfg->admin_addr,
		.token = deps->cfg->admin_token,
	};

	if (!a) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	a->loop = loop;
	a->d = *deps;
	a->hold = hold_new(loop, cb_api_hold_release, a, API_HOLD_PER_HOST, API_HOLD_MAX);
	a->budget = clientbudget_new(API_CLIENT_NETS_MAX);
	if (!a->hold || !a->budget) {
		snprintf(err, errlen, "out of memory");
		api_free(a);
		a = NULL;
		goto out;
	}
	a->spoa = spoa_server_new(loop, &sc, err, errlen);
	if (a->spoa)
		a->admin = admin_new(loop, &ac, &api_admin_ops, a, err, errlen);
	if (!a->admin) {
		api_free(a);
		a = NULL;
	}
out:
	return a;
}

void api_set_token(struct api *a, const char *token)
{
	admin_set_token(a->admin, token);
}

void api_free(struct api *a)
{
	if (!a)
		return;
	admin_free(a->admin);
	/* held ACKs go out with what they have while the server exists */
	hold_free(a->hold);
	clientbudget_free(a->budget);
	spoa_server_free(a->spoa);
	free(a);
}
