/* SPDX-License-Identifier: Apache-2.0 */
/* JSON configuration: one table row per key (name, type, bounds, default, flags,
 * offset of the field), in the shape of redis' config.c. The loader walks the
 * JSON tree, matches dotted names against the table, collects every error, then
 * fills defaults and runs the checks that involve several keys. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <openssl/crypto.h>

#include "acme/http.h"
#include "core/config.h"
#include "storage/storage.h"

#define CONFIG_MAX_FILE		(4 * 1024 * 1024)
#define CONFIG_KEY_MAX		256

_Static_assert(sizeof(enum config_cert_type) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(enum config_storage) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(enum config_dns01_provider) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(enum config_tsig_alg) == sizeof(int), "enum stored as int");

enum cfg_kind {
	CFG_STR = 0,
	CFG_INT,
	CFG_BOOL,
	CFG_ENUM,
	CFG_LIST,
	CFG_REAL,
	CFG_ISSUERS,		/* "issuers": an array of objects (parse_issuers()) */
	CFG__MAX
};

#define CF_REQUIRED	0x01	/* no default: must be given */
#define CF_SECRET	0x02	/* may be {env://..}/{file://..}; value never printed */
#define CF_RELOAD	0x04	/* applied at SIGHUP without restart */
#define CF_EMPTY_OK	0x08	/* "" is a valid value */
#define CF_ADDR		0x10	/* an address, parsed (addr_parse) into the field at off_addr */
#define CF_ALIAS	0x20	/* another name for the row before it (same field) */
#define CF_NODES	0x40	/* CFG_LIST of addresses: entries may be {"host":..,"port":..} */

struct cfg_row {
	const char *name;		/* dotted path in the JSON tree */
	enum cfg_kind kind;
	unsigned flags;
	long long min, max;		/* CFG_INT bounds; CFG_LIST minimum count in <min> */
	const int *set;			/* CFG_INT: allowed values, 0-terminated, or NULL */
	const char *const *choices;	/* CFG_ENUM names indexed by value, NULL-terminated */
	const char *def_str;		/* CFG_STR default, CFG_LIST single default entry */
	long long def_int;
	double def_real, real_min, real_max;	/* CFG_REAL */
	size_t off, off_n;		/* field; CFG_LIST count field */
	int (*check)(char *val, char *why, size_t whylen);
	unsigned addr_flags;		/* CF_ADDR: ADDR_* for addr_parse() */
	size_t off_addr;		/* CF_ADDR: struct addr (CFG_STR), struct addr * (CFG_LIST) */
};

struct cfg_errs {
	char *buf;
	size_t cap, len;
	int n;
};

static const char *const cert_type_names[] = { "rsa", "ecc", NULL };
static const char *const storage_names[] = { "file", "redis", "shm", "consul", NULL };
static const char *const preload_names[] = { "all", "on_demand", NULL };
static const int rsa_sizes[] = { 2048, 3072, 4096, 0 };
static const char *const dns01_provider_names[] = { "none", "rfc2136", "exec", NULL };
static const char *const tsig_alg_names[] = { "hmac-sha256", "hmac-sha512", NULL };

static int chk_email(char *v, char *why, size_t whylen);
static int chk_http_url(char *v, char *why, size_t whylen);
static int chk_readable_file(char *v, char *why, size_t whylen);
static int chk_base64url(char *v, char *why, size_t whylen);
static int chk_domain(char *v, char *why, size_t whylen);
static int chk_host(char *v, char *why, size_t whylen);
static int chk_abs_path(char *v, char *why, size_t whylen);
static int chk_sentinel_master(char *v, char *why, size_t whylen);
static int chk_kv_path(char *v, char *why, size_t whylen);
static int chk_zone(char *v, char *why, size_t whylen);
static int chk_dns01_zone(char *v, char *why, size_t whylen);
static int chk_dns_name(char *v, char *why, size_t whylen);
static int chk_base64(char *v, char *why, size_t whylen);
static int chk_executable(char *v, char *why, size_t whylen);
static int chk_env_name(char *v, char *why, size_t whylen);
static int chk_mode(char *v, char *why, size_t whylen);
static int chk_group(char *v, char *why, size_t whylen);
static int chk_challenge(char *v, char *why, size_t whylen);
static int find_row(const char *name);

#define F(f)	offsetof(struct config, f)
#define STR(n, fl, def, f, chk)	{ .name = n, .kind = CFG_STR, .flags = fl, .def_str = def, .off = F(f), .check = chk }
#define INT(n, fl, lo, hi, def, f) { .name = n, .kind = CFG_INT, .flags = fl, .min = lo, .max = hi, .def_int = def, .off = F(f) }
#define BOOL(n, fl, def, f)	{ .name = n, .kind = CFG_BOOL, .flags = fl, .def_int = def, .off = F(f) }
#define ENUM(n, fl, ch, def, f)	{ .name = n, .kind = CFG_ENUM, .flags = fl, .choices = ch, .def_int = def, .off = F(f) }
#define LIST(n, fl, mincount, def, f, fn, chk) \
	{ .name = n, .kind = CFG_LIST, .flags = fl, .min = mincount, .def_str = def, .off = F(f), .off_n = F(fn), .check = chk }
#define REAL(n, fl, lo, hi, def, f) \
	{ .name = n, .kind = CFG_REAL, .flags = fl, .real_min = lo, .real_max = hi, .def_real = def, .off = F(f) }
/* rate_limits: -1 until finish() puts the CA's own default in */
#define RLIM(n, f)	INT(n, CF_RELOAD, 0, 10000, -1, f)
#define ADDR(n, fl, af, def, f, pf) \
	{ .name = n, .kind = CFG_STR, .flags = (fl) | CF_ADDR, .addr_flags = af, .def_str = def, .off = F(f), .off_addr = F(pf) }
#define ADDR_LIST(n, fl, mincount, af, def, f, fn, pf) \
	{ .name = n, .kind = CFG_LIST, .flags = (fl) | CF_ADDR, .min = mincount, .addr_flags = af, .def_str = def, \
	  .off = F(f), .off_n = F(fn), .off_addr = F(pf) }

static const struct cfg_row cfg_rows[] = {
	STR("account_email", CF_REQUIRED | CF_SECRET, NULL, account_email, chk_email),
	STR("api_uri", 0, "https://acme-v02.api.letsencrypt.org/directory", api_uri, chk_http_url),
	STR("api_ca_file", 0, NULL, api_ca_file, chk_readable_file),
	BOOL("tos_accepted", 0, 0, tos_accepted),
	ENUM("cert_type", 0, cert_type_names, CONFIG_CERT_RSA, cert_type),
	{ .name = "rsa_key_size", .kind = CFG_INT, .set = rsa_sizes, .def_int = 4096, .off = F(rsa_key_size) },
	LIST("domains", CF_RELOAD, 0, NULL, domains, ndomains, chk_domain),
	BOOL("allow_any_domain", CF_RELOAD, 0, allow_any_domain),
	STR("ask_url", CF_RELOAD, NULL, ask_url, chk_http_url),
	INT("fail_backoff_minutes", CF_RELOAD, 1, 1440, 5, fail_backoff_minutes),
	INT("renew_threshold_days", CF_RELOAD, 0, 365, 14, renew_threshold_days),
	STR("eab_kid", CF_SECRET, NULL, eab_kid, NULL),
	STR("eab_hmac_key", CF_SECRET, NULL, eab_hmac_key, chk_base64url),
	STR("preferred_chain", 0, NULL, preferred_chain, NULL),
	STR("profile", 0, NULL, profile, NULL),
	ENUM("storage", 0, storage_names, CONFIG_STORAGE_FILE, storage),
	STR("storage_config.file.path", 0, "/var/lib/acme-spoa", file_path, chk_abs_path),
	STR("storage_config.redis.host", 0, "127.0.0.1", redis_host, chk_host),
	INT("storage_config.redis.port", 0, 1, 65535, 6379, redis_port),
	INT("storage_config.redis.database", 0, 0, 15, 0, redis_database),
	STR("storage_config.redis.username", 0, NULL, redis_username, NULL),
	STR("storage_config.redis.password", CF_SECRET, NULL, redis_auth, NULL),
	STR("storage_config.redis.auth", CF_SECRET | CF_ALIAS, NULL, redis_auth, NULL),
	BOOL("storage_config.redis.ssl", 0, 0, redis_ssl),
	BOOL("storage_config.redis.ssl_verify", 0, 1, redis_ssl_verify),
	STR("storage_config.redis.server_name", 0, NULL, redis_ssl_server_name, chk_host),
	STR("storage_config.redis.ssl_server_name", CF_ALIAS, NULL, redis_ssl_server_name, chk_host),
	STR("storage_config.redis.ssl_ca_file", 0, NULL, redis_ssl_ca_file, chk_readable_file),
	STR("storage_config.redis.ssl_cert", 0, NULL, redis_ssl_cert, chk_readable_file),
	STR("storage_config.redis.ssl_key", 0, NULL, redis_ssl_key, chk_readable_file),
	STR("storage_config.redis.namespace", CF_EMPTY_OK, "", redis_namespace, NULL),
	STR("storage_config.redis.sentinel_master", 0, NULL, redis_sentinel_master, chk_sentinel_master),
	ADDR_LIST("storage_config.redis.sentinel_nodes", CF_NODES, 0, 0, NULL, redis_sentinel_nodes,
		  redis_nsentinel_nodes, redis_sentinel_addrs),
	STR("storage_config.redis.sentinel_username", 0, NULL, redis_sentinel_username, NULL),
	STR("storage_config.redis.sentinel_password", CF_SECRET, NULL, redis_sentinel_password, NULL),
	STR("storage_config.consul.host", 0, "127.0.0.1", consul_host, chk_host),
	INT("storage_config.consul.port", 0, 1, 65535, 8500, consul_port),
	BOOL("storage_config.consul.https", 0, 0, consul_https),
	INT("storage_config.consul.timeout", 0, 100, 600000, 2000, consul_timeout_ms),
	STR("storage_config.consul.token", CF_SECRET, NULL, consul_token, NULL),
	STR("storage_config.consul.kv_path", 0, "acme", consul_kv_path, chk_kv_path),
	ADDR("spoa.listen", 0, ADDR_UNIX, "127.0.0.1:12345", spoa_listen, spoa_addr),
	STR("spoa.socket_mode", 0, NULL, spoa_socket_mode, chk_mode),
	STR("spoa.socket_group", 0, NULL, spoa_socket_group, chk_group),
	ADDR("admin.listen", 0, 0, "127.0.0.1:8001", admin_listen, admin_addr),
	STR("admin.token", CF_SECRET | CF_RELOAD, NULL, admin_token, NULL),
	ADDR_LIST("haproxy.runtime", 0, 1, ADDR_UNIX, "unix:/run/haproxy/admin.sock", runtime, nruntime,
		  runtime_addrs),
	STR("haproxy.cert_dir", 0, "/etc/haproxy/certs", cert_dir, chk_abs_path),
	STR("haproxy.crt_list", 0, NULL, crt_list, chk_abs_path),	/* default: cert_dir */
	INT("max_concurrent_orders", 0, 1, 1000, 20, max_orders),
	INT("hold_timeout", CF_RELOAD, 0, 60, 8, hold_timeout),
	ENUM("haproxy.preload", 0, preload_names, CONFIG_PRELOAD_ALL, preload),
	INT("haproxy.max_loaded", CF_RELOAD, 0, 10000000, 0, max_loaded),
	INT("max_queued_orders", CF_RELOAD, 1, 1000000, 1000, max_queued),
	INT("fleet.member_lease", 0, 2, 3600, 30, member_lease),
	INT("fleet.sweep_interval", 0, 10, 30 * 86400, 86400, sweep_interval),
	INT("on_demand.max_new_names_per_client", CF_RELOAD, 0, 1000000, 20, max_names_per_client),
	INT("lock_lease", 0, 4, 3600, 120, lock_lease),
	ENUM("dns01.provider", 0, dns01_provider_names, CONFIG_DNS01_NONE, dns01_provider),
	ADDR("dns01.server", 0, 0, NULL, dns01_server, dns01_addr),
	STR("dns01.tsig_key_name", 0, NULL, dns01_tsig_key_name, chk_dns_name),
	ENUM("dns01.tsig_algorithm", 0, tsig_alg_names, CONFIG_TSIG_HMAC_SHA256, dns01_tsig_algorithm),
	STR("dns01.tsig_secret", CF_SECRET, NULL, dns01_tsig_secret, chk_base64),
	STR("dns01.zone", 0, NULL, dns01_zone, chk_dns01_zone),
	STR("dns01.exec", 0, NULL, dns01_exec, chk_executable),
	LIST("dns01.exec_env", 0, 0, NULL, dns01_exec_env, ndns01_exec_env, chk_env_name),
	INT("dns01.propagation_timeout", 0, 5, 3600, 120, dns01_propagation_timeout),
	LIST("wildcard_domains", 0, 0, NULL, wildcard_domains, nwildcard_domains, chk_zone),
	RLIM("rate_limits.orders_per_3h", rl_orders_per_3h),
	RLIM("rate_limits.certs_per_domain_week", rl_certs_per_domain_week),
	RLIM("rate_limits.certs_per_exact_set_week", rl_certs_per_exact_set_week),
	RLIM("rate_limits.failures_per_host_hour", rl_failures_per_host_hour),
	REAL("rate_limits.renewal_reserve", CF_RELOAD, 0.0, 1.0, 0.2, rl_renewal_reserve),
	/* issuers (SPEC §3): the CAs in order; the keys above make one by default */
	LIST("challenges", 0, 1, "http-01", challenges, nchallenges, chk_challenge),
	STR("haproxy.alpn_crt_list", 0, "/etc/haproxy/acme-alpn.crtlist", alpn_crt_list, chk_abs_path),
	{ .name = "issuers", .kind = CFG_ISSUERS, .off = F(issuers), .off_n = F(nissuers) },
};
#define CFG_NROWS (sizeof(cfg_rows) / sizeof(cfg_rows[0]))

struct cfg_parse {
	struct config *cfg;
	struct cfg_errs errs;
	unsigned char seen[CFG_NROWS];		/* key present (for duplicates) */
	unsigned char assigned[CFG_NROWS];	/* a valid value was stored */
	unsigned char failed[CFG_NROWS];	/* an error was reported for the key */
};

#define FIELD(cfg, row, type)	((type *)((char *)(cfg) + (row)->off))
#define ADDR_FIELD(cfg, row, type)	((type *)((char *)(cfg) + (row)->off_addr))

const char *config_cert_type_name(enum config_cert_type t)
{
	return (unsigned)t < CONFIG_CERT__MAX ? cert_type_names[t] : "?";
}

const char *config_storage_name(enum config_storage s)
{
	return (unsigned)s < CONFIG_STORAGE__MAX ? storage_names[s] : "?";
}

const char *config_tsig_alg_name(enum config_tsig_alg a)
{
	return (unsigned)a < CONFIG_TSIG__MAX ? tsig_alg_names[a] : "?";
}

/* ---------- error collection ---------- */

static void errs_add(struct cfg_errs *e, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void errs_add(struct cfg_errs *e, const char *key, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	size_t n, i;

	e->n++;
	n = snprintf(line, sizeof(line), "config: %s: ", key);
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	/* keys come from the file: keep one error per line */
	for (i = 8; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (!e->buf || e->cap == 0)
		return;
	n = snprintf(e->buf + e->len, e->cap - e->len, "%s\n", line);
	e->len += n;
	if (e->len >= e->cap)
		e->len = e->cap - 1;
}

/* <v> as it appears in the file, shortened; secrets are never shown. */
static void describe(const json_t *v, int secret, char *out, size_t outlen)
{
	char *s;

	if (secret) {
		snprintf(out, outlen, "(hidden value)");
		return;
	}
	s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (!s) {
		snprintf(out, outlen, "(value)");
		return;
	}
	if (strlen(s) > 60)
		snprintf(out, outlen, "%.57s...", s);
	else
		snprintf(out, outlen, "%s", s);
	free(s);
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

static void err_type(struct cfg_parse *p, const char *key, const json_t *v, int secret,
		     const char *expected)
{
	char d[80];

	describe(v, secret, d, sizeof(d));
	errs_add(&p->errs, key, "%s is %s, expected %s", d, json_kind(v), expected);
}

/* ---------- value checks: 0 ok, -1 with <why> ---------- */

static int has_space_or_ctl(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v <= 0x20 || *v == 0x7f)
			return 1;
	return 0;
}

static int chk_email(char *v, char *why, size_t whylen)
{
	const char *at = strchr(v, '@');
	const char *dom = at ? at + 1 : NULL;

	if (!at || at == v || strchr(dom, '@') || has_space_or_ctl(v) || strlen(v) > 254 ||
	    !strchr(dom, '.') || dom[0] == '.' || dom[strlen(dom) - 1] == '.') {
		snprintf(why, whylen, "is not an email address");
		return -1;
	}
	return 0;
}

static int chk_http_url(char *v, char *why, size_t whylen)
{
	const char *h = NULL;

	if (strncasecmp(v, "https://", 8) == 0)
		h = v + 8;
	else if (strncasecmp(v, "http://", 7) == 0)
		h = v + 7;
	if (!h || !*h || *h == '/' || *h == ':' || *h == '?' || has_space_or_ctl(v)) {
		snprintf(why, whylen, "is not an http(s) URL");
		return -1;
	}
	/* https, or plain http to loopback only: nothing in clear on a network */
	return http_url_check(v, why, whylen);
}

static int chk_readable_file(char *v, char *why, size_t whylen)
{
	struct stat st;

	if (stat(v, &st) == -1 || access(v, R_OK) == -1) {
		snprintf(why, whylen, "is not a readable file (%s)", strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "is not a regular file");
		return -1;
	}
	return 0;
}

/* Base64 of <alphabet> (62 letters/digits + 2): padding, when present, must
 * complete the last quantum; <unpadded> also accepts it left off. */
static int chk_b64(const char *v, const char *alphabet, int unpadded, const char *what,
		   char *why, size_t whylen)
{
	size_t n = strspn(v, alphabet);
	size_t pad = strspn(v + n, "=");
	int bad_len = unpadded ? (n % 4 == 1 || (pad && (n + pad) % 4)) : (n + pad) % 4 != 0;

	if (n == 0 || v[n + pad] || pad > 2 || bad_len) {
		snprintf(why, whylen, "is not valid %s", what);
		return -1;
	}
	return 0;
}

static int chk_base64url(char *v, char *why, size_t whylen)
{
	return chk_b64(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 1,
		       "base64url", why, whylen);
}

static int chk_domain(char *v, char *why, size_t whylen)
{
	char out[260], probe[260];
	size_t skip = (v[0] == '*' && v[1] == '.') ? 2 : 0;

	/* "*.com" is a mistake, but "*.test" (RFC 6761) or "*.internal" name a
	 * private tree: a one-label suffix is allowed for special-use names only */
	static const char *const special[] = { "test", "example", "internal", "lan", "local",
					       "localhost", "invalid", "home.arpa", NULL };
	int special_ok = 0;

	for (size_t i = 0; skip && special[i]; i++)
		special_ok |= strcasecmp(v + skip, special[i]) == 0;
	snprintf(probe, sizeof(probe), "%s%s", special_ok ? "x." : "", v + skip);
	if (strlen(v) > HOST_MAXLEN || host_normalize(probe, out, sizeof(out), 0) == -1) {
		snprintf(why, whylen, "is not a host name or \"*.\" followed by a host name (no regex)");
		return -1;
	}
	memcpy(v + skip, out + (special_ok ? 2 : 0), strlen(out + (special_ok ? 2 : 0)) + 1);
	return 0;
}

/* Consul's kv_path: segments of the storage key grammar (no '/' at the ends). */
static int chk_kv_path(char *v, char *why, size_t whylen)
{
	if (storage_key_valid(v) && strlen(v) <= 128)
		return 0;
	snprintf(why, whylen, "want '/'-separated segments of [A-Za-z0-9._*-], no '/' at "
		 "either end, at most 128 bytes");
	return -1;
}

static int chk_host(char *v, char *why, size_t whylen)
{
	if (!host_valid(v, HOST_SINGLE | HOST_IP)) {
		snprintf(why, whylen, "is not a host name or IP address");
		return -1;
	}
	return 0;
}

static int chk_sentinel_master(char *v, char *why, size_t whylen)
{
	if (has_space_or_ctl(v) || strpbrk(v, "\"'") != NULL || strlen(v) > 255) {
		snprintf(why, whylen, "is not a sentinel master name (no spaces or quotes)");
		return -1;
	}
	return 0;
}

static int chk_abs_path(char *v, char *why, size_t whylen)
{
	if (v[0] != '/' || has_space_or_ctl(v) || strlen(v) >= 4096) {
		snprintf(why, whylen, "is not an absolute path");
		return -1;
	}
	return 0;
}

/* A zone: a host name of two labels or more, or a special-use one-label
 * name ("test"), lower-cased in place; no "*.". */
static int chk_zone(char *v, char *why, size_t whylen)
{
	if (v[0] == '*' || chk_domain(v, why, whylen) == -1) {
		snprintf(why, whylen, "is not a zone name (a host name such as \"example.com\", no \"*.\")");
		return -1;
	}
	return 0;
}

/* dns01.zone: the zone RFC 2136 updates go to, lower-cased in place. One
 * label ("test", "corp") is a valid private zone, as served by a private CA
 * (wildcard_domains keep chk_zone: a certificate for "*.corp" + "corp" is not
 * what a typo there should get). */
static int chk_dns01_zone(char *v, char *why, size_t whylen)
{
	char out[HOST_MAXLEN + 1];

	if (v[0] == '*' || host_normalize(v, out, sizeof(out), HOST_SINGLE) == -1) {
		snprintf(why, whylen, "is not a zone name (a host name such as \"example.com\" "
			 "or \"corp\", no \"*.\")");
		return -1;
	}
	memcpy(v, out, strlen(out) + 1);
	return 0;
}

/* A DNS name as TSIG key names are written: LDH labels and '_', optional
 * trailing dot. */
static int chk_dns_name(char *v, char *why, size_t whylen)
{
	size_t i, n = strlen(v);

	for (i = 0; i < n; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
		      (v[i] >= '0' && v[i] <= '9') || v[i] == '-' || v[i] == '_' ||
		      (v[i] == '.' && i > 0 && v[i - 1] != '.')))
			break;
	if (i < n || n > 253) {
		snprintf(why, whylen, "is not a DNS name");
		return -1;
	}
	return 0;
}

/* Standard base64 (a TSIG secret as tsig-keygen writes it). */
static int chk_base64(char *v, char *why, size_t whylen)
{
	return chk_b64(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 0,
		       "base64", why, whylen);
}

static int chk_executable(char *v, char *why, size_t whylen)
{
	struct stat st;

	if (chk_abs_path(v, why, whylen) == -1)
		return -1;
	errno = 0;
	if (stat(v, &st) == -1 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111) || access(v, X_OK) == -1) {
		snprintf(why, whylen, "is not an executable file (%s)",
			 errno ? strerror(errno) : "not a regular file with an x bit");
		return -1;
	}
	return 0;
}

/* File mode bits in octal, as chmod takes them ("0660", "660"). */
static int chk_mode(char *v, char *why, size_t whylen)
{
	size_t n = strlen(v);

	if (n < 3 || n > 4 || strspn(v, "01234567") != n || (n == 4 && v[0] != '0')) {
		snprintf(why, whylen, "is not an octal mode such as \"0660\"");
		return -1;
	}
	return 0;
}

/* A group: a name as /etc/group writes one, or a number; looked up when the
 * socket is made, so --check passes on a host without the group yet. */
static int chk_group(char *v, char *why, size_t whylen)
{
	if (!v[0] || v[0] == '-' || strlen(v) > 64 ||
	    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-$") != strlen(v)) {
		snprintf(why, whylen, "is not a group name or number");
		return -1;
	}
	return 0;
}

/* An environment variable's name, as a shell writes one. */
static int chk_env_name(char *v, char *why, size_t whylen)
{
	if (!v[0] || (v[0] >= '0' && v[0] <= '9') ||
	    strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != strlen(v)) {
		snprintf(why, whylen, "is not an environment variable name");
		return -1;
	}
	return 0;
}

/* ---------- setting values ---------- */

/* Validates one string (a scalar key or a list entry) and returns a malloc'd copy,
 * or NULL after recording the error under <key>. An address (CF_ADDR) is parsed
 * into <dst>, the one parse it gets. */
static char *take_string(struct cfg_parse *p, const struct cfg_row *row, const char *key,
			 const json_t *v, struct addr *dst)
{
	int secret = !!(row->flags & CF_SECRET);
	char d[80], why[160];
	char *s;

	if (!json_is_string(v)) {
		err_type(p, key, v, secret, "a string");
		return NULL;
	}
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		describe(v, secret, d, sizeof(d));
		errs_add(&p->errs, key, "%s contains a NUL character", d);
		return NULL;
	}
	if (secret && config_secret_resolve(json_string_value(v), &s, why, sizeof(why)) == -1) {
		errs_add(&p->errs, key, "%s", why);
		return NULL;
	}
	if (!secret && !(s = strdup(json_string_value(v)))) {
		errs_add(&p->errs, key, "out of memory");
		return NULL;
	}
	describe(v, secret, d, sizeof(d));
	if (!*s && !(row->flags & CF_EMPTY_OK)) {
		errs_add(&p->errs, key, "%s is empty (leave the key out to use the default)", d);
		goto bad;
	}
	if (*s && ((row->check && row->check(s, why, sizeof(why)) == -1) ||
		   ((row->flags & CF_ADDR) &&
		    addr_parse(s, row->addr_flags, dst, why, sizeof(why)) == -1))) {
		errs_add(&p->errs, key, "%s %s", d, why);
		goto bad;
	}
	return s;
bad:
	free(s);
	return NULL;
}

/* {"host": "h", "port": 26379} as the string "h:26379" ("[v6]:port"), or
 * NULL after recording the error under <key>. */
static json_t *node_string(struct cfg_parse *p, const char *key, const json_t *v)
{
	const char *host = NULL;
	json_int_t port = 0;
	json_error_t jerr;
	json_t *s;

	if (json_unpack_ex((json_t *)v, &jerr, JSON_STRICT, "{s:s, s:I}", "host", &host, "port",
			   &port) == -1) {
		errs_add(&p->errs, key, "expected {\"host\": string, \"port\": integer}: %s",
			 jerr.text);
		return NULL;
	}
	if (port < 1 || port > 65535) {
		errs_add(&p->errs, key, "port %lld is not between 1 and 65535", (long long)port);
		return NULL;
	}
	s = json_sprintf(strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, (int)port);
	if (!s)
		errs_add(&p->errs, key, "out of memory");
	return s;
}

/* ---------- issuers ---------- */

static const char *const challenge_names[CONFIG_CHALLENGE__MAX + 1] = { "http-01", "tls-alpn-01", NULL };

const char *config_challenge_name(enum config_challenge c)
{
	return (unsigned)c < CONFIG_CHALLENGE__MAX ? challenge_names[c] : "?";
}

static int chk_challenge(char *v, char *why, size_t whylen)
{
	size_t i;

	for (i = 0; challenge_names[i]; i++)
		if (strcmp(v, challenge_names[i]) == 0)
			return 0;
	snprintf(why, whylen, "is not a challenge type this agent answers (http-01, tls-alpn-01; "
		 "wildcards use dns-01)");
	return -1;
}

/* The per-CA keys: top-level single-CA keys, the members of an issuers[]
 * entry. Given with "issuers", a top-level one is refused (which CA would it
 * be?), except account_email and tos_accepted, which entries inherit. */
static const char *const issuer_own_keys[] = {
	"api_uri", "api_ca_file", "eab_kid", "eab_hmac_key", "preferred_chain", "profile",
	"rate_limits.orders_per_3h", "rate_limits.certs_per_domain_week",
	"rate_limits.certs_per_exact_set_week", "rate_limits.failures_per_host_hour",
	"rate_limits.renewal_reserve", NULL
};

static void issuer_clear(struct config_issuer *is)
{
	char *secrets[] = { is->account_email, is->eab_kid, is->eab_hmac_key };
	size_t i;

	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		if (secrets[i])
			OPENSSL_cleanse(secrets[i], strlen(secrets[i]));
	free(is->name);
	free(is->api_uri);
	free(is->api_ca_file);
	free(is->account_email);
	free(is->eab_kid);
	free(is->eab_hmac_key);
	free(is->preferred_chain);
	free(is->profile);
	memset(is, 0, sizeof(*is));
}

static void issuers_free(struct config_issuer *v, size_t n)
{
	size_t i;

	for (i = 0; v && i < n; i++)
		issuer_clear(&v[i]);
	free(v);
}

static int issuer_name_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= CONFIG_ISSUER_NAME_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == n && s[0] != '.';
}

/* One string member of an entry, checked by the top-level row of the same
 * name (secrets resolved, URLs and files checked); 0 or -1 (error recorded). */
static int issuer_str(struct cfg_parse *p, const char *key, const char *row_name, const json_t *v,
		      char **dst)
{
	char *s = take_string(p, &cfg_rows[find_row(row_name)], key, v, NULL);

	if (!s)
		return -1;
	free(*dst);
	*dst = s;
	return 0;
}

static int issuer_int(struct cfg_parse *p, const char *key, const json_t *v, long long lo,
		      long long hi, int *dst)
{
	if (!json_is_integer(v)) {
		err_type(p, key, v, 0, "an integer");
		return -1;
	}
	if (json_integer_value(v) < lo || json_integer_value(v) > hi) {
		errs_add(&p->errs, key, "%lld is not between %lld and %lld",
			 (long long)json_integer_value(v), lo, hi);
		return -1;
	}
	*dst = (int)json_integer_value(v);
	return 0;
}

static int issuer_challenges(struct cfg_parse *p, const char *key, const json_t *v,
			     struct config_issuer *is)
{
	char k[CONFIG_KEY_MAX + 32], why[160], d[80];
	size_t i, j;

	if (!json_is_array(v) || json_array_size(v) == 0) {
		err_type(p, key, v, 0, "a non-empty array of challenge types");
		return -1;
	}
	is->nchallenges = 0;
	for (i = 0; i < json_array_size(v); i++) {
		json_t *e = json_array_get(v, i);
		char *s;

		snprintf(k, sizeof(k), "%s[%zu]", key, i);
		if (!json_is_string(e)) {
			err_type(p, k, e, 0, "a string");
			return -1;
		}
		s = (char *)json_string_value(e);
		describe(e, 0, d, sizeof(d));
		if (chk_challenge(s, why, sizeof(why)) == -1) {
			errs_add(&p->errs, k, "%s %s", d, why);
			return -1;
		}
		for (j = 0; strcmp(challenge_names[j], s) != 0; j++)
			;
		for (size_t m = 0; m < is->nchallenges; m++)
			if (is->challenges[m] == (enum config_challenge)j) {
				errs_add(&p->errs, k, "%s is given twice", d);
				return -1;
			}
		is->challenges[is->nchallenges++] = (enum config_challenge)j;
	}
	return 0;
}

static int issuer_rate_limits(struct cfg_parse *p, const char *key, const json_t *v,
			      struct config_issuer *is)
{
	char k[CONFIG_KEY_MAX + 64];
	const char *m;
	json_t *e;
	int bad = 0;

	if (!json_is_object(v)) {
		err_type(p, key, v, 0, "an object");
		return -1;
	}
	json_object_foreach((json_t *)v, m, e) {
		snprintf(k, sizeof(k), "%s.%s", key, m);
		if (strcmp(m, "orders_per_3h") == 0)
			bad |= issuer_int(p, k, e, 0, 10000, &is->rl_orders_per_3h);
		else if (strcmp(m, "certs_per_domain_week") == 0)
			bad |= issuer_int(p, k, e, 0, 10000, &is->rl_certs_per_domain_week);
		else if (strcmp(m, "certs_per_exact_set_week") == 0)
			bad |= issuer_int(p, k, e, 0, 10000, &is->rl_certs_per_exact_set_week);
		else if (strcmp(m, "failures_per_host_hour") == 0)
			bad |= issuer_int(p, k, e, 0, 10000, &is->rl_failures_per_host_hour);
		else if (strcmp(m, "renewal_reserve") == 0) {
			if (!json_is_number(e) || json_number_value(e) < 0.0 || json_number_value(e) > 1.0) {
				errs_add(&p->errs, k, "expected a number between 0 and 1");
				bad = -1;
			} else {
				is->rl_renewal_reserve = json_number_value(e);
			}
		} else {
			errs_add(&p->errs, k, "unknown key");
			bad = -1;
		}
	}
	return bad ? -1 : 0;
}

/* One entry of "issuers" into <is> (unset members: NULL or -1). */
static int issuer_parse(struct cfg_parse *p, size_t idx, const json_t *obj, struct config_issuer *is)
{
	char key[CONFIG_KEY_MAX];
	const char *m;
	json_t *v;
	int bad = 0;

	is->tos_accepted = is->rl_orders_per_3h = is->rl_certs_per_domain_week = -1;
	is->rl_certs_per_exact_set_week = is->rl_failures_per_host_hour = -1;
	is->rl_renewal_reserve = -1;
	if (!json_is_object(obj)) {
		snprintf(key, sizeof(key), "issuers[%zu]", idx);
		err_type(p, key, obj, 0, "an object");
		return -1;
	}
	json_object_foreach((json_t *)obj, m, v) {
		snprintf(key, sizeof(key), "issuers[%zu].%s", idx, m);
		if (json_is_null(v))
			continue;
		if (strcmp(m, "name") == 0) {
			if (!json_is_string(v) || !issuer_name_ok(json_string_value(v))) {
				errs_add(&p->errs, key, "expected 1 to %d characters of a-z 0-9 _ . -",
					 CONFIG_ISSUER_NAME_MAX);
				bad = -1;
			} else if (!(is->name = strdup(json_string_value(v)))) {
				bad = -1;
			}
		} else if (strcmp(m, "api_uri") == 0 || strcmp(m, "api_ca_file") == 0 ||
			   strcmp(m, "account_email") == 0 || strcmp(m, "eab_kid") == 0 ||
			   strcmp(m, "eab_hmac_key") == 0 || strcmp(m, "preferred_chain") == 0 ||
			   strcmp(m, "profile") == 0) {
			char **dst = strcmp(m, "api_uri") == 0 ? &is->api_uri :
				     strcmp(m, "api_ca_file") == 0 ? &is->api_ca_file :
				     strcmp(m, "account_email") == 0 ? &is->account_email :
				     strcmp(m, "eab_kid") == 0 ? &is->eab_kid :
				     strcmp(m, "eab_hmac_key") == 0 ? &is->eab_hmac_key :
				     strcmp(m, "preferred_chain") == 0 ? &is->preferred_chain : &is->profile;

			bad |= issuer_str(p, key, m, v, dst);
		} else if (strcmp(m, "tos_accepted") == 0) {
			if (!json_is_boolean(v)) {
				err_type(p, key, v, 0, "a boolean (true or false)");
				bad = -1;
			} else {
				is->tos_accepted = json_is_true(v);
			}
		} else if (strcmp(m, "rate_limits") == 0) {
			bad |= issuer_rate_limits(p, key, v, is);
		} else if (strcmp(m, "challenges") == 0) {
			bad |= issuer_challenges(p, key, v, is);
		} else if (strcmp(m, "timeout") == 0) {
			bad |= issuer_int(p, key, v, 1, 300, &is->timeout);
		} else {
			errs_add(&p->errs, key, "unknown key (an issuer takes name, api_uri, api_ca_file, "
				 "account_email, tos_accepted, eab_kid, eab_hmac_key, preferred_chain, "
				 "profile, rate_limits, challenges, timeout)");
			bad = -1;
		}
	}
	snprintf(key, sizeof(key), "issuers[%zu]", idx);
	if (!is->name) {
		errs_add(&p->errs, key, "missing name");
		bad = -1;
	}
	if (!is->api_uri) {
		errs_add(&p->errs, key, "missing api_uri (the CA's directory URL)");
		bad = -1;
	}
	if (!is->eab_kid != !is->eab_hmac_key) {
		errs_add(&p->errs, key, "eab_kid and eab_hmac_key go together");
		bad = -1;
	}
	return bad ? -1 : 0;
}

static int parse_issuers(struct cfg_parse *p, const json_t *v)
{
	struct config_issuer *arr;
	size_t i, j, n;
	int bad = 0;

	if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > CONFIG_ISSUERS_MAX) {
		char d[80];

		describe(v, 0, d, sizeof(d));
		errs_add(&p->errs, "issuers", "%s: expected an array of 1 to %d CA objects", d,
			 CONFIG_ISSUERS_MAX);
		return -1;
	}
	n = json_array_size(v);
	if (!(arr = calloc(n, sizeof(*arr)))) {
		errs_add(&p->errs, "issuers", "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++)
		bad |= issuer_parse(p, i, json_array_get(v, i), &arr[i]);
	for (i = 0; !bad && i < n; i++)
		for (j = 0; j < i; j++)
			if (strcmp(arr[i].name, arr[j].name) == 0) {
				errs_add(&p->errs, "issuers", "name \"%s\" is given twice", arr[i].name);
				bad = -1;
			}
	if (bad || !(p->cfg->issuers_json = json_dumps(v, JSON_COMPACT))) {
		issuers_free(arr, n);
		return -1;
	}
	p->cfg->issuers = arr;
	p->cfg->nissuers = n;
	return 0;
}

/* The rate limits left out (< 0) of a CA at <api_uri>, for the top level and
 * each issuers[] entry alike: Let's Encrypt's published limits (2026) for
 * Let's Encrypt, off (0) for any other CA, whose limits we do not know. */
static void config_default_limits(const char *api_uri, int *orders_per_3h,
				  int *certs_per_domain_week, int *certs_per_exact_set_week,
				  int *failures_per_host_hour)
{
	int le = config_is_letsencrypt(api_uri);

	if (*orders_per_3h < 0)
		*orders_per_3h = le ? 300 : 0;
	if (*certs_per_domain_week < 0)
		*certs_per_domain_week = le ? 50 : 0;
	if (*certs_per_exact_set_week < 0)
		*certs_per_exact_set_week = le ? 5 : 0;
	if (*failures_per_host_hour < 0)
		*failures_per_host_hour = le ? 5 : 0;
}

static void issuer_default_limits(struct config_issuer *is)
{
	config_default_limits(is->api_uri, &is->rl_orders_per_3h, &is->rl_certs_per_domain_week,
			      &is->rl_certs_per_exact_set_week, &is->rl_failures_per_host_hour);
	if (is->rl_renewal_reserve < 0)
		is->rl_renewal_reserve = 0.2;
}

/* The top-level challenges list as an issuer's preference. */
static void issuer_default_challenges(const struct config *cfg, struct config_issuer *is)
{
	size_t i, j;

	if (is->nchallenges)
		return;
	for (i = 0; i < cfg->nchallenges && is->nchallenges < CONFIG_CHALLENGE__MAX; i++)
		for (j = 0; j < CONFIG_CHALLENGE__MAX; j++)
			if (strcmp(cfg->challenges[i], challenge_names[j]) == 0)
				is->challenges[is->nchallenges++] = (enum config_challenge)j;
	if (!is->nchallenges)
		is->challenges[is->nchallenges++] = CONFIG_CHALLENGE_HTTP01;
}

static char *dup0(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Without "issuers": one entry, "default", of the top-level keys. With it:
 * entries inherit account_email, tos_accepted and challenges; the other
 * top-level per-CA keys are refused. */
static void finish_issuers(struct cfg_parse *p)
{
	struct config *cfg = p->cfg;
	struct config_issuer *is;
	size_t i;

	if (!cfg->issuers) {
		if (p->failed[find_row("issuers")] || !cfg->account_email || !cfg->api_uri)
			return;
		if (!(is = calloc(1, sizeof(*is)))) {
			errs_add(&p->errs, "issuers", "out of memory");
			return;
		}
		cfg->issuers = is;
		cfg->nissuers = 1;
		is->name = strdup("default");
		is->api_uri = strdup(cfg->api_uri);
		is->account_email = strdup(cfg->account_email);
		is->api_ca_file = dup0(cfg->api_ca_file);
		is->eab_kid = dup0(cfg->eab_kid);
		is->eab_hmac_key = dup0(cfg->eab_hmac_key);
		is->preferred_chain = dup0(cfg->preferred_chain);
		is->profile = dup0(cfg->profile);
		is->tos_accepted = cfg->tos_accepted;
		config_issuer_sync_limits(cfg);
		is->timeout = 10;
		issuer_default_challenges(cfg, is);
		if (!is->name || !is->api_uri || !is->account_email ||
		    (cfg->api_ca_file && !is->api_ca_file) || (cfg->eab_kid && !is->eab_kid) ||
		    (cfg->eab_hmac_key && !is->eab_hmac_key) ||
		    (cfg->preferred_chain && !is->preferred_chain) || (cfg->profile && !is->profile))
			errs_add(&p->errs, "issuers", "out of memory");
		return;
	}
	for (i = 0; issuer_own_keys[i]; i++)
		if (p->assigned[find_row(issuer_own_keys[i])])
			errs_add(&p->errs, issuer_own_keys[i], "given with issuers: set it in each "
				 "issuers[] entry (the top-level form is for one CA)");
	for (i = 0; i < cfg->nissuers; i++) {
		is = &cfg->issuers[i];
		if (!is->account_email && cfg->account_email &&
		    !(is->account_email = strdup(cfg->account_email)))
			errs_add(&p->errs, "issuers", "out of memory");
		if (is->tos_accepted < 0)
			is->tos_accepted = cfg->tos_accepted;
		if (!is->timeout)
			is->timeout = 10;
		issuer_default_limits(is);
		issuer_default_challenges(cfg, is);
	}
}

void config_issuer_sync_limits(struct config *cfg)
{
	struct config_issuer *is = cfg->issuers;

	/* only the implicit entry follows the top-level keys (live at SIGHUP) */
	if (!is || cfg->issuers_json)
		return;
	is->rl_orders_per_3h = cfg->rl_orders_per_3h;
	is->rl_certs_per_domain_week = cfg->rl_certs_per_domain_week;
	is->rl_certs_per_exact_set_week = cfg->rl_certs_per_exact_set_week;
	is->rl_failures_per_host_hour = cfg->rl_failures_per_host_hour;
	is->rl_renewal_reserve = cfg->rl_renewal_reserve;
}

static void set_value(struct cfg_parse *p, size_t idx, const json_t *v)
{
	const struct cfg_row *row = &cfg_rows[idx];
	char d[80];
	size_t i, n;

	if (json_is_null(v)) {
		/* explicit null: same as leaving the key out */
		if (row->flags & CF_REQUIRED)
			errs_add(&p->errs, row->name, "null (this key is required)");
		return;
	}
	describe(v, row->flags & CF_SECRET, d, sizeof(d));
	switch (row->kind) {
	case CFG_STR: {
		char *s = take_string(p, row, row->name, v,
				      (row->flags & CF_ADDR) ? ADDR_FIELD(p->cfg, row, struct addr) : NULL);

		if (!s)
			return;
		*FIELD(p->cfg, row, char *) = s;
		break;
	}
	case CFG_INT: {
		long long x;

		if (!json_is_integer(v)) {
			err_type(p, row->name, v, 0, "an integer");
			return;
		}
		x = json_integer_value(v);
		if (row->set) {
			int ok = 0;

			for (i = 0; row->set[i]; i++)
				ok |= (x == row->set[i]);
			if (!ok) {
				char list[128] = "";

				for (i = 0; row->set[i]; i++)
					snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%d",
						 i ? ", " : "", row->set[i]);
				errs_add(&p->errs, row->name, "%lld is not one of %s", x, list);
				return;
			}
		} else if (x < row->min || x > row->max) {
			errs_add(&p->errs, row->name, "%lld is not between %lld and %lld", x, row->min, row->max);
			return;
		}
		*FIELD(p->cfg, row, int) = (int)x;
		break;
	}
	case CFG_REAL: {
		double x;

		if (!json_is_number(v)) {
			err_type(p, row->name, v, 0, "a number");
			return;
		}
		x = json_number_value(v);
		if (!(x >= row->real_min && x <= row->real_max)) {
			errs_add(&p->errs, row->name, "%s is not between %g and %g", d, row->real_min,
				 row->real_max);
			return;
		}
		*FIELD(p->cfg, row, double) = x;
		break;
	}
	case CFG_BOOL:
		if (!json_is_boolean(v)) {
			err_type(p, row->name, v, 0, "a boolean (true or false)");
			return;
		}
		*FIELD(p->cfg, row, int) = json_is_true(v);
		break;
	case CFG_ENUM: {
		char list[128] = "";

		for (i = 0; json_is_string(v) && row->choices[i]; i++)
			if (strcmp(json_string_value(v), row->choices[i]) == 0)
				break;
		if (json_is_string(v) && row->choices[i]) {
			*FIELD(p->cfg, row, int) = (int)i;
			break;
		}
		for (i = 0; row->choices[i]; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 i ? ", " : "", row->choices[i]);
		if (!json_is_string(v))
			errs_add(&p->errs, row->name, "%s is %s, expected one of %s", d, json_kind(v), list);
		else
			errs_add(&p->errs, row->name, "%s is not one of %s", d, list);
		return;
	}
	case CFG_LIST: {
		struct addr *parsed = NULL;
		char **arr;
		int bad = 0;

		if (!json_is_array(v)) {
			err_type(p, row->name, v, 0, "an array of strings");
			return;
		}
		n = json_array_size(v);
		if (n < (size_t)row->min) {
			errs_add(&p->errs, row->name, "%s has fewer than %lld entries", d, row->min);
			return;
		}
		arr = calloc(n + 1, sizeof(*arr));
		if ((row->flags & CF_ADDR) && arr && !(parsed = calloc(n ? n : 1, sizeof(*parsed)))) {
			free(arr);
			arr = NULL;
		}
		if (!arr) {
			errs_add(&p->errs, row->name, "out of memory");
			return;
		}
		for (i = 0; i < n; i++) {
			char key[CONFIG_KEY_MAX];
			json_t *e = json_array_get(v, i), *hp = NULL;

			snprintf(key, sizeof(key), "%s[%zu]", row->name, i);
			if ((row->flags & CF_NODES) && json_is_object(e) && !(e = hp = node_string(p, key, e))) {
				bad = 1;
				continue;
			}
			arr[i] = take_string(p, row, key, e, parsed ? &parsed[i] : NULL);
			json_decref(hp);
			bad |= !arr[i];
		}
		if (bad) {
			for (i = 0; i < n; i++)
				free(arr[i]);
			free(arr);
			free(parsed);
			return;
		}
		*FIELD(p->cfg, row, char **) = arr;
		if (parsed)
			*ADDR_FIELD(p->cfg, row, struct addr *) = parsed;
		*(size_t *)((char *)p->cfg + row->off_n) = n;
		break;
	}
	case CFG_ISSUERS:
		if (parse_issuers(p, v) == -1)
			return;
		break;
	default:
		return;
	}
	p->assigned[idx] = 1;
}

/* ---------- walking the tree ---------- */

/* The other name of row <idx> (CF_ALIAS pairs share one field), or -1. */
static int row_twin(size_t idx)
{
	if ((cfg_rows[idx].flags & CF_ALIAS) && idx > 0)
		return (int)idx - 1;
	if (idx + 1 < CFG_NROWS && (cfg_rows[idx + 1].flags & CF_ALIAS))
		return (int)idx + 1;
	return -1;
}

static int find_row(const char *name)
{
	size_t i;

	for (i = 0; i < CFG_NROWS; i++)
		if (strcmp(cfg_rows[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* 1 if <name> is an object on the path to some key ("haproxy", "storage_config.redis"). */
static int is_section(const char *name)
{
	size_t i, n = strlen(name);

	for (i = 0; i < CFG_NROWS; i++)
		if (strncmp(cfg_rows[i].name, name, n) == 0 && cfg_rows[i].name[n] == '.')
			return 1;
	return 0;
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t row[CONFIG_KEY_MAX + 1];

	if (la > CONFIG_KEY_MAX || lb > CONFIG_KEY_MAX)
		return (size_t)-1;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

/* <full> is unknown: suggest the closest key or section by edit distance, else a
 * key with the same last component put at another level ("cert_dir"). */
static void err_unknown(struct cfg_parse *p, const char *full)
{
	const char *best = NULL, *last = strrchr(full, '.');
	size_t bestd = (size_t)-1, bestn = 0, i, limit = strlen(full) / 4;
	char cand[CONFIG_KEY_MAX];

	last = last ? last + 1 : full;
	for (i = 0; i < CFG_NROWS; i++) {
		const char *name = cfg_rows[i].name;
		size_t n = 0;

		/* every prefix ending at a dot is a section, the whole name is the key */
		for (;;) {
			size_t d;

			n += strcspn(name + n, ".");
			snprintf(cand, sizeof(cand), "%.*s", (int)n, name);
			d = edit_distance(full, cand);
			if (d < bestd) {
				bestd = d;
				best = name;
				bestn = n;
			}
			if (!name[n])
				break;
			n++;
		}
	}
	if (limit < 2)
		limit = 2;
	if (best && bestd <= limit) {
		errs_add(&p->errs, full, "unknown key (did you mean %.*s?)", (int)bestn, best);
		return;
	}
	for (i = 0; i < CFG_NROWS; i++) {
		const char *l = strrchr(cfg_rows[i].name, '.');

		if (strcmp(l ? l + 1 : cfg_rows[i].name, last) == 0) {
			errs_add(&p->errs, full, "unknown key (did you mean %s?)", cfg_rows[i].name);
			return;
		}
	}
	errs_add(&p->errs, full, "unknown key");
}

static void walk(struct cfg_parse *p, const json_t *obj, const char *prefix)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)obj, k, v) {
		char full[CONFIG_KEY_MAX];
		int idx;

		if ((size_t)snprintf(full, sizeof(full), "%s%s%s", prefix ? prefix : "",
				     prefix ? "." : "", k) >= sizeof(full)) {
			errs_add(&p->errs, full, "unknown key");
			continue;
		}
		idx = find_row(full);
		if (idx >= 0) {
			/* "spoa": {"listen": ..} and "spoa.listen": .. both reach here */
			int before = p->errs.n, twin = row_twin((size_t)idx);

			if (p->seen[idx]++)
				errs_add(&p->errs, full, "given twice");
			else if (twin >= 0 && p->seen[twin])
				errs_add(&p->errs, full, "given twice (%s is another name for it)",
					 cfg_rows[twin].name);
			else
				set_value(p, (size_t)idx, v);
			p->failed[idx] |= p->errs.n != before;
		} else if (is_section(full)) {
			if (json_is_object(v))
				walk(p, v, full);
			else if (!json_is_null(v))
				err_type(p, full, v, 0, "an object");
		} else {
			err_unknown(p, full);
		}
	}
}

/* Parses the default of the address key <row> into <dst>, as a value given
 * in the file would have been. */
static void default_addr(struct cfg_parse *p, const struct cfg_row *row, struct addr *dst)
{
	char why[160];

	if (addr_parse(row->def_str, row->addr_flags, dst, why, sizeof(why)) == -1)
		errs_add(&p->errs, row->name, "default \"%s\" %s", row->def_str, why);
}

/* dns01: what each provider needs; wildcard_domains needs a provider. */
static void finish_dns01(struct cfg_parse *p)
{
	struct config *cfg = p->cfg;
	static const char *const need_rfc2136[] = { "dns01.server", "dns01.tsig_key_name",
						    "dns01.tsig_secret", NULL };
	size_t i;

	if (cfg->dns01_provider == CONFIG_DNS01_RFC2136) {
		for (i = 0; need_rfc2136[i]; i++) {
			int r = find_row(need_rfc2136[i]);

			if (!p->assigned[r] && !p->failed[r])
				errs_add(&p->errs, need_rfc2136[i], "missing (dns01.provider \"rfc2136\" needs it)");
		}
	} else if (cfg->dns01_provider == CONFIG_DNS01_EXEC) {
		if (!cfg->dns01_exec && !p->failed[find_row("dns01.exec")])
			errs_add(&p->errs, "dns01.exec", "missing (dns01.provider \"exec\" needs it)");
	} else if (cfg->nwildcard_domains) {
		errs_add(&p->errs, "wildcard_domains", "needs dns01.provider (wildcards are validated by dns-01)");
	}
}

int config_is_letsencrypt(const char *api_uri)
{
	static const char *const hosts[] = { "acme-v02.api.letsencrypt.org",
					     "acme-staging-v02.api.letsencrypt.org", NULL };
	size_t i, n;

	if (!api_uri || strncasecmp(api_uri, "https://", 8) != 0)
		return 0;
	api_uri += 8;
	n = strcspn(api_uri, ":/?#");
	for (i = 0; hosts[i]; i++)
		if (n == strlen(hosts[i]) && strncasecmp(api_uri, hosts[i], n) == 0)
			return 1;
	return 0;
}

/* rate_limits left out: as config_default_limits() says. */
static void finish_rate_limits(struct config *cfg)
{
	config_default_limits(cfg->api_uri, &cfg->rl_orders_per_3h, &cfg->rl_certs_per_domain_week,
			      &cfg->rl_certs_per_exact_set_week, &cfg->rl_failures_per_host_hour);
}

/* Defaults for keys left out, then the rules that involve several keys. */
static void finish(struct cfg_parse *p)
{
	struct config *cfg = p->cfg;
	size_t i;

	for (i = 0; i < CFG_NROWS; i++) {
		const struct cfg_row *row = &cfg_rows[i];

		if (p->assigned[i] || (row->flags & CF_ALIAS) ||
		    (row_twin(i) >= 0 && p->assigned[row_twin(i)]))
			continue;
		if (row->flags & CF_REQUIRED) {
			if (!p->failed[i])
				errs_add(&p->errs, row->name, "missing (this key is required)");
			continue;
		}
		switch (row->kind) {
		case CFG_STR:
			if (row->def_str && !(*FIELD(cfg, row, char *) = strdup(row->def_str)))
				errs_add(&p->errs, row->name, "out of memory");
			else if (row->def_str && (row->flags & CF_ADDR))
				default_addr(p, row, ADDR_FIELD(cfg, row, struct addr));
			break;
		case CFG_LIST: {
			char **arr = calloc(2, sizeof(*arr));
			struct addr *parsed = NULL;

			if (arr && row->def_str)
				arr[0] = strdup(row->def_str);
			if ((row->flags & CF_ADDR) && (parsed = calloc(1, sizeof(*parsed))))
				*ADDR_FIELD(cfg, row, struct addr *) = parsed;
			if (!arr || (row->def_str && !arr[0]) || ((row->flags & CF_ADDR) && !parsed))
				errs_add(&p->errs, row->name, "out of memory");
			else if (parsed && row->def_str)
				default_addr(p, row, parsed);
			*FIELD(cfg, row, char **) = arr;
			*(size_t *)((char *)cfg + row->off_n) = (arr && arr[0]) ? 1 : 0;
			break;
		}
		case CFG_REAL:
			*FIELD(cfg, row, double) = row->def_real;
			break;
		case CFG_ISSUERS:
			break;		/* finish_issuers() */
		default:
			*FIELD(cfg, row, int) = (int)row->def_int;
			break;
		}
	}
	finish_rate_limits(cfg);
	if (!cfg->crt_list && cfg->cert_dir && !(cfg->crt_list = strdup(cfg->cert_dir)))
		errs_add(&p->errs, "haproxy.crt_list", "out of memory");
	if (cfg->redis_username && !cfg->redis_auth)
		errs_add(&p->errs, "storage_config.redis.username",
			 "given without storage_config.redis.password");
	if (!cfg->redis_ssl_cert != !cfg->redis_ssl_key)
		errs_add(&p->errs, cfg->redis_ssl_cert ? "storage_config.redis.ssl_key" :
			 "storage_config.redis.ssl_cert", "missing (ssl_cert and ssl_key go together)");
	if (!cfg->redis_sentinel_master != !cfg->redis_nsentinel_nodes &&
	    !p->failed[find_row("storage_config.redis.sentinel_nodes")] &&
	    !p->failed[find_row("storage_config.redis.sentinel_master")])
		errs_add(&p->errs, cfg->redis_sentinel_master ? "storage_config.redis.sentinel_nodes" :
			 "storage_config.redis.sentinel_master",
			 "missing (sentinel_master and sentinel_nodes go together)");
	/* a key given with a bad value already has its own error */
	if (!cfg->eab_kid != !cfg->eab_hmac_key) {
		int kid = !!cfg->eab_kid;

		if (!p->failed[find_row(kid ? "eab_hmac_key" : "eab_kid")])
			errs_add(&p->errs, kid ? "eab_hmac_key" : "eab_kid",
				 "missing (eab_kid and eab_hmac_key go together)");
	}
	finish_dns01(p);
	finish_issuers(p);
}

static struct config *load_buf(const char *text, size_t len, const char *source,
			       char *errs, size_t errlen)
{
	struct cfg_parse p;
	json_error_t jerr;
	json_t *root = NULL;
	struct config *ret = NULL;

	memset(&p, 0, sizeof(p));
	p.errs.buf = errs;
	p.errs.cap = errlen;
	if (errs && errlen)
		errs[0] = '\0';
	p.cfg = calloc(1, sizeof(*p.cfg));
	if (!p.cfg) {
		errs_add(&p.errs, source, "out of memory");
		goto out;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		errs_add(&p.errs, source, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
		goto out;
	}
	if (!json_is_object(root)) {
		err_type(&p, source, root, 0, "an object");
		goto out;
	}
	walk(&p, root, NULL);
	finish(&p);
	if (p.errs.n == 0) {
		ret = p.cfg;
		p.cfg = NULL;
	}
out:
	json_decref(root);
	config_free(p.cfg);
	return ret;
}

struct config *config_load_json(const char *text, char *errs, size_t errlen)
{
	return load_buf(text ? text : "", text ? strlen(text) : 0, "(json)", errs, errlen);
}

struct config *config_load(const char *path, char *errs, size_t errlen)
{
	struct config *ret = NULL;
	char *buf = NULL;
	size_t n = 0;
	FILE *f;

	f = fopen(path, "re");
	if (!f)
		goto fail;
	buf = malloc(CONFIG_MAX_FILE + 1);
	if (!buf)
		goto fail;
	n = fread(buf, 1, CONFIG_MAX_FILE + 1, f);
	if (ferror(f))
		goto fail;
	if (n > CONFIG_MAX_FILE) {
		errno = EFBIG;
		goto fail;
	}
	ret = load_buf(buf, n, path, errs, errlen);
	goto out;
fail:
	if (errs && errlen)
		snprintf(errs, errlen, "config: %s: cannot be read (%s)\n", path, strerror(errno));
out:
	if (f)
		fclose(f);
	free(buf);
	return ret;
}

void config_free(struct config *cfg)
{
	size_t i, j;

	if (!cfg)
		return;
	for (i = 0; i < CFG_NROWS; i++) {
		const struct cfg_row *row = &cfg_rows[i];

		if (row->flags & CF_ALIAS)
			continue;
		if (row->kind == CFG_STR) {
			char *v = *FIELD(cfg, row, char *);

			/* secrets (tokens, passwords, EAB keys) leave no copy behind */
			if (v && (row->flags & CF_SECRET))
				OPENSSL_cleanse(v, strlen(v));
			free(v);
		} else if (row->kind == CFG_LIST) {
			char **arr = *FIELD(cfg, row, char **);

			for (j = 0; arr && arr[j]; j++)
				free(arr[j]);
			free(arr);
			if (row->flags & CF_ADDR)
				free(*ADDR_FIELD(cfg, row, struct addr *));
		} else if (row->kind == CFG_ISSUERS) {
			issuers_free(cfg->issuers, cfg->nissuers);
			free(cfg->issuers_json);
		}
	}
	free(cfg);
}

/* ---------- reload ---------- */

static int row_equal(const struct cfg_row *row, const struct config *a, const struct config *b)
{
	size_t i, na, nb;

	switch (row->kind) {
	case CFG_STR: {
		const char *x = *FIELD(a, row, char *), *y = *FIELD(b, row, char *);

		return (!x && !y) || (x && y && strcmp(x, y) == 0);
	}
	case CFG_LIST: {
		char **x = *FIELD(a, row, char **), **y = *FIELD(b, row, char **);

		na = *(const size_t *)((const char *)a + row->off_n);
		nb = *(const size_t *)((const char *)b + row->off_n);
		if (na != nb)
			return 0;
		for (i = 0; i < na; i++)
			if (strcmp(x[i], y[i]) != 0)
				return 0;
		return 1;
	}
	case CFG_REAL:
		return *FIELD(a, row, double) == *FIELD(b, row, double);
	case CFG_ISSUERS:
		/* as given; the implicit entry follows the keys compared above */
		return (!a->issuers_json && !b->issuers_json) ||
		       (a->issuers_json && b->issuers_json && strcmp(a->issuers_json, b->issuers_json) == 0);
	default:
		return *FIELD(a, row, int) == *FIELD(b, row, int);
	}
}

static void row_show(const struct cfg_row *row, const struct config *c, char *out, size_t outlen)
{
	int x;

	switch (row->kind) {
	case CFG_STR: {
		const char *s = *FIELD(c, row, char *);

		if (s)
			snprintf(out, outlen, "\"%.100s\"", s);
		else
			snprintf(out, outlen, "(unset)");
		break;
	}
	case CFG_LIST:
	case CFG_ISSUERS:
		snprintf(out, outlen, "%zu entries", *(const size_t *)((const char *)c + row->off_n));
		break;
	case CFG_BOOL:
		snprintf(out, outlen, "%s", *FIELD(c, row, int) ? "true" : "false");
		break;
	case CFG_REAL:
		snprintf(out, outlen, "%g", *FIELD(c, row, double));
		break;
	case CFG_ENUM:
		x = *FIELD(c, row, int);
		snprintf(out, outlen, "%s", x >= 0 && row->choices[x] ? row->choices[x] : "?");
		break;
	default:
		snprintf(out, outlen, "%d", *FIELD(c, row, int));
		break;
	}
}

int config_diff(const struct config *old, const struct config *nw, char *report, size_t replen)
{
	size_t i, len = 0;
	int restart = 0;

	if (report && replen)
		report[0] = '\0';
	for (i = 0; i < CFG_NROWS; i++) {
		const struct cfg_row *row = &cfg_rows[i];
		const char *how = (row->flags & CF_RELOAD) ? "applied at reload" : "needs a restart";
		char a[128] = "", b[128] = "";
		int n;

		if ((row->flags & CF_ALIAS) || row_equal(row, old, nw))
			continue;
		restart += !(row->flags & CF_RELOAD);
		if (!(row->flags & CF_SECRET)) {
			row_show(row, old, a, sizeof(a));
			row_show(row, nw, b, sizeof(b));
		}
		if (!report || len + 1 >= replen)
			continue;
		n = snprintf(report + len, replen - len, "%s: %s%s%s, %s\n", row->name,
			     *a ? a : "changed", *a ? " -> " : "", b, how);
		len += n > 0 ? (size_t)n : 0;
		if (len >= replen)
			len = replen - 1;
	}
	return restart;
}

/* Swaps the bytes of one field between two configs. */
static void cfg_swap(struct config *a, struct config *b, size_t off, size_t len)
{
	char tmp[sizeof(struct addr)];

	_Static_assert(sizeof(struct addr) >= sizeof(char **) && sizeof(struct addr) >= sizeof(double),
		       "cfg_swap holds any field");

	memcpy(tmp, (char *)a + off, len);
	memcpy((char *)a + off, (char *)b + off, len);
	memcpy((char *)b + off, tmp, len);
}

void config_apply_reload(struct config *running, struct config *nw)
{
	size_t i;

	for (i = 0; i < CFG_NROWS; i++) {
		const struct cfg_row *row = &cfg_rows[i];

		if (!(row->flags & CF_RELOAD) || (row->flags & CF_ALIAS))
			continue;
		switch (row->kind) {
		case CFG_STR:
			cfg_swap(running, nw, row->off, sizeof(char *));
			if (row->flags & CF_ADDR)
				cfg_swap(running, nw, row->off_addr, sizeof(struct addr));
			break;
		case CFG_LIST:
			cfg_swap(running, nw, row->off, sizeof(char **));
			cfg_swap(running, nw, row->off_n, sizeof(size_t));
			if (row->flags & CF_ADDR)
				cfg_swap(running, nw, row->off_addr, sizeof(struct addr *));
			break;
		case CFG_REAL:
			cfg_swap(running, nw, row->off, sizeof(double));
			break;
		default:
			cfg_swap(running, nw, row->off, sizeof(int));
			break;
		}
	}
	config_issuer_sync_limits(running);
}

void config_keys_print(FILE *f)
{
	static const char *const kinds[CFG__MAX] = {
		[CFG_STR] = "string", [CFG_INT] = "integer", [CFG_BOOL] = "boolean",
		[CFG_ENUM] = "enum", [CFG_LIST] = "list", [CFG_REAL] = "number",
		[CFG_ISSUERS] = "list",
	};
	const struct cfg_row *r;
	size_t i;

	for (i = 0; i < CFG_NROWS; i++) {
		r = &cfg_rows[i];
		fprintf(f, "%s\t%s\t", r->name, kinds[r->kind]);
		if (r->flags & CF_REQUIRED)
			fputs("required", f);
		else if (r->kind == CFG_INT && r->def_int < r->min)
			fputs("auto", f);	/* chosen at load (rate_limits: by the CA) */
		else if (r->kind == CFG_INT)
			fprintf(f, "%lld", r->def_int);
		else if (r->kind == CFG_REAL)
			fprintf(f, "%g", r->def_real);
		else if (r->kind == CFG_BOOL)
			fputs(r->def_int ? "true" : "false", f);
		else if (r->kind == CFG_ENUM)
			fputs(r->choices[r->def_int], f);
		else
			fputs(r->def_str ? r->def_str : "-", f);
		fputs(r->flags & CF_RELOAD ? "\treload\n" : "\n", f);
	}
}
