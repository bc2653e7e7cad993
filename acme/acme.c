/* SPDX-License-Identifier: Apache-2.0 */
/* ACME client core: client lifetime, directory, nonce pool, signed POSTs with
 * badNonce retry, the account, and the small framework every operation (order,
 * renewalInfo, revoke) runs on. User callbacks run only from an operation's own
 * completion timer, never from inside an API call or a loop over shared state. */
#include "acme/acme_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "acme/jws.h"
#include "lib/log.h"

enum { ACME_DIR_NONE = 0, ACME_DIR_LOADING, ACME_DIR_LOADED };
enum { ACME_ACCT_NONE = 0, ACME_ACCT_LOADING, ACME_ACCT_READY };

static char *acme_strdup0(const char *s)
{
	return (s && *s) ? strdup(s) : NULL;
}

static void acme_secret_free(char *s)
{
	if (s)
		crypto_secret_free(s, strlen(s));
}

void acme_result_clear(struct acme_result *r)
{
	if (!r)
		return;
	acme_problem_clear(&r->problem);
	free(r->cert_pem);
	acme_secret_free(r->key_pem);
	free(r->order_url);
	memset(r, 0, sizeof(*r));
	r->problem.retry_after = -1;
}

/* ---- nonce pool ---- */

static void acme_nonce_push(struct acme_client *c, const char *nonce)
{
	char *n;

	if (!nonce || !*nonce || strlen(nonce) > 256)
		return;
	if (c->nnonces == ACME_NONCE_POOL) {
		/* Drop the oldest: newer nonces are less likely to have expired. */
		free(c->nonces[0]);
		memmove(c->nonces, c->nonces + 1, (ACME_NONCE_POOL - 1) * sizeof(char *));
		c->nnonces--;
	}
	n = strdup(nonce);
	if (n)
		c->nonces[c->nnonces++] = n;
}

static char *acme_nonce_pop(struct acme_client *c)
{
	return c->nnonces ? c->nonces[--c->nnonces] : NULL;
}

/* ---- operations ---- */

static void cb_acme_op_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct acme_op *op = w->data;
	void (*fn)(struct acme_op *op) = op->timer_fn;

	op->timer_fn = NULL;
	if (fn)
		fn(op);
}

void acme_op_init(struct acme_client *c, struct acme_op *op, enum acme_op_kind kind,
		  const struct acme_op_vt *vt, int need_account)
{
	op->c = c;
	op->loop = c->loop;
	op->kind = kind;
	op->vt = vt;
	op->need_account = need_account;
	ev_timer_init(&op->timer, cb_acme_op_timer, 0., 0.);
	op->timer.data = op;
	op->next = c->ops;
	if (c->ops)
		c->ops->prev = op;
	c->ops = op;
	if (kind != ACME_OP_ACCOUNT)
		c->nuser_ops++;
}

static void acme_waiter_remove(struct acme_client *c, struct acme_op *op)
{
	struct acme_op **pp;

	for (pp = &c->waiters; *pp; pp = &(*pp)->wnext) {
		if (*pp == op) {
			*pp = op->wnext;
			break;
		}
	}
	op->wnext = NULL;
	op->waiting = 0;
}

void acme_op_unlink(struct acme_op *op)
{
	struct acme_client *c = op->c;

	if (!c)
		return;
	if (op->waiting)
		acme_waiter_remove(c, op);
	if (op->prev)
		op->prev->next = op->next;
	else
		c->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
	if (op->kind != ACME_OP_ACCOUNT)
		c->nuser_ops--;
	if (c->acct_op == op)
		c->acct_op = NULL;
	op->c = NULL;
}

void acme_op_release(struct acme_op *op)
{
	ev_timer_stop(op->loop, &op->timer);
	crypto_key_generate_cancel(op);
	free(op->post_url);
	free(op->post_payload);
	op->post_url = op->post_payload = NULL;
}

void acme_op_later(struct acme_op *op, double delay, void (*fn)(struct acme_op *op))
{
	ev_timer_stop(op->loop, &op->timer);
	op->timer_fn = fn;
	ev_timer_set(&op->timer, delay < 0 ? 0. : delay, 0.);
	ev_timer_start(op->loop, &op->timer);
}

static void acme_op_do_complete(struct acme_op *op)
{
	op->vt->complete(op);
}

void acme_op_finish(struct acme_op *op)
{
	acme_op_later(op, 0., acme_op_do_complete);
}

/* ---- readiness: directory and account, shared by every op ---- */

static void acme_directory_start(struct acme_client *c);
static int acme_post_send(struct acme_op *op, char *err, size_t errlen);

/* Fails the waiters (only those needing the account when <acct_only>). */
static void acme_fail_waiters(struct acme_client *c, const struct acme_problem *prob, int acct_only)
{
	struct acme_op *list = c->waiters, *op, *next;

	c->waiters = NULL;
	for (op = list; op; op = next) {
		next = op->wnext;
		op->wnext = NULL;
		if (acct_only && !op->need_account) {
			op->wnext = c->waiters;
			c->waiters = op;
			continue;
		}
		op->waiting = 0;
		op->repost = 0;
		op->vt->resume(op, prob);
	}
}

/* Resumes every waiter whose needs are met and starts what the others wait for. */
static void acme_kick(struct acme_client *c)
{
	struct acme_op *list, *op, *next;
	int want_account = 0;

	if (c->dir_state == ACME_DIR_NONE && c->waiters) {
		acme_directory_start(c);
		return;
	}
	if (c->dir_state != ACME_DIR_LOADED)
		return;
	list = c->waiters;
	c->waiters = NULL;
	for (op = list; op; op = next) {
		next = op->wnext;
		op->wnext = NULL;
		if (op->need_account && c->acct_state != ACME_ACCT_READY) {
			op->wnext = c->waiters;
			c->waiters = op;
			want_account = 1;
			continue;
		}
		op->waiting = 0;
		if (op->repost) {
			char err[512];

			op->repost = 0;
			if (acme_post_send(op, err, sizeof(err)) < 0)
				op->post_cb(op, NULL, err);
			continue;
		}
		op->vt->resume(op, NULL);
	}
	if (want_account && c->acct_state == ACME_ACCT_NONE)
		acme_account_start(c);
}

void acme_op_wait_ready(struct acme_op *op)
{
	struct acme_client *c = op->c;

	op->waiting = 1;
	op->wnext = c->waiters;
	c->waiters = op;
	acme_kick(c);
}

static void cb_acme_directory(void *arg, const struct http_response *res)
{
	struct acme_client *c = arg;
	struct acme_problem prob = { .retry_after = -1 };
	char err[512];

	if (res->status != 200) {
		if (res->status == 0) {
			acme_problem_set(&prob, 0, "directory %s: %s", c->directory_url, res->error);
			prob.unreachable = 1;
		} else
			acme_problem_parse(res->status, res->body, res->body_len, res->retry_after, &prob);
		log_err("acme: directory %s unavailable: %s", c->directory_url, prob.detail);
		goto fail;
	}
	acme_dir_clear(&c->dir);
	if (acme_parse_directory(res->body, res->body_len, &c->dir, err, sizeof(err)) < 0) {
		acme_problem_set(&prob, 0, "directory %s: %s", c->directory_url, err);
		prob.unreachable = 1;
		log_err("acme: %s", prob.detail);
		goto fail;
	}
	c->dir_state = ACME_DIR_LOADED;
	log_info("acme: directory %s loaded (ari=%s profiles=%zu eab_required=%d)", c->directory_url,
		 c->dir.renewal_info ? "yes" : "no", c->dir.nprofiles, c->dir.eab_required);
	acme_kick(c);
	return;
fail:
	/* Retried by the next operation that needs it. */
	c->dir_state = ACME_DIR_NONE;
	acme_fail_waiters(c, &prob, 0);
	acme_problem_clear(&prob);
}

static void acme_directory_start(struct acme_client *c)
{
	struct acme_problem prob = { .retry_after = -1 };

	c->dir_state = ACME_DIR_LOADING;
	if (http_request(c->http, "GET", c->directory_url, NULL, NULL, 0, c->timeout_ms,
			 cb_acme_directory, c) == 0)
		return;
	c->dir_state = ACME_DIR_NONE;
	acme_problem_set(&prob, 0, "directory %s: cannot start request", c->directory_url);
	acme_fail_waiters(c, &prob, 0);
	acme_problem_clear(&prob);
}

/* ---- signed POST with nonce handling ---- */


static void cb_acme_post_response(void *arg, const struct http_response *res)
{
	struct acme_op *op = arg;
	struct acme_client *c = op->c;
	char err[512];

	op->inflight = 0;
	acme_nonce_push(c, res->replay_nonce);
	if (res->status == 400 && op->post_tries < ACME_MAX_BADNONCE_RETRIES) {
		struct acme_problem p = { .retry_after = -1 };
		int bad;

		acme_problem_parse(res->status, res->body, res->body_len, NULL, &p);
		bad = acme_problem_is(&p, "badNonce");
		acme_problem_clear(&p);
		if (bad) {
			op->post_tries++;
			log_debug("acme: badNonce on %s, retry %d", op->post_url, op->post_tries);
			if (acme_post_send(op, err, sizeof(err)) < 0)
				op->post_cb(op, NULL, err);
			return;
		}
	}
	if (res->status == 0) {
		snprintf(err, sizeof(err), "%s: %s", op->post_url, res->error);
		op->unreachable = 1;
		op->post_cb(op, NULL, err);
		return;
	}
	if (res->status >= 400 && op->kind != ACME_OP_ACCOUNT) {
		struct acme_problem p = { .retry_after = -1 };
		int gone;

		/* an account URL the CA does not know (imported from another
		 * tool, deactivated, or a CA that lost its state): the key's
		 * account is found (or made) with newAccount and this POST is
		 * sent again, once, under it */
		acme_problem_parse(res->status, res->body, res->body_len, NULL, &p);
		gone = acme_problem_is(&p, "accountDoesNotExist");
		acme_problem_clear(&p);
		if (gone && c->acct_state == ACME_ACCT_READY) {
			log_warn("acme: account %s unknown to the CA: looking it up again", c->kid);
			free(c->kid);
			c->kid = NULL;
			c->acct_state = ACME_ACCT_NONE;
		}
		if (gone && !op->acct_retried && op->need_account) {
			op->acct_retried = 1;
			op->repost = 1;
			acme_op_wait_ready(op);
			return;
		}
	}
	op->post_cb(op, res, NULL);
}

static void cb_acme_post_nonce(void *arg, const struct http_response *res)
{
	struct acme_op *op = arg;
	char err[512];

	op->inflight = 0;
	if ((res->status != 200 && res->status != 204) || !res->replay_nonce) {
		op->unreachable = 1;	/* no nonce: the CA is not serving */
		if (res->status == 0)
			snprintf(err, sizeof(err), "newNonce: %s", res->error);
		else
			snprintf(err, sizeof(err), "newNonce: HTTP %ld%s", res->status,
				 res->replay_nonce ? "" : " without Replay-Nonce");
		op->post_cb(op, NULL, err);
		return;
	}
	acme_nonce_push(op->c, res->replay_nonce);
	if (acme_post_send(op, err, sizeof(err)) < 0)
		op->post_cb(op, NULL, err);
}

static int acme_post_send(struct acme_op *op, char *err, size_t errlen)
{
	struct acme_client *c = op->c;
	const char *hdrs[2];
	char *nonce, *jws;
	int rc;

	nonce = acme_nonce_pop(c);
	if (!nonce) {
		char why[300];

		if (http_url_check(c->dir.new_nonce, why, sizeof(why)) == -1) {
			snprintf(err, errlen, "newNonce \"%.200s\": %s", c->dir.new_nonce ? c->dir.new_nonce : "", why);
			return -1;
		}
		if (http_request(c->http, "HEAD", c->dir.new_nonce, NULL, NULL, 0, c->timeout_ms,
				 cb_acme_post_nonce, op) < 0) {
			snprintf(err, errlen, "newNonce: cannot start request");
			return -1;
		}
		op->inflight = 1;
		return 0;
	}
	jws = jws_sign(c->account_key, op->post_url, nonce,
		       op->kind == ACME_OP_ACCOUNT ? NULL : c->kid, op->post_payload, err, errlen);
	free(nonce);
	if (!jws)
		return -1;
	hdrs[0] = "Content-Type: application/jose+json";
	hdrs[1] = op->post_pem ? "Accept: application/pem-certificate-chain" : "Accept: application/json";
	rc = http_request_hdr(c->http, "POST", op->post_url, hdrs, 2, jws, strlen(jws),
			      c->timeout_ms, cb_acme_post_response, op);
	free(jws);
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot start request", op->post_url);
		return -1;
	}
	op->inflight = 1;
	return 0;
}

int acme_op_post(struct acme_op *op, const char *url, const char *payload, int pem,
		 acme_post_cb *cb, char *err, size_t errlen)
{
	char why[300];

	/* a URL from the CA: https, or plain http to loopback only */
	if (http_url_check(url, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "refused the CA's URL \"%.200s\": %s", url, why);
		return -1;
	}
	free(op->post_url);
	free(op->post_payload);
	op->post_url = strdup(url);
	op->post_payload = payload ? strdup(payload) : NULL;
	if (!op->post_url || (payload && !op->post_payload)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	op->post_pem = pem;
	op->post_tries = 0;
	op->unreachable = 0;
	op->post_cb = cb;
	return acme_post_send(op, err, errlen);
}

/* ---- account ---- */

static void acme_account_done(struct acme_op *op, const struct acme_problem *prob)
{
	struct acme_client *c = op->c;

	acme_op_unlink(op);
	acme_op_release(op);
	free(op);
	if (prob) {
		struct acme_problem p = { .retry_after = -1 };

		c->acct_state = ACME_ACCT_NONE;
		log_err("acme: account at %s failed: %s%s%s", c->directory_url, prob->detail,
			prob->subproblems ? " " : "", prob->subproblems ? prob->subproblems : "");
		/* the orders waiting fail for the CA's reason, whatever the step */
		if (acme_problem_copy(&p, prob) == 0) {
			p.account = 1;
			acme_fail_waiters(c, &p, 1);
		} else {
			acme_fail_waiters(c, prob, 1);
		}
		acme_problem_clear(&p);
		return;
	}
	c->acct_state = ACME_ACCT_READY;
	acme_kick(c);
}

static void acme_account_fail(struct acme_op *op, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void acme_account_fail(struct acme_op *op, const char *fmt, ...)
{
	struct acme_problem p = { .retry_after = -1 };
	va_list ap;

	va_start(ap, fmt);
	acme_problem_vset(&p, 0, fmt, ap);
	va_end(ap);
	acme_account_done(op, &p);
	acme_problem_clear(&p);
}

static void cb_acme_account(struct acme_op *op, const struct http_response *res, const char *err)
{
	struct acme_client *c = op->c;
	struct acme_problem p = { .retry_after = -1 };
	json_t *root = NULL;
	const char *st;

	if (!res) {
		acme_account_fail(op, "newAccount: %s", err);
		return;
	}
	if (res->status != 200 && res->status != 201) {
		acme_problem_parse(res->status, res->body, res->body_len, res->retry_after, &p);
		acme_account_done(op, &p);
		acme_problem_clear(&p);
		return;
	}
	if (!res->location || strncmp(res->location, "http", 4)) {
		acme_account_fail(op, "newAccount: CA answered %s without an account URL (Location)",
				  res->status == 201 ? "201" : "200");
		return;
	}
	root = json_loadb(res->body, res->body_len, 0, NULL);
	st = root ? json_string_value(json_object_get(root, "status")) : NULL;
	if (st && strcmp(st, "valid")) {
		json_decref(root);
		acme_account_fail(op, "newAccount: account status is %s", st);
		return;
	}
	json_decref(root);
	free(c->kid);
	c->kid = strdup(res->location);
	if (!c->kid) {
		acme_account_fail(op, "%s", "out of memory");
		return;
	}
	log_info("acme: account %s %s", c->kid, res->status == 201 ? "created" : "found");
	acme_account_done(op, NULL);
}

static void acme_account_new(struct acme_op *op)
{
	struct acme_client *c = op->c;
	json_t *payload = json_object(), *eab = NULL;
	char err[512], *text = NULL;

	if (!payload)
		goto oom;
	if (c->tos_accepted)
		json_object_set_new(payload, "termsOfServiceAgreed", json_true());
	if (c->email) {
		char mail[512];

		snprintf(mail, sizeof(mail), "mailto:%s", c->email);
		json_object_set_new(payload, "contact", json_pack("[s]", mail));
	}
	if (c->eab_kid && c->eab_hmac_key) {
		eab = jws_eab(c->account_key, c->eab_kid, c->eab_hmac_key, c->dir.new_account, err, sizeof(err));
		if (!eab) {
			json_decref(payload);
			acme_account_fail(op, "external account binding: %s", err);
			return;
		}
		json_object_set_new(payload, "externalAccountBinding", eab);
	}
	text = json_dumps(payload, JSON_COMPACT);
	json_decref(payload);
	if (!text)
		goto oom;
	if (acme_op_post(op, c->dir.new_account, text, 0, cb_acme_account, err, sizeof(err)) < 0) {
		free(text);
		acme_account_fail(op, "newAccount: %s", err);
		return;
	}
	free(text);
	return;
oom:
	json_decref(payload);
	acme_account_fail(op, "%s", "out of memory");
}

static void cb_acme_zerossl_eab(void *arg, const struct http_response *res)
{
	struct acme_op *op = arg;
	struct acme_client *c = op->c;
	char err[512], *kid = NULL, *hmac = NULL;

	op->inflight = 0;
	if (res->status == 0) {
		acme_account_fail(op, "ZeroSSL EAB request failed: %s", res->error);
		return;
	}
	if (acme_parse_zerossl_eab(res->body, res->body_len, &kid, &hmac, err, sizeof(err)) < 0) {
		acme_account_fail(op, "%s", err);
		return;
	}
	free(c->eab_kid);
	acme_secret_free(c->eab_hmac_key);
	c->eab_kid = kid;
	c->eab_hmac_key = hmac;
	log_info("acme: obtained ZeroSSL EAB credentials for the account email");
	acme_account_new(op);
}

static void acme_account_resume(struct acme_op *op, const struct acme_problem *prob)
{
	/* The account op is never queued as a waiter. */
}

static void acme_account_complete(struct acme_op *op)
{
}

static void acme_account_destroy(struct acme_op *op)
{
	acme_op_release(op);
	free(op);
}

static const struct acme_op_vt acme_account_vt = {
	.resume = acme_account_resume,
	.complete = acme_account_complete,
	.destroy = acme_account_destroy,
};

void acme_account_start(struct acme_client *c)
{
	struct acme_op *op;

	op = calloc(1, sizeof(*op));
	if (!op) {
		struct acme_problem p = { .retry_after = -1 };

		acme_problem_set(&p, 0, "out of memory");
		acme_fail_waiters(c, &p, 1);
		acme_problem_clear(&p);
		return;
	}
	acme_op_init(c, op, ACME_OP_ACCOUNT, &acme_account_vt, 0);
	c->acct_op = op;
	c->acct_state = ACME_ACCT_LOADING;
	if (c->dir.tos && !c->tos_accepted) {
		acme_account_fail(op, "CA requires accepting its terms of service (%s): set tos_accepted",
				  c->dir.tos);
		return;
	}
	if (c->dir.eab_required && !(c->eab_kid && c->eab_hmac_key)) {
		char *form, *esc;
		int rc;

		if (!acme_is_zerossl(c->directory_url)) {
			acme_account_fail(op, "CA %s requires external account binding: set eab_kid and eab_hmac_key",
					  c->directory_url);
			return;
		}
		if (!c->email) {
			acme_account_fail(op, "%s", "ZeroSSL needs an account email to obtain EAB credentials");
			return;
		}
		esc = curl_easy_escape(NULL, c->email, 0);
		if (!esc || asprintf(&form, "email=%s", esc) < 0) {
			curl_free(esc);
			acme_account_fail(op, "%s", "out of memory");
			return;
		}
		curl_free(esc);
		rc = http_request(c->http, "POST", ACME_ZEROSSL_EAB_URL, "application/x-www-form-urlencoded",
				  form, strlen(form), c->timeout_ms, cb_acme_zerossl_eab, op);
		free(form);
		if (rc < 0) {
			acme_account_fail(op, "%s", "ZeroSSL EAB request: cannot start");
			return;
		}
		op->inflight = 1;
		return;
	}
	acme_account_new(op);
}

/* ---- client ---- */

void acme_client_set_dns(struct acme_client *c, const struct acme_dns_hooks *hooks, void *arg)
{
	c->dns = *hooks;
	c->dns_arg = arg;
}

char *acme_dns01_txt(const char *key_auth)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!key_auth || !EVP_Digest(key_auth, strlen(key_auth), md, &mdlen, EVP_sha256(), NULL))
		return NULL;
	return crypto_b64url(md, mdlen);
}

struct acme_client *acme_client_new(struct ev_loop *loop, const struct acme_conf *conf,
				    EVP_PKEY *account_key, const struct acme_hooks *hooks,
				    void *hooks_arg, char *err, size_t errlen)
{
	struct acme_client *c = NULL;

	if (!loop || !conf || !conf->directory_url ||
	    (strncmp(conf->directory_url, "https://", 8) && strncmp(conf->directory_url, "http://", 7))) {
		snprintf(err, errlen, "acme: directory URL %s is not an http(s) URL",
			 conf && conf->directory_url ? conf->directory_url : "(none)");
		goto fail;
	}
	if (account_key && !jws_alg(account_key)) {
		snprintf(err, errlen, "acme: unsupported account key type");
		goto fail;
	}
	if ((conf->eab_kid && *conf->eab_kid) != (conf->eab_hmac_key && *conf->eab_hmac_key)) {
		snprintf(err, errlen, "acme: eab_kid and eab_hmac_key must be set together");
		goto fail;
	}
	if (conf->cert_key_type < 0 || conf->cert_key_type >= CRYPTO_KEY__MAX) {
		snprintf(err, errlen, "acme: bad certificate key type");
		goto fail;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "acme: out of memory");
		goto fail;
	}
	c->loop = loop;
	c->account_key = account_key;
	account_key = NULL;
	c->http = http_client_new(loop, conf->ca_file, err, errlen);
	if (!c->http)
		goto fail;
	c->directory_url = strdup(conf->directory_url);
	c->email = acme_strdup0(conf->email);
	c->eab_kid = acme_strdup0(conf->eab_kid);
	c->eab_hmac_key = acme_strdup0(conf->eab_hmac_key);
	c->preferred_chain = acme_strdup0(conf->preferred_chain);
	c->profile = acme_strdup0(conf->profile);
	c->tos_accepted = conf->tos_accepted;
	c->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : ACME_HTTP_TIMEOUT_MS;
	/* static names: the client keeps pointers to its own literals */
	for (size_t i = 0; i < conf->nchallenges && c->nchall < 2; i++) {
		if (strcmp(conf->challenges[i], "http-01") == 0)
			c->chall[c->nchall++] = "http-01";
		else if (strcmp(conf->challenges[i], "tls-alpn-01") == 0)
			c->chall[c->nchall++] = "tls-alpn-01";
	}
	if (!c->nchall)
		c->chall[c->nchall++] = "http-01";
	c->cert_key_type = conf->cert_key_type;
	c->rsa_bits = conf->rsa_bits ? conf->rsa_bits : 2048;
	if (hooks)
		c->hooks = *hooks;
	c->hooks_arg = hooks_arg;
	if (!c->directory_url) {
		snprintf(err, errlen, "acme: out of memory");
		goto fail;
	}
	return c;
fail:
	EVP_PKEY_free(account_key);
	acme_client_free(c);
	return NULL;
}

int acme_client_set_account_key(struct acme_client *c, EVP_PKEY *account_key)
{
	if (!c || c->account_key || !account_key || !jws_alg(account_key)) {
		EVP_PKEY_free(account_key);
		return -1;
	}
	c->account_key = account_key;
	return 0;
}

int acme_client_set_account_url(struct acme_client *c, const char *url)
{
	char *kid;

	if (!c || !url || c->acct_state != ACME_ACCT_NONE || !(kid = strdup(url)))
		return -1;
	/* an account another client created (import): the CA knows it by this URL */
	free(c->kid);
	c->kid = kid;
	c->acct_state = ACME_ACCT_READY;
	return 0;
}

void acme_client_free(struct acme_client *c)
{
	struct acme_op *op;
	size_t i;

	if (!c)
		return;
	/* Cancels every request first, so no callback can reach a freed op. */
	http_client_free(c->http);
	c->http = NULL;
	while ((op = c->ops)) {
		acme_op_unlink(op);
		op->vt->destroy(op);
	}
	acme_dir_clear(&c->dir);
	for (i = 0; i < c->nnonces; i++)
		free(c->nonces[i]);
	free(c->kid);
	free(c->directory_url);
	free(c->email);
	free(c->eab_kid);
	acme_secret_free(c->eab_hmac_key);
	free(c->preferred_chain);
	free(c->profile);
	EVP_PKEY_free(c->account_key);
	free(c);
}

int acme_has_ari(const struct acme_client *c)
{
	return c && c->dir_state == ACME_DIR_LOADED && c->dir.renewal_info;
}

const char *acme_account_url(const struct acme_client *c)
{
	return c && c->acct_state == ACME_ACCT_READY ? c->kid : NULL;
}

size_t acme_client_pending(const struct acme_client *c)
{
	return c ? c->nuser_ops : 0;
}
