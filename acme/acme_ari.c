/* SPDX-License-Identifier: Apache-2.0 */
/* RFC 9773 renewal information and RFC 8555 §7.6 revocation, as ops on the
 * client's framework (they share its directory, nonces and account). */
#include "acme/acme_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "lib/log.h"

struct acme_ari_op {
	struct acme_op op;
	char *cert_id;
	void (*done)(void *arg, int ok, time_t start, time_t end, long retry_after, const char *err);
	void *arg;
	int ok;
	time_t start, end;
	long retry_after;
	char err[512];
};

struct acme_revoke_op {
	struct acme_op op;
	char *payload;
	void (*done)(void *arg, int ok, const char *err);
	void *arg;
	int ok;
	char err[512];
};

static void ari_free(struct acme_ari_op *a)
{
	acme_op_release(&a->op);
	free(a->cert_id);
	free(a);
}

static void ari_destroy(struct acme_op *op)
{
	ari_free((struct acme_ari_op *)op);
}

static void ari_complete(struct acme_op *op)
{
	struct acme_ari_op *a = (struct acme_ari_op *)op;

	acme_op_unlink(op);
	a->done(a->arg, a->ok, a->start, a->end, a->retry_after, a->ok ? NULL : a->err);
	ari_free(a);
}

static void cb_ari_response(void *arg, const struct http_response *res)
{
	struct acme_ari_op *a = arg;

	a->op.inflight = 0;
	a->retry_after = http_parse_retry_after(res->retry_after, time(NULL));
	if (res->status == 0) {
		snprintf(a->err, sizeof(a->err), "renewalInfo: %s", res->error);
	} else if (res->status != 200) {
		struct acme_problem p = { .retry_after = -1 };

		acme_problem_parse(res->status, res->body, res->body_len, res->retry_after, &p);
		snprintf(a->err, sizeof(a->err), "renewalInfo: %s", p.detail ? p.detail : "");
		acme_problem_clear(&p);
	} else if (acme_parse_renewal_info(res->body, res->body_len, &a->start, &a->end,
					   a->err, sizeof(a->err)) == 0) {
		a->ok = 1;
	}
	acme_op_finish(&a->op);
}

static void ari_resume(struct acme_op *op, const struct acme_problem *prob)
{
	struct acme_ari_op *a = (struct acme_ari_op *)op;
	struct acme_client *c = op->c;
	char *url = NULL;
	size_t n;

	if (prob) {
		snprintf(a->err, sizeof(a->err), "%s", prob->detail ? prob->detail : "directory unavailable");
		goto fail;
	}
	if (!c->dir.renewal_info) {
		snprintf(a->err, sizeof(a->err), "CA %s offers no renewalInfo (ARI)", c->directory_url);
		goto fail;
	}
	n = strlen(c->dir.renewal_info);
	if (asprintf(&url, "%s%s%s", c->dir.renewal_info,
		     n && c->dir.renewal_info[n - 1] == '/' ? "" : "/", a->cert_id) < 0) {
		url = NULL;
		snprintf(a->err, sizeof(a->err), "out of memory");
		goto fail;
	}
	{
		char why[128];

		if (http_url_check(url, why, sizeof(why)) == -1) {
			snprintf(a->err, sizeof(a->err), "renewalInfo \"%.200s\": %s", url, why);
			goto fail;
		}
	}
	if (http_request(c->http, "GET", url, NULL, NULL, 0, c->timeout_ms, cb_ari_response, a) < 0) {
		snprintf(a->err, sizeof(a->err), "renewalInfo: cannot start request");
		goto fail;
	}
	a->op.inflight = 1;
	free(url);
	return;
fail:
	free(url);
	acme_op_finish(op);
}

static const struct acme_op_vt acme_ari_vt = {
	.resume = ari_resume,
	.complete = ari_complete,
	.destroy = ari_destroy,
};

/* A new ARI op on <c>, linked and initialised; NULL when out of memory. */
static struct acme_ari_op *ari_new(struct acme_client *c,
				   void (*done)(void *arg, int ok, time_t start, time_t end,
						long retry_after, const char *err),
				   void *arg)
{
	struct acme_ari_op *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->done = done;
	a->arg = arg;
	a->retry_after = -1;
	acme_op_init(c, &a->op, ACME_OP_ARI, &acme_ari_vt, 0);
	return a;
}

/* Queues <a> for the certificate whose ARI id is <cert_id> (copied). An empty
 * id fails the op through its callback (0); -1 (the op freed, no callback)
 * when out of memory. */
static int ari_start(struct acme_ari_op *a, const char *cert_id)
{
	if (!cert_id[0]) {
		snprintf(a->err, sizeof(a->err), "certificate has no authority key identifier: no ARI id");
		acme_op_finish(&a->op);
		return 0;
	}
	a->cert_id = strdup(cert_id);
	if (!a->cert_id) {
		acme_op_unlink(&a->op);
		ari_free(a);
		return -1;
	}
	acme_op_wait_ready(&a->op);
	return 0;
}

int acme_renewal_info_id(struct acme_client *c, const char *cert_id,
			 void (*done)(void *arg, int ok, time_t start, time_t end, long retry_after,
				      const char *err),
			 void *arg)
{
	struct acme_ari_op *a;

	if (!c || !cert_id || !done)
		return -1;
	a = ari_new(c, done, arg);
	if (!a)
		return -1;
	return ari_start(a, cert_id);
}

int acme_renewal_info(struct acme_client *c, const char *cert_pem,
		      void (*done)(void *arg, int ok, time_t start, time_t end, long retry_after,
				   const char *err),
		      void *arg)
{
	struct crypto_cert_info ci;
	struct acme_ari_op *a;
	char err[256];
	int rc;

	if (!c || !cert_pem || !done)
		return -1;
	a = ari_new(c, done, arg);
	if (!a)
		return -1;
	if (crypto_cert_info(cert_pem, strlen(cert_pem), &ci, err, sizeof(err)) < 0) {
		snprintf(a->err, sizeof(a->err), "certificate: %s", err);
		acme_op_finish(&a->op);
		return 0;
	}
	rc = ari_start(a, ci.ari_cert_id);
	crypto_cert_info_clear(&ci);
	return rc;
}

/* ---- revocation ---- */

static void revoke_free(struct acme_revoke_op *r)
{
	acme_op_release(&r->op);
	free(r->payload);
	free(r);
}

static void revoke_destroy(struct acme_op *op)
{
	revoke_free((struct acme_revoke_op *)op);
}

static void revoke_complete(struct acme_op *op)
{
	struct acme_revoke_op *r = (struct acme_revoke_op *)op;

	acme_op_unlink(op);
	r->done(r->arg, r->ok, r->ok ? NULL : r->err);
	revoke_free(r);
}

static void cb_revoke_response(struct acme_op *op, const struct http_response *res, const char *err)
{
	struct acme_revoke_op *r = (struct acme_revoke_op *)op;

	if (!res) {
		snprintf(r->err, sizeof(r->err), "revokeCert: %s", err);
	} else if (res->status != 200) {
		struct acme_problem p = { .retry_after = -1 };

		acme_problem_parse(res->status, res->body, res->body_len, res->retry_after, &p);
		snprintf(r->err, sizeof(r->err), "revokeCert: %s%s%s", p.type ? p.type : "",
			 p.type ? ": " : "", p.detail ? p.detail : "");
		acme_problem_clear(&p);
	} else {
		r->ok = 1;
	}
	acme_op_finish(op);
}

static void revoke_resume(struct acme_op *op, const struct acme_problem *prob)
{
	struct acme_revoke_op *r = (struct acme_revoke_op *)op;
	struct acme_client *c = op->c;

	if (prob) {
		snprintf(r->err, sizeof(r->err), "%s", prob->detail ? prob->detail : "account unavailable");
		acme_op_finish(op);
		return;
	}
	if (!c->dir.revoke_cert) {
		snprintf(r->err, sizeof(r->err), "CA %s offers no revokeCert", c->directory_url);
		acme_op_finish(op);
		return;
	}
	if (acme_op_post(op, c->dir.revoke_cert, r->payload, 0, cb_revoke_response, r->err, sizeof(r->err)) < 0)
		acme_op_finish(op);
}

static const struct acme_op_vt acme_revoke_vt = {
	.resume = revoke_resume,
	.complete = revoke_complete,
	.destroy = revoke_destroy,
};

/* {"certificate": base64url(DER of the first certificate of <pem>)} */
static char *revoke_payload(const char *pem, char *err, size_t errlen)
{
	BIO *bio = NULL;
	X509 *x = NULL;
	unsigned char *der = NULL;
	char *b64 = NULL, *out = NULL;
	json_t *j = NULL;
	int len;

	bio = BIO_new_mem_buf(pem, -1);
	x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	if (!x) {
		snprintf(err, errlen, "revoke: not a PEM certificate");
		goto out;
	}
	len = i2d_X509(x, &der);
	if (len <= 0 || !(b64 = crypto_b64url(der, (size_t)len))) {
		snprintf(err, errlen, "revoke: cannot encode the certificate");
		goto out;
	}
	j = json_pack("{s:s}", "certificate", b64);
	out = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (!out)
		snprintf(err, errlen, "revoke: out of memory");
out:
	json_decref(j);
	free(b64);
	OPENSSL_free(der);
	X509_free(x);
	BIO_free(bio);
	return out;
}

int acme_revoke(struct acme_client *c, const char *cert_pem,
		void (*done)(void *arg, int ok, const char *err), void *arg)
{
	struct acme_revoke_op *r;

	if (!c || !c->account_key || !cert_pem || !done)
		return -1;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -1;
	r->done = done;
	r->arg = arg;
	acme_op_init(c, &r->op, ACME_OP_REVOKE, &acme_revoke_vt, 1);
	r->payload = revoke_payload(cert_pem, r->err, sizeof(r->err));
	if (!r->payload) {
		acme_op_finish(&r->op);
		return 0;
	}
	acme_op_wait_ready(&r->op);
	return 0;
}
