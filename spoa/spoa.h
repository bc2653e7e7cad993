/* SPDX-License-Identifier: Apache-2.0 */
/* SPOA server: accepts HAProxy's SPOE connections on a libev loop, does the
 * HELLO handshake, answers every NOTIFY with one ACK built by the registered
 * message handlers, and DISCONNECTs on anything malformed.
 *
 * A handler answers at once, or defers the ACK of its frame
 * (spoa_reply_defer()) and completes it later from the loop: with the
 * "pipelining" capability ACKs go back in any order on the connection of
 * their NOTIFY (SPOE.txt 3.2.1), so the frames after it are not held up. */
#ifndef ACME_SPOA_SPOA_H
#define ACME_SPOA_SPOA_H

#include <stddef.h>
#include <stdint.h>

#include "spoa/spop.h"

struct ev_loop;
struct spoa_server;

/* The actions of one ACK being built: valid during a handler call, or, for a
 * deferred ACK, as long as spoa_deferred_reply() returns it. */
struct spoa_reply;

/* A deferred ACK, held by the handler that deferred it. */
struct spoa_deferred;

/* Add a set-var action (string, int64, bool) or an unset-var action to the
 * ACK. <name> is the variable name without scope or prefix (NUL-terminated);
 * <val> (<len> bytes) is copied. Return 0, or -1 when the ACK would exceed the
 * negotiated max-frame-size or an argument is bad (the action is then not
 * added). */
int spoa_reply_set_str(struct spoa_reply *r, enum spop_scope scope, const char *name,
		       const char *val, size_t len);
int spoa_reply_set_int(struct spoa_reply *r, enum spop_scope scope, const char *name, int64_t v);
int spoa_reply_set_bool(struct spoa_reply *r, enum spop_scope scope, const char *name, int v);
int spoa_reply_unset(struct spoa_reply *r, enum spop_scope scope, const char *name);

/* Number of actions added to <r> so far. */
unsigned spoa_reply_count(const struct spoa_reply *r);

/* Called from a handler: the ACK of the NOTIFY frame being handled is not sent
 * when the handlers return but once every deferral taken on that frame is
 * done, or when the server's defer_timeout passes. Actions already added to
 * <r> are kept, and <r> may still be used until the handler returns. Returns
 * a handle, or NULL when <r> is not a reply being built by a handler, or a
 * bound (max_deferred_per_conn, max_deferred) is reached: the handler then
 * answers now with what it has. Each handle returned must be given to
 * spoa_deferred_done() exactly once; the messages of one frame share one
 * deferred ACK, so two calls for the same frame may return the same handle
 * (one done() per call all the same). */
struct spoa_deferred *spoa_reply_defer(struct spoa_reply *r);

/* The builder of <d>'s ACK, to add actions with spoa_reply_set_*() and the
 * like. Returns NULL once the ACK can no longer change: its connection closed
 * or the server was freed, or defer_timeout sent it with what it had. The
 * builder is valid until spoa_deferred_done(<d>) (when got from inside the
 * handler that deferred, only until that handler returns): call again rather
 * than keep it. */
struct spoa_reply *spoa_deferred_reply(struct spoa_deferred *d);

/* Sets how long <d>'s ACK may wait, from its frame's handling (or from now,
 * once the frame was handled), instead of the server's defer_timeout: two
 * paths of one agent may need different waits (an http-01 look-up a few
 * hundred milliseconds, a held ClientHello seconds). With several deferrals
 * on one frame the longest asked wins. Ignored once the ACK is sent, on
 * NULL, or for <seconds> <= 0. */
void spoa_deferred_set_timeout(struct spoa_deferred *d, double seconds);

/* Completes one deferral of <d>: when it was the last of its frame, the ACK
 * is queued (never with no action) and written, with every other ACK
 * completed meanwhile, before the loop next waits for events. Always call it,
 * on the loop's thread, exactly once per spoa_reply_defer() success, even
 * after the connection closed or the server was freed (then it only frees).
 * It may be called from inside a handler: it never calls a handler and never
 * reads or writes a socket. Accepts NULL. */
void spoa_deferred_done(struct spoa_deferred *d);

struct spoa_handler {
	const char *message;   /* SPOE message name, e.g. "acme-http01"; table ends with message == NULL */
	/* Called on the loop for each message of that name; <args> are views
	 * into the frame, valid only during the call. Must not block: an answer
	 * that needs waiting defers the ACK (spoa_reply_defer()). Must not free
	 * the server. */
	void (*fn)(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *reply);
};

struct spoa_server_conf {
	const char *listen;                    /* "127.0.0.1:12345", "[::1]:12345", "unix:/path"; port 0 picks one */
	/* a unix socket's permissions (HAProxy connects as another user): mode
	 * bits (0: as the umask leaves them) and group name or number (NULL:
	 * the process's); a failure to set them fails the start */
	int socket_mode;
	const char *socket_group;
	const struct spoa_handler *handlers;
	void *ctx;                             /* passed to handlers and on_engine */
	void (*on_engine)(void *ctx, const char *engine_id, int is_new); /* HELLO engine-id; is_new the first time this id is seen (last 256 ids remembered); must not free the server */
	uint32_t max_frame_size;               /* 0 => 16384; 256..1048576 */
	double idle_timeout;                   /* seconds, 0 => 120 */
	unsigned max_conns;                    /* 0 => 1024 */
	/* Deferred ACKs. Each one holds a few hundred bytes (up to the
	 * max-frame-size negotiated with its connection when its handler adds
	 * that much), so max_deferred bounds their memory. defer_timeout should
	 * stay well under HAProxy's "timeout processing". */
	unsigned max_deferred_per_conn;        /* 0 => 256 */
	unsigned max_deferred;                 /* per server, 0 => 10000 */
	double defer_timeout;                  /* seconds, 0 => 5 */
};

/* ACK latency histogram bucket upper bounds, in microseconds; the last
 * bucket is +Inf. */
#define SPOA_LAT_BUCKETS 7
extern const unsigned spoa_latency_bounds_us[SPOA_LAT_BUCKETS - 1];

struct spoa_stats {
	uint64_t conns_total;        /* accepted since start */
	uint64_t conns_current;
	uint64_t hellos;             /* successful HELLO handshakes, healthchecks included */
	uint64_t healthchecks;
	uint64_t notify_frames;
	uint64_t messages;           /* messages in NOTIFY frames that had a handler */
	uint64_t acks;
	uint64_t malformed;          /* frames answered with an error AGENT-DISCONNECT */
	uint64_t disconnects;        /* HAPROXY-DISCONNECT frames received */
	uint64_t idle_timeouts;      /* connections closed for idleness */
	uint64_t deferred_current;   /* ACKs deferred and not sent yet */
	uint64_t deferred_total;     /* frames whose ACK was deferred */
	uint64_t deferred_timeouts;  /* deferred ACKs sent by defer_timeout */
	uint64_t deferred_refused;   /* spoa_reply_defer() calls refused by a bound */
	/* ACK latency, from reading its NOTIFY (the read that brought it) to
	 * queuing its ACK, deferred ACKs included: non-cumulative count per
	 * bucket (50, 100, 250, 500, 1000, 5000 µs, +Inf), total count (= ACKs)
	 * and sum in µs */
	uint64_t lat_buckets[SPOA_LAT_BUCKETS];
	uint64_t lat_count;
	double lat_sum_us;
};

/* Creates a server listening on <conf>->listen, with its watchers on <loop>.
 * <conf> is copied (the handler table, ctx and listen string are not, they
 * must outlive the server). Returns the server, or NULL with the reason in
 * <err>. Free with spoa_server_free(). */
struct spoa_server *spoa_server_new(struct ev_loop *loop, const struct spoa_server_conf *conf,
				    char *err, size_t errlen);

/* Stops every watcher, closes every connection and the listener (a unix socket
 * path is unlinked) and frees <srv>. Deferred handles still held stay valid,
 * detached: spoa_deferred_reply() returns NULL, spoa_deferred_done() frees.
 * Accepts NULL. */
void spoa_server_free(struct spoa_server *srv);

/* Copies the counters of <srv> into <out>. */
void spoa_server_stats(const struct spoa_server *srv, struct spoa_stats *out);

/* Returns the bound TCP port (useful with port 0), or 0 for a unix socket. */
int spoa_server_port(const struct spoa_server *srv);

#endif
