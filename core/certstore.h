/* SPDX-License-Identifier: Apache-2.0 */
/* The certificate store: every stored certificate's name in a compact index
 * (core/nameidx: O(1) look-ups on the SPOE path), full entries in memory, in
 * storage as "certs/<host>" (chain + key PEM), in
 * haproxy.cert_dir (so a HAProxy restart serves it) and in HAProxy over the
 * runtime sockets.
 *
 * It reports changes through hooks its owner sets and calls nothing above it:
 * jobs, renewal, the fleet feed and the API use it, never the reverse. */
#ifndef ACME_SPOA_CERTSTORE_H
#define ACME_SPOA_CERTSTORE_H

#include <stddef.h>
#include <sys/queue.h>
#include <time.h>

#include "acme/crypto.h"

struct config;
struct ev_loop;
struct health;
struct rt;
struct storage;

#define CERTSTORE_HOST_MAX 256
/* cert_dir file name prefix standing for "*" of a wildcard certificate:
 * "*.apps.example.com" is written "_wildcard_.apps.example.com.pem" */
#define CERTSTORE_WILDCARD_FILE "_wildcard_"
/* cert_dir file name of a name longer than CERTSTORE_FILE_HOST_MAX:
 * "_long_<SHA-256 of the name, 64 hex digits>.pem" (within NAME_MAX with the
 * temp name's ".<pid>.<seq>") */
#define CERTSTORE_LONG_FILE "_long_"
#define CERTSTORE_FILE_HOST_MAX 200

/* pub/sub channel announcing "<host>" when a node stores a new certificate */
#define CERTSTORE_CHANNEL "certs"
/* change feed of certificates: member host, version serial_hex */
#define CERTSTORE_FEED "certs"

/* Metadata record of a certificate, stored as "meta/<host>" after
 * "certs/<host>" (a record never names a certificate not stored) and read
 * at an on_demand start instead of the PEM: a versioned JSON object
 * {"v":1,"host","serial","not_before","not_after" (Unix seconds),"sha1",
 * "issuer","key","ari"}. */
#define CERTSTORE_META_PREFIX "meta/"
#define CERTSTORE_META_VERSION 1
#define CERTSTORE_META_MAX 4096			/* largest record read */
#define CERTSTORE_META_TIME_MAX 253402300799LL	/* 9999-12-31 23:59:59 UTC */

/* What memory keeps of a certificate (a few hundred bytes): enough for the
 * admin API, renewal and the fleet's versions. The strings are never NULL
 * ("" when unknown). */
struct certstore_info {
	time_t not_before, not_after;	/* certstore_time_str() writes them out */
	const char *serial_hex, *digest_sha1, *issuer_cn, *pubkey_type, *ari_cert_id;
	char *strs;			/* where the strings live */
};

/* A certificate held in memory: its metadata, and its PEM only with
 * haproxy.preload all (on_demand reads it from storage when it is pushed or
 * written, and keeps it only while it is). */
struct certstore_cert {
	char *pem;			/* chain + key bundle as stored, or NULL */
	size_t len;
	int on_disk;			/* this very certificate is in haproxy.cert_dir */
	int has_info;			/* <info> known (on_demand start: read in the
					 * background after the index) */
	struct certstore_info info;
	unsigned writing;		/* cert_dir writes in flight */
	int loaded;			/* HAProxy holds a certificate of this host (pushed
					 * and committed, or listed by HAProxy) */
	unsigned pushing;		/* deploys under way: cert_dir write, then push */
	int probing;			/* while the index is read: an SNI's look-up of a
					 * name not indexed yet, maybe not stored */
	TAILQ_ENTRY(certstore_cert) lru;	/* the loaded ones, last SNI seen first */
	char host[];
};

/* Bytes of certstore_time_str()'s output, its NUL included. */
#define CERTSTORE_TIME_STR 20

/* <t> as "YYYY-MM-DD HH:MM:SS" UTC in <out> (as crypto_cert_info() writes
 * dates; written when asked, not kept in each of a million entries).
 * Returns <out>. */
const char *certstore_time_str(time_t t, char out[CERTSTORE_TIME_STR]);

/* What an SNI finds (certstore_seen()). */
enum certstore_seen {
	CERTSTORE_SEEN_LOADED = 0,	/* HAProxy serves it: nothing to wait for */
	CERTSTORE_SEEN_LOADING,		/* being pushed: certstore_hooks.loaded follows */
	CERTSTORE_SEEN_ABSENT,		/* no certificate in memory, or (on_demand) its
					 * stored bundle failed the check minutes ago */
	CERTSTORE_SEEN__MAX
};

/* What the store reports to its owner; every member may be NULL. The hooks
 * run inside the store's calls (no store call may free the store). */
struct certstore_hooks {
	/* <c> is now memory's certificate of its host (new or replacing one) */
	void (*installed)(void *arg, const struct certstore_cert *c);
	/* <host>'s certificate left memory */
	void (*removed)(void *arg, const char *host);
	/* certstore_fetch() replaced memory's certificate of <host> by the one
	 * another node stored */
	void (*received)(void *arg, const char *host);
	/* a push of <host>'s certificate into HAProxy ended (<ok>: committed
	 * and in the crt-list on every runtime socket) */
	void (*loaded)(void *arg, const char *host, int ok);
	/* preload on_demand: 1 when this node keeps <host>'s full entry (its
	 * metadata and renewal) even out of the hot set: its renewal share, a
	 * job under way. NULL: every name (a single node). */
	int (*detail)(void *arg, const char *host);
	void *arg;
};

/* Creates a store over <st> writing to <cfg>'s cert_dir (created if missing),
 * with its cert_dir worker queue; <cfg>, <st> and <health> are borrowed and
 * must outlive it. No runtime socket yet (certstore_runtime_open()). Returns
 * NULL with <err> set. */
struct certstore *certstore_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
				struct health *health, char *err, size_t errlen);

/* Opens the HAProxy runtime client on <cfg>'s runtime sockets; a HAProxy
 * reload seen there re-syncs it. Returns 0, or -1 with <err> set. */
int certstore_runtime_open(struct certstore *cs, char *err, size_t errlen);

/* The runtime client (NULL before certstore_runtime_open()): for stats. */
struct rt *certstore_runtime(const struct certstore *cs);

/* Sets the hooks (copied) through which <cs> reports changes. */
void certstore_set_hooks(struct certstore *cs, const struct certstore_hooks *hooks);

/* Finishes the cert_dir writes in flight (nothing more is pushed), closes the
 * runtime client, frees every certificate without firing a hook, and <cs>.
 * Accepts NULL. */
void certstore_free(struct certstore *cs);

/* Memory's full entry of <host> (owned by the store), or NULL: not stored,
 * or (preload on_demand) index-only, certstore_stored() tells. */
struct certstore_cert *certstore_get(const struct certstore *cs, const char *host);

/* 1 when a certificate of <host> is stored (in the index, in full or not). */
int certstore_stored(const struct certstore *cs, const char *host);

/* How many certificates are stored (the names of the index). */
size_t certstore_count(const struct certstore *cs);

/* How many of them memory holds in full (with preload all: every one; on
 * demand: this node's share, its hot set and the ones touched lately). */
size_t certstore_detailed(const struct certstore *cs);

/* Bytes the index of names holds (nameidx_bytes). */
size_t certstore_index_bytes(const struct certstore *cs);

/* preload on_demand: the fleet's members changed (the detail hook answers
 * otherwise): full entries no longer this node's and not hot drop to the
 * index (removed fires), and the names newly its own get their metadata
 * read in the background, a window at a time. */
void certstore_members_changed(struct certstore *cs);

/* Calls <cb>(<arg>, cert) with <host>'s certificate: memory's full entry at
 * once; for an index-only name (preload on_demand) one read from storage on
 * a later loop turn: its "meta/<host>" record, else its certificate parsed
 * (a transient entry, valid during the call, nothing kept); NULL when not
 * stored or unreadable. Returns 0, or -1 when out of memory (no call). */
int certstore_peek(struct certstore *cs, const char *host,
		   void (*cb)(void *arg, const struct certstore_cert *c), void *arg);

/* Calls <fn>(<arg>, host, its full entry or NULL) for every stored name;
 * <fn> must not install or remove any. */
void certstore_foreach_name(const struct certstore *cs,
			    void (*fn)(void *arg, const char *host, struct certstore_cert *c),
			    void *arg);

/* Calls <fn>(<arg>, cert) for every full entry; <fn> must not install or
 * remove any. */
void certstore_foreach(const struct certstore *cs,
		       void (*fn)(void *arg, struct certstore_cert *c), void *arg);

/* Where a bundle came from, for the refusal counters. */
enum certstore_src {
	CERTSTORE_SRC_CA = 0,		/* a new order (certstore_install) */
	CERTSTORE_SRC_STORAGE,		/* storage, the fleet's feed, pub/sub (certstore_take) */
	CERTSTORE_SRC__MAX
};

/* Verifies <pem>/<len> for <host> (crypto_bundle_check: one key matching the
 * leaf, the leaf covers <host>, the chain parses, not expired), then parses
 * and installs it in memory, replacing any older one (fires installed).
 * Returns the certificate, or NULL when <pem> fails the check (logged,
 * counted: nothing of it is kept, written or pushed) or out of memory. */
struct certstore_cert *certstore_install(struct certstore *cs, const char *host, const char *pem,
					 size_t len);

/* Bundles refused by the check, by source. */
unsigned long certstore_refused(const struct certstore *cs, enum certstore_src src);

/* Writes <c> to haproxy.cert_dir (on the worker queue) unless it is there,
 * then pushes it over every runtime socket. */
void certstore_deploy(struct certstore *cs, struct certstore_cert *c);

/* Deploys <c>, just issued: always a new name (someone asked for it); a
 * renewal only where HAProxy holds the host (preload on_demand: the hot set;
 * elsewhere its PEM leaves memory, storage has it). */
void certstore_deploy_issued(struct certstore *cs, struct certstore_cert *c, int renewal);

/* Installs <pem>/<len> read from "certs/<host>" unless memory holds that very
 * certificate; deploys it when <deploy>. Returns the certificate when it
 * changed, else NULL. */
struct certstore_cert *certstore_take(struct certstore *cs, const char *host, const char *pem,
				      size_t len, int deploy);

/* Drops <host>'s certificate from memory (fires removed), cert_dir and
 * HAProxy. Storage is the caller's. */
void certstore_remove(struct certstore *cs, const char *host);

/* Reads "certs/<host>", which another node changed, from storage: when it
 * differs from memory's, it is installed, deployed and reported (received);
 * when absent, memory's is removed. Each name once (a second call while it
 * is read reads it again after), at most 32 reads at once, the rest waiting
 * in order (beyond 65,536 waiting a name is dropped: the change feed's next
 * read names it again). Completes on a later loop turn. */
void certstore_fetch(struct certstore *cs, const char *host);

/* Names waiting for certstore_fetch()'s window. */
size_t certstore_fetch_backlog(const struct certstore *cs);

/* Tells the fleet that <host>'s certificate changed (<serial> its version,
 * NULL: deleted): the change feed first, then pub/sub. */
void certstore_announce(struct certstore *cs, const char *host, const char *serial);

/* The metadata record of <host> with <info>: malloc'd JSON (its length in
 * <len> when not NULL), or NULL when out of memory. */
char *certstore_meta_encode(const char *host, const struct certstore_info *info, size_t *len);

/* Reads record <text>/<len> of "meta/<host>" into <out> (no SANs, no subject):
 * version 1, its host <host> (through lib/host), every string of the shape
 * crypto_cert_info() writes and within its size, times in range. Returns 0,
 * or -1 with the reason in <err> (<out> zeroed). */
int certstore_meta_decode(const char *host, const char *text, size_t len,
			  struct crypto_cert_info *out, char *err, size_t errlen);

/* Writes "meta/<host>" of <c> (nothing without its metadata); call it once
 * "certs/<host>" is stored. Errors are logged. */
void certstore_meta_put(struct certstore *cs, const struct certstore_cert *c);

/* Deletes "meta/<host>"; call it before deleting "certs/<host>". */
void certstore_meta_del(struct certstore *cs, const char *host);

/* PEMs parsed for their metadata alone (on_demand: background reads and
 * deploy reads), for tests. */
unsigned long certstore_pem_parsed(const struct certstore *cs);

/* on_demand: names the last members change had read first, ahead of the
 * walk of the index, because another member's certificate of theirs was
 * stored lately (certstore_members_changed). */
size_t certstore_fill_recent(const struct certstore *cs);

/* Start-up only, before any server listens (runs the loop): reads every
 * stored certificate into memory, without deploying. With preload on_demand
 * it reads only the listing of names into the index (freed as it goes): the
 * metadata of the names this node keeps in full (the detail hook) is then
 * read in the background from certstore_start(), a window at a time, from
 * the "meta/<host>" records (installed fires as each is known); a host
 * without a good record has its certificate read and parsed instead (not
 * kept), which writes the record. Returns how many are stored. */
size_t certstore_load(struct certstore *cs);

/* on_demand: certstore_load() in the background, so that a node serves at
 * once whatever the number of names: the names are read into the index
 * (redis: the change feed's members, a page at a time, the next asked for
 * while this one is indexed; elsewhere, or when the feed cannot be read,
 * the listing) and <done>(arg, count) runs when all are in. Meanwhile
 * certstore_indexing() is 1 and an SNI of a name not indexed yet is looked
 * up in storage: a stored one is indexed and pushed (held like any name
 * pushed on its first SNI), one not stored is answered absent (and
 * remembered until the index is read). Returns 0, or -1 with preload all
 * (certstore_load() then). */
int certstore_load_start(struct certstore *cs, void (*done)(void *arg, size_t n), void *arg);

/* redis, on_demand: the sweep (core/certsweep.c): once per <interval_s> in
 * the fleet (the lock "sweep/certs" under <owner>), the first try a tenth
 * of it after the call (at most 10 minutes), one node walks "certs/" a page
 * at a time and gives each name stored without a change feed entry one.
 * 0, or -1 when the store or the mode needs none (nothing started). */
int certstore_sweep_start(struct certstore *cs, const char *owner, unsigned interval_s);

/* Stops the sweep (certstore_free does). */
void certstore_sweep_stop(struct certstore *cs);

/* 1 while certstore_load_start()'s read runs. */
int certstore_indexing(const struct certstore *cs);

/* Once the agent is ready: starts the background work certstore_load() left
 * (on_demand: the metadata of the certificates of the index). */
void certstore_start(struct certstore *cs);

/* Start-up only: writes to cert_dir every certificate missing there (same
 * size: taken as written), without an fsync each, then flushes the directory
 * once; nothing with preload on_demand (cert_dir is the hot set). Returns how
 * many were written. */
size_t certstore_ensure_files(struct certstore *cs);

/* An SNI of <host> was seen: with haproxy.preload on_demand, a certificate
 * HAProxy does not hold (index-only ones made full) is deployed now and the name becomes the most
 * recently used of the hot set (beyond haproxy.max_loaded, the names idle
 * longest leave HAProxy and cert_dir; storage keeps them). A stored bundle
 * that fails the check is not read again for 5 minutes, and answers ABSENT
 * meanwhile (a new certificate installed ends that). With preload all, only a
 * deploy under way counts as loading. */
enum certstore_seen certstore_seen(struct certstore *cs, const char *host);

/* How many certificates HAProxy holds as far as the store knows. */
size_t certstore_loaded_count(const struct certstore *cs);

/* Pushes every certificate HAProxy behind runtime socket <idx> lacks (listed
 * first; retried while HAProxy does not answer); with preload on_demand it
 * only learns which ones HAProxy holds. */
void certstore_sync_haproxy(struct certstore *cs, size_t idx);

#endif
