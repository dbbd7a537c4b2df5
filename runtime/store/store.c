/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * store.c - the store object, and the user-callback store.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

struct cb_store {
	struct fl_store_ops ops;
	void *arg;
};

static int cb_io(struct fl_store *s, struct store_req *reqs, unsigned int n)
{
	struct cb_store *cb = s->priv;
	int first = 0;

	for (unsigned int i = 0; i < n; i++) {
		struct store_req *r = &reqs[i];
		int ret;

		if (r->op == STORE_READ)
			ret = cb->ops.read(cb->arg, r->off, r->buf, r->len);
		else
			ret = cb->ops.write(cb->arg, r->off, r->buf, r->len);
		/* a callback that returns a positive count broke the contract:
		 * only 0 means "all of it" */
		r->res = ret < 0 ? ret : ret > 0 ? -EIO : 0;
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

	if (cb->ops.destroy)
		cb->ops.destroy(cb->arg);
	free(cb);
}

static const struct store_vtbl cb_vtbl = {
	.name = "callbacks",
	.io = cb_io,
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
	cb = calloc(1, sizeof(*cb));
	if (!cb)
		return -ENOMEM;
	memcpy(&cb->ops, ops, ops->size < sizeof(cb->ops) ? ops->size : sizeof(cb->ops));
	cb->ops.size = sizeof(cb->ops);
	cb->arg = arg;
	*out = store_new(&cb_vtbl, cb);
	if (!*out) {
		free(cb);
		return -ENOMEM;
	}
	return 0;
}
