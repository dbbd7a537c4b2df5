/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store.h - backing stores behind one small vtable.
 *
 * The runtime submits a batch of page requests and gets every completion
 * back before the call returns: the store may run the batch concurrently
 * (the file store submits it to io_uring at once and reaps the
 * completions), but the caller never sees a half-finished batch. Requests
 * are page multiples at page-aligned offsets; buffers are runtime memory,
 * never managed memory.
 *
 * Handler threads may also start reads asynchronously (store_areq below).
 *
 * Context: store_io() may be called by several threads at once (handler
 * threads read, the evictor writes); each implementation is thread safe.
 */
#ifndef FL_STORE_H
#define FL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline.h"

enum store_op { STORE_READ, STORE_WRITE };

struct store_req {
	enum store_op op;
	uint64_t off;
	void *buf;
	size_t len;
	int res;		/* out: 0 or -errno (a short transfer is -EIO) */
};

/*
 * An asynchronous read: far-memory page-in by a handler thread, which goes
 * back to its uffd while the read runs (far/pagein.c, "asynchronous page-in").
 * The store runs @req and then calls @done exactly once: on the submitting
 * thread (inside read_async() or reap()), or on a thread of its own. @done
 * is the runtime's: it queues the request for the submitting handler and
 * signals @efd, the handler's eventfd, when it runs on another thread.
 */
struct store_areq {
	struct store_req req;
	void (*done)(struct store_areq *a);
	int efd;			/* the submitting thread's eventfd */
	/* store private */
	struct fl_store *store;
	size_t progress;
	struct store_areq *qnext;
};

struct store_vtbl {
	const char *name;
	/* run @n requests; each gets its own res. Return: 0, or the first error */
	int (*io)(struct fl_store *s, struct store_req *reqs, unsigned int n);
	/*
	 * Optional: start @a (a read). Return: 0, @a->done will be called;
	 * or -errno: not started (the caller reads synchronously).
	 * The file store binds @a->efd to the calling thread's ring: the
	 * ring signals it on every completion.
	 */
	int (*read_async)(struct fl_store *s, struct store_areq *a);
	/* optional: run the calling thread's completions (their @done) */
	void (*reap)(struct fl_store *s);
	/*
	 * Optional: one read, async-signal-safe: no lock, no allocation, only
	 * system calls POSIX lists as safe. The page-in of a fault resolved in
	 * the faulting thread's SIGBUS handler (core/inthread.c) runs it; a
	 * store without it serves far memory from handler threads only.
	 */
	int (*read_signal)(struct fl_store *s, struct store_req *req);
	int (*discard)(struct fl_store *s, uint64_t off, size_t len);
	int (*flush)(struct fl_store *s);
	void (*destroy)(struct fl_store *s);
};

struct fl_store {
	const struct store_vtbl *vt;
	void *priv;
};

static inline int store_io(struct fl_store *s, struct store_req *reqs, unsigned int n)
{
	return s->vt->io(s, reqs, n);
}

static inline int store_discard(struct fl_store *s, uint64_t off, size_t len)
{
	return s->vt->discard ? s->vt->discard(s, off, len) : 0;
}

static inline bool store_has_async(const struct fl_store *s)
{
	return s && s->vt->read_async;
}

static inline bool store_has_signal_read(const struct fl_store *s)
{
	return s && s->vt->read_signal;
}

static inline int store_read_signal(struct fl_store *s, struct store_req *req)
{
	req->res = s->vt->read_signal(s, req);
	return req->res;
}

static inline int store_read_async(struct fl_store *s, struct store_areq *a)
{
	a->store = s;
	a->progress = 0;
	a->req.res = 0;
	return s->vt->read_async(s, a);
}

static inline void store_reap(struct fl_store *s)
{
	if (s->vt->reap)
		s->vt->reap(s);
}

/* helpers for the implementations */
struct fl_store *store_new(const struct store_vtbl *vt, void *priv);

#endif /* FL_STORE_H */
