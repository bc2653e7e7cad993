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

#include "storage/storage_redis_conn.h"

#define RCONN_READ_CHUNK	16384
#define RCONN_READS_PER_EVENT	64	/* then back to the loop: others get their turn */

enum rconn_phase {
	RCONN_TCP = 0,		/* connect() in progress */
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

struct rconn {
	struct ev_loop *loop;
	int fd;
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

static void rconn_destroy(struct rconn *c)
{
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd != -1)
		close(c->fd);
	if (c->reader != NULL)
		redisReaderFree(c->reader);
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
		} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			snprintf(err, errlen, "TLS: the system CA store cannot be loaded: ");
			goto ssl_err;
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

/* Sets SNI and the name (or address) the certificate must carry. */
static int rconn_tls_setup(struct rconn *c, const struct rconn_tls *tls, const char *host,
			   char *err, size_t errlen)
{
	const char *name = tls->server_name && tls->server_name[0] ? tls->server_name : host;
	X509_VERIFY_PARAM *vp;

	ERR_clear_error();
	c->ssl = SSL_new(tls->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
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
	if (c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
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
		if (reply == NULL)
			return;
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
			rconn_fail(c, RCONN_PROTOCOL, "protocol error: %s", c->reader->errstr);
			return;
		}
		rconn_dispatch(c);
	}
	/* bytes TLS has already taken off the socket would not wake us again */
	if (c->phase == RCONN_UP && c->ssl != NULL && SSL_pending(c->ssl) > 0)
		ev_feed_event(c->loop, &c->rio, EV_READ);
}

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
		if (soerr != 0) {
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
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		while (cap < c->outlen + len)
			cap *= 2;
		if (cap > c->outcap) {
			grown = realloc(c->out, cap);
			if (grown == NULL)
				return -1;
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
	redisFreeCommand(buf);
	return rc;
}

/* ---- connecting ---------------------------------------------------------- */

struct rconn *rconn_new(struct ev_loop *loop, const char *host, int port,
			const struct rconn_tls *tls, const struct rconn_cbs *cbs, void *arg,
			char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	struct rconn *c = calloc(1, sizeof(*c));
	char portstr[16];
	int one = 1, rc;

	if (c == NULL) {
		snprintf(err, errlen, "connect: out of memory");
		return NULL;
	}
	c->fd = -1;
	c->loop = loop;
	c->cbs = cbs;
	c->arg = arg;
	STAILQ_INIT(&c->pending);
	snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
	c->reader = redisReaderCreate();
	if (c->reader == NULL) {
		snprintf(err, errlen, "connect: out of memory");
		goto fail;
	}
	snprintf(portstr, sizeof(portstr), "%d", port);
	hints.ai_flags = rconn_is_ip(host) ? AI_NUMERICHOST : 0;
	rc = getaddrinfo(host, portstr, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "connect: %s: %s", host, gai_strerror(rc));
		goto fail;
	}
	c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		snprintf(err, errlen, "connect: socket: %s", strerror(errno));
		goto fail;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == -1 && errno != EINPROGRESS) {
		snprintf(err, errlen, "connect: %s", strerror(errno));
		goto fail;
	}
	freeaddrinfo(ai);
	ai = NULL;
	if (tls != NULL && rconn_tls_setup(c, tls, host, err, errlen) == -1)
		goto fail;
	c->phase = RCONN_TCP;
	ev_io_init(&c->rio, cb_rconn_io, c->fd, EV_READ);
	ev_io_init(&c->wio, cb_rconn_io, c->fd, EV_WRITE);
	c->rio.data = c->wio.data = c;
	rconn_update_io(c);
	return c;
fail:
	if (ai != NULL)
		freeaddrinfo(ai);
	rconn_destroy(c);
	return NULL;
}
