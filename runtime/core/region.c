/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * region.c - region objects, their refcount lock, page-state words.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "region.h"
#include "testhooks.h"

/*
 * The pool is shared by every runtime in the process and only touched by
 * index writers and teardown: a mutex is enough, nothing here is on a fault
 * path.
 */
static struct fl_region *pool_head;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t gen_next = 1;

static long futex_timed(_Atomic uint32_t *uaddr, int op, uint32_t val,
			const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)uaddr, op, val, ts, NULL, 0);
}

static long futex(_Atomic uint32_t *uaddr, int op, uint32_t val)
{
	return futex_timed(uaddr, op, val, NULL);
}

/* page-state tables smaller than this come from the heap, the rest mapped */
#define PSTATE_HEAP_MAX	4096u

static void pstate_free(void *ps, size_t bytes)
{
	if (bytes < PSTATE_HEAP_MAX)
		free(ps);
	else
		munmap(ps, bytes);
}

struct fl_region *region_alloc(size_t npages, _Atomic int64_t *meta)
{
	struct fl_region *r;
	size_t bytes = npages * sizeof(uint32_t);
	void *ps;

	if (npages > SIZE_MAX / sizeof(uint32_t) || FL_TEST_FAIL(FL_FAIL_REGION_ALLOC))
		return NULL;
	/*
	 * A table under a page comes from the heap: a program that commits
	 * its heap 256 KiB at a time (V8) has hundreds of regions, each
	 * needing 256 bytes, and a mapping each would hold 4 KiB of them.
	 * Larger tables are mapped and touched only as far as pages are.
	 */
	if (bytes < PSTATE_HEAP_MAX) {
		ps = calloc(1, bytes ? bytes : 1);
		if (!ps)
			return NULL;
	} else {
		bytes = (bytes + 4095) & ~(size_t)4095;
		ps = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (ps == MAP_FAILED)
			return NULL;
	}
	pthread_mutex_lock(&pool_lock);
	r = pool_head;
	if (r)
		pool_head = r->pool_next;
	pthread_mutex_unlock(&pool_lock);
	if (!r) {
		r = aligned_alloc(64, sizeof(*r));
		if (!r) {
			pstate_free(ps, bytes);
			return NULL;
		}
	}
	memset(r, 0, sizeof(*r));
	r->gen = atomic_fetch_add_explicit(&gen_next, 1, memory_order_relaxed);
	r->pstate = ps;
	r->pstate_bytes = bytes;
	r->meta = meta;
	if (meta)
		atomic_fetch_add_explicit(meta, (int64_t)(bytes + sizeof(*r)), memory_order_relaxed);
	atomic_init(&r->refcnt, REF_DETACHED);
	return r;
}

void region_free(struct fl_region *r)
{
	if (!r)
		return;
	if (r->pstate)
		pstate_free((void *)r->pstate, r->pstate_bytes);
	if (r->meta)
		atomic_fetch_sub_explicit(r->meta, (int64_t)(r->pstate_bytes + sizeof(*r)),
					  memory_order_relaxed);
	r->meta = NULL;
	/*
	 * Typesafe reuse: the object stays a struct fl_region for the life of
	 * the process. Poison the identity so that a stale reader's re-check
	 * fails even before the object is reused.
	 */
	r->pstate = NULL;
	r->start = r->end = 0;
	r->gen = 0;
	atomic_store_explicit(&r->refcnt, REF_DETACHED, memory_order_release);
	pthread_mutex_lock(&pool_lock);
	r->pool_next = pool_head;
	pool_head = r;
	pthread_mutex_unlock(&pool_lock);
}

void region_pool_drain(void)
{
	pthread_mutex_lock(&pool_lock);
	while (pool_head) {
		struct fl_region *r = pool_head;

		pool_head = r->pool_next;
		free(r);
	}
	pthread_mutex_unlock(&pool_lock);
}

void region_attach(struct fl_region *r)
{
	atomic_store_explicit(&r->refcnt, REF_ATTACHED, memory_order_release);
}

bool region_start_read(struct fl_region *r)
{
	uint32_t old = atomic_load_explicit(&r->refcnt, memory_order_relaxed);

	do {
		/* detached, write-locked (>= REF_WRITER) or too many readers */
		if (old == REF_DETACHED || old + 1 >= REF_READER_LIMIT)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&r->refcnt, &old, old + 1,
							memory_order_acquire,
							memory_order_relaxed));
	return true;
}

bool region_start_read_checked(struct fl_region *r, uintptr_t addr,
			       uint64_t gen, bool *stale)
{
	*stale = false;
	if (!region_start_read(r))
		return false;
	FL_TEST_PAUSE(FL_PAUSE_REGION_RECHECK, addr);
	/*
	 * The object may have been freed and reused for another region between
	 * the caller's lookup and our increment: the reference we hold now
	 * pins whatever it is now, so check that it is still what we saw.
	 */
	if (r->gen != gen || addr < r->start || addr >= r->end) {
		region_end_read(r);
		*stale = true;
		return false;
	}
	return true;
}

void region_end_read(struct fl_region *r)
{
	uint32_t v = atomic_fetch_sub_explicit(&r->refcnt, 1, memory_order_release) - 1;

	/* last reader gone while a writer waits: wake it */
	if (v == REF_WRITER + REF_ATTACHED)
		futex(&r->refcnt, FUTEX_WAKE_PRIVATE, 1);
}

void region_write_lock(struct fl_region *r)
{
	uint32_t v = atomic_fetch_add_explicit(&r->refcnt, REF_WRITER,
					       memory_order_acquire) + REF_WRITER;

	while (v != REF_WRITER + REF_ATTACHED) {
		/* sleeps only while the word still says "readers present" */
		futex(&r->refcnt, FUTEX_WAIT_PRIVATE, v);
		v = atomic_load_explicit(&r->refcnt, memory_order_acquire);
	}
}

void region_write_unlock(struct fl_region *r)
{
	atomic_fetch_sub_explicit(&r->refcnt, REF_WRITER, memory_order_release);
}

void region_detach_locked(struct fl_region *r)
{
	atomic_store_explicit(&r->refcnt, REF_DETACHED, memory_order_release);
}

/* one sleep on @w while its state is @state: @ts bounds it (NULL: none) */
static void page_sleep(_Atomic uint32_t *w, unsigned state, const struct timespec *ts)
{
	uint32_t v = atomic_load_explicit(w, memory_order_acquire);

	while (ps_state(v) == state) {
		/* announce the sleeper first: the settler wakes only then */
		if (!(v & PS_WAITERS) &&
		    !atomic_compare_exchange_weak_explicit(w, &v, v | PS_WAITERS,
							   memory_order_acquire,
							   memory_order_acquire))
			continue;
		futex_timed(w, FUTEX_WAIT_PRIVATE, v | PS_WAITERS, ts);
		return;
	}
}

void page_wait(_Atomic uint32_t *w, unsigned state)
{
	while (ps_state(atomic_load_explicit(w, memory_order_acquire)) == state)
		page_sleep(w, state, NULL);
}

void page_wait_ms(_Atomic uint32_t *w, unsigned state, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	page_sleep(w, state, &ts);
}

void page_wake(_Atomic uint32_t *w)
{
	futex(w, FUTEX_WAKE_PRIVATE, INT_MAX);
}

bool page_finish(_Atomic uint32_t *w, unsigned to)
{
	uint32_t old = atomic_load_explicit(w, memory_order_relaxed), nw;
	bool discarded;

	do {
		discarded = old & PS_DISCARD_PENDING;
		/* the fault-around hint has served its purpose once the page
		 * is settled (a later fault here starts a new stream), and a
		 * page produced anew is not the store's copy (far memory) */
		nw = (old & ~(PS_STATE_MASK | PS_WAITERS | PS_DISCARD_PENDING |
			      PS_FA_MASK | PS_INSTORE | PS_POISONED)) |
		     (discarded ? PS_DISCARDED : to);
	} while (!atomic_compare_exchange_weak_explicit(w, &old, nw,
							memory_order_release,
							memory_order_relaxed));
	if (old & PS_WAITERS)
		page_wake(w);
	return discarded;
}
