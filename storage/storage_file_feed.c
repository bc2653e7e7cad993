/* SPDX-License-Identifier: Apache-2.0 */
/* The file backend's change feed (storage_file_feed.h): feed <f> is the file
 * "<root>/#feeds/<f>", outside the key grammar ('#'), so it never lists as a
 * key. Its text:
 *
 *   ASPF1 <gen>\n
 *   <g> <member> +<version>\n     a member's last change: at generation <g>
 *   <g> <member> -\n              ... which removed it
 *
 * one line per member, ordered by <g>: a put moves its member's line to the
 * end with the next generation, so the file is compacted on every write and
 * holds at most one line per member ever named (as Redis keeps one log entry
 * per member). Writers (this process's threads, the import command, other
 * agents on the same directory) take flock() on "#feeds/#lock", each on its
 * own open file description, then read, rewrite and rename (lib/fsutil):
 * readers need no lock and see the old or the new file, never a mix.
 *
 * Polling is cheap: a reader already at the feed's generation is answered
 * from one stat() of the file when its identity (inode, size, times) did not
 * change since it was last read. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/log.h"
#include "storage/storage_file_feed.h"

#define FEED_MAGIC   "ASPF1 "
#define FEED_DIR     "#feeds"
#define FEED_MAX     (64u << 20)

struct file_feed {
	char *root;
	int bulk;
	pthread_mutex_t mu;	/* guards the cache below */
	char name[STORAGE_KEY_MAX + 1];	/* the feed last read ("" none) */
	struct stat id;		/* its file's identity then */
	uint64_t gen;		/* and its generation */
};

struct feed_ent {
	uint64_t g;
	char *member;
	char *ver;		/* NULL: removed */
};

struct feed_doc {
	uint64_t gen;
	struct feed_ent *e;
	size_t n, cap;
};

static void feed_doc_clear(struct feed_doc *d)
{
	size_t i;

	for (i = 0; i < d->n; i++) {
		free(d->e[i].member);
		free(d->e[i].ver);
	}
	free(d->e);
	memset(d, 0, sizeof(*d));
}

static int feed_path(const struct file_feed *ff, const char *feed, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/" FEED_DIR "/%s", ff->root, feed);

	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int feed_same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* A version is stored as one word: printable, no space. */
static int feed_version_ok(const char *v)
{
	if (*v == '\0')
		return 0;
	for (; *v; v++)
		if ((unsigned char)*v <= ' ' || (unsigned char)*v >= 0x7f)
			return 0;
	return 1;
}

static int feed_add(struct feed_doc *d, uint64_t g, const char *member, size_t mlen,
		    const char *ver, size_t vlen)
{
	struct feed_ent *e;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;

		if (!(e = realloc(d->e, cap * sizeof(*e))))
			return -1;
		d->e = e;
		d->cap = cap;
	}
	e = &d->e[d->n];
	e->g = g;
	e->ver = NULL;
	if (!(e->member = strndup(member, mlen)))
		return -1;
	if (ver && !(e->ver = strndup(ver, vlen))) {
		free(e->member);
		return -1;
	}
	d->n++;
	return 0;
}

/* Checks <b> (NUL-terminated) line by line, into <d> unless NULL (a put
 * needs no copy: only <gen> and the span [<fs>, <fe>) of member <find>'s line,
 * both NULL when absent). 0, or -1 with <err> (a corrupt feed: errno
 * EBADMSG, or ENOMEM). */
static int feed_parse(const char *b, struct feed_doc *d, uint64_t *gen, const char *find,
		      const char **fs, const char **fe, const char *path, char *err, size_t errlen)
{
	const char *p = b, *nl;
	char *end;
	uint64_t last = 0;
	size_t flen = find ? strlen(find) : 0;

	if (d)
		memset(d, 0, sizeof(*d));
	if (fs)
		*fs = *fe = NULL;
	if (strncmp(p, FEED_MAGIC, strlen(FEED_MAGIC)) != 0)
		goto bad;
	p += strlen(FEED_MAGIC);
	errno = 0;
	*gen = strtoull(p, &end, 10);
	if (errno || end == p || *end != '\n')
		goto bad;
	if (d)
		d->gen = *gen;
	p = end + 1;
	while (*p) {
		const char *m, *sp;
		uint64_t g;

		if (!(nl = strchr(p, '\n')))
			goto bad;
		errno = 0;
		g = strtoull(p, &end, 10);
		if (errno || end == p || *end != ' ' || g <= last || g > *gen)
			goto bad;
		m = end + 1;
		if (!(sp = memchr(m, ' ', nl - m)) || sp == m || sp + 1 >= nl)
			goto bad;
		if (sp[1] == '-' && sp + 2 == nl) {
			if (d && feed_add(d, g, m, sp - m, NULL, 0) == -1)
				goto nomem;
		} else if (sp[1] == '+' && sp + 2 < nl) {
			if (d && feed_add(d, g, m, sp - m, sp + 2, nl - sp - 2) == -1)
				goto nomem;
		} else {
			goto bad;
		}
		if (find && (size_t)(sp - m) == flen && memcmp(m, find, flen) == 0) {
			*fs = p;
			*fe = nl + 1;
		}
		last = g;
		p = nl + 1;
	}
	return 0;
bad:
	if (d)
		feed_doc_clear(d);
	snprintf(err, errlen, "storage file: feed %s: corrupt", path);
	errno = EBADMSG;
	return -1;
nomem:
	feed_doc_clear(d);
	snprintf(err, errlen, "storage file: feed %s: out of memory", path);
	errno = ENOMEM;
	return -1;
}

/* Reads feed file <path>: 0 with *<text> (malloc'd, NUL-terminated; <id> its
 * identity), 1 absent, -1 with <err> (errno EBADMSG: a NUL inside). */
static int feed_read(const char *path, char **text, struct stat *id, char *err, size_t errlen)
{
	char *b = NULL;
	size_t got = 0;
	int fd, ret = -1, saved;

	*text = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 1;
		goto syserr;
	}
	if (fstat(fd, id) == -1)
		goto syserr;
	if (!S_ISREG(id->st_mode) || (uint64_t)id->st_size > FEED_MAX) {
		errno = EFBIG;
		goto syserr;
	}
	if (!(b = malloc(id->st_size + 1)))
		goto syserr;
	while (got < (size_t)id->st_size) {
		ssize_t r = read(fd, b + got, id->st_size - got);

		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			goto syserr;
		if (r == 0)
			break;
		got += r;
	}
	b[got] = '\0';
	if (strlen(b) != got) {
		snprintf(err, errlen, "storage file: feed %s: corrupt", path);
		errno = EBADMSG;
		goto out;
	}
	*text = b;
	b = NULL;
	ret = 0;
	goto out;
syserr:
	snprintf(err, errlen, "storage file: feed %s: %s", path, strerror(errno));
out:
	saved = errno;
	free(b);
	if (fd != -1)
		close(fd);
	errno = saved;
	return ret;
}

/* Reads and parses feed file <path>: 0 with <d> (<id> its identity), 1
 * absent (empty <d>), -1 with <err>. */
static int feed_load(const char *path, struct feed_doc *d, struct stat *id, char *err, size_t errlen)
{
	char *b;
	uint64_t gen;
	int r = feed_read(path, &b, id, err, errlen);

	memset(d, 0, sizeof(*d));
	if (r != 0)
		return r;
	r = feed_parse(b, d, &gen, NULL, NULL, NULL, path, err, errlen);
	free(b);
	return r;
}

/* Creates the directories of <path> from the root's "#feeds" down. */
static int feed_mkdirs(const struct file_feed *ff, const char *path)
{
	char buf[PATH_MAX];
	char *p;

	if (strlen(path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, path);
	for (p = buf + strlen(ff->root) + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(buf, 0700) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return 0;
}

/* Takes the writers' lock: flock() on a description of its own, so threads
 * of this process exclude each other as other processes do. Returns the fd
 * or -1. */
static int feed_lock(const struct file_feed *ff)
{
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/" FEED_DIR "/#lock", ff->root) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) == -1)
		return -1;
	while (flock(fd, LOCK_EX) == -1) {
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

int file_feed_put(struct file_feed *ff, const char *feed, const char *member, const char *version,
		  uint64_t *gen, char *err, size_t errlen)
{
	struct stat id;
	char path[PATH_MAX], werr[STORAGE_ERR_MAX];
	char *old = NULL, *text = NULL;
	const char *body = "", *fs = NULL, *fe = NULL;
	uint64_t g = 0;
	size_t blen, len, cap;
	int lfd = -1, r, ret = -1;

	if (version && !feed_version_ok(version)) {
		snprintf(err, errlen, "storage file: feed %s: version of %s must be printable, no space",
			 feed, member);
		return -1;
	}
	if (feed_path(ff, feed, path, sizeof(path)) == -1 || feed_mkdirs(ff, path) == -1 ||
	    (lfd = feed_lock(ff)) == -1) {
		snprintf(err, errlen, "storage file: feed %s: %s", feed, strerror(errno));
		goto out;
	}
	/* the text is edited, not parsed into records: a put stays one pass
	 * over the file (an import writes thousands in a row) */
	r = feed_read(path, &old, &id, err, errlen);
	if (r == 0)
		r = feed_parse(old, NULL, &g, member, &fs, &fe, path, err, errlen);
	if (r == -1) {
		if (errno != EBADMSG)
			goto out;
		/* what cannot be read is started over: readers see the generation
		 * go back and compare everything, as after an emptied store */
		log_warn("%s: starting it over", err);
		g = 0;
		fs = fe = NULL;
	} else if (r == 0) {
		body = strchr(old, '\n') + 1;
	}
	g++;
	blen = strlen(body);
	cap = 64 + blen + strlen(member) + (version ? strlen(version) : 0);
	if (!(text = malloc(cap))) {
		snprintf(err, errlen, "storage file: feed %s: out of memory", feed);
		goto out;
	}
	len = snprintf(text, cap, FEED_MAGIC "%" PRIu64 "\n", g);
	/* every line but the member's, which moves to the end */
	if (fs) {
		memcpy(text + len, body, fs - body);
		len += fs - body;
		memcpy(text + len, fe, blen - (fe - body));
		len += blen - (fe - body);
	} else {
		memcpy(text + len, body, blen);
		len += blen;
	}
	len += snprintf(text + len, cap - len, "%" PRIu64 " %s %s%s\n", g, member,
			version ? "+" : "-", version ? version : "");
	if ((ff->bulk ? fs_write_atomic_nosync : fs_write_atomic)(path, text, len, 0600, werr,
								 sizeof(werr)) == -1) {
		snprintf(err, errlen, "storage file: feed %s", werr);
		goto out;
	}
	*gen = g;
	ret = 0;
out:
	if (lfd != -1)
		close(lfd);	/* drops the flock */
	free(text);
	free(old);
	return ret;
}

int file_feed_since(struct file_feed *ff, const char *feed, uint64_t since, struct storage_res *res,
		    char *err, size_t errlen)
{
	struct feed_doc d;
	struct stat st, id;
	char path[PATH_MAX];
	size_t i, first, n;
	int r, ret = -1;

	memset(&d, 0, sizeof(d));
	if (feed_path(ff, feed, path, sizeof(path)) == -1) {
		snprintf(err, errlen, "storage file: feed %s: %s", feed, strerror(errno));
		return -1;
	}
	if (stat(path, &st) == -1) {
		if (errno != ENOENT && errno != ENOTDIR) {
			snprintf(err, errlen, "storage file: feed %s: %s", path, strerror(errno));
			return -1;
		}
		res->gen = 0;	/* no feed yet: generation 0, nothing changed */
		return 0;
	}
	/* at rest: the reader is at the generation of a file that did not change */
	pthread_mutex_lock(&ff->mu);
	if (strcmp(ff->name, feed) == 0 && feed_same_file(&ff->id, &st) && since >= ff->gen) {
		res->gen = ff->gen;
		pthread_mutex_unlock(&ff->mu);
		return 0;
	}
	pthread_mutex_unlock(&ff->mu);
	if ((r = feed_load(path, &d, &id, err, errlen)) == -1)
		return -1;
	if (r == 1) {
		res->gen = 0;
		return 0;
	}
	pthread_mutex_lock(&ff->mu);
	snprintf(ff->name, sizeof(ff->name), "%s", feed);
	ff->id = id;
	ff->gen = d.gen;
	pthread_mutex_unlock(&ff->mu);
	res->gen = d.gen;
	for (first = 0; first < d.n && d.e[first].g <= since; first++)
		;
	n = d.n - first;
	if (n > STORAGE_FEED_BATCH)
		n = STORAGE_FEED_BATCH;
	if (n == 0) {
		ret = 0;
		goto out;
	}
	if (!(res->keys = calloc(n, sizeof(char *))) || !(res->vals = calloc(n, sizeof(char *))))
		goto nomem;
	for (i = 0; i < n; i++) {
		struct feed_ent *e = &d.e[first + i];

		/* moved, not copied: <d> is freed below */
		res->keys[i] = e->member;
		res->vals[i] = e->ver;
		e->member = e->ver = NULL;
		res->n = i + 1;
	}
	if (n == STORAGE_FEED_BATCH) {
		/* a full batch brings the reader to its last member (as redis) */
		res->gen = d.e[first + n - 1].g;
		res->more = 1;
	}
	ret = 0;
	goto out;
nomem:
	snprintf(err, errlen, "storage file: feed %s: out of memory", feed);
out:
	feed_doc_clear(&d);
	return ret;
}

struct file_feed *file_feed_new(const char *root, int bulk, char *err, size_t errlen)
{
	struct file_feed *ff = calloc(1, sizeof(*ff));
	char dir[PATH_MAX];

	if (!ff || !(ff->root = strdup(root))) {
		free(ff);
		snprintf(err, errlen, "storage file: out of memory");
		return NULL;
	}
	ff->bulk = bulk;
	pthread_mutex_init(&ff->mu, NULL);
	snprintf(dir, sizeof(dir), "%s/" FEED_DIR, root);
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "storage file: path %s: mkdir: %s", dir, strerror(errno));
		file_feed_free(ff);
		return NULL;
	}
	/* temp files a crashed writer left (file_clean_start skips '#' dirs) */
	fs_clean_tmp(dir);
	return ff;
}

void file_feed_free(struct file_feed *ff)
{
	if (!ff)
		return;
	pthread_mutex_destroy(&ff->mu);
	free(ff->root);
	free(ff);
}
