/* SPDX-License-Identifier: Apache-2.0 */
/* http-01 challenges: token -> key authorization, in memory for the SPOE path
 * and in storage (with a TTL) so that any node of a fleet answers the CA. A
 * node asked for a token it does not hold looks it up in shared storage while
 * that one ACK is deferred (bounded in number; the deadline is storage's). */
#ifndef ACME_SPOA_CHALLENGES_H
#define ACME_SPOA_CHALLENGES_H

#include <stdint.h>

struct acme_hooks;
struct alpn;
struct health;
struct spoa_deferred;
struct storage;

/* The ACME client's challenge hooks (hooks_arg: the struct challenges). */
extern const struct acme_hooks challenges_acme_hooks;

/* Creates an empty token store over <st>; <st> and <health> are borrowed.
 * Returns NULL when out of memory. */
struct challenges *challenges_new(struct storage *st, struct health *health);

/* Sets the tls-alpn-01 solver the hooks forward to (borrowed; NULL: none). */
void challenges_set_alpn(struct challenges *ch, struct alpn *al);

/* Completes every look-up in flight (their deferred ACKs go out without a
 * key authorization), drops the stores in flight and frees <ch>. Call it
 * before the SPOA server is freed. Accepts NULL. */
void challenges_free(struct challenges *ch);

/* 1 when <token> has the shape of an ACME token: base64url, 22 (128 bits,
 * RFC 8555 §8.1) to 128 characters. Anything else is unknown at once. */
int challenges_token_valid(const char *token);

/* The key authorization for <token> that memory holds: this node's
 * challenges, or one found in shared storage a moment ago. NULL if none. */
const char *challenges_local(struct challenges *ch, const char *token);

/* 1 when <token>, not in memory, is known to be absent without a look-up:
 * no other process can hold one (shm), or storage said so a moment ago. */
int challenges_known_absent(struct challenges *ch, const char *token);

/* Looks <token> up in shared storage and completes <d> (the deferred ACK)
 * with the answer; a look-up of <token> already in flight is joined, not
 * repeated. Returns 0 started, -1 (bounds reached: <d> untouched). */
int challenges_lookup_shared(struct challenges *ch, const char *token, struct spoa_deferred *d);

/* Stores <token> -> <keyauth> in memory and in storage for <ttl> seconds. */
void challenges_store(struct challenges *ch, const char *token, const char *keyauth, unsigned ttl);

/* Forgets <token> in memory and in storage. */
void challenges_forget(struct challenges *ch, const char *token);

/* Key authorizations sent from shared-storage look-ups. */
uint64_t challenges_lookup_hits(const struct challenges *ch);

/* Storage reads those look-ups made (one for several ACKs waiting for the
 * same token). */
uint64_t challenges_lookup_reads(const struct challenges *ch);

#endif
