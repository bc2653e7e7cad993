/* SPDX-License-Identifier: Apache-2.0 */
/* Admin API input parsing: request bodies, the listen address (lib/addr.h) and
 * the token comparison. No sockets, no loop (see admin/admin_int.h). Host names
 * follow lib/host.h. Form bodies (urlencoded and multipart) go through
 * libmicrohttpd's post processor, which reads the content type from the
 * connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <stdint.h>
#include <jansson.h>
#include <microhttpd.h>

#include "admin/admin.h"
#include "admin/admin_int.h"
#include "lib/addr.h"

/* What the post processor's iterator gathers from one form body. */
struct admin_form {
	char host[ADMIN_HOST_MAX + 1];
	size_t host_len;
	int host_seen, host_bad;
	char flow[8];
	size_t flow_len;
	int flow_seen, flow_bad;
};

/* Appends a chunk of a field's value to <buf> (<cap> bytes with the NUL);
 * <off> 0 starts a new value (a field given twice: the last one counts). */
static void admin_form_append(char *buf, size_t cap, size_t *len, int *bad,
			      const char *data, uint64_t off, size_t size)
{
	if (off == 0) {
		*len = 0;
		*bad = 0;
	}
	if (size == 0)
		return;
	if (!data || memchr(data, '\0', size) || *len + size >= cap) {
		*bad = 1;
		return;
	}
	memcpy(buf + *len, data, size);
	*len += size;
	buf[*len] = '\0';
}

static enum MHD_Result cb_admin_form_field(void *cls, enum MHD_ValueKind kind,
					   const char *key, const char *filename,
					   const char *content_type,
					   const char *transfer_encoding,
					   const char *data, uint64_t off, size_t size)
{
	struct admin_form *f = cls;

	if (!key)
		return MHD_YES;
	if (strcmp(key, "host") == 0) {
		f->host_seen = 1;
		admin_form_append(f->host, sizeof(f->host), &f->host_len, &f->host_bad,
				  data, off, size);
	} else if (strcmp(key, "test_http_challenge_flow") == 0) {
		f->flow_seen = 1;
		admin_form_append(f->flow, sizeof(f->flow), &f->flow_len, &f->flow_bad,
				  data, off, size);
	}
	return MHD_YES;
}

int admin_parse_form(struct MHD_Connection *conn, const char *body, size_t len,
		     struct admin_params *pp, const char **msg)
{
	struct MHD_PostProcessor *pproc;
	struct admin_form f;
	const char *ctype;
	int ok, multipart;

	memset(&f, 0, sizeof(f));
	/* reads Content-Type (and the multipart boundary) from <conn>; NULL for
	 * a type it does not parse or a multipart type without a boundary */
	pproc = MHD_create_post_processor(conn, 1024, cb_admin_form_field, &f);
	if (!pproc) {
		*msg = "Cannot parse form body: multipart/form-data needs a boundary";
		return -1;
	}
	ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	multipart = ctype && strncasecmp(ctype, MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA,
					 strlen(MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA)) == 0;
	ok = MHD_post_process(pproc, body, len) == MHD_YES;
	/* the last urlencoded field is delivered here. A multipart body cut
	 * before its closing boundary fails here; an urlencoded one ending in a
	 * bare key ("a=1&flag") fails too, and is taken as it is (the old parser
	 * and Kong accept it) */
	if (MHD_destroy_post_processor(pproc) != MHD_YES && multipart)
		ok = 0;
	if (!ok) {
		*msg = "Cannot parse form body";
		return -1;
	}
	if (f.host_seen) {
		if (!f.host_bad && f.host_len > 0 && f.host_len <= ADMIN_HOST_MAX) {
			memcpy(pp->host, f.host, f.host_len + 1);
			pp->have_host = 1;
		} else {
			pp->have_host = -1;
		}
	}
	if (f.flow_seen)
		pp->test_flow = !f.flow_bad && strcmp(f.flow, "true") == 0;
	return 0;
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
