/* SPDX-License-Identifier: Apache-2.0 */
/* Import readers for what HAProxy itself loads (a crt directory, a
 * crt-list) and for Kong's acme plugin in Redis, plus the readers' shared
 * helpers.
 *
 * HAProxy (doc "ssl-load-extra-files", src/ssl_ckch.c): a PEM without a key
 * takes it from "<file>.key" (also "<file without .crt>.key" with
 * ssl-load-extra-files noext); "<file>.issuer" completes a chain; a "crt"
 * directory loads every file except those HAProxy treats as extra files
 * (.key .issuer .ocsp .sctl) and dot files. A crt-list line is "<crt>
 * [[<ssl options>]] [[!]<sni filter> ...]".
 *
 * Kong's acme plugin (kong/plugins/acme/client.lua, lua-resty-acme's
 * storage/redis.lua): keys "kong_acme:cert_key:<host>" = {"key","cert"},
 * "kong_acme:account:<api_uri>:<base64 email>" = {"key"} (no account URL:
 * the plugin finds it with newAccount each time), "<namespace>::" before
 * every key when a namespace is set. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "acme/crypto.h"
#include "core/config.h"
#include "core/import_int.h"
#include "lib/host.h"
#include "storage/redis_peek.h"

#define IMP_SECRET_MAX (64 * 1024)
#define IMP_CRT_LIST_MAX (64 * 1024 * 1024)

/* ---- shared helpers ------------------------------------------------------ */

#define IMP_GROW(arr, n, a)                                                        \
	((n) < (a) ? 0 : imp_grow((void **)&(arr), &(a), sizeof(*(arr))))

static int imp_grow(void **arr, size_t *a, size_t size)
{
	size_t na = *a ? *a * 2 : 64;
	void *p = realloc(*arr, na * size);

	if (!p)
		return -1;
	*arr = p;
	*a = na;
	return 0;
}

int imp_add_cand(struct imp_set *s, const char *origin, const char *pem, size_t len,
		 const char *name)
{
	struct imp_cand *c;

	if (IMP_GROW(s->cands, s->ncands, s->acands) == -1)
		return -1;
	c = &s->cands[s->ncands];
	memset(c, 0, sizeof(*c));
	c->origin = strdup(origin);
	c->pem = malloc(len + 1);
	c->name = name ? strdup(name) : NULL;
	if (!c->origin || !c->pem || (name && !c->name)) {
		free(c->origin);
		free(c->pem);
		free(c->name);
		return -1;
	}
	memcpy(c->pem, pem, len);
	c->pem[len] = '\0';
	c->len = len;
	s->ncands++;
	return 0;
}

int imp_add_parts(struct imp_set *s, const char *origin, const char *chain, size_t chain_len,
		  const char *key, size_t key_len, const char *name)
{
	size_t len = chain_len + key_len + 1;
	char *pem = malloc(len + 1);
	int rc;

	if (!pem)
		return -1;
	memcpy(pem, chain, chain_len);
	len = chain_len;
	if (len && pem[len - 1] != '\n')
		pem[len++] = '\n';
	memcpy(pem + len, key, key_len);
	len += key_len;
	pem[len] = '\0';
	rc = imp_add_cand(s, origin, pem, len, name);
	crypto_secret_free(pem, len);
	return rc;
}

int imp_add_acct(struct imp_set *s, const char *origin, const char *key_pem, size_t key_len,
		 const char *url, const char *email, int same_ca)
{
	struct imp_acct *a;

	if (IMP_GROW(s->accts, s->naccts, s->aaccts) == -1)
		return -1;
	a = &s->accts[s->naccts];
	memset(a, 0, sizeof(*a));
	a->origin = strdup(origin);
	a->key_pem = malloc(key_len + 1);
	a->url = url && *url ? strdup(url) : NULL;
	a->email = strdup(email ? email : "");
	if (!a->origin || !a->key_pem || !a->email || (url && *url && !a->url)) {
		free(a->origin);
		free(a->key_pem);
		free(a->url);
		free(a->email);
		return -1;
	}
	memcpy(a->key_pem, key_pem, key_len);
	a->key_pem[key_len] = '\0';
	a->key_len = key_len;
	a->same_ca = same_ca;
	s->naccts++;
	return 0;
}

int imp_add_refusal(struct imp_set *s, const char *origin, const char *fmt, ...)
{
	struct imp_refusal *r;
	va_list ap;
	int n;

	if (IMP_GROW(s->refs, s->nrefs, s->arefs) == -1)
		return -1;
	r = &s->refs[s->nrefs];
	r->origin = strdup(origin);
	va_start(ap, fmt);
	n = vasprintf(&r->reason, fmt, ap);
	va_end(ap);
	if (!r->origin || n < 0) {
		free(r->origin);
		if (n >= 0)
			free(r->reason);
		return -1;
	}
	s->nrefs++;
	return 0;
}

char *imp_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
	char *buf = NULL;
	struct stat st;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		snprintf(err, errlen, "%s: %s", path, !S_ISREG(st.st_mode) ? "not a file" : "too large");
		goto fail;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "%s: %s", path, r == 0 ? "truncated" : strerror(errno));
			goto fail;
		}
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*len = got;
	return buf;
fail:
	if (buf)
		crypto_secret_free(buf, (size_t)st.st_size);
	close(fd);
	return NULL;
}

char *imp_read_secret(const char *path, size_t *len, char *err, size_t errlen)
{
	return imp_read_file(path, IMP_SECRET_MAX, len, err, errlen);
}

/* ---- JWK (certbot's private_key.json) ------------------------------------ */

static BIGNUM *imp_jwk_bn(json_t *jwk, const char *name)
{
	const char *v = json_string_value(json_object_get(jwk, name));
	unsigned char *bin;
	size_t blen = 0;
	BIGNUM *bn;

	if (!v || !(bin = crypto_b64url_decode(v, strlen(v), &blen)))
		return NULL;
	bn = BN_bin2bn(bin, (int)blen, NULL);
	OPENSSL_cleanse(bin, blen);
	free(bin);
	return bn;
}

char *imp_jwk_to_pem(const char *json, size_t len, size_t *pem_len, char *err, size_t errlen)
{
	static const char *const rsa_names[] = { "n", "e", "d", "p", "q", "dp", "dq", "qi" };
	static const char *const rsa_params[] = {
		OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
		OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2,
		OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
		OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	BIGNUM *bn[8] = { 0 };
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;
	json_t *jwk = json_loadb(json, len, 0, NULL);
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	unsigned char *pub = NULL;
	char *pem = NULL;
	size_t i;

	if (!jwk || !kty || !bld) {
		snprintf(err, errlen, "not a JWK");
		goto out;
	}
	if (strcmp(kty, "RSA") == 0) {
		for (i = 0; i < 8; i++) {
			if (!(bn[i] = imp_jwk_bn(jwk, rsa_names[i])) ||
			    !OSSL_PARAM_BLD_push_BN(bld, rsa_params[i], bn[i])) {
				snprintf(err, errlen, "RSA JWK without a good \"%s\"", rsa_names[i]);
				goto out;
			}
		}
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	} else if (strcmp(kty, "EC") == 0) {
		const char *crv = json_string_value(json_object_get(jwk, "crv"));
		const char *group = crv && !strcmp(crv, "P-256") ? "prime256v1" :
				    crv && !strcmp(crv, "P-384") ? "secp384r1" : NULL;
		size_t fl = crv && !strcmp(crv, "P-384") ? 48 : 32;

		bn[0] = imp_jwk_bn(jwk, "x");
		bn[1] = imp_jwk_bn(jwk, "y");
		bn[2] = imp_jwk_bn(jwk, "d");
		if (!group || !bn[0] || !bn[1] || !bn[2] || !(pub = calloc(1, 1 + 2 * fl)) ||
		    BN_bn2binpad(bn[0], pub + 1, (int)fl) < 0 || BN_bn2binpad(bn[1], pub + 1 + fl, (int)fl) < 0) {
			snprintf(err, errlen, "EC JWK: unsupported curve or bad coordinates");
			goto out;
		}
		pub[0] = 4;	/* uncompressed point */
		if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * fl) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn[2])) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	} else {
		snprintf(err, errlen, "JWK key type %.16s is not supported", kty);
		goto out;
	}
	if (!(params = OSSL_PARAM_BLD_to_param(bld)) || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_KEYPAIR, params) <= 0) {
		crypto_ssl_err(err, errlen, "JWK");
		goto out;
	}
	if (!(pem = crypto_key_to_pem(pk, pem_len)))
		snprintf(err, errlen, "cannot encode the key");
out:
	for (i = 0; i < 8; i++)
		BN_clear_free(bn[i]);
	free(pub);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	json_decref(jwk);
	return pem;
}

/* ---- crt-dir, crt-list ---------------------------------------------------- */

static int imp_has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

/* The name a file is named after: its base name without ".pem"/".crt",
 * "_wildcard_." standing for "*."; "" when that is no host name (then the
 * certificate's own names count). */
static void imp_file_name(const char *path, char *out, size_t outlen)
{
	const char *b = strrchr(path, '/');
	char stem[HOST_MAXLEN + 16];
	size_t n;

	b = b ? b + 1 : path;
	snprintf(stem, sizeof(stem), "%s", b);
	n = strlen(stem);
	if (n > 4 && (!strcmp(stem + n - 4, ".pem") || !strcmp(stem + n - 4, ".crt")))
		stem[n - 4] = '\0';
	if (!strncmp(stem, "_wildcard_.", 11))
		snprintf(out, outlen, "*.%.*s", (int)(outlen > 3 ? outlen - 3 : 0), stem + 11);
	else
		snprintf(out, outlen, "%s", stem);
	if (!host_valid(out, HOST_WILDCARD))
		out[0] = '\0';
}

/* One PEM as HAProxy loads it: its key from "<path>.key" (or "<stem>.key"
 * for a ".crt") when it holds none, a lone leaf completed by
 * "<path>.issuer". <name> (may be NULL): the name it must cover. */
static void imp_add_haproxy_pem(struct imp_set *s, const char *path, const char *name)
{
	char err[512], side[4200], *pem = NULL, *extra = NULL, *key = NULL, *buf = NULL;
	size_t len = 0, elen = 0, klen = 0, blen;

	if (!(pem = imp_read_file(path, CRYPTO_BUNDLE_MAX, &len, err, sizeof(err)))) {
		imp_add_refusal(s, path, "%s", err);
		return;
	}
	if (!strstr(pem, "PRIVATE KEY-----")) {
		snprintf(side, sizeof(side), "%s.key", path);
		if (access(side, F_OK) == -1 && imp_has_suffix(path, ".crt"))
			snprintf(side, sizeof(side), "%.*s.key", (int)(strlen(path) - 4), path);
		if (!(key = imp_read_secret(side, &klen, err, sizeof(err)))) {
			imp_add_refusal(s, path, "no private key in it nor in %s", side);
			goto out;
		}
	}
	snprintf(side, sizeof(side), "%s.issuer", path);
	if (access(side, F_OK) == 0) {
		const char *first = strstr(pem, "-----BEGIN CERTIFICATE-----");

		/* only a lone leaf: a file that has its chain keeps it */
		if (first && !strstr(first + 1, "-----BEGIN CERTIFICATE-----") &&
		    !(extra = imp_read_file(side, CRYPTO_BUNDLE_MAX, &elen, err, sizeof(err)))) {
			imp_add_refusal(s, path, "%s", err);
			goto out;
		}
	}
	blen = len + elen + 2;
	if (!(buf = malloc(blen + 1)))
		goto out;
	memcpy(buf, pem, len);
	blen = len;
	if (extra) {
		if (blen && buf[blen - 1] != '\n')
			buf[blen++] = '\n';
		memcpy(buf + blen, extra, elen);
		blen += elen;
	}
	buf[blen] = '\0';
	if (key)
		imp_add_parts(s, path, buf, blen, key, klen, name);
	else
		imp_add_cand(s, path, buf, blen, name);
out:
	if (buf)
		crypto_secret_free(buf, strlen(buf));
	crypto_secret_free(pem, len);
	free(extra);
	crypto_secret_free(key, klen);
}

int imp_read_crt_dir(struct imp_set *s, const char *dir, char *err, size_t errlen)
{
	static const char *const extra[] = { ".key", ".issuer", ".ocsp", ".sctl" };
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		char path[4400], name[HOST_MAXLEN + 1];
		size_t i;
		int skip = de->d_name[0] == '.';

		for (i = 0; !skip && i < sizeof(extra) / sizeof(extra[0]); i++)
			skip = imp_has_suffix(de->d_name, extra[i]);
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (skip || access(path, R_OK) == -1)
			continue;
		{
			struct stat st;

			if (stat(path, &st) == -1 || !S_ISREG(st.st_mode))
				continue;
		}
		imp_file_name(path, name, sizeof(name));
		imp_add_haproxy_pem(s, path, name[0] ? name : NULL);
	}
	closedir(d);
	return 0;
}

int imp_read_crt_list(struct imp_set *s, const char *file, char *err, size_t errlen)
{
	char *text, *line, *save = NULL, *tsave = NULL, base[4096];
	const char *slash = strrchr(file, '/');
	size_t len, lineno = 0;

	if (!(text = imp_read_file(file, IMP_CRT_LIST_MAX, &len, err, errlen)))
		return -1;
	/* relative entries: taken from the crt-list's own directory (HAProxy
	 * takes them from crt-base, which this file does not name) */
	snprintf(base, sizeof(base), "%.*s", slash ? (int)(slash - file) : 1, slash ? file : ".");
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *p = line, *crt, *tok, path[8400], origin[8500], name[HOST_MAXLEN + 1] = "";

		lineno++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			continue;
		p[strcspn(p, "\r")] = '\0';
		crt = p;
		p += strcspn(p, " \t");
		if (*p)
			*p++ = '\0';
		/* skip the [ssl options] block */
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '[') {
			char *end = strchr(p, ']');

			if (!end) {
				snprintf(origin, sizeof(origin), "%s:%zu", file, lineno);
				imp_add_refusal(s, origin, "unterminated [options]");
				continue;
			}
			p = end + 1;
		}
		/* the first positive SNI filter is the name it serves */
		for (tok = strtok_r(p, " \t", &tsave); tok; tok = strtok_r(NULL, " \t", &tsave))
			if (tok[0] != '!' && host_normalize(tok, name, sizeof(name), HOST_WILDCARD) == 0)
				break;
		if (crt[0] == '/')
			snprintf(path, sizeof(path), "%s", crt);
		else
			snprintf(path, sizeof(path), "%s/%s", base, crt);
		if (!name[0])
			imp_file_name(path, name, sizeof(name));
		imp_add_haproxy_pem(s, path, name[0] ? name : NULL);
	}
	free(text);
	return 0;
}

/* ---- Kong (Redis) -------------------------------------------------------- */

/* The keys matching <prefix>kong_acme:<what>* in Kong's Redis, into *keys and
 * *n (redis_peek_keys_free), *pl the length of the part before the '*': 0,
 * or -1 with a refusal added under the pattern when the scan fails. */
static int imp_kong_keys(struct imp_set *s, struct redis_peek *rp, const char *prefix,
			 const char *what, char ***keys, size_t *n, size_t *pl)
{
	char pattern[600], err[256];

	snprintf(pattern, sizeof(pattern), "%skong_acme:%s*", prefix, what);
	*pl = strlen(pattern) - 1;
	if (redis_peek_scan(rp, pattern, keys, n, err, sizeof(err)) == -1) {
		imp_add_refusal(s, pattern, "SCAN: %s", err);
		return -1;
	}
	return 0;
}

/* GETs the Kong record <key> and parses it: the JSON, or NULL when it is
 * missing, unreadable or not JSON; the record's text is cleansed at once. */
static json_t *imp_kong_get(struct redis_peek *rp, const char *key)
{
	char *val, err[256];
	size_t len;
	json_t *j;

	if (redis_peek_get(rp, key, &val, &len, err, sizeof(err)) != 0)
		return NULL;
	j = json_loadb(val, len, 0, NULL);
	OPENSSL_cleanse(val, len);
	free(val);
	return j;
}

/* Cleanses the record's private key <key> (a string inside <j>, or NULL),
 * then frees <j>. */
static void imp_kong_drop(json_t *j, const char *key)
{
	if (key)
		OPENSSL_cleanse((void *)key, strlen(key));
	json_decref(j);
}

static void imp_kong_certs(struct imp_set *s, struct redis_peek *rp, const char *prefix)
{
	char **keys = NULL;
	size_t n = 0, i, pl;

	if (imp_kong_keys(s, rp, prefix, "cert_key:", &keys, &n, &pl) == -1)
		goto out;
	for (i = 0; i < n; i++) {
		json_t *j = imp_kong_get(rp, keys[i]);
		const char *cert = json_string_value(json_object_get(j, "cert"));
		const char *key = json_string_value(json_object_get(j, "key"));

		if (!cert || !key)
			imp_add_refusal(s, keys[i], "not a Kong {\"cert\",\"key\"} record");
		else
			imp_add_parts(s, keys[i], cert, strlen(cert), key, strlen(key), keys[i] + pl);
		imp_kong_drop(j, key);
	}
out:
	redis_peek_keys_free(keys, n);
}

static void imp_kong_accounts(struct imp_set *s, struct redis_peek *rp, const char *prefix)
{
	char **keys = NULL;
	size_t n = 0, i, pl;

	if (imp_kong_keys(s, rp, prefix, "account:", &keys, &n, &pl) == -1)
		goto out;
	for (i = 0; i < n; i++) {
		/* "<api_uri>:<base64 email>": the URI holds ':' too, the email's
		 * base64 never does */
		const char *rest = keys[i] + pl, *colon = strrchr(rest, ':');
		size_t ul = colon ? (size_t)(colon - rest) : 0;
		json_t *j;
		const char *key;
		char email[512] = "";
		BIO *b64, *mem;
		int got;

		if (!colon)
			continue;
		b64 = BIO_new(BIO_f_base64());
		mem = BIO_new_mem_buf(colon + 1, -1);
		if (b64 && mem) {
			BIO_set_flags(b64, BIO_FLAGS_BASE64_NO_NL);
			mem = BIO_push(b64, mem);
			b64 = NULL;
			got = BIO_read(mem, email, sizeof(email) - 1);
			email[got > 0 ? got : 0] = '\0';
		}
		BIO_free(b64);
		BIO_free_all(mem);
		j = imp_kong_get(rp, keys[i]);
		key = json_string_value(json_object_get(j, "key"));
		if (!key)
			imp_add_refusal(s, keys[i], "not a Kong {\"key\"} account record");
		else
			imp_add_acct(s, keys[i], key, strlen(key),
				     json_string_value(json_object_get(j, "kid")), email,
				     strlen(s->api_uri) == ul && strncmp(rest, s->api_uri, ul) == 0);
		imp_kong_drop(j, key);
	}
out:
	redis_peek_keys_free(keys, n);
}

int imp_read_kong_redis(struct imp_set *s, const char *spec, char *err, size_t errlen)
{
	char host[256], prefix[300] = "", why[256];
	const char *slash = strchr(spec, '/'), *colon = NULL, *p;
	struct redis_peek *rp;
	long port;
	char *end;

	/* the port's ':' is the last before the namespace, which may hold any */
	for (p = spec; *p && (!slash || p < slash); p++)
		if (*p == ':')
			colon = p;
	if (!colon || (size_t)(colon - spec) >= sizeof(host)) {
		snprintf(err, errlen, "kong-redis:%s: expected HOST:PORT[/NAMESPACE]", spec);
		return -1;
	}
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || (*end && *end != '/') || port < 1 || port > 65535) {
		snprintf(err, errlen, "kong-redis:%s: bad port", spec);
		return -1;
	}
	if (*end == '/' && end[1])
		snprintf(prefix, sizeof(prefix), "%s::", end + 1);
	/* on the import's loop (the storage's too): nothing waits idle on a
	 * socket while a reply is awaited */
	rp = redis_peek_open(s->loop, host, (int)port, 2000, why, sizeof(why));
	if (!rp) {
		snprintf(err, errlen, "kong-redis %s:%ld: %s", host, port, why);
		return -1;
	}
	imp_kong_certs(s, rp, prefix);
	imp_kong_accounts(s, rp, prefix);
	redis_peek_close(rp);
	return 0;
}
