/* storage_tool: reads and writes acme-spoa storage from scripts (tests).
 *   storage_tool file:/dir|shm|redis:HOST:PORT[:NAMESPACE] put KEY VALUE [TTL]
 *   storage_tool ... get KEY        prints the value, exit 1 if absent
 *   storage_tool ... del KEY
 *   storage_tool ... list PREFIX    one key a line */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"
#include "tests/tools/store_spec.h"

int main(int argc, char **argv)
{
	struct storage *st;
	char err[512], *val = NULL, **keys = NULL;
	size_t len = 0, n = 0, i;
	int rc = 2;

	if (argc < 4) {
		fprintf(stderr, "usage: storage_tool file:/dir|redis:HOST:PORT[:NS] put|get|del|list KEY [VALUE [TTL]]\n");
		return 2;
	}
	st = store_spec_open(argv[1], err, sizeof(err));
	if (!st) {
		fprintf(stderr, "storage_tool: %s\n", err);
		return 2;
	}
	if (strcmp(argv[2], "put") == 0 && argc >= 5) {
		rc = storage_put(st, argv[3], argv[4], strlen(argv[4]),
				 argc > 5 ? (unsigned)atoi(argv[5]) : 0, err, sizeof(err)) == 0 ? 0 : 2;
	} else if (strcmp(argv[2], "get") == 0) {
		rc = storage_get(st, argv[3], &val, &len, err, sizeof(err));
		if (rc == 0)
			fwrite(val, 1, len, stdout);
		rc = rc == -1 ? 2 : rc;
		free(val);
	} else if (strcmp(argv[2], "del") == 0) {
		rc = storage_del(st, argv[3], err, sizeof(err)) == 0 ? 0 : 2;
	} else if (strcmp(argv[2], "list") == 0) {
		rc = storage_list(st, argv[3], &keys, &n, err, sizeof(err)) == 0 ? 0 : 2;
		for (i = 0; rc == 0 && i < n; i++)
			printf("%s\n", keys[i]);
		storage_list_free(keys, n);
	}
	if (rc == 2)
		fprintf(stderr, "storage_tool: %s\n", err[0] ? err : "bad arguments");
	storage_close(st);
	return rc;
}
