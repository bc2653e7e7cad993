/* SPDX-License-Identifier: Apache-2.0 */
/* Reads another program's Redis (acme-spoa import kong-redis:): SCAN by
 * pattern and GET, with the backend's own non-blocking connection (rconn) on
 * the caller's loop, so the loop's other watchers keep running while a reply
 * is awaited (the calls run the loop until it comes, as storage_wait does).
 * Keys are the other program's, taken as they are: no namespace, no key
 * grammar. Not for the agent's own store (storage_open("redis")). */
#ifndef ACME_SPOA_REDIS_PEEK_H
#define ACME_SPOA_REDIS_PEEK_H

#include <stddef.h>

struct ev_loop;
struct redis_peek;

/* Connects to <host>:<port> on <loop>; every later call gives up after
 * <timeout_ms> without a reply. Returns NULL with <err> set. */
struct redis_peek *redis_peek_open(struct ev_loop *loop, const char *host, int port,
				   long timeout_ms, char *err, size_t errlen);

/* Every key matching <pattern> (SCAN, never KEYS), into *keys and *n (free with
 * redis_peek_keys_free). Returns 0, or -1 with <err> set. */
int redis_peek_scan(struct redis_peek *p, const char *pattern, char ***keys, size_t *n,
		    char *err, size_t errlen);
void redis_peek_keys_free(char **keys, size_t n);

/* GET <key>: 0 with *val (malloc'd, NUL-terminated, *len bytes; the caller
 * cleanses it: it may hold a private key), 1 when absent or not a string,
 * -1 with <err> set. */
int redis_peek_get(struct redis_peek *p, const char *key, char **val, size_t *len,
		   char *err, size_t errlen);

/* Closes the connection and frees <p>. Accepts NULL. */
void redis_peek_close(struct redis_peek *p);

#endif
