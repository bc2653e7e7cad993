/* Storage front: picks a backend by name, validates input, forwards. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"

static const struct storage_ops *const storage_backends[] = {
	&storage_file_ops,
	&storage_shm_ops,
	&storage_redis_ops,
	NULL,
};

static int storage_seg_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '*' || c == '-';
}

/* Checks <s> as segments; <partial_last> lets the last segment be empty or
 * "."/".." (it is only the start of a name, as in a list prefix). */
static int storage_segments_valid(const char *s, int partial_last)
{
	const char *seg = s;
	size_t len = strlen(s);
	const char *p;

	if (len > STORAGE_KEY_MAX)
		return 0;
	for (p = s;; p++) {
		if (*p == '/' || *p == '\0') {
			size_t n = p - seg;
			int last = (*p == '\0');

			if (!(last && partial_last)) {
				if (n == 0)
					return 0;
				if ((n == 1 && seg[0] == '.') ||
				    (n == 2 && seg[0] == '.' && seg[1] == '.'))
					return 0;
			}
			if (last)
				return 1;
			seg = p + 1;
			continue;
		}
		if (!storage_seg_char(*p))
			return 0;
	}
}

int storage_key_valid(const char *key)
{
	if (key == NULL || *key == '\0')
		return 0;
	return storage_segments_valid(key, 0);
}

int storage_prefix_valid(const char *prefix)
{
	if (prefix == NULL)
		return 0;
	if (*prefix == '\0')
		return 1;
	return storage_segments_valid(prefix, 1);
}

static int storage_owner_valid(const char *owner)
{
	size_t n = 0;

	if (owner == NULL)
		return 0;
	for (; owner[n]; n++)
		if ((unsigned char)owner[n] <= ' ' || (unsigned char)owner[n] >= 0x7f)
			return 0;
	return n > 0 && n <= STORAGE_OWNER_MAX;
}

static int storage_check_key(const char *what, const char *key, char *err, size_t errlen)
{
	if (storage_key_valid(key))
		return 0;
	snprintf(err, errlen, "storage: invalid %s \"%.64s\": want '/'-separated segments of "
		 "[A-Za-z0-9._*-], no empty, '.' or '..' segment, at most %d bytes",
		 what, key ? key : "(null)", STORAGE_KEY_MAX);
	return -1;
}

struct storage *storage_open(const char *name, const struct storage_conf *conf,
			     char *err, size_t errlen)
{
	const struct storage_ops *ops = NULL;
	struct storage *st = NULL;
	size_t i;

	if (name == NULL || *name == '\0')
		name = "file";
	for (i = 0; storage_backends[i] != NULL; i++)
		if (strcmp(storage_backends[i]->name, name) == 0)
			ops = storage_backends[i];
	if (ops == NULL) {
		size_t off;

		off = snprintf(err, errlen, "storage: \"%.32s\" is not one of", name);
		for (i = 0; storage_backends[i] != NULL && off < errlen; i++)
			off += snprintf(err + off, errlen - off, "%s %s", i ? "," : "",
					storage_backends[i]->name);
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		snprintf(err, errlen, "storage: out of memory");
		return NULL;
	}
	st->ops = ops;
	snprintf(st->name, sizeof(st->name), "%s", ops->name);
	st->be = ops->open(conf, err, errlen);
	if (st->be == NULL) {
		free(st);
		return NULL;
	}
	return st;
}

void storage_close(struct storage *st)
{
	if (st == NULL)
		return;
	st->ops->close(st->be);
	free(st);
}

int storage_get(struct storage *st, const char *key, char **val, size_t *len,
		char *err, size_t errlen)
{
	*val = NULL;
	*len = 0;
	if (storage_check_key("key", key, err, errlen) == -1)
		return -1;
	return st->ops->get(st->be, key, val, len, err, errlen);
}

int storage_put(struct storage *st, const char *key, const char *val, size_t len,
		unsigned ttl_sec, char *err, size_t errlen)
{
	if (storage_check_key("key", key, err, errlen) == -1)
		return -1;
	if (val == NULL && len > 0) {
		snprintf(err, errlen, "storage: put %s: NULL value", key);
		return -1;
	}
	return st->ops->put(st->be, key, val ? val : "", len, ttl_sec, err, errlen);
}

int storage_del(struct storage *st, const char *key, char *err, size_t errlen)
{
	if (storage_check_key("key", key, err, errlen) == -1)
		return -1;
	return st->ops->del(st->be, key, err, errlen);
}

int storage_list(struct storage *st, const char *prefix, char ***keys, size_t *n,
		 char *err, size_t errlen)
{
	*keys = NULL;
	*n = 0;
	if (!storage_prefix_valid(prefix)) {
		snprintf(err, errlen, "storage: invalid list prefix \"%.64s\"",
			 prefix ? prefix : "(null)");
		return -1;
	}
	return st->ops->list(st->be, prefix, keys, n, err, errlen);
}

void storage_list_free(char **keys, size_t n)
{
	size_t i;

	if (keys == NULL)
		return;
	for (i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

int storage_lock(struct storage *st, const char *name, const char *owner, unsigned lease_ms,
		 char *err, size_t errlen)
{
	if (storage_check_key("lock name", name, err, errlen) == -1)
		return -1;
	if (!storage_owner_valid(owner)) {
		snprintf(err, errlen, "storage: lock %s: owner must be 1..%d printable "
			 "non-space bytes", name, STORAGE_OWNER_MAX);
		return -1;
	}
	if (lease_ms == 0) {
		snprintf(err, errlen, "storage: lock %s: lease must be > 0 ms", name);
		return -1;
	}
	return st->ops->lock(st->be, name, owner, lease_ms, err, errlen);
}

int storage_unlock(struct storage *st, const char *name, const char *owner,
		   char *err, size_t errlen)
{
	if (storage_check_key("lock name", name, err, errlen) == -1)
		return -1;
	if (!storage_owner_valid(owner)) {
		snprintf(err, errlen, "storage: unlock %s: invalid owner", name);
		return -1;
	}
	return st->ops->unlock(st->be, name, owner, err, errlen);
}

int storage_ping(struct storage *st, char *err, size_t errlen)
{
	return st->ops->ping(st->be, err, errlen);
}

struct storage_sub *storage_subscribe(struct storage *st, struct ev_loop *loop,
				      const char *channel,
				      void (*cb)(void *arg, const char *msg, size_t len),
				      void *arg, char *err, size_t errlen)
{
	if (st->ops->subscribe == NULL) {
		snprintf(err, errlen, "not supported");
		return NULL;
	}
	if (storage_check_key("channel", channel, err, errlen) == -1)
		return NULL;
	return st->ops->subscribe(st->be, loop, channel, cb, arg, err, errlen);
}

int storage_publish(struct storage *st, const char *channel, const char *msg, size_t len,
		    char *err, size_t errlen)
{
	if (st->ops->publish == NULL)
		return 0;
	if (storage_check_key("channel", channel, err, errlen) == -1)
		return -1;
	return st->ops->publish(st->be, channel, msg ? msg : "", len, err, errlen);
}
