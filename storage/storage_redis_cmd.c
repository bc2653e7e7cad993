/* SPDX-License-Identifier: Apache-2.0 */
/* redis backend: the commands of each operation and the decoding of their
 * replies. Every function here runs on the loop, called by the pipeline of
 * storage_redis.c; an operation of more than one command (LIST: SCAN over
 * its cursor; LOCK: the lock script, then WAIT) sends the next one from
 * the reply to the previous. Values are never logged. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "storage/storage.h"
#include "storage/storage_redis_int.h"

#define REDIS_SCAN_COUNT "500"
/* feed_members: removed members an older writer left in a feed's "log",
 * moved to "gone" this many per script call */
#define REDIS_FEED_MIGRATE_BATCH 1000
/* sentinel: a new lock waits this long for a replica to hold it (WAIT holds
 * the connection's pipeline meanwhile: a healthy replica answers in well
 * under a millisecond) */
#define REDIS_LOCK_WAIT_MS "100"

/* A lock's value is "<owner> <generation>" (before fencing: "<owner>").
 * KEYS: lock; ARGV: owner, lease ms, fenced generation ("0": none), new
 * generation. Returns 0 (held by another; fenced: not that live lease) or
 * {generation, 1 when freshly taken}. */
static const char redis_lua_lock[] =
	"local v = redis.call('get', KEYS[1]) "
	"if v and v ~= ARGV[1] then "
	"local o, g = string.match(v, '^(%S+) (%d+)$') "
	"if o ~= ARGV[1] or (ARGV[3] ~= '0' and g ~= ARGV[3]) then return 0 end "
	"redis.call('pexpire', KEYS[1], ARGV[2]) return {g, 0} end "
	"if ARGV[3] ~= '0' then return 0 end "
	"redis.call('set', KEYS[1], ARGV[1] .. ' ' .. ARGV[4], 'px', ARGV[2]) "
	"return {ARGV[4], v and 0 or 1}";
static const char redis_lua_unlock[] =
	"local v = redis.call('get', KEYS[1]) "
	"if v and (v == ARGV[1] or string.match(v, '^(%S+) ') == ARGV[1]) then "
	"return redis.call('del', KEYS[1]) end return 0";
/* KEYS: lock, key; ARGV: "<owner> <generation>", value. 1 written, 0 refused. */
static const char redis_lua_put_fenced[] =
	"if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end "
	"redis.call('set', KEYS[2], ARGV[2]) return 1";

/* A feed is four keys: "gen" (its generation, a counter), "log" (each member
 * present now, scored by the generation of its last change), "gone" (each
 * member removed, scored likewise) and "ver" (each present member's
 * version). "log" holding the present members alone lets a start-up read
 * them with plain ZRANGEBYSCORE pages (feed_members); a store written
 * before "gone" existed kept its removed members in "log", which
 * redis_lua_feed_migrate moves on the first feed_members.
 * KEYS: gen, log, ver, gone; ARGV: member [, version]. */
static const char redis_lua_feed_put[] =
	"local g = redis.call('incr', KEYS[1]) "
	"if #ARGV > 1 then "
	"redis.call('zadd', KEYS[2], g, ARGV[1]) redis.call('zrem', KEYS[4], ARGV[1]) "
	"redis.call('hset', KEYS[3], ARGV[1], ARGV[2]) "
	"else "
	"redis.call('zrem', KEYS[2], ARGV[1]) redis.call('zadd', KEYS[4], g, ARGV[1]) "
	"redis.call('hdel', KEYS[3], ARGV[1]) end "
	"return g";

/* KEYS: gen, log, ver, gone; ARGV: since, batch. Returns {gen, more,
 * members, versions}: the changes of "log" and "gone" after <since> in
 * generation order; a full batch brings the reader to its last member's
 * generation (more: 1), a partial one to the current generation. */
static const char redis_lua_feed_since[] =
	"local cur = tonumber(redis.call('get', KEYS[1]) or '0') "
	"local batch = tonumber(ARGV[2]) "
	"local a = redis.call('zrangebyscore', KEYS[2], '(' .. ARGV[1], '+inf', "
	"'withscores', 'limit', 0, batch) "
	"local b = redis.call('zrangebyscore', KEYS[4], '(' .. ARGV[1], '+inf', "
	"'withscores', 'limit', 0, batch) "
	"local names, last, i, j = {}, 0, 1, 1 "
	"while #names < batch and (i <= #a or j <= #b) do "
	"if j > #b or (i <= #a and tonumber(a[i + 1]) < tonumber(b[j + 1])) then "
	"names[#names + 1] = a[i] last = tonumber(a[i + 1]) i = i + 2 "
	"else names[#names + 1] = b[j] last = tonumber(b[j + 1]) j = j + 2 end end "
	"local vers = {} "
	"if #names > 0 then vers = redis.call('hmget', KEYS[3], unpack(names)) end "
	"if #names == batch then return {last, 1, names, vers} end "
	"return {cur, 0, names, vers}";

/* KEYS: gen, log, ver, gone; ARGV: after, batch. {-1, members} when "log"
 * holds only present members (as many as "ver"); else moves the removed
 * ones of one page after <after> to "gone" and returns {where the next page
 * starts, 0} ({-1, 0} after the last: the check then says the count). */
static const char redis_lua_feed_migrate[] =
	"local n = redis.call('zcard', KEYS[2]) "
	"if n == redis.call('hlen', KEYS[3]) then return {-1, n} end "
	"local batch = tonumber(ARGV[2]) "
	"local m = redis.call('zrangebyscore', KEYS[2], '(' .. ARGV[1], '+inf', "
	"'withscores', 'limit', 0, batch) "
	"for i = 1, #m, 2 do "
	"if redis.call('hexists', KEYS[3], m[i]) == 0 then "
	"redis.call('zrem', KEYS[2], m[i]) redis.call('zadd', KEYS[4], m[i + 1], m[i]) end end "
	"if #m < 2 * batch then return {0, 0} end "
	"return {tonumber(m[#m]), 0}";

/* ---- commands ------------------------------------------------------------ */

/* Sends "<cmd> <key>" [<val>] on <req>'s key (kind "" or "lock:"). */
static void redis_cmd_key(struct redis_req *req, const char *cmd, const char *kind)
{
	struct storage_op *op = req->op;
	char k[REDIS_KEYBUF], px[32];
	const char *argv[] = { cmd, k, op->val, "PX", px };
	size_t lens[] = { strlen(cmd), 0, op->len, 2, 0 };
	int argc = 2, n = redis_key(req->be, kind, op->key, "", k, sizeof(k));

	if (n < 0) {
		redis_req_fail(req, "key too long");
		return;
	}
	lens[1] = n;
	if (op->kind == STORAGE_OP_PUT || op->kind == STORAGE_OP_PUBLISH)
		argc = 3;
	if (op->kind == STORAGE_OP_PUT && op->ttl_sec) {
		lens[4] = snprintf(px, sizeof(px), "%llu", (unsigned long long)op->ttl_sec * 1000);
		argc = 5;
	}
	redis_req_send(req, argc, argv, lens);
}

/* Sends EVAL <script> 1 <lock key> <owner> [<lease ms> <fenced gen> <new gen>]. */
static void redis_cmd_lock_script(struct redis_req *req, const char *script, int with_lease)
{
	struct storage_op *op = req->op;
	char k[REDIS_KEYBUF], px[32], want[24], gen[24];
	const char *argv[] = { "EVAL", script, "1", k, op->owner, px, want, gen };
	size_t lens[] = { 4, strlen(script), 1, 0, strlen(op->owner), 0, 0, 0 };
	int n = redis_key(req->be, "lock:", op->key, "", k, sizeof(k));

	if (n < 0) {
		redis_req_fail(req, "name too long");
		return;
	}
	lens[3] = n;
	lens[5] = snprintf(px, sizeof(px), "%u", op->lease_ms);
	lens[6] = snprintf(want, sizeof(want), "%llu", (unsigned long long)op->gen);
	lens[7] = snprintf(gen, sizeof(gen), "%llu", (unsigned long long)op->gen_new);
	req->step = 0;
	redis_req_send(req, with_lease ? 8 : 5, argv, lens);
}

/* Sends the fenced put: EVAL <script> 2 <lock key> <key> "<owner> <gen>" <value>. */
static void redis_cmd_put_fenced(struct redis_req *req)
{
	struct storage_op *op = req->op;
	char lk[REDIS_KEYBUF], k[REDIS_KEYBUF], holder[STORAGE_OWNER_MAX + 32];
	const char *argv[] = { "EVAL", redis_lua_put_fenced, "2", lk, k, holder, op->val };
	size_t lens[] = { 4, sizeof(redis_lua_put_fenced) - 1, 1, 0, 0, 0, op->len };
	int ln = redis_key(req->be, "lock:", op->fence, "", lk, sizeof(lk));
	int n = redis_key(req->be, "", op->key, "", k, sizeof(k));

	if (ln < 0 || n < 0) {
		redis_req_fail(req, "key too long");
		return;
	}
	lens[3] = ln;
	lens[4] = n;
	lens[5] = snprintf(holder, sizeof(holder), "%s %llu", op->owner, (unsigned long long)op->gen);
	redis_req_send(req, 7, argv, lens);
}

/* Appends <s> to <out> with glob characters escaped; returns bytes written. */
static size_t redis_glob_escape(char *out, const char *s)
{
	size_t n = 0;

	for (; *s; s++) {
		if (strchr("*?[]\\", *s) != NULL)
			out[n++] = '\\';
		out[n++] = *s;
	}
	return n;
}

/* Sends SCAN <cursor> MATCH <escaped ns:prefix>* COUNT 500. */
static void redis_cmd_scan(struct redis_req *req)
{
	const struct redis_be *be = req->be;
	char pat[2 * REDIS_KEYBUF + 2];
	const char *argv[] = { "SCAN", req->cursor, "MATCH", pat, "COUNT", REDIS_SCAN_COUNT };
	size_t lens[] = { 4, strlen(req->cursor), 5, 0, 5, strlen(REDIS_SCAN_COUNT) };
	size_t n;

	n = redis_glob_escape(pat, be->ns);
	if (be->ns[0])
		pat[n++] = ':';
	n += redis_glob_escape(pat + n, req->op->key);
	pat[n++] = '*';
	pat[n] = '\0';
	lens[3] = n;
	redis_req_send(req, 6, argv, lens);
}

/* Sends EVAL <script> 4 <feed gen> <feed log> <feed ver> <feed gone> <a1> [<a2>]. */
static void redis_cmd_feed(struct redis_req *req, const char *script, const char *a1,
			   size_t a1len, const char *a2, size_t a2len)
{
	struct storage_op *op = req->op;
	char kg[REDIS_KEYBUF], kl[REDIS_KEYBUF], kv[REDIS_KEYBUF], kx[REDIS_KEYBUF];
	const char *argv[] = { "EVAL", script, "4", kg, kl, kv, kx, a1, a2 };
	size_t lens[] = { 4, strlen(script), 1, 0, 0, 0, 0, a1len, a2len };
	int ng = redis_key(req->be, "feed:", op->key, ":gen", kg, sizeof(kg));
	int nl = redis_key(req->be, "feed:", op->key, ":log", kl, sizeof(kl));
	int nv = redis_key(req->be, "feed:", op->key, ":ver", kv, sizeof(kv));
	int nx = redis_key(req->be, "feed:", op->key, ":gone", kx, sizeof(kx));

	if (ng < 0 || nl < 0 || nv < 0 || nx < 0) {
		redis_req_fail(req, "feed name too long");
		return;
	}
	lens[3] = ng;
	lens[4] = nl;
	lens[5] = nv;
	lens[6] = nx;
	redis_req_send(req, a2 ? 9 : 8, argv, lens);
}

/* feed_members, step 0: the migration script from <req>->cursor. */
static void redis_cmd_feed_migrate(struct redis_req *req)
{
	char batch[16];

	snprintf(batch, sizeof(batch), "%d", REDIS_FEED_MIGRATE_BATCH);
	redis_cmd_feed(req, redis_lua_feed_migrate, req->cursor, strlen(req->cursor), batch,
		       strlen(batch));
}

/* feed_members, step 1: ZRANGEBYSCORE <log> (<after> +inf WITHSCORES LIMIT 0 <batch>. */
static void redis_cmd_feed_members(struct redis_req *req, uint64_t after)
{
	char kl[REDIS_KEYBUF], min[32], batch[16];
	const char *argv[] = { "ZRANGEBYSCORE", kl, min, "+inf", "WITHSCORES", "LIMIT", "0", batch };
	size_t lens[] = { 13, 0, 0, 4, 10, 5, 1, 0 };
	int nl = redis_key(req->be, "feed:", req->op->key, ":log", kl, sizeof(kl));

	if (nl < 0) {
		redis_req_fail(req, "feed name too long");
		return;
	}
	req->step = 1;
	lens[1] = nl;
	lens[2] = snprintf(min, sizeof(min), "(%llu", (unsigned long long)after);
	lens[7] = snprintf(batch, sizeof(batch), "%d", STORAGE_FEED_MEMBERS_BATCH);
	redis_req_send(req, 8, argv, lens);
}

void redis_cmd_start(struct redis_req *req)
{
	struct storage_op *op = req->op;
	static const char *const ping[] = { "PING" };
	static const size_t ping_len[] = { 4 };
	char since[32], batch[16];

	switch (op->kind) {
	case STORAGE_OP_GET:
		redis_cmd_key(req, "GET", "");
		break;
	case STORAGE_OP_PUT:
		if (op->fence)
			redis_cmd_put_fenced(req);
		else
			redis_cmd_key(req, "SET", "");
		break;
	case STORAGE_OP_DEL:
		redis_cmd_key(req, "DEL", "");
		break;
	case STORAGE_OP_PUBLISH:
		redis_cmd_key(req, "PUBLISH", "");
		break;
	case STORAGE_OP_LIST:
		snprintf(req->cursor, sizeof(req->cursor), "0");
		redis_cmd_scan(req);
		break;
	case STORAGE_OP_SCAN:
		snprintf(req->cursor, sizeof(req->cursor), "%llu", (unsigned long long)op->since);
		redis_cmd_scan(req);
		break;
	case STORAGE_OP_LOCK:
		redis_cmd_lock_script(req, redis_lua_lock, 1);
		break;
	case STORAGE_OP_UNLOCK:
		redis_cmd_lock_script(req, redis_lua_unlock, 0);
		break;
	case STORAGE_OP_PING:
		redis_req_send(req, 1, (const char **)ping, ping_len);
		break;
	case STORAGE_OP_FEED_PUT:
		redis_cmd_feed(req, redis_lua_feed_put, op->member, strlen(op->member),
			       op->val, op->val ? op->len : 0);
		break;
	case STORAGE_OP_FEED_SINCE:
		snprintf(since, sizeof(since), "%llu", (unsigned long long)op->since);
		snprintf(batch, sizeof(batch), "%d", STORAGE_FEED_BATCH);
		redis_cmd_feed(req, redis_lua_feed_since, since, strlen(since), batch,
			       strlen(batch));
		break;
	case STORAGE_OP_FEED_MEMBERS:
		/* the first page moves what an older writer left first */
		if (op->since == 0) {
			req->step = 0;
			snprintf(req->cursor, sizeof(req->cursor), "0");
			redis_cmd_feed_migrate(req);
		} else {
			redis_cmd_feed_members(req, op->since);
		}
		break;
	default:
		redis_req_fail(req, "not supported");
		break;
	}
}

/* ---- replies ------------------------------------------------------------- */

static int redis_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *redis_strdup_reply(const redisReply *e)
{
	char *s = malloc(e->len + 1);

	if (s != NULL) {
		memcpy(s, e->str, e->len);
		s[e->len] = '\0';
	}
	return s;
}

static void redis_reply_get(struct redis_req *req, const redisReply *r)
{
	struct storage_res *res = &req->op->res;

	if (r->type == REDIS_REPLY_NIL) {
		redis_req_finish(req, 1);
		return;
	}
	if (r->type != REDIS_REPLY_STRING) {
		redis_req_fail(req, "unexpected reply type %d", r->type);
		return;
	}
	if ((res->val = redis_strdup_reply(r)) == NULL) {
		redis_req_fail(req, "out of memory");
		return;
	}
	res->len = r->len;
	redis_req_finish(req, 0);
}

/* Keeps of one SCAN reply's keys the live ones of our namespace under the
 * prefix (a key name holds no ':', so lock and feed keys, and the keys of
 * namespaces nested in ours, are left out), appended to req->keys, and the
 * next cursor in req->cursor. 0, or -1 with <req> failed. */
static int redis_scan_keep(struct redis_req *req, const redisReply *r)
{
	const struct redis_be *be = req->be;
	const char *prefix = req->op->key;
	size_t nslen = be->ns[0] ? strlen(be->ns) + 1 : 0, plen = strlen(prefix), i;
	const redisReply *page;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[0]->len >= sizeof(req->cursor) ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		redis_req_fail(req, "unexpected SCAN reply");
		return -1;
	}
	memcpy(req->cursor, r->element[0]->str, r->element[0]->len + 1);
	page = r->element[1];
	for (i = 0; i < page->elements; i++) {
		const redisReply *e = page->element[i];
		const char *key;

		if (e->type != REDIS_REPLY_STRING || e->len <= nslen || strlen(e->str) != e->len)
			continue;
		key = e->str + nslen;
		if (!storage_key_valid(key) || strncmp(key, prefix, plen) != 0)
			continue;
		if (req->n == req->cap) {
			size_t cap = req->cap ? req->cap * 2 : 16;
			char **grown = realloc(req->keys, cap * sizeof(*grown));

			if (grown == NULL)
				goto oom;
			req->keys = grown;
			req->cap = cap;
		}
		if ((req->keys[req->n] = strdup(key)) == NULL)
			goto oom;
		req->n++;
	}
	return 0;
oom:
	redis_req_fail(req, "out of memory");
	return -1;
}

/* One SCAN page of a LIST: kept, then scans on or completes (sorted, each
 * key once). */
static void redis_reply_scan(struct redis_req *req, const redisReply *r)
{
	size_t i, j;

	if (redis_scan_keep(req, r) == -1)
		return;
	if (strcmp(req->cursor, "0") != 0) {
		storage_op_progress(req->op);
		redis_cmd_scan(req);
		return;
	}
	if (req->keys == NULL && (req->keys = calloc(1, sizeof(*req->keys))) == NULL)
		goto oom;
	qsort(req->keys, req->n, sizeof(*req->keys), redis_cmp_str);
	/* SCAN may return a key more than once */
	for (i = j = 0; i < req->n; i++) {
		if (j > 0 && strcmp(req->keys[j - 1], req->keys[i]) == 0)
			free(req->keys[i]);
		else
			req->keys[j++] = req->keys[i];
	}
	req->op->res.keys = req->keys;
	req->op->res.n = j;
	req->keys = NULL;
	req->n = 0;
	redis_req_finish(req, 0);
	return;
oom:
	redis_req_fail(req, "out of memory");
}

/* The lock script answers 0 (another's; fenced: the lease was lost) or
 * {generation, fresh}. It is one atomic step: sent twice (replayed after a
 * failover), the second finds the first's lock and extends it. */
static void redis_reply_lock(struct redis_req *req, const redisReply *r)
{
	static const char *const wait[] = { "WAIT", "1", REDIS_LOCK_WAIT_MS };
	static const size_t wait_len[] = { 4, 1, sizeof(REDIS_LOCK_WAIT_MS) - 1 };

	if (req->step == 2) {	/* WAIT: replicated or not, the lock is ours */
		redis_req_finish(req, 0);
		return;
	}
	if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
		redis_req_finish(req, 1);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_INTEGER) {
		redis_req_fail(req, "unexpected script reply");
		return;
	}
	req->op->res.gen = strtoull(r->element[0]->str, NULL, 10);
	if (r->element[1]->integer == 1 && req->be->sentinel_master != NULL &&
	    req->be->nreplicas > 0) {
		/* a lock only the master holds dies with it in a failover,
		 * and another node could then take it: wait (briefly) for a
		 * replica to have it */
		req->step = 2;
		redis_req_send(req, 3, (const char **)wait, wait_len);
		return;
	}
	redis_req_finish(req, 0);
}

static void redis_reply_feed_since(struct redis_req *req, const redisReply *r)
{
	struct storage_res *res = &req->op->res;
	const redisReply *names, *vers;
	size_t i, n;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_INTEGER ||
	    r->element[2]->type != REDIS_REPLY_ARRAY ||
	    r->element[3]->type != REDIS_REPLY_ARRAY ||
	    r->element[2]->elements != r->element[3]->elements) {
		redis_req_fail(req, "unexpected script reply");
		return;
	}
	names = r->element[2];
	vers = r->element[3];
	n = names->elements;
	res->keys = calloc(n ? n : 1, sizeof(*res->keys));
	res->vals = calloc(n ? n : 1, sizeof(*res->vals));
	if (res->keys == NULL || res->vals == NULL)
		goto oom;
	res->n = n;	/* storage_list_free() copes with the NULLs of a partial fill */
	for (i = 0; i < n; i++) {
		if (names->element[i]->type != REDIS_REPLY_STRING ||
		    (vers->element[i]->type != REDIS_REPLY_STRING &&
		     vers->element[i]->type != REDIS_REPLY_NIL)) {
			storage_res_clear(res);
			redis_req_fail(req, "unexpected script reply");
			return;
		}
		if ((res->keys[i] = redis_strdup_reply(names->element[i])) == NULL)
			goto oom;
		if (vers->element[i]->type == REDIS_REPLY_STRING &&
		    (res->vals[i] = redis_strdup_reply(vers->element[i])) == NULL)
			goto oom;
	}
	res->gen = r->element[0]->integer > 0 ? (uint64_t)r->element[0]->integer : 0;
	res->more = r->element[1]->integer != 0;
	redis_req_finish(req, 0);
	return;
oom:
	storage_res_clear(res);
	redis_req_fail(req, "out of memory");
}

/* One page of a SCAN op: its keys as they come, and the next cursor. */
static void redis_reply_scan_page(struct redis_req *req, const redisReply *r)
{
	struct storage_res *res = &req->op->res;
	char *end;

	if (redis_scan_keep(req, r) == -1)
		return;
	res->gen = strtoull(req->cursor, &end, 10);
	if (end == req->cursor || *end != '\0') {
		redis_req_fail(req, "SCAN cursor \"%.24s\" is not a number", req->cursor);
		return;
	}
	if (req->keys == NULL && (req->keys = calloc(1, sizeof(*req->keys))) == NULL) {
		redis_req_fail(req, "out of memory");
		return;
	}
	res->keys = req->keys;
	res->n = req->n;
	res->more = res->gen != 0;
	req->keys = NULL;
	req->n = req->cap = 0;
	redis_req_finish(req, 0);
}

/* feed_members: the migration script's answer (step 0), or a page of
 * ZRANGEBYSCORE ... WITHSCORES (step 1). */
static void redis_reply_feed_members(struct redis_req *req, const redisReply *r)
{
	struct storage_res *res = &req->op->res;
	size_t i, n, bytes, off;

	if (req->step == 0) {
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_INTEGER ||
		    r->element[1]->type != REDIS_REPLY_INTEGER) {
			redis_req_fail(req, "unexpected script reply");
			return;
		}
		storage_op_progress(req->op);
		if (r->element[0]->integer < 0) {
			/* consistent: the members' count sizes the reader's index */
			req->n = r->element[1]->integer > 0 ? (size_t)r->element[1]->integer : 0;
			redis_cmd_feed_members(req, 0);
			return;
		}
		/* one page moved (from 0 again after the last: the check ends it) */
		snprintf(req->cursor, sizeof(req->cursor), "%lld", (long long)r->element[0]->integer);
		redis_cmd_feed_migrate(req);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
		redis_req_fail(req, "unexpected ZRANGEBYSCORE reply");
		return;
	}
	n = r->elements / 2;
	/* the names one after the other, NUL-terminated, in one block: a
	 * million of them at start-up cost no allocation each */
	for (i = 0, bytes = 0; i < n; i++) {
		const redisReply *name = r->element[2 * i], *score = r->element[2 * i + 1];

		if (name->type != REDIS_REPLY_STRING || score->type != REDIS_REPLY_STRING ||
		    memchr(name->str, '\0', name->len) != NULL) {
			redis_req_fail(req, "unexpected ZRANGEBYSCORE reply");
			return;
		}
		bytes += name->len + 1;
	}
	if ((res->val = malloc(bytes ? bytes : 1)) == NULL) {
		redis_req_fail(req, "out of memory");
		return;
	}
	for (i = 0, off = 0; i < n; i++) {
		const redisReply *name = r->element[2 * i];

		memcpy(res->val + off, name->str, name->len);
		res->val[off + name->len] = '\0';
		off += name->len + 1;
	}
	res->len = bytes;
	res->n = n;
	res->gen = req->op->since;
	if (n > 0) {
		/* the next page starts after the last member's generation */
		const redisReply *score = r->element[2 * n - 1];
		char *end;
		unsigned long long g = strtoull(score->str, &end, 10);

		if (end == score->str || *end != '\0' || g <= req->op->since) {
			storage_res_clear(res);
			redis_req_fail(req, "feed score \"%.32s\" is not a generation", score->str);
			return;
		}
		res->gen = g;
	}
	res->total = req->n;	/* the count, on the first page */
	res->more = n == STORAGE_FEED_MEMBERS_BATCH;
	redis_req_finish(req, 0);
}

void redis_cmd_reply(struct redis_req *req, redisReply *r)
{
	struct storage_op *op = req->op;

	if (r->type == REDIS_REPLY_ERROR) {
		redis_req_fail(req, "%s", r->str);
		return;
	}
	switch (op->kind) {
	case STORAGE_OP_GET:
		redis_reply_get(req, r);
		break;
	case STORAGE_OP_LIST:
		redis_reply_scan(req, r);
		break;
	case STORAGE_OP_LOCK:
		redis_reply_lock(req, r);
		break;
	case STORAGE_OP_UNLOCK:
		if (r->type != REDIS_REPLY_INTEGER)
			redis_req_fail(req, "unexpected script reply");
		else
			redis_req_finish(req, r->integer == 1 ? 0 : 1);
		break;
	case STORAGE_OP_FEED_PUT:
		if (r->type != REDIS_REPLY_INTEGER || r->integer <= 0) {
			redis_req_fail(req, "unexpected script reply");
			break;
		}
		op->res.gen = (uint64_t)r->integer;
		redis_req_finish(req, 0);
		break;
	case STORAGE_OP_FEED_SINCE:
		redis_reply_feed_since(req, r);
		break;
	case STORAGE_OP_FEED_MEMBERS:
		redis_reply_feed_members(req, r);
		break;
	case STORAGE_OP_SCAN:
		redis_reply_scan_page(req, r);
		break;
	case STORAGE_OP_PUT:
		if (!op->fence)
			redis_req_finish(req, 0);
		else if (r->type != REDIS_REPLY_INTEGER)
			redis_req_fail(req, "unexpected script reply");
		else
			redis_req_finish(req, r->integer == 1 ? 0 : 1);
		break;
	default:	/* DEL, PING, PUBLISH: any non-error reply */
		redis_req_finish(req, 0);
		break;
	}
}
