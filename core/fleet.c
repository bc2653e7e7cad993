/* SPDX-License-Identifier: Apache-2.0 */
/* The fleet's change feed (fleet.h): pub/sub messages and the change feed
 * name hosts; the store reads only the certificates whose version differs
 * from memory's. */
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "core/certstore.h"
#include "core/fleet.h"
#include "core/health.h"
#include "lib/host.h"
#include "lib/log.h"
#include "storage/storage.h"

#define FLEET_RECONCILE_S 60.0
/* without pub/sub (file): the feed is polled; at rest a poll is one stat()
 * of the feed file on a storage worker thread */
#define FLEET_POLL_S 1.0
/* a batch of the feed is read while fewer reads than this wait, else later */
#define FLEET_BACKLOG_MAX 2048
#define FLEET_MORE_S 0.1

struct fleet {
	struct ev_loop *loop;
	struct storage *st;
	struct certstore *cs;
	struct health *health;
	struct storage_sub *sub;
	int poll;			/* a feed without pub/sub: polled */
	struct storage_req *reading;	/* the feed read in flight */
	uint64_t feed_gen;		/* change feed read up to here */
	ev_timer reconcile_timer;
	ev_timer more_timer;		/* the feed's next batch, once reads drained */
	struct fleet_stats stats;
};

static void fleet_on_cert_msg(void *arg, const char *msg, size_t len)
{
	struct fleet *f = arg;
	char raw[CERTSTORE_HOST_MAX], host[CERTSTORE_HOST_MAX];

	if (len == 0 || len >= sizeof(raw))
		return;
	memcpy(raw, msg, len);
	raw[len] = '\0';
	if (host_normalize(raw, host, sizeof(host), HOST_WILDCARD) == -1) {
		log_warn("pub/sub: ignoring a message that is no host name");
		return;
	}
	certstore_fetch(f->cs, host);
}

static void fleet_feed_read(struct fleet *f);

/* Changes since the last read: only the certificates whose version differs
 * from memory's are read. */
static void cb_fleet_feed(void *arg, struct storage_res *res)
{
	struct fleet *f = arg;
	char host[CERTSTORE_HOST_MAX];
	size_t i;

	f->reading = NULL;
	health_storage_result(f->health, res);
	if (res->rc == -1) {
		log_err("change feed: %s", res->err);
		return;
	}
	f->stats.feed_reads++;
	if (res->gen < f->feed_gen) {
		/* the feed restarted (the store was emptied): compare everything */
		log_warn("change feed: generation went back from %llu to %llu, reading it all",
			 (unsigned long long)f->feed_gen, (unsigned long long)res->gen);
		f->feed_gen = 0;
		fleet_feed_read(f);
		return;
	}
	for (i = 0; i < res->n; i++) {
		struct certstore_cert *c;

		if (host_normalize(res->keys[i], host, sizeof(host), HOST_WILDCARD) == -1)
			continue;
		c = certstore_get(f->cs, host);
		if (!res->vals[i]) {
			if (c || certstore_stored(f->cs, host)) {
				log_info("host=%s certificate deleted by another node", host);
				certstore_remove(f->cs, host);
				f->stats.feed_changes++;
			}
		} else if (c ? strcmp(c->info.serial_hex, res->vals[i]) != 0 :
			   !certstore_stored(f->cs, host)) {
			/* an index-only name that changed needs nothing read: its
			 * full entry, if this node takes it, reads the new one */
			certstore_fetch(f->cs, host);
			f->stats.feed_changes++;
		}
	}
	f->feed_gen = res->gen;
	if (!res->more)
		return;
	/* a long feed (a mass import elsewhere): the next batch once the reads
	 * of this one have mostly gone out */
	if (certstore_fetch_backlog(f->cs) > FLEET_BACKLOG_MAX) {
		ev_timer_stop(f->loop, &f->more_timer);
		ev_timer_set(&f->more_timer, FLEET_MORE_S, 0.);
		ev_timer_start(f->loop, &f->more_timer);
		return;
	}
	fleet_feed_read(f);
}

static void fleet_feed_read(struct fleet *f)
{
	if (f->reading)
		return;
	f->reading = storage_feed_since(f->st, CERTSTORE_FEED, f->feed_gen, cb_fleet_feed, f);
}

static void cb_fleet_more(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fleet *f = w->data;

	if (certstore_fetch_backlog(f->cs) > FLEET_BACKLOG_MAX) {
		ev_timer_set(w, FLEET_MORE_S, 0.);
		ev_timer_start(loop, w);
		return;
	}
	fleet_feed_read(f);
}

static void cb_fleet_reconcile(struct ev_loop *loop, ev_timer *w, int revents)
{
	/* in case a message was missed (or, polled, what the file feed got) */
	fleet_feed_read(w->data);
}

int fleet_mark(struct fleet *f)
{
	struct storage_res g;
	char err[256];

	if (!f->sub && !f->poll)
		return -1;
	if (storage_wait(f->st, storage_feed_since(f->st, CERTSTORE_FEED, STORAGE_FEED_NOW, NULL, NULL),
			 &g, err, sizeof(err)) == -1)
		return -1;
	f->feed_gen = g.gen;
	storage_res_clear(&g);
	return 0;
}

struct fleet *fleet_new(struct ev_loop *loop, struct storage *st, struct certstore *cs,
			struct health *health)
{
	struct fleet *f = calloc(1, sizeof(*f));
	char err[256];

	if (!f)
		goto out;
	f->loop = loop;
	f->st = st;
	f->cs = cs;
	f->health = health;
	ev_init(&f->reconcile_timer, cb_fleet_reconcile);
	f->reconcile_timer.data = f;
	ev_init(&f->more_timer, cb_fleet_more);
	f->more_timer.data = f;
	/* other nodes announce their changes: subscribed before the load, so
	 * that nothing announced meanwhile is missed */
	f->sub = storage_subscribe(st, CERTSTORE_CHANNEL, fleet_on_cert_msg, f, err, sizeof(err));
	/* file: processes sharing its directory (import, other agents) write
	 * the feed, which nobody announces */
	f->poll = !f->sub && storage_has_feed(st);
	/* the feed's position first: what changes during the load is read again */
	fleet_mark(f);
out:
	return f;
}

void fleet_start(struct fleet *f)
{
	double every = f->sub ? FLEET_RECONCILE_S : FLEET_POLL_S;

	if (!f->sub && !f->poll)
		return;
	ev_timer_set(&f->reconcile_timer, every, every);
	ev_timer_start(f->loop, &f->reconcile_timer);
}

void fleet_stats(const struct fleet *f, struct fleet_stats *out)
{
	*out = f->stats;
}

void fleet_free(struct fleet *f)
{
	if (!f)
		return;
	ev_timer_stop(f->loop, &f->reconcile_timer);
	ev_timer_stop(f->loop, &f->more_timer);
	storage_cancel(f->reading);
	storage_sub_free(f->sub);
	free(f);
}
