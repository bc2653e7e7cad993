#include <errno.h>
#include <fcntl.h>
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

static int fs_write(const char *path, const void *data, size_t len, mode_t mode, int sync,
		    char *err, size_t errlen)
{
	char tmp[4096];
	const char *p = data;
	int fd = -1, ret = -1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
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
