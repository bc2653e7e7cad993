/* SPDX-License-Identifier: Apache-2.0 */
/* The CAs of "issuers" (SPEC §3), in order of preference: one ACME client,
 * account and set of rate limits each, and whether each is up.
 *
 * An issuer that failed an order for its own reasons (issuers_ca_fault():
 * unreachable, timeouts, 5xx, serverInternal, rateLimited, account problems)
 * is marked down for a while that doubles on each failure in a row
 * (ISSUERS_DOWN_MIN_S up to ISSUERS_DOWN_MAX_S, or the CA's Retry-After);
 * new orders skip it. The mark is shared by the fleet through storage
 * ("issuers/<name>/state", read every ISSUERS_POLL_S). When the while ends,
 * the issuer is probed (a GET of its directory) in the background and used
 * again once it answers; a failed probe marks it down again, longer.
 *
 * Which CA issued a certificate is known from the certificate's issuer CN,
 * learnt at each issuance and kept per CA in storage
 * ("issuers/<name>/cns"), so every node, and a restarted one, names the
 * issuer of a certificate it did not order (admin API, renewals). */
#ifndef ACME_SPOA_ISSUERS_H
#define ACME_SPOA_ISSUERS_H

#include <stddef.h>
#include <time.h>

struct acme_client;
struct acme_dns_hooks;
struct acme_hooks;
struct acme_problem;
struct config;
struct config_issuer;
struct ev_loop;
struct health;
struct metrics_buf;
struct ratelimit;
struct storage;

/* hex characters of an account id */
#define ISSUERS_ACCOUNT_ID_LEN 32

/* The id of the ACME account of (<api_uri>, <email>) into <out>: its key is
 * stored as "accounts/<id>/key" and, when it came from another tool (import),
 * its account URL as "accounts/<id>/url". 0, or -1 (out of memory). */
int issuers_account_id(const char *api_uri, const char *email, char out[ISSUERS_ACCOUNT_ID_LEN + 1]);

#define ISSUERS_DOWN_MIN_S	5
#define ISSUERS_DOWN_MAX_S	600
#define ISSUERS_POLL_S		5.0
#define ISSUERS_CNS_MAX		16	/* issuer CNs remembered per CA */

/* 1 when the failed order's problem <p> is the CA's fault (the order falls
 * through to the next issuer): no answer, a 5xx, serverInternal,
 * rateLimited (or 429), badNonce past the retries, account problems. A
 * validation failure (unauthorized, connection, dns, caa,
 * incorrectResponse, tls, rejectedIdentifier) or a local error is not: 0. */
int issuers_ca_fault(const struct acme_problem *p);

/* One ACME client per entry of <cfg>'s issuers, without its account key yet
 * (issuers_attach), <hooks>/<hooks_arg> for challenges, and its rate limits
 * (<owner>: lock owner prefix). <cfg>, <st>, <health> are
 * borrowed. Returns NULL with <err> set. */
struct issuers *issuers_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
			    struct health *health, const struct acme_hooks *hooks, void *hooks_arg,
			    const char *owner, char *err, size_t errlen);

/* Reads (or creates and stores) each issuer's account key into its client,
 * and what the fleet knows of it; waits on storage (start-up, or the
 * manager's attach timer). Issuers already attached are skipped. 0 done; -1
 * with <err>, <*down> set when storage did not answer (else a stored key is
 * unusable). Orders at an issuer not attached yet are refused. */
int issuers_attach(struct issuers *is, int *down, char *err, size_t errlen);

/* Frees the ACME clients (no callback runs: call it before the modules
 * their hooks reach), the probes and timers. Accepts NULL. */
void issuers_close_clients(struct issuers *is);

/* Closes the clients, then frees the rate limits (after the jobs that check
 * them) and <is>. Accepts NULL. */
void issuers_free(struct issuers *is);

/* Sets the dns-01 solver (copied) of every client. */
void issuers_set_dns(struct issuers *is, const struct acme_dns_hooks *hooks, void *arg);

/* Starts the fleet poll of the down marks and learnt CNs. */
void issuers_start(struct issuers *is);

size_t issuers_count(const struct issuers *is);
const struct config_issuer *issuers_conf(const struct issuers *is, size_t i);
struct acme_client *issuers_acme(const struct issuers *is, size_t i);
struct ratelimit *issuers_ratelimit(const struct issuers *is, size_t i);

/* 1 when issuer <i> is not marked down. */
int issuers_up(const struct issuers *is, size_t i);

/* The issuers a job tries, in order, into <order> (issuers_count() slots):
 * <first> (an index, or -1) when it is up, then every other one that is
 * up, in the configured order; when none is up, the one whose while ends
 * first (a single CA is always tried). Returns how many. */
size_t issuers_plan(const struct issuers *is, int first, size_t *order);

/* The issuer that issued certificates of issuer CN <issuer_cn>, or -1 when
 * no CA of the list is known to. */
int issuers_for_cn(const struct issuers *is, const char *issuer_cn);

/* The ACME client for operations on a certificate of issuer CN
 * <issuer_cn> (ARI, revocation): its issuer's, else the first's. */
struct acme_client *issuers_acme_for_cn(const struct issuers *is, const char *issuer_cn);

/* An order at issuer <i> failed: <ca_fault> (issuers_ca_fault()) marks it
 * down (<why> logged and stored, <retry_after> seconds from the CA or -1);
 * counted either way. */
void issuers_order_failed(struct issuers *is, size_t i, int ca_fault, const char *why,
			  long retry_after);

/* Issuer <i> issued a certificate of issuer CN <issuer_cn>: its failures
 * in a row end, the CN is learnt; <fallback> counts it as issued after a
 * preferred issuer failed or was down. */
void issuers_issued(struct issuers *is, size_t i, const char *issuer_cn, int fallback);

/* Appends acme_spoa_issuer_up, acme_spoa_issuer_orders_total and
 * acme_spoa_issuer_fallbacks_total to <b>. */
void issuers_metrics(const struct issuers *is, struct metrics_buf *b);

#endif
