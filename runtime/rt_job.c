/* SPDX-License-Identifier: Apache-2.0 */
/* Job queue of a runtime socket and the push / remove / list state machine. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "lib/hmap.h"
#include "lib/log.h"
#include "runtime/rt_int.h"

/* ---- operations and jobs ---- */

void rt_op_free(struct rt_op *op)
{
	if (!op)
		return;
	free(op->path);
	free(op->crt_list);
	if (op->cmd)
		OPENSSL_cleanse(op->cmd, op->cmdlen);	/* a private key */
	free(op->cmd);
	free(op);
}

const char rt_err_shutdown[] = "cut off: the agent is shutting down";

/* A job of <op> ended on <s>. A job rt_free() cuts off is no failure of
 * HAProxy's: it marks <op> cancelled, and an op that nothing else failed
 * reports rt_err_shutdown, counted as neither pushed nor failed. */
static void op_job_done(struct rt_op *op, struct rt_sock *s, int ok, const char *err)
{
	struct rt *rt = op->rt;
	size_t l;

	if (!ok && rt->closing) {
		op->cancelled = 1;
	} else if (!ok) {
		l = strlen(op->err);
		snprintf(op->err + l, sizeof(op->err) - l, "%s%s: %s", l ? "; " : "", s->addr, err);
		op->failed = 1;
	}
	if (--op->pending > 0)
		return;
	if (op->type == RT_OP_PUSH) {
		if (op->failed)
			rt->stats.pushes_failed++;
		else if (!op->cancelled)
			rt->stats.pushes_ok++;
	}
	if (op->type == RT_OP_LIST) {
		if (op->list_cb)
			op->list_cb(op->arg, 0, NULL, 0);
	} else if (op->done) {
		op->done(op->arg, !op->failed && !op->cancelled,
			 op->failed ? op->err : op->cancelled ? rt_err_shutdown : NULL);
	}
	rt_op_free(op);
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
void rt_job_finish(struct rt_sock *s, struct rt_job *j, const char *err)
{
	struct rt_op *op = j->op;

	job_unlink(s, j);
	if (err && s->rt->closing)
		log_debug("runtime: sock=%s path=%s cut off: %s", s->addr,
			  op->path ? op->path : "-", err);
	else if (err)
		log_warn("runtime: sock=%s path=%s failed: %s", s->addr,
			 op->path ? op->path : "-", err);
	else
		log_debug("runtime: sock=%s path=%s done", s->addr, op->path ? op->path : "-");
	op_job_done(op, s, err == NULL, err);
	free(j->foreign);
	free(j);
}

void rt_job_failf(struct rt_sock *s, struct rt_job *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(j->err, sizeof(j->err), fmt, ap);
	va_end(ap);
	rt_job_finish(s, j, j->err);
}

void rt_queue_arm_deadlines(struct rt_sock *s)
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

void rt_cb_qtimer(struct ev_loop *loop, ev_timer *w, int revents)
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
				rt_job_failf(s, j, "not ready after %.1fs: no answer to \"%s\"",
					  s->rt->timeout, s->cur_text);
			else
				rt_job_failf(s, j, "not connected after %.1fs: %s", s->rt->timeout,
					  s->last_err[0] ? s->last_err : "connect in progress");
			if (gen != s->gen)	/* a callback changed the socket */
				return;
			next = s->qhead;	/* the callback may have queued or removed jobs */
		}
	}
	rt_queue_arm_deadlines(s);
}

void rt_cb_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rt_sock *s = w->data;

	s->held = 0;
	ev_timer_set(&s->kick, 0., 0.);	/* back to "next loop iteration" */
	rt_job_run(s);
}

/* Appends job <j> (zeroed, ownership taken) for <op> to the queue of <s>. */
void rt_sock_enqueue(struct rt_sock *s, struct rt_op *op, struct rt_job *j)
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
		rt_queue_arm_deadlines(s);
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

void rt_clists_clear(struct rt_sock *s)
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
			rt_set_add(&c->entries, line);
	}
	c->next = s->clists;
	s->clists = c;
	return 0;
}

/* ---- the job state machine ---- */

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
	return rt_send_cmd(s, RT_CMD_JOB, line, (size_t)n);
}

/* Sends the next command of the head job, or finishes jobs that need none. */
void rt_job_run(struct rt_sock *s)
{
	struct rt_job *j;
	struct rt_op *op;

	while (s->phase == RT_PH_READY && !s->busy && !s->held && (j = s->qhead)) {
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
			if (rt_set_has(&s->store, op->path)) {
				j->step = RT_ST_SET;
				continue;
			}
			send_line(s, "new ssl cert %s\n", op->path);
			return;
		case RT_ST_SET:
			rt_send_cmd(s, RT_CMD_JOB, op->cmd, op->cmdlen);
			return;
		case RT_ST_ABORT_FOREIGN:
			send_line(s, "abort ssl cert %s\n", j->foreign);
			return;
		case RT_ST_COMMIT:
			send_line(s, "commit ssl cert %s\n", op->path);
			return;
		case RT_ST_ADD: {
			struct rt_clist *c = op->crt_list ? clist_get(s, op->crt_list) : NULL;
			if (!op->crt_list || (c && rt_set_has(&c->entries, op->path))) {
				rt_job_finish(s, j, NULL);
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
			rt_job_failf(s, j, "internal error: step %d", (int)j->step);
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
		rt_fmt_reply(j->err, sizeof(j->err), body, strlen(body));
		rt_job_finish(s, j, j->err);
		return;
	}
	hmap_clear(&s->store, NULL);
	hmap_init(&s->store);
	for (line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#' || line[0] == '*' || !line[0])
			continue;
		rt_set_add(&s->store, line);
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			tmp = realloc(names, cap * sizeof(*names));
			if (!tmp) {
				free(names);
				rt_job_failf(s, j, "out of memory");
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
	rt_job_finish(s, j, NULL);
}

#define RT_LOCKED_RETRIES 200	/* about a minute of backing off at most */

/* Handles the reply <body> (NUL-terminated, <blen> bytes) to the head job's command. */
void rt_job_reply(struct rt_sock *s, char *body, size_t blen)
{
	struct rt_job *j = s->qhead;
	struct rt_op *op;
	char rep[400], want[600];
	char *foreign;

	if (!j)
		return;
	op = j->op;
	rt_fmt_reply(rep, sizeof(rep), body, blen);
	log_debug("runtime: sock=%s cmd=\"%s\" reply=\"%s\"", s->addr, s->cur_text, rep);
	/* Another runtime client (an operator's "show ssl cert", another agent)
	 * holds HAProxy's certificate lock for a moment: send the same command
	 * again a little later rather than failing the push. */
	if (strstr(body, "currently locked") && j->locked_retries < RT_LOCKED_RETRIES) {
		j->locked_retries++;
		if (j->step == RT_ST_LIST || j->step == RT_ST_CLIST)
			j->step = RT_ST_START;
		s->held = 1;
		ev_timer_stop(s->rt->loop, &s->kick);
		ev_timer_set(&s->kick, 0.02 * (j->locked_retries < 25 ? j->locked_retries : 25), 0.);
		ev_timer_start(s->rt->loop, &s->kick);
		return;
	}
	switch (j->step) {
	case RT_ST_LIST:
		job_list_reply(s, j, body);
		return;
	case RT_ST_CLIST:
		if (clist_load(s, op->crt_list, body) == -1) {
			rt_job_failf(s, j, "show ssl crt-list %s: %s", op->crt_list, rep);
			return;
		}
		j->step = RT_ST_NEW;
		return;
	case RT_ST_NEW:
		if (!strstr(body, "New empty certificate store") && !strstr(body, "already exists")) {
			rt_job_failf(s, j, "new ssl cert %s: %s", op->path, rep);
			return;
		}
		rt_set_add(&s->store, op->path);
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
		/* someone else's transaction on another name is open: 2.6 loaded
		 * our payload into it, 3.0+ refused (rt_line.c says which form) */
		foreign = j->did_foreign ? NULL : rt_line_foreign(&s->line, body);
		if (foreign) {
			free(j->foreign);
			j->foreign = foreign;
			log_warn("runtime: sock=%s path=%s found foreign transaction name=%s, aborting it",
				 s->addr, op->path, j->foreign ? j->foreign : "?");
			j->did_foreign = 1;
			j->step = rt_valid_name(j->foreign) ? RT_ST_ABORT_FOREIGN : RT_ST_ABORT_FAIL;
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
		rt_job_finish(s, j, j->err);
		return;
	case RT_ST_ADD:
		if (!strstr(body, "Success!") && !strstr(body, "already exists")) {
			rt_job_failf(s, j, "add ssl crt-list %s %s: %s", op->crt_list, op->path, rep);
			return;
		}
		if (clist_get(s, op->crt_list))
			rt_set_add(&clist_get(s, op->crt_list)->entries, op->path);
		rt_job_finish(s, j, NULL);
		return;
	case RT_ST_DEL_LIST:
		if (!strstr(body, "' deleted in crtlist") && !strstr(body, "can't be found") &&
		    !(strstr(body, "certificate '") && strstr(body, "does not exist"))) {
			rt_job_failf(s, j, "del ssl crt-list %s %s: %s", op->crt_list, op->path, rep);
			return;
		}
		if (clist_get(s, op->crt_list))
			hmap_del(&clist_get(s, op->crt_list)->entries, op->path);
		j->step = RT_ST_DEL_CERT;
		return;
	case RT_ST_DEL_CERT:
		if (!(strncmp(body, "Certificate '", 13) == 0 && strstr(body, "' deleted!")) &&
		    !strstr(body, "doesn't exist")) {
			rt_job_failf(s, j, "del ssl cert %s: %s", op->path, rep);
			return;
		}
		hmap_del(&s->store, op->path);
		rt_job_finish(s, j, NULL);
		return;
	default:
		rt_job_failf(s, j, "unexpected reply: %s", rep);
		return;
	}
}
