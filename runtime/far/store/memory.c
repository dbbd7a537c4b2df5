/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memory.c - a store in anonymous memory, for tests.
 *
 * Offsets map to 1 GiB chunks of MAP_NORESERVE memory made on first write:
 * never-written parts cost nothing and read as zeros. Chunks are published
 * with a release store once made, so readers take no lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "store.h"

#define FL_EXPORT __attribute__((visibility("default")))

#define CHUNK_SHIFT	30
#define CHUNK_SIZE	((uint64_t)1 << CHUNK_SHIFT)
#define MAX_CHUNKS	4096		/* 4 TiB of store offsets */

struct mem_store {
	pthread_mutex_t lock;		/* chunk creation only */
	_Atomic(char *) chunk[MAX_CHUNKS];
};

static char *chunk_get(struct mem_store *m, uint64_t idx, bool create)
{
	char *c = atomic_load_explicit(&m->chunk[idx], memory_order_acquire);

	if (c || !create)
		return c;
	pthread_mutex_lock(&m->lock);
	c = atomic_load_explicit(&m->chunk[idx], memory_order_relaxed);
	if (!c) {
		void *p = mmap(NULL, CHUNK_SIZE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (p != MAP_FAILED) {
			/* runtime memory: a forked child has no use for it */
			madvise(p, CHUNK_SIZE, MADV_DONTFORK);
			c = p;
			atomic_store_explicit(&m->chunk[idx], c, memory_order_release);
		}
	}
	pthread_mutex_unlock(&m->lock);
	return c;
}

static int mem_one(struct mem_store *m, struct store_req *r)
{
	uint64_t off = r->off;
	size_t done = 0;

	while (done < r->len) {
		uint64_t idx = off >> CHUNK_SHIFT, in = off & (CHUNK_SIZE - 1);
		size_t n = r->len - done;
		char *c;

		if (idx >= MAX_CHUNKS)
			return -ENOSPC;
		if (n > CHUNK_SIZE - in)
			n = (size_t)(CHUNK_SIZE - in);
		c = chunk_get(m, idx, r->op == STORE_WRITE);
		if (r->op == STORE_READ) {
			if (c)
				memcpy((char *)r->buf + done, c + in, n);
			else
				memset((char *)r->buf + done, 0, n);
		} else {
			if (!c)
				return -ENOMEM;
			memcpy(c + in, (const char *)r->buf + done, n);
		}
		done += n;
		off += n;
	}
	return 0;
}

static int mem_io(struct fl_store *s, struct store_req *reqs, unsigned int n)
{
	int first = 0;

	for (unsigned int i = 0; i < n; i++) {
		reqs[i].res = mem_one(s->priv, &reqs[i]);
		if (reqs[i].res && !first)
			first = reqs[i].res;
	}
	return first;
}

/* a memcpy: done at once, on the submitting thread (it exercises the
 * handlers' asynchronous path with every test that uses this store) */
static int mem_read_async(struct fl_store *s, struct store_areq *a)
{
	a->req.res = mem_one(s->priv, &a->req);
	a->done(a);
	return 0;
}

/* a read creates no chunk (a missing one reads as zeros): no lock */
static int mem_read_signal(struct fl_store *s, struct store_req *req)
{
	return mem_one(s->priv, req);
}

static int mem_discard(struct fl_store *s, uint64_t off, size_t len)
{
	struct mem_store *m = s->priv;
	uint64_t end = off + len;

	/* whole pages only; give the memory back, reads become zeros */
	while (off < end) {
		uint64_t idx = off >> CHUNK_SHIFT, in = off & (CHUNK_SIZE - 1);
		uint64_t n = end - off < CHUNK_SIZE - in ? end - off : CHUNK_SIZE - in;
		char *c = idx < MAX_CHUNKS ? chunk_get(m, idx, false) : NULL;

		if (c)
			madvise(c + in, (size_t)n, MADV_DONTNEED);
		off += n;
	}
	return 0;
}

static void mem_destroy(struct fl_store *s)
{
	struct mem_store *m = s->priv;

	for (size_t i = 0; i < MAX_CHUNKS; i++) {
		char *c = atomic_load_explicit(&m->chunk[i], memory_order_relaxed);

		if (c)
			munmap(c, CHUNK_SIZE);
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static const struct store_vtbl mem_vtbl = {
	.name = "memory",
	.io = mem_io,
	.read_signal = mem_read_signal,
	.read_async = mem_read_async,
	.discard = mem_discard,
	.destroy = mem_destroy,
};

FL_EXPORT int fl_store_memory_create(struct fl_store **out)
{
	struct mem_store *m;

	if (!out)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	*out = store_new(&mem_vtbl, m);
	if (!*out) {
		pthread_mutex_destroy(&m->lock);
		free(m);
		return -ENOMEM;
	}
	return 0;
}
