/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for lib/metrics: exact Prometheus text output. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lib/metrics.h"

static void test_header_and_values(void **state)
{
	struct metrics_buf b = {0};

	(void)state;
	assert_int_equal(metrics_header(&b, "acme_issuances_total", "counter",
					"Certificates issued"), 0);
	assert_int_equal(metrics_value(&b, "acme_issuances_total", NULL, 3), 0);
	assert_int_equal(metrics_value(&b, "acme_issuances_total", "", 0), 0);
	assert_int_equal(metrics_value(&b, "acme_failures_total", "reason=\"dns\"", 12), 0);
	assert_int_equal(metrics_header(&b, "g", "gauge", NULL), 0);
	assert_int_equal(metrics_value(&b, "g", NULL, 0.25), 0);
	assert_int_equal(metrics_value(&b, "g", NULL, -7), 0);
	assert_int_equal(metrics_value(&b, "g", NULL, 0.1), 0);
	assert_int_equal(metrics_value(&b, "g", NULL, 1e20), 0);
	assert_int_equal(metrics_value(&b, "g", NULL, NAN), 0);
	assert_int_equal(metrics_value(&b, "g", NULL, INFINITY), 0);
	assert_int_equal(metrics_value(&b, "g", NULL, -INFINITY), 0);
	assert_string_equal(b.data,
		"# HELP acme_issuances_total Certificates issued\n"
		"# TYPE acme_issuances_total counter\n"
		"acme_issuances_total 3\n"
		"acme_issuances_total 0\n"
		"acme_failures_total{reason=\"dns\"} 12\n"
		"# TYPE g gauge\n"
		"g 0.25\n"
		"g -7\n"
		"g 0.1\n"
		"g 1e+20\n"
		"g NaN\n"
		"g +Inf\n"
		"g -Inf\n");
	assert_int_equal(b.len, strlen(b.data));
	metrics_buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	metrics_buf_free(NULL);
}

static void test_help_escaping(void **state)
{
	struct metrics_buf b = {0};

	(void)state;
	assert_int_equal(metrics_header(&b, "x", "gauge", "a\\b\nc \"q\""), 0);
	assert_string_equal(b.data,
		"# HELP x a\\\\b\\nc \"q\"\n"
		"# TYPE x gauge\n");
	metrics_buf_free(&b);
}

static void test_label_escaping(void **state)
{
	char l[128] = "";
	char small[12] = "";
	struct metrics_buf b = {0};

	(void)state;
	assert_int_equal(metrics_label(l, sizeof(l), "host", "a.test"), 0);
	assert_string_equal(l, "host=\"a.test\"");
	assert_int_equal(metrics_label_add(l, sizeof(l), "err", "say \"no\"\\\nnow"), 0);
	assert_string_equal(l, "host=\"a.test\",err=\"say \\\"no\\\"\\\\\\nnow\"");
	assert_int_equal(metrics_value(&b, "m", l, 1), 0);
	assert_string_equal(b.data,
		"m{host=\"a.test\",err=\"say \\\"no\\\"\\\\\\nnow\"} 1\n");
	metrics_buf_free(&b);

	/* too long: refused, buffer unchanged */
	assert_int_equal(metrics_label(small, sizeof(small), "k", "v"), 0);
	assert_string_equal(small, "k=\"v\"");
	assert_int_equal(metrics_label_add(small, sizeof(small), "key", "value"), -1);
	assert_string_equal(small, "k=\"v\"");
	/* metrics_label replaces, even over garbage */
	memset(small, 'x', sizeof(small));
	assert_int_equal(metrics_label(small, sizeof(small), "k", "w"), 0);
	assert_string_equal(small, "k=\"w\"");
	assert_int_equal(metrics_label(small, sizeof(small), "keys", "value"), -1);
	assert_string_equal(small, "");
	/* exactly fits: 11 chars + NUL */
	assert_int_equal(metrics_label(small, sizeof(small), "ab", "cdefghi"), -1);
	assert_int_equal(metrics_label(small, sizeof(small), "ab", "cdefgh"), 0);
	assert_string_equal(small, "ab=\"cdefgh\"");
}

static void test_histogram(void **state)
{
	struct metrics_buf b = {0};
	const double bounds[] = { 0.005, 0.1, 1, 2.5 };
	const uint64_t cum[] = { 1, 3, 3, 4 };

	(void)state;
	assert_int_equal(metrics_header(&b, "lat_seconds", "histogram", "Latency"), 0);
	assert_int_equal(metrics_histogram(&b, "lat_seconds", "msg=\"sni\"", bounds, cum, 4,
					   3.75, 5), 0);
	assert_int_equal(metrics_histogram(&b, "plain", NULL, bounds, cum, 1, 0, 1), 0);
	assert_string_equal(b.data,
		"# HELP lat_seconds Latency\n"
		"# TYPE lat_seconds histogram\n"
		"lat_seconds_bucket{msg=\"sni\",le=\"0.005\"} 1\n"
		"lat_seconds_bucket{msg=\"sni\",le=\"0.1\"} 3\n"
		"lat_seconds_bucket{msg=\"sni\",le=\"1\"} 3\n"
		"lat_seconds_bucket{msg=\"sni\",le=\"2.5\"} 4\n"
		"lat_seconds_bucket{msg=\"sni\",le=\"+Inf\"} 5\n"
		"lat_seconds_sum{msg=\"sni\"} 3.75\n"
		"lat_seconds_count{msg=\"sni\"} 5\n"
		"plain_bucket{le=\"0.005\"} 1\n"
		"plain_bucket{le=\"+Inf\"} 1\n"
		"plain_sum 0\n"
		"plain_count 1\n");
	metrics_buf_free(&b);
}

static void test_hist_accumulator(void **state)
{
	struct metrics_buf b = {0};
	struct metrics_hist h;
	const double bounds[] = { 0.01, 0.1, 1 };

	(void)state;
	metrics_hist_init(&h, bounds, 3);
	metrics_hist_observe(&h, 0.005);
	metrics_hist_observe(&h, 0.01);	/* le is inclusive */
	metrics_hist_observe(&h, 0.5);
	metrics_hist_observe(&h, 7);
	assert_int_equal(metrics_hist_write(&b, "h", NULL, &h), 0);
	assert_string_equal(b.data,
		"h_bucket{le=\"0.01\"} 2\n"
		"h_bucket{le=\"0.1\"} 2\n"
		"h_bucket{le=\"1\"} 3\n"
		"h_bucket{le=\"+Inf\"} 4\n"
		"h_sum 7.515\n"
		"h_count 4\n");
	metrics_buf_free(&b);
}

static void test_growth(void **state)
{
	struct metrics_buf b = {0};
	char name[32];
	int i;

	(void)state;
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "metric_%d", i);
		assert_int_equal(metrics_value(&b, name, NULL, i), 0);
	}
	assert_int_equal(b.len, strlen(b.data));
	assert_non_null(strstr(b.data, "metric_0 0\nmetric_1 1\n"));
	assert_non_null(strstr(b.data, "metric_1999 1999\n"));
	metrics_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_and_values),
		cmocka_unit_test(test_help_escaping),
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_hist_accumulator),
		cmocka_unit_test(test_growth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
