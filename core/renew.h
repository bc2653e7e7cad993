/* SPDX-License-Identifier: Apache-2.0 */
/* The renewal scheduler: a due-time index of the certificates the store
 * holds, feeding renewal jobs. A certificate is due when fewer than
 * renew_threshold_days remain, or less than a third of its lifetime remains
 * (safe for 6-day certificates), or when the CA's ARI window (RFC 9773) has
 * opened. One timer sits on the earliest wake time (re-checked at least
 * hourly), so a pass touches only what is due, never every certificate.
 *
 * It learns of certificates through the store's hooks (renew_installed,
 * renew_removed, wired by the owner) and starts renewals through jobs. In a
 * fleet (renew_set_members) it renews, and asks ARI for, only this node's
 * share; another member's certificate is looked at again at its due time,
 * and when the members change. */
#ifndef ACME_SPOA_RENEW_H
#define ACME_SPOA_RENEW_H

#include <time.h>

struct issuers;
struct certstore;
struct certstore_cert;
struct config;
struct ev_loop;
struct health;
struct jobs;
struct members;
struct renewplan;
struct storage;

/* Creates an empty index, its timer stopped. <cfg>, <st>, <iss> (ARI asks
 * each certificate's CA), <cs>, <jobs> and <health> are borrowed and must
 * outlive it. Returns NULL when out of memory. */
struct renew *renew_new(struct ev_loop *loop, const struct config *cfg, struct storage *st,
			struct issuers *iss, struct certstore *cs, struct jobs *jobs,
			struct health *health);

/* Stops the timer and frees <r>. Accepts NULL. */
void renew_free(struct renew *r);

/* Arms the timer on the earliest wake time; from now on every change
 * re-arms it. Until then (start-up load) certificates are only indexed. */
void renew_start(struct renew *r);

/* Store hook: <c> is now its host's certificate. Computes its due time (ARI
 * facts kept when it is the same certificate) and indexes it; a certificate
 * that could loop has its last renewal time ("renewals/<host>") read first. */
void renew_installed(struct renew *r, const struct certstore_cert *c);

/* Store hook: <host>'s certificate is gone; it leaves the index. */
void renew_removed(struct renew *r, const char *host);

/* Records that <host> was renewed at <t>, in memory and as
 * "renewals/<host>" in storage. */
void renew_renewed(struct renew *r, const char *host, time_t t);

/* Deletes <host>'s "renewals/<host>" record (its certificate is deleted). */
void renew_forget(struct renew *r, const char *host);

/* Runs a pass now: every certificate whose time has come (every one when
 * <force_all>) asks ARI when due and gets a renewal job, unless a job or its
 * backoff is under way; each goes back in the index with its next wake time,
 * so a pass always ends. Then re-arms the timer. */
void renew_pass(struct renew *r, int force_all);

/* After a config reload: recomputes every due time, re-arms the timer. */
void renew_reload(struct renew *r);

/* Shares renewal duty with the fleet's live members <m> (borrowed; NULL:
 * this node renews and asks ARI for every certificate). A certificate that
 * another member owns is not renewed here, nor asked about. */
void renew_set_members(struct renew *r, struct members *m);

/* The members changed: each certificate's owner is computed again; the due
 * ones that became this node's are renewed by the next pass. */
void renew_members_changed(struct renew *r);

/* The renewal plan (core/renewplan.h): due renewals spread against the
 * CA's orders budget, and its shortfall. */
struct renewplan *renew_plan(const struct renew *r);

/* Certificates this node owns (all of them without members). */
size_t renew_share(const struct renew *r);

/* The id of the member that renews <host>, or NULL without members. */
const char *renew_owner(const struct renew *r, const char *host);

/* The host at the head of the index and its wake time in <wake> (when not
 * NULL), or NULL when the index is empty. For logs and tests. */
const char *renew_first(const struct renew *r, time_t *wake);

/* <host>'s due and wake times; -1 when it is not indexed. For tests. */
int renew_times(const struct renew *r, const char *host, time_t *due, time_t *wake);

#endif
