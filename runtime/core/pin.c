/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pin.c - the lockless pin of resident ranges (fast_gup's analogue), with a
 * slow path that faults pages in, and the explicit prefetch.
 *
 * Fast path: the region is found under RCU and its read lock taken (one
 * atomic on the region's lock line, as tier 2); then the page words are
 * read with plain atomic loads: if every page is RESIDENT the pins are taken
 * with one CAS per word (RESIDENT + pin count below the limit, exactly what
 * the evictor's claim excludes: a page is either pinned or EVICTING, never
 * both). Any word that is not RESIDENT, or a CAS that loses to a state
 * change, sends the rest of the range to the slow path.
 *
 * Slow path: page by page; a page that is not resident is touched by the
 * caller itself with the region lock dropped (the fault may need a handler
 * that waits for a writer that waits for our lock), then the region is
 * looked up again and the CAS retried.
 *
 * Application threads use RCU here, so they are registered on first use and
 * unregistered when they exit.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "internal.h"
#include "rcu.h"

static pthread_key_t rcu_key;
static pthread_once_t rcu_key_once = PTHREAD_ONCE_INIT;
static __thread bool rcu_registered;

static void rcu_thread_exit(void *p)
{
	(void)p;
	if (rcu_registered) {
		fl_rcu_unregister_thread();
		rcu_registered = false;
	}
}

static void rcu_key_make(void)
{
	pthread_key_create(&rcu_key, rcu_thread_exit);
}

static void rcu_ensure_registered(void)
{
	if (rcu_registered)
		return;
	pthread_once(&rcu_key_once, rcu_key_make);
	fl_rcu_register_thread();
	rcu_registered = true;
	pthread_setspecific(rcu_key, (void *)1);
}

/*
 * Look up the region holding [a, a + len) and take its read lock.
 * Return: the region, or NULL with *err set (-ENOENT, -EINVAL).
 */
static struct fl_region *region_get(struct fl_runtime *rt, uintptr_t a, size_t len, int *err)
{
	for (int tries = 0;; tries++) {
		struct fl_index_root *ix = &rt->index;
		unsigned int seq = index_seq_begin(ix);
		struct fl_region *r;
		bool stale;

		fl_rcu_read_lock();
		r = index_lookup(fl_rcu_dereference(ix->cur), a);
		if (r && a + len > r->end) {
			fl_rcu_read_unlock();
			*err = -EINVAL;
			return NULL;
		}
		if (r && region_start_read_checked(r, a, r->gen, &stale)) {
			fl_rcu_read_unlock();
			return r;
		}
		fl_rcu_read_unlock();
		if (!r && !(seq & 1) && !index_seq_retry(ix, seq)) {
			*err = -ENOENT;
			return NULL;
		}
		/* a writer is replacing it: wait for the new version */
		if (tries > 100) {
			pthread_rwlock_rdlock(&ix->lock);
			pthread_rwlock_unlock(&ix->lock);
		} else {
			sched_yield();
		}
	}
}

static int args_check(struct fl_runtime *rt, void *addr, size_t len)
{
	if (!rt || !len || !page_aligned(rt, (uintptr_t)addr) || !page_aligned(rt, len) ||
	    (uintptr_t)addr + len < (uintptr_t)addr)
		return -EINVAL;
	if (rt->forked_child)
		return -ENODEV;
	return 0;
}

static void touch(const void *p)
{
	(void)*(const volatile char *)p;
}

/* drop one pin from each page of [a, b); Return: 0 or -EINVAL (one was unpinned) */
static int unpin_range(struct fl_runtime *rt, uintptr_t a, uintptr_t b)
{
	struct fl_region *r;
	int err = 0, ret = 0;

	if (a >= b)
		return 0;
	r = region_get(rt, a, b - a, &err);
	if (!r)
		return err;
	for (uintptr_t p = a; p < b; p += rt->page_size) {
		_Atomic uint32_t *w = &r->pstate[(p - r->start) >> rt->page_shift];
		uint32_t v = atomic_load_explicit(w, memory_order_relaxed);

		do {
			if (!(v >> PS_PIN_SHIFT)) {
				ret = -EINVAL;
				break;
			}
		} while (!atomic_compare_exchange_weak_explicit(w, &v, v - PS_PIN_ONE,
				memory_order_release, memory_order_relaxed));
	}
	region_end_read(r);
	return ret;
}

/* fast path: all RESIDENT -> all pinned. Return: pages pinned from @a on */
static size_t pin_fast_locked(struct fl_runtime *rt, struct fl_region *r, uintptr_t a,
			      uintptr_t b)
{
	size_t n = 0;

	for (uintptr_t p = a; p < b; p += rt->page_size) {
		uint32_t v = atomic_load_explicit(&r->pstate[(p - r->start) >> rt->page_shift],
						  memory_order_acquire);

		if (ps_state(v) != PS_RESIDENT || (v >> PS_PIN_SHIFT) == PS_PIN_MAX)
			return 0;
	}
	for (uintptr_t p = a; p < b; p += rt->page_size, n++) {
		_Atomic uint32_t *w = &r->pstate[(p - r->start) >> rt->page_shift];
		uint32_t v = atomic_load_explicit(w, memory_order_relaxed);

		do {
			if (ps_state(v) != PS_RESIDENT || (v >> PS_PIN_SHIFT) == PS_PIN_MAX)
				return n;	/* lost a race: the slow path goes on */
		} while (!atomic_compare_exchange_weak_explicit(w, &v, (v + PS_PIN_ONE) | PS_REF,
				memory_order_acquire, memory_order_relaxed));
	}
	return n;
}

static int pin_or_prefetch(struct fl_runtime *rt, void *addr, size_t len, bool pin)
{
	uintptr_t a = (uintptr_t)addr, b, p;
	struct fl_region *r;
	int err = 0;

	err = args_check(rt, addr, len);
	if (err)
		return err;
	b = a + len;
	rcu_ensure_registered();
	r = region_get(rt, a, len, &err);
	if (!r)
		return err;
	if (!pin) {
		/* prefetch: touch what is not resident; the handlers' adaptive
		 * window makes a sequential touch a growing read-ahead */
		region_end_read(r);
		for (p = a; p < b; p += rt->page_size)
			touch((const void *)p);
		return 0;
	}
	p = a + (pin_fast_locked(rt, r, a, b) << rt->page_shift);
	if (p == b) {
		region_end_read(r);
		__atomic_fetch_add(&rt->pin_st.pin_fast, 1, __ATOMIC_RELAXED);
		return 0;
	}
	__atomic_fetch_add(&rt->pin_st.pin_slow, 1, __ATOMIC_RELAXED);
	/* slow path, page by page from p; r is read-locked at the top of the loop */
	while (p < b) {
		_Atomic uint32_t *w = &r->pstate[(p - r->start) >> rt->page_shift];
		uint32_t v = atomic_load_explicit(w, memory_order_acquire);

		if (ps_state(v) == PS_RESIDENT) {
			if ((v >> PS_PIN_SHIFT) == PS_PIN_MAX) {
				region_end_read(r);
				unpin_range(rt, a, p);
				return -EBUSY;
			}
			if (atomic_compare_exchange_weak_explicit(w, &v, (v + PS_PIN_ONE) | PS_REF,
					memory_order_acquire, memory_order_relaxed))
				p += rt->page_size;
			continue;
		}
		/* not resident: fault it in ourselves, unlocked */
		region_end_read(r);
		if (ps_state(v) == PS_EVICTING || ps_state(v) == PS_FILLING)
			sched_yield();
		touch((const void *)p);
		r = region_get(rt, p, b - p, &err);
		if (!r) {
			unpin_range(rt, a, p);
			return err;
		}
	}
	region_end_read(r);
	return 0;
}

FL_EXPORT int fl_pin(struct fl_runtime *rt, void *addr, size_t len)
{
	return pin_or_prefetch(rt, addr, len, true);
}

FL_EXPORT int fl_prefetch(struct fl_runtime *rt, void *addr, size_t len)
{
	return pin_or_prefetch(rt, addr, len, false);
}

FL_EXPORT int fl_unpin(struct fl_runtime *rt, void *addr, size_t len)
{
	int err = args_check(rt, addr, len);

	if (err)
		return err;
	rcu_ensure_registered();
	return unpin_range(rt, (uintptr_t)addr, (uintptr_t)addr + len);
}
