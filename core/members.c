/* SPDX-License-Identifier: Apache-2.0 */
/* The fleet's live members (members.h): a lease record per node, a periodic
 * read of who else holds one, rendezvous hashing over them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "core/health.h"
#include "core/members.h"
#include "lib/log.h"
#include "storage/storage.h"

#define MEMBERS_PREFIX	"members/"
#define MEMBERS_FEED	"members"
/* The lease is the promise: a node that dies is out of every other node's
 * list, and its share theirs, within one lease. So its record lives two
 * thirds of a lease, and is renewed, and the list read, ten times a lease:
 * the record runs out within 2/3 of a lease of the death, the others see it
 * within 1/10 more, and five lost renewals in a row never let a live
 * node's record run out. */
#define MEMBERS_TICKS_PER_LEASE 10.0
#define MEMBERS_TTL(lease_s)	((lease_s) * 2 / 3 > 0 ? (lease_s) * 2 / 3 : 1)

enum members_mode {
	MEMBERS_SOLO,		/* shm: one process, the only member */
	MEMBERS_LIST,		/* file, consul: list "members/" */
	MEMBERS_FEED_GET,	/* redis: the "members" feed, then each record */
};

struct members_id {
	char id[MEMBERS_ID_MAX];
	uint64_t hash;
};

/* One read of the list (redis: the feed, then a get per member). */
struct members_round {
	struct members *m;
	struct storage_req *req;	/* the list or feed read in flight */
	uint64_t gen;			/* feed read up to here */
	struct members_id *cand;	/* members named by the feed */
	unsigned char *alive;
	struct storage_req **gets;
	size_t n, cap, pending;
	int failed;
};

struct members {
	struct ev_loop *loop;
	struct storage *st;
	struct health *health;
	enum members_mode mode;
	unsigned lease_s;
	struct members_id self;
	struct members_id *live;	/* sorted by id, self included */
	uint64_t *live_hash;		/* their hashes, for members_pick() */
	size_t nlive;
	struct members_round *round;	/* NULL when no read is in flight */
	struct storage_req *putting;	/* the record's renewal in flight */
	struct storage_req *announcing;	/* redis: the feed entry's, in flight */
	int announce;			/* redis: the feed lacks this node's entry (at
					 * start, or another removed it as run out) */
	ev_timer timer;
	int started;
	void (*changed)(void *arg);
	void *changed_arg;
};

/* ---- rendezvous hashing -------------------------------------------------- */

/* MurmurHash3's finalizer: every input bit moves every output bit, so the
 * weights of one key under two members are independent enough to balance. */
static uint64_t members_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

uint64_t members_key_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return members_mix(h);
}

size_t members_pick(const uint64_t *id_hash, size_t n, uint64_t kh)
{
	size_t i, best = 0;
	uint64_t w, bw = members_mix(kh ^ id_hash[0]);

	for (i = 1; i < n; i++) {
		w = members_mix(kh ^ id_hash[i]);
		/* ties (never seen in practice) go to the smaller id hash: the same
		 * answer on every node */
		if (w > bw || (w == bw && id_hash[i] < id_hash[best])) {
			bw = w;
			best = i;
		}
	}
	return best;
}

static const struct members_id *members_owner_id(const struct members *m, uint64_t kh)
{
	if (m->nlive == 0)
		return &m->self;
	return &m->live[members_pick(m->live_hash, m->nlive, kh)];
}

const char *members_owner(const struct members *m, uint64_t kh)
{
	return members_owner_id(m, kh)->id;
}

int members_owns(const struct members *m, uint64_t kh)
{
	const struct members_id *o;

	/* until the first read a node knows nothing of the others: renewing
	 * everything due then would race the whole fleet at each start */
	if (m->nlive == 0)
		return m->mode == MEMBERS_SOLO;
	o = members_owner_id(m, kh);
	return strcmp(o->id, m->self.id) == 0;
}

size_t members_count(const struct members *m)
{
	return m->nlive ? m->nlive : 1;
}

const char *members_self(const struct members *m)
{
	return m->self.id;
}

/* ---- the list ------------------------------------------------------------ */

static int members_id_cmp(const void *a, const void *b)
{
	return strcmp(((const struct members_id *)a)->id, ((const struct members_id *)b)->id);
}

/* Adds <id> (taken from a key or feed member) to <r>'s candidates. */
static int members_round_add(struct members_round *r, const char *id)
{
	void *p;

	if (strlen(id) >= MEMBERS_ID_MAX || !storage_key_valid(id) || strchr(id, '/'))
		return 0;	/* not one of ours */
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;

		if (!(p = realloc(r->cand, cap * sizeof(*r->cand))))
			return -1;
		r->cand = p;
		r->cap = cap;
	}
	snprintf(r->cand[r->n].id, MEMBERS_ID_MAX, "%s", id);
	r->cand[r->n].hash = members_key_hash(id);
	r->n++;
	return 0;
}

static void members_round_free(struct members_round *r)
{
	size_t i;

	if (!r)
		return;
	storage_cancel(r->req);
	for (i = 0; r->gets && i < r->n; i++)
		storage_cancel(r->gets[i]);
	free(r->gets);
	free(r->alive);
	free(r->cand);
	free(r);
}

/* The round is complete: its live candidates, and self, become the list. */
static void members_round_end(struct members *m, struct members_round *r)
{
	struct members_id *live;
	uint64_t *hash;
	size_t i, n = 0;
	int self_seen = 0, changed;

	m->round = NULL;
	if (r->failed || !(live = calloc(r->n + 1, sizeof(*live))))
		goto out;
	if (!(hash = calloc(r->n + 1, sizeof(*hash)))) {
		free(live);
		goto out;
	}
	for (i = 0; i < r->n; i++) {
		if (r->alive && !r->alive[i])
			continue;
		if (strcmp(r->cand[i].id, m->self.id) == 0)
			self_seen = 1;
		live[n++] = r->cand[i];
	}
	/* our own record may not be written yet: we are live all the same */
	if (!self_seen)
		live[n++] = m->self;
	qsort(live, n, sizeof(*live), members_id_cmp);
	changed = n != m->nlive;
	for (i = 0; !changed && i < n; i++)
		changed = strcmp(live[i].id, m->live[i].id) != 0;
	for (i = 0; i < n; i++)
		hash[i] = live[i].hash;
	free(m->live);
	free(m->live_hash);
	m->live = live;
	m->live_hash = hash;
	m->nlive = n;
	if (changed) {
		log_info("fleet: %zu live member(s)", n);
		if (m->changed)
			m->changed(m->changed_arg);
	}
out:
	members_round_free(r);
}

static void cb_members_list(void *arg, struct storage_res *res)
{
	struct members_round *r = arg;
	size_t i;

	r->req = NULL;
	health_storage_result(r->m->health, res);
	if (res->rc == -1) {
		log_warn("fleet: member list not read: %s", res->err);
		r->failed = 1;
	}
	for (i = 0; !r->failed && i < res->n; i++)
		if (members_round_add(r, res->keys[i] + strlen(MEMBERS_PREFIX)) == -1)
			r->failed = 1;
	members_round_end(r->m, r);
}

static void cb_members_get(void *arg, struct storage_res *res)
{
	struct members_round *r = arg;
	const char *id = res->key + strlen(MEMBERS_PREFIX);
	size_t i;

	health_storage_result(r->m->health, res);
	for (i = 0; i < r->n; i++) {
		if (strcmp(r->cand[i].id, id) != 0)
			continue;
		r->gets[i] = NULL;
		if (res->rc == 0) {
			r->alive[i] = 1;
		} else if (res->rc == 1) {
			/* its lease ran out: out of the feed too (a live node that
			 * was cut off announces itself again at its next renewal) */
			if (strcmp(id, r->m->self.id) != 0)
				storage_feed_put(r->m->st, MEMBERS_FEED, id, NULL, NULL, NULL);
		} else {
			r->failed = 1;
		}
	}
	if (--r->pending == 0)
		members_round_end(r->m, r);
}

static void cb_members_feed(void *arg, struct storage_res *res)
{
	struct members_round *r = arg;
	struct members *m = r->m;
	char key[STORAGE_KEY_MAX];
	size_t i;

	r->req = NULL;
	health_storage_result(m->health, res);
	if (res->rc == -1) {
		log_warn("fleet: member feed not read: %s", res->err);
		r->failed = 1;
		members_round_end(m, r);
		return;
	}
	/* a member removed and announced again appears twice: its last entry
	 * comes last, and a removed one has no version */
	for (i = 0; i < res->n; i++) {
		size_t j;

		/* this node's entry removed (its record ran out while it was
		 * cut off or paused): announced again at the next tick */
		if (!res->vals[i] && strcmp(res->keys[i], m->self.id) == 0)
			m->announce = 1;
		for (j = 0; j < r->n && strcmp(r->cand[j].id, res->keys[i]) != 0; j++)
			;
		if (j < r->n) {
			if (!res->vals[i])
				r->cand[j] = r->cand[--r->n];
			continue;
		}
		if (res->vals[i] && members_round_add(r, res->keys[i]) == -1) {
			r->failed = 1;
			members_round_end(m, r);
			return;
		}
	}
	r->gen = res->gen;
	if (res->more) {
		r->req = storage_feed_since(m->st, MEMBERS_FEED, r->gen, cb_members_feed, r);
		if (!r->req) {
			r->failed = 1;
			members_round_end(m, r);
		}
		return;
	}
	if (r->n == 0) {
		members_round_end(m, r);
		return;
	}
	r->alive = calloc(r->n, 1);
	r->gets = calloc(r->n, sizeof(*r->gets));
	if (!r->alive || !r->gets) {
		r->failed = 1;
		members_round_end(m, r);
		return;
	}
	/* every get is started before any answers: answers come on later turns;
	 * this node's own record is not read (it is live all the same) */
	r->pending = r->n;
	for (i = 0; i < r->n; i++) {
		if (strcmp(r->cand[i].id, m->self.id) == 0) {
			r->alive[i] = 1;
			r->pending--;
			continue;
		}
		snprintf(key, sizeof(key), MEMBERS_PREFIX "%s", r->cand[i].id);
		r->gets[i] = storage_get(m->st, key, cb_members_get, r);
		if (!r->gets[i]) {
			r->failed = 1;
			r->pending--;
		}
	}
	if (r->pending == 0)
		members_round_end(m, r);
}

static void members_read(struct members *m)
{
	struct members_round *r;

	if (m->round || !(r = calloc(1, sizeof(*r))))
		return;
	r->m = m;
	if (m->mode == MEMBERS_LIST)
		r->req = storage_list(m->st, MEMBERS_PREFIX, cb_members_list, r);
	else
		r->req = storage_feed_since(m->st, MEMBERS_FEED, 0, cb_members_feed, r);
	if (!r->req) {
		free(r);
		return;
	}
	m->round = r;
}

static void cb_members_put(void *arg, struct storage_res *res)
{
	struct members *m = arg;

	m->putting = NULL;
	health_storage_result(m->health, res);
	if (res->rc == -1)
		log_warn("fleet: member record not renewed: %s", res->err);
}

static void cb_members_announce(void *arg, struct storage_res *res)
{
	struct members *m = arg;

	m->announcing = NULL;
	health_storage_result(m->health, res);
	if (res->rc == -1)
		log_warn("fleet: member not announced: %s", res->err);
	else
		m->announce = 0;
}

/* Renews the lease, then reads who else holds one. */
static void cb_members_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct members *m = w->data;
	char key[STORAGE_KEY_MAX];

	/* one of each in flight: a slow store gets no pile of renewals */
	snprintf(key, sizeof(key), MEMBERS_PREFIX "%s", m->self.id);
	if (!m->putting)
		m->putting = storage_put(m->st, key, m->self.id, strlen(m->self.id),
					 MEMBERS_TTL(m->lease_s),
					 cb_members_put, m);
	/* at rest a tick is the renewal, the feed's read (one command when no
	 * member changed) and a read per member: no announce while the feed
	 * holds this node */
	if (m->mode == MEMBERS_FEED_GET && m->announce && !m->announcing)
		m->announcing = storage_feed_put(m->st, MEMBERS_FEED, m->self.id, "1",
						 cb_members_announce, m);
	members_read(m);
}

void members_start(struct members *m)
{
	double period = (double)m->lease_s / MEMBERS_TICKS_PER_LEASE;

	if (m->mode == MEMBERS_SOLO || m->started)
		return;
	m->started = 1;
	ev_timer_set(&m->timer, 0., period);
	ev_timer_start(m->loop, &m->timer);
}

void members_set_hook(struct members *m, void (*changed)(void *arg), void *arg)
{
	m->changed = changed;
	m->changed_arg = arg;
}

struct members *members_new(struct ev_loop *loop, struct storage *st, struct health *health,
			    const char *id, unsigned lease_s)
{
	struct members *m;
	const char *name = storage_name(st);

	if (strlen(id) >= MEMBERS_ID_MAX || !storage_key_valid(id) || strchr(id, '/') || lease_s < 2)
		return NULL;
	if (!(m = calloc(1, sizeof(*m))))
		return NULL;
	m->loop = loop;
	m->st = st;
	m->health = health;
	m->lease_s = lease_s;
	snprintf(m->self.id, sizeof(m->self.id), "%s", id);
	m->self.hash = members_key_hash(id);
	m->announce = 1;
	if (strcmp(name, "shm") == 0)
		m->mode = MEMBERS_SOLO;
	else if (strcmp(name, "redis") == 0)
		m->mode = MEMBERS_FEED_GET;
	else
		m->mode = MEMBERS_LIST;
	ev_init(&m->timer, cb_members_timer);
	m->timer.data = m;
	return m;
}

void members_free(struct members *m)
{
	char key[STORAGE_KEY_MAX];

	if (!m)
		return;
	ev_timer_stop(m->loop, &m->timer);
	members_round_free(m->round);
	storage_cancel(m->putting);
	storage_cancel(m->announcing);
	if (m->started) {
		/* a clean stop hands the share over now, not a lease later */
		snprintf(key, sizeof(key), MEMBERS_PREFIX "%s", m->self.id);
		storage_del(m->st, key, NULL, NULL);
		if (m->mode == MEMBERS_FEED_GET)
			storage_feed_put(m->st, MEMBERS_FEED, m->self.id, NULL, NULL, NULL);
	}
	free(m->live);
	free(m->live_hash);
	free(m);
}
