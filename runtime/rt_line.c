/* SPDX-License-Identifier: Apache-2.0 */
/* What differs between HAProxy lines on the runtime API, in one place.
 *
 * The line is read from "show info" (its Version field) when a connection
 * starts, never guessed from a reply: a reply that does not match the line's
 * known form is an error, not a hint.
 *
 * Lines and what differs (tested: 2.6 on Debian 12, 3.0.11 as on Debian 13,
 * 3.4.0; see the README's table):
 *   - "set ssl cert <ours>" while another client has a transaction open on
 *     another certificate: 2.6 loads our payload into that transaction and
 *     says "Transaction updated for certificate <theirs>!"; 3.0 and later
 *     refuse with "The ongoing transaction is about '<theirs>' but you are
 *     trying to set '<ours>'". Either way the client aborts <theirs> and sets
 *     again (rt_job.c).
 * Everything else the client sends and reads (prompt mode, "show ssl cert",
 * new/set/commit/abort/del ssl cert, crt-list commands) is the same on these
 * lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt_int.h"

static const struct rt_line rt_lines[] = {
	/* oldest first; a version takes the last row at or below it */
	{ .name = "2.6", .major = 2, .minor = 6,
	  .foreign_prefix = "Transaction updated for certificate ", .foreign_end = "!\n" },
	{ .name = "3.0", .major = 3, .minor = 0,
	  .foreign_prefix = "The ongoing transaction is about '", .foreign_end = "'\n" },
};

int rt_line_from_info(const char *info, struct rt_line *out, char *err, size_t errlen)
{
	const char *p = info, *v = NULL;
	int major, minor, n = 0;
	size_t i, pick = sizeof(rt_lines) / sizeof(rt_lines[0]);

	while (p && *p) {
		if (strncmp(p, "Version: ", 9) == 0) {
			v = p + 9;
			break;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	if (!v || sscanf(v, "%d.%d%n", &major, &minor, &n) != 2 || n == 0) {
		snprintf(err, errlen, "show info: no \"Version: X.Y\" line");
		return -1;
	}
	for (i = 0; i < sizeof(rt_lines) / sizeof(rt_lines[0]); i++)
		if (major > rt_lines[i].major || (major == rt_lines[i].major && minor >= rt_lines[i].minor))
			pick = i;
	if (pick == sizeof(rt_lines) / sizeof(rt_lines[0])) {
		snprintf(err, errlen, "HAProxy %d.%d is older than 2.6, the oldest line supported", major,
			 minor);
		return -1;
	}
	*out = rt_lines[pick];
	snprintf(out->version, sizeof(out->version), "%.*s", (int)strcspn(v, " \r\n"), v);
	return 0;
}

char *rt_line_foreign(const struct rt_line *l, const char *body)
{
	const char *p = strstr(body, l->foreign_prefix);

	if (!p)
		return NULL;
	p += strlen(l->foreign_prefix);
	return strndup(p, strcspn(p, l->foreign_end));
}
