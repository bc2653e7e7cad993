/* SPDX-License-Identifier: Apache-2.0 */
/* The sweep (certstore.h, redis): a node reads the stored names from the
 * change feed at start, not from a listing of the store. A certificate
 * stored without its feed entry (a writer cut off between the two writes, a
 * key written by hand) would then stay unknown to every node started later:
 * never renewed there, and an SNI of it ordered again. So once per
 * fleet.sweep_interval one node of the fleet walks "certs/" a page at a time
 * (SCAN, bounded memory, one page per loop turn) and gives each name its
 * index lacks a feed entry, which every node then learns. The fleet-wide
 * lock "sweep/certs", held for the interval, makes it one node per interval;
 * the others try again every tenth of it. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "core/certstore.h"
#include "core/certstore_int.h"
#include "core/nameidx.h"
#include "lib/host.h"
#include "lib/log.h"
#include "storage/storage.h"

#define CERTSWEEP_LOCK		"sweep/certs"
#define CERTSWEEP_PAGE_GAP_S	0.01	/* between two pages: the store serves others */

static void certsweep_arm(struct certstore *cs, double after)
{
	ev_timer_stop(cs->loop, &cs->sweep_timer);
	ev_timer_set(&cs->sweep_timer, after, 0.);
	ev_timer_start(cs->loop, &cs->sweep_timer);
}

static void certsweep_end(struct certstore *cs, const char *why)
{
	cs->sweep_req = NULL;
	cs->sweeping = 0;
	if (why)
		log_warn("sweep of stored certificates stopped after %zu names: %s",
			 cs->sweep_seen, why);
	else
		log_info("sweep of stored certificates: %zu names walked in %.1fs, %zu stored "
			 "without a change feed entry given one", cs->sweep_seen,
			 ev_time() - cs->sweep_start, cs->sweep_added);
	certsweep_arm(cs, (double)cs->sweep_interval / 10.);
}

static void cb_certsweep_page(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;
	char host[CERTSTORE_HOST_MAX];
	const char *name;
	size_t i;

	cs->sweep_req = NULL;
	if (res->rc == -1) {
		certsweep_end(cs, res->err);
		return;
	}
	for (i = 0; i < res->n; i++) {
		name = res->keys[i] + strlen("certs/");
		if (host_normalize(name, host, sizeof(host), HOST_WILDCARD) == -1 ||
		    strcmp(host, name) != 0)
			continue;	/* the start-up listing warns of those */
		cs->sweep_seen++;
		if (nameidx_contains(cs->names, host) || certstore_get(cs, host))
			continue;
		/* stored, in no feed: every node learns it from the entry (its
		 * version unknown here: a reader fetches the certificate) */
		log_warn("host=%s stored without a change feed entry: giving it one", host);
		if (nameidx_add(cs->names, host) == -1)
			log_err("host=%s cannot index the certificate: out of memory", host);
		certstore_announce(cs, host, "");
		cs->sweep_added++;
	}
	if (!res->more) {
		certsweep_end(cs, NULL);
		return;
	}
	cs->sweep_cursor = res->gen;
	certsweep_arm(cs, CERTSWEEP_PAGE_GAP_S);
}

static void cb_certsweep_locked(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;

	cs->sweep_req = NULL;
	if (res->rc != 0) {
		/* another node swept within the interval, or the store is away */
		if (res->rc == -1)
			log_warn("sweep of stored certificates not started: %s", res->err);
		certsweep_arm(cs, (double)cs->sweep_interval / 10.);
		return;
	}
	cs->sweeping = 1;
	cs->sweep_last = ev_time();
	cs->sweep_start = ev_time();
	cs->sweep_seen = cs->sweep_added = 0;
	cs->sweep_cursor = 0;
	log_info("sweep of stored certificates started (once per %u s in the fleet)",
		 cs->sweep_interval);
	certsweep_arm(cs, 0.);
}

static void cb_certsweep_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct certstore *cs = w->data;

	if (cs->sweep_req)
		return;
	if (cs->sweeping) {
		cs->sweep_req = storage_scan(cs->st, "certs/", cs->sweep_cursor, cb_certsweep_page, cs);
		if (!cs->sweep_req)
			certsweep_end(cs, "out of memory");
		return;
	}
	/* this node swept within the interval: its own lock would say yes */
	if (cs->sweep_last > 0 && ev_time() - cs->sweep_last < (double)cs->sweep_interval) {
		certsweep_arm(cs, (double)cs->sweep_interval / 10.);
		return;
	}
	cs->sweep_req = storage_lock(cs->st, CERTSWEEP_LOCK, cs->sweep_owner,
				     cs->sweep_interval * 1000u, cb_certsweep_locked, cs);
	if (!cs->sweep_req)
		certsweep_arm(cs, (double)cs->sweep_interval / 10.);
}

int certstore_sweep_start(struct certstore *cs, const char *owner, unsigned interval_s)
{
	double first;

	if (!storage_has_scan(cs->st) || certstore_keeps_pem(cs) || interval_s == 0 ||
	    interval_s > 30u * 86400u)
		return -1;
	certstore_sweep_stop(cs);	/* started again: once */
	snprintf(cs->sweep_owner, sizeof(cs->sweep_owner), "%s", owner);
	cs->sweep_interval = interval_s;
	ev_init(&cs->sweep_timer, cb_certsweep_timer);
	cs->sweep_timer.data = cs;
	/* not at start: a restart is busy enough, and the sweep is no hurry */
	first = (double)interval_s / 10.;
	certsweep_arm(cs, first < 600. ? first : 600.);
	return 0;
}

void certstore_sweep_stop(struct certstore *cs)
{
	if (!cs->sweep_interval)
		return;
	ev_timer_stop(cs->loop, &cs->sweep_timer);
	storage_cancel(cs->sweep_req);
	cs->sweep_req = NULL;
}
