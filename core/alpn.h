/* SPDX-License-Identifier: Apache-2.0 */
/* tls-alpn-01 (RFC 8737) on HAProxy: the node that orders stores the key
 * authorization as "alpn/<host>"; when the CA's ClientHello (ALPN exactly
 * acme-tls/1) reaches any node's peek frontend, SPOE acme-alpn tells that
 * node, which makes the validation certificate (memory, or storage when
 * another node ordered), pushes it over the runtime socket into
 * haproxy.alpn_crt_list (used only by the small "alpn acme-tls/1" TLS
 * frontend) and holds the ClientHello's ACK until it is committed. The
 * certificate is removed at the end of the order on the ordering node; on
 * another node once "alpn/<host>" is gone from storage (the order ended),
 * looked at every ALPN_RECHECK_S, at most ALPN_PUSHED_TTL_S after its push. */
#ifndef ACME_SPOA_ALPN_H
#define ACME_SPOA_ALPN_H

#include <stddef.h>
#include <stdint.h>

struct certstore;
struct config;
struct ev_loop;
struct health;
struct spoa_reply;
struct storage;

#define ALPN_TTL_S		600	/* "alpn/<host>" in storage */
#define ALPN_PUSHED_TTL_S	120	/* the longest a validation certificate stays in HAProxy */
#define ALPN_RECHECK_S		2	/* another node's order: is "alpn/<host>" still there? */
#define ALPN_MAX		1000	/* names in memory at once (strangers choose SNI) */
#define ALPN_LOOKUPS_MAX	64	/* storage look-ups in flight */

struct alpn_stats {
	uint64_t hellos;		/* acme-alpn messages */
	uint64_t pushed, push_failed, removed, refused;
};

/* Creates the solver over <st> and the runtime client of <cs> (both
 * borrowed); <cfg> gives haproxy.alpn_crt_list and hold_timeout. NULL when
 * out of memory. */
struct alpn *alpn_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
		      struct health *health, struct certstore *cs);

/* Answers every held ACK, cancels storage calls and timers; pushes still
 * in flight complete into nothing. Call before the SPOA server is freed. */
void alpn_stop(struct alpn *al);

/* Frees <al>, after the runtime client (certstore_free()). Accepts NULL. */
void alpn_free(struct alpn *al);

/* The ACME hooks (acme.h alpn_store, alpn_clear, challenge_store_cancel). */
int alpn_store(struct alpn *al, const char *host, const char *key_auth,
	       void (*done)(void *ctx, int ok, const char *err), void *ctx);
void alpn_cancel(struct alpn *al, void *ctx);
void alpn_clear(struct alpn *al, const char *host);

/* SPOE acme-alpn for <host> (normalized): answered at once when HAProxy
 * holds its validation certificate or no order knows the name; else the
 * ACK is deferred until the certificate is committed (at most
 * hold_timeout, 5 s when 0). */
void alpn_hello(struct alpn *al, const char *host, struct spoa_reply *reply);

void alpn_stats(const struct alpn *al, struct alpn_stats *out);

#endif
