/* SPDX-License-Identifier: Apache-2.0 */
/* Pure parsers for what an ACME CA sends: problem documents, directory, order,
 * authorization, renewalInfo, Link headers. No I/O; malformed input is an error
 * value with the offending field named, never a crash. */
#include "acme/acme_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#define ACME_DETAIL_MAX 1024

/* Copies at most <max> bytes of <s>, control characters replaced by '?', so CA text
 * is safe to log. */
static char *acme_clean_strdup(const char *s, size_t len, size_t max)
{
	char *out;
	size_t i;

	if (len > max)
		len = max;
	out = malloc(len + 1);
	if (!out)
		return NULL;
	for (i = 0; i < len; i++)
		out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	out[len] = '\0';
	return out;
}

static const char *json_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

void acme_problem_clear(struct acme_problem *p)
{
	if (!p)
		return;
	free(p->type);
	free(p->detail);
	free(p->subproblems);
	memset(p, 0, sizeof(*p));
	p->retry_after = -1;
}

void acme_problem_vset(struct acme_problem *p, long status, const char *fmt, va_list ap)
{
	char buf[ACME_DETAIL_MAX];

	acme_problem_clear(p);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	p->status = status;
	p->detail = strdup(buf);
}

void acme_problem_set(struct acme_problem *p, long status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	acme_problem_vset(p, status, fmt, ap);
	va_end(ap);
}

int acme_problem_copy(struct acme_problem *dst, const struct acme_problem *src)
{
	acme_problem_clear(dst);
	dst->status = src->status;
	dst->retry_after = src->retry_after;
	dst->unreachable = src->unreachable;
	dst->account = src->account;
	if ((src->type && !(dst->type = strdup(src->type))) ||
	    (src->detail && !(dst->detail = strdup(src->detail))) ||
	    (src->subproblems && !(dst->subproblems = strdup(src->subproblems))))
		return -1;
	return 0;
}

int acme_problem_is(const struct acme_problem *p, const char *short_type)
{
	size_t n = sizeof(ACME_ERR_PREFIX) - 1;

	return p && p->type && !strncmp(p->type, ACME_ERR_PREFIX, n) && !strcmp(p->type + n, short_type);
}

static const char *acme_short_type(const char *type)
{
	size_t n = sizeof(ACME_ERR_PREFIX) - 1;

	if (type && !strncmp(type, ACME_ERR_PREFIX, n))
		return type + n;
	return type ? type : "error";
}

/* "dns:a.test: rejectedIdentifier: detail; dns:b.test: ..." */
static char *acme_flatten_subproblems(json_t *subs)
{
	char buf[2048];
	size_t off = 0, i;
	json_t *sp;

	if (!json_is_array(subs) || json_array_size(subs) == 0)
		return NULL;
	buf[0] = '\0';
	json_array_foreach(subs, i, sp) {
		json_t *id = json_object_get(sp, "identifier");
		const char *t = json_str(sp, "type"), *d = json_str(sp, "detail");
		const char *it = json_str(id, "type"), *iv = json_str(id, "value");
		int n;

		if (!json_is_object(sp))
			continue;
		n = snprintf(buf + off, sizeof(buf) - off, "%s%s%s%s%s%s: %s", off ? "; " : "",
			     it ? it : "", it ? ":" : "", iv ? iv : "", (it || iv) ? ": " : "",
			     acme_short_type(t), d ? d : "");
		if (n < 0 || (size_t)n >= sizeof(buf) - off) {
			off = sizeof(buf) - 1;
			break;
		}
		off += (size_t)n;
	}
	return off ? acme_clean_strdup(buf, off, sizeof(buf)) : NULL;
}

/* Fills <out> from a problem object already parsed. */
static int acme_problem_from_json(json_t *o, long status, struct acme_problem *out)
{
	const char *t = json_str(o, "type"), *d = json_str(o, "detail");
	json_t *st = json_object_get(o, "status");

	if (!json_is_object(o) || (!t && !d))
		return -1;
	out->status = json_is_integer(st) ? (long)json_integer_value(st) : status;
	if (status)
		out->status = status;
	if (t)
		out->type = acme_clean_strdup(t, strlen(t), 256);
	out->detail = acme_clean_strdup(d ? d : "", d ? strlen(d) : 0, ACME_DETAIL_MAX);
	out->subproblems = acme_flatten_subproblems(json_object_get(o, "subproblems"));
	return 0;
}

int acme_problem_parse(long status, const char *body, size_t len, const char *retry_after,
		       struct acme_problem *out)
{
	json_t *root = NULL;
	int rc = -1;

	acme_problem_clear(out);
	out->status = status;
	out->retry_after = http_parse_retry_after(retry_after, time(NULL));
	if (body && len)
		root = json_loadb(body, len, 0, NULL);
	if (root && acme_problem_from_json(root, status, out) == 0) {
		rc = 0;
		if (!out->detail[0]) {
			free(out->detail);
			out->detail = strdup(acme_short_type(out->type));
		}
	} else {
		char snippet[128];
		size_t n = body ? len : 0;

		if (n > sizeof(snippet) - 1)
			n = sizeof(snippet) - 1;
		memcpy(snippet, body ? body : "", n);
		snippet[n] = '\0';
		free(out->type);
		out->type = NULL;
		free(out->detail);
		free(out->subproblems);
		out->subproblems = NULL;
		out->detail = NULL;
		{
			char buf[256];
			char *clean = acme_clean_strdup(snippet, n, n);

			snprintf(buf, sizeof(buf), "HTTP %ld from CA%s%s", status,
				 n ? ": " : " with an empty body", clean ? clean : "");
			free(clean);
			out->detail = strdup(buf);
		}
	}
	json_decref(root);
	return rc;
}

void acme_strv_free(char **v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int acme_url_ok(const char *s)
{
	return s && (!strncmp(s, "https://", 8) || !strncmp(s, "http://", 7)) && !strpbrk(s, " \r\n\t");
}

/* Sets *<dst> to a copy of the URL member <key>; <required> makes absence an error. */
static int acme_get_url(json_t *o, const char *what, const char *key, int required, char **dst,
			char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	if (!v && !required)
		return 0;
	if (!json_is_string(v) || !acme_url_ok(json_string_value(v))) {
		snprintf(err, errlen, "CA sent a malformed %s: \"%s\" %s", what, key,
			 v ? "is not a URL" : "is missing");
		return -1;
	}
	*dst = strdup(json_string_value(v));
	return *dst ? 0 : -1;
}

static json_t *acme_load_object(const char *body, size_t len, const char *what, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root;

	if (!body || !len) {
		snprintf(err, errlen, "CA sent an empty %s", what);
		return NULL;
	}
	root = json_loadb(body, len, 0, &je);
	if (!root) {
		snprintf(err, errlen, "CA sent a malformed %s: not JSON (%s at line %d)", what, je.text, je.line);
		return NULL;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "CA sent a malformed %s: not a JSON object", what);
		json_decref(root);
		return NULL;
	}
	return root;
}

void acme_dir_clear(struct acme_dir *d)
{
	if (!d)
		return;
	free(d->new_nonce);
	free(d->new_account);
	free(d->new_order);
	free(d->revoke_cert);
	free(d->key_change);
	free(d->renewal_info);
	free(d->tos);
	acme_strv_free(d->profiles, d->nprofiles);
	memset(d, 0, sizeof(*d));
}

int acme_parse_directory(const char *body, size_t len, struct acme_dir *d, char *err, size_t errlen)
{
	json_t *root, *meta, *profiles, *v;
	const char *key;
	int rc = -1;

	memset(d, 0, sizeof(*d));
	root = acme_load_object(body, len, "directory", err, errlen);
	if (!root)
		return -1;
	if (acme_get_url(root, "directory", "newNonce", 1, &d->new_nonce, err, errlen) ||
	    acme_get_url(root, "directory", "newAccount", 1, &d->new_account, err, errlen) ||
	    acme_get_url(root, "directory", "newOrder", 1, &d->new_order, err, errlen) ||
	    acme_get_url(root, "directory", "revokeCert", 0, &d->revoke_cert, err, errlen) ||
	    acme_get_url(root, "directory", "keyChange", 0, &d->key_change, err, errlen) ||
	    acme_get_url(root, "directory", "renewalInfo", 0, &d->renewal_info, err, errlen))
		goto out;
	meta = json_object_get(root, "meta");
	if (json_is_object(meta)) {
		const char *tos = json_str(meta, "termsOfService");

		if (tos && !(d->tos = acme_clean_strdup(tos, strlen(tos), 2048)))
			goto out;
		d->eab_required = json_is_true(json_object_get(meta, "externalAccountRequired"));
		profiles = json_object_get(meta, "profiles");
		if (json_is_object(profiles) && json_object_size(profiles)) {
			d->profiles = calloc(json_object_size(profiles), sizeof(char *));
			if (!d->profiles)
				goto out;
			json_object_foreach(profiles, key, v) {
				d->profiles[d->nprofiles] = strdup(key);
				if (!d->profiles[d->nprofiles])
					goto out;
				d->nprofiles++;
			}
		}
	}
	rc = 0;
out:
	if (rc)
		acme_dir_clear(d);
	json_decref(root);
	return rc;
}

void acme_order_obj_clear(struct acme_order_obj *o)
{
	if (!o)
		return;
	free(o->status);
	free(o->finalize);
	free(o->certificate);
	acme_strv_free(o->authz, o->nauthz);
	acme_problem_clear(&o->error);
	memset(o, 0, sizeof(*o));
}

static int acme_get_status(json_t *root, const char *what, char **dst, char *err, size_t errlen)
{
	const char *s = json_str(root, "status");

	if (!s || !*s || strlen(s) > 32) {
		snprintf(err, errlen, "CA sent a malformed %s: \"status\" is %s", what,
			 s ? "not a valid status" : "missing");
		return -1;
	}
	*dst = acme_clean_strdup(s, strlen(s), 32);
	return *dst ? 0 : -1;
}

int acme_parse_order(const char *body, size_t len, struct acme_order_obj *o, char *err, size_t errlen)
{
	json_t *root, *az, *v;
	size_t i;
	int rc = -1;

	memset(o, 0, sizeof(*o));
	o->error.retry_after = -1;
	root = acme_load_object(body, len, "order", err, errlen);
	if (!root)
		return -1;
	if (acme_get_status(root, "order", &o->status, err, errlen) ||
	    acme_get_url(root, "order", "finalize", 1, &o->finalize, err, errlen) ||
	    acme_get_url(root, "order", "certificate", 0, &o->certificate, err, errlen))
		goto out;
	az = json_object_get(root, "authorizations");
	if (!json_is_array(az)) {
		snprintf(err, errlen, "CA sent a malformed order: \"authorizations\" is %s",
			 az ? "not an array" : "missing");
		goto out;
	}
	if (json_array_size(az) > 100) {
		snprintf(err, errlen, "CA sent a malformed order: too many authorizations");
		goto out;
	}
	if (json_array_size(az)) {
		o->authz = calloc(json_array_size(az), sizeof(char *));
		if (!o->authz)
			goto out;
	}
	json_array_foreach(az, i, v) {
		if (!json_is_string(v) || !acme_url_ok(json_string_value(v))) {
			snprintf(err, errlen, "CA sent a malformed order: authorizations[%zu] is not a URL", i);
			goto out;
		}
		o->authz[o->nauthz] = strdup(json_string_value(v));
		if (!o->authz[o->nauthz])
			goto out;
		o->nauthz++;
	}
	if (!strcmp(o->status, "valid") && !o->certificate) {
		snprintf(err, errlen, "CA sent a malformed order: status valid without \"certificate\"");
		goto out;
	}
	v = json_object_get(root, "error");
	if (v && acme_problem_from_json(v, 0, &o->error) == 0)
		o->has_error = 1;
	rc = 0;
out:
	if (rc)
		acme_order_obj_clear(o);
	json_decref(root);
	return rc;
}

void acme_authz_obj_clear(struct acme_authz_obj *a)
{
	if (!a)
		return;
	free(a->status);
	free(a->identifier);
	free(a->chall_url);
	free(a->chall_token);
	free(a->chall_status);
	acme_problem_clear(&a->error);
	memset(a, 0, sizeof(*a));
}

int acme_parse_authz(const char *body, size_t len, struct acme_authz_obj *a, char *err, size_t errlen)
{
	return acme_parse_authz_type(body, len, "http-01", a, err, errlen);
}

int acme_parse_authz_type(const char *body, size_t len, const char *want, struct acme_authz_obj *a,
			  char *err, size_t errlen)
{
	char what[64];
	json_t *root, *ch, *v, *id;
	const char *s;
	size_t i;
	int rc = -1;

	memset(a, 0, sizeof(*a));
	a->error.retry_after = -1;
	root = acme_load_object(body, len, "authorization", err, errlen);
	if (!root)
		return -1;
	if (acme_get_status(root, "authorization", &a->status, err, errlen))
		goto out;
	id = json_object_get(root, "identifier");
	s = json_str(id, "value");
	if (!s) {
		snprintf(err, errlen, "CA sent a malformed authorization: \"identifier\" is missing");
		goto out;
	}
	if (!(a->identifier = acme_clean_strdup(s, strlen(s), 255)))
		goto out;
	a->wildcard = json_is_true(json_object_get(root, "wildcard"));
	snprintf(what, sizeof(what), "%s challenge", want);
	ch = json_object_get(root, "challenges");
	if (!json_is_array(ch)) {
		snprintf(err, errlen, "CA sent a malformed authorization: \"challenges\" is %s",
			 ch ? "not an array" : "missing");
		goto out;
	}
	json_array_foreach(ch, i, v) {
		const char *type = json_str(v, "type");
		const char *tok = json_str(v, "token");
		const char *st = json_str(v, "status");
		json_t *e;

		if (!type || strcmp(type, want))
			continue;
		if (acme_get_url(v, what, "url", 1, &a->chall_url, err, errlen))
			goto out;
		if (!tok || !*tok || strlen(tok) > 256 || strspn(tok,
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(tok)) {
			snprintf(err, errlen, "CA sent a malformed %s: \"token\" is %s", what,
				 tok ? "not base64url" : "missing");
			goto out;
		}
		if (!(a->chall_token = strdup(tok)) ||
		    !(a->chall_status = acme_clean_strdup(st ? st : "", st ? strlen(st) : 0, 32)))
			goto out;
		e = json_object_get(v, "error");
		if (e && acme_problem_from_json(e, 0, &a->error) == 0)
			a->has_error = 1;
		a->has_http01 = 1;
		break;
	}
	rc = 0;
out:
	if (rc)
		acme_authz_obj_clear(a);
	json_decref(root);
	return rc;
}

static int acme_2digits(const char *s, int *v)
{
	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
		return -1;
	*v = (s[0] - '0') * 10 + (s[1] - '0');
	return 0;
}

int acme_parse_rfc3339(const char *s, time_t *out)
{
	struct tm tm;
	int y1, y2, mo, d, h, mi, sec, off = 0, oh, om;
	time_t t;

	if (!s || strlen(s) < 20)
		return -1;
	memset(&tm, 0, sizeof(tm));
	if (acme_2digits(s, &y1) || acme_2digits(s + 2, &y2) || s[4] != '-' ||
	    acme_2digits(s + 5, &mo) || s[7] != '-' || acme_2digits(s + 8, &d) ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || acme_2digits(s + 11, &h) ||
	    s[13] != ':' || acme_2digits(s + 14, &mi) || s[16] != ':' || acme_2digits(s + 17, &sec))
		return -1;
	s += 19;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return -1;
		while (isdigit((unsigned char)*s))
			s++;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		if (acme_2digits(s + 1, &oh) || s[3] != ':' || acme_2digits(s + 4, &om) || oh > 23 || om > 59)
			return -1;
		off = (oh * 3600 + om * 60) * (*s == '-' ? -1 : 1);
		s += 6;
	} else {
		return -1;
	}
	if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	tm.tm_year = y1 * 100 + y2 - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	*out = t - off;
	return 0;
}

int acme_parse_renewal_info(const char *body, size_t len, time_t *start, time_t *end,
			    char *err, size_t errlen)
{
	json_t *root, *w;
	const char *s, *e;
	int rc = -1;

	root = acme_load_object(body, len, "renewalInfo", err, errlen);
	if (!root)
		return -1;
	w = json_object_get(root, "suggestedWindow");
	s = json_str(w, "start");
	e = json_str(w, "end");
	if (!json_is_object(w) || !s || !e) {
		snprintf(err, errlen, "CA sent a malformed renewalInfo: \"suggestedWindow\" %s",
			 json_is_object(w) ? "lacks start or end" : "is missing");
		goto out;
	}
	if (acme_parse_rfc3339(s, start) || acme_parse_rfc3339(e, end)) {
		snprintf(err, errlen, "CA sent a malformed renewalInfo: bad date in suggestedWindow");
		goto out;
	}
	if (*end < *start) {
		snprintf(err, errlen, "CA sent a malformed renewalInfo: window ends before it starts");
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* Parses one link-value "<url>; param; param" starting at *<p>; advances past the
 * next top-level comma. Returns 1 when <rel> matched (url copied into *<url>). */
static int acme_link_next(const char **p, const char *rel, char **url)
{
	const char *s = *p, *lt, *gt, *end;
	int match = 0;

	*url = NULL;
	while (*s == ' ' || *s == '\t' || *s == ',')
		s++;
	lt = (*s == '<') ? s : NULL;
	gt = lt ? strchr(lt, '>') : NULL;
	if (!gt) {
		*p = s + strlen(s);
		return 0;
	}
	/* Parameters run to the next comma outside quotes. */
	end = gt + 1;
	while (*end && *end != ',') {
		if (*end == '"') {
			end++;
			while (*end && *end != '"')
				end++;
			if (!*end)
				break;
		}
		end++;
	}
	{
		const char *q = gt + 1;

		while (q < end) {
			const char *v;
			size_t vl;

			q = strchr(q, ';');
			if (!q || q >= end)
				break;
			q++;
			while (*q == ' ' || *q == '\t')
				q++;
			if (strncasecmp(q, "rel", 3))
				continue;
			v = q + 3;
			while (*v == ' ')
				v++;
			if (*v != '=')
				continue;
			v++;
			while (*v == ' ')
				v++;
			if (*v == '"') {
				v++;
				vl = strcspn(v, "\"");
			} else {
				vl = strcspn(v, " ;,");
			}
			/* rel may list several space-separated relation types */
			{
				const char *t = v, *te = v + vl;

				while (t < te) {
					size_t tl = strcspn(t, " ");

					if (tl > (size_t)(te - t))
						tl = (size_t)(te - t);
					if (tl == strlen(rel) && !strncasecmp(t, rel, tl))
						match = 1;
					t += tl;
					while (t < te && *t == ' ')
						t++;
				}
			}
		}
	}
	if (match)
		*url = strndup(lt + 1, (size_t)(gt - lt - 1));
	*p = *end ? end + 1 : end;
	return match;
}

int acme_links_find(const char *const *links, size_t nlinks, const char *rel, char ***out)
{
	char **v = NULL, **nv, *url;
	size_t n = 0, i;

	*out = NULL;
	for (i = 0; i < nlinks; i++) {
		const char *p = links[i];

		while (p && *p) {
			if (!acme_link_next(&p, rel, &url))
				continue;
			if (!url || !acme_url_ok(url) || n >= 16) {
				free(url);
				continue;
			}
			nv = realloc(v, (n + 1) * sizeof(char *));
			if (!nv) {
				free(url);
				acme_strv_free(v, n);
				return -1;
			}
			v = nv;
			v[n++] = url;
		}
	}
	*out = v;
	return (int)n;
}

int acme_parse_zerossl_eab(const char *body, size_t len, char **kid, char **hmac,
			   char *err, size_t errlen)
{
	json_t *root;
	const char *k, *h;
	int rc = -1;

	*kid = *hmac = NULL;
	root = acme_load_object(body, len, "ZeroSSL EAB answer", err, errlen);
	if (!root)
		return -1;
	k = json_str(root, "eab_kid");
	h = json_str(root, "eab_hmac_key");
	if (!json_is_true(json_object_get(root, "success")) || !k || !h || !*k || !*h) {
		json_t *e = json_object_get(root, "error");
		const char *t = json_str(e, "type");

		snprintf(err, errlen, "ZeroSSL refused EAB credentials%s%s", t ? ": " : "", t ? t : "");
		goto out;
	}
	*kid = strdup(k);
	*hmac = strdup(h);
	if (!*kid || !*hmac) {
		free(*kid);
		free(*hmac);
		*kid = *hmac = NULL;
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int acme_is_zerossl(const char *url)
{
	const char *h;
	size_t n;

	if (!url || strncasecmp(url, "https://", 8))
		return 0;
	h = url + 8;
	n = strcspn(h, ":/?#");
	return (n == 16 && !strncasecmp(h, "acme.zerossl.com", 16)) ||
	       (n > 17 && !strncasecmp(h + n - 17, ".acme.zerossl.com", 17));
}
