/* SPDX-License-Identifier: Apache-2.0 */
/* Switching tools without re-issuing: `acme-spoa import SOURCE` takes the
 * certificates and the ACME account another client holds into the
 * configured storage, checked like issued ones; `acme-spoa export
 * crt-dir:DIR` writes every stored certificate as HAProxy-loadable PEMs.
 *
 * Both are command-line tools: they run their own loop, block on it, and
 * write storage whether an agent runs or not. A running agent sees what the
 * import stored through the change feed (redis, consul) or at its next
 * start (file), schedules renewal and pushes it into HAProxy. */
#ifndef ACME_SPOA_IMPORT_H
#define ACME_SPOA_IMPORT_H

#include <stdio.h>

struct config;

/* Imports <source> ("certbot:DIR", "lego:DIR", "caddy:DIR", "acmesh:DIR",
 * "kong-redis:HOST:PORT[/NAMESPACE]", "crt-dir:DIR", "crt-list:FILE") into
 * <cfg>'s storage; with <dry_run> it checks and reports without writing.
 * Every bundle passes crypto_bundle_check_info() for each name it is stored
 * under; a name stored with a certificate expiring as late or later is kept.
 * The report and summary go to <out>; progress to stderr when it is a
 * terminal. Returns 0 when the source was read and every write succeeded
 * (refusals are reported, not errors), 1 otherwise, 2 on a bad <source>. */
int import_run(const struct config *cfg, const char *source, int dry_run, FILE *out);

/* Writes every certificate of <cfg>'s storage that passes the check into
 * "crt-dir:DIR" as <host>.pem ("_wildcard_.<zone>.pem" for "*.<zone>"),
 * mode 0600, atomically, synced once at the end. Returns 0, 1 on an error,
 * 2 on a bad <dest>. */
int export_run(const struct config *cfg, const char *dest, FILE *out);

#endif
