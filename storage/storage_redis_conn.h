/* SPDX-License-Identifier: Apache-2.0 */
/* redis backend: one connection to a Redis server (or a sentinel) on the
 * loop, plain TCP or TLS over the agent's own non-blocking OpenSSL session.
 * hiredis does the protocol work (redisFormatCommandArgv builds commands,
 * a redisReader parses replies); this file does the I/O. Commands are
 * pipelined: replies are matched to callbacks in send order; a reply with no
 * command waiting (pub/sub messages) goes to the connection's push callback.
 * Not for use outside storage/.
 *
 * Lifetime: the owner ends a connection with rconn_free() (every pending
 * callback gets a NULL reply, the closed callback is not called) or the
 * connection ends by itself (lost, refused, TLS failure): pending callbacks
 * get a NULL reply, then closed() runs and the connection is freed after it
 * returns. Either may happen inside one of the connection's own callbacks:
 * the memory is released once the outermost callback has returned. No
 * callback is ever called from inside rconn_new(). */
#ifndef ACME_SPOA_STORAGE_REDIS_CONN_H
#define ACME_SPOA_STORAGE_REDIS_CONN_H

#include <stddef.h>

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

struct ev_loop;
struct rconn;

/* TLS settings shared by every connection of a backend. <server_name>: the
 * name checked in the server's certificate and sent as SNI; NULL: the host
 * connected to (an IP address is then checked against the certificate's IP
 * entries and no SNI is sent). */
struct rconn_tls {
	SSL_CTX *ctx;
	int verify;			/* check the chain and the name */
	const char *server_name;
};

/* How a connection ended, for closed(). */
enum rconn_end {
	RCONN_LOST = 0,			/* was connected, then lost (EOF, error) */
	RCONN_CONNECT_FAILED,		/* TCP connect failed */
	RCONN_TLS_REFUSED,		/* TLS handshake failed: verification, protocol */
	RCONN_PROTOCOL,			/* unparsable reply */
	RCONN_END__MAX
};

struct rconn_cbs {
	/* TCP connected and, with TLS, the handshake done (optional) */
	void (*connected)(struct rconn *c, void *arg);
	/* a reply with no command waiting: pub/sub (optional: dropped) */
	void (*push)(struct rconn *c, redisReply *r, void *arg);
	/* the connection ended by itself for <why> (required) */
	void (*closed)(struct rconn *c, void *arg, enum rconn_end how, const char *why);
};

/* <r> NULL: the connection ended (rconn_errstr() says why). <r> is freed
 * after the callback returns. */
typedef void rconn_reply_cb(struct rconn *c, redisReply *r, void *priv);

/* Builds the TLS context of a backend: TLS 1.2 or later; with <verify>,
 * the chain is checked against <ca_file> (NULL: the system store, parsed
 * here once, lib/tlsstore);
 * <cert_file> and <key_file> (PEM) are an optional client certificate.
 * Returns NULL with <err> set. Free with SSL_CTX_free(). */
SSL_CTX *rconn_tls_ctx(int verify, const char *ca_file, const char *cert_file,
		       const char *key_file, char *err, size_t errlen);

/* Resolves host names for connections, on worker threads of its own
 * (lib/workq, started at the first name): getaddrinfo() may block for
 * seconds. At most 64 lookups are queued or running at once. Free it after
 * every connection that used it. */
struct rconn_resolver;
struct rconn_resolver *rconn_resolver_new(struct ev_loop *loop);
void rconn_resolver_free(struct rconn_resolver *r);

/* Starts connecting to <host>:<port>; <tls> NULL for plain TCP. An IPv4 or
 * IPv6 address is used as is; a name goes to <res> and the connect goes on
 * once it is resolved (a failure, "cannot resolve <host>: ...", ends the
 * connection like a refused connect: RCONN_CONNECT_FAILED); each address of
 * the name is tried in turn. Nothing blocks. Commands may be sent at once:
 * they go out once connected. Returns NULL with <err> set when the
 * connection cannot even be started. */
struct rconn *rconn_new(struct ev_loop *loop, struct rconn_resolver *res, const char *host,
			int port, const struct rconn_tls *tls, const struct rconn_cbs *cbs,
			void *arg, char *err, size_t errlen);

/* Queues one command (argv copied); its reply goes to <cb>(c, r, <priv>),
 * or to the push callback when <cb> is NULL. Returns 0, or -1 when the
 * connection has ended or memory is short (<cb> not called). */
int rconn_command_argv(struct rconn *c, rconn_reply_cb *cb, void *priv, int argc,
		       const char **argv, const size_t *lens);
/* The same from a hiredis format ("AUTH %s"). */
int rconn_command(struct rconn *c, rconn_reply_cb *cb, void *priv, const char *fmt, ...);

/* Ends <c> for <why>: pending callbacks get a NULL reply (at once), closed()
 * is not called. Accepts NULL. */
void rconn_free(struct rconn *c, const char *why);

/* The <arg> given to rconn_new(); NULL once its owner has freed <c>. */
void *rconn_arg(const struct rconn *c);

/* Why the connection ended ("" while it runs). */
const char *rconn_errstr(const struct rconn *c);

/* "host:port" connected to. */
/* 1 while the host name is still being resolved. */
int rconn_resolving(const struct rconn *c);
const char *rconn_peer(const struct rconn *c);

/* Commands sent or queued whose reply is awaited. */
size_t rconn_pending(const struct rconn *c);

#endif
