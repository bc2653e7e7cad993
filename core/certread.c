/* SPDX-License-Identifier: Apache-2.0 */
/* What the certificate store reads from storage (certstore_int.h): the
 * metadata records ("meta/<host>"), a certificate another node stored, the
 * start-up load (the listing into the index), and with preload on_demand the
 * background read of this node's share, again when the members change. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>

#include "core/certstore.h"
#include "core/certstore_int.h"
#include "core/config.h"
#include "core/health.h"
#include "core/nameidx.h"
#include "runtime/runtime.h"
#include "lib/hmap.h"
#include "lib/host.h"
#include "lib/log.h"
#include "storage/storage.h"

/* ---- metadata records ("meta/<host>") ------------------------------------ */

/* How a string of a record may look. */
enum certstore_meta_chars {
	CERTSTORE_META_HEX,		/* upper-case hex (serial) */
	CERTSTORE_META_SHA1,		/* "AB:CD:..." or "" */
	CERTSTORE_META_B64,		/* base64url and '.' (RFC 9773 certID), or "" */
	CERTSTORE_META_TEXT,		/* UTF-8 without control characters */
};

static int certstore_meta_str(json_t *o, const char *name, enum certstore_meta_chars kind,
			      char *out, size_t outlen, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, name);
	const unsigned char *p;
	size_t i, n;
	int ok = 1;

	if (!json_is_string(v)) {
		snprintf(err, errlen, "\"%s\": missing or not a string", name);
		return -1;
	}
	p = (const unsigned char *)json_string_value(v);
	n = json_string_length(v);
	if (n >= outlen || strlen((const char *)p) != n) {
		snprintf(err, errlen, "\"%s\": too long or holds NUL", name);
		return -1;
	}
	for (i = 0; i < n && ok; i++) {
		switch (kind) {
		case CERTSTORE_META_HEX:
			ok = (p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'F');
			break;
		case CERTSTORE_META_SHA1:
			ok = i % 3 == 2 ? p[i] == ':' :
			     (p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'F');
			break;
		case CERTSTORE_META_B64:
			ok = (p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'Z') ||
			     (p[i] >= 'a' && p[i] <= 'z') || p[i] == '-' || p[i] == '_' ||
			     p[i] == '.' || p[i] == '=';
			break;
		case CERTSTORE_META_TEXT:
			ok = p[i] >= 0x20 && p[i] != 0x7f;
			break;
		}
	}
	if (ok && kind == CERTSTORE_META_HEX)
		ok = n > 0;
	if (ok && kind == CERTSTORE_META_SHA1)
		ok = n == 0 || n == 59;
	if (!ok) {
		snprintf(err, errlen, "\"%s\": malformed", name);
		return -1;
	}
	memcpy(out, p, n + 1);
	return 0;
}

static int certstore_meta_time(json_t *o, const char *name, time_t *out, char *str,
			       size_t strlen_, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, name);
	json_int_t t;
	struct tm tm;

	if (!json_is_integer(v) || (t = json_integer_value(v)) <= 0 ||
	    t > CERTSTORE_META_TIME_MAX) {
		snprintf(err, errlen, "\"%s\": missing or out of range", name);
		return -1;
	}
	*out = (time_t)t;
	if (!gmtime_r(out, &tm) || !strftime(str, strlen_, "%Y-%m-%d %H:%M:%S", &tm)) {
		snprintf(err, errlen, "\"%s\": out of range", name);
		return -1;
	}
	return 0;
}

char *certstore_meta_encode(const char *host, const struct certstore_info *info, size_t *len)
{
	json_t *o = json_pack("{s:i,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:s}", "v", CERTSTORE_META_VERSION,
			      "host", host, "serial", info->serial_hex,
			      "not_before", (json_int_t)info->not_before,
			      "not_after", (json_int_t)info->not_after, "sha1", info->digest_sha1,
			      "issuer", info->issuer_cn, "key", info->pubkey_type,
			      "ari", info->ari_cert_id);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (text && len)
		*len = strlen(text);
	return text;
}

int certstore_meta_decode(const char *host, const char *text, size_t len,
			  struct crypto_cert_info *out, char *err, size_t errlen)
{
	char name[CERTSTORE_HOST_MAX], norm[CERTSTORE_HOST_MAX];
	json_error_t je;
	json_t *o, *v;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (len > CERTSTORE_META_MAX) {
		snprintf(err, errlen, "larger than %d bytes", CERTSTORE_META_MAX);
		return -1;
	}
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(o)) {
		snprintf(err, errlen, "not a JSON object%s%s", o ? "" : ": ", o ? "" : je.text);
		goto out;
	}
	v = json_object_get(o, "v");
	if (!json_is_integer(v) || json_integer_value(v) != CERTSTORE_META_VERSION) {
		snprintf(err, errlen, "\"v\": not version %d", CERTSTORE_META_VERSION);
		goto out;
	}
	if (certstore_meta_str(o, "host", CERTSTORE_META_TEXT, name, sizeof(name), err, errlen) == -1)
		goto out;
	/* through lib/host like every name, and the very name of the key */
	if (host_normalize(name, norm, sizeof(norm), HOST_WILDCARD) == -1 || strcmp(name, norm) != 0 ||
	    strcmp(norm, host) != 0) {
		snprintf(err, errlen, "\"host\": not %s", host);
		goto out;
	}
	if (certstore_meta_str(o, "serial", CERTSTORE_META_HEX, out->serial_hex,
			       sizeof(out->serial_hex), err, errlen) == -1 ||
	    certstore_meta_str(o, "sha1", CERTSTORE_META_SHA1, out->digest_sha1,
			       sizeof(out->digest_sha1), err, errlen) == -1 ||
	    certstore_meta_str(o, "issuer", CERTSTORE_META_TEXT, out->issuer_cn,
			       sizeof(out->issuer_cn), err, errlen) == -1 ||
	    certstore_meta_str(o, "key", CERTSTORE_META_TEXT, out->pubkey_type,
			       sizeof(out->pubkey_type), err, errlen) == -1 ||
	    certstore_meta_str(o, "ari", CERTSTORE_META_B64, out->ari_cert_id,
			       sizeof(out->ari_cert_id), err, errlen) == -1 ||
	    certstore_meta_time(o, "not_before", &out->not_before, out->not_before_str,
				sizeof(out->not_before_str), err, errlen) == -1 ||
	    certstore_meta_time(o, "not_after", &out->not_after, out->not_after_str,
				sizeof(out->not_after_str), err, errlen) == -1)
		goto out;
	if (out->not_before > out->not_after) {
		snprintf(err, errlen, "\"not_before\" after \"not_after\"");
		goto out;
	}
	rc = 0;
out:
	json_decref(o);
	if (rc == -1)
		memset(out, 0, sizeof(*out));
	return rc;
}

void certstore_meta_put(struct certstore *cs, const struct certstore_cert *c)
{
	char key[STORAGE_KEY_MAX], *text;
	size_t len;

	if (!c->has_info)
		return;
	text = certstore_meta_encode(c->host, &c->info, &len);
	if (!text) {
		log_err("host=%s cannot write its metadata record: out of memory", c->host);
		return;
	}
	snprintf(key, sizeof(key), CERTSTORE_META_PREFIX "%s", c->host);
	storage_put(cs->st, key, text, len, 0, certstore_storage_log, cs);
	free(text);
}

void certstore_meta_del(struct certstore *cs, const char *host)
{
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), CERTSTORE_META_PREFIX "%s", host);
	storage_del(cs->st, key, certstore_storage_log, cs);
}

size_t certstore_fill_recent(const struct certstore *cs)
{
	return cs->fill_recent;
}

unsigned long certstore_pem_parsed(const struct certstore *cs)
{
	return cs->pem_parsed;
}

/* ---- storage ------------------------------------------------------------- */

static void certstore_fetched(struct certstore *cs, struct storage_res *res, int absent_removes)
{
	const char *host = res->key + strlen("certs/");
	struct certstore_cert *old;

	health_storage_result(cs->health, res);
	if (res->rc == -1) {
		log_err("host=%s %s", host, res->err);
		return;
	}
	if (res->rc == 1) {
		if (absent_removes && (certstore_get(cs, host) || nameidx_contains(cs->names, host))) {
			log_info("host=%s certificate deleted by another node", host);
			certstore_remove(cs, host);
		}
		return;
	}
	old = certstore_get(cs, host);
	if (!old && !certstore_keeps_pem(cs) && !certstore_wants(cs, host)) {
		/* another member's, not hot here: the index learns the name,
		 * nothing is parsed or kept (a mass import elsewhere costs
		 * each node a name, not a certificate) */
		if (nameidx_add(cs->names, host) == -1)
			log_err("host=%s cannot index the certificate: out of memory", host);
		free(hmap_del(&cs->refused_until, host));
		certstore_recent_put(cs, host);
		log_info("host=%s certificate received from another node", host);
		if (cs->hooks.received)
			cs->hooks.received(cs->hooks.arg, host);
		return;
	}
	/* on_demand: only a name HAProxy holds gets the new one pushed */
	if (certstore_take(cs, host, res->val, res->len,
			   certstore_keeps_pem(cs) || (old && (old->loaded || old->pushing)))) {
		log_info("host=%s certificate received from another node", host);
		if (cs->hooks.received)
			cs->hooks.received(cs->hooks.arg, host);
	}
}

struct certstore_fetch {
	TAILQ_ENTRY(certstore_fetch) link;
	int inflight;			/* its read is under way */
	int again;			/* changed again meanwhile: read once more */
	char host[];
};

static void certstore_fetch_send(struct certstore *cs, struct certstore_fetch *fe);

/* The next waiting reads, up to the window. */
static void certstore_fetch_more(struct certstore *cs)
{
	struct certstore_fetch *fe;

	while (cs->fetch_inflight < CERTSTORE_FETCH_WINDOW && (fe = TAILQ_FIRST(&cs->fetch_wait))) {
		TAILQ_REMOVE(&cs->fetch_wait, fe, link);
		cs->fetch_waiting--;
		certstore_fetch_send(cs, fe);
	}
}

static void cb_certstore_fetch(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;
	const char *host = res->key + strlen("certs/");
	struct certstore_fetch *fe = hmap_get(&cs->fetches, host);

	cs->fetch_inflight--;
	certstore_fetched(cs, res, 1);
	if (fe && fe->again) {
		fe->again = 0;
		fe->inflight = 0;
		TAILQ_INSERT_TAIL(&cs->fetch_wait, fe, link);
		cs->fetch_waiting++;
	} else if (fe) {
		hmap_del(&cs->fetches, fe->host);
		free(fe);
	}
	certstore_fetch_more(cs);
}

static void certstore_fetch_send(struct certstore *cs, struct certstore_fetch *fe)
{
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "certs/%s", fe->host);
	fe->inflight = 1;
	if (storage_get(cs->st, key, cb_certstore_fetch, cs)) {
		cs->fetch_inflight++;
		return;
	}
	log_err("host=%s cannot read the certificate another node stored: out of memory", fe->host);
	hmap_del(&cs->fetches, fe->host);
	free(fe);
}

void certstore_fetch(struct certstore *cs, const char *host)
{
	struct certstore_fetch *fe = hmap_get(&cs->fetches, host);
	size_t n = strlen(host);

	if (fe) {
		/* waiting: read once, later; under way: read again after */
		if (fe->inflight)
			fe->again = 1;
		return;
	}
	if (cs->fetch_waiting >= CERTSTORE_FETCH_MAX) {
		/* the change feed's next read (a minute at most) finds it */
		cs->fetch_dropped++;
		return;
	}
	if (!(fe = calloc(1, sizeof(*fe) + n + 1)))
		return;
	memcpy(fe->host, host, n + 1);
	if (hmap_put(&cs->fetches, fe->host, fe, NULL) == -1) {
		free(fe);
		return;
	}
	TAILQ_INSERT_TAIL(&cs->fetch_wait, fe, link);
	cs->fetch_waiting++;
	certstore_fetch_more(cs);
}

size_t certstore_fetch_backlog(const struct certstore *cs)
{
	return cs->fetch_waiting;
}

void certstore_recent_put(struct certstore *cs, const char *host)
{
	char **slot = &cs->recent[cs->recent_next];

	free(*slot);
	*slot = strdup(host);	/* NULL when out of memory: a slot less */
	cs->recent_next = (cs->recent_next + 1) % CERTSTORE_RECENT_MAX;
}

void certstore_announce(struct certstore *cs, const char *host, const char *serial)
{
	/* the feed first: a node that reads it on the message sees the change */
	storage_feed_put(cs->st, CERTSTORE_FEED, host, serial, certstore_storage_log, cs);
	storage_publish(cs->st, CERTSTORE_CHANNEL, host, strlen(host), certstore_storage_log, cs);
}

/* Start-up load: one certificate read back from storage. */
static void cb_certstore_load(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;
	const char *host = res->key + strlen("certs/");

	cs->loading--;
	health_storage_result(cs->health, res);
	if (res->rc == -1)
		log_err("host=%s %s", host, res->err);
	else if (res->rc == 0)
		certstore_take(cs, host, res->val, res->len, 0);
}

static void certstore_fill_more(struct certstore *cs);

/* The full entry a background read of <host> fills: the one memory holds
 * without metadata, or a new one when the name is still stored and this
 * node's; NULL when there is nothing to learn (learnt, removed or given up
 * meanwhile). */
static struct certstore_cert *certstore_fill_target(struct certstore *cs, const char *host)
{
	struct certstore_cert *c = certstore_get(cs, host);

	if (c)
		return c->has_info ? NULL : c;
	if (!nameidx_contains(cs->names, host) || !certstore_wants(cs, host))
		return NULL;
	return certstore_promote(cs, host);
}

/* on_demand: one certificate read in the background for its metadata (no
 * record, or a bad one); learning it writes the record. */
static void cb_certstore_fill(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;
	const char *host = res->key + strlen("certs/");
	struct certstore_cert *c;

	cs->fill_inflight--;
	health_storage_result(cs->health, res);
	if (res->rc == -1)
		log_err("host=%s %s", host, res->err);
	else if (res->rc == 0 && (c = certstore_fill_target(cs, host)) &&
		 certstore_learn(cs, c, res->val, res->len) == 0)
		cs->filled++;
	certstore_fill_more(cs);
}

/* on_demand: one "meta/<host>" record read in the background; without a good
 * one, the certificate is read instead (the read keeps the window's slot). */
static void cb_certstore_fill_meta(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;
	const char *host = res->key + strlen(CERTSTORE_META_PREFIX);
	struct certstore_cert *c;
	struct crypto_cert_info ci;
	char key[STORAGE_KEY_MAX], err[256];

	health_storage_result(cs->health, res);
	if (res->rc == 0) {
		if (certstore_meta_decode(host, res->val, res->len, &ci, err, sizeof(err)) == 0) {
			if ((c = certstore_fill_target(cs, host)) &&
			    certstore_learn_info(cs, c, &ci) >= 0) {
				cs->filled++;
				cs->fill_meta++;
			}
			goto done;
		}
		log_warn("host=%s " CERTSTORE_META_PREFIX "%s ignored: %s; reading the certificate",
			 host, host, err);
	} else if (res->rc == -1) {
		log_err("host=%s %s", host, res->err);
	}
	if (!certstore_fill_target(cs, host))
		goto done;	/* removed or learnt meanwhile */
	snprintf(key, sizeof(key), "certs/%s", host);
	if (storage_get(cs->st, key, cb_certstore_fill, cs))
		return;
done:
	cs->fill_inflight--;
	certstore_fill_more(cs);
}

/* The background read walks the index a window at a time and reads the
 * record of the names this node keeps in full (its share, and the hot ones
 * still without metadata): start-up work grows with the share, not with
 * the fleet. A rebuild of the index (names added or removed meanwhile)
 * starts the walk over; what is learnt is skipped. */
static void certstore_fill_more(struct certstore *cs)
{
	char key[STORAGE_KEY_MAX];
	const char *host = "";
	struct certstore_cert *c;
	size_t step = 0;

	if (!cs->filling)
		return;
	if (cs->fill_gen != nameidx_gen(cs->names)) {
		cs->fill_gen = nameidx_gen(cs->names);
		cs->fill_pos = 0;
	}
	while (cs->fill_inflight < CERTSTORE_FILL_WINDOW &&
	       (host = nameidx_next(cs->names, &cs->fill_pos))) {
		if (++step > CERTSTORE_FILL_STEP) {
			/* a million names, few of them this node's: the walk
			 * must not hold the loop (SNIs wait behind it) */
			cs->fill_pos--;
			ev_timer_set(&cs->fill_next, 0., 0.);
			ev_timer_start(cs->loop, &cs->fill_next);
			return;
		}
		c = certstore_get(cs, host);
		if (c ? c->has_info : !certstore_wants(cs, host))
			continue;	/* learnt meanwhile, or another member's */
		snprintf(key, sizeof(key), CERTSTORE_META_PREFIX "%s", host);
		if (storage_get(cs->st, key, cb_certstore_fill_meta, cs))
			cs->fill_inflight++;
	}
	if (cs->fill_inflight == 0 && !host) {
		log_info("storage: metadata of %zu stored certificates known in %.2fs (%zu from "
			 "metadata records, %zu read from the certificates; %zu names indexed, "
			 "%zu in full)", cs->filled, ev_time() - cs->fill_start, cs->fill_meta,
			 cs->filled - cs->fill_meta, nameidx_count(cs->names), cs->certs.count);
		cs->filling = 0;
	}
}

void cb_certstore_fill_next(struct ev_loop *loop, ev_timer *w, int revents)
{
	certstore_fill_more(w->data);
}

/* on_demand: starts (or starts over) the background read of the metadata
 * this node keeps: first the names changed lately that are now this node's
 * (most recent first), then the walk of the index. */
void certstore_fill_start(struct certstore *cs)
{
	char key[STORAGE_KEY_MAX];
	struct certstore_cert *c;
	size_t i, first = 0;

	cs->filling = 1;
	cs->fill_pos = 0;
	cs->fill_gen = nameidx_gen(cs->names);
	cs->filled = cs->fill_meta = 0;
	cs->fill_start = ev_time();
	for (i = 1; i <= CERTSTORE_RECENT_MAX; i++) {
		size_t k = (cs->recent_next + CERTSTORE_RECENT_MAX - i) % CERTSTORE_RECENT_MAX;
		const char *host = cs->recent[k];

		if (!host || !nameidx_contains(cs->names, host))
			continue;
		c = certstore_get(cs, host);
		if (c ? c->has_info : !certstore_wants(cs, host))
			continue;
		snprintf(key, sizeof(key), CERTSTORE_META_PREFIX "%s", host);
		if (storage_get(cs->st, key, cb_certstore_fill_meta, cs)) {
			cs->fill_inflight++;
			first++;
		}
	}
	cs->fill_recent = first;
	if (first)
		log_info("storage: reading first the metadata of %zu certificate(s) stored lately "
			 "that are now this node's", first);
	certstore_fill_more(cs);
}

struct certstore_drop {
	struct certstore_cert **v;
	size_t n;
};

static void certstore_drop_cb(void *arg, const char *host, void *val)
{
	struct certstore_drop *d = arg;

	d->v[d->n++] = val;
}

void certstore_members_changed(struct certstore *cs)
{
	struct certstore_drop d = { NULL, 0 };
	size_t i, dropped = 0;

	if (certstore_keeps_pem(cs))
		return;
	/* no longer this node's and not hot: index-only; one pass over the
	 * full entries (the share and hot set), only when a node joins or
	 * leaves */
	d.v = calloc(cs->certs.count + 1, sizeof(*d.v));
	if (d.v) {
		hmap_foreach(&cs->certs, certstore_drop_cb, &d);
		for (i = 0; i < d.n; i++)
			dropped += (size_t)certstore_demote(cs, d.v[i]);
		free(d.v);
	}
	if (dropped)
		log_info("members changed: %zu certificates no longer this node's dropped to the index",
			 dropped);
	/* the names newly this node's get their metadata, a window at a time */
	if (cs->started)
		certstore_fill_start(cs);
}

/* One stored name of the start-up load: into the index (on_demand: its
 * metadata follows in the background for this node's share), or read in
 * full (preload all). */
static void certstore_load_one(struct certstore *cs, const char *name)
{
	char host[CERTSTORE_HOST_MAX], key[STORAGE_KEY_MAX];

	if (host_normalize(name, host, sizeof(host), HOST_WILDCARD) == -1 ||
	    strcmp(host, name) != 0) {
		log_warn("storage: ignoring certs/%.253s: not a host name", name);
	} else if (!certstore_keeps_pem(cs)) {
		if (nameidx_add(cs->names, host) == -1)
			log_err("host=%s cannot index the certificate: out of memory", host);
	} else {
		while (cs->loading >= CERTSTORE_LOAD_WINDOW)
			ev_run(cs->loop, EVRUN_ONCE);
		snprintf(key, sizeof(key), "certs/%s", host);
		if (storage_get(cs->st, key, cb_certstore_load, cs))
			cs->loading++;
	}
}

#define CERTSTORE_LOAD_BATCH 16	/* names whose index slots are fetched together */

/* A feed_members page into the index (the first, which says how many there
 * are in all, sizes it once for all: no rebuild while a million names go
 * in), a batch at a time: checked, hashed and their slots prefetched, then
 * added. */
static void certstore_index_page(struct certstore *cs, const struct storage_res *page)
{
	char host[CERTSTORE_LOAD_BATCH][CERTSTORE_HOST_MAX];
	uint64_t h[CERTSTORE_LOAD_BATCH];
	const char *name = page->val;
	size_t i, k, b, n = page->n;

	if (page->total && nameidx_reserve(cs->names, nameidx_count(cs->names) + page->total) == -1)
		log_warn("cannot size the index for %zu names: out of memory", page->total);

	for (i = 0; i < n; i += b) {
		for (b = k = 0; b < CERTSTORE_LOAD_BATCH && i + b < n; b++, name += strlen(name) + 1) {
			if (host_normalize(name, host[k], sizeof(host[k]), HOST_WILDCARD) == -1 ||
			    strcmp(host[k], name) != 0) {
				log_warn("storage: ignoring certs/%.253s: not a host name", name);
				continue;
			}
			h[k] = nameidx_hash(cs->names, host[k]);
			nameidx_prefetch(cs->names, h[k]);
			k++;
		}
		while (k-- > 0) {
			if (nameidx_add_hashed(cs->names, host[k], h[k]) == -1)
				log_err("host=%s cannot index the certificate: out of memory", host[k]);
		}
	}
}

/* The stored names from the change feed's members, a page at a time (redis:
 * plain ZRANGEBYSCORE pages of the names alone, instead of a SCAN of the
 * whole keyspace with every record and lock). With the index alone
 * (on_demand) the next page is asked for before this one is indexed, so
 * that the store and this process work at once. 0, or -1 when the feed
 * cannot be read (the caller lists the store instead). */
static int certstore_load_feed(struct certstore *cs)
{
	struct storage_res page;
	struct storage_req *next;
	char err[256];
	const char *name;
	size_t i, pages = 0;
	int ahead = !certstore_keeps_pem(cs);	/* nothing below runs the loop */

	next = storage_feed_members(cs->st, CERTSTORE_FEED, 0, NULL, NULL);
	for (;;) {
		if (storage_wait(cs->st, next, &page, err, sizeof(err)) == -1) {
			cs->health->storage_errors++;
			log_warn("cannot read the stored names from the change feed (%s); listing the store",
				 err);
			return -1;
		}
		pages++;
		next = page.more && ahead ?
		       storage_feed_members(cs->st, CERTSTORE_FEED, page.gen, NULL, NULL) : NULL;
		if (ahead)
			certstore_index_page(cs, &page);
		else
			for (i = 0, name = page.val; i < page.n; i++, name += strlen(name) + 1)
				certstore_load_one(cs, name);
		if (!page.more) {
			storage_res_clear(&page);
			break;
		}
		if (!next)
			next = storage_feed_members(cs->st, CERTSTORE_FEED, page.gen, NULL, NULL);
		storage_res_clear(&page);
	}
	log_info("storage=%s: %zu names read from the change feed in %zu page(s)",
		 storage_name(cs->st), nameidx_count(cs->names), pages);
	return 0;
}

/* The background read's end: the index holds every stored name. */
static void certstore_index_done(struct certstore *cs)
{
	size_t i;

	cs->indexing = 0;
	cs->index_req = NULL;
	hmap_clear(&cs->probed, NULL);
	hmap_init(&cs->probed);
	log_info("storage=%s: %zu names indexed in %.2fs (%zu page(s) of the change feed)",
		 storage_name(cs->st), nameidx_count(cs->names), ev_time() - cs->index_start,
		 cs->index_pages);
	/* what HAProxy holds is learnt again, now that every name is known (a
	 * sync during the read skipped the names not indexed yet) */
	for (i = 0; i < rt_count(cs->rt); i++)
		certstore_sync_haproxy(cs, i);
	if (cs->indexed)
		cs->indexed(cs->indexed_arg, nameidx_count(cs->names));
}

static void cb_certstore_index_list(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;
	size_t i;

	cs->index_req = NULL;
	health_storage_result(cs->health, res);
	if (res->rc == -1) {
		cs->health->storage_errors++;
		log_err("cannot list stored certificates: %s", res->err);
	} else {
		for (i = 0; i < res->n; i++)
			certstore_load_one(cs, res->keys[i] + strlen("certs/"));
	}
	certstore_index_done(cs);
}

/* Lists the store instead of the feed. */
static void certstore_index_list(struct certstore *cs)
{
	cs->index_req = storage_list(cs->st, "certs/", cb_certstore_index_list, cs);
	if (!cs->index_req) {
		log_err("cannot list stored certificates: out of memory");
		certstore_index_done(cs);
	}
}

static void cb_certstore_index_page(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;

	cs->index_req = NULL;
	if (res->rc == -1) {
		cs->health->storage_errors++;
		log_warn("cannot read the stored names from the change feed (%s); listing the store",
			 res->err);
		certstore_index_list(cs);
		return;
	}
	cs->index_pages++;
	/* the next page is asked for first: the store reads it meanwhile */
	if (res->more) {
		cs->index_req = storage_feed_members(cs->st, CERTSTORE_FEED, res->gen,
						     cb_certstore_index_page, cs);
		if (!cs->index_req)
			log_err("cannot read the change feed's next page: out of memory");
	}
	certstore_index_page(cs, res);
	if (!cs->index_req)
		certstore_index_done(cs);
}

int certstore_load_start(struct certstore *cs, void (*done)(void *arg, size_t n), void *arg)
{
	if (certstore_keeps_pem(cs))
		return -1;
	cs->indexing = 1;
	cs->indexed = done;
	cs->indexed_arg = arg;
	cs->index_pages = 0;
	cs->index_start = ev_time();
	if (!storage_has_feed_members(cs->st)) {
		certstore_index_list(cs);
		return 0;
	}
	cs->index_req = storage_feed_members(cs->st, CERTSTORE_FEED, 0, cb_certstore_index_page, cs);
	if (!cs->index_req)
		certstore_index_list(cs);
	return 0;
}

int certstore_indexing(const struct certstore *cs)
{
	return cs->indexing;
}

size_t certstore_load(struct certstore *cs)
{
	struct storage_res list;
	char err[256];
	size_t i;

	if (storage_has_feed_members(cs->st) && certstore_load_feed(cs) == 0)
		goto wait;
	if (storage_wait(cs->st, storage_list(cs->st, "certs/", NULL, NULL), &list, err,
			 sizeof(err)) == -1) {
		cs->health->storage_errors++;
		log_err("cannot list stored certificates: %s", err);
		return 0;
	}
	for (i = 0; i < list.n; i++) {
		certstore_load_one(cs, list.keys[i] + strlen("certs/"));
		/* the listing leaves memory as it is read */
		free(list.keys[i]);
		list.keys[i] = NULL;
	}
	storage_res_clear(&list);
wait:
	while (cs->loading > 0)
		ev_run(cs->loop, EVRUN_ONCE);
	return nameidx_count(cs->names);
}

void certstore_start(struct certstore *cs)
{
	cs->started = 1;
	if (!certstore_keeps_pem(cs) && nameidx_count(cs->names))
		certstore_fill_start(cs);
}
