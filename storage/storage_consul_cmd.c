/* SPDX-License-Identifier: Apache-2.0 */
/* consul backend: the requests of each operation and the reading of their
 * answers (the layout under kv_path is described in storage_consul.c). An
 * operation of more than one request (LOCK, UNLOCK, FEED_PUT: a read, then a
 * transaction that holds only if nothing changed since, by its index) sends
 * the next one from the answer to the previous, and reads again when another
 * node got there first. Values are never logged. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "storage/storage.h"
#include "storage/storage_consul_int.h"

#define CONSUL_RACE_TRIES 16	/* transactions lost to another writer, per operation */
#define CONSUL_MSG_TTL_MS 60000	/* a pub/sub message outlives its delivery by this */

enum consul_step {
	STEP_READ = 0,		/* GET of the lock, or of the feed's generation */
	STEP_TXN,		/* the transaction built from it */
	STEP__MAX
};

/* "kv/<kv>/<kind><name><query>" into <path>; fails <req> when too long. */
static int cmd_path(struct consul_req *req, char *path, size_t size, const char *kind,
		    const char *name, const char *query)
{
	size_t off = 3;

	memcpy(path, "kv/", 4);
	if (consul_path(req->be, path, size, &off, kind, name) == 0 &&
	    (size_t)snprintf(path + off, size - off, "%s", query) < size - off)
		return 0;
	consul_req_fail(req, "key too long");
	return -1;
}

/* "<kv>/<kind><name>" as a transaction's Key (not escaped: JSON). */
static char *cmd_key(const struct consul_be *be, const char *kind, const char *name)
{
	char *k = NULL;

	return asprintf(&k, "%s/%s%s", be->kv, kind, name) == -1 ? NULL : k;
}

/* Parses the one entry of a KV GET answer. NULL on a bad answer. */
static json_t *cmd_entry(const struct consul_resp *r, json_t **root)
{
	json_t *e;

	*root = json_loadb(r->body, r->len, 0, NULL);
	e = json_array_get(*root, 0);
	return json_is_object(e) ? e : NULL;
}

/* cmd_entry, or NULL with <req> failed ("unexpected answer") when the answer
 * holds no entry. */
static json_t *cmd_entry_or_fail(struct consul_req *req, const struct consul_resp *r,
				 json_t **root)
{
	json_t *e = cmd_entry(r, root);

	if (!e) {
		json_decref(*root);
		*root = NULL;
		consul_req_fail(req, "unexpected answer");
	}
	return e;
}

static uint64_t cmd_uint(json_t *o, const char *name)
{
	json_int_t v = json_integer_value(json_object_get(o, name));

	return v > 0 ? (uint64_t)v : 0;
}

/* Sends a transaction of <ops> (stolen). */
static void cmd_txn(struct consul_req *req, json_t *ops)
{
	char *body = ops ? json_dumps(ops, JSON_COMPACT) : NULL;

	json_decref(ops);
	if (!body) {
		consul_req_fail(req, "out of memory");
		return;
	}
	req->step = STEP_TXN;
	consul_req_send(req, "PUT", "txn", body, strlen(body));
	OPENSSL_cleanse(body, strlen(body));	/* values in base64 */
	free(body);
}

/* One transaction operation {"KV": {"Verb": <verb>, "Key": <key>, ...}}. */
static json_t *txn_op(const char *verb, const char *key, const char *b64val, uint64_t index,
		      const char *session)
{
	json_t *kv = json_pack("{s:s, s:s}", "Verb", verb, "Key", key);

	if (kv && b64val)
		json_object_set_new(kv, "Value", json_string(b64val));
	if (kv && index)
		json_object_set_new(kv, "Index", json_integer((json_int_t)index));
	if (kv && session)
		json_object_set_new(kv, "Session", json_string(session));
	return kv ? json_pack("{s:o}", "KV", kv) : NULL;
}

/* A transaction lost to another writer (409: an index is stale, a lock was
 * taken meanwhile): read again, a bounded number of times. 1 when retried. */
static int cmd_retry(struct consul_req *req, const struct consul_resp *r)
{
	if (r->status != 409 || ++req->attempt >= CONSUL_RACE_TRIES)
		return 0;
	consul_cmd_start(req);
	return 1;
}

/* ---- get, put, del, list, ping, publish ---------------------------------- */

static void cmd_get_answer(struct consul_req *req, const struct consul_resp *r)
{
	struct storage_op *op = req->op;
	json_t *root = NULL, *e;
	uint64_t exp;

	if (r->status == 404) {
		consul_req_finish(req, 1);
		return;
	}
	if (!(e = cmd_entry_or_fail(req, r, &root)))
		return;
	exp = cmd_uint(e, "Flags");
	if (exp && exp <= consul_now_ms()) {
		consul_delete_cas(req->be, "k/", op->key, cmd_uint(e, "ModifyIndex"));
		json_decref(root);
		consul_req_finish(req, 1);
		return;
	}
	if (consul_unb64(json_string_value(json_object_get(e, "Value")), &op->res.val,
			 &op->res.len) == -1) {
		json_decref(root);
		consul_req_fail(req, "bad value encoding");
		return;
	}
	json_decref(root);
	consul_req_finish(req, 0);
}

static int cmd_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ?recurse answers every entry with its value: the live keys under the
 * prefix, sorted; expired ones are dropped (and deleted). */
static void cmd_list_answer(struct consul_req *req, const struct consul_resp *r)
{
	struct storage_op *op = req->op;
	json_t *root = NULL;
	size_t i, n = 0, plen = strlen(req->be->kv) + 3;	/* "<kv>/k/" */
	uint64_t now = consul_now_ms();
	char **keys = NULL;

	if (r->status != 404)
		root = json_loadb(r->body, r->len, 0, NULL);
	if (r->status != 404 && !json_is_array(root)) {
		json_decref(root);
		consul_req_fail(req, "unexpected answer");
		return;
	}
	if (!(keys = calloc(json_array_size(root) + 1, sizeof(*keys))))
		goto oom;
	for (i = 0; i < json_array_size(root); i++) {
		json_t *e = json_array_get(root, i);
		const char *key = json_string_value(json_object_get(e, "Key"));
		uint64_t exp = cmd_uint(e, "Flags");

		if (!key || strlen(key) <= plen || !storage_key_valid(key + plen))
			continue;
		if (exp && exp <= now) {
			consul_delete_cas(req->be, "k/", key + plen, cmd_uint(e, "ModifyIndex"));
			continue;
		}
		if (!(keys[n] = strdup(key + plen)))
			goto oom;
		n++;
	}
	json_decref(root);
	qsort(keys, n, sizeof(*keys), cmd_cmp_str);
	op->res.keys = keys;
	op->res.n = n;
	consul_req_finish(req, 0);
	return;
oom:
	json_decref(root);
	storage_list_free(keys, n);
	consul_req_fail(req, "out of memory");
}

static void cmd_put(struct consul_req *req, const char *kind, const char *name,
		    uint64_t expiry_ms)
{
	struct storage_op *op = req->op;
	char path[CONSUL_PATHBUF], q[40];

	snprintf(q, sizeof(q), "?flags=%" PRIu64, expiry_ms);
	if (cmd_path(req, path, sizeof(path), kind, name, q) == 0)
		consul_req_send(req, "PUT", path, op->val ? op->val : "", op->len);
}

/* Hex of the first 16 bytes of FNV-1a over <msg> twice (two seeds): a
 * message's key, so that one message published again is one key. */
static void cmd_msg_name(const char *msg, size_t len, char out[33])
{
	uint64_t h1 = 14695981039346656037ULL, h2 = 0x9e3779b97f4a7c15ULL;
	size_t i;

	for (i = 0; i < len; i++) {
		h1 = (h1 ^ (unsigned char)msg[i]) * 1099511628211ULL;
		h2 = (h2 ^ (unsigned char)msg[i]) * 0x100000001b3ULL + 7;
	}
	snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, h1, h2);
}

/* ---- locks --------------------------------------------------------------- */

/* The lock's value: who holds it, until when (wall clock, ms) and at which
 * fencing generation. */
static char *lock_value(const char *owner, uint64_t exp, uint64_t gen)
{
	json_t *v = json_pack("{s:s, s:I, s:I}", "owner", owner, "exp", (json_int_t)exp,
			      "gen", (json_int_t)gen);
	char *s = v ? json_dumps(v, JSON_COMPACT) : NULL, *b = s ? consul_b64(s, strlen(s)) : NULL;

	json_decref(v);
	free(s);
	return b;
}

/* Reads the holder of a lock entry <e> into <owner>/<exp>/<gen> (0 for a
 * lock written before fencing). 0 or -1. */
static int lock_holder(json_t *e, char *owner, size_t size, uint64_t *exp, uint64_t *gen)
{
	char *raw = NULL;
	size_t len;
	json_t *v = NULL;
	int rc = -1;

	if (consul_unb64(json_string_value(json_object_get(e, "Value")), &raw, &len) == 0 &&
	    (v = json_loadb(raw, len, 0, NULL)) &&
	    json_is_string(json_object_get(v, "owner"))) {
		snprintf(owner, size, "%s", json_string_value(json_object_get(v, "owner")));
		*exp = cmd_uint(v, "exp");
		*gen = cmd_uint(v, "gen");
		rc = 0;
	}
	json_decref(v);
	free(raw);
	return rc;
}

/* The lock as read: absent, free, ours (same owner), or another's whose
 * lease ran out are taken in one transaction that holds only if the entry
 * did not change since this read; another's live lease is rc 1. */
static void cmd_lock_read(struct consul_req *req, const struct consul_resp *r)
{
	struct consul_be *be = req->be;
	struct storage_op *op = req->op;
	json_t *root = NULL, *e = NULL, *ops = NULL;
	char owner[STORAGE_OWNER_MAX + 1] = "", *key = NULL, *val = NULL;
	const char *sess = NULL;
	uint64_t exp = 0, index = 0, gen = 0, now = consul_now_ms();
	int ours = 0;

	if (r->status != 404) {
		if (!(e = cmd_entry_or_fail(req, r, &root)))
			return;
		index = cmd_uint(e, "ModifyIndex");
		sess = json_string_value(json_object_get(e, "Session"));
		if (lock_holder(e, owner, sizeof(owner), &exp, &gen) == -1)
			exp = 0;	/* unreadable: as if expired */
		if (sess && *sess && exp > now && strcmp(owner, op->owner) != 0) {
			json_decref(root);
			consul_req_finish(req, 1);
			return;
		}
		ours = sess && *sess && exp > now && gen != 0;
	}
	/* fenced: only the very lease held at op->gen, still live */
	if (op->gen && (!ours || gen != op->gen)) {
		json_decref(root);
		consul_req_finish(req, 1);
		return;
	}
	op->res.gen = ours ? gen : op->gen_new;
	key = cmd_key(be, "lock/", op->key);
	val = lock_value(op->owner, now + op->lease_ms, op->res.gen);
	ops = json_array();
	if (!key || !val || !ops)
		goto oom;
	if (sess && *sess && strcmp(sess, be->session) != 0) {
		/* held by another session (a lease that ran out, or our owner in
		 * another process): released for it, then taken */
		json_array_append_new(ops, txn_op("check-index", key, NULL, index, NULL));
		json_array_append_new(ops, txn_op("unlock", key, val, 0, sess));
	} else {
		json_array_append_new(ops, txn_op("cas", key, val, index, NULL));
	}
	json_array_append_new(ops, txn_op("lock", key, val, 0, be->session));
	json_decref(root);
	free(key);
	free(val);
	cmd_txn(req, ops);
	return;
oom:
	json_decref(root);
	json_decref(ops);
	free(key);
	free(val);
	consul_req_fail(req, "out of memory");
}

static void cmd_lock_txn(struct consul_req *req, const struct consul_resp *r)
{
	char why[STORAGE_ERR_MAX];

	if (r->status == 200) {
		consul_req_finish(req, 0);
		return;
	}
	consul_resp_why(r, why, sizeof(why));
	/* a name whose holder's session died is refused for the lock-delay */
	if (r->status == 409 && strstr(why, "lock delay")) {
		consul_req_finish(req, 1);
		return;
	}
	if (r->status == 409 && strstr(why, "session")) {
		consul_session_lost(req->be);
		if (++req->attempt < CONSUL_RACE_TRIES) {
			consul_cmd_start(req);
			return;
		}
	}
	if (cmd_retry(req, r))
		return;
	if (r->status == 409)
		consul_req_finish(req, 1);
	else
		consul_req_fail(req, "%s", why);
}

/* Ours (same owner, lease running): released and deleted in one transaction
 * that holds only if the entry did not change since this read. */
static void cmd_unlock_read(struct consul_req *req, const struct consul_resp *r)
{
	struct storage_op *op = req->op;
	json_t *root = NULL, *e, *ops = NULL;
	char owner[STORAGE_OWNER_MAX + 1] = "", *key = NULL;
	const char *sess;
	uint64_t exp = 0, gen;

	if (r->status == 404) {
		consul_req_finish(req, 1);
		return;
	}
	if (!(e = cmd_entry_or_fail(req, r, &root)))
		return;
	if (lock_holder(e, owner, sizeof(owner), &exp, &gen) == -1 || strcmp(owner, op->owner) != 0 ||
	    exp <= consul_now_ms()) {
		json_decref(root);
		consul_req_finish(req, 1);
		return;
	}
	sess = json_string_value(json_object_get(e, "Session"));
	if (!(key = cmd_key(req->be, "lock/", op->key)) || !(ops = json_array()))
		goto oom;
	json_array_append_new(ops, txn_op("check-index", key, NULL, cmd_uint(e, "ModifyIndex"),
					   NULL));
	if (sess && *sess)
		json_array_append_new(ops, txn_op("unlock", key, "", 0, sess));
	json_array_append_new(ops, txn_op("delete", key, NULL, 0, NULL));
	json_decref(root);
	free(key);
	cmd_txn(req, ops);
	return;
oom:
	json_decref(root);
	free(key);
	consul_req_fail(req, "out of memory");
}

/* A fenced put: the fencing lock as read must be <owner>'s live lease at
 * <gen>; then one transaction that holds only if the lock entry did not
 * change since this read (check-index) writes the value. */
static void cmd_put_fenced_read(struct consul_req *req, const struct consul_resp *r)
{
	struct storage_op *op = req->op;
	json_t *root = NULL, *e, *ops = NULL;
	char owner[STORAGE_OWNER_MAX + 1] = "", *lkey = NULL, *key = NULL, *val = NULL;
	const char *sess;
	uint64_t exp = 0, gen = 0;

	if (r->status == 404) {
		consul_req_finish(req, 1);
		return;
	}
	if (!(e = cmd_entry_or_fail(req, r, &root)))
		return;
	sess = json_string_value(json_object_get(e, "Session"));
	if (lock_holder(e, owner, sizeof(owner), &exp, &gen) == -1 || !sess || !*sess ||
	    strcmp(owner, op->owner) != 0 || gen != op->gen || exp <= consul_now_ms()) {
		json_decref(root);
		consul_req_finish(req, 1);
		return;
	}
	if (!(lkey = cmd_key(req->be, "lock/", op->fence)) || !(key = cmd_key(req->be, "k/", op->key)) ||
	    !(val = consul_b64(op->val ? op->val : "", op->len)) || !(ops = json_array()))
		goto oom;
	json_array_append_new(ops, txn_op("check-index", lkey, NULL, cmd_uint(e, "ModifyIndex"),
					   NULL));
	json_array_append_new(ops, txn_op("set", key, val, 0, NULL));
	json_decref(root);
	free(lkey);
	free(key);
	if (val)	/* a certificate bundle holds its private key */
		OPENSSL_cleanse(val, strlen(val));
	free(val);
	cmd_txn(req, ops);
	return;
oom:
	json_decref(root);
	json_decref(ops);
	free(lkey);
	free(key);
	if (val)
		OPENSSL_cleanse(val, strlen(val));
	free(val);
	consul_req_fail(req, "out of memory");
}

/* ---- the change feed ----------------------------------------------------- */

/* The generation as read, then one transaction: the counter moves on by
 * check-and-set and the member records it with its version. */
static void cmd_feed_put_read(struct consul_req *req, const struct consul_resp *r)
{
	struct storage_op *op = req->op;
	json_t *root = NULL, *e, *ops = NULL, *m = NULL;
	char *raw = NULL, *gkey = NULL, *mkey = NULL, *mjs = NULL;
	char *gb64 = NULL, *mb64 = NULL, num[24];
	size_t len;
	uint64_t gen = 0, index = 0;

	if (r->status != 404) {
		if (!(e = cmd_entry(r, &root)) ||
		    consul_unb64(json_string_value(json_object_get(e, "Value")), &raw, &len)) {
			json_decref(root);
			consul_req_fail(req, "unexpected answer");
			return;
		}
		gen = strtoull(raw, NULL, 10);
		index = cmd_uint(e, "ModifyIndex");
		free(raw);
		json_decref(root);
	}
	op->res.gen = gen + 1;
	snprintf(num, sizeof(num), "%" PRIu64, gen + 1);
	if (asprintf(&gkey, "%s/feed/%s/gen", req->be->kv, op->key) == -1)
		gkey = NULL;
	if (asprintf(&mkey, "%s/feed/%s/m/%s", req->be->kv, op->key, op->member) == -1)
		mkey = NULL;
	m = json_pack("{s:I, s:s?}", "g", (json_int_t)(gen + 1), "v", op->val);
	mjs = m ? json_dumps(m, JSON_COMPACT) : NULL;
	gb64 = consul_b64(num, strlen(num));
	mb64 = mjs ? consul_b64(mjs, strlen(mjs)) : NULL;
	if (gkey && mkey && gb64 && mb64 && (ops = json_array())) {
		/* a cas at index 0 (no "Index"): only if there is no counter yet */
		json_array_append_new(ops, txn_op("cas", gkey, gb64, index, NULL));
		json_array_append_new(ops, txn_op("set", mkey, mb64, 0, NULL));
	}
	json_decref(m);
	free(mjs);
	free(gkey);
	free(mkey);
	free(gb64);
	free(mb64);
	if (!ops) {
		consul_req_fail(req, "out of memory");
		return;
	}
	cmd_txn(req, ops);
}

struct feed_item {
	uint64_t g;
	const char *member;
	json_t *ver;	/* string, or null: removed */
};

static int feed_cmp(const void *a, const void *b)
{
	const struct feed_item *x = a, *y = b;

	return x->g < y->g ? -1 : x->g > y->g;
}

/* The whole feed in one read (a consistent snapshot): the members changed
 * after <since>, oldest first, at most STORAGE_FEED_BATCH; a full batch
 * brings the reader to its last member's generation (more: 1), a partial
 * one to the current generation. */
static void cmd_feed_since_answer(struct consul_req *req, const struct consul_resp *r)
{
	struct storage_op *op = req->op;
	struct storage_res *res = &op->res;
	json_t *root = NULL, **mv = NULL;
	struct feed_item *items = NULL;
	size_t i, n = 0, want, flen, total;
	char *prefix = NULL, *raw = NULL;
	uint64_t cur = 0;

	if (r->status == 404) {
		res->gen = 0;
		res->keys = calloc(1, sizeof(*res->keys));
		res->vals = calloc(1, sizeof(*res->vals));
		if (!res->keys || !res->vals)
			goto oom;
		consul_req_finish(req, 0);
		return;
	}
	root = json_loadb(r->body, r->len, 0, NULL);
	if (!json_is_array(root)) {
		json_decref(root);
		consul_req_fail(req, "unexpected answer");
		return;
	}
	total = json_array_size(root);
	if (asprintf(&prefix, "%s/feed/%s/", req->be->kv, op->key) == -1) {
		prefix = NULL;
		goto oom;
	}
	flen = strlen(prefix);
	if (!(items = calloc(total + 1, sizeof(*items))) || !(mv = calloc(total + 1, sizeof(*mv))))
		goto oom;
	for (i = 0; i < total; i++) {
		json_t *e = json_array_get(root, i);
		const char *key = json_string_value(json_object_get(e, "Key"));
		const char *val = json_string_value(json_object_get(e, "Value"));
		size_t len;

		if (!key || strncmp(key, prefix, flen) != 0 || consul_unb64(val, &raw, &len))
			continue;
		if (strcmp(key + flen, "gen") == 0) {
			cur = strtoull(raw, NULL, 10);
		} else if (strncmp(key + flen, "m/", 2) == 0 && (mv[n] = json_loadb(raw, len, 0,
									  NULL))) {
			items[n].g = cmd_uint(mv[n], "g");
			items[n].member = key + flen + 2;
			items[n].ver = json_object_get(mv[n], "v");
			if (op->since == STORAGE_FEED_NOW || items[n].g <= op->since)
				json_decref(mv[n]);
			else
				n++;
		}
		free(raw);
		raw = NULL;
	}
	qsort(items, n, sizeof(*items), feed_cmp);
	want = n > STORAGE_FEED_BATCH ? STORAGE_FEED_BATCH : n;
	res->keys = calloc(want + 1, sizeof(*res->keys));
	res->vals = calloc(want + 1, sizeof(*res->vals));
	if (!res->keys || !res->vals)
		goto oom;
	res->n = want;
	for (i = 0; i < want; i++) {
		if (!(res->keys[i] = strdup(items[i].member)))
			goto oom;
		if (json_is_string(items[i].ver) &&
		    !(res->vals[i] = strdup(json_string_value(items[i].ver))))
			goto oom;
	}
	res->more = n > want;
	res->gen = res->more ? items[want - 1].g : cur;
	for (i = 0; i < n; i++)
		json_decref(mv[i]);
	free(mv);
	free(items);
	free(prefix);
	json_decref(root);
	consul_req_finish(req, 0);
	return;
oom:
	for (i = 0; mv && i < n; i++)
		json_decref(mv[i]);
	free(mv);
	free(items);
	free(prefix);
	free(raw);
	json_decref(root);
	storage_res_clear(res);
	consul_req_fail(req, "out of memory");
}

/* ---- dispatch ------------------------------------------------------------ */

void consul_cmd_start(struct consul_req *req)
{
	struct storage_op *op = req->op;
	char path[CONSUL_PATHBUF], name[STORAGE_KEY_MAX + 40], hash[33];

	req->step = STEP_READ;
	switch (op->kind) {
	case STORAGE_OP_GET:
		if (cmd_path(req, path, sizeof(path), "k/", op->key, "") == 0)
			consul_req_send(req, "GET", path, NULL, 0);
		break;
	case STORAGE_OP_PUT:
		if (op->fence) {
			if (cmd_path(req, path, sizeof(path), "lock/", op->fence, "") == 0)
				consul_req_send(req, "GET", path, NULL, 0);
			break;
		}
		cmd_put(req, "k/", op->key,
			op->ttl_sec ? consul_now_ms() + (uint64_t)op->ttl_sec * 1000 : 0);
		break;
	case STORAGE_OP_DEL:
		if (cmd_path(req, path, sizeof(path), "k/", op->key, "") == 0)
			consul_req_send(req, "DELETE", path, NULL, 0);
		break;
	case STORAGE_OP_LIST:
		if (cmd_path(req, path, sizeof(path), "k/", op->key, "?recurse") == 0)
			consul_req_send(req, "GET", path, NULL, 0);
		break;
	case STORAGE_OP_LOCK:
	case STORAGE_OP_UNLOCK:
		if (op->kind == STORAGE_OP_LOCK && !consul_session_need(req))
			break;	/* restarted here once the session is there */
		if (cmd_path(req, path, sizeof(path), "lock/", op->key, "") == 0)
			consul_req_send(req, "GET", path, NULL, 0);
		break;
	case STORAGE_OP_PING:
		consul_req_send(req, "GET", "status/leader", NULL, 0);
		break;
	case STORAGE_OP_PUBLISH:
		cmd_msg_name(op->val, op->len, hash);
		snprintf(name, sizeof(name), "%s/%s", op->key, hash);
		cmd_put(req, "chan/", name, consul_now_ms() + CONSUL_MSG_TTL_MS);
		break;
	case STORAGE_OP_FEED_PUT:
		if (!consul_feed_turn(req))
			break;	/* restarted here when its turn comes */
		snprintf(name, sizeof(name), "%s/gen", op->key);
		if (cmd_path(req, path, sizeof(path), "feed/", name, "") == 0)
			consul_req_send(req, "GET", path, NULL, 0);
		break;
	case STORAGE_OP_FEED_SINCE:
		snprintf(name, sizeof(name), "%s/", op->key);
		if (cmd_path(req, path, sizeof(path), "feed/", name, "?recurse") == 0)
			consul_req_send(req, "GET", path, NULL, 0);
		break;
	default:
		consul_req_fail(req, "not supported");
		break;
	}
}

void consul_cmd_answer(struct consul_req *req, const struct consul_resp *r)
{
	struct storage_op *op = req->op;
	char why[STORAGE_ERR_MAX];

	if (req->step == STEP_TXN && op->kind == STORAGE_OP_LOCK) {
		cmd_lock_txn(req, r);
		return;
	}
	/* 404 is an answer for reads (absent); everything else must be 200 */
	if (r->status != 200 && !(r->status == 404 && req->step == STEP_READ &&
				  (op->kind != STORAGE_OP_PUT || op->fence) &&
				  op->kind != STORAGE_OP_PUBLISH && op->kind != STORAGE_OP_PING)) {
		if (req->step == STEP_TXN && cmd_retry(req, r))
			return;
		consul_resp_why(r, why, sizeof(why));
		if (req->step == STEP_TXN && r->status == 409 && op->kind == STORAGE_OP_UNLOCK)
			consul_req_finish(req, 1);	/* changed under us, again and again */
		else
			consul_req_fail(req, "%s", why);
		return;
	}
	switch (op->kind) {
	case STORAGE_OP_GET:
		cmd_get_answer(req, r);
		break;
	case STORAGE_OP_LIST:
		cmd_list_answer(req, r);
		break;
	case STORAGE_OP_LOCK:
		cmd_lock_read(req, r);
		break;
	case STORAGE_OP_UNLOCK:
		if (req->step == STEP_READ)
			cmd_unlock_read(req, r);
		else
			consul_req_finish(req, 0);
		break;
	case STORAGE_OP_PING:
		/* "" while the cluster has no leader: nothing can be written */
		if (r->len < 3)
			consul_req_fail(req, "no cluster leader");
		else
			consul_req_finish(req, 0);
		break;
	case STORAGE_OP_FEED_PUT:
		if (req->step == STEP_READ)
			cmd_feed_put_read(req, r);
		else
			consul_req_finish(req, 0);
		break;
	case STORAGE_OP_FEED_SINCE:
		cmd_feed_since_answer(req, r);
		break;
	case STORAGE_OP_PUT:
		if (op->fence && req->step == STEP_READ)
			cmd_put_fenced_read(req, r);
		else
			consul_req_finish(req, 0);
		break;
	default:	/* DEL, PUBLISH: any 200 */
		consul_req_finish(req, 0);
		break;
	}
}
