/* SPDX-License-Identifier: Apache-2.0 */
/* consul backend: subscriptions. Consul has no pub/sub: a message is a key
 * under "<kv>/chan/<channel>/" (storage_consul_cmd.c publishes it), and a
 * subscription is a blocking query (?recurse&index=<X-Consul-Index>&wait=30s)
 * on that prefix, delivering the live keys changed since the last answer,
 * oldest first. After a failure the query starts afresh (index 0) and
 * delivers what was published meanwhile; an index that went back means
 * Consul lost its state (restarted empty): everything there is news. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <ev.h>
#include <jansson.h>

#include "lib/log.h"
#include "storage/storage.h"
#include "storage/storage_consul_int.h"

#define CONSUL_WATCH_WAIT_S	30
#define CONSUL_SUB_BACKOFF_MIN	0.1
#define CONSUL_SUB_BACKOFF_MAX	5.

struct consul_sub {
	LIST_ENTRY(consul_sub) link;
	struct consul_be *be;
	char *path;		/* "kv/<kv>/chan/<channel>/?recurse" */
	char *channel;
	void (*cb)(void *arg, const char *msg, size_t len);
	void *arg;
	struct consul_http *h;
	ev_timer retry;
	double backoff;
	uint64_t index;		/* X-Consul-Index of the last answer; 0: not yet */
	uint64_t seen;		/* messages up to this ModifyIndex were delivered */
	int ready;
	int failed;		/* the last query failed: ask afresh (index 0) */
	int *freed;		/* set by storage_sub_free() while delivering */
};

static void sub_query(struct consul_sub *sub);

static int sub_cmp_index(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "ModifyIndex"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "ModifyIndex"));

	return x < y ? -1 : x > y;
}

/* Delivers the live messages changed after sub->seen, oldest first. */
static void sub_deliver(struct consul_sub *sub, json_t *arr, int deliver)
{
	uint64_t now = consul_now_ms(), top = sub->seen;
	size_t i, n = json_array_size(arr), m = 0;
	int freed = 0;
	json_t **v = calloc(n ? n : 1, sizeof(*v));

	if (!v)
		return;
	for (i = 0; i < n; i++) {
		json_t *e = json_array_get(arr, i);
		json_int_t mi = json_integer_value(json_object_get(e, "ModifyIndex"));
		json_int_t fl = json_integer_value(json_object_get(e, "Flags"));
		const char *key = json_string_value(json_object_get(e, "Key"));

		if (mi <= 0 || !key)
			continue;
		if ((uint64_t)mi > top)
			top = mi;
		if (fl > 0 && (uint64_t)fl <= now) {
			const char *slash = strrchr(key, '/');
			char name[STORAGE_KEY_MAX + 16];

			snprintf(name, sizeof(name), "%s/%s", sub->channel, slash ? slash + 1 : key);
			consul_delete_cas(sub->be, "chan/", name, mi);
			continue;
		}
		if (deliver && (uint64_t)mi > sub->seen)
			v[m++] = e;
	}
	qsort(v, m, sizeof(*v), sub_cmp_index);
	sub->seen = top;
	sub->freed = &freed;
	for (i = 0; i < m && !freed; i++) {
		char *msg = NULL;
		size_t len = 0;

		/* the callback may free <sub> (then <freed> is set) */
		if (consul_unb64(json_string_value(json_object_get(v[i], "Value")), &msg, &len) == 0)
			sub->cb(sub->arg, msg, len);
		free(msg);
	}
	if (!freed)
		sub->freed = NULL;
	free(v);
}

static void sub_retry(struct consul_sub *sub)
{
	sub->ready = 0;
	sub->failed = 1;
	ev_timer_set(&sub->retry, sub->backoff, 0.);
	ev_timer_start(sub->be->loop, &sub->retry);
	sub->backoff = sub->backoff * 2 > CONSUL_SUB_BACKOFF_MAX ? CONSUL_SUB_BACKOFF_MAX :
		       sub->backoff * 2;
}

static void cb_sub_answer(void *arg, const struct consul_resp *r)
{
	struct consul_sub *sub = arg;
	json_t *j = NULL;
	int first;

	sub->h = NULL;
	if (r->status != 200 && r->status != 404) {
		char why[STORAGE_ERR_MAX];

		consul_resp_why(r, why, sizeof(why));
		if (sub->ready)
			log_warn("storage consul: channel=%s watch: %s (retrying)", sub->channel, why);
		sub_retry(sub);
		return;
	}
	if (r->status == 200 && !(j = json_loadb(r->body, r->len, 0, NULL))) {
		log_warn("storage consul: channel=%s watch: answer is no JSON", sub->channel);
		sub_retry(sub);
		return;
	}
	/* a first answer sets the starting point; one after a failure delivers
	 * what was published meanwhile; an index going back means Consul lost
	 * its state (restarted empty): everything there is news */
	first = sub->index == 0 && !sub->failed;
	if (r->index < sub->index || (sub->failed && r->index < sub->seen))
		sub->seen = 0;
	sub->index = r->index > 0 ? r->index : 1;
	sub->failed = 0;
	sub->backoff = CONSUL_SUB_BACKOFF_MIN;
	if (!sub->ready)
		log_debug("storage consul: channel=%s watching", sub->channel);
	sub->ready = 1;
	sub_query(sub);		/* before delivering: the callback may free <sub> */
	sub_deliver(sub, j, !first);
	json_decref(j);
}

static void sub_query(struct consul_sub *sub)
{
	char path[CONSUL_PATHBUF + 64];
	uint64_t index = sub->failed ? 0 : sub->index;

	snprintf(path, sizeof(path), "%s&index=%llu&wait=%ds", sub->path,
		 (unsigned long long)index, CONSUL_WATCH_WAIT_S);
	/* Consul adds up to wait/16 of jitter */
	sub->h = consul_http_start(sub->be, "GET", path, NULL, 0,
				   CONSUL_WATCH_WAIT_S * 1000L * 17 / 16 + sub->be->timeout_ms,
				   cb_sub_answer, sub);
	if (!sub->h)
		sub_retry(sub);
}

static void cb_sub_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	sub_query(w->data);
}

void consul_sub_free(void *p)
{
	struct consul_sub *sub = p;

	if (!sub)
		return;
	if (sub->freed)
		*sub->freed = 1;
	if (sub->be) {
		LIST_REMOVE(sub, link);
		ev_timer_stop(sub->be->loop, &sub->retry);
		consul_http_cancel(sub->h);
	}
	free(sub->path);
	free(sub->channel);
	free(sub);
}

int consul_sub_ready(const void *p)
{
	const struct consul_sub *sub = p;

	return sub != NULL && sub->ready;
}

void *consul_subscribe(void *p, struct ev_loop *loop, const char *channel,
					    void (*cb)(void *arg, const char *msg, size_t len),
					    void *arg, char *err, size_t errlen)
{
	struct consul_be *be = p;
	struct consul_sub *sub = calloc(1, sizeof(*sub));
	char path[CONSUL_PATHBUF] = "kv/";
	size_t off = 3;

	if (!sub || consul_path(be, path, sizeof(path), &off, "chan/", channel) ||
	    asprintf(&sub->path, "%s/?recurse", path) == -1 ||
	    !(sub->channel = strdup(channel))) {
		snprintf(err, errlen, "storage consul: subscribe %s: out of memory", channel);
		if (sub)
			free(sub->path);
		free(sub);
		return NULL;
	}
	sub->be = be;
	sub->cb = cb;
	sub->arg = arg;
	sub->backoff = CONSUL_SUB_BACKOFF_MIN;
	ev_timer_init(&sub->retry, cb_sub_retry, 0., 0.);
	sub->retry.data = sub;
	LIST_INSERT_HEAD(&be->subs, sub, link);
	sub_query(sub);
	return sub;
}

void consul_subs_detach(struct consul_be *be)
{
	while (!LIST_EMPTY(&be->subs)) {
		struct consul_sub *sub = LIST_FIRST(&be->subs);

		ev_timer_stop(be->loop, &sub->retry);
		consul_http_cancel(sub->h);
		sub->h = NULL;
		sub->ready = 0;
		LIST_REMOVE(sub, link);
		sub->be = NULL;
	}
}
