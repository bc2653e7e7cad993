/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by admin/admin.c and admin/admin_parse.c. Not for other
 * modules. */
#ifndef ACME_SPOA_ADMIN_INT_H
#define ACME_SPOA_ADMIN_INT_H

#include <stddef.h>
#include <sys/socket.h>

#define ADMIN_HOST_MAX	253

/* Parameters of POST /acme. */
struct admin_params {
	char host[ADMIN_HOST_MAX + 2];
	int have_host;		/* 1 given, -1 given but unusable, 0 absent */
	int test_flow;		/* test_http_challenge_flow is true or "true" */
};

struct MHD_Connection;

/* Reads <pp> from a form body of <len> bytes, application/x-www-form-urlencoded
 * or multipart/form-data as <conn>'s Content-Type says, with libmicrohttpd's
 * post processor. Fields not given leave <pp> as it was. Returns 0, or -1 with
 * a static message for the client in *<msg> when the body cannot be parsed. */
int admin_parse_form(struct MHD_Connection *conn, const char *body, size_t len,
		     struct admin_params *pp, const char **msg);

/* Reads <pp> from a JSON body of <len> bytes. Returns 0, or -1 with a static
 * message for the client in *<msg> when it is not a JSON object. */
int admin_parse_json(const char *body, size_t len, struct admin_params *pp,
		     const char **msg);

/* Parses "host:port", "[v6]:port", "*:port" or ":port" into <ss>. Returns 0, or
 * -1 with the reason in <err>. */
int admin_parse_listen(const char *listen, struct sockaddr_storage *ss,
		       char *err, size_t errlen);

/* Returns 1 when <given> equals the non-empty <secret>, taking time that
 * depends on <given>'s length only, never on where they differ. */
int admin_token_equal(const char *given, const char *secret);

#endif
