/* SPDX-License-Identifier: Apache-2.0 */
/* SPOA server internals, shared by spoa.c (listener, server), spoa_conn.c
 * (connections, frames) and spoa_reply.c (ACK builder, deferred ACKs). Not
 * for use outside spoa/. */
#ifndef ACME_SPOA_SPOA_INT_H
#define ACME_SPOA_SPOA_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <ev.h>

#include "spoa/spoa.h"

#define SPOA_ENGINES_MAX      256
#define SPOA_ENGINE_ID_MAX    127
#define SPOA_MAX_ARGS         256
#define SPOA_DEF_INLINE       232   /* a deferred ACK's first buffer, inside its handle */

enum spoa_conn_state {
	SPOA_CONN_HELLO = 0,   /* waiting for HAPROXY-HELLO */
	SPOA_CONN_READY,       /* handshake done, NOTIFY expected */
	SPOA_CONN_CLOSING,     /* last frame queued: flush it, then shut down */
	SPOA_CONN_LINGER,      /* write side shut: drain input until EOF or timer */
	SPOA_CONN__MAX
};

/* An ACK being built: in the connection's write buffer while its frame is
 * handled, in its spoa_deferred's buffer once deferred (<def> set). */
struct spoa_reply {
	char *start;                 /* the frame, length prefix included */
	char *p;                     /* where the next action goes */
	char *end;
	unsigned count;
	struct spoa_conn *conn;      /* set only while its frame is being handled */
	struct spoa_deferred *def;
};

enum spoa_def_state {
	SPOA_DEF_WAITING = 0,        /* deferrals outstanding: on conn->waiting */
	SPOA_DEF_READY,              /* ACK complete, on conn->ready until written */
	SPOA_DEF_DETACHED,           /* written or dropped: only the handles hold it */
	SPOA_DEF__MAX
};

/* One deferred ACK (one NOTIFY frame). Freed when no handle holds it (refs)
 * and no connection holds it (conn == NULL). */
struct spoa_deferred {
	struct spoa_conn *conn;
	TAILQ_ENTRY(spoa_deferred) link;
	ev_timer timer;              /* defer_timeout, or <timeout> */
	double timeout;              /* spoa_deferred_set_timeout(); 0: defer_timeout */
	enum spoa_def_state state;
	unsigned refs;               /* undone deferrals, +1 while its frame is handled */
	struct spoa_reply reply;     /* the builder once its frame is handled */
	struct spoa_reply *rp;       /* the builder now: the handler's, then &reply */
	size_t len;                  /* whole frame once READY */
	size_t cap, limit;           /* buffer size now, at most (4 + max-frame-size) */
	double t_read;               /* monotonic µs of the read that brought the NOTIFY */
	char *heap;                  /* buffer once it outgrew ibuf */
	char ibuf[SPOA_DEF_INLINE];
};

TAILQ_HEAD(spoa_def_list, spoa_deferred);

struct spoa_conn {
	struct spoa_server *srv;
	struct spoa_conn *prev, *next;
	TAILQ_ENTRY(spoa_conn) kick_link;  /* on srv->kicked when kicked */
	int kicked;
	int fd;
	enum spoa_conn_state state;
	ev_io rio, wio;
	ev_timer timer;              /* idle (checked against last_io), then linger */
	ev_tstamp last_io;
	uint64_t id;
	uint32_t max_frame;
	unsigned ndeferred;          /* on waiting + ready */
	struct spoa_def_list waiting, ready;
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
	TAILQ_HEAD(, spoa_conn) kicked;   /* deferred ACKs ready to go out */
	ev_prepare kick;             /* runs them before the loop next waits */
	uint64_t next_id;
	struct spoa_stats stats;
	size_t *handler_len;         /* strlen of each conf.handlers[i].message */
	char engines[SPOA_ENGINES_MAX][SPOA_ENGINE_ID_MAX + 1];
	unsigned nengines, engine_next;
	struct spop_arg args[SPOA_MAX_ARGS];  /* scratch for NOTIFY args (single-threaded) */
};

/* spoa.c */
/* Records that the HELLO of a connection named engine <id> (<len> bytes). */
void spoa_srv_engine_seen(struct spoa_server *srv, const char *id, size_t len);
/* Counts <n> ACKs that each took <us> microseconds. */
void spoa_srv_latency(struct spoa_server *srv, double us, unsigned n);
/* Monotonic clock in microseconds. */
double spoa_now_us(void);

/* spoa_conn.c */
/* Takes over accepted socket <fd> from <ss>. */
void spoa_conn_accept(struct spoa_server *srv, int fd, const struct sockaddr_storage *ss,
		      socklen_t sslen);
/* Closes <c> (its deferred ACKs are dropped, their handles detached) and frees it. */
void spoa_conn_close(struct spoa_conn *c);
/* Starts or stops <c>'s watchers to match its buffers, queue and state. */
void spoa_conn_update(struct spoa_conn *c);
/* Handles input, queued ACKs and output until blocked, then rearms the watchers.
 * May close and free <c>: call only from a watcher callback of the loop. */
void spoa_conn_run(struct spoa_conn *c);
/* Has spoa_conn_run(<c>) called before the loop next waits for events (its
 * ready list grew). Safe anywhere on the loop's thread: does no I/O. */
void spoa_conn_kick(struct spoa_conn *c);
/* The server's ev_prepare callback: runs the kicked connections. */
void spoa_cb_kick(struct ev_loop *loop, ev_prepare *w, int revents);

/* spoa_reply.c */
/* Sets <r> to build an ACK for <stream_id>/<frame_id> at <*w> (<end> the
 * limit), for connection <c>. Returns 0, or -1 when there is no room. */
int spoa_reply_begin(struct spoa_reply *r, struct spoa_conn *c, char *w, char *end,
		     uint64_t stream_id, uint64_t frame_id);
/* Ends <r>'s frame (adding the default action to an empty ACK); returns its size. */
size_t spoa_reply_finish(struct spoa_reply *r);
/* After the handlers of a frame ran with <r>: returns the frame's deferred ACK
 * when it still waits (its timer started), else NULL: the ACK is complete in
 * the write buffer (<r> not deferred) or copied there at <w> (<*len> its size). */
struct spoa_deferred *spoa_reply_end_frame(struct spoa_reply *r, char *w, size_t *len,
					   double t_read);
/* Moves the ready deferred ACKs of <c> into its write buffer while they fit. */
void spoa_conn_write_ready(struct spoa_conn *c);
/* Drops every deferred ACK of <c>: handles stay valid, detached. */
void spoa_conn_drop_deferred(struct spoa_conn *c);

#endif
