/* Helpers of the config loader that other modules share: host name and address
 * syntax (pure string checks, also used on SNI) and secret references. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"

static int has_space_or_ctl(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v <= 0x20 || *v == 0x7f)
			return 1;
	return 0;
}

int config_host_valid(const char *v)
{
	unsigned char a[16];
	const char *l = v;
	size_t n = strlen(v);

	if (inet_pton(AF_INET, v, a) == 1 || inet_pton(AF_INET6, v, a) == 1)
		return 1;
	if (n == 0 || n > 253 || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != n)
		return 0;
	for (;;) {
		size_t ll = strcspn(l, ".");

		if (ll == 0 || ll > 63 || l[0] == '-' || l[ll - 1] == '-')
			return 0;
		if (!l[ll])
			return 1;
		l += ll + 1;
	}
}

int config_addr_parse(const char *addr, int allow_unix, struct config_addr *out,
		      char *why, size_t whylen)
{
	unsigned char bin[16];
	const char *colon, *hs, *he;
	char *end;
	long port;

	memset(out, 0, sizeof(*out));
	if (strncmp(addr, "unix:", 5) == 0) {
		if (!allow_unix) {
			snprintf(why, whylen, "is a unix socket, expected host:port");
			return -1;
		}
		if (addr[5] != '/' || strlen(addr + 5) >= sizeof(out->path) || has_space_or_ctl(addr)) {
			snprintf(why, whylen, "is not unix:/absolute/path (at most %zu bytes)",
				 sizeof(out->path) - 1);
			return -1;
		}
		out->is_unix = 1;
		strcpy(out->path, addr + 5);
		return 0;
	}
	if (strstr(addr, "://")) {
		snprintf(why, whylen, "is a URL, expected host:port%s", allow_unix ? " or unix:/path" : "");
		return -1;
	}
	if (addr[0] == '[') {
		hs = addr + 1;
		he = strchr(hs, ']');
		if (!he || he[1] != ':') {
			snprintf(why, whylen, "is not [IPv6]:port");
			return -1;
		}
		colon = he + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon) {
			snprintf(why, whylen, "has no :port (expected host:port%s)",
				 allow_unix ? " or unix:/path" : "");
			return -1;
		}
		hs = addr;
		he = colon;
		if (memchr(hs, ':', he - hs)) {
			snprintf(why, whylen, "is not host:port (write IPv6 addresses as [addr]:port)");
			return -1;
		}
	}
	if (he == hs || (size_t)(he - hs) >= sizeof(out->host)) {
		snprintf(why, whylen, "has an empty or too long host");
		return -1;
	}
	memcpy(out->host, hs, he - hs);
	out->host[he - hs] = '\0';
	if (addr[0] == '[' ? inet_pton(AF_INET6, out->host, bin) != 1
			   : !config_host_valid(out->host)) {
		snprintf(why, whylen, "has an invalid host \"%s\"", out->host);
		return -1;
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (colon[1] < '0' || colon[1] > '9' || *end || errno || port < 1 || port > 65535) {
		snprintf(why, whylen, "has an invalid port (expected 1..65535)");
		return -1;
	}
	out->port = (int)port;
	return 0;
}

int config_host_normalize(const char *in, char *out, size_t outlen)
{
	unsigned char bin[16];
	size_t n, i, lstart = 0, labels = 0;
	int numeric = 1;

	if (!in || !out)
		return -1;
	n = strlen(in);
	if (n == 0 || n > 253 || n + 1 > outlen)
		return -1;
	if (inet_pton(AF_INET, in, bin) == 1 || inet_pton(AF_INET6, in, bin) == 1)
		return -1;
	for (i = 0; i <= n; i++) {
		char c = in[i];

		if (c == '.' || c == '\0') {
			size_t ll = i - lstart;

			if (ll == 0 || ll > 63 || in[lstart] == '-' || in[i - 1] == '-')
				return -1;
			labels++;
			if (c == '\0')
				break;
			lstart = i + 1;
			numeric = 1;
			out[i] = '.';
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return -1;
		if (c < '0' || c > '9')
			numeric = 0;
		out[i] = c;
	}
	/* a numeric top-level label is an IPv4 address in disguise (1.2.3.4, 0x7f.1) */
	if (labels < 2 || numeric) {
		out[0] = '\0';
		return -1;
	}
	out[n] = '\0';
	return 0;
}

int config_domain_allowed(const struct config *cfg, const char *host)
{
	size_t i, hl;

	if (!cfg || !host)
		return 0;
	if (cfg->allow_any_domain)
		return 1;
	hl = strlen(host);
	for (i = 0; i < cfg->ndomains; i++) {
		const char *d = cfg->domains[i];

		if (d[0] == '*' && d[1] == '.') {
			size_t sl = strlen(d + 1);	/* ".example.com" */

			if (hl > sl && strcasecmp(host + hl - sl, d + 1) == 0)
				return 1;
		} else if (strcasecmp(host, d) == 0) {
			return 1;
		}
	}
	return 0;
}

#define CONFIG_MAX_SECRET	(64 * 1024)

int config_secret_resolve(const char *v, char **out, char *why, size_t whylen)
{
	char name[256], path[4096], *buf = NULL;
	size_t n = strlen(v), len;
	const char *val;
	FILE *f = NULL;
	int ret = -1;

	*out = NULL;
	if (strncmp(v, "{env://", 7) != 0 && strncmp(v, "{file://", 8) != 0) {
		if (!(*out = strdup(v)))
			snprintf(why, whylen, "out of memory");
		return *out ? 0 : -1;
	}
	if (n < 9 || v[n - 1] != '}') {
		snprintf(why, whylen, "\"%.80s\" is not a valid {env://NAME} or {file:///path} reference", v);
		return -1;
	}
	if (v[1] == 'e') {
		len = n - 8;
		if (len >= sizeof(name) || strspn(v + 7, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"abcdefghijklmnopqrstuvwxyz0123456789_") != len) {
			snprintf(why, whylen, "\"%.80s\" does not name an environment variable", v);
			return -1;
		}
		memcpy(name, v + 7, len);
		name[len] = '\0';
		if (!(val = getenv(name))) {
			snprintf(why, whylen, "%s names an unset environment variable", v);
			return -1;
		}
		if (!(*out = strdup(val)))
			snprintf(why, whylen, "out of memory");
		return *out ? 0 : -1;
	}
	len = n - 9;
	if (v[8] != '/' || len >= sizeof(path)) {
		snprintf(why, whylen, "\"%.80s\" is not {file:///absolute/path}", v);
		return -1;
	}
	memcpy(path, v + 8, len);
	path[len] = '\0';
	f = fopen(path, "re");
	buf = malloc(CONFIG_MAX_SECRET + 1);
	if (!f || !buf) {
		snprintf(why, whylen, "%s cannot be read (%s)", v, strerror(errno));
		goto out;
	}
	n = fread(buf, 1, CONFIG_MAX_SECRET + 1, f);
	if (ferror(f) || n > CONFIG_MAX_SECRET) {
		snprintf(why, whylen, "%s cannot be read (%s)", v,
			 ferror(f) ? strerror(errno) : "larger than 64 KiB");
		goto out;
	}
	/* files written by editors or echo end with a newline the secret lacks */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	if (strlen(buf) != n) {
		snprintf(why, whylen, "%s contains a NUL byte", v);
		goto out;
	}
	*out = buf;
	buf = NULL;
	ret = 0;
out:
	if (f)
		fclose(f);
	free(buf);
	return ret;
}
