/* SPDX-License-Identifier: Apache-2.0 */
/* Storage: one asynchronous interface, backends chosen by name (file, shm,
 * redis, consul).
 *
 * Every operation completes through a callback on the loop, never inside the
 * call that started it (a result ready at once is delivered on the next loop
 * turn), so chains of completions never recurse. Every operation has a
 * deadline (storage_conf.timeout_ms): past it the callback gets rc -1 "timed
 * out" and a late answer is dropped. A slow store delays only the operations
 * that need it.
 *
 * A backend is a struct storage_ops filled with designated initializers and
 * listed in a NULL-terminated table in storage.c (OpenSMTPD table.c shape).
 * It implements either the blocking primitives (file: the front runs them on
 * worker threads, sharded by key so that operations on one key keep their
 * order; shm: run on the loop, delivered on the next turn) or submit()
 * (redis: its own connections on the loop, plain or TLS; consul: libcurl
 * multi on the loop, see storage_consul.c). The front validates keys, lock
 * names and owners, so backends only ever see well-formed input.
 *
 * Keys: '/'-separated segments of [A-Za-z0-9._*-], no empty segment, no "."
 * or ".." segment, at most STORAGE_KEY_MAX bytes. Locks live in their own
 * namespace: a lock "issue/a.test" never collides with a key of that name.
 */
#ifndef ACME_SPOA_STORAGE_H
#define ACME_SPOA_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#define STORAGE_KEY_MAX   512
#define STORAGE_OWNER_MAX 128
#define STORAGE_ERR_MAX   256
/* FEED_SINCE returns at most this many changes per call (res.more set) */
#define STORAGE_FEED_BATCH 1000
/* members a page of storage_feed_members() holds at most */
#define STORAGE_FEED_MEMBERS_BATCH 5000
/* feed_since from here returns no change, only the current generation */
#define STORAGE_FEED_NOW   UINT64_MAX

struct ev_loop;

struct storage_conf {
	const char *file_path;        /* file backend root dir, e.g. /var/lib/acme-spoa */
	const char *redis_host;       /* NULL => 127.0.0.1 */
	int redis_port;               /* 0 => 6379 */
	int redis_database;
	const char *redis_username;   /* ACL user; NULL or "" => AUTH <password> */
	const char *redis_auth;       /* password; NULL or "" => no AUTH */
	int redis_ssl, redis_ssl_verify;
	const char *redis_ssl_server_name;	/* checked and sent as SNI; NULL => the host */
	const char *redis_ssl_ca_file;	/* NULL => the system store */
	const char *redis_ssl_cert, *redis_ssl_key;	/* client certificate, optional */
	const char *redis_sentinel_master;	/* NULL or "" => no sentinel */
	const char *const *redis_sentinel_nodes;	/* "host:port" each */
	size_t redis_nsentinel_nodes;
	const char *redis_sentinel_username, *redis_sentinel_password;
	const char *redis_namespace;  /* keys and channels become "<ns>:<key>" when set */
	long redis_timeout_ms;        /* connect timeout; 0 => 500 */
	long timeout_ms;              /* deadline of one operation; 0 => 3000 */
	unsigned file_threads;        /* file backend worker threads; 0 => 4 */
	int file_bulk;                /* file: writes are atomic (rename) but not fsync'd one
				       * by one; the caller makes them durable at once with
				       * fs_sync_dir(file_path) after storage_close() (bulk
				       * import). Never for the agent. */
	const char *consul_host;      /* NULL => 127.0.0.1 */
	int consul_port;              /* 0 => 8500 */
	int consul_https;             /* TLS with the system's CAs */
	long consul_timeout_ms;       /* one HTTP request; 0 => 2000 */
	const char *consul_token;     /* NULL or "" => no X-Consul-Token */
	const char *consul_kv_path;   /* NULL => "acme" */
};

enum storage_op_kind {
	STORAGE_OP_GET = 0,
	STORAGE_OP_PUT,
	STORAGE_OP_DEL,
	STORAGE_OP_LIST,
	STORAGE_OP_LOCK,
	STORAGE_OP_UNLOCK,
	STORAGE_OP_PING,
	STORAGE_OP_PUBLISH,
	STORAGE_OP_FEED_PUT,
	STORAGE_OP_FEED_SINCE,
	STORAGE_OP_FEED_MEMBERS,
	STORAGE_OP_SCAN,
	STORAGE_OP__MAX
};

/* Names for logs ("get", "put", ...); "?" when out of range. */
const char *storage_op_name(enum storage_op_kind k);

/* The result of one operation, handed to its callback. Return codes:
 *   get:        0 found (<val>, NUL-terminated past <len>), 1 absent or expired, -1 error
 *   put:        0 stored, -1 error; ttl_sec 0 = no expiry; fenced: 1 refused
 *               (the fencing lock is not held by that owner at that generation)
 *   del:        0 deleted or absent, -1 error
 *   list:       0 with <keys> (sorted) and <n>, -1 error
 *   lock:       0 acquired or extended (same owner) with <gen> the lock's
 *               fencing generation, 1 held by another (fenced: or the lease
 *               at that generation was lost), -1 error
 *   unlock:     0 released, 1 not ours (held by another, absent or expired), -1 error
 *   ping:       0 backend answers, -1 error
 *   publish:    0 sent (also a no-op 0 for single-node backends), -1 error
 *   feed_put:   0 recorded, <gen> the feed's new generation; -1 error
 *   feed_since: 0 with <keys> (members changed after the asked generation,
 *               oldest first), <vals> (each member's version, NULL when the
 *               member was removed), <n>, <gen> (the generation these bring
 *               the reader to) and <more> (1: call again from <gen>); -1 error
 *   feed_members: 0 with <val> (<n> members present now, oldest change
 *               first, each NUL-terminated, one after the other in <len>
 *               bytes; no versions), <gen> (where the next page starts),
 *               <more> and, on the first page, <total>: the members the
 *               feed holds in all (0: unknown); -1 error (also "not
 *               supported": file, consul, shm)
 *   scan:       0 with <keys> (one page of a listing: unsorted, a key may
 *               come again in a later page), <n>, <gen> (the cursor of the
 *               next page) and <more>; -1 error (also "not supported")
 * file keeps its feed in "<root>/#feeds/<feed>", shared through flock() by
 * every process on that directory (storage_file_feed.c). shm (one process)
 * keeps none: feed_put is a no-op 0 and feed_since answers -1 "not supported".
 * A callback may take ownership of <val>, <keys> or <vals> by setting the
 * member to NULL; whatever is left is freed after the callback returns
 * (<val> with its bytes cleansed: it may be a private key). */
struct storage_res {
	int rc;
	char *val;
	size_t len;
	char **keys;
	char **vals;
	size_t n;
	uint64_t gen;
	int more;
	size_t total;		/* feed_members */
	const char *err;	/* reason when rc == -1, names the key */
	const char *key;	/* the operation's key (lock name, prefix, channel, feed) */
};

typedef void storage_cb(void *arg, struct storage_res *res);

struct storage;
struct storage_req;
struct storage_sub;

/* What a backend sees of one operation. Inputs are set by the front and
 * valid until storage_op_done(); the backend fills <res> (allocating
 * <res.val>, <res.keys>, <res.vals> with malloc) and <err>. */
struct storage_op {
	enum storage_op_kind kind;
	const char *key;	/* key, lock name, list prefix, channel or feed name */
	const char *member;	/* feed member (feed_put) */
	const char *owner;	/* lock owner */
	const char *val;	/* put, publish, feed_put (NULL: member removed) */
	size_t len;
	unsigned ttl_sec;	/* put */
	unsigned lease_ms;	/* lock */
	/* Fencing (storage_lock_fenced, storage_put_fenced): lock: 0 takes or
	 * extends, else extends only the lease held at generation <gen>; put:
	 * the generation <fence> (a lock name, NULL: unfenced) must be held at
	 * by <owner>. A fresh acquisition gets generation <gen_new> (random,
	 * non-zero, chosen by the front). */
	uint64_t gen, gen_new;
	const char *fence;
	uint64_t since;		/* feed_since, feed_members; scan: the cursor */
	struct storage_res res;
	char err[STORAGE_ERR_MAX];
	void *be_data;		/* free for the backend's use */
};

/* Every blocking primitive writes a reason into <err> on failure, with the
 * return codes of struct storage_res. The asynchronous entry submit() takes
 * an operation and calls storage_op_done() once it is complete, on the loop
 * thread; it may do so before returning (the front delivers it on the next
 * turn). subscribe is optional (NULL: single node, no pub/sub). */
struct storage_ops {
	const char *name;
	void *(*open)(struct ev_loop *loop, const struct storage_conf *conf, char *err, size_t errlen);
	void (*close)(void *be);
	int blocking;		/* primitives may block: run on worker threads */
	int front_expiry;	/* no TTL of its own: the front deletes what expires */
	int (*get)(void *be, const char *key, char **val, size_t *len, char *err, size_t errlen);
	int (*put)(void *be, const char *key, const char *val, size_t len, unsigned ttl_sec,
		   char *err, size_t errlen);
	int (*del)(void *be, const char *key, char *err, size_t errlen);
	int (*list)(void *be, const char *prefix, char ***keys, size_t *n, char *err, size_t errlen);
	/* <want>: 0 takes or extends, else extends only at that generation;
	 * <gen> holds the generation of a fresh acquisition and returns the
	 * lock's */
	int (*lock)(void *be, const char *name, const char *owner, unsigned lease_ms,
		    uint64_t want, uint64_t *gen, char *err, size_t errlen);
	/* put of <key> only while lock <fence> is held by <owner> at <gen>,
	 * checked and written atomically: 0 stored, 1 refused, -1 error */
	int (*put_fenced)(void *be, const char *key, const char *val, size_t len,
			  const char *fence, const char *owner, uint64_t gen, char *err, size_t errlen);
	int (*unlock)(void *be, const char *name, const char *owner, char *err, size_t errlen);
	int (*ping)(void *be, char *err, size_t errlen);
	/* Optional change feed (NULL: a single process, no feed) */
	int (*feed_put)(void *be, const char *feed, const char *member, const char *version,
			uint64_t *gen, char *err, size_t errlen);
	int (*feed_since)(void *be, const char *feed, uint64_t since, struct storage_res *res,
			  char *err, size_t errlen);
	void (*submit)(void *be, struct storage_op *op);
	int feed_members;	/* submit takes STORAGE_OP_FEED_MEMBERS (redis) */
	int scan;		/* submit takes STORAGE_OP_SCAN (redis) */
	/* Optional, never blocks: 1 when the backend is up as far as it knows,
	 * 0 when it knows it is down (reason in <err>). */
	int (*state)(void *be, char *err, size_t errlen);
	/* returns the backend's subscription, which the front wraps */
	void *(*subscribe)(void *be, struct ev_loop *loop, const char *channel,
			   void (*cb)(void *arg, const char *msg, size_t len),
			   void *arg, char *err, size_t errlen);
	void (*sub_free)(void *sub);
	int (*sub_ready)(const void *sub);
};

/* Keys put with a TTL that the front will delete when due (front_expiry
 * backends; 0 for the others). */
size_t storage_expiring(const struct storage *st);

extern const struct storage_ops storage_file_ops;
extern const struct storage_ops storage_shm_ops;
extern const struct storage_ops storage_redis_ops;
extern const struct storage_ops storage_consul_ops;

/* Called by a backend when <op> is complete (on the loop thread). */
void storage_op_done(struct storage_op *op);

/* Called by an asynchronous backend (on the loop thread) when an operation of
 * many round trips made progress (a LIST's SCAN page arrived): its deadline
 * starts again. The deadline bounds a store that stops answering, not the
 * size of a listing (1,000,000 names take longer than one deadline). */
void storage_op_progress(struct storage_op *op);

/* Opens backend <name> ("file", "shm", "redis", "consul"; NULL or "" => "file") with
 * <conf>, delivering completions on <loop>. Returns a storage the caller
 * releases with storage_close(), or NULL with <err> set; an unknown name gets
 * an error listing the known names. redis: open() never blocks, so neither an
 * unreachable server nor a refused AUTH/SELECT is an error there (it is
 * logged, operations fail with the reason, and it reconnects by itself); a
 * TLS file that cannot be loaded, a bad sentinel node or namespace is. */
struct storage *storage_open(const char *name, const struct storage_conf *conf,
			     struct ev_loop *loop, char *err, size_t errlen);

/* The backend's name ("file", "shm", "redis", "consul"). consul: open()
 * asks nothing either (an unreachable Consul fails operations); a bad
 * kv_path is an error. */
const char *storage_name(const struct storage *st);

/* Finishes the writes already handed to worker threads, drops every pending
 * callback (none is called), closes the backend and frees <st>. Accepts NULL. */
void storage_close(struct storage *st);

/* Operations. Each returns a handle valid until its callback has run or
 * storage_cancel() was called, or NULL when out of memory (then <cb> is never
 * called). <cb> may be NULL: the operation runs and its result is dropped.
 * <cb>(<arg>, res) runs exactly once, on the loop, never before the call
 * returns. Invalid keys complete with rc -1. <val> bytes are copied. */
struct storage_req *storage_get(struct storage *st, const char *key, storage_cb *cb, void *arg);
struct storage_req *storage_put(struct storage *st, const char *key, const char *val, size_t len,
				unsigned ttl_sec, storage_cb *cb, void *arg);
struct storage_req *storage_del(struct storage *st, const char *key, storage_cb *cb, void *arg);
/* Lists the live keys whose name starts with <prefix> ("" = all; "certs/";
 * "certs/a."), sorted by strcmp. */
struct storage_req *storage_list(struct storage *st, const char *prefix, storage_cb *cb, void *arg);
/* Takes lock <name> (key grammar) for <owner> (1..STORAGE_OWNER_MAX printable
 * non-space bytes) for <lease_ms> (> 0) ms; an expired lease is taken over
 * atomically; the same owner extends it. */
struct storage_req *storage_lock(struct storage *st, const char *name, const char *owner,
				 unsigned lease_ms, storage_cb *cb, void *arg);
/* Fencing, so that a node paused past its lease (frozen, swapped out) cannot
 * undo what the node that took the lock over did: storage_lock() returns the
 * lock's generation in res.gen (a fresh acquisition gets a new one, an
 * extension keeps it). storage_lock_fenced() extends <name> only while
 * <owner> still holds it at generation <gen> (rc 1: the lease was lost, even
 * when nobody holds it now). storage_put_fenced() writes <key> only while
 * lock <fence> is held by <owner> at <gen>, checked by the store in the
 * same atomic step as the write (rc 1: refused, nothing written). */
struct storage_req *storage_lock_fenced(struct storage *st, const char *name, const char *owner,
					uint64_t gen, unsigned lease_ms, storage_cb *cb, void *arg);
struct storage_req *storage_put_fenced(struct storage *st, const char *key, const char *val,
				       size_t len, const char *fence, const char *owner,
				       uint64_t gen, storage_cb *cb, void *arg);
/* Releases lock <name> only if <owner> holds it. */
struct storage_req *storage_unlock(struct storage *st, const char *name, const char *owner,
				   storage_cb *cb, void *arg);
/* Checks the backend answers (redis: PING; file: root dir writable). */
struct storage_req *storage_ping(struct storage *st, storage_cb *cb, void *arg);
/* Publishes <len> bytes of <msg> on <channel> (key grammar). */
struct storage_req *storage_publish(struct storage *st, const char *channel, const char *msg,
				    size_t len, storage_cb *cb, void *arg);
/* Change feed <feed> (key grammar): records that <member> now has version
 * <version> (NULL: removed) and bumps the feed's generation, atomically. */
struct storage_req *storage_feed_put(struct storage *st, const char *feed, const char *member,
				     const char *version, storage_cb *cb, void *arg);
/* Reads the changes of <feed> after generation <since> (0: from the start),
 * at most STORAGE_FEED_BATCH at a time; from STORAGE_FEED_NOW it returns no
 * change and the current generation. */
struct storage_req *storage_feed_since(struct storage *st, const char *feed, uint64_t since,
				       storage_cb *cb, void *arg);

/* Reads one page (STORAGE_FEED_MEMBERS_BATCH) of the members <feed> holds
 * now, from <after> (0: the first page; then the <gen> of the previous page
 * while its <more> is 1), without versions: at start-up, the names a fleet
 * stores without listing the store's whole keyspace. Only where
 * storage_has_feed_members() (redis); elsewhere it fails "not supported". */
struct storage_req *storage_feed_members(struct storage *st, const char *feed, uint64_t after,
					 storage_cb *cb, void *arg);

/* 1 when storage_feed_members() is supported (redis), else 0. */
int storage_has_feed_members(const struct storage *st);

/* One page of the listing of <prefix> from <cursor> (0: the first), for a
 * walk of a large store in the background at a bounded memory: the next
 * page starts at the page's <gen> while its <more> is 1. A key may come
 * twice; one stored or removed meanwhile may or may not come. Only where
 * storage_has_scan() (redis, whose listing is a SCAN of the keyspace). */
struct storage_req *storage_scan(struct storage *st, const char *prefix, uint64_t cursor,
				 storage_cb *cb, void *arg);

/* 1 when storage_scan() is supported (redis), else 0. */
int storage_has_scan(const struct storage *st);

/* Returns 1 when <st> keeps a change feed (redis, consul, file), 0 when
 * feed_since is "not supported" (shm). */
int storage_has_feed(const struct storage *st);

/* Forgets <req>'s callback: it will not be called. The operation itself may
 * still take place. Accepts NULL. */
void storage_cancel(struct storage_req *req);

/* What the backend knows of its own health without asking anything: 1 up
 * (or unknown), 0 down with the reason in <err>. Never blocks. */
int storage_state(struct storage *st, char *err, size_t errlen);

/* Operations started and not yet delivered. */
size_t storage_inflight(const struct storage *st);

/* For start-up and command-line tools only, never from a loop callback: runs
 * <st>'s loop until <req> (started with a NULL callback) completes, and moves
 * its result into <out> (the caller frees out->val with free() or
 * crypto_secret_free, out->keys/vals with storage_list_free). Returns out->rc;
 * -1 with <err> set when <req> is NULL or the operation failed. */
int storage_wait(struct storage *st, struct storage_req *req, struct storage_res *out,
		 char *err, size_t errlen);

/* Frees the <keys> (or <vals>) array of a result. Accepts NULL. */
void storage_list_free(char **keys, size_t n);

/* Frees what <res> still owns (val cleansed, keys, vals). */
void storage_res_clear(struct storage_res *res);

/* Returns 1 if <key> follows the key grammar above, else 0. */
int storage_key_valid(const char *key);

/* Returns 1 if <prefix> may be passed to storage_list() ("" or a key whose
 * last segment may be partial or empty, e.g. "certs/" or "certs/a."), else 0. */
int storage_prefix_valid(const char *prefix);

/* Subscribes to <channel> (namespaced like keys) on the storage's loop:
 * <cb>(<arg>, msg, len) runs on the loop for every message; <msg> is only
 * valid during the call. Uses its own async connection (redis) or blocking
 * query (consul: messages are keys, see storage_consul_sub.c), reconnects
 * and resubscribes by itself with backoff (100 ms doubling to 5 s). Returns
 * the subscription (free with storage_sub_free()) or NULL with <err>: "not
 * supported" for file and shm. Never call storage_close() from its callback. */
struct storage_sub *storage_subscribe(struct storage *st, const char *channel,
				      void (*cb)(void *arg, const char *msg, size_t len),
				      void *arg, char *err, size_t errlen);

/* Returns 1 while the subscription is confirmed by the server, else 0. */
int storage_sub_ready(const struct storage_sub *sub);

/* Unsubscribes, stops every watcher and frees <sub>. Accepts NULL. Safe to
 * call from within the subscription's own callback. */
void storage_sub_free(struct storage_sub *sub);

#endif
