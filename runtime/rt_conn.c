/* SPDX-License-Identifier: Apache-2.0 */
/* Runtime socket connection: prompt-mode I/O, init (stale transactions),
 * reply timeout, reconnection with backoff, keepalive and reload probe. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "lib/hmap.h"
#include "lib/log.h"
#include "runtime/rt_int.h"

/* ---- connection ---- */

/* Grows *<buf> to hold <need> bytes. Never realloc: the buffers carry
 * private keys ("set ssl cert" payloads), so the old copy is wiped. */
static int grow(char **buf, size_t *cap, size_t need)
{
	size_t ncap = *cap ? *cap : 4096;
	char *nb;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	nb = malloc(ncap);
	if (!nb)
		return -1;
	if (*buf) {
		memcpy(nb, *buf, *cap);
		OPENSSL_cleanse(*buf, *cap);
		free(*buf);
	}
	*buf = nb;
	*cap = ncap;
	return 0;
}

static void sock_flush(struct rt_sock *s)
{
	ssize_t n;

	while (s->woff < s->wlen) {
		n = send(s->fd, s->wbuf + s->woff, s->wlen - s->woff, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_start(s->rt->loop, &s->wio);
				return;
			}
			snprintf(s->last_err, sizeof(s->last_err), "send: %s", strerror(errno));
			rt_sock_close(s, s->last_err, 1, s->backoff);
			return;
		}
		s->woff += (size_t)n;
	}
	/* sent: the payload (a private key, maybe) is wiped from the buffer */
	OPENSSL_cleanse(s->wbuf, s->wlen);
	s->woff = s->wlen = 0;
	ev_io_stop(s->rt->loop, &s->wio);
}

/* Queues one command (<txt>, ending with "\n") and arms the reply timeout.
 * Returns 0, or -1 when the connection was closed meanwhile. */
int rt_send_cmd(struct rt_sock *s, enum rt_cmd kind, const char *txt, size_t len)
{
	unsigned gen = s->gen;

	if (grow(&s->wbuf, &s->wcap, s->wlen + len) == -1) {
		rt_sock_close(s, "out of memory", 0, s->backoff);
		return -1;
	}
	memcpy(s->wbuf + s->wlen, txt, len);
	s->wlen += len;
	s->busy = 1;
	s->cur = kind;
	snprintf(s->cur_text, sizeof(s->cur_text), "%.*s", (int)strcspn(txt, "\n"), txt);
	s->last_tx = ev_now(s->rt->loop);
	s->rt->stats.commands++;
	ev_timer_stop(s->rt->loop, &s->tmo);
	ev_timer_set(&s->tmo, s->rt->timeout, 0.);
	ev_timer_start(s->rt->loop, &s->tmo);
	sock_flush(s);
	return gen == s->gen ? 0 : -1;
}

void rt_stale_clear(struct rt_sock *s)
{
	size_t i;

	for (i = 0; i < s->nstale; i++)
		free(s->stale[i]);
	free(s->stale);
	s->stale = NULL;
	s->nstale = s->stale_i = 0;
}

static void probe_stop(struct rt_sock *s)
{
	ev_io_stop(s->rt->loop, &s->pio);
	ev_timer_stop(s->rt->loop, &s->ptmo);
	if (s->pfd != -1)
		close(s->pfd);
	s->pfd = -1;
	s->plen = 0;
}

/* Closes the connection and schedules a new one <retry_in> seconds later.
 * The job in progress is run again from its start unless <penalize> and it
 * already used its attempts; queued jobs get a deadline. */
void rt_sock_close(struct rt_sock *s, const char *why, int penalize, double retry_in)
{
	struct ev_loop *loop = s->rt->loop;
	struct rt_job *j;
	char cmd[sizeof(s->cur_text)], hint[80] = "";
	int was_busy = s->busy;

	if ((s->phase == RT_PH_READY || s->phase == RT_PH_INIT) && !s->rt->closing)
		log_warn("runtime: sock=%s connection lost: %s", s->addr, why);
	memcpy(cmd, s->cur_text, sizeof(cmd));
	ev_io_stop(loop, &s->rio);
	ev_io_stop(loop, &s->wio);
	ev_timer_stop(loop, &s->tmo);
	ev_timer_stop(loop, &s->kick);
	ev_timer_set(&s->kick, 0., 0.);
	s->held = 0;
	ev_timer_stop(loop, &s->retry);
	probe_stop(s);
	if (s->fd != -1)
		close(s->fd);
	s->fd = -1;
	s->gen++;
	s->phase = RT_PH_DOWN;
	s->busy = 0;
	s->cur = RT_CMD_NONE;
	s->rlen = s->wlen = s->woff = 0;
	hmap_clear(&s->store, NULL);
	hmap_init(&s->store);
	rt_clists_clear(s);
	rt_stale_clear(s);
	for (j = s->qhead; j; j = j->next)
		if (j->deadline == 0)
			j->deadline = ev_now(loop) + s->rt->timeout;
	ev_timer_set(&s->retry, retry_in, 0.);
	ev_timer_start(loop, &s->retry);
	j = s->qhead;
	if (j && j->step != RT_ST_START) {
		/* HAProxy drops the connection when a payload overflows its buffer */
		if (j->step == RT_ST_SET && was_busy)
			snprintf(hint, sizeof(hint), " (payload of %zu bytes: over tune.bufsize?)", j->op->cmdlen);
		j->step = RT_ST_START;
		j->did_new = j->did_foreign = 0;
		if (penalize && ++j->attempts >= RT_MAX_ATTEMPTS) {
			rt_job_failf(s, j, "connection lost%s%s%s: %s%s", was_busy ? " during \"" : "",
				  was_busy ? cmd : "", was_busy ? "\"" : "", why, hint);
			if (s->phase != RT_PH_DOWN)
				return;
		}
	}
	rt_queue_arm_deadlines(s);
}

static void sock_ready(struct rt_sock *s)
{
	struct rt *rt = s->rt;
	struct rt_job *j;

	s->phase = RT_PH_READY;
	s->backoff = RT_BACKOFF_MIN;
	s->down_logged = 0;
	s->last_err[0] = '\0';
	ev_timer_stop(rt->loop, &s->qtimer);
	for (j = s->qhead; j; j = j->next)
		j->deadline = 0;
	log_info("runtime: sock=%s ready pid=%lld certs=%zu", s->addr, s->main_id.pid, s->store.count);
	rt_job_run(s);
	if (s->reload_pending && s->phase == RT_PH_READY) {
		s->reload_pending = 0;
		rt->stats.reloads_seen++;
		log_info("runtime: sock=%s HAProxy reloaded (pid=%lld)", s->addr, s->main_id.pid);
		if (rt->on_reload)
			rt->on_reload(rt->arg, s->idx);
	}
}

static void init_next_stale(struct rt_sock *s)
{
	char line[600];

	if (s->stale_i < s->nstale) {
		log_warn("runtime: sock=%s aborting stale transaction name=%s", s->addr, s->stale[s->stale_i]);
		snprintf(line, sizeof(line), "abort ssl cert %s\n", s->stale[s->stale_i++]);
		rt_send_cmd(s, RT_CMD_ABORT_STALE, line, strlen(line));
		return;
	}
	rt_stale_clear(s);
	sock_ready(s);
}

static int init_list(struct rt_sock *s, char *body)
{
	char *line, *save = NULL, **tmp;

	if (body[0] && body[0] != '#')
		return -1;
	for (line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#' || !line[0])
			continue;
		if (line[0] != '*') {
			rt_set_add(&s->store, line);
			continue;
		}
		tmp = realloc(s->stale, (s->nstale + 1) * sizeof(*tmp));
		if (!tmp || !rt_valid_name(line + 1) || !(tmp[s->nstale] = strdup(line + 1))) {
			if (tmp)
				s->stale = tmp;
			continue;
		}
		s->stale = tmp;
		s->nstale++;
	}
	return 0;
}

/* Dispatches the reply <body> (NUL-terminated) to the command in flight. */
static void sock_reply(struct rt_sock *s, enum rt_cmd kind, char *body, size_t blen)
{
	struct rt_ident id;
	struct rt_line line;
	char rep[200];

	switch (kind) {
	case RT_CMD_PROMPT:
		rt_send_cmd(s, RT_CMD_INFO_INIT, "show info\n", 10);
		return;
	case RT_CMD_INFO_INIT:
		if (rt_parse_ident(body, ev_now(s->rt->loop), &id) == -1) {
			rt_fmt_reply(rep, sizeof(rep), body, blen);
			snprintf(s->last_err, sizeof(s->last_err), "show info: unexpected reply: %s", rep);
			rt_sock_close(s, s->last_err, 0, RT_BACKOFF_MAX);
			return;
		}
		if (rt_line_from_info(body, &line, rep, sizeof(rep)) == -1) {
			snprintf(s->last_err, sizeof(s->last_err), "%s", rep);
			if (!s->down_logged)
				log_err("runtime: sock=%s %s", s->addr, s->last_err);
			s->down_logged = 1;
			rt_sock_close(s, s->last_err, 0, RT_BACKOFF_MAX);
			return;
		}
		if (strcmp(line.version, s->line.version) != 0)
			log_info("runtime: sock=%s HAProxy %s (runtime line %s)", s->addr, line.version,
				 line.name);
		s->line = line;
		s->main_id = id;
		if (s->have_known && rt_ident_differs(&s->known_id, &id))
			s->reload_pending = 1;
		s->known_id = id;
		s->have_known = 1;
		rt_send_cmd(s, RT_CMD_LIST_INIT, "show ssl cert\n", 14);
		return;
	case RT_CMD_LIST_INIT:
		if (init_list(s, body) == -1) {
			rt_fmt_reply(rep, sizeof(rep), body, blen);
			snprintf(s->last_err, sizeof(s->last_err), "show ssl cert: %s (needs \"level admin\")", rep);
			if (!s->down_logged)
				log_err("runtime: sock=%s %s", s->addr, s->last_err);
			s->down_logged = 1;
			rt_sock_close(s, s->last_err, 0, RT_BACKOFF_MAX);
			return;
		}
		init_next_stale(s);
		return;
	case RT_CMD_ABORT_STALE:
		rt_fmt_reply(rep, sizeof(rep), body, blen);
		log_info("runtime: sock=%s abort: %s", s->addr, rep);
		init_next_stale(s);
		return;
	case RT_CMD_KEEPALIVE:
		if (rt_parse_ident(body, ev_now(s->rt->loop), &id) == 0 && id.pid == s->main_id.pid)
			s->main_id = id;
		rt_job_run(s);
		return;
	case RT_CMD_JOB:
		rt_job_reply(s, body, blen);
		rt_job_run(s);
		return;
	default:
		return;
	}
}

void rt_cb_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct rt_sock *s = w->data;
	const char *body;
	size_t blen, used;
	unsigned gen = s->gen;
	enum rt_cmd kind;
	ssize_t n;

	if (grow(&s->rbuf, &s->rcap, s->rlen + 65536) == -1) {
		rt_sock_close(s, "out of memory", 1, s->backoff);
		return;
	}
	n = read(s->fd, s->rbuf + s->rlen, s->rcap - s->rlen - 1);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		snprintf(s->last_err, sizeof(s->last_err), "%s",
			 n == 0 ? "connection closed by HAProxy" : strerror(errno));
		rt_sock_close(s, s->last_err, 1, s->backoff);
		return;
	}
	if (n == -1)
		return;
	s->rlen += (size_t)n;
	if (s->rlen > RT_REPLY_MAX) {
		rt_sock_close(s, "reply too large", 1, s->backoff);
		return;
	}
	while (gen == s->gen && rt_reply_parse(s->rbuf, s->rlen, &body, &blen, &used)) {
		if (!s->busy) {
			rt_sock_close(s, "unexpected data from HAProxy", 0, s->backoff);
			return;
		}
		kind = s->cur;
		s->busy = 0;
		s->cur = RT_CMD_NONE;
		ev_timer_stop(loop, &s->tmo);
		((char *)body)[blen] = '\0';	/* within the consumed reply */
		sock_reply(s, kind, (char *)body, blen);
		if (gen != s->gen)
			return;
		memmove(s->rbuf, s->rbuf + used, s->rlen - used);
		s->rlen -= used;
	}
}

void rt_cb_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct rt_sock *s = w->data;
	int e = 0;
	socklen_t el = sizeof(e);

	if (s->phase != RT_PH_CONNECTING) {
		sock_flush(s);
		return;
	}
	ev_io_stop(loop, &s->wio);
	ev_timer_stop(loop, &s->tmo);
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &el) == -1)
		e = errno;
	if (e) {
		snprintf(s->last_err, sizeof(s->last_err), "connect: %s", strerror(e));
		s->backoff = s->backoff * 2 > RT_BACKOFF_MAX ? RT_BACKOFF_MAX : s->backoff * 2;
		rt_sock_close(s, s->last_err, 0, s->backoff);
		return;
	}
	s->phase = RT_PH_INIT;
	if (s->ever_connected)
		s->rt->stats.reconnects++;
	s->ever_connected = 1;
	ev_io_set(&s->rio, s->fd, EV_READ);
	ev_io_start(loop, &s->rio);
	rt_send_cmd(s, RT_CMD_PROMPT, "prompt\n", 7);
}

static void sock_connect(struct rt_sock *s)
{
	struct ev_loop *loop = s->rt->loop;

	s->fd = socket(s->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd != -1 && (connect(s->fd, (struct sockaddr *)&s->sa, s->salen) == 0 ||
			    errno == EINPROGRESS)) {
		s->phase = RT_PH_CONNECTING;
		ev_io_set(&s->wio, s->fd, EV_WRITE);
		ev_io_start(loop, &s->wio);
		ev_timer_set(&s->tmo, s->rt->timeout, 0.);
		ev_timer_start(loop, &s->tmo);
		return;
	}
	snprintf(s->last_err, sizeof(s->last_err), "connect: %s", strerror(errno));
	if (!s->down_logged)
		log_warn("runtime: sock=%s %s (retrying)", s->addr, s->last_err);
	else
		log_debug("runtime: sock=%s %s", s->addr, s->last_err);
	s->down_logged = 1;
	s->backoff = s->backoff * 2 > RT_BACKOFF_MAX ? RT_BACKOFF_MAX : s->backoff * 2;
	rt_sock_close(s, s->last_err, 0, s->backoff);
}

void rt_cb_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	sock_connect(w->data);
}

void rt_cb_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rt_sock *s = w->data;
	struct rt_job *j = s->qhead;
	unsigned gen = s->gen;
	char why[700];

	if (s->phase == RT_PH_CONNECTING)
		snprintf(why, sizeof(why), "connect: timeout after %.1fs", s->rt->timeout);
	else
		snprintf(why, sizeof(why), "timeout after %.1fs waiting for the reply to \"%s\"",
			 s->rt->timeout, s->cur_text);
	snprintf(s->last_err, sizeof(s->last_err), "%s", why);
	if (s->cur == RT_CMD_JOB && j) {
		rt_job_failf(s, j, "%s", why);
		if (gen != s->gen)
			return;
	}
	rt_sock_close(s, why, 0, s->backoff);
}

/* ---- reload probe: a short non-interactive "show info" on a new connection ---- */

void rt_cb_probe_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rt_sock *s = w->data;

	log_debug("runtime: sock=%s probe timed out", s->addr);
	probe_stop(s);
}

void rt_cb_probe_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct rt_sock *s = w->data;
	struct rt_ident id;
	int e = 0;
	socklen_t el = sizeof(e);
	ssize_t n;

	if (s->pconnecting) {
		if (getsockopt(s->pfd, SOL_SOCKET, SO_ERROR, &e, &el) == -1 || e ||
		    send(s->pfd, "show info\n", 10, MSG_NOSIGNAL) != 10) {
			probe_stop(s);
			return;
		}
		s->pconnecting = 0;
		ev_io_stop(loop, &s->pio);
		ev_io_set(&s->pio, s->pfd, EV_READ);
		ev_io_start(loop, &s->pio);
		return;
	}
	if (grow(&s->pbuf, &s->pcap, s->plen + 4096) == -1) {
		probe_stop(s);
		return;
	}
	n = read(s->pfd, s->pbuf + s->plen, s->pcap - s->plen - 1);
	if (n > 0 && s->plen + (size_t)n < 65536) {
		s->plen += (size_t)n;
		return;
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	s->pbuf[s->plen] = '\0';
	if (n == 0 && s->phase == RT_PH_READY &&
	    rt_parse_ident(s->pbuf, ev_now(loop), &id) == 0 && rt_ident_differs(&s->main_id, &id)) {
		log_info("runtime: sock=%s now served by pid=%lld (connection on pid=%lld): reconnecting",
			 s->addr, id.pid, s->main_id.pid);
		rt_sock_close(s, "HAProxy reloaded", 0, 0.);	/* stops the probe too */
		return;
	}
	probe_stop(s);
}

static void probe_start(struct rt_sock *s)
{
	struct ev_loop *loop = s->rt->loop;

	if (s->pfd != -1)
		return;
	s->pfd = socket(s->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->pfd == -1)
		return;
	if (connect(s->pfd, (struct sockaddr *)&s->sa, s->salen) == -1 && errno != EINPROGRESS) {
		probe_stop(s);
		return;
	}
	s->plen = 0;
	s->pconnecting = 1;
	ev_io_set(&s->pio, s->pfd, EV_WRITE);
	ev_io_start(loop, &s->pio);
	ev_timer_set(&s->ptmo, s->rt->timeout, 0.);
	ev_timer_start(loop, &s->ptmo);
}

void rt_cb_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rt *rt = w->data;
	struct rt_sock *s;
	size_t i;

	for (i = 0; i < rt->nsocks; i++) {
		s = &rt->socks[i];
		if (s->phase != RT_PH_READY)
			continue;
		/* keeps the connection under HAProxy's "stats timeout" */
		if (!s->busy && !s->qhead && ev_now(loop) - s->last_tx >= rt->poll * 0.9)
			rt_send_cmd(s, RT_CMD_KEEPALIVE, "show info\n", 10);
		if (s->phase == RT_PH_READY)
			probe_start(s);
	}
}
