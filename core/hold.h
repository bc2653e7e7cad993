/* SPDX-License-Identifier: Apache-2.0 */
/* Held ClientHellos (SPEC §4, hold_timeout): per host name, the deferred
 * acme-sni-peek ACKs that wait for that name's certificate to be committed in
 * HAProxy (a stored one pushed, a new one issued). Every connection for one
 * name waits on the same push or job: the owner releases the whole list when
 * it ends, and each waiter is released by its own deadline at the latest.
 *
 * The items are opaque (a struct spoa_deferred in the agent): hold only keeps
 * them and gives each back exactly once to the release function. Bounded per
 * name and in all. */
#ifndef ACME_SPOA_HOLD_H
#define ACME_SPOA_HOLD_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct hold;

struct hold_stats {
	uint64_t held;		/* waiters taken */
	uint64_t released;	/* released by hold_release() */
	uint64_t timeouts;	/* released by their deadline */
	uint64_t refused;	/* hold_add() refused by a bound */
	size_t waiting;		/* waiters now */
	size_t hosts;		/* names with waiters now */
};

/* Creates an empty hold on <loop>. <release>(<arg>, item) gives an item back
 * (called on the loop, never from inside hold_add()). At most <max_per_host>
 * waiters per name and <max_total> in all. Returns NULL when out of memory. */
struct hold *hold_new(struct ev_loop *loop, void (*release)(void *arg, void *item), void *arg,
		      size_t max_per_host, size_t max_total);

/* Releases every waiter and frees <h>. Accepts NULL. */
void hold_free(struct hold *h);

/* Adds <item> to <host>'s waiters, released by hold_release(<host>) or after
 * <timeout> seconds. Returns 0, or -1 when a bound is reached or memory is
 * out: <item> is then not taken (the caller answers now). */
int hold_add(struct hold *h, const char *host, void *item, double timeout);

/* Releases every waiter of <host> (in arrival order). Returns how many. */
size_t hold_release(struct hold *h, const char *host);

/* Number of waiters of <host>. */
size_t hold_waiting(const struct hold *h, const char *host);

/* Copies the counters and gauges into <out>. */
void hold_stats(const struct hold *h, struct hold_stats *out);

#endif
