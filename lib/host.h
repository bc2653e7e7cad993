/* SPDX-License-Identifier: Apache-2.0 */
/* The one host-name rule: what the admin API, the config, SNI, storage and
 * pub/sub accept as a DNS name, and what an address may name. Pure string
 * checks, no DNS. */
#ifndef ACME_SPOA_HOST_H
#define ACME_SPOA_HOST_H

#include <stddef.h>

#define HOST_MAXLEN	253	/* longest name, "*." included; buffers need +1 */

#define HOST_WILDCARD	0x1	/* accept a leading "*." (admin API, domains) */
#define HOST_SINGLE	0x2	/* accept one label ("localhost", "redis"): addresses */
#define HOST_IP		0x4	/* accept an IPv4 dotted quad or IPv6 literal as written
				 * by inet_pton() (no brackets): addresses */

/* Returns 1 when <s> is a host name under <flags> (HOST_*), 0 otherwise
 * (NULL included). A name is LDH labels of 1..63 characters not starting or
 * ending with '-', separated by single dots, at most HOST_MAXLEN characters in
 * all, no trailing dot, at least two labels unless HOST_SINGLE; letters of
 * either case. A name that is an IPv4 address in any spelling is refused (even
 * with HOST_IP, which admits only the canonical literal): a last label that is
 * all digits or 0x/0X followed by hex digits, and anything inet_aton() takes
 * ("127.1", "0x7f.1", "017.0.0.1", "2130706433"), since curl and resolvers
 * read those as addresses. With HOST_WILDCARD, "*." may precede a name that
 * would be valid by itself. */
int host_valid(const char *s, unsigned flags);

/* Checks <in> with host_valid(<in>, <flags>) and writes it lower-cased into
 * <out> (<outlen> bytes; HOST_MAXLEN + 1 always suffices; <out> must not
 * overlap <in>). Returns 0, or -1 when invalid or too long for <out>, leaving
 * <out> empty when <outlen> > 0. */
int host_normalize(const char *in, char *out, size_t outlen, unsigned flags);

#endif
