/* SPOA server: accepts HAProxy's SPOE connections on a libev loop, does the
 * HELLO handshake, answers every NOTIFY with one ACK built by the registered
 * message handlers, and DISCONNECTs on anything malformed. */
#ifndef ACME_SPOA_SPOA_H
#define ACME_SPOA_SPOA_H

#include <stddef.h>
#include <stdint.h>

#include "spoa/spop.h"

struct ev_loop;
struct spoa_server;

/* The actions of one ACK being built. Only valid during a handler call. */
struct spoa_reply;

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

struct spoa_handler {
	const char *message;   /* SPOE message name, e.g. "acme-http01"; table ends with message == NULL */
	/* Called on the loop for each message of that name; <args> are views
	 * into the frame, valid only during the call. Must not block. */
	void (*fn)(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *reply);
};

struct spoa_server_conf {
	const char *listen;                    /* "127.0.0.1:12345", "[::1]:12345", "unix:/path"; port 0 picks one */
	const struct spoa_handler *handlers;
	void *ctx;                             /* passed to handlers and on_engine */
	void (*on_engine)(void *ctx, const char *engine_id, int is_new); /* HELLO engine-id; is_new the first time this id is seen (last 256 ids remembered); must not free the server */
	uint32_t max_frame_size;               /* 0 => 16384; 256..1048576 */
	double idle_timeout;                   /* seconds, 0 => 120 */
	unsigned max_conns;                    /* 0 => 1024 */
};

/* Handler latency histogram bucket upper bounds, in microseconds; the last
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
	/* handler call latency: non-cumulative count per bucket (50, 100, 250,
	 * 500, 1000, 5000 µs, +Inf), total count and sum in µs */
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
 * path is unlinked) and frees <srv>. Accepts NULL. */
void spoa_server_free(struct spoa_server *srv);

/* Copies the counters of <srv> into <out>. */
void spoa_server_stats(const struct spoa_server *srv, struct spoa_stats *out);

/* Returns the bound TCP port (useful with port 0), or 0 for a unix socket. */
int spoa_server_port(const struct spoa_server *srv);

#endif
