/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's faces: the SPOE message handlers (the hot path: answered from
 * memory, issuance started in the background), the admin API operations,
 * Prometheus metrics and health. Thin: the work is the modules'. */
#ifndef ACME_SPOA_API_H
#define ACME_SPOA_API_H

#include <stddef.h>

struct alpn;
struct certstore;
struct challenges;
struct config;
struct dns01;
struct ev_loop;
struct fleet;
struct health;
struct http_client;
struct issuers;
struct jobs;
struct members;
struct renew;
struct storage;

/* What the API serves from; everything is borrowed and must outlive it. */
struct api_deps {
	const struct config *cfg;
	struct storage *st;
	struct issuers *iss;
	struct http_client *http;
	struct certstore *cs;
	struct challenges *ch;
	struct jobs *jobs;
	struct renew *renew;
	struct members *members;	/* the fleet's live nodes */
	struct fleet *fleet;
	struct health *health;
	struct dns01 *dns;		/* NULL without dns01.provider */
	struct alpn *alpn;		/* the tls-alpn-01 solver */
};

/* Starts the SPOA server on spoa.listen and the admin server on
 * admin.listen, serving from <deps> (copied). Returns NULL with <err> set. */
struct api *api_new(struct ev_loop *loop, const struct api_deps *deps, char *err, size_t errlen);

/* <host>'s certificate push into HAProxy ended (certstore's loaded hook):
 * the ClientHellos held for it are answered. Accepts a NULL <a>. */
void api_cert_loaded(struct api *a, const char *host, int ok);

/* <host>'s issuance job ended (jobs' ended hook): failed, the ClientHellos
 * held for it are answered; issued, they wait for the push. Accepts NULL. */
void api_job_ended(struct api *a, const char *host, int ok);

/* Applies a reloaded admin.token (NULL: none). */
void api_set_token(struct api *a, const char *token);

/* Stops both servers and frees <a>. Deferred ACKs must be completed before
 * (challenges_free()), admin requests answered (jobs_free()). Accepts NULL. */
void api_free(struct api *a);

#endif
