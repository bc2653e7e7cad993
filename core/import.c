/* SPDX-License-Identifier: Apache-2.0 */
/* The import pipeline (import.h): a reader (import_tools.c, import_crt.c)
 * lists what the source holds; each bundle is checked as an issued one
 * (crypto_bundle_check_info); the newest bundle of each name is compared with
 * what storage holds and written as the agent writes an issued certificate:
 * "meta/<host>" deleted, "certs/<host>" stored, then its record and the
 * change feed; then the account.
 *
 * Writes run a window at a time on the storage's own loop, so 10,000 names
 * cost round trips in parallel, not in a row. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "acme/crypto.h"
#include "acme/jws.h"
#include "core/certstore.h"
#include "core/config.h"
#include "core/import.h"
#include "core/import_int.h"
#include "core/issuers.h"
#include "core/manager.h"
#include "lib/fsutil.h"
#include "lib/hmap.h"
#include "lib/host.h"
#include "storage/storage.h"

#define IMP_WINDOW 128			/* names in flight */
#define IMP_PROGRESS_MIN 500		/* names from which a terminal shows progress */
#define IMP_THREADS 4			/* bundles checked in parallel */

enum imp_outcome {
	IMP_IMPORTED = 0,
	IMP_PRESENT,			/* this very certificate is stored */
	IMP_KEPT,			/* storage holds one expiring as late or later */
	IMP_FAILED,			/* a storage error */
	IMP__MAX
};

struct imp_run;

/* One name to store, with the bundle chosen for it. */
struct imp_item {
	struct imp_run *run;
	size_t cand;
	enum imp_outcome outcome;
	int step;
	int locked;			/* holds the agents' issuance lock of <host> */
	char host[HOST_MAXLEN + 1];
};

struct imp_run {
	struct imp_set set;
	struct storage *st;
	struct ev_loop *loop;
	int dry_run;
	time_t now;
	struct crypto_cert_info *infos;	/* per bundle, once checked */
	int *ok;			/* per bundle: passed the check */
	char **errs;			/* per bundle: why it did not */
	struct imp_item *items;
	size_t nitems, next, inflight, done;
	size_t count[IMP__MAX];
	struct hmap reasons;		/* refusal reason -> count (as a pointer) */
	char **failures;		/* storage errors, one line each */
	size_t nfail;
	int progress;
	double last_progress;
	char owner[64];			/* lock owner token of this import */
};

/* ---- refusals ------------------------------------------------------------ */

/* The summary's reason: the checker's text without the name it names. */
static void imp_reason_class(const char *reason, char *out, size_t outlen)
{
	const char *r = strncmp(reason, "bundle: ", 8) == 0 ? reason + 8 : reason;

	if (strncmp(r, "the certificate does not cover host", 35) == 0)
		r = "the certificate does not cover the name it is filed under";
	else if (strstr(r, "account key:") == r)
		r = "account key unreadable";
	else if (strstr(r, "no private key in it"))
		r = "no private key";
	snprintf(out, outlen, "%s", r);
}

static void imp_refuse(struct imp_run *r, const char *origin, const char *reason)
{
	char cls[256];
	uintptr_t n;

	imp_add_refusal(&r->set, origin, "%s", reason);
	imp_reason_class(reason, cls, sizeof(cls));
	n = (uintptr_t)hmap_get(&r->reasons, cls);
	hmap_put(&r->reasons, cls, (void *)(n + 1), NULL);
}

/* ---- checking and choosing ------------------------------------------------ */

/* The checks of bundles <i> = <first>, <first> + <step>, ... (a worker). */
struct imp_chk {
	struct imp_run *r;
	size_t first, step;
};

static void *imp_check_range(void *arg)
{
	struct imp_chk *k = arg;
	struct imp_run *r = k->r;
	size_t i;

	for (i = k->first; i < r->set.ncands; i += k->step) {
		struct imp_cand *c = &r->set.cands[i];
		char err[512], host[HOST_MAXLEN + 1];

		/* the check an issued certificate passes, for the name the
		 * source files it under when it names one */
		if (c->name && host_normalize(c->name, host, sizeof(host), HOST_WILDCARD) == -1)
			snprintf(err, sizeof(err), "filed under a name that is no host name");
		else if (crypto_bundle_check_info(c->pem, c->len, c->name ? host : NULL, r->now,
						  &r->infos[i], err, sizeof(err)) == 0)
			r->ok[i] = 1;
		if (r->ok[i] && r->infos[i].nsans == 0 && !c->name) {
			crypto_cert_info_clear(&r->infos[i]);
			r->ok[i] = 0;
			snprintf(err, sizeof(err), "the certificate names no DNS name");
		}
		if (!r->ok[i])
			r->errs[i] = strdup(err);
	}
	return NULL;
}

/* Checks every bundle (on IMP_THREADS threads: the check is most of an
 * import's CPU) and keeps, for each name, the bundle expiring last. */
static int imp_choose(struct imp_run *r, struct hmap *best)
{
	struct imp_set *s = &r->set;
	struct imp_chk chk[IMP_THREADS];
	pthread_t tid[IMP_THREADS];
	int started[IMP_THREADS] = { 0 };
	size_t i, j, nrefs = s->nrefs, nt = s->ncands < 64 ? 1 : IMP_THREADS;

	/* what the reader refused already counts in the summary */
	for (i = 0; i < nrefs; i++) {
		char cls[256];
		uintptr_t n;

		imp_reason_class(s->refs[i].reason, cls, sizeof(cls));
		n = (uintptr_t)hmap_get(&r->reasons, cls);
		hmap_put(&r->reasons, cls, (void *)(n + 1), NULL);
	}
	for (i = 0; i < nt; i++) {
		chk[i] = (struct imp_chk){ .r = r, .first = i, .step = nt };
		started[i] = i > 0 && pthread_create(&tid[i], NULL, imp_check_range, &chk[i]) == 0;
	}
	/* this thread takes range 0, and any a thread could not start */
	for (i = 0; i < nt; i++)
		if (i == 0 || !started[i])
			imp_check_range(&chk[i]);
	for (i = 1; i < nt; i++)
		if (started[i])
			pthread_join(tid[i], NULL);
	for (i = 0; i < s->ncands; i++) {
		struct crypto_cert_info *ci = &r->infos[i];
		struct imp_cand *c = &s->cands[i];

		if (!r->ok[i]) {
			imp_refuse(r, c->origin, r->errs[i] ? r->errs[i] : "out of memory");
			continue;
		}
		/* stored under each of its names, so each is served and renewed */
		for (j = 0; j < (ci->nsans ? ci->nsans : 1); j++) {
			const char *n = ci->nsans ? ci->sans[j] : c->name;
			char norm[HOST_MAXLEN + 1];
			uintptr_t prev;

			if (host_normalize(n, norm, sizeof(norm), HOST_WILDCARD) == -1)
				continue;
			prev = (uintptr_t)hmap_get(best, norm);
			if (prev && r->infos[prev - 1].not_after >= ci->not_after)
				continue;
			if (hmap_put(best, norm, (void *)(uintptr_t)(i + 1), NULL) == -1)
				return -1;
		}
	}
	return 0;
}

static void imp_collect(void *arg, const char *key, void *val)
{
	struct imp_run *r = arg;
	struct imp_item *it = &r->items[r->nitems++];

	memset(it, 0, sizeof(*it));
	it->run = r;
	it->cand = (uintptr_t)val - 1;
	snprintf(it->host, sizeof(it->host), "%s", key);
}

static int imp_item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct imp_item *)a)->host, ((const struct imp_item *)b)->host);
}

/* ---- storing ------------------------------------------------------------- */

static void imp_next(struct imp_run *r);

static void imp_progress(struct imp_run *r, int last)
{
	double t = ev_time();

	if (!r->progress || (!last && t - r->last_progress < 0.2))
		return;
	r->last_progress = t;
	fprintf(stderr, "\rimport: %zu/%zu names%s", r->done, r->nitems, last ? "\n" : "");
	fflush(stderr);
}

static void imp_item_end(struct imp_item *it, enum imp_outcome o, const char *why)
{
	struct imp_run *r = it->run;

	if (it->locked) {
		char key[STORAGE_KEY_MAX];

		snprintf(key, sizeof(key), "issue/%s", it->host);
		storage_unlock(r->st, key, r->owner, NULL, NULL);
		it->locked = 0;
	}
	it->outcome = o;
	r->count[o]++;
	if (o == IMP_FAILED) {
		char *line = NULL;
		char **f = realloc(r->failures, (r->nfail + 1) * sizeof(*f));

		if (f) {
			r->failures = f;
			if (asprintf(&line, "%s: %s", it->host, why ? why : "storage error") >= 0)
				r->failures[r->nfail++] = line;
		}
	}
	r->inflight--;
	r->done++;
	imp_progress(r, 0);
	imp_next(r);
}

/* The facts memory keeps, pointing into <ci>. */
static void imp_info_view(const struct crypto_cert_info *ci, struct certstore_info *out)
{
	memset(out, 0, sizeof(*out));
	out->not_before = ci->not_before;
	out->not_after = ci->not_after;
	out->serial_hex = ci->serial_hex;
	out->digest_sha1 = ci->digest_sha1;
	out->issuer_cn = ci->issuer_cn;
	out->pubkey_type = ci->pubkey_type;
	out->ari_cert_id = ci->ari_cert_id;
}

/* Steps of a write, each started when the one before is stored: the
 * record naming the old certificate goes first, so a cut never leaves a
 * record naming a certificate not stored. A write takes the agents' own
 * issuance lock of the name first ("issue/<host>", as jobs.c) and compares
 * again under it, so a certificate an agent stores meanwhile is never
 * replaced by an older one. */
enum { IMP_STEP_META_GET = 0, IMP_STEP_CERT_GET, IMP_STEP_META_DEL, IMP_STEP_CERT_PUT,
       IMP_STEP_META_PUT, IMP_STEP_FEED, IMP_STEP_LOCK };
#define IMP_LOCK_LEASE_MS 60000

static void cb_imp_item(void *arg, struct storage_res *res);

/* The storage key <step> works on for <host>: its metadata, its bundle or
 * its issue lock (the one certstore and jobs use); "" for the feed step,
 * which names the host itself. */
static void imp_step_key(int step, const char *host, char *key, size_t keylen)
{
	switch (step) {
	case IMP_STEP_META_GET:
	case IMP_STEP_META_DEL:
	case IMP_STEP_META_PUT:
		snprintf(key, keylen, CERTSTORE_META_PREFIX "%s", host);
		break;
	case IMP_STEP_CERT_GET:
	case IMP_STEP_CERT_PUT:
		snprintf(key, keylen, "certs/%s", host);
		break;
	case IMP_STEP_LOCK:
		snprintf(key, keylen, "issue/%s", host);
		break;
	default:
		key[0] = '\0';
	}
}

static void imp_item_step(struct imp_item *it, int step)
{
	struct imp_run *r = it->run;
	struct imp_cand *c = &r->set.cands[it->cand];
	char key[STORAGE_KEY_MAX];
	struct storage_req *req = NULL;

	it->step = step;
	imp_step_key(step, it->host, key, sizeof(key));
	switch (step) {
	case IMP_STEP_META_GET:
	case IMP_STEP_CERT_GET:
		req = storage_get(r->st, key, cb_imp_item, it);
		break;
	case IMP_STEP_LOCK:
		req = storage_lock(r->st, key, r->owner, IMP_LOCK_LEASE_MS, cb_imp_item, it);
		break;
	case IMP_STEP_META_DEL:
		req = storage_del(r->st, key, cb_imp_item, it);
		break;
	case IMP_STEP_CERT_PUT:
		req = storage_put(r->st, key, c->pem, c->len, 0, cb_imp_item, it);
		break;
	case IMP_STEP_META_PUT: {
		struct certstore_info view;
		size_t len;
		char *text;

		imp_info_view(&r->infos[it->cand], &view);
		if (!(text = certstore_meta_encode(it->host, &view, &len)))
			break;
		req = storage_put(r->st, key, text, len, 0, cb_imp_item, it);
		free(text);
		break;
	}
	case IMP_STEP_FEED:
		/* as certstore_announce(): the feed, then pub/sub */
		req = storage_feed_put(r->st, CERTSTORE_FEED, it->host, r->infos[it->cand].serial_hex,
				       cb_imp_item, it);
		if (req)
			storage_publish(r->st, CERTSTORE_CHANNEL, it->host, strlen(it->host), NULL, NULL);
		break;
	}
	if (!req)
		imp_item_end(it, IMP_FAILED, "out of memory");
}

/* The bundle is to be written: under the lock (taken first, then what
 * storage holds is read again). */
static void imp_item_write(struct imp_item *it)
{
	if (it->run->dry_run)
		imp_item_end(it, IMP_IMPORTED, NULL);
	else
		imp_item_step(it, it->locked ? IMP_STEP_META_DEL : IMP_STEP_LOCK);
}

/* What storage holds of the name, against the bundle chosen for it. */
static void imp_item_compare(struct imp_item *it, const struct crypto_cert_info *stored)
{
	const struct crypto_cert_info *ci = &it->run->infos[it->cand];

	if (strcmp(stored->serial_hex, ci->serial_hex) == 0)
		imp_item_end(it, IMP_PRESENT, NULL);
	else if (stored->not_after >= ci->not_after)
		imp_item_end(it, IMP_KEPT, NULL);
	else
		imp_item_write(it);
}

static void cb_imp_item(void *arg, struct storage_res *res)
{
	struct imp_item *it = arg;
	struct crypto_cert_info stored;
	char err[256];

	if (res->rc == -1) {
		imp_item_end(it, IMP_FAILED, res->err);
		return;
	}
	switch (it->step) {
	case IMP_STEP_META_GET:
		if (res->rc == 0 &&
		    certstore_meta_decode(it->host, res->val, res->len, &stored, err, sizeof(err)) == 0) {
			imp_item_compare(it, &stored);
			crypto_cert_info_clear(&stored);
		} else {
			/* no record, or a bad one: the certificate itself tells */
			imp_item_step(it, IMP_STEP_CERT_GET);
		}
		break;
	case IMP_STEP_CERT_GET:
		if (res->rc == 0 && crypto_cert_info(res->val, res->len, &stored, err, sizeof(err)) == 0) {
			imp_item_compare(it, &stored);
			crypto_cert_info_clear(&stored);
		} else {
			imp_item_write(it);
		}
		break;
	case IMP_STEP_LOCK:
		if (res->rc == 1) {
			imp_item_end(it, IMP_FAILED, "an agent is issuing it right now: run the import again");
			break;
		}
		it->locked = 1;
		imp_item_step(it, IMP_STEP_META_GET);
		break;
	case IMP_STEP_FEED:
		imp_item_end(it, IMP_IMPORTED, NULL);
		break;
	default:
		imp_item_step(it, it->step + 1);
		break;
	}
}

static void imp_next(struct imp_run *r)
{
	while (r->inflight < IMP_WINDOW && r->next < r->nitems) {
		r->inflight++;
		imp_item_step(&r->items[r->next++], IMP_STEP_META_GET);
	}
}

/* ---- the account --------------------------------------------------------- */

/* Picks the source's account for the config's CA (its email's first), and
 * stores it unless storage holds another key for that CA and email. */
static int imp_account(struct imp_run *r, FILE *out)
{
	const struct config_issuer *iss = &r->set.cfg->issuers[0];
	struct imp_acct *pick = NULL;
	char id[ISSUERS_ACCOUNT_ID_LEN + 1], key[STORAGE_KEY_MAX], ukey[STORAGE_KEY_MAX], err[512];
	struct storage_res res;
	EVP_PKEY *pk = NULL, *have = NULL;
	size_t i, other = 0;
	int rc = 0, got;

	for (i = 0; i < r->set.naccts; i++) {
		struct imp_acct *a = &r->set.accts[i];

		if (!a->same_ca) {
			other++;
			continue;
		}
		if (!pick || (strcasecmp(a->email, iss->account_email) == 0 &&
			      strcasecmp(pick->email, iss->account_email) != 0) ||
		    (a->url && !pick->url && strcasecmp(pick->email, iss->account_email) != 0))
			pick = a;
	}
	if (!pick) {
		fprintf(out, "account: none for %s in the source%s; the agent will use its own\n",
			iss->api_uri, other ? " (only accounts of other CAs)" : "");
		return 0;
	}
	if (!(pk = crypto_key_from_pem(pick->key_pem, pick->key_len, err, sizeof(err))) || !jws_alg(pk)) {
		fprintf(out, "account: %s refused: %s\n", pick->origin, pk ? "unsupported key type" : err);
		goto out;
	}
	if (issuers_account_id(iss->api_uri, iss->account_email, id) == -1) {
		fprintf(out, "account: out of memory\n");
		rc = -1;
		goto out;
	}
	snprintf(key, sizeof(key), "accounts/%s/key", id);
	snprintf(ukey, sizeof(ukey), "accounts/%s/url", id);
	got = storage_wait(r->st, storage_get(r->st, key, NULL, NULL), &res, err, sizeof(err));
	if (got == -1) {
		fprintf(out, "account: storage: %s\n", err);
		rc = -1;
		goto out;
	}
	if (got == 0) {
		have = crypto_key_from_pem(res.val, res.len, err, sizeof(err));
		storage_res_clear(&res);
		if (!have || EVP_PKEY_eq(have, pk) != 1) {
			fprintf(out, "account: CONFLICT: storage already holds another account key for %s "
				"(%s, %s); %s was not imported and nothing was overwritten\n",
				iss->api_uri, iss->account_email, key, pick->origin);
			goto out;
		}
		/* the same key: at most its URL is new */
		got = storage_wait(r->st, storage_get(r->st, ukey, NULL, NULL), &res, err, sizeof(err));
		if (got == 0)
			storage_res_clear(&res);
		if (got == 0 || !pick->url) {
			fprintf(out, "account: already present (%s)\n", pick->origin);
			goto out;
		}
	} else if (!r->dry_run) {
		if (storage_wait(r->st, storage_put(r->st, key, pick->key_pem, pick->key_len, 0, NULL, NULL),
				 &res, err, sizeof(err)) == -1) {
			fprintf(out, "account: storage: %s\n", err);
			rc = -1;
			goto out;
		}
		storage_res_clear(&res);
	}
	if (pick->url && !r->dry_run) {
		if (storage_wait(r->st, storage_put(r->st, ukey, pick->url, strlen(pick->url), 0, NULL, NULL),
				 &res, err, sizeof(err)) == -1) {
			fprintf(out, "account: storage: %s\n", err);
			rc = -1;
			goto out;
		}
		storage_res_clear(&res);
	}
	fprintf(out, "account: %s %s%s%s for %s\n", r->dry_run ? "would import" : "imported",
		pick->origin, pick->url ? " as " : "", pick->url ? pick->url : "", iss->api_uri);
	if (!pick->url)
		fprintf(out, "account: the source keeps no account URL: the agent finds it once "
			"with newAccount (same key, same account)\n");
out:
	EVP_PKEY_free(pk);
	EVP_PKEY_free(have);
	return rc;
}

/* ---- the run ------------------------------------------------------------- */

static int imp_read_source(struct imp_set *s, const char *source, char *err, size_t errlen)
{
	static const struct {
		const char *prefix;
		int (*read)(struct imp_set *, const char *, char *, size_t);
	} kinds[] = {
		{ "certbot:", imp_read_certbot }, { "lego:", imp_read_lego },
		{ "caddy:", imp_read_caddy }, { "acmesh:", imp_read_acmesh },
		{ "kong-redis:", imp_read_kong_redis }, { "crt-dir:", imp_read_crt_dir },
		{ "crt-list:", imp_read_crt_list },
	};
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t pl = strlen(kinds[i].prefix);

		if (strncmp(source, kinds[i].prefix, pl) == 0 && source[pl])
			return kinds[i].read(s, source + pl, err, errlen);
	}
	snprintf(err, errlen, "unknown source \"%s\": expected certbot:DIR, lego:DIR, caddy:DIR, "
		 "acmesh:DIR, kong-redis:HOST:PORT[/NAMESPACE], crt-dir:DIR or crt-list:FILE", source);
	return -2;
}

struct imp_reason_out {
	FILE *out;
};

static void imp_print_reason(void *arg, const char *key, void *val)
{
	fprintf(((struct imp_reason_out *)arg)->out, "    %s: %lu\n", key,
		(unsigned long)(uintptr_t)val);
}

static void imp_set_free(struct imp_set *s)
{
	size_t i;

	for (i = 0; i < s->ncands; i++) {
		free(s->cands[i].origin);
		crypto_secret_free(s->cands[i].pem, s->cands[i].len);
		free(s->cands[i].name);
	}
	for (i = 0; i < s->naccts; i++) {
		free(s->accts[i].origin);
		crypto_secret_free(s->accts[i].key_pem, s->accts[i].key_len);
		free(s->accts[i].url);
		free(s->accts[i].email);
	}
	for (i = 0; i < s->nrefs; i++) {
		free(s->refs[i].origin);
		free(s->refs[i].reason);
	}
	free(s->cands);
	free(s->accts);
	free(s->refs);
}

int import_run(const struct config *cfg, const char *source, int dry_run, FILE *out)
{
	struct imp_run r = { .dry_run = dry_run, .now = time(NULL) };
	struct storage_conf sc;
	struct hmap best = { 0 };
	const char *be = mgr_storage_conf(cfg, &sc);
	char err[1024] = "";
	double t0 = ev_time();
	int rc = 1, src;
	size_t i, nrefs_src;

	r.set.cfg = cfg;
	r.set.api_uri = cfg->issuers[0].api_uri;
	snprintf(r.owner, sizeof(r.owner), "import-%ld-%ld", (long)getpid(), (long)r.now);
	r.loop = ev_loop_new(EVFLAG_AUTO);
	if (!r.loop || hmap_init(&best) == -1 || hmap_init(&r.reasons) == -1) {
		fprintf(stderr, "import: out of memory\n");
		goto out;
	}
	r.set.loop = r.loop;
	src = imp_read_source(&r.set, source, err, sizeof(err));
	if (src == -2) {
		fprintf(stderr, "import: %s\n", err);
		rc = 2;
		goto out;
	}
	if (src == -1) {
		fprintf(stderr, "import: %s\n", err);
		goto out;
	}
	nrefs_src = r.set.nrefs;
	r.infos = calloc(r.set.ncands + 1, sizeof(*r.infos));
	r.ok = calloc(r.set.ncands + 1, sizeof(*r.ok));
	r.errs = calloc(r.set.ncands + 1, sizeof(*r.errs));
	if (!r.infos || !r.ok || !r.errs || imp_choose(&r, &best) == -1 ||
	    !(r.items = calloc(best.count + 1, sizeof(*r.items)))) {
		fprintf(stderr, "import: out of memory\n");
		goto out;
	}
	hmap_foreach(&best, imp_collect, &r);
	qsort(r.items, r.nitems, sizeof(*r.items), imp_item_cmp);
	/* reading and checking took a while: timers started now must not
	 * count it (the loop's clock is cached) */
	ev_now_update(r.loop);
	/* file storage: one sync of the file system at the end instead of two
	 * fsyncs a write (a cut import is simply run again) */
	sc.file_bulk = 1;
	if (!(r.st = storage_open(be, &sc, r.loop, err, sizeof(err)))) {
		fprintf(stderr, "import: storage: %s\n", err);
		goto out;
	}
	r.progress = isatty(STDERR_FILENO) && r.nitems >= IMP_PROGRESS_MIN;
	imp_next(&r);
	while (r.done < r.nitems)
		ev_run(r.loop, EVRUN_ONCE);
	/* the announcements published without a callback go out too */
	while (storage_inflight(r.st) > 0)
		ev_run(r.loop, EVRUN_ONCE);
	imp_progress(&r, 1);
	rc = r.count[IMP_FAILED] ? 1 : 0;
	if (imp_account(&r, out) == -1)
		rc = 1;
	storage_close(r.st);
	r.st = NULL;
	if (!strcmp(be, "file") && !dry_run && fs_sync_dir(sc.file_path) == -1) {
		fprintf(out, "failed: sync of %s: %s\n", sc.file_path, strerror(errno));
		rc = 1;
	}
	for (i = 0; i < r.set.nrefs; i++)
		fprintf(out, "refused: %s: %s\n", r.set.refs[i].origin, r.set.refs[i].reason);
	for (i = 0; i < r.nfail; i++)
		fprintf(out, "failed: %s\n", r.failures[i]);
	{
		size_t ok = 0, refused = r.set.nrefs;
		struct imp_reason_out ro = { out };

		for (i = 0; i < r.set.ncands; i++)
			ok += r.ok[i] != 0;
		fprintf(out, "import %s%s: %zu bundles read, %zu passed the check, %zu names, %.2f s\n",
			source, dry_run ? " (dry run: nothing written)" : "", r.set.ncands, ok, r.nitems,
			ev_time() - t0);
		fprintf(out, "  %s: %zu\n", dry_run ? "would import" : "imported", r.count[IMP_IMPORTED]);
		fprintf(out, "  already present: %zu\n", r.count[IMP_PRESENT]);
		fprintf(out, "  kept (stored certificate is as new or newer): %zu\n", r.count[IMP_KEPT]);
		fprintf(out, "  refused: %zu\n", refused);
		hmap_foreach(&r.reasons, imp_print_reason, &ro);
		if (r.count[IMP_FAILED])
			fprintf(out, "  storage errors: %zu\n", r.count[IMP_FAILED]);
		(void)nrefs_src;
	}
out:
	storage_close(r.st);
	for (i = 0; i < r.set.ncands && r.infos; i++)
		crypto_cert_info_clear(&r.infos[i]);
	free(r.infos);
	free(r.ok);
	for (i = 0; i < r.set.ncands && r.errs; i++)
		free(r.errs[i]);
	free(r.errs);
	free(r.items);
	for (i = 0; i < r.nfail; i++)
		free(r.failures[i]);
	free(r.failures);
	hmap_clear(&best, NULL);
	hmap_clear(&r.reasons, NULL);
	imp_set_free(&r.set);
	if (r.loop)
		ev_loop_destroy(r.loop);
	return rc;
}
