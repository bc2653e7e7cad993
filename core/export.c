/* SPDX-License-Identifier: Apache-2.0 */
/* `acme-spoa export crt-dir:DIR` (import.h): every stored certificate that
 * passes the check an issued one passes, as the PEM HAProxy loads from a
 * "crt <dir>" (chain + key in one file), named as the agent names its own
 * cert_dir files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ev.h>

#include "acme/crypto.h"
#include "core/certstore.h"
#include "core/config.h"
#include "core/import.h"
#include "core/manager.h"
#include "lib/fsutil.h"
#include "lib/host.h"
#include "storage/storage.h"

#define EXP_WINDOW 64

struct exp_run {
	struct storage *st;
	const char *dir;
	char **keys;
	size_t nkeys, next, inflight, done, written, refused, failed;
	time_t now;
	FILE *out;
};

static void exp_next(struct exp_run *x);

static void cb_exp_got(void *arg, struct storage_res *res)
{
	struct exp_run *x = arg;
	const char *host = res->key + strlen("certs/");
	char err[512], path[4400];

	x->inflight--;
	x->done++;
	if (res->rc != 0) {
		/* gone meanwhile (rc 1) is no error */
		if (res->rc == -1) {
			fprintf(x->out, "failed: %s: %s\n", host, res->err);
			x->failed++;
		}
	} else if (crypto_bundle_check_info(res->val, res->len, host, x->now, NULL, err, sizeof(err)) == -1) {
		fprintf(x->out, "skipped: %s: %s\n", host, err);
		x->refused++;
	} else {
		snprintf(path, sizeof(path), "%s/%s%s.pem", x->dir,
			 strncmp(host, "*.", 2) == 0 ? CERTSTORE_WILDCARD_FILE "." : "",
			 strncmp(host, "*.", 2) == 0 ? host + 2 : host);
		if (fs_write_atomic_nosync(path, res->val, res->len, 0600, err, sizeof(err)) == -1) {
			fprintf(x->out, "failed: %s: %s\n", host, err);
			x->failed++;
		} else {
			x->written++;
		}
	}
	exp_next(x);
}

static void exp_next(struct exp_run *x)
{
	while (x->inflight < EXP_WINDOW && x->next < x->nkeys) {
		const char *k = x->keys[x->next++];
		char host[HOST_MAXLEN + 1];

		/* only names: the agent's keys below certs/ are hosts */
		if (host_normalize(k + strlen("certs/"), host, sizeof(host), HOST_WILDCARD) == -1 ||
		    strcmp(host, k + strlen("certs/")) != 0) {
			x->done++;
			continue;
		}
		if (!storage_get(x->st, k, cb_exp_got, x)) {
			x->done++;
			x->failed++;
			continue;
		}
		x->inflight++;
	}
}

int export_run(const struct config *cfg, const char *dest, FILE *out)
{
	struct exp_run x = { .now = time(NULL), .out = out };
	struct storage_conf sc;
	const char *be = mgr_storage_conf(cfg, &sc);
	struct ev_loop *loop = NULL;
	struct storage_res res;
	char err[1024];
	int rc = 1;

	if (strncmp(dest, "crt-dir:", 8) != 0 || !dest[8]) {
		fprintf(stderr, "export: unknown destination \"%s\": expected crt-dir:DIR\n", dest);
		return 2;
	}
	x.dir = dest + 8;
	if (mkdir(x.dir, 0700) == -1 && errno != EEXIST) {
		fprintf(stderr, "export: %s: %s\n", x.dir, strerror(errno));
		return 1;
	}
	loop = ev_loop_new(EVFLAG_AUTO);
	if (!loop || !(x.st = storage_open(be, &sc, loop, err, sizeof(err)))) {
		fprintf(stderr, "export: storage: %s\n", loop ? err : "out of memory");
		goto out;
	}
	if (storage_wait(x.st, storage_list(x.st, "certs/", NULL, NULL), &res, err, sizeof(err)) == -1) {
		fprintf(stderr, "export: storage: %s\n", err);
		goto out;
	}
	x.keys = res.keys;
	x.nkeys = res.n;
	res.keys = NULL;
	exp_next(&x);
	while (x.done < x.nkeys)
		ev_run(loop, EVRUN_ONCE);
	/* one flush for the whole directory instead of one per file */
	if (x.written && fs_sync_dir(x.dir) == -1) {
		fprintf(stderr, "export: %s: sync: %s\n", x.dir, strerror(errno));
		x.failed++;
	}
	fprintf(out, "export to %s: %zu written, %zu skipped (failed the check), %zu errors\n", x.dir,
		x.written, x.refused, x.failed);
	rc = x.failed ? 1 : 0;
out:
	storage_list_free(x.keys, x.nkeys);
	storage_close(x.st);
	if (loop)
		ev_loop_destroy(loop);
	return rc;
}
