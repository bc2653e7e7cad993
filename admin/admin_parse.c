/* Admin API input parsing: host names, request bodies, the listen address and
 * the token comparison. No sockets, no loop (see admin/admin_int.h). */
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <jansson.h>

#include "admin/admin.h"
#include "admin/admin_int.h"

int admin_host_valid(const char *host)
{
	const char *p = host, *label;
	size_t total, len;
	int labels = 0, all_digits = 1;

	if (!host)
		return 0;
	total = strlen(host);
	if (total == 0 || total > ADMIN_HOST_MAX)
		return 0;
	if (p[0] == '*' && p[1] == '.')
		p += 2;
	for (;;) {
		label = p;
		all_digits = 1;
		while (isalnum((unsigned char)*p) || *p == '-') {
			if (!isdigit((unsigned char)*p))
				all_digits = 0;
			p++;
		}
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
	/* no TLD is all digits: this refuses IPv4 literals in every spelling */
	return labels >= 2 && !all_digits;
}

int admin_host_normalize(const char *host, char *out, size_t outlen)
{
	size_t i;

	if (!admin_host_valid(host) || strlen(host) >= outlen)
		return -1;
	for (i = 0; host[i]; i++)
		out[i] = (char)tolower((unsigned char)host[i]);
	out[i] = '\0';
	return 0;
}

static int admin_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes form-urlencoded <s>..<end> into <out> (<outlen> bytes). Returns -1 on
 * overflow or a NUL byte. */
static int admin_form_decode(const char *s, const char *end, char *out, size_t outlen)
{
	size_t n = 0;
	int hi, lo;
	char c;

	while (s < end) {
		c = *s++;
		if (c == '+') {
			c = ' ';
		} else if (c == '%' && end - s >= 2 &&
			   (hi = admin_hexval((unsigned char)s[0])) >= 0 &&
			   (lo = admin_hexval((unsigned char)s[1])) >= 0) {
			c = (char)(hi * 16 + lo);
			s += 2;
		}
		if (c == '\0' || n + 1 >= outlen)
			return -1;
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

void admin_parse_form(const char *body, size_t len, struct admin_params *pp)
{
	const char *p = body, *end = body + len, *amp, *eq;
	char key[64], val[ADMIN_HOST_MAX + 2];

	while (p < end) {
		amp = memchr(p, '&', (size_t)(end - p));
		if (!amp)
			amp = end;
		eq = memchr(p, '=', (size_t)(amp - p));
		if (!eq)
			eq = amp;
		if (admin_form_decode(p, eq, key, sizeof(key)) == 0) {
			int ok = eq < amp ?
				admin_form_decode(eq + 1, amp, val, sizeof(val)) : -1;

			if (strcmp(key, "host") == 0) {
				if (ok == 0 && val[0]) {
					snprintf(pp->host, sizeof(pp->host), "%s", val);
					pp->have_host = 1;
				} else {
					pp->have_host = -1;
				}
			} else if (strcmp(key, "test_http_challenge_flow") == 0) {
				pp->test_flow = ok == 0 && strcmp(val, "true") == 0;
			}
		}
		p = amp + 1;
	}
}

int admin_parse_json(const char *body, size_t len, struct admin_params *pp,
			    const char **msg)
{
	json_t *root, *v;
	json_error_t jerr;

	root = json_loadb(body, len, 0, &jerr);
	if (!root) {
		*msg = "Cannot parse JSON body";
		return -1;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		*msg = "JSON body must be an object";
		return -1;
	}
	v = json_object_get(root, "host");
	if (json_is_string(v) && json_string_length(v) > 0 &&
	    json_string_length(v) <= ADMIN_HOST_MAX &&
	    strlen(json_string_value(v)) == json_string_length(v)) {
		snprintf(pp->host, sizeof(pp->host), "%s", json_string_value(v));
		pp->have_host = 1;
	} else if (v) {
		pp->have_host = -1;
	}
	v = json_object_get(root, "test_http_challenge_flow");
	pp->test_flow = json_is_true(v) ||
		(json_is_string(v) && strcmp(json_string_value(v), "true") == 0);
	json_decref(root);
	return 0;
}

int admin_token_equal(const char *given, const char *secret)
{
	size_t gl = strlen(given), sl = strlen(secret), i;
	volatile unsigned char d = gl != sl;

	if (sl == 0)
		return 0;
	for (i = 0; i < gl; i++)
		d |= (unsigned char)given[i] ^ (unsigned char)secret[i % sl];
	return d == 0;
}


int admin_parse_listen(const char *listen, struct sockaddr_storage *ss,
			      char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char host[256];
	const char *colon, *port, *h = listen;
	size_t hlen;
	int rc;

	if (!listen || !*listen) {
		snprintf(err, errlen, "admin.listen: empty address");
		return -1;
	}
	if (listen[0] == '[') {
		colon = strchr(listen, ']');
		if (!colon || colon[1] != ':') {
			snprintf(err, errlen, "admin.listen: %s: expected [addr]:port", listen);
			return -1;
		}
		h = listen + 1;
		hlen = (size_t)(colon - h);
		port = colon + 2;
	} else {
		colon = strrchr(listen, ':');
		if (!colon) {
			snprintf(err, errlen, "admin.listen: %s: expected host:port", listen);
			return -1;
		}
		hlen = (size_t)(colon - listen);
		port = colon + 1;
	}
	if (hlen >= sizeof(host) || !*port) {
		snprintf(err, errlen, "admin.listen: %s: bad address", listen);
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(hlen && strcmp(host, "*") ? host : NULL, port, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, errlen, "admin.listen: %s: %s", listen, gai_strerror(rc));
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}
