/* SPDX-License-Identifier: Apache-2.0 */
/* The per-client budget of new names (SPEC §3
 * on_demand.max_new_names_per_client): how many names without a certificate
 * one client network (/24 for IPv4, /56 for IPv6) has sent issuance for in
 * the last hour, so that a scan from one place cannot spend the CA's budget
 * that other clients' new names need.
 *
 * Each network has a fixed window of one hour from its first counted name.
 * The table is bounded: beyond <max_nets> networks the one used least
 * recently is forgotten (a scan from that many networks is a scan the CA's
 * own limits and max_queued_orders bound). Keys are client addresses, so the
 * table is a keyed-hash map (lib/hmap). */
#ifndef ACME_SPOA_CLIENTBUDGET_H
#define ACME_SPOA_CLIENTBUDGET_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct in_addr;
struct in6_addr;
struct clientbudget;

#define CLIENTBUDGET_WINDOW_S	3600
#define CLIENTBUDGET_NET_MAX	64	/* "ffff:ffff:ffff:ff00::/56" and NUL, with room */

/* An empty table of at most <max_nets> networks. NULL when out of memory. */
struct clientbudget *clientbudget_new(size_t max_nets);

/* Frees <b>. Accepts NULL. */
void clientbudget_free(struct clientbudget *b);

/* The network of a client address, as the table's key, into <out>
 * (CLIENTBUDGET_NET_MAX): "a.b.c.0/24", or the /56 of an IPv6 address
 * ("2001:db8:0:100::/56"); an IPv4-mapped IPv6 address is its IPv4 /24. */
void clientbudget_net4(const struct in_addr *a, char *out);
void clientbudget_net6(const struct in6_addr *a, char *out);

/* 1 when network <net> has already had <limit> new names in its window at
 * <now> (refuse), else 0. <limit> 0 is "no budget": always 0. */
int clientbudget_over(struct clientbudget *b, const char *net, unsigned limit, time_t now);

/* Counts one new name for <net> at <now>. Returns 0, or -1 when out of
 * memory (the name is then not counted). */
int clientbudget_count(struct clientbudget *b, const char *net, time_t now);

struct clientbudget_stats {
	uint64_t evicted;	/* networks forgotten by the bound */
	size_t nets;		/* networks in the table now */
};

void clientbudget_stats(const struct clientbudget *b, struct clientbudget_stats *out);

#endif
