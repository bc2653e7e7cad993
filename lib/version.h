/* SPDX-License-Identifier: Apache-2.0 */
/* The release version, set in one place: the file VERSION at the top of the
 * tree, which the Makefile passes as -DACME_SPOA_VERSION. Shown by --version,
 * in /metrics (acme_spoa_build_info) and in the User-Agent of ACME requests. */
#ifndef ACME_SPOA_LIB_VERSION_H
#define ACME_SPOA_LIB_VERSION_H

#ifndef ACME_SPOA_VERSION
#error "ACME_SPOA_VERSION comes from the file VERSION (make passes -DACME_SPOA_VERSION)"
#endif

#endif
