/* SPDX-License-Identifier: Apache-2.0 */
/* The fleet's live members, so that renewal duty is shared: each node
 * registers "members/<id>" in storage with a TTL of two thirds of the lease
 * and renews it ten times per lease; it reads the member list as often. A
 * node that stops deletes its record; one that dies is out of the others'
 * lists within one lease.
 *
 * Each certificate belongs to one live member: rendezvous (highest random
 * weight) hashing of (host, member id), so that a member joining takes a
 * fair share and one leaving hands only its own share over, spread over the
 * others.
 *
 * Reading the list costs work proportional to the members, never to the
 * certificates: file and Consul list the "members/" prefix (one directory,
 * one KV prefix); Redis, whose listing scans the whole keyspace, reads the
 * feed "members" (every member announces itself there) and then each
 * member's record (absent: its lease ran out). shm is one process: the node
 * is the only member and nothing is stored. */
#ifndef ACME_SPOA_MEMBERS_H
#define ACME_SPOA_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct health;
struct storage;

#define MEMBERS_ID_MAX 64

/* Creates the membership of <id> (a key segment, at most MEMBERS_ID_MAX - 1
 * bytes) with a lease of <lease_s> seconds (>= 2). Until the first read of
 * the list (members_start()) the node owns nothing (shm: everything), so
 * that a start never races the fleet for every due certificate. <st> and
 * <health> are borrowed. Returns NULL when out of memory or <id> is bad. */
struct members *members_new(struct ev_loop *loop, struct storage *st, struct health *health,
			    const char *id, unsigned lease_s);

/* Called after each read that changed the member list. */
void members_set_hook(struct members *m, void (*changed)(void *arg), void *arg);

/* Registers the node and starts the periodic renewal and read. */
void members_start(struct members *m);

/* Live members now (this node included), at least 1. */
size_t members_count(const struct members *m);

/* This node's id. */
const char *members_self(const struct members *m);

/* The hash of a certificate's host that rendezvous hashing weighs. */
uint64_t members_key_hash(const char *host);

/* The member that owns the key of hash <kh> (this node before the first
 * read), and whether it is this node. */
const char *members_owner(const struct members *m, uint64_t kh);
int members_owns(const struct members *m, uint64_t kh);

/* Rendezvous hashing itself, for tests: the index among <n> (> 0) member
 * id hashes (members_key_hash() of each id) that owns key hash <kh>. */
size_t members_pick(const uint64_t *id_hash, size_t n, uint64_t kh);

/* Deletes the node's record (its share moves at once), stops the timer,
 * cancels reads in flight and frees <m>. Accepts NULL. */
void members_free(struct members *m);

#endif
