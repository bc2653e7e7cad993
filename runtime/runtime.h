/* SPDX-License-Identifier: Apache-2.0 */
/* HAProxy runtime API client (the stats socket, "level admin"): pushes
 * certificates into HAProxy's in-memory store without reloads and notices
 * when HAProxy reloads or restarts.
 *
 * One persistent connection per configured socket, in prompt mode, one
 * command at a time. On HAProxy 2.6 there is one certificate transaction per
 * process, so a socket runs one job (push/remove/list) at a time from start
 * to end: set -> commit is never interleaved with another set. A periodic
 * short-lived probe connection ("show info") detects that the socket is now
 * served by another process (master-worker reload keeps the old worker
 * answering on an existing connection), and the main connection is then
 * re-opened on the new process. All callbacks run on the loop thread, never
 * from inside the rt_* call that queued the work.
 *
 * A job cut by a lost connection is run again from its start after the
 * reconnection (once; a second loss fails it). A stale transaction found at
 * connect ("*name" in "show ssl cert") is aborted, and one opened by someone
 * else meanwhile is aborted when our "set ssl cert" reveals it (2.6 would
 * otherwise load our payload into it). Two configured addresses that reach
 * the same HAProxy process would share its one transaction: do not. */
#ifndef ACME_SPOA_RUNTIME_H
#define ACME_SPOA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct rt;	/* all configured runtime sockets */

struct rt_stats {
	uint64_t pushes_ok;	/* rt_push_cert calls that succeeded on every socket */
	uint64_t pushes_failed;	/* rt_push_cert calls that failed on some socket */
	uint64_t commands;	/* commands sent, every socket, internal ones included */
	uint64_t reconnects;	/* connections established after a socket's first one */
	uint64_t reloads_seen;	/* on_reload calls */
};

/* Creates the client for <naddrs> sockets <addrs> ("unix:/path", "/path",
 * "host:port", "[v6]:port"; host names are resolved here, once, blocking) and
 * starts connecting on <loop>. <on_reload> (may be NULL) is called with <arg>
 * and the socket's index when that socket is found attached to a different
 * HAProxy process (Pid or Start_time_sec changed) than the one seen before,
 * once the new connection is ready to take commands; it is not called for a
 * socket's first connection. Returns NULL with <err> set on a bad address or
 * allocation failure. */
struct rt *rt_new(struct ev_loop *loop, const char *const *addrs, size_t naddrs,
		  void (*on_reload)(void *arg, size_t sock_idx), void *arg,
		  char *err, size_t errlen);

/* Sets the reply timeout (a command unanswered that long fails and the
 * connection is re-opened; work queued on a socket that is not connected fails
 * that long after it was queued or after the connection was lost) and the poll
 * interval (reload probe, and a "show info" keepalive on an idle connection,
 * for HAProxy versions that apply "stats timeout" to prompt-mode sessions).
 * Defaults 10000 ms and 3000 ms. Values <= 0 keep the current setting. */
void rt_set_timeouts(struct rt *rt, int reply_timeout_ms, int poll_ms);

/* Stops every watcher, closes the sockets and frees everything. Work still
 * queued completes first, synchronously, with ok=0 and err rt_err_shutdown
 * (list callbacks with ok=0, n=0); those callbacks must not call rt_* on <rt>.
 * Accepts NULL. */
void rt_free(struct rt *rt);

/* Pushes one certificate bundle <pem>/<len> (leaf + chain + key, PEM; blank
 * lines and CRs are removed since an empty line ends a CLI payload) named
 * <cert_path> (the path HAProxy knows it by, e.g. /etc/haproxy/certs/a.pem)
 * into every socket: "new ssl cert" unless HAProxy holds the name, "set ssl
 * cert <path> <<" with the payload, "commit ssl cert", then "add ssl crt-list
 * <crt_list> <path>" unless that crt-list has it (skipped when <crt_list> is
 * NULL). <done> (may be NULL) runs once on the loop thread when every socket
 * finished: ok=1 if all succeeded, else <err> names each failing socket, the
 * command and HAProxy's reply (valid during the call only). The PEM is copied.
 * Returns 0, or -1 (and <done> is never called) on a path with spaces or CLI
 * separators, an empty PEM, no socket, or allocation failure. */
int rt_push_cert(struct rt *rt, const char *cert_path, const char *crt_list,
		 const char *pem, size_t len,
		 void (*done)(void *arg, int ok, const char *err), void *arg);

/* The <err> (this very pointer) of a push or removal that rt_free() cut off
 * before any socket failed it: the agent is stopping, HAProxy refused nothing;
 * such a push counts in neither pushes_ok nor pushes_failed. */
extern const char rt_err_shutdown[];

/* Removes a certificate from every socket: "del ssl crt-list <crt_list>
 * <path>" (skipped when <crt_list> is NULL) then "del ssl cert <path>"; an
 * entry or certificate already absent counts as success. <done> as for
 * rt_push_cert. Returns 0 or -1 (as rt_push_cert). */
int rt_remove_cert(struct rt *rt, const char *cert_path, const char *crt_list,
		   void (*done)(void *arg, int ok, const char *err), void *arg);

/* Lists the committed certificate names HAProxy holds on socket <idx> ("show
 * ssl cert", open transactions left out). <cb> runs once on the loop thread;
 * <names> (n entries) is valid during the call only; ok=0 and n=0 on failure.
 * Returns 0, or -1 on a bad index or allocation failure. */
int rt_list_certs(struct rt *rt, size_t idx,
		  void (*cb)(void *arg, int ok, const char *const *names, size_t n),
		  void *arg);

/* Number of configured sockets. */
size_t rt_count(const struct rt *rt);

/* 1 when socket <idx> is connected, initialized and answering, else 0. */
int rt_socket_up(const struct rt *rt, size_t idx);

/* The configured address of socket <idx> (as given to rt_new), or NULL. */
const char *rt_socket_addr(const struct rt *rt, size_t idx);

/* Copies the counters into <out>. */
void rt_stats(const struct rt *rt, struct rt_stats *out);

/* Exposed for tests: recognizes one complete prompt-mode reply in <buf>/<len>
 * (optional "+ " payload prompts, the output, then "\n> "). Returns 1 and sets
 * <body>/<blen> (trailing newlines removed) and <used> (bytes consumed), or 0
 * when more bytes are needed. */
int rt_reply_parse(const char *buf, size_t len, const char **body, size_t *blen, size_t *used);

#endif
