/* SPDX-License-Identifier: Apache-2.0 */
/* HAProxy runtime API client. See runtime.h for the contract.
 *
 * Framing (checked against HAProxy 2.6): after "prompt", every reply is the
 * command's output followed by "\n> "; a command with a "<<" payload first
 * gets one "+ " prompt per payload line. Output may hold empty lines (e.g.
 * "del ssl cert" errors), so the end of a reply is the trailing "\n> " seen
 * while exactly one command is outstanding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "lib/addr.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "runtime/rt_int.h"

/* ---- small helpers ---- */

void rt_fmt_reply(char *dst, size_t dlen, const char *body, size_t blen)
{
	size_t o = 0, i;

	/* one line, so that it can go into a log line and a JSON message */
	for (i = 0; i < blen && o + 1 < dlen; i++) {
		char c = body[i];
		if (c == '\n' || c == '\r' || c == '\t')
			c = ' ';
		if ((c == ' ' && (o == 0 || dst[o - 1] == ' ')) || (unsigned char)c < 0x20)
			continue;
		dst[o++] = c;
	}
	while (o > 0 && dst[o - 1] == ' ')
		o--;
	dst[o] = '\0';
	if (o == 0)
		snprintf(dst, dlen, "(empty reply)");
}

int rt_valid_name(const char *p)
{
	size_t n = 0;

	if (!p || !*p)
		return 0;
	for (; *p; p++, n++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == ';' || *p == '\\')
			return 0;
	return n < 500;
}

int rt_set_has(const struct hmap *m, const char *k)
{
	return hmap_get(m, k) != NULL;
}

void rt_set_add(struct hmap *m, const char *k)
{
	if (hmap_put(m, k, RT_PRESENT, NULL) == -1)
		log_warn("runtime: out of memory caching name=%s", k);
}

int rt_reply_parse(const char *buf, size_t len, const char **body, size_t *blen, size_t *used)
{
	size_t off = 0, end;

	while (off + 2 <= len && buf[off] == '+' && buf[off + 1] == ' ')
		off += 2;
	if (len - off < 3 || memcmp(buf + len - 3, "\n> ", 3) != 0)
		return 0;
	end = len - 3;
	while (end > off && buf[end - 1] == '\n')
		end--;
	*body = buf + off;
	*blen = end - off;
	*used = len;
	return 1;
}

/* Value of "<key>: <int>" in show info output <txt>, or -1. */
long long rt_info_field(const char *txt, const char *key)
{
	size_t kl = strlen(key);
	const char *p = txt;

	while (p && *p) {
		if (strncmp(p, key, kl) == 0 && p[kl] == ':')
			return strtoll(p + kl + 1, NULL, 10);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

int rt_parse_ident(const char *txt, ev_tstamp now, struct rt_ident *id)
{
	long long up;

	id->pid = rt_info_field(txt, "Pid");
	id->start = rt_info_field(txt, "Start_time_sec");
	id->exact = id->start > 0;
	if (!id->exact) {
		up = rt_info_field(txt, "Uptime_sec");
		if (up < 0)
			return -1;
		id->start = (long long)now - up;
	}
	return id->pid > 0 ? 0 : -1;
}

int rt_ident_differs(const struct rt_ident *a, const struct rt_ident *b)
{
	long long d = a->start - b->start;

	if (a->pid != b->pid)
		return 1;
	if (d < 0)
		d = -d;
	/* an estimate from Uptime_sec may be off by the rounding of two clocks */
	return d > ((a->exact && b->exact) ? 0 : 2);
}

/* ---- public API ---- */

/* Reads <addr> with the one address parser into s->sa; a bare "/path" is read as
 * "unix:/path". Host names are resolved here (rt_new runs at start-up). */
static int parse_addr(struct rt_sock *s, const char *addr, char *err, size_t errlen)
{
	struct addr a;
	char why[160], tmp[1024];
	const char *p = addr;

	if (addr[0] == '/') {
		/* a longer path is cut but still too long: addr_parse refuses it */
		snprintf(tmp, sizeof(tmp), "unix:%.1000s", addr);
		p = tmp;
	}
	if (addr_parse(p, ADDR_UNIX, &a, why, sizeof(why)) == -1 ||
	    addr_sockaddr(&a, 0, &s->sa, &s->salen, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "runtime: %s: %s", addr, why);
		return -1;
	}
	return 0;
}

struct rt *rt_new(struct ev_loop *loop, const char *const *addrs, size_t naddrs,
		  void (*on_reload)(void *arg, size_t sock_idx), void *arg,
		  char *err, size_t errlen)
{
	struct rt *rt = calloc(1, sizeof(*rt));
	struct rt_sock *s;
	size_t i;

	if (!rt || (naddrs && !(rt->socks = calloc(naddrs, sizeof(*rt->socks))))) {
		snprintf(err, errlen, "runtime: out of memory");
		free(rt);
		return NULL;
	}
	rt->loop = loop;
	rt->on_reload = on_reload;
	rt->arg = arg;
	rt->timeout = 10.;
	rt->poll = 3.;
	for (i = 0; i < naddrs; i++, rt->nsocks++) {
		s = &rt->socks[i];
		s->rt = rt;
		s->idx = i;
		s->fd = s->pfd = -1;
		s->backoff = RT_BACKOFF_MIN;
		ev_io_init(&s->rio, rt_cb_read, -1, EV_READ);
		ev_io_init(&s->wio, rt_cb_write, -1, EV_WRITE);
		ev_io_init(&s->pio, rt_cb_probe_io, -1, EV_READ);
		ev_timer_init(&s->tmo, rt_cb_timeout, 0., 0.);
		ev_timer_init(&s->retry, rt_cb_retry, 0., 0.);
		ev_timer_init(&s->qtimer, rt_cb_qtimer, 0., 0.);
		ev_timer_init(&s->kick, rt_cb_kick, 0., 0.);
		ev_timer_init(&s->ptmo, rt_cb_probe_timeout, 0., 0.);
		s->rio.data = s->wio.data = s->pio.data = s;
		s->tmo.data = s->retry.data = s->qtimer.data = s->kick.data = s->ptmo.data = s;
		if (hmap_init(&s->store) == -1 || !(s->addr = strdup(addrs[i])) ||
		    parse_addr(s, addrs[i], err, errlen) == -1) {
			if (!s->addr || !s->store.buckets)
				snprintf(err, errlen, "runtime: out of memory");
			rt->nsocks++;
			rt_free(rt);
			return NULL;
		}
		ev_timer_start(loop, &s->retry);	/* connects from the loop */
	}
	ev_timer_init(&rt->poll_timer, rt_cb_poll, rt->poll, rt->poll);
	rt->poll_timer.data = rt;
	ev_timer_start(loop, &rt->poll_timer);
	return rt;
}

void rt_set_timeouts(struct rt *rt, int reply_timeout_ms, int poll_ms)
{
	if (reply_timeout_ms > 0)
		rt->timeout = reply_timeout_ms / 1000.;
	if (poll_ms > 0) {
		rt->poll = poll_ms / 1000.;
		ev_timer_stop(rt->loop, &rt->poll_timer);
		ev_timer_set(&rt->poll_timer, rt->poll, rt->poll);
		ev_timer_start(rt->loop, &rt->poll_timer);
	}
}

void rt_free(struct rt *rt)
{
	struct rt_sock *s;
	struct rt_job *j;
	size_t i;

	if (!rt)
		return;
	ev_timer_stop(rt->loop, &rt->poll_timer);
	rt->closing = 1;
	for (i = 0; i < rt->nsocks; i++) {
		s = &rt->socks[i];
		rt_sock_close(s, "shutting down", 0, 0.);
		ev_timer_stop(rt->loop, &s->retry);
		ev_timer_stop(rt->loop, &s->qtimer);
		s->phase = RT_PH__MAX;	/* nothing restarts from a callback below */
		while ((j = s->qhead))
			rt_job_failf(s, j, "shutting down");
	}
	for (i = 0; i < rt->nsocks; i++) {
		s = &rt->socks[i];
		hmap_clear(&s->store, NULL);
		rt_clists_clear(s);
		rt_stale_clear(s);
		free(s->addr);
		if (s->wbuf)
			OPENSSL_cleanse(s->wbuf, s->wcap);
		free(s->wbuf);
		free(s->rbuf);
		free(s->pbuf);
	}
	free(rt->socks);
	free(rt);
}

/* Builds the "set ssl cert" command: CRs and blank lines removed (an empty line ends a payload). */
static char *build_set_cmd(const char *path, const char *pem, size_t len, size_t *outlen)
{
	size_t cap = strlen(path) + len + 32, o, i, ls;
	char *cmd = malloc(cap);
	int blank = 1;

	if (!cmd)
		return NULL;
	o = (size_t)snprintf(cmd, cap, "set ssl cert %s <<\n", path);
	ls = o;
	for (i = 0; i < len; i++) {
		char c = pem[i];
		if (c == '\0') {
			OPENSSL_cleanse(cmd, cap);
			free(cmd);
			return NULL;
		}
		if (c == '\r')
			continue;
		if (c == '\n') {
			if (blank)
				o = ls;	/* drop the whitespace-only line */
			else
				cmd[o++] = '\n';
			ls = o;
			blank = 1;
			continue;
		}
		if (c != ' ' && c != '\t')
			blank = 0;
		cmd[o++] = c;
	}
	if (blank)
		o = ls;
	else
		cmd[o++] = '\n';
	if (o == (size_t)strlen("set ssl cert  <<\n") + strlen(path)) {
		free(cmd);	/* nothing left */
		return NULL;
	}
	cmd[o++] = '\n';
	cmd[o] = '\0';
	*outlen = o;
	return cmd;
}

static struct rt_op *op_new(struct rt *rt, enum rt_op_type type, const char *path, const char *crt_list)
{
	struct rt_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->rt = rt;
	op->type = type;
	if ((path && !(op->path = strdup(path))) || (crt_list && !(op->crt_list = strdup(crt_list)))) {
		rt_op_free(op);
		return NULL;
	}
	return op;
}

/* Queues <op> on every socket; frees it and returns -1 on failure. */
static int op_dispatch(struct rt *rt, struct rt_op *op)
{
	struct rt_job **jobs = calloc(rt->nsocks, sizeof(*jobs));
	size_t i;
	int rc = -1;

	for (i = 0; jobs && i < rt->nsocks; i++)
		if (!(jobs[i] = calloc(1, sizeof(**jobs))))
			goto out;
	if (!jobs)
		goto out;
	op->pending = rt->nsocks;
	for (i = 0; i < rt->nsocks; i++) {
		rt_sock_enqueue(&rt->socks[i], op, jobs[i]);
		jobs[i] = NULL;
	}
	rc = 0;
out:
	for (i = 0; jobs && i < rt->nsocks; i++)
		free(jobs[i]);
	free(jobs);
	if (rc == -1)
		rt_op_free(op);
	return rc;
}

int rt_push_cert(struct rt *rt, const char *cert_path, const char *crt_list, const char *pem, size_t len,
		 void (*done)(void *arg, int ok, const char *err), void *arg)
{
	struct rt_op *op;

	if (!rt || rt->closing || !rt->nsocks || !rt_valid_name(cert_path) ||
	    (crt_list && !rt_valid_name(crt_list)) || !pem)
		return -1;
	op = op_new(rt, RT_OP_PUSH, cert_path, crt_list);
	if (!op)
		return -1;
	op->cmd = build_set_cmd(cert_path, pem, len, &op->cmdlen);
	if (!op->cmd) {
		log_warn("runtime: path=%s refused: empty or binary PEM", cert_path);
		rt_op_free(op);
		return -1;
	}
	op->done = done;
	op->arg = arg;
	return op_dispatch(rt, op);
}

int rt_remove_cert(struct rt *rt, const char *cert_path, const char *crt_list,
		   void (*done)(void *arg, int ok, const char *err), void *arg)
{
	struct rt_op *op;

	if (!rt || rt->closing || !rt->nsocks || !rt_valid_name(cert_path) ||
	    (crt_list && !rt_valid_name(crt_list)))
		return -1;
	op = op_new(rt, RT_OP_REMOVE, cert_path, crt_list);
	if (!op)
		return -1;
	op->done = done;
	op->arg = arg;
	return op_dispatch(rt, op);
}

int rt_list_certs(struct rt *rt, size_t idx,
		  void (*cb)(void *arg, int ok, const char *const *names, size_t n), void *arg)
{
	struct rt_op *op;
	struct rt_job *j;

	if (!rt || rt->closing || idx >= rt->nsocks)
		return -1;
	op = op_new(rt, RT_OP_LIST, NULL, NULL);
	if (!op)
		return -1;
	op->list_cb = cb;
	op->arg = arg;
	j = calloc(1, sizeof(*j));
	if (!j) {
		rt_op_free(op);
		return -1;
	}
	op->pending = 1;
	rt_sock_enqueue(&rt->socks[idx], op, j);
	return 0;
}

size_t rt_count(const struct rt *rt)
{
	return rt ? rt->nsocks : 0;
}

int rt_socket_up(const struct rt *rt, size_t idx)
{
	return rt && idx < rt->nsocks && rt->socks[idx].phase == RT_PH_READY;
}

const char *rt_socket_addr(const struct rt *rt, size_t idx)
{
	return rt && idx < rt->nsocks ? rt->socks[idx].addr : NULL;
}

void rt_stats(const struct rt *rt, struct rt_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (rt)
		*out = rt->stats;
}
