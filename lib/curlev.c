/* SPDX-License-Identifier: Apache-2.0 */
/* libcurl multi on libev (curlev.h). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/queue.h>

#include <curl/curl.h>
#include <ev.h>

#include "lib/curlev.h"

struct curlev_sock {
	ev_io io;
	struct curlev *cv;
	LIST_ENTRY(curlev_sock) link;
};

struct curlev {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;
	LIST_HEAD(, curlev_sock) socks;
	void (*progress)(void *arg);
	void *arg;
};

static int curlev_global_done;

static void curlev_sock_free(struct curlev *cv, struct curlev_sock *s)
{
	ev_io_stop(cv->loop, &s->io);
	LIST_REMOVE(s, link);
	free(s);
}

static void cb_curlev_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct curlev *cv = w->data;
	int running;

	curl_multi_socket_action(cv->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	cv->progress(cv->arg);
}

static void cb_curlev_sock(struct ev_loop *loop, ev_io *w, int revents)
{
	struct curlev_sock *s = w->data;
	struct curlev *cv = s->cv;
	int action = 0, running;

	if (revents & EV_READ)
		action |= CURL_CSELECT_IN;
	if (revents & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	/* <s> may be freed inside (CURL_POLL_REMOVE): only <cv> is used afterwards */
	curl_multi_socket_action(cv->multi, w->fd, action, &running);
	cv->progress(cv->arg);
}

static int cb_curlev_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct curlev *cv = userp;
	struct curlev_sock *s = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(cv->multi, fd, NULL);
			curlev_sock_free(cv, s);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		s->cv = cv;
		ev_init(&s->io, cb_curlev_sock);
		s->io.data = s;
		LIST_INSERT_HEAD(&cv->socks, s, link);
		curl_multi_assign(cv->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	ev_io_stop(cv->loop, &s->io);
	ev_io_set(&s->io, fd, events);
	ev_io_start(cv->loop, &s->io);
	return 0;
}

static int cb_curlev_settimer(CURLM *multi, long timeout_ms, void *userp)
{
	struct curlev *cv = userp;

	ev_timer_stop(cv->loop, &cv->timer);
	if (timeout_ms >= 0) {
		ev_timer_set(&cv->timer, (double)timeout_ms / 1000.0, 0.);
		ev_timer_start(cv->loop, &cv->timer);
	}
	return 0;
}

struct curlev *curlev_new(struct ev_loop *loop, void (*progress)(void *arg), void *arg,
			  char *err, size_t errlen)
{
	struct curlev *cv = NULL;

	if (!curlev_global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			snprintf(err, errlen, "curl_global_init failed");
			return NULL;
		}
		curlev_global_done = 1;
	}
	cv = calloc(1, sizeof(*cv));
	if (!cv) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	cv->loop = loop;
	cv->progress = progress;
	cv->arg = arg;
	LIST_INIT(&cv->socks);
	ev_timer_init(&cv->timer, cb_curlev_timer, 0., 0.);
	cv->timer.data = cv;
	cv->multi = curl_multi_init();
	if (!cv->multi) {
		snprintf(err, errlen, "curl_multi_init failed");
		free(cv);
		return NULL;
	}
	curl_multi_setopt(cv->multi, CURLMOPT_SOCKETFUNCTION, cb_curlev_socket);
	curl_multi_setopt(cv->multi, CURLMOPT_SOCKETDATA, cv);
	curl_multi_setopt(cv->multi, CURLMOPT_TIMERFUNCTION, cb_curlev_settimer);
	curl_multi_setopt(cv->multi, CURLMOPT_TIMERDATA, cv);
	return cv;
}

CURLM *curlev_multi(struct curlev *cv)
{
	return cv->multi;
}

void curlev_free(struct curlev *cv)
{
	if (!cv)
		return;
	curl_multi_cleanup(cv->multi);
	while (!LIST_EMPTY(&cv->socks))
		curlev_sock_free(cv, LIST_FIRST(&cv->socks));
	ev_timer_stop(cv->loop, &cv->timer);
	free(cv);
}
