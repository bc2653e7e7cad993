/* SPDX-License-Identifier: Apache-2.0 */
/* storage_tool: reads and writes acme-spoa storage from scripts (tests).
 *   storage_tool file:/dir|shm|redis:HOST:PORT[:NAMESPACE]|consul:HOST:PORT[:KV_PATH]
 *                put KEY VALUE [TTL]
 *   storage_tool ... get KEY        prints the value, exit 1 if absent
 *   storage_tool ... del KEY
 *   storage_tool ... list PREFIX    one key a line
 *   storage_tool ... feed NAME [SINCE]
 *                                   the change feed NAME after generation SINCE
 *                                   (default 0): "MEMBER VERSION" a line ("-"
 *                                   for a removed member), then "gen N"
 * Exit 2 on any error, with the reason on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "tests/tools/store_spec.h"

/* Prints every change of feed <name> after <since>, batch after batch. */
static int tool_feed(struct storage *st, const char *name, uint64_t since, char *err,
		     size_t errlen)
{
	struct storage_res res;
	size_t i;
	int more;

	do {
		if (storage_wait(st, storage_feed_since(st, name, since, NULL, NULL), &res, err,
				 errlen) != 0)
			return -1;
		for (i = 0; i < res.n; i++)
			printf("%s %s\n", res.keys[i], res.vals && res.vals[i] ? res.vals[i] : "-");
		more = res.more && res.gen > since;
		since = res.gen;
		storage_res_clear(&res);
	} while (more);
	printf("gen %llu\n", (unsigned long long)since);
	return 0;
}

int main(int argc, char **argv)
{
	struct storage *st;
	char err[512] = "", *val = NULL, **keys = NULL;
	size_t len = 0, n = 0, i;
	int rc = 2;

	if (argc < 4) {
		fprintf(stderr, "usage: storage_tool file:/dir|shm|redis:HOST:PORT[:NS]|"
			"consul:HOST:PORT[:KV_PATH] "
			"put|get|del|list|feed KEY [VALUE [TTL]]\n");
		return 2;
	}
	st = store_spec_open(argv[1], err, sizeof(err));
	if (!st) {
		fprintf(stderr, "storage_tool: %s\n", err);
		return 2;
	}
	if (strcmp(argv[2], "put") == 0 && argc >= 5) {
		rc = ss_put(st, argv[3], argv[4], strlen(argv[4]),
			    argc > 5 ? (unsigned)atoi(argv[5]) : 0, err, sizeof(err)) == 0 ? 0 : 2;
	} else if (strcmp(argv[2], "get") == 0) {
		rc = ss_get(st, argv[3], &val, &len, err, sizeof(err));
		if (rc == 0)
			fwrite(val, 1, len, stdout);
		rc = rc == -1 ? 2 : rc;
		free(val);
	} else if (strcmp(argv[2], "del") == 0) {
		rc = ss_del(st, argv[3], err, sizeof(err)) == 0 ? 0 : 2;
	} else if (strcmp(argv[2], "list") == 0) {
		rc = ss_list(st, argv[3], &keys, &n, err, sizeof(err)) == 0 ? 0 : 2;
		for (i = 0; rc == 0 && i < n; i++)
			printf("%s\n", keys[i]);
		storage_list_free(keys, n);
	} else if (strcmp(argv[2], "feed") == 0) {
		rc = tool_feed(st, argv[3], argc > 4 ? strtoull(argv[4], NULL, 10) : 0, err,
			       sizeof(err)) == 0 ? 0 : 2;
	}
	if (rc == 2)
		fprintf(stderr, "storage_tool: %s\n", err[0] ? err : "bad arguments");
	storage_close(st);
	return rc;
}
