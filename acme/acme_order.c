/* SPDX-License-Identifier: Apache-2.0 */
/* One certificate order as a state machine: newOrder -> authorizations (http-01,
 * or dns-01 for a wildcard order) -> finalize with a CSR -> poll -> download (alternate chains) -> done.
 * order_step() sends the request of the current state; cb_order_response() reads
 * the answer and moves on. The certificate key is generated off the loop while
 * the authorizations run. */
#include "acme/acme_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "acme/jws.h"
#include "lib/log.h"

#define ORDER_DEADLINE_S 300.
#define ORDER_POLL_FIRST_S 0.25
#define ORDER_POLL_MAX_S 10.
#define ORDER_RETRY_AFTER_MAX_S 60.

enum acme_order_state {
	ACME_ORDER_WAIT_READY = 0,
	ACME_ORDER_NEW,
	ACME_ORDER_AUTHZ,
	ACME_ORDER_CHALLENGE_STORE,
	ACME_ORDER_DNS_PRESENT,
	ACME_ORDER_CHALLENGE,
	ACME_ORDER_AUTHZ_POLL,
	ACME_ORDER_KEY_WAIT,
	ACME_ORDER_FINALIZE,
	ACME_ORDER_POLL,
	ACME_ORDER_CERT,
	ACME_ORDER_ALT_CERT,
	ACME_ORDER_DONE,
	ACME_ORDER__MAX
};

static const char *const acme_order_state_names[ACME_ORDER__MAX] = {
	"wait-ready", "new-order", "authz", "challenge-store", "dns-present", "challenge", "authz-poll", "key-wait",
	"finalize", "order-poll", "cert", "alt-cert", "done",
};

struct acme_order {
	struct acme_op op;           /* first: the op framework hands us this */
	enum acme_order_state state;
	char *host, *replaces;
	int send_replaces;
	void (*done)(void *arg, const char *host, const struct acme_result *res);
	void *arg;
	char *finalize_url, *cert_url;
	char **authz;
	size_t nauthz, authz_idx;
	char *chall_url;
	char **tokens;               /* challenge_set done for these: cleared at the end */
	size_t ntokens;
	struct acme_hooks hooks;     /* the client's, kept for order_free() */
	void *hooks_arg;
	int store_pending;           /* challenge_store() not answered yet */
	const char *chall_type;      /* of the authorization being answered */
	int alpn_stored;             /* alpn_store() called: alpn_clear() at the end */
	int dns;                     /* wildcard order: dns-01 for every authorization */
	char **dns_fqdns, **dns_values;	/* dns-01 presents started: cleaned up at the end */
	size_t ndns;
	struct acme_dns_hooks dns_hooks;	/* the client's, kept for order_free() */
	void *dns_arg;
	int present_pending;         /* dns present() not answered yet */
	EVP_PKEY *cert_key;
	int keygen_pending;
	char *keygen_err;
	double poll_delay;
	ev_tstamp deadline;
	char **alts;
	size_t nalts, alt_idx;
	struct acme_result result;
};

static void order_step(struct acme_order *o);
static void order_challenge_stored(void *ctx, int ok, const char *err);
static void order_dns_presented(void *ctx, int ok, const char *err);
static void order_alpn_store(struct acme_order *o, const struct acme_authz_obj *a, const char *ka);

static void order_free(struct acme_order *o)
{
	if (o->store_pending && o->hooks.challenge_store_cancel)
		o->hooks.challenge_store_cancel(o->hooks_arg, o);
	if (o->present_pending && o->dns_hooks.cancel)
		o->dns_hooks.cancel(o->dns_arg, o);
	acme_op_release(&o->op);
	acme_strv_free(o->dns_fqdns, o->ndns);
	acme_strv_free(o->dns_values, o->ndns);
	free(o->host);
	free(o->replaces);
	free(o->finalize_url);
	free(o->cert_url);
	acme_strv_free(o->authz, o->nauthz);
	free(o->chall_url);
	acme_strv_free(o->tokens, o->ntokens);
	EVP_PKEY_free(o->cert_key);
	free(o->keygen_err);
	acme_strv_free(o->alts, o->nalts);
	acme_result_clear(&o->result);
	free(o);
}

static void order_complete(struct acme_op *op)
{
	struct acme_order *o = (struct acme_order *)op;
	struct acme_client *c = op->c;
	size_t i;

	if (c && c->hooks.challenge_clear)
		for (i = 0; i < o->ntokens; i++)
			c->hooks.challenge_clear(c->hooks_arg, o->host, o->tokens[i]);
	if (c && o->alpn_stored && c->hooks.alpn_clear)
		c->hooks.alpn_clear(c->hooks_arg, o->host);
	if (c && c->dns.cleanup)
		for (i = 0; i < o->ndns; i++)
			c->dns.cleanup(c->dns_arg, o->host, o->dns_fqdns[i], o->dns_values[i]);
	acme_op_unlink(op);
	/* From here <c> may be freed by the callback: touch only <o>. */
	o->done(o->arg, o->host, &o->result);
	order_free(o);
}

static void order_destroy(struct acme_op *op)
{
	order_free((struct acme_order *)op);
}

static void order_fail_problem(struct acme_order *o, const struct acme_problem *p)
{
	o->state = ACME_ORDER_DONE;
	o->result.ok = 0;
	acme_problem_copy(&o->result.problem, p);
	if (o->op.unreachable)
		o->result.problem.unreachable = 1;
	if (!o->result.problem.detail)
		o->result.problem.detail = strdup("out of memory");
	log_warn("acme: host=%s order failed: %s%s%s%s%s", o->host,
		 p->type ? p->type : "", p->type ? ": " : "", p->detail ? p->detail : "",
		 p->subproblems ? " " : "", p->subproblems ? p->subproblems : "");
	acme_op_finish(&o->op);
}

static void order_fail(struct acme_order *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void order_fail(struct acme_order *o, const char *fmt, ...)
{
	struct acme_problem p = { .retry_after = -1 };
	va_list ap;

	va_start(ap, fmt);
	acme_problem_vset(&p, 0, fmt, ap);
	va_end(ap);
	order_fail_problem(o, &p);
	acme_problem_clear(&p);
}

static void order_fail_response(struct acme_order *o, const struct http_response *res, const char *what)
{
	struct acme_problem p = { .retry_after = -1 };
	char buf[1024];

	acme_problem_parse(res->status, res->body, res->body_len, res->retry_after, &p);
	snprintf(buf, sizeof(buf), "%s: %s", what, p.detail ? p.detail : "");
	free(p.detail);
	p.detail = strdup(buf);
	order_fail_problem(o, &p);
	acme_problem_clear(&p);
}

static void order_resume(struct acme_op *op, const struct acme_problem *prob)
{
	struct acme_order *o = (struct acme_order *)op;

	if (prob) {
		order_fail_problem(o, prob);
		return;
	}
	o->state = ACME_ORDER_NEW;
	order_step(o);
}

static const struct acme_op_vt acme_order_vt = {
	.resume = order_resume,
	.complete = order_complete,
	.destroy = order_destroy,
};

static void cb_order_keygen(void *arg, EVP_PKEY *key, const char *err)
{
	struct acme_order *o = arg;

	o->keygen_pending = 0;
	if (!key)
		o->keygen_err = strdup(err ? err : "key generation failed");
	o->cert_key = key;
	if (o->state == ACME_ORDER_KEY_WAIT)
		order_step(o);
}

static void cb_order_timer(struct acme_op *op)
{
	order_step((struct acme_order *)op);
}

/* Polls again after the CA's Retry-After or the next backoff step, within the
 * order's deadline. */
static void order_poll_later(struct acme_order *o, const struct http_response *res, const char *what)
{
	long ra = http_parse_retry_after(res ? res->retry_after : NULL, time(NULL));
	double delay = o->poll_delay;

	if (ra >= 0)
		delay = ra > ORDER_RETRY_AFTER_MAX_S ? ORDER_RETRY_AFTER_MAX_S : (double)ra;
	if (delay < ORDER_POLL_FIRST_S)
		delay = ORDER_POLL_FIRST_S;
	o->poll_delay *= 2;
	if (o->poll_delay > ORDER_POLL_MAX_S)
		o->poll_delay = ORDER_POLL_MAX_S;
	if (ev_now(o->op.loop) + delay > o->deadline) {
		order_fail(o, "timed out waiting for the %s (%s)", what, "5 minutes");
		return;
	}
	acme_op_later(&o->op, delay, cb_order_timer);
}

static int order_replace_str(char **dst, const char *src)
{
	char *s = src ? strdup(src) : NULL;

	if (src && !s)
		return -1;
	free(*dst);
	*dst = s;
	return 0;
}

/* Moves on from an order object: authorizations, finalize, poll or download. */
static void order_handle_order(struct acme_order *o, const struct acme_order_obj *ob, const struct http_response *res)
{
	if (order_replace_str(&o->finalize_url, ob->finalize) < 0 ||
	    (ob->certificate && order_replace_str(&o->cert_url, ob->certificate) < 0)) {
		order_fail(o, "out of memory");
		return;
	}
	if (!strcmp(ob->status, "valid")) {
		o->state = ACME_ORDER_CERT;
		order_step(o);
	} else if (!strcmp(ob->status, "invalid")) {
		if (ob->has_error)
			order_fail_problem(o, &ob->error);
		else
			order_fail(o, "order is invalid");
	} else if (!strcmp(ob->status, "ready")) {
		o->state = o->state == ACME_ORDER_POLL ? ACME_ORDER_FINALIZE : ACME_ORDER_KEY_WAIT;
		order_step(o);
	} else if (!strcmp(ob->status, "processing") ||
		   (!strcmp(ob->status, "pending") && o->state == ACME_ORDER_POLL)) {
		o->state = ACME_ORDER_POLL;
		order_poll_later(o, res, "order");
	} else if (!strcmp(ob->status, "pending")) {
		o->state = ACME_ORDER_AUTHZ;
		o->authz_idx = 0;
		order_step(o);
	} else {
		order_fail(o, "order has unknown status \"%s\"", ob->status);
	}
}

/* dns-01: publishes the TXT record through the solver; the challenge is
 * answered once it is visible (order_dns_presented). */
static void order_dns_present(struct acme_order *o, const struct acme_authz_obj *a, const char *ka)
{
	struct acme_client *c = o->op.c;
	char fqdn[300], *value = NULL, **nf, **nv;

	if (!c->dns.present) {
		order_fail(o, "%s needs dns-01, and no dns01 solver is configured (dns01.provider)",
			   o->host);
		return;
	}
	snprintf(fqdn, sizeof(fqdn), "_acme-challenge.%s", a->identifier);
	value = acme_dns01_txt(ka);
	nf = realloc(o->dns_fqdns, (o->ndns + 1) * sizeof(char *));
	if (nf)
		o->dns_fqdns = nf;
	nv = nf ? realloc(o->dns_values, (o->ndns + 1) * sizeof(char *)) : NULL;
	if (nv)
		o->dns_values = nv;
	if (!value || !nv || !(o->dns_fqdns[o->ndns] = strdup(fqdn))) {
		free(value);
		order_fail(o, "out of memory");
		return;
	}
	o->dns_values[o->ndns++] = value;	/* cleaned up at the end, whatever happens */
	if (order_replace_str(&o->chall_url, a->chall_url) < 0) {
		order_fail(o, "out of memory");
		return;
	}
	o->state = ACME_ORDER_DNS_PRESENT;
	o->dns_hooks = c->dns;
	o->dns_arg = c->dns_arg;
	if (c->dns.present(c->dns_arg, o->host, fqdn, value, order_dns_presented, o) < 0) {
		order_fail(o, "dns-01: cannot publish the TXT record %s", fqdn);
		return;
	}
	o->present_pending = 1;
}

/* present() answered: the record is visible, the challenge may be answered. */
static void order_dns_presented(void *ctx, int ok, const char *err)
{
	struct acme_order *o = ctx;

	o->present_pending = 0;
	if (!ok) {
		order_fail(o, "dns-01: %s", err ? err : "the TXT record could not be published");
		return;
	}
	o->state = ACME_ORDER_CHALLENGE;
	order_step(o);
}

/* Sets the challenge up (hook first, then tell the CA) or moves past this authz. */
static void order_handle_authz(struct acme_order *o, const struct acme_authz_obj *a, const struct http_response *res)
{
	struct acme_client *c = o->op.c;
	char *ka, **nt;

	if (!strcmp(a->status, "valid")) {
		o->authz_idx++;
		o->poll_delay = ORDER_POLL_FIRST_S;
		o->state = ACME_ORDER_AUTHZ;
		order_step(o);
		return;
	}
	if (!strcmp(a->status, "invalid")) {
		if (a->has_error)
			order_fail_problem(o, &a->error);
		else
			order_fail(o, "authorization for %s is invalid", a->identifier);
		return;
	}
	if (strcmp(a->status, "pending") && strcmp(a->status, "processing")) {
		order_fail(o, "authorization has status \"%s\"", a->status);
		return;
	}
	if (o->state == ACME_ORDER_AUTHZ_POLL || (a->has_http01 && strcmp(a->chall_status, "pending") &&
						  strcmp(a->chall_status, ""))) {
		/* Already answered (by us, or in an order the CA reused): wait for it. */
		o->state = ACME_ORDER_AUTHZ_POLL;
		order_poll_later(o, res, "authorization");
		return;
	}
	if (!a->has_http01) {
		order_fail(o, "CA offers no %s%s%s challenge for %s", o->dns ? "dns-01" : c->chall[0],
			   !o->dns && c->nchall > 1 ? " or " : "",
			   !o->dns && c->nchall > 1 ? c->chall[1] : "", a->identifier);
		return;
	}
	ka = jws_key_authorization(a->chall_token, c->account_key);
	if (!ka) {
		order_fail(o, "cannot compute the key authorization");
		return;
	}
	if (o->dns) {
		order_dns_present(o, a, ka);
		crypto_secret_free(ka, strlen(ka));
		return;
	}
	if (o->chall_type && strcmp(o->chall_type, "tls-alpn-01") == 0) {
		order_alpn_store(o, a, ka);
		crypto_secret_free(ka, strlen(ka));
		return;
	}
	nt = realloc(o->tokens, (o->ntokens + 1) * sizeof(char *));
	if (nt)
		o->tokens = nt;
	if (!nt || !(o->tokens[o->ntokens] = strdup(a->chall_token)) ||
	    order_replace_str(&o->chall_url, a->chall_url) < 0) {
		crypto_secret_free(ka, strlen(ka));
		order_fail(o, "out of memory");
		return;
	}
	o->ntokens++;		/* cleared at the end, whatever happens */
	if (c->hooks.challenge_store) {
		o->state = ACME_ORDER_CHALLENGE_STORE;
		o->hooks = c->hooks;
		o->hooks_arg = c->hooks_arg;
		if (c->hooks.challenge_store(c->hooks_arg, o->host, a->chall_token, ka,
					     order_challenge_stored, o) < 0) {
			crypto_secret_free(ka, strlen(ka));
			order_fail(o, "cannot store the http-01 challenge for %s", o->host);
			return;
		}
		o->store_pending = 1;
		crypto_secret_free(ka, strlen(ka));
		return;
	}
	if (c->hooks.challenge_set &&
	    c->hooks.challenge_set(c->hooks_arg, o->host, a->chall_token, ka) < 0) {
		crypto_secret_free(ka, strlen(ka));
		order_fail(o, "cannot store the http-01 challenge for %s", o->host);
		return;
	}
	crypto_secret_free(ka, strlen(ka));
	o->state = ACME_ORDER_CHALLENGE;
	order_step(o);
}

/* tls-alpn-01: the key authorization goes to storage (every node can make
 * the validation certificate when the CA connects), then the CA is told. */
static void order_alpn_store(struct acme_order *o, const struct acme_authz_obj *a, const char *ka)
{
	struct acme_client *c = o->op.c;

	if (!c->hooks.alpn_store || order_replace_str(&o->chall_url, a->chall_url) < 0) {
		order_fail(o, "tls-alpn-01: %s", c->hooks.alpn_store ? "out of memory" : "no solver");
		return;
	}
	o->state = ACME_ORDER_CHALLENGE_STORE;
	o->hooks = c->hooks;
	o->hooks_arg = c->hooks_arg;
	o->alpn_stored = 1;		/* cleared at the end, whatever happens */
	log_info("acme: host=%s answering tls-alpn-01", o->host);
	if (c->hooks.alpn_store(c->hooks_arg, o->host, ka, order_challenge_stored, o) < 0) {
		order_fail(o, "cannot store the tls-alpn-01 challenge for %s", o->host);
		return;
	}
	o->store_pending = 1;
}

/* challenge_store() answered: the challenge may be answered now. */
static void order_challenge_stored(void *ctx, int ok, const char *err)
{
	struct acme_order *o = ctx;

	o->store_pending = 0;
	if (!ok) {
		order_fail(o, "cannot store the http-01 challenge for %s: %s", o->host,
			   err ? err : "storage error");
		return;
	}
	o->state = ACME_ORDER_CHALLENGE;
	order_step(o);
}

/* Success: the chain in result.cert_pem plus the new key. */
static void order_succeed(struct acme_order *o)
{
	o->result.key_pem = crypto_key_to_pem(o->cert_key, NULL);
	if (!o->result.key_pem) {
		order_fail(o, "cannot encode the certificate key");
		return;
	}
	o->result.ok = 1;
	o->state = ACME_ORDER_DONE;
	log_info("acme: host=%s certificate issued", o->host);
	acme_op_finish(&o->op);
}

/* Tries the next alternate chain, or settles for the default one. */
static void order_next_alt(struct acme_order *o)
{
	struct acme_client *c = o->op.c;

	if (++o->alt_idx < o->nalts) {
		order_step(o);
		return;
	}
	log_warn("acme: host=%s no chain issued by \"%s\" among the alternates; keeping the default",
		 o->host, c->preferred_chain);
	order_succeed(o);
}

/* Keeps the downloaded chain and decides whether an alternate is needed. */
static void order_handle_cert(struct acme_order *o, const struct http_response *res)
{
	struct acme_client *c = o->op.c;
	char **certs = NULL, top[256] = "";
	size_t n = 0;
	int matches, k;

	if (crypto_pem_split_certs(res->body, res->body_len, &certs, &n) < 0 || n == 0) {
		if (o->state == ACME_ORDER_ALT_CERT) {
			order_next_alt(o);
			return;
		}
		order_fail(o, "CA sent a malformed certificate chain (not PEM certificates)");
		return;
	}
	crypto_pem_certs_free(certs, n);
	matches = !c->preferred_chain ||
		  (crypto_chain_top_issuer_cn(res->body, res->body_len, top, sizeof(top)) == 0 &&
		   !strcmp(top, c->preferred_chain));
	if (o->state == ACME_ORDER_ALT_CERT && !matches) {
		order_next_alt(o);
		return;
	}
	free(o->result.cert_pem);
	o->result.cert_pem = strndup(res->body, res->body_len);
	if (!o->result.cert_pem) {
		order_fail(o, "out of memory");
		return;
	}
	if (o->state == ACME_ORDER_ALT_CERT) {
		log_info("acme: host=%s picked the alternate chain issued by \"%s\"", o->host, top);
		order_succeed(o);
		return;
	}
	if (!matches) {
		char **alts = NULL;

		k = acme_links_find(res->links, res->nlinks, "alternate", &alts);
		acme_strv_free(o->alts, o->nalts);
		o->alts = k > 0 ? alts : NULL;
		o->nalts = k > 0 ? (size_t)k : 0;
		if (o->nalts) {
			log_debug("acme: host=%s default chain tops at \"%s\", trying %zu alternate(s)",
				  o->host, top, o->nalts);
			o->alt_idx = 0;
			o->state = ACME_ORDER_ALT_CERT;
			order_step(o);
			return;
		}
		log_warn("acme: host=%s no alternate chain offered; keeping the one issued by \"%s\"",
			 o->host, top);
	}
	order_succeed(o);
}

/* The authorization with the challenge to answer: dns-01 for a wildcard,
 * else the first of the client's preferences the CA offers. */
static int order_parse_authz(struct acme_order *o, const struct http_response *res,
			     struct acme_authz_obj *a, char *err, size_t errlen)
{
	struct acme_client *c = o->op.c;
	size_t i;

	if (o->dns)
		return acme_parse_authz_type(res->body, res->body_len, "dns-01", a, err, errlen);
	for (i = 0; i < c->nchall; i++) {
		if (acme_parse_authz_type(res->body, res->body_len, c->chall[i], a, err, errlen) < 0)
			return -1;
		if (a->has_http01 || i + 1 == c->nchall)
			break;
		acme_authz_obj_clear(a);
	}
	o->chall_type = c->chall[i < c->nchall ? i : 0];
	return 0;
}

static void cb_order_response(struct acme_op *op, const struct http_response *res, const char *err)
{
	struct acme_order *o = (struct acme_order *)op;
	char perr[512];

	if (!res) {
		order_fail(o, "%s: %s", acme_order_state_names[o->state], err);
		return;
	}
	switch (o->state) {
	case ACME_ORDER_NEW: {
		struct acme_order_obj ob;

		if (res->status != 201 && res->status != 200) {
			struct acme_problem p = { .retry_after = -1 };
			int retry;

			acme_problem_parse(res->status, res->body, res->body_len, res->retry_after, &p);
			retry = o->send_replaces && (acme_problem_is(&p, "alreadyReplaced") ||
						     acme_problem_is(&p, "malformed") || res->status == 409);
			acme_problem_clear(&p);
			if (retry) {
				log_warn("acme: host=%s CA refused \"replaces\"; ordering without it", o->host);
				o->send_replaces = 0;
				order_step(o);
				return;
			}
			order_fail_response(o, res, "newOrder");
			return;
		}
		if (acme_parse_order(res->body, res->body_len, &ob, perr, sizeof(perr)) < 0) {
			order_fail(o, "newOrder: %s", perr);
			return;
		}
		if (!res->location || strncmp(res->location, "http", 4) ||
		    order_replace_str(&o->result.order_url, res->location) < 0) {
			acme_order_obj_clear(&ob);
			order_fail(o, "newOrder: CA sent no order URL (Location)");
			return;
		}
		acme_strv_free(o->authz, o->nauthz);
		o->authz = ob.authz;
		o->nauthz = ob.nauthz;
		ob.authz = NULL;
		ob.nauthz = 0;
		log_debug("acme: host=%s order %s status=%s", o->host, o->result.order_url, ob.status);
		order_handle_order(o, &ob, res);
		acme_order_obj_clear(&ob);
		return;
	}
	case ACME_ORDER_AUTHZ:
	case ACME_ORDER_AUTHZ_POLL: {
		struct acme_authz_obj a;

		if (res->status != 200) {
			order_fail_response(o, res, "authorization");
			return;
		}
		if (order_parse_authz(o, res, &a, perr, sizeof(perr)) < 0) {
			order_fail(o, "%s", perr);
			return;
		}
		order_handle_authz(o, &a, res);
		acme_authz_obj_clear(&a);
		return;
	}
	case ACME_ORDER_CHALLENGE:
		if (res->status != 200) {
			order_fail_response(o, res, "challenge");
			return;
		}
		o->state = ACME_ORDER_AUTHZ_POLL;
		o->poll_delay = ORDER_POLL_FIRST_S;
		order_poll_later(o, res, "authorization");
		return;
	case ACME_ORDER_FINALIZE:
	case ACME_ORDER_POLL: {
		struct acme_order_obj ob;

		if (res->status != 200) {
			order_fail_response(o, res, o->state == ACME_ORDER_FINALIZE ? "finalize" : "order");
			return;
		}
		if (acme_parse_order(res->body, res->body_len, &ob, perr, sizeof(perr)) < 0) {
			order_fail(o, "%s", perr);
			return;
		}
		if (o->state == ACME_ORDER_FINALIZE) {
			o->poll_delay = ORDER_POLL_FIRST_S;
			o->state = ACME_ORDER_POLL;
			if (!strcmp(ob.status, "ready") || !strcmp(ob.status, "pending")) {
				/* finalize accepted but not started: poll, never re-finalize */
				order_poll_later(o, res, "order");
				acme_order_obj_clear(&ob);
				return;
			}
		}
		if (!strcmp(ob.status, "ready")) {
			order_poll_later(o, res, "order");
			acme_order_obj_clear(&ob);
			return;
		}
		order_handle_order(o, &ob, res);
		acme_order_obj_clear(&ob);
		return;
	}
	case ACME_ORDER_CERT:
	case ACME_ORDER_ALT_CERT:
		if (res->status != 200) {
			if (o->state == ACME_ORDER_ALT_CERT) {
				log_warn("acme: host=%s alternate chain download failed (HTTP %ld)", o->host,
					 res->status);
				order_next_alt(o);
				return;
			}
			order_fail_response(o, res, "certificate download");
			return;
		}
		order_handle_cert(o, res);
		return;
	default:
		order_fail(o, "unexpected response in state %s", acme_order_state_names[o->state]);
		return;
	}
}

static char *order_new_payload(struct acme_order *o)
{
	struct acme_client *c = o->op.c;
	json_t *p;
	char *s;
	size_t i;

	if (o->dns)
		p = json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "identifiers", "type", "dns", "value", o->host,
			      "type", "dns", "value", o->host + 2);
	else
		p = json_pack("{s:[{s:s,s:s}]}", "identifiers", "type", "dns", "value", o->host);
	if (!p)
		return NULL;
	if (c->profile) {
		for (i = 0; i < c->dir.nprofiles; i++)
			if (!strcmp(c->dir.profiles[i], c->profile))
				break;
		if (i < c->dir.nprofiles)
			json_object_set_new(p, "profile", json_string(c->profile));
		else
			log_warn("acme: host=%s CA does not offer profile \"%s\"; ordering without it",
				 o->host, c->profile);
	}
	if (o->send_replaces)
		json_object_set_new(p, "replaces", json_string(o->replaces));
	s = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	return s;
}

static void order_step(struct acme_order *o)
{
	struct acme_client *c = o->op.c;
	const char *url = NULL;
	char *payload = NULL, err[512] = "";
	int pem = 0;

	switch (o->state) {
	case ACME_ORDER_NEW:
		o->send_replaces = o->send_replaces && c->dir.renewal_info;
		payload = order_new_payload(o);
		if (!payload)
			goto oom;
		url = c->dir.new_order;
		break;
	case ACME_ORDER_AUTHZ:
		if (o->authz_idx >= o->nauthz) {
			o->state = ACME_ORDER_KEY_WAIT;
			order_step(o);
			return;
		}
		/* fall through */
	case ACME_ORDER_AUTHZ_POLL:
		url = o->authz[o->authz_idx];
		break;
	case ACME_ORDER_CHALLENGE:
		url = o->chall_url;
		payload = strdup("{}");
		if (!payload)
			goto oom;
		break;
	case ACME_ORDER_KEY_WAIT:
		if (o->keygen_pending)
			return; /* cb_order_keygen steps again */
		if (!o->cert_key) {
			order_fail(o, "certificate key generation failed: %s%s",
				   o->keygen_err ? o->keygen_err : "unknown error", "");
			return;
		}
		o->state = ACME_ORDER_FINALIZE;
		/* fall through */
	case ACME_ORDER_FINALIZE: {
		const char *names[2] = { o->host, o->host + 2 };
		char *csr = crypto_csr_b64url(o->cert_key, names, o->dns ? 2 : 1, err, sizeof(err));
		json_t *j;

		if (!csr) {
			order_fail(o, "CSR: %s", err);
			return;
		}
		j = json_pack("{s:s}", "csr", csr);
		free(csr);
		payload = j ? json_dumps(j, JSON_COMPACT) : NULL;
		json_decref(j);
		if (!payload)
			goto oom;
		url = o->finalize_url;
		break;
	}
	case ACME_ORDER_POLL:
		url = o->result.order_url;
		break;
	case ACME_ORDER_CERT:
		url = o->cert_url;
		pem = 1;
		break;
	case ACME_ORDER_ALT_CERT:
		url = o->alts[o->alt_idx];
		pem = 1;
		break;
	default:
		order_fail(o, "internal error: step in state %s", acme_order_state_names[o->state]);
		return;
	}
	if (!url) {
		order_fail(o, "CA gave no URL for the %s step", acme_order_state_names[o->state]);
		free(payload);
		return;
	}
	log_debug("acme: host=%s step %s %s", o->host, acme_order_state_names[o->state], url);
	if (acme_op_post(&o->op, url, payload, pem, cb_order_response, err, sizeof(err)) < 0)
		order_fail(o, "%s: %s", acme_order_state_names[o->state], err);
	free(payload);
	return;
oom:
	order_fail(o, "out of memory");
}

int acme_order_start(struct acme_client *c, const char *host, const char *replaces,
		     void (*done)(void *arg, const char *host, const struct acme_result *res),
		     void *arg)
{
	struct acme_order *o;

	if (!c || !c->account_key || !host || !*host || strlen(host) > 253 || !done)
		return -1;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -1;
	o->result.problem.retry_after = -1;
	o->host = strdup(host);
	o->replaces = replaces && *replaces ? strdup(replaces) : NULL;
	if (!o->host || (replaces && *replaces && !o->replaces)) {
		free(o->host);
		free(o->replaces);
		free(o);
		return -1;
	}
	o->send_replaces = o->replaces != NULL;
	o->dns = host[0] == '*' && host[1] == '.' && host[2];
	o->done = done;
	o->arg = arg;
	o->poll_delay = ORDER_POLL_FIRST_S;
	acme_op_init(c, &o->op, ACME_OP_ORDER, &acme_order_vt, 1);
	o->deadline = ev_now(c->loop) + ORDER_DEADLINE_S;
	/* The key is made while the CA validates; RSA takes a while. */
	if (crypto_key_generate_async(c->loop, c->cert_key_type, c->rsa_bits, cb_order_keygen, o) == 0)
		o->keygen_pending = 1;
	else
		o->keygen_err = strdup("cannot queue key generation");
	log_info("acme: host=%s order started%s", host, o->replaces ? " (renewal, replaces)" : "");
	acme_op_wait_ready(&o->op);
	return 0;
}
