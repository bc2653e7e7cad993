/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/certstore against shm storage on a real libev loop:
 * install, take, remove and their hooks; cert_dir writes and removals on the
 * worker queue; fetch from storage (received, absent removes, unchanged);
 * the start-up load (bad key names ignored, nothing deployed) and the
 * cert_dir files it ensures; bundles refused by the check; temp files and
 * their clean-up. No HAProxy listens: pushes fail, memory and
 * cert_dir are what is checked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "tests/unit/core_fixture.h"

#include "core/certstore.h"
#include "lib/log.h"
#include "runtime/runtime.h"

struct seen {
	int installed, removed, received, loaded_ok, loaded_failed;
	char last[CERTSTORE_HOST_MAX];
	const char *detail_only;	/* the detail hook keeps this name alone */
	int detail_calls;
};

/* on_demand: as the fleet's share would, one name of the detail hook's */
static int on_detail(void *arg, const char *host)
{
	struct seen *s = arg;

	s->detail_calls++;
	return strcmp(host, s->detail_only) == 0;
}

static void on_installed(void *arg, const struct certstore_cert *c)
{
	struct seen *s = arg;

	s->installed++;
	snprintf(s->last, sizeof(s->last), "%s", c->host);
}

static void on_removed(void *arg, const char *host)
{
	struct seen *s = arg;

	s->removed++;
	snprintf(s->last, sizeof(s->last), "%s", host);
}

static void on_loaded(void *arg, const char *host, int ok)
{
	struct seen *s = arg;

	if (ok)
		s->loaded_ok++;
	else
		s->loaded_failed++;
}

static void on_received(void *arg, const char *host)
{
	struct seen *s = arg;

	s->received++;
	snprintf(s->last, sizeof(s->last), "%s", host);
}

struct t {
	struct fx f;
	struct certstore *cs;
	struct seen seen;
};

/* A certificate store on <f> reporting through <h> into <seen>; with
 * <short_rt>, runtime answers time out after 200 ms (nobody listens). */
static struct certstore *open_cs(struct fx *f, struct certstore_hooks h, struct seen *seen,
				 int short_rt)
{
	char err[256] = "";
	struct certstore *cs = certstore_new(f->loop, f->cfg, f->st, &f->health, err, sizeof(err));

	if (!cs)
		fail_msg("certstore_new: %s", err);
	assert_int_equal(certstore_runtime_open(cs, err, sizeof(err)), 0);
	if (short_rt)
		rt_set_timeouts(certstore_runtime(cs), 200, 0);
	h.arg = seen;
	certstore_set_hooks(cs, &h);
	return cs;
}

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	struct certstore_hooks h = {
		.installed = on_installed,
		.removed = on_removed,
		.received = on_received,
	};

	assert_non_null(t);
	fx_open(&t->f, "");
	t->cs = open_cs(&t->f, h, &t->seen, 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;

	certstore_free(t->cs);
	fx_close(&t->f);
	free(t);
	return 0;
}

static void file_path(struct t *t, const char *host, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/%s.pem", t->f.cert_dir, host);
}

struct file_cond {
	const char *path;
	int want;	/* 1 present, 0 absent */
};

static int cond_file(void *arg)
{
	struct file_cond *c = arg;
	struct stat sb;

	return (stat(c->path, &sb) == 0) == c->want;
}

static void test_install_take_remove(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL);
	size_t l1, l2;
	char *p1 = fx_pem("a.example.com", now - 3600, now + 90 * 86400, &l1);
	char *p2 = fx_pem("a.example.com", now - 60, now + 90 * 86400, &l2);
	struct certstore_cert *c;

	assert_null(certstore_get(t->cs, "a.example.com"));
	c = certstore_install(t->cs, "a.example.com", p1, l1);
	assert_non_null(c);
	assert_int_equal(t->seen.installed, 1);
	assert_string_equal(t->seen.last, "a.example.com");
	assert_ptr_equal(certstore_get(t->cs, "a.example.com"), c);
	assert_int_equal(certstore_count(t->cs), 1);
	assert_int_equal(c->len, l1);
	assert_true(c->has_info && c->info.serial_hex[0] && c->info.digest_sha1[0]);

	/* the very same PEM: nothing changes, no hook */
	assert_null(certstore_take(t->cs, "a.example.com", p1, l1, 0));
	assert_int_equal(t->seen.installed, 1);
	/* a new one replaces it */
	c = certstore_take(t->cs, "a.example.com", p2, l2, 0);
	assert_non_null(c);
	assert_int_equal(t->seen.installed, 2);
	assert_int_equal(certstore_count(t->cs), 1);
	assert_memory_equal(certstore_get(t->cs, "a.example.com")->pem, p2, l2);

	/* unreadable: refused, memory keeps the old one */
	assert_null(certstore_install(t->cs, "a.example.com", "junk", 4));
	assert_int_equal(t->seen.installed, 2);
	assert_non_null(certstore_get(t->cs, "a.example.com"));

	certstore_remove(t->cs, "a.example.com");
	assert_int_equal(t->seen.removed, 1);
	assert_null(certstore_get(t->cs, "a.example.com"));
	assert_int_equal(certstore_count(t->cs), 0);
	/* removing what is not there fires no hook */
	certstore_remove(t->cs, "a.example.com");
	assert_int_equal(t->seen.removed, 1);
	free(p1);
	free(p2);
}

static int cond_written(void *arg)
{
	return ((struct certstore_cert *)arg)->writing == 0;
}

static void test_deploy_writes_cert_dir(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL);
	size_t len;
	char *pem = fx_pem("b.example.com", now - 3600, now + 90 * 86400, &len), path[256];
	struct certstore_cert *c;
	struct file_cond fc;
	struct stat sb;

	c = certstore_take(t->cs, "b.example.com", pem, len, 1);
	assert_non_null(c);
	assert_int_equal(c->writing, 1);
	file_path(t, "b.example.com", path, sizeof(path));
	/* the write runs on a worker: never inside the call */
	assert_int_not_equal(stat(path, &sb), 0);
	fc.path = path;
	fc.want = 1;
	assert_true(fx_run_until(&t->f, cond_file, &fc, 5));
	c = certstore_get(t->cs, "b.example.com");
	assert_true(fx_run_until(&t->f, cond_written, c, 5));
	assert_int_equal(c->on_disk, 1);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal((size_t)sb.st_size, len);

	certstore_remove(t->cs, "b.example.com");
	fc.want = 0;
	assert_true(fx_run_until(&t->f, cond_file, &fc, 5));
	free(pem);
}

/* issue 19 finding 11: a 253-character name (reachable by SNI under a
 * "*.zone" of domains) has a cert_dir file: "<host>.pem" and its temp name
 * would pass NAME_MAX. Its file is "_long_<sha256>.pem", the same for the
 * write, the removal and a second store (the sync after a reload). */
static void test_long_name_file(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL);
	char host[254], path[4096], want[300];
	size_t len, i;
	char *pem;
	struct certstore_cert *c;
	struct file_cond fc;
	struct stat sb;
	unsigned char md[32];
	unsigned int mdlen;

	/* 63 + 1 + 63 + 1 + 63 + 1 + 56 + ".test" = 253 */
	memset(host, 'a', 253);
	host[63] = host[127] = host[191] = '.';
	memcpy(host + 248, ".test", 6);
	assert_int_equal(strlen(host), 253);
	pem = fx_pem(host, now - 3600, now + 90 * 86400, &len);
	assert_int_equal(EVP_Digest(host, 253, md, &mdlen, EVP_sha256(), NULL), 1);
	snprintf(want, sizeof(want), "%s/_long_", t->f.cert_dir);
	for (i = 0; i < sizeof(md); i++)
		snprintf(want + strlen(want), 3, "%02x", md[i]);
	strcat(want, ".pem");
	assert_true(strlen(strrchr(want, '/') + 1) < 100);

	c = certstore_take(t->cs, host, pem, len, 1);
	assert_non_null(c);
	fc.path = want;
	fc.want = 1;
	assert_true(fx_run_until(&t->f, cond_file, &fc, 5));
	c = certstore_get(t->cs, host);
	assert_true(fx_run_until(&t->f, cond_written, c, 5));
	assert_int_equal(c->on_disk, 1);
	assert_int_equal(stat(want, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal((size_t)sb.st_size, len);
	/* a name of 200 characters keeps its own file */
	snprintf(path, sizeof(path), "%s/%s.pem", t->f.cert_dir, host + 53);
	assert_int_equal(strlen(host + 53), 200);

	certstore_remove(t->cs, host);
	fc.want = 0;
	assert_true(fx_run_until(&t->f, cond_file, &fc, 5));
	free(pem);
	pem = fx_pem(host + 53, now - 3600, now + 90 * 86400, &len);
	assert_non_null(certstore_take(t->cs, host + 53, pem, len, 1));
	fc.path = path;
	fc.want = 1;
	assert_true(fx_run_until(&t->f, cond_file, &fc, 5));
	free(pem);
}

static int cond_received(void *arg)
{
	return ((struct seen *)arg)->received > 0;
}

static int cond_removed(void *arg)
{
	return ((struct seen *)arg)->removed > 0;
}

static void test_fetch(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL);
	size_t l1, l2;
	char *p1 = fx_pem("c.example.com", now - 3600, now + 90 * 86400, &l1);
	char *p2 = fx_pem("c.example.com", now - 60, now + 90 * 86400, &l2);

	assert_non_null(certstore_install(t->cs, "c.example.com", p1, l1));
	/* another node stored a new one */
	fx_put(&t->f, "certs/c.example.com", p2, l2);
	certstore_fetch(t->cs, "c.example.com");
	assert_int_equal(t->seen.received, 0);	/* completes on a later turn */
	assert_true(fx_run_until(&t->f, cond_received, &t->seen, 5));
	assert_int_equal(t->seen.received, 1);
	assert_string_equal(t->seen.last, "c.example.com");
	assert_memory_equal(certstore_get(t->cs, "c.example.com")->pem, p2, l2);

	/* the same again: not received twice */
	certstore_fetch(t->cs, "c.example.com");
	fx_run_for(&t->f, 0.1);
	assert_int_equal(t->seen.received, 1);

	/* deleted elsewhere: removed here too */
	fx_del(&t->f, "certs/c.example.com");
	certstore_fetch(t->cs, "c.example.com");
	assert_true(fx_run_until(&t->f, cond_removed, &t->seen, 5));
	assert_null(certstore_get(t->cs, "c.example.com"));
	free(p1);
	free(p2);
}

static int cond_received_n(void *arg)
{
	return ((struct seen *)arg)->received >= 200;
}

/* A wave of changes elsewhere: each name read once, at most 32 reads on the
 * store at a time (the rest wait in order), so that an http-01 look-up is
 * never queued behind thousands of reads; every one still arrives. */
static void test_fetch_window(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL);
	char host[64], path[128], *pem[200];
	size_t len[200], most = 0;
	int i;

	for (i = 0; i < 200; i++) {
		snprintf(host, sizeof(host), "f%03d.example.com", i);
		pem[i] = fx_pem(host, now - 3600, now + 90 * 86400, &len[i]);
		snprintf(path, sizeof(path), "certs/%s", host);
		fx_put(&t->f, path, pem[i], len[i]);
	}
	for (i = 0; i < 200; i++) {
		snprintf(host, sizeof(host), "f%03d.example.com", i);
		certstore_fetch(t->cs, host);
		certstore_fetch(t->cs, host);	/* named twice: read once */
	}
	assert_int_equal(storage_inflight(t->f.st), 32);
	assert_int_equal(certstore_fetch_backlog(t->cs), 168);
	while (t->seen.received < 200) {
		if (storage_inflight(t->f.st) > most)
			most = storage_inflight(t->f.st);
		if (!fx_run_until(&t->f, cond_received_n, &t->seen, 0.01) &&
		    certstore_fetch_backlog(t->cs) == 0 && storage_inflight(t->f.st) == 0)
			break;
	}
	assert_int_equal(t->seen.received, 200);
	assert_true(most <= 32);
	assert_int_equal(certstore_fetch_backlog(t->cs), 0);
	for (i = 0; i < 200; i++)
		free(pem[i]);
}

static void test_load_and_ensure_files(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL);
	const char *hosts[] = { "d1.example.com", "d2.example.com", "d3.example.com" };
	char key[STORAGE_KEY_MAX], path[256], *pem;
	struct stat sb;
	size_t i, len;

	for (i = 0; i < 3; i++) {
		pem = fx_pem(hosts[i], now - 3600, now + 90 * 86400, &len);
		snprintf(key, sizeof(key), "certs/%s", hosts[i]);
		fx_put(&t->f, key, pem, len);
		free(pem);
	}
	/* not a host name as stored (upper case): ignored */
	pem = fx_pem("upper.example.com", now - 3600, now + 90 * 86400, &len);
	fx_put(&t->f, "certs/Upper.example.com", pem, len);
	free(pem);
	assert_int_equal(certstore_load(t->cs), 3);
	assert_int_equal(t->seen.installed, 3);
	assert_null(certstore_get(t->cs, "upper.example.com"));
	for (i = 0; i < 3; i++) {
		assert_non_null(certstore_get(t->cs, hosts[i]));
		/* loading deploys nothing */
		file_path(t, hosts[i], path, sizeof(path));
		assert_int_not_equal(stat(path, &sb), 0);
		assert_int_equal(certstore_get(t->cs, hosts[i])->on_disk, 0);
	}
	assert_int_equal(certstore_ensure_files(t->cs), 3);
	for (i = 0; i < 3; i++) {
		file_path(t, hosts[i], path, sizeof(path));
		assert_int_equal(stat(path, &sb), 0);
		assert_int_equal(certstore_get(t->cs, hosts[i])->on_disk, 1);
	}
	/* already there: nothing written again */
	assert_int_equal(certstore_ensure_files(t->cs), 0);
}

static int cond_installed3(void *arg)
{
	return ((struct seen *)arg)->installed >= 3;
}

static int cond_installed6(void *arg)
{
	return ((struct seen *)arg)->installed >= 6;
}

static int cond_loaded_failed(void *arg)
{
	return ((struct seen *)arg)->loaded_failed > 0;
}

/* haproxy.preload on_demand: the start-up load reads the index only (no
 * full entry, no metadata, no PEM, no hook); certstore_start() reads the metadata in the
 * background (installed fires) and keeps no PEM; the same certificate taken
 * again is no change (by serial), a new one is learnt and not kept; an SNI
 * deploys from storage: cert_dir written, the push (nobody listens) fails and
 * is reported, nothing kept in memory; nothing is written at start. */
static void test_on_demand_index(void **state)
{
	static const char *const hosts[3] = { "d1.example.com", "d2.example.com", "d3.example.com" };
	struct certstore_hooks h = {
		.installed = on_installed,
		.removed = on_removed,
		.received = on_received,
		.loaded = on_loaded,
	};
	struct seen seen = { 0 };
	struct certstore *cs;
	struct certstore_cert *c;
	struct file_cond fc;
	struct fx f;
	time_t now = time(NULL);
	char *pem[3], *p2, path[256];
	size_t len[3], l2;
	int i;

	fx_open_hap(&f, "", "\"preload\": \"on_demand\", \"max_loaded\": 2");
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "certs/%s", hosts[i]);
		pem[i] = fx_pem(hosts[i], now - 3600, now + 90 * 86400, &len[i]);
		fx_put(&f, path, pem[i], len[i]);
	}
	cs = open_cs(&f, h, &seen, 1);

	assert_int_equal(certstore_load(cs), 3);
	assert_int_equal(certstore_ensure_files(cs), 0);
	for (i = 0; i < 3; i++) {
		assert_null(certstore_get(cs, hosts[i]));
		assert_true(certstore_stored(cs, hosts[i]));
	}
	assert_false(certstore_stored(cs, "nothing.example.com"));
	assert_int_equal(certstore_count(cs), 3);
	assert_int_equal(certstore_detailed(cs), 0);
	assert_int_equal(seen.installed, 0);
	certstore_start(cs);
	assert_true(fx_run_until(&f, cond_installed3, &seen, 5));
	for (i = 0; i < 3; i++) {
		c = certstore_get(cs, hosts[i]);
		assert_true(c->has_info);
		assert_null(c->pem);
		assert_true(c->info.serial_hex[0] != '\0');
		assert_true(c->info.not_after > now + 89 * 86400);
	}
	/* no detail hook (a single node): every name in full */
	assert_int_equal(certstore_detailed(cs), 3);
	/* the same certificate again: no change; a new one: learnt, not kept */
	assert_null(certstore_take(cs, hosts[0], pem[0], len[0], 0));
	p2 = fx_pem(hosts[0], now - 60, now + 90 * 86400, &l2);
	c = certstore_take(cs, hosts[0], p2, l2, 0);
	assert_non_null(c);
	assert_null(c->pem);
	assert_int_equal(seen.installed, 4);

	/* an SNI: deployed from storage (d2's PEM), cert_dir first */
	assert_int_equal(certstore_seen(cs, hosts[1]), CERTSTORE_SEEN_LOADING);
	assert_int_equal(certstore_seen(cs, hosts[1]), CERTSTORE_SEEN_LOADING);	/* one push */
	assert_int_equal(certstore_seen(cs, "nothing.example.com"), CERTSTORE_SEEN_ABSENT);
	snprintf(path, sizeof(path), "%s/%s.pem", f.cert_dir, hosts[1]);
	fc.path = path;
	fc.want = 1;
	assert_true(fx_run_until(&f, cond_file, &fc, 5));
	assert_true(fx_run_until(&f, cond_loaded_failed, &seen, 5));
	c = certstore_get(cs, hosts[1]);
	assert_int_equal(c->pushing, 0);
	assert_false(c->loaded);
	assert_null(c->pem);
	assert_int_equal(certstore_loaded_count(cs), 0);

	/* a renewal of a name HAProxy does not hold is not pushed, nor kept */
	c = certstore_install(cs, hosts[2], pem[2], len[2]);
	assert_non_null(c);
	assert_non_null(c->pem);
	certstore_deploy_issued(cs, c, 1);
	assert_int_equal(c->pushing, 0);
	assert_null(c->pem);
	/* a new name is */
	certstore_deploy_issued(cs, c, 0);
	assert_int_equal(c->pushing, 1);

	certstore_free(cs);
	fx_close(&f);
	for (i = 0; i < 3; i++)
		free(pem[i]);
	free(p2);
}

static int cond_installed1(void *arg);

static int cond_removed1(void *arg)
{
	return ((struct seen *)arg)->removed >= 1;
}

static int cond_received1(void *arg)
{
	return ((struct seen *)arg)->received >= 1;
}

/* Issue 23: with the detail hook (the fleet's share), the background read
 * fills only the names this node keeps; the others stay index-only, stored
 * all the same (certstore_stored, certstore_count); an SNI of an index-only
 * name makes it full and pushes it; when the share moves (members changed)
 * the names no longer this node's and not hot go back to the index (removed
 * fires) and the new ones are read; a certificate another node stored for a
 * name not this node's is indexed without being parsed. */
static void test_on_demand_share(void **state)
{
	static const char *const hosts[4] = { "s1.example.com", "s2.example.com", "s3.example.com",
					      "s4.example.com" };
	struct certstore_hooks h = {
		.installed = on_installed,
		.removed = on_removed,
		.received = on_received,
		.loaded = on_loaded,
		.detail = on_detail,
	};
	struct seen seen = { .detail_only = "s1.example.com" };
	struct certstore *cs;
	struct certstore_cert *c;
	struct fx f;
	time_t now = time(NULL);
	char *pem[4], path[256];
	size_t len[4];
	unsigned long parsed;
	int i;

	fx_open_hap(&f, "", "\"preload\": \"on_demand\"");
	for (i = 0; i < 4; i++) {
		pem[i] = fx_pem(hosts[i], now - 3600, now + 90 * 86400, &len[i]);
		if (i == 3)
			break;	/* stored later, by "another node" */
		snprintf(path, sizeof(path), "certs/%s", hosts[i]);
		fx_put(&f, path, pem[i], len[i]);
	}
	cs = open_cs(&f, h, &seen, 1);
	assert_int_equal(certstore_load(cs), 3);
	certstore_start(cs);
	assert_true(fx_run_until(&f, cond_installed1, &seen, 5));
	fx_run_for(&f, 0.3);
	assert_int_equal(seen.installed, 1);
	assert_non_null(certstore_get(cs, hosts[0]));
	assert_null(certstore_get(cs, hosts[1]));
	assert_null(certstore_get(cs, hosts[2]));
	assert_true(certstore_stored(cs, hosts[1]));
	assert_int_equal(certstore_count(cs), 3);
	assert_int_equal(certstore_detailed(cs), 1);

	/* an SNI of an index-only name: made full, pushed from storage */
	assert_int_equal(certstore_seen(cs, hosts[1]), CERTSTORE_SEEN_LOADING);
	c = certstore_get(cs, hosts[1]);
	assert_non_null(c);
	assert_int_equal(c->pushing, 1);
	assert_true(fx_run_until(&f, cond_loaded_failed, &seen, 5));
	assert_true(certstore_get(cs, hosts[1])->has_info);

	/* the share moves to s3: s1 drops to the index, s3 is read; s2 is in
	 * cert_dir (hot), it stays */
	seen.detail_only = hosts[2];
	certstore_members_changed(cs);
	assert_int_equal(seen.removed, 1);
	assert_string_equal(seen.last, hosts[0]);
	assert_null(certstore_get(cs, hosts[0]));
	assert_true(certstore_stored(cs, hosts[0]));
	assert_true(fx_run_until(&f, cond_removed1, &seen, 1));
	seen.installed = 0;
	assert_true(fx_run_until(&f, cond_installed1, &seen, 5));
	assert_non_null(certstore_get(cs, hosts[2]));
	assert_non_null(certstore_get(cs, hosts[1]));
	assert_int_equal(certstore_detailed(cs), 2);

	/* another node stored s4, not this node's: indexed, not parsed */
	snprintf(path, sizeof(path), "certs/%s", hosts[3]);
	fx_put(&f, path, pem[3], len[3]);
	parsed = certstore_pem_parsed(cs);
	certstore_fetch(cs, hosts[3]);
	assert_true(fx_run_until(&f, cond_received1, &seen, 5));
	assert_true(certstore_stored(cs, hosts[3]));
	assert_null(certstore_get(cs, hosts[3]));
	assert_int_equal(certstore_pem_parsed(cs), parsed);
	assert_int_equal(certstore_count(cs), 4);
	/* and an index-only name deleted goes from the index */
	certstore_remove(cs, hosts[0]);
	assert_false(certstore_stored(cs, hosts[0]));
	assert_int_equal(certstore_count(cs), 3);

	certstore_free(cs);
	fx_close(&f);
	for (i = 0; i < 4; i++)
		free(pem[i]);
}

/* on_demand tests: <n> names "certs/<letter>NNNNN.example.com" stored,
 * holding a bundle that is never opened (only the names are read). */
static void put_names(struct fx *f, char letter, int n)
{
	char path[256];
	int i;

	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "certs/%c%05d.example.com", letter, i);
		fx_put(f, path, "x", 1);
	}
}

/* The background walk of a large index yields the loop every few thousand
 * names and goes on at the next turn: the one name of 10,000 this node keeps
 * is read, wherever the walk meets it. */
static void test_on_demand_walk_goes_on(void **state)
{
	struct certstore_hooks h = { .installed = on_installed, .detail = on_detail };
	struct seen seen = { .detail_only = "w07777.example.com" };
	struct certstore *cs;
	struct fx f;
	time_t now = time(NULL);
	char *pem, path[256];
	size_t len;

	fx_open_hap(&f, "", "\"preload\": \"on_demand\"");
	put_names(&f, 'w', 10000);
	pem = fx_pem(seen.detail_only, now - 3600, now + 90 * 86400, &len);
	snprintf(path, sizeof(path), "certs/%s", seen.detail_only);
	fx_put(&f, path, pem, len);
	cs = open_cs(&f, h, &seen, 1);
	assert_int_equal(certstore_load(cs), 10000);
	certstore_start(cs);
	/* one loop turn walks a step, not the whole index */
	assert_true(seen.detail_calls <= 4096);
	assert_true(fx_run_until(&f, cond_installed1, &seen, 5));
	fx_run_for(&f, 0.2);
	/* every name was asked about: the walk went on to the end */
	assert_true(seen.detail_calls >= 9999);
	assert_int_equal(certstore_detailed(cs), 1);
	assert_true(certstore_get(cs, seen.detail_only)->has_info);
	certstore_free(cs);
	fx_close(&f);
	free(pem);
}

/* A members change reads first the names now this node's that another node
 * stored lately (a dead node's fresh work), then walks the index: a name
 * stored just before its owner died is taken over at once, not when the
 * walk of a million names reaches it. */
static void test_on_demand_recent_first(void **state)
{
	struct certstore_hooks h = { .installed = on_installed, .received = on_received,
				     .detail = on_detail };
	struct seen seen = { .detail_only = "none.example.com" };
	const char *fresh = "fresh.example.com";
	struct certstore *cs;
	struct fx f;
	time_t now = time(NULL);
	char *pem, path[256];
	size_t len;

	fx_open_hap(&f, "", "\"preload\": \"on_demand\"");
	put_names(&f, 'r', 2000);
	cs = open_cs(&f, h, &seen, 1);
	assert_int_equal(certstore_load(cs), 2000);
	certstore_start(cs);
	fx_run_for(&f, 0.2);
	assert_int_equal(certstore_fill_recent(cs), 0);
	/* another node stores <fresh>, not this node's: index only */
	pem = fx_pem(fresh, now - 3600, now + 90 * 86400, &len);
	snprintf(path, sizeof(path), "certs/%s", fresh);
	fx_put(&f, path, pem, len);
	certstore_fetch(cs, fresh);
	assert_true(fx_run_until(&f, cond_received1, &seen, 5));
	assert_null(certstore_get(cs, fresh));
	/* its owner leaves: <fresh> is this node's now, and read first */
	seen.detail_only = fresh;
	seen.installed = 0;
	certstore_members_changed(cs);
	assert_int_equal(certstore_fill_recent(cs), 1);
	assert_true(fx_run_until(&f, cond_installed1, &seen, 5));
	assert_true(certstore_get(cs, fresh)->has_info);
	/* a change that moves nothing recent reads nothing first */
	seen.detail_only = "r00001.example.com";
	certstore_members_changed(cs);
	assert_int_equal(certstore_fill_recent(cs), 0);
	certstore_free(cs);
	fx_close(&f);
	free(pem);
}

struct indexed_rec {
	int calls;
	size_t n;
};

static void on_indexed(void *arg, size_t n)
{
	struct indexed_rec *r = arg;

	r->calls++;
	r->n = n;
}

static int cond_indexed(void *arg)
{
	return ((struct indexed_rec *)arg)->calls > 0;
}

static int cond_loaded_failed2(void *arg)
{
	return ((struct seen *)arg)->loaded_failed >= 2;
}

/* on_demand: the start-up read of the names runs in the background; an SNI
 * meanwhile of a stored name not indexed yet looks it up in storage (held:
 * LOADING) and indexes it, one of a name not stored is answered absent and
 * not looked up again; then the index holds every name and done() runs. */
static void test_on_demand_index_background(void **state)
{
	struct certstore_hooks h = { .loaded = on_loaded, .detail = on_detail };
	struct seen seen = { .detail_only = "none.example.com" };
	struct indexed_rec ir = { 0 };
	struct certstore *cs;
	struct fx f;
	time_t now = time(NULL);
	char *pem;
	size_t len;

	fx_open_hap(&f, "", "\"preload\": \"on_demand\"");
	put_names(&f, 'b', 300);
	pem = fx_pem("early.example.com", now - 3600, now + 90 * 86400, &len);
	fx_put(&f, "certs/early.example.com", pem, len);
	cs = open_cs(&f, h, &seen, 1);
	assert_int_equal(certstore_load_start(cs, on_indexed, &ir), 0);
	assert_true(certstore_indexing(cs));
	assert_int_equal(certstore_count(cs), 0);	/* nothing read yet */
	/* stored, not indexed yet: looked up, held */
	assert_int_equal(certstore_seen(cs, "early.example.com"), CERTSTORE_SEEN_LOADING);
	/* not stored: looked up too, then known absent */
	assert_int_equal(certstore_seen(cs, "nothere.example.com"), CERTSTORE_SEEN_LOADING);
	assert_true(fx_run_until(&f, cond_loaded_failed2, &seen, 5));	/* no HAProxy here */
	assert_null(certstore_get(cs, "nothere.example.com"));
	assert_false(certstore_stored(cs, "nothere.example.com"));
	assert_int_equal(certstore_seen(cs, "nothere.example.com"), CERTSTORE_SEEN_ABSENT);
	assert_true(certstore_stored(cs, "early.example.com"));
	assert_true(certstore_get(cs, "early.example.com")->has_info);
	assert_true(fx_run_until(&f, cond_indexed, &ir, 5));
	assert_int_equal(ir.calls, 1);
	assert_int_equal(ir.n, 301);
	assert_false(certstore_indexing(cs));
	assert_int_equal(certstore_count(cs), 301);
	/* once indexed, a name not stored is absent without a look-up */
	assert_int_equal(certstore_seen(cs, "other.example.com"), CERTSTORE_SEEN_ABSENT);
	assert_null(certstore_get(cs, "other.example.com"));
	certstore_free(cs);
	fx_close(&f);
	free(pem);
}

/* Nothing unverified is kept, written or pushed: a bundle for another name,
 * an expired one, one whose key is not the leaf's, one with two keys. */
static void test_refuses_unverified(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL);
	size_t lo, le, lg, lk;
	char *other = fx_pem("other.example.com", now - 3600, now + 90 * 86400, &lo);
	char *expired = fx_pem("a.example.com", now - 90 * 86400, now - 60, &le);
	char *good = fx_pem("a.example.com", now - 3600, now + 90 * 86400, &lg);
	char *swapped, *twokeys, path[256];
	const char *k1, *k2;
	struct stat sb;

	/* the leaf of <good> with the key of <other> */
	k1 = strstr(good, "-----BEGIN PRIVATE KEY");
	k2 = strstr(other, "-----BEGIN PRIVATE KEY");
	assert_non_null(k1);
	assert_non_null(k2);
	swapped = calloc(1, lg + lo + 1);
	assert_non_null(swapped);
	memcpy(swapped, good, (size_t)(k1 - good));
	strcat(swapped, k2);
	/* another key before ours: HAProxy would take the first */
	twokeys = calloc(1, lg + lo + 1);
	assert_non_null(twokeys);
	strcpy(twokeys, k2);
	strcat(twokeys, good);
	lk = strlen(twokeys);

	assert_null(certstore_take(t->cs, "a.example.com", other, lo, 1));
	assert_null(certstore_take(t->cs, "a.example.com", expired, le, 1));
	assert_null(certstore_take(t->cs, "a.example.com", twokeys, lk, 1));
	assert_int_equal(certstore_refused(t->cs, CERTSTORE_SRC_STORAGE), 3);
	assert_null(certstore_install(t->cs, "a.example.com", swapped, strlen(swapped)));
	assert_int_equal(certstore_refused(t->cs, CERTSTORE_SRC_CA), 1);
	assert_int_equal(t->seen.installed, 0);
	assert_null(certstore_get(t->cs, "a.example.com"));
	fx_run_for(&t->f, 0.2);
	file_path(t, "a.example.com", path, sizeof(path));
	assert_int_not_equal(stat(path, &sb), 0);
	/* the right one passes */
	assert_non_null(certstore_take(t->cs, "a.example.com", good, lg, 0));
	assert_int_equal(certstore_refused(t->cs, CERTSTORE_SRC_STORAGE), 3);
	free(other);
	free(expired);
	free(good);
	free(swapped);
	free(twokeys);
}

/* A pid no process has: a child that has exited and been reaped. */
static pid_t dead_pid(void)
{
	pid_t p = fork();

	assert_true(p >= 0);
	if (p == 0)
		_exit(0);
	assert_int_equal(waitpid(p, NULL, 0), p);
	return p;
}

static void touch(const char *path)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("partial", f);
	fclose(f);
}

/* Temp files live in <cert_dir>/.tmp (HAProxy's "crt <dir>" skips it), and
 * the leftovers of a dead writer, there or in cert_dir itself (older
 * versions), are removed at start. */
static void test_temp_files(void **state)
{
	struct t *t = *state;
	time_t now = time(NULL);
	char p1[512], p2[512], p3[512], p4[512], err[256], *pem;
	struct certstore *cs2;
	struct file_cond fc;
	struct stat sb;
	DIR *d;
	struct dirent *de;
	size_t len;
	pid_t dead = dead_pid();

	pem = fx_pem("t.example.com", now - 3600, now + 90 * 86400, &len);
	assert_non_null(certstore_take(t->cs, "t.example.com", pem, len, 1));
	file_path(t, "t.example.com", p1, sizeof(p1));
	fc.path = p1;
	fc.want = 1;
	assert_true(fx_run_until(&t->f, cond_file, &fc, 5));
	assert_true(fx_run_until(&t->f, cond_written, certstore_get(t->cs, "t.example.com"), 5));
	/* only the certificate and the hidden temp folder in cert_dir */
	d = opendir(t->f.cert_dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, ".tmp") == 0)
			continue;
		assert_string_equal(de->d_name, "t.example.com.pem");
	}
	closedir(d);

	snprintf(p2, sizeof(p2), "%s/.tmp/x.example.com.pem.%ld.7", t->f.cert_dir, (long)dead);
	snprintf(p3, sizeof(p3), "%s/y.example.com.pem.tmp.%ld", t->f.cert_dir, (long)dead);
	snprintf(p4, sizeof(p4), "%s/.tmp/z.example.com.pem.%ld.1", t->f.cert_dir, (long)getpid());
	touch(p2);
	touch(p3);
	touch(p4);
	cs2 = certstore_new(t->f.loop, t->f.cfg, t->f.st, &t->f.health, err, sizeof(err));
	assert_non_null(cs2);
	assert_int_not_equal(stat(p2, &sb), 0);
	assert_int_not_equal(stat(p3, &sb), 0);
	/* a live writer's (this process') file stays */
	assert_int_equal(stat(p4, &sb), 0);
	assert_int_equal(stat(p1, &sb), 0);
	certstore_free(cs2);
	unlink(p4);
	free(pem);
}

/* ---- metadata records ---------------------------------------------------- */

/* The record of <pem>/<len> for <host>, as the agent writes it (malloc'd). */
static char *meta_of(const char *host, const char *pem, size_t len, size_t *mlen)
{
	struct crypto_cert_info ci;
	struct certstore_info ri;
	char err[256], *text;

	if (crypto_cert_info(pem, len, &ci, err, sizeof(err)) == -1)
		fail_msg("crypto_cert_info: %s", err);
	ri = (struct certstore_info){
		.not_before = ci.not_before, .not_after = ci.not_after,
		.serial_hex = ci.serial_hex, .digest_sha1 = ci.digest_sha1,
		.issuer_cn = ci.issuer_cn, .pubkey_type = ci.pubkey_type,
		.ari_cert_id = ci.ari_cert_id,
	};
	text = certstore_meta_encode(host, &ri, mlen);
	assert_non_null(text);
	crypto_cert_info_clear(&ci);
	return text;
}

/* The serial of the record stored as <key>, "" when absent or bad. */
static void stored_meta_serial(struct fx *f, const char *host, char *out, size_t outlen)
{
	struct storage_res res;
	struct crypto_cert_info ci;
	char key[STORAGE_KEY_MAX], err[256];

	out[0] = '\0';
	snprintf(key, sizeof(key), CERTSTORE_META_PREFIX "%s", host);
	if (storage_wait(f->st, storage_get(f->st, key, NULL, NULL), &res, err, sizeof(err)) == 0) {
		if (certstore_meta_decode(host, res.val, res.len, &ci, err, sizeof(err)) == 0)
			snprintf(out, outlen, "%s", ci.serial_hex);
		storage_res_clear(&res);
	}
}

static char *serial_of(const char *pem, size_t len, char *out, size_t outlen)
{
	struct crypto_cert_info ci;
	char err[256];

	assert_int_equal(crypto_cert_info(pem, len, &ci, err, sizeof(err)), 0);
	snprintf(out, outlen, "%s", ci.serial_hex);
	crypto_cert_info_clear(&ci);
	return out;
}

/* A record reads back as written; every malformed one is refused with a
 * reason: not JSON, another version, another host, bad serial, SHA-1, ARI
 * id, control characters, times out of range or reversed, too large. */
static void test_meta_codec(void **state)
{
	static const char *const bad[] = {
		"not json",
		"[1,2]",
		"{\"v\":2,\"host\":\"a.example.com\",\"serial\":\"0A\",\"not_before\":1,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"b.example.com\",\"serial\":\"0A\",\"not_before\":1,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"A.example.com\",\"serial\":\"0A\",\"not_before\":1,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"a.example.com\",\"serial\":\"0a\",\"not_before\":1,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"a.example.com\",\"serial\":\"\",\"not_before\":1,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"a.example.com\",\"not_before\":1,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"a.example.com\",\"serial\":\"0A\",\"not_before\":1,\"not_after\":2,\"sha1\":\"AB:CD\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"a.example.com\",\"serial\":\"0A\",\"not_before\":1,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\\u0001\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"a.example.com\",\"serial\":\"0A\",\"not_before\":1,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"a b\"}",
		"{\"v\":1,\"host\":\"a.example.com\",\"serial\":\"0A\",\"not_before\":0,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"a.example.com\",\"serial\":\"0A\",\"not_before\":1,\"not_after\":99999999999999,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"a.example.com\",\"serial\":\"0A\",\"not_before\":3,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"host\":\"a.example.com\",\"serial\":\"0A\",\"not_before\":\"1\",\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
		"{\"v\":1,\"v\":1,\"host\":\"a.example.com\",\"serial\":\"0A\",\"not_before\":1,\"not_after\":2,\"sha1\":\"\",\"issuer\":\"x\",\"key\":\"k\",\"ari\":\"\"}",
	};
	time_t now = time(NULL);
	struct crypto_cert_info ci, want;
	char err[256], *pem, *text, *big;
	size_t len, mlen, i;

	pem = fx_pem("a.example.com", now - 3600, now + 90 * 86400, &len);
	text = meta_of("a.example.com", pem, len, &mlen);
	assert_true(mlen < 1024);
	assert_int_equal(certstore_meta_decode("a.example.com", text, mlen, &ci, err, sizeof(err)), 0);
	assert_int_equal(crypto_cert_info(pem, len, &want, err, sizeof(err)), 0);
	assert_string_equal(ci.serial_hex, want.serial_hex);
	assert_string_equal(ci.digest_sha1, want.digest_sha1);
	assert_string_equal(ci.issuer_cn, want.issuer_cn);
	assert_string_equal(ci.pubkey_type, want.pubkey_type);
	assert_string_equal(ci.ari_cert_id, want.ari_cert_id);
	assert_string_equal(ci.not_before_str, want.not_before_str);
	assert_string_equal(ci.not_after_str, want.not_after_str);
	assert_int_equal(ci.not_before, want.not_before);
	assert_int_equal(ci.not_after, want.not_after);
	crypto_cert_info_clear(&want);
	/* the record of another host is not this one's */
	assert_int_equal(certstore_meta_decode("b.example.com", text, mlen, &ci, err, sizeof(err)), -1);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (certstore_meta_decode("a.example.com", bad[i], strlen(bad[i]), &ci, err,
					  sizeof(err)) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_true(err[0] != '\0');
		assert_string_equal(ci.serial_hex, "");
	}
	/* a good record, padded beyond the limit */
	big = calloc(1, CERTSTORE_META_MAX + 64);
	assert_non_null(big);
	memcpy(big, text, mlen);
	memset(big + mlen, ' ', CERTSTORE_META_MAX + 1 - mlen);
	assert_int_equal(certstore_meta_decode("a.example.com", big, CERTSTORE_META_MAX + 1, &ci,
					       err, sizeof(err)), -1);
	free(big);
	free(text);
	free(pem);
}

/* haproxy.preload on_demand start from the records: m1 (good record) and m2
 * (good record, its certificate garbage) are known without any PEM parsed,
 * m2's metadata coming from its record alone; m3 (no record: an older
 * store), m4 (malformed record) and m5 (the record of another name) fall
 * back to their certificates, which writes their records. m6's record is
 * stale (another serial than its certificate): its first push reads the PEM,
 * corrects memory and rewrites the record. */
static void test_on_demand_meta(void **state)
{
	static const char *const hosts[6] = { "m1.example.com", "m2.example.com", "m3.example.com",
					      "m4.example.com", "m5.example.com", "m6.example.com" };
	struct certstore_hooks h = { .installed = on_installed, .loaded = on_loaded };
	struct seen seen = { 0 };
	struct certstore *cs;
	struct certstore_cert *c;
	struct fx f;
	time_t now = time(NULL);
	char *pem[6], *m, *old6, key[STORAGE_KEY_MAX], want[130], got[130], tb[CERTSTORE_TIME_STR];
	size_t len[6], ml, l6;
	int i;

	fx_open_hap(&f, "", "\"preload\": \"on_demand\"");
	for (i = 0; i < 6; i++) {
		pem[i] = fx_pem(hosts[i], now - 3600, now + 60 * 86400, &len[i]);
		snprintf(key, sizeof(key), "certs/%s", hosts[i]);
		if (i == 1)
			fx_put(&f, key, "-----BEGIN CERTIFICATE-----\ngarbage\n", 37);
		else
			fx_put(&f, key, pem[i], len[i]);
	}
	for (i = 0; i < 2; i++) {
		m = meta_of(hosts[i], pem[i], len[i], &ml);
		snprintf(key, sizeof(key), CERTSTORE_META_PREFIX "%s", hosts[i]);
		fx_put(&f, key, m, ml);
		free(m);
	}
	fx_put(&f, CERTSTORE_META_PREFIX "m4.example.com", "{\"v\":1,\"host\":", 14);
	m = meta_of(hosts[0], pem[0], len[0], &ml);
	fx_put(&f, CERTSTORE_META_PREFIX "m5.example.com", m, ml);
	free(m);
	/* m6: the record of an older certificate */
	old6 = fx_pem(hosts[5], now - 7200, now + 30 * 86400, &l6);
	m = meta_of(hosts[5], old6, l6, &ml);
	fx_put(&f, CERTSTORE_META_PREFIX "m6.example.com", m, ml);
	free(m);

	cs = open_cs(&f, h, &seen, 1);
	assert_int_equal(certstore_load(cs), 6);
	assert_int_equal(certstore_pem_parsed(cs), 0);
	certstore_start(cs);
	assert_true(fx_run_until(&f, cond_installed6, &seen, 5));
	/* only the three without a good record were parsed */
	assert_int_equal(certstore_pem_parsed(cs), 3);
	for (i = 0; i < 6; i++) {
		c = certstore_get(cs, hosts[i]);
		assert_non_null(c);
		assert_true(c->has_info);
		assert_null(c->pem);
		assert_string_equal(c->info.serial_hex,
				    serial_of(i == 5 ? old6 : pem[i], i == 5 ? l6 : len[i], want,
					      sizeof(want)));
		assert_true(c->info.not_after > now + (i == 5 ? 29 : 59) * 86400);
		assert_int_equal(strlen(certstore_time_str(c->info.not_after, tb)), 19);
		assert_true(c->info.issuer_cn[0] != '\0');
		assert_true(c->info.pubkey_type[0] != '\0');
	}
	/* the fallback wrote the missing and bad records (m3, m4, m5) */
	for (i = 2; i < 5; i++) {
		serial_of(pem[i], len[i], want, sizeof(want));
		for (int k = 0; k < 50; k++) {
			stored_meta_serial(&f, hosts[i], got, sizeof(got));
			if (strcmp(got, want) == 0)
				break;
			fx_run_for(&f, 0.02);
		}
		assert_string_equal(got, want);
	}

	/* m6: a push reads the PEM (checked), finds another serial: memory and
	 * the record follow the certificate */
	assert_int_equal(certstore_seen(cs, hosts[5]), CERTSTORE_SEEN_LOADING);
	serial_of(pem[5], len[5], want, sizeof(want));
	assert_true(fx_run_until(&f, cond_loaded_failed, &seen, 5));
	c = certstore_get(cs, hosts[5]);
	assert_string_equal(c->info.serial_hex, want);
	assert_true(c->info.not_after > now + 59 * 86400);
	stored_meta_serial(&f, hosts[5], got, sizeof(got));
	assert_string_equal(got, want);
	/* m2: its record is never trusted for a push: the garbage PEM is refused */
	seen.loaded_failed = 0;
	assert_int_equal(certstore_seen(cs, hosts[1]), CERTSTORE_SEEN_LOADING);
	assert_true(fx_run_until(&f, cond_loaded_failed, &seen, 5));
	assert_int_equal(certstore_refused(cs, CERTSTORE_SRC_STORAGE), 1);

	certstore_free(cs);
	fx_close(&f);
	for (i = 0; i < 6; i++)
		free(pem[i]);
	free(old6);
}

/* issue 19 finding 5: a record with the certificate's serial but forged
 * dates and ARI id is trusted until the PEM is read; once it is (the first
 * push), the certificate's facts win: memory, the record, and the installed
 * hook renewal schedules from. */
static int cond_installed1(void *arg)
{
	return ((struct seen *)arg)->installed >= 1;
}

static int cond_installed2(void *arg)
{
	return ((struct seen *)arg)->installed >= 2;
}

static void test_meta_forged_dates(void **state)
{
	static const char host[] = "f1.example.com";
	struct certstore_hooks h = { .installed = on_installed, .loaded = on_loaded };
	struct seen seen = { 0 };
	struct certstore *cs;
	struct certstore_cert *c;
	struct crypto_cert_info ci, mi;
	struct storage_res res;
	struct fx f;
	time_t now = time(NULL);
	char *pem, *good, *m, key[STORAGE_KEY_MAX], err[256], tb[CERTSTORE_TIME_STR];
	size_t len, glen, ml;
	json_t *j;

	(void)state;
	fx_open_hap(&f, "", "\"preload\": \"on_demand\"");
	pem = fx_pem(host, now - 3600, now + 60 * 86400, &len);
	assert_int_equal(crypto_cert_info(pem, len, &ci, err, sizeof(err)), 0);
	fx_put(&f, "certs/f1.example.com", pem, len);
	m = meta_of(host, pem, len, &ml);
	j = json_loadb(m, ml, 0, NULL);
	assert_non_null(j);
	free(m);
	json_object_set_new(j, "not_after", json_integer((json_int_t)(now + 400 * 86400)));
	json_object_set_new(j, "ari", json_string("Zm9yZ2Vk.AQ"));
	m = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	fx_put(&f, CERTSTORE_META_PREFIX "f1.example.com", m, strlen(m));
	free(m);
	/* g1: a true record, which a push must leave alone */
	good = fx_pem("g1.example.com", now - 3600, now + 60 * 86400, &glen);
	fx_put(&f, "certs/g1.example.com", good, glen);
	m = meta_of("g1.example.com", good, glen, &ml);
	fx_put(&f, CERTSTORE_META_PREFIX "g1.example.com", m, ml);
	free(m);

	cs = open_cs(&f, h, &seen, 1);
	assert_int_equal(certstore_load(cs), 2);
	certstore_start(cs);
	assert_true(fx_run_until(&f, cond_installed2, &seen, 5));
	assert_int_equal(certstore_seen(cs, "g1.example.com"), CERTSTORE_SEEN_LOADING);
	assert_true(fx_run_until(&f, cond_loaded_failed, &seen, 5));
	fx_run_for(&f, 0.1);
	assert_int_equal(seen.installed, 2);	/* the PEM agreed: nothing learnt */
	seen.loaded_failed = 0;
	c = certstore_get(cs, host);
	assert_non_null(c);
	assert_true(c->has_info);
	/* the record as read: the forgery (what the PEM read must undo) */
	assert_true(c->info.not_after == now + 400 * 86400);

	assert_int_equal(certstore_seen(cs, host), CERTSTORE_SEEN_LOADING);
	assert_true(fx_run_until(&f, cond_loaded_failed, &seen, 5));
	c = certstore_get(cs, host);
	assert_true(c->info.not_after == ci.not_after);
	assert_true(c->info.not_before == ci.not_before);
	assert_string_equal(certstore_time_str(c->info.not_after, tb), ci.not_after_str);
	assert_string_equal(c->info.ari_cert_id, ci.ari_cert_id);
	assert_string_equal(c->info.serial_hex, ci.serial_hex);
	/* installed again, with the certificate's dates: renewal reschedules */
	assert_int_equal(seen.installed, 3);
	/* the record follows the certificate */
	snprintf(key, sizeof(key), CERTSTORE_META_PREFIX "%s", host);
	for (int k = 0; k < 50; k++) {
		mi.not_after = 0;
		if (storage_wait(f.st, storage_get(f.st, key, NULL, NULL), &res, err, sizeof(err)) == 0) {
			if (certstore_meta_decode(host, res.val, res.len, &mi, err, sizeof(err)) != 0)
				mi.not_after = 0;
			storage_res_clear(&res);
		}
		if (mi.not_after == ci.not_after)
			break;
		fx_run_for(&f, 0.02);
	}
	assert_true(mi.not_after == ci.not_after);
	assert_string_equal(mi.ari_cert_id, ci.ari_cert_id);

	crypto_cert_info_clear(&ci);
	certstore_free(cs);
	fx_close(&f);
	free(pem);
	free(good);
}

/* issue 19 finding 3: on_demand, a stored bundle that fails the check (here
 * an expired one) is read, refused and logged once; 50 more SNIs read
 * nothing, and the name is ABSENT (so an allowed one is issued anew) instead
 * of LOADING forever. A certificate installed afterwards ends it. */
static void test_refused_bundle_cached(void **state)
{
	static const char host[] = "x1.example.com";
	struct certstore_hooks h = { .installed = on_installed, .loaded = on_loaded };
	struct seen seen = { 0 };
	struct certstore *cs;
	struct fx f;
	time_t now = time(NULL);
	char *pem, *good, *m;
	size_t len, glen, ml;
	int i, absent = 0;

	(void)state;
	fx_open_hap(&f, "", "\"preload\": \"on_demand\"");
	pem = fx_pem(host, now - 90 * 86400, now - 86400, &len);
	fx_put(&f, "certs/x1.example.com", pem, len);
	m = meta_of(host, pem, len, &ml);
	fx_put(&f, CERTSTORE_META_PREFIX "x1.example.com", m, ml);
	free(m);
	cs = open_cs(&f, h, &seen, 1);
	assert_int_equal(certstore_load(cs), 1);
	certstore_start(cs);
	assert_true(fx_run_until(&f, cond_installed1, &seen, 5));

	assert_int_equal(certstore_seen(cs, host), CERTSTORE_SEEN_LOADING);
	assert_true(fx_run_until(&f, cond_loaded_failed, &seen, 5));
	assert_int_equal(certstore_refused(cs, CERTSTORE_SRC_STORAGE), 1);
	for (i = 0; i < 50; i++) {
		absent += certstore_seen(cs, host) == CERTSTORE_SEEN_ABSENT;
		fx_run_for(&f, 0.01);
	}
	/* one read, one refusal (one log line) for the 51 SNIs */
	assert_int_equal(certstore_refused(cs, CERTSTORE_SRC_STORAGE), 1);
	assert_int_equal(seen.loaded_failed, 1);
	assert_int_equal(absent, 50);

	/* a good certificate (issued anew) is served again */
	good = fx_pem(host, now - 60, now + 60 * 86400, &glen);
	assert_non_null(certstore_install(cs, host, good, glen));
	assert_int_equal(certstore_seen(cs, host), CERTSTORE_SEEN_LOADING);
	certstore_free(cs);
	fx_close(&f);
	free(pem);
	free(good);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_install_take_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deploy_writes_cert_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_name_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_and_ensure_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_unverified, setup, teardown),
		cmocka_unit_test_setup_teardown(test_temp_files, setup, teardown),
		cmocka_unit_test(test_on_demand_index),
		cmocka_unit_test(test_on_demand_share),
		cmocka_unit_test(test_on_demand_walk_goes_on),
		cmocka_unit_test(test_on_demand_recent_first),
		cmocka_unit_test(test_on_demand_index_background),
		cmocka_unit_test(test_meta_codec),
		cmocka_unit_test(test_on_demand_meta),
		cmocka_unit_test(test_meta_forged_dates),
		cmocka_unit_test(test_refused_bundle_cached),
	};

	log_level_max = LOG_LVL_WARN;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
