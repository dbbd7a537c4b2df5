/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store.c - the store object, and the user-callback store.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

#define FL_EXPORT __attribute__((visibility("default")))

struct fl_store *store_new(const struct store_vtbl *vt, void *priv)
{
	struct fl_store *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->vt = vt;
	s->priv = priv;
	return s;
}

FL_EXPORT void fl_store_destroy(struct fl_store *s)
{
	if (!s)
		return;
	if (s->vt->destroy)
		s->vt->destroy(s);
	free(s);
}

/* ---- user callbacks ---- */

/*
 * Asynchronous reads run on up to CB_WORKERS threads of the store's own,
 * started on demand: a callback may block (a slow or remote store) and a
 * handler thread must not wait for it (far/pagein.c, "asynchronous page-in").
 */
#define CB_WORKERS 4

struct cb_store {
	struct fl_store_ops ops;
	void *arg;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct store_areq *head, *tail;	/* queued reads */
	unsigned int nworkers, idle;
	bool stop;
	pthread_t worker[CB_WORKERS];
	/* the creator's CPUs: workers start from pinned handler threads and
	 * would otherwise inherit a single CPU */
	cpu_set_t cpus;
	bool have_cpus;
};

static int cb_read(struct cb_store *cb, struct store_req *r)
{
	int ret = cb->ops.read(cb->arg, r->off, r->buf, r->len);

	/* a callback that returns a positive count broke the contract:
	 * only 0 means "all of it" */
	return ret < 0 ? ret : ret > 0 ? -EIO : 0;
}

static void *cb_worker(void *arg)
{
	struct cb_store *cb = arg;

	pthread_mutex_lock(&cb->lock);
	for (;;) {
		struct store_areq *a = cb->head;

		if (!a) {
			if (cb->stop)
				break;
			cb->idle++;
			pthread_cond_wait(&cb->cond, &cb->lock);
			cb->idle--;
			continue;
		}
		cb->head = a->qnext;
		if (!cb->head)
			cb->tail = NULL;
		pthread_mutex_unlock(&cb->lock);
		a->req.res = cb_read(cb, &a->req);
		/* @a belongs to its handler again once done() returns (done()
		 * signals the handler's eventfd itself) */
		a->done(a);
		pthread_mutex_lock(&cb->lock);
	}
	pthread_mutex_unlock(&cb->lock);
	return NULL;
}

static int cb_read_async(struct fl_store *s, struct store_areq *a)
{
	struct cb_store *cb = s->priv;
	int ret = 0;

	pthread_mutex_lock(&cb->lock);
	if (!cb->idle && cb->nworkers < CB_WORKERS) {
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		if (cb->have_cpus)
			pthread_attr_setaffinity_np(&attr, sizeof(cb->cpus), &cb->cpus);
		if (pthread_create(&cb->worker[cb->nworkers], &attr, cb_worker, cb) == 0)
			cb->nworkers++;
		else if (!cb->nworkers)
			ret = -EAGAIN;		/* the caller reads synchronously */
		pthread_attr_destroy(&attr);
	}
	if (!ret) {
		a->qnext = NULL;
		if (cb->tail)
			cb->tail->qnext = a;
		else
			cb->head = a;
		cb->tail = a;
		pthread_cond_signal(&cb->cond);
	}
	pthread_mutex_unlock(&cb->lock);
	return ret;
}

static int cb_io(struct fl_store *s, struct store_req *reqs, unsigned int n)
{
	struct cb_store *cb = s->priv;
	int first = 0;

	for (unsigned int i = 0; i < n; i++) {
		struct store_req *r = &reqs[i];
		int ret;

		if (r->op == STORE_READ) {
			r->res = cb_read(cb, r);
		} else {
			ret = cb->ops.write(cb->arg, r->off, r->buf, r->len);
			r->res = ret < 0 ? ret : ret > 0 ? -EIO : 0;
		}
		if (r->res && !first)
			first = r->res;
	}
	return first;
}

static int cb_discard(struct fl_store *s, uint64_t off, size_t len)
{
	struct cb_store *cb = s->priv;

	return cb->ops.discard ? cb->ops.discard(cb->arg, off, len) : 0;
}

static int cb_flush(struct fl_store *s)
{
	struct cb_store *cb = s->priv;

	return cb->ops.flush ? cb->ops.flush(cb->arg) : 0;
}

static void cb_destroy(struct fl_store *s)
{
	struct cb_store *cb = s->priv;

	/* no reads are queued: the runtime was destroyed first (its handlers
	 * finish their reads before they exit) */
	pthread_mutex_lock(&cb->lock);
	cb->stop = true;
	pthread_cond_broadcast(&cb->cond);
	pthread_mutex_unlock(&cb->lock);
	for (unsigned int i = 0; i < cb->nworkers; i++)
		pthread_join(cb->worker[i], NULL);
	pthread_mutex_destroy(&cb->lock);
	pthread_cond_destroy(&cb->cond);
	if (cb->ops.destroy)
		cb->ops.destroy(cb->arg);
	free(cb);
}

/* FL_STORE_READ_SIGNAL_SAFE: the caller's word that @read may run in a SIGBUS handler */
static int cb_read_signal(struct fl_store *s, struct store_req *req)
{
	return cb_read(s->priv, req);
}

static const struct store_vtbl cb_vtbl = {
	.name = "callbacks",
	.io = cb_io,
	.read_async = cb_read_async,
	.discard = cb_discard,
	.flush = cb_flush,
	.destroy = cb_destroy,
};

static const struct store_vtbl cb_vtbl_signal = {
	.name = "callbacks",
	.io = cb_io,
	.read_signal = cb_read_signal,
	.read_async = cb_read_async,
	.discard = cb_discard,
	.flush = cb_flush,
	.destroy = cb_destroy,
};

FL_EXPORT int fl_store_callbacks_create(const struct fl_store_ops *ops, void *arg,
					struct fl_store **out)
{
	struct cb_store *cb;

	if (!ops || !out || ops->size < offsetof(struct fl_store_ops, write) + sizeof(ops->write) ||
	    !ops->read || !ops->write)
		return -EINVAL;
	if (ops->size >= offsetof(struct fl_store_ops, flags) + sizeof(ops->flags) &&
	    (ops->flags & ~FL_STORE_READ_SIGNAL_SAFE))
		return -EINVAL;
	cb = calloc(1, sizeof(*cb));
	if (!cb)
		return -ENOMEM;
	memcpy(&cb->ops, ops, ops->size < sizeof(cb->ops) ? ops->size : sizeof(cb->ops));
	cb->ops.size = sizeof(cb->ops);
	cb->arg = arg;
	pthread_mutex_init(&cb->lock, NULL);
	pthread_cond_init(&cb->cond, NULL);
	cb->have_cpus = sched_getaffinity(0, sizeof(cb->cpus), &cb->cpus) == 0;
	*out = store_new(cb->ops.flags & FL_STORE_READ_SIGNAL_SAFE ? &cb_vtbl_signal : &cb_vtbl,
			 cb);
	if (!*out) {
		pthread_mutex_destroy(&cb->lock);
		pthread_cond_destroy(&cb->cond);
		free(cb);
		return -ENOMEM;
	}
	return 0;
}
