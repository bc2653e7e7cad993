/* SPDX-License-Identifier: Apache-2.0 */
/* DNS messages with ldns (rfc2136.h). Blocking: worker threads only. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <ldns/ldns.h>

#include "dns/rfc2136.h"

#define DNS_TIMEOUT_S	3
#define DNS_RETRIES	2

static const char *dns_rcode_name(int rcode)
{
	ldns_lookup_table *t = ldns_lookup_by_id(ldns_rcodes, rcode);

	return t && t->name ? t->name : "unknown rcode";
}

/* TSIG error codes (RFC 8945 §5.2) by name, for the messages. */
static const char *dns_tsig_error_name(unsigned e)
{
	switch (e) {
	case 16: return "BADSIG";
	case 17: return "BADKEY";
	case 18: return "BADTIME";
	case 22: return "BADTRUNC";
	default: return NULL;
	}
}

/* The address of <host> as an ldns rdf: an IP literal as is, a name through
 * getaddrinfo() (the first address). NULL with <err>. */
static ldns_rdf *dns_addr_rdf(const char *host, char *err, size_t errlen)
{
	unsigned char bin[16];
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *ai = NULL;
	char buf[INET6_ADDRSTRLEN];
	ldns_rdf *rdf = NULL;
	int rc;

	if (inet_pton(AF_INET, host, bin) == 1)
		return ldns_rdf_new_frm_str(LDNS_RDF_TYPE_A, host);
	if (inet_pton(AF_INET6, host, bin) == 1)
		return ldns_rdf_new_frm_str(LDNS_RDF_TYPE_AAAA, host);
	rc = getaddrinfo(host, NULL, &hints, &ai);
	if (rc != 0 || !ai) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return NULL;
	}
	if (ai->ai_family == AF_INET &&
	    inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, buf, sizeof(buf)))
		rdf = ldns_rdf_new_frm_str(LDNS_RDF_TYPE_A, buf);
	else if (ai->ai_family == AF_INET6 &&
		 inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, buf, sizeof(buf)))
		rdf = ldns_rdf_new_frm_str(LDNS_RDF_TYPE_AAAA, buf);
	freeaddrinfo(ai);
	if (!rdf)
		snprintf(err, errlen, "cannot resolve %s: no address", host);
	return rdf;
}

/* A resolver asking <srv> only (not recursive), or the system's (recursive)
 * when <srv> is NULL. NULL with <err>. */
static ldns_resolver *dns_resolver(const struct dns_server *srv, char *err, size_t errlen)
{
	struct timeval tv = { .tv_sec = DNS_TIMEOUT_S };
	ldns_resolver *r = NULL;
	ldns_rdf *a;

	if (!srv) {
		if (ldns_resolver_new_frm_file(&r, NULL) != LDNS_STATUS_OK || !r) {
			snprintf(err, errlen, "cannot read the system resolver configuration");
			return NULL;
		}
		ldns_resolver_set_recursive(r, true);
	} else {
		a = dns_addr_rdf(srv->host, err, errlen);
		if (!a)
			return NULL;
		r = ldns_resolver_new();
		if (!r || ldns_resolver_push_nameserver(r, a) != LDNS_STATUS_OK) {
			ldns_rdf_deep_free(a);
			ldns_resolver_deep_free(r);
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		ldns_rdf_deep_free(a);
		ldns_resolver_set_port(r, (uint16_t)srv->port);
		ldns_resolver_set_recursive(r, false);
	}
	ldns_resolver_set_timeout(r, tv);
	ldns_resolver_set_retry(r, DNS_RETRIES);
	ldns_resolver_set_retrans(r, 1);
	ldns_resolver_set_fallback(r, true);	/* TCP when truncated */
	ldns_resolver_set_dnssec(r, false);
	return r;
}

static void dns_srv_name(const struct dns_server *srv, char *out, size_t outlen)
{
	if (!srv)
		snprintf(out, outlen, "the system resolver");
	else if (strchr(srv->host, ':'))
		snprintf(out, outlen, "[%s]:%d", srv->host, srv->port);
	else
		snprintf(out, outlen, "%s:%d", srv->host, srv->port);
}

/* One query; the answer in <*pkt> (free it). -1 with <err> when none came. */
static int dns_query(ldns_resolver *r, const struct dns_server *srv, const char *name,
		     ldns_rr_type type, ldns_pkt **pkt, char *err, size_t errlen)
{
	ldns_rdf *dn = ldns_dname_new_frm_str(name);
	char who[300];
	ldns_status st;

	*pkt = NULL;
	if (!dn) {
		snprintf(err, errlen, "%s is not a DNS name", name);
		return -1;
	}
	st = ldns_resolver_send(pkt, r, dn, type, LDNS_RR_CLASS_IN,
				ldns_resolver_recursive(r) ? LDNS_RD : 0);
	ldns_rdf_deep_free(dn);
	if (st != LDNS_STATUS_OK || !*pkt) {
		dns_srv_name(srv, who, sizeof(who));
		snprintf(err, errlen, "%s did not answer a query for %s: %s", who, name,
			 ldns_get_errorstr_by_id(st));
		ldns_pkt_free(*pkt);
		*pkt = NULL;
		return -1;
	}
	return 0;
}

/* Writes the owner of <rr> without the trailing dot into <out>. */
static int dns_owner(const ldns_rr *rr, char *out, size_t outlen)
{
	char *s = ldns_rdf2str(ldns_rr_owner(rr));
	size_t n;

	if (!s)
		return -1;
	n = strlen(s);
	if (n > 1 && s[n - 1] == '.')
		s[--n] = '\0';
	if (n >= outlen) {
		free(s);
		return -1;
	}
	memcpy(out, s, n + 1);
	free(s);
	return 0;
}

int dns_find_zone(const struct dns_server *srv, const char *fqdn, char *zone, size_t zonelen,
		  char *err, size_t errlen)
{
	ldns_resolver *r = dns_resolver(srv, err, errlen);
	const char *name = fqdn;
	int rc = -1;

	if (!r)
		return -1;
	while (name && *name) {
		ldns_pkt *pkt = NULL;
		ldns_rr_list *l;
		ldns_pkt_rcode rcode;

		if (dns_query(r, srv, name, LDNS_RR_TYPE_SOA, &pkt, err, errlen) == -1)
			break;
		rcode = ldns_pkt_get_rcode(pkt);
		if (rcode != LDNS_RCODE_NOERROR && rcode != LDNS_RCODE_NXDOMAIN) {
			snprintf(err, errlen, "SOA query for %s answered %s", name, dns_rcode_name(rcode));
			ldns_pkt_free(pkt);
			break;
		}
		/* the zone's own SOA, or the one an NXDOMAIN/NODATA answer carries */
		l = ldns_pkt_rr_list_by_type(pkt, LDNS_RR_TYPE_SOA, LDNS_SECTION_ANSWER);
		if (!l || ldns_rr_list_rr_count(l) == 0) {
			ldns_rr_list_deep_free(l);
			l = ldns_pkt_rr_list_by_type(pkt, LDNS_RR_TYPE_SOA, LDNS_SECTION_AUTHORITY);
		}
		if (l && ldns_rr_list_rr_count(l) > 0) {
			rc = dns_owner(ldns_rr_list_rr(l, 0), zone, zonelen);
			if (rc == -1)
				snprintf(err, errlen, "SOA owner of %s is too long", name);
			ldns_rr_list_deep_free(l);
			ldns_pkt_free(pkt);
			break;
		}
		ldns_rr_list_deep_free(l);
		ldns_pkt_free(pkt);
		name = strchr(name, '.');
		if (!name) {
			snprintf(err, errlen, "no SOA found for %s", fqdn);
			break;
		}
		name++;
	}
	ldns_resolver_deep_free(r);
	return rc;
}

/* Sends <pkt> to <r>'s server over UDP (TCP when the answer is truncated)
 * and parses the answer into <*ans>. With <mac> (the request's TSIG MAC), a
 * NOERROR answer must carry a TSIG that verifies with <tsig>; an error answer
 * is returned as is (servers do not sign those they refuse for a bad key).
 * ldns_resolver_send_pkt() would drop such an answer and with it the reason. */
static int dns_send_raw(ldns_resolver *r, const struct dns_server *srv, const ldns_pkt *pkt,
			const ldns_rdf *mac, const struct dns_tsig *tsig, ldns_pkt **ans,
			char *err, size_t errlen)
{
	struct timeval tv = { .tv_sec = DNS_TIMEOUT_S };
	struct sockaddr_storage *to = NULL;
	ldns_buffer *qb = ldns_buffer_new(LDNS_MAX_PACKETLEN);
	uint8_t *wire = NULL;
	size_t tolen = 0, wlen = 0;
	char who[300];
	ldns_status st;
	int tcp, tries, rc = -1;

	*ans = NULL;
	dns_srv_name(srv, who, sizeof(who));
	if (!qb || ldns_pkt2buffer_wire(qb, pkt) != LDNS_STATUS_OK ||
	    !(to = ldns_rdf2native_sockaddr_storage(ldns_resolver_nameservers(r)[0],
						    (uint16_t)srv->port, &tolen))) {
		snprintf(err, errlen, "cannot encode the update for %s", who);
		goto out;
	}
	for (tcp = 0; tcp < 2; tcp++) {
		for (tries = 0; tries <= DNS_RETRIES; tries++) {
			free(wire);
			wire = NULL;
			st = tcp ? ldns_tcp_send(&wire, qb, to, (socklen_t)tolen, tv, &wlen)
				 : ldns_udp_send(&wire, qb, to, (socklen_t)tolen, tv, &wlen);
			if (st == LDNS_STATUS_OK && wire)
				break;
		}
		if (st != LDNS_STATUS_OK || !wire) {
			snprintf(err, errlen, "%s did not answer the update (%s): %s", who,
				 tcp ? "TCP" : "UDP", ldns_get_errorstr_by_id(st));
			goto out;
		}
		ldns_pkt_free(*ans);
		*ans = NULL;
		if (ldns_wire2pkt(ans, wire, wlen) != LDNS_STATUS_OK || !*ans) {
			snprintf(err, errlen, "%s sent a malformed answer to the update", who);
			goto out;
		}
		if (!ldns_pkt_tc(*ans))
			break;
	}
	if (mac && ldns_pkt_get_rcode(*ans) == LDNS_RCODE_NOERROR &&
	    !ldns_pkt_tsig_verify(*ans, wire, wlen, tsig->key_name, tsig->secret, mac)) {
		snprintf(err, errlen, "%s answered the update without a valid TSIG signature", who);
		goto out;
	}
	rc = 0;
out:
	free(wire);
	free(to);
	ldns_buffer_free(qb);
	if (rc == -1) {
		ldns_pkt_free(*ans);
		*ans = NULL;
	}
	return rc;
}

int dns_update_txt(const struct dns_server *srv, const struct dns_tsig *tsig, const char *zone,
		   const char *fqdn, const char *value, int add, int ttl, char *err, size_t errlen)
{
	ldns_resolver *r;
	ldns_rr *rr = NULL;
	ldns_rr_list *up = NULL;
	ldns_pkt *pkt = NULL, *ans = NULL;
	ldns_rdf *zdn;
	ldns_status st;
	char text[600], who[300], alg[64];
	int rc = -1;

	if (!srv) {	/* checked before dns_resolver(), which would read resolv.conf for nothing */
		snprintf(err, errlen, "no server to send the update to");
		return -1;
	}
	r = dns_resolver(srv, err, errlen);
	if (!r)
		return -1;
	dns_srv_name(srv, who, sizeof(who));
	snprintf(text, sizeof(text), "%s. %d IN TXT \"%s\"", fqdn, add ? ttl : 0, value);
	if (ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL) != LDNS_STATUS_OK) {
		snprintf(err, errlen, "cannot build the TXT record of %s", fqdn);
		goto out;
	}
	if (!add)
		ldns_rr_set_class(rr, LDNS_RR_CLASS_NONE);	/* RFC 2136 §2.5.4: delete this RR */
	up = ldns_rr_list_new();
	zdn = ldns_dname_new_frm_str(zone);
	if (!up || !zdn || !ldns_rr_list_push_rr(up, rr)) {
		ldns_rdf_deep_free(zdn);
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rr = NULL;
	pkt = ldns_update_pkt_new(zdn, LDNS_RR_CLASS_IN, NULL, up, NULL);	/* owns zdn */
	if (!pkt) {
		snprintf(err, errlen, "cannot build the update of %s", zone);
		goto out;
	}
	ldns_pkt_set_rd(pkt, false);
	ldns_pkt_set_random_id(pkt);
	if (tsig) {
		snprintf(alg, sizeof(alg), "%s.", tsig->algorithm);
		ldns_resolver_set_tsig_keyname(r, tsig->key_name);
		ldns_resolver_set_tsig_algorithm(r, alg);
		ldns_resolver_set_tsig_keydata(r, tsig->secret);
		st = ldns_update_pkt_tsig_add(pkt, r);
		if (st != LDNS_STATUS_OK) {
			snprintf(err, errlen, "cannot sign the update with TSIG key %s (%s): %s",
				 tsig->key_name, tsig->algorithm, ldns_get_errorstr_by_id(st));
			goto out;
		}
	}
	if (dns_send_raw(r, srv, pkt, tsig && ldns_pkt_tsig(pkt) ? ldns_rr_rdf(ldns_pkt_tsig(pkt), 3) : NULL,
			 tsig, &ans, err, errlen) == -1)
		goto out;
	if (ldns_pkt_get_rcode(ans) != LDNS_RCODE_NOERROR) {
		ldns_rr *t = ldns_pkt_tsig(ans);
		const char *te = NULL;

		if (t && ldns_rr_rd_count(t) > 5 && ldns_rr_rdf(t, 5))
			te = dns_tsig_error_name(ldns_rdf2native_int16(ldns_rr_rdf(t, 5)));
		snprintf(err, errlen, "%s refused the update of zone %s: %s%s%s", who, zone,
			 dns_rcode_name(ldns_pkt_get_rcode(ans)), te ? ", TSIG error " : "",
			 te ? te : "");
		goto out;
	}
	rc = 0;
out:
	ldns_rr_free(rr);
	ldns_rr_list_deep_free(up);
	ldns_pkt_free(pkt);
	ldns_pkt_free(ans);
	ldns_resolver_deep_free(r);
	return rc;
}

/* Adds <host>:<port> to <out> unless there. */
static void dns_servers_add(struct dns_server *out, size_t *n, size_t max, const char *host, int port)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (out[i].port == port && strcasecmp(out[i].host, host) == 0)
			return;
	if (*n >= max || strlen(host) >= sizeof(out[0].host))
		return;
	snprintf(out[*n].host, sizeof(out[*n].host), "%s", host);
	out[*n].port = port;
	(*n)++;
}

/* The addresses of NS name <ns>: glue in <pkt>'s additional section, else
 * A/AAAA queries through <r>. */
static void dns_ns_addrs(ldns_resolver *r, const struct dns_server *srv, ldns_pkt *pkt,
			 const char *ns, struct dns_server *out, size_t *n, size_t max)
{
	static const ldns_rr_type types[2] = { LDNS_RR_TYPE_A, LDNS_RR_TYPE_AAAA };
	char owner[DNS_NAME_MAX], err[256];
	size_t t, i;

	for (t = 0; t < 2; t++) {
		ldns_pkt *q = NULL;
		ldns_rr_list *l = ldns_pkt_rr_list_by_type(pkt, types[t], LDNS_SECTION_ADDITIONAL);

		if ((!l || ldns_rr_list_rr_count(l) == 0) &&
		    dns_query(r, srv, ns, types[t], &q, err, sizeof(err)) == 0) {
			ldns_rr_list_deep_free(l);
			l = ldns_pkt_rr_list_by_type(q, types[t], LDNS_SECTION_ANSWER);
		}
		for (i = 0; l && i < ldns_rr_list_rr_count(l); i++) {
			ldns_rr *rr = ldns_rr_list_rr(l, i);
			char *a;

			if (dns_owner(rr, owner, sizeof(owner)) == -1 || strcasecmp(owner, ns) != 0 ||
			    ldns_rr_rd_count(rr) < 1 || !(a = ldns_rdf2str(ldns_rr_rdf(rr, 0))))
				continue;
			/* the configured server is asked at its own port */
			dns_servers_add(out, n, max, a,
					srv && strcasecmp(a, srv->host) == 0 ? srv->port : 53);
			free(a);
		}
		ldns_rr_list_deep_free(l);
		ldns_pkt_free(q);
	}
}

int dns_zone_servers(const struct dns_server *srv, const char *zone, struct dns_server *out,
		     size_t max, char *err, size_t errlen)
{
	ldns_resolver *r;
	ldns_pkt *pkt = NULL;
	ldns_rr_list *l = NULL;
	char ns[DNS_NAME_MAX];
	size_t n = 0, i;

	if (errlen)
		err[0] = '\0';
	if (srv)
		dns_servers_add(out, &n, max, srv->host, srv->port);
	r = dns_resolver(srv, err, errlen);
	if (!r)
		return n ? (int)n : -1;
	if (dns_query(r, srv, zone, LDNS_RR_TYPE_NS, &pkt, err, errlen) == 0) {
		l = ldns_pkt_rr_list_by_type(pkt, LDNS_RR_TYPE_NS, LDNS_SECTION_ANSWER);
		for (i = 0; l && i < ldns_rr_list_rr_count(l); i++) {
			ldns_rr *rr = ldns_rr_list_rr(l, i);
			char *s;
			size_t k;

			if (ldns_rr_rd_count(rr) < 1 || !(s = ldns_rdf2str(ldns_rr_rdf(rr, 0))))
				continue;
			k = strlen(s);
			if (k > 1 && s[k - 1] == '.')
				s[--k] = '\0';
			snprintf(ns, sizeof(ns), "%s", s);
			free(s);
			dns_ns_addrs(r, srv, pkt, ns, out, &n, max);
		}
	}
	ldns_rr_list_deep_free(l);
	ldns_pkt_free(pkt);
	ldns_resolver_deep_free(r);
	if (n == 0) {
		if (!*err)
			snprintf(err, errlen, "no authoritative server found for zone %s", zone);
		return -1;
	}
	return (int)n;
}

int dns_has_txt(const struct dns_server *srv, const char *fqdn, const char *value, char *err,
		size_t errlen)
{
	ldns_resolver *r = dns_resolver(srv, err, errlen);
	ldns_rr_list *l;
	ldns_pkt *pkt = NULL;
	size_t i, j, vl = strlen(value);
	int rc = 0;

	if (!r)
		return -1;
	if (dns_query(r, srv, fqdn, LDNS_RR_TYPE_TXT, &pkt, err, errlen) == -1) {
		ldns_resolver_deep_free(r);
		return -1;
	}
	l = ldns_pkt_rr_list_by_type(pkt, LDNS_RR_TYPE_TXT, LDNS_SECTION_ANSWER);
	for (i = 0; l && i < ldns_rr_list_rr_count(l) && !rc; i++) {
		ldns_rr *rr = ldns_rr_list_rr(l, i);

		/* one character-string per TXT here: length byte, then the bytes */
		for (j = 0; j < ldns_rr_rd_count(rr) && !rc; j++) {
			ldns_rdf *d = ldns_rr_rdf(rr, j);

			rc = ldns_rdf_size(d) == vl + 1 && ldns_rdf_data(d)[0] == vl &&
			     memcmp(ldns_rdf_data(d) + 1, value, vl) == 0;
		}
	}
	ldns_rr_list_deep_free(l);
	ldns_pkt_free(pkt);
	ldns_resolver_deep_free(r);
	return rc;
}
