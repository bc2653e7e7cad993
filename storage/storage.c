/* SPDX-License-Identifier: Apache-2.0 */
/* Storage front: picks a backend by name, validates input, runs or submits
 * each operation, and delivers its result on a later loop turn (see
 * storage.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <ev.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>

#include "lib/heap.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "lib/workq.h"

#include "storage/storage.h"

static const struct storage_ops *const storage_backends[] = {
	&storage_file_ops,
	&storage_shm_ops,
	&storage_redis_ops,
	&storage_consul_ops,
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

/* ---- requests ------------------------------------------------------------ */

#define STORAGE_DEF_TIMEOUT_MS	3000
#define STORAGE_DEF_THREADS	4	/* writers, sharded by key */
#define STORAGE_READERS		2	/* reads of keys with no write pending */

struct storage_req {
	struct storage_op op;		/* first: storage_op_done() casts back */
	struct storage *st;
	storage_cb *cb;
	void *arg;
	int backend_done;		/* the backend is finished with it */
	int answered;			/* the callback ran (or was given a time-out) */
	int waiting;			/* storage_wait() owns the request */
	int delivered;			/* the waiter has its result */
	int queued;			/* on st->readyq */
	int skip;			/* closing: a read not started is not run (atomic) */
	int counted;			/* in st->wpending */
	ev_timer deadline;
	struct workq_item wi;
	TAILQ_ENTRY(storage_req) all;
	STAILQ_ENTRY(storage_req) ready;
	char key[STORAGE_KEY_MAX + 1];
	char member[STORAGE_KEY_MAX + 1];
	char owner[STORAGE_OWNER_MAX + 1];
	char *val;
};

TAILQ_HEAD(storage_req_list, storage_req);
STAILQ_HEAD(storage_ready_list, storage_req);

struct storage {
	const struct storage_ops *ops;
	void *be;
	struct ev_loop *loop;
	struct workq *wq;		/* blocking backends */
	unsigned writers, readers;	/* wq's threads: writers first */
	struct hmap wpending;		/* key -> writes queued or running (count) */
	double timeout;			/* seconds */
	struct storage_req_list reqs;	/* every request not yet freed */
	size_t nreqs;
	struct storage_ready_list readyq;
	ev_timer kick;			/* delivers readyq on the next turn */
	/* expiry of values put with a TTL, for backends with no TTL of their
	 * own (ops->front_expiry): key -> struct storage_exp, and a heap by time */
	struct hmap exp_keys;
	struct heap exp_heap;
	ev_timer exp_timer;
	uint64_t exp_dropped;		/* not indexed: the index was full */
	char name[16];
};

static void storage_exp_note(struct storage *st, const char *key, unsigned ttl_sec);

/* One key put with a TTL, deleted when it expires. */
struct storage_exp {
	double at;			/* ev_time() of expiry */
	size_t idx;			/* heap position */
	char key[];
};

static const char *const storage_op_names[STORAGE_OP__MAX] = {
	[STORAGE_OP_GET] = "get", [STORAGE_OP_PUT] = "put", [STORAGE_OP_DEL] = "del",
	[STORAGE_OP_LIST] = "list", [STORAGE_OP_LOCK] = "lock", [STORAGE_OP_UNLOCK] = "unlock",
	[STORAGE_OP_PING] = "ping", [STORAGE_OP_PUBLISH] = "publish",
	[STORAGE_OP_FEED_PUT] = "feed_put", [STORAGE_OP_FEED_SINCE] = "feed_since",
	[STORAGE_OP_FEED_MEMBERS] = "feed_members", [STORAGE_OP_SCAN] = "scan",
};

const char *storage_op_name(enum storage_op_kind k)
{
	return (unsigned)k < STORAGE_OP__MAX ? storage_op_names[k] : "?";
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

void storage_res_clear(struct storage_res *res)
{
	if (res->val) {
		OPENSSL_cleanse(res->val, res->len);
		free(res->val);
	}
	storage_list_free(res->keys, res->n);
	storage_list_free(res->vals, res->n);
	res->val = NULL;
	res->keys = res->vals = NULL;
	res->len = res->n = 0;
}

static void storage_req_free(struct storage_req *r)
{
	struct storage *st = r->st;

	ev_timer_stop(st->loop, &r->deadline);
	TAILQ_REMOVE(&st->reqs, r, all);
	st->nreqs--;
	storage_res_clear(&r->op.res);
	if (r->val) {
		OPENSSL_cleanse(r->val, r->op.len);
		free(r->val);
	}
	free(r);
}

/* Runs on the loop, one turn after results became ready: the callbacks of
 * this batch; results readied meanwhile wait for the next turn. */
static void cb_storage_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct storage *st = w->data;
	struct storage_ready_list batch = STAILQ_HEAD_INITIALIZER(batch);
	struct storage_req *r;

	STAILQ_CONCAT(&batch, &st->readyq);
	while ((r = STAILQ_FIRST(&batch))) {
		STAILQ_REMOVE_HEAD(&batch, ready);
		r->queued = 0;
		ev_timer_stop(loop, &r->deadline);
		if (r->waiting) {
			r->delivered = 1;
			continue;
		}
		if (!r->answered && r->cb) {
			r->answered = 1;
			r->op.res.err = r->op.res.rc == -1 ? r->op.err : NULL;
			r->op.res.key = r->key;
			r->cb(r->arg, &r->op.res);
		}
		storage_req_free(r);
	}
}

void storage_op_progress(struct storage_op *op)
{
	struct storage_req *r = (struct storage_req *)op;

	if (r->backend_done || r->answered || !ev_is_active(&r->deadline))
		return;
	ev_timer_stop(r->st->loop, &r->deadline);
	ev_timer_set(&r->deadline, r->st->timeout, 0.);
	ev_timer_start(r->st->loop, &r->deadline);
}

void storage_op_done(struct storage_op *op)
{
	struct storage_req *r = (struct storage_req *)op;
	struct storage *st = r->st;

	if (r->backend_done)
		return;
	r->backend_done = 1;
	if (op->res.rc == -1 && !op->err[0])
		snprintf(op->err, sizeof(op->err), "storage %s: %s %s failed", st->name,
			 storage_op_name(op->kind), op->key ? op->key : "");
	STAILQ_INSERT_TAIL(&st->readyq, r, ready);
	r->queued = 1;
	if (!ev_is_active(&st->kick)) {
		ev_timer_set(&st->kick, 0., 0.);
		ev_timer_start(st->loop, &st->kick);
	}
}

static void storage_timeout_err(const struct storage_req *r, char *err, size_t errlen)
{
	snprintf(err, errlen, "storage %s: %s %s: timed out after %.0f ms", r->st->name,
		 storage_op_name(r->op.kind), r->op.key ? r->op.key : "", r->st->timeout * 1000.);
}

static void cb_storage_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct storage_req *r = w->data;
	struct storage_res res = { .rc = -1 };
	char err[STORAGE_ERR_MAX];

	/* the backend still holds the request, and a worker may be writing
	 * r->op right now, so it is left alone: answer now, free it when done */
	if (r->waiting) {
		r->delivered = 1;
		return;
	}
	if (r->answered || !r->cb)
		return;
	r->answered = 1;
	storage_timeout_err(r, err, sizeof(err));
	res.err = err;
	res.key = r->key;
	r->cb(r->arg, &res);
}

/* Runs one operation with a backend's blocking primitives. */
static void storage_exec(const struct storage_ops *ops, void *be, struct storage_op *op)
{
	struct storage_res *res = &op->res;
	char *e = op->err;
	size_t el = sizeof(op->err);

	switch (op->kind) {
	case STORAGE_OP_GET:
		res->rc = ops->get(be, op->key, &res->val, &res->len, e, el);
		break;
	case STORAGE_OP_PUT:
		if (!op->fence)
			res->rc = ops->put(be, op->key, op->val, op->len, op->ttl_sec, e, el);
		else if (ops->put_fenced)
			res->rc = ops->put_fenced(be, op->key, op->val, op->len, op->fence, op->owner,
						  op->gen, e, el);
		else {
			snprintf(e, el, "storage %s: fenced put: not supported", ops->name);
			res->rc = -1;
		}
		break;
	case STORAGE_OP_DEL:
		res->rc = ops->del(be, op->key, e, el);
		break;
	case STORAGE_OP_LIST:
		res->rc = ops->list(be, op->key, &res->keys, &res->n, e, el);
		break;
	case STORAGE_OP_LOCK:
		res->gen = op->gen_new;
		res->rc = ops->lock(be, op->key, op->owner, op->lease_ms, op->gen, &res->gen, e, el);
		break;
	case STORAGE_OP_UNLOCK:
		res->rc = ops->unlock(be, op->key, op->owner, e, el);
		break;
	case STORAGE_OP_PING:
		res->rc = ops->ping(be, e, el);
		break;
	case STORAGE_OP_FEED_PUT:
		if (ops->feed_put) {
			res->rc = ops->feed_put(be, op->key, op->member, op->val, &res->gen, e, el);
			break;
		}
		/* fall through */
	case STORAGE_OP_PUBLISH:
		res->rc = 0;	/* single node: nobody to tell */
		break;
	case STORAGE_OP_FEED_SINCE:
		if (ops->feed_since) {
			res->rc = ops->feed_since(be, op->key, op->since, res, e, el);
			break;
		}
		/* fall through */
	default:
		snprintf(e, el, "storage %s: %s: not supported", ops->name, storage_op_name(op->kind));
		res->rc = -1;
		break;
	}
}

static void storage_wq_run(struct workq_item *it)
{
	struct storage_req *r = (struct storage_req *)((char *)it - offsetof(struct storage_req, wi));

	if (__atomic_load_n(&r->skip, __ATOMIC_ACQUIRE)) {
		snprintf(r->op.err, sizeof(r->op.err), "storage %s: closing", r->st->name);
		r->op.res.rc = -1;
		return;
	}
	storage_exec(r->st->ops, r->st->be, &r->op);
}

/* Writes of one key in flight: a read of that key queues behind them. */
static void storage_wpending_add(struct storage *st, struct storage_req *r, int delta)
{
	uintptr_t n = (uintptr_t)hmap_get(&st->wpending, r->key);

	if (delta > 0) {
		if (hmap_put(&st->wpending, r->key, (void *)(n + 1), NULL) == 0)
			r->counted = 1;
	} else if (r->counted) {
		r->counted = 0;
		if (n <= 1)
			hmap_del(&st->wpending, r->key);
		else
			hmap_put(&st->wpending, r->key, (void *)(n - 1), NULL);
	}
}

static void storage_wq_done(struct workq_item *it)
{
	struct storage_req *r = (struct storage_req *)((char *)it - offsetof(struct storage_req, wi));

	storage_wpending_add(r->st, r, -1);
	storage_op_done(&r->op);
}

/* The worker for <r>: writes and locks by key on the writers, so that the
 * operations on one key keep their order; reads on the readers unless a
 * write of that key is pending, so that a slow write (fsync) never delays a
 * read of another key. */
static unsigned storage_shard(struct storage *st, struct storage_req *r)
{
	unsigned h = workq_shard(r->key);

	switch (r->op.kind) {
	case STORAGE_OP_PUT:
	case STORAGE_OP_DEL:
		storage_wpending_add(st, r, 1);
		return h % st->writers;
	case STORAGE_OP_LOCK:
	case STORAGE_OP_UNLOCK:
		return h % st->writers;
	case STORAGE_OP_GET:
		if (hmap_get(&st->wpending, r->key))
			return h % st->writers;
		/* fall through */
	default:
		return st->writers + h % st->readers;
	}
}

static struct storage_req *storage_req_new(struct storage *st, enum storage_op_kind kind,
					   const char *key, storage_cb *cb, void *arg)
{
	struct storage_req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->st = st;
	r->cb = cb;
	r->arg = arg;
	r->op.kind = kind;
	snprintf(r->key, sizeof(r->key), "%s", key ? key : "");
	r->op.key = r->key;
	ev_timer_init(&r->deadline, cb_storage_deadline, st->timeout, 0.);
	r->deadline.data = r;
	TAILQ_INSERT_TAIL(&st->reqs, r, all);
	st->nreqs++;
	return r;
}

/* Hands <r> to the backend, or completes it with <why> (a validation error). */
static struct storage_req *storage_req_start(struct storage_req *r, const char *why)
{
	struct storage *st = r->st;

	if (why) {
		snprintf(r->op.err, sizeof(r->op.err), "%s", why);
		r->op.res.rc = -1;
		storage_op_done(&r->op);
		return r;
	}
	/* ev_now() is when the loop last woke up: after blocking work since
	 * (start-up, a tool between two calls), a deadline counted from it
	 * would fire early, at once if that work took longer than timeout_ms */
	ev_now_update(st->loop);
	ev_timer_start(st->loop, &r->deadline);
	if (st->ops->submit) {
		st->ops->submit(st->be, &r->op);
	} else if (st->wq) {
		r->wi.run = storage_wq_run;
		r->wi.done = storage_wq_done;
		workq_submit(st->wq, &r->wi, storage_shard(st, r));
	} else {
		storage_exec(st->ops, st->be, &r->op);
		storage_op_done(&r->op);
	}
	return r;
}

/* Copies the <len> bytes of <val> into <r> (NUL-terminated). Returns 0, or
 * -1 with <r> freed. */
static int storage_req_copy_val(struct storage_req *r, const char *val, size_t len)
{
	r->val = malloc(len + 1);
	if (!r->val) {
		storage_req_free(r);
		return -1;
	}
	if (len)
		memcpy(r->val, val, len);
	r->val[len] = '\0';
	r->op.val = r->val;
	r->op.len = len;
	return 0;
}

static const char *storage_why_key(const char *what, const char *key, char *buf, size_t len)
{
	return storage_check_key(what, key, buf, len) == -1 ? buf : NULL;
}

struct storage_req *storage_get(struct storage *st, const char *key, storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_GET, key, cb, arg);
	char why[STORAGE_ERR_MAX];

	return r ? storage_req_start(r, storage_why_key("key", key, why, sizeof(why))) : NULL;
}

/* What storage_put_prepare answers when the value could not be copied. */
static const char STORAGE_PUT_NOMEM[] = "out of memory";

/* The checks and the copy every put shares: NULL when <r> is ready (the
 * value copied, the TTL set and noted), else why it is refused (in <why>
 * or a constant), or STORAGE_PUT_NOMEM (<r> already released). */
static const char *storage_put_prepare(struct storage *st, struct storage_req *r, const char *key,
				       const char *val, size_t len, unsigned ttl_sec, char *why,
				       size_t whylen)
{
	const char *w = storage_why_key("key", key, why, whylen);

	if (!w && val == NULL && len > 0)
		w = "storage: put: NULL value";
	if (w)
		return w;
	if (storage_req_copy_val(r, val, len) == -1)
		return STORAGE_PUT_NOMEM;
	r->op.ttl_sec = ttl_sec;
	storage_exp_note(st, key, ttl_sec);
	return NULL;
}

struct storage_req *storage_put(struct storage *st, const char *key, const char *val, size_t len,
				unsigned ttl_sec, storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_PUT, key, cb, arg);
	char why[STORAGE_ERR_MAX];
	const char *w;

	if (!r)
		return NULL;
	w = storage_put_prepare(st, r, key, val, len, ttl_sec, why, sizeof(why));
	return w == STORAGE_PUT_NOMEM ? NULL : storage_req_start(r, w);
}

struct storage_req *storage_del(struct storage *st, const char *key, storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_DEL, key, cb, arg);
	char why[STORAGE_ERR_MAX];
	const char *w;

	if (!r)
		return NULL;
	w = storage_why_key("key", key, why, sizeof(why));
	if (!w)
		storage_exp_note(st, key, 0);
	return storage_req_start(r, w);
}

/* NULL when <prefix> may be listed, else why not (in <buf>). */
static const char *storage_why_prefix(const char *prefix, char *buf, size_t len)
{
	if (storage_prefix_valid(prefix))
		return NULL;
	snprintf(buf, len, "storage: invalid list prefix \"%.64s\"", prefix ? prefix : "(null)");
	return buf;
}

struct storage_req *storage_list(struct storage *st, const char *prefix, storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_LIST, prefix, cb, arg);
	char why[STORAGE_ERR_MAX];

	return r ? storage_req_start(r, storage_why_prefix(prefix, why, sizeof(why))) : NULL;
}

/* A fresh lock's generation: random, so that no two acquisitions of one
 * name share one (a counter would need a key of its own in every store). */
static uint64_t storage_gen_new(void)
{
	uint64_t g = 0;

	while (g == 0) {
		if (RAND_bytes((unsigned char *)&g, sizeof(g)) != 1)
			g = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ (uint64_t)time(NULL);
		g &= (UINT64_C(1) << 53) - 1;	/* exact in a Lua number */
	}
	return g;
}

static struct storage_req *storage_lock_op(struct storage *st, enum storage_op_kind kind,
					   const char *name, const char *owner, unsigned lease_ms,
					   uint64_t gen, storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, kind, name, cb, arg);
	char why[STORAGE_ERR_MAX];
	const char *w;

	if (!r)
		return NULL;
	w = storage_why_key("lock name", name, why, sizeof(why));
	if (!w && !storage_owner_valid(owner)) {
		snprintf(why, sizeof(why), "storage: %s %s: owner must be 1..%d printable "
			 "non-space bytes", storage_op_name(kind), name, STORAGE_OWNER_MAX);
		w = why;
	}
	if (!w && kind == STORAGE_OP_LOCK && lease_ms == 0) {
		snprintf(why, sizeof(why), "storage: lock %s: lease must be > 0 ms", name);
		w = why;
	}
	if (!w) {
		snprintf(r->owner, sizeof(r->owner), "%s", owner);
		r->op.owner = r->owner;
		r->op.lease_ms = lease_ms;
		if (kind == STORAGE_OP_LOCK)
			r->op.gen_new = storage_gen_new();
		r->op.gen = gen;
	}
	return storage_req_start(r, w);
}

struct storage_req *storage_lock_fenced(struct storage *st, const char *name, const char *owner,
					uint64_t gen, unsigned lease_ms, storage_cb *cb, void *arg)
{
	struct storage_req *r;
	char why[STORAGE_ERR_MAX];

	if (gen == 0) {
		r = storage_req_new(st, STORAGE_OP_LOCK, name, cb, arg);
		if (!r)
			return NULL;
		snprintf(why, sizeof(why), "storage: lock %s: fenced without a generation", name);
		return storage_req_start(r, why);
	}
	return storage_lock_op(st, STORAGE_OP_LOCK, name, owner, lease_ms, gen, cb, arg);
}

struct storage_req *storage_put_fenced(struct storage *st, const char *key, const char *val,
				       size_t len, const char *fence, const char *owner,
				       uint64_t gen, storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_PUT, key, cb, arg);
	char why[STORAGE_ERR_MAX];
	const char *w;

	if (!r)
		return NULL;
	w = storage_why_key("lock name", fence, why, sizeof(why));
	if (!w && (!storage_owner_valid(owner) || gen == 0)) {
		snprintf(why, sizeof(why), "storage: fenced put %s: owner and generation needed", key);
		w = why;
	}
	if (!w)
		w = storage_put_prepare(st, r, key, val, len, 0, why, sizeof(why));
	if (w == STORAGE_PUT_NOMEM)
		return NULL;
	if (!w) {
		snprintf(r->member, sizeof(r->member), "%s", fence);
		snprintf(r->owner, sizeof(r->owner), "%s", owner);
		r->op.fence = r->member;
		r->op.owner = r->owner;
		r->op.gen = gen;
	}
	return storage_req_start(r, w);
}

struct storage_req *storage_lock(struct storage *st, const char *name, const char *owner,
				 unsigned lease_ms, storage_cb *cb, void *arg)
{
	return storage_lock_op(st, STORAGE_OP_LOCK, name, owner, lease_ms, 0, cb, arg);
}

struct storage_req *storage_unlock(struct storage *st, const char *name, const char *owner,
				   storage_cb *cb, void *arg)
{
	return storage_lock_op(st, STORAGE_OP_UNLOCK, name, owner, 0, 0, cb, arg);
}

struct storage_req *storage_ping(struct storage *st, storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_PING, NULL, cb, arg);

	return r ? storage_req_start(r, NULL) : NULL;
}

struct storage_req *storage_publish(struct storage *st, const char *channel, const char *msg,
				    size_t len, storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_PUBLISH, channel, cb, arg);
	char why[STORAGE_ERR_MAX];
	const char *w;

	if (!r)
		return NULL;
	w = storage_why_key("channel", channel, why, sizeof(why));
	if (!w && storage_req_copy_val(r, msg, len) == -1)
		return NULL;
	return storage_req_start(r, w);
}

struct storage_req *storage_feed_put(struct storage *st, const char *feed, const char *member,
				     const char *version, storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_FEED_PUT, feed, cb, arg);
	char why[STORAGE_ERR_MAX];
	const char *w;

	if (!r)
		return NULL;
	w = storage_why_key("feed", feed, why, sizeof(why));
	if (!w && (!member || !storage_key_valid(member) || strchr(member, '/')))
		w = "storage: feed member must be one key segment";
	if (!w) {
		snprintf(r->member, sizeof(r->member), "%s", member);
		r->op.member = r->member;
		if (version && !(r->val = strdup(version))) {
			storage_req_free(r);
			return NULL;
		}
		r->op.val = r->val;
		r->op.len = version ? strlen(version) : 0;
	}
	return storage_req_start(r, w);
}

struct storage_req *storage_feed_since(struct storage *st, const char *feed, uint64_t since,
				       storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_FEED_SINCE, feed, cb, arg);
	char why[STORAGE_ERR_MAX];

	if (!r)
		return NULL;
	r->op.since = since;
	return storage_req_start(r, storage_why_key("feed", feed, why, sizeof(why)));
}

struct storage_req *storage_feed_members(struct storage *st, const char *feed, uint64_t after,
					 storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_FEED_MEMBERS, feed, cb, arg);
	char why[STORAGE_ERR_MAX];
	const char *w;

	if (!r)
		return NULL;
	r->op.since = after;
	w = storage_why_key("feed", feed, why, sizeof(why));
	if (!w && !storage_has_feed_members(st)) {
		snprintf(why, sizeof(why), "storage %s: feed_members: not supported", st->ops->name);
		w = why;
	}
	return storage_req_start(r, w);
}

int storage_has_feed_members(const struct storage *st)
{
	return st->ops->feed_members;
}

struct storage_req *storage_scan(struct storage *st, const char *prefix, uint64_t cursor,
				 storage_cb *cb, void *arg)
{
	struct storage_req *r = storage_req_new(st, STORAGE_OP_SCAN, prefix, cb, arg);
	char why[STORAGE_ERR_MAX];
	const char *w;

	if (!r)
		return NULL;
	r->op.since = cursor;
	w = storage_why_prefix(prefix, why, sizeof(why));
	if (!w && !storage_has_scan(st)) {
		snprintf(why, sizeof(why), "storage %s: scan: not supported", st->ops->name);
		w = why;
	}
	return storage_req_start(r, w);
}

int storage_has_scan(const struct storage *st)
{
	return st->ops->scan;
}

int storage_has_feed(const struct storage *st)
{
	return st->ops->submit != NULL || st->ops->feed_since != NULL;
}

void storage_cancel(struct storage_req *req)
{
	if (req)
		req->cb = NULL;
}

int storage_state(struct storage *st, char *err, size_t errlen)
{
	return st->ops->state ? st->ops->state(st->be, err, errlen) : 1;
}

size_t storage_inflight(const struct storage *st)
{
	return st->nreqs;
}

int storage_wait(struct storage *st, struct storage_req *req, struct storage_res *out,
		 char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!req) {
		snprintf(err, errlen, "storage: out of memory");
		return out->rc = -1;
	}
	req->waiting = 1;
	req->cb = NULL;
	while (!req->delivered)
		ev_run(st->loop, EVRUN_ONCE);
	req->waiting = 0;
	req->answered = 1;
	if (req->backend_done && !req->queued) {
		*out = req->op.res;
		out->err = NULL;
		out->key = NULL;	/* req->key goes with req */
		if (out->rc == -1)
			snprintf(err, errlen, "%s", req->op.err);
		memset(&req->op.res, 0, sizeof(req->op.res));
		storage_req_free(req);
	} else {
		/* timed out: the backend, or the ready queue when the result came
		 * in the same turn, still holds it and frees it on delivery;
		 * whatever it returns then is dropped */
		storage_timeout_err(req, err, errlen);
		out->rc = -1;
	}
	return out->rc;
}

/* ---- expiry (front_expiry backends) -------------------------------------- */

/* Stored records expire in every backend: Redis by its own TTLs; file and
 * shm through this index of the keys this process put with a TTL, deleted
 * when due by an ordinary del (so it queues behind the key's other writes).
 * A later put of the key moves or drops its entry; the file backend also
 * removes expired files at start (what an earlier process left). Work is
 * proportional to the keys that expire. */
#define STORAGE_EXP_MAX		200000	/* beyond: left to the start-up sweep */
#define STORAGE_EXP_BATCH	256	/* deletes issued per timer run */

static int storage_exp_less(const void *a, const void *b)
{
	return ((const struct storage_exp *)a)->at < ((const struct storage_exp *)b)->at;
}

static void storage_exp_set_index(void *e, size_t idx)
{
	((struct storage_exp *)e)->idx = idx;
}

static void storage_exp_arm(struct storage *st)
{
	struct storage_exp *e = heap_peek(&st->exp_heap);
	double in;

	ev_timer_stop(st->loop, &st->exp_timer);
	if (!e)
		return;
	in = e->at - ev_time();
	ev_timer_set(&st->exp_timer, in > 0 ? in + 0.01 : 0., 0.);
	ev_timer_start(st->loop, &st->exp_timer);
}

static void storage_exp_forget(struct storage *st, const char *key)
{
	struct storage_exp *e = hmap_del(&st->exp_keys, key);

	if (!e)
		return;
	heap_remove(&st->exp_heap, e->idx);
	free(e);
}

/* Called for every put and del the front accepts. */
static void storage_exp_note(struct storage *st, const char *key, unsigned ttl_sec)
{
	struct storage_exp *e;
	size_t kl;

	if (!st->ops->front_expiry)
		return;
	if (ttl_sec == 0) {
		storage_exp_forget(st, key);
		return;
	}
	e = hmap_get(&st->exp_keys, key);
	if (e) {
		e->at = ev_time() + ttl_sec;
		heap_update(&st->exp_heap, e->idx);
	} else {
		kl = strlen(key);
		if (st->exp_keys.count >= STORAGE_EXP_MAX || !(e = calloc(1, sizeof(*e) + kl + 1))) {
			st->exp_dropped++;
			return;
		}
		memcpy(e->key, key, kl + 1);
		e->at = ev_time() + ttl_sec;
		if (hmap_put(&st->exp_keys, key, e, NULL) == -1) {
			free(e);
			st->exp_dropped++;
			return;
		}
		if (heap_push(&st->exp_heap, e) == -1) {
			hmap_del(&st->exp_keys, key);
			free(e);
			st->exp_dropped++;
			return;
		}
	}
	if (heap_peek(&st->exp_heap) == e)
		storage_exp_arm(st);
}

static void cb_storage_exp_done(void *arg, struct storage_res *res)
{
	if (res->rc == -1)
		log_warn("storage: removing an expired record: %s", res->err);
}

static void cb_storage_exp(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct storage *st = w->data;
	double now = ev_time();
	struct storage_exp *e;
	int n = 0;

	while ((e = heap_peek(&st->exp_heap)) && e->at <= now && n++ < STORAGE_EXP_BATCH) {
		heap_pop(&st->exp_heap);
		hmap_del(&st->exp_keys, e->key);
		/* through the front: after the key's pending writes */
		storage_del(st, e->key, cb_storage_exp_done, NULL);
		free(e);
	}
	storage_exp_arm(st);
}

size_t storage_expiring(const struct storage *st)
{
	return st->exp_keys.count;
}

/* ---- open and close ------------------------------------------------------ */

struct storage *storage_open(const char *name, const struct storage_conf *conf,
			     struct ev_loop *loop, char *err, size_t errlen)
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
	st->loop = loop;
	st->timeout = (conf && conf->timeout_ms > 0 ? conf->timeout_ms : STORAGE_DEF_TIMEOUT_MS) / 1000.;
	TAILQ_INIT(&st->reqs);
	STAILQ_INIT(&st->readyq);
	ev_init(&st->kick, cb_storage_kick);
	st->kick.data = st;
	snprintf(st->name, sizeof(st->name), "%s", ops->name);
	hmap_init(&st->wpending);
	hmap_init(&st->exp_keys);
	heap_init(&st->exp_heap, storage_exp_less, storage_exp_set_index);
	ev_init(&st->exp_timer, cb_storage_exp);
	st->exp_timer.data = st;
	if (ops->blocking) {
		st->writers = conf && conf->file_threads ? conf->file_threads : STORAGE_DEF_THREADS;
		st->readers = STORAGE_READERS;
		st->wq = workq_new(loop, st->writers + st->readers, err, errlen);
		if (!st->wq) {
			hmap_clear(&st->wpending, NULL);
			hmap_clear(&st->exp_keys, free);
			heap_clear(&st->exp_heap);
			free(st);
			return NULL;
		}
	}
	st->be = ops->open(loop, conf, err, errlen);
	if (st->be == NULL) {
		workq_free(st->wq);
		hmap_clear(&st->wpending, NULL);
		hmap_clear(&st->exp_keys, free);
		heap_clear(&st->exp_heap);
		free(st);
		return NULL;
	}
	return st;
}

const char *storage_name(const struct storage *st)
{
	return st->name;
}

void storage_close(struct storage *st)
{
	struct storage_req *r;

	if (st == NULL)
		return;
	TAILQ_FOREACH(r, &st->reqs, all) {
		r->cb = NULL;
		/* reads not started are pointless now; writes complete */
		if (r->op.kind == STORAGE_OP_GET || r->op.kind == STORAGE_OP_LIST ||
		    r->op.kind == STORAGE_OP_PING)
			__atomic_store_n(&r->skip, 1, __ATOMIC_RELEASE);
	}
	/* writes handed to workers complete; their results are dropped */
	workq_free(st->wq);
	st->ops->close(st->be);
	ev_timer_stop(st->loop, &st->kick);
	ev_timer_stop(st->loop, &st->exp_timer);
	heap_clear(&st->exp_heap);
	hmap_clear(&st->exp_keys, free);
	while ((r = TAILQ_FIRST(&st->reqs)))
		storage_req_free(r);
	hmap_clear(&st->wpending, NULL);
	free(st);
}

/* A subscription: the backend's, and the ops that free it. */
struct storage_sub {
	const struct storage_ops *ops;
	void *be_sub;
};

struct storage_sub *storage_subscribe(struct storage *st, const char *channel,
				      void (*cb)(void *arg, const char *msg, size_t len),
				      void *arg, char *err, size_t errlen)
{
	struct storage_sub *sub;

	if (st->ops->subscribe == NULL) {
		snprintf(err, errlen, "not supported");
		return NULL;
	}
	if (storage_check_key("channel", channel, err, errlen) == -1)
		return NULL;
	if (!(sub = calloc(1, sizeof(*sub)))) {
		snprintf(err, errlen, "storage %s: subscribe %s: out of memory", st->name, channel);
		return NULL;
	}
	sub->ops = st->ops;
	sub->be_sub = st->ops->subscribe(st->be, st->loop, channel, cb, arg, err, errlen);
	if (!sub->be_sub) {
		free(sub);
		return NULL;
	}
	return sub;
}

int storage_sub_ready(const struct storage_sub *sub)
{
	return sub != NULL && sub->ops->sub_ready(sub->be_sub);
}

void storage_sub_free(struct storage_sub *sub)
{
	if (sub == NULL)
		return;
	sub->ops->sub_free(sub->be_sub);
	free(sub);
}
