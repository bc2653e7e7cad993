/* SPDX-License-Identifier: Apache-2.0 */
/* Storage health as the core sees it: every module hands the results of its
 * storage calls here, so /healthz and the error counter speak for them all.
 * The bottom of core/: it includes nothing of the project but storage.h. */
#ifndef ACME_SPOA_HEALTH_H
#define ACME_SPOA_HEALTH_H

#include <stdint.h>

struct storage_res;

struct health {
	uint64_t storage_errors;	/* storage results that were errors */
	int storage_ok;			/* the last storage answer was not an error */
	char storage_err[256];		/* the last error's reason */
	int store_ready;		/* account, index and change feed loaded from storage: a
					 * start without the store serves memory only until then */
};

/* Starts <h> healthy with no error counted. */
void health_init(struct health *h);

/* Counts storage result <res>: sets <h>'s health state, and on an error
 * counts it and keeps its reason. */
void health_storage_result(struct health *h, const struct storage_res *res);

#endif
