/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "lib/fsutil.h"

static int fs_fsync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, ret = -1;

	if (!copy)
		return -1;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		goto out;
	ret = fsync(fd);
	close(fd);
out:
	free(copy);
	return ret;
}

/* "<dir>/.tmp/<base>.<pid>.<seq>": temp files never live where a reader of
 * <dir> (HAProxy's "crt <dir>") looks, yet on the same file system. The
 * folder is made by the first write that misses it. */
static int fs_tmp_name(const char *path, char *tmp, size_t tmplen, char *err, size_t errlen)
{
	static unsigned seq;
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	int dirlen = slash ? (int)(slash - path) : 1;
	const char *dir = slash ? path : ".";

	if (slash == path)
		dirlen = 0;
	if (snprintf(tmp, tmplen, "%.*s/" FS_TMP_DIR "/%s.%ld.%u", dirlen, dir, base, (long)getpid(),
		     __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED)) >= (int)tmplen) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	return 0;
}

static int fs_write(const char *path, const void *data, size_t len, mode_t mode, int sync,
		    char *err, size_t errlen)
{
	char tmp[4096];
	const char *p = data;
	int fd = -1, ret = -1;

	if (fs_tmp_name(path, tmp, sizeof(tmp), err, errlen) == -1)
		return -1;
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd == -1 && errno == ENOENT) {
		/* the first write into this directory: make its temp folder */
		char *slash = strrchr(tmp, '/');

		*slash = '\0';
		if (mkdir(tmp, 0700) == -1 && errno != EEXIST) {
			snprintf(err, errlen, "%s: mkdir: %s", tmp, strerror(errno));
			return -1;
		}
		*slash = '/';
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	}
	if (fd == -1) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (fchmod(fd, mode) == -1) {
		snprintf(err, errlen, "%s: chmod: %s", tmp, strerror(errno));
		goto out;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "%s: write: %s", tmp, strerror(errno));
			goto out;
		}
		p += n;
		len -= n;
	}
	if (sync && fsync(fd) == -1) {
		snprintf(err, errlen, "%s: fsync: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) == -1) {
		fd = -1;
		snprintf(err, errlen, "%s: close: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		snprintf(err, errlen, "%s: rename: %s", path, strerror(errno));
		goto out;
	}
	if (sync && fs_fsync_dir(path) == -1) {
		snprintf(err, errlen, "%s: fsync dir: %s", path, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (fd != -1)
		close(fd);
	if (ret == -1)
		unlink(tmp);
	return ret;
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    char *err, size_t errlen)
{
	return fs_write(path, data, len, mode, 1, err, errlen);
}

int fs_write_atomic_nosync(const char *path, const void *data, size_t len, mode_t mode,
			   char *err, size_t errlen)
{
	return fs_write(path, data, len, mode, 0, err, errlen);
}

int fs_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret;

	if (fd == -1)
		return -1;
	ret = syncfs(fd);
	close(fd);
	return ret;
}

/* 1 when the process whose pid ends temp name <name> ("….<pid>.<seq>", or
 * the older "….tmp.<pid>") is gone. */
static int fs_tmp_writer_gone(const char *name, int legacy)
{
	const char *dot = strrchr(name, '.');
	long pid;

	if (!dot)
		return 1;
	if (!legacy) {
		const char *p = dot;

		while (p > name && p[-1] != '.')
			p--;
		if (p == name)
			return 1;
		dot = p - 1;
	}
	pid = strtol(dot + 1, NULL, 10);
	if (pid <= 0 || pid == (long)getpid())
		return pid <= 0;
	return kill((pid_t)pid, 0) == -1 && errno != EPERM;
}

static int fs_legacy_tmp(const char *name)
{
	const char *t = strstr(name, ".tmp.");
	const char *p;

	if (!t || t == name)
		return 0;
	for (p = t + 5; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return p > t + 5;
}

size_t fs_clean_tmp(const char *dir)
{
	char path[4096];
	size_t removed = 0;
	time_t now = time(NULL);
	int pass;

	/* pass 0: <dir>/.tmp/; pass 1: "<name>.tmp.<pid>" left in <dir> itself
	 * by versions that wrote their temp files there */
	for (pass = 0; pass < 2; pass++) {
		DIR *d;
		struct dirent *de;

		if (snprintf(path, sizeof(path), pass ? "%s" : "%s/" FS_TMP_DIR, dir) >= (int)sizeof(path))
			return removed;
		if (!(d = opendir(path)))
			continue;
		while ((de = readdir(d)) != NULL) {
			struct stat st;

			if (de->d_name[0] == '.' || (pass && !fs_legacy_tmp(de->d_name)))
				continue;
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
			    !S_ISREG(st.st_mode))
				continue;
			if (!fs_tmp_writer_gone(de->d_name, pass) && now - st.st_mtime < FS_TMP_MAX_AGE)
				continue;
			if (unlinkat(dirfd(d), de->d_name, 0) == 0)
				removed++;
		}
		closedir(d);
	}
	return removed;
}
