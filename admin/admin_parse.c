/* Admin API input parsing: request bodies, the listen address (lib/addr.h) and
 * the token comparison. No sockets, no loop (see admin/admin_int.h). Host names
 * follow lib/host.h. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <jansson.h>

#include "admin/admin.h"
#include "admin/admin_int.h"
#include "lib/addr.h"

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
	struct addr a;
	socklen_t len;
	char why[160];

	if (!listen || !*listen) {
		snprintf(err, errlen, "admin.listen: empty address");
		return -1;
	}
	if (addr_parse(listen, ADDR_LISTEN, &a, why, sizeof(why)) == -1 ||
	    addr_sockaddr(&a, 1, ss, &len, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "admin.listen: %s: %s", listen, why);
		return -1;
	}
	return 0;
}
