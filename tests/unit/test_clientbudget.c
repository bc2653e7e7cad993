/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/clientbudget: client networks (/24, /56, IPv4-mapped
 * IPv6 as IPv4), the hourly window per network, the limit, the bound on the
 * table (least recently counted forgotten). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "core/clientbudget.h"

static void net_of(const char *ip, char *out)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, ip, &a4) == 1)
		clientbudget_net4(&a4, out);
	else if (inet_pton(AF_INET6, ip, &a6) == 1)
		clientbudget_net6(&a6, out);
	else
		fail_msg("bad address %s", ip);
}

static void test_networks(void **state)
{
	char a[CLIENTBUDGET_NET_MAX], b[CLIENTBUDGET_NET_MAX];

	net_of("192.0.2.77", a);
	assert_string_equal(a, "192.0.2.0/24");
	net_of("192.0.2.1", b);
	assert_string_equal(a, b);
	net_of("192.0.3.1", b);
	assert_string_not_equal(a, b);
	net_of("2001:db8:1234:56ff:1:2:3:4", a);
	assert_string_equal(a, "2001:db8:1234:5600::/56");
	net_of("2001:db8:1234:5600::1", b);
	assert_string_equal(a, b);
	net_of("2001:db8:1234:5700::1", b);
	assert_string_not_equal(a, b);
	net_of("::ffff:192.0.2.9", a);
	assert_string_equal(a, "192.0.2.0/24");
	net_of("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", a);
	assert_string_equal(a, "ffff:ffff:ffff:ff00::/56");
}

static void test_limit_and_window(void **state)
{
	struct clientbudget *b = clientbudget_new(100);
	time_t t = 1000000;
	int i;

	assert_non_null(b);
	for (i = 0; i < 20; i++) {
		assert_int_equal(clientbudget_over(b, "192.0.2.0/24", 20, t + i), 0);
		assert_int_equal(clientbudget_count(b, "192.0.2.0/24", t + i), 0);
	}
	assert_int_equal(clientbudget_over(b, "192.0.2.0/24", 20, t + 30), 1);
	/* another network, and no budget (0), are not refused */
	assert_int_equal(clientbudget_over(b, "198.51.100.0/24", 20, t + 30), 0);
	assert_int_equal(clientbudget_over(b, "192.0.2.0/24", 0, t + 30), 0);
	/* a higher limit (reload) lets more through at once */
	assert_int_equal(clientbudget_over(b, "192.0.2.0/24", 21, t + 30), 0);
	/* the window is an hour from its first name */
	assert_int_equal(clientbudget_over(b, "192.0.2.0/24", 20, t + CLIENTBUDGET_WINDOW_S - 1), 1);
	assert_int_equal(clientbudget_over(b, "192.0.2.0/24", 20, t + CLIENTBUDGET_WINDOW_S), 0);
	assert_int_equal(clientbudget_count(b, "192.0.2.0/24", t + CLIENTBUDGET_WINDOW_S), 0);
	assert_int_equal(clientbudget_over(b, "192.0.2.0/24", 1, t + CLIENTBUDGET_WINDOW_S), 1);
	assert_int_equal(clientbudget_over(b, "192.0.2.0/24", 2, t + CLIENTBUDGET_WINDOW_S), 0);
	/* a clock gone back starts the window again */
	assert_int_equal(clientbudget_over(b, "192.0.2.0/24", 1, t), 0);
	clientbudget_free(b);
	clientbudget_free(NULL);
}

static void test_bounded(void **state)
{
	struct clientbudget *b = clientbudget_new(3);
	struct clientbudget_stats st;
	time_t t = 1000000;

	assert_int_equal(clientbudget_count(b, "n1", t), 0);
	assert_int_equal(clientbudget_count(b, "n2", t), 0);
	assert_int_equal(clientbudget_count(b, "n3", t), 0);
	assert_int_equal(clientbudget_count(b, "n1", t), 0);	/* n1 now the most recent */
	assert_int_equal(clientbudget_count(b, "n4", t), 0);	/* forgets n2 */
	clientbudget_stats(b, &st);
	assert_int_equal(st.nets, 3);
	assert_int_equal(st.evicted, 1);
	assert_int_equal(clientbudget_over(b, "n1", 2, t), 1);
	assert_int_equal(clientbudget_over(b, "n2", 1, t), 0);	/* forgotten */
	assert_int_equal(clientbudget_over(b, "n3", 1, t), 1);
	clientbudget_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_networks),
		cmocka_unit_test(test_limit_and_window),
		cmocka_unit_test(test_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
