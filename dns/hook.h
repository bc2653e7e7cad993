/* SPDX-License-Identifier: Apache-2.0 */
/* Runs a hook program on the loop without waiting for it: posix_spawn, its
 * stdout and stderr read through a pipe (kept up to DNS_HOOK_OUTPUT_MAX
 * bytes, for the error), a child watcher for its exit and a timer that kills
 * it (SIGKILL) when it runs too long. Child watchers need libev's default
 * loop. */
#ifndef ACME_SPOA_DNS_HOOK_H
#define ACME_SPOA_DNS_HOOK_H

#include <stddef.h>

#define DNS_HOOK_OUTPUT_MAX 2048

struct ev_loop;
struct dns_hook;

/* A hook's environment: PATH (a default one when the agent has none),
 * HOME, LANG, LC_ALL, TZ, TMPDIR and the <nnames> variables <names>, each
 * only when the agent has it, copied now as "NAME=value". Nothing else of
 * the agent's environment (its admin token, {env://} secrets) reaches a hook.
 * Returns a NULL-terminated array for dns_hook_env_free(), or NULL. */
char **dns_hook_env_new(const char *const *names, size_t nnames);

/* Cleanses and frees what dns_hook_env_new() returned. Accepts NULL. */
void dns_hook_env_free(char **env);

/* Starts <path> with arguments <argv> (argv[0] included, NULL-terminated)
 * and the environment <envp> (NULL: an empty one), every signal at its
 * default disposition and none blocked. <done>(<arg>, ok, err) runs once on the loop,
 * never inside this call: <ok> when it exited 0; otherwise <err> says how it
 * ended (status, signal, timeout after <timeout> seconds) followed by what it
 * printed. Returns the run (for dns_hook_abort()), or NULL with <err> set
 * when it could not start. */
struct dns_hook *dns_hook_run(struct ev_loop *loop, const char *path, char *const argv[],
			      char *const envp[], double timeout,
			      void (*done)(void *arg, int ok, const char *err), void *arg, char *err,
			      size_t errlen);

/* Kills the hook (SIGKILL) if still running and frees <h> without calling
 * its callback. Accepts NULL. */
void dns_hook_abort(struct dns_hook *h);

#endif
