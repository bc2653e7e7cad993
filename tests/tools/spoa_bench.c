/* SPDX-License-Identifier: Apache-2.0 */
/* spoa_bench: the agent's SPOA server (spoa/) with a trivial handler table,
 * for the SPOA section of make bench.
 *
 *   spoa_bench [--listen HOST:PORT] [--defer N]
 *
 * "acme-sni" answers sess.seen=true as the real handler does when it knows
 * the name. With --defer N, one message in N is deferred and completed on
 * the next loop turn (the cost of the deferred path). Prints "port=N" once
 * listening, and the server's counters on SIGINT or SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "lib/log.h"
#include "spoa/spoa.h"

#define BENCH_DEFER_MAX 4096

struct bench {
	struct ev_loop *loop;
	unsigned long defer_every, calls;
	struct spoa_deferred *pending[BENCH_DEFER_MAX];
	size_t npending;
	ev_idle idle;
};

static void cb_bench_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct bench *b = w->data;
	size_t i;

	for (i = 0; i < b->npending; i++) {
		struct spoa_reply *r = spoa_deferred_reply(b->pending[i]);

		if (r)
			spoa_reply_set_bool(r, SPOP_SCOPE_SESS, "seen", 1);
		spoa_deferred_done(b->pending[i]);
	}
	b->npending = 0;
	ev_idle_stop(loop, w);
}

static void h_sni(void *ctx, const struct spop_arg *args, size_t nargs, struct spoa_reply *r)
{
	struct bench *b = ctx;
	struct spoa_deferred *d;

	if (b->defer_every && ++b->calls % b->defer_every == 0 && b->npending < BENCH_DEFER_MAX &&
	    (d = spoa_reply_defer(r)) != NULL) {
		b->pending[b->npending++] = d;
		ev_idle_start(b->loop, &b->idle);
		return;
	}
	if (nargs >= 1 && args[0].val.type == SPOP_T_STR)
		spoa_reply_set_bool(r, SPOP_SCOPE_SESS, "seen", 1);
}

static const struct spoa_handler bench_handlers[] = {
	{ "acme-sni", h_sni },
	{ NULL, NULL },
};

static void cb_bench_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
	static struct bench b;
	struct spoa_server_conf conf = { .listen = "127.0.0.1:0", .handlers = bench_handlers };
	struct spoa_server *srv;
	struct spoa_stats st;
	ev_signal sint, sterm;
	char err[256];
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
			conf.listen = argv[++i];
		} else if (!strcmp(argv[i], "--defer") && i + 1 < argc) {
			b.defer_every = strtoul(argv[++i], NULL, 10);
		} else {
			fprintf(stderr, "usage: spoa_bench [--listen HOST:PORT] [--defer N]\n");
			return 2;
		}
	}
	log_level_max = LOG_LVL_WARN;
	b.loop = EV_DEFAULT;
	ev_idle_init(&b.idle, cb_bench_idle);
	b.idle.data = &b;
	conf.ctx = &b;
	srv = spoa_server_new(b.loop, &conf, err, sizeof(err));
	if (!srv) {
		fprintf(stderr, "spoa_bench: %s\n", err);
		return 1;
	}
	printf("port=%d\n", spoa_server_port(srv));
	fflush(stdout);
	ev_signal_init(&sint, cb_bench_signal, SIGINT);
	ev_signal_init(&sterm, cb_bench_signal, SIGTERM);
	ev_signal_start(b.loop, &sint);
	ev_signal_start(b.loop, &sterm);
	ev_run(b.loop, 0);
	spoa_server_stats(srv, &st);
	fprintf(stderr, "spoa_bench: frames=%llu acks=%llu messages=%llu deferred=%llu\n",
		(unsigned long long)st.notify_frames, (unsigned long long)st.acks,
		(unsigned long long)st.messages, (unsigned long long)st.deferred_total);
	for (i = 0; i < (int)b.npending; i++)
		spoa_deferred_done(b.pending[i]);
	spoa_server_free(srv);
	return 0;
}
