/* Small file-system helpers for durable writes. */
#ifndef ACME_SPOA_FSUTIL_H
#define ACME_SPOA_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Writes <len> bytes to <path> atomically and durably: a temp file in the same
 * directory created with <mode>, written, fsync'd, renamed over <path>, and the
 * directory fsync'd. Readers see the old or the new content, never a mix.
 * Returns 0, or -1 with the reason in <err>. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    char *err, size_t errlen);

/* The same without the two fsyncs, for files rebuilt from a durable source
 * in bulk: the caller makes them durable at once with fs_sync_dir(). */
int fs_write_atomic_nosync(const char *path, const void *data, size_t len, mode_t mode,
			   char *err, size_t errlen);

/* Flushes the file system holding directory <dir> (syncfs). 0 or -1. */
int fs_sync_dir(const char *dir);

#endif
