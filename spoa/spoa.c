/* SPOA server on libev: see spoa.h.
 *
 * Each connection owns a read buffer that holds one whole frame at most and a
 * write buffer of two frames. A frame is handled only when the write buffer
 * has room for a full reply, so a peer that stops reading stalls its own
 * connection (its read watcher stops) instead of growing memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <ev.h>

#include "core/log.h"
#include "spoa/spoa.h"

#define SPOA_DEF_FRAME_SIZE   16384u
#define SPOA_MAX_FRAME_SIZE   (1024u * 1024u)  /* buffers are 3x this per connection */
#define SPOA_DEF_IDLE         120.0
#define SPOA_DEF_MAX_CONNS    1024u
#define SPOA_LINGER           2.0
#define SPOA_ENGINES_MAX      256
#define SPOA_ENGINE_ID_MAX    127
#define SPOA_ACCEPT_BURST     64
#define SPOA_CAPABILITIES     "pipelining"

const unsigned spoa_latency_bounds_us[SPOA_LAT_BUCKETS - 1] = { 50, 100, 250, 500, 1000, 5000 };

enum spoa_conn_state {
	SPOA_CONN_HELLO = 0,   /* waiting for HAPROXY-HELLO */
	SPOA_CONN_READY,       /* handshake done, NOTIFY expected */
	SPOA_CONN_CLOSING,     /* last frame queued: flush it, then shut down */
	SPOA_CONN_LINGER,      /* write side shut: drain input until EOF or timer */
	SPOA_CONN__MAX
};

struct spoa_reply {
	char *p;
	char *end;
	unsigned count;
};

struct spoa_conn {
	struct spoa_server *srv;
	struct spoa_conn *prev, *next;
	int fd;
	enum spoa_conn_state state;
	ev_io rio, wio;
	ev_timer timer;
	uint64_t id;
	uint32_t max_frame;
	char peer[64];
	char *rbuf;
	size_t rlen, rcap;
	char *wbuf;
	size_t woff, wlen, wcap;
};

struct spoa_server {
	struct ev_loop *loop;
	struct spoa_server_conf conf;
	int fd;
	int port;
	char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ev_io lio;
	ev_timer retry;
	int full;                    /* listener stopped at max_conns */
	struct spoa_conn *conns;
	unsigned nconns;
	uint64_t next_id;
	struct spoa_stats stats;
	char engines[SPOA_ENGINES_MAX][SPOA_ENGINE_ID_MAX + 1];
	unsigned nengines, engine_next;
	struct spop_arg args[256];   /* scratch for NOTIFY args (single-threaded) */
};

static void conn_process(struct spoa_conn *c);

/* ---- replies ---------------------------------------------------------- */

static int reply_add(struct spoa_reply *r, enum spop_scope scope, const char *name,
		     const struct spop_data *val)
{
	if (!r || !name || (unsigned)scope >= SPOP_SCOPE__MAX)
		return -1;
	if (val) {
		if (spop_encode_set_var(&r->p, r->end, scope, name, strlen(name), val) == -1)
			return -1;
	} else if (spop_encode_unset_var(&r->p, r->end, scope, name, strlen(name)) == -1) {
		return -1;
	}
	r->count++;
	return 0;
}

int spoa_reply_set_str(struct spoa_reply *r, enum spop_scope scope, const char *name,
		       const char *val, size_t len)
{
	struct spop_data d = { .type = SPOP_T_STR };

	if (!val && len)
		return -1;
	d.u.s.ptr = val;
	d.u.s.len = len;
	return reply_add(r, scope, name, &d);
}

int spoa_reply_set_int(struct spoa_reply *r, enum spop_scope scope, const char *name, int64_t v)
{
	struct spop_data d = { .type = SPOP_T_INT64 };

	d.u.i = v;
	return reply_add(r, scope, name, &d);
}

int spoa_reply_set_bool(struct spoa_reply *r, enum spop_scope scope, const char *name, int v)
{
	struct spop_data d = { .type = SPOP_T_BOOL };

	d.u.b = v ? 1 : 0;
	return reply_add(r, scope, name, &d);
}

int spoa_reply_unset(struct spoa_reply *r, enum spop_scope scope, const char *name)
{
	return reply_add(r, scope, name, NULL);
}

unsigned spoa_reply_count(const struct spoa_reply *r)
{
	return r ? r->count : 0;
}

/* ---- connections ------------------------------------------------------ */

static void conn_close(struct spoa_conn *c)
{
	struct spoa_server *srv = c->srv;

	log_debug("spoa: conn=%llu peer=%s closed", (unsigned long long)c->id, c->peer);
	ev_io_stop(srv->loop, &c->rio);
	ev_io_stop(srv->loop, &c->wio);
	ev_timer_stop(srv->loop, &c->timer);
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

/* Starts or stops the watchers to match the buffers and the state. */
static void conn_update(struct spoa_conn *c)
{
	struct ev_loop *loop = c->srv->loop;
	int want_read, want_write = c->wlen > c->woff;

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

/* Queues AGENT-DISCONNECT <status> and stops handling input. */
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
	n = spop_encode_disconnect(c->wbuf + c->wlen, c->wcap - c->wlen, SPOP_FRM_AGENT_DISCONNECT,
				   status, why);
	if (n > 0)
		c->wlen += (size_t)n;
	c->state = SPOA_CONN_CLOSING;
	c->rlen = 0;
}

static void srv_engine_seen(struct spoa_server *srv, const char *id, size_t len)
{
	char buf[SPOA_ENGINE_ID_MAX + 1];
	unsigned i;
	int is_new = 1;

	if (len > SPOA_ENGINE_ID_MAX)
		len = SPOA_ENGINE_ID_MAX;
	/* it reaches logs and callbacks: keep it printable */
	for (i = 0; i < len; i++)
		buf[i] = (id[i] > 0x20 && id[i] < 0x7f) ? id[i] : '_';
	buf[len] = '\0';
	for (i = 0; i < srv->nengines; i++) {
		if (strcmp(srv->engines[i], buf) == 0) {
			is_new = 0;
			break;
		}
	}
	if (is_new) {
		/* ring: the oldest id is forgotten, and would count as new again */
		memcpy(srv->engines[srv->engine_next], buf, strlen(buf) + 1);
		srv->engine_next = (srv->engine_next + 1) % SPOA_ENGINES_MAX;
		if (srv->nengines < SPOA_ENGINES_MAX)
			srv->nengines++;
		log_info("spoa: engine-id=%s new HAProxy engine", buf);
	}
	if (srv->conf.on_engine)
		srv->conf.on_engine(srv->conf.ctx, buf, is_new);
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
		srv_engine_seen(srv, h.engine_id, h.engine_id_len);
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

static const struct spoa_handler *srv_handler(const struct spoa_server *srv, const char *name,
					      size_t len)
{
	const struct spoa_handler *h;

	for (h = srv->conf.handlers; h && h->message; h++) {
		if (strlen(h->message) == len && memcmp(h->message, name, len) == 0)
			return h;
	}
	return NULL;
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void srv_latency(struct spoa_server *srv, double us)
{
	unsigned i;

	for (i = 0; i < SPOA_LAT_BUCKETS - 1; i++) {
		if (us <= spoa_latency_bounds_us[i])
			break;
	}
	srv->stats.lat_buckets[i]++;
	srv->stats.lat_count++;
	srv->stats.lat_sum_us += us;
}

static void conn_notify(struct spoa_conn *c, const struct spop_frame *f)
{
	struct spoa_server *srv = c->srv;
	const char *p, *end = f->payload + f->payload_len;
	struct spop_message m;
	struct spoa_reply r;
	char *start, *w = c->wbuf + c->wlen;
	size_t nargs;
	int ret;

	srv->stats.notify_frames++;
	/* check the whole frame first so no handler runs for a frame we reject */
	p = f->payload;
	while ((ret = spop_notify_next(&p, end, &m, srv->args, 256, &nargs)) == 1)
		;
	if (ret == -1) {
		conn_disconnect(c, SPOP_ST_INVALID, "malformed NOTIFY message list");
		return;
	}
	if (spop_frame_begin(&w, c->wbuf + c->wcap, &start, SPOP_FRM_ACK, SPOP_FRAME_FL_FIN,
			     f->stream_id, f->frame_id) == -1) {
		conn_disconnect(c, SPOP_ST_RES_ALLOC, "no room for ACK");
		return;
	}
	r.p = w;
	r.end = start + 4 + c->max_frame;
	r.count = 0;
	p = f->payload;
	while (spop_notify_next(&p, end, &m, srv->args, 256, &nargs) == 1) {
		const struct spoa_handler *h = srv_handler(srv, m.name, m.name_len);
		double t0;

		if (!h || !h->fn)
			continue;
		srv->stats.messages++;
		t0 = now_us();
		h->fn(srv->conf.ctx, srv->args, nargs, &r);
		srv_latency(srv, now_us() - t0);
	}
	/* HAProxy 3.1 stalls on an ACK without actions */
	if (r.count == 0)
		spoa_reply_set_bool(&r, SPOP_SCOPE_TXN, "ack", 1);
	c->wlen += spop_frame_end(start, r.p);
	srv->stats.acks++;
}

static void conn_frame(struct spoa_conn *c, const char *frame, size_t len)
{
	struct spop_frame f;
	struct spop_disconnect d;
	char why[64];

	if (spop_frame_parse(frame, len, &f) == -1) {
		conn_disconnect(c, SPOP_ST_INVALID, "truncated frame header");
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
	if (f.type == SPOP_FRM_HAPROXY_HELLO) {
		conn_disconnect(c, SPOP_ST_INVALID, "second HELLO");
		return;
	}
	conn_notify(c, &f);
}

/* Handles every complete frame in the read buffer while a reply fits. */
static void conn_process(struct spoa_conn *c)
{
	size_t off = 0, flen;
	int r;

	while (c->state == SPOA_CONN_HELLO || c->state == SPOA_CONN_READY) {
		if (c->wcap - c->wlen < 4 + (size_t)c->max_frame && c->woff) {
			memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
			c->wlen -= c->woff;
			c->woff = 0;
		}
		if (c->wcap - c->wlen < 4 + (size_t)c->max_frame)
			break;
		r = spop_frame_peek(c->rbuf + off, c->rlen - off, c->max_frame, &flen);
		if (r == 0)
			break;
		if (r == -1) {
			conn_disconnect(c, SPOP_ST_TOO_BIG, "frame is too big");
			return;
		}
		conn_frame(c, c->rbuf + off + 4, flen);
		if (c->state >= SPOA_CONN_CLOSING)
			return; /* conn_disconnect() dropped the input */
		off += 4 + flen;
	}
	if (off) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
}

/* Writes what it can. Returns 0, or -1 when the connection was closed. */
static int conn_flush(struct spoa_conn *c)
{
	ssize_t n;

	while (c->wlen > c->woff) {
		n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			log_debug("spoa: conn=%llu peer=%s write: %s", (unsigned long long)c->id,
				  c->peer, strerror(errno));
			conn_close(c);
			return -1;
		}
		c->woff += (size_t)n;
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

/* After input or output progress: handle frames and send until blocked on
 * the socket or out of complete frames, then rearm the watchers. */
static void conn_run(struct spoa_conn *c)
{
	size_t before;
	int had_output;

	for (;;) {
		before = c->rlen;
		conn_process(c);
		had_output = c->wlen > c->woff;
		if (conn_flush(c) == -1)
			return;
		if (c->state != SPOA_CONN_HELLO && c->state != SPOA_CONN_READY)
			break;
		/* still writing: cb_conn_write() comes back here */
		if (c->wlen > c->woff)
			break;
		/* nothing consumed and nothing freed: wait for more input */
		if (c->rlen == before && !had_output)
			break;
	}
	conn_update(c);
}

static void cb_conn_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct spoa_conn *c = w->data;
	char drain[4096];
	ssize_t n;

	if (c->state == SPOA_CONN_LINGER) {
		n = recv(c->fd, drain, sizeof(drain), 0);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			conn_close(c);
		return;
	}
	if (c->rlen >= c->rcap) {
		conn_update(c);
		return;
	}
	n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		log_debug("spoa: conn=%llu peer=%s read: %s", (unsigned long long)c->id, c->peer,
			  strerror(errno));
		conn_close(c);
		return;
	}
	if (n == 0) {
		/* the peer is gone: answer what it sent if we can, then close */
		conn_process(c);
		if (conn_flush(c) == 0)
			conn_close(c);
		return;
	}
	c->rlen += (size_t)n;
	ev_timer_again(loop, &c->timer);
	conn_run(c);
}

static void cb_conn_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct spoa_conn *c = w->data;

	if (conn_flush(c) == -1)
		return;
	if (c->state != SPOA_CONN_LINGER)
		ev_timer_again(loop, &c->timer);
	conn_run(c);
}

static void cb_conn_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct spoa_conn *c = w->data;

	if (c->state == SPOA_CONN_LINGER || c->state == SPOA_CONN_CLOSING ||
	    c->wcap - c->wlen < 256) {
		conn_close(c);
		return;
	}
	conn_disconnect(c, SPOP_ST_TIMEOUT, "idle timeout");
	ev_timer_stop(loop, &c->timer);
	ev_timer_set(&c->timer, SPOA_LINGER, 0.);
	ev_timer_start(loop, &c->timer);
	if (conn_flush(c) == -1)
		return;
	conn_update(c);
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

static void srv_accept_one(struct spoa_server *srv, int fd, const struct sockaddr_storage *ss,
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
	peer_name(ss, sslen, c->peer, sizeof(c->peer));
	ev_io_init(&c->rio, cb_conn_read, fd, EV_READ);
	ev_io_init(&c->wio, cb_conn_write, fd, EV_WRITE);
	ev_init(&c->timer, cb_conn_timer);
	c->timer.repeat = srv->conf.idle_timeout;
	c->rio.data = c->wio.data = c->timer.data = c;
	c->next = srv->conns;
	if (c->next)
		c->next->prev = c;
	srv->conns = c;
	srv->nconns++;
	srv->stats.conns_total++;
	srv->stats.conns_current++;
	ev_io_start(srv->loop, &c->rio);
	ev_timer_again(srv->loop, &c->timer);
	log_debug("spoa: conn=%llu peer=%s accepted", (unsigned long long)c->id, c->peer);
}

static void cb_srv_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct spoa_server *srv = w->data;

	if (!srv->full)
		ev_io_start(loop, &srv->lio);
}

static void cb_srv_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct spoa_server *srv = w->data;
	struct sockaddr_storage ss;
	socklen_t sslen;
	int i, fd;

	for (i = 0; i < SPOA_ACCEPT_BURST; i++) {
		if (srv->nconns >= srv->conf.max_conns) {
			log_warn("spoa: max_conns=%u reached, pausing accept", srv->conf.max_conns);
			srv->full = 1;
			ev_io_stop(loop, &srv->lio);
			return;
		}
		sslen = sizeof(ss);
		fd = accept4(srv->fd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			/* out of descriptors or memory: back off instead of spinning */
			log_warn("spoa: accept: %s", strerror(errno));
			ev_io_stop(loop, &srv->lio);
			ev_timer_set(&srv->retry, 0.2, 0.);
			ev_timer_start(loop, &srv->retry);
			return;
		}
		srv_accept_one(srv, fd, &ss, sslen);
	}
}

/* Binds and listens on <addr>; fills srv->fd, port, unix_path. */
static int srv_listen(struct spoa_server *srv, const char *addr, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	char host[256];
	const char *port, *colon;
	int fd = -1, one = 1, ret = -1, gai;

	if (strncmp(addr, "unix:", 5) == 0) {
		struct sockaddr_un sun;
		struct stat st;
		const char *path = addr + 5;

		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		if (!*path || strlen(path) >= sizeof(sun.sun_path)) {
			snprintf(err, errlen, "spoa.listen: %s: bad unix socket path", addr);
			goto out;
		}
		memcpy(sun.sun_path, path, strlen(path) + 1);
		/* a stale socket from a previous run; never remove anything else */
		if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
		    listen(fd, SOMAXCONN) == -1) {
			snprintf(err, errlen, "spoa.listen: %s: %s", addr, strerror(errno));
			goto out;
		}
		memcpy(srv->unix_path, path, strlen(path) + 1);
		srv->fd = fd;
		fd = -1;
		ret = 0;
		goto out;
	}
	if (addr[0] == '[') {
		const char *rb = strchr(addr, ']');

		if (!rb || rb[1] != ':' || (size_t)(rb - addr - 1) >= sizeof(host)) {
			snprintf(err, errlen, "spoa.listen: %s: expected [ipv6]:port", addr);
			goto out;
		}
		memcpy(host, addr + 1, rb - addr - 1);
		host[rb - addr - 1] = '\0';
		port = rb + 2;
	} else {
		colon = strrchr(addr, ':');
		if (!colon || (size_t)(colon - addr) >= sizeof(host) || strchr(addr, ':') != colon) {
			snprintf(err, errlen, "spoa.listen: %s: expected host:port, [ipv6]:port or unix:/path",
				 addr);
			goto out;
		}
		memcpy(host, addr, colon - addr);
		host[colon - addr] = '\0';
		port = colon + 1;
	}
	if (!*port || strspn(port, "0123456789") != strlen(port) || atol(port) > 65535) {
		snprintf(err, errlen, "spoa.listen: %s: bad port", addr);
		goto out;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	gai = getaddrinfo((*host && strcmp(host, "*") != 0) ? host : NULL, port, &hints, &res);
	if (gai != 0) {
		snprintf(err, errlen, "spoa.listen: %s: %s", addr, gai_strerror(gai));
		goto out;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
			break;
		snprintf(err, errlen, "spoa.listen: %s: %s", addr, strerror(errno));
		close(fd);
		fd = -1;
	}
	if (fd == -1) {
		if (!res || !*err)
			snprintf(err, errlen, "spoa.listen: %s: no usable address", addr);
		goto out;
	}
	{
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char serv[NI_MAXSERV];

		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
		    getnameinfo((struct sockaddr *)&ss, sl, NULL, 0, serv, sizeof(serv), NI_NUMERICSERV) == 0)
			srv->port = atoi(serv);
	}
	srv->fd = fd;
	fd = -1;
	err[0] = '\0';
	ret = 0;
out:
	if (res)
		freeaddrinfo(res);
	if (fd != -1)
		close(fd);
	return ret;
}

struct spoa_server *spoa_server_new(struct ev_loop *loop, const struct spoa_server_conf *conf,
				    char *err, size_t errlen)
{
	struct spoa_server *srv = NULL, *ret = NULL;

	if (errlen)
		err[0] = '\0';
	if (!loop || !conf || !conf->listen) {
		snprintf(err, errlen, "spoa: missing loop, configuration or listen address");
		goto out;
	}
	if (conf->max_frame_size && conf->max_frame_size < SPOP_MIN_FRAME_SIZE) {
		snprintf(err, errlen, "spoa: max_frame_size: %u is below %u", conf->max_frame_size,
			 SPOP_MIN_FRAME_SIZE);
		goto out;
	}
	if (conf->max_frame_size > SPOA_MAX_FRAME_SIZE) {
		snprintf(err, errlen, "spoa: max_frame_size: %u is above %u", conf->max_frame_size,
			 SPOA_MAX_FRAME_SIZE);
		goto out;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		snprintf(err, errlen, "spoa: out of memory");
		goto out;
	}
	srv->loop = loop;
	srv->conf = *conf;
	srv->fd = -1;
	if (!srv->conf.max_frame_size)
		srv->conf.max_frame_size = SPOA_DEF_FRAME_SIZE;
	if (srv->conf.idle_timeout <= 0)
		srv->conf.idle_timeout = SPOA_DEF_IDLE;
	if (!srv->conf.max_conns)
		srv->conf.max_conns = SPOA_DEF_MAX_CONNS;
	if (srv_listen(srv, conf->listen, err, errlen) == -1)
		goto out;
	ev_io_init(&srv->lio, cb_srv_accept, srv->fd, EV_READ);
	srv->lio.data = srv;
	ev_init(&srv->retry, cb_srv_retry);
	srv->retry.data = srv;
	ev_io_start(loop, &srv->lio);
	log_info("spoa: listening on %s", conf->listen);
	ret = srv;
	srv = NULL;
out:
	spoa_server_free(srv);
	return ret;
}

void spoa_server_free(struct spoa_server *srv)
{
	if (!srv)
		return;
	while (srv->conns)
		conn_close(srv->conns);
	if (srv->fd != -1) {
		ev_io_stop(srv->loop, &srv->lio);
		ev_timer_stop(srv->loop, &srv->retry);
		close(srv->fd);
		if (srv->unix_path[0])
			unlink(srv->unix_path);
	}
	free(srv);
}

void spoa_server_stats(const struct spoa_server *srv, struct spoa_stats *out)
{
	if (!srv || !out)
		return;
	*out = srv->stats;
}

int spoa_server_port(const struct spoa_server *srv)
{
	return srv ? srv->port : 0;
}
