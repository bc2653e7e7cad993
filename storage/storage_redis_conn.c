/* SPDX-License-Identifier: Apache-2.0 */
/* redis backend: the transport (see storage_redis_conn.h). One non-blocking
 * socket on the loop with two watchers: the write watcher runs while bytes
 * wait to go out (or the TLS session asks to write); the read watcher runs
 * once connected (or while the handshake asks to read). With TLS either
 * event retries both directions, since a TLS read may need to write and a
 * write may need to read. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/addr.h"
#include "lib/tlsstore.h"
#include "lib/workq.h"
#include "storage/storage_redis_conn.h"

#define RCONN_READ_CHUNK	16384
#define RCONN_READS_PER_EVENT	64	/* then back to the loop: others get their turn */
#define RCONN_RESOLVE_THREADS	2
#define RCONN_RESOLVE_MAX	64	/* lookups queued or running per resolver */

enum rconn_phase {
	RCONN_RESOLVING = 0,	/* the name is being resolved on a worker */
	RCONN_TCP,		/* connect() in progress */
	RCONN_HANDSHAKE,	/* TLS handshake in progress */
	RCONN_UP,		/* commands and replies flow */
	RCONN_DEAD,		/* ended: waits for the outermost callback to return */
	RCONN_PHASE__MAX
};

struct rconn_cmd {
	rconn_reply_cb *cb;
	void *priv;
	STAILQ_ENTRY(rconn_cmd) link;
};

/* One name lookup on a worker thread. The connection and the lookup point
 * at each other until done() runs on the loop; a connection freed before
 * that only clears lookup->c and sets <cancelled> (read by the worker, which
 * then skips getaddrinfo()), and done() frees the lookup. */
struct rconn_lookup {
	struct workq_item it;
	struct rconn_resolver *res;
	struct rconn *c;		/* loop only; NULL: the connection is gone */
	volatile int cancelled;		/* set on the loop, read by the worker */
	char host[256];
	char port[16];
	int rc;				/* getaddrinfo()'s */
	int syserr;			/* errno for EAI_SYSTEM */
	struct addrinfo *ai;
};

struct rconn_resolver {
	struct ev_loop *loop;
	struct workq *wq;		/* started at the first name to resolve */
	unsigned inflight;		/* lookups submitted whose done() has not run */
	int closing;
};

struct rconn {
	struct ev_loop *loop;
	int fd;
	struct rconn_lookup *lookup;	/* RESOLVING: its lookup */
	struct addrinfo *addrs;		/* the name's addresses (NULL for a literal) */
	struct addrinfo *next_addr;	/* the one to try when this connect() fails */
	char host[256];
	SSL *ssl;
	enum rconn_phase phase;
	int tls_wants_write;	/* the last TLS call asked for a writable socket */
	ev_io rio, wio;
	redisReader *reader;
	char *out;		/* bytes to send: [outoff, outlen) */
	size_t outoff, outlen, outcap;
	STAILQ_HEAD(, rconn_cmd) pending;
	size_t npending;
	const struct rconn_cbs *cbs;
	void *arg;
	int depth;		/* our callbacks running: free only at 0 */
	char peer[280];
	char err[256];
};

/* Replies carry stored values (private keys, the account key): their
 * strings are cleansed before hiredis frees them. */
static void rconn_reply_cleanse(redisReply *r)
{
	size_t i;

	if (r == NULL)
		return;
	if (r->str != NULL && r->len > 0)
		OPENSSL_cleanse(r->str, r->len);
	for (i = 0; r->element != NULL && i < r->elements; i++)
		rconn_reply_cleanse(r->element[i]);
}

/* What the reader consumed stays in its buffer (an sds string): cleansed
 * once everything in it was parsed, and before the buffer is freed. */
static void rconn_reader_cleanse(redisReader *r)
{
	if (r != NULL && r->buf != NULL && r->pos == r->len)
		OPENSSL_cleanse(r->buf, sdsalloc(r->buf));
}

static void rconn_destroy(struct rconn *c)
{
	if (c->lookup != NULL) {	/* its done() frees it without touching us */
		c->lookup->c = NULL;
		__atomic_store_n(&c->lookup->cancelled, 1, __ATOMIC_RELEASE);
	}
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	if (c->addrs != NULL)
		freeaddrinfo(c->addrs);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd != -1)
		close(c->fd);
	if (c->reader != NULL) {
		if (c->reader->buf != NULL)
			OPENSSL_cleanse(c->reader->buf, sdsalloc(c->reader->buf));
		redisReaderFree(c->reader);
	}
	if (c->out != NULL)
		OPENSSL_cleanse(c->out, c->outcap);	/* commands carry values and AUTH */
	free(c->out);
	free(c);
}

/* Stops the I/O and fails every pending command with a NULL reply. */
static void rconn_end(struct rconn *c, const char *why)
{
	struct rconn_cmd *cmd;

	c->phase = RCONN_DEAD;
	snprintf(c->err, sizeof(c->err), "%s", why);
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	c->depth++;
	while ((cmd = STAILQ_FIRST(&c->pending)) != NULL) {
		STAILQ_REMOVE_HEAD(&c->pending, link);
		c->npending--;
		if (cmd->cb != NULL)
			cmd->cb(c, NULL, cmd->priv);
		free(cmd);
	}
	c->depth--;
}

/* Ends the connection by itself; frees it unless a callback of ours runs. */
static void rconn_fail(struct rconn *c, enum rconn_end how, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void rconn_fail(struct rconn *c, enum rconn_end how, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	if (c->phase == RCONN_DEAD)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	rconn_end(c, why);
	c->depth++;
	if (c->cbs != NULL)	/* NULL: its owner freed it from a reply callback */
		c->cbs->closed(c, c->arg, how, c->err);
	c->depth--;
}

void rconn_free(struct rconn *c, const char *why)
{
	if (c == NULL)
		return;
	if (c->phase != RCONN_DEAD)
		rconn_end(c, why ? why : "closed");
	c->cbs = NULL;
	c->phase = RCONN_DEAD;
	if (c->depth == 0)
		rconn_destroy(c);
	else
		c->arg = NULL;	/* marks it freed by its owner: destroyed on unwinding */
}

void *rconn_arg(const struct rconn *c)
{
	return c->arg;
}

const char *rconn_errstr(const struct rconn *c)
{
	return c->err;
}

int rconn_resolving(const struct rconn *c)
{
	return c->phase == RCONN_RESOLVING;
}

const char *rconn_peer(const struct rconn *c)
{
	return c->peer;
}

size_t rconn_pending(const struct rconn *c)
{
	return c->npending;
}

/* ---- TLS ----------------------------------------------------------------- */

SSL_CTX *rconn_tls_ctx(int verify, const char *ca_file, const char *cert_file,
		       const char *key_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	unsigned long e;

	ERR_clear_error();
	if (ctx == NULL) {
		snprintf(err, errlen, "TLS: out of memory");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		if (ca_file != NULL && ca_file[0] != '\0') {
			if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
				snprintf(err, errlen, "ssl_ca_file %s: cannot load: ", ca_file);
				goto ssl_err;
			}
		} else {
			/* parsed here, once: the default verify paths would read
			 * /etc/ssl/certs on the loop at each handshake */
			char why[300];
			X509_STORE *store = tlsstore_system(why, sizeof(why));

			if (store == NULL) {
				snprintf(err, errlen, "TLS: %s", why);
				SSL_CTX_free(ctx);
				return NULL;
			}
			SSL_CTX_set_cert_store(ctx, store);	/* ctx owns it */
		}
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if ((cert_file != NULL && cert_file[0]) != (key_file != NULL && key_file[0])) {
		snprintf(err, errlen, "ssl_cert and ssl_key go together");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (cert_file != NULL && cert_file[0]) {
		if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
			snprintf(err, errlen, "ssl_cert %s: cannot load: ", cert_file);
			goto ssl_err;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
			snprintf(err, errlen, "ssl_key: cannot load: ");
			goto ssl_err;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			snprintf(err, errlen, "ssl_key does not match ssl_cert: ");
			goto ssl_err;
		}
	}
	return ctx;
ssl_err:
	e = ERR_peek_last_error();
	if (e != 0)
		ERR_error_string_n(e, err + strlen(err), errlen - strlen(err));
	else
		snprintf(err + strlen(err), errlen - strlen(err), "failed");
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

static int rconn_is_ip(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

/* Sets SNI and the name (or address) the certificate must carry (the
 * socket comes later, once the address is known). */
static int rconn_tls_setup(struct rconn *c, const struct rconn_tls *tls, const char *host,
			   char *err, size_t errlen)
{
	const char *name = tls->server_name && tls->server_name[0] ? tls->server_name : host;
	X509_VERIFY_PARAM *vp;

	ERR_clear_error();
	c->ssl = SSL_new(tls->ctx);
	if (c->ssl == NULL) {
		snprintf(err, errlen, "TLS: out of memory");
		return -1;
	}
	SSL_set_connect_state(c->ssl);
	if (!rconn_is_ip(name) && SSL_set_tlsext_host_name(c->ssl, name) != 1) {
		snprintf(err, errlen, "TLS: server name %s refused", name);
		return -1;
	}
	if (!tls->verify)
		return 0;
	vp = SSL_get0_param(c->ssl);
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (rconn_is_ip(name) ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1 :
	    X509_VERIFY_PARAM_set1_host(vp, name, 0) != 1) {
		snprintf(err, errlen, "TLS: cannot check the name %s", name);
		return -1;
	}
	return 0;
}

/* Why the handshake failed, in words an operator can act on. */
static void rconn_tls_why(struct rconn *c, int ret, char *why, size_t whylen)
{
	long vr = SSL_get_verify_result(c->ssl);
	unsigned long e = ERR_peek_last_error();
	char buf[200];

	if (vr != X509_V_OK) {
		snprintf(why, whylen, "TLS: server certificate refused: %s",
			 X509_verify_cert_error_string(vr));
	} else if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(why, whylen, "TLS handshake failed: %s", buf);
	} else if (ret == 0 || errno == 0) {
		snprintf(why, whylen, "TLS handshake failed: connection closed by the server");
	} else {
		snprintf(why, whylen, "TLS handshake failed: %s", strerror(errno));
	}
	ERR_clear_error();
}

/* ---- I/O ------------------------------------------------------------------ */

static void rconn_update_io(struct rconn *c)
{
	int want_r = 0, want_w = 0;

	switch (c->phase) {
	case RCONN_TCP:
		want_w = 1;
		break;
	case RCONN_HANDSHAKE:
		want_w = c->tls_wants_write;
		want_r = !want_w;
		break;
	case RCONN_UP:
		want_r = 1;
		want_w = c->outoff < c->outlen || c->tls_wants_write;
		break;
	default:
		break;
	}
	if (want_r && !ev_is_active(&c->rio))
		ev_io_start(c->loop, &c->rio);
	else if (!want_r && ev_is_active(&c->rio))
		ev_io_stop(c->loop, &c->rio);
	if (want_w && !ev_is_active(&c->wio))
		ev_io_start(c->loop, &c->wio);
	else if (!want_w && ev_is_active(&c->wio))
		ev_io_stop(c->loop, &c->wio);
}

/* Runs the TLS handshake as far as it goes. */
static void rconn_handshake(struct rconn *c)
{
	char why[256];
	int ret, e;

	ERR_clear_error();
	errno = 0;
	ret = SSL_do_handshake(c->ssl);
	if (ret == 1) {
		c->phase = RCONN_UP;
		c->tls_wants_write = 0;
		if (c->cbs != NULL && c->cbs->connected != NULL)
			c->cbs->connected(c, c->arg);
		return;
	}
	e = SSL_get_error(c->ssl, ret);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		c->tls_wants_write = e == SSL_ERROR_WANT_WRITE;
		return;
	}
	rconn_tls_why(c, ret, why, sizeof(why));
	rconn_fail(c, RCONN_TLS_REFUSED, "%s", why);
}

/* Sends what it can of the output buffer. */
static void rconn_flush(struct rconn *c)
{
	while (c->phase == RCONN_UP && c->outoff < c->outlen) {
		size_t n = c->outlen - c->outoff;
		ssize_t w;

		if (c->ssl != NULL) {
			int ret, e;

			ERR_clear_error();
			ret = SSL_write(c->ssl, c->out + c->outoff, n > INT32_MAX ? INT32_MAX : (int)n);
			if (ret <= 0) {
				e = SSL_get_error(c->ssl, ret);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
					c->tls_wants_write = e == SSL_ERROR_WANT_WRITE;
					return;
				}
				ERR_clear_error();
				rconn_fail(c, RCONN_LOST, "connection lost: TLS write failed");
				return;
			}
			w = ret;
		} else {
			w = send(c->fd, c->out + c->outoff, n, MSG_NOSIGNAL);
			if (w == -1) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					return;
				rconn_fail(c, RCONN_LOST, "connection lost: %s", strerror(errno));
				return;
			}
		}
		c->outoff += (size_t)w;
	}
	if (c->outoff == c->outlen) {
		OPENSSL_cleanse(c->out, c->outlen);	/* sent: no copy of a value stays */
		c->outoff = c->outlen = 0;
	}
}

/* Hands every complete reply to its callback (or to push). */
static void rconn_dispatch(struct rconn *c)
{
	void *reply;

	while (c->phase == RCONN_UP) {
		struct rconn_cmd *cmd;

		reply = NULL;
		if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
			rconn_fail(c, RCONN_PROTOCOL, "protocol error: %s", c->reader->errstr);
			return;
		}
		if (reply == NULL) {
			rconn_reader_cleanse(c->reader);
			return;
		}
		cmd = STAILQ_FIRST(&c->pending);
		if (cmd != NULL) {
			STAILQ_REMOVE_HEAD(&c->pending, link);
			c->npending--;
			if (cmd->cb != NULL)
				cmd->cb(c, reply, cmd->priv);
			else if (c->cbs != NULL && c->cbs->push != NULL)
				c->cbs->push(c, reply, c->arg);
			free(cmd);
		} else if (c->cbs != NULL && c->cbs->push != NULL) {
			c->cbs->push(c, reply, c->arg);
		}
		rconn_reply_cleanse(reply);
		freeReplyObject(reply);
	}
}

static void rconn_read(struct rconn *c)
{
	char buf[RCONN_READ_CHUNK];
	int i;

	for (i = 0; i < RCONN_READS_PER_EVENT && c->phase == RCONN_UP; i++) {
		ssize_t n;

		if (c->ssl != NULL) {
			int ret, e;

			ERR_clear_error();
			errno = 0;
			ret = SSL_read(c->ssl, buf, sizeof(buf));
			if (ret <= 0) {
				e = SSL_get_error(c->ssl, ret);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
					c->tls_wants_write = e == SSL_ERROR_WANT_WRITE;
					return;
				}
				ERR_clear_error();
				rconn_fail(c, RCONN_LOST, "connection lost: %s",
					   e == SSL_ERROR_ZERO_RETURN || errno == 0 ? "closed" :
					   strerror(errno));
				return;
			}
			n = ret;
		} else {
			n = recv(c->fd, buf, sizeof(buf), 0);
			if (n == 0) {
				rconn_fail(c, RCONN_LOST, "connection lost: closed");
				return;
			}
			if (n == -1) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					return;
				rconn_fail(c, RCONN_LOST, "connection lost: %s", strerror(errno));
				return;
			}
		}
		if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
			OPENSSL_cleanse(buf, (size_t)n);
			rconn_fail(c, RCONN_PROTOCOL, "protocol error: %s", c->reader->errstr);
			return;
		}
		OPENSSL_cleanse(buf, (size_t)n);
		rconn_dispatch(c);
	}
	/* bytes TLS has already taken off the socket would not wake us again */
	if (c->phase == RCONN_UP && c->ssl != NULL && SSL_pending(c->ssl) > 0)
		ev_feed_event(c->loop, &c->rio, EV_READ);
}

static void rconn_next_addr(struct rconn *c);

/* Both watchers land here: whatever the event, every direction that may
 * progress is tried. */
static void rconn_io(struct rconn *c)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	c->depth++;
	if (c->phase == RCONN_TCP) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1)
			soerr = errno;
		if (soerr != 0 && c->next_addr != NULL) {
			rconn_next_addr(c);
		} else if (soerr != 0) {
			rconn_fail(c, RCONN_CONNECT_FAILED, "connect: %s", strerror(soerr));
		} else if (c->ssl != NULL) {
			c->phase = RCONN_HANDSHAKE;
		} else {
			c->phase = RCONN_UP;
			if (c->cbs != NULL && c->cbs->connected != NULL)
				c->cbs->connected(c, c->arg);
		}
	}
	if (c->phase == RCONN_HANDSHAKE)
		rconn_handshake(c);
	if (c->phase == RCONN_UP) {
		c->tls_wants_write = 0;
		rconn_flush(c);
		rconn_read(c);
		/* replies may have queued commands */
		rconn_flush(c);
	}
	c->depth--;
	if (c->phase == RCONN_DEAD) {
		if (c->depth == 0)
			rconn_destroy(c);
		return;
	}
	rconn_update_io(c);
}

static void cb_rconn_io(struct ev_loop *loop, ev_io *w, int revents)
{
	rconn_io(w->data);
}

/* ---- commands ------------------------------------------------------------ */

static int rconn_append(struct rconn *c, rconn_reply_cb *cb, void *priv, const char *buf,
			size_t len)
{
	struct rconn_cmd *cmd;

	if (c->phase == RCONN_DEAD)
		return -1;
	if (c->outoff > 0 && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + len > c->outcap) {
		size_t cap = c->outcap ? c->outcap : 4096;
		char *grown;

		if (c->outoff > 0) {	/* slide the unsent bytes to the front first */
			memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
			OPENSSL_cleanse(c->out + c->outlen - c->outoff, c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		while (cap < c->outlen + len)
			cap *= 2;
		if (cap > c->outcap) {
			/* not realloc: the old block would be freed with its bytes */
			grown = malloc(cap);
			if (grown == NULL)
				return -1;
			if (c->out != NULL) {
				memcpy(grown, c->out, c->outlen);
				OPENSSL_cleanse(c->out, c->outcap);
				free(c->out);
			}
			c->out = grown;
			c->outcap = cap;
		}
	}
	cmd = calloc(1, sizeof(*cmd));
	if (cmd == NULL)
		return -1;
	cmd->cb = cb;
	cmd->priv = priv;
	memcpy(c->out + c->outlen, buf, len);
	c->outlen += len;
	STAILQ_INSERT_TAIL(&c->pending, cmd, link);
	c->npending++;
	if (c->phase == RCONN_UP && c->depth == 0)
		rconn_update_io(c);	/* sent on the next writable event */
	return 0;
}

int rconn_command_argv(struct rconn *c, rconn_reply_cb *cb, void *priv, int argc,
		       const char **argv, const size_t *lens)
{
	char *buf = NULL;
	int len, rc;

	if (c == NULL || c->phase == RCONN_DEAD)
		return -1;
	len = redisFormatCommandArgv(&buf, argc, argv, lens);
	if (len < 0 || buf == NULL)
		return -1;
	rc = rconn_append(c, cb, priv, buf, (size_t)len);
	OPENSSL_cleanse(buf, (size_t)len);	/* a value, maybe a private key */
	redisFreeCommand(buf);
	return rc;
}

int rconn_command(struct rconn *c, rconn_reply_cb *cb, void *priv, const char *fmt, ...)
{
	char *buf = NULL;
	va_list ap;
	int len, rc;

	if (c == NULL || c->phase == RCONN_DEAD)
		return -1;
	va_start(ap, fmt);
	len = redisvFormatCommand(&buf, fmt, ap);
	va_end(ap);
	if (len < 0 || buf == NULL)
		return -1;
	rc = rconn_append(c, cb, priv, buf, (size_t)len);
	OPENSSL_cleanse(buf, (size_t)len);	/* AUTH's password */
	redisFreeCommand(buf);
	return rc;
}

/* ---- connecting ---------------------------------------------------------- */

struct rconn_resolver *rconn_resolver_new(struct ev_loop *loop)
{
	struct rconn_resolver *r = calloc(1, sizeof(*r));

	if (r != NULL)
		r->loop = loop;
	return r;
}

void rconn_resolver_free(struct rconn_resolver *r)
{
	if (r == NULL)
		return;
	r->closing = 1;
	workq_free(r->wq);	/* runs the done() of every lookup left */
	free(r);
}

/* Opens the socket and starts a non-blocking connect() to <sa>. */
static int rconn_start(struct rconn *c, const struct sockaddr *sa, socklen_t salen, char *err,
		       size_t errlen)
{
	int one = 1;

	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	if (c->fd != -1)	/* the previous address of the name failed */
		close(c->fd);
	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		snprintf(err, errlen, "connect: socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	if (connect(c->fd, sa, salen) == -1 && errno != EINPROGRESS) {
		snprintf(err, errlen, "connect: %s", strerror(errno));
		return -1;
	}
	if (c->ssl != NULL && SSL_set_fd(c->ssl, c->fd) != 1) {
		snprintf(err, errlen, "TLS: out of memory");
		return -1;
	}
	c->phase = RCONN_TCP;
	ev_io_init(&c->rio, cb_rconn_io, c->fd, EV_READ);
	ev_io_init(&c->wio, cb_rconn_io, c->fd, EV_WRITE);
	c->rio.data = c->wio.data = c;
	return 0;
}

/* Tries the next address of the name, if any; ends <c> when none is left. */
static void rconn_start_addrs(struct rconn *c)
{
	char why[256] = "connect: no address";

	while (c->next_addr != NULL) {
		struct addrinfo *ai = c->next_addr;

		c->next_addr = ai->ai_next;
		if (rconn_start(c, ai->ai_addr, ai->ai_addrlen, why, sizeof(why)) == 0)
			return;
	}
	rconn_fail(c, RCONN_CONNECT_FAILED, "%s", why);
}

/* The connect() to one address of the name failed (from rconn_io()). */
static void rconn_next_addr(struct rconn *c)
{
	rconn_start_addrs(c);
}

/* Fills <ss> when <host> is an IPv4 or IPv6 literal: no resolver at all
 * (addr_sockaddr() resolves only names, and is not asked for one here). */
static int rconn_literal(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addr a = { .port = port };
	char why[128];

	if (!rconn_is_ip(host) || strlen(host) >= sizeof(a.host))
		return 0;
	memcpy(a.host, host, strlen(host) + 1);
	return addr_sockaddr(&a, 0, ss, len, why, sizeof(why)) == 0;
}

/* On a worker: may block as long as the system's resolver does. */
static void rconn_lookup_run(struct workq_item *it)
{
	struct rconn_lookup *lk = (struct rconn_lookup *)it;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };

	if (__atomic_load_n(&lk->cancelled, __ATOMIC_ACQUIRE)) {
		lk->rc = EAI_AGAIN;
		return;
	}
	errno = 0;
	lk->rc = getaddrinfo(lk->host, lk->port, &hints, &lk->ai);
	lk->syserr = errno;
}

/* On the loop: the connect goes on, unless the connection is gone. */
static void rconn_lookup_done(struct workq_item *it)
{
	struct rconn_lookup *lk = (struct rconn_lookup *)it;
	struct rconn *c = lk->c;

	lk->res->inflight--;
	if (c != NULL)
		c->lookup = NULL;
	if (c == NULL || lk->res->closing) {
		/* closing with the connection still there: it stays idle until
		 * its owner frees it */
		goto out;
	}
	c->depth++;
	if (lk->rc != 0) {
		rconn_fail(c, RCONN_CONNECT_FAILED, "cannot resolve %s: %s", lk->host,
			   lk->rc == EAI_SYSTEM && lk->syserr ? strerror(lk->syserr) :
			   gai_strerror(lk->rc));
	} else if (lk->ai == NULL) {
		rconn_fail(c, RCONN_CONNECT_FAILED, "cannot resolve %s: no address", lk->host);
	} else {
		c->addrs = c->next_addr = lk->ai;	/* <c> owns them now */
		lk->ai = NULL;
		rconn_start_addrs(c);
	}
	c->depth--;
	if (c->phase == RCONN_DEAD) {
		if (c->depth == 0)
			rconn_destroy(c);
	} else {
		rconn_update_io(c);
	}
out:
	if (lk->ai != NULL)
		freeaddrinfo(lk->ai);
	free(lk);
}

/* Hands <c>'s name to a worker; done() goes on with the connect. */
static int rconn_resolve(struct rconn *c, struct rconn_resolver *r, int port, char *err,
			 size_t errlen)
{
	struct rconn_lookup *lk;

	if (r == NULL || r->closing) {
		snprintf(err, errlen, "cannot resolve %s: no resolver", c->host);
		return -1;
	}
	if (r->inflight >= RCONN_RESOLVE_MAX) {
		snprintf(err, errlen, "cannot resolve %s: %u lookups already under way", c->host,
			 r->inflight);
		return -1;
	}
	if (r->wq == NULL) {
		char why[160];

		r->wq = workq_new(r->loop, RCONN_RESOLVE_THREADS, why, sizeof(why));
		if (r->wq == NULL) {
			snprintf(err, errlen, "cannot resolve %s: %s", c->host, why);
			return -1;
		}
	}
	lk = calloc(1, sizeof(*lk));
	if (lk == NULL) {
		snprintf(err, errlen, "cannot resolve %s: out of memory", c->host);
		return -1;
	}
	lk->it.run = rconn_lookup_run;
	lk->it.done = rconn_lookup_done;
	lk->res = r;
	lk->c = c;
	snprintf(lk->host, sizeof(lk->host), "%s", c->host);
	snprintf(lk->port, sizeof(lk->port), "%d", port);
	c->lookup = lk;
	c->phase = RCONN_RESOLVING;
	r->inflight++;
	workq_submit(r->wq, &lk->it, workq_shard(lk->host));
	return 0;
}

struct rconn *rconn_new(struct ev_loop *loop, struct rconn_resolver *res, const char *host,
			int port, const struct rconn_tls *tls, const struct rconn_cbs *cbs,
			void *arg, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	struct rconn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		snprintf(err, errlen, "connect: out of memory");
		return NULL;
	}
	c->fd = -1;
	c->loop = loop;
	c->cbs = cbs;
	c->arg = arg;
	STAILQ_INIT(&c->pending);
	snprintf(c->host, sizeof(c->host), "%s", host);
	snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
	c->reader = redisReaderCreate();
	if (c->reader == NULL) {
		snprintf(err, errlen, "connect: out of memory");
		goto fail;
	}
	if (tls != NULL && rconn_tls_setup(c, tls, host, err, errlen) == -1)
		goto fail;
	if (rconn_literal(host, port, &ss, &sslen)) {
		if (rconn_start(c, (struct sockaddr *)&ss, sslen, err, errlen) == -1)
			goto fail;
		rconn_update_io(c);
	} else if (rconn_resolve(c, res, port, err, errlen) == -1) {
		goto fail;
	}
	return c;
fail:
	rconn_destroy(c);
	return NULL;
}
