/* SPDX-License-Identifier: Apache-2.0 */
/* The one address parser: "host:port", "[v6]:port" and "unix:/path", as the
 * config, the SPOA and admin listeners and the runtime API client write them.
 * Parsing is pure; turning a parsed address into a sockaddr resolves names and
 * so blocks: do it at start-up only. */
#ifndef ACME_SPOA_ADDR_H
#define ACME_SPOA_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#define ADDR_UNIX	0x1	/* accept "unix:/path" */
#define ADDR_LISTEN	0x2	/* accept port 0 (any free port) and "*:port" or ":port"
				 * (every local address, <host> left empty) */

/* A listen or connect address split by addr_parse(). */
struct addr {
	int is_unix;			/* 1: <path> is set; 0: <host> and <port> are */
	char path[108];			/* sizeof(sun_path) */
	char host[256];			/* without the [] of an IPv6 literal; "" = any */
	int port;
};

/* Parses <s> into <out> under <flags> (ADDR_*): "host:port" where host is an
 * IPv4 literal or a host name (host_valid() with HOST_SINGLE | HOST_IP: one
 * label allowed, IPv4 in another spelling refused), "[IPv6]:port", and with
 * ADDR_UNIX "unix:/absolute/path" (no spaces or control characters). Port is
 * decimal 1..65535 (0..65535 with ADDR_LISTEN). Returns 0, or -1 with the
 * reason in <why> (<whylen>), worded to follow the value ("has no :port"). */
int addr_parse(const char *s, unsigned flags, struct addr *out, char *why, size_t whylen);

/* Fills <ss> and <*len> with the socket address for <a>: AF_UNIX for a unix
 * path; AF_INET/AF_INET6 for a literal, without DNS; for a name, the first
 * result of getaddrinfo() (blocking: at start-up only). <passive> != 0 is for
 * bind(): an empty <host> then means every address. Returns 0, or -1 with the
 * reason in <why> (<whylen>). */
int addr_sockaddr(const struct addr *a, int passive, struct sockaddr_storage *ss,
		  socklen_t *len, char *why, size_t whylen);

/* 1 when <a> is reachable from this host only: a unix socket, a loopback
 * literal (127.0.0.0/8, ::1) or "localhost"; 0 for every address ("*"), any
 * other literal and any other name. */
int addr_is_loopback(const struct addr *a);

/* The same rule for a host as written ("127.0.0.5", "::1", "[::1]" as in a
 * URL, "localhost"). */
int addr_host_is_loopback(const char *host);

/* Writes <a> as addr_parse() reads it ("unix:/p", "h:1", "[::1]:1", "*:0")
 * into <buf> (<buflen> bytes, truncated). Returns <buf>, for logs. */
const char *addr_format(const struct addr *a, char *buf, size_t buflen);

#endif
