/* SPDX-License-Identifier: Apache-2.0 */
/* The dns-01 solver: publishes "_acme-challenge" TXT records through a
 * provider, waits until the zone's authoritative servers answer them, and
 * removes them again: after validation, after a failure, and at the next
 * start for any a stop left behind.
 *
 * Providers: "rfc2136" (dynamic updates signed with TSIG to a primary
 * server, rfc2136.c on worker threads) and "exec" (a hook program called
 * `present|cleanup FQDN VALUE`, hook.c). Each record is written to storage as
 * "dns01/<fqdn>/<value>" before it is published and deleted once it is
 * removed, so a kill -9 leaves a trace that dns01_cleanup_stale() follows.
 * Everything runs on the loop; DNS traffic runs on the solver's own worker
 * threads. */
#ifndef ACME_SPOA_DNS01_H
#define ACME_SPOA_DNS01_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct storage;
struct dns01;

enum dns01_provider {
	DNS01_RFC2136 = 0,
	DNS01_EXEC,
	DNS01__MAX
};

struct dns01_conf {
	enum dns01_provider provider;
	const char *server_host;	/* primary server (rfc2136, and the check of exec), or NULL */
	int server_port;
	const char *tsig_key_name, *tsig_algorithm, *tsig_secret;	/* rfc2136 */
	const char *zone;		/* NULL: found by SOA look-up */
	const char *exec;		/* hook program (exec) */
	const char *const *exec_env;	/* variables passed to the hook beyond the base set (hook.h) */
	size_t nexec_env;
	int propagation_timeout;	/* seconds; also the bound of one hook run */
	/* 1 when "_acme-challenge.<name>" is a record this agent may have
	 * published now (configured or wildcard zones): the start-up clean-up
	 * removes only those. NULL: only names under <zone>. */
	int (*name_ok)(void *arg, const char *name);
	void *name_ok_arg;
};

/* Creates the solver over <st> (borrowed, must outlive it); <conf>'s strings
 * are copied. <node> names this node (with the host name: e.g. its
 * spoa.listen), so a restart finds its own records and no other node's.
 * Returns NULL with <err>. */
struct dns01 *dns01_new(struct ev_loop *loop, const struct dns01_conf *conf, struct storage *st,
			const char *node, char *err, size_t errlen);

/* Stops every task (their callbacks are not called; hook programs are
 * killed; records stay in storage for the next start) and frees <d>.
 * Accepts NULL. */
void dns01_free(struct dns01 *d);

/* Records, publishes TXT <value> at <fqdn> for <host> and waits until it is
 * visible at the zone's authoritative servers (at most propagation_timeout).
 * <done>(<ctx>, ok, err) runs once on the loop, never inside this call.
 * Returns 0 started, -1 (done never called) on a bad argument or when too
 * many tasks are running. */
int dns01_present(struct dns01 *d, const char *host, const char *fqdn, const char *value,
		  void (*done)(void *ctx, int ok, const char *err), void *ctx);

/* Drops the <done> of every present started with <ctx>. */
void dns01_cancel(struct dns01 *d, void *ctx);

/* Removes TXT <value> at <fqdn> in the background, then its storage record
 * (kept when the removal fails, for the next start). */
void dns01_cleanup(struct dns01 *d, const char *host, const char *fqdn, const char *value);

/* Start-up only (runs the loop to list storage): starts the removal of every
 * record a stop left in storage. Storage is not trusted here: a record whose
 * name is not "_acme-challenge.<name>" with <name> a host name the conf's
 * name_ok accepts, or whose value is not a dns-01 digest, is logged and
 * left alone. Returns how many removals started. */
size_t dns01_cleanup_stale(struct dns01 *d);

/* Tasks running (presents and removals). */
size_t dns01_pending(const struct dns01 *d);

/* What the solver did since it started, for /metrics. */
struct dns01_stats {
	uint64_t present_ok;		/* published and visible at the authoritative servers */
	uint64_t present_failed;	/* refused, failed, or not visible in propagation_timeout */
	uint64_t cleanup_ok;		/* removed */
	uint64_t cleanup_failed;	/* kept in storage for the next start's clean-up */
	size_t pending;
};

/* Fills <out>; all zero for a NULL <d> (no dns01.provider). */
void dns01_stats(const struct dns01 *d, struct dns01_stats *out);

/* "dns01/<fqdn>/<value>" into <key>: 0, or -1 when it does not fit or
 * <fqdn>/<value> hold characters a key may not. */
int dns01_record_key(const char *fqdn, const char *value, char *key, size_t keylen);

/* The reverse: splits a record key into <fqdn> and <value>. 0 or -1. */
int dns01_record_parse(const char *key, char *fqdn, size_t fqdnlen, char *value, size_t valuelen);

#endif
