/* SPDX-License-Identifier: Apache-2.0 */
/* SPOA connections: reading frames, handling them, writing ACKs.
 *
 * Each connection owns a read buffer that holds one whole frame at most and a
 * write buffer of two frames. A frame is handled only when the write buffer
 * has room for a full reply, so a peer that stops reading stalls its own
 * connection (its read watcher stops) instead of growing memory.
 *
 * The fast path does little per frame: one recv per readable event, every
 * whole frame in it handled, one send for all their ACKs, two clock reads
 * per batch for the latency histogram, no allocation. The idle timer is not
 * touched per read: it compares last_io when it fires (libev's "be smart
 * about timeouts").
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <ev.h>

#include "lib/log.h"
#include "spoa/spoa_int.h"

#define SPOA_LINGER           2.0
#define SPOA_CAPABILITIES     "pipelining"

/* The frames handled in one pass over the read buffer. */
struct spoa_batch {
	double t_read;               /* monotonic µs, read at the first NOTIFY */
	unsigned acks;               /* ACKs written now (not deferred) */
};

void spoa_conn_close(struct spoa_conn *c)
{
	struct spoa_server *srv = c->srv;

	log_debug("spoa: conn=%llu peer=%s closed", (unsigned long long)c->id, c->peer);
	ev_io_stop(srv->loop, &c->rio);
	ev_io_stop(srv->loop, &c->wio);
	ev_timer_stop(srv->loop, &c->timer);
	spoa_conn_drop_deferred(c);
	if (c->kicked)
		TAILQ_REMOVE(&srv->kicked, c, kick_link);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	srv->stats.conns_current--;
	free(c->rbuf);
	free(c->wbuf);
	free(c);
	if (srv->full && srv->nconns < srv->conf.max_conns) {
		srv->full = 0;
		if (!ev_is_active(&srv->retry))
			ev_io_start(srv->loop, &srv->lio);
	}
}

void spoa_conn_update(struct spoa_conn *c)
{
	struct ev_loop *loop = c->srv->loop;
	int want_read, want_write = c->wlen > c->woff;

	if (c->state == SPOA_CONN_READY && !TAILQ_EMPTY(&c->ready))
		want_write = 1;
	if (c->state == SPOA_CONN_LINGER)
		want_read = 1;
	else
		want_read = c->state != SPOA_CONN_CLOSING && c->rlen < c->rcap;
	if (want_read && !ev_is_active(&c->rio))
		ev_io_start(loop, &c->rio);
	else if (!want_read && ev_is_active(&c->rio))
		ev_io_stop(loop, &c->rio);
	if (want_write && !ev_is_active(&c->wio))
		ev_io_start(loop, &c->wio);
	else if (!want_write && ev_is_active(&c->wio))
		ev_io_stop(loop, &c->wio);
}

/* Queues AGENT-DISCONNECT <status> and stops handling input: no ACK goes out
 * after it, so the deferred ones are dropped. */
static void conn_disconnect(struct spoa_conn *c, enum spop_status status, const char *why)
{
	int n;

	if (status == SPOP_ST_TIMEOUT) {
		c->srv->stats.idle_timeouts++;
		log_debug("spoa: conn=%llu peer=%s idle timeout", (unsigned long long)c->id, c->peer);
	} else if (status != SPOP_ST_NORMAL) {
		c->srv->stats.malformed++;
		log_warn("spoa: conn=%llu peer=%s status=%d (%s): %s", (unsigned long long)c->id,
			 c->peer, status, spop_status_str(status), why);
	}
	spoa_conn_drop_deferred(c);
	n = spop_encode_disconnect(c->wbuf + c->wlen, c->wcap - c->wlen, SPOP_FRM_AGENT_DISCONNECT,
				   status, why);
	if (n > 0)
		c->wlen += (size_t)n;
	c->state = SPOA_CONN_CLOSING;
	c->rlen = 0;
}

static void conn_hello(struct spoa_conn *c, const struct spop_frame *f)
{
	struct spoa_server *srv = c->srv;
	struct spop_hello h;
	enum spop_status st;
	int n;

	if (f->stream_id || f->frame_id) {
		conn_disconnect(c, SPOP_ST_INVALID, "HELLO with non-zero stream-id or frame-id");
		return;
	}
	st = spop_hello_decode(f->payload, f->payload_len, &h);
	if (st != SPOP_ST_NORMAL) {
		conn_disconnect(c, st, spop_status_str(st));
		return;
	}
	if (h.max_frame_size < c->max_frame)
		c->max_frame = (uint32_t)h.max_frame_size;
	if (h.engine_id && h.engine_id_len)
		spoa_srv_engine_seen(srv, h.engine_id, h.engine_id_len);
	n = spop_encode_agent_hello(c->wbuf + c->wlen, c->wcap - c->wlen, c->max_frame,
				    SPOA_CAPABILITIES);
	if (n > 0)
		c->wlen += (size_t)n;
	srv->stats.hellos++;
	if (h.healthcheck) {
		srv->stats.healthchecks++;
		c->state = SPOA_CONN_CLOSING;
		c->rlen = 0;
		return;
	}
	log_debug("spoa: conn=%llu peer=%s hello max-frame-size=%u", (unsigned long long)c->id,
		  c->peer, c->max_frame);
	c->state = SPOA_CONN_READY;
}

/* Calls the handler of message <m> (its args in srv->args), if there is one. */
static void conn_call(struct spoa_conn *c, const struct spop_message *m, size_t nargs,
		      struct spoa_reply *r)
{
	struct spoa_server *srv = c->srv;
	const struct spoa_handler *h = srv->conf.handlers;
	size_t i;

	for (i = 0; h && h[i].message; i++) {
		if (srv->handler_len[i] == m->name_len &&
		    memcmp(h[i].message, m->name, m->name_len) == 0) {
			if (h[i].fn) {
				srv->stats.messages++;
				h[i].fn(srv->conf.ctx, srv->args, nargs, r);
			}
			return;
		}
	}
}

static void conn_notify(struct spoa_conn *c, const struct spop_frame *f, struct spoa_batch *b)
{
	struct spoa_server *srv = c->srv;
	const char *p = f->payload, *end = f->payload + f->payload_len;
	struct spop_message m;
	struct spoa_reply r;
	char *w = c->wbuf + c->wlen;
	size_t nargs, len;
	int first, ret, several = 0;

	srv->stats.notify_frames++;
	/* check the whole frame before any handler runs; a single message (the
	 * usual case) is parsed once and its args kept for its handler */
	ret = first = spop_notify_next(&p, end, &m, srv->args, SPOA_MAX_ARGS, &nargs);
	if (ret == 1 && p != end) {
		several = 1;
		while ((ret = spop_notify_next(&p, end, &m, srv->args, SPOA_MAX_ARGS, &nargs)) == 1)
			;
	}
	if (ret == -1) {
		conn_disconnect(c, SPOP_ST_INVALID, "malformed NOTIFY message list");
		return;
	}
	if (spoa_reply_begin(&r, c, w, c->wbuf + c->wcap, f->stream_id, f->frame_id) == -1) {
		conn_disconnect(c, SPOP_ST_RES_ALLOC, "no room for ACK");
		return;
	}
	if (b->t_read == 0)
		b->t_read = spoa_now_us();
	if (several) {
		p = f->payload;
		while (spop_notify_next(&p, end, &m, srv->args, SPOA_MAX_ARGS, &nargs) == 1)
			conn_call(c, &m, nargs, &r);
	} else if (first == 1) {
		conn_call(c, &m, nargs, &r);
	}
	if (spoa_reply_end_frame(&r, w, &len, b->t_read))
		return; /* deferred: its ACK goes out later */
	c->wlen += len;
	srv->stats.acks++;
	b->acks++;
}

static void conn_frame(struct spoa_conn *c, const char *frame, size_t len, struct spoa_batch *b)
{
	struct spop_frame f;
	struct spop_disconnect d;
	char why[64];

	if (spop_frame_parse(frame, len, &f) == -1) {
		conn_disconnect(c, SPOP_ST_INVALID, "truncated frame header");
		return;
	}
	if (f.type == SPOP_FRM_NOTIFY && c->state == SPOA_CONN_READY &&
	    (f.flags & SPOP_FRAME_FL_FIN)) {
		conn_notify(c, &f, b);
		return;
	}
	switch (f.type) {
	case SPOP_FRM_HAPROXY_HELLO:
	case SPOP_FRM_HAPROXY_DISCONNECT:
	case SPOP_FRM_NOTIFY:
		break;
	case SPOP_FRM_UNSET:
		conn_disconnect(c, SPOP_ST_FRAG_NOT_SUPPORTED, "fragmented frame");
		return;
	default:
		snprintf(why, sizeof(why), "unknown frame type %u", f.type);
		conn_disconnect(c, SPOP_ST_INVALID, why);
		return;
	}
	/* an ABORT on an unfragmented frame may be ignored (SPOE.txt 3.2) */
	if (!(f.flags & SPOP_FRAME_FL_FIN)) {
		conn_disconnect(c, SPOP_ST_FRAG_NOT_SUPPORTED, "fragmented frame");
		return;
	}
	if (f.type == SPOP_FRM_HAPROXY_DISCONNECT) {
		c->srv->stats.disconnects++;
		if (spop_disconnect_decode(f.payload, f.payload_len, &d) == -1) {
			conn_disconnect(c, SPOP_ST_INVALID, "malformed DISCONNECT");
			return;
		}
		log_debug("spoa: conn=%llu peer=%s haproxy disconnect status=%llu message=%.*s",
			  (unsigned long long)c->id, c->peer, (unsigned long long)d.status_code,
			  (int)(d.message_len > 200 ? 200 : d.message_len),
			  d.message ? d.message : "");
		conn_disconnect(c, SPOP_ST_NORMAL, "normal");
		return;
	}
	if (c->state == SPOA_CONN_HELLO) {
		if (f.type == SPOP_FRM_HAPROXY_HELLO)
			conn_hello(c, &f);
		else
			conn_disconnect(c, SPOP_ST_INVALID, "NOTIFY before HELLO");
		return;
	}
	conn_disconnect(c, SPOP_ST_INVALID, "second HELLO");
}

/* Writes the ready deferred ACKs, then handles every complete frame in the
 * read buffer while a reply fits. Returns 1 when it stopped for lack of room
 * in the write buffer, else 0. */
static int conn_process(struct spoa_conn *c)
{
	struct spoa_batch b = { 0 };
	size_t off = 0, flen, need = 4 + (size_t)c->max_frame;
	int r, blocked = 0;

	while (c->state == SPOA_CONN_HELLO || c->state == SPOA_CONN_READY) {
		if (c->wcap - c->wlen < need && c->woff) {
			memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
			c->wlen -= c->woff;
			c->woff = 0;
		}
		if (!TAILQ_EMPTY(&c->ready))
			spoa_conn_write_ready(c);
		if (c->wcap - c->wlen < need) {
			blocked = 1;
			break;
		}
		r = spop_frame_peek(c->rbuf + off, c->rlen - off, c->max_frame, &flen);
		if (r == 0)
			break;
		if (r == -1) {
			conn_disconnect(c, SPOP_ST_TOO_BIG, "frame is too big");
			goto out;
		}
		conn_frame(c, c->rbuf + off + 4, flen, &b);
		if (c->state >= SPOA_CONN_CLOSING)
			goto out; /* conn_disconnect() dropped the input */
		off += 4 + flen;
	}
	if (off) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
out:
	if (b.acks)
		spoa_srv_latency(c->srv, spoa_now_us() - b.t_read, b.acks);
	return blocked;
}

/* Writes what it can. Returns 0, or -1 when the connection was closed. */
static int conn_flush(struct spoa_conn *c)
{
	ssize_t n;

	if (c->wlen == c->woff)
		return 0;
	while (c->wlen > c->woff) {
		n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			log_debug("spoa: conn=%llu peer=%s write: %s", (unsigned long long)c->id,
				  c->peer, strerror(errno));
			spoa_conn_close(c);
			return -1;
		}
		c->woff += (size_t)n;
		c->last_io = ev_now(c->srv->loop);
	}
	c->woff = c->wlen = 0;
	if (c->state == SPOA_CONN_CLOSING) {
		/* half-close and drain, so unread input does not turn our last
		 * frame into a reset */
		shutdown(c->fd, SHUT_WR);
		c->state = SPOA_CONN_LINGER;
		ev_timer_stop(c->srv->loop, &c->timer);
		ev_timer_set(&c->timer, SPOA_LINGER, 0.);
		ev_timer_start(c->srv->loop, &c->timer);
	}
	return 0;
}

void spoa_conn_run(struct spoa_conn *c)
{
	int blocked;

	for (;;) {
		blocked = conn_process(c);
		if (conn_flush(c) == -1)
			return;
		if (c->state != SPOA_CONN_HELLO && c->state != SPOA_CONN_READY)
			break;
		/* out of frames, or the socket is full: cb_conn_write() resumes */
		if (!blocked || c->wlen > c->woff)
			break;
	}
	spoa_conn_update(c);
}

void spoa_conn_kick(struct spoa_conn *c)
{
	struct spoa_server *srv = c->srv;

	if (c->kicked)
		return;
	c->kicked = 1;
	TAILQ_INSERT_TAIL(&srv->kicked, c, kick_link);
	ev_prepare_start(srv->loop, &srv->kick);
}

void spoa_cb_kick(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct spoa_server *srv = w->data;
	struct spoa_conn *c;

	/* a run may kick others (a handler completing their deferrals) */
	while ((c = TAILQ_FIRST(&srv->kicked))) {
		TAILQ_REMOVE(&srv->kicked, c, kick_link);
		c->kicked = 0;
		spoa_conn_run(c);
	}
	ev_prepare_stop(loop, w);
}

static void cb_conn_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct spoa_conn *c = w->data;
	char drain[4096];
	ssize_t n;

	if (c->state == SPOA_CONN_LINGER) {
		n = recv(c->fd, drain, sizeof(drain), 0);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			spoa_conn_close(c);
		return;
	}
	if (c->rlen >= c->rcap) {
		spoa_conn_update(c);
		return;
	}
	n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		log_debug("spoa: conn=%llu peer=%s read: %s", (unsigned long long)c->id, c->peer,
			  strerror(errno));
		spoa_conn_close(c);
		return;
	}
	if (n == 0) {
		/* the peer is gone: answer what it sent if we can, then close */
		conn_process(c);
		if (conn_flush(c) == 0)
			spoa_conn_close(c);
		return;
	}
	c->rlen += (size_t)n;
	c->last_io = ev_now(loop);
	spoa_conn_run(c);
}

static void cb_conn_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct spoa_conn *c = w->data;

	if (conn_flush(c) == -1)
		return;
	spoa_conn_run(c);
}

static void cb_conn_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct spoa_conn *c = w->data;
	double idle = c->srv->conf.idle_timeout, left;

	if (c->state == SPOA_CONN_LINGER || c->state == SPOA_CONN_CLOSING ||
	    c->wcap - c->wlen < 256) {
		spoa_conn_close(c);
		return;
	}
	/* not idle while an ACK it waits for is deferred */
	left = c->ndeferred ? idle : c->last_io + idle - ev_now(loop);
	if (left > 0.) {
		ev_timer_set(&c->timer, left, 0.);
		ev_timer_start(loop, &c->timer);
		return;
	}
	conn_disconnect(c, SPOP_ST_TIMEOUT, "idle timeout");
	ev_timer_set(&c->timer, SPOA_LINGER, 0.);
	ev_timer_start(loop, &c->timer);
	if (conn_flush(c) == -1)
		return;
	spoa_conn_update(c);
}

static void peer_name(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t outlen)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6)
		snprintf(out, outlen, "unix");
	else if (getnameinfo((const struct sockaddr *)ss, len, host, sizeof(host), serv, sizeof(serv),
			     NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(out, outlen, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
	else
		snprintf(out, outlen, "?");
}

void spoa_conn_accept(struct spoa_server *srv, int fd, const struct sockaddr_storage *ss,
		      socklen_t sslen)
{
	struct spoa_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (c) {
		c->rcap = 4 + (size_t)srv->conf.max_frame_size;
		c->wcap = 2 * c->rcap;
		c->rbuf = malloc(c->rcap);
		c->wbuf = malloc(c->wcap);
	}
	if (!c || !c->rbuf || !c->wbuf) {
		log_err("spoa: out of memory for a new connection");
		if (c) {
			free(c->rbuf);
			free(c->wbuf);
			free(c);
		}
		close(fd);
		return;
	}
	if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->srv = srv;
	c->fd = fd;
	c->id = ++srv->next_id;
	c->state = SPOA_CONN_HELLO;
	c->max_frame = srv->conf.max_frame_size;
	TAILQ_INIT(&c->waiting);
	TAILQ_INIT(&c->ready);
	peer_name(ss, sslen, c->peer, sizeof(c->peer));
	ev_io_init(&c->rio, cb_conn_read, fd, EV_READ);
	ev_io_init(&c->wio, cb_conn_write, fd, EV_WRITE);
	ev_timer_init(&c->timer, cb_conn_timer, srv->conf.idle_timeout, 0.);
	c->rio.data = c->wio.data = c->timer.data = c;
	c->last_io = ev_now(srv->loop);
	c->next = srv->conns;
	if (c->next)
		c->next->prev = c;
	srv->conns = c;
	srv->nconns++;
	srv->stats.conns_total++;
	srv->stats.conns_current++;
	ev_io_start(srv->loop, &c->rio);
	ev_timer_start(srv->loop, &c->timer);
	log_debug("spoa: conn=%llu peer=%s accepted", (unsigned long long)c->id, c->peer);
}
