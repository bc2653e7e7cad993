/* SPDX-License-Identifier: Apache-2.0 */
/* Opens acme-spoa storage from a command-line spec, for the test tools:
 * "file:/DIR", "redis:HOST:PORT[:NAMESPACE]", "consul:HOST:PORT[:KV_PATH]"
 * (the token from $CONSUL_HTTP_TOKEN, as Consul's own tools), or a backend
 * name ("shm").
 * Header-only: each tool is built from one .c file. */
#ifndef ACME_SPOA_STORE_SPEC_H
#define ACME_SPOA_STORE_SPEC_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "storage/storage.h"
#include "tests/tools/storage_sync.h"

/* Returns the opened storage on libev's default loop, or NULL with the
 * reason in <err>. */
static inline struct storage *store_spec_open(const char *spec_in, char *err, size_t errlen)
{
	struct storage_conf conf = { 0 };
	static char spec[1024];	/* conf points into it for the storage's lifetime */
	const char *name = "file";

	snprintf(spec, sizeof(spec), "%s", spec_in);
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
	} else if (strncmp(spec, "consul:", 7) == 0) {
		char *host = spec + 7, *port = strchr(host, ':'), *kv = NULL;

		name = "consul";
		if (port) {
			*port++ = '\0';
			kv = strchr(port, ':');
			if (kv)
				*kv++ = '\0';
			conf.consul_port = atoi(port);
		}
		conf.consul_host = host;
		conf.consul_kv_path = kv;
		conf.consul_token = getenv("CONSUL_HTTP_TOKEN");
	} else {
		name = spec;
	}
	return storage_open(name, &conf, EV_DEFAULT, err, errlen);
}

#endif
