/* SPDX-License-Identifier: Apache-2.0 */
/* DNS messages for the dns-01 solver, with ldns: SOA look-up of a name's
 * zone, RFC 2136 updates signed with TSIG (RFC 8945), and the queries of the
 * propagation check. Every function here BLOCKS on the network (bounded by
 * short timeouts): call them on worker threads only (dns01.c does). Each call
 * builds its own resolver, so calls may run in parallel. UDP first, TCP when
 * the answer is truncated. */
#ifndef ACME_SPOA_DNS_RFC2136_H
#define ACME_SPOA_DNS_RFC2136_H

#include <stddef.h>

#define DNS_NAME_MAX 256
#define DNS_SERVERS_MAX 8	/* servers a propagation check asks */

/* One DNS server: an IP literal or a host name (resolved with getaddrinfo()
 * by the calling worker), and a port. */
struct dns_server {
	char host[DNS_NAME_MAX];
	int port;
};

/* TSIG credentials: key name, algorithm ("hmac-sha256", "hmac-sha512") and
 * the base64 secret. */
struct dns_tsig {
	const char *key_name, *algorithm, *secret;
};

/* Finds the zone holding <fqdn> (no trailing dot) by asking <srv> for its
 * SOA (the answer's or the authority section's owner), walking up the labels;
 * <srv> NULL asks the system resolver (recursive). Writes the zone without
 * trailing dot into <zone>. Returns 0, or -1 with <err>. */
int dns_find_zone(const struct dns_server *srv, const char *fqdn, char *zone, size_t zonelen,
		  char *err, size_t errlen);

/* Sends <srv> an RFC 2136 update of <zone> signed with <tsig> (NULL: unsigned)
 * adding (<add> 1, with <ttl>) or deleting (<add> 0: that value only) TXT
 * <value> at <fqdn>. The answer's TSIG is verified. Returns 0 when the server
 * answered NOERROR, or -1 with <err> naming the server's rcode and TSIG error
 * ("NOTAUTH, TSIG error BADSIG") or the transport error. */
int dns_update_txt(const struct dns_server *srv, const struct dns_tsig *tsig, const char *zone,
		   const char *fqdn, const char *value, int add, int ttl, char *err, size_t errlen);

/* The authoritative servers of <zone> for a propagation check: <srv> itself
 * (when not NULL) and the addresses of the zone's NS records (port 53, or
 * <srv>'s port for <srv>'s own address), at most <max>, no duplicates. NS
 * names whose address cannot be found are left out. Returns how many, or -1
 * with <err> when not even <srv> is known. */
int dns_zone_servers(const struct dns_server *srv, const char *zone, struct dns_server *out,
		     size_t max, char *err, size_t errlen);

/* Asks <srv> (not recursive) for TXT <fqdn>: 1 when <value> is among the
 * answers, 0 when it is not, -1 when the server did not answer (<err>). */
int dns_has_txt(const struct dns_server *srv, const char *fqdn, const char *value, char *err,
		size_t errlen);

#endif
