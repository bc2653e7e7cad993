/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for lib/host (the one host-name rule) and lib/addr (the one
 * address parser). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <cmocka.h>

#include "lib/addr.h"
#include "lib/host.h"

static const unsigned every_flags[] = {
	0, HOST_WILDCARD, HOST_SINGLE, HOST_IP, HOST_WILDCARD | HOST_SINGLE,
	HOST_SINGLE | HOST_IP, HOST_WILDCARD | HOST_SINGLE | HOST_IP,
};
#define NFLAGS	(sizeof(every_flags) / sizeof(every_flags[0]))

/* Fails unless host_valid(<s>) is 0 under every flag combination. */
static void refused_always(const char *s)
{
	size_t i;

	for (i = 0; i < NFLAGS; i++)
		if (host_valid(s, every_flags[i]))
			fail_msg("\"%s\" accepted with flags 0x%x", s ? s : "(null)", every_flags[i]);
}

static void test_host_names(void **state)
{
	char out[HOST_MAXLEN + 1];

	(void)state;
	assert_int_equal(host_normalize("WWW.Example.COM", out, sizeof(out), 0), 0);
	assert_string_equal(out, "www.example.com");
	assert_int_equal(host_normalize("a-b.x1.test", out, sizeof(out), 0), 0);
	assert_string_equal(out, "a-b.x1.test");
	assert_int_equal(host_normalize("xn--bcher-kva.example", out, sizeof(out), 0), 0);
	assert_true(host_valid("1.2.3.example", 0));
	assert_true(host_valid("0x7f.example", 0));	/* only the last label can make a number */
	assert_true(host_valid("a.0x7g", 0));		/* not hex: a name to curl and inet_aton */
	assert_true(host_valid("a.1e", 0));
	assert_true(host_valid("a.b", 0));
	assert_true(host_valid("A-1.Example.COM", 0));

	/* syntax */
	refused_always(NULL);
	refused_always("");
	refused_always("a..b");
	refused_always(".a.b");
	refused_always("-a.b");
	refused_always("a-.b");
	refused_always("a.b-");
	refused_always("example.com.");
	refused_always("a.b:443");
	refused_always("a b.c");
	refused_always("a_b.c");
	refused_always("under_score.example");
	refused_always("caf\xc3\xa9.example");
	refused_always("a.example.com/x");
	refused_always(".");
	refused_always("-");

	/* a single label only for addresses */
	assert_false(host_valid("localhost", 0));
	assert_false(host_valid("localhost", HOST_WILDCARD));
	assert_true(host_valid("localhost", HOST_SINGLE));
	assert_true(host_valid("Redis", HOST_SINGLE));
	assert_int_equal(host_normalize("localhost", out, sizeof(out), 0), -1);
	assert_string_equal(out, "");
	assert_int_equal(host_normalize("LocalHost", out, sizeof(out), HOST_SINGLE), 0);
	assert_string_equal(out, "localhost");

	/* out too small: -1 and empty; exact fit works */
	assert_int_equal(host_normalize("www.example.com", out, 15, 0), -1);
	assert_string_equal(out, "");
	assert_int_equal(host_normalize("www.example.com", out, 16, 0), 0);
	assert_int_equal(host_normalize("www.example.com", NULL, 16, 0), -1);
	assert_int_equal(host_normalize("www.example.com", out, 0, 0), -1);
}

static void test_host_lengths(void **state)
{
	char l63[80], l64[80], big[300], out[HOST_MAXLEN + 1];
	size_t i;

	(void)state;
	memset(l63, 'a', 63);
	strcpy(l63 + 63, ".com");
	memset(l64, 'a', 64);
	strcpy(l64 + 64, ".com");
	assert_true(host_valid(l63, 0));
	refused_always(l64);

	/* 4 labels of 63 + 3 dots = 255: 253 pass, 254 do not */
	snprintf(big, sizeof(big), "%.63s.%.63s.%.63s.%.61s", l63, l63, l63, l63);
	assert_int_equal(strlen(big), 253);
	assert_true(host_valid(big, 0));
	assert_int_equal(host_normalize(big, out, sizeof(out), 0), 0);
	snprintf(big, sizeof(big), "%.63s.%.63s.%.63s.%.62s", l63, l63, l63, l63);
	assert_int_equal(strlen(big), 254);
	refused_always(big);

	/* many short labels */
	for (i = 0; i < 253; i++)
		big[i] = (i % 2) ? '.' : 'a';
	big[252] = 'b';
	big[253] = '\0';
	assert_true(host_valid(big, 0));
	big[252] = '.';
	big[253] = 'b';
	big[254] = '\0';
	refused_always(big);

	/* "*." counts in the 253 */
	snprintf(big, sizeof(big), "*.%.63s.%.63s.%.63s.%.59s", l63, l63, l63, l63);
	assert_int_equal(strlen(big), 253);
	assert_true(host_valid(big, HOST_WILDCARD));
	snprintf(big, sizeof(big), "*.%.63s.%.63s.%.63s.%.60s", l63, l63, l63, l63);
	refused_always(big);
}

static void test_host_wildcard(void **state)
{
	char out[HOST_MAXLEN + 1];

	(void)state;
	assert_int_equal(host_normalize("*.Example.COM", out, sizeof(out), HOST_WILDCARD), 0);
	assert_string_equal(out, "*.example.com");
	assert_int_equal(host_normalize("*.example.com", out, sizeof(out), 0), -1);
	assert_false(host_valid("*.example.com", HOST_SINGLE | HOST_IP));
	/* the name after "*." must be valid on its own */
	assert_false(host_valid("*.com", HOST_WILDCARD));
	assert_true(host_valid("*.com", HOST_WILDCARD | HOST_SINGLE));
	refused_always("*");
	refused_always("*.");
	refused_always("*.*.example.com");
	refused_always("a.*.c");
	refused_always("**.a.c");
	refused_always("*a.b.c");
	refused_always("*.127.0.0.1");
	refused_always("*.0x7f.0x1");
	refused_always("*.1.2.3.0x4");
	refused_always("*.example.com.");
}

/* IPv4 in every spelling a resolver or curl reads as an address. */
static const char *const ipv4_spellings[] = {
	"127.0.0.1", "0x7f.0x1", "0x7f.1", "1.2.3.0x4", "127.1", "017.0.0.1", "2130706433",
	"0X7F.0X1", "0xffffffff", "0x7f.0.0.1", "10.0.0.1", "1.2.3.4",
	NULL
};

static void test_host_ip_refused(void **state)
{
	struct in_addr a4;
	size_t i;

	(void)state;
	for (i = 0; ipv4_spellings[i]; i++) {
		/* each is an address to the C library, not only to us */
		if (!inet_aton(ipv4_spellings[i], &a4))
			fail_msg("inet_aton refuses \"%s\": not a useful case", ipv4_spellings[i]);
		if (strcmp(ipv4_spellings[i], "127.0.0.1") && strcmp(ipv4_spellings[i], "10.0.0.1") &&
		    strcmp(ipv4_spellings[i], "1.2.3.4"))
			refused_always(ipv4_spellings[i]);
		else
			assert_false(host_valid(ipv4_spellings[i], HOST_WILDCARD | HOST_SINGLE));
	}
	/* numbers as URL parsers read them, even where inet_aton does not */
	refused_always("999.1.1.1");
	refused_always("1.2.3.0x");
	refused_always("a.0x");
	refused_always("a.b.08");
	refused_always("example.123");
	refused_always("4294967296");
	/* IPv6 */
	refused_always("[::1]");
	refused_always("[127.0.0.1]");
	assert_false(host_valid("::1", HOST_WILDCARD | HOST_SINGLE));
	assert_false(host_valid("fe80::1", 0));

	/* HOST_IP takes canonical literals, never another spelling */
	assert_true(host_valid("127.0.0.1", HOST_IP));
	assert_true(host_valid("::1", HOST_IP));
	assert_true(host_valid("fe80::1", HOST_IP));
	assert_true(host_valid("::ffff:1.2.3.4", HOST_IP));
	assert_false(host_valid("127.1", HOST_IP | HOST_SINGLE));
	assert_false(host_valid("0x7f.0x1", HOST_IP | HOST_SINGLE));
	assert_false(host_valid("017.0.0.1", HOST_IP | HOST_SINGLE));
	assert_false(host_valid("2130706433", HOST_IP | HOST_SINGLE));
}

static void test_addr_parse(void **state)
{
	struct addr a;
	char why[128], path[200], str[300];

	(void)state;
	assert_int_equal(addr_parse("127.0.0.1:12345", 0, &a, why, sizeof(why)), 0);
	assert_false(a.is_unix);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 12345);
	assert_int_equal(addr_parse("[::1]:8001", 0, &a, why, sizeof(why)), 0);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.port, 8001);
	assert_int_equal(addr_parse("localhost:65535", 0, &a, why, sizeof(why)), 0);
	assert_string_equal(a.host, "localhost");
	assert_int_equal(addr_parse("redis.internal.example:6379", 0, &a, why, sizeof(why)), 0);
	assert_int_equal(addr_parse("unix:/run/x.sock", ADDR_UNIX, &a, why, sizeof(why)), 0);
	assert_true(a.is_unix);
	assert_string_equal(a.path, "/run/x.sock");
	assert_string_equal(a.host, "");

	assert_int_equal(addr_parse("unix:/run/x.sock", 0, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "is a unix socket, expected host:port");
	assert_int_equal(addr_parse("unix:relative.sock", ADDR_UNIX, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "is not unix:/absolute/path (at most 107 bytes)");
	assert_int_equal(addr_parse("unix:/a b", ADDR_UNIX, &a, why, sizeof(why)), -1);
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	snprintf(path + 107, sizeof(path) - 107, "%s", "");	/* 107 bytes: fits */
	snprintf(str, sizeof(str), "unix:%s", path);
	assert_int_equal(addr_parse(str, ADDR_UNIX, &a, why, sizeof(why)), 0);
	assert_int_equal(strlen(a.path), 107);
	path[107] = 'p';
	path[108] = '\0';
	snprintf(str, sizeof(str), "unix:%s", path);
	assert_int_equal(addr_parse(str, ADDR_UNIX, &a, why, sizeof(why)), -1);

	assert_int_equal(addr_parse("127.0.0.1", ADDR_UNIX, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "has no :port (expected host:port or unix:/path)");
	assert_int_equal(addr_parse("tcp://h:1", ADDR_UNIX, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "is a URL, expected host:port or unix:/path");
	assert_int_equal(addr_parse("::1:12345", 0, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "is not host:port (write IPv6 addresses as [addr]:port)");
	assert_int_equal(addr_parse("[::1:8001", 0, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "is not [IPv6]:port");
	assert_int_equal(addr_parse("[::1]", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("[1.2.3.4]:8001", 0, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "has an invalid host \"1.2.3.4\"");
	assert_int_equal(addr_parse(":80", 0, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "has an empty or too long host");
	assert_int_equal(addr_parse("[]:80", ADDR_LISTEN, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("*:80", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("a_b:80", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("a\nb:80", 0, &a, why, sizeof(why)), -1);
	assert_null(strchr(why, '\n'));

	/* the host rule: IPv4 only as a dotted quad */
	assert_int_equal(addr_parse("127.1:80", 0, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "has an invalid host \"127.1\"");
	assert_int_equal(addr_parse("0x7f.0x1:80", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("1.2.3.0x4:80", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("2130706433:80", 0, &a, why, sizeof(why)), -1);

	/* ports */
	assert_int_equal(addr_parse("h:0", 0, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "has an invalid port (expected 1..65535)");
	assert_int_equal(addr_parse("h:65536", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("h:-1", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("h:+1", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("h: 1", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("h:12x", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("h:", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("h:99999999999999999999", 0, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("h:1", 0, &a, why, sizeof(why)), 0);
	assert_int_equal(a.port, 1);

	/* listeners: any free port, every address */
	assert_int_equal(addr_parse("127.0.0.1:0", ADDR_LISTEN, &a, why, sizeof(why)), 0);
	assert_int_equal(a.port, 0);
	assert_int_equal(addr_parse("h:-1", ADDR_LISTEN, &a, why, sizeof(why)), -1);
	assert_string_equal(why, "has an invalid port (expected 0..65535)");
	assert_int_equal(addr_parse("*:8001", ADDR_LISTEN, &a, why, sizeof(why)), 0);
	assert_string_equal(a.host, "");
	assert_int_equal(a.port, 8001);
	assert_int_equal(addr_parse(":0", ADDR_LISTEN, &a, why, sizeof(why)), 0);
	assert_string_equal(a.host, "");
	assert_int_equal(addr_parse("[::]:0", ADDR_LISTEN, &a, why, sizeof(why)), 0);
	assert_string_equal(a.host, "::");
	assert_int_equal(addr_parse("**:80", ADDR_LISTEN, &a, why, sizeof(why)), -1);
	assert_int_equal(addr_parse("unix:/x", ADDR_LISTEN, &a, why, sizeof(why)), -1);
}

static void test_addr_sockaddr(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
	socklen_t len;
	struct addr a;
	char why[128];

	(void)state;
	assert_int_equal(addr_parse("127.0.0.1:8001", 0, &a, why, sizeof(why)), 0);
	assert_int_equal(addr_sockaddr(&a, 0, &ss, &len, why, sizeof(why)), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(len, sizeof(*sin));
	assert_int_equal(ntohs(sin->sin_port), 8001);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);

	assert_int_equal(addr_parse("[::1]:443", 0, &a, why, sizeof(why)), 0);
	assert_int_equal(addr_sockaddr(&a, 1, &ss, &len, why, sizeof(why)), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(*sin6));
	assert_int_equal(ntohs(sin6->sin6_port), 443);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));

	assert_int_equal(addr_parse("unix:/run/h.sock", ADDR_UNIX, &a, why, sizeof(why)), 0);
	assert_int_equal(addr_sockaddr(&a, 0, &ss, &len, why, sizeof(why)), 0);
	assert_int_equal(ss.ss_family, AF_UNIX);
	assert_string_equal(sun->sun_path, "/run/h.sock");

	/* every address: for bind() only */
	assert_int_equal(addr_parse("*:0", ADDR_LISTEN, &a, why, sizeof(why)), 0);
	assert_int_equal(addr_sockaddr(&a, 1, &ss, &len, why, sizeof(why)), 0);
	assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
	if (ss.ss_family == AF_INET)
		assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	else
		assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	assert_int_equal(addr_sockaddr(&a, 0, &ss, &len, why, sizeof(why)), -1);
	assert_string_equal(why, "has no host to connect to");

	/* a name: resolved (localhost is in /etc/hosts, no DNS) */
	assert_int_equal(addr_parse("localhost:80", 0, &a, why, sizeof(why)), 0);
	assert_int_equal(addr_sockaddr(&a, 0, &ss, &len, why, sizeof(why)), 0);
	if (ss.ss_family == AF_INET) {
		assert_int_equal(ntohs(sin->sin_port), 80);
		assert_int_equal(ntohl(sin->sin_addr.s_addr) >> 24, 127);
	} else {
		assert_int_equal(ss.ss_family, AF_INET6);
		assert_int_equal(ntohs(sin6->sin6_port), 80);
	}

	/* a struct built by hand is checked again */
	memset(&a, 0, sizeof(a));
	a.port = 70000;
	snprintf(a.host, sizeof(a.host), "127.0.0.1");
	assert_int_equal(addr_sockaddr(&a, 0, &ss, &len, why, sizeof(why)), -1);
	memset(&a, 0, sizeof(a));
	a.is_unix = 1;
	assert_int_equal(addr_sockaddr(&a, 0, &ss, &len, why, sizeof(why)), -1);
}

static void test_addr_format(void **state)
{
	static const char *const cases[] = {
		"127.0.0.1:12345", "[::1]:8001", "unix:/run/x.sock", "localhost:1", "*:0", NULL
	};
	char buf[300], why[128];
	struct addr a, b;
	size_t i;

	(void)state;
	for (i = 0; cases[i]; i++) {
		assert_int_equal(addr_parse(cases[i], ADDR_UNIX | ADDR_LISTEN, &a, why, sizeof(why)), 0);
		assert_string_equal(addr_format(&a, buf, sizeof(buf)), cases[i]);
		assert_int_equal(addr_parse(buf, ADDR_UNIX | ADDR_LISTEN, &b, why, sizeof(why)), 0);
		assert_memory_equal(&a, &b, sizeof(a));
	}
	assert_int_equal(addr_parse(":0", ADDR_LISTEN, &a, why, sizeof(why)), 0);
	assert_string_equal(addr_format(&a, buf, sizeof(buf)), "*:0");
	assert_string_equal(addr_format(&a, buf, 3), "*:");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_names),
		cmocka_unit_test(test_host_lengths),
		cmocka_unit_test(test_host_wildcard),
		cmocka_unit_test(test_host_ip_refused),
		cmocka_unit_test(test_addr_parse),
		cmocka_unit_test(test_addr_sockaddr),
		cmocka_unit_test(test_addr_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
