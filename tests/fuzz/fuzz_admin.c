/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the body of an admin request (POST /acme) and the host it
 * names, as a stranger on the admin port may send them. The JSON body parser
 * (form bodies go through libmicrohttpd's own post processor, which needs a
 * live connection) must refuse with a message or give a NUL-terminated host
 * within bounds; the host rule (lib/host) then accepts or refuses it, and the
 * raw input as a host name too, without a crash; an accepted host is
 * normalized to a valid name of the same length. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "admin/admin_int.h"
#include "lib/host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_host(const char *h)
{
	char norm[ADMIN_HOST_MAX + 2];

	if (host_normalize(h, norm, sizeof(norm), HOST_WILDCARD) == 0 &&
	    (strlen(norm) != strlen(h) || host_valid(norm, HOST_WILDCARD) != 1))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct admin_params pp;
	const char *msg = NULL;
	char raw[ADMIN_HOST_MAX + 2];

	memset(&pp, 0, sizeof(pp));
	if (admin_parse_json((const char *)data, size, &pp, &msg) == -1 && !msg)
		__builtin_trap();	/* a refusal always has a message */
	if (pp.have_host == 1) {
		if (memchr(pp.host, '\0', sizeof(pp.host)) == NULL)
			__builtin_trap();
		check_host(pp.host);
	}
	if (size < sizeof(raw)) {
		memcpy(raw, data, size);
		raw[size] = '\0';
		check_host(raw);
	}
	return 0;
}
