/* SPDX-License-Identifier: Apache-2.0 */
/* slow_fsync: an LD_PRELOAD shim that makes fsync() and fdatasync() slow, so
 * tests can check that nothing waits on the disk (the event loop keeps its
 * cadence while the file store syncs on its worker threads).
 *
 *   LD_PRELOAD=build/tools/slow_fsync.so SLOW_FSYNC_MS=500 \
 *   SLOW_FSYNC_PATH=/tmp/it.xyz/store ./acme-spoa ...
 *
 * SLOW_FSYNC_MS    delay added before each call, in ms (unset or 0: none)
 * SLOW_FSYNC_PATH  only files and directories whose path starts with this
 *                  (unset: every descriptor)
 * Both are read once, when the shim is loaded. The sync itself still happens
 * (a raw system call after the delay). Under AddressSanitizer add
 * ASAN_OPTIONS=verify_asan_link_order=0, since the shim precedes its
 * runtime in the list of libraries. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long slow_ms;
static char slow_path[4096];

__attribute__((constructor)) static void slow_fsync_init(void)
{
	const char *ms = getenv("SLOW_FSYNC_MS"), *path = getenv("SLOW_FSYNC_PATH");

	slow_ms = ms ? strtol(ms, NULL, 10) : 0;
	if (slow_ms < 0)
		slow_ms = 0;
	if (path)
		snprintf(slow_path, sizeof(slow_path), "%s", path);
}

/* Returns 1 if a sync of <fd> is to be slowed down. */
static int slow_fsync_applies(int fd)
{
	char link[64], target[4096];
	ssize_t n;

	if (slow_ms == 0)
		return 0;
	if (slow_path[0] == '\0')
		return 1;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n == -1)
		return 0;
	target[n] = '\0';
	return strncmp(target, slow_path, strlen(slow_path)) == 0;
}

static void slow_fsync_delay(int fd)
{
	struct timespec ts;
	int saved = errno;

	if (!slow_fsync_applies(fd))
		return;
	ts.tv_sec = slow_ms / 1000;
	ts.tv_nsec = (slow_ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
	errno = saved;
}

int fsync(int fd)
{
	slow_fsync_delay(fd);
	return (int)syscall(SYS_fsync, fd);
}

int fdatasync(int fd)
{
	slow_fsync_delay(fd);
	return (int)syscall(SYS_fdatasync, fd);
}
