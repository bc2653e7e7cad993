/* SPDX-License-Identifier: Apache-2.0 */
/* Small file-system helpers for durable writes. */
#ifndef ACME_SPOA_FSUTIL_H
#define ACME_SPOA_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Temp files of <dir>/<name> are written in <dir>/FS_TMP_DIR: a directory
 * (and a hidden name) that HAProxy's "crt <dir>" skips, on the same file
 * system so that the rename is atomic. */
#define FS_TMP_DIR ".tmp"
/* a temp file this old is a leftover even if its writer's pid is alive */
#define FS_TMP_MAX_AGE 3600

/* Writes <len> bytes to <path> atomically and durably: a temp file in
 * <dir>/FS_TMP_DIR created with <mode>, written, fsync'd, renamed over <path>, and the
 * directory fsync'd. Readers see the old or the new content, never a mix.
 * Returns 0, or -1 with the reason in <err>. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    char *err, size_t errlen);

/* The same without the two fsyncs, for files rebuilt from a durable source
 * in bulk: the caller makes them durable at once with fs_sync_dir(). */
int fs_write_atomic_nosync(const char *path, const void *data, size_t len, mode_t mode,
			   char *err, size_t errlen);

/* Removes the temp files of dead writers (and those over FS_TMP_MAX_AGE)
 * from <dir>/FS_TMP_DIR, and the "<name>.tmp.<pid>" files older versions left
 * in <dir> itself. Returns how many were removed. */
size_t fs_clean_tmp(const char *dir);

/* Flushes the file system holding directory <dir> (syncfs). 0 or -1. */
int fs_sync_dir(const char *dir);

#endif
