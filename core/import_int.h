/* SPDX-License-Identifier: Apache-2.0 */
/* What the import's source readers hand to its pipeline (import.c). A reader
 * only reads the other tool's layout; every check is the pipeline's. */
#ifndef ACME_SPOA_IMPORT_INT_H
#define ACME_SPOA_IMPORT_INT_H

#include <stddef.h>

struct ev_loop;

struct config;

/* One bundle found: leaf + chain + key PEM, as the source holds it. */
struct imp_cand {
	char *origin;		/* file path or key, for the report */
	char *pem;		/* a secret: cleansed when freed */
	size_t len;
	char *name;		/* the name the source files it under (it must cover it),
				 * or NULL: its DNS names */
};

/* One ACME account found. */
struct imp_acct {
	char *origin;
	char *key_pem;		/* private key PEM (a secret) */
	size_t key_len;
	char *url;		/* account URL, NULL when the tool does not keep it */
	char *email;		/* contact, "" when unknown */
	int same_ca;		/* stored for the config's api_uri, by the tool's own rule */
};

/* A source's finding that is not a bundle, by reason. */
struct imp_refusal {
	char *origin;
	char *reason;
};

struct imp_set {
	const struct config *cfg;
	struct ev_loop *loop;	/* the import's (kong-redis: reads run on it) */
	const char *api_uri;	/* the CA whose account is wanted (the first issuer's) */
	struct imp_cand *cands;
	size_t ncands, acands;
	struct imp_acct *accts;
	size_t naccts, aaccts;
	struct imp_refusal *refs;
	size_t nrefs, arefs;
};

/* Adds a bundle (<pem>/<len> copied). 0 or -1 (out of memory). */
int imp_add_cand(struct imp_set *s, const char *origin, const char *pem, size_t len,
		 const char *name);
/* Adds a bundle built from a certificate chain file and a key file's text. */
int imp_add_parts(struct imp_set *s, const char *origin, const char *chain, size_t chain_len,
		  const char *key, size_t key_len, const char *name);
/* Adds an account (key copied). */
int imp_add_acct(struct imp_set *s, const char *origin, const char *key_pem, size_t key_len,
		 const char *url, const char *email, int same_ca);
/* Records something found but not importable, with why. */
int imp_add_refusal(struct imp_set *s, const char *origin, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Reads a whole file (at most <max> bytes) into a NUL-terminated malloc'd
 * buffer. NULL with <err> set. */
char *imp_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen);
/* The same, its bytes cleansed when freed (crypto_secret_free). */
char *imp_read_secret(const char *path, size_t *len, char *err, size_t errlen);

/* Readers: 0, or -1 with <err> set when the source cannot be read at all
 * (a missing directory); what they cannot use inside it is a refusal. */
int imp_read_certbot(struct imp_set *s, const char *dir, char *err, size_t errlen);
int imp_read_lego(struct imp_set *s, const char *dir, char *err, size_t errlen);
int imp_read_caddy(struct imp_set *s, const char *dir, char *err, size_t errlen);
int imp_read_acmesh(struct imp_set *s, const char *dir, char *err, size_t errlen);
int imp_read_crt_dir(struct imp_set *s, const char *dir, char *err, size_t errlen);
int imp_read_crt_list(struct imp_set *s, const char *file, char *err, size_t errlen);
/* <spec>: HOST:PORT[/NAMESPACE] */
int imp_read_kong_redis(struct imp_set *s, const char *spec, char *err, size_t errlen);

/* A JWK private key (RSA or EC P-256/P-384, as certbot keeps it) as PEM
 * (malloc'd, a secret), or NULL with <err> set. */
char *imp_jwk_to_pem(const char *json, size_t len, size_t *pem_len, char *err, size_t errlen);

#endif
