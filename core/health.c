/* SPDX-License-Identifier: Apache-2.0 */
/* Storage health shared by the core's modules (health.h). */
#include <stdio.h>
#include <string.h>

#include "core/health.h"
#include "storage/storage.h"

void health_init(struct health *h)
{
	memset(h, 0, sizeof(*h));
	h->storage_ok = 1;
	h->store_ready = 1;
}

void health_storage_result(struct health *h, const struct storage_res *res)
{
	if (res->rc != -1) {
		h->storage_ok = 1;
		return;
	}
	h->storage_errors++;
	h->storage_ok = 0;
	snprintf(h->storage_err, sizeof(h->storage_err), "%s", res->err ? res->err : "error");
}
