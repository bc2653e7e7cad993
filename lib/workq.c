/* SPDX-License-Identifier: Apache-2.0 */
/* Worker pool with per-shard FIFO queues: see workq.h. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "lib/workq.h"

STAILQ_HEAD(workq_list, workq_item);

struct workq_worker {
	struct workq *q;
	pthread_t thread;
	int started;
	struct workq_list todo;		/* guarded by q->mu */
};

struct workq {
	struct ev_loop *loop;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	ev_async async;			/* workers -> loop: <finished> grew */
	struct workq_list finished;	/* guarded by mu */
	int stopping;
	unsigned n;
	struct workq_worker w[];
};

static void *workq_main(void *arg)
{
	struct workq_worker *w = arg;
	struct workq *q = w->q;
	struct workq_item *it;

	pthread_mutex_lock(&q->mu);
	for (;;) {
		it = STAILQ_FIRST(&w->todo);
		if (!it) {
			if (q->stopping)
				break;
			pthread_cond_wait(&q->cond, &q->mu);
			continue;
		}
		/* stays at the head while it runs: its shard's order holds */
		pthread_mutex_unlock(&q->mu);
		it->run(it);
		pthread_mutex_lock(&q->mu);
		STAILQ_REMOVE_HEAD(&w->todo, link);
		STAILQ_INSERT_TAIL(&q->finished, it, link);
		if (!q->stopping)
			ev_async_send(q->loop, &q->async);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

/* Delivers every finished item; items finishing meanwhile wait for the next
 * wake-up, so one call's work is bounded. */
static void cb_workq_async(struct ev_loop *loop, ev_async *a, int revents)
{
	struct workq *q = a->data;
	struct workq_list batch = STAILQ_HEAD_INITIALIZER(batch);
	struct workq_item *it;

	pthread_mutex_lock(&q->mu);
	STAILQ_CONCAT(&batch, &q->finished);
	pthread_mutex_unlock(&q->mu);
	while ((it = STAILQ_FIRST(&batch))) {
		STAILQ_REMOVE_HEAD(&batch, link);
		it->done(it);
	}
}

struct workq *workq_new(struct ev_loop *loop, unsigned nthreads, char *err, size_t errlen)
{
	struct workq *q = NULL;
	sigset_t all, old;
	unsigned i;

	if (nthreads < 1 || nthreads > 64) {
		snprintf(err, errlen, "workq: %u threads: want 1..64", nthreads);
		return NULL;
	}
	q = calloc(1, sizeof(*q) + nthreads * sizeof(q->w[0]));
	if (!q) {
		snprintf(err, errlen, "workq: out of memory");
		return NULL;
	}
	q->loop = loop;
	q->n = nthreads;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cond, NULL);
	STAILQ_INIT(&q->finished);
	ev_async_init(&q->async, cb_workq_async);
	q->async.data = q;
	ev_async_start(loop, &q->async);
	ev_unref(loop);		/* an idle pool does not keep the loop running */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < nthreads; i++) {
		q->w[i].q = q;
		STAILQ_INIT(&q->w[i].todo);
		if (pthread_create(&q->w[i].thread, NULL, workq_main, &q->w[i]) != 0)
			break;
		q->w[i].started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (i < nthreads) {
		snprintf(err, errlen, "workq: cannot start worker thread %u", i);
		workq_free(q);
		return NULL;
	}
	return q;
}

void workq_submit(struct workq *q, struct workq_item *it, unsigned shard)
{
	struct workq_worker *w = &q->w[shard % q->n];

	pthread_mutex_lock(&q->mu);
	STAILQ_INSERT_TAIL(&w->todo, it, link);
	/* one condition for all workers: wake them all, the right one finds work */
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->mu);
}

unsigned workq_shard(const char *s)
{
	unsigned h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

void workq_free(struct workq *q)
{
	struct workq_item *it;
	unsigned i;

	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stopping = 1;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->mu);
	for (i = 0; i < q->n; i++)
		if (q->w[i].started)
			pthread_join(q->w[i].thread, NULL);
	ev_ref(q->loop);
	ev_async_stop(q->loop, &q->async);
	while ((it = STAILQ_FIRST(&q->finished))) {
		STAILQ_REMOVE_HEAD(&q->finished, link);
		it->done(it);
	}
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->mu);
	free(q);
}
