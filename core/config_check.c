/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers of the config loader that other modules share: the domain match and
 * secret references. Host names and addresses: lib/host.c, lib/addr.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "core/config.h"
#include "lib/addr.h"

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

int config_wildcard_name(const struct config *cfg, const char *host, char *out, size_t outlen)
{
	const char *parent;
	size_t i;

	if (!cfg || !host || (host[0] == '*' && host[1] == '.'))
		return 0;
	parent = strchr(host, '.');
	for (i = 0; i < cfg->nwildcard_domains; i++) {
		const char *z = cfg->wildcard_domains[i];

		if (strcasecmp(host, z) == 0 || (parent && strcasecmp(parent + 1, z) == 0)) {
			if ((size_t)snprintf(out, outlen, "*.%s", z) >= outlen)
				return 0;
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
	/* unbuffered: stdio's buffer would keep a copy of the secret */
	if (f)
		setvbuf(f, NULL, _IONBF, 0);
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
	if (buf)
		OPENSSL_cleanse(buf, CONFIG_MAX_SECRET + 1);
	free(buf);
	return ret;
}

int config_warnings(const struct config *cfg, char *out, size_t outlen)
{
	size_t off = 0, i;
	int n = 0;

#define WARN(...) do { \
		if (off < outlen) \
			off += (size_t)snprintf(out + off, outlen - off, __VA_ARGS__); \
		if (off < outlen) \
			off += (size_t)snprintf(out + off, outlen - off, "\n"); \
		n++; \
	} while (0)
	if (outlen)
		out[0] = '\0';
	if (!cfg->admin_token && !addr_is_loopback(&cfg->admin_addr))
		WARN("admin.listen %s is reachable beyond this host and admin.token is not set: "
		     "anyone who reaches it can order and delete certificates", cfg->admin_listen);
	if (cfg->allow_any_domain && !cfg->ask_url && (cfg->rl_orders_per_3h ||
							cfg->rl_certs_per_domain_week ||
							cfg->rl_certs_per_exact_set_week))
		WARN("allow_any_domain is on without ask_url: any name a client sends as SNI is "
		     "ordered (bounded by max_concurrent_orders, max_queued_orders and rate_limits)");
	else if (cfg->allow_any_domain && !cfg->ask_url)
		WARN("allow_any_domain is on without ask_url and without rate_limits: any name a "
		     "client sends as SNI is ordered, bounded only by max_concurrent_orders and "
		     "max_queued_orders; set ask_url or rate_limits");
	if (cfg->ndomains == 0 && cfg->nwildcard_domains == 0 && !cfg->allow_any_domain)
		WARN("domains is empty and allow_any_domain is false: no on-demand issuance, "
		     "certificates are issued through the admin API only");
	/* the store holds private keys and the account key */
	if (cfg->storage == CONFIG_STORAGE_REDIS && cfg->redis_ssl && !cfg->redis_ssl_verify)
		WARN("storage_config.redis.ssl_verify is false: any certificate is accepted from "
		     "Redis%s, so whoever sits between them and this host reads the private keys "
		     "and the account key", cfg->redis_sentinel_master ? " and its sentinels" : "");
	if (cfg->storage == CONFIG_STORAGE_CONSUL && !cfg->consul_https && cfg->consul_token &&
	    !addr_host_is_loopback(cfg->consul_host))
		WARN("storage_config.consul: the token and every private key go in clear (http, not "
		     "https) to %s, which is not this host", cfg->consul_host);
	for (i = 0; i < cfg->nruntime; i++)
		if (!addr_is_loopback(&cfg->runtime_addrs[i]))
			WARN("haproxy.runtime %s is a TCP socket beyond this host: certificates and "
			     "their private keys go to it in clear, and anyone who reaches it "
			     "controls HAProxy", cfg->runtime[i]);
#undef WARN
	return n;
}
