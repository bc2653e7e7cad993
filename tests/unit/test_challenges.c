/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/challenges (issue 19, findings 1 and 12): the token
 * shape, a look-up's answer never counting against storage health, the
 * short negative cache, and no look-up at all where no other process can
 * hold a token (shm). Real file and shm stores on a real loop. */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/challenges.h"
#include "core/config.h"
#include "core/health.h"
#include "storage/storage.h"
#include "tests/unit/core_fixture.h"

#define TOK43 "tok-unit-0123456789abcdefghijklmnopqrstuvw"

static void test_token_shape(void **state)
{
	char t[200];

	(void)state;
	memset(t, 'A', sizeof(t));
	t[21] = '\0';
	assert_false(challenges_token_valid(t));	/* < 128 bits: cannot exist */
	t[21] = 'A';
	t[22] = '\0';
	assert_true(challenges_token_valid(t));
	t[22] = 'A';
	t[128] = '\0';
	assert_true(challenges_token_valid(t));
	t[128] = 'A';
	t[129] = '\0';
	assert_false(challenges_token_valid(t));	/* far below NAME_MAX */
	assert_true(challenges_token_valid(TOK43));
	assert_false(challenges_token_valid("tok-unit-0123456789abcdef/../../etc"));
	assert_false(challenges_token_valid("tok-unit-0123456789abcdef.x"));
	assert_false(challenges_token_valid(""));
}

struct fstore {
	struct storage *st;
	char root[128];
};

static void fstore_open(struct fx *f, struct fstore *s)
{
	struct storage_conf conf = { 0 };
	char err[256] = "";

	snprintf(s->root, sizeof(s->root), "%s/store", f->dir);
	conf.file_path = s->root;
	s->st = storage_open("file", &conf, f->loop, err, sizeof(err));
	if (!s->st)
		fail_msg("storage file: %s", err);
}

static int cond_absent(void *arg)
{
	void **a = arg;

	return challenges_known_absent(a[0], a[1]);
}

/* A look-up that fails (here: the key is a symlink, refused by O_NOFOLLOW)
 * or misses leaves storage health alone; a miss is remembered (no second
 * read); this node's own store of the token ends that at once. */
static void test_lookup_health_and_negative_cache(void **state)
{
	struct fx f;
	struct fstore s;
	struct challenges *ch;
	char path[256], evil[] = "tok-unit-symlink-0123456789abcdefghijk";
	void *arg[2];

	(void)state;
	fx_open(&f, "");
	fstore_open(&f, &s);
	ch = challenges_new(s.st, &f.health);
	assert_non_null(ch);
	/* the file store may be shared: unknown is not known absent at first */
	assert_false(challenges_known_absent(ch, TOK43));

	challenges_store(ch, "tok-unit-other-0123456789abcdef", "a.b", 60);
	fx_run_for(&f, 0.2);
	snprintf(path, sizeof(path), "%s/challenges/%s", s.root, evil);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(challenges_lookup_shared(ch, evil, NULL), 0);
	fx_run_for(&f, 0.3);
	assert_int_equal(f.health.storage_errors, 0);
	assert_int_equal(f.health.storage_ok, 1);
	/* an error is not a miss: not cached */
	assert_false(challenges_known_absent(ch, evil));

	assert_int_equal(challenges_lookup_shared(ch, TOK43, NULL), 0);
	arg[0] = ch;
	arg[1] = TOK43;
	assert_true(fx_run_until(&f, cond_absent, arg, 2));
	assert_int_equal(f.health.storage_ok, 1);
	assert_null(challenges_local(ch, TOK43));
	/* made here now: no longer absent, answered from memory */
	challenges_store(ch, TOK43, TOK43 ".thumb", 60);
	assert_false(challenges_known_absent(ch, TOK43));
	assert_string_equal(challenges_local(ch, TOK43), TOK43 ".thumb");

	challenges_free(ch);
	storage_close(s.st);
	fx_close(&f);
}

/* A token asked again while its look-up is in flight joins it: one read for
 * both (found or not), the answer cached for the next ones. */
static void test_lookup_joined(void **state)
{
	static const char tok[] = "tok-unit-joined-0123456789abcdefghij";
	struct fx f;
	struct fstore s;
	struct challenges *ch;
	struct storage_res res;
	char err[256];
	void *arg[2];

	(void)state;
	fx_open(&f, "");
	fstore_open(&f, &s);
	ch = challenges_new(s.st, &f.health);
	assert_non_null(ch);
	assert_int_equal(challenges_lookup_shared(ch, TOK43, NULL), 0);
	assert_int_equal(challenges_lookup_shared(ch, TOK43, NULL), 0);
	assert_int_equal(challenges_lookup_shared(ch, TOK43, NULL), 0);
	assert_true(challenges_lookup_reads(ch) == 1);
	arg[0] = ch;
	arg[1] = TOK43;
	assert_true(fx_run_until(&f, cond_absent, arg, 2));
	/* stored by another process: found once for two askers, then cached */
	assert_int_equal(storage_wait(s.st, storage_put(s.st, "challenges/tok-unit-joined-0123456789abcdefghij",
							 "tok.thumb", 9, 60, NULL, NULL), &res, err, sizeof(err)), 0);
	storage_res_clear(&res);
	assert_int_equal(challenges_lookup_shared(ch, tok, NULL), 0);
	assert_int_equal(challenges_lookup_shared(ch, tok, NULL), 0);
	assert_true(challenges_lookup_reads(ch) == 2);
	for (int i = 0; i < 100 && !challenges_local(ch, tok); i++)
		fx_run_for(&f, 0.01);
	assert_string_equal(challenges_local(ch, tok), "tok.thumb");
	/* a look-up still in flight at the end is completed by challenges_free() */
	assert_int_equal(challenges_lookup_shared(ch, "tok-unit-late-0123456789abcdefghij", NULL), 0);
	assert_int_equal(challenges_lookup_shared(ch, "tok-unit-late-0123456789abcdefghij", NULL), 0);
	challenges_free(ch);
	storage_close(s.st);
	fx_close(&f);
}

/* shm is this process's memory: every token it can hold is in memory, so
 * none is looked up. */
static void test_shm_never_looked_up(void **state)
{
	struct fx f;
	struct challenges *ch;

	(void)state;
	fx_open(&f, "");
	ch = challenges_new(f.st, &f.health);
	assert_non_null(ch);
	assert_true(challenges_known_absent(ch, TOK43));
	challenges_store(ch, TOK43, TOK43 ".thumb", 60);
	assert_string_equal(challenges_local(ch, TOK43), TOK43 ".thumb");
	challenges_free(ch);
	fx_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_shape),
		cmocka_unit_test(test_lookup_health_and_negative_cache),
		cmocka_unit_test(test_lookup_joined),
		cmocka_unit_test(test_shm_never_looked_up),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
