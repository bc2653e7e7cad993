/* Storage: one interface, backends chosen by name (file, shm, redis).
 *
 * A backend is a struct storage_ops filled with designated initializers and
 * listed in a NULL-terminated table in storage.c (OpenSMTPD table.c shape).
 * The storage_*() wrappers validate keys, lock names and owners, so backends
 * only ever see well-formed input.
 *
 * Keys: '/'-separated segments of [A-Za-z0-9._*-], no empty segment, no "."
 * or ".." segment, at most STORAGE_KEY_MAX bytes. Locks live in their own
 * namespace: a lock "issue/a.test" never collides with a key of that name.
 */
#ifndef ACME_SPOA_STORAGE_H
#define ACME_SPOA_STORAGE_H

#include <stddef.h>

#define STORAGE_KEY_MAX   512
#define STORAGE_OWNER_MAX 128

struct ev_loop;

struct storage_conf {
	const char *file_path;        /* file backend root dir, e.g. /var/lib/acme-spoa */
	const char *redis_host;       /* NULL => 127.0.0.1 */
	int redis_port;               /* 0 => 6379 */
	int redis_database;
	const char *redis_auth;       /* NULL or "" => no AUTH */
	int redis_ssl, redis_ssl_verify;
	const char *redis_ssl_server_name;
	const char *redis_namespace;  /* keys and channels become "<ns>:<key>" when set */
	long redis_timeout_ms;        /* 0 => 500 */
};

struct storage_sub;

/* Every function writes a reason into <err> on failure. Return conventions:
 *   get:    0 found (*val malloc'd, NUL-terminated past *len, caller frees),
 *           1 absent or expired, -1 error
 *   put:    0 stored, -1 error; ttl_sec 0 = no expiry
 *   del:    0 deleted or absent, -1 error
 *   list:   0 with *keys (sorted, free with storage_list_free) and *n, -1 error
 *   lock:   0 acquired or extended (same owner), 1 held by another, -1 error
 *   unlock: 0 released, 1 not ours (held by another, absent or expired), -1 error
 *   ping:   0 backend answers, -1 error
 * The last three members are optional (NULL: single node, no pub/sub). */
struct storage_ops {
	const char *name;
	void *(*open)(const struct storage_conf *conf, char *err, size_t errlen);
	void (*close)(void *be);
	int (*get)(void *be, const char *key, char **val, size_t *len, char *err, size_t errlen);
	int (*put)(void *be, const char *key, const char *val, size_t len, unsigned ttl_sec,
		   char *err, size_t errlen);
	int (*del)(void *be, const char *key, char *err, size_t errlen);
	int (*list)(void *be, const char *prefix, char ***keys, size_t *n, char *err, size_t errlen);
	int (*lock)(void *be, const char *name, const char *owner, unsigned lease_ms,
		    char *err, size_t errlen);
	int (*unlock)(void *be, const char *name, const char *owner, char *err, size_t errlen);
	int (*ping)(void *be, char *err, size_t errlen);
	struct storage_sub *(*subscribe)(void *be, struct ev_loop *loop, const char *channel,
					 void (*cb)(void *arg, const char *msg, size_t len),
					 void *arg, char *err, size_t errlen);
	int (*publish)(void *be, const char *channel, const char *msg, size_t len,
		       char *err, size_t errlen);
};

struct storage {
	const struct storage_ops *ops;
	void *be;
	char name[16];
};

extern const struct storage_ops storage_file_ops;
extern const struct storage_ops storage_shm_ops;
extern const struct storage_ops storage_redis_ops;

/* Opens backend <name> ("file", "shm", "redis"; NULL or "" => "file") with
 * <conf>. Returns a storage the caller releases with storage_close(), or NULL
 * with <err> set; an unknown name gets an error listing the known names.
 * redis: an unreachable server is not an error (operations fail until it
 * answers, then reconnect by themselves); a refused AUTH/SELECT or a TLS
 * request (this hiredis has no TLS) is. */
struct storage *storage_open(const char *name, const struct storage_conf *conf,
			     char *err, size_t errlen);

/* Closes the backend and frees <st>. Accepts NULL. */
void storage_close(struct storage *st);

/* Reads <key>. Returns 0 with *<val> (malloc'd, NUL-terminated one byte past
 * *<len>, caller frees) and *<len>; 1 if absent or expired; -1 on error
 * (invalid key, I/O, corrupt contents: <err> names the key). */
int storage_get(struct storage *st, const char *key, char **val, size_t *len,
		char *err, size_t errlen);

/* Stores <len> bytes of <val> (binary-safe) under <key>, replacing any value,
 * atomically (a reader sees the old or the new value, never a mix). <ttl_sec>
 * 0 means no expiry. Returns 0 or -1. */
int storage_put(struct storage *st, const char *key, const char *val, size_t len,
		unsigned ttl_sec, char *err, size_t errlen);

/* Deletes <key>; an absent key is not an error. Returns 0 or -1. */
int storage_del(struct storage *st, const char *key, char *err, size_t errlen);

/* Lists the live keys whose name starts with the string <prefix> ("" = all;
 * "certs/" = every certificate), sorted by strcmp. Returns 0 with *<keys>
 * (free with storage_list_free(*keys, *n)) and *<n>, or -1. */
int storage_list(struct storage *st, const char *prefix, char ***keys, size_t *n,
		 char *err, size_t errlen);

/* Frees a list returned by storage_list(). Accepts NULL. */
void storage_list_free(char **keys, size_t n);

/* Takes lock <name> (key grammar) for <owner> (1..STORAGE_OWNER_MAX printable
 * non-space bytes) for <lease_ms> (> 0) milliseconds. Returns 0 if acquired,
 * or extended when <owner> already holds it; 1 if another owner holds an
 * unexpired lease; -1 on error. An expired lease is taken over atomically. */
int storage_lock(struct storage *st, const char *name, const char *owner, unsigned lease_ms,
		 char *err, size_t errlen);

/* Releases lock <name> only if <owner> holds it. Returns 0 released, 1 not
 * ours (another owner, absent or expired), -1 on error. */
int storage_unlock(struct storage *st, const char *name, const char *owner,
		   char *err, size_t errlen);

/* Checks the backend answers (redis: PING; file: root dir writable).
 * Returns 0 or -1 with <err>. */
int storage_ping(struct storage *st, char *err, size_t errlen);

/* Returns 1 if <key> follows the key grammar above, else 0. */
int storage_key_valid(const char *key);

/* Returns 1 if <prefix> may be passed to storage_list() ("" or a key whose
 * last segment may be partial or empty, e.g. "certs/" or "certs/a."), else 0. */
int storage_prefix_valid(const char *prefix);

/* Subscribes to <channel> (namespaced like keys) on <loop>: <cb>(<arg>, msg,
 * len) runs on the loop for every message; <msg> is only valid during the call.
 * Uses its own async connection, reconnects and resubscribes by itself with
 * backoff (100 ms doubling to 5 s). Returns the subscription (free with
 * storage_sub_free()) or NULL with <err>: "not supported" for file and shm. */
struct storage_sub *storage_subscribe(struct storage *st, struct ev_loop *loop,
				      const char *channel,
				      void (*cb)(void *arg, const char *msg, size_t len),
				      void *arg, char *err, size_t errlen);

/* Returns 1 while the subscription is confirmed by the server, else 0. */
int storage_sub_ready(const struct storage_sub *sub);

/* Unsubscribes, stops every watcher and frees <sub>. Accepts NULL. Safe to
 * call from within the subscription's own callback. */
void storage_sub_free(struct storage_sub *sub);

/* Publishes <len> bytes of <msg> on <channel>. Returns 0 (also a no-op 0 for
 * file and shm, which are single node) or -1 with <err>. */
int storage_publish(struct storage *st, const char *channel, const char *msg, size_t len,
		    char *err, size_t errlen);

#endif
