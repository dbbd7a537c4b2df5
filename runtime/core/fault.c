/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault.c - the fault path: speculative -> region-locked -> index-locked.
 *
 * Tier 1 (speculative): rcu_read_lock, look the address up in the published
 *   index, copy the few fields the fault needs, resolve, rcu_read_unlock.
 *   No lock, no refcount, no write to a shared cache line: only the page's
 *   own state word and this thread's counters. Safe without re-validation
 *   because writers never modify a published region: they unpublish it and
 *   wait a grace period before touching it or its address range, so a
 *   region found here stays valid, and its range registered, until our
 *   rcu_read_unlock. The sequence count matters only when the lookup finds
 *   nothing: it tells a writer replacing the region (an abort, counted)
 *   from an address in no region; tier 3 then decides under the lock.
 * Tier 2 (region read lock): for resolutions that may block (a fill
 *   callback; later, store I/O). Tier 1 takes the region's refcount while
 *   still inside RCU (so the object cannot be recycled under it), re-checks
 *   range and generation, leaves RCU and blocks as long as it needs.
 * Tier 3 (index read lock): the region not found (writers active, or the
 *   address is in no region: served here, under the lock), the reader
 *   limit hit, or a forced policy. Always correct, never fast.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "rcu.h"
#include "testhooks.h"

/* reads of never-written .bss: the kernel's copy_from_user maps the zero page */
static char zero_buf[FL_FAULT_AROUND_MAX] __attribute__((aligned(4096)));

/* What a fault needs from its region, copied under RCU. */
struct snap {
	struct fl_region *r;
	uintptr_t start, end;
	uint64_t gen, pgoff;
	enum fl_pager pager;
	const char *src;
	size_t src_len;
	fl_fill_fn fill;
	void *fill_arg;
	size_t fault_around;
	unsigned int flags;
	_Atomic uint32_t *pstate;
	uint64_t store_off;		/* far memory */
};

static inline void snap_take(struct snap *s, struct fl_region *r)
{
	s->r = r;
	s->start = r->start;
	s->end = r->end;
	s->gen = r->gen;
	s->pgoff = r->pgoff;
	s->pager = r->pager;
	s->src = r->src;
	s->src_len = r->src_len;
	s->fill = r->fill;
	s->fill_arg = r->fill_arg;
	s->fault_around = r->fault_around;
	s->flags = r->flags;
	s->pstate = r->pstate;
	s->store_off = r->store_off;
}

/* how a page's contents are produced */
enum kind { K_ZERO, K_SRC, K_PARTIAL, K_FILL,
	    K_EVICTED /* far memory: read back from the store (read-ahead runs) */ };

static enum kind page_kind(const struct fl_runtime *rt, const struct snap *s,
			   size_t pg, unsigned int state)
{
	uint64_t off;

	if (state == PS_DISCARDED)
		return K_ZERO;
	switch (s->pager) {
	case FL_PAGER_COPY:
		off = s->pgoff + ((uint64_t)pg << rt->page_shift);
		if (off >= s->src_len)
			return K_ZERO;
		return off + rt->page_size <= s->src_len ? K_SRC : K_PARTIAL;
	case FL_PAGER_FILL:
		return K_FILL;
	case FL_PAGER_ZERO:
	default:
		return K_ZERO;
	}
}

static bool kind_may_block(const struct snap *s, enum kind k)
{
	return k == K_FILL && !(s->flags & FL_REGION_FILL_NONBLOCK);
}

/*
 * Fault-around window in pages. Fixed, or adaptive: the run that ended
 * right before a page leaves a hint in that page's own word (the log2 of its
 * window, +1: PS_FA_*), and a fault on a hinted page doubles that window (up
 * to FL_FAULT_AROUND_MAX); a fault on a page with no hint takes one page.
 * In the page word rather than per thread because a sequential stream's
 * faults are read by whichever handler wins each message; the word is the
 * page's own, so the fault path still writes no shared line.
 */
static size_t window_pages(struct fl_fault_ctx *c, const struct snap *s,
			   uintptr_t addr)
{
	const struct fl_runtime *rt = c->rt;
	size_t pg = (addr - s->start) >> rt->page_shift;
	unsigned int max_log = __builtin_ctz(FL_FAULT_AROUND_MAX >> rt->page_shift);
	unsigned int h;

	if (s->fault_around)
		return s->fault_around >> rt->page_shift;
	h = (atomic_load_explicit(&s->pstate[pg], memory_order_relaxed) & PS_FA_MASK) >> PS_FA_SHIFT;
	/* h - 1 is the log2 of the previous window: double it */
	return (size_t)1 << (h ? (h < max_log ? h : max_log) : 0);
}

/*
 * fa_hint_next() - a run of @win pages ended before page @next: hint it, if
 * it is still to be produced (or read back from the store: read-ahead). A
 * lost race (the page got claimed meanwhile) only costs the next fault a
 * smaller window.
 */
static void fa_hint_next(const struct fl_runtime *rt, const struct snap *s,
			 size_t next, size_t win)
{
	_Atomic uint32_t *w;
	uint32_t v, h = (uint32_t)__builtin_ctzl(win) + 1;

	if (s->fault_around || next >= ((s->end - s->start) >> rt->page_shift))
		return;
	w = &s->pstate[next];
	v = atomic_load_explicit(w, memory_order_relaxed);
	if ((ps_state(v) != PS_ABSENT && ps_state(v) != PS_DISCARDED &&
	     ps_state(v) != PS_EVICTED) ||
	    ((v & PS_FA_MASK) >> PS_FA_SHIFT) == h)
		return;
	atomic_compare_exchange_strong_explicit(w, &v, (v & ~PS_FA_MASK) | (h << PS_FA_SHIFT),
						memory_order_relaxed, memory_order_relaxed);
}

static bool claim_evicted(const struct snap *s, size_t pg);

/* may page @pg join a run of kind @k? Claims it (-> FILLING) if so. */
static bool claim(const struct fl_runtime *rt, const struct snap *s, size_t pg,
		  enum kind k)
{
	_Atomic uint32_t *w = &s->pstate[pg];
	uint32_t v = atomic_load_explicit(w, memory_order_relaxed);
	unsigned int st = ps_state(v);

	if (k == K_EVICTED)
		return claim_evicted(s, pg);
	if (st != PS_ABSENT && st != PS_DISCARDED)
		return false;
	if (page_kind(rt, s, pg, st) != k || k == K_PARTIAL)
		return false;
	return atomic_compare_exchange_strong_explicit(w, &v,
			(v & ~PS_STATE_MASK) | PS_FILLING,
			memory_order_acquire, memory_order_relaxed);
}

/*
 * claim_run() - the run [*lo, *hi) around page @pg (already claimed by the
 * caller): grow it through the neighbours of kind @k that can be claimed,
 * inside @pg's window of @win pages aligned to its size, and leave the
 * adaptive hint for the next run. Fault-around and read-ahead both use it.
 */
static void claim_run(const struct fl_runtime *rt, const struct snap *s, size_t pg,
		      size_t win, enum kind k, size_t *lo, size_t *hi)
{
	size_t npages = (s->end - s->start) >> rt->page_shift;
	size_t wlo = pg & ~(win - 1);
	size_t whi = wlo + win < npages ? wlo + win : npages;

	*lo = pg;
	*hi = pg + 1;
	while (*hi < whi && claim(rt, s, *hi, k))
		(*hi)++;
	while (*lo > wlo && claim(rt, s, *lo - 1, k))
		(*lo)--;
	fa_hint_next(rt, s, *hi, win);
}

/*
 * Finish pages [lo, hi) of a run: FILLING -> @to. A REMOVE event that
 * overlapped the fill (PS_DISCARD_PENDING, counted in remove_races) turns
 * the page DISCARDED. Its zap may have landed before our install: see
 * doc/architecture.md, "Races the kernel leaves open".
 */
static void finish_run(const struct snap *s, size_t lo, size_t hi, unsigned int to)
{
	for (size_t p = lo; p < hi; p++)
		page_finish(&s->pstate[p], to);
}

/* content for [pg, pg + n) of kind @k into @buf; 0 or -errno */
static int produce(struct fl_fault_ctx *c, const struct snap *s, size_t pg,
		   size_t n, enum kind k, const void **src)
{
	const struct fl_runtime *rt = c->rt;
	uint64_t off = s->pgoff + ((uint64_t)pg << rt->page_shift);
	size_t len = n << rt->page_shift;
	int ret;

	switch (k) {
	case K_SRC:
		*src = s->src + off;
		return 0;
	case K_PARTIAL:
		memcpy(c->bounce, s->src + off, s->src_len - off);
		memset((char *)c->bounce + (s->src_len - off), 0,
		       len - (s->src_len - off));
		*src = c->bounce;
		return 0;
	case K_FILL:
		ret = s->fill(s->fill_arg, off, c->bounce, len);
		*src = c->bounce;
		return ret < 0 ? ret : 0;
	case K_ZERO:
	default:
		*src = zero_buf;
		return 0;
	}
}

/*
 * Install [a, a + len) and settle the page states. Every claimed page ends
 * either RESIDENT (installed, the kernel woke its waiters) or back to its
 * previous state with its range woken, so that a thread whose duplicate
 * message we dropped while the page was FILLING never sleeps forever.
 */
static void install(struct fl_fault_ctx *c, const struct snap *s, size_t pg,
		    size_t n, enum kind k, bool zeropage, const void *src,
		    uintptr_t fault_addr)
{
	struct fl_runtime *rt = c->rt;
	uintptr_t a = s->start + (pg << rt->page_shift);
	size_t len = n << rt->page_shift, off = 0, done;
	unsigned int revert = k == K_ZERO ? PS_DISCARDED : PS_ABSENT;
	bool fault_page_done = false;
	uint64_t mode = 0;
	int ret;

	/* wp.c: armed pages of a protected range are installed protected
	 * (the zero page has no WP mode: copy zeros instead) */
	if (unlikely(s->flags & FL_REGION_WP) && wp_install_protected(c, a, len)) {
		mode = UFFDIO_COPY_MODE_WP;
		zeropage = false;
	}

	while (off < len) {
		if (zeropage)
			ret = uffd_zeropage(&rt->uffd, a + off, len - off, 0, &done);
		else
			ret = uffd_copy(&rt->uffd, a + off, (const char *)src + off,
					len - off, mode, &done);
		if (done) {
			size_t p0 = pg + (off >> rt->page_shift);
			size_t np = done >> rt->page_shift;

			STAT_ADD(c->st, pages_installed, np);
			if (unlikely(rt->far))
				far_note_installed(rt, (long)np);
			if (zeropage)
				STAT_ADD(c->st, pages_zero, np);
			if (fault_addr >= a + off && fault_addr < a + off + done)
				fault_page_done = true;
			finish_run(s, p0, p0 + np, PS_RESIDENT);
			off += done;
		}
		if (!ret)
			break;
		if (ret == -EAGAIN && done) {
			/*
			 * The kernel reports a COPY/ZEROPAGE that stopped
			 * part-way (at a page already present, say) as EAGAIN
			 * with the bytes done, whatever stopped it. That is no
			 * pending event: go on with the rest, whose own answer
			 * (EEXIST, or EAGAIN with nothing done) says what it is.
			 */
			continue;
		}
		if (ret == -EEXIST) {
			/* present already (registered with pages in it, or a
			 * duplicate): that page is resident; go on past it */
			size_t p = pg + (off >> rt->page_shift);

			STAT_INC(c->st, copy_eexist);
			finish_run(s, p, p + 1, PS_RESIDENT);
			off += rt->page_size;
			continue;
		}
		/* the rest of the run is not installed: release it */
		finish_run(s, pg + (off >> rt->page_shift), pg + n, revert);
		if (ret == -EAGAIN) {
			/* an event is pending (mmap_changing): the kernel will
			 * refuse until it is read. Park the range: it is woken
			 * once events were processed, and the faults come again */
			STAT_INC(c->st, copy_eagain);
			park_fault(c, a + off, len - off);
			return;
		}
		/* older kernels said ENOSPC where newer ones say ESRCH: the mm is gone */
		if (ret == -ESRCH || ret == -ENOSPC) {
			STAT_INC(c->st, process_gone);
			return;
		}
		if (ret == -ENOENT || ret == -EINVAL)
			STAT_INC(c->st, range_gone);
		else
			STAT_INC(c->st, ioctl_errors);
		uffd_wake(&rt->uffd, a + off, len - off);
		return;
	}
	if (!fault_page_done)
		uffd_wake(&rt->uffd, page_down(rt, fault_addr), rt->page_size);
}

/* Fill errors: the access must fail, never see a made-up page. */
static void fail_page(struct fl_fault_ctx *c, const struct snap *s, size_t pg,
		      size_t n, uintptr_t fault_addr)
{
	struct fl_runtime *rt = c->rt;
	uintptr_t fpage = page_down(rt, fault_addr);
	size_t done;

	STAT_INC(c->st, fill_errors);
	/* release the run, then poison only the faulting page */
	finish_run(s, pg, pg + n, PS_ABSENT);
	if (uffd_poison(&rt->uffd, fpage, rt->page_size, 0, &done) == 0) {
		/* the page now raises SIGBUS on access; it is no longer absent */
		size_t fp = (fpage - s->start) >> rt->page_shift;

		atomic_store_explicit(&s->pstate[fp], PS_RESIDENT, memory_order_release);
	}
	/* without POISON the thread refaults and the fill is tried again */
	uffd_wake(&rt->uffd, s->start + (pg << rt->page_shift), n << rt->page_shift);
}

/* RES_PENDING: a store read is in flight and owns the region read ref */
enum res { RES_DONE, RES_BLOCK, RES_PENDING };

static enum res far_resolve(struct fl_fault_ctx *c, const struct snap *s,
			    uintptr_t addr, bool write, bool may_block);

/*
 * resolve() - produce and install the page at @addr, with fault-around.
 * @may_block: false on tier 1; a page whose pager may block is then left
 *	untouched and RES_BLOCK returned.
 * Context: the region of @s is pinned by RCU, its read lock, or index_lock.
 */
static enum res resolve(struct fl_fault_ctx *c, const struct snap *s,
			uintptr_t addr, bool write, bool may_block)
{
	struct fl_runtime *rt = c->rt;
	size_t pg = (addr - s->start) >> rt->page_shift;
	_Atomic uint32_t *w = &s->pstate[pg];
	uint32_t v = atomic_load_explicit(w, memory_order_acquire);
	size_t win, lo, hi;
	const void *src = NULL;
	enum kind k;

	for (;;) {
		unsigned int st = ps_state(v);

		if (st == PS_FILLING) {
			/* another thread produces it; its install wakes us */
			STAT_INC(c->st, faults_dup);
			return RES_DONE;
		}
		if (st == PS_RESIDENT) {
			/*
			 * A duplicate whose page is in, or a fault after a zap
			 * whose REMOVE event another handler is processing right
			 * now. Wake: in the second case the thread faults again
			 * and finds the page DISCARDED.
			 */
			STAT_INC(c->st, faults_dup);
			uffd_wake(&rt->uffd, page_down(rt, addr), rt->page_size);
			return RES_DONE;
		}
		if (unlikely(st == PS_EVICTING || st == PS_EVICTED))
			return far_resolve(c, s, addr, write, may_block);
		k = page_kind(rt, s, pg, st);
		if (!may_block && kind_may_block(s, k))
			return RES_BLOCK;
		if (unlikely(rt->far) && !c->no_throttle && far_over_budget(rt)) {
			/* far memory over budget: give the evictor a moment */
			if (!may_block)
				return RES_BLOCK;
			far_throttle(c);	/* installs our reads meanwhile */
		}
		if (atomic_compare_exchange_weak_explicit(w, &v,
				(v & ~PS_STATE_MASK) | PS_FILLING,
				memory_order_acquire, memory_order_acquire))
			break;
	}

	/* the run: claimed neighbours of the same kind inside the window */
	win = k == K_PARTIAL ? 1 : window_pages(c, s, page_down(rt, addr));
	claim_run(rt, s, pg, win, k, &lo, &hi);
	/* far memory without MOVE: a page the program zapped after it was
	 * evicted may still be in the evictor's own zap (zap_victims()) */
	if (unlikely(rt->far) && far_zap_coming(rt, s->pstate, s->start, lo, hi)) {
		finish_run(s, lo, hi, k == K_ZERO ? PS_DISCARDED : PS_ABSENT);
		park_fault(c, page_down(rt, addr), rt->page_size);
		return RES_DONE;
	}
	if (hi - lo > 1) {
		STAT_INC(c->st, fault_around);
		STAT_ADD(c->st, fault_around_pages, hi - lo - 1);
	}

	/* a fill callback may block: the rule (see "asynchronous page-in") */
	if (k == K_FILL && may_block)
		far_aio_drain(c);
	if (produce(c, s, lo, hi - lo, k, &src) < 0) {
		fail_page(c, s, lo, hi - lo, addr);
		return RES_DONE;
	}
	/* a read of zeros maps the shared zero page; a write gets its own page
	 * now, or it would fault a second time in the kernel */
	install(c, s, lo, hi - lo, k, k == K_ZERO && !write, src, addr);
	return RES_DONE;
}

/* ---- far memory: page-in from the store (evict.c has the protocol) ---- */

/* may evicted page @pg join a read-ahead run? Claims it (-> FILLING) if so. */
static bool claim_evicted(const struct snap *s, size_t pg)
{
	_Atomic uint32_t *w = &s->pstate[pg];
	uint32_t v = atomic_load_explicit(w, memory_order_relaxed);

	/* a rescued page is not in the store (far_rescue_in) */
	if (ps_state(v) != PS_EVICTED || (v & PS_RESCUED))
		return false;
	return atomic_compare_exchange_strong_explicit(w, &v,
			(v & ~PS_STATE_MASK) | PS_FILLING,
			memory_order_acquire, memory_order_relaxed);
}

/*
 * FILLING -> @to with the far flags; DISCARD_PENDING wins, as page_finish.
 * PS_RESCUED survives only back to EVICTED. Return: the state reached.
 */
static unsigned int far_finish(_Atomic uint32_t *w, unsigned int to, uint32_t set)
{
	uint32_t old = atomic_load_explicit(w, memory_order_relaxed), nw;

	do {
		if (old & PS_DISCARD_PENDING)
			nw = (old & ~(PS_STATE_MASK | PS_WAITERS | PS_DISCARD_PENDING |
				      PS_INSTORE | PS_RESCUED)) | PS_DISCARDED;
		else
			nw = (old & ~(PS_STATE_MASK | PS_WAITERS | PS_INSTORE |
				      (to == PS_EVICTED ? 0 : PS_RESCUED))) | to | set;
	} while (!atomic_compare_exchange_weak_explicit(w, &old, nw, memory_order_release,
							memory_order_relaxed));
	if (old & PS_WAITERS)
		page_wake(w);
	return ps_state(nw);
}

/*
 * A store read failed: the access must fail, never see a made-up page.
 * UFFDIO_POISON makes it raise SIGBUS; the word stays EVICTED (the evictor
 * never touches it; a later MADV_DONTNEED makes it DISCARDED). Without
 * POISON (before 6.6) the fault is parked and retried after 1 ms, until
 * the store answers.
 */
static void far_read_failed(struct fl_fault_ctx *c, const struct snap *s, size_t lo,
			    size_t hi, uintptr_t fault_addr)
{
	struct fl_runtime *rt = c->rt;
	uintptr_t fpage = page_down(rt, fault_addr);
	size_t done;

	STAT_INC(c->st, far_store_errors);
	STAT_INC(c->st, far_read_errors);
	for (size_t p = lo; p < hi; p++)
		far_finish(&s->pstate[p], PS_EVICTED, PS_INSTORE);
	if (uffd_poison(&rt->uffd, fpage, rt->page_size, 0, &done) == 0)
		uffd_wake(&rt->uffd, s->start + (lo << rt->page_shift), (hi - lo) << rt->page_shift);
	else
		park_fault(c, s->start + (lo << rt->page_shift), (hi - lo) << rt->page_shift);
}

/*
 * The read-ahead window for a fault on evicted page @pg: the adaptive
 * window, but only where the access really is sequential, and never more
 * than an eighth of the budget.
 * - A hint outlives the run that left it: the page stays EVICTED, hint and
 *   all, until something touches it. A random access landing on it much
 *   later is no stream; read ahead only when the page before it is
 *   resident (a stream just consumed it). Measured on a 4x-budget random
 *   scan: 40 % more pages read than touched without this check.
 * - A window as large as the budget makes the evictor take back the run
 *   being read before it is used.
 */
static size_t far_window(struct fl_fault_ctx *c, const struct snap *s, size_t pg)
{
	const struct fl_runtime *rt = c->rt;
	size_t win = window_pages(c, s, s->start + (pg << rt->page_shift)), cap;

	if (win > 1 && !s->fault_around && pg &&
	    ps_state(atomic_load_explicit(&s->pstate[pg - 1], memory_order_relaxed)) != PS_RESIDENT)
		return 1;
	if (rt->far && rt->far->budget >= 16) {
		cap = (size_t)1 << (63 - __builtin_clzll((unsigned long long)rt->far->budget / 8));
		if (win > cap)
			win = cap;
	}
	return win;
}

/*
 * Install a run read back from the store: pages [lo, hi) of @s, claimed
 * FILLING, their bytes in @buf; with WP (@cmode) so that the first write
 * tells us the page is dirty. Settles every page: RESIDENT, or back to
 * EVICTED (parked or woken) when the kernel refuses.
 */
static void far_install(struct fl_fault_ctx *c, const struct snap *s, size_t lo,
			size_t hi, const char *buf, uint64_t cmode)
{
	struct fl_runtime *rt = c->rt;
	uintptr_t a = s->start + (lo << rt->page_shift);
	size_t len = (hi - lo) << rt->page_shift, off = 0, done;
	int ret;

	while (off < len) {
		ret = uffd_copy(&rt->uffd, a + off, buf + off, len - off, cmode, &done);
		for (size_t p = 0; p < (done >> rt->page_shift); p++)
			far_finish(&s->pstate[lo + (off >> rt->page_shift) + p], PS_RESIDENT,
				   PS_REF | (cmode ? PS_INSTORE : 0));
		if (done) {
			STAT_ADD(c->st, pages_installed, done >> rt->page_shift);
			far_note_installed(rt, (long)(done >> rt->page_shift));
		}
		off += done;
		if (!ret)
			break;
		if (ret == -EEXIST && c->no_zap_coming) {
			/*
			 * Non-MOVE eviction stopped between write-back and zap:
			 * the page is still present, write-protected since the
			 * copy, so it holds exactly the store's bytes. The
			 * zapper needs the gate our caller holds, and re-checks
			 * EVICTED under it: settling the page RESIDENT makes it
			 * abandon the zap. (Without the gate this would race the
			 * zap: then we park, below.)
			 */
			far_finish(&s->pstate[lo + (off >> rt->page_shift)], PS_RESIDENT,
				   PS_REF | PS_INSTORE);
			far_note_installed(rt, 1);
			off += rt->page_size;
			continue;
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
		uffd_wake(&rt->uffd, a + off, len - off);
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
static void far_rescue_in(struct fl_fault_ctx *c, const struct snap *s, size_t pg,
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
		if (uffd_poison(&rt->uffd, a, rt->page_size, 0, &done))
			park_fault(c, a, rt->page_size);
		return;
	}
	memcpy(c->bounce, far_rescue_data(e), rt->page_size);
	ret = uffd_copy(&rt->uffd, a, c->bounce, rt->page_size, 0, &done);
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
	uffd_wake(&rt->uffd, a, rt->page_size);
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
	struct snap s;			/* the region's read ref is held */
	size_t lo, hi;
	uintptr_t addr;
	uint64_t cmode;
	uint32_t ptid;			/* the faulting thread: its node for the install */
	bool big;
	struct far_pending *next;	/* free list / completed stack */
};

struct fl_aio {
	struct fl_store *store;
	int efd;
	unsigned int npending;
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

/* the handler whose thread this is: its completions need no eventfd */
static __thread struct fl_aio *aio_self;

static void aio_done(struct store_areq *a)
{
	struct far_pending *p = (struct far_pending *)a;
	struct fl_aio *aio = p->aio;
	struct far_pending *head;
	bool remote = aio_self != aio;
	uint64_t one = 1;
	int efd = aio->efd;

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
	aio->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	/* runtime memory, never registered; touched only as far as runs need */
	aio->small = mmap(NULL, (size_t)FAR_AIO_MAX * FAR_AIO_SMALL + FL_FAULT_AROUND_MAX,
			  PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			  -1, 0);
	if (aio->efd < 0 || aio->small == MAP_FAILED) {
		if (aio->efd >= 0)
			close(aio->efd);
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
	c->aio = aio;
	return 0;
}

void far_aio_bind(struct fl_fault_ctx *c)
{
	aio_self = c->aio;
}

void far_aio_fini(struct fl_fault_ctx *c)
{
	struct fl_aio *aio = c->aio;

	if (!aio)
		return;
	/* the handler drained before it exited; a done() may still be signalling */
	while (atomic_load_explicit(&aio->signalling, memory_order_seq_cst))
		sched_yield();
	close(aio->efd);
	munmap(aio->small, (size_t)FAR_AIO_MAX * FAR_AIO_SMALL + FL_FAULT_AROUND_MAX);
	free(aio);
	c->aio = NULL;
}

int far_aio_fd(const struct fl_fault_ctx *c)
{
	return c->aio ? c->aio->efd : -1;
}

unsigned int far_aio_pending(const struct fl_fault_ctx *c)
{
	return c->aio ? c->aio->npending : 0;
}

/* a read finished: install its run, drop the region ref, free the slot */
static void aio_finish(struct fl_fault_ctx *c, struct far_pending *p)
{
	struct fl_aio *aio = c->aio;
	struct fl_region *r = p->s.r;

	/* numa.c: the install allocates the pages: on the faulter's node */
	numa_fault_begin(c, p->ptid);
	if (p->a.req.res) {
		far_read_failed(c, &p->s, p->lo, p->hi, p->addr);
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
	aio->npending--;
}

/*
 * Clear the eventfd, then look for completions (far_aio_complete()): in that
 * order, a completion that lands after the clear signals it again, so the
 * next poll(2) cannot miss it. Looking without clearing (the handler loop
 * after a batch) is safe too: the eventfd stays readable and the next poll
 * returns at once.
 */
void far_aio_clear(struct fl_fault_ctx *c)
{
	uint64_t x;

	if (c->aio && read(c->aio->efd, &x, sizeof(x)) < 0) {
		/* EAGAIN: nothing signalled */
	}
}

void far_aio_complete(struct fl_fault_ctx *c)
{
	struct fl_aio *aio = c->aio;
	struct far_pending *p, *rev = NULL;

	if (!aio || !aio->npending)
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
	struct fl_aio *aio = c->aio;

	if (!aio)
		return;
	for (;;) {
		struct pollfd pfd = { .fd = aio->efd, .events = POLLIN };

		far_aio_complete(c);
		if (!aio->npending)
			return;
		STAT_INC(c->st, far_aio_drain_waits);
		poll(&pfd, 1, 100);	/* bounded: a lost signal costs 100 ms, not a hang */
		far_aio_clear(c);
	}
}

/*
 * Sleep until the page word @w leaves @state, installing this handler's
 * reads as they complete (the rule): a millisecond at a time while any is
 * in flight, then page_wait().
 */
void far_aio_wait_page(struct fl_fault_ctx *c, _Atomic uint32_t *w, unsigned int state)
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
	return aio->npending < FAR_AIO_MAX && (len <= FAR_AIO_SMALL || !aio->big_busy);
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
static bool aio_start(struct fl_fault_ctx *c, const struct snap *s, size_t lo,
		      size_t hi, uintptr_t addr, uint64_t cmode)
{
	struct fl_runtime *rt = c->rt;
	struct fl_aio *aio = c->aio;
	size_t len = (hi - lo) << rt->page_shift;
	struct far_pending *p = aio->free;

	if (!p || !aio_room(aio, len))
		return false;		/* cannot happen: checked before the claim */
	aio->free = p->next;
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
	p->a.efd = aio->efd;
	if (p->big)
		aio->big_busy = true;
	if (!aio->npending && aio_sync_begin(c)) {
		aio->npending++;
		p->a.req.res = store_io(aio->store, &p->a.req, 1);
		aio_sync_end(c);
		aio_finish(c, p);	/* installs, drops the region ref */
		return true;
	}
	aio->npending++;
	if (store_read_async(aio->store, &p->a) == 0) {
		atomic_fetch_add_explicit(&rt->far_reads.n, 1, memory_order_relaxed);
		STAT_INC(c->st, far_aio_reads);
		return true;
	}
	if (p->big)
		aio->big_busy = false;
	aio->npending--;
	p->next = aio->free;
	aio->free = p;
	return false;
}

/*
 * A fault on an EVICTING or EVICTED page. Tier 1 hands off (RES_BLOCK):
 * store I/O happens under the region read lock, never inside RCU. A handler
 * on tier 2 (c->may_async) starts the read and returns RES_PENDING.
 */
static enum res far_resolve(struct fl_fault_ctx *c, const struct snap *s,
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
			ret = uffd_copy(&rt->uffd, page_down(rt, addr), zero_buf,
					rt->page_size, cmode, &done);
			if (ret == -EAGAIN)
				park_fault(c, page_down(rt, addr), rt->page_size);
			else if (ret)
				uffd_wake(&rt->uffd, page_down(rt, addr), rt->page_size);
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
			return resolve(c, s, addr, write, true);
		rescued = v & PS_RESCUED;
		/* a rescued page is counted already: its install adds nothing */
		if (!rescued && !c->no_throttle && far_over_budget(rt))
			far_throttle(c);	/* installs our reads meanwhile */
		/* read-ahead: the adaptive window, over evicted neighbours only */
		win = rescued ? 1 : far_window(c, s, pg);
		if (async && !rescued && !aio_room(c->aio, win << rt->page_shift)) {
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
	claim_run(rt, s, pg, win, K_EVICTED, &lo, &hi);
	if (async && aio_start(c, s, lo, hi, addr, cmode))
		return RES_PENDING;

	req = (struct store_req){
		.op = STORE_READ,
		.off = s->store_off + ((uint64_t)lo << rt->page_shift),
		.buf = c->bounce,
		.len = (hi - lo) << rt->page_shift,
	};
	if (!f || store_io(f->store, &req, 1)) {
		far_read_failed(c, s, lo, hi, addr);
		return RES_DONE;
	}
	STAT_ADD(c->st, far_pageins, hi - lo);
	STAT_ADD(c->st, far_readahead_pages, hi - lo - 1);
	far_install(c, s, lo, hi, c->bounce, cmode);
	return RES_DONE;
}

/*
 * A fault on an address in no region. Usually a message read after its
 * region was unregistered: the range is no longer registered, the ioctl
 * fails, and the wake lets the thread retry as an ordinary fault. But a
 * range can also be registered without being ours (the tail of an
 * in-place mremap growth inherits the registration): merely waking would
 * make the thread fault forever, so serve it what anonymous memory holds,
 * zeros: but only after unknown_defer() gave a mapping event in flight
 * time to land. Context: index_lock held for reading (see tier1()).
 */
static void serve_unknown(struct fl_fault_ctx *c, uintptr_t addr, bool write)
{
	struct fl_runtime *rt = c->rt;
	uintptr_t pg = page_down(rt, addr);
	size_t done;
	int ret;

	if (unknown_defer(c, pg))
		return;
	STAT_INC(c->st, faults_unknown);
	if (write)
		ret = uffd_copy(&rt->uffd, pg, zero_buf, rt->page_size, 0, &done);
	else
		ret = uffd_zeropage(&rt->uffd, pg, rt->page_size, 0, &done);
	if (ret == -EAGAIN)
		park_fault(c, pg, rt->page_size);
	else if (ret)
		uffd_wake(&rt->uffd, pg, rt->page_size);
}

enum tier_ret { T_DONE, T_ABORT };

static enum tier_ret tier1(struct fl_fault_ctx *c, uintptr_t addr, bool write)
{
	struct fl_runtime *rt = c->rt;
	struct fl_index_root *ix = &rt->index;
	struct fl_region *r;
	struct snap s;
	unsigned int seq;
	bool stale;

	STAT_INC(c->st, spf_attempt);
	seq = index_seq_begin(ix);
	fl_rcu_read_lock();
	r = index_lookup(fl_rcu_dereference(ix->cur), addr);
	if (unlikely(!r)) {
		fl_rcu_read_unlock();
		if (seq & 1)
			STAT_INC(c->st, spf_abort_seq_odd);
		else if (index_seq_retry(ix, seq))
			STAT_INC(c->st, spf_abort_seq_changed);
		/*
		 * Not ours, or not any more: tier 3 serves it under index_lock.
		 * Race (runtime/core/faultpath.pml, mutant UNKNOWN_UNLOCKED): a message
		 * read late finds its region already unregistered; serving zeros
		 * here, outside any lock, lets fl_region_map() register a new
		 * region on the same range between our lookup and our ZEROPAGE
		 * (register_locked() waits for no grace period), and the zero
		 * page lands in the new region instead of its pager's contents.
		 */
		return T_ABORT;
	}
	snap_take(&s, r);
	FL_TEST_PAUSE(FL_PAUSE_SPF_LOOKED_UP, addr);
	if (likely(resolve(c, &s, addr, write, false) == RES_DONE)) {
		fl_rcu_read_unlock();
		STAT_INC(c->st, spf_ok);
		return T_DONE;
	}

	/* the pager may block: tier 2, entered with the object pinned by RCU */
	STAT_INC(c->st, spf_abort_blocking);
	if (rt->tiers == FL_TIERS_SPF) {
		fl_rcu_read_unlock();
		return T_ABORT;
	}
	STAT_INC(c->st, region_attempt);
	if (!region_start_read_checked(r, addr, s.gen, &stale)) {
		fl_rcu_read_unlock();
		if (stale)
			STAT_INC(c->st, region_abort_stale);
		else
			STAT_INC(c->st, region_abort_locked);
		return T_ABORT;
	}
	fl_rcu_read_unlock();
	/* a store read may now outlive this call, holding our reference */
	c->may_async = true;
	if (resolve(c, &s, addr, write, true) != RES_PENDING)
		region_end_read(r);
	c->may_async = false;
	STAT_INC(c->st, region_ok);
	return T_DONE;
}

/* FL_TIERS_REGION: every fault under its region's read lock */
static enum tier_ret tier2(struct fl_fault_ctx *c, uintptr_t addr, bool write)
{
	struct fl_index_root *ix = &c->rt->index;
	struct fl_region *r;
	struct snap s;
	uint64_t gen;
	bool stale;

	STAT_INC(c->st, region_attempt);
	fl_rcu_read_lock();
	r = index_lookup(fl_rcu_dereference(ix->cur), addr);
	if (!r) {
		fl_rcu_read_unlock();
		STAT_INC(c->st, region_abort_locked);
		return T_ABORT;
	}
	gen = r->gen;
	if (!region_start_read_checked(r, addr, gen, &stale)) {
		fl_rcu_read_unlock();
		if (stale)
			STAT_INC(c->st, region_abort_stale);
		else
			STAT_INC(c->st, region_abort_locked);
		return T_ABORT;
	}
	fl_rcu_read_unlock();
	snap_take(&s, r);
	c->may_async = true;
	if (resolve(c, &s, addr, write, true) != RES_PENDING)
		region_end_read(r);
	c->may_async = false;
	STAT_INC(c->st, region_ok);
	return T_DONE;
}

static void tier3(struct fl_fault_ctx *c, uintptr_t addr, bool write)
{
	struct fl_runtime *rt = c->rt;
	struct fl_index_root *ix = &rt->index;
	struct fl_region *r;
	struct snap s;

	STAT_INC(c->st, global_attempt);
	/* the rule (see "asynchronous page-in"): a writer holding index_lock
	 * may be waiting for the region references our reads hold */
	far_aio_drain(c);
	pthread_rwlock_rdlock(&ix->lock);
	r = index_lookup(ix->cur, addr);
	if (!r) {
		/* under the lock: no region can be registered here meanwhile
		 * (see tier1(): the zero page must not land in a new region) */
		serve_unknown(c, addr, write);
		pthread_rwlock_unlock(&ix->lock);
		return;
	}
	snap_take(&s, r);
	resolve(c, &s, addr, write, true);
	pthread_rwlock_unlock(&ix->lock);
	STAT_INC(c->st, global_ok);
}

void fault_handle(struct fl_fault_ctx *c, uintptr_t addr, bool write)
{
	struct fl_runtime *rt = c->rt;

	STAT_INC(c->st, faults);
	if (write)
		STAT_INC(c->st, faults_write);
	else
		STAT_INC(c->st, faults_read);

	switch (rt->tiers) {
	case FL_TIERS_GLOBAL:
		break;
	case FL_TIERS_REGION:
		if (tier2(c, addr, write) == T_DONE)
			return;
		break;
	case FL_TIERS_SPF:
	case FL_TIERS_ADAPTIVE:
	default:
		if (tier1(c, addr, write) == T_DONE)
			return;
		break;
	}
	tier3(c, addr, write);
}

void region_make_resident_locked(struct fl_fault_ctx *c, struct fl_region *r)
{
	struct fl_runtime *rt = c->rt;
	size_t npages = region_npages(r, rt->page_shift);
	struct snap s;

	snap_take(&s, r);
	s.fault_around = FL_FAULT_AROUND_MAX;
	for (size_t p = 0; p < npages; p++) {
		_Atomic uint32_t *w = &s.pstate[p];
		unsigned int tries = 0;
		uint64_t before;

		for (;;) {
			uint32_t v = atomic_load_explicit(w, memory_order_acquire);
			unsigned int st = ps_state(v);

			if (st == PS_FILLING) {
				page_wait(w, PS_FILLING);
				continue;
			}
			/* zero pages need nothing: the child's kernel zero-fills;
			 * evicted pages (far memory) are read back */
			if (st != PS_EVICTED &&
			    (st != PS_ABSENT || page_kind(rt, &s, p, st) == K_ZERO))
				break;
			if (tries++ > 10000) {	/* ~1 s of EAGAIN: give up on it */
				STAT_INC(c->st, ioctl_errors);
				break;
			}
			if (tries > 1)
				usleep(100);	/* an event is pending: let a handler read it */
			before = c->st->pages_installed;
			resolve(c, &s, s.start + (p << rt->page_shift), true, true);
			STAT_ADD(c->st, fork_prepared_pages, c->st->pages_installed - before);
		}
	}
}
