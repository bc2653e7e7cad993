/* SPDX-License-Identifier: Apache-2.0 */
/* The system's trusted CA certificates, parsed once into an X509_STORE.
 *
 * OpenSSL's default verify paths read the bundle and the hashed files under
 * /etc/ssl/certs lazily, during a handshake: on the loop. A store built here
 * at start holds every certificate of the bundle in memory, with no lookup
 * left that reads a file later; share it with SSL_CTX_set1_cert_store(). */
#ifndef ACME_SPOA_TLSSTORE_H
#define ACME_SPOA_TLSSTORE_H

#include <stddef.h>

#include <openssl/x509.h>

/* The bundle's path: $SSL_CERT_FILE when set (as OpenSSL honours it), else
 * OpenSSL's default cert file (Debian: /usr/lib/ssl/cert.pem, a link to
 * /etc/ssl/certs/ca-certificates.crt). */
const char *tlsstore_system_path(void);

/* Returns a new store holding every certificate of the system bundle, or
 * NULL with <err> set (missing, unreadable or empty bundle). Free with
 * X509_STORE_free(). Blocks on file I/O: call it at start, not on the loop. */
X509_STORE *tlsstore_system(char *err, size_t errlen);

#endif
