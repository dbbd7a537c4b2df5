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
 * Context: store_io() may be called by several threads at once (handler
 * threads read, the evictor writes); each implementation is thread safe.
 */
#ifndef FL_STORE_H
#define FL_STORE_H

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

struct store_vtbl {
	const char *name;
	/* run @n requests; each gets its own res. Return: 0, or the first error */
	int (*io)(struct fl_store *s, struct store_req *reqs, unsigned int n);
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

/* helpers for the implementations */
struct fl_store *store_new(const struct store_vtbl *vt, void *priv);

#endif /* FL_STORE_H */
