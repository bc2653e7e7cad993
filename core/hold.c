/* SPDX-License-Identifier: Apache-2.0 */
/* Held ClientHellos (hold.h): a map host -> FIFO of waiters with one timer
 * per host on its oldest waiter's deadline (waiters of one host arrive in
 * deadline order as long as the timeout stays the same; a shorter one is
 * still released no later than the head's deadline plus its own). */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <ev.h>

#include "core/hold.h"
#include "lib/hmap.h"

struct hold_waiter {
	void *item;
	ev_tstamp deadline;
	TAILQ_ENTRY(hold_waiter) link;
};

struct hold_host {
	struct hold *h;
	TAILQ_HEAD(, hold_waiter) waiters;
	size_t n;
	ev_timer timer;
	char host[];
};

struct hold {
	struct ev_loop *loop;
	void (*release)(void *arg, void *item);
	void *arg;
	size_t max_per_host, max_total;
	struct hmap hosts;		/* host -> struct hold_host */
	struct hold_stats st;		/* .hosts unused: hosts.count is it */
};

static void hold_host_free(struct hold_host *hh)
{
	ev_timer_stop(hh->h->loop, &hh->timer);
	free(hh);
}

/* Gives back the head waiter of <hh>. */
static void hold_pop(struct hold_host *hh)
{
	struct hold *h = hh->h;
	struct hold_waiter *w = TAILQ_FIRST(&hh->waiters);

	TAILQ_REMOVE(&hh->waiters, w, link);
	hh->n--;
	h->st.waiting--;
	h->release(h->arg, w->item);
	free(w);
}

static void hold_host_drop(struct hold_host *hh)
{
	struct hold *h = hh->h;

	hmap_del(&h->hosts, hh->host);
	hold_host_free(hh);
}

static void cb_hold_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct hold_host *hh = t->data;
	struct hold *h = hh->h;
	ev_tstamp now = ev_now(loop);
	struct hold_waiter *w;

	while ((w = TAILQ_FIRST(&hh->waiters)) && w->deadline <= now + 0.001) {
		h->st.timeouts++;
		hold_pop(hh);
	}
	if (!w) {
		hold_host_drop(hh);
		return;
	}
	ev_timer_set(&hh->timer, w->deadline - now, 0.);
	ev_timer_start(loop, &hh->timer);
}

struct hold *hold_new(struct ev_loop *loop, void (*release)(void *arg, void *item), void *arg,
		      size_t max_per_host, size_t max_total)
{
	struct hold *h = calloc(1, sizeof(*h));

	if (!h || hmap_init(&h->hosts) == -1) {
		free(h);
		return NULL;
	}
	h->loop = loop;
	h->release = release;
	h->arg = arg;
	h->max_per_host = max_per_host;
	h->max_total = max_total;
	return h;
}

int hold_add(struct hold *h, const char *host, void *item, double timeout)
{
	struct hold_host *hh = hmap_get(&h->hosts, host);
	struct hold_waiter *w;
	size_t len;

	if (h->st.waiting >= h->max_total || (hh && hh->n >= h->max_per_host)) {
		h->st.refused++;
		return -1;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -1;
	if (!hh) {
		len = strlen(host);
		hh = calloc(1, sizeof(*hh) + len + 1);
		if (!hh || hmap_put(&h->hosts, host, hh, NULL) == -1) {
			free(hh);
			free(w);
			return -1;
		}
		memcpy(hh->host, host, len + 1);
		hh->h = h;
		TAILQ_INIT(&hh->waiters);
		ev_init(&hh->timer, cb_hold_timer);
		hh->timer.data = hh;
	}
	w->item = item;
	w->deadline = ev_now(h->loop) + timeout;
	TAILQ_INSERT_TAIL(&hh->waiters, w, link);
	hh->n++;
	h->st.waiting++;
	h->st.held++;
	if (!ev_is_active(&hh->timer)) {
		ev_timer_set(&hh->timer, timeout, 0.);
		ev_timer_start(h->loop, &hh->timer);
	}
	return 0;
}

size_t hold_release(struct hold *h, const char *host)
{
	struct hold_host *hh = hmap_get(&h->hosts, host);
	size_t n = 0;

	if (!hh)
		return 0;
	/* off the map first: a release function may hold this host again */
	hmap_del(&h->hosts, hh->host);
	while (!TAILQ_EMPTY(&hh->waiters)) {
		h->st.released++;
		hold_pop(hh);
		n++;
	}
	hold_host_free(hh);
	return n;
}

size_t hold_waiting(const struct hold *h, const char *host)
{
	struct hold_host *hh = hmap_get(&h->hosts, host);

	return hh ? hh->n : 0;
}

void hold_stats(const struct hold *h, struct hold_stats *out)
{
	*out = h->st;
	out->hosts = h->hosts.count;
}

static void hold_free_host(void *p)
{
	struct hold_host *hh = p;

	while (!TAILQ_EMPTY(&hh->waiters))
		hold_pop(hh);
	hold_host_free(hh);
}

void hold_free(struct hold *h)
{
	if (!h)
		return;
	hmap_clear(&h->hosts, hold_free_host);
	free(h);
}
