/* SPDX-License-Identifier: Apache-2.0 */
/* The CA's rate limits (SPEC §3 `rate_limits`), checked before an order is
 * placed and shared by the fleet through storage.
 *
 * Four budgets, each a sliding window of time stamps:
 *   orders_per_3h            new orders of this account (key rl/<acct>/orders)
 *   certs_per_domain_week    certificates per registered domain, by the Public
 *                            Suffix List (libpsl) (rl/<acct>/domain/<domain>)
 *   certs_per_exact_set_week certificates per exact set of names: one host
 *                            here (rl/<acct>/set/<host>)
 *   failures_per_host_hour   failed validations per host (rl/<acct>/fail/<host>)
 * <acct> is a digest of api_uri and account_email, as for the account key.
 * A record is versioned JSON {"v":1,"t":[stamps...]}, at most a limit's count
 * of stamps, stored with a TTL of its window; one that cannot be read counts
 * as empty (logged). Changes take lock rl/... (the storage API's own lock),
 * get, put, unlock, so any backend works and two nodes never lose a stamp.
 *
 * renewal_reserve keeps a fraction of each budget for renewals: a new name
 * (on demand or from the admin API) may use limit - reserve, a renewal the
 * whole limit; an ARI renewal that sends `replaces` is exempt (the CA does not
 * count it). The orders stamp is spent when the check passes (the order is
 * placed right after); certificates when one is issued; failures when an
 * order fails on validation. Nothing here blocks: storage is asynchronous. */
#ifndef ACME_SPOA_RATELIMIT_H
#define ACME_SPOA_RATELIMIT_H

#include <stddef.h>
#include <time.h>

struct config_issuer;
struct ev_loop;
struct metrics_buf;
struct storage;

enum ratelimit_limit {
	RATELIMIT_ORDERS = 0,		/* orders_per_3h */
	RATELIMIT_DOMAIN,		/* certs_per_domain_week */
	RATELIMIT_EXACT_SET,		/* certs_per_exact_set_week */
	RATELIMIT_FAILURES,		/* failures_per_host_hour */
	RATELIMIT__MAX
};

enum ratelimit_class {
	RATELIMIT_NEW = 0,		/* a name without a certificate: not the reserve */
	RATELIMIT_RENEWAL,		/* replaces a certificate, without ARI: may use the reserve */
	RATELIMIT_EXEMPT,		/* ARI renewal sending `replaces`: not checked, not counted */
	RATELIMIT_CLASS__MAX
};

/* Config key names of the limits ("orders_per_3h", ...); "?" when out of range. */
const char *ratelimit_limit_name(enum ratelimit_limit l);

/* ---- window arithmetic: pure, no storage --------------------------------- */

/* The stamps of one budget, oldest first. */
struct ratelimit_window {
	time_t *t;
	size_t n, cap;
};

/* Reads the record <text> (<len> bytes) into <w> (emptied first): keeps the
 * stamps newer than <now> - <span>, oldest first, at most the newest <keep>.
 * Returns 0, or -1 when the record cannot be read (<w> is then empty, the
 * reason in <err>). */
int ratelimit_window_load(struct ratelimit_window *w, const char *text, size_t len, time_t now,
			  long span, size_t keep, char *err, size_t errlen);

/* Drops the stamps of <w> not newer than <now> - <span>. */
void ratelimit_window_expire(struct ratelimit_window *w, time_t now, long span);

/* Appends <now> to <w>, dropping the oldest beyond the newest <keep>.
 * Returns 0, -1 when out of memory. */
int ratelimit_window_add(struct ratelimit_window *w, time_t now, size_t keep);

/* The record text of <w> (malloc'd, the caller frees), NULL when out of memory. */
char *ratelimit_window_dump(const struct ratelimit_window *w);

/* Frees the stamps of <w> and empties it. */
void ratelimit_window_clear(struct ratelimit_window *w);

/* How much of <limit> a job of class <cls> may use: <limit> for a renewal,
 * <limit> minus floor(<limit> * <reserve>) for a new name, 0 for none. */
unsigned ratelimit_allowed(unsigned limit, double reserve, enum ratelimit_class cls);

/* 1 when one more event fits in <w> (already expired to <now>) for a job of
 * class <cls>, else 0 with <*frees> set to when enough stamps leave the window
 * (never earlier than <now> + 1). A <limit> of 0 (off) and the exempt class
 * always fit. */
int ratelimit_window_admits(const struct ratelimit_window *w, unsigned limit, double reserve,
			    enum ratelimit_class cls, time_t now, long span, time_t *frees);

/* 1 when the ACME problem type <type> is a failed validation (the CA
 * counts it in failures_per_host_hour), else 0. */
int ratelimit_is_validation_failure(const char *type);

/* ---- the budgets of one agent -------------------------------------------- */

struct ratelimit;
struct ratelimit_check;

/* Creates the budgets of one CA over <st> (borrowed), reading the limits from
 * <cfg> (an entry of the config's issuers, borrowed) at each use (live keys). <owner> prefixes the lock owner tokens (the node's
 * token). Loads the Public Suffix List (the newest of libpsl's own and
 * Debian's publicsuffix). Returns NULL when out of memory. (The start-up
 * warning about allow_any_domain without ask_url nor rate limits is
 * config_warnings()'s.) */
struct ratelimit *ratelimit_new(struct ev_loop *loop, const struct config_issuer *cfg,
				struct storage *st, const char *owner);

/* Cancels every check (its callback is not called) and record in flight,
 * frees <rl>. Accepts NULL. */
void ratelimit_free(struct ratelimit *rl);

/* The registered domain of <host> by the Public Suffix List into <out>
 * ("a.b.example.co.uk" -> "example.co.uk", "foo.github.io" -> itself); a
 * name that is itself a public suffix is its own. Returns 0, or -1 when
 * <out> is too small. */
int ratelimit_registered_domain(const struct ratelimit *rl, const char *host, char *out,
				size_t outlen);

/* What a check reports: <rc> 0 the order may be placed (its orders stamp is
 * spent); 1 refused by a budget, <why> names it, <until> is when it frees;
 * -1 the budgets could not be read (<why>). */
typedef void ratelimit_cb(void *arg, int rc, const char *why, time_t until);

/* Checks every budget <host>'s order of class <cls> draws on and spends the
 * orders stamp when all fit. <cb> runs once, on the loop, never before this
 * returns. Refusals are counted and logged at most once a minute per limit.
 * Returns a handle valid until <cb> runs, or NULL when out of memory (<cb>
 * never runs). */
struct ratelimit_check *ratelimit_check(struct ratelimit *rl, const char *host,
					enum ratelimit_class cls, ratelimit_cb *cb, void *arg);

/* Forgets <c>'s callback: it will not be called (a stamp being written is
 * still written). Accepts NULL. */
void ratelimit_check_cancel(struct ratelimit_check *c);

/* Records that a certificate for <host> was issued (per domain and exact set
 * budgets), in the background. Nothing for the exempt class. */
void ratelimit_record_issued(struct ratelimit *rl, const char *host, enum ratelimit_class cls);

/* Records that an order for <host> failed on validation, in the background.
 * Nothing for the exempt class. */
void ratelimit_record_failure(struct ratelimit *rl, const char *host, enum ratelimit_class cls);

/* Appends the budget metrics to <b>: each limit, what is left of the
 * account-wide orders budget, refusals by limit. */
void ratelimit_metrics(const struct ratelimit *rl, struct metrics_buf *b);

/* Refusals by limit since start, and what this node last saw left of the
 * orders budget (-1 when the limit is off). For tests and metrics. */
unsigned long ratelimit_refused(const struct ratelimit *rl, enum ratelimit_limit l);
long ratelimit_orders_left(const struct ratelimit *rl);

/* The orders_per_3h limit (0: off) and renewal_reserve now in force, and
 * the account's orders as this node last read them (oldest first; some may
 * have left the window since), or NULL when not read yet. For the renewal
 * plan (core/renewplan.c). */
unsigned ratelimit_orders_limit(const struct ratelimit *rl, double *reserve);
const struct ratelimit_window *ratelimit_orders_seen(const struct ratelimit *rl);

/* Checks and records in flight (a lock retry's wait included). */
size_t ratelimit_pending(const struct ratelimit *rl);

#endif
