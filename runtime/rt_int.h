/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to runtime/: the objects shared by runtime.c (API, helpers),
 * rt_job.c (job queue and the push/remove/list state machine) and rt_conn.c
 * (connection, prompt-mode I/O, init, keepalive and reload probe). */
#ifndef ACME_SPOA_RT_INT_H
#define ACME_SPOA_RT_INT_H

#include <stddef.h>
#include <sys/socket.h>

#include <ev.h>

#include "lib/hmap.h"
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

/* The HAProxy line a socket talks to, from "show info" (rt_line.c, the one
 * place where lines differ). */
struct rt_line {
	const char *name;		/* the oldest version of the line: "2.6", "3.0" */
	int major, minor;
	/* "set ssl cert" revealing someone else's transaction on another name:
	 * the text before that name, and the characters that end it */
	const char *foreign_prefix, *foreign_end;
	char version[48];		/* as "show info" says, e.g. "3.0.11-346f58f" */
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
	int cancelled;		/* a socket's job was cut off by rt_free */
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
	int locked_retries;	/* "Operations on certificates are currently locked!" */
	ev_tstamp deadline;	/* while its socket is not ready */
	char *foreign;		/* someone else's transaction to abort */
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
	int held;		/* jobs wait for the kick timer: another client held the lock */
	enum rt_cmd cur;
	char cur_text[600];	/* command line in flight, for errors */
	ev_tstamp last_tx;
	struct rt_job *qhead, *qtail;
	struct hmap store;	/* names in HAProxy's certificate store */
	struct rt_clist *clists;
	char **stale;
	size_t nstale, stale_i;
	struct rt_ident main_id, known_id;
	struct rt_line line;	/* of the process on the current connection */
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

/* runtime.c: helpers */
/* <body>/<blen> on one line, spaces collapsed, into <dst> ("(empty reply)" if nothing). */
void rt_fmt_reply(char *dst, size_t dlen, const char *body, size_t blen);
/* 1 when <p> can go on a CLI line as one word (no spaces, ';', '\\', controls). */
int rt_valid_name(const char *p);
int rt_set_has(const struct hmap *m, const char *k);
void rt_set_add(struct hmap *m, const char *k);
/* Value of "<key>: <int>" in show info output <txt>, or -1. */
long long rt_info_field(const char *txt, const char *key);
/* Process identity from show info <txt>; -1 when it has no Pid. */
int rt_parse_ident(const char *txt, ev_tstamp now, struct rt_ident *id);
int rt_ident_differs(const struct rt_ident *a, const struct rt_ident *b);

/* rt_line.c: lines */
/* The line of the HAProxy whose "show info" is <info>, into <out>; -1 with
 * <err> set when it has no Version or is older than every known line. */
int rt_line_from_info(const char *info, struct rt_line *out, char *err, size_t errlen);
/* The name of another client's transaction that reply <body> to our "set ssl
 * cert" reveals on line <l> (malloc'd), or NULL when it reveals none. */
char *rt_line_foreign(const struct rt_line *l, const char *body);

/* rt_job.c: jobs */
void rt_op_free(struct rt_op *op);
/* Appends job <j> (zeroed, ownership taken) for <op> to the queue of <s>. */
void rt_sock_enqueue(struct rt_sock *s, struct rt_op *op, struct rt_job *j);
/* Removes <j> from its queue and reports it; <err> is NULL on success. */
void rt_job_finish(struct rt_sock *s, struct rt_job *j, const char *err);
void rt_job_failf(struct rt_sock *s, struct rt_job *j, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Sends the next command of the head job, or finishes jobs that need none. */
void rt_job_run(struct rt_sock *s);
/* Handles the reply <body> (NUL-terminated, <blen> bytes) to the head job's command. */
void rt_job_reply(struct rt_sock *s, char *body, size_t blen);
/* Arms the timer failing queued jobs of a socket that is not ready. */
void rt_queue_arm_deadlines(struct rt_sock *s);
void rt_clists_clear(struct rt_sock *s);
void rt_cb_qtimer(struct ev_loop *loop, ev_timer *w, int revents);
void rt_cb_kick(struct ev_loop *loop, ev_timer *w, int revents);

/* rt_conn.c: connection */
/* Queues one command (<txt>, ending with "\n") and arms the reply timeout.
 * Returns 0, or -1 when the connection was closed meanwhile. */
int rt_send_cmd(struct rt_sock *s, enum rt_cmd kind, const char *txt, size_t len);
/* Closes the connection and schedules a new one <retry_in> seconds later.
 * The job in progress is run again from its start unless <penalize> and it
 * already used its attempts; queued jobs get a deadline. */
void rt_sock_close(struct rt_sock *s, const char *why, int penalize, double retry_in);
void rt_stale_clear(struct rt_sock *s);
void rt_cb_read(struct ev_loop *loop, ev_io *w, int revents);
void rt_cb_write(struct ev_loop *loop, ev_io *w, int revents);
void rt_cb_retry(struct ev_loop *loop, ev_timer *w, int revents);
void rt_cb_timeout(struct ev_loop *loop, ev_timer *w, int revents);
void rt_cb_probe_io(struct ev_loop *loop, ev_io *w, int revents);
void rt_cb_probe_timeout(struct ev_loop *loop, ev_timer *w, int revents);
void rt_cb_poll(struct ev_loop *loop, ev_timer *w, int revents);

#endif
