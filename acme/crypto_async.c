/* SPDX-License-Identifier: Apache-2.0 */
/* Key generation on worker threads, results handed to the libev loop thread with an
 * ev_async per job, so RSA 4096 never stalls the loop. Part of acme/crypto.h. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "acme/crypto.h"

#define CRYPTO_WORKERS 2

enum crypto_job_state {
	CRYPTO_JOB_QUEUED = 0,
	CRYPTO_JOB_RUNNING,
	CRYPTO_JOB_DONE,
	CRYPTO_JOB__MAX
};

struct crypto_job {
	struct crypto_job *next;
	ev_async async;                 /* on <loop>; the worker sends it when done */
	struct ev_loop *loop;
	enum crypto_key_type type;
	int rsa_bits;
	void (*cb)(void *arg, EVP_PKEY *key, const char *err);
	void *arg;
	EVP_PKEY *key;
	enum crypto_job_state state;
	int cancelled;                  /* running job dropped: the worker frees it */
	char err[256];
};

/* Every job not yet delivered, in submission order; all guarded by crypto_mtx. */
static pthread_mutex_t crypto_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t crypto_cond = PTHREAD_COND_INITIALIZER;
static struct crypto_job *crypto_jobs;
static pthread_t crypto_workers[CRYPTO_WORKERS];
static int crypto_nworkers;
static int crypto_stopping;

static void crypto_job_unlink(struct crypto_job *job)
{
	struct crypto_job **pp;

	for (pp = &crypto_jobs; *pp; pp = &(*pp)->next) {
		if (*pp == job) {
			*pp = job->next;
			return;
		}
	}
}

static void *crypto_worker_main(void *unused)
{
	struct crypto_job *job;
	EVP_PKEY *key;
	char err[256];

	(void)unused;
	pthread_mutex_lock(&crypto_mtx);
	for (;;) {
		for (job = crypto_jobs; job && job->state != CRYPTO_JOB_QUEUED; job = job->next)
			;
		if (crypto_stopping)
			break;
		if (!job) {
			pthread_cond_wait(&crypto_cond, &crypto_mtx);
			continue;
		}
		job->state = CRYPTO_JOB_RUNNING;
		pthread_mutex_unlock(&crypto_mtx);

		err[0] = '\0';
		key = crypto_key_generate(job->type, job->rsa_bits, err, sizeof(err));

		pthread_mutex_lock(&crypto_mtx);
		if (job->cancelled) {
			crypto_job_unlink(job);
			EVP_PKEY_free(key);
			free(job);
			continue;
		}
		job->key = key;
		memcpy(job->err, err, sizeof(err));
		job->state = CRYPTO_JOB_DONE;
		ev_async_send(job->loop, &job->async);
	}
	pthread_mutex_unlock(&crypto_mtx);
	return NULL;
}

static void cb_crypto_job_done(struct ev_loop *loop, ev_async *w, int revents)
{
	struct crypto_job *job = w->data;

	(void)revents;
	pthread_mutex_lock(&crypto_mtx);
	if (job->state != CRYPTO_JOB_DONE) {
		pthread_mutex_unlock(&crypto_mtx);
		return;
	}
	crypto_job_unlink(job);
	pthread_mutex_unlock(&crypto_mtx);
	ev_async_stop(loop, &job->async);
	job->cb(job->arg, job->key, job->key ? NULL : (job->err[0] ? job->err : "key generation failed"));
	free(job);
}

/* Starts one more worker with every signal blocked, so signals reach the loop thread. */
static int crypto_worker_start(void)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&crypto_workers[crypto_nworkers], NULL, crypto_worker_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return -1;
	crypto_nworkers++;
	return 0;
}

int crypto_key_generate_async(struct ev_loop *loop, enum crypto_key_type type, int rsa_bits,
			      void (*cb)(void *arg, EVP_PKEY *key, const char *err), void *arg)
{
	struct crypto_job *job, **pp;
	int rc = -1;

	if (!loop || !cb || (unsigned)type >= CRYPTO_KEY__MAX || !(job = calloc(1, sizeof(*job))))
		return -1;
	job->loop = loop;
	job->type = type;
	job->rsa_bits = rsa_bits;
	job->cb = cb;
	job->arg = arg;
	ev_async_init(&job->async, cb_crypto_job_done);
	job->async.data = job;

	pthread_mutex_lock(&crypto_mtx);
	if (crypto_nworkers < CRYPTO_WORKERS)
		crypto_worker_start();
	if (crypto_nworkers == 0)
		goto out;
	ev_async_start(loop, &job->async);
	for (pp = &crypto_jobs; *pp; pp = &(*pp)->next)
		;
	*pp = job;
	job = NULL;
	pthread_cond_signal(&crypto_cond);
	rc = 0;
out:
	pthread_mutex_unlock(&crypto_mtx);
	free(job);
	return rc;
}

int crypto_key_generate_cancel(void *arg)
{
	struct crypto_job *job, *next;
	int n = 0;

	pthread_mutex_lock(&crypto_mtx);
	for (job = crypto_jobs; job; job = next) {
		next = job->next;
		if (job->arg != arg || job->cancelled)
			continue;
		ev_async_stop(job->loop, &job->async);
		n++;
		if (job->state == CRYPTO_JOB_RUNNING) {
			job->cancelled = 1;
			continue;
		}
		crypto_job_unlink(job);
		EVP_PKEY_free(job->key);
		free(job);
	}
	pthread_mutex_unlock(&crypto_mtx);
	return n;
}

void crypto_async_shutdown(void)
{
	struct crypto_job *job;
	int i;

	pthread_mutex_lock(&crypto_mtx);
	crypto_stopping = 1;
	pthread_cond_broadcast(&crypto_cond);
	pthread_mutex_unlock(&crypto_mtx);
	for (i = 0; i < crypto_nworkers; i++)
		pthread_join(crypto_workers[i], NULL);

	pthread_mutex_lock(&crypto_mtx);
	while ((job = crypto_jobs)) {
		crypto_jobs = job->next;
		ev_async_stop(job->loop, &job->async);
		EVP_PKEY_free(job->key);
		free(job);
	}
	crypto_nworkers = 0;
	crypto_stopping = 0;
	pthread_mutex_unlock(&crypto_mtx);
}
