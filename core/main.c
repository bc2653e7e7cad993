/* SPDX-License-Identifier: Apache-2.0 */
/* acme-spoa: automatic certificates for HAProxy over SPOE and the runtime API. */
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/crypto.h"
#include "core/config.h"
#include "core/import.h"
#include "lib/log.h"
#include "lib/version.h"
#include "core/manager.h"

struct main_ctx {
	struct mgr *mgr;
	const char *config_path;
	ev_signal sig_term, sig_int, sig_hup;
	ev_timer stop_again;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: acme-spoa -c FILE [-v]       run with the JSON config FILE\n"
		"       acme-spoa -c FILE --check    validate the config, print every error, exit 0/1\n"
		"       acme-spoa -c FILE import SOURCE [--dry-run]\n"
		"                                    take another tool's certificates and account:\n"
		"                                    certbot:DIR lego:DIR caddy:DIR acmesh:DIR\n"
		"                                    kong-redis:HOST:PORT[/NAMESPACE] crt-dir:DIR crt-list:FILE\n"
		"       acme-spoa -c FILE export crt-dir:DIR\n"
		"                                    write every stored certificate as HAProxy PEMs\n"
		"       acme-spoa --list-keys        print the config keys, their types and defaults\n"
		"       acme-spoa --version | --help\n"
		"Logs go to stderr; -v adds protocol detail. SIGHUP reloads the config file.\n");
}

static void cb_main_again(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void cb_main_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct main_ctx *mc = w->data;

	log_info("signal %d: shutting down", w->signum);
	ev_break(loop, EVBREAK_ALL);
	/* a signal that lands while a late start reads the store (storage_wait
	 * runs the loop inside a callback) only breaks that inner run: break
	 * again from the outer one */
	if (!ev_is_active(&mc->stop_again)) {
		ev_timer_init(&mc->stop_again, cb_main_again, 0.05, 0.05);
		ev_timer_start(loop, &mc->stop_again);
	}
}

static void cb_main_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct main_ctx *mc = w->data;
	char errs[8192] = "";
	struct config *cfg = config_load(mc->config_path, errs, sizeof(errs));

	if (!cfg) {
		log_err("SIGHUP: %s not reloaded, keeping the running config:\n%s", mc->config_path, errs);
		return;
	}
	mgr_reload(mc->mgr, cfg);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "list-keys", no_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	struct main_ctx mc = { 0 };
	struct ev_loop *loop;
	struct config *cfg;
	char errs[8192] = "", err[1024] = "";
	int c, check = 0, dry_run = 0;
	const char *verb = NULL, *what = NULL;

	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': mc.config_path = optarg; break;
		case 'k': check = 1; break;
		case 'v': log_level_max = LOG_LVL_DEBUG; break;
		case 'V': printf("acme-spoa %s\n", ACME_SPOA_VERSION); return 0;
		case 'L': config_keys_print(stdout); return 0;
		case 'h': usage(stdout); return 0;
		case 'n': dry_run = 1; break;
		default: usage(stderr); return 2;
		}
	}
	/* "import SOURCE" / "export DEST": getopt moved the words to the end */
	if (argc - optind == 2 && (!strcmp(argv[optind], "import") || !strcmp(argv[optind], "export"))) {
		verb = argv[optind];
		what = argv[optind + 1];
		optind += 2;
	}
	if (!mc.config_path || optind != argc || (dry_run && (!verb || strcmp(verb, "import")))) {
		usage(stderr);
		return 2;
	}
	cfg = config_load(mc.config_path, errs, sizeof(errs));
	if (!cfg) {
		fprintf(stderr, "%s: invalid configuration:\n%s", mc.config_path, errs);
		if (errs[0] && errs[strlen(errs) - 1] != '\n')
			fputc('\n', stderr);
		return 1;
	}
	if (verb) {
		int rc;

		signal(SIGPIPE, SIG_IGN);
		rc = !strcmp(verb, "import") ? import_run(cfg, what, dry_run, stdout) :
		     export_run(cfg, what, stdout);
		config_free(cfg);
		crypto_async_shutdown();
		return rc;
	}
	if (check) {
		char warns[2048];

		if (config_warnings(cfg, warns, sizeof(warns)) > 0)
			fprintf(stderr, "%s: warnings:\n%s", mc.config_path, warns);
		printf("%s: configuration is valid\n", mc.config_path);
		config_free(cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	loop = EV_DEFAULT;
	mc.mgr = mgr_new(loop, cfg, err, sizeof(err));
	if (!mc.mgr) {
		log_err("cannot start: %s", err);
		return 1;
	}
	ev_signal_init(&mc.sig_term, cb_main_stop, SIGTERM);
	ev_signal_init(&mc.sig_int, cb_main_stop, SIGINT);
	ev_signal_init(&mc.sig_hup, cb_main_hup, SIGHUP);
	mc.sig_hup.data = &mc;
	mc.sig_term.data = &mc;
	mc.sig_int.data = &mc;
	ev_signal_start(loop, &mc.sig_term);
	ev_signal_start(loop, &mc.sig_int);
	ev_signal_start(loop, &mc.sig_hup);
	log_info("acme-spoa %s started", ACME_SPOA_VERSION);
	ev_run(loop, 0);
	ev_timer_stop(loop, &mc.stop_again);
	mgr_free(mc.mgr);
	crypto_async_shutdown();
	ev_signal_stop(loop, &mc.sig_term);
	ev_signal_stop(loop, &mc.sig_int);
	ev_signal_stop(loop, &mc.sig_hup);
	ev_loop_destroy(loop);
	log_info("stopped");
	return 0;
}
