/* HAProxy runtime API client. See runtime.h for the contract.
 *
 * Framing (checked against HAProxy 2.6): after "prompt", every reply is the
 * command's output followed by "\n> "; a command with a "<<" payload first
 * gets one "+ " prompt per payload line. Output may hold empty lines (e.g.
 * "del ssl cert" errors), so the end of a reply is the trailing "\n> " seen
 * while exactly one command is outstanding. */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <ev.h>

#include "core/hmap.h"
#include "core/log.h"
#include "runtime/runtime.h"

#define RT_BACKOFF_MIN	0.1
#define RT_BACKOFF_MAX	2.0
#define RT_MAX_ATTEMPTS	2		/* a job cut by a lost connection is run again once */
#define RT_REPLY_MAX	(8u << 20)	/* "show ssl cert" with many thousand names fits */
#define RT_PRESENT	((void *)1)	/* value stored in name sets */

enum rt_phase { RT_PH_DOWN = 0, RT_PH_CONNECTING, RT_PH_INIT, RT_PH_READY, RT_PH__MAX };

enum rt_cmd {
	RT_CMD_NONE = 0, RT_CMD_PROMPT, RT_CMD_INFO_INIT, RT_CMD_LIST_INIT,
	RT_CMD_ABORT_STALE, RT_CMD_KEEPALIVE, RT_CMD_JOB, RT_CMD__MAX
};

enum rt_op_type { RT_OP_PUSH = 0, RT_OP_REMOVE, RT_OP_LIST, RT_OP__MAX };

/* Job steps: the command to send next, or (while the socket is busy) the one
 * whose reply is awaited. */
enum rt_step {
	RT_ST_START = 0, RT_ST_CLIST, RT_ST_NEW, RT_ST_SET, RT_ST_ABORT_FOREIGN,
	RT_ST_COMMIT, RT_ST_ADD, RT_ST_ABORT_FAIL, RT_ST_DEL_LIST, RT_ST_DEL_CERT,
	RT_ST_LIST, RT_ST__MAX
};

struct rt_ident {
	long long pid;
	long long start;	/* Start_time_sec, or now - Uptime_sec */
	int exact;		/* start came from Start_time_sec */
};

struct rt_op {			/* one rt_push_cert / rt_remove_cert / rt_list_certs call */
	struct rt *rt;
	enum rt_op_type type;
	char *path, *crt_list;
	char *cmd;		/* "set ssl cert <path> <<\n<payload>\n" for pushes */
	size_t cmdlen;
	size_t pending;		/* socket jobs not finished */
	int failed;
	char err[1024];
	void (*done)(void *arg, int ok, const char *err);
	void (*list_cb)(void *arg, int ok, const char *const *names, size_t n);
	void *arg;
};

struct rt_job {
	struct rt_job *next;
	struct rt_op *op;
	enum rt_step step;
	int attempts, did_new, did_foreign;
	ev_tstamp deadline;	/* while its socket is not ready */
	char foreign[512];	/* someone else's transaction to abort */
	char err[600];
};

struct rt_clist {		/* what one crt-list holds on the current connection */
	struct rt_clist *next;
	struct hmap entries;
	char name[];
};

struct rt_sock {
	struct rt *rt;
	size_t idx;
	char *addr;
	struct sockaddr_storage sa;
	socklen_t salen;
	int fd, pfd;
	enum rt_phase phase;
	unsigned gen;		/* bumped on every close */
	ev_io rio, wio, pio;
	ev_timer tmo, retry, qtimer, kick, ptmo;
	char *wbuf, *rbuf, *pbuf;
	size_t wlen, woff, wcap, rlen, rcap, plen, pcap;
	int busy, pconnecting;
	enum rt_cmd cur;
	char cur_text[600];	/* command line in flight, for errors */
	ev_tstamp last_tx;
	struct rt_job *qhead, *qtail;
	struct hmap store;	/* names in HAProxy's certificate store */
	struct rt_clist *clists;
	char **stale;
	size_t nstale, stale_i;
	struct rt_ident main_id, known_id;
	int have_known, reload_pending, ever_connected, down_logged;
	double backoff;
	char last_err[768];
};

struct rt {
	struct ev_loop *loop;
	struct rt_sock *socks;
	size_t nsocks;
	void (*on_reload)(void *arg, size_t idx);
	void *arg;
	double timeout, poll;
	int closing;		/* in rt_free */
	ev_timer poll_timer;
	struct rt_stats stats;
};

static void sock_connect(struct rt_sock *s);
static void sock_close(struct rt_sock *s, const char *why, int penalize, double retry_in);
static void job_run(struct rt_sock *s);

/* ---- small helpers ---- */

static void fmt_reply(char *dst, size_t dlen, const char *body, size_t blen)
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

static int valid_name(const char *p)
{
	size_t n = 0;

	if (!p || !*p)
		return 0;
	for (; *p; p++, n++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == ';' || *p == '\\')
			return 0;
	return n < 500;
}

static int set_has(const struct hmap *m, const char *k)
{
	return hmap_get(m, k) != NULL;
}

static void set_add(struct hmap *m, const char *k)
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
static long long info_field(const char *txt, const char *key)
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

static int parse_ident(const char *txt, ev_tstamp now, struct rt_ident *id)
{
	long long up;

	id->pid = info_field(txt, "Pid");
	id->start = info_field(txt, "Start_time_sec");
	id->exact = id->start > 0;
	if (!id->exact) {
		up = info_field(txt, "Uptime_sec");
		if (up < 0)
			return -1;
		id->start = (long long)now - up;
	}
	return id->pid > 0 ? 0 : -1;
}

static int ident_differs(const struct rt_ident *a, const struct rt_ident *b)
{
	long long d = a->start - b->start;

	if (a->pid != b->pid)
		return 1;
	if (d < 0)
		d = -d;
	/* an estimate from Uptime_sec may be off by the rounding of two clocks */
	return d > ((a->exact && b->exact) ? 0 : 2);
}

/* ---- operations and jobs ---- */

static void op_free(struct rt_op *op)
{
	if (!op)
		return;
	free(op->path);
	free(op->crt_list);
	free(op->cmd);
	free(op);
}

static void op_job_done(struct rt_op *op, struct rt_sock *s, int ok, const char *err)
{
	struct rt *rt = op->rt;
	size_t l;

	if (!ok) {
		l = strlen(op->err);
		snprintf(op->err + l, sizeof(op->err) - l, "%s%s: %s", l ? "; " : "", s->addr, err);
		op->failed = 1;
	}
	if (--op->pending > 0)
		return;
	if (op->type == RT_OP_PUSH) {
		if (op->failed)
			rt->stats.pushes_failed++;
		else
			rt->stats.pushes_ok++;
	}
	if (op->type == RT_OP_LIST) {
		if (op->list_cb)
			op->list_cb(op->arg, 0, NULL, 0);
	} else if (op->done) {
		op->done(op->arg, !op->failed, op->failed ? op->err : NULL);
	}
	op_free(op);
}

static void job_unlink(struct rt_sock *s, struct rt_job *j)
{
	struct rt_job **pp, *prev = NULL;

	for (pp = &s->qhead; *pp; prev = *pp, pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			if (s->qtail == j)
				s->qtail = prev;
			return;
		}
	}
}

/* Removes <j> from its queue and reports it; <err> is NULL on success. */
static void job_finish(struct rt_sock *s, struct rt_job *j, const char *err)
{
	struct rt_op *op = j->op;

	job_unlink(s, j);
	if (err)
		log_warn("runtime: sock=%s path=%s failed: %s", s->addr,
			 op->path ? op->path : "-", err);
	else
		log_debug("runtime: sock=%s path=%s done", s->addr, op->path ? op->path : "-");
	op_job_done(op, s, err == NULL, err);
	free(j);
}

static void job_failf(struct rt_sock *s, struct rt_job *j, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void job_failf(struct rt_sock *s, struct rt_job *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(j->err, sizeof(j->err), fmt, ap);
	va_end(ap);
	job_finish(s, j, j->err);
}

static void queue_arm_deadlines(struct rt_sock *s)
{
	ev_tstamp now = ev_now(s->rt->loop), first = 0;
	struct rt_job *j;

	for (j = s->qhead; j; j = j->next)
		if (j->deadline > 0 && (first == 0 || j->deadline < first))
			first = j->deadline;
	ev_timer_stop(s->rt->loop, &s->qtimer);
	if (first > 0) {
		ev_timer_set(&s->qtimer, first > now ? first - now : 0., 0.);
		ev_timer_start(s->rt->loop, &s->qtimer);
	}
}

static void cb_sock_qtimer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rt_sock *s = w->data;
	ev_tstamp now = ev_now(loop);
	struct rt_job *j, *next;
	unsigned gen = s->gen;

	if (s->phase == RT_PH_READY)
		return;
	for (j = s->qhead; j; j = next) {
		next = j->next;
		if (j->deadline > 0 && j->deadline <= now + 0.001) {
			if (s->phase == RT_PH_INIT)
				job_failf(s, j, "not ready after %.1fs: no answer to \"%s\"",
					  s->rt->timeout, s->cur_text);
			else
				job_failf(s, j, "not connected after %.1fs: %s", s->rt->timeout,
					  s->last_err[0] ? s->last_err : "connect in progress");
			if (gen != s->gen)	/* a callback changed the socket */
				return;
			next = s->qhead;	/* the callback may have queued or removed jobs */
		}
	}
	queue_arm_deadlines(s);
}

static void cb_sock_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
	job_run(w->data);
}

/* Appends job <j> (zeroed, ownership taken) for <op> to the queue of <s>. */
static void sock_enqueue(struct rt_sock *s, struct rt_op *op, struct rt_job *j)
{
	j->op = op;
	if (s->phase != RT_PH_READY)
		j->deadline = ev_now(s->rt->loop) + s->rt->timeout;
	if (s->qtail)
		s->qtail->next = j;
	else
		s->qhead = j;
	s->qtail = j;
	if (s->phase == RT_PH_READY) {
		/* never run (and complete) work inside the caller's rt_* call */
		if (!ev_is_active(&s->kick))
			ev_timer_start(s->rt->loop, &s->kick);
	} else if (!ev_is_active(&s->qtimer)) {
		queue_arm_deadlines(s);
	}
}

/* ---- crt-list cache ---- */

static struct rt_clist *clist_get(struct rt_sock *s, const char *name)
{
	struct rt_clist *c;

	for (c = s->clists; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static void clists_clear(struct rt_sock *s)
{
	struct rt_clist *c;

	while ((c = s->clists)) {
		s->clists = c->next;
		hmap_clear(&c->entries, NULL);
		free(c);
	}
}

/* Loads "show ssl crt-list <name>" output <body>; -1 when it is an error. */
static int clist_load(struct rt_sock *s, const char *name, char *body)
{
	struct rt_clist *c;
	char *line, *save = NULL, *sp;

	if (strncmp(body, "# ", 2) != 0)
		return -1;
	c = calloc(1, sizeof(*c) + strlen(name) + 1);
	if (!c || hmap_init(&c->entries) == -1) {
		free(c);
		return -1;
	}
	strcpy(c->name, name);
	for (line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#')
			continue;
		sp = strpbrk(line, " \t");
		if (sp)
			*sp = '\0';
		if (*line)
			set_add(&c->entries, line);
	}
	c->next = s->clists;
	s->clists = c;
	return 0;
}

/* ---- the job state machine ---- */

static int send_cmd(struct rt_sock *s, enum rt_cmd kind, const char *txt, size_t len);

static int send_line(struct rt_sock *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int send_line(struct rt_sock *s, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	return send_cmd(s, RT_CMD_JOB, line, (size_t)n);
}

/* Sends the next command of the head job, or finishes jobs that need none. */
static void job_run(struct rt_sock *s)
{
	struct rt_job *j;
	struct rt_op *op;

	while (s->phase == RT_PH_READY && !s->busy && (j = s->qhead)) {
		op = j->op;
		switch (j->step) {
		case RT_ST_START:
			if (op->type == RT_OP_LIST) {
				j->step = RT_ST_LIST;
				send_line(s, "show ssl cert\n");
				return;
			}
			if (op->type == RT_OP_REMOVE) {
				j->step = op->crt_list ? RT_ST_DEL_LIST : RT_ST_DEL_CERT;
				continue;
			}
			if (op->crt_list && !clist_get(s, op->crt_list)) {
				j->step = RT_ST_CLIST;
				send_line(s, "show ssl crt-list %s\n", op->crt_list);
				return;
			}
			j->step = RT_ST_NEW;
			continue;
		case RT_ST_NEW:
			if (set_has(&s->store, op->path)) {
				j->step = RT_ST_SET;
				continue;
			}
			send_line(s, "new ssl cert %s\n", op->path);
			return;
		case RT_ST_SET:
			send_cmd(s, RT_CMD_JOB, op->cmd, op->cmdlen);
			return;
		case RT_ST_ABORT_FOREIGN:
			send_line(s, "abort ssl cert %s\n", j->foreign);
			return;
		case RT_ST_COMMIT:
			send_line(s, "commit ssl cert %s\n", op->path);
			return;
		case RT_ST_ADD: {
			struct rt_clist *c = op->crt_list ? clist_get(s, op->crt_list) : NULL;
			if (!op->crt_list || (c && set_has(&c->entries, op->path))) {
				job_finish(s, j, NULL);
				continue;
			}
			send_line(s, "add ssl crt-list %s %s\n", op->crt_list, op->path);
			return;
		}
		case RT_ST_ABORT_FAIL:
			send_line(s, "abort ssl cert %s\n", op->path);
			return;
		case RT_ST_DEL_LIST:
			send_line(s, "del ssl crt-list %s %s\n", op->crt_list, op->path);
			return;
		case RT_ST_DEL_CERT:
			send_line(s, "del ssl cert %s\n", op->path);
			return;
		default:
			job_failf(s, j, "internal error: step %d", (int)j->step);
			continue;
		}
	}
}

static void job_list_reply(struct rt_sock *s, struct rt_job *j, char *body)
{
	const char **names = NULL, **tmp;
	size_t n = 0, cap = 0;
	char *line, *save = NULL;
	struct rt_op *op = j->op;

	if (body[0] && body[0] != '#') {
		fmt_reply(j->err, sizeof(j->err), body, strlen(body));
		job_finish(s, j, j->err);
		return;
	}
	hmap_clear(&s->store, NULL);
	hmap_init(&s->store);
	for (line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#' || line[0] == '*' || !line[0])
			continue;
		set_add(&s->store, line);
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			tmp = realloc(names, cap * sizeof(*names));
			if (!tmp) {
				free(names);
				job_failf(s, j, "out of memory");
				return;
			}
			names = tmp;
		}
		names[n++] = line;
	}
	if (op->list_cb)
		op->list_cb(op->arg, 1, names, n);
	op->list_cb = NULL;	/* called: op_job_done must not call it again */
	free(names);
	job_finish(s, j, NULL);
}

/* Handles the reply <body> (NUL-terminated, <blen> bytes) to the head job's command. */
static void job_reply(struct rt_sock *s, char *body, size_t blen)
{
	struct rt_job *j = s->qhead;
	struct rt_op *op;
	char rep[400], want[600];
	const char *p;

	if (!j)
		return;
	op = j->op;
	fmt_reply(rep, sizeof(rep), body, blen);
	log_debug("runtime: sock=%s cmd=\"%s\" reply=\"%s\"", s->addr, s->cur_text, rep);
	switch (j->step) {
	case RT_ST_LIST:
		job_list_reply(s, j, body);
		return;
	case RT_ST_CLIST:
		if (clist_load(s, op->crt_list, body) == -1) {
			job_failf(s, j, "show ssl crt-list %s: %s", op->crt_list, rep);
			return;
		}
		j->step = RT_ST_NEW;
		return;
	case RT_ST_NEW:
		if (!strstr(body, "New empty certificate store") && !strstr(body, "already exists")) {
			job_failf(s, j, "new ssl cert %s: %s", op->path, rep);
			return;
		}
		set_add(&s->store, op->path);
		j->did_new = 1;
		j->step = RT_ST_SET;
		return;
	case RT_ST_SET:
		snprintf(want, sizeof(want), " for certificate %s!", op->path);
		if ((strstr(body, "Transaction created") || strstr(body, "Transaction updated")) &&
		    strstr(body, want)) {
			j->step = RT_ST_COMMIT;
			return;
		}
		/* 2.6 silently loads our payload into another name's open transaction */
		p = strstr(body, "Transaction updated for certificate ");
		if (p && !j->did_foreign) {
			p += strlen("Transaction updated for certificate ");
			snprintf(j->foreign, sizeof(j->foreign), "%.*s", (int)strcspn(p, "!\n"), p);
			log_warn("runtime: sock=%s path=%s found foreign transaction name=%s, aborting it",
				 s->addr, op->path, j->foreign);
			j->did_foreign = 1;
			j->step = valid_name(j->foreign) ? RT_ST_ABORT_FOREIGN : RT_ST_ABORT_FAIL;
			if (j->step == RT_ST_ABORT_FAIL)
				snprintf(j->err, sizeof(j->err), "set ssl cert %s: %s", op->path, rep);
			return;
		}
		if (strstr(body, "not referenced by the configuration") && !j->did_new) {
			hmap_del(&s->store, op->path);	/* our cache was stale */
			j->step = RT_ST_NEW;
			return;
		}
		snprintf(j->err, sizeof(j->err), "set ssl cert %s: %s", op->path, rep);
		j->step = RT_ST_ABORT_FAIL;
		return;
	case RT_ST_ABORT_FOREIGN:
		j->step = RT_ST_SET;
		return;
	case RT_ST_COMMIT:
		if (strstr(body, "Success!")) {
			j->step = RT_ST_ADD;
			return;
		}
		snprintf(j->err, sizeof(j->err), "commit ssl cert %s: %s", op->path, rep);
		j->step = RT_ST_ABORT_FAIL;
		return;
	case RT_ST_ABORT_FAIL:
		job_finish(s, j, j->err);
		return;
	case RT_ST_ADD:
		if (!strstr(body, "Success!") && !strstr(body, "already exists")) {
			job_failf(s, j, "add ssl crt-list %s %s: %s", op->crt_list, op->path, rep);
			return;
		}
		if (clist_get(s, op->crt_list))
			set_add(&clist_get(s, op->crt_list)->entries, op->path);
		job_finish(s, j, NULL);
		return;
	case RT_ST_DEL_LIST:
		if (!strstr(body, "deleted") && !strstr(body, "can't be found") &&
		    !(strstr(body, "certificate '") && strstr(body, "does not exist"))) {
			job_failf(s, j, "del ssl crt-list %s %s: %s", op->crt_list, op->path, rep);
			return;
		}
		if (clist_get(s, op->crt_list))
			hmap_del(&clist_get(s, op->crt_list)->entries, op->path);
		j->step = RT_ST_DEL_CERT;
		return;
	case RT_ST_DEL_CERT:
		if (!strstr(body, "deleted!") && !strstr(body, "doesn't exist")) {
			job_failf(s, j, "del ssl cert %s: %s", op->path, rep);
			return;
		}
		hmap_del(&s->store, op->path);
		job_finish(s, j, NULL);
		return;
	default:
		job_failf(s, j, "unexpected reply: %s", rep);
		return;
	}
}

/* ---- connection ---- */

static int grow(char **buf, size_t *cap, size_t need)
{
	size_t ncap = *cap ? *cap : 4096;
	char *nb;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	nb = realloc(*buf, ncap);
	if (!nb)
		return -1;
	*buf = nb;
	*cap = ncap;
	return 0;
}

static void sock_flush(struct rt_sock *s)
{
	ssize_t n;

	while (s->woff < s->wlen) {
		n = send(s->fd, s->wbuf + s->woff, s->wlen - s->woff, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_start(s->rt->loop, &s->wio);
				return;
			}
			snprintf(s->last_err, sizeof(s->last_err), "send: %s", strerror(errno));
			sock_close(s, s->last_err, 1, s->backoff);
			return;
		}
		s->woff += (size_t)n;
	}
	s->woff = s->wlen = 0;
	ev_io_stop(s->rt->loop, &s->wio);
}

/* Queues one command (<txt>, ending with "\n") and arms the reply timeout.
 * Returns 0, or -1 when the connection was closed meanwhile. */
static int send_cmd(struct rt_sock *s, enum rt_cmd kind, const char *txt, size_t len)
{
	unsigned gen = s->gen;

	if (grow(&s->wbuf, &s->wcap, s->wlen + len) == -1) {
		sock_close(s, "out of memory", 0, s->backoff);
		return -1;
	}
	memcpy(s->wbuf + s->wlen, txt, len);
	s->wlen += len;
	s->busy = 1;
	s->cur = kind;
	snprintf(s->cur_text, sizeof(s->cur_text), "%.*s", (int)strcspn(txt, "\n"), txt);
	s->last_tx = ev_now(s->rt->loop);
	s->rt->stats.commands++;
	ev_timer_stop(s->rt->loop, &s->tmo);
	ev_timer_set(&s->tmo, s->rt->timeout, 0.);
	ev_timer_start(s->rt->loop, &s->tmo);
	sock_flush(s);
	return gen == s->gen ? 0 : -1;
}

static void stale_clear(struct rt_sock *s)
{
	size_t i;

	for (i = 0; i < s->nstale; i++)
		free(s->stale[i]);
	free(s->stale);
	s->stale = NULL;
	s->nstale = s->stale_i = 0;
}

static void probe_stop(struct rt_sock *s)
{
	ev_io_stop(s->rt->loop, &s->pio);
	ev_timer_stop(s->rt->loop, &s->ptmo);
	if (s->pfd != -1)
		close(s->pfd);
	s->pfd = -1;
	s->plen = 0;
}

/* Closes the connection and schedules a new one <retry_in> seconds later.
 * The job in progress is run again from its start unless <penalize> and it
 * already used its attempts; queued jobs get a deadline. */
static void sock_close(struct rt_sock *s, const char *why, int penalize, double retry_in)
{
	struct ev_loop *loop = s->rt->loop;
	struct rt_job *j;
	char cmd[sizeof(s->cur_text)];
	int was_busy = s->busy;

	if ((s->phase == RT_PH_READY || s->phase == RT_PH_INIT) && !s->rt->closing)
		log_warn("runtime: sock=%s connection lost: %s", s->addr, why);
	memcpy(cmd, s->cur_text, sizeof(cmd));
	ev_io_stop(loop, &s->rio);
	ev_io_stop(loop, &s->wio);
	ev_timer_stop(loop, &s->tmo);
	ev_timer_stop(loop, &s->kick);
	ev_timer_stop(loop, &s->retry);
	probe_stop(s);
	if (s->fd != -1)
		close(s->fd);
	s->fd = -1;
	s->gen++;
	s->phase = RT_PH_DOWN;
	s->busy = 0;
	s->cur = RT_CMD_NONE;
	s->rlen = s->wlen = s->woff = 0;
	hmap_clear(&s->store, NULL);
	hmap_init(&s->store);
	clists_clear(s);
	stale_clear(s);
	for (j = s->qhead; j; j = j->next)
		if (j->deadline == 0)
			j->deadline = ev_now(loop) + s->rt->timeout;
	ev_timer_set(&s->retry, retry_in, 0.);
	ev_timer_start(loop, &s->retry);
	j = s->qhead;
	if (j && j->step != RT_ST_START) {
		j->step = RT_ST_START;
		j->did_new = j->did_foreign = 0;
		if (penalize && ++j->attempts >= RT_MAX_ATTEMPTS) {
			job_failf(s, j, "connection lost%s%s%s: %s", was_busy ? " during \"" : "",
				  was_busy ? cmd : "", was_busy ? "\"" : "", why);
			if (s->phase != RT_PH_DOWN)
				return;
		}
	}
	queue_arm_deadlines(s);
}

static void sock_ready(struct rt_sock *s)
{
	struct rt *rt = s->rt;
	struct rt_job *j;

	s->phase = RT_PH_READY;
	s->backoff = RT_BACKOFF_MIN;
	s->down_logged = 0;
	s->last_err[0] = '\0';
	ev_timer_stop(rt->loop, &s->qtimer);
	for (j = s->qhead; j; j = j->next)
		j->deadline = 0;
	log_info("runtime: sock=%s ready pid=%lld certs=%zu", s->addr, s->main_id.pid, s->store.count);
	job_run(s);
	if (s->reload_pending && s->phase == RT_PH_READY) {
		s->reload_pending = 0;
		rt->stats.reloads_seen++;
		log_info("runtime: sock=%s HAProxy reloaded (pid=%lld)", s->addr, s->main_id.pid);
		if (rt->on_reload)
			rt->on_reload(rt->arg, s->idx);
	}
}

static void init_next_stale(struct rt_sock *s)
{
	char line[600];

	if (s->stale_i < s->nstale) {
		log_warn("runtime: sock=%s aborting stale transaction name=%s", s->addr, s->stale[s->stale_i]);
		snprintf(line, sizeof(line), "abort ssl cert %s\n", s->stale[s->stale_i++]);
		send_cmd(s, RT_CMD_ABORT_STALE, line, strlen(line));
		return;
	}
	stale_clear(s);
	sock_ready(s);
}

static int init_list(struct rt_sock *s, char *body)
{
	char *line, *save = NULL, **tmp;

	if (body[0] && body[0] != '#')
		return -1;
	for (line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#' || !line[0])
			continue;
		if (line[0] != '*') {
			set_add(&s->store, line);
			continue;
		}
		tmp = realloc(s->stale, (s->nstale + 1) * sizeof(*tmp));
		if (!tmp || !valid_name(line + 1) || !(tmp[s->nstale] = strdup(line + 1))) {
			if (tmp)
				s->stale = tmp;
			continue;
		}
		s->stale = tmp;
		s->nstale++;
	}
	return 0;
}

/* Dispatches the reply <body> (NUL-terminated) to the command in flight. */
static void sock_reply(struct rt_sock *s, enum rt_cmd kind, char *body, size_t blen)
{
	struct rt_ident id;
	char rep[200];

	switch (kind) {
	case RT_CMD_PROMPT:
		send_cmd(s, RT_CMD_INFO_INIT, "show info\n", 10);
		return;
	case RT_CMD_INFO_INIT:
		if (parse_ident(body, ev_now(s->rt->loop), &id) == -1) {
			fmt_reply(rep, sizeof(rep), body, blen);
			snprintf(s->last_err, sizeof(s->last_err), "show info: unexpected reply: %s", rep);
			sock_close(s, s->last_err, 0, RT_BACKOFF_MAX);
			return;
		}
		s->main_id = id;
		if (s->have_known && ident_differs(&s->known_id, &id))
			s->reload_pending = 1;
		s->known_id = id;
		s->have_known = 1;
		send_cmd(s, RT_CMD_LIST_INIT, "show ssl cert\n", 14);
		return;
	case RT_CMD_LIST_INIT:
		if (init_list(s, body) == -1) {
			fmt_reply(rep, sizeof(rep), body, blen);
			snprintf(s->last_err, sizeof(s->last_err), "show ssl cert: %s (needs \"level admin\")", rep);
			log_err("runtime: sock=%s %s", s->addr, s->last_err);
			sock_close(s, s->last_err, 0, RT_BACKOFF_MAX);
			return;
		}
		init_next_stale(s);
		return;
	case RT_CMD_ABORT_STALE:
		fmt_reply(rep, sizeof(rep), body, blen);
		log_info("runtime: sock=%s abort: %s", s->addr, rep);
		init_next_stale(s);
		return;
	case RT_CMD_KEEPALIVE:
		if (parse_ident(body, ev_now(s->rt->loop), &id) == 0 && id.pid == s->main_id.pid)
			s->main_id = id;
		job_run(s);
		return;
	case RT_CMD_JOB:
		job_reply(s, body, blen);
		job_run(s);
		return;
	default:
		return;
	}
}

static void cb_sock_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct rt_sock *s = w->data;
	const char *body;
	size_t blen, used;
	unsigned gen = s->gen;
	enum rt_cmd kind;
	ssize_t n;

	if (grow(&s->rbuf, &s->rcap, s->rlen + 65536) == -1) {
		sock_close(s, "out of memory", 1, s->backoff);
		return;
	}
	n = read(s->fd, s->rbuf + s->rlen, s->rcap - s->rlen - 1);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		snprintf(s->last_err, sizeof(s->last_err), "%s",
			 n == 0 ? "connection closed by HAProxy" : strerror(errno));
		sock_close(s, s->last_err, 1, s->backoff);
		return;
	}
	if (n == -1)
		return;
	s->rlen += (size_t)n;
	if (s->rlen > RT_REPLY_MAX) {
		sock_close(s, "reply too large", 1, s->backoff);
		return;
	}
	while (gen == s->gen && rt_reply_parse(s->rbuf, s->rlen, &body, &blen, &used)) {
		if (!s->busy) {
			sock_close(s, "unexpected data from HAProxy", 0, s->backoff);
			return;
		}
		kind = s->cur;
		s->busy = 0;
		s->cur = RT_CMD_NONE;
		ev_timer_stop(loop, &s->tmo);
		((char *)body)[blen] = '\0';	/* within the consumed reply */
		sock_reply(s, kind, (char *)body, blen);
		if (gen != s->gen)
			return;
		memmove(s->rbuf, s->rbuf + used, s->rlen - used);
		s->rlen -= used;
	}
}

static void cb_sock_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct rt_sock *s = w->data;
	int e = 0;
	socklen_t el = sizeof(e);

	if (s->phase != RT_PH_CONNECTING) {
		sock_flush(s);
		return;
	}
	ev_io_stop(loop, &s->wio);
	ev_timer_stop(loop, &s->tmo);
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &el) == -1)
		e = errno;
	if (e) {
		snprintf(s->last_err, sizeof(s->last_err), "connect: %s", strerror(e));
		s->backoff = s->backoff * 2 > RT_BACKOFF_MAX ? RT_BACKOFF_MAX : s->backoff * 2;
		sock_close(s, s->last_err, 0, s->backoff);
		return;
	}
	s->phase = RT_PH_INIT;
	if (s->ever_connected)
		s->rt->stats.reconnects++;
	s->ever_connected = 1;
	ev_io_set(&s->rio, s->fd, EV_READ);
	ev_io_start(loop, &s->rio);
	send_cmd(s, RT_CMD_PROMPT, "prompt\n", 7);
}

static void sock_connect(struct rt_sock *s)
{
	struct ev_loop *loop = s->rt->loop;

	s->fd = socket(s->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd != -1 && (connect(s->fd, (struct sockaddr *)&s->sa, s->salen) == 0 ||
			    errno == EINPROGRESS)) {
		s->phase = RT_PH_CONNECTING;
		ev_io_set(&s->wio, s->fd, EV_WRITE);
		ev_io_start(loop, &s->wio);
		ev_timer_set(&s->tmo, s->rt->timeout, 0.);
		ev_timer_start(loop, &s->tmo);
		return;
	}
	snprintf(s->last_err, sizeof(s->last_err), "connect: %s", strerror(errno));
	if (!s->down_logged)
		log_warn("runtime: sock=%s %s (retrying)", s->addr, s->last_err);
	else
		log_debug("runtime: sock=%s %s", s->addr, s->last_err);
	s->down_logged = 1;
	s->backoff = s->backoff * 2 > RT_BACKOFF_MAX ? RT_BACKOFF_MAX : s->backoff * 2;
	sock_close(s, s->last_err, 0, s->backoff);
}

static void cb_sock_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	sock_connect(w->data);
}

static void cb_sock_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rt_sock *s = w->data;
	struct rt_job *j = s->qhead;
	unsigned gen = s->gen;
	char why[700];

	if (s->phase == RT_PH_CONNECTING)
		snprintf(why, sizeof(why), "connect: timeout after %.1fs", s->rt->timeout);
	else
		snprintf(why, sizeof(why), "timeout after %.1fs waiting for the reply to \"%s\"",
			 s->rt->timeout, s->cur_text);
	snprintf(s->last_err, sizeof(s->last_err), "%s", why);
	if (s->cur == RT_CMD_JOB && j) {
		job_failf(s, j, "%s", why);
		if (gen != s->gen)
			return;
	}
	sock_close(s, why, 0, s->backoff);
}

/* ---- reload probe: a short non-interactive "show info" on a new connection ---- */

static void cb_probe_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rt_sock *s = w->data;

	log_debug("runtime: sock=%s probe timed out", s->addr);
	probe_stop(s);
}

static void cb_probe_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct rt_sock *s = w->data;
	struct rt_ident id;
	int e = 0;
	socklen_t el = sizeof(e);
	ssize_t n;

	if (s->pconnecting) {
		if (getsockopt(s->pfd, SOL_SOCKET, SO_ERROR, &e, &el) == -1 || e ||
		    send(s->pfd, "show info\n", 10, MSG_NOSIGNAL) != 10) {
			probe_stop(s);
			return;
		}
		s->pconnecting = 0;
		ev_io_stop(loop, &s->pio);
		ev_io_set(&s->pio, s->pfd, EV_READ);
		ev_io_start(loop, &s->pio);
		return;
	}
	if (grow(&s->pbuf, &s->pcap, s->plen + 4096) == -1) {
		probe_stop(s);
		return;
	}
	n = read(s->pfd, s->pbuf + s->plen, s->pcap - s->plen - 1);
	if (n > 0 && s->plen + (size_t)n < 65536) {
		s->plen += (size_t)n;
		return;
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	s->pbuf[s->plen] = '\0';
	log_debug("runtime: sock=%s probe n=%zd len=%zu pid=%lld", s->addr, n, s->plen,
		  info_field(s->pbuf, "Pid"));
	if (n == 0 && s->phase == RT_PH_READY &&
	    parse_ident(s->pbuf, ev_now(loop), &id) == 0 && ident_differs(&s->main_id, &id)) {
		log_info("runtime: sock=%s now served by pid=%lld (connection on pid=%lld): reconnecting",
			 s->addr, id.pid, s->main_id.pid);
		sock_close(s, "HAProxy reloaded", 0, 0.);	/* stops the probe too */
		return;
	}
	probe_stop(s);
}

static void probe_start(struct rt_sock *s)
{
	struct ev_loop *loop = s->rt->loop;

	if (s->pfd != -1)
		return;
	s->pfd = socket(s->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->pfd == -1)
		return;
	if (connect(s->pfd, (struct sockaddr *)&s->sa, s->salen) == -1 && errno != EINPROGRESS) {
		probe_stop(s);
		return;
	}
	s->plen = 0;
	s->pconnecting = 1;
	ev_io_set(&s->pio, s->pfd, EV_WRITE);
	ev_io_start(loop, &s->pio);
	ev_timer_set(&s->ptmo, s->rt->timeout, 0.);
	ev_timer_start(loop, &s->ptmo);
}

static void cb_rt_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rt *rt = w->data;
	struct rt_sock *s;
	size_t i;

	for (i = 0; i < rt->nsocks; i++) {
		s = &rt->socks[i];
		if (s->phase != RT_PH_READY)
			continue;
		/* keeps the connection under HAProxy's "stats timeout" */
		if (!s->busy && !s->qhead && ev_now(loop) - s->last_tx >= rt->poll * 0.9)
			send_cmd(s, RT_CMD_KEEPALIVE, "show info\n", 10);
		if (s->phase == RT_PH_READY)
			probe_start(s);
	}
}

/* ---- public API ---- */

static int parse_addr(struct rt_sock *s, const char *addr, char *err, size_t errlen)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&s->sa;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	const char *path = NULL, *colon;
	char host[256];
	int rc;

	if (strncmp(addr, "unix:", 5) == 0)
		path = addr + 5;
	else if (addr[0] == '/')
		path = addr;
	if (path) {
		if (!*path || strlen(path) >= sizeof(sun->sun_path)) {
			snprintf(err, errlen, "runtime: %s: bad unix socket path", addr);
			return -1;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, path);
		s->salen = sizeof(*sun);
		return 0;
	}
	colon = strrchr(addr, ':');
	if (!colon || colon == addr || !colon[1] || (size_t)(colon - addr) >= sizeof(host)) {
		snprintf(err, errlen, "runtime: %s: expected unix:/path or host:port", addr);
		return -1;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, errlen, "runtime: %s: %s", addr, gai_strerror(rc));
		return -1;
	}
	memcpy(&s->sa, res->ai_addr, res->ai_addrlen);
	s->salen = res->ai_addrlen;
	freeaddrinfo(res);
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
		ev_io_init(&s->rio, cb_sock_read, -1, EV_READ);
		ev_io_init(&s->wio, cb_sock_write, -1, EV_WRITE);
		ev_io_init(&s->pio, cb_probe_io, -1, EV_READ);
		ev_timer_init(&s->tmo, cb_sock_timeout, 0., 0.);
		ev_timer_init(&s->retry, cb_sock_retry, 0., 0.);
		ev_timer_init(&s->qtimer, cb_sock_qtimer, 0., 0.);
		ev_timer_init(&s->kick, cb_sock_kick, 0., 0.);
		ev_timer_init(&s->ptmo, cb_probe_timeout, 0., 0.);
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
	ev_timer_init(&rt->poll_timer, cb_rt_poll, rt->poll, rt->poll);
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
		sock_close(s, "shutting down", 0, 0.);
		ev_timer_stop(rt->loop, &s->retry);
		ev_timer_stop(rt->loop, &s->qtimer);
		s->phase = RT_PH__MAX;	/* nothing restarts from a callback below */
		while ((j = s->qhead))
			job_failf(s, j, "shutting down");
	}
	for (i = 0; i < rt->nsocks; i++) {
		s = &rt->socks[i];
		hmap_clear(&s->store, NULL);
		clists_clear(s);
		stale_clear(s);
		free(s->addr);
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
		op_free(op);
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
		sock_enqueue(&rt->socks[i], op, jobs[i]);
		jobs[i] = NULL;
	}
	rc = 0;
out:
	for (i = 0; jobs && i < rt->nsocks; i++)
		free(jobs[i]);
	free(jobs);
	if (rc == -1)
		op_free(op);
	return rc;
}

int rt_push_cert(struct rt *rt, const char *cert_path, const char *crt_list, const char *pem, size_t len,
		 void (*done)(void *arg, int ok, const char *err), void *arg)
{
	struct rt_op *op;

	if (!rt || !rt->nsocks || !valid_name(cert_path) || (crt_list && !valid_name(crt_list)) || !pem)
		return -1;
	op = op_new(rt, RT_OP_PUSH, cert_path, crt_list);
	if (!op)
		return -1;
	op->cmd = build_set_cmd(cert_path, pem, len, &op->cmdlen);
	if (!op->cmd) {
		log_warn("runtime: path=%s refused: empty or binary PEM", cert_path);
		op_free(op);
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

	if (!rt || !rt->nsocks || !valid_name(cert_path) || (crt_list && !valid_name(crt_list)))
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

	if (!rt || idx >= rt->nsocks)
		return -1;
	op = op_new(rt, RT_OP_LIST, NULL, NULL);
	if (!op)
		return -1;
	op->list_cb = cb;
	op->arg = arg;
	j = calloc(1, sizeof(*j));
	if (!j) {
		op_free(op);
		return -1;
	}
	op->pending = 1;
	sock_enqueue(&rt->socks[idx], op, j);
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
