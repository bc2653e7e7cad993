/* SPDX-License-Identifier: Apache-2.0 */
/* The CA's rate limits: the window arithmetic (ratelimit.h), pure, without
 * storage or loop, so that it is tested on its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/ratelimit.h"

#define RL_RECORD_VERSION	1

static int rl_time_cmp(const void *a, const void *b)
{
	time_t x = *(const time_t *)a, y = *(const time_t *)b;

	return x < y ? -1 : x > y;
}

void ratelimit_window_clear(struct ratelimit_window *w)
{
	free(w->t);
	w->t = NULL;
	w->n = w->cap = 0;
}

static int rl_window_reserve(struct ratelimit_window *w, size_t n)
{
	time_t *t;

	if (n <= w->cap)
		return 0;
	t = realloc(w->t, n * sizeof(*t));
	if (!t)
		return -1;
	w->t = t;
	w->cap = n;
	return 0;
}

/* Keeps only the newest <keep> stamps. */
static void rl_window_trim(struct ratelimit_window *w, size_t keep)
{
	if (w->n <= keep)
		return;
	memmove(w->t, w->t + (w->n - keep), keep * sizeof(*w->t));
	w->n = keep;
}

void ratelimit_window_expire(struct ratelimit_window *w, time_t now, long span)
{
	size_t i = 0;

	while (i < w->n && w->t[i] <= now - span)
		i++;
	if (i) {
		memmove(w->t, w->t + i, (w->n - i) * sizeof(*w->t));
		w->n -= i;
	}
}

int ratelimit_window_load(struct ratelimit_window *w, const char *text, size_t len, time_t now,
			  long span, size_t keep, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *arr, *v;
	json_int_t ver = 0;
	size_t i;
	int rc = -1;

	w->n = 0;
	root = json_loadb(text, len, 0, &jerr);
	if (!root) {
		snprintf(err, errlen, "not JSON (%s)", jerr.text);
		goto out;
	}
	if (json_unpack_ex(root, &jerr, 0, "{s:I, s:o}", "v", &ver, "t", &arr) == -1) {
		snprintf(err, errlen, "%s", jerr.text);
		goto out;
	}
	if (ver != RL_RECORD_VERSION || !json_is_array(arr)) {
		snprintf(err, errlen, "version %lld or stamps not understood", (long long)ver);
		goto out;
	}
	json_array_foreach(arr, i, v) {
		json_int_t t;

		if (!json_is_integer(v) || (t = json_integer_value(v)) <= 0) {
			snprintf(err, errlen, "stamp %zu is not a positive integer", i);
			goto out;
		}
		/* expired, or further ahead than any clock of the fleet can be */
		if ((time_t)t <= now - span || (time_t)t > now + span)
			continue;
		if (rl_window_reserve(w, w->n < 16 ? 16 : w->n * 2) == -1) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		w->t[w->n++] = (time_t)t;
	}
	qsort(w->t, w->n, sizeof(*w->t), rl_time_cmp);
	rl_window_trim(w, keep);
	rc = 0;
out:
	if (rc == -1)
		w->n = 0;
	json_decref(root);
	return rc;
}

int ratelimit_window_add(struct ratelimit_window *w, time_t now, size_t keep)
{
	size_t i;

	if (rl_window_reserve(w, w->n + 1 < 16 ? 16 : w->n + 1) == -1)
		return -1;
	/* in order even if the clock stepped back */
	for (i = w->n; i > 0 && w->t[i - 1] > now; i--)
		w->t[i] = w->t[i - 1];
	w->t[i] = now;
	w->n++;
	rl_window_trim(w, keep);
	return 0;
}

char *ratelimit_window_dump(const struct ratelimit_window *w)
{
	json_t *arr = json_array(), *root;
	char *s = NULL;
	size_t i;

	if (!arr)
		return NULL;
	for (i = 0; i < w->n; i++)
		if (json_array_append_new(arr, json_integer((json_int_t)w->t[i])) == -1) {
			json_decref(arr);
			return NULL;
		}
	root = json_pack("{s:i, s:o}", "v", RL_RECORD_VERSION, "t", arr);
	if (root)
		s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return s;
}

unsigned ratelimit_allowed(unsigned limit, double reserve, enum ratelimit_class cls)
{
	unsigned kept;

	if (cls != RATELIMIT_NEW)
		return limit;
	if (!(reserve > 0))
		return limit;
	/* the small term keeps 5 * 0.2 at 1, not 0.99999 */
	kept = reserve >= 1 ? limit : (unsigned)((double)limit * reserve + 1e-9);	/* floor */
	return kept >= limit ? 0 : limit - kept;
}

int ratelimit_window_admits(const struct ratelimit_window *w, unsigned limit, double reserve,
			    enum ratelimit_class cls, time_t now, long span, time_t *frees)
{
	unsigned allowed;
	time_t t;

	if (limit == 0 || cls == RATELIMIT_EXEMPT)
		return 1;
	allowed = ratelimit_allowed(limit, reserve, cls);
	if (w->n < allowed)
		return 1;
	/* one fits once all but allowed - 1 stamps have left */
	t = allowed ? w->t[w->n - allowed] + span : now + span;
	*frees = t > now ? t : now + 1;
	return 0;
}

int ratelimit_is_validation_failure(const char *type)
{
	static const char *const kinds[] = { "unauthorized", "connection", "dns", "incorrectResponse",
					     "caa", "tls", NULL };
	static const char prefix[] = "urn:ietf:params:acme:error:";
	size_t i;

	if (!type || strncmp(type, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	type += sizeof(prefix) - 1;
	for (i = 0; kinds[i]; i++)
		if (strcmp(type, kinds[i]) == 0)
			return 1;
	return 0;
}
