/* libFuzzer target: the body of an admin request (POST /acme) and the host it
 * names, as a stranger on the admin port may send them. The first byte picks
 * the parser (JSON or form-urlencoded); whatever host comes out must be a
 * NUL-terminated string within bounds, and the host rule (lib/host) then
 * accepts or refuses it without a crash; an accepted host is normalized. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "admin/admin_int.h"
#include "lib/host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct admin_params pp;
	const char *msg = NULL;
	char norm[ADMIN_HOST_MAX + 2];

	if (size == 0)
		return 0;
	memset(&pp, 0, sizeof(pp));
	if (data[0] & 1) {
		if (admin_parse_json((const char *)data + 1, size - 1, &pp, &msg) == -1 && !msg)
			__builtin_trap();	/* a refusal always has a message */
	} else {
		admin_parse_form((const char *)data + 1, size - 1, &pp);
	}
	if (pp.have_host == 1) {
		if (memchr(pp.host, '\0', sizeof(pp.host)) == NULL)
			__builtin_trap();
		if (host_normalize(pp.host, norm, sizeof(norm), HOST_WILDCARD) == 0 &&
		    (strlen(norm) != strlen(pp.host) || host_valid(norm, HOST_WILDCARD) != 1))
			__builtin_trap();
	}
	return 0;
}
