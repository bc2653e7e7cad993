/* SPDX-License-Identifier: Apache-2.0 */
/* The certificate store (certstore.h): memory, storage reads, cert_dir
 * writes on a worker queue, pushes into HAProxy and the re-sync after a
 * HAProxy reload.
 *
 * A write of a certificate file runs on a worker thread; the push follows it,
 * so a HAProxy restart serves what HAProxy has. Writes of one host stay in
 * order (one shard per path). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "core/certstore.h"
#include "core/config.h"
#include "core/health.h"
#include "core/nameidx.h"
#include "lib/fsutil.h"
#include "lib/hmap.h"
#include "lib/host.h"
#include "lib/log.h"
#include "lib/workq.h"
#include "runtime/runtime.h"
#include "storage/storage.h"

#define CERTSTORE_SYNC_RETRY_S	5.0
#define CERTSTORE_LOAD_WINDOW	256	/* start-up reads in flight */
#define CERTSTORE_FILL_WINDOW	128	/* on_demand background metadata reads in flight */
#define CERTSTORE_REFUSED_MAX	4096	/* stored bundles remembered as refused */
#define CERTSTORE_REFUSED_S	300	/* seconds before such a bundle is read again */

struct certstore_sync;

struct certstore {
	struct ev_loop *loop;
	const struct config *cfg;
	struct storage *st;
	struct health *health;
	struct rt *rt;
	struct workq *wq;		/* cert_dir writes and unlinks */
	struct nameidx *names;		/* every stored certificate's name */
	struct hmap certs;		/* host -> struct certstore_cert: the full entries
					 * (on_demand: the share, the hot set and the ones
					 * touched lately; the other names are index-only) */
	struct certstore_hooks hooks;
	size_t loading;			/* start-up: certificate reads in flight */
	int filling;			/* on_demand: the share's metadata read in the background */
	size_t fill_pos;		/* cursor in <names> (nameidx_next) */
	unsigned long fill_gen;		/* nameidx_gen() when <fill_pos> was taken */
	size_t fill_inflight, filled;
	size_t fill_meta;		/* of <filled>: from "meta/<host>" records */
	ev_tstamp fill_start;
	unsigned long pem_parsed;	/* PEMs parsed for metadata alone */
	LIST_HEAD(, certstore_sync) syncs;	/* HAProxy listings under way */
	TAILQ_HEAD(certstore_lru, certstore_cert) lru;	/* loaded ones, last seen first */
	size_t nloaded;
	unsigned long evicted;
	unsigned long push_ok, push_failed;
	unsigned long refused[CERTSTORE_SRC__MAX];	/* bundles failing the check */
	struct hmap refused_until;	/* host -> time_t (malloc'd): on_demand, its stored
					 * bundle failed the check; not read again before */
	int started;			/* certstore_start() ran */
	int closing;			/* certstore_free() runs */
};

/* ---- memory -------------------------------------------------------------- */

/* on_demand: <host>'s stored bundle failed the check. Until the window ends
 * its SNIs read nothing and find no certificate (an allowed name is issued
 * anew), and nothing more is logged (issue 19: every ClientHello read, parsed
 * and logged it). Bounded: a full table starts over. */
static void certstore_refused_put(struct certstore *cs, const char *host)
{
	time_t *t = malloc(sizeof(*t)), *old = NULL;

	if (!t)
		return;
	if (cs->refused_until.count >= CERTSTORE_REFUSED_MAX) {
		hmap_clear(&cs->refused_until, free);
		hmap_init(&cs->refused_until);
	}
	*t = time(NULL) + CERTSTORE_REFUSED_S;
	if (hmap_put(&cs->refused_until, host, t, (void **)&old) == -1)
		free(t);
	free(old);
}

/* 1 while <host>'s stored bundle counts as refused. */
static int certstore_refused_active(struct certstore *cs, const char *host)
{
	time_t *t = hmap_get(&cs->refused_until, host);

	if (!t)
		return 0;
	if (*t > time(NULL))
		return 1;
	free(hmap_del(&cs->refused_until, host));
	return 0;
}

static void certstore_cert_free(void *p)
{
	struct certstore_cert *c = p;

	if (!c)
		return;
	free(c->info.strs);
	crypto_secret_free(c->pem, c->len);
	free(c);
}

/* Copies what memory keeps of <ci> into <out> (its strings in one block).
 * Returns 0, or -1 when out of memory. */
static int certstore_info_set(struct certstore_info *out, const struct crypto_cert_info *ci)
{
	const char *src[5] = { ci->serial_hex, ci->digest_sha1, ci->issuer_cn, ci->pubkey_type,
			       ci->ari_cert_id };
	const char **dst[5] = { &out->serial_hex, &out->digest_sha1, &out->issuer_cn,
				&out->pubkey_type, &out->ari_cert_id };
	size_t i, n = 0, l;
	char *p;

	for (i = 0; i < 5; i++)
		n += strlen(src[i]) + 1;
	p = malloc(n);
	if (!p)
		return -1;
	free(out->strs);
	out->strs = p;
	for (i = 0; i < 5; i++) {
		l = strlen(src[i]) + 1;
		memcpy(p, src[i], l);
		*dst[i] = p;
		p += l;
	}
	out->not_before = ci->not_before;
	out->not_after = ci->not_after;
	memcpy(out->not_before_str, ci->not_before_str, sizeof(out->not_before_str));
	memcpy(out->not_after_str, ci->not_after_str, sizeof(out->not_after_str));
	return 0;
}

/* A certificate of <host> with no metadata yet. */
static struct certstore_cert *certstore_cert_new(const char *host)
{
	size_t n = strlen(host) + 1;
	struct certstore_cert *c = calloc(1, sizeof(*c) + n);

	if (!c)
		return NULL;
	memcpy(c->host, host, n);
	c->info.serial_hex = c->info.digest_sha1 = c->info.issuer_cn = "";
	c->info.pubkey_type = c->info.ari_cert_id = "";
	return c;
}

static int certstore_keeps_pem(const struct certstore *cs)
{
	return cs->cfg->preload != CONFIG_PRELOAD_ON_DEMAND;
}

/* on_demand: the PEM leaves memory once nothing under way needs it. */
static void certstore_trim(struct certstore *cs, struct certstore_cert *c)
{
	if (certstore_keeps_pem(cs) || c->pushing || !c->pem)
		return;
	crypto_secret_free(c->pem, c->len);
	c->pem = NULL;
}

struct certstore_cert *certstore_get(const struct certstore *cs, const char *host)
{
	return hmap_get(&cs->certs, host);
}

size_t certstore_count(const struct certstore *cs)
{
	return nameidx_count(cs->names);
}

size_t certstore_detailed(const struct certstore *cs)
{
	return cs->certs.count;
}

int certstore_stored(const struct certstore *cs, const char *host)
{
	return nameidx_contains(cs->names, host);
}

size_t certstore_index_bytes(const struct certstore *cs)
{
	return nameidx_bytes(cs->names);
}

/* 1 when this node keeps <host>'s full entry whatever HAProxy holds: its
 * renewal share, or a job of it under way (the owner says; no hook: all). */
static int certstore_wants(const struct certstore *cs, const char *host)
{
	return !cs->hooks.detail || cs->hooks.detail(cs->hooks.arg, host);
}

/* on_demand: a full entry, without metadata yet, for the stored index-only
 * <host>. NULL when out of memory. */
static struct certstore_cert *certstore_promote(struct certstore *cs, const char *host)
{
	struct certstore_cert *c = certstore_cert_new(host);

	if (c && hmap_put(&cs->certs, host, c, NULL) == -1) {
		certstore_cert_free(c);
		c = NULL;
	}
	return c;
}

/* on_demand: <c> goes back to index-only (its name stays stored) when
 * nothing here needs its details: not this node's to renew, not in HAProxy
 * or cert_dir, nothing under way. Its renewal entry goes (removed fires).
 * Returns 1 when <c> was freed. */
static int certstore_demote(struct certstore *cs, struct certstore_cert *c)
{
	char host[CERTSTORE_HOST_MAX];

	if (certstore_keeps_pem(cs) || c->loaded || c->pushing || c->writing || c->pem ||
	    c->on_disk || certstore_wants(cs, c->host))
		return 0;
	snprintf(host, sizeof(host), "%s", c->host);
	hmap_del(&cs->certs, host);
	certstore_cert_free(c);
	if (cs->hooks.removed)
		cs->hooks.removed(cs->hooks.arg, host);
	return 1;
}

/* One certstore_peek() of an index-only name under way. */
struct certstore_peek {
	struct certstore *cs;
	void (*cb)(void *arg, const struct certstore_cert *c);
	void *arg;
};

/* Ends <pk> with the facts <ci> (NULL: none) of <host>. */
static void certstore_peek_end(struct certstore_peek *pk, const char *host,
			       const struct crypto_cert_info *ci)
{
	struct certstore_cert *c = ci ? certstore_cert_new(host) : NULL;

	if (c && certstore_info_set(&c->info, ci) == 0) {
		c->has_info = 1;
		pk->cb(pk->arg, c);
	} else {
		pk->cb(pk->arg, NULL);
	}
	certstore_cert_free(c);
	free(pk);
}

static void cb_certstore_peek_pem(void *arg, struct storage_res *res)
{
	struct certstore_peek *pk = arg;
	const char *host = res->key + strlen("certs/");
	struct crypto_cert_info ci;
	char err[256];

	health_storage_result(pk->cs->health, res);
	if (res->rc == 0 && crypto_cert_info(res->val, res->len, &ci, err, sizeof(err)) == 0) {
		pk->cs->pem_parsed++;
		certstore_peek_end(pk, host, &ci);
		crypto_cert_info_clear(&ci);
		return;
	}
	if (res->rc == -1)
		log_err("host=%s %s", host, res->err);
	certstore_peek_end(pk, host, NULL);
}

static void cb_certstore_peek_meta(void *arg, struct storage_res *res)
{
	struct certstore_peek *pk = arg;
	const char *host = res->key + strlen(CERTSTORE_META_PREFIX);
	struct crypto_cert_info ci;
	char key[STORAGE_KEY_MAX], err[256];

	health_storage_result(pk->cs->health, res);
	if (res->rc == 0 && certstore_meta_decode(host, res->val, res->len, &ci, err, sizeof(err)) == 0) {
		certstore_peek_end(pk, host, &ci);
		return;
	}
	/* no good record: the certificate says */
	snprintf(key, sizeof(key), "certs/%s", host);
	if (!storage_get(pk->cs->st, key, cb_certstore_peek_pem, pk))
		certstore_peek_end(pk, host, NULL);
}

int certstore_peek(struct certstore *cs, const char *host,
		   void (*cb)(void *arg, const struct certstore_cert *c), void *arg)
{
	struct certstore_cert *c = certstore_get(cs, host);
	struct certstore_peek *pk;
	char key[STORAGE_KEY_MAX];

	if ((c && c->has_info) || !nameidx_contains(cs->names, host)) {
		cb(arg, c);
		return 0;
	}
	pk = calloc(1, sizeof(*pk));
	if (!pk)
		return -1;
	pk->cs = cs;
	pk->cb = cb;
	pk->arg = arg;
	snprintf(key, sizeof(key), CERTSTORE_META_PREFIX "%s", host);
	if (!storage_get(cs->st, key, cb_certstore_peek_meta, pk)) {
		free(pk);
		return -1;
	}
	return 0;
}

void certstore_foreach_name(const struct certstore *cs,
			    void (*fn)(void *arg, const char *host, struct certstore_cert *c),
			    void *arg)
{
	size_t pos = 0;
	const char *host;

	while ((host = nameidx_next(cs->names, &pos)))
		fn(arg, host, certstore_get(cs, host));
}

struct certstore_each {
	void (*fn)(void *arg, struct certstore_cert *c);
	void *arg;
};

static void certstore_each_cb(void *arg, const char *host, void *val)
{
	struct certstore_each *e = arg;

	e->fn(e->arg, val);
}

void certstore_foreach(const struct certstore *cs,
		       void (*fn)(void *arg, struct certstore_cert *c), void *arg)
{
	struct certstore_each e = { fn, arg };

	hmap_foreach(&cs->certs, certstore_each_cb, &e);
}

void certstore_set_hooks(struct certstore *cs, const struct certstore_hooks *hooks)
{
	cs->hooks = *hooks;
}

static void certstore_storage_log(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;

	health_storage_result(cs->health, res);
	if (res->rc == -1)
		log_err("%s", res->err);
}

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

unsigned long certstore_pem_parsed(const struct certstore *cs)
{
	return cs->pem_parsed;
}

/* Nothing unverified is kept, written to cert_dir or pushed: checks <pem>
 * for <host> (crypto_bundle_check_info) and hands back the leaf's facts in
 * <ci> (to clear); a refusal is counted by <src> and logged. 0 or -1. */
static int certstore_verify(struct certstore *cs, const char *host, const char *pem, size_t len,
			    enum certstore_src src, struct crypto_cert_info *ci)
{
	char err[256];

	if (crypto_bundle_check_info(pem, len, host, time(NULL), ci, err, sizeof(err)) == 0)
		return 0;
	cs->refused[src]++;
	log_err("host=%s certificate from %s refused: %s", host,
		src == CERTSTORE_SRC_CA ? "the CA" : "storage", err);
	return -1;
}

static struct certstore_cert *certstore_install_from(struct certstore *cs, const char *host,
						     const char *pem, size_t len,
						     enum certstore_src src)
{
	struct certstore_cert *c, *old = NULL;
	struct crypto_cert_info ci;
	int rc;

	if (certstore_verify(cs, host, pem, len, src, &ci) == -1)
		return NULL;
	c = certstore_cert_new(host);
	if (!c) {
		crypto_cert_info_clear(&ci);
		return NULL;
	}
	rc = certstore_info_set(&c->info, &ci);
	crypto_cert_info_clear(&ci);
	c->has_info = 1;
	c->pem = rc == 0 ? malloc(len + 1) : NULL;
	if (!c->pem) {
		certstore_cert_free(c);
		return NULL;
	}
	memcpy(c->pem, pem, len);
	c->pem[len] = '\0';
	c->len = len;
	if (nameidx_add(cs->names, host) == -1 || hmap_put(&cs->certs, host, c, (void **)&old) == -1) {
		certstore_cert_free(c);
		return NULL;
	}
	if (old) {
		/* what HAProxy and cert_dir hold of the host stays as it was */
		c->loaded = old->loaded;
		c->pushing = old->pushing;
		c->writing = old->writing;
		c->on_disk = old->on_disk && strcmp(old->info.serial_hex, c->info.serial_hex) == 0;
		if (old->loaded) {
			TAILQ_INSERT_BEFORE(old, c, lru);
			TAILQ_REMOVE(&cs->lru, old, lru);
		}
	}
	certstore_cert_free(old);
	free(hmap_del(&cs->refused_until, host));	/* a new certificate passed */
	if (cs->hooks.installed)
		cs->hooks.installed(cs->hooks.arg, c);
	return c;
}

struct certstore_cert *certstore_install(struct certstore *cs, const char *host, const char *pem,
					 size_t len)
{
	return certstore_install_from(cs, host, pem, len, CERTSTORE_SRC_CA);
}

unsigned long certstore_refused(const struct certstore *cs, enum certstore_src src)
{
	return cs->refused[src];
}

/* ---- cert_dir and HAProxy ------------------------------------------------ */

/* cert_dir/<host>.pem; a wildcard "*.zone" is written "_wildcard_.zone.pem"
 * (no '*' in file names: shells and HAProxy's directory loading). A name of
 * more than CERTSTORE_FILE_HOST_MAX characters is written
 * "_long_<SHA-256 of the name, hex>.pem": "<host>.pem" and its temp name
 * "<host>.pem.<pid>.<seq>" would pass NAME_MAX (issue 19: a 253-character
 * name was pushed but lost at a HAProxy restart). HAProxy matches SNI against
 * the certificate, never the file name, and this one function names the file
 * for writes, pushes, removals and the sync after a reload; '_' is in no
 * host name, so no name's own file can take it. */
static void certstore_path(const struct certstore *cs, const char *host, char *out, size_t outlen)
{
	unsigned char md[32];
	char hex[2 * sizeof(md) + 1];
	unsigned int mdlen = 0;
	size_t i;

	if (strlen(host) > CERTSTORE_FILE_HOST_MAX &&
	    EVP_Digest(host, strlen(host), md, &mdlen, EVP_sha256(), NULL) == 1 &&
	    mdlen == sizeof(md)) {
		for (i = 0; i < sizeof(md); i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		snprintf(out, outlen, "%s/%s%s.pem", cs->cfg->cert_dir, CERTSTORE_LONG_FILE, hex);
	} else if (host[0] == '*' && host[1] == '.') {
		snprintf(out, outlen, "%s/%s%s.pem", cs->cfg->cert_dir, CERTSTORE_WILDCARD_FILE, host + 1);
	} else {
		snprintf(out, outlen, "%s/%s.pem", cs->cfg->cert_dir, host);
	}
}

/* HAProxy names a crt-list made from a directory without the trailing '/'. */
static void certstore_crt_list_name(const struct certstore *cs, char *out, size_t outlen)
{
	size_t n;

	snprintf(out, outlen, "%s", cs->cfg->crt_list);
	n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
}

static void certstore_push_done(void *arg, int ok, const char *err)
{
	struct certstore *cs = arg;

	if (ok) {
		cs->push_ok++;
	} else if (err == rt_err_shutdown) {
		/* stopping: HAProxy keeps what it had, the next start pushes again */
		log_info("push not finished: %s", err);
	} else {
		cs->push_failed++;
		log_err("push failed: %s", err ? err : "unknown error");
	}
}

/* <c> is in HAProxy now: the most recently used of the hot set. */
static void certstore_mark_loaded(struct certstore *cs, struct certstore_cert *c)
{
	if (c->loaded) {
		TAILQ_REMOVE(&cs->lru, c, lru);
	} else {
		c->loaded = 1;
		cs->nloaded++;
	}
	TAILQ_INSERT_HEAD(&cs->lru, c, lru);
}

static void certstore_mark_unloaded(struct certstore *cs, struct certstore_cert *c)
{
	if (!c->loaded)
		return;
	TAILQ_REMOVE(&cs->lru, c, lru);
	c->loaded = 0;
	cs->nloaded--;
}

static int certstore_write_queue(struct certstore *cs, const char *host, const char *pem, size_t len);

/* Beyond haproxy.max_loaded (preload on_demand), the names idle longest
 * leave HAProxy ("del ssl crt-list", "del ssl cert") and cert_dir. */
static void certstore_evict(struct certstore *cs)
{
	char path[4096], list[4096];
	struct certstore_cert *c;

	if (cs->cfg->preload != CONFIG_PRELOAD_ON_DEMAND || cs->cfg->max_loaded <= 0 || cs->closing)
		return;
	certstore_crt_list_name(cs, list, sizeof(list));
	while (cs->nloaded > (size_t)cs->cfg->max_loaded && (c = TAILQ_LAST(&cs->lru, certstore_lru))) {
		certstore_mark_unloaded(cs, c);
		c->on_disk = 0;
		cs->evicted++;
		log_debug("host=%s idle longest of %zu loaded: removed from HAProxy", c->host,
			  cs->nloaded + 1);
		if (certstore_write_queue(cs, c->host, NULL, 0) == -1)
			log_err("host=%s cannot queue the certificate file removal: out of memory", c->host);
		certstore_path(cs, c->host, path, sizeof(path));
		if (rt_remove_cert(cs->rt, path, list, certstore_push_done, cs) == -1)
			log_err("host=%s removal from HAProxy not started", c->host);
		certstore_demote(cs, c);	/* another member's: index-only again */
	}
}

/* One push of a host's certificate under way. */
struct certstore_pushing {
	struct certstore *cs;
	char host[CERTSTORE_HOST_MAX];
};

/* A deploy of <host> ended (<ok>: in HAProxy): its state, the hot set, and
 * the hook. */
static void certstore_deployed(struct certstore *cs, const char *host, int ok)
{
	struct certstore_cert *c = certstore_get(cs, host);

	if (c) {
		if (c->pushing)
			c->pushing--;
		if (ok)
			certstore_mark_loaded(cs, c);
		certstore_trim(cs, c);
	}
	if (cs->hooks.loaded)
		cs->hooks.loaded(cs->hooks.arg, host, ok);
	if (ok)
		certstore_evict(cs);
}

static void certstore_pushed(void *arg, int ok, const char *err)
{
	struct certstore_pushing *p = arg;
	struct certstore *cs = p->cs;

	certstore_push_done(cs, ok, err);
	if (!cs->closing)
		certstore_deployed(cs, p->host, ok);
	free(p);
}

static void certstore_push(struct certstore *cs, const char *host, const char *pem, size_t len)
{
	char path[4096], list[4096];
	struct certstore_pushing *p = calloc(1, sizeof(*p));

	certstore_path(cs, host, path, sizeof(path));
	certstore_crt_list_name(cs, list, sizeof(list));
	if (p) {
		p->cs = cs;
		snprintf(p->host, sizeof(p->host), "%s", host);
	}
	if (!p || rt_push_cert(cs->rt, path, list, pem, len, certstore_pushed, p) == -1) {
		free(p);
		cs->push_failed++;
		log_err("host=%s push not started", host);
		certstore_deployed(cs, host, 0);
	}
}

/* A write (or removal) of one cert_dir file on the worker queue. */
struct certstore_write {
	struct workq_item it;
	struct certstore *cs;
	char host[CERTSTORE_HOST_MAX];
	char serial[130];	/* of the certificate written */
	char path[4096];
	char *pem;		/* NULL: unlink */
	size_t len;
	int rc;
	char err[256];
};

static void certstore_write_run(struct workq_item *it)
{
	struct certstore_write *w = (struct certstore_write *)it;

	if (w->pem) {
		w->rc = fs_write_atomic(w->path, w->pem, w->len, 0600, w->err, sizeof(w->err));
	} else if (unlink(w->path) == -1 && errno != ENOENT) {
		w->rc = -1;
		snprintf(w->err, sizeof(w->err), "cannot remove %.200s: %s", w->path, strerror(errno));
	}
}

static void certstore_write_done(struct workq_item *it)
{
	struct certstore_write *w = (struct certstore_write *)it;
	struct certstore *cs = w->cs;
	struct certstore_cert *c = w->pem ? certstore_get(cs, w->host) : NULL;
	int current = c && strcmp(c->info.serial_hex, w->serial) == 0;

	if (c) {
		c->writing--;
		/* newer versions may have been queued behind this one */
		if (w->rc == 0 && current)
			c->on_disk = 1;
	}
	if (w->rc == -1)
		log_err("host=%s %s", w->host, w->err);
	if (w->pem && !cs->closing && current)
		certstore_push(cs, w->host, w->pem, w->len);
	else if (w->pem && c && c->pushing)
		c->pushing--;	/* a newer version's write pushes */
	else if (w->pem && !c && !cs->closing && cs->hooks.loaded)
		cs->hooks.loaded(cs->hooks.arg, w->host, 0);	/* removed meanwhile */
	crypto_secret_free(w->pem, w->len);
	free(w);
}

/* Queues a write of <pem> (or a removal when NULL) of <host>'s file. */
static int certstore_write_queue(struct certstore *cs, const char *host, const char *pem, size_t len)
{
	struct certstore_cert *c = pem ? certstore_get(cs, host) : NULL;
	struct certstore_write *w = calloc(1, sizeof(*w));

	if (!w || (pem && !(w->pem = malloc(len + 1)))) {
		free(w);
		return -1;
	}
	w->it.run = certstore_write_run;
	w->it.done = certstore_write_done;
	w->cs = cs;
	snprintf(w->host, sizeof(w->host), "%s", host);
	snprintf(w->serial, sizeof(w->serial), "%s", c ? c->info.serial_hex : "");
	certstore_path(cs, host, w->path, sizeof(w->path));
	if (pem) {
		memcpy(w->pem, pem, len);
		w->pem[len] = '\0';
		w->len = len;
	}
	workq_submit(cs->wq, &w->it, workq_shard(w->path));
	return 0;
}

/* Writes <pem> of <c> to cert_dir unless there, then pushes it (<c>'s
 * deploy already counted in pushing). */
static void certstore_deploy_pem(struct certstore *cs, struct certstore_cert *c, const char *pem,
				 size_t len)
{
	if (c->on_disk) {
		certstore_push(cs, c->host, pem, len);
		return;
	}
	/* pushed once the file is written, so a restart serves what HAProxy has */
	if (certstore_write_queue(cs, c->host, pem, len) == -1) {
		log_err("host=%s cannot queue the certificate file write: out of memory", c->host);
		certstore_push(cs, c->host, pem, len);
		return;
	}
	c->writing++;
}

/* 1 when memory's facts of <c> are those of the certificate <ci>. */
static int certstore_info_same(const struct certstore_cert *c, const struct crypto_cert_info *ci)
{
	const struct certstore_info *i = &c->info;

	return c->has_info && strcmp(ci->serial_hex, i->serial_hex) == 0 &&
	       ci->not_before == i->not_before && ci->not_after == i->not_after &&
	       strcmp(ci->digest_sha1, i->digest_sha1) == 0 &&
	       strcmp(ci->issuer_cn, i->issuer_cn) == 0 &&
	       strcmp(ci->pubkey_type, i->pubkey_type) == 0 &&
	       strcmp(ci->ari_cert_id, i->ari_cert_id) == 0;
}

/* Fills <c>'s metadata from <ci> (a verified PEM) when it has none or other
 * facts: the certificate wins over a "meta/<host>" record, even one with its
 * serial (issue 19: forged dates or ARI id scheduled renewal). Fires
 * installed. Returns 1 when it changed, 0 when memory knew it, -1 when out
 * of memory. */
static int certstore_learn_info(struct certstore *cs, struct certstore_cert *c,
				const struct crypto_cert_info *ci)
{
	int same_serial = c->has_info && strcmp(ci->serial_hex, c->info.serial_hex) == 0;

	if (certstore_info_same(c, ci))
		return 0;
	if (same_serial)
		log_warn("host=%s serial=%s metadata record disagrees with the certificate "
			 "(not_after %s, certificate %s): the certificate's facts win", c->host,
			 ci->serial_hex, c->info.not_after_str, ci->not_after_str);
	if (certstore_info_set(&c->info, ci) == -1)
		return -1;
	c->has_info = 1;
	if (!same_serial)
		c->on_disk = 0;
	if (cs->hooks.installed)
		cs->hooks.installed(cs->hooks.arg, c);
	return 1;
}

/* A PEM was read and parsed into <ci>: learns from it (certstore_learn_info)
 * and writes the metadata record when that changed. 0, or -1. */
static int certstore_learn_pem(struct certstore *cs, struct certstore_cert *c,
			       const struct crypto_cert_info *ci)
{
	int rc;

	cs->pem_parsed++;
	rc = certstore_learn_info(cs, c, ci);
	if (rc == 1)
		certstore_meta_put(cs, c);	/* the next start reads it */
	return rc == -1 ? -1 : 0;
}

/* Fills <c>'s metadata from <pem> when it has none or another serial (a
 * newer certificate than memory knew, or a stale "meta/<host>"): fires
 * installed and writes the metadata record. Returns 0, or -1 when <pem> is
 * unreadable. */
static int certstore_learn(struct certstore *cs, struct certstore_cert *c, const char *pem,
			   size_t len)
{
	struct crypto_cert_info ci;
	char err[256];
	int rc;

	if (crypto_cert_info(pem, len, &ci, err, sizeof(err)) == -1) {
		cs->pem_parsed++;
		log_err("host=%s stored certificate unreadable: %s", c->host, err);
		return -1;
	}
	rc = certstore_learn_pem(cs, c, &ci);
	crypto_cert_info_clear(&ci);
	return rc;
}

/* on_demand: the PEM of a deploy, read back from storage and checked before
 * it reaches HAProxy. */
static void cb_certstore_deploy_read(void *arg, struct storage_res *res)
{
	struct certstore *cs = arg;
	const char *host = res->key + strlen("certs/");
	struct certstore_cert *c = certstore_get(cs, host);
	struct crypto_cert_info ci;
	int rc;

	health_storage_result(cs->health, res);
	if (!c) {
		/* removed meanwhile: whoever waits for it is told */
		if (cs->hooks.loaded)
			cs->hooks.loaded(cs->hooks.arg, host, 0);
		return;
	}
	if (res->rc != 0) {
		log_err("host=%s cannot push: %s", host,
			res->rc == 1 ? "no longer in storage" : res->err);
		certstore_deployed(cs, host, 0);
		return;
	}
	/* the same check as certstore_install(): nothing unverified is pushed */
	if (certstore_verify(cs, host, res->val, res->len, CERTSTORE_SRC_STORAGE, &ci) == -1) {
		certstore_refused_put(cs, host);
		certstore_deployed(cs, host, 0);
		return;
	}
	rc = certstore_learn_pem(cs, c, &ci);
	crypto_cert_info_clear(&ci);
	if (rc == -1) {
		certstore_deployed(cs, host, 0);
		return;
	}
	certstore_deploy_pem(cs, c, res->val, res->len);
}

void certstore_deploy(struct certstore *cs, struct certstore_cert *c)
{
	char key[STORAGE_KEY_MAX];

	c->pushing++;
	if (c->pem) {
		certstore_deploy_pem(cs, c, c->pem, c->len);
		return;
	}
	snprintf(key, sizeof(key), "certs/%s", c->host);
	if (!storage_get(cs->st, key, cb_certstore_deploy_read, cs)) {
		log_err("host=%s cannot read the certificate to push: out of memory", c->host);
		c->pushing--;
		if (cs->hooks.loaded)
			cs->hooks.loaded(cs->hooks.arg, c->host, 0);
	}
}

void certstore_deploy_issued(struct certstore *cs, struct certstore_cert *c, int renewal)
{
	if (!renewal || certstore_keeps_pem(cs) || c->loaded || c->pushing)
		certstore_deploy(cs, c);
	else
		certstore_trim(cs, c);
}

void certstore_remove(struct certstore *cs, const char *host)
{
	char path[4096], list[4096];
	struct certstore_cert *c = hmap_del(&cs->certs, host);

	nameidx_remove(cs->names, host);
	if (c) {
		certstore_mark_unloaded(cs, c);
		certstore_cert_free(c);
		if (cs->hooks.removed)
			cs->hooks.removed(cs->hooks.arg, host);
	}
	if (certstore_write_queue(cs, host, NULL, 0) == -1)
		log_err("host=%s cannot queue the certificate file removal: out of memory", host);
	certstore_path(cs, host, path, sizeof(path));
	certstore_crt_list_name(cs, list, sizeof(list));
	rt_remove_cert(cs->rt, path, list, certstore_push_done, cs);
}

enum certstore_seen certstore_seen(struct certstore *cs, const char *host)
{
	struct certstore_cert *c = certstore_get(cs, host);

	if (!c && (certstore_keeps_pem(cs) || !nameidx_contains(cs->names, host) ||
		   certstore_refused_active(cs, host) || !(c = certstore_promote(cs, host))))
		return CERTSTORE_SEEN_ABSENT;	/* index-only: made full, pushed below */
	if (c->loaded) {
		/* a renewal being pushed: HAProxy serves the older one meanwhile */
		certstore_mark_loaded(cs, c);
		return CERTSTORE_SEEN_LOADED;
	}
	if (c->pushing)
		return CERTSTORE_SEEN_LOADING;
	/* preload all: the start-up sync pushes what HAProxy lacks */
	if (cs->cfg->preload != CONFIG_PRELOAD_ON_DEMAND)
		return CERTSTORE_SEEN_LOADED;
	/* what storage holds cannot be served: as good as none */
	if (certstore_refused_active(cs, host))
		return CERTSTORE_SEEN_ABSENT;
	log_debug("host=%s first SNI: pushing the stored certificate", host);
	certstore_deploy(cs, c);
	return c->pushing ? CERTSTORE_SEEN_LOADING : CERTSTORE_SEEN_LOADED;
}

size_t certstore_loaded_count(const struct certstore *cs)
{
	return cs->nloaded;
}

struct certstore_cert *certstore_take(struct certstore *cs, const char *host, const char *pem,
				      size_t len, int deploy)
{
	struct certstore_cert *old = certstore_get(cs, host), *c;
	struct crypto_cert_info ci;
	char err[256];
	int same;

	if (old && old->pem && old->len == len && memcmp(old->pem, pem, len) == 0)
		return NULL;
	if (old && !old->pem && old->has_info &&
	    crypto_cert_info(pem, len, &ci, err, sizeof(err)) == 0) {
		same = strcmp(ci.serial_hex, old->info.serial_hex) == 0;
		crypto_cert_info_clear(&ci);
		if (same)
			return NULL;
	}
	c = certstore_install_from(cs, host, pem, len, CERTSTORE_SRC_STORAGE);
	if (c && deploy)
		certstore_deploy(cs, c);
	if (c)
		certstore_trim(cs, c);
	return c;
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

static void cb_certstore_fetch(void *arg, struct storage_res *res)
{
	certstore_fetched(arg, res, 0);
}

static void cb_certstore_fetch_rm(void *arg, struct storage_res *res)
{
	certstore_fetched(arg, res, 1);
}

void certstore_fetch(struct certstore *cs, const char *host, int absent_removes)
{
	char key[STORAGE_KEY_MAX];

	snprintf(key, sizeof(key), "certs/%s", host);
	storage_get(cs->st, key, absent_removes ? cb_certstore_fetch_rm : cb_certstore_fetch, cs);
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

	if (!cs->filling)
		return;
	if (cs->fill_gen != nameidx_gen(cs->names)) {
		cs->fill_gen = nameidx_gen(cs->names);
		cs->fill_pos = 0;
	}
	while (cs->fill_inflight < CERTSTORE_FILL_WINDOW &&
	       (host = nameidx_next(cs->names, &cs->fill_pos))) {
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

/* on_demand: starts (or starts over) the background read of the metadata
 * this node keeps. */
static void certstore_fill_start(struct certstore *cs)
{
	cs->filling = 1;
	cs->fill_pos = 0;
	cs->fill_gen = nameidx_gen(cs->names);
	cs->filled = cs->fill_meta = 0;
	cs->fill_start = ev_time();
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

size_t certstore_load(struct certstore *cs)
{
	struct storage_res list;
	char err[256], host[CERTSTORE_HOST_MAX];
	size_t i;

	if (storage_wait(cs->st, storage_list(cs->st, "certs/", NULL, NULL), &list, err,
			 sizeof(err)) == -1) {
		cs->health->storage_errors++;
		log_err("cannot list stored certificates: %s", err);
		return 0;
	}
	for (i = 0; i < list.n; i++) {
		if (host_normalize(list.keys[i] + strlen("certs/"), host, sizeof(host), HOST_WILDCARD) == -1 ||
		    strcmp(host, list.keys[i] + strlen("certs/")) != 0) {
			log_warn("storage: ignoring %s: not a host name", list.keys[i]);
		} else if (!certstore_keeps_pem(cs)) {
			/* the index only, straight from the listing: metadata
			 * follows in the background for this node's share */
			if (nameidx_add(cs->names, host) == -1)
				log_err("host=%s cannot index the certificate: out of memory", host);
		} else {
			while (cs->loading >= CERTSTORE_LOAD_WINDOW)
				ev_run(cs->loop, EVRUN_ONCE);
			if (storage_get(cs->st, list.keys[i], cb_certstore_load, cs))
				cs->loading++;
		}
		/* the listing leaves memory as it is read */
		free(list.keys[i]);
		list.keys[i] = NULL;
	}
	while (cs->loading > 0)
		ev_run(cs->loop, EVRUN_ONCE);
	storage_res_clear(&list);
	return nameidx_count(cs->names);
}

void certstore_start(struct certstore *cs)
{
	cs->started = 1;
	if (!certstore_keeps_pem(cs) && nameidx_count(cs->names))
		certstore_fill_start(cs);
}

struct certstore_ensure {
	struct certstore *cs;
	size_t written;
};

static void certstore_ensure_cb(void *arg, const char *host, void *val)
{
	struct certstore_ensure *e = arg;
	struct certstore_cert *c = val;
	char path[4096], werr[256];
	struct stat sb;

	certstore_path(e->cs, host, path, sizeof(path));
	if (stat(path, &sb) == 0 && (size_t)sb.st_size == c->len) {
		c->on_disk = 1;
		return;
	}
	if (fs_write_atomic_nosync(path, c->pem, c->len, 0600, werr, sizeof(werr)) == -1) {
		log_err("host=%s %s", host, werr);
		return;
	}
	c->on_disk = 1;
	e->written++;
}

size_t certstore_ensure_files(struct certstore *cs)
{
	struct certstore_ensure e = { cs, 0 };

	/* on_demand: cert_dir holds the hot set, filled as names are seen */
	if (cs->cfg->preload == CONFIG_PRELOAD_ON_DEMAND)
		return 0;
	/* Storage is the durable source, so these are written without an fsync
	 * each and flushed once: thousands of certificates start in a second. */
	hmap_foreach(&cs->certs, certstore_ensure_cb, &e);
	if (e.written && fs_sync_dir(cs->cfg->cert_dir) == -1)
		log_err("haproxy.cert_dir: %s: sync: %s", cs->cfg->cert_dir, strerror(errno));
	if (e.written)
		log_info("haproxy.cert_dir: %zu certificate files written from storage", e.written);
	return e.written;
}

/* ---- HAProxy sync -------------------------------------------------------- */

/* One "which certificates do you hold?" round with one HAProxy, retried
 * until HAProxy answers; kept in cs->syncs so that a stop frees it. */
struct certstore_sync {
	struct certstore *cs;
	size_t idx;
	ev_timer retry;
	LIST_ENTRY(certstore_sync) link;
};

struct certstore_missing {
	struct certstore *cs;
	const struct hmap *have;	/* names HAProxy holds */
	size_t pushed;
};

static void certstore_sync_free(struct certstore_sync *s)
{
	struct certstore *cs = s->cs;

	ev_timer_stop(cs->loop, &s->retry);
	LIST_REMOVE(s, link);
	free(s);
}

static void certstore_push_missing_cb(void *arg, const char *host, void *val)
{
	struct certstore_missing *mi = arg;
	struct certstore_cert *c = val;
	char path[4096];

	certstore_path(mi->cs, host, path, sizeof(path));
	if (hmap_get(mi->have, path)) {
		if (!c->loaded)
			certstore_mark_loaded(mi->cs, c);
		return;
	}
	if (c->pushing)
		return;		/* on its way */
	certstore_mark_unloaded(mi->cs, c);
	/* on_demand: it enters HAProxy when its SNI is seen */
	if (mi->cs->cfg->preload == CONFIG_PRELOAD_ON_DEMAND)
		return;
	certstore_deploy(mi->cs, c);
	mi->pushed++;
}

/* The host whose cert_dir file is <path> (certstore_path() backwards), or
 * -1: not one of cert_dir's, or a long name (its file names a digest). */
static int certstore_host_of_path(const struct certstore *cs, const char *path, char *out,
				  size_t outlen)
{
	size_t dl = strlen(cs->cfg->cert_dir), n;
	const char *f;

	if (strncmp(path, cs->cfg->cert_dir, dl) != 0 || path[dl] != '/')
		return -1;
	f = path + dl + 1;
	n = strlen(f);
	if (n <= 4 || strcmp(f + n - 4, ".pem") != 0 ||
	    strncmp(f, CERTSTORE_LONG_FILE, strlen(CERTSTORE_LONG_FILE)) == 0)
		return -1;
	n -= 4;
	if (strncmp(f, CERTSTORE_WILDCARD_FILE, strlen(CERTSTORE_WILDCARD_FILE)) == 0) {
		f += strlen(CERTSTORE_WILDCARD_FILE);
		n -= strlen(CERTSTORE_WILDCARD_FILE);
		if (n + 2 > outlen)
			return -1;
		out[0] = '*';
		memcpy(out + 1, f, n);
		out[n + 1] = '\0';
		return 0;
	}
	if (n + 1 > outlen)
		return -1;
	memcpy(out, f, n);
	out[n] = '\0';
	return 0;
}

/* on_demand: the index-only names HAProxy holds (a restart kept cert_dir's)
 * join the hot set, in full. Returns how many. */
static size_t certstore_sync_hot(struct certstore *cs, const char *const *names, size_t n)
{
	char host[CERTSTORE_HOST_MAX];
	struct certstore_cert *c;
	size_t i, promoted = 0;

	for (i = 0; i < n; i++) {
		if (certstore_host_of_path(cs, names[i], host, sizeof(host)) == -1 ||
		    certstore_get(cs, host) || !nameidx_contains(cs->names, host) ||
		    !(c = certstore_promote(cs, host)))
			continue;
		c->on_disk = 1;
		certstore_mark_loaded(cs, c);
		promoted++;
	}
	return promoted;
}

static void certstore_sync_names(void *arg, int ok, const char *const *names, size_t n)
{
	struct certstore_sync *s = arg;
	struct certstore_missing mi = { s->cs, NULL, 0 };
	struct hmap have;
	size_t i;

	if (s->cs->closing)
		return;		/* certstore_free() frees it */
	if (!ok) {
		/* HAProxy may not be up yet: the first connection fires no reload */
		log_warn("runtime socket %zu: cannot list certificates, retrying in %.0fs", s->idx,
			 CERTSTORE_SYNC_RETRY_S);
		ev_timer_set(&s->retry, CERTSTORE_SYNC_RETRY_S, 0.);
		ev_timer_start(s->cs->loop, &s->retry);
		return;
	}
	hmap_init(&have);
	for (i = 0; i < n; i++)
		hmap_put(&have, names[i], (void *)1, NULL);
	mi.have = &have;
	hmap_foreach(&s->cs->certs, certstore_push_missing_cb, &mi);
	hmap_clear(&have, NULL);
	/* their metadata: read with the share's, or now when that is done */
	if (!certstore_keeps_pem(s->cs) && certstore_sync_hot(s->cs, names, n) &&
	    s->cs->started && !s->cs->filling)
		certstore_fill_start(s->cs);
	log_info("runtime socket %zu: HAProxy holds %zu certificates, pushed %zu missing", s->idx, n,
		 mi.pushed);
	certstore_sync_free(s);
	certstore_evict(mi.cs);
}

static void cb_certstore_sync_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct certstore_sync *s = w->data;

	if (rt_list_certs(s->cs->rt, s->idx, certstore_sync_names, s) == -1)
		certstore_sync_free(s);
}

void certstore_sync_haproxy(struct certstore *cs, size_t idx)
{
	struct certstore_sync *s = calloc(1, sizeof(*s));

	if (!s)
		return;
	s->cs = cs;
	s->idx = idx;
	ev_init(&s->retry, cb_certstore_sync_retry);
	s->retry.data = s;
	LIST_INSERT_HEAD(&cs->syncs, s, link);
	if (rt_list_certs(cs->rt, idx, certstore_sync_names, s) == -1)
		certstore_sync_free(s);
}

static void certstore_on_rt_reload(void *arg, size_t idx)
{
	log_info("runtime socket %zu: HAProxy restarted or reloaded, re-syncing certificates", idx);
	certstore_sync_haproxy(arg, idx);
}

/* ---- life ---------------------------------------------------------------- */

struct certstore *certstore_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
				struct health *health, char *err, size_t errlen)
{
	struct certstore *cs = calloc(1, sizeof(*cs));

	if (!cs) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	cs->loop = loop;
	cs->cfg = cfg;
	cs->st = st;
	cs->health = health;
	hmap_init(&cs->certs);
	hmap_init(&cs->refused_until);
	cs->names = nameidx_new(NULL);
	LIST_INIT(&cs->syncs);
	TAILQ_INIT(&cs->lru);
	cs->wq = cs->names ? workq_new(loop, 2, err, errlen) : NULL;
	if (!cs->wq) {
		if (!cs->names)
			snprintf(err, errlen, "out of memory");
		certstore_free(cs);
		cs = NULL;
	} else if (mkdir(cfg->cert_dir, 0750) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "haproxy.cert_dir: %s: %s", cfg->cert_dir, strerror(errno));
		certstore_free(cs);
		cs = NULL;
	} else {
		size_t n = fs_clean_tmp(cfg->cert_dir);

		if (n)
			log_info("haproxy.cert_dir: removed %zu temp files left by a stop", n);
	}
out:
	return cs;
}

int certstore_runtime_open(struct certstore *cs, char *err, size_t errlen)
{
	cs->rt = rt_new(cs->loop, (const char *const *)cs->cfg->runtime, cs->cfg->nruntime,
			certstore_on_rt_reload, cs, err, errlen);
	return cs->rt ? 0 : -1;
}

struct rt *certstore_runtime(const struct certstore *cs)
{
	return cs->rt;
}

void certstore_free(struct certstore *cs)
{
	if (!cs)
		return;
	cs->closing = 1;
	/* cert_dir writes in progress complete; nothing more is pushed */
	workq_free(cs->wq);
	rt_free(cs->rt);
	while (!LIST_EMPTY(&cs->syncs))
		certstore_sync_free(LIST_FIRST(&cs->syncs));
	nameidx_free(cs->names);
	hmap_clear(&cs->certs, certstore_cert_free);
	hmap_clear(&cs->refused_until, free);
	free(cs);
}
