/* SPDX-License-Identifier: Apache-2.0 */
/* The CAs of "issuers" (issuers.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "acme/acme.h"
#include "acme/crypto.h"
#include "acme/http.h"
#include "core/config.h"
#include "core/health.h"
#include "core/issuers.h"
#include "core/ratelimit.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "storage/storage.h"

#define ISSUERS_CN_MAX		128
/* an "up" record read this soon after this node marked the CA down is the
 * one its own write replaces */
#define ISSUERS_MARK_GRACE_S	(2 * ISSUERS_POLL_S)

struct issuer {
	struct issuers *is;
	size_t idx;
	const struct config_issuer *conf;
	struct acme_client *acme;
	struct ratelimit *rl;
	struct http_client *probe_http;	/* the probe's own client: freed, it drops the probe */
	int down;
	time_t until;			/* down: when the probe runs */
	long failures;			/* CA failures in a row */
	ev_tstamp marked;		/* when this node last marked it down */
	ev_timer probe;
	struct storage_req *state_req, *cns_req;
	char cns[ISSUERS_CNS_MAX][ISSUERS_CN_MAX];
	size_t ncns;
	unsigned long orders_issued, orders_ca_error, orders_failed, fallbacks;
	int attached;			/* its account key is read from storage */
};

struct issuers {
	struct ev_loop *loop;
	const struct config *cfg;
	struct storage *st;
	struct health *health;
	struct issuer *v;
	size_t n;
	ev_timer poll;
};

/* ---- classification ------------------------------------------------------ */

int issuers_ca_fault(const struct acme_problem *p)
{
	static const char prefix[] = "urn:ietf:params:acme:error:";
	static const char *const ca[] = {
		"serverInternal", "rateLimited", "badNonce", "accountDoesNotExist",
		"externalAccountRequired", "userActionRequired", "agreementRequired",
		"alreadyReplaced", NULL
	};
	const char *t;
	size_t i;

	if (p->unreachable || p->account)
		return 1;
	if (p->status >= 500 || p->status == 429)
		return 1;
	if (!p->type || strncmp(p->type, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	t = p->type + sizeof(prefix) - 1;
	for (i = 0; ca[i]; i++)
		if (strcmp(t, ca[i]) == 0)
			return 1;
	return 0;
}

/* ---- the shared mark ------------------------------------------------------ */

static void cb_issuers_ignore(void *arg, struct storage_res *res)
{
	health_storage_result(((struct issuers *)arg)->health, res);
}

static void issuer_store_state(struct issuer *s, const char *why)
{
	char key[STORAGE_KEY_MAX], *text;
	json_t *j;

	snprintf(key, sizeof(key), "issuers/%s/state", s->conf->name);
	j = json_pack("{s:I, s:I, s:s}", "until", (json_int_t)(s->down ? s->until : 0),
		      "failures", (json_int_t)s->failures, "error", why ? why : "");
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (text)
		storage_put(s->is->st, key, text, strlen(text), 7 * 24 * 3600, cb_issuers_ignore, s->is);
	free(text);
}

static void issuer_probe_at(struct issuer *s)
{
	double in = difftime(s->until, time(NULL));

	ev_timer_stop(s->is->loop, &s->probe);
	ev_timer_set(&s->probe, in > 0 ? in : 0., 0.);
	ev_timer_start(s->is->loop, &s->probe);
}

static void issuer_mark_down(struct issuer *s, const char *why, long retry_after)
{
	long wait = ISSUERS_DOWN_MIN_S;

	s->failures++;
	for (long i = 1; i < s->failures && wait < ISSUERS_DOWN_MAX_S; i++)
		wait *= 2;
	if (wait > ISSUERS_DOWN_MAX_S)
		wait = ISSUERS_DOWN_MAX_S;
	if (retry_after > 24 * 3600)
		retry_after = 24 * 3600;
	if (retry_after > wait)
		wait = retry_after;
	s->down = 1;
	s->until = time(NULL) + wait;
	s->marked = ev_now(s->is->loop);
	issuer_probe_at(s);
	log_warn("issuer=%s down (%ld in a row), skipped by new orders for %lds: %s",
		 s->conf->name, s->failures, wait, why ? why : "");
	issuer_store_state(s, why);
}

static void issuer_mark_up(struct issuer *s, const char *how)
{
	if (!s->down)
		return;
	s->down = 0;
	ev_timer_stop(s->is->loop, &s->probe);
	log_info("issuer=%s up again (%s)", s->conf->name, how);
}

static void cb_issuer_probed(void *arg, const struct http_response *res)
{
	struct issuer *s = arg;
	char why[300];

	if (res->status == 200 && res->body_len > 0 && res->body[0] == '{') {
		issuer_mark_up(s, "its directory answers");
		issuer_store_state(s, NULL);
		return;
	}
	if (res->status == 0)
		snprintf(why, sizeof(why), "probe: %s", res->error ? res->error : "no answer");
	else
		snprintf(why, sizeof(why), "probe: directory answered HTTP %ld", res->status);
	issuer_mark_down(s, why, -1);
}

static void cb_issuer_probe(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct issuer *s = w->data;

	if (!s->down)
		return;
	if (http_request(s->probe_http, "GET", s->conf->api_uri, NULL, NULL, 0,
			 (long)s->conf->timeout * 1000, cb_issuer_probed, s) == -1)
		issuer_mark_down(s, "probe: request not started", -1);
}

/* Another node's mark (or this node's, read back). */
static void cb_issuer_state(void *arg, struct storage_res *res)
{
	struct issuer *s = arg;
	json_int_t until = 0, failures = 0;
	json_t *j;

	s->state_req = NULL;
	health_storage_result(s->is->health, res);
	if (res->rc != 0)
		return;
	j = json_loadb(res->val, res->len, 0, NULL);
	if (!j || json_unpack(j, "{s:I, s:I}", "until", &until, "failures", &failures) == -1) {
		json_decref(j);
		return;
	}
	json_decref(j);
	if (until > time(NULL)) {
		if (!s->down || until > s->until) {
			if (!s->down)
				log_warn("issuer=%s marked down by another node for %llds", s->conf->name,
					 (long long)(until - time(NULL)));
			s->down = 1;
			s->until = (time_t)until;
			s->failures = (long)failures;
			issuer_probe_at(s);
		}
	} else if (s->down && until == 0 &&
		   ev_now(s->is->loop) - s->marked > ISSUERS_MARK_GRACE_S) {
		s->failures = (long)failures;
		issuer_mark_up(s, "another node's probe");
	}
}

static void issuer_cns_learn(struct issuer *s, const char *cn)
{
	size_t i;

	if (!cn || !*cn || strlen(cn) >= ISSUERS_CN_MAX)
		return;
	for (i = 0; i < s->ncns; i++)
		if (strcmp(s->cns[i], cn) == 0)
			return;
	if (s->ncns == ISSUERS_CNS_MAX) {
		memmove(s->cns[0], s->cns[1], sizeof(s->cns[0]) * (ISSUERS_CNS_MAX - 1));
		s->ncns--;
	}
	snprintf(s->cns[s->ncns++], ISSUERS_CN_MAX, "%s", cn);
}

static void cb_issuer_cns(void *arg, struct storage_res *res)
{
	struct issuer *s = arg;
	json_t *j, *e;
	size_t i;

	s->cns_req = NULL;
	health_storage_result(s->is->health, res);
	if (res->rc != 0)
		return;
	j = json_loadb(res->val, res->len, 0, NULL);
	json_array_foreach(j, i, e)
		if (json_is_string(e))
			issuer_cns_learn(s, json_string_value(e));
	json_decref(j);
}

static void issuer_store_cns(struct issuer *s)
{
	char key[STORAGE_KEY_MAX], *text;
	json_t *j = json_array();
	size_t i;

	for (i = 0; j && i < s->ncns; i++)
		json_array_append_new(j, json_string(s->cns[i]));
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	snprintf(key, sizeof(key), "issuers/%s/cns", s->conf->name);
	if (text)
		storage_put(s->is->st, key, text, strlen(text), 0, cb_issuers_ignore, s->is);
	free(text);
}

static void issuer_poll(struct issuer *s)
{
	char key[STORAGE_KEY_MAX];

	if (!s->state_req && s->is->n > 1) {
		snprintf(key, sizeof(key), "issuers/%s/state", s->conf->name);
		s->state_req = storage_get(s->is->st, key, cb_issuer_state, s);
	}
	if (!s->cns_req) {
		snprintf(key, sizeof(key), "issuers/%s/cns", s->conf->name);
		s->cns_req = storage_get(s->is->st, key, cb_issuer_cns, s);
	}
}

static void cb_issuers_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct issuers *is = w->data;
	size_t i;

	for (i = 0; i < is->n; i++)
		issuer_poll(&is->v[i]);
}

/* ---- accounts -------------------------------------------------------------- */

/* One account per (CA, email): its key is "accounts/<digest>/key", the
 * digest keeping the email out of key names (the names of before issuers). */
int issuers_account_id(const char *api_uri, const char *email, char out[ISSUERS_ACCOUNT_ID_LEN + 1])
{
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int i, ok;

	ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	     EVP_DigestUpdate(ctx, api_uri, strlen(api_uri)) && EVP_DigestUpdate(ctx, "\n", 1) &&
	     EVP_DigestUpdate(ctx, email, strlen(email)) && EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	for (i = 0; i < ISSUERS_ACCOUNT_ID_LEN / 2; i++)
		sprintf(out + i * 2, "%02x", md[i]);
	return 0;
}

static EVP_PKEY *issuers_account_key(struct issuers *is, const struct config_issuer *c,
				     int *down, char *err, size_t errlen)
{
	char key[STORAGE_KEY_MAX], account_id[ISSUERS_ACCOUNT_ID_LEN + 1], *pem = NULL;
	EVP_PKEY *pk = NULL;
	struct storage_res res;
	size_t len = 0;
	int rc;

	if (issuers_account_id(c->api_uri, c->account_email, account_id) == -1) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(key, sizeof(key), "accounts/%s/key", account_id);
	/* at start before any server listens, or from the manager's attach
	 * timer: storage_wait runs the loop, so SPOE and the admin API are still
	 * served meanwhile */
	*down = 0;
	rc = storage_wait(is->st, storage_get(is->st, key, NULL, NULL), &res, err, errlen);
	if (rc == -1) {
		*down = 1;
		return NULL;
	}
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
	if (!pem || storage_wait(is->st, storage_put(is->st, key, pem, len, 0, NULL, NULL), &res,
				 err, errlen) == -1) {
		if (!pem)
			snprintf(err, errlen, "cannot encode the account key");
		else
			*down = 1;
		crypto_secret_free(pem, len);
		EVP_PKEY_free(pk);
		return NULL;
	}
	crypto_secret_free(pem, len);
	log_info("account: new ACME account key created for issuer=%s %s", c->name, c->api_uri);
	return pk;
}

/* ---- life ------------------------------------------------------------------ */

/* Start-up: what the fleet knows of issuer <s> (learnt CNs, down mark), so
 * renewals and the admin API name the CAs of stored certificates at once. */
static void issuer_load(struct issuer *s)
{
	static const char *const what[] = { "cns", "state" };
	struct storage_res res;
	char key[STORAGE_KEY_MAX], err[256];
	size_t i;

	for (i = 0; i < 2; i++) {
		snprintf(key, sizeof(key), "issuers/%s/%s", s->conf->name, what[i]);
		if (storage_wait(s->is->st, storage_get(s->is->st, key, NULL, NULL), &res, err,
				 sizeof(err)) != 0)
			continue;
		if (i == 0)
			cb_issuer_cns(s, &res);
		else
			cb_issuer_state(s, &res);
		storage_res_clear(&res);
	}
}

/* The account URL an import stored beside the key ("accounts/<id>/url"):
 * with it the client signs with that account at once, no newAccount. */
static void issuer_account_url(struct issuer *s)
{
	char key[STORAGE_KEY_MAX], id[ISSUERS_ACCOUNT_ID_LEN + 1], err[256];
	struct storage_res res;

	if (issuers_account_id(s->conf->api_uri, s->conf->account_email, id) == -1)
		return;
	snprintf(key, sizeof(key), "accounts/%s/url", id);
	if (storage_wait(s->is->st, storage_get(s->is->st, key, NULL, NULL), &res, err, sizeof(err)) != 0)
		return;
	if (res.len > 0 && res.len < 2048 && !memchr(res.val, '\n', res.len) &&
	    (!strncmp(res.val, "https://", 8) || !strncmp(res.val, "http://", 7)) &&
	    acme_client_set_account_url(s->acme, res.val) == 0)
		log_info("account: issuer=%s %s (imported with its key: no newAccount)", s->conf->name,
			 res.val);
	storage_res_clear(&res);
}

/* Issuer <s>'s account key from storage into its client, then what the fleet
 * knows of it. 0 done; -1 with <err>, <*down> set when storage did not answer. */
static int issuer_attach(struct issuer *s, int *down, char *err, size_t errlen)
{
	EVP_PKEY *account;

	*down = 0;
	if (s->attached)
		return 0;
	account = issuers_account_key(s->is, s->conf, down, err, errlen);
	if (!account)
		return -1;
	if (acme_client_set_account_key(s->acme, account) == -1) {
		snprintf(err, errlen, "the stored account key cannot sign");
		return -1;
	}
	issuer_account_url(s);
	issuer_load(s);
	s->attached = 1;
	return 0;
}

/* Issuer <s>'s client, probe and rate limits; its account comes from
 * storage (issuer_attach) when the store answers. */
static int issuer_open(struct issuers *is, struct issuer *s, const struct acme_hooks *hooks,
		       void *hooks_arg, const char *owner, char *err, size_t errlen)
{
	const struct config_issuer *c = s->conf;
	const struct config *cfg = is->cfg;
	struct acme_conf ac = {
		.directory_url = c->api_uri,
		.ca_file = c->api_ca_file,
		.email = c->account_email,
		.tos_accepted = c->tos_accepted,
		.eab_kid = c->eab_kid,
		.eab_hmac_key = c->eab_hmac_key,
		.preferred_chain = c->preferred_chain,
		.profile = c->profile,
		.cert_key_type = cfg->cert_type == CONFIG_CERT_ECC ? CRYPTO_KEY_EC_P256 : CRYPTO_KEY_RSA,
		.rsa_bits = cfg->rsa_key_size,
		.timeout_ms = (long)c->timeout * 1000,
	};
	const char *chall[CONFIG_CHALLENGE__MAX];
	size_t n;

	for (n = 0; n < c->nchallenges; n++)
		chall[n] = config_challenge_name(c->challenges[n]);
	ac.challenges = chall;
	ac.nchallenges = c->nchallenges;
	s->acme = acme_client_new(is->loop, &ac, NULL, hooks, hooks_arg, err, errlen);
	if (!s->acme)
		goto fail;
	s->probe_http = http_client_new(is->loop, c->api_ca_file, err, errlen);
	if (!s->probe_http)
		goto fail;
	s->rl = ratelimit_new(is->loop, c, is->st, owner);
	if (!s->rl) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return 0;
fail:
	n = strlen(err);
	snprintf(err + n, errlen - n, " (issuer %s)", c->name);
	return -1;
}

int issuers_attach(struct issuers *is, int *down, char *err, size_t errlen)
{
	size_t i, n;

	*down = 0;
	for (i = 0; i < is->n; i++)
		if (issuer_attach(&is->v[i], down, err, errlen) == -1) {
			n = strlen(err);
			snprintf(err + n, errlen - n, " (issuer %s)", is->v[i].conf->name);
			return -1;
		}
	return 0;
}

struct issuers *issuers_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
			    struct health *health, const struct acme_hooks *hooks, void *hooks_arg,
			    const char *owner, char *err, size_t errlen)
{
	struct issuers *is = calloc(1, sizeof(*is));
	size_t i;

	if (!is || !(is->v = calloc(cfg->nissuers, sizeof(*is->v)))) {
		free(is);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	is->loop = loop;
	is->cfg = cfg;
	is->st = st;
	is->health = health;
	is->n = cfg->nissuers;
	ev_timer_init(&is->poll, cb_issuers_poll, 0., ISSUERS_POLL_S);
	is->poll.data = is;
	for (i = 0; i < is->n; i++) {
		struct issuer *s = &is->v[i];

		s->is = is;
		s->idx = i;
		s->conf = &cfg->issuers[i];
		ev_timer_init(&s->probe, cb_issuer_probe, 0., 0.);
		s->probe.data = s;
	}
	for (i = 0; i < is->n; i++)
		if (issuer_open(is, &is->v[i], hooks, hooks_arg, owner, err, errlen) == -1) {
			issuers_free(is);
			return NULL;
		}
	return is;
}

void issuers_start(struct issuers *is)
{
	ev_timer_start(is->loop, &is->poll);
}

void issuers_close_clients(struct issuers *is)
{
	size_t i;

	if (!is)
		return;
	ev_timer_stop(is->loop, &is->poll);
	for (i = 0; i < is->n; i++) {
		struct issuer *s = &is->v[i];

		ev_timer_stop(is->loop, &s->probe);
		storage_cancel(s->state_req);
		storage_cancel(s->cns_req);
		s->state_req = s->cns_req = NULL;
		acme_client_free(s->acme);
		s->acme = NULL;
		http_client_free(s->probe_http);
		s->probe_http = NULL;
	}
}

void issuers_free(struct issuers *is)
{
	size_t i;

	if (!is)
		return;
	issuers_close_clients(is);
	for (i = 0; i < is->n; i++)
		ratelimit_free(is->v[i].rl);
	free(is->v);
	free(is);
}

void issuers_set_dns(struct issuers *is, const struct acme_dns_hooks *hooks, void *arg)
{
	size_t i;

	for (i = 0; i < is->n; i++)
		acme_client_set_dns(is->v[i].acme, hooks, arg);
}

size_t issuers_count(const struct issuers *is)
{
	return is->n;
}

const struct config_issuer *issuers_conf(const struct issuers *is, size_t i)
{
	return is->v[i].conf;
}

struct acme_client *issuers_acme(const struct issuers *is, size_t i)
{
	return is->v[i].acme;
}

struct ratelimit *issuers_ratelimit(const struct issuers *is, size_t i)
{
	return is->v[i].rl;
}

int issuers_up(const struct issuers *is, size_t i)
{
	return !is->v[i].down;
}

size_t issuers_plan(const struct issuers *is, int first, size_t *order)
{
	size_t i, n = 0, soonest = 0;

	if (first >= 0 && (size_t)first < is->n && !is->v[first].down)
		order[n++] = (size_t)first;
	for (i = 0; i < is->n; i++)
		if ((int)i != first && !is->v[i].down)
			order[n++] = i;
	if (n)
		return n;
	for (i = 1; i < is->n; i++)
		if (is->v[i].until < is->v[soonest].until)
			soonest = i;
	order[0] = soonest;
	return 1;
}

int issuers_for_cn(const struct issuers *is, const char *issuer_cn)
{
	size_t i, k;

	if (!issuer_cn || !*issuer_cn)
		return -1;
	for (i = 0; i < is->n; i++)
		for (k = 0; k < is->v[i].ncns; k++)
			if (strcmp(is->v[i].cns[k], issuer_cn) == 0)
				return (int)i;
	return -1;
}

struct acme_client *issuers_acme_for_cn(const struct issuers *is, const char *issuer_cn)
{
	int i = issuers_for_cn(is, issuer_cn);

	return is->v[i >= 0 ? i : 0].acme;
}

void issuers_order_failed(struct issuers *is, size_t i, int ca_fault, const char *why,
			  long retry_after)
{
	struct issuer *s = &is->v[i];

	if (!ca_fault) {
		s->orders_failed++;
		return;
	}
	s->orders_ca_error++;
	issuer_mark_down(s, why, retry_after);
}

void issuers_issued(struct issuers *is, size_t i, const char *issuer_cn, int fallback)
{
	struct issuer *s = &is->v[i];
	size_t before = s->ncns;
	int known = issuers_for_cn(is, issuer_cn) == (int)i;

	s->orders_issued++;
	if (fallback)
		s->fallbacks++;
	if (s->failures || s->down) {
		s->failures = 0;
		issuer_mark_up(s, "an order succeeded");
		issuer_store_state(s, NULL);
	}
	if (!known) {
		issuer_cns_learn(s, issuer_cn);
		if (s->ncns != before || before == ISSUERS_CNS_MAX)
			issuer_store_cns(s);
	}
}

void issuers_metrics(const struct issuers *is, struct metrics_buf *b)
{
	char lbl[128];
	size_t i;

	metrics_header(b, "acme_spoa_issuer_up", "gauge",
		       "1 when the CA is used for new orders, 0 while it is marked down, by issuer.");
	for (i = 0; i < is->n; i++) {
		metrics_label(lbl, sizeof(lbl), "issuer", is->v[i].conf->name);
		metrics_value(b, "acme_spoa_issuer_up", lbl, !is->v[i].down);
	}
	metrics_header(b, "acme_spoa_issuer_orders_total", "counter",
		       "ACME orders by issuer and result: issued, ca_error (the CA's fault: the "
		       "job falls through to the next issuer), failed (validation or local).");
	for (i = 0; i < is->n; i++) {
		static const char *const results[] = { "issued", "ca_error", "failed" };
		unsigned long v[] = { is->v[i].orders_issued, is->v[i].orders_ca_error,
				      is->v[i].orders_failed };

		for (size_t r = 0; r < 3; r++) {
			metrics_label(lbl, sizeof(lbl), "issuer", is->v[i].conf->name);
			metrics_label_add(lbl, sizeof(lbl), "result", results[r]);
			metrics_value(b, "acme_spoa_issuer_orders_total", lbl, (double)v[r]);
		}
	}
	metrics_header(b, "acme_spoa_issuer_fallbacks_total", "counter",
		       "Certificates issued by an issuer after the job's preferred one failed or "
		       "was down, by the issuer that issued.");
	for (i = 0; i < is->n; i++) {
		metrics_label(lbl, sizeof(lbl), "issuer", is->v[i].conf->name);
		metrics_value(b, "acme_spoa_issuer_fallbacks_total", lbl, (double)is->v[i].fallbacks);
	}
}
