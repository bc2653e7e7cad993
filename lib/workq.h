/* SPDX-License-Identifier: Apache-2.0 */
/* A pool of worker threads for blocking work (file I/O, fsync, rename),
 * with results handed back to the libev loop thread.
 *
 * Items are sharded: items submitted with the same <shard> run on the same
 * thread, in submission order, so two writes of one key never overtake each
 * other; different shards run in parallel, so a slow fsync delays only its
 * own shard. Completions run on the loop in a callback of their own, never
 * inside workq_submit(). */
#ifndef ACME_SPOA_WORKQ_H
#define ACME_SPOA_WORKQ_H

#include <stddef.h>
#include <sys/queue.h>

struct ev_loop;
struct workq;

struct workq_item {
	/* Runs on a worker thread: may block, must not touch the loop. */
	void (*run)(struct workq_item *it);
	/* Runs on the loop thread after run() returned. */
	void (*done)(struct workq_item *it);
	STAILQ_ENTRY(workq_item) link;	/* the pool's own */
};

/* Creates a pool of <nthreads> (1..64) workers delivering to <loop>. Worker
 * threads block every signal. Returns NULL with <err> set. */
struct workq *workq_new(struct ev_loop *loop, unsigned nthreads, char *err, size_t errlen);

/* Queues <it> on the worker chosen by <shard>. Never fails, never blocks
 * beyond a mutex. <it> must stay valid until its done() has run. */
void workq_submit(struct workq *q, struct workq_item *it, unsigned shard);

/* Returns a shard number for the string <s> (FNV-1a), so that work on one
 * key always lands on one worker. */
unsigned workq_shard(const char *s);

/* Finishes every queued item (run() on its worker: a write in progress at
 * shutdown completes), joins the threads, then calls done() of every
 * finished item on the calling thread, and frees <q>. Accepts NULL. */
void workq_free(struct workq *q);

#endif
