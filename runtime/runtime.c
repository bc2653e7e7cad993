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
	char last_err[256];
};

struct rt {
	struct ev_loop *loop;
	struct rt_sock *socks;
	size_t nsocks;
	void (*on_reload)(void *arg, size_t idx);
	void *arg;
	double timeout, poll;
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
			job_failf(s, j, "not connected after %.1fs: %s", s->rt->timeout,
				  s->last_err[0] ? s->last_err : "connecting");
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

static int sock_enqueue(struct rt_sock *s, struct rt_op *op)
{
	struct rt_job *j = calloc(1, sizeof(*j));

	if (!j)
		return -1;
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
	return 0;
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
		if (!strstr(body, "deleted") && !strstr(body, "can't be found")) {
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
