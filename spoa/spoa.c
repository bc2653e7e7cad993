/* SPDX-License-Identifier: Apache-2.0 */
/* SPOA server on libev: see spoa.h. This file has the listener and the
 * server; connections are in spoa_conn.c, ACKs and deferrals in
 * spoa_reply.c. */
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <ev.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "spoa/spoa_int.h"

#define SPOA_DEF_FRAME_SIZE   16384u
#define SPOA_MAX_FRAME_SIZE   (1024u * 1024u)  /* buffers are 3x this per connection */
#define SPOA_DEF_IDLE         120.0
#define SPOA_DEF_MAX_CONNS    1024u
#define SPOA_DEF_DEFER_CONN   256u
#define SPOA_DEF_DEFER_MAX    10000u
#define SPOA_DEF_DEFER_TIME   5.0
#define SPOA_ACCEPT_BURST     64

const unsigned spoa_latency_bounds_us[SPOA_LAT_BUCKETS - 1] = { 50, 100, 250, 500, 1000, 5000 };

void spoa_srv_engine_seen(struct spoa_server *srv, const char *id, size_t len)
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

double spoa_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

void spoa_srv_latency(struct spoa_server *srv, double us, unsigned n)
{
	unsigned i;

	if (us < 0)
		us = 0;
	for (i = 0; i < SPOA_LAT_BUCKETS - 1; i++) {
		if (us <= spoa_latency_bounds_us[i])
			break;
	}
	srv->stats.lat_buckets[i] += n;
	srv->stats.lat_count += n;
	srv->stats.lat_sum_us += us * n;
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
		spoa_conn_accept(srv, fd, &ss, sslen);
	}
}

/* Gives the unix socket at <path> the configured group, then mode (the
 * group first: until both are set, the umask's stricter bits apply). Group
 * names are looked up here, at start. */
static int srv_unix_perms(struct spoa_server *srv, const char *path, char *err, size_t errlen)
{
	const char *g = srv->conf.socket_group;

	if (g && *g) {
		char buf[4096], *end;
		struct group gr, *res = NULL;
		unsigned long gid;
		int rc;

		errno = 0;
		gid = strtoul(g, &end, 10);
		if (*end || end == g || errno) {
			rc = getgrnam_r(g, &gr, buf, sizeof(buf), &res);
			if (rc != 0 || !res) {
				snprintf(err, errlen, "spoa.socket_group: %s: %s", g,
					 rc ? strerror(rc) : "no such group");
				return -1;
			}
			gid = res->gr_gid;
		}
		if (chown(path, (uid_t)-1, (gid_t)gid) == -1) {
			snprintf(err, errlen, "spoa.socket_group: cannot give %s to group %s: %s (the "
				 "agent's user must be a member of it)", path, g, strerror(errno));
			return -1;
		}
	}
	if (srv->conf.socket_mode && chmod(path, (mode_t)srv->conf.socket_mode) == -1) {
		snprintf(err, errlen, "spoa.socket_mode: cannot set %04o on %s: %s",
			 (unsigned)srv->conf.socket_mode, path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Binds and listens on <addr> (lib/addr.h: "host:port", "[v6]:port", "*:port",
 * port 0, "unix:/path"); fills srv->fd, port, unix_path. */
static int srv_listen(struct spoa_server *srv, const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	struct addr a;
	char why[160];
	int fd = -1, one = 1, ret = -1;

	if (addr_parse(addr, ADDR_UNIX | ADDR_LISTEN, &a, why, sizeof(why)) == -1 ||
	    addr_sockaddr(&a, 1, &sa, &salen, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "spoa.listen: %s: %s", addr, why);
		goto out;
	}
	if (a.is_unix) {
		struct stat st;

		/* a stale socket from a previous run; never remove anything else */
		if (stat(a.path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(a.path);
	}
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd != -1 && !a.is_unix)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd == -1 || bind(fd, (struct sockaddr *)&sa, salen) == -1 ||
	    listen(fd, SOMAXCONN) == -1) {
		snprintf(err, errlen, "spoa.listen: %s: %s", addr, strerror(errno));
		goto out;
	}
	if (a.is_unix) {
		memcpy(srv->unix_path, a.path, strlen(a.path) + 1);
		if (srv_unix_perms(srv, a.path, err, errlen) == -1) {
			unlink(a.path);
			srv->unix_path[0] = '\0';
			goto out;
		}
		srv->fd = fd;
		fd = -1;
		ret = 0;
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
	if (fd != -1)
		close(fd);
	return ret;
}

struct spoa_server *spoa_server_new(struct ev_loop *loop, const struct spoa_server_conf *conf,
				    char *err, size_t errlen)
{
	struct spoa_server *srv = NULL, *ret = NULL;
	size_t i, n;

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
	TAILQ_INIT(&srv->kicked);
	ev_prepare_init(&srv->kick, spoa_cb_kick);
	srv->kick.data = srv;
	if (!srv->conf.max_frame_size)
		srv->conf.max_frame_size = SPOA_DEF_FRAME_SIZE;
	if (srv->conf.idle_timeout <= 0)
		srv->conf.idle_timeout = SPOA_DEF_IDLE;
	if (!srv->conf.max_conns)
		srv->conf.max_conns = SPOA_DEF_MAX_CONNS;
	if (!srv->conf.max_deferred_per_conn)
		srv->conf.max_deferred_per_conn = SPOA_DEF_DEFER_CONN;
	if (!srv->conf.max_deferred)
		srv->conf.max_deferred = SPOA_DEF_DEFER_MAX;
	if (srv->conf.defer_timeout <= 0)
		srv->conf.defer_timeout = SPOA_DEF_DEFER_TIME;
	for (n = 0; conf->handlers && conf->handlers[n].message; n++)
		;
	srv->handler_len = calloc(n + 1, sizeof(*srv->handler_len));
	if (!srv->handler_len) {
		snprintf(err, errlen, "spoa: out of memory");
		goto out;
	}
	for (i = 0; i < n; i++)
		srv->handler_len[i] = strlen(conf->handlers[i].message);
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
		spoa_conn_close(srv->conns);
	ev_prepare_stop(srv->loop, &srv->kick);
	if (srv->fd != -1) {
		ev_io_stop(srv->loop, &srv->lio);
		ev_timer_stop(srv->loop, &srv->retry);
		close(srv->fd);
		if (srv->unix_path[0])
			unlink(srv->unix_path);
	}
	free(srv->handler_len);
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
