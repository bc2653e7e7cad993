/* SPDX-License-Identifier: Apache-2.0 */
/* libcurl's multi interface driven by libev: CURLMOPT_SOCKETFUNCTION and
 * CURLMOPT_TIMERFUNCTION feed ev_io and ev_timer watchers on one loop. The
 * owner adds easy handles to curlev_multi() and reads finished transfers in
 * its <progress> callback (curl_multi_info_read), which runs after every
 * socket or timer action, on the loop. Used by acme/http.c and the consul
 * storage backend. */
#ifndef ACME_SPOA_CURLEV_H
#define ACME_SPOA_CURLEV_H

#include <stddef.h>

#include <curl/curl.h>

struct ev_loop;
struct curlev;

/* Creates the multi handle on <loop> (curl_global_init the first time).
 * <progress>(<arg>) runs after each action; it may free the owner and this
 * curlev (curlev_free): nothing here touches either after calling it.
 * Returns NULL with <err> set on failure. */
struct curlev *curlev_new(struct ev_loop *loop, void (*progress)(void *arg), void *arg,
			  char *err, size_t errlen);

/* The multi handle, for curl_multi_add_handle/remove_handle/info_read. */
CURLM *curlev_multi(struct curlev *cv);

/* Stops every watcher and cleans the multi handle up; remove the easy handles
 * first. Accepts NULL. */
void curlev_free(struct curlev *cv);

#endif
