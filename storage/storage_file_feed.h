/* SPDX-License-Identifier: Apache-2.0 */
/* The file backend's change feed (storage.h's feed_put/feed_since contract),
 * shared by every process on one root directory. Blocking: run on the
 * storage front's worker threads. */
#ifndef ACME_SPOA_STORAGE_FILE_FEED_H
#define ACME_SPOA_STORAGE_FILE_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

struct file_feed;

/* Prepares the feeds of root directory <root> (<bulk>: writes not fsync'd,
 * see storage_conf.file_bulk). NULL with <err>. */
struct file_feed *file_feed_new(const char *root, int bulk, char *err, size_t errlen);

/* Accepts NULL. */
void file_feed_free(struct file_feed *ff);

/* Records <member> at <version> (NULL: removed) with the next generation,
 * returned in <gen>. 0, or -1 with <err>. */
int file_feed_put(struct file_feed *ff, const char *feed, const char *member, const char *version,
		  uint64_t *gen, char *err, size_t errlen);

/* Fills <res> (keys, vals, n, gen, more) with the changes after <since>.
 * 0, or -1 with <err>. */
int file_feed_since(struct file_feed *ff, const char *feed, uint64_t since, struct storage_res *res,
		    char *err, size_t errlen);

#endif
