/* SPDX-License-Identifier: Apache-2.0 */
/* Blocking wrappers over the asynchronous storage API, for tests and
 * command-line tools only (each runs the storage's loop until its operation
 * completes; never call them from a loop callback). Same return codes as
 * struct storage_res. Header-only: each tool is built from one .c file. */
#ifndef ACME_SPOA_STORAGE_SYNC_H
#define ACME_SPOA_STORAGE_SYNC_H

#include <stdio.h>
#include <string.h>

#include "storage/storage.h"

static inline int ss_get(struct storage *st, const char *key, char **val, size_t *len,
			 char *err, size_t errlen)
{
	struct storage_res r;
	int rc = storage_wait(st, storage_get(st, key, NULL, NULL), &r, err, errlen);

	*val = r.val;
	*len = r.len;
	return rc;
}

static inline int ss_put(struct storage *st, const char *key, const char *val, size_t len,
			 unsigned ttl_sec, char *err, size_t errlen)
{
	struct storage_res r;

	return storage_wait(st, storage_put(st, key, val, len, ttl_sec, NULL, NULL), &r, err, errlen);
}

static inline int ss_del(struct storage *st, const char *key, char *err, size_t errlen)
{
	struct storage_res r;

	return storage_wait(st, storage_del(st, key, NULL, NULL), &r, err, errlen);
}

static inline int ss_list(struct storage *st, const char *prefix, char ***keys, size_t *n,
			  char *err, size_t errlen)
{
	struct storage_res r;
	int rc = storage_wait(st, storage_list(st, prefix, NULL, NULL), &r, err, errlen);

	*keys = r.keys;
	*n = r.n;
	return rc;
}

static inline int ss_lock(struct storage *st, const char *name, const char *owner,
			  unsigned lease_ms, char *err, size_t errlen)
{
	struct storage_res r;

	return storage_wait(st, storage_lock(st, name, owner, lease_ms, NULL, NULL), &r, err, errlen);
}

/* ss_lock, with the lock's fencing generation into <gen>. */
static inline int ss_lock_gen(struct storage *st, const char *name, const char *owner,
			      unsigned lease_ms, uint64_t *gen, char *err, size_t errlen)
{
	struct storage_res r;
	int rc = storage_wait(st, storage_lock(st, name, owner, lease_ms, NULL, NULL), &r, err, errlen);

	*gen = r.gen;
	return rc;
}

static inline int ss_lock_fenced(struct storage *st, const char *name, const char *owner,
				 uint64_t gen, unsigned lease_ms, char *err, size_t errlen)
{
	struct storage_res r;

	return storage_wait(st, storage_lock_fenced(st, name, owner, gen, lease_ms, NULL, NULL), &r,
			    err, errlen);
}

static inline int ss_put_fenced(struct storage *st, const char *key, const char *val, size_t len,
				const char *fence, const char *owner, uint64_t gen,
				char *err, size_t errlen)
{
	struct storage_res r;

	return storage_wait(st, storage_put_fenced(st, key, val, len, fence, owner, gen, NULL, NULL),
			    &r, err, errlen);
}

static inline int ss_unlock(struct storage *st, const char *name, const char *owner,
			    char *err, size_t errlen)
{
	struct storage_res r;

	return storage_wait(st, storage_unlock(st, name, owner, NULL, NULL), &r, err, errlen);
}

static inline int ss_ping(struct storage *st, char *err, size_t errlen)
{
	struct storage_res r;

	return storage_wait(st, storage_ping(st, NULL, NULL), &r, err, errlen);
}

static inline int ss_publish(struct storage *st, const char *channel, const char *msg, size_t len,
			     char *err, size_t errlen)
{
	struct storage_res r;

	return storage_wait(st, storage_publish(st, channel, msg, len, NULL, NULL), &r, err, errlen);
}

static inline int ss_feed_put(struct storage *st, const char *feed, const char *member,
			      const char *version, char *err, size_t errlen)
{
	struct storage_res r;

	return storage_wait(st, storage_feed_put(st, feed, member, version, NULL, NULL), &r, err,
			    errlen);
}

#endif
