/* SPDX-License-Identifier: Apache-2.0 */
/* The certificate manager: joins the SPOA, the ACME client, storage, the
 * HAProxy runtime client and the admin API into the product (SPEC §1). */
#ifndef ACME_SPOA_MANAGER_H
#define ACME_SPOA_MANAGER_H

#include <stddef.h>

struct ev_loop;
struct config;
struct mgr;
struct storage_conf;

/* Fills <out> with the storage settings of <cfg> (its strings borrowed from
 * <cfg>) and returns the backend's name for storage_open(). */
const char *mgr_storage_conf(const struct config *cfg, struct storage_conf *out);

/* Creates the manager with <cfg> (ownership taken, even on failure): opens
 * storage, loads or creates the ACME account key, loads stored certificates,
 * starts the SPOA, admin and runtime clients. Returns NULL with <err> set. */
struct mgr *mgr_new(struct ev_loop *loop, struct config *cfg, char *err, size_t errlen);

/* Applies a re-read config (SIGHUP): what can change live is applied, the
 * rest is reported in the log. Ownership of <cfg> is taken. */
void mgr_reload(struct mgr *m, struct config *cfg);

/* Stops every watcher and frees everything. Accepts NULL. */
void mgr_free(struct mgr *m);

#endif
