/* SPDX-License-Identifier: Apache-2.0 */
/* The system CA store, parsed once: see tlsstore.h. */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "lib/tlsstore.h"

const char *tlsstore_system_path(void)
{
	const char *p = getenv(X509_get_default_cert_file_env());

	return p != NULL && p[0] != '\0' ? p : X509_get_default_cert_file();
}

X509_STORE *tlsstore_system(char *err, size_t errlen)
{
	const char *path = tlsstore_system_path();
	X509_STORE *store = X509_STORE_new();
	unsigned long e;

	ERR_clear_error();
	if (store == NULL) {
		snprintf(err, errlen, "the system CA store: out of memory");
		return NULL;
	}
	/* a file lookup loads the whole bundle now; no directory lookup is added */
	if (X509_STORE_load_file(store, path) != 1) {
		const char *reason = NULL;

		e = ERR_peek_last_error();
		if (e != 0)
			reason = ERR_reason_error_string(e);
		snprintf(err, errlen, "the system CA store %s cannot be loaded: %s", path,
			 reason != NULL ? reason : "failed");
		ERR_clear_error();
		X509_STORE_free(store);
		return NULL;
	}
	if (sk_X509_OBJECT_num(X509_STORE_get0_objects(store)) == 0) {
		snprintf(err, errlen, "the system CA store %s holds no certificate", path);
		X509_STORE_free(store);
		return NULL;
	}
	return store;
}
