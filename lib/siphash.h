/* SPDX-License-Identifier: Apache-2.0 */
/* SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012): a keyed hash for tables whose keys strangers choose (SNI names,
 * http-01 tokens, storage keys), so that nobody who does not know the key can
 * pick names that share a bucket. */
#ifndef ACME_SPOA_SIPHASH_H
#define ACME_SPOA_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 of the <len> bytes at <data> under the 16-byte <key>. */
uint64_t siphash24(const uint8_t key[16], const void *data, size_t len);

/* SipHash-2-4 of the string <s> under the process's key: 16 random bytes
 * drawn once (getrandom, else /dev/urandom) on first use, by any thread. */
uint64_t siphash_str(const char *s);

#endif
