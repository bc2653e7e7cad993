/* SPDX-License-Identifier: Apache-2.0 */
/* The dns-01 solver (dns01.h).
 *
 * A task is one present (record -> publish -> check until visible) or one
 * removal (unpublish -> forget the record). Each waits for one thing at a
 * time: a storage call, a hook run, or a work item on the solver's worker
 * threads (the blocking ldns calls of rfc2136.c). Freeing the solver detaches
 * the work items in flight; their completions then only free themselves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/evp.h>

#include "dns/dns01.h"
#include "dns/hook.h"
#include "dns/rfc2136.h"
#include "lib/hmap.h"
#include "lib/host.h"
#include "lib/log.h"
#include "lib/workq.h"
#include "storage/storage.h"

#define DNS01_THREADS		2
#define DNS01_TASKS_MAX		4096	/* presents and removals at once */
#define DNS01_TTL		60	/* of the TXT records */
#define DNS01_CHECK_FIRST_S	0.5
#define DNS01_CHECK_MAX_S	4.0
#define DNS01_VALUE_MAX		128
#define DNS01_NODE_HEX		16

enum dns01_step {
	DNS01_RECORD = 0,	/* writing the storage record */
	DNS01_PUBLISH,		/* update / hook "present" */
	DNS01_CHECK_WAIT,	/* between two propagation checks */
	DNS01_CHECK,		/* asking the authoritative servers */
	DNS01_UNPUBLISH,	/* update / hook "cleanup" */
	DNS01_FORGET,		/* deleting the storage record */
	DNS01__STEPS
};

enum dns01_op {
	DNS01_OP_ADD = 0,
	DNS01_OP_DEL,
	DNS01_OP_CHECK,
};

struct dns01_task;

/* One blocking job for a worker thread; <t> NULL once its task is gone. */
struct dns01_work {
	struct workq_item it;
	struct dns01_task *t;
	const struct dns01 *d;
	enum dns01_op op;
	char fqdn[DNS_NAME_MAX], value[DNS01_VALUE_MAX], zone[DNS_NAME_MAX];
	int rc;			/* ADD/DEL: 0 or -1; CHECK: 1 visible everywhere, 0 not yet, -1 */
	int refused;		/* ADD: the server answered with an error: nothing published */
	char err[512];
};

struct dns01_task {
	TAILQ_ENTRY(dns01_task) link;
	struct dns01 *d;
	enum dns01_step step;
	char host[DNS_NAME_MAX], fqdn[DNS_NAME_MAX], value[DNS01_VALUE_MAX];
	char zone[DNS_NAME_MAX];	/* once known */
	char key[STORAGE_KEY_MAX];
	struct storage_req *req;
	struct dns_hook *hook;
	struct dns01_work *work;
	ev_timer timer;
	ev_tstamp started, deadline;
	double delay;
	void (*done)(void *ctx, int ok, const char *err);
	void *ctx;
	int removal;			/* a removal task (else a present) */
	struct dns01_task *then;	/* a present of the same record waiting for this removal */
	char lasterr[512];
};

TAILQ_HEAD(dns01_tasks, dns01_task);

struct dns01 {
	struct ev_loop *loop;
	struct storage *st;
	struct workq *wq;
	enum dns01_provider provider;
	int has_server;
	struct dns_server server;
	char *tsig_key_name, *tsig_algorithm, *tsig_secret, *zone, *exec;
	char **exec_env;		/* the hook's environment (exec) */
	int (*name_ok)(void *arg, const char *name);
	void *name_ok_arg;
	int propagation_timeout;
	char node[DNS01_NODE_HEX + 1];	/* this node's part of the record keys */
	struct dns01_tasks tasks;
	size_t ntasks;
	/* "<fqdn> <value>" -> 1: an update was sent (maybe applied), 2: nothing
	 * was published (refused): its removal only forgets the record */
	struct hmap published;
	struct dns01_stats stats;
	int closing;
};

static const char *const dns01_provider_names[DNS01__MAX] = { "rfc2136", "exec" };

static void dns01_publish(struct dns01_task *t);
static void dns01_record(struct dns01_task *t);

/* ---- record keys ------------------------------------------------------- */

static int dns01_key_chars(const char *s)
{
	return *s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
		     strlen(s) && strcmp(s, ".") && strcmp(s, "..");
}

int dns01_record_key(const char *fqdn, const char *value, char *key, size_t keylen)
{
	if (!dns01_key_chars(fqdn) || !dns01_key_chars(value))
		return -1;
	return (size_t)snprintf(key, keylen, "%s/%s", fqdn, value) < keylen ? 0 : -1;
}

int dns01_record_parse(const char *key, char *fqdn, size_t fqdnlen, char *value, size_t valuelen)
{
	const char *slash = strchr(key, '/');
	size_t n;

	if (!slash || strchr(slash + 1, '/'))
		return -1;
	n = (size_t)(slash - key);
	if (n == 0 || n >= fqdnlen || strlen(slash + 1) >= valuelen)
		return -1;
	memcpy(fqdn, key, n);
	fqdn[n] = '\0';
	snprintf(value, valuelen, "%s", slash + 1);
	return dns01_key_chars(fqdn) && dns01_key_chars(value) ? 0 : -1;
}

/* "dns01/<node>/<fqdn>/<value>" */
static int dns01_full_key(const struct dns01 *d, const char *fqdn, const char *value, char *key,
			  size_t keylen)
{
	char rest[STORAGE_KEY_MAX];

	if (dns01_record_key(fqdn, value, rest, sizeof(rest)) == -1)
		return -1;
	return (size_t)snprintf(key, keylen, "dns01/%s/%s", d->node, rest) < keylen ? 0 : -1;
}

/* ---- work on the worker threads --------------------------------------- */

static void dns01_work_run(struct workq_item *it)
{
	struct dns01_work *w = (struct dns01_work *)it;
	const struct dns01 *d = w->d;
	const struct dns_server *srv = d->has_server ? &d->server : NULL;
	struct dns_tsig tsig = { d->tsig_key_name, d->tsig_algorithm, d->tsig_secret };
	struct dns_server servers[DNS_SERVERS_MAX];
	char err[256];
	int n, i, seen = 0, asked = 0;

	w->rc = -1;
	if (!w->zone[0] && dns_find_zone(srv, w->fqdn, w->zone, sizeof(w->zone), w->err,
					 sizeof(w->err)) == -1)
		return;
	switch (w->op) {
	case DNS01_OP_ADD:
	case DNS01_OP_DEL:
		w->rc = dns_update_txt(srv, d->tsig_secret ? &tsig : NULL, w->zone, w->fqdn, w->value,
				       w->op == DNS01_OP_ADD, DNS01_TTL, w->err, sizeof(w->err));
		w->refused = w->rc == -1 && strstr(w->err, "refused the update") != NULL;
		return;
	case DNS01_OP_CHECK:
		n = dns_zone_servers(srv, w->zone, servers, DNS_SERVERS_MAX, w->err, sizeof(w->err));
		if (n <= 0)
			return;
		w->err[0] = '\0';
		for (i = 0; i < n; i++) {
			int r = dns_has_txt(&servers[i], w->fqdn, w->value, err, sizeof(err));

			/* a secondary this node cannot reach is no reason to wait;
			 * the configured server (first) is */
			if (r == -1 && !(srv && i == 0)) {
				log_debug("dns01: %s: %s (not counted)", w->fqdn, err);
				continue;
			}
			asked++;
			if (r == 1) {
				seen++;
			} else if (!w->err[0]) {
				if (r == 0)
					snprintf(w->err, sizeof(w->err), "%.300s:%d does not answer it yet",
						 servers[i].host, servers[i].port);
				else
					snprintf(w->err, sizeof(w->err), "%s", err);
			}
		}
		if (asked == 0)
			snprintf(w->err, sizeof(w->err), "no authoritative server of %s answered", w->zone);
		w->rc = asked > 0 && seen == asked ? 1 : 0;
		return;
	}
}

static void dns01_published(struct dns01_task *t, int rc);
static void dns01_checked(struct dns01_task *t, int rc);
static void dns01_unpublished(struct dns01_task *t, int rc);

static void dns01_work_done(struct workq_item *it)
{
	struct dns01_work *w = (struct dns01_work *)it;
	struct dns01_task *t = w->t;
	int rc = w->rc;

	if (!t) {
		free(w);
		return;
	}
	t->work = NULL;
	if (w->zone[0] && !t->zone[0])
		snprintf(t->zone, sizeof(t->zone), "%s", w->zone);
	snprintf(t->lasterr, sizeof(t->lasterr), "%s", w->err);
	if (t->step == DNS01_PUBLISH && rc == -1 && w->refused) {
		char pk[2 * DNS_NAME_MAX + DNS01_VALUE_MAX];

		snprintf(pk, sizeof(pk), "%s %s", t->fqdn, t->value);
		hmap_put(&t->d->published, pk, (void *)2, NULL);
	}
	free(w);
	if (t->step == DNS01_PUBLISH)
		dns01_published(t, rc);
	else if (t->step == DNS01_CHECK)
		dns01_checked(t, rc);
	else if (t->step == DNS01_UNPUBLISH)
		dns01_unpublished(t, rc);
}

static int dns01_work_start(struct dns01_task *t, enum dns01_op op)
{
	struct dns01_work *w = calloc(1, sizeof(*w));

	if (!w)
		return -1;
	w->it.run = dns01_work_run;
	w->it.done = dns01_work_done;
	w->t = t;
	w->d = t->d;
	w->op = op;
	snprintf(w->fqdn, sizeof(w->fqdn), "%s", t->fqdn);
	snprintf(w->value, sizeof(w->value), "%s", t->value);
	snprintf(w->zone, sizeof(w->zone), "%s", t->zone[0] ? t->zone : t->d->zone ? t->d->zone : "");
	t->work = w;
	workq_submit(t->d->wq, &w->it, workq_shard(t->fqdn));
	return 0;
}

/* ---- tasks ------------------------------------------------------------- */

static void dns01_task_free(struct dns01_task *t)
{
	struct dns01 *d = t->d;
	struct dns01_task *then = t->then;

	TAILQ_REMOVE(&d->tasks, t, link);
	d->ntasks--;
	storage_cancel(t->req);
	dns_hook_abort(t->hook);
	if (t->work)
		t->work->t = NULL;
	ev_timer_stop(d->loop, &t->timer);
	free(t);
	/* the CA may hand out the same challenge again (a pending authorization
	 * reused after a restart): its present starts once the stale copy is gone */
	if (then && !d->closing)
		dns01_record(then);
}

/* Ends a present: reports to its order, frees the task. */
static void dns01_present_end(struct dns01_task *t, int ok, const char *err)
{
	void (*done)(void *ctx, int ok, const char *err) = t->done;
	void *ctx = t->ctx;
	char msg[1024];

	if (ok)
		t->d->stats.present_ok++;
	else
		t->d->stats.present_failed++;
	snprintf(msg, sizeof(msg), "%s", err ? err : "");
	dns01_task_free(t);
	if (done)
		done(ctx, ok, ok ? NULL : msg);
}

static void cb_dns01_stored(void *arg, struct storage_res *res)
{
	struct dns01_task *t = arg;
	char msg[600];

	t->req = NULL;
	if (res->rc == -1) {
		if (t->step == DNS01_RECORD) {
			snprintf(msg, sizeof(msg), "cannot record %s in storage before publishing it: %s",
				 t->fqdn, res->err);
			dns01_present_end(t, 0, msg);
		} else {
			log_warn("dns01: host=%s %s removed, but its storage record stays: %s", t->host,
				 t->fqdn, res->err);
			dns01_task_free(t);
		}
		return;
	}
	if (t->step == DNS01_FORGET) {
		dns01_task_free(t);
		return;
	}
	dns01_publish(t);
}

static void cb_dns01_hook(void *arg, int ok, const char *err)
{
	struct dns01_task *t = arg;

	t->hook = NULL;
	if (!ok)
		snprintf(t->lasterr, sizeof(t->lasterr), "hook %s %s: %s", t->d->exec,
			 t->step == DNS01_PUBLISH ? "present" : "cleanup", err ? err : "failed");
	if (t->step == DNS01_PUBLISH)
		dns01_published(t, ok ? 0 : -1);
	else
		dns01_unpublished(t, ok ? 0 : -1);
}

static int dns01_hook_start(struct dns01_task *t, const char *what)
{
	/* "--" first: a value (base64url) may start with '-', and nothing after
	 * it is ever an option to the hook */
	char *argv[6] = { t->d->exec, "--", (char *)what, t->fqdn, t->value, NULL };

	t->hook = dns_hook_run(t->d->loop, t->d->exec, argv, t->d->exec_env,
			       t->d->propagation_timeout, cb_dns01_hook, t, t->lasterr,
			       sizeof(t->lasterr));
	return t->hook ? 0 : -1;
}

static void dns01_record(struct dns01_task *t)
{
	t->step = DNS01_RECORD;
	t->req = storage_put(t->d->st, t->key, t->host, strlen(t->host), 0, cb_dns01_stored, t);
	if (!t->req)
		dns01_present_end(t, 0, "out of memory");
}

static void dns01_publish(struct dns01_task *t)
{
	struct dns01 *d = t->d;
	char pk[2 * DNS_NAME_MAX + DNS01_VALUE_MAX];

	t->step = DNS01_PUBLISH;
	t->started = ev_now(d->loop);
	snprintf(pk, sizeof(pk), "%s %s", t->fqdn, t->value);
	hmap_put(&d->published, pk, (void *)1, NULL);
	if ((d->provider == DNS01_EXEC ? dns01_hook_start(t, "present")
				       : dns01_work_start(t, DNS01_OP_ADD)) == -1)
		dns01_present_end(t, 0, t->lasterr[0] ? t->lasterr : "out of memory");
}

static void dns01_check(struct dns01_task *t)
{
	t->step = DNS01_CHECK;
	if (dns01_work_start(t, DNS01_OP_CHECK) == -1)
		dns01_present_end(t, 0, "out of memory");
}

static void cb_dns01_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	dns01_check(w->data);
}

static void dns01_published(struct dns01_task *t, int rc)
{
	struct dns01 *d = t->d;
	char msg[800];

	if (rc == -1) {
		snprintf(msg, sizeof(msg), "%s: %s", dns01_provider_names[d->provider], t->lasterr);
		dns01_present_end(t, 0, msg);
		return;
	}
	log_info("dns01: host=%s TXT %s published (%s)%s%s", t->host, t->fqdn,
		 dns01_provider_names[d->provider], t->zone[0] ? " in zone " : "", t->zone);
	t->deadline = ev_now(d->loop) + d->propagation_timeout;
	t->delay = DNS01_CHECK_FIRST_S;
	dns01_check(t);
}

/* The check came back: visible everywhere, or ask again a little later. */
static void dns01_checked(struct dns01_task *t, int rc)
{
	ev_tstamp now = ev_now(t->d->loop);
	char msg[800];

	if (rc == 1) {
		log_info("dns01: host=%s TXT %s visible at the authoritative servers after %.1f s",
			 t->host, t->fqdn, now - t->started);
		dns01_present_end(t, 1, NULL);
		return;
	}
	if (now + t->delay > t->deadline) {
		snprintf(msg, sizeof(msg), "TXT %.255s not visible at the authoritative servers of %.255s "
			 "after %d s: %.200s", t->fqdn, t->zone[0] ? t->zone : "its zone",
			 t->d->propagation_timeout, t->lasterr);
		dns01_present_end(t, 0, msg);
		return;
	}
	log_debug("dns01: host=%s TXT %s not visible yet: %s", t->host, t->fqdn, t->lasterr);
	t->step = DNS01_CHECK_WAIT;
	ev_timer_init(&t->timer, cb_dns01_timer, t->delay, 0.);
	t->timer.data = t;
	ev_timer_start(t->d->loop, &t->timer);
	t->delay *= 2;
	if (t->delay > DNS01_CHECK_MAX_S)
		t->delay = DNS01_CHECK_MAX_S;
}

static void dns01_forget(struct dns01_task *t)
{
	t->step = DNS01_FORGET;
	t->req = storage_del(t->d->st, t->key, cb_dns01_stored, t);
	if (!t->req)
		dns01_task_free(t);
}

static void dns01_unpublish(struct dns01_task *t)
{
	struct dns01 *d = t->d;

	t->step = DNS01_UNPUBLISH;
	if ((d->provider == DNS01_EXEC ? dns01_hook_start(t, "cleanup")
				       : dns01_work_start(t, DNS01_OP_DEL)) == -1) {
		log_err("dns01: host=%s cannot remove TXT %s: %s", t->host, t->fqdn,
			t->lasterr[0] ? t->lasterr : "out of memory");
		d->stats.cleanup_failed++;
		dns01_task_free(t);
	}
}

static void dns01_unpublished(struct dns01_task *t, int rc)
{
	if (rc == -1) {
		log_err("dns01: host=%s cannot remove TXT %s (kept in storage as %s, retried at "
			"the next start): %s", t->host, t->fqdn, t->key, t->lasterr);
		t->d->stats.cleanup_failed++;
		dns01_task_free(t);
		return;
	}
	log_info("dns01: host=%s TXT %s removed", t->host, t->fqdn);
	t->d->stats.cleanup_ok++;
	dns01_forget(t);
}

static struct dns01_task *dns01_task_new(struct dns01 *d, const char *host, const char *fqdn,
					 const char *value, const char *key)
{
	struct dns01_task *t;

	if (d->ntasks >= DNS01_TASKS_MAX || strlen(host) >= sizeof(t->host) ||
	    strlen(fqdn) >= sizeof(t->fqdn) || strlen(value) >= sizeof(t->value))
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->d = d;
	snprintf(t->host, sizeof(t->host), "%s", host);
	snprintf(t->fqdn, sizeof(t->fqdn), "%s", fqdn);
	snprintf(t->value, sizeof(t->value), "%s", value);
	if (key)
		snprintf(t->key, sizeof(t->key), "%s", key);
	else if (dns01_full_key(d, fqdn, value, t->key, sizeof(t->key)) == -1) {
		free(t);
		return NULL;
	}
	if (d->zone)
		snprintf(t->zone, sizeof(t->zone), "%s", d->zone);
	ev_init(&t->timer, NULL);
	TAILQ_INSERT_TAIL(&d->tasks, t, link);
	d->ntasks++;
	return t;
}

int dns01_present(struct dns01 *d, const char *host, const char *fqdn, const char *value,
		  void (*done)(void *ctx, int ok, const char *err), void *ctx)
{
	struct dns01_task *t, *r;

	if (!d || !host || !fqdn || !value || !done)
		return -1;
	t = dns01_task_new(d, host, fqdn, value, NULL);
	if (!t) {
		log_err("dns01: host=%s cannot start publishing %s (bad name or too many tasks)", host,
			fqdn);
		return -1;
	}
	t->done = done;
	t->ctx = ctx;
	TAILQ_FOREACH(r, &d->tasks, link)
		if (r->removal && !r->then && !strcmp(r->fqdn, fqdn) && !strcmp(r->value, value)) {
			log_info("dns01: host=%s TXT %s waits for the removal of its stale copy", host, fqdn);
			r->then = t;
			return 0;
		}
	/* storage_put completes on a later turn: done never runs inside this call */
	dns01_record(t);
	return 0;
}

void dns01_cancel(struct dns01 *d, void *ctx)
{
	struct dns01_task *t;

	if (!d)
		return;
	TAILQ_FOREACH(t, &d->tasks, link)
		if (t->ctx == ctx && t->done)
			t->done = NULL;
}

static void dns01_cleanup_key(struct dns01 *d, const char *host, const char *fqdn, const char *value,
			      const char *key)
{
	struct dns01_task *t = dns01_task_new(d, host, fqdn, value, key);
	char pk[2 * DNS_NAME_MAX + DNS01_VALUE_MAX];
	void *was;

	if (!t) {
		log_err("dns01: host=%s cannot start removing %s (too many tasks); retried at the next "
			"start", host, fqdn);
		return;
	}
	t->removal = 1;
	snprintf(pk, sizeof(pk), "%s %s", fqdn, value);
	was = hmap_del(&d->published, pk);
	/* refused by the server: nothing to remove, only the record to forget */
	if (was == (void *)2)
		dns01_forget(t);
	else
		dns01_unpublish(t);
}

void dns01_cleanup(struct dns01 *d, const char *host, const char *fqdn, const char *value)
{
	if (d && host && fqdn && value)
		dns01_cleanup_key(d, host, fqdn, value, NULL);
}

/* A record read back from storage: "_acme-challenge.<name>" with <name> a
 * host name of a zone this agent serves (never starting with '-', which a
 * hook or a resolver could take for an option), and a dns-01 digest value
 * (43 base64url characters). */
static int dns01_stale_ok(const struct dns01 *d, const char *fqdn, const char *value)
{
	static const char prefix[] = "_acme-challenge.";
	char name[DNS_NAME_MAX];
	const char *rest = fqdn + strlen(prefix);
	size_t zl;

	if (strncmp(fqdn, prefix, strlen(prefix)) != 0 || rest[0] == '-' || rest[0] == '.')
		return 0;
	if (host_normalize(rest, name, sizeof(name), HOST_SINGLE) == -1 || strcmp(name, rest) != 0)
		return 0;
	if (strlen(value) != 43 || strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				       "0123456789-_") != 43)
		return 0;
	if (d->name_ok && d->name_ok(d->name_ok_arg, name))
		return 1;
	if (!d->zone)
		return 0;
	zl = strlen(d->zone);
	return !strcmp(name, d->zone) ||
	       (strlen(name) > zl && name[strlen(name) - zl - 1] == '.' &&
		!strcmp(name + strlen(name) - zl, d->zone));
}

size_t dns01_cleanup_stale(struct dns01 *d)
{
	struct storage_res list;
	char err[256], prefix[64], fqdn[DNS_NAME_MAX], value[DNS01_VALUE_MAX];
	size_t i, n = 0;

	snprintf(prefix, sizeof(prefix), "dns01/%s/", d->node);
	if (storage_wait(d->st, storage_list(d->st, prefix, NULL, NULL), &list, err, sizeof(err)) == -1) {
		log_err("dns01: cannot list the TXT records a stop left: %s", err);
		return 0;
	}
	for (i = 0; i < list.n; i++) {
		if (dns01_record_parse(list.keys[i] + strlen(prefix), fqdn, sizeof(fqdn), value,
				       sizeof(value)) == -1)
			continue;
		if (!dns01_stale_ok(d, fqdn, value)) {
			log_warn("dns01: ignoring stored record %s: not a dns-01 record of a zone "
				 "served here", list.keys[i]);
			continue;
		}
		log_info("dns01: removing TXT %s left by a stop", fqdn);
		dns01_cleanup_key(d, "-", fqdn, value, list.keys[i]);
		n++;
	}
	storage_res_clear(&list);
	return n;
}

size_t dns01_pending(const struct dns01 *d)
{
	return d ? d->ntasks : 0;
}

/* The node's part of the keys: a digest of the host name and <node>, stable
 * across restarts, so a restart finds its own records and never another
 * node's in a shared store. */
static void dns01_node_id(struct dns01 *d, const char *node)
{
	char hn[256] = "", id[600];
	unsigned char md[32];
	unsigned int mdlen = sizeof(md);
	size_t i;

	gethostname(hn, sizeof(hn) - 1);
	snprintf(id, sizeof(id), "%s|%s", hn, node ? node : "");
	EVP_Digest(id, strlen(id), md, &mdlen, EVP_sha256(), NULL);
	for (i = 0; i < DNS01_NODE_HEX / 2; i++)
		sprintf(d->node + i * 2, "%02x", md[i]);
}

struct dns01 *dns01_new(struct ev_loop *loop, const struct dns01_conf *conf, struct storage *st,
			const char *node, char *err, size_t errlen)
{
	struct dns01 *d = calloc(1, sizeof(*d));

	if (!d) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->loop = loop;
	d->st = st;
	d->provider = conf->provider;
	d->propagation_timeout = conf->propagation_timeout > 0 ? conf->propagation_timeout : 120;
	TAILQ_INIT(&d->tasks);
	hmap_init(&d->published);
	if (conf->server_host) {
		if (strlen(conf->server_host) >= sizeof(d->server.host)) {
			snprintf(err, errlen, "dns01.server: host name too long");
			goto fail;
		}
		snprintf(d->server.host, sizeof(d->server.host), "%s", conf->server_host);
		d->server.port = conf->server_port;
		d->has_server = 1;
	}
	if ((conf->tsig_key_name && !(d->tsig_key_name = strdup(conf->tsig_key_name))) ||
	    (conf->tsig_algorithm && !(d->tsig_algorithm = strdup(conf->tsig_algorithm))) ||
	    (conf->tsig_secret && !(d->tsig_secret = strdup(conf->tsig_secret))) ||
	    (conf->zone && !(d->zone = strdup(conf->zone))) ||
	    (conf->exec && !(d->exec = strdup(conf->exec))) ||
	    (d->provider == DNS01_EXEC &&
	     !(d->exec_env = dns_hook_env_new(conf->exec_env, conf->nexec_env)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	d->name_ok = conf->name_ok;
	d->name_ok_arg = conf->name_ok_arg;
	if (d->provider == DNS01_RFC2136 && (!d->has_server || !d->tsig_key_name || !d->tsig_secret)) {
		snprintf(err, errlen, "dns01: rfc2136 needs server, tsig_key_name and tsig_secret");
		goto fail;
	}
	if (d->provider == DNS01_EXEC && !d->exec) {
		snprintf(err, errlen, "dns01: exec needs a hook program");
		goto fail;
	}
	if (!d->tsig_algorithm && !(d->tsig_algorithm = strdup("hmac-sha256"))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	dns01_node_id(d, node);
	d->wq = workq_new(loop, DNS01_THREADS, err, errlen);
	if (!d->wq)
		goto fail;
	return d;
fail:
	dns01_free(d);
	return NULL;
}

void dns01_free(struct dns01 *d)
{
	struct dns01_task *t;

	if (!d)
		return;
	d->closing = 1;
	while ((t = TAILQ_FIRST(&d->tasks)))
		dns01_task_free(t);	/* detaches work in flight */
	workq_free(d->wq);		/* runs the detached completions: they free themselves */
	hmap_clear(&d->published, NULL);
	free(d->tsig_key_name);
	if (d->tsig_secret)
		OPENSSL_cleanse(d->tsig_secret, strlen(d->tsig_secret));
	free(d->tsig_secret);
	free(d->tsig_algorithm);
	free(d->zone);
	free(d->exec);
	dns_hook_env_free(d->exec_env);
	free(d);
}

void dns01_stats(const struct dns01 *d, struct dns01_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!d)
		return;
	*out = d->stats;
	out->pending = d->ntasks;
}
