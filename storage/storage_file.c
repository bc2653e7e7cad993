/* SPDX-License-Identifier: Apache-2.0 */
/* file backend: one file per key under the root dir, written atomically
 * (temp file + fsync + rename + fsync of the directory), so after kill -9 or
 * a power cut a reader sees the old or the new value, never a mix.
 *
 * On disk a value is "ASPA1 <expires_ms> <len>\n" followed by exactly <len>
 * bytes (expires_ms: Unix ms, 0 = never). A lock "a/b" is the file
 * "#locks/a/b" holding "ASPL1 <expires_ms> <owner>\n". Names containing '#'
 * are outside the key grammar, so temp files ("#tmp.<pid>.<seq>"), "#locks"
 * and the lock guard never show up as keys. Lock operations are serialized
 * by a mutex (threads) and flock() on "#locks/#guard" (processes, and other
 * storage instances in this process since each opens the guard itself).
 * Change feeds live in "#feeds" (storage_file_feed.c).
 * A key cannot be both a value and a prefix directory of another key here. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "storage/storage.h"
#include "storage/storage_file_feed.h"

#define FILE_DEFAULT_ROOT "/var/lib/acme-spoa"
#define FILE_VAL_MAGIC    "ASPA1 "
#define FILE_LOCK_MAGIC   "ASPL1 "
#define FILE_HDR_MAX      64
#define FILE_VAL_MAX      (64u << 20)
#define FILE_TMP_PREFIX   "#tmp."
#define FILE_TMP_MAX_AGE  3600

struct file_be {
	char *root;
	int guard_fd;
	pthread_mutex_t mu;
	unsigned seq;
	int bulk;		/* no fsync per write: the caller syncs once (storage_conf) */
	struct file_feed *feed;	/* change feeds, "#feeds" */
};

struct file_list {
	char **keys;
	size_t n, cap;
};

static uint64_t file_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int file_path(const struct file_be *be, const char *sub, const char *key,
		     char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/%s%s", be->root, sub, key);

	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int file_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret;

	if (fd == -1)
		return -1;
	ret = fsync(fd);
	close(fd);
	return ret;
}

/* Creates every missing directory of <path> below the root (mode 0700), each
 * made durable by an fsync of its parent. The last component is a file. */
static int file_mkdirs(const struct file_be *be, const char *path)
{
	char buf[PATH_MAX];
	size_t rootlen = strlen(be->root);
	char *p;

	if (strlen(path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, path);
	for (p = buf + rootlen + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(buf, 0700) == 0) {
			char *slash = strrchr(buf, '/');

			*slash = '\0';
			if (file_fsync_dir(buf) == -1)
				return -1;
			*slash = '/';
		} else if (errno != EEXIST) {
			return -1;
		}
		*p = '/';
	}
	return 0;
}

static int file_write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= w;
	}
	return 0;
}

/* Replaces <path> by <hdr> + <val> atomically and durably. 0 or -1 (errno). */
static int file_write_atomic(struct file_be *be, const char *path, const char *hdr,
			     const char *val, size_t len)
{
	char dir[PATH_MAX], tmp[PATH_MAX];
	char *slash;
	int fd = -1, ret = -1, saved;

	if (file_mkdirs(be, path) == -1)
		return -1;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	*slash = '\0';
	if (snprintf(tmp, sizeof(tmp), "%s/" FILE_TMP_PREFIX "%ld.%u", dir, (long)getpid(),
		     __atomic_fetch_add(&be->seq, 1, __ATOMIC_RELAXED)) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1)
		return -1;
	if (fchmod(fd, 0600) == -1 ||
	    file_write_all(fd, hdr, strlen(hdr)) == -1 ||
	    file_write_all(fd, val, len) == -1 ||
	    (!be->bulk && fsync(fd) == -1))
		goto out;
	if (close(fd) == -1) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) == -1)
		goto out;
	ret = be->bulk ? 0 : file_fsync_dir(dir);
	return ret;
out:
	saved = errno;
	if (fd != -1)
		close(fd);
	unlink(tmp);
	errno = saved;
	return ret;
}

/* Reads a whole regular file. Returns 0 with *<buf> (malloc'd, NUL-terminated),
 * 1 if absent (or a directory), -1 with errno. <st> gets its identity. */
static int file_slurp(const char *path, char **buf, size_t *len, struct stat *st)
{
	size_t got = 0;
	char *b = NULL;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	/* a name too long for the file system names no file: absent, not an
	 * error (issue 19: a client's long http-01 token marked storage down) */
	if (fd == -1)
		return (errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG) ? 1 : -1;
	if (fstat(fd, st) == -1)
		goto fail;
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		return 1;
	}
	if ((uint64_t)st->st_size > FILE_VAL_MAX + FILE_HDR_MAX) {
		errno = EFBIG;
		goto fail;
	}
	b = malloc(st->st_size + 1);
	if (b == NULL)
		goto fail;
	while (got < (size_t)st->st_size) {
		ssize_t r = read(fd, b + got, st->st_size - got);

		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			goto fail;
		if (r == 0)
			break;
		got += r;
	}
	b[got] = '\0';
	close(fd);
	*buf = b;
	*len = got;
	return 0;
fail:
	free(b);
	close(fd);
	return -1;
}

/* Parses "<magic><u64> " at the start of <b>. Returns the header tail
 * position after the space, or NULL. */
static const char *file_parse_u64(const char *b, size_t len, const char *magic, uint64_t *v)
{
	size_t mlen = strlen(magic), i = mlen;
	uint64_t x = 0;

	if (len < mlen || memcmp(b, magic, mlen) != 0)
		return NULL;
	for (; i < len && i < FILE_HDR_MAX && b[i] >= '0' && b[i] <= '9'; i++) {
		if (x > (UINT64_MAX - 9) / 10)
			return NULL;
		x = x * 10 + (b[i] - '0');
	}
	if (i == mlen || i >= len || b[i] != ' ')
		return NULL;
	*v = x;
	return b + i + 1;
}

/* Splits a value file. Returns 0 with <off> (value start), <vlen>, <exp>, or
 * -1 with a reason in <why>. */
static int file_parse_val(const char *b, size_t len, size_t *off, size_t *vlen,
			  uint64_t *exp, const char **why)
{
	const char *p = file_parse_u64(b, len, FILE_VAL_MAGIC, exp);
	uint64_t n = 0;

	if (p == NULL) {
		*why = len < sizeof(FILE_VAL_MAGIC) ? "truncated header" : "bad header";
		return -1;
	}
	const char *digits = p;

	for (; p < b + len && p - b < FILE_HDR_MAX && *p >= '0' && *p <= '9'; p++) {
		if (n > FILE_VAL_MAX)
			break;
		n = n * 10 + (*p - '0');
	}
	if (p == digits || p >= b + len || *p != '\n' || p - b >= FILE_HDR_MAX) {
		*why = "bad header";
		return -1;
	}
	p++;
	if ((uint64_t)(b + len - p) != n) {
		*why = (uint64_t)(b + len - p) < n ? "truncated value" : "trailing bytes after value";
		return -1;
	}
	*off = p - b;
	*vlen = n;
	return 0;
}

/* Unlinks <path> only if it is still the file <st> described (a writer may
 * have replaced it since we read it). */
static void file_unlink_if_same(const char *path, const struct stat *st)
{
	struct stat now;

	if (lstat(path, &now) == 0 && now.st_ino == st->st_ino && now.st_dev == st->st_dev)
		unlink(path);
}

static int file_get(void *p, const char *key, char **val, size_t *len, char *err, size_t errlen)
{
	struct file_be *be = p;
	char path[PATH_MAX];
	const char *why = NULL;
	size_t blen = 0, off, vlen;
	char *b = NULL;
	struct stat st;
	uint64_t exp;
	int r;

	if (file_path(be, "", key, path, sizeof(path)) == -1)
		return 1;	/* longer than PATH_MAX: no such file */
	r = file_slurp(path, &b, &blen, &st);
	if (r == 1)
		return 1;
	if (r == -1)
		goto syserr;
	if (file_parse_val(b, blen, &off, &vlen, &exp, &why) == -1) {
		snprintf(err, errlen, "storage file: key %s: corrupt contents (%s) in %s",
			 key, why, path);
		free(b);
		return -1;
	}
	if (exp != 0 && file_now_ms() >= exp) {
		free(b);
		file_unlink_if_same(path, &st);
		return 1;
	}
	memmove(b, b + off, vlen);
	b[vlen] = '\0';
	*val = b;
	*len = vlen;
	return 0;
syserr:
	snprintf(err, errlen, "storage file: get %s: %s", key, strerror(errno));
	return -1;
}

static int file_put(void *p, const char *key, const char *val, size_t len, unsigned ttl_sec,
		    char *err, size_t errlen)
{
	struct file_be *be = p;
	char path[PATH_MAX], hdr[FILE_HDR_MAX];
	uint64_t exp = ttl_sec ? file_now_ms() + (uint64_t)ttl_sec * 1000 : 0;

	if (len > FILE_VAL_MAX) {
		snprintf(err, errlen, "storage file: put %s: value too large (%zu bytes)", key, len);
		return -1;
	}
	snprintf(hdr, sizeof(hdr), FILE_VAL_MAGIC "%" PRIu64 " %zu\n", exp, len);
	if (file_path(be, "", key, path, sizeof(path)) == -1 ||
	    file_write_atomic(be, path, hdr, val, len) == -1) {
		snprintf(err, errlen, "storage file: put %s: %s", key, strerror(errno));
		return -1;
	}
	return 0;
}

static int file_del(void *p, const char *key, char *err, size_t errlen)
{
	struct file_be *be = p;
	char path[PATH_MAX];
	struct stat st;
	char *slash;

	if (file_path(be, "", key, path, sizeof(path)) == -1)
		goto syserr;
	if (lstat(path, &st) == -1) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		goto syserr;
	}
	if (S_ISDIR(st.st_mode))
		return 0;   /* only a prefix of other keys: no value here */
	if (unlink(path) == -1) {
		if (errno == ENOENT)
			return 0;
		goto syserr;
	}
	slash = strrchr(path, '/');
	*slash = '\0';
	if (file_fsync_dir(path) == -1)
		goto syserr;
	return 0;
syserr:
	snprintf(err, errlen, "storage file: del %s: %s", key, strerror(errno));
	return -1;
}

static int file_seg_valid(const char *name)
{
	return strchr(name, '/') == NULL && storage_key_valid(name);
}

static int file_list_add(struct file_list *l, const char *key)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **k = realloc(l->keys, cap * sizeof(*k));

		if (k == NULL)
			return -1;
		l->keys = k;
		l->cap = cap;
	}
	if ((l->keys[l->n] = strdup(key)) == NULL)
		return -1;
	l->n++;
	return 0;
}

/* Returns 1 if the value file at <path> has expired (corrupt files count as
 * live, so get reports them). */
static int file_is_expired(const char *path, uint64_t now)
{
	char hdr[FILE_HDR_MAX];
	uint64_t exp = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd == -1)
		return errno == ENOENT;
	r = read(fd, hdr, sizeof(hdr));
	close(fd);
	if (r <= 0 || file_parse_u64(hdr, r, FILE_VAL_MAGIC, &exp) == NULL)
		return 0;
	return exp != 0 && now >= exp;
}

/* Walks directory <dir> whose keys start with <rel> ("" or "a/b/"), adding
 * live keys that start with <prefix>. */
static int file_walk(const char *dir, const char *rel, const char *prefix, uint64_t now,
		     struct file_list *l)
{
	size_t plen = strlen(prefix);
	DIR *d = opendir(dir);
	struct dirent *de;
	int ret = -1;

	if (d == NULL)
		return (errno == ENOENT || errno == ENOTDIR) ? 0 : -1;
	while ((errno = 0, de = readdir(d)) != NULL) {
		char path[PATH_MAX], key[STORAGE_KEY_MAX + 2];
		struct stat st;

		if (!file_seg_valid(de->d_name))
			continue;
		if (snprintf(key, sizeof(key), "%s%s", rel, de->d_name) >= (int)sizeof(key) - 1 ||
		    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			continue;
		if (S_ISDIR(st.st_mode)) {
			size_t klen = strlen(key);

			key[klen] = '/';
			key[klen + 1] = '\0';
			/* descend only where keys can still match the prefix */
			if (strncmp(key, prefix, klen + 1 < plen ? klen + 1 : plen) != 0)
				continue;
			if (file_walk(path, key, prefix, now, l) == -1)
				goto out;
		} else if (S_ISREG(st.st_mode)) {
			if (strncmp(key, prefix, plen) != 0 || file_is_expired(path, now))
				continue;
			if (file_list_add(l, key) == -1)
				goto out;
		}
	}
	ret = errno ? -1 : 0;
out:
	closedir(d);
	return ret;
}

static int file_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int file_list_keys(void *p, const char *prefix, char ***keys, size_t *n,
			  char *err, size_t errlen)
{
	struct file_be *be = p;
	struct file_list l = { 0 };
	char rel[STORAGE_KEY_MAX + 2], dir[PATH_MAX];
	const char *slash = strrchr(prefix, '/');
	size_t rlen = slash ? (size_t)(slash - prefix + 1) : 0;

	memcpy(rel, prefix, rlen);
	rel[rlen] = '\0';
	if (file_path(be, "", rel, dir, sizeof(dir)) == -1 ||
	    file_walk(dir, rel, prefix, file_now_ms(), &l) == -1) {
		snprintf(err, errlen, "storage file: list %s: %s", prefix, strerror(errno));
		storage_list_free(l.keys, l.n);
		return -1;
	}
	if (l.n > 1)
		qsort(l.keys, l.n, sizeof(*l.keys), file_cmp_str);
	if (l.keys == NULL)
		l.keys = calloc(1, sizeof(*l.keys));
	*keys = l.keys;
	*n = l.n;
	return 0;
}

/* Reads lock <path> ("<owner> <generation>" after the expiry; a lock of an
 * older version has no generation: 0). Returns 1 if absent, expired or
 * unreadable garbage (taken over, with a warning), 0 with <owner> and <gen>
 * filled, -1 on I/O error. */
static int file_lock_read(const char *name, const char *path, char *owner, size_t olen,
			  uint64_t *gen)
{
	const char *tail, *sp;
	struct stat st;
	uint64_t exp = 0;
	size_t len = 0, n;
	char *b = NULL;
	int r = file_slurp(path, &b, &len, &st);

	if (r != 0)
		return r == 1 ? 1 : -1;
	tail = file_parse_u64(b, len, FILE_LOCK_MAGIC, &exp);
	n = tail ? strcspn(tail, "\n") : 0;
	if (tail == NULL || n == 0 || n >= olen || tail[n] != '\n') {
		log_warn("storage file: lock=%s corrupt lock file, taking it over", name);
		free(b);
		return 1;
	}
	memcpy(owner, tail, n);
	owner[n] = '\0';
	*gen = 0;
	if ((sp = strchr(owner, ' ')) != NULL) {
		*gen = strtoull(sp + 1, NULL, 10);
		owner[sp - owner] = '\0';
	}
	free(b);
	return file_now_ms() >= exp ? 1 : 0;
}

/* Takes (LOCK_EX) or drops (LOCK_UN) the lock-table guard: the mutex for
 * threads sharing this instance, flock() for everyone else. */
static int file_guard(struct file_be *be, int op)
{
	int ret;

	if (op == LOCK_EX)
		pthread_mutex_lock(&be->mu);
	while ((ret = flock(be->guard_fd, op)) == -1 && errno == EINTR)
		;
	if (op == LOCK_UN || ret == -1)
		pthread_mutex_unlock(&be->mu);
	return ret;
}

static int file_lock(void *p, const char *name, const char *owner, unsigned lease_ms,
		     uint64_t want, uint64_t *gen, char *err, size_t errlen)
{
	struct file_be *be = p;
	char path[PATH_MAX], cur[STORAGE_OWNER_MAX + 32], hdr[FILE_HDR_MAX + STORAGE_OWNER_MAX + 32];
	uint64_t cur_gen = 0;
	int r, ret = -1;

	if (file_path(be, "#locks/", name, path, sizeof(path)) == -1 ||
	    file_guard(be, LOCK_EX) == -1)
		goto syserr;
	r = file_lock_read(name, path, cur, sizeof(cur), &cur_gen);
	if (r == 0 && strcmp(cur, owner) != 0) {
		ret = 1;
		goto out;
	}
	if (r == -1)
		goto out_syserr;
	/* fenced: only the very lease held at <want>, still live */
	if (want && (r != 0 || cur_gen != want)) {
		ret = 1;
		goto out;
	}
	if (r == 0 && cur_gen)
		*gen = cur_gen;
	snprintf(hdr, sizeof(hdr), FILE_LOCK_MAGIC "%" PRIu64 " %s %" PRIu64 "\n",
		 file_now_ms() + lease_ms, owner, *gen);
	if (file_write_atomic(be, path, hdr, "", 0) == -1)
		goto out_syserr;
	ret = 0;
out:
	file_guard(be, LOCK_UN);
	return ret;
out_syserr:
	file_guard(be, LOCK_UN);
syserr:
	snprintf(err, errlen, "storage file: lock %s: %s", name, strerror(errno));
	return -1;
}

static int file_unlock(void *p, const char *name, const char *owner, char *err, size_t errlen)
{
	struct file_be *be = p;
	char path[PATH_MAX], cur[STORAGE_OWNER_MAX + 32];
	uint64_t cur_gen;
	int r, ret = 1;

	if (file_path(be, "#locks/", name, path, sizeof(path)) == -1 ||
	    file_guard(be, LOCK_EX) == -1)
		goto syserr;
	r = file_lock_read(name, path, cur, sizeof(cur), &cur_gen);
	if (r == -1) {
		file_guard(be, LOCK_UN);
		goto syserr;
	}
	if (r == 0 && strcmp(cur, owner) == 0) {
		if (unlink(path) == -1 && errno != ENOENT) {
			file_guard(be, LOCK_UN);
			goto syserr;
		}
		ret = 0;
	}
	file_guard(be, LOCK_UN);
	return ret;
syserr:
	snprintf(err, errlen, "storage file: unlock %s: %s", name, strerror(errno));
	return -1;
}

/* A put checked against lock <fence> under the lock-table guard, so that no
 * lock operation of any process runs between the check and the write. */
static int file_put_fenced(void *p, const char *key, const char *val, size_t len,
			   const char *fence, const char *owner, uint64_t gen, char *err, size_t errlen)
{
	struct file_be *be = p;
	char path[PATH_MAX], cur[STORAGE_OWNER_MAX + 32];
	uint64_t cur_gen = 0;
	int r, ret;

	if (file_path(be, "#locks/", fence, path, sizeof(path)) == -1 ||
	    file_guard(be, LOCK_EX) == -1) {
		snprintf(err, errlen, "storage file: put %s: lock %s: %s", key, fence, strerror(errno));
		return -1;
	}
	r = file_lock_read(fence, path, cur, sizeof(cur), &cur_gen);
	if (r == -1) {
		snprintf(err, errlen, "storage file: put %s: lock %s: %s", key, fence, strerror(errno));
		ret = -1;
	} else if (r != 0 || strcmp(cur, owner) != 0 || cur_gen != gen) {
		ret = 1;
	} else {
		ret = file_put(be, key, val, len, 0, err, errlen);
	}
	file_guard(be, LOCK_UN);
	return ret;
}

/* At start: removes temp files left by a crash (their writer is dead, pid
 * in the name, or they are older than an hour) and values whose TTL has
 * passed (what an earlier process put; this one's are deleted when due by
 * the front). Lock files ("#locks") expire on their own. */
static void file_clean_start(const char *dir, time_t now, uint64_t now_ms, size_t *expired)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		char path[PATH_MAX];
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			continue;
		if (S_ISDIR(st.st_mode)) {
			/* "#locks" expire on their own, "#feeds" clean themselves */
			if (de->d_name[0] != '#')
				file_clean_start(path, now, now_ms, expired);
		} else if (strncmp(de->d_name, FILE_TMP_PREFIX, strlen(FILE_TMP_PREFIX)) == 0) {
			long pid = strtol(de->d_name + strlen(FILE_TMP_PREFIX), NULL, 10);
			int alive = pid > 0 && pid != getpid() &&
				    (kill((pid_t)pid, 0) == 0 || errno == EPERM);

			if (!alive || now - st.st_mtime > FILE_TMP_MAX_AGE) {
				log_debug("storage file: removing stray temp file %s", path);
				unlinkat(dirfd(d), de->d_name, 0);
			}
		} else if (S_ISREG(st.st_mode) && de->d_name[0] != '#' &&
			   file_is_expired(path, now_ms) && unlinkat(dirfd(d), de->d_name, 0) == 0) {
			(*expired)++;
		}
	}
	closedir(d);
}

static void file_close_be(void *p)
{
	struct file_be *be = p;

	if (be == NULL)
		return;
	if (be->guard_fd != -1)
		close(be->guard_fd);
	file_feed_free(be->feed);
	pthread_mutex_destroy(&be->mu);
	free(be->root);
	free(be);
}

static void *file_open_be(struct ev_loop *loop, const struct storage_conf *conf, char *err, size_t errlen)
{
	const char *root = conf && conf->file_path && *conf->file_path ?
			   conf->file_path : FILE_DEFAULT_ROOT;
	struct file_be *be = NULL;
	char path[PATH_MAX];
	struct stat st;
	size_t n;

	be = calloc(1, sizeof(*be));
	if (be == NULL) {
		snprintf(err, errlen, "storage file: out of memory");
		return NULL;
	}
	be->guard_fd = -1;
	be->bulk = conf && conf->file_bulk;
	pthread_mutex_init(&be->mu, NULL);
	if ((be->root = strdup(root)) == NULL) {
		snprintf(err, errlen, "storage file: out of memory");
		goto fail;
	}
	n = strlen(be->root);
	while (n > 1 && be->root[n - 1] == '/')
		be->root[--n] = '\0';
	if (n + STORAGE_KEY_MAX + 64 >= PATH_MAX) {
		snprintf(err, errlen, "storage file: path %s: too long", root);
		goto fail;
	}
	if (mkdir(be->root, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "storage file: path %s: mkdir: %s", root, strerror(errno));
		goto fail;
	}
	if (stat(be->root, &st) == -1 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "storage file: path %s: not a directory", root);
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/#locks", be->root);
	if (mkdir(path, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "storage file: path %s: mkdir: %s", path, strerror(errno));
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/#locks/#guard", be->root);
	be->guard_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (be->guard_fd == -1) {
		snprintf(err, errlen, "storage file: path %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!(be->feed = file_feed_new(be->root, be->bulk, err, errlen)))
		goto fail;
	{
		size_t expired = 0;

		file_clean_start(be->root, time(NULL), file_now_ms(), &expired);
		if (expired)
			log_info("storage file: removed %zu expired records", expired);
	}
	return be;
fail:
	file_close_be(be);
	return NULL;
}

static int file_feed_put_op(void *p, const char *feed, const char *member, const char *version,
			    uint64_t *gen, char *err, size_t errlen)
{
	return file_feed_put(((struct file_be *)p)->feed, feed, member, version, gen, err, errlen);
}

static int file_feed_since_op(void *p, const char *feed, uint64_t since, struct storage_res *res,
			      char *err, size_t errlen)
{
	return file_feed_since(((struct file_be *)p)->feed, feed, since, res, err, errlen);
}

static int file_ping(void *p, char *err, size_t errlen)
{
	struct file_be *be = p;

	if (access(be->root, W_OK | X_OK) == -1) {
		snprintf(err, errlen, "storage file: path %s: %s", be->root, strerror(errno));
		return -1;
	}
	return 0;
}

const struct storage_ops storage_file_ops = {
	.name = "file",
	.blocking = 1,
	.front_expiry = 1,
	.open = file_open_be,
	.close = file_close_be,
	.get = file_get,
	.put = file_put,
	.del = file_del,
	.list = file_list_keys,
	.lock = file_lock,
	.put_fenced = file_put_fenced,
	.unlock = file_unlock,
	.ping = file_ping,
	.feed_put = file_feed_put_op,
	.feed_since = file_feed_since_op,
};
