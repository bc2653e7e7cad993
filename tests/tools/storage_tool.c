/* storage_tool: reads and writes acme-spoa storage from scripts (tests).
 *   storage_tool file:/dir|shm|redis:HOST:PORT[:NAMESPACE] put KEY VALUE [TTL]
 *   storage_tool ... get KEY        prints the value, exit 1 if absent
 *   storage_tool ... del KEY
 *   storage_tool ... list PREFIX    one key a line */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/storage.h"

int main(int argc, char **argv)
{
	struct storage_conf conf = { 0 };
	struct storage *st;
	const char *name = "file";
	char spec[1024], err[512], *val = NULL, **keys = NULL;
	size_t len = 0, n = 0, i;
	int rc = 2;

	if (argc < 4) {
		fprintf(stderr, "usage: storage_tool file:/dir|redis:HOST:PORT[:NS] put|get|del|list KEY [VALUE [TTL]]\n");
		return 2;
	}
	snprintf(spec, sizeof(spec), "%s", argv[1]);
	if (strncmp(spec, "file:", 5) == 0) {
		conf.file_path = spec + 5;
	} else if (strncmp(spec, "redis:", 6) == 0) {
		char *host = spec + 6, *port = strchr(host, ':'), *ns = NULL;

		name = "redis";
		if (port) {
			*port++ = '\0';
			ns = strchr(port, ':');
			if (ns)
				*ns++ = '\0';
			conf.redis_port = atoi(port);
		}
		conf.redis_host = host;
		conf.redis_namespace = ns;
	} else {
		name = spec;
	}
	st = storage_open(name, &conf, err, sizeof(err));
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
