/* SPDX-License-Identifier: Apache-2.0 */
/* JSON configuration (SPEC §3): one table row per key, parsed with jansson into
 * typed fields; every error is collected, secrets resolved at load.
 * core/config.c holds the table and loader; core/config_check.c the domain
 * match and the secret references. Host names and addresses follow the rules
 * of lib/host.h and lib/addr.h; the addresses are parsed here, once. */
#ifndef ACME_SPOA_CONFIG_H
#define ACME_SPOA_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "lib/addr.h"
#include "lib/host.h"

enum config_cert_type {
	CONFIG_CERT_RSA = 0,
	CONFIG_CERT_ECC,
	CONFIG_CERT__MAX
};

enum config_preload {
	CONFIG_PRELOAD_ALL = 0,		/* every stored certificate is pushed at start */
	CONFIG_PRELOAD_ON_DEMAND,	/* pushed when its SNI is first seen */
	CONFIG_PRELOAD__MAX
};

enum config_dns01_provider {
	CONFIG_DNS01_NONE = 0,		/* no dns-01 solver: wildcards refused */
	CONFIG_DNS01_RFC2136,
	CONFIG_DNS01_EXEC,
	CONFIG_DNS01__MAX
};

enum config_tsig_alg {
	CONFIG_TSIG_HMAC_SHA256 = 0,
	CONFIG_TSIG_HMAC_SHA512,
	CONFIG_TSIG__MAX
};

/* ACME challenge types an issuer may use for a plain name, in its order of
 * preference ("challenges"); wildcards always use dns-01. */
enum config_challenge {
	CONFIG_CHALLENGE_HTTP01 = 0,
	CONFIG_CHALLENGE_TLSALPN01,	/* RFC 8737, through haproxy.alpn_crt_list */
	CONFIG_CHALLENGE__MAX
};

#define CONFIG_ISSUER_NAME_MAX	32
#define CONFIG_ISSUERS_MAX	8

/* One CA of "issuers" (SPEC §3), each with its own account. Without
 * "issuers" the top-level single-CA keys make the one entry, named
 * "default". Strings are owned (NULL when unset, except name, api_uri and
 * account_email). */
struct config_issuer {
	char *name;			/* [a-z0-9_.-], unique: metrics label, storage key segment */
	char *api_uri, *api_ca_file, *account_email;
	int tos_accepted;
	char *eab_kid, *eab_hmac_key, *preferred_chain, *profile;
	/* rate_limits of this CA, as the top-level keys (core/ratelimit.h) */
	int rl_orders_per_3h, rl_certs_per_domain_week, rl_certs_per_exact_set_week;
	int rl_failures_per_host_hour;
	double rl_renewal_reserve;
	enum config_challenge challenges[CONFIG_CHALLENGE__MAX];	/* preference order */
	size_t nchallenges;
	int timeout;			/* seconds one request to the CA may take [10] */
};

enum config_storage {
	CONFIG_STORAGE_FILE = 0,
	CONFIG_STORAGE_REDIS,
	CONFIG_STORAGE_SHM,
	CONFIG_STORAGE_CONSUL,
	CONFIG_STORAGE__MAX
};

struct config {
	char *account_email, *api_uri, *api_ca_file;	/* api_ca_file NULL = system store */
	int tos_accepted;
	enum config_cert_type cert_type;
	int rsa_key_size;
	char **domains;			/* lower-case, "host" or "*.host" */
	size_t ndomains;
	int allow_any_domain;
	char *ask_url;			/* NULL when unset */
	int fail_backoff_minutes, renew_threshold_days;
	char *eab_kid, *eab_hmac_key, *preferred_chain, *profile;	/* NULL when unset */
	enum config_storage storage;
	char *file_path;		/* storage_config.file.path [/var/lib/acme-spoa] */
	char *redis_host;
	int redis_port, redis_database;
	char *redis_username;		/* ACL user; NULL when unset */
	char *redis_auth;		/* "password" (alias "auth"); NULL when unset */
	int redis_ssl, redis_ssl_verify;
	char *redis_ssl_server_name;	/* "server_name" (alias "ssl_server_name"); NULL when unset */
	char *redis_ssl_ca_file, *redis_ssl_cert, *redis_ssl_key;	/* NULL when unset */
	char *redis_namespace;		/* never NULL, may be "" */
	char *redis_sentinel_master;	/* NULL when unset: no sentinel */
	char **redis_sentinel_nodes;	/* "host:port" each ({host, port} objects converted) */
	size_t redis_nsentinel_nodes;
	struct addr *redis_sentinel_addrs;	/* <redis_sentinel_nodes> parsed */
	char *redis_sentinel_username, *redis_sentinel_password;	/* NULL when unset */
	char *consul_host;		/* storage_config.consul (Kong's fields) */
	int consul_port, consul_https, consul_timeout_ms;
	char *consul_token;		/* NULL when unset */
	char *consul_kv_path;
	char *spoa_listen, *admin_listen;
	char *spoa_socket_mode, *spoa_socket_group;	/* a unix spoa.listen's mode ("0660") and group */
	struct addr spoa_addr, admin_addr;	/* the two above, parsed */
	char *admin_token;		/* NULL when unset: no authentication */
	char **runtime;			/* at least one: "unix:/path" or "host:port" */
	size_t nruntime;
	struct addr *runtime_addrs;	/* <runtime> parsed, <nruntime> entries */
	char *cert_dir, *crt_list;	/* crt_list defaults to cert_dir */
	int max_orders;			/* "max_concurrent_orders" [20]: global cap on orders in flight */
	int hold_timeout;		/* seconds an acme-sni-peek ACK may be held [8]; 0 never */
	enum config_preload preload;	/* "haproxy.preload" [all] */
	int max_loaded;			/* "haproxy.max_loaded": hot set bound, 0 none [0] */
	int max_queued;			/* "max_queued_orders" [1000]: on-demand names waiting for a slot */
	int member_lease;		/* "fleet.member_lease" [30] s: a dead node's renewals move after it */
	int sweep_interval;		/* "fleet.sweep_interval" [86400] s: redis, the sweep of certs/ */
	int max_names_per_client;	/* "on_demand.max_new_names_per_client" [20]: per /24 or /56 an hour; 0 off */
	int lock_lease;			/* "lock_lease" [120]: seconds an issuance lock lives unextended */
	/* dns01.*: the dns-01 solver (SPEC §3) */
	enum config_dns01_provider dns01_provider;
	char *dns01_server;		/* "host:port" of the primary (rfc2136), NULL when unset */
	struct addr dns01_addr;		/* <dns01_server> parsed */
	char *dns01_tsig_key_name, *dns01_tsig_secret;	/* secret: base64 */
	enum config_tsig_alg dns01_tsig_algorithm;
	char *dns01_zone;		/* NULL: found by SOA look-up */
	char *dns01_exec;		/* hook program (exec provider) */
	char **dns01_exec_env;		/* variables the hook gets beyond PATH, HOME, LANG, ... */
	size_t ndns01_exec_env;
	int dns01_propagation_timeout;	/* seconds [120] */
	char **wildcard_domains;	/* lower-case zones served by one "*.zone" + "zone" certificate */
	size_t nwildcard_domains;
	/* rate_limits (core/ratelimit.h): 0 turns one off; defaults are Let's
	 * Encrypt's when api_uri is Let's Encrypt's, else 0 */
	int rl_orders_per_3h, rl_certs_per_domain_week, rl_certs_per_exact_set_week;
	int rl_failures_per_host_hour;
	double rl_renewal_reserve;	/* fraction of each budget kept for renewals [0.2] */
	/* issuers: the CAs in order of preference; at least one */
	struct config_issuer *issuers;
	size_t nissuers;
	char *issuers_json;		/* "issuers" as given (compact), NULL when left out */
	char **challenges;		/* top-level "challenges": default of each issuer */
	size_t nchallenges;
	char *alpn_crt_list;		/* crt-list of the "alpn acme-tls/1" frontend */
};

/* 1 when <api_uri> is one of Let's Encrypt's directories (production or
 * staging), else 0. */
int config_is_letsencrypt(const char *api_uri);

/* Loads and validates the JSON file <path>. On success returns a config the caller
 * frees with config_free(). On failure returns NULL and writes every error found,
 * one per line, each "config: <key>: <value> <why>", into <errs> (truncated to
 * <errlen>; may be NULL/0). Secrets ({env://NAME}, {file:///path}) are resolved here. */
struct config *config_load(const char *path, char *errs, size_t errlen);

/* Same as config_load() but from the NUL-terminated JSON <text> (tests, --check). */
struct config *config_load_json(const char *text, char *errs, size_t errlen);

/* Frees <cfg> and every string it owns. Accepts NULL. */
void config_free(struct config *cfg);

/* Writes one line per key of the config table to <f>: the dotted name, its
 * type (string, integer, boolean, enum, list), "required" or its default, and
 * "reload" when SIGHUP applies it live (acme-spoa --list-keys: the man page
 * is checked against it). */
void config_keys_print(FILE *f);

/* Returns 1 if <host> (lower-cased, valid syntax as given by host_normalize)
 * is allowed by allow_any_domain or by an entry of domains: an exact name, or
 * "*.suffix" matching any name with at least one label before ".suffix" (not the
 * bare suffix). Comparison is case-insensitive. Returns 0 otherwise. */
int config_domain_allowed(const struct config *cfg, const char *host);

/* When <host> (normalized) is one of wildcard_domains or one label under one,
 * writes the name of the certificate that serves it, "*.<zone>", into <out>
 * (<outlen> bytes) and returns 1; otherwise returns 0 (<out> untouched). A
 * name two labels down is not covered by a wildcard certificate: 0. */
int config_wildcard_name(const struct config *cfg, const char *host, char *out, size_t outlen);

/* Compares <old> and <nw> key by key. Writes one human line per changed key into
 * <report> (may be NULL/0), saying whether it applies at SIGHUP (domains,
 * allow_any_domain, ask_url, fail_backoff_minutes, renew_threshold_days,
 * rate_limits.*, admin.token, hold_timeout, haproxy.max_loaded,
 * max_queued_orders, on_demand.max_new_names_per_client) or needs a
 * restart; secret values are never written. Returns the number of changed
 * keys that need a restart (0: the new config can be applied). */
int config_diff(const struct config *old, const struct config *nw, char *report, size_t replen);

/* Moves into <running> the value of every key the config table marks as
 * applied at SIGHUP, taken from <nw> (which gets the old values, to free). */
void config_apply_reload(struct config *running, struct config *nw);

/* Resolves a secret written as "{env://NAME}" (the variable must be set) or
 * "{file:///path}" (the file's contents, trailing newlines trimmed); any other
 * <value> is taken literally. On success stores a malloc'd string in <*out> (the
 * caller frees it) and returns 0; otherwise returns -1 with a reason in <why> that
 * names the reference but never contains a secret. */
int config_secret_resolve(const char *value, char **out, char *why, size_t whylen);

/* Writes the warnings <cfg> deserves at start into <out>, one per line:
 * settings that work but that an operator likely did not mean (an admin API
 * beyond loopback without a token, allow_any_domain without ask_url, no
 * name allowed on demand). Returns how many. */
int config_warnings(const struct config *cfg, char *out, size_t outlen);

/* Copies the top-level rate_limits.* into the implicit issuer (no
 * "issuers" given): at load and after a reload applied them. */
void config_issuer_sync_limits(struct config *cfg);

/* Name of a challenge type ("http-01"); "?" when out of range. */
const char *config_challenge_name(enum config_challenge c);

/* Names for logs ("rsa", "ecc"; "file", "redis", "shm", "consul"); "?" when out of range. */
const char *config_cert_type_name(enum config_cert_type t);
const char *config_storage_name(enum config_storage s);
const char *config_tsig_alg_name(enum config_tsig_alg a);	/* "hmac-sha256" */

#endif
