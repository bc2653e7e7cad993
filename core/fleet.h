/* SPDX-License-Identifier: Apache-2.0 */
/* The fleet's change feed: certificates other nodes store or delete reach
 * this node's store (certstore) through pub/sub, and through a periodic read
 * of the change feed in case a message was missed. Only what changed is read.
 * file storage has a feed and no pub/sub: the feed is polled every second
 * (what `acme-spoa import` or another agent on the directory wrote); shm has
 * neither: the fleet is then idle. */
#ifndef ACME_SPOA_FLEET_H
#define ACME_SPOA_FLEET_H

#include <stdint.h>

struct certstore;
struct ev_loop;
struct health;
struct storage;

struct fleet_stats {
	uint64_t feed_reads;		/* reads of the change feed */
	uint64_t feed_changes;		/* certificate changes learnt from it */
};

/* Subscribes to the certificates channel of <st> (when the backend has
 * pub/sub) and reads the feed's position, so that nothing announced from now
 * on is missed: call it before certstore_load(). Start-up only (runs the
 * loop). <st>, <cs> and <health> are borrowed. Returns NULL when out of
 * memory. */
struct fleet *fleet_new(struct ev_loop *loop, struct storage *st, struct certstore *cs,
			struct health *health);

/* Reads the feed's position again (runs the loop), for a start that could
 * not read it: call it before certstore_load(). Returns 0, or -1 when the
 * store did not answer (the feed is then read from its start). */
int fleet_mark(struct fleet *f);

/* Starts the periodic reconcile (pub/sub) or poll (a feed alone). */
void fleet_start(struct fleet *f);

/* Copies <f>'s counters into <out>. */
void fleet_stats(const struct fleet *f, struct fleet_stats *out);

/* Stops the reconcile timer, cancels a feed read in flight, unsubscribes and
 * frees <f>. Accepts NULL. */
void fleet_free(struct fleet *f);

#endif
