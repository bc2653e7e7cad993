/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for core/config: defaults, one refused value per key, error
 * collection, unknown keys, secrets, domain matching, host names and parsed
 * addresses, reload diff. (The host and address rules themselves: test_lib.) */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/config.h"

#define BASE "{\"account_email\":\"ops@example.com\""
#define WITH(x) BASE "," x "}"

static char errs[8192];

static struct config *load(const char *json)
{
	return config_load_json(json, errs, sizeof(errs));
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

/* A temp file holding <content>; the caller unlinks <path>. */
static void temp_file(char *path, size_t len, const char *content)
{
	int fd;

	snprintf(path, len, "/tmp/test_config.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
}

/* SPEC §3 storage_config.redis: Sentinel, ACL and TLS keys under their
 * canonical names; nodes as {host, port} objects or "host:port". */
static void test_redis_ha_keys(void **state)
{
	struct config *c;

	(void)state;
	c = load("{\"account_email\":\"a@b.example\",\"storage\":\"redis\",\"storage_config\":"
		 "{\"redis\":{\"username\":\"agent\",\"password\":\"pw\",\"ssl\":true,"
		 "\"server_name\":\"redis.example\",\"ssl_ca_file\":\"/etc/hostname\","
		 "\"sentinel_master\":\"mymaster\",\"sentinel_nodes\":[{\"host\":\"10.0.0.1\","
		 "\"port\":26379},{\"host\":\"::1\",\"port\":26380},\"s3.example:26381\"],"
		 "\"sentinel_username\":\"su\",\"sentinel_password\":\"sp\"}}}");
	if (!c)
		fail_msg("%s", errs);
	assert_string_equal(c->redis_username, "agent");
	assert_string_equal(c->redis_auth, "pw");
	assert_string_equal(c->redis_ssl_server_name, "redis.example");
	assert_string_equal(c->redis_ssl_ca_file, "/etc/hostname");
	assert_string_equal(c->redis_sentinel_master, "mymaster");
	assert_int_equal(c->redis_nsentinel_nodes, 3);
	assert_string_equal(c->redis_sentinel_nodes[0], "10.0.0.1:26379");
	assert_string_equal(c->redis_sentinel_nodes[1], "[::1]:26380");
	assert_string_equal(c->redis_sentinel_addrs[1].host, "::1");
	assert_int_equal(c->redis_sentinel_addrs[2].port, 26381);
	assert_string_equal(c->redis_sentinel_username, "su");
	assert_string_equal(c->redis_sentinel_password, "sp");
	config_free(c);
}

static void test_defaults(void **state)
{
	struct config *c = load(BASE "}");

	(void)state;
	assert_non_null(c);
	assert_string_equal(errs, "");
	assert_string_equal(c->account_email, "ops@example.com");
	assert_string_equal(c->api_uri, "https://acme-v02.api.letsencrypt.org/directory");
	assert_null(c->api_ca_file);
	assert_int_equal(c->tos_accepted, 0);
	assert_int_equal(c->cert_type, CONFIG_CERT_RSA);
	assert_int_equal(c->rsa_key_size, 4096);
	assert_int_equal(c->ndomains, 0);
	assert_int_equal(c->allow_any_domain, 0);
	assert_null(c->ask_url);
	assert_int_equal(c->fail_backoff_minutes, 5);
	assert_int_equal(c->renew_threshold_days, 14);
	assert_null(c->eab_kid);
	assert_null(c->eab_hmac_key);
	assert_null(c->preferred_chain);
	assert_null(c->profile);
	assert_int_equal(c->storage, CONFIG_STORAGE_FILE);
	assert_string_equal(c->file_path, "/var/lib/acme-spoa");
	assert_string_equal(c->redis_host, "127.0.0.1");
	assert_int_equal(c->redis_port, 6379);
	assert_int_equal(c->redis_database, 0);
	assert_null(c->redis_auth);
	assert_int_equal(c->redis_ssl, 0);
	assert_int_equal(c->redis_ssl_verify, 1);	/* issue 19: on as soon as ssl is */
	assert_null(c->redis_ssl_server_name);
	assert_string_equal(c->redis_namespace, "");
	assert_string_equal(c->consul_host, "127.0.0.1");
	assert_int_equal(c->consul_port, 8500);
	assert_int_equal(c->consul_https, 0);
	assert_int_equal(c->consul_timeout_ms, 2000);
	assert_null(c->consul_token);
	assert_string_equal(c->consul_kv_path, "acme");
	assert_string_equal(c->spoa_listen, "127.0.0.1:12345");
	assert_string_equal(c->admin_listen, "127.0.0.1:8001");
	assert_null(c->admin_token);
	assert_int_equal(c->nruntime, 1);
	assert_string_equal(c->runtime[0], "unix:/run/haproxy/admin.sock");
	assert_string_equal(c->cert_dir, "/etc/haproxy/certs");
	assert_string_equal(c->crt_list, "/etc/haproxy/certs");
	assert_int_equal(c->max_orders, 20);
	assert_string_equal(config_cert_type_name(c->cert_type), "rsa");
	assert_string_equal(config_storage_name(c->storage), "file");
	config_free(c);
	config_free(NULL);
}

static void test_every_key_set(void **state)
{
	char ca[64];
	struct config *c;
	char json[2048];

	(void)state;
	temp_file(ca, sizeof(ca), "-----BEGIN CERTIFICATE-----\n");
	snprintf(json, sizeof(json), "{"
		 "\"account_email\":\"a@b.example\",\"api_uri\":\"https://localhost:14000/dir\","
		 "\"api_ca_file\":\"%s\",\"tos_accepted\":true,\"cert_type\":\"ecc\",\"rsa_key_size\":2048,"
		 "\"domains\":[\"Shop.Example.COM\",\"*.Example.org\"],\"allow_any_domain\":false,"
		 "\"ask_url\":\"http://127.0.0.1:9/ask\",\"fail_backoff_minutes\":1440,"
		 "\"renew_threshold_days\":0,\"eab_kid\":\"kid-1\",\"eab_hmac_key\":\"abc_-DEF\","
		 "\"preferred_chain\":\"ISRG Root X1\",\"profile\":\"shortlived\",\"storage\":\"redis\","
		 "\"storage_config\":{\"file\":{\"path\":\"/srv/acme\"},\"redis\":{\"host\":\"redis.internal\","
		 "\"port\":6380,\"database\":15,\"auth\":\"pw\",\"ssl\":true,\"ssl_verify\":true,"
		 "\"ssl_server_name\":\"redis.example\",\"namespace\":\"prod:\"}},"
		 "\"spoa\":{\"listen\":\"unix:/run/acme-spoa.sock\"},"
		 "\"admin\":{\"listen\":\"[::1]:8002\",\"token\":\"t0k\"},"
		 "\"haproxy\":{\"runtime\":[\"unix:/run/h1.sock\",\"127.0.0.1:9999\"],"
		 "\"cert_dir\":\"/etc/h/certs\",\"crt_list\":\"/etc/h/list.txt\"},"
		 "\"max_concurrent_orders\":1000}", ca);
	c = load(json);
	unlink(ca);
	if (!c)
		fail_msg("%s", errs);
	assert_string_equal(c->api_ca_file, ca);
	assert_int_equal(c->tos_accepted, 1);
	assert_int_equal(c->cert_type, CONFIG_CERT_ECC);
	assert_int_equal(c->rsa_key_size, 2048);
	assert_int_equal(c->ndomains, 2);
	assert_string_equal(c->domains[0], "shop.example.com");
	assert_string_equal(c->domains[1], "*.example.org");
	assert_string_equal(c->ask_url, "http://127.0.0.1:9/ask");
	assert_int_equal(c->fail_backoff_minutes, 1440);
	assert_int_equal(c->renew_threshold_days, 0);
	assert_string_equal(c->eab_kid, "kid-1");
	assert_string_equal(c->eab_hmac_key, "abc_-DEF");
	assert_string_equal(c->preferred_chain, "ISRG Root X1");
	assert_string_equal(c->profile, "shortlived");
	assert_int_equal(c->storage, CONFIG_STORAGE_REDIS);
	assert_string_equal(c->file_path, "/srv/acme");
	assert_string_equal(c->redis_host, "redis.internal");
	assert_int_equal(c->redis_port, 6380);
	assert_int_equal(c->redis_database, 15);
	assert_string_equal(c->redis_auth, "pw");
	assert_int_equal(c->redis_ssl, 1);
	assert_int_equal(c->redis_ssl_verify, 1);
	assert_string_equal(c->redis_ssl_server_name, "redis.example");
	assert_string_equal(c->redis_namespace, "prod:");
	assert_null(c->redis_sentinel_master);
	assert_int_equal(c->redis_nsentinel_nodes, 0);
	assert_string_equal(c->spoa_listen, "unix:/run/acme-spoa.sock");
	assert_string_equal(c->admin_listen, "[::1]:8002");
	assert_string_equal(c->admin_token, "t0k");
	assert_int_equal(c->nruntime, 2);
	assert_string_equal(c->runtime[1], "127.0.0.1:9999");
	assert_string_equal(c->cert_dir, "/etc/h/certs");
	assert_string_equal(c->crt_list, "/etc/h/list.txt");
	assert_int_equal(c->max_orders, 1000);
	config_free(c);

	/* crt_list follows cert_dir when left out; a flat dotted key is accepted */
	c = load(WITH("\"haproxy.cert_dir\":\"/x/certs\""));
	assert_non_null(c);
	assert_string_equal(c->crt_list, "/x/certs");
	config_free(c);
}

struct bad_case {
	const char *json;
	const char *expect;	/* must appear in the (single) error line */
};

static const struct bad_case bad_cases[] = {
	{ "{\"account_email\":\"no-at-sign\"}", "config: account_email: " },
	{ "{\"account_email\":7}", "config: account_email: " },
	{ "{\"account_email\":null}", "config: account_email: null (this key is required)" },
	{ "{}", "config: account_email: missing" },
	{ WITH("\"api_uri\":\"ftp://ca.example/dir\""), "config: api_uri: \"ftp://ca.example/dir\" is not an http(s) URL" },
	{ WITH("\"api_uri\":\"https://\""), "config: api_uri: " },
	{ WITH("\"api_ca_file\":\"/nonexistent/ca.pem\""), "config: api_ca_file: \"/nonexistent/ca.pem\" is not a readable file" },
	{ WITH("\"api_ca_file\":\"/tmp\""), "config: api_ca_file: \"/tmp\" is not a regular file" },
	{ WITH("\"tos_accepted\":\"yes\""), "config: tos_accepted: \"yes\" is a string, expected a boolean" },
	{ WITH("\"cert_type\":\"dsa\""), "config: cert_type: \"dsa\" is not one of rsa, ecc" },
	{ WITH("\"cert_type\":1"), "config: cert_type: 1 is an integer, expected one of rsa, ecc" },
	{ WITH("\"rsa_key_size\":1024"), "config: rsa_key_size: 1024 is not one of 2048, 3072, 4096" },
	{ WITH("\"rsa_key_size\":\"4096\""), "config: rsa_key_size: \"4096\" is a string, expected an integer" },
	{ WITH("\"rsa_key_size\":4096.0"), "config: rsa_key_size: 4096.0 is a real number, expected an integer" },
	{ WITH("\"domains\":\"example.com\""), "config: domains: \"example.com\" is a string, expected an array" },
	{ WITH("\"domains\":[\"ok.example.com\",\"^.*\\\\.example\\\\.com$\"]"), "config: domains[1]: \"^.*\\\\.example\\\\.com$\" is not a host name" },
	{ WITH("\"domains\":[\"a.*.example.com\"]"), "config: domains[0]: " },
	{ WITH("\"domains\":[\"*.com\"]"), "config: domains[0]: " },
	{ WITH("\"domains\":[\"example.com.\"]"), "config: domains[0]: " },
	{ WITH("\"domains\":[3]"), "config: domains[0]: 3 is an integer, expected a string" },
	{ WITH("\"allow_any_domain\":1"), "config: allow_any_domain: 1 is an integer, expected a boolean" },
	{ WITH("\"ask_url\":\"example.com/ask\""), "config: ask_url: \"example.com/ask\" is not an http(s) URL" },
	{ WITH("\"ask_url\":\"http://ask.example.com/ask\""), "config: ask_url: \"http://ask.example.com/ask\" plain http is only allowed to a loopback host" },
	{ WITH("\"api_uri\":\"http://10.0.0.1:14000/dir\""), "config: api_uri: \"http://10.0.0.1:14000/dir\" plain http is only allowed to a loopback host" },
	{ WITH("\"fail_backoff_minutes\":0"), "config: fail_backoff_minutes: 0 is not between 1 and 1440" },
	{ WITH("\"fail_backoff_minutes\":1441"), "config: fail_backoff_minutes: 1441 is not between 1 and 1440" },
	{ WITH("\"renew_threshold_days\":-1"), "config: renew_threshold_days: -1 is not between 0 and 365" },
	{ WITH("\"renew_threshold_days\":366"), "config: renew_threshold_days: 366 is not between 0 and 365" },
	{ WITH("\"eab_kid\":\"kid\""), "config: eab_hmac_key: missing (eab_kid and eab_hmac_key go together)" },
	{ WITH("\"eab_hmac_key\":\"abcd\""), "config: eab_kid: missing" },
	{ WITH("\"eab_kid\":\"k\",\"eab_hmac_key\":\"ab+/cd==\""), "config: eab_hmac_key: (hidden value) is not valid base64url" },
	{ WITH("\"eab_kid\":[],\"eab_hmac_key\":\"abcd\""), "config: eab_kid: (hidden value) is an array, expected a string" },
	{ WITH("\"preferred_chain\":5"), "config: preferred_chain: 5 is an integer, expected a string" },
	{ WITH("\"preferred_chain\":\"\""), "config: preferred_chain: \"\" is empty" },
	{ WITH("\"profile\":[]"), "config: profile: [] is an array, expected a string" },
	{ WITH("\"storage\":\"s3\""), "config: storage: \"s3\" is not one of file, redis, shm" },
	{ WITH("\"storage_config\":\"redis\""), "config: storage_config: \"redis\" is a string, expected an object" },
	{ WITH("\"storage_config\":{\"file\":{\"path\":\"var/lib\"}}"), "config: storage_config.file.path: \"var/lib\" is not an absolute path" },
	{ WITH("\"storage_config\":{\"redis\":{\"host\":\"bad host!\"}}"), "config: storage_config.redis.host: \"bad host!\" is not a host name or IP address" },
	{ WITH("\"storage_config\":{\"consul\":{\"kv_path\":\"/acme/\"}}"), "config: storage_config.consul.kv_path: \"/acme/\" want '/'-separated segments" },
	{ WITH("\"storage_config\":{\"consul\":{\"timeout\":0}}"), "config: storage_config.consul.timeout: 0 is not between 100 and 600000" },
	{ WITH("\"storage_config\":{\"consul\":{\"https\":\"yes\"}}"), "config: storage_config.consul.https: \"yes\" is a string, expected a boolean" },
	{ WITH("\"storage_config\":{\"redis\":{\"port\":0}}"), "config: storage_config.redis.port: 0 is not between 1 and 65535" },
	{ WITH("\"storage_config\":{\"redis\":{\"port\":65536}}"), "config: storage_config.redis.port: 65536 is not between 1 and 65535" },
	{ WITH("\"storage_config\":{\"redis\":{\"database\":16}}"), "config: storage_config.redis.database: 16 is not between 0 and 15" },
	{ WITH("\"storage_config\":{\"redis\":{\"auth\":123}}"), "config: storage_config.redis.auth: (hidden value) is an integer, expected a string" },
	{ WITH("\"storage_config\":{\"redis\":{\"ssl\":\"true\"}}"), "config: storage_config.redis.ssl: \"true\" is a string, expected a boolean" },
	{ WITH("\"storage_config\":{\"redis\":{\"ssl_verify\":1}}"), "config: storage_config.redis.ssl_verify: 1 is an integer, expected a boolean" },
	{ WITH("\"storage_config\":{\"redis\":{\"ssl_server_name\":\"-bad-\"}}"), "config: storage_config.redis.ssl_server_name: \"-bad-\" is not a host name" },
	{ WITH("\"storage_config\":{\"redis\":{\"namespace\":5}}"), "config: storage_config.redis.namespace: 5 is an integer, expected a string" },
	{ WITH("\"storage_config\":{\"redis\":{\"auth\":\"a\",\"password\":\"b\"}}"), "given twice (storage_config.redis." },
	{ WITH("\"storage_config\":{\"redis\":{\"server_name\":\"a.example\",\"ssl_server_name\":\"b.example\"}}"), "given twice (storage_config.redis." },
	{ WITH("\"storage_config\":{\"redis\":{\"username\":\"u\"}}"), "config: storage_config.redis.username: given without storage_config.redis.password" },
	{ WITH("\"storage_config\":{\"redis\":{\"ssl_ca_file\":\"/nonexistent.pem\"}}"), "config: storage_config.redis.ssl_ca_file: \"/nonexistent.pem\" is not a readable file" },
	{ WITH("\"storage_config\":{\"redis\":{\"sentinel_master\":\"m\"}}"), "config: storage_config.redis.sentinel_nodes: missing (sentinel_master and sentinel_nodes go together)" },
	{ WITH("\"storage_config\":{\"redis\":{\"sentinel_master\":\"m x\",\"sentinel_nodes\":[\"h:1\"]}}"), "config: storage_config.redis.sentinel_master: \"m x\" is not a sentinel master name" },
	{ WITH("\"storage_config\":{\"redis\":{\"sentinel_master\":\"m\",\"sentinel_nodes\":[{\"host\":\"h\"}]}}"), "config: storage_config.redis.sentinel_nodes[0]: expected {\"host\": string, \"port\": integer}" },
	{ WITH("\"storage_config\":{\"redis\":{\"sentinel_master\":\"m\",\"sentinel_nodes\":[{\"host\":\"h\",\"port\":0}]}}"), "config: storage_config.redis.sentinel_nodes[0]: port 0 is not between 1 and 65535" },
	{ WITH("\"storage_config\":{\"redis\":{\"sentinel_master\":\"m\",\"sentinel_nodes\":[\"h\"]}}"), "config: storage_config.redis.sentinel_nodes[0]: \"h\" has no :port" },
	{ WITH("\"storage_config\":{\"redis\":{\"sentinel_nodes\":[\"h:1\"]}}"), "config: storage_config.redis.sentinel_master: missing (sentinel_master and sentinel_nodes go together)" },
	{ WITH("\"spoa\":{\"listen\":\"127.0.0.1\"}"), "config: spoa.listen: \"127.0.0.1\" has no :port" },
	{ WITH("\"spoa\":{\"listen\":\"127.0.0.1:0\"}"), "config: spoa.listen: \"127.0.0.1:0\" has an invalid port" },
	{ WITH("\"spoa\":{\"listen\":\"127.0.0.1:12x\"}"), "config: spoa.listen: \"127.0.0.1:12x\" has an invalid port" },
	{ WITH("\"spoa\":{\"listen\":\"unix:relative.sock\"}"), "config: spoa.listen: \"unix:relative.sock\" is not unix:/absolute/path" },
	{ WITH("\"spoa\":{\"listen\":\"::1:12345\"}"), "config: spoa.listen: \"::1:12345\" is not host:port (write IPv6 addresses as [addr]:port)" },
	{ WITH("\"admin\":{\"listen\":\"unix:/run/a.sock\"}"), "config: admin.listen: \"unix:/run/a.sock\" is a unix socket, expected host:port" },
	{ WITH("\"admin\":{\"listen\":\"[::1:8001\"}"), "config: admin.listen: \"[::1:8001\" is not [IPv6]:port" },
	{ WITH("\"admin\":{\"listen\":\"[1.2.3.4]:8001\"}"), "config: admin.listen: \"[1.2.3.4]:8001\" has an invalid host" },
	{ WITH("\"admin\":{\"token\":42}"), "config: admin.token: (hidden value) is an integer, expected a string" },
	{ WITH("\"admin\":{\"token\":\"\"}"), "config: admin.token: (hidden value) is empty" },
	{ WITH("\"admin\":[]"), "config: admin: [] is an array, expected an object" },
	{ WITH("\"haproxy\":{\"runtime\":[]}"), "config: haproxy.runtime: [] has fewer than 1 entries" },
	{ WITH("\"haproxy\":{\"runtime\":[\"tcp://h:1\"]}"), "config: haproxy.runtime[0]: \"tcp://h:1\" is a URL, expected host:port or unix:/path" },
	{ WITH("\"haproxy\":{\"runtime\":\"unix:/a\"}"), "config: haproxy.runtime: \"unix:/a\" is a string, expected an array of strings" },
	{ WITH("\"haproxy\":{\"cert_dir\":\"certs\"}"), "config: haproxy.cert_dir: \"certs\" is not an absolute path" },
	{ WITH("\"haproxy\":{\"crt_list\":7}"), "config: haproxy.crt_list: 7 is an integer, expected a string" },
	{ WITH("\"max_concurrent_orders\":0"), "config: max_concurrent_orders: 0 is not between 1 and 1000" },
	{ WITH("\"max_concurrent_orders\":1001"), "config: max_concurrent_orders: 1001 is not between 1 and 1000" },
	{ WITH("\"spoa\":{\"listen\":\"127.0.0.1:1\"},\"spoa.listen\":\"127.0.0.1:2\""), "config: spoa.listen: given twice" },
	{ "[1,2]", "config: (json): [1,2] is an array, expected an object" },
};

/* Warnings at start: the admin API beyond loopback without a token,
 * allow_any_domain without ask_url, nothing allowed on demand. */
static void test_warnings(void **state)
{
#define D "{\"account_email\":\"o@example.com\",\"domains\":[\"*.example.com\"]"
	static const struct { const char *json; int n; const char *has; } cases[] = {
		{ "{\"account_email\":\"o@example.com\",\"domains\":[\"*.example.com\"]}", 0, NULL },
		{ "{\"account_email\":\"o@example.com\",\"domains\":[\"a.example.com\"],"
		  "\"admin\":{\"listen\":\"0.0.0.0:8001\"}}", 1, "admin.token is not set" },
		{ "{\"account_email\":\"o@example.com\",\"domains\":[\"a.example.com\"],"
		  "\"admin\":{\"listen\":\"admin.example.com:8001\"}}", 1, "admin.token is not set" },
		{ "{\"account_email\":\"o@example.com\",\"domains\":[\"a.example.com\"],"
		  "\"admin\":{\"listen\":\"0.0.0.0:8001\",\"token\":\"s3cret\"}}", 0, NULL },
		{ "{\"account_email\":\"o@example.com\",\"domains\":[\"a.example.com\"],"
		  "\"admin\":{\"listen\":\"[::1]:8001\"}}", 0, NULL },
		{ "{\"account_email\":\"o@example.com\",\"domains\":[\"a.example.com\"],"
		  "\"admin\":{\"listen\":\"127.0.0.2:8001\"}}", 0, NULL },
		{ "{\"account_email\":\"o@example.com\",\"allow_any_domain\":true}", 1, "without ask_url" },
		{ "{\"account_email\":\"o@example.com\",\"allow_any_domain\":true,"
		  "\"ask_url\":\"http://127.0.0.1:9/ask\"}", 0, NULL },
		{ "{\"account_email\":\"o@example.com\"}", 1, "domains is empty" },
		/* issue 19 finding 2: TLS to Redis without verification, Consul's
		 * token in clear beyond this host, a runtime socket over TCP beyond it */
		{ D ",\"storage\":\"redis\",\"storage_config\":{\"redis\":{\"ssl\":true}}}", 0, NULL },
		{ D ",\"storage\":\"redis\",\"storage_config\":{\"redis\":{\"ssl\":true,"
		  "\"ssl_verify\":false}}}", 1, "ssl_verify is false: any certificate is accepted" },
		{ D ",\"storage\":\"redis\",\"storage_config\":{\"redis\":{\"ssl\":true,"
		  "\"ssl_verify\":false,\"sentinel_master\":\"m\",\"sentinel_nodes\":[\"10.0.0.1:26379\"]}}}",
		  1, "from Redis and its sentinels" },
		{ D ",\"storage\":\"consul\",\"storage_config\":{\"consul\":{\"host\":\"consul.example.com\","
		  "\"token\":\"t\"}}}", 1, "in clear (http, not https) to consul.example.com" },
		{ D ",\"storage\":\"consul\",\"storage_config\":{\"consul\":{\"host\":\"consul.example.com\","
		  "\"token\":\"t\",\"https\":true}}}", 0, NULL },
		{ D ",\"storage\":\"consul\",\"storage_config\":{\"consul\":{\"host\":\"localhost\","
		  "\"token\":\"t\"}}}", 0, NULL },
		{ D ",\"haproxy\":{\"runtime\":[\"unix:/run/haproxy/admin.sock\",\"127.0.0.1:9999\"]}}", 0, NULL },
		{ D ",\"haproxy\":{\"runtime\":[\"10.1.2.3:9999\"]}}", 1,
		  "haproxy.runtime 10.1.2.3:9999 is a TCP socket beyond this host" },
	};
	char w[2048];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *c = load(cases[i].json);

		if (!c)
			fail_msg("case %zu refused: %s", i, errs);
		if (config_warnings(c, w, sizeof(w)) != cases[i].n ||
		    (cases[i].has && !strstr(w, cases[i].has)))
			fail_msg("case %zu: %s\nwarnings:\n%s", i, cases[i].json, w);
		config_free(c);
	}
#undef D
}

static void test_bad_values(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct config *c = load(bad_cases[i].json);

		if (c)
			fail_msg("case %zu accepted: %s", i, bad_cases[i].json);
		if (!strstr(errs, bad_cases[i].expect) || count_lines(errs) != 1)
			fail_msg("case %zu: %s\nexpected one error with \"%s\", got:\n%s", i,
				 bad_cases[i].json, bad_cases[i].expect, errs);
	}
}

static void test_many_errors(void **state)
{
	struct config *c;

	(void)state;
	c = load("{\"rsa_key_size\":1024,\"storage\":\"s3\",\"renew_treshold_days\":3,"
		 "\"haproxy\":{\"cert_dir\":\"rel\",\"runtime\":[\"unix:/ok\",\"nope\"]}}");
	assert_null(c);
	assert_contains(errs, "config: rsa_key_size: 1024 is not one of 2048, 3072, 4096\n");
	assert_contains(errs, "config: storage: \"s3\" is not one of file, redis, shm, consul\n");
	assert_contains(errs, "config: renew_treshold_days: unknown key (did you mean renew_threshold_days?)\n");
	assert_contains(errs, "config: haproxy.cert_dir: \"rel\" is not an absolute path\n");
	assert_contains(errs, "config: haproxy.runtime[1]: \"nope\" has no :port");
	assert_contains(errs, "config: account_email: missing");
	assert_int_equal(count_lines(errs), 6);

	/* a tiny buffer truncates but never overflows */
	c = config_load_json("{\"rsa_key_size\":1,\"storage\":1}", errs, 10);
	assert_null(c);
	assert_int_equal(strlen(errs), 9);
	assert_null(config_load_json("{}", NULL, 0));
}

static void test_unknown_keys(void **state)
{
	(void)state;
	assert_null(load(WITH("\"renew_treshold_days\":3")));
	assert_string_equal(errs, "config: renew_treshold_days: unknown key (did you mean renew_threshold_days?)\n");
	assert_null(load(WITH("\"haproxy\":{\"certdir\":\"/x\"}")));
	assert_string_equal(errs, "config: haproxy.certdir: unknown key (did you mean haproxy.cert_dir?)\n");
	assert_null(load(WITH("\"storage_confg\":{}")));
	assert_string_equal(errs, "config: storage_confg: unknown key (did you mean storage_config?)\n");
	assert_null(load(WITH("\"cert_dir\":\"/x\"")));
	assert_string_equal(errs, "config: cert_dir: unknown key (did you mean haproxy.cert_dir?)\n");
	assert_null(load(WITH("\"zzzzzzzzzzzzzzzzzzzzzz\":1")));
	assert_string_equal(errs, "config: zzzzzzzzzzzzzzzzzzzzzz: unknown key\n");
	/* Kong's storage_config.shm is not ours */
	assert_null(load(WITH("\"storage_config\":{\"kong\":{}}")));
	assert_contains(errs, "config: storage_config.kong: unknown key");
	/* control characters in a key do not split the error line */
	assert_null(load(WITH("\"a\\nb\":1")));
	assert_int_equal(count_lines(errs), 1);
}

static void test_syntax_error(void **state)
{
	char path[64];
	struct config *c;

	(void)state;
	assert_null(load("{\n  \"account_email\": \"a@b.example\",\n  oops\n}"));
	assert_contains(errs, "config: (json): line 3, column");
	assert_int_equal(count_lines(errs), 1);
	assert_null(load("{\"account_email\":\"a@b.example\",\"account_email\":\"c@d.example\"}"));
	assert_contains(errs, "duplicate");

	temp_file(path, sizeof(path), "{\"account_email\":\"a@b.example\",\n\"x\" 1}\n");
	assert_null(config_load(path, errs, sizeof(errs)));
	assert_contains(errs, path);
	assert_contains(errs, "line 2, column");
	unlink(path);
	temp_file(path, sizeof(path), "{\"account_email\":\"a@b.example\"}\n");
	c = config_load(path, errs, sizeof(errs));
	assert_non_null(c);
	config_free(c);
	unlink(path);
	assert_null(config_load("/nonexistent/acme.json", errs, sizeof(errs)));
	assert_string_equal(errs, "config: /nonexistent/acme.json: cannot be read (No such file or directory)\n");
}

static void test_secrets(void **state)
{
	char path[64], json[512];
	struct config *c;

	(void)state;
	setenv("ACME_TEST_TOKEN", "tok-from-env", 1);
	setenv("ACME_TEST_MAIL", "env@example.com", 1);
	unsetenv("ACME_TEST_UNSET");
	temp_file(path, sizeof(path), "hmac_Key-123\n");
	snprintf(json, sizeof(json), "{\"account_email\":\"{env://ACME_TEST_MAIL}\","
		 "\"eab_kid\":\"{env://ACME_TEST_TOKEN}\",\"eab_hmac_key\":\"{file://%s}\","
		 "\"admin\":{\"token\":\"{env://ACME_TEST_TOKEN}\"},"
		 "\"storage_config\":{\"redis\":{\"auth\":\"{file://%s}\"},"
		 "\"consul\":{\"token\":\"{env://ACME_TEST_TOKEN}\"}}}", path, path);
	c = load(json);
	if (!c)
		fail_msg("%s", errs);
	assert_string_equal(c->account_email, "env@example.com");
	assert_string_equal(c->eab_kid, "tok-from-env");
	assert_string_equal(c->eab_hmac_key, "hmac_Key-123");
	assert_string_equal(c->admin_token, "tok-from-env");
	assert_string_equal(c->redis_auth, "hmac_Key-123");
	assert_string_equal(c->consul_token, "tok-from-env");
	config_free(c);

	/* non-secret fields take the text literally */
	c = load(WITH("\"profile\":\"{env://ACME_TEST_TOKEN}\""));
	assert_non_null(c);
	assert_string_equal(c->profile, "{env://ACME_TEST_TOKEN}");
	config_free(c);

	assert_null(load(WITH("\"admin\":{\"token\":\"{env://ACME_TEST_UNSET}\"}")));
	assert_string_equal(errs, "config: admin.token: {env://ACME_TEST_UNSET} names an unset environment variable\n");
	assert_null(load(WITH("\"admin\":{\"token\":\"{file:///nonexistent/tok}\"}")));
	assert_string_equal(errs, "config: admin.token: {file:///nonexistent/tok} cannot be read (No such file or directory)\n");
	assert_null(load(WITH("\"admin\":{\"token\":\"{env://BAD-NAME}\"}")));
	assert_contains(errs, "does not name an environment variable");
	assert_null(load(WITH("\"admin\":{\"token\":\"{file://relative}\"}")));
	assert_contains(errs, "is not {file:///absolute/path}");

	/* secret values never reach error text: literal, from env, from file */
	assert_null(load(WITH("\"eab_kid\":\"k\",\"eab_hmac_key\":\"TOPSECRET!!\"")));
	assert_contains(errs, "config: eab_hmac_key:");
	assert_null(strstr(errs, "TOPSECRET"));
	setenv("ACME_TEST_MAIL", "hushhush-no-at-sign", 1);
	assert_null(load("{\"account_email\":\"{env://ACME_TEST_MAIL}\"}"));
	assert_contains(errs, "config: account_email: (hidden value) is not an email address");
	assert_null(strstr(errs, "hushhush"));
	unlink(path);
	temp_file(path, sizeof(path), "SeCrEt PaSs\n");
	snprintf(json, sizeof(json), BASE ",\"eab_kid\":\"k\",\"eab_hmac_key\":\"{file://%s}\"}", path);
	assert_null(load(json));
	assert_contains(errs, "config: eab_hmac_key:");
	assert_null(strstr(errs, "SeCrEt"));
	unlink(path);
	/* an empty secret from the environment is refused, not taken as "no auth" */
	setenv("ACME_TEST_TOKEN", "", 1);
	assert_null(load(WITH("\"admin\":{\"token\":\"{env://ACME_TEST_TOKEN}\"}")));
	assert_contains(errs, "config: admin.token: (hidden value) is empty");
}

static void test_domain_allowed(void **state)
{
	struct config *c = load(WITH("\"domains\":[\"*.example.com\",\"Exact.Example.NET\"]"));

	(void)state;
	assert_non_null(c);
	assert_true(config_domain_allowed(c, "a.example.com"));
	assert_true(config_domain_allowed(c, "a.b.example.com"));
	assert_true(config_domain_allowed(c, "A.EXAMPLE.com"));
	assert_false(config_domain_allowed(c, "example.com"));
	assert_false(config_domain_allowed(c, ".example.com"));
	assert_false(config_domain_allowed(c, "aexample.com"));
	assert_false(config_domain_allowed(c, "a.example.com.evil.test"));
	assert_true(config_domain_allowed(c, "exact.example.net"));
	assert_false(config_domain_allowed(c, "sub.exact.example.net"));
	assert_false(config_domain_allowed(c, "other.test"));
	assert_false(config_domain_allowed(NULL, "a.example.com"));
	assert_false(config_domain_allowed(c, NULL));
	c->allow_any_domain = 1;
	assert_true(config_domain_allowed(c, "other.test"));
	config_free(c);

	c = load(BASE "}");
	assert_false(config_domain_allowed(c, "a.example.com"));	/* [] allows nothing */
	config_free(c);
}

/* Host names follow lib/host.h: IPv4 in any spelling is no domain (issue 9). */
static void test_hosts(void **state)
{
	static const char *const ip_like[] = {
		"127.0.0.1", "0x7f.0x1", "1.2.3.0x4", "127.1", "017.0.0.1", "2130706433",
		"*.0x7f.0x1", "*.127.1", NULL
	};
	char json[512];
	struct config *c;
	size_t i;

	(void)state;
	for (i = 0; ip_like[i]; i++) {
		snprintf(json, sizeof(json), WITH("\"domains\":[\"%s\"]"), ip_like[i]);
		assert_null(load(json));
		assert_contains(errs, "config: domains[0]: ");
		assert_contains(errs, "is not a host name or \"*.\" followed by a host name");
		/* an address host may be an IP literal, but only as written by inet_pton */
		snprintf(json, sizeof(json), WITH("\"storage_config\":{\"redis\":{\"host\":\"%s\"}}"),
			 ip_like[i]);
		c = load(json);
		if (strcmp(ip_like[i], "127.0.0.1") == 0) {
			assert_non_null(c);
			config_free(c);
		} else {
			assert_null(c);
			assert_contains(errs, "is not a host name or IP address");
		}
	}
	c = load(WITH("\"domains\":[\"*.Example.COM\",\"0x7f.example\",\"*.test\"],"
		      "\"storage_config\":{\"redis\":{\"host\":\"redis\",\"ssl_server_name\":\"fe80::1\"}}"));
	if (!c)
		fail_msg("%s", errs);
	assert_string_equal(c->domains[0], "*.example.com");
	assert_string_equal(c->domains[1], "0x7f.example");
	assert_string_equal(c->domains[2], "*.test");
	config_free(c);
	assert_null(load(WITH("\"storage_config\":{\"redis\":{\"host\":\"a_b\"}}")));
}

/* issue 19 finding 13: dns01.zone may be one label ("test", "corp"): a private
 * zone is valid DNS and valid for RFC 2136. Still refused: "*.", a numeric
 * label, a leading '-', an empty label. */
static void test_dns01_zone_one_label(void **state)
{
	static const char *const ok[] = { "test", "corp", "Corp", "example.test", NULL };
	static const char *const want[] = { "test", "corp", "corp", "example.test", NULL };
	static const char *const bad[] = { "*.test", "123", "-corp", "corp.", ".corp", "", NULL };
	char json[512];
	struct config *c;
	size_t i;

	(void)state;
	for (i = 0; ok[i]; i++) {
		snprintf(json, sizeof(json), WITH("\"dns01\":{\"provider\":\"exec\","
			 "\"exec\":\"/bin/true\",\"zone\":\"%s\"}"), ok[i]);
		c = load(json);
		if (!c)
			fail_msg("zone %s refused: %s", ok[i], errs);
		assert_string_equal(c->dns01_zone, want[i]);
		config_free(c);
	}
	for (i = 0; bad[i]; i++) {
		snprintf(json, sizeof(json), WITH("\"dns01\":{\"provider\":\"exec\","
			 "\"exec\":\"/bin/true\",\"zone\":\"%s\"}"), bad[i]);
		c = load(json);
		if (c)
			fail_msg("zone \"%s\" accepted", bad[i]);
		assert_contains(errs, "config: dns01.zone: ");
	}
}

/* Each address is parsed once, by the loader, and kept next to its string. */
static void test_addrs(void **state)
{
	struct config *c, *nw;

	(void)state;
	c = load(BASE "}");
	assert_non_null(c);
	assert_false(c->spoa_addr.is_unix);
	assert_string_equal(c->spoa_addr.host, "127.0.0.1");
	assert_int_equal(c->spoa_addr.port, 12345);
	assert_string_equal(c->admin_addr.host, "127.0.0.1");
	assert_int_equal(c->admin_addr.port, 8001);
	assert_non_null(c->runtime_addrs);
	assert_true(c->runtime_addrs[0].is_unix);
	assert_string_equal(c->runtime_addrs[0].path, "/run/haproxy/admin.sock");
	config_free(c);

	c = load(WITH("\"spoa\":{\"listen\":\"unix:/run/acme-spoa.sock\"},"
		      "\"admin\":{\"listen\":\"[::1]:8002\"},"
		      "\"haproxy\":{\"runtime\":[\"unix:/run/h1.sock\",\"haproxy.internal:9999\"]}"));
	if (!c)
		fail_msg("%s", errs);
	assert_true(c->spoa_addr.is_unix);
	assert_string_equal(c->spoa_addr.path, "/run/acme-spoa.sock");
	assert_string_equal(c->admin_addr.host, "::1");
	assert_int_equal(c->admin_addr.port, 8002);
	assert_int_equal(c->nruntime, 2);
	assert_string_equal(c->runtime_addrs[0].path, "/run/h1.sock");
	assert_false(c->runtime_addrs[1].is_unix);
	assert_string_equal(c->runtime_addrs[1].host, "haproxy.internal");
	assert_int_equal(c->runtime_addrs[1].port, 9999);

	/* addresses need a restart: SIGHUP leaves them, string and parsed alike */
	nw = load(WITH("\"admin\":{\"listen\":\"127.0.0.1:9\"},\"haproxy\":{\"runtime\":[\"unix:/x\"]}"));
	assert_non_null(nw);
	config_apply_reload(c, nw);
	assert_string_equal(c->admin_listen, "[::1]:8002");
	assert_string_equal(c->admin_addr.host, "::1");
	assert_int_equal(c->nruntime, 2);
	assert_string_equal(c->runtime_addrs[1].host, "haproxy.internal");
	config_free(nw);
	config_free(c);

	/* one bad entry: one error, nothing leaks */
	assert_null(load(WITH("\"haproxy\":{\"runtime\":[\"unix:/a\",\"127.1:9999\"]}")));
	assert_contains(errs, "config: haproxy.runtime[1]: \"127.1:9999\" has an invalid host \"127.1\"");
	assert_int_equal(count_lines(errs), 1);
	assert_null(load(WITH("\"admin\":{\"listen\":\"*:8001\"}")));
	assert_contains(errs, "config: admin.listen: \"*:8001\" has an invalid host");
}

static void test_diff(void **state)
{
	struct config *a, *b;
	char rep[2048];

	(void)state;
	setenv("ACME_TEST_TOKEN", "old-token-value", 1);
	a = load(WITH("\"domains\":[\"a.example.com\"],\"admin\":{\"token\":\"{env://ACME_TEST_TOKEN}\"}"));
	assert_non_null(a);
	b = load(WITH("\"domains\":[\"a.example.com\"],\"admin\":{\"token\":\"{env://ACME_TEST_TOKEN}\"}"));
	assert_int_equal(config_diff(a, b, rep, sizeof(rep)), 0);
	assert_string_equal(rep, "");
	config_free(b);

	/* only keys applied at reload */
	setenv("ACME_TEST_TOKEN", "new-token-value", 1);
	b = load(WITH("\"domains\":[\"a.example.com\",\"*.b.example\"],\"allow_any_domain\":true,"
		      "\"ask_url\":\"http://127.0.0.1:1/ask\",\"fail_backoff_minutes\":9,"
		      "\"renew_threshold_days\":30,\"admin\":{\"token\":\"{env://ACME_TEST_TOKEN}\"}"));
	assert_non_null(b);
	assert_int_equal(config_diff(a, b, rep, sizeof(rep)), 0);
	assert_int_equal(count_lines(rep), 6);
	assert_contains(rep, "domains: 1 entries -> 2 entries, applied at reload\n");
	assert_contains(rep, "fail_backoff_minutes: 5 -> 9, applied at reload\n");
	assert_contains(rep, "admin.token: changed, applied at reload\n");
	assert_null(strstr(rep, "token-value"));
	config_free(b);

	/* keys needing a restart are counted */
	b = load(WITH("\"domains\":[\"a.example.com\"],\"admin\":{\"listen\":\"127.0.0.1:9001\",\"token\":\"{env://ACME_TEST_TOKEN}\"},"
		      "\"storage\":\"redis\",\"rsa_key_size\":2048,\"haproxy\":{\"runtime\":[\"unix:/a\",\"unix:/b\"]}"));
	assert_non_null(b);
	assert_int_equal(config_diff(a, b, rep, sizeof(rep)), 4);
	assert_contains(rep, "admin.listen: \"127.0.0.1:8001\" -> \"127.0.0.1:9001\", needs a restart\n");
	assert_contains(rep, "storage: file -> redis, needs a restart\n");
	assert_contains(rep, "rsa_key_size: 4096 -> 2048, needs a restart\n");
	assert_contains(rep, "haproxy.runtime:");
	assert_contains(rep, "admin.token: changed, applied at reload\n");
	assert_int_equal(config_diff(a, b, NULL, 0), 4);
	assert_int_equal(config_diff(a, b, rep, 8), 4);
	assert_int_equal(strlen(rep), 7);
	config_free(b);
	config_free(a);
}

/* The shipped example must load as is (tests run from the repository root;
 * a missing file is a failure, not a skip that the totals would not show). */
static void test_example_file(void **state)
{
	struct config *c;

	(void)state;
	if (access("haproxy-examples/acme-spoa.json", R_OK) == -1)
		fail_msg("haproxy-examples/acme-spoa.json: %s (run from the repository root)",
			 strerror(errno));
	setenv("ACME_SPOA_ADMIN_TOKEN", "example-token", 1);
	c = config_load("haproxy-examples/acme-spoa.json", errs, sizeof(errs));
	if (!c)
		fail_msg("%s", errs);
	assert_string_equal(c->api_uri, "https://acme-v02.api.letsencrypt.org/directory");
	assert_true(c->tos_accepted);
	assert_string_equal(c->admin_token, "example-token");
	config_free(c);
	unsetenv("ACME_SPOA_ADMIN_TOKEN");
	assert_null(config_load("haproxy-examples/acme-spoa.json", errs, sizeof(errs)));
	assert_contains(errs, "admin.token: {env://ACME_SPOA_ADMIN_TOKEN} names an unset environment variable");
}

/* What SIGHUP applies comes from the table's flags: live keys move to the
 * running config, restart-only keys keep their running values. */
static void test_apply_reload(void **state)
{
	struct config *run = load(WITH("\"domains\":[\"a.test\"],\"max_concurrent_orders\":5,"
				       "\"fail_backoff_minutes\":3"));
	struct config *nw = load(WITH("\"domains\":[\"b.test\",\"c.test\"],\"max_concurrent_orders\":9,"
				      "\"fail_backoff_minutes\":7,\"ask_url\":\"http://127.0.0.1:1/ask\""));

	(void)state;
	assert_non_null(run);
	assert_non_null(nw);
	config_apply_reload(run, nw);
	assert_int_equal(run->ndomains, 2);
	assert_string_equal(run->domains[1], "c.test");
	assert_int_equal(run->fail_backoff_minutes, 7);
	assert_string_equal(run->ask_url, "http://127.0.0.1:1/ask");
	assert_int_equal(run->max_orders, 5);		/* needs a restart */
	assert_int_equal(nw->ndomains, 1);		/* the old values, freed with <nw> */
	assert_string_equal(nw->domains[0], "a.test");
	assert_null(nw->ask_url);
	config_free(nw);
	config_free(run);
}

/* SPEC §3 issuers: the top-level keys make one entry "default"; a list
 * inherits account_email, tos_accepted and challenges; per-CA keys beside it,
 * a missing name or api_uri, a duplicate name, unknown members and challenge
 * types are refused, each error naming the entry. */
static void test_issuers(void **state)
{
	struct config *c;

	(void)state;
	c = load(WITH("\"api_uri\":\"https://ca.example.net/dir\",\"tos_accepted\":true,"
		      "\"rate_limits\":{\"orders_per_3h\":7}"));
	assert_non_null(c);
	assert_int_equal(c->nissuers, 1);
	assert_string_equal(c->issuers[0].name, "default");
	assert_string_equal(c->issuers[0].api_uri, "https://ca.example.net/dir");
	assert_string_equal(c->issuers[0].account_email, "ops@example.com");
	assert_int_equal(c->issuers[0].tos_accepted, 1);
	assert_int_equal(c->issuers[0].rl_orders_per_3h, 7);
	assert_int_equal(c->issuers[0].nchallenges, 1);
	assert_int_equal(c->issuers[0].challenges[0], CONFIG_CHALLENGE_HTTP01);
	assert_int_equal(c->issuers[0].timeout, 10);
	{
		/* SIGHUP: the implicit entry follows the live rate_limits */
		struct config *nw = load(WITH("\"api_uri\":\"https://ca.example.net/dir\",\"tos_accepted\":true,"
					      "\"rate_limits\":{\"orders_per_3h\":8}"));

		assert_non_null(nw);
		assert_int_equal(config_diff(c, nw, NULL, 0), 0);
		config_apply_reload(c, nw);
		assert_int_equal(c->issuers[0].rl_orders_per_3h, 8);
		config_free(nw);
	}
	config_free(c);

	c = load(WITH("\"tos_accepted\":true,\"issuers\":["
		      "{\"name\":\"le\",\"api_uri\":\"https://acme-v02.api.letsencrypt.org/directory\"},"
		      "{\"name\":\"zs\",\"api_uri\":\"https://acme.zerossl.com/v2/DV90\","
		      "\"account_email\":\"z@example.com\",\"tos_accepted\":false,\"timeout\":3,"
		      "\"rate_limits\":{\"orders_per_3h\":9}}]"));
	assert_non_null(c);
	assert_int_equal(c->nissuers, 2);
	assert_string_equal(c->issuers[0].account_email, "ops@example.com");
	assert_int_equal(c->issuers[0].tos_accepted, 1);
	assert_int_equal(c->issuers[0].rl_orders_per_3h, 300);	/* Let's Encrypt's */
	assert_string_equal(c->issuers[1].account_email, "z@example.com");
	assert_int_equal(c->issuers[1].tos_accepted, 0);
	assert_int_equal(c->issuers[1].timeout, 3);
	assert_int_equal(c->issuers[1].rl_orders_per_3h, 9);
	assert_int_equal(c->issuers[1].rl_certs_per_domain_week, 0);	/* not Let's Encrypt */
	config_free(c);

	assert_null(load(WITH("\"api_uri\":\"https://ca.example.net/dir\",\"issuers\":["
			      "{\"name\":\"a\",\"api_uri\":\"https://ca.example.net/dir\"}]")));
	assert_contains(errs, "config: api_uri: given with issuers");
	assert_null(load(WITH("\"issuers\":[{\"api_uri\":\"https://ca.example.net/dir\"},"
			      "{\"name\":\"b\"},{\"name\":\"Bad Name\",\"api_uri\":\"https://x.example/d\"}]")));
	assert_contains(errs, "config: issuers[0]: missing name");
	assert_contains(errs, "config: issuers[1]: missing api_uri");
	assert_contains(errs, "config: issuers[2].name: expected 1 to 32 characters");
	assert_null(load(WITH("\"issuers\":[{\"name\":\"a\",\"api_uri\":\"https://x.example/d\"},"
			      "{\"name\":\"a\",\"api_uri\":\"https://y.example/d\"}]")));
	assert_contains(errs, "config: issuers: name \"a\" is given twice");
	assert_null(load(WITH("\"issuers\":[{\"name\":\"a\",\"api_uri\":\"ftp://x.example/d\","
			      "\"challenges\":[\"tls-alpn-02\"],\"colour\":1,\"timeout\":0}]")));
	assert_contains(errs, "config: issuers[0].api_uri: \"ftp://x.example/d\" is not an http(s) URL");
	assert_contains(errs, "config: issuers[0].challenges[0]: \"tls-alpn-02\" is not a challenge type");
	assert_contains(errs, "config: issuers[0].colour: unknown key");
	assert_contains(errs, "config: issuers[0].timeout: 0 is not between 1 and 300");
	assert_null(load(WITH("\"issuers\":[]")));
	assert_contains(errs, "config: issuers: []: expected an array of 1 to 8 CA objects");
	assert_null(load(WITH("\"issuers\":[{\"name\":\"a\",\"api_uri\":\"https://x.example/d\","
			      "\"eab_kid\":\"k\"}]")));
	assert_contains(errs, "config: issuers[0]: eab_kid and eab_hmac_key go together");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redis_ha_keys),
		cmocka_unit_test(test_issuers),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key_set),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_warnings),
		cmocka_unit_test(test_many_errors),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_secrets),
		cmocka_unit_test(test_domain_allowed),
		cmocka_unit_test(test_hosts),
		cmocka_unit_test(test_dns01_zone_one_label),
		cmocka_unit_test(test_addrs),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_apply_reload),
		cmocka_unit_test(test_example_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
