/* Challenges: token -> key authorization, kept in memory for the SPOE path
 * and in storage (with a TTL) so that any node of a fleet answers the CA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/acme.h"
#include "lib/log.h"
#include "core/mgr_int.h"
#include "storage/storage.h"

#define MGR_CHALLENGE_TTL	3600

/* ---- challenges ---------------------------------------------------------- */

void mgr_challenge_put_local(struct mgr *m, const char *token, const char *keyauth)
{
	char *old = NULL, *v = strdup(keyauth);

	if (!v || hmap_put(&m->challenges, token, v, (void **)&old) == -1)
		free(v);
	free(old);
}

int mgr_challenge_store(struct mgr *m, const char *token, const char *keyauth, unsigned ttl)
{
	char key[STORAGE_KEY_MAX], err[256];

	mgr_challenge_put_local(m, token, keyauth);
	snprintf(key, sizeof(key), "challenges/%s", token);
	if (storage_put(m->st, key, keyauth, strlen(keyauth), ttl, err, sizeof(err)) == -1) {
		m->cnt.storage_errors++;
		log_err("challenge not shared through storage: %s", err);
		return -1;
	}
	return 0;
}

void mgr_challenge_forget(struct mgr *m, const char *token)
{
	char key[STORAGE_KEY_MAX], err[256];

	free(hmap_del(&m->challenges, token));
	snprintf(key, sizeof(key), "challenges/%s", token);
	if (storage_del(m->st, key, err, sizeof(err)) == -1)
		m->cnt.storage_errors++;
}

const char *mgr_challenge_lookup(struct mgr *m, const char *token, char *buf, size_t buflen)
{
	char key[STORAGE_KEY_MAX], err[256], *val = NULL;
	const char *p;
	size_t len = 0;

	if (!*token || strlen(token) > 256)
		return NULL;
	for (p = token; *p; p++)
		if (!(*p == '-' || *p == '_' || (*p >= '0' && *p <= '9') ||
		      (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
			return NULL;
	p = hmap_get(&m->challenges, token);
	if (p)
		return p;
	/* another node of the fleet may have stored it */
	snprintf(key, sizeof(key), "challenges/%s", token);
	if (storage_get(m->st, key, &val, &len, err, sizeof(err)) != 0 || len >= buflen) {
		free(val);
		return NULL;
	}
	memcpy(buf, val, len);
	buf[len] = '\0';
	free(val);
	return buf;
}

int mgr_hook_challenge_set(void *arg, const char *host, const char *token, const char *keyauth)
{
	struct mgr *m = arg;

	/* the CA may ask any node: never answer a challenge only this one knows */
	if (mgr_challenge_store(m, token, keyauth, MGR_CHALLENGE_TTL) == -1) {
		free(hmap_del(&m->challenges, token));
		return -1;
	}
	return 0;
}

void mgr_hook_challenge_clear(void *arg, const char *host, const char *token)
{
	mgr_challenge_forget(arg, token);
}
