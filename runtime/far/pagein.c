/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pagein.c - far memory's page-in: a fault on an evicted page reads its
 * run back from the store (synchronously, or asynchronously on a handler
 * thread) and installs it; the core calls it through its page_in hook
 * (core/hooks.h) for EVICTING and EVICTED pages. Pages whose write-back
 * failed come back from runtime memory instead (rescue.c). The eviction
 * side and the race protocol between the two are in evict.c.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/fault.h"
#include "core/probes.h"
#include "core/testhooks.h"
#include "far.h"

/*
 * FILLING -> @to with the far flags; DISCARD_PENDING wins, as page_finish.
 * PS_RESCUED and PS_POISONED survive only back to EVICTED (a poisoned PTE
 * goes only with a zap, which makes the word DISCARDED). Return: the state reached.
 */
static unsigned int far_finish(_Atomic uint32_t *w, unsigned int to, uint32_t set)
{
	uint32_t old = atomic_load_explicit(w, memory_order_relaxed), nw;

	do {
		if (old & PS_DISCARD_PENDING)
			nw = (old & ~(PS_STATE_MASK | PS_WAITERS | PS_DISCARD_PENDING |
				      PS_INSTORE | PS_RESCUED | PS_POISONED)) | PS_DISCARDED;
		else
			nw = (old & ~(PS_STATE_MASK | PS_WAITERS | PS_INSTORE |
				      (to == PS_EVICTED ? 0 : PS_RESCUED | PS_POISONED))) |
			     to | set;
	} while (!atomic_compare_exchange_weak_explicit(w, &old, nw, memory_order_release,
							memory_order_relaxed));
	if (old & PS_WAITERS)
		page_wake(w);
	return ps_state(nw);
}

static void far_install(struct fl_fault_ctx *c, const struct fl_snap *s, size_t lo,
			size_t hi, const char *buf, uint64_t cmode);

/* one store read; in the faulting thread's SIGBUS handler, the signal-safe one */
static int far_read(struct fl_fault_ctx *c, struct fl_store *st, struct store_req *req)
{
	if (c->in_signal)
		return store_read_signal(st, req);
	return store_io(st, req, 1);
}

/* wake threads asleep on [a, a + len); in-thread, none is: the access runs again */
static void far_wake(const struct fl_fault_ctx *c, const struct fl_snap *s, uintptr_t a,
		     size_t len)
{
	if (!c->in_signal)
		uffd_wake(s->uffd, a, len);
}

/*
 * A store read failed: the access must fail, never see a made-up page.
 * UFFDIO_POISON makes it raise SIGBUS; the word stays EVICTED (the evictor
 * never touches it; a later MADV_DONTNEED makes it DISCARDED). Without
 * POISON (before 6.6) the fault is parked and retried after 1 ms, until
 * the store answers.
 *
 * A run fails as a whole, but the page that is lost may be a read-ahead
 * neighbour (a store on several servers loses the pages of the one that
 * went): the faulting page is read once more alone first, and only its
 * own failure fails the access. The rest of the run goes back to EVICTED;
 * a fault on each reads it again, and each fails or not on its own.
 */
static void far_read_failed(struct fl_fault_ctx *c, const struct fl_snap *s, size_t lo,
			    size_t hi, uintptr_t fault_addr, uint64_t cmode)
{
	struct fl_runtime *rt = c->rt;
	uintptr_t fpage = page_down(rt, fault_addr);
	size_t fp = (fpage - s->start) >> rt->page_shift, done;

	STAT_INC(c->st, far_store_errors);
	if (hi - lo > 1 && fp >= lo && fp < hi && rt->far) {
		struct store_req req = {
			.op = STORE_READ,
			.off = s->store_off + ((uint64_t)fp << rt->page_shift),
			.buf = c->bounce,
			.len = rt->page_size,
		};

		if (far_read(c, rt->far->store, &req) == 0) {
			for (size_t p = lo; p < hi; p++)
				if (p != fp)
					far_finish(&s->pstate[p], PS_EVICTED, PS_INSTORE);
			STAT_INC(c->st, far_pageins);
			far_install(c, s, fp, fp + 1, c->bounce, cmode);
			/* the run's other faults come back and read alone */
			far_wake(c, s, s->start + (lo << rt->page_shift),
				 (hi - lo) << rt->page_shift);
			return;
		}
	}
	STAT_INC(c->st, far_read_errors);
	for (size_t p = lo; p < hi; p++)
		if (p != fp)
			far_finish(&s->pstate[p], PS_EVICTED, PS_INSTORE);
	/*
	 * The faulting page stays claimed until the word says POISONED: an
	 * access to a poisoned page raises SIGBUS (BUS_ADRERR here), which an
	 * in-thread runtime's handler must tell from its own faults and pass
	 * on (core/fault.c fault_inthread()).
	 */
	if (uffd_poison(s->uffd, fpage, rt->page_size, 0, &done) == 0) {
		if (fp >= lo && fp < hi)
			far_finish(&s->pstate[fp], PS_EVICTED, PS_INSTORE | PS_POISONED);
		far_wake(c, s, s->start + (lo << rt->page_shift), (hi - lo) << rt->page_shift);
	} else {
		if (fp >= lo && fp < hi)
			far_finish(&s->pstate[fp], PS_EVICTED, PS_INSTORE);
		park_fault(c, s->start + (lo << rt->page_shift), (hi - lo) << rt->page_shift);
	}
}

/*
 * The read-ahead window for a fault on evicted page @pg: the adaptive
 * window, but only where the access really is sequential, and never more
 * than far_run_cap() (a sixteenth of the budget over all handlers).
 * - A hint outlives the run that left it: the page stays EVICTED, hint and
 *   all, until something touches it. A random access landing on it much
 *   later is no stream; read ahead only when the page before it is
 *   resident (a stream just consumed it). Measured on a 4x-budget random
 *   scan: 40 % more pages read than touched without this check.
 * - A window as large as the budget makes the evictor take back the run
 *   being read before it is used.
 */
static size_t far_window(struct fl_fault_ctx *c, const struct fl_snap *s, size_t pg)
{
	const struct fl_runtime *rt = c->rt;
	size_t win = fault_window_pages(c, s, s->start + (pg << rt->page_shift)), cap;

	if (win > 1 && !s->fault_around && pg &&
	    ps_state(atomic_load_explicit(&s->pstate[pg - 1], memory_order_relaxed)) != PS_RESIDENT)
		return 1;
	/* and never past what the budget's overshoot allows (far_run_cap()),
	 * nor, in-thread, past the thread's buffer */
	cap = far_run_cap(rt);
	if (c->in_signal && cap > rt->tbounce_pages)
		cap = rt->tbounce_pages;
	return win > cap ? cap : win;
}

/*
 * Install a run read back from the store: pages [lo, hi) of @s, claimed
 * FILLING, their bytes in @buf; with WP (@cmode) so that the first write
 * tells us the page is dirty. Settles every page: RESIDENT, or back to
 * EVICTED (parked or woken) when the kernel refuses.
 */
static void far_install(struct fl_fault_ctx *c, const struct fl_snap *s, size_t lo,
			size_t hi, const char *buf, uint64_t cmode)
{
	struct fl_runtime *rt = c->rt;
	uintptr_t a = s->start + (lo << rt->page_shift);
	size_t len = (hi - lo) << rt->page_shift, off = 0, done;
	int ret;

	while (off < len) {
		ret = uffd_copy(s->uffd, a + off, buf + off, len - off, cmode, &done);
		for (size_t p = 0; p < (done >> rt->page_shift); p++)
			far_finish(&s->pstate[lo + (off >> rt->page_shift) + p], PS_RESIDENT,
				   PS_REF | (cmode ? PS_INSTORE : 0));
		if (done) {
			STAT_ADD(c->st, pages_installed, done >> rt->page_shift);
			FL_PROBE(pagein, a + off, done >> rt->page_shift);
			far_note_installed(rt, (long)(done >> rt->page_shift));
		}
		off += done;
		if (!ret)
			break;
		if (ret == -EAGAIN && done)
			continue;	/* stopped part-way: see fault.c install() */
		if (ret == -EEXIST) {
			/*
			 * Non-MOVE eviction stopped between write-back and zap:
			 * the page is still present, write-protected since the
			 * copy, so it holds exactly the store's bytes. The
			 * zapper looks at the word under the gate and zaps only
			 * what says EVICTED: settling the page RESIDENT makes it
			 * skip the page. Our caller may hold the gate; a handler
			 * only tries it (the zapper holds it while it waits for
			 * a handler). Race: a zap whose look came before our
			 * claim may have landed since the EEXIST, so under a
			 * gate we took the page is copied once more: EEXIST
			 * again means mapped and ours, success installs the
			 * store's bytes. Left EVICTED instead (no gate), a page
			 * the zapper skipped (its look saw our claim) waits for
			 * a zap that never comes: far_wp_fault() takes it back
			 * on a write (test-farmem-strand).
			 */
			_Atomic uint32_t *w = &s->pstate[lo + (off >> rt->page_shift)];
			bool gated = !c->no_zap_coming && rt->far && !rt->far->move &&
				     far_gate_trylock(rt->far);

			if (gated) {
				ret = uffd_copy(s->uffd, a + off, buf + off, rt->page_size,
						cmode, &done);
				if (!ret)
					STAT_INC(c->st, pages_installed);
			}
			if (c->no_zap_coming || (gated && (!ret || ret == -EEXIST))) {
				unsigned int to = far_finish(w, PS_RESIDENT, PS_REF |
							     (ret || cmode ? PS_INSTORE : 0));

				if (gated)
					far_gate_unlock(rt);
				if (to == PS_RESIDENT)	/* else the program zapped it */
					far_note_installed(rt, 1);
				off += rt->page_size;
				continue;
			}
			if (gated)
				far_gate_unlock(rt);
		}
		/* the rest stays evicted and is read again on its next fault */
		for (size_t p = lo + (off >> rt->page_shift); p < hi; p++)
			far_finish(&s->pstate[p], PS_EVICTED, PS_INSTORE);
		if (ret == -EAGAIN || ret == -EEXIST) {
			/* EEXIST: a non-MOVE zap is still coming; EAGAIN: an
			 * event is pending. Either way: after the next event */
			if (ret == -EAGAIN)
				STAT_INC(c->st, copy_eagain);
			else
				STAT_INC(c->st, copy_eexist);
			park_fault(c, a + off, len - off);
			return;
		}
		if (ret == -ENOENT)
			STAT_INC(c->st, range_gone);
		else
			STAT_INC(c->st, ioctl_errors);
		far_wake(c, s, a + off, len - off);
		return;
	}
}

/*
 * Page-in of a rescued page (claimed FILLING, PS_RESCUED set): its write-back
 * failed and it could not be put back (evict.c far_put_back), so its bytes
 * are in runtime memory (rescue.c), not the store. One page, no read-ahead,
 * installed without write protection: the store does not hold it, it is
 * dirty. The copy is dropped once the word leaves RESCUED; a refused
 * install keeps both for the next fault.
 */
static void far_rescue_in(struct fl_fault_ctx *c, const struct fl_snap *s, size_t pg,
			  uintptr_t fault_addr)
{
	struct fl_runtime *rt = c->rt;
	struct fl_far *f = rt->far;
	_Atomic uint32_t *w = &s->pstate[pg];
	uint64_t off = s->store_off + ((uint64_t)pg << rt->page_shift);
	uintptr_t a = s->start + (pg << rt->page_shift);
	struct rescued *e = far_rescue_take(&f->rescue, off);
	size_t done;
	int ret;

	if (!e) {
		/* cannot happen (the copy lives as long as the flag): never
		 * make up a page; SIGBUS where the kernel can */
		STAT_INC(c->st, ioctl_errors);
		far_finish(w, PS_EVICTED, 0);
		if (uffd_poison(s->uffd, a, rt->page_size, 0, &done))
			park_fault(c, a, rt->page_size);
		return;
	}
	memcpy(c->bounce, far_rescue_data(e), rt->page_size);
	ret = uffd_copy(s->uffd, a, c->bounce, rt->page_size, 0, &done);
	if (!ret) {
		/* the copy has served (gone before the word is RESIDENT: see
		 * far_rescued_gone); the page counted as resident all along */
		far_rescue_free(&f->rescue, e);
		far_finish(w, PS_RESIDENT, PS_REF);
		STAT_INC(c->st, pages_installed);
		return;
	}
	/* refused: the copy goes back before the word says RESCUED again */
	far_rescue_insert(&f->rescue, e);
	if (far_finish(w, PS_EVICTED, 0) == PS_DISCARDED && far_rescue_remove(&f->rescue, e)) {
		/* zapped while we held it: the program asked for zeros */
		far_rescue_free(&f->rescue, e);
		atomic_fetch_sub_explicit(&f->resident, 1, memory_order_relaxed);
	}
	if (ret == -EAGAIN) {
		STAT_INC(c->st, copy_eagain);
		park_fault(c, page_down(rt, fault_addr), rt->page_size);
		return;
	}
	if (ret == -ENOENT)
		STAT_INC(c->st, range_gone);
	else
		STAT_INC(c->st, ioctl_errors);
	far_wake(c, s, a, rt->page_size);
}

/*
 * ---- asynchronous page-in (handler threads) ----
 *
 * A handler that takes a fault on an EVICTED page claims the run (FILLING),
 * keeps the region read reference its tier took (tier 2: never the RCU read
 * side, which must not be held across I/O), starts the store read with the
 * pending fault as the request, and goes back to its uffd: reads in flight
 * are no longer bounded by the number of handler threads, and a read in
 * flight never stops a handler from serving other faults. On completion
 * (far_aio_complete(): the handler's loop, or a drain) it installs the run
 * (EAGAIN parks it as before), settles the words, wakes the waiters, drops
 * the region reference and counts. A second fault on a page being read
 * finds it FILLING and is dropped as a duplicate (the install wakes it),
 * from any handler, including the one whose read is in flight: a handler
 * never sleeps on a page word for a FILLING page.
 *
 * The handler waits on its uffd and an eventfd with poll(2) (handler.c).
 * The eventfd rather than IORING_OP_POLL_ADD of the uffd in the ring: the
 * same wait then serves every store (the file store's ring signals the
 * eventfd on each completion; the callbacks store completes on threads of
 * its own and signals it; the memory store completes at once), and the
 * ring stays a store detail.
 *
 * The rule: a handler completes all its own reads in flight before it does
 * anything that may block (far_aio_drain()). Its reads hold region read
 * references and FILLING words, so each of these would deadlock or stall:
 *  - the index lock (tier 3, events): a writer holding index_lock for
 *    writing waits in region_write_lock() for the region's readers to
 *    drain, our reference among them, while we wait for its index_lock;
 *  - processing an event (REMOVE, UNMAP, REMAP): each is an index writer
 *    and would wait in region_write_lock() for our own reference, and the
 *    program thread that raised it sleeps until it is processed;
 *  - a blocking fill callback: our reads would sit uninstalled, their
 *    faulting threads and any writer waiting with them;
 *  - the doorbell stop and runtime destroy: the handler exits, and nobody
 *    else would ever install its reads or drop its references.
 * Parking (park_fault) takes park_lock only for a few instructions and the
 * retrier never waits on a handler, so it needs no drain. Two waits for
 * the evictor do not drain either: the throttle (far_throttle(), over the
 * budget) and a page-in that finds its page EVICTING (far_aio_wait_page())
 * install our reads as they complete while they wait, a round a
 * millisecond, so a store read that is slow, or held back, keeps the
 * handler from the next fault no longer than the evictor takes
 * (test-farmem-async-slow: a drain at either waited 20 s for a held
 * read). Reads in flight per handler are bounded (FAR_AIO_MAX); at the
 * bound the handler drains.
 *
 * Alone, a read is synchronous (aio_sync_begin()): when no page-in read is
 * in flight anywhere, the faulting thread is most likely the only one (one
 * thread faults one page at a time), and its handler would only sleep until
 * the read completes. Reading synchronously saves the poll(2) round and the
 * eventfd: one io_uring_enter() submits and waits (the file store). The
 * rule holds trivially: the handler has no read of its own in flight (it
 * has nothing to install before it blocks); and while it reads, every other
 * handler reads asynchronously, so a slow read never stops the faults of
 * other threads. With one handler, reads are always asynchronous.
 */
#define FAR_AIO_MAX	32
#define FAR_AIO_SMALL	(64u << 10)	/* a slot's own buffer; larger runs share one */

struct far_pending {
	struct store_areq a;		/* first: done() gets &p->a */
	struct fl_aio *aio;
	struct fl_snap s;			/* the region's read ref is held */
	size_t lo, hi;
	uintptr_t addr;
	uint64_t cmode;
	uint32_t ptid;			/* the faulting thread: its node for the install */
	bool big;
	struct far_pending *next;	/* free list / completed stack */
};

struct fl_aio {
	struct fl_aio_head h;		/* first: the handler's view (hooks.h) */
	struct fl_store *store;
	pthread_t owner;		/* the handler thread: its completions need no eventfd */
	bool owned;			/* @owner is set (by the first aio_start()) */
	bool big_busy;
	char *small;			/* FAR_AIO_MAX * FAR_AIO_SMALL */
	char *big;			/* FL_FAULT_AROUND_MAX */
	struct far_pending *free;
	/* completed reads, pushed by any thread, taken all at once by the owner */
	_Atomic(struct far_pending *) done;
	/* done() calls running on other threads: the eventfd stays open meanwhile */
	_Atomic unsigned int signalling;
	struct far_pending slot[FAR_AIO_MAX];
};

static inline struct fl_aio *aio_of(const struct fl_fault_ctx *c)
{
	return (struct fl_aio *)c->aio;
}

static void aio_done(struct store_areq *a)
{
	struct far_pending *p = (struct far_pending *)a;
	struct fl_aio *aio = p->aio;
	struct far_pending *head;
	bool remote = !pthread_equal(pthread_self(), aio->owner);
	uint64_t one = 1;
	int efd = aio->h.efd;

	/*
	 * Race: once @p is on the stack its handler may install it, find no
	 * read in flight and exit, closing the eventfd. @signalling, raised
	 * before the push and dropped after the write, keeps it open
	 * (far_aio_fini() waits for zero).
	 */
	if (remote)
		atomic_fetch_add_explicit(&aio->signalling, 1, memory_order_seq_cst);
	head = atomic_load_explicit(&aio->done, memory_order_relaxed);
	do
		p->next = head;
	while (!atomic_compare_exchange_weak_explicit(&aio->done, &head, p,
						      memory_order_release, memory_order_relaxed));
	if (remote) {
		if (write(efd, &one, sizeof(one)) < 0) {
			/* cannot fail for a counter far below its limit */
		}
		atomic_fetch_sub_explicit(&aio->signalling, 1, memory_order_seq_cst);
	}
}

int far_aio_init(struct fl_fault_ctx *c)
{
	struct fl_runtime *rt = c->rt;
	struct fl_aio *aio;

	if (!rt->far || !store_has_async(rt->far->store))
		return 0;
	aio = calloc(1, sizeof(*aio));
	if (!aio)
		return -ENOMEM;
	aio->store = rt->far->store;
	aio->h.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	/* runtime memory, never registered; touched only as far as runs need */
	aio->small = mmap(NULL, (size_t)FAR_AIO_MAX * FAR_AIO_SMALL + FL_FAULT_AROUND_MAX,
			  PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			  -1, 0);
	if (aio->h.efd < 0 || aio->small == MAP_FAILED) {
		if (aio->h.efd >= 0)
			close(aio->h.efd);
		if (aio->small != MAP_FAILED)
			munmap(aio->small, (size_t)FAR_AIO_MAX * FAR_AIO_SMALL + FL_FAULT_AROUND_MAX);
		free(aio);
		return -ENOMEM;
	}
	madvise(aio->small, (size_t)FAR_AIO_MAX * FAR_AIO_SMALL + FL_FAULT_AROUND_MAX,
		MADV_DONTFORK);
	aio->big = aio->small + (size_t)FAR_AIO_MAX * FAR_AIO_SMALL;
	for (unsigned int i = 0; i < FAR_AIO_MAX; i++) {
		aio->slot[i].aio = aio;
		aio->slot[i].next = aio->free;
		aio->free = &aio->slot[i];
	}
	c->aio = &aio->h;
	return 0;
}

/*
 * The handler has been idle with no read in flight: the buffers' pages go
 * back (a 4 MiB run would otherwise stay resident per handler for good,
 * outside the budget). Nothing reads or writes them now: every read that
 * used them has been installed.
 */
void far_aio_idle(struct fl_fault_ctx *c)
{
	struct fl_aio *aio = aio_of(c);

	madvise(aio->small, (size_t)FAR_AIO_MAX * FAR_AIO_SMALL + FL_FAULT_AROUND_MAX,
		MADV_DONTNEED);
	aio->h.held = false;
	STAT_INC(c->st, far_aio_idle_releases);
}

void far_aio_fini(struct fl_fault_ctx *c)
{
	struct fl_aio *aio = aio_of(c);

	if (!aio)
		return;
	/* the handler drained before it exited; a done() may still be signalling */
	while (atomic_load_explicit(&aio->signalling, memory_order_seq_cst))
		sched_yield();
	close(aio->h.efd);
	munmap(aio->small, (size_t)FAR_AIO_MAX * FAR_AIO_SMALL + FL_FAULT_AROUND_MAX);
	free(aio);
	c->aio = NULL;
}

/* a read finished: install its run, drop the region ref, free the slot */
static void aio_finish(struct fl_fault_ctx *c, struct far_pending *p)
{
	struct fl_aio *aio = aio_of(c);
	struct fl_region *r = p->s.r;

	/* numa.c: the install allocates the pages: on the faulter's node */
	numa_fault_begin(c, p->ptid);
	if (p->a.req.res) {
		far_read_failed(c, &p->s, p->lo, p->hi, p->addr, p->cmode);
	} else {
		STAT_ADD(c->st, far_pageins, p->hi - p->lo);
		STAT_ADD(c->st, far_readahead_pages, p->hi - p->lo - 1);
		far_install(c, &p->s, p->lo, p->hi, p->a.req.buf, p->cmode);
	}
	region_end_read(r);
	if (p->big)
		aio->big_busy = false;
	p->next = aio->free;
	aio->free = p;
	aio->h.npending--;
}

void far_aio_complete(struct fl_fault_ctx *c)
{
	struct fl_aio *aio = aio_of(c);
	struct far_pending *p, *rev = NULL;

	if (!aio || !aio->h.npending)
		return;
	store_reap(aio->store);
	p = atomic_exchange_explicit(&aio->done, NULL, memory_order_acquire);
	while (p) {		/* oldest first */
		struct far_pending *n = p->next;

		p->next = rev;
		rev = p;
		p = n;
	}
	if (!rev)
		return;
	while (rev) {
		p = rev;
		rev = rev->next;
		aio_finish(c, p);
		atomic_fetch_sub_explicit(&c->rt->far_reads.n, 1, memory_order_relaxed);
	}
	/* back to the node of the fault in hand, if any (a drain mid-fault) */
	numa_fault_begin(c, c->fault_ptid);
}

void far_aio_drain(struct fl_fault_ctx *c)
{
	struct fl_aio *aio = aio_of(c);

	if (!aio)
		return;
	for (;;) {
		struct pollfd pfd = { .fd = aio->h.efd, .events = POLLIN };

		far_aio_complete(c);
		if (!aio->h.npending)
			return;
		STAT_INC(c->st, far_aio_drain_waits);
		poll(&pfd, 1, 100);	/* bounded: a lost signal costs 100 ms, not a hang */
		fault_reads_clear(c);
	}
}

/*
 * Sleep until the page word @w leaves @state, installing this handler's
 * reads as they complete (the rule): a millisecond at a time while any is
 * in flight, then page_wait().
 */
static void far_aio_wait_page(struct fl_fault_ctx *c, _Atomic uint32_t *w, unsigned int state)
{
	while (c->aio && c->aio->npending &&
	       ps_state(atomic_load_explicit(w, memory_order_acquire)) == state) {
		page_wait_ms(w, state, 1);
		far_aio_complete(c);
	}
	page_wait(w, state);
}

/* room for one more read of @len bytes? */
static bool aio_room(const struct fl_aio *aio, size_t len)
{
	return aio->h.npending < FAR_AIO_MAX && (len <= FAR_AIO_SMALL || !aio->big_busy);
}

/*
 * Read synchronously? Only if no page-in read is in flight in any handler
 * (then none of ours either) and another handler is there to take the next
 * fault; counts this read in rt->far_reads if so (aio_sync_end() uncounts).
 * Race: two handlers may both see reads in flight and both go asynchronous:
 * harmless; the compare-exchange lets at most one read synchronously.
 */
static bool aio_sync_begin(struct fl_fault_ctx *c)
{
	unsigned int none = 0;

	return c->rt->nhandlers > 1 &&
	       atomic_compare_exchange_strong_explicit(&c->rt->far_reads.n, &none, 1,
						       memory_order_relaxed, memory_order_relaxed);
}

static void aio_sync_end(struct fl_fault_ctx *c)
{
	atomic_fetch_sub_explicit(&c->rt->far_reads.n, 1, memory_order_relaxed);
}

/*
 * Start the read of run [lo, hi) (claimed): asynchronously, or alone
 * synchronously, installed before this returns (see "asynchronous
 * page-in"). Return: true if done or started (the region read ref now
 * belongs to the read); false: the caller reads it synchronously.
 */
static bool aio_start(struct fl_fault_ctx *c, const struct fl_snap *s, size_t lo,
		      size_t hi, uintptr_t addr, uint64_t cmode)
{
	struct fl_runtime *rt = c->rt;
	struct fl_aio *aio = aio_of(c);
	size_t len = (hi - lo) << rt->page_shift;
	struct far_pending *p = aio->free;

	if (!p || !aio_room(aio, len))
		return false;		/* cannot happen: checked before the claim */
	aio->free = p->next;
	if (!aio->owned) {
		/* once, before the first read can complete: every done()
		 * comes after a submission, so after this write */
		aio->owner = pthread_self();
		aio->owned = true;
	}
	p->s = *s;
	p->lo = lo;
	p->hi = hi;
	p->addr = addr;
	p->cmode = cmode;
	p->ptid = c->fault_ptid;
	p->big = len > FAR_AIO_SMALL;
	p->a.req = (struct store_req){
		.op = STORE_READ,
		.off = s->store_off + ((uint64_t)lo << rt->page_shift),
		.buf = p->big ? aio->big : aio->small + (size_t)(p - aio->slot) * FAR_AIO_SMALL,
		.len = len,
	};
	p->a.done = aio_done;
	p->a.efd = aio->h.efd;
	aio->h.held = true;
	if (p->big)
		aio->big_busy = true;
	if (!aio->h.npending && aio_sync_begin(c)) {
		aio->h.npending++;
		p->a.req.res = store_io(aio->store, &p->a.req, 1);
		aio_sync_end(c);
		aio_finish(c, p);	/* installs, drops the region ref */
		return true;
	}
	aio->h.npending++;
	if (store_read_async(aio->store, &p->a) == 0) {
		atomic_fetch_add_explicit(&rt->far_reads.n, 1, memory_order_relaxed);
		STAT_INC(c->st, far_aio_reads);
		return true;
	}
	if (p->big)
		aio->big_busy = false;
	aio->h.npending--;
	p->next = aio->free;
	aio->free = p;
	return false;
}

/*
 * A fault on an EVICTING or EVICTED page. Tier 1 hands off (RES_BLOCK):
 * store I/O happens under the region read lock, never inside RCU. A handler
 * on tier 2 (c->may_async) starts the read and returns RES_PENDING.
 */
enum fl_res far_resolve(struct fl_fault_ctx *c, const struct fl_snap *s,
			uintptr_t addr, bool write, bool may_block)
{
	struct fl_runtime *rt = c->rt;
	struct fl_far *f = rt->far;
	size_t pg = (addr - s->start) >> rt->page_shift;
	_Atomic uint32_t *w = &s->pstate[pg];
	uint64_t cmode = f && f->wp ? UFFDIO_COPY_MODE_WP : 0;
	bool async = c->aio && c->may_async && f, rescued = false;
	size_t lo, hi, win = 1, done;
	struct store_req req;
	int ret;

	for (;;) {
		uint32_t v = atomic_load_explicit(w, memory_order_acquire);
		unsigned int st = ps_state(v);

		if (st == PS_EVICTING && f && !f->move) {
			/*
			 * Non-MOVE: the page is still mapped while EVICTING, so a
			 * MISSING fault means the program zapped it (its REMOVE
			 * is on its way): serve what that asked for, zeros,
			 * write-protected so that a write abandons the eviction.
			 * Never waits: the faulting thread may be the evictor.
			 */
			ret = uffd_copy(s->uffd, page_down(rt, addr), fl_zero_buf,
					rt->page_size, cmode, &done);
			if (ret == -EAGAIN)
				park_fault(c, page_down(rt, addr), rt->page_size);
			else if (ret)
				far_wake(c, s, page_down(rt, addr), rt->page_size);
			return RES_DONE;
		}
		if (!may_block)
			return RES_BLOCK;
		if (st == PS_EVICTING) {
			/* MOVE step 2-5 in progress: sleep on the page's word,
			 * installing our own reads as they complete (the rule) */
			far_aio_wait_page(c, w, PS_EVICTING);
			continue;
		}
		if (st != PS_EVICTED)
			return fault_resolve(c, s, addr, write, true);
		rescued = v & PS_RESCUED;
		/* a rescued page is counted already: its install adds nothing */
		if (!rescued && !c->no_throttle && far_over_budget(rt))
			far_throttle(c);	/* installs our reads meanwhile */
		/* read-ahead: the adaptive window, over evicted neighbours only */
		win = rescued ? 1 : far_window(c, s, pg);
		if (async && !rescued && !aio_room(aio_of(c), win << rt->page_shift)) {
			/* at the bound: finish ours, then claim (never while claimed) */
			far_aio_drain(c);
			continue;
		}
		/* the program may have dropped these pages with an event that
		 * was read before this fault and is not applied yet */
		if (!c->events_ordered) {
			uintptr_t wlo = s->start + ((pg & ~(win - 1)) << rt->page_shift);

			if (!events_read_applied(c, wlo, wlo + (win << rt->page_shift))) {
				park_fault(c, page_down(rt, addr), rt->page_size);
				return RES_DONE;
			}
		}
		if (atomic_compare_exchange_weak_explicit(w, &v,
				(v & ~PS_STATE_MASK) | PS_FILLING,
				memory_order_acquire, memory_order_relaxed))
			break;
	}

	if (rescued) {
		far_rescue_in(c, s, pg, addr);
		return RES_DONE;
	}
	fault_claim_run(rt, s, pg, win, K_EVICTED, &lo, &hi);
	FL_TEST_PAUSE(FL_PAUSE_PAGEIN_CLAIMED, addr);
	if (async && aio_start(c, s, lo, hi, addr, cmode))
		return RES_PENDING;

	req = (struct store_req){
		.op = STORE_READ,
		.off = s->store_off + ((uint64_t)lo << rt->page_shift),
		.buf = c->bounce,
		.len = (hi - lo) << rt->page_shift,
	};
	if (!f || far_read(c, f->store, &req)) {
		far_read_failed(c, s, lo, hi, addr, cmode);
		return RES_DONE;
	}
	STAT_ADD(c->st, far_pageins, hi - lo);
	STAT_ADD(c->st, far_readahead_pages, hi - lo - 1);
	far_install(c, s, lo, hi, c->bounce, cmode);
	return RES_DONE;
}

