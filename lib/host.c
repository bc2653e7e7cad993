/* SPDX-License-Identifier: Apache-2.0 */
/* The host-name rule: see host.h. */
#include <arpa/inet.h>
#include <string.h>

#include "lib/host.h"

static int host_ldh(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

static int host_hexdigit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* 1 when the label <l> of <n> bytes reads as a number: decimal or octal digits,
 * or 0x/0X and hex digits (none at all included, as URL parsers read "0x" as 0).
 * A name ending in such a label is an IPv4 address to curl and to browsers. */
static int host_label_numeric(const char *l, size_t n)
{
	size_t i = 0;

	if (n >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
		for (i = 2; i < n; i++)
			if (!host_hexdigit(l[i]))
				return 0;
		return 1;
	}
	for (; i < n; i++)
		if (l[i] < '0' || l[i] > '9')
			return 0;
	return 1;
}

int host_valid(const char *s, unsigned flags)
{
	unsigned char bin[16];
	struct in_addr a4;
	const char *p, *name, *label;
	size_t n, len;
	int labels = 0;

	if (!s)
		return 0;
	n = strlen(s);
	if (n == 0 || n > HOST_MAXLEN)
		return 0;
	if ((flags & HOST_IP) &&
	    (inet_pton(AF_INET, s, bin) == 1 || inet_pton(AF_INET6, s, bin) == 1))
		return 1;
	name = s;
	if ((flags & HOST_WILDCARD) && s[0] == '*' && s[1] == '.')
		name += 2;
	for (p = name;;) {
		label = p;
		while (host_ldh(*p))
			p++;
		len = (size_t)(p - label);
		if (len == 0 || len > 63 || label[0] == '-' || p[-1] == '-')
			return 0;
		labels++;
		if (*p == '\0')
			break;
		if (*p != '.')
			return 0;
		p++;
	}
	if (labels < 2 && !(flags & HOST_SINGLE))
		return 0;
	/* the last-label test covers what inet_aton() takes; both, to be sure */
	if (host_label_numeric(label, len) || inet_aton(name, &a4) != 0)
		return 0;
	return 1;
}

int host_normalize(const char *in, char *out, size_t outlen, unsigned flags)
{
	size_t i;

	if (out && outlen)
		out[0] = '\0';
	if (!out || !host_valid(in, flags) || strlen(in) >= outlen)
		return -1;
	for (i = 0; in[i]; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] - 'A' + 'a') : in[i];
	out[i] = '\0';
	return 0;
}
