/* The manager's faces: SPOE message handlers (the hot path), the admin API
 * operations, Prometheus metrics and health. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "acme/acme.h"
#include "acme/crypto.h"
#include "acme/http.h"
#include "admin/admin.h"
#include "core/config.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "core/mgr_int.h"
#include "runtime/runtime.h"
#include "spoa/spoa.h"
#include "storage/storage.h"

/* ---- SPOE ---------------------------------------------------------------- */

static const struct spop_data *mgr_arg_str(const struct spop_arg *args, size_t nargs, const char *name)
{
	size_t i, n = strlen(name);

	for (i = 0; i < nargs; i++)
		if (args[i].name_len == n && memcmp(args[i].name, name, n) == 0 &&
		    (args[i].val.type == SPOP_T_STR || args[i].val.type == SPOP_T_BIN))
			return &args[i].val;
	return NULL;
}

/* acme-sni: answers from memory (certificates, jobs, allow-list, backoff);
 * issuance starts in the background. */
static void mgr_spoe_sni(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *reply)
{
	struct mgr *m = ctx;
	const struct spop_data *d = mgr_arg_str(args, nargs, "sni");
	char raw[MGR_HOST_MAX], host[MGR_HOST_MAX];

	m->cnt.sni_msgs++;
	spoa_reply_set_bool(reply, SPOP_SCOPE_SESS, "seen", 1);
	if (!d || d->u.s.len == 0 || d->u.s.len >= sizeof(raw))
		return;
	memcpy(raw, d->u.s.ptr, d->u.s.len);
	raw[d->u.s.len] = '\0';
	if (host_normalize(raw, host, sizeof(host), 0) == -1) {
		m->cnt.refused_name++;
		return;
	}
	if (mgr_cert_get(m, host) || hmap_get(&m->jobs, host))
		return;
	if (!config_domain_allowed(m->cfg, host)) {
		m->cnt.refused_name++;
		log_debug("host=%s not allowed for on-demand issuance", host);
		return;
	}
	if (mgr_backoff_active(m, host, NULL)) {
		m->cnt.refused_backoff++;
		return;
	}
	log_info("host=%s on-demand issuance requested by SNI", host);
	mgr_issue(m, host, 0, 0, NULL);
}

static void mgr_spoe_http01(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *reply)
{
	struct mgr *m = ctx;
	const struct spop_data *d = mgr_arg_str(args, nargs, "token");
	char token[257];
	struct spoa_deferred *def;
	const char *ka;

	m->cnt.http01_msgs++;
	if (!d || d->u.s.len == 0 || d->u.s.len >= sizeof(token))
		return;
	memcpy(token, d->u.s.ptr, d->u.s.len);
	token[d->u.s.len] = '\0';
	if (!mgr_token_valid(token))
		return;
	ka = mgr_challenge_local(m, token);
	if (ka) {
		m->cnt.http01_hits++;
		spoa_reply_set_str(reply, SPOP_SCOPE_TXN, "keyauth", ka, strlen(ka));
		return;
	}
	/* another node sharing the store may have made it a moment ago */
	def = spoa_reply_defer(reply);
	if (!def) {
		m->cnt.http01_lookup_busy++;
		return;
	}
	if (mgr_challenge_lookup_shared(m, token, def) == -1) {
		m->cnt.http01_lookup_busy++;
		spoa_deferred_done(def);
		return;
	}
	m->cnt.http01_deferred++;
}

static const struct spoa_handler mgr_spoa_handler_table[] = {
	{ .message = "acme-sni", .fn = mgr_spoe_sni },
	/* the same, from a TCP frontend peeking at the ClientHello (req.ssl_sni) */
	{ .message = "acme-sni-peek", .fn = mgr_spoe_sni },
	{ .message = "acme-http01", .fn = mgr_spoe_http01 },
	{ .message = NULL },
};
const struct spoa_handler *const mgr_spoa_handlers = mgr_spoa_handler_table;

/* ---- admin --------------------------------------------------------------- */

static json_t *mgr_cert_json(const struct mgr_cert *c)
{
	time_t now = time(NULL);

	return json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:s}",
			 "host", c->host,
			 "not_before", c->info.not_before_str,
			 "not_after", c->info.not_after_str,
			 "valid", now >= c->info.not_before && now < c->info.not_after,
			 "serial_number", c->info.serial_hex,
			 "digest", c->info.digest_sha1,
			 "issuer_cn", c->info.issuer_cn,
			 "pubkey_type", c->info.pubkey_type);
}

static void mgr_admin_issue(void *ctx, const char *raw, struct admin_req *req)
{
	struct mgr *m = ctx;
	char host[MGR_HOST_MAX], msg[512];

	if (host_normalize(raw, host, sizeof(host), 0) == -1) {
		snprintf(msg, sizeof(msg), "host %s is not a valid host name", raw);
		admin_reply_message(req, 400, msg);
		return;
	}
	if (!config_domain_allowed(m->cfg, host)) {
		snprintf(msg, sizeof(msg), "host %s is not allowed: not in domains", host);
		admin_reply_message(req, 400, msg);
		return;
	}
	if (mgr_issue(m, host, mgr_cert_get(m, host) != NULL, 1, req) == -1)
		admin_reply_message(req, 500, "out of memory");
}

struct mgr_sanity {
	struct mgr *m;
	struct admin_req *req;
	char host[MGR_HOST_MAX];
	char token[64];
	char keyauth[128];
};

static void mgr_sanity_done(void *arg, const struct http_response *res)
{
	struct mgr_sanity *s = arg;
	char msg[1024];

	mgr_challenge_forget(s->m, s->token);
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

static void mgr_admin_sanity(void *ctx, const char *raw, struct admin_req *req)
{
	struct mgr *m = ctx;
	struct mgr_sanity *s;
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
	s->m = m;
	s->req = req;
	snprintf(s->token, sizeof(s->token), "%s", tok);
	snprintf(s->keyauth, sizeof(s->keyauth), "%s.acme-spoa-sanity-check", tok);
	free(tok);
	mgr_challenge_store(m, s->token, s->keyauth, 120);
	snprintf(url, sizeof(url), "http://%s/.well-known/acme-challenge/%s", s->host, s->token);
	if (http_request(m->http, "GET", url, NULL, NULL, 0, 10000, mgr_sanity_done, s) == -1) {
		mgr_challenge_forget(m, s->token);
		admin_reply_message(req, 500, "sanity request not started");
		free(s);
	}
}

static void mgr_admin_renew_all(void *ctx)
{
	struct mgr *m = ctx;

	mgr_renew_pass(m, 0);
	mgr_renew_schedule(m);
}

struct mgr_list {
	json_t *arr;
	int invalid_only;
	time_t now;
};

static void mgr_list_cb(void *arg, const char *host, void *val)
{
	struct mgr_list *l = arg;
	struct mgr_cert *c = val;

	if (l->invalid_only && l->now >= c->info.not_before && l->now < c->info.not_after)
		return;
	json_array_append_new(l->arr, mgr_cert_json(c));
}

static json_t *mgr_admin_cert_list(void *ctx, int invalid_only)
{
	struct mgr *m = ctx;
	struct mgr_list l = { json_array(), invalid_only, time(NULL) };

	if (!l.arr)
		return NULL;
	hmap_foreach(&m->certs, mgr_list_cb, &l);
	return l.arr;
}

static json_t *mgr_admin_cert_get(void *ctx, const char *raw)
{
	struct mgr *m = ctx;
	char host[MGR_HOST_MAX];
	struct mgr_cert *c;

	if (host_normalize(raw, host, sizeof(host), 0) == -1)
		return NULL;
	c = mgr_cert_get(m, host);
	return c ? mgr_cert_json(c) : NULL;
}

struct mgr_del {
	struct mgr *m;
	struct admin_req *req;
	char host[MGR_HOST_MAX];
};

static void cb_mgr_del(void *arg, struct storage_res *res)
{
	struct mgr_del *d = arg;
	struct mgr *m = d->m;
	char key[STORAGE_KEY_MAX], msg[1024];

	mgr_storage_result(m, res);
	if (res->rc == -1) {
		snprintf(msg, sizeof(msg), "cannot delete certificate for host %s: %s", d->host,
			 res->err);
		admin_reply_message(d->req, 500, msg);
		free(d);
		return;
	}
	snprintf(key, sizeof(key), "renewals/%s", d->host);
	storage_del(m->st, key, NULL, NULL);
	mgr_cert_remove(m, d->host);
	/* the other nodes of a fleet drop it too */
	mgr_announce(m, d->host, NULL);
	log_info("host=%s certificate deleted", d->host);
	snprintf(msg, sizeof(msg), "certificate for host %s is deleted", d->host);
	admin_reply_message(d->req, 200, msg);
	free(d);
}

static void mgr_del_finish(struct mgr_del *d)
{
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "certs/%s", d->host);
	if (!storage_del(d->m->st, key, cb_mgr_del, d)) {
		admin_reply_message(d->req, 500, "out of memory");
		free(d);
	}
}

static void mgr_revoke_done(void *arg, int ok, const char *err)
{
	struct mgr_del *d = arg;
	char msg[1024];

	if (!ok) {
		snprintf(msg, sizeof(msg), "revocation of the certificate for host %s failed: %s",
			 d->host, err ? err : "unknown error");
		admin_reply_message(d->req, 500, msg);
		free(d);
		return;
	}
	log_info("host=%s certificate revoked", d->host);
	mgr_del_finish(d);
}

static void mgr_admin_cert_delete(void *ctx, const char *raw, int revoke, struct admin_req *req)
{
	struct mgr *m = ctx;
	struct mgr_del *d = calloc(1, sizeof(*d));
	struct mgr_cert *c;

	if (!d) {
		admin_reply_message(req, 500, "out of memory");
		return;
	}
	d->m = m;
	d->req = req;
	if (host_normalize(raw, d->host, sizeof(d->host), 0) == -1 ||
	    !(c = mgr_cert_get(m, d->host))) {
		admin_reply_message(req, 404, "Not found");
		free(d);
		return;
	}
	if (revoke) {
		if (acme_revoke(m->acme, c->pem, mgr_revoke_done, d) == -1) {
			admin_reply_message(req, 500, "revocation not started");
			free(d);
		}
		return;
	}
	mgr_del_finish(d);
}

struct mgr_days {
	time_t now;
	uint64_t b[6];		/* expired, <1, <7, <14, <30, >=30 days */
};

static void mgr_days_cb(void *arg, const char *host, void *val)
{
	struct mgr_days *d = arg;
	const struct mgr_cert *c = val;
	double days = (double)(c->info.not_after - d->now) / 86400.0;

	d->b[days < 0 ? 0 : days < 1 ? 1 : days < 7 ? 2 : days < 14 ? 3 : days < 30 ? 4 : 5]++;
}

static void mgr_counter(struct metrics_buf *b, const char *name, const char *help, const char *labels,
			uint64_t v)
{
	metrics_header(b, name, "counter", help);
	metrics_value(b, name, labels, (double)v);
}

static void mgr_admin_metrics(void *ctx, struct metrics_buf *b)
{
	static const char *const days_names[6] = { "expired", "1", "7", "14", "30", "+Inf" };
	struct mgr *m = ctx;
	struct mgr_counters *k = &m->cnt;
	struct mgr_days d = { .now = time(NULL) };
	struct spoa_stats ss;
	struct rt_stats rs;
	double bounds[SPOA_LAT_BUCKETS - 1];
	uint64_t cum[SPOA_LAT_BUCKETS];
	char lbl[64];
	size_t i;

	mgr_counter(b, "acme_spoa_orders_started_total", "ACME orders started.", NULL, k->orders_started);
	mgr_counter(b, "acme_spoa_orders_succeeded_total", "ACME orders that produced a certificate.", NULL, k->orders_ok);
	metrics_header(b, "acme_spoa_orders_failed_total", "counter", "ACME orders that failed, by reason.");
	metrics_value(b, "acme_spoa_orders_failed_total", "reason=\"ca\"", (double)k->fail_ca);
	metrics_value(b, "acme_spoa_orders_failed_total", "reason=\"rate_limited\"", (double)k->fail_rate_limited);
	metrics_value(b, "acme_spoa_orders_failed_total", "reason=\"transport\"", (double)k->fail_transport);
	metrics_value(b, "acme_spoa_orders_failed_total", "reason=\"storage\"", (double)k->fail_storage);
	mgr_counter(b, "acme_spoa_renewals_total", "Certificates renewed.", NULL, k->renewals);
	mgr_counter(b, "acme_spoa_renewal_failures_total", "Renewals that failed.", NULL, k->renewals_failed);
	metrics_header(b, "acme_spoa_on_demand_refused_total", "counter", "On-demand requests not issued, by reason.");
	metrics_value(b, "acme_spoa_on_demand_refused_total", "reason=\"name\"", (double)k->refused_name);
	metrics_value(b, "acme_spoa_on_demand_refused_total", "reason=\"backoff\"", (double)k->refused_backoff);
	metrics_value(b, "acme_spoa_on_demand_refused_total", "reason=\"ask_url\"", (double)k->refused_ask);
	metrics_header(b, "acme_spoa_orders_in_flight", "gauge", "ACME orders running now.");
	metrics_value(b, "acme_spoa_orders_in_flight", NULL, (double)m->orders_running);

	spoa_server_stats(m->spoa, &ss);
	metrics_header(b, "acme_spoa_spoe_messages_total", "counter", "SPOE messages handled, by message.");
	metrics_value(b, "acme_spoa_spoe_messages_total", "message=\"acme-sni\"", (double)k->sni_msgs);
	metrics_value(b, "acme_spoa_spoe_messages_total", "message=\"acme-http01\"", (double)k->http01_msgs);
	mgr_counter(b, "acme_spoa_http01_answered_total", "http-01 requests answered with a key authorization.", NULL, k->http01_hits);
	mgr_counter(b, "acme_spoa_http01_deferred_total", "http-01 requests whose answer was looked up in shared storage.", NULL, k->http01_deferred);
	mgr_counter(b, "acme_spoa_http01_lookup_busy_total", "http-01 requests answered without a look-up: too many in flight.", NULL, k->http01_lookup_busy);
	mgr_counter(b, "acme_spoa_feed_reads_total", "Reads of the fleet's change feed.", NULL, k->feed_reads);
	mgr_counter(b, "acme_spoa_feed_changes_total", "Certificate changes learnt from the change feed.", NULL, k->feed_changes);
	mgr_counter(b, "acme_spoa_spoe_frames_total", "SPOE NOTIFY frames received.", NULL, ss.notify_frames);
	mgr_counter(b, "acme_spoa_spoe_malformed_frames_total", "SPOP frames refused as malformed.", NULL, ss.malformed);
	mgr_counter(b, "acme_spoa_spoe_deferred_total", "NOTIFY frames whose ACK was deferred.", NULL, ss.deferred_total);
	mgr_counter(b, "acme_spoa_spoe_deferred_timeouts_total", "Deferred ACKs sent when the defer timeout passed.", NULL, ss.deferred_timeouts);
	mgr_counter(b, "acme_spoa_spoe_deferred_refused_total", "Deferrals refused by a bound (answered at once).", NULL, ss.deferred_refused);
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

	rt_stats(m->rt, &rs);
	mgr_counter(b, "acme_spoa_runtime_pushes_total", "Certificate pushes into HAProxy that succeeded.", NULL, rs.pushes_ok);
	mgr_counter(b, "acme_spoa_runtime_push_errors_total", "Certificate pushes into HAProxy that failed.", NULL, rs.pushes_failed);
	mgr_counter(b, "acme_spoa_runtime_reloads_seen_total", "HAProxy restarts or reloads seen.", NULL, rs.reloads_seen);
	mgr_counter(b, "acme_spoa_storage_errors_total", "Storage operations that failed.", NULL, k->storage_errors);
	metrics_header(b, "acme_spoa_storage_inflight", "gauge", "Storage operations started and not yet answered.");
	metrics_value(b, "acme_spoa_storage_inflight", NULL, (double)storage_inflight(m->st));
	metrics_header(b, "acme_spoa_orders_queued", "gauge", "Issuances waiting for a free slot.");
	metrics_value(b, "acme_spoa_orders_queued", NULL, (double)m->queued);

	hmap_foreach(&m->certs, mgr_days_cb, &d);
	metrics_header(b, "acme_spoa_certificates", "gauge", "Certificates held, by days left before expiry (upper bound).");
	for (i = 0; i < 6; i++) {
		metrics_label(lbl, sizeof(lbl), "days_left", days_names[i]);
		metrics_value(b, "acme_spoa_certificates", lbl, (double)d.b[i]);
	}
}

#define MGR_HEALTH_PING_S 5.0

static void cb_mgr_ping(void *arg, struct storage_res *res)
{
	mgr_storage_result(arg, res);
}

/* Answers from what is known now; asks storage again at most every few
 * seconds, so a probe never waits and never floods the store. */
static int mgr_admin_health(void *ctx, json_t **detail)
{
	struct mgr *m = ctx;
	size_t i, up = 0, n = rt_count(m->rt);
	ev_tstamp now = ev_now(m->loop);
	char err[256];
	int st_ok = m->storage_ok && storage_state(m->st, err, sizeof(err)) == 1;

	if (now - m->storage_pinged >= MGR_HEALTH_PING_S) {
		m->storage_pinged = now;
		storage_ping(m->st, cb_mgr_ping, m);
	}
	for (i = 0; i < n; i++)
		up += rt_socket_up(m->rt, i) != 0;
	/* the reason stays in the log: /healthz needs no token */
	*detail = json_pack("{s:s, s:s, s:s}", "loop", "ok",
			    "storage", st_ok ? "ok" : "storage does not answer (see the log)",
			    "runtime", up ? "ok" : "no runtime socket answers");
	if (*detail)
		json_object_set_new(*detail, "runtime_sockets_up",
				    json_sprintf("%zu/%zu", up, n));
	return st_ok && up > 0;
}

const struct admin_ops mgr_admin_ops = {
	.issue = mgr_admin_issue,
	.sanity_test = mgr_admin_sanity,
	.renew_all = mgr_admin_renew_all,
	.cert_list = mgr_admin_cert_list,
	.cert_get = mgr_admin_cert_get,
	.cert_delete = mgr_admin_cert_delete,
	.metrics = mgr_admin_metrics,
	.health = mgr_admin_health,
};
