/* SPDX-License-Identifier: Apache-2.0 */
/* Import readers for the ACME clients people leave: certbot, lego, Caddy
 * (certmagic) and acme.sh. Each reads the layout its tool writes, as its own
 * source defines it:
 *  - certbot (certbot/_internal/storage.py, account.py, configuration.py):
 *    live/<lineage>/{fullchain,privkey}.pem (links into archive/),
 *    renewal/<lineage>.conf, accounts/<netloc><path>/<id>/{private_key.json
 *    (a JWK), regr.json ({"body":..., "uri": account URL}), meta.json};
 *  - lego (cmd/certs_storage.go, cmd/accounts_storage.go):
 *    certificates/<domain>.{crt,key,issuer.crt,json} ('*' written '_'),
 *    accounts/<host with ':' as '_'>/<email>/{account.json
 *    ({"email","registration":{"body","uri"}}), keys/<email>.key};
 *  - certmagic (storage.go, account.go): certificates/<issuer key>/<name>/
 *    <name>.{crt,key,json}, acme/<issuer key>/users/<email>/<user>.{json
 *    ({"location": account URL, "contact"}),key}; the issuer key is the CA's
 *    host + "-" + its path, made safe (lower case, ':' as '-', '/' dropped...);
 *  - acme.sh (acme.sh): <domain>[_ecc]/{<domain>.conf (Le_Domain),
 *    fullchain.cer, <domain>.key}, ca/<host>/<path>/{account.key, ca.conf
 *    (ACCOUNT_URL)} where <host> and <path> are cut from the directory URL
 *    as its _ACME_SERVER_HOST/_ACME_SERVER_PATH do (the port is dropped). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "acme/crypto.h"
#include "core/config.h"
#include "core/import_int.h"
#include "lib/host.h"

#define IMP_JSON_MAX (64 * 1024)
#define IMP_CONF_MAX (64 * 1024)

/* The directory URL split as most tools do: <host> with the port, <path>
 * without its leading '/'. -1 when it is no http(s) URL. */
static int imp_url_split(const char *url, char *host, size_t hostlen, char *path, size_t pathlen)
{
	const char *p = strstr(url, "://"), *slash;

	if (!p)
		return -1;
	p += 3;
	slash = strchr(p, '/');
	if (!slash)
		slash = p + strlen(p);
	if ((size_t)(slash - p) >= hostlen || strlen(slash) >= pathlen + 1)
		return -1;
	memcpy(host, p, (size_t)(slash - p));
	host[slash - p] = '\0';
	snprintf(path, pathlen, "%s", *slash ? slash + 1 : "");
	return 0;
}

static int imp_is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int imp_is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static json_t *imp_load_json(const char *path, char *err, size_t errlen)
{
	size_t len;
	char *text = imp_read_file(path, IMP_JSON_MAX, &len, err, errlen);
	json_error_t je;
	json_t *j;

	if (!text)
		return NULL;
	j = json_loadb(text, len, 0, &je);
	free(text);
	if (!j)
		snprintf(err, errlen, "not JSON: %s", je.text);
	return j;
}

/* "mailto:a@b" -> "a@b" of the first contact of <contacts>, "" without. */
static const char *imp_contact_email(json_t *contacts)
{
	const char *c = json_string_value(json_array_get(contacts, 0));

	if (!c)
		return "";
	return strncmp(c, "mailto:", 7) == 0 ? c + 7 : c;
}

/* Adds the bundle of <chain_path> (completed by <issuer_path> when it holds
 * the leaf alone and <issuer_path> is not NULL) + <key_path>, or a refusal
 * naming the file that cannot be read. */
static void imp_add_files_issuer(struct imp_set *s, const char *origin, const char *chain_path,
				 const char *issuer_path, const char *key_path, const char *name)
{
	char err[512], *chain = NULL, *key = NULL, *iss = NULL, *both = NULL;
	size_t clen = 0, klen = 0, ilen = 0;
	const char *first;

	chain = imp_read_file(chain_path, CRYPTO_BUNDLE_MAX, &clen, err, sizeof(err));
	if (chain)
		key = imp_read_secret(key_path, &klen, err, sizeof(err));
	if (!chain || !key) {
		imp_add_refusal(s, origin, "%s", err);
		goto out;
	}
	first = strstr(chain, "-----BEGIN CERTIFICATE-----");
	if (issuer_path && first && !strstr(first + 1, "-----BEGIN CERTIFICATE-----") &&
	    imp_is_file(issuer_path) &&
	    (iss = imp_read_file(issuer_path, CRYPTO_BUNDLE_MAX, &ilen, err, sizeof(err))) &&
	    (both = malloc(clen + ilen + 2))) {
		memcpy(both, chain, clen);
		if (clen && both[clen - 1] != '\n')
			both[clen++] = '\n';
		memcpy(both + clen, iss, ilen);
		clen += ilen;
		both[clen] = '\0';
	}
	imp_add_parts(s, origin, both ? both : chain, clen, key, klen, name);
out:
	free(chain);
	free(iss);
	free(both);
	crypto_secret_free(key, klen);
}

static void imp_add_files(struct imp_set *s, const char *origin, const char *chain_path,
			  const char *key_path, const char *name)
{
	imp_add_files_issuer(s, origin, chain_path, NULL, key_path, name);
}

/* ---- certbot ------------------------------------------------------------- */

/* Walks the tree below <root> (at most 8 levels deep), <rel> the path walked
 * so far ("" at the top), dot entries skipped: <visit> is called for every
 * entry with the directory it is in (<root>/<rel>), its path relative to
 * <root>, its full path and its name; it returns 1 when the entry was an
 * account (not descended into), 0 otherwise (a directory is then walked). */
typedef int (*imp_acct_visit)(struct imp_set *s, const char *dir, const char *rel,
			      const char *full, const char *name, const char *want);

static void imp_walk_accounts(struct imp_set *s, const char *root, const char *rel,
			      const char *want, int depth, imp_acct_visit visit)
{
	char path[4096], sub[4096], full[8200];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	if (depth > 8 || !(d = opendir(path)))
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		snprintf(full, sizeof(full), "%s/%s", root, sub);
		if (!visit(s, path, rel, full, de->d_name, want) && imp_is_dir(full))
			imp_walk_accounts(s, root, sub, want, depth + 1, visit);
	}
	closedir(d);
}

/* Adds the account whose PEM key is the file <kp> (uri, email as
 * imp_add_acct takes them), or a refusal naming <kp> when it cannot be read;
 * <err> is the buffer the read's error goes through. */
static void imp_add_acct_key(struct imp_set *s, const char *kp, const char *uri,
			     const char *email, int current, char *err, size_t errlen)
{
	size_t plen = 0;
	char *pem = imp_read_secret(kp, &plen, err, errlen);

	if (!pem)
		imp_add_refusal(s, kp, "account key: %s", err);
	else
		imp_add_acct(s, kp, pem, plen, uri, email, current);
	crypto_secret_free(pem, plen);
}

/* A certbot account directory below <dir>/accounts: <rel> is the server
 * path (compared with netloc + path of the config's api_uri), <name> the
 * account id. */
static int imp_certbot_account(struct imp_set *s, const char *dir, const char *rel,
			       const char *full, const char *name, const char *want)
{
	char keyp[8300], regp[8300], err[256];
	char *json = NULL, *pem = NULL;
	size_t jlen = 0, plen = 0;
	json_t *regr;

	snprintf(keyp, sizeof(keyp), "%s/private_key.json", full);
	if (!imp_is_file(keyp))
		return 0;
	snprintf(regp, sizeof(regp), "%s/regr.json", full);
	regr = imp_load_json(regp, err, sizeof(err));
	json = imp_read_secret(keyp, &jlen, err, sizeof(err));
	if (json)
		pem = imp_jwk_to_pem(json, jlen, &plen, err, sizeof(err));
	if (!pem)
		imp_add_refusal(s, keyp, "account key: %s", err);
	else
		imp_add_acct(s, keyp, pem, plen, json_string_value(json_object_get(regr, "uri")),
			     imp_contact_email(json_object_get(json_object_get(regr, "body"), "contact")),
			     strcmp(rel, want) == 0);
	crypto_secret_free(json, jlen);
	crypto_secret_free(pem, plen);
	json_decref(regr);
	return 1;
}

int imp_read_certbot(struct imp_set *s, const char *dir, char *err, size_t errlen)
{
	char live[4096], host[512], path[1024], want[1600];
	struct dirent *de;
	DIR *d;

	snprintf(live, sizeof(live), "%s/live", dir);
	if (!(d = opendir(live))) {
		snprintf(err, errlen, "%s: no certbot live/ directory here", dir);
		return -1;
	}
	while ((de = readdir(d))) {
		char lin[4400], chain[4500], key[4500];

		if (de->d_name[0] == '.' || strcmp(de->d_name, "README") == 0)
			continue;
		snprintf(lin, sizeof(lin), "%s/%s", live, de->d_name);
		if (!imp_is_dir(lin))
			continue;
		/* the lineage's current version: live/ links to the newest archive/ files */
		snprintf(chain, sizeof(chain), "%s/fullchain.pem", lin);
		snprintf(key, sizeof(key), "%s/privkey.pem", lin);
		imp_add_files(s, lin, chain, key, NULL);
	}
	closedir(d);
	if (imp_url_split(s->api_uri, host, sizeof(host), path, sizeof(path)) == -1)
		return 0;
	/* configuration.py server_path: netloc + path, the port kept */
	snprintf(want, sizeof(want), "%s%s%s", host, path[0] ? "/" : "", path);
	snprintf(live, sizeof(live), "%s/accounts", dir);
	imp_walk_accounts(s, live, "", want, 0, imp_certbot_account);
	return 0;
}

/* ---- lego ---------------------------------------------------------------- */

int imp_read_lego(struct imp_set *s, const char *dir, char *err, size_t errlen)
{
	char certs[4096], host[512], path[1024], acc[4096];
	struct dirent *de, *de2;
	DIR *d;
	char *p;

	snprintf(certs, sizeof(certs), "%s/certificates", dir);
	if (!(d = opendir(certs))) {
		snprintf(err, errlen, "%s: no lego certificates/ directory here", dir);
		return -1;
	}
	while ((de = readdir(d))) {
		char crt[4400], key[4400], js[4400], iss[4400], stem[256], name[HOST_MAXLEN + 1] = "";
		size_t n = strlen(de->d_name);
		json_t *meta;

		if (de->d_name[0] == '.' || n < 5 || strcmp(de->d_name + n - 4, ".crt") != 0 ||
		    (n > 11 && strcmp(de->d_name + n - 11, ".issuer.crt") == 0) || n - 4 >= sizeof(stem))
			continue;
		memcpy(stem, de->d_name, n - 4);
		stem[n - 4] = '\0';
		snprintf(crt, sizeof(crt), "%s/%s", certs, de->d_name);
		snprintf(key, sizeof(key), "%s/%s.key", certs, stem);
		snprintf(js, sizeof(js), "%s/%s.json", certs, stem);
		/* the .json resource names the domain the files are named after */
		meta = imp_load_json(js, err, errlen);
		if (json_string_value(json_object_get(meta, "domain")))
			snprintf(name, sizeof(name), "%s", json_string_value(json_object_get(meta, "domain")));
		json_decref(meta);
		/* lego's .crt is the bundle (leaf + issuer) unless --no-bundle:
		 * then <domain>.issuer.crt completes it */
		snprintf(iss, sizeof(iss), "%s/%s.issuer.crt", certs, stem);
		imp_add_files_issuer(s, crt, crt, iss, key, name[0] ? name : NULL);
	}
	closedir(d);
	if (imp_url_split(s->api_uri, host, sizeof(host), path, sizeof(path)) == -1)
		return 0;
	for (p = host; *p; p++)
		if (*p == ':')
			*p = '_';
	snprintf(acc, sizeof(acc), "%s/accounts", dir);
	if (!(d = opendir(acc)))
		return 0;
	while ((de = readdir(d))) {
		char srv[4400];
		DIR *d2;

		if (de->d_name[0] == '.')
			continue;
		snprintf(srv, sizeof(srv), "%s/%s", acc, de->d_name);
		if (!(d2 = opendir(srv)))
			continue;
		while ((de2 = readdir(d2))) {
			char aj[8800], kp[8800];
			json_t *a;

			if (de2->d_name[0] == '.')
				continue;
			snprintf(aj, sizeof(aj), "%s/%s/account.json", srv, de2->d_name);
			snprintf(kp, sizeof(kp), "%s/%s/keys/%s.key", srv, de2->d_name, de2->d_name);
			if (!imp_is_file(kp))
				continue;
			a = imp_load_json(aj, err, errlen);
			imp_add_acct_key(s, kp,
					 json_string_value(json_object_get(json_object_get(a, "registration"), "uri")),
					 de2->d_name, strcmp(de->d_name, host) == 0, err, errlen);
			json_decref(a);
		}
		closedir(d2);
	}
	closedir(d);
	return 0;
}

/* ---- Caddy (certmagic) --------------------------------------------------- */

/* certmagic's KeyBuilder.Safe(): lower case, trimmed, ' ' '_', '+' "_plus_",
 * '*' "wildcard_", ':' '-', ".." dropped, then only [A-Za-z0-9_@.-] kept. */
static void imp_certmagic_safe(const char *in, char *out, size_t outlen)
{
	char tmp[1024];
	size_t o = 0, i;

	for (i = 0; in[i] && o + 10 < sizeof(tmp); i++) {
		char c = in[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c == ' ')
			tmp[o++] = '_';
		else if (c == '+')
			o += (size_t)snprintf(tmp + o, sizeof(tmp) - o, "_plus_");
		else if (c == '*')
			o += (size_t)snprintf(tmp + o, sizeof(tmp) - o, "wildcard_");
		else if (c == ':')
			tmp[o++] = '-';
		else if (c == '.' && in[i + 1] == '.')
			i++;
		else
			tmp[o++] = c;
	}
	tmp[o] = '\0';
	for (i = 0, o = 0; tmp[i] && o + 1 < outlen; i++) {
		char c = tmp[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '@' || c == '.' || c == '-')
			out[o++] = c;
	}
	out[o] = '\0';
}

/* certmagic's issuerKey(): host, then "-" + the path without its slashes at
 * either end, made safe. */
static void imp_certmagic_issuer_key(const char *url, char *out, size_t outlen)
{
	char host[512], path[1024], key[1600];
	size_t n;

	out[0] = '\0';
	if (imp_url_split(url, host, sizeof(host), path, sizeof(path)) == -1)
		return;
	n = strlen(path);
	while (n && path[n - 1] == '/')
		path[--n] = '\0';
	snprintf(key, sizeof(key), "%s%s%s", host, path[0] ? "-" : "", path);
	imp_certmagic_safe(key, out, outlen);
}

int imp_read_caddy(struct imp_set *s, const char *dir, char *err, size_t errlen)
{
	char certs[4096], want[1024], users[4096];
	struct dirent *de, *de2;
	DIR *d, *d2;

	snprintf(certs, sizeof(certs), "%s/certificates", dir);
	if (!(d = opendir(certs))) {
		snprintf(err, errlen, "%s: no certmagic certificates/ directory here", dir);
		return -1;
	}
	while ((de = readdir(d))) {
		char iss[4400];

		if (de->d_name[0] == '.')
			continue;
		snprintf(iss, sizeof(iss), "%s/%s", certs, de->d_name);
		if (!(d2 = opendir(iss)))
			continue;
		while ((de2 = readdir(d2))) {
			char crt[9000], key[9000], name[512];
			const char *n = de2->d_name;

			if (n[0] == '.')
				continue;
			snprintf(crt, sizeof(crt), "%s/%s/%s.crt", iss, n, n);
			snprintf(key, sizeof(key), "%s/%s/%s.key", iss, n, n);
			if (!imp_is_file(crt))
				continue;
			/* the folder is Safe(name): a wildcard is "wildcard_.<zone>" */
			snprintf(name, sizeof(name), "%s%s", strncmp(n, "wildcard_.", 10) ? "" : "*.",
				 strncmp(n, "wildcard_.", 10) ? n : n + 10);
			imp_add_files(s, crt, crt, key, host_valid(name, HOST_WILDCARD) ? name : NULL);
		}
		closedir(d2);
	}
	closedir(d);
	imp_certmagic_issuer_key(s->api_uri, want, sizeof(want));
	snprintf(users, sizeof(users), "%s/acme", dir);
	if (!(d = opendir(users)))
		return 0;
	while ((de = readdir(d))) {
		char up[4400];

		if (de->d_name[0] == '.')
			continue;
		snprintf(up, sizeof(up), "%s/%s/users", users, de->d_name);
		if (!(d2 = opendir(up)))
			continue;
		while ((de2 = readdir(d2))) {
			char user[256], jp[9000], kp[9000], *at;
			json_t *a;

			if (de2->d_name[0] == '.')
				continue;
			/* account.go storageSafeUserKey: the file is named after the
			 * email's user part */
			snprintf(user, sizeof(user), "%s", de2->d_name[0] == '@' ? de2->d_name + 1 : de2->d_name);
			if ((at = strchr(user, '@')) && at != user)
				*at = '\0';
			snprintf(jp, sizeof(jp), "%s/%s/%s.json", up, de2->d_name, user);
			snprintf(kp, sizeof(kp), "%s/%s/%s.key", up, de2->d_name, user);
			if (!imp_is_file(kp))
				continue;
			a = imp_load_json(jp, err, errlen);
			imp_add_acct_key(s, kp, json_string_value(json_object_get(a, "location")),
					 imp_contact_email(json_object_get(a, "contact")),
					 strcmp(de->d_name, want) == 0, err, errlen);
			json_decref(a);
		}
		closedir(d2);
	}
	closedir(d);
	return 0;
}

/* ---- acme.sh ------------------------------------------------------------- */

/* The value of shell assignment <var>='...' in <conf>, into <out>. */
static int imp_shell_var(const char *conf, const char *var, char *out, size_t outlen)
{
	size_t vl = strlen(var);
	const char *p = conf;

	while (p && *p) {
		const char *eol = strchr(p, '\n');
		size_t ll = eol ? (size_t)(eol - p) : strlen(p);

		if (ll > vl && strncmp(p, var, vl) == 0 && p[vl] == '=') {
			const char *v = p + vl + 1, *e = p + ll;

			if (v < e && (*v == '\'' || *v == '"') && e[-1] == *v && e - v >= 2) {
				v++;
				e--;
			}
			if ((size_t)(e - v) >= outlen)
				return -1;
			memcpy(out, v, (size_t)(e - v));
			out[e - v] = '\0';
			return 0;
		}
		p = eol ? eol + 1 : NULL;
	}
	return -1;
}

/* acme.sh's CA_DIR of <url>: _ACME_SERVER_HOST is the text between "//" and
 * the next ':' or '/' (the port is dropped); _ACME_SERVER_PATH what follows
 * the host's first '/'. */
static void imp_acmesh_ca_dir(const char *url, char *out, size_t outlen)
{
	char host[512], path[1024], *colon;

	out[0] = '\0';
	if (imp_url_split(url, host, sizeof(host), path, sizeof(path)) == -1)
		return;
	if ((colon = strchr(host, ':')))
		*colon = '\0';
	snprintf(out, outlen, "%s/%s", host, path);
}

/* An acme.sh account: the file account.key in <dir>, whose ca.conf names its
 * URL and email; <rel> (<dir> below the CA directory) is compared with the
 * config's CA_DIR. */
static int imp_acmesh_account(struct imp_set *s, const char *dir, const char *rel,
			      const char *full, const char *name, const char *want)
{
	char cc[8200], url[2048] = "", email[512] = "", err[256], *conf;
	size_t clen = 0;

	if (strcmp(name, "account.key") != 0 || !imp_is_file(full))
		return 0;
	snprintf(cc, sizeof(cc), "%s/ca.conf", dir);
	conf = imp_read_file(cc, IMP_CONF_MAX, &clen, err, sizeof(err));
	if (conf) {
		imp_shell_var(conf, "ACCOUNT_URL", url, sizeof(url));
		imp_shell_var(conf, "CA_EMAIL", email, sizeof(email));
	}
	free(conf);
	imp_add_acct_key(s, full, url[0] ? url : NULL, email, strcmp(rel, want) == 0, err,
			 sizeof(err));
	return 1;
}

int imp_read_acmesh(struct imp_set *s, const char *dir, char *err, size_t errlen)
{
	char want[1600], ca[4096];
	struct dirent *de;
	DIR *d;

	if (!(d = opendir(dir))) {
		snprintf(err, errlen, "%s: cannot open the acme.sh home", dir);
		return -1;
	}
	while ((de = readdir(d))) {
		char base[256], confp[4400], key[4400], chain[4400], name[512], *conf;
		const char *n = de->d_name;
		size_t nl = strlen(n), clen = 0;

		if (n[0] == '.' || nl >= sizeof(base))
			continue;
		/* <domain>/ holds RSA, <domain>_ecc/ ECDSA: the files inside are
		 * named after <domain> */
		snprintf(base, sizeof(base), "%s", n);
		if (nl > 4 && strcmp(n + nl - 4, "_ecc") == 0)
			base[nl - 4] = '\0';
		snprintf(confp, sizeof(confp), "%s/%s/%s.conf", dir, n, base);
		if (!imp_is_file(confp))
			continue;
		conf = imp_read_file(confp, IMP_CONF_MAX, &clen, err, errlen);
		if (!conf || imp_shell_var(conf, "Le_Domain", name, sizeof(name)) == -1)
			snprintf(name, sizeof(name), "%s", base);
		free(conf);
		snprintf(chain, sizeof(chain), "%s/%s/fullchain.cer", dir, n);
		snprintf(key, sizeof(key), "%s/%s/%s.key", dir, n, base);
		if (!imp_is_file(chain))
			snprintf(chain, sizeof(chain), "%s/%s/%s.cer", dir, n, base);
		imp_add_files(s, confp, chain, key, host_valid(name, HOST_WILDCARD) ? name : NULL);
	}
	closedir(d);
	imp_acmesh_ca_dir(s->api_uri, want, sizeof(want));
	snprintf(ca, sizeof(ca), "%s/ca", dir);
	imp_walk_accounts(s, ca, "", want, 0, imp_acmesh_account);
	return 0;
}
