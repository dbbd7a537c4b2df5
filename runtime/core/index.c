/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * index.c - RCU-published sorted array of regions. See index.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "rcu.h"
#include "sigrcu.h"
#include "testhooks.h"

#if defined(__SANITIZE_THREAD__)
char fl_rcu_tsan_token;
#endif

static int lock_init(struct fl_index_root *ix)
{
	pthread_rwlockattr_t attr;
	int ret;

	/* tier-3 readers must not starve writers (glibc prefers readers) */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	ret = pthread_rwlock_init(&ix->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	return ret;
}

int index_init(struct fl_index_root *ix)
{
	int ret;

	memset(ix, 0, sizeof(*ix));
	ix->cur = calloc(1, sizeof(struct fl_index));
	if (!ix->cur)
		return -ENOMEM;
	ret = lock_init(ix);
	if (ret) {
		free(ix->cur);
		return -ENOMEM;
	}
	return 0;
}

void index_fini(struct fl_index_root *ix)
{
	for (size_t i = 0; i < ix->nretired; i++)
		free(ix->retired[i]);
	free(ix->retired);
	free(ix->cur);
	pthread_rwlock_destroy(&ix->lock);
}

struct fl_region *index_lookup(const struct fl_index *x, uintptr_t addr)
{
	size_t lo = 0, hi = x->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct fl_index_ent *e = &x->e[mid];

		if (addr < e->start)
			hi = mid;
		else if (addr >= e->end)
			lo = mid + 1;
		else
			return e->r;
	}
	return NULL;
}

bool index_overlaps(const struct fl_index *x, uintptr_t start, uintptr_t end,
		    const struct fl_region *skip)
{
	size_t lo = 0, hi = x->n;

	/* first entry with e->end > start */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (x->e[mid].end <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < x->n && x->e[lo].start < end; lo++)
		if (x->e[lo].r != skip)
			return true;
	return false;
}

void index_write_begin(struct fl_index_root *ix)
{
	pthread_rwlock_wrlock(&ix->lock);
	/*
	 * The odd count is visible before any change we make: every change is
	 * published with a release store (rcu_assign_pointer), which orders
	 * this read-modify-write before it.
	 */
	atomic_fetch_add_explicit(&ix->seq, 1, memory_order_seq_cst);
}

void index_write_end(struct fl_index_root *ix)
{
	/* every change is visible before the count turns even */
	atomic_fetch_add_explicit(&ix->seq, 1, memory_order_release);
	pthread_rwlock_unlock(&ix->lock);
}

void index_fork_child(struct fl_index_root *ix)
{
	/*
	 * Not pthread_rwlock_unlock(): the lock word also counts the parent's
	 * other threads that were queued on it (a tier-3 reader waiting for
	 * the fork's writer), and they do not exist here, so the next writer
	 * would wait for them forever. Nobody else runs in the child yet.
	 */
	atomic_fetch_add_explicit(&ix->seq, 1, memory_order_relaxed);
	lock_init(ix);
}

static int ent_cmp(const void *a, const void *b)
{
	const struct fl_index_ent *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

int index_publish_locked(struct fl_index_root *ix,
			 struct fl_region *const *del, size_t ndel,
			 struct fl_region *const *add, size_t nadd)
{
	struct fl_index *old = ix->cur, *nx;
	size_t n = 0;

	if (FL_TEST_FAIL(FL_FAIL_INDEX_PUBLISH))
		return -ENOMEM;

	if (ix->nretired == ix->retired_cap) {
		size_t cap = ix->retired_cap ? 2 * ix->retired_cap : 8;
		struct fl_index **p = realloc(ix->retired, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		ix->retired = p;
		ix->retired_cap = cap;
	}
	nx = malloc(sizeof(*nx) + (old->n + nadd) * sizeof(nx->e[0]));
	if (!nx)
		return -ENOMEM;
	for (size_t i = 0; i < old->n; i++) {
		bool gone = false;

		for (size_t j = 0; j < ndel && !gone; j++)
			gone = old->e[i].r == del[j];
		if (!gone)
			nx->e[n++] = old->e[i];
	}
	for (size_t j = 0; j < nadd; j++)
		nx->e[n++] = (struct fl_index_ent){ add[j]->start, add[j]->end, add[j] };
	nx->n = n;
	if (nadd)
		qsort(nx->e, n, sizeof(nx->e[0]), ent_cmp);
	/* publish: readers see either the whole old or the whole new array */
	fl_rcu_assign_pointer(ix->cur, nx);
	ix->retired[ix->nretired++] = old;
	return 0;
}

void index_synchronize_locked(struct fl_index_root *ix)
{
	fl_synchronize_rcu();
	/* the faulting threads' SIGBUS handlers read the index too (inthread.c) */
	if (sigrcu_used())
		sigrcu_synchronize();
	for (size_t i = 0; i < ix->nretired; i++)
		free(ix->retired[i]);
	ix->nretired = 0;
}
