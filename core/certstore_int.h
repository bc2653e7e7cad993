/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the certificate store (certstore.h), shared by its three files:
 * certstore.c (memory: the index of names, full entries, installs and what
 * is learnt of them), certread.c (metadata records and what is read from
 * storage: fetches, the start-up load, the background read of the share)
 * and certdeploy.c (cert_dir writes, pushes into HAProxy, the hot set and
 * the sync after a HAProxy reload). Nothing outside them includes it. */
#ifndef ACME_SPOA_CERTSTORE_INT_H
#define ACME_SPOA_CERTSTORE_INT_H

#include <stddef.h>
#include <sys/queue.h>

#include <ev.h>

#include "core/certstore.h"
#include "lib/hmap.h"
#include "storage/storage.h"

struct nameidx;

#define CERTSTORE_SYNC_RETRY_S	5.0
#define CERTSTORE_LOAD_WINDOW	256	/* start-up reads in flight */
#define CERTSTORE_FILL_WINDOW	128	/* on_demand background metadata reads in flight */
#define CERTSTORE_FILL_STEP	4096	/* names of the index walked in one loop turn */
#define CERTSTORE_REFUSED_MAX	4096	/* stored bundles remembered as refused */
#define CERTSTORE_REFUSED_S	300	/* seconds before such a bundle is read again */
#define CERTSTORE_RECENT_MAX	4096	/* other members' names changed lately, kept */
#define CERTSTORE_PROBED_MAX	4096	/* names looked up absent while indexing, kept */
#define CERTSTORE_FETCH_WINDOW	32	/* other nodes' certificates read at once */
#define CERTSTORE_FETCH_MAX	65536	/* more waiting: dropped (the feed reads them) */

struct certstore_fetch;

struct certstore_sync;

struct certstore {
	struct ev_loop *loop;
	const struct config *cfg;
	struct storage *st;
	struct health *health;
	struct rt *rt;
	struct workq *wq;		/* cert_dir writes and unlinks */
	struct nameidx *names;		/* every stored certificate's name */
	struct hmap certs;		/* host -> struct certstore_cert: the full entries
					 * (on_demand: the share, the hot set and the ones
					 * touched lately; the other names are index-only) */
	struct certstore_hooks hooks;
	size_t loading;			/* start-up: certificate reads in flight */
	/* on_demand: the start-up read of the stored names into the index, in
	 * the background (certstore_load_start); meanwhile an SNI of a name not
	 * indexed yet looks it up in storage (a probe) */
	int indexing;
	struct storage_req *index_req;	/* the feed page or listing in flight */
	size_t index_pages;
	ev_tstamp index_start;
	void (*indexed)(void *arg, size_t n);
	void *indexed_arg;
	struct hmap probed;		/* host -> (void *)1: looked up, not stored */
	/* redis: the sweep of "certs/" for names stored without a feed entry
	 * (certsweep.c) */
	ev_timer sweep_timer;
	unsigned sweep_interval;	/* 0: never started */
	char sweep_owner[STORAGE_OWNER_MAX];
	struct storage_req *sweep_req;	/* the lock or a page in flight */
	int sweeping;
	uint64_t sweep_cursor;
	ev_tstamp sweep_start, sweep_last;
	size_t sweep_seen, sweep_added;
	int filling;			/* on_demand: the share's metadata read in the background */
	size_t fill_pos;		/* cursor in <names> (nameidx_next) */
	unsigned long fill_gen;		/* nameidx_gen() when <fill_pos> was taken */
	size_t fill_inflight, filled;
	size_t fill_meta;		/* of <filled>: from "meta/<host>" records */
	ev_tstamp fill_start;
	ev_timer fill_next;		/* the walk goes on at the next loop turn */
	unsigned long pem_parsed;	/* PEMs parsed for metadata alone */
	/* on_demand: the names of other members' certificates stored lately
	 * (a ring, oldest overwritten): when the members change, the ones now
	 * this node's are read before the walk of the whole index, so that a
	 * dead node's fresh work (a certificate stored due, an import) is
	 * taken over at once, not when the walk reaches it */
	/* other nodes' certificates to read (certstore_fetch): a window in
	 * flight, the rest waiting, each name once, so that a wave of changes
	 * never queues thousands of reads on the store's connection ahead of an
	 * http-01 look-up that HAProxy waits for */
	struct hmap fetches;		/* host -> struct certstore_fetch */
	TAILQ_HEAD(, certstore_fetch) fetch_wait;
	size_t fetch_inflight, fetch_waiting;
	unsigned long fetch_dropped;
	char *recent[CERTSTORE_RECENT_MAX];
	size_t recent_next;
	size_t fill_recent;		/* of them, read first at the last start of the fill */
	LIST_HEAD(, certstore_sync) syncs;	/* HAProxy listings under way */
	TAILQ_HEAD(certstore_lru, certstore_cert) lru;	/* loaded ones, last seen first */
	size_t nloaded;
	unsigned long evicted;
	unsigned long push_ok, push_failed;
	unsigned long refused[CERTSTORE_SRC__MAX];	/* bundles failing the check */
	struct hmap refused_until;	/* host -> time_t (malloc'd): on_demand, its stored
					 * bundle failed the check; not read again before */
	int started;			/* certstore_start() ran */
	int closing;			/* certstore_free() runs */
};

/* on_demand: <host>'s stored bundle failed the check; not read again for a while. */
void certstore_refused_put(struct certstore *cs, const char *host);

/* 1 while <host>'s stored bundle counts as refused. */
int certstore_refused_active(struct certstore *cs, const char *host);

/* Frees a full entry (its PEM cleansed). Accepts NULL. */
void certstore_cert_free(void *p);

/* 1 with preload all: every certificate in full, with its PEM. */
int certstore_keeps_pem(const struct certstore *cs);

/* on_demand: the PEM leaves memory once nothing under way needs it. */
void certstore_trim(struct certstore *cs, struct certstore_cert *c);

/* 1 when this node keeps <host>'s full entry out of the hot set (the detail hook). */
int certstore_wants(const struct certstore *cs, const char *host);

/* on_demand: a full entry, without metadata yet, for the index-only <host>. */
struct certstore_cert *certstore_promote(struct certstore *cs, const char *host);

/* on_demand: <c> back to index-only when nothing here needs it; 1 when freed. */
int certstore_demote(struct certstore *cs, struct certstore_cert *c);

/* Storage callback that only logs and counts an error. */
void certstore_storage_log(void *arg, struct storage_res *res);

/* Checks <pem> for <host> before anything of it is kept, written or pushed. */
int certstore_verify(struct certstore *cs, const char *host, const char *pem, size_t len,
		     enum certstore_src src, struct crypto_cert_info *ci);

/* Fills <c>'s metadata from <ci> when it differs (fires installed): 1, 0 or -1. */
int certstore_learn_info(struct certstore *cs, struct certstore_cert *c,
			 const struct crypto_cert_info *ci);

/* Learns from a parsed PEM and writes the metadata record when it changed. */
int certstore_learn_pem(struct certstore *cs, struct certstore_cert *c,
			const struct crypto_cert_info *ci);

/* Parses <pem> and learns from it (certstore_learn_pem). 0 or -1. */
int certstore_learn(struct certstore *cs, struct certstore_cert *c, const char *pem, size_t len);

/* on_demand: remembers <host>, another member's certificate just stored
 * (certstore_fill_start reads the ones now this node's first). */
void certstore_recent_put(struct certstore *cs, const char *host);

/* on_demand: starts (over) the background read of the share's metadata. */
void certstore_fill_start(struct certstore *cs);

/* The background read's timer callback: the walk of the index goes on. */
void cb_certstore_fill_next(struct ev_loop *loop, ev_timer *w, int revents);

/* Ends one HAProxy sync round (certdeploy.c). */
void certstore_sync_free(struct certstore_sync *s);

#endif
