/* SPDX-License-Identifier: Apache-2.0 */
/* spop_null: a do-nothing SPOP responder, the reference of the SPOA bench.
 *
 *   spop_null [HOST:PORT]      (default 127.0.0.1:0; prints "port=N" once listening)
 *
 * It does the least an agent can: a libev loop, one recv per readable event,
 * frame headers parsed (messages not looked at), one ACK per NOTIFY carrying
 * one set-var (sess.seen=true, as acme-sni's answer), one send per batch.
 * No validation beyond the frame header, no handlers, no counters: what
 * spoa/ costs above this is the price of being a real agent. Runs until
 * SIGINT or SIGTERM.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <ev.h>

#include "spoa/spop.h"

#define NULL_BUF (16384 + 4)   /* as the agent's default: one max-size frame */

struct null_conn {
	ev_io rio, wio;
	int fd;
	size_t rlen, woff, wlen;
	char rbuf[NULL_BUF];
	char wbuf[2 * NULL_BUF];
};

static void null_close(struct ev_loop *loop, struct null_conn *c)
{
	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
	close(c->fd);
	free(c);
}

/* Sends what is queued. Returns 0, or -1 when the connection is gone. */
static int null_flush(struct ev_loop *loop, struct null_conn *c)
{
	while (c->woff < c->wlen) {
		ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);

		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev_io_start(loop, &c->wio);
			return 0;
		}
		if (n == -1) {
			null_close(loop, c);
			return -1;
		}
		c->woff += (size_t)n;
	}
	c->woff = c->wlen = 0;
	ev_io_stop(loop, &c->wio);
	return 0;
}

static void cb_null_write(struct ev_loop *loop, ev_io *w, int revents)
{
	null_flush(loop, w->data);
}

/* Answers every whole frame in the read buffer. Returns -1 to close. */
static int null_answer(struct null_conn *c)
{
	static const struct spop_data seen = { .type = SPOP_T_BOOL, .u.b = 1 };
	size_t off = 0, flen;
	int r;

	while ((r = spop_frame_peek(c->rbuf + off, c->rlen - off, NULL_BUF - 4, &flen)) == 1) {
		struct spop_frame f;
		char *p = c->wbuf + c->wlen, *end = c->wbuf + sizeof(c->wbuf), *start;
		int n = 0;

		if (end - p < 512)
			break; /* the peer is not reading: wait for the write side */
		if (spop_frame_parse(c->rbuf + off + 4, flen, &f) == -1)
			return -1;
		if (f.type == SPOP_FRM_HAPROXY_HELLO)
			n = spop_encode_agent_hello(p, (size_t)(end - p), NULL_BUF - 4, "pipelining");
		else if (f.type == SPOP_FRM_NOTIFY &&
			 spop_frame_begin(&p, end, &start, SPOP_FRM_ACK, SPOP_FRAME_FL_FIN,
					  f.stream_id, f.frame_id) == 0 &&
			 spop_encode_set_var(&p, end, SPOP_SCOPE_SESS, "seen", 4, &seen) == 0)
			n = (int)spop_frame_end(start, p);
		else
			return -1; /* DISCONNECT or anything else: just close */
		if (n <= 0)
			return -1;
		c->wlen += (size_t)n;
		off += 4 + flen;
	}
	if (r == -1)
		return -1;
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
	return 0;
}

static void cb_null_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct null_conn *c = w->data;
	ssize_t n = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);

	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0 || (c->rlen += (size_t)n, null_answer(c) == -1)) {
		null_close(loop, c);
		return;
	}
	null_flush(loop, c);
}

static void cb_null_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct null_conn *c;
	int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;

	if (fd == -1)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	ev_io_init(&c->rio, cb_null_read, fd, EV_READ);
	ev_io_init(&c->wio, cb_null_write, fd, EV_WRITE);
	c->rio.data = c->wio.data = c;
	ev_io_start(loop, &c->rio);
}

static void cb_null_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
	const char *addr = argc > 1 ? argv[1] : "127.0.0.1:0";
	const char *colon = strrchr(addr, ':');
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	struct ev_loop *loop = EV_DEFAULT;
	ev_signal sint, sterm;
	ev_io lio;
	char host[64];
	int fd, one = 1;

	if (!colon || (size_t)(colon - addr) >= sizeof(host)) {
		fprintf(stderr, "usage: spop_null [IPV4:PORT]\n");
		return 2;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	sin.sin_port = htons((uint16_t)atoi(colon + 1));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 || inet_pton(AF_INET, host, &sin.sin_addr) != 1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 || listen(fd, SOMAXCONN) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) == -1) {
		fprintf(stderr, "spop_null: %s: %s\n", addr, strerror(errno));
		return 1;
	}
	printf("port=%u\n", ntohs(sin.sin_port));
	fflush(stdout);
	ev_io_init(&lio, cb_null_accept, fd, EV_READ);
	ev_io_start(loop, &lio);
	ev_signal_init(&sint, cb_null_signal, SIGINT);
	ev_signal_init(&sterm, cb_null_signal, SIGTERM);
	ev_signal_start(loop, &sint);
	ev_signal_start(loop, &sterm);
	ev_run(loop, 0);
	close(fd);
	return 0;
}
