/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the input is a certificate bundle as the agent reads it
 * from the CA, from storage or from another node. The check that guards
 * cert_dir and HAProxy (crypto_bundle_check_at) and the parser of certificate
 * facts must refuse garbage without a crash, and a bundle the check accepts
 * must parse. The host is taken from the first line when it starts "host=". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "acme/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *host = NULL;
	char hostbuf[256], err[256];
	struct crypto_cert_info ci;
	size_t len = size;

	if (size > 5 && memcmp(p, "host=", 5) == 0) {
		const char *nl = memchr(p, '\n', size);
		size_t hl = nl ? (size_t)(nl - p) - 5 : 0;

		if (nl && hl < sizeof(hostbuf)) {
			memcpy(hostbuf, p + 5, hl);
			hostbuf[hl] = '\0';
			host = hostbuf;
			len = size - (size_t)(nl + 1 - p);
			p = nl + 1;
		}
	}
	/* 1,750,000,000: inside the seeds' validity, whatever today is */
	if (crypto_bundle_check_at(p, len, host, 1750000000, err, sizeof(err)) == 0) {
		if (crypto_cert_info(p, len, &ci, err, sizeof(err)) != 0)
			__builtin_trap();	/* accepted, so it must parse */
		crypto_cert_info_clear(&ci);
	} else if (!err[0]) {
		__builtin_trap();		/* a refusal always says why */
	}
	if (crypto_cert_info(p, len, &ci, err, sizeof(err)) == 0)
		crypto_cert_info_clear(&ci);
	ERR_clear_error();
	return 0;
}
