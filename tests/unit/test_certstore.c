/* Unit tests for core/certstore against shm storage on a real libev loop:
 * install, take, remove and their hooks; cert_dir writes and removals on the
 * worker queue; fetch from storage (received, absent removes, unchanged);
 * the start-up load (bad key names ignored, nothing deployed) and the
 * cert_dir files it ensures. No HAProxy listens: pushes fail, memory and
 * cert_dir are what is checked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "tests/unit/core_fixture.h"

#include "core/certstore.h"
#include "lib/log.h"
#include "runtime/runtime.h"

struct seen {
	int installed, removed, received, loaded_ok, loaded_failed;
	char last[CERTSTORE_HOST_MAX];
};

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

static int setup(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	struct certstore_hooks h = {
		.installed = on_installed,
		.removed = on_removed,
		.received = on_received,
	};
	char err[256] = "";

	assert_non_null(t);
	fx_open(&t->f, "");
	t->cs = certstore_new(t->f.loop, t->f.cfg, t->f.st, &t->f.health, err, sizeof(err));
	if (!t->cs)
		fail_msg("certstore_new: %s", err);
	assert_int_equal(certstore_runtime_open(t->cs, err, sizeof(err)), 0);
	h.arg = &t->seen;
	certstore_set_hooks(t->cs, &h);
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
	certstore_fetch(t->cs, "c.example.com", 1);
	assert_int_equal(t->seen.received, 0);	/* completes on a later turn */
	assert_true(fx_run_until(&t->f, cond_received, &t->seen, 5));
	assert_int_equal(t->seen.received, 1);
	assert_string_equal(t->seen.last, "c.example.com");
	assert_memory_equal(certstore_get(t->cs, "c.example.com")->pem, p2, l2);

	/* the same again: not received twice */
	certstore_fetch(t->cs, "c.example.com", 1);
	fx_run_for(&t->f, 0.1);
	assert_int_equal(t->seen.received, 1);

	/* deleted elsewhere: kept unless asked to remove */
	fx_del(&t->f, "certs/c.example.com");
	certstore_fetch(t->cs, "c.example.com", 0);
	fx_run_for(&t->f, 0.1);
	assert_non_null(certstore_get(t->cs, "c.example.com"));
	assert_int_equal(t->seen.removed, 0);
	certstore_fetch(t->cs, "c.example.com", 1);
	assert_true(fx_run_until(&t->f, cond_removed, &t->seen, 5));
	assert_null(certstore_get(t->cs, "c.example.com"));
	free(p1);
	free(p2);
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

static int cond_loaded_failed(void *arg)
{
	return ((struct seen *)arg)->loaded_failed > 0;
}

/* haproxy.preload on_demand: the start-up load reads the index only (no
 * metadata, no PEM, no hook); certstore_start() reads the metadata in the
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
	char *pem[3], *p2, err[256] = "", path[256];
	size_t len[3], l2;
	int i;

	fx_open_hap(&f, "", "\"preload\": \"on_demand\", \"max_loaded\": 2");
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "certs/%s", hosts[i]);
		pem[i] = fx_pem(hosts[i], now - 3600, now + 90 * 86400, &len[i]);
		fx_put(&f, path, pem[i], len[i]);
	}
	cs = certstore_new(f.loop, f.cfg, f.st, &f.health, err, sizeof(err));
	if (!cs)
		fail_msg("certstore_new: %s", err);
	assert_int_equal(certstore_runtime_open(cs, err, sizeof(err)), 0);
	rt_set_timeouts(certstore_runtime(cs), 200, 0);
	h.arg = &seen;
	certstore_set_hooks(cs, &h);

	assert_int_equal(certstore_load(cs), 3);
	assert_int_equal(certstore_ensure_files(cs), 0);
	for (i = 0; i < 3; i++) {
		c = certstore_get(cs, hosts[i]);
		assert_non_null(c);
		assert_false(c->has_info);
		assert_null(c->pem);
		assert_string_equal(c->info.serial_hex, "");
	}
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

	certstore_free(cs);
	fx_close(&f);
	for (i = 0; i < 3; i++)
		free(pem[i]);
	free(p2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_install_take_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deploy_writes_cert_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_and_ensure_files, setup, teardown),
		cmocka_unit_test(test_on_demand_index),
	};

	log_level_max = LOG_LVL_WARN;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
