/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * wp.c - generic write protection with callbacks (seed 002), and dirty
 * tracking, synchronous (WP faults) or asynchronous (WP_ASYNC + PAGEMAP_SCAN).
 *
 * A protected range is a list entry (wp->v) with a callback and one state
 * byte per page:
 *   WPS_ARMED    write-protected (or not produced yet: it will be installed
 *                write-protected), not written since it was armed
 *   WPS_BUSY     a handler runs the callback for its first write
 *   WPS_WRITTEN  written since armed: unprotected; "dirty"
 * The list and the transitions WRITTEN -> ARMED (re-arm) change only under
 * wp->lock held for writing; faults work under it held for reading.
 *
 * A WP fault (sync): ARMED -> BUSY (one handler wins), callback with the page
 * still holding its old contents, -> WRITTEN, then UFFDIO_WRITEPROTECT clears
 * the protection of that page and wakes the writers. A second handler with
 * a duplicate message for the same page sees BUSY and just returns: the
 * winner's un-protect wakes every thread waiting on that page.
 *
 * Pages not yet produced: with WP_UNPOPULATED (6.3+) UFFDIO_WRITEPROTECT
 * leaves a marker in an empty pte, but on an anonymous MISSING-registered
 * range the marker page still faults as MISSING, and UFFDIO_COPY without
 * MODE_WP would install it writable, losing the protection. So the fault
 * path asks wp_install_protected() and installs armed pages with
 * UFFDIO_COPY_MODE_WP (never the read-only zero page, which has no WP mode).
 * That covers never-touched pages on every kernel, with or without
 * WP_UNPOPULATED (6.1): the runtime sees every first touch.
 *
 * Async (FL_RT_WP_ASYNC): the kernel clears the protection of a written page
 * itself and no message comes; collection is PAGEMAP_SCAN with
 * PM_SCAN_WP_MATCHING (get the written pages and re-protect them in one
 * walk). The state bytes then only carry WRITTEN for pages zapped by
 * MADV_DONTNEED (their pte marker may survive the zap and read "clean").
 *
 * In-thread regions (FL_REGION_THREAD, core/inthread.c): a write fault on
 * an armed page raises SIGBUS in the writer, whose handler runs the same
 * transition and the callback itself (wp_fault_signal()), and a missing
 * fault asks wp_install_protected() from there too. Such a reader is in a
 * signal-safe RCU section (sigrcu), where it must not wait for a lock: a
 * writer waiting for the section to end would wait for it. So readers go
 * without wp->lock, and writers keep them out with a gate instead, as the
 * kernel's percpu_rw_semaphore keeps its fast readers out with rcu_sync:
 * under wp->lock held for writing, a writer closes the gate (odd), waits
 * for a grace period of the signal-safe readers, changes the ranges,
 * opens it. A reader looks at the gate inside its section: open, no
 * writer changes anything until the section ends (the writer's grace
 * period waits for it); closed, it leaves the section holding its
 * region's reference and serves the fault under wp->lock for reading, as
 * a handler thread does (wp_fault_signal()). Handler threads and
 * in-thread readers race only on the state bytes, which they move with
 * compare-and-swap.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/internal.h"
#include "core/sigrcu.h"
#include "wp.h"

enum { WPS_ARMED = 0, WPS_BUSY = 1, WPS_WRITTEN = 2 };

struct wp_range {
	uintptr_t start, end;
	fl_wp_fn cb;
	void *arg;
	bool async;
	const struct fl_uffd *uffd;	/* its region's (core/internal.h region_uffd()) */
	_Atomic uint8_t *st;	/* one byte per page, MAP_NORESERVE */
	size_t st_bytes;
};

static bool wp_closed(const struct fl_runtime *rt);

struct wp_root {
	pthread_rwlock_t lock;
	/* odd: a writer is at work, in-thread readers keep out (see above) */
	_Atomic uint32_t gate;
	struct wp_range **v;
	size_t n, cap;
	int pagemap_fd;		/* -1 until the first async collection */
	/* ranges an UNMAP dropped, kept for a REMAP on its way (wp_forget) */
	struct wp_gone {
		struct wp_range *r;
		uintptr_t start, end;	/* the UNMAP's range */
	} gone[FL_UNMAPPED_KEEP];
	unsigned int gone_next;
	/* counters of application threads (collect, checkpoints), added to
	 * atomically: a live snapshot's callback adds from a signal handler */
	struct fl_counters st;
};

int wp_init(struct fl_runtime *rt)
{
	struct wp_root *w = zalloc_aligned(_Alignof(struct wp_root), sizeof(*w));

	if (!w)
		return -ENOMEM;
	pthread_rwlock_init(&w->lock, NULL);
	w->pagemap_fd = -1;
	rt->wp = w;
	/* the core's fault path: before the handlers start (core/hooks.h) */
	rt->hooks.protect_fault = wp_fault;
	rt->hooks.protect_fault_signal = wp_fault_signal;
	rt->hooks.protect_closed = wp_closed;
	rt->hooks.install_protected = wp_install_protected;
	rt->hooks.protect_forget = wp_forget;
	rt->hooks.protect_remap = wp_event_remap;
	rt->hooks.protect_remove = wp_event_remove;
	rt->hooks.protect_stats_add = wp_stats_add;
	rt->hooks.protect_stats_reset = wp_stats_reset;
	rt->hooks.protect_release = wp_fini;
	return 0;
}

static void range_free(struct wp_range *r)
{
	if (!r)
		return;
	if (r->st)
		munmap((void *)r->st, r->st_bytes);
	free(r);
}

void wp_fini(struct fl_runtime *rt)
{
	struct wp_root *w = rt->wp;

	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++)
		range_free(w->v[i]);
	for (unsigned int i = 0; i < FL_UNMAPPED_KEEP; i++)
		range_free(w->gone[i].r);
	free(w->v);
	if (w->pagemap_fd >= 0)
		close(w->pagemap_fd);
	pthread_rwlock_destroy(&w->lock);
	free(w);
	rt->wp = NULL;
}

void wp_stat_add(struct fl_runtime *rt, size_t field_off, uint64_t n)
{
	struct wp_root *w = rt->wp;
	uint64_t *f = (uint64_t *)((char *)&w->st + field_off);

	__atomic_fetch_add(f, n, __ATOMIC_RELAXED);
}

void wp_stats_add(const struct fl_runtime *rt, struct fl_counters *sum)
{
	if (!rt->wp)
		return;
#define X(name, help) sum->name += __atomic_load_n(&rt->wp->st.name, __ATOMIC_RELAXED);
	FL_STAT_FIELDS(X)
#undef X
}

void wp_stats_reset(struct fl_runtime *rt)
{
	if (!rt->wp)
		return;
#define X(name, help) __atomic_store_n(&rt->wp->st.name, 0, __ATOMIC_RELAXED);
	FL_STAT_FIELDS(X)
#undef X
}

/* ---- writers and the gate ---- */

/*
 * wlock() - wp->lock for writing, and the gate closed: no handler and no
 * in-thread reader looks at the ranges until wunlock(). Race: the gate is
 * closed (seq_cst) before the grace period begins, so a reader that
 * entered its section before sees it open and is waited for, and one that
 * entered after sees it closed (sigrcu.h: Dekker's pattern). Without
 * in-thread regions there is no such reader, and no wait.
 * Context: no sigrcu section; wp->lock not held.
 */
static void wlock(struct fl_runtime *rt)
{
	struct wp_root *w = rt->wp;

	pthread_rwlock_wrlock(&w->lock);
	if (!rt->inthread_wp)
		return;
	atomic_store_explicit(&w->gate, atomic_load_explicit(&w->gate, memory_order_relaxed) + 1,
			      memory_order_seq_cst);
	sigrcu_synchronize();
}

static void wunlock(struct fl_runtime *rt)
{
	struct wp_root *w = rt->wp;

	/* Race: open before the lock is released, so that a reader the gate
	 * turned away, now waiting for the read lock, finds it open after */
	if (rt->inthread_wp)
		atomic_store_explicit(&w->gate,
				      atomic_load_explicit(&w->gate, memory_order_relaxed) + 1,
				      memory_order_release);
	pthread_rwlock_unlock(&w->lock);
}

/* Context: async-signal-safe; a sigrcu section (fault_inthread()) */
static bool wp_closed(const struct fl_runtime *rt)
{
	return atomic_load_explicit(&rt->wp->gate, memory_order_acquire) & 1;
}

/* Context: wp->lock held (either way) */
static struct wp_range *find_locked(const struct wp_root *w, uintptr_t a)
{
	for (size_t i = 0; i < w->n; i++)
		if (a >= w->v[i]->start && a < w->v[i]->end)
			return w->v[i];
	return NULL;
}

static size_t find_start_locked(const struct wp_root *w, uintptr_t a)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->v[i]->start == a)
			return i;
	return w->n;
}

static void remove_at_locked(struct wp_root *w, size_t i)
{
	w->v[i] = w->v[--w->n];
}

/* room for one more range; -ENOMEM */
static int grow_locked(struct wp_root *w)
{
	size_t cap = w->cap ? 2 * w->cap : 8;
	struct wp_range **v;

	if (w->n < w->cap)
		return 0;
	v = realloc(w->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	w->v = v;
	w->cap = cap;
	return 0;
}

/*
 * UFFDIO_WRITEPROTECT from an application thread: EAGAIN means an event is
 * pending (mmap_changing); a handler reads it soon, so retry briefly.
 */
static int writeprotect_retry(const struct fl_uffd *u, uintptr_t a, size_t len,
			      bool wp, bool dontwake)
{
	int ret;

	for (unsigned int i = 0; i < 100000; i++) {
		ret = uffd_writeprotect(u, a, len, wp, dontwake);
		if (ret != -EAGAIN)
			return ret;
		usleep(10);
	}
	return ret;
}

/* ---- the fault side ---- */

/*
 * The first write to @pg: ARMED -> BUSY (one thread wins), the callback,
 * -> WRITTEN. Copy before unprotect: the writer has not written yet and
 * the page still holds its old contents, which the callback may read
 * (copy); only afterwards is the page released. False if another thread
 * runs the callback now (BUSY); true when the page is to be unprotected
 * (ours, or WRITTEN already).
 */
static bool first_write(struct fl_fault_ctx *c, struct wp_range *r, uintptr_t pg)
{
	_Atomic uint8_t *s = &r->st[(pg - r->start) >> c->rt->page_shift];
	uint8_t v = WPS_ARMED;

	if (atomic_compare_exchange_strong_explicit(s, &v, WPS_BUSY,
			memory_order_acq_rel, memory_order_acquire)) {
		if (r->cb) {
			r->cb(r->arg, (void *)pg, c->rt->page_size);
			STAT_INC(c->st, wp_callbacks);
		}
		atomic_store_explicit(s, WPS_WRITTEN, memory_order_release);
		return true;
	}
	return v != WPS_BUSY;
}

void wp_fault(struct fl_fault_ctx *c, uintptr_t addr)
{
	struct fl_runtime *rt = c->rt;
	struct wp_root *w = rt->wp;
	uintptr_t pg = page_down(rt, addr);
	struct wp_range *r;
	int ret;

	STAT_INC(c->st, faults_wp);
	/*
	 * Read lock across callback *and* un-protect: a collection (write
	 * lock) re-arms WRITTEN pages. If it could run between our "-> WRITTEN"
	 * and our UFFDIO_WRITEPROTECT(clear), it would re-protect the page and
	 * we would then clear that fresh protection: the next write would go
	 * unseen.
	 */
	pthread_rwlock_rdlock(&w->lock);
	r = find_locked(w, pg);
	if (r) {
		/* the writer sleeps in the kernel meanwhile */
		if (!first_write(c, r, pg)) {
			/* another handler runs the callback; its un-protect wakes us */
			STAT_INC(c->st, wp_dup);
			pthread_rwlock_unlock(&w->lock);
			return;
		}
		/* WRITTEN already: a stale WP bit (a run installed with MODE_WP
		 * around an armed page) or a duplicate: release it */
	} else {
		/*
		 * Race: the page may be on its way here, with its protection,
		 * by an mremap() whose REMAP event another handler read but has
		 * not applied yet: wait for it as a missing fault in no region
		 * does, or this write would go unseen.
		 */
		pthread_rwlock_unlock(&w->lock);
		if (unknown_defer(c, pg))
			return;
		pthread_rwlock_rdlock(&w->lock);
		/* the event may have been applied since we looked: the next
		 * fault takes the tracked path */
		if (find_locked(w, pg)) {
			pthread_rwlock_unlock(&w->lock);
			park_fault(c, pg, rt->page_size);
			return;
		}
		STAT_INC(c->st, wp_unknown);
	}
	ret = uffd_writeprotect(r ? r->uffd : &rt->uffd, pg, rt->page_size, false, false);
	pthread_rwlock_unlock(&w->lock);
	if (ret == -EAGAIN) {
		/* an event is pending: the writer is woken later, faults again,
		 * finds WRITTEN, and we clear the protection then */
		STAT_INC(c->st, copy_eagain);
		park_fault(c, pg, rt->page_size);
	} else if (ret) {
		if (ret == -ENOENT || ret == -EINVAL)
			STAT_INC(c->st, range_gone);
		else
			STAT_INC(c->st, ioctl_errors);
		uffd_wake(&rt->uffd, pg, rt->page_size);
	}
}

/* Context: the gate seen open in a sigrcu section, or wp->lock held */
static enum fl_tres wp_fault_signal_locked(struct fl_fault_ctx *c, uintptr_t addr)
{
	struct fl_runtime *rt = c->rt;
	uintptr_t pg = page_down(rt, addr);
	struct wp_range *r = find_locked(rt->wp, pg);
	int ret;

	STAT_INC(c->st, faults_wp);
	if (!r) {
		/*
		 * Race: as in wp_fault(), the page may be on its way here,
		 * protected, by an mremap() whose REMAP the event thread has
		 * read but not applied to the ranges yet: fault again until it
		 * has. Otherwise a stale protection (a run installed protected
		 * around an armed page of a range since ended): release it.
		 */
		if (fault_events_busy(rt)) {
			STAT_INC(c->st, thread_retries);
			return TR_RETRY;
		}
		STAT_INC(c->st, wp_unknown);
		uffd_writeprotect(&rt->tuffd, pg, rt->page_size, false, true);
		return TR_DONE;
	}
	/* this thread is the writer: its write has not happened yet */
	if (!first_write(c, r, pg)) {
		/* another thread runs the callback: no one to wake us once it
		 * unprotects the page, so write (fault) again (after a yield) */
		STAT_INC(c->st, wp_dup);
		return TR_RETRY;
	}
	/*
	 * WRITTEN, ours or already (a duplicate, or a stale WP bit): clear the
	 * protection. Race: a collection cannot re-arm the page between the
	 * store above and this, because it closes the gate first and waits
	 * for our section (outside one, it waits for our read lock); had it
	 * run before, the page would be ARMED again.
	 * No one sleeps on a SIGBUS uffd: nothing to wake.
	 */
	ret = uffd_writeprotect(r->uffd, pg, rt->page_size, false, true);
	if (ret == -EAGAIN) {
		/* an event is pending: the page stays WRITTEN, the write
		 * faults again and clears it then */
		STAT_INC(c->st, copy_eagain);
		return TR_RETRY;
	}
	if (ret == -ENOENT || ret == -EINVAL)
		STAT_INC(c->st, range_gone);
	else if (ret)
		STAT_INC(c->st, ioctl_errors);
	return TR_DONE;
}

/*
 * In a sigrcu section, the gate seen open (fault_inthread()): the gate
 * holds writers off, no lock. Outside one (the gate was closed,
 * fault_inthread_block()): wp->lock for reading, as a handler takes it.
 * Race: a reader the gate turned away never waits for the gate itself: a
 * writer that closes it again at once (back-to-back collections) could
 * turn it away for ever, and on a slow machine did. It waits for the lock
 * instead, and glibc's rwlock hands a released write lock to the readers
 * waiting for it before the next writer gets it.
 */
enum fl_tres wp_fault_signal(struct fl_fault_ctx *c, uintptr_t addr)
{
	struct wp_root *w = c->rt->wp;
	enum fl_tres res;

	if (c->in_section) {
		res = wp_fault_signal_locked(c, addr);
	} else if (pthread_rwlock_rdlock(&w->lock)) {
		/* EDEADLK: this very thread holds it for writing (a handler of
		 * the program's interrupted its own collection and wrote a
		 * tracked page); the ranges may be half changed: leave them */
		res = TR_RETRY;
	} else {
		res = wp_fault_signal_locked(c, addr);
		pthread_rwlock_unlock(&w->lock);
	}
	if (res == TR_RETRY)
		sched_yield();
	return res;
}

bool wp_install_protected(struct fl_fault_ctx *c, uintptr_t a, size_t len)
{
	struct fl_runtime *rt = c->rt;
	struct wp_root *w = rt->wp;
	/*
	 * In-thread inside a section, the gate was seen open (fault_inthread()):
	 * no lock. Outside one (a fill that may block, fault_inthread_block())
	 * the read lock, as a handler takes it: a writer that holds it waits
	 * for no section of ours, and a thread that holds it itself while it
	 * touches protected memory would wait as it does with handler threads.
	 */
	bool lock = !c->in_signal || !c->in_section;
	bool prot = false;

	/* EDEADLK (this thread writes the ranges, see wp_fault_signal()):
	 * protected, which costs at most a stale WP bit released later */
	if (lock && pthread_rwlock_rdlock(&w->lock))
		return true;
	for (size_t i = 0; i < w->n && !prot; i++) {
		struct wp_range *r = w->v[i];
		uintptr_t lo = a > r->start ? a : r->start;
		uintptr_t hi = a + len < r->end ? a + len : r->end;

		if (lo >= hi)
			continue;
		if (r->async) {
			/* unproduced pages are clean: install them protected, or
			 * PAGEMAP_SCAN would report them written */
			prot = true;
			break;
		}
		for (uintptr_t p = lo; p < hi; p += rt->page_size)
			if (atomic_load_explicit(&r->st[(p - r->start) >> rt->page_shift],
						 memory_order_relaxed) == WPS_ARMED) {
				prot = true;
				break;
			}
	}
	if (lock)
		pthread_rwlock_unlock(&w->lock);
	if (prot)
		STAT_INC(c->st, wp_installs);
	return prot;
}

/* ---- events ---- */

/*
 * Protections in [start, end) end with the memory. @unmap (an UNMAP event):
 * a range wholly inside is kept aside instead, the oldest kept one freed.
 * Race: mremap() sends REMAP(from -> to), then UNMAP(from), and two
 * handlers can apply them in the other order; the REMAP then takes back
 * what the UNMAP of exactly its old range dropped (wp_event_remap), as the
 * index does with its regions (runtime.c unmapped_keep_locked).
 * Context: index write lock held (unregister, resize, UNMAP event).
 */
void wp_forget(struct fl_runtime *rt, uintptr_t start, uintptr_t end, bool unmap)
{
	struct wp_root *w = rt->wp;

	if (!w)
		return;
	wlock(rt);
	for (size_t i = 0; i < w->n;) {
		struct wp_range *r = w->v[i];

		if (r->start >= end || r->end <= start) {
			i++;
			continue;
		}
		remove_at_locked(w, i);
		if (unmap && r->start >= start && r->end <= end) {
			struct wp_gone *g = &w->gone[w->gone_next++ % FL_UNMAPPED_KEEP];

			range_free(g->r);
			*g = (struct wp_gone){ r, start, end };
		} else {
			range_free(r);
		}
	}
	wunlock(rt);
}

/*
 * MADV_DONTNEED & co. The REMOVE event is delivered before the zap, and the
 * zapping thread sleeps until the event is read: the pages still hold their
 * old contents now. Armed pages are about to change (to zeros) without a
 * write fault, so they count as written, and a callback gets to copy the
 * ones that are resident (mincore: reading a non-resident page from a
 * handler would fault on memory only handlers can fill).
 */
void wp_event_remove(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end)
{
	struct fl_runtime *rt = c->rt;
	struct wp_root *w = rt->wp;

	pthread_rwlock_rdlock(&w->lock);
	for (size_t i = 0; i < w->n; i++) {
		struct wp_range *r = w->v[i];
		uintptr_t lo = page_down(rt, start > r->start ? start : r->start);
		uintptr_t hi = end < r->end ? end : r->end;

		for (uintptr_t p = lo; p < hi; p += rt->page_size) {
			_Atomic uint8_t *s = &r->st[(p - r->start) >> rt->page_shift];
			uint8_t v = WPS_ARMED;
			unsigned char inc = 0;

			if (!atomic_compare_exchange_strong_explicit(s, &v, WPS_BUSY,
					memory_order_acq_rel, memory_order_acquire))
				continue;	/* written already, or a callback runs */
			if (r->cb && mincore((void *)p, rt->page_size, &inc) == 0 && (inc & 1)) {
				r->cb(r->arg, (void *)p, rt->page_size);
				STAT_INC(c->st, wp_callbacks);
			}
			atomic_store_explicit(s, WPS_WRITTEN, memory_order_release);
		}
	}
	pthread_rwlock_unlock(&w->lock);
}

/*
 * mremap: the kernel moved the pages with their uffd-wp bits (EVENT_REMAP is
 * enabled, so it keeps them). A range wholly inside the move follows it; a
 * range cut by it ends (its state would no longer describe one range).
 */
void wp_event_remap(struct fl_fault_ctx *c, uintptr_t from, uintptr_t to, size_t len)
{
	struct wp_root *w = c->rt->wp;
	bool moved = false;

	wlock(c->rt);
	for (size_t i = 0; i < w->n;) {
		struct wp_range *r = w->v[i];

		if (r->start >= from && r->end <= from + len) {
			r->end = to + (r->end - from);
			r->start = to + (r->start - from);
			moved = true;
			i++;
		} else if (r->start < from + len && r->end > from) {
			range_free(r);
			remove_at_locked(w, i);
		} else {
			i++;
		}
	}
	/* the UNMAP of the old range came first: take back what it dropped
	 * (wp_forget); exactly that range, never a reused one's */
	for (unsigned int i = 0; i < FL_UNMAPPED_KEEP && !moved; i++) {
		struct wp_gone *g = &w->gone[i];
		struct wp_range *r = g->r;

		if (!r || g->start != from || g->end != from + len)
			continue;
		if (grow_locked(w)) {
			range_free(r);		/* no room: it ends, as a cut one does */
		} else {
			r->end = to + (r->end - from);
			r->start = to + (r->start - from);
			w->v[w->n++] = r;
		}
		*g = (struct wp_gone){ NULL, 0, 0 };
	}
	wunlock(c->rt);
}

/* ---- the API ---- */

int wp_region_pager(struct fl_runtime *rt, uintptr_t a, size_t len, enum fl_pager *pager)
{
	struct fl_region *r;
	int ret = 0;

	pthread_rwlock_rdlock(&rt->index.lock);
	r = index_lookup(rt->index.cur, a);
	if (!r || !(r->flags & FL_REGION_WP) || a + len > r->end)
		ret = -EINVAL;
	else if (pager)
		*pager = r->pager;
	pthread_rwlock_unlock(&rt->index.lock);
	return ret;
}

static int protect(struct fl_runtime *rt, uintptr_t a, size_t len, fl_wp_fn cb,
		   void *arg, bool async)
{
	struct wp_root *w;
	struct wp_range *r;
	struct fl_region *reg;
	size_t npages;
	int ret;

	if (!rt || !len || !page_aligned(rt, a) || !page_aligned(rt, len) || a + len < a)
		return -EINVAL;
	if (rt->forked_child)
		return -ENODEV;
	if (!uffd_has(&rt->uffd, UFFD_FEATURE_PAGEFAULT_FLAG_WP))
		return -EOPNOTSUPP;
	w = rt->wp;
	npages = len >> rt->page_shift;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->start = a;
	r->end = a + len;
	r->cb = cb;
	r->arg = arg;
	r->async = async;
	r->st_bytes = (npages + 4095) & ~(size_t)4095;
	r->st = mmap(NULL, r->st_bytes, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->st == MAP_FAILED) {
		r->st = NULL;
		range_free(r);
		return -ENOMEM;
	}
	madvise((void *)r->st, r->st_bytes, MADV_DONTFORK);

	/* index then wp: the region cannot go away while we arm it */
again:
	pthread_rwlock_rdlock(&rt->index.lock);
	reg = index_lookup(rt->index.cur, a);
	if (!reg || !(reg->flags & FL_REGION_WP) || a + len > reg->end) {
		ret = -EINVAL;
		goto out_index;
	}
	r->uffd = region_uffd(rt, reg);
	wlock(rt);
	for (size_t i = 0; i < w->n; i++)
		if (w->v[i]->start < r->end && w->v[i]->end > r->start) {
			ret = -EEXIST;
			goto out;
		}
	ret = grow_locked(w);
	if (ret)
		goto out;
	/*
	 * Publish (all pages ARMED) before protecting: a page being filled
	 * right now asks wp_install_protected() after we drop the lock, or
	 * already installed it and our WRITEPROTECT below covers it.
	 */
	/* (the kernel refuses MODE_WP together with MODE_DONTWAKE: -EINVAL) */
	ret = uffd_writeprotect(r->uffd, a, len, true, false);
	if (ret == -EAGAIN) {
		/* an event is pending: its handler may need the locks we hold
		 * (event_unmap writes the index): let go, then start over */
		wunlock(rt);
		pthread_rwlock_unlock(&rt->index.lock);
		usleep(50);
		goto again;
	}
	if (ret)
		goto out;
	w->v[w->n++] = r;
	r = NULL;
out:
	wunlock(rt);
out_index:
	pthread_rwlock_unlock(&rt->index.lock);
	range_free(r);
	return ret;
}

FL_EXPORT int fl_protect(struct fl_runtime *rt, void *addr, size_t len, fl_wp_fn cb, void *arg)
{
	if (rt && rt->far)
		return -EOPNOTSUPP;	/* far memory owns the WP faults (evict.c) */
	if (rt && uffd_has(&rt->uffd, UFFD_FEATURE_WP_ASYNC) && cb)
		return -EOPNOTSUPP;
	return protect(rt, (uintptr_t)addr, len, cb, arg,
		       rt && uffd_has(&rt->uffd, UFFD_FEATURE_WP_ASYNC));
}

FL_EXPORT int fl_dirty_start(struct fl_runtime *rt, void *addr, size_t len,
			     enum fl_dirty_mode mode)
{
	bool async;

	if (!rt)
		return -EINVAL;
	if (rt->far)
		return -EOPNOTSUPP;	/* far memory owns the WP faults (evict.c) */
	async = uffd_has(&rt->uffd, UFFD_FEATURE_WP_ASYNC);
	switch (mode) {
	case FL_DIRTY_AUTO:
		break;
	case FL_DIRTY_SYNC:
		if (async)
			return -EOPNOTSUPP;
		break;
	case FL_DIRTY_ASYNC:
		if (!async)
			return -EOPNOTSUPP;
		break;
	default:
		return -EINVAL;
	}
	return protect(rt, (uintptr_t)addr, len, NULL, NULL, async);
}

FL_EXPORT int fl_unprotect(struct fl_runtime *rt, void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;
	struct wp_root *w;
	struct wp_range *r = NULL;
	size_t i;
	int ret;

	if (!rt || !len || !page_aligned(rt, a) || !page_aligned(rt, len))
		return -EINVAL;
	if (rt->forked_child)
		return -ENODEV;
	w = rt->wp;
	wlock(rt);
	i = find_start_locked(w, a);
	if (i == w->n || w->v[i]->end != a + len) {
		wunlock(rt);
		return -ENOENT;
	}
	r = w->v[i];
	remove_at_locked(w, i);
	/* callbacks in flight hold the read lock: none runs now. Clear and
	 * wake; a range already unmapped answers ENOENT, which is fine */
	ret = writeprotect_retry(r->uffd, a, len, false, false);
	wunlock(rt);
	range_free(r);
	return ret == -ENOENT ? 0 : ret;
}

static int pagemap_fd_locked(struct wp_root *w)
{
	if (w->pagemap_fd < 0)
		w->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	return w->pagemap_fd < 0 ? -errno : w->pagemap_fd;
}

static void bm_set(uint64_t *bm, size_t i)
{
	bm[i / 64] |= (uint64_t)1 << (i % 64);
}

/* async: one get-and-clear walk; Context: wp->lock held for writing */
static int collect_async_locked(struct fl_runtime *rt, struct wp_range *r,
				uint64_t *bm, size_t *nd)
{
	struct page_region vec[256];
	uintptr_t a = r->start;
	int fd = pagemap_fd_locked(rt->wp);

	if (fd < 0)
		return -EIO;
	while (a < r->end) {
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = a,
			.end = r->end,
			.vec = (uintptr_t)vec,
			.vec_len = 256,
			/* the masks PAGEMAP_SCAN's fast path serves exactly */
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(fd, PAGEMAP_SCAN, &arg);

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -EIO;
		}
		for (long i = 0; i < n; i++)
			for (uintptr_t p = vec[i].start; p < vec[i].end; p += rt->page_size) {
				size_t pg = (p - r->start) >> rt->page_shift;

				if (!(bm[pg / 64] & ((uint64_t)1 << (pg % 64)))) {
					bm_set(bm, pg);
					(*nd)++;
				}
			}
		if (arg.walk_end <= a)
			return -EIO;	/* no progress: never loop forever */
		a = arg.walk_end;
	}
	return 0;
}

/*
 * One UFFDIO_WRITEPROTECT costs ~2 us here, and walking a pte that is
 * already protected ~10 ns: scattered dirty pages (one run each) are
 * cheaper to re-protect with one call over their whole span once there
 * are more runs than span pages / RUN_SPAN_RATIO. The span's other pages
 * are ARMED, hence already protected (or not produced, and then installed
 * protected), so protecting them again changes nothing.
 */
#define RUN_SPAN_RATIO 16u

/* sync: re-protect the runs of bits set in @bm within [@lo, @hi) pages */
static int rearm_runs(struct fl_runtime *rt, const struct wp_range *r, const uint64_t *bm,
		      size_t lo, size_t hi, size_t runs)
{
	int ret;

	if (runs > 1 && runs > (hi - lo) / RUN_SPAN_RATIO) {
		ret = writeprotect_retry(r->uffd, r->start + (lo << rt->page_shift),
					 (hi - lo) << rt->page_shift, true, false);
		if (!ret)
			return 0;
		/* -ENOENT: a hole in the span (part of it unmapped): run by run */
	}
	for (size_t p = lo; p < hi;) {
		size_t q;

		if (!(bm[p / 64] >> (p % 64))) {
			p = (p / 64 + 1) * 64;	/* no more bits in this word */
			continue;
		}
		if (!(bm[p / 64] >> (p % 64) & 1)) {
			p++;
			continue;
		}
		for (q = p; q < hi && (bm[q / 64] >> (q % 64) & 1); q++)
			;
		ret = writeprotect_retry(r->uffd, r->start + (p << rt->page_shift),
					 (q - p) << rt->page_shift, true, false);
		if (ret && ret != -ENOENT)
			return ret;
		p = q;
	}
	return 0;
}

int wp_collect(struct fl_runtime *rt, uintptr_t start, uint64_t *bm, size_t nbits,
	       size_t *ndirty, bool set_cb, fl_wp_fn cb, void *arg)
{
	size_t lo = 0, hi = 0, runs = 0;
	bool lo_set = false;
	struct wp_root *w = rt->wp;
	struct wp_range *r;
	size_t i, npages, nd = 0;
	int ret = 0;

	/*
	 * A MADV_DONTNEED returns once a handler *read* its REMOVE event, not
	 * once wp_event_remove() marked the pages: wait (bounded, ~100 ms) for
	 * events read but not processed, or this collection would miss pages
	 * the caller zapped before calling it. The few instructions between a
	 * handler's read(2) and its count stay a window: see
	 * doc/architecture.md, "Events".
	 */
	for (int k = 0; k < 100000 &&
	     atomic_load_explicit(&rt->wp_events_pending, memory_order_acquire); k++)
		usleep(1);
	wlock(rt);
	i = find_start_locked(w, start);
	if (i == w->n) {
		ret = -ENOENT;
		goto out;
	}
	r = w->v[i];
	npages = (r->end - r->start) >> rt->page_shift;
	if (nbits < npages) {
		ret = -ENOSPC;
		goto out;
	}
	memset(bm, 0, (npages + 63) / 64 * sizeof(uint64_t));
	/*
	 * Sync: every WRITTEN page goes back to ARMED and is re-protected. No
	 * WP fault is in its callback now (we hold the lock for writing), so
	 * there is no BUSY page. A write that lands between the state reset
	 * and the re-protect is in the data a caller reads after this returns;
	 * one after the re-protect faults and waits for us.
	 * Async: the same for pages zapped by MADV_DONTNEED, then PAGEMAP_SCAN.
	 */
	for (size_t p = 0; p < npages;) {
		size_t q;

		if (atomic_load_explicit(&r->st[p], memory_order_relaxed) != WPS_WRITTEN) {
			p++;
			continue;
		}
		for (q = p; q < npages &&
		     atomic_load_explicit(&r->st[q], memory_order_relaxed) == WPS_WRITTEN; q++) {
			atomic_store_explicit(&r->st[q], WPS_ARMED, memory_order_relaxed);
			bm_set(bm, q);
		}
		nd += q - p;
		if (!lo_set) {
			lo = p;
			lo_set = true;
		}
		hi = q;
		runs++;
		p = q;
	}
	if (!r->async && runs)
		ret = rearm_runs(rt, r, bm, lo, hi, runs);
	if (ret)
		goto out;
	if (r->async)
		ret = collect_async_locked(rt, r, bm, &nd);
	if (set_cb && !ret) {
		r->cb = cb;
		r->arg = arg;
	}
	WP_STAT_ADD(rt, dirty_collects, 1);
	WP_STAT_ADD(rt, dirty_pages, nd);
out:
	wunlock(rt);
	if (!ret && ndirty)
		*ndirty = nd;
	return ret;
}

FL_EXPORT int fl_dirty_collect(struct fl_runtime *rt, void *addr, uint64_t *bitmap,
			       size_t nbits, size_t *ndirty)
{
	if (!rt || !bitmap || !page_aligned(rt, (uintptr_t)addr))
		return -EINVAL;
	if (rt->forked_child)
		return -ENODEV;
	return wp_collect(rt, (uintptr_t)addr, bitmap, nbits, ndirty, false, NULL, NULL);
}

int wp_set_callback(struct fl_runtime *rt, uintptr_t start, fl_wp_fn cb, void *arg)
{
	struct wp_root *w = rt->wp;
	size_t i;
	int ret = 0;

	/* the write lock and the gate wait for callbacks in flight: once they
	 * are ours, no thread runs the old callback any more, and none will */
	wlock(rt);
	i = find_start_locked(w, start);
	if (i == w->n) {
		ret = -ENOENT;
	} else {
		w->v[i]->cb = cb;
		w->v[i]->arg = arg;
	}
	wunlock(rt);
	return ret;
}
