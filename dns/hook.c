/* SPDX-License-Identifier: Apache-2.0 */
/* Hook programs on the loop (hook.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "dns/hook.h"

struct dns_hook {
	struct ev_loop *loop;
	pid_t pid;
	int fd;				/* read end of the output pipe, -1 once closed */
	ev_io io;
	ev_child child;
	ev_timer timer;
	double timeout;
	int timed_out;
	char out[DNS_HOOK_OUTPUT_MAX];
	size_t outlen;
	void (*done)(void *arg, int ok, const char *err);
	void *arg;
};

static void dns_hook_close(struct dns_hook *h)
{
	ev_io_stop(h->loop, &h->io);
	ev_child_stop(h->loop, &h->child);
	ev_timer_stop(h->loop, &h->timer);
	if (h->fd != -1)
		close(h->fd);
	h->fd = -1;
}

/* Reads what the pipe holds now; 1 at end of file. */
static int dns_hook_read(struct dns_hook *h)
{
	char buf[1024];
	ssize_t n;

	for (;;) {
		n = read(h->fd, buf, sizeof(buf));
		if (n > 0) {
			size_t room = sizeof(h->out) - 1 - h->outlen;
			size_t k = (size_t)n < room ? (size_t)n : room;

			memcpy(h->out + h->outlen, buf, k);
			h->outlen += k;
			continue;
		}
		if (n == 0)
			return 1;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : 1;
	}
}

static void cb_dns_hook_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dns_hook *h = w->data;

	if (dns_hook_read(h)) {
		ev_io_stop(loop, &h->io);
		close(h->fd);
		h->fd = -1;
	}
}

/* The output as one line: control characters become spaces. */
static void dns_hook_output(struct dns_hook *h, char *out, size_t outlen)
{
	size_t i, n = h->outlen;

	while (n && (h->out[n - 1] == '\n' || h->out[n - 1] == ' ' || h->out[n - 1] == '\r'))
		n--;
	for (i = 0; i < n && i + 1 < outlen; i++)
		out[i] = (unsigned char)h->out[i] < 0x20 || h->out[i] == 0x7f ? ' ' : h->out[i];
	out[i] = '\0';
}

static void cb_dns_hook_child(struct ev_loop *loop, ev_child *w, int revents)
{
	struct dns_hook *h = w->data;
	char err[DNS_HOOK_OUTPUT_MAX + 256], out[DNS_HOOK_OUTPUT_MAX];
	int st = w->rstatus, ok = 0;

	if (h->fd != -1)
		dns_hook_read(h);	/* a child of the hook may hold the pipe: no more waiting */
	dns_hook_close(h);
	dns_hook_output(h, out, sizeof(out));
	if (h->timed_out)
		snprintf(err, sizeof(err), "killed after %g s (timeout)", h->timeout);
	else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		ok = 1;
	else if (WIFEXITED(st))
		snprintf(err, sizeof(err), "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(err, sizeof(err), "killed by signal %d", WTERMSIG(st));
	else
		snprintf(err, sizeof(err), "ended with status 0x%x", st);
	if (!ok && out[0])
		snprintf(err + strlen(err), sizeof(err) - strlen(err), ": %s", out);
	h->done(h->arg, ok, ok ? NULL : err);
	free(h);
}

static void cb_dns_hook_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dns_hook *h = w->data;

	h->timed_out = 1;
	kill(h->pid, SIGKILL);	/* the child watcher reports it */
}

/* The variables every hook gets when the agent has them: what a shell
 * script needs to find programs, its locale and time zone, nothing that
 * could hold a secret. */
static const char *const dns_hook_env_base[] = { "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", NULL };

static int dns_hook_env_add(char **env, size_t *n, const char *name)
{
	const char *v = getenv(name);
	size_t i, len = strlen(name);

	if (!v)
		return 0;
	for (i = 0; i < *n; i++)
		if (strncmp(env[i], name, len) == 0 && env[i][len] == '=')
			return 0;	/* listed twice */
	if (!(env[*n] = malloc(len + strlen(v) + 2)))
		return -1;
	sprintf(env[(*n)++], "%s=%s", name, v);
	return 0;
}

char **dns_hook_env_new(const char *const *names, size_t nnames)
{
	size_t nbase = sizeof(dns_hook_env_base) / sizeof(dns_hook_env_base[0]) - 1, n = 0, i;
	char **env = calloc(nbase + nnames + 2, sizeof(*env));

	if (!env)
		return NULL;
	for (i = 0; i < nbase; i++)
		if (dns_hook_env_add(env, &n, dns_hook_env_base[i]) == -1)
			goto fail;
	for (i = 0; i < nnames; i++)
		if (dns_hook_env_add(env, &n, names[i]) == -1)
			goto fail;
	/* without PATH, execvp-style look-ups in the hook would use the shell's guess */
	if (!getenv("PATH") && !(env[n++] = strdup("PATH=/usr/local/bin:/usr/bin:/bin")))
		goto fail;
	return env;
fail:
	dns_hook_env_free(env);
	return NULL;
}

void dns_hook_env_free(char **env)
{
	size_t i;

	if (!env)
		return;
	for (i = 0; env[i]; i++) {
		OPENSSL_cleanse(env[i], strlen(env[i]));	/* a listed variable may be a provider's token */
		free(env[i]);
	}
	free(env);
}

struct dns_hook *dns_hook_run(struct ev_loop *loop, const char *path, char *const argv[],
			      char *const envp[], double timeout,
			      void (*done)(void *arg, int ok, const char *err), void *arg, char *err,
			      size_t errlen)
{
	static char *const no_env[] = { NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t all, none;
	struct dns_hook *h = calloc(1, sizeof(*h));
	int p[2] = { -1, -1 }, rc, fa_ok = 0, attr_ok = 0;

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->fd = -1;
	if (pipe2(p, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	if (posix_spawn_file_actions_init(&fa) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	fa_ok = 1;
	/* stdin from /dev/null; stdout and stderr into the pipe (dup2 clears CLOEXEC) */
	if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
	    posix_spawn_file_actions_adddup2(&fa, p[1], 1) != 0 ||
	    posix_spawn_file_actions_adddup2(&fa, p[1], 2) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* the agent ignores SIGPIPE and libev may block signals: the hook
	 * starts with default dispositions and nothing blocked, as from a shell */
	sigfillset(&all);
	sigemptyset(&none);
	if (posix_spawnattr_init(&attr) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	attr_ok = 1;
	if (posix_spawnattr_setsigdefault(&attr, &all) != 0 ||
	    posix_spawnattr_setsigmask(&attr, &none) != 0 ||
	    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK) != 0) {
		snprintf(err, errlen, "cannot set the hook's signals");
		goto fail;
	}
	rc = posix_spawn(&h->pid, path, &fa, &attr, argv, envp ? envp : no_env);
	if (rc != 0) {
		snprintf(err, errlen, "cannot run %s: %s", path, strerror(rc));
		goto fail;
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(p[1]);
	h->fd = p[0];
	fcntl(h->fd, F_SETFL, fcntl(h->fd, F_GETFL) | O_NONBLOCK);
	h->loop = loop;
	h->timeout = timeout;
	h->done = done;
	h->arg = arg;
	ev_io_init(&h->io, cb_dns_hook_io, h->fd, EV_READ);
	h->io.data = h;
	ev_io_start(loop, &h->io);
	ev_child_init(&h->child, cb_dns_hook_child, h->pid, 0);
	h->child.data = h;
	ev_child_start(loop, &h->child);
	ev_timer_init(&h->timer, cb_dns_hook_timer, timeout, 0.);
	h->timer.data = h;
	ev_timer_start(loop, &h->timer);
	return h;
fail:
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_ok)
		posix_spawnattr_destroy(&attr);
	if (p[0] != -1)
		close(p[0]);
	if (p[1] != -1)
		close(p[1]);
	free(h);
	return NULL;
}

void dns_hook_abort(struct dns_hook *h)
{
	if (!h)
		return;
	kill(h->pid, SIGKILL);	/* libev's SIGCHLD handler reaps it */
	dns_hook_close(h);
	free(h);
}
