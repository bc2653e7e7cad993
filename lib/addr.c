/* SPDX-License-Identifier: Apache-2.0 */
/* The address parser: see addr.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "lib/addr.h"
#include "lib/host.h"

_Static_assert(sizeof(((struct addr *)0)->path) == sizeof(((struct sockaddr_un *)0)->sun_path),
	       "struct addr holds any unix socket path");

/* 1 when <v> holds a control character, or a space when <space>. */
static int addr_has_ctl(const char *v, int space)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f || (space && *v == ' '))
			return 1;
	return 0;
}

int addr_parse(const char *s, unsigned flags, struct addr *out, char *why, size_t whylen)
{
	int allow_unix = !!(flags & ADDR_UNIX), listen = !!(flags & ADDR_LISTEN);
	unsigned char bin[16];
	const char *colon, *hs, *he;
	size_t hlen;
	char *end;
	long port;

	memset(out, 0, sizeof(*out));
	if (strncmp(s, "unix:", 5) == 0) {
		if (!allow_unix) {
			snprintf(why, whylen, "is a unix socket, expected host:port");
			return -1;
		}
		if (s[5] != '/' || strlen(s + 5) >= sizeof(out->path) || addr_has_ctl(s, 1)) {
			snprintf(why, whylen, "is not unix:/absolute/path (at most %zu bytes)",
				 sizeof(out->path) - 1);
			return -1;
		}
		out->is_unix = 1;
		strcpy(out->path, s + 5);
		return 0;
	}
	if (strstr(s, "://")) {
		snprintf(why, whylen, "is a URL, expected host:port%s", allow_unix ? " or unix:/path" : "");
		return -1;
	}
	if (s[0] == '[') {
		hs = s + 1;
		he = strchr(hs, ']');
		if (!he || he[1] != ':') {
			snprintf(why, whylen, "is not [IPv6]:port");
			return -1;
		}
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon) {
			snprintf(why, whylen, "has no :port (expected host:port%s)",
				 allow_unix ? " or unix:/path" : "");
			return -1;
		}
		hs = s;
		he = colon;
		if (memchr(hs, ':', (size_t)(he - hs))) {
			snprintf(why, whylen, "is not host:port (write IPv6 addresses as [addr]:port)");
			return -1;
		}
	}
	hlen = (size_t)(he - hs);
	if (listen && s[0] != '[' && (hlen == 0 || (hlen == 1 && hs[0] == '*'))) {
		/* "*:port" and ":port": every local address, <host> stays "" */
	} else if (hlen == 0 || hlen >= sizeof(out->host)) {
		snprintf(why, whylen, "has an empty or too long host");
		return -1;
	} else {
		memcpy(out->host, hs, hlen);
		out->host[hlen] = '\0';
		if (s[0] == '[' ? inet_pton(AF_INET6, out->host, bin) != 1
				: !host_valid(out->host, HOST_SINGLE | HOST_IP)) {
			/* the reason follows the value on one line: no control bytes */
			snprintf(why, whylen, "has an invalid host \"%s\"",
				 addr_has_ctl(out->host, 0) ? "..." : out->host);
			out->host[0] = '\0';
			return -1;
		}
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (colon[1] < '0' || colon[1] > '9' || *end || errno || port < (listen ? 0 : 1) ||
	    port > 65535) {
		snprintf(why, whylen, "has an invalid port (expected %d..65535)", listen ? 0 : 1);
		return -1;
	}
	out->port = (int)port;
	return 0;
}

int addr_sockaddr(const struct addr *a, int passive, struct sockaddr_storage *ss,
		  socklen_t *len, char *why, size_t whylen)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct addrinfo hints, *res = NULL;
	char port[8];
	int rc;

	memset(ss, 0, sizeof(*ss));
	if (a->is_unix) {
		if (a->path[0] != '/' || strlen(a->path) >= sizeof(sun->sun_path)) {
			snprintf(why, whylen, "is not unix:/absolute/path");
			return -1;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, a->path);
		*len = sizeof(*sun);
		return 0;
	}
	if (a->port < 0 || a->port > 65535) {
		snprintf(why, whylen, "has an invalid port (expected 0..65535)");
		return -1;
	}
	if (inet_pton(AF_INET, a->host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)a->port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, a->host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)a->port);
		*len = sizeof(*sin6);
		return 0;
	}
	if (!a->host[0] && !passive) {
		snprintf(why, whylen, "has no host to connect to");
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	snprintf(port, sizeof(port), "%d", a->port);
	rc = getaddrinfo(a->host[0] ? a->host : NULL, port, &hints, &res);
	if (rc != 0 || !res || res->ai_addrlen > sizeof(*ss)) {
		snprintf(why, whylen, "cannot be resolved (%s)",
			 rc ? gai_strerror(rc) : "no usable address");
		if (res)
			freeaddrinfo(res);
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

const char *addr_format(const struct addr *a, char *buf, size_t buflen)
{
	if (a->is_unix)
		snprintf(buf, buflen, "unix:%s", a->path);
	else if (!a->host[0])
		snprintf(buf, buflen, "*:%d", a->port);
	else if (strchr(a->host, ':'))
		snprintf(buf, buflen, "[%s]:%d", a->host, a->port);
	else
		snprintf(buf, buflen, "%s:%d", a->host, a->port);
	return buf;
}

int addr_host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	char v6[INET6_ADDRSTRLEN];
	size_t n = strlen(host);

	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(v6)) {
		memcpy(v6, host + 1, n - 2);	/* a URL's "[::1]" */
		v6[n - 2] = '\0';
		host = v6;
	}
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

int addr_is_loopback(const struct addr *a)
{
	return a->is_unix || addr_host_is_loopback(a->host);
}
