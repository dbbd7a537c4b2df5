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
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fault.h"
#include "probes.h"
#include "rcu.h"
#include "testhooks.h"

char fl_zero_buf[FL_ZERO_BUF] __attribute__((aligned(4096)));

static inline void snap_take(struct fl_snap *s, const struct fl_runtime *rt,
			     struct fl_region *r)
{
	s->r = r;
	/* the uffd its range is registered with: an ioctl on the other fails */
	s->uffd = region_uffd(rt, r);
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
	s->run_lo = 0;
	s->run_hi = SIZE_MAX;
}

static enum fl_kind page_kind(const struct fl_runtime *rt, const struct fl_snap *s,
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

static bool kind_may_block(const struct fl_snap *s, enum fl_kind k)
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
static size_t window_pages(struct fl_fault_ctx *c, const struct fl_snap *s,
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
static void fa_hint_next(const struct fl_runtime *rt, const struct fl_snap *s,
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

/* may evicted page @pg join a read-ahead run? Claims it (-> FILLING) if so. */
static bool claim_evicted(const struct fl_snap *s, size_t pg)
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

/* may page @pg join a run of kind @k? Claims it (-> FILLING) if so. */
static bool claim(const struct fl_runtime *rt, const struct fl_snap *s, size_t pg,
		  enum fl_kind k)
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
static void claim_run(const struct fl_runtime *rt, const struct fl_snap *s, size_t pg,
		      size_t win, enum fl_kind k, size_t *lo, size_t *hi)
{
	size_t npages = (s->end - s->start) >> rt->page_shift;
	size_t wlo = pg & ~(win - 1);
	size_t whi = wlo + win < npages ? wlo + win : npages;

	wlo = wlo > s->run_lo ? wlo : s->run_lo;
	whi = whi < s->run_hi ? whi : s->run_hi;

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
static void finish_run(const struct fl_snap *s, size_t lo, size_t hi, unsigned int to)
{
	for (size_t p = lo; p < hi; p++)
		page_finish(&s->pstate[p], to);
}

/* content for [pg, pg + n) of kind @k into @buf; 0 or -errno */
static int produce(struct fl_fault_ctx *c, const struct fl_snap *s, size_t pg,
		   size_t n, enum fl_kind k, const void **src)
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
		FL_PROBE(fill, off, len, ret);
		*src = c->bounce;
		return ret < 0 ? ret : 0;
	case K_ZERO:
	default:
		*src = fl_zero_buf;
		return 0;
	}
}

/*
 * Install [a, a + len) and settle the page states. Every claimed page ends
 * either RESIDENT (installed, the kernel woke its waiters) or back to its
 * previous state with its range woken, so that a thread whose duplicate
 * message we dropped while the page was FILLING never sleeps forever.
 */
static void install(struct fl_fault_ctx *c, const struct fl_snap *s, size_t pg,
		    size_t n, enum fl_kind k, bool zeropage, const void *src,
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
	if (unlikely(s->flags & FL_REGION_WP) && rt->hooks.install_protected &&
	    rt->hooks.install_protected(c, a, len)) {
		mode = UFFDIO_COPY_MODE_WP;
		zeropage = false;
	}

	while (off < len) {
		if (zeropage)
			ret = uffd_zeropage(s->uffd, a + off, len - off, 0, &done);
		else if (src == fl_zero_buf)	/* zeros: the buffer again and again */
			ret = uffd_copy(s->uffd, a + off, fl_zero_buf,
					len - off < FL_ZERO_BUF ? len - off : FL_ZERO_BUF,
					mode, &done);
		else
			ret = uffd_copy(s->uffd, a + off, (const char *)src + off,
					len - off, mode, &done);
		if (done) {
			size_t p0 = pg + (off >> rt->page_shift);
			size_t np = done >> rt->page_shift;

			STAT_ADD(c->st, pages_installed, np);
			FL_PROBE(install, a + off, np, (int)k);
			if (unlikely(rt->hooks.installed))
				rt->hooks.installed(rt, (long)np);
			if (zeropage)
				STAT_ADD(c->st, pages_zero, np);
			if (fault_addr >= a + off && fault_addr < a + off + done)
				fault_page_done = true;
			finish_run(s, p0, p0 + np, PS_RESIDENT);
			off += done;
		}
		if (!ret)
			continue;	/* all of it, or one piece of zeros */
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
		if (ret == -EEXIST && zeropage) {
			/*
			 * Not proof that the page is present: UFFDIO_ZEROPAGE
			 * refuses a uffd-wp marker, which UFFDIO_COPY installs
			 * over. A write-protect of a page whose PTE the program
			 * zapped leaves one (WP_UNPOPULATED; far memory's
			 * non-MOVE evictor protects its victims): taking it for
			 * present set the word RESIDENT on an unmapped page,
			 * and every later fault on it was dropped as a
			 * duplicate (test-farmem-marker). Copy zeros instead;
			 * COPY's own EEXIST means present.
			 */
			STAT_INC(c->st, copy_eexist);
			zeropage = false;
			src = fl_zero_buf;
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
		uffd_wake(s->uffd, a + off, len - off);
		return;
	}
	if (!fault_page_done && !c->in_signal)
		uffd_wake(s->uffd, page_down(rt, fault_addr), rt->page_size);
}

/* Fill errors: the access must fail, never see a made-up page. */
static void fail_page(struct fl_fault_ctx *c, const struct fl_snap *s, size_t pg,
		      size_t n, uintptr_t fault_addr)
{
	struct fl_runtime *rt = c->rt;
	uintptr_t fpage = page_down(rt, fault_addr);
	size_t done;

	STAT_INC(c->st, fill_errors);
	/* release the run, then poison only the faulting page */
	finish_run(s, pg, pg + n, PS_ABSENT);
	if (uffd_poison(s->uffd, fpage, rt->page_size, 0, &done) == 0) {
		/*
		 * The page now raises SIGBUS on access; it is no longer
		 * absent. In-thread that SIGBUS is a BUS_ADRERR like a fault's:
		 * PS_POISONED tells fault_inthread() it is the program's.
		 */
		size_t fp = (fpage - s->start) >> rt->page_shift;

		atomic_store_explicit(&s->pstate[fp], PS_RESIDENT | PS_POISONED,
				      memory_order_release);
	}
	/* without POISON the thread refaults and the fill is tried again */
	uffd_wake(s->uffd, s->start + (pg << rt->page_shift), n << rt->page_shift);
}

/*
 * resolve() - produce and install the page at @addr, with fault-around.
 * @may_block: false on tier 1; a page whose pager may block is then left
 *	untouched and RES_BLOCK returned.
 * Context: the region of @s is pinned by RCU, its read lock, or index_lock.
 */
static enum fl_res resolve(struct fl_fault_ctx *c, const struct fl_snap *s,
			   uintptr_t addr, bool write, bool may_block)
{
	struct fl_runtime *rt = c->rt;
	size_t pg = (addr - s->start) >> rt->page_shift;
	_Atomic uint32_t *w = &s->pstate[pg];
	uint32_t v = atomic_load_explicit(w, memory_order_acquire);
	size_t win, lo, hi;
	const void *src = NULL;
	enum fl_kind k;

	for (;;) {
		unsigned int st = ps_state(v);

		if (st == PS_FILLING) {
			/* another thread produces it; its install wakes us */
			STAT_INC(c->st, faults_dup);
			/*
			 * In-thread, nobody wakes us: the access runs again
			 * once we return. Sleep on the page's word till it is
			 * produced, but briefly: the producer may be this very
			 * thread, interrupted by the signal we run in.
			 */
			if (c->in_signal)
				page_wait_ms(w, PS_FILLING, 1);
			return RES_DONE;
		}
		if (st == PS_RESIDENT && c->in_signal) {
			/* mapped by now, or zapped with its REMOVE event not
			 * yet applied: the access runs again and tells */
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
			return rt->hooks.page_in(c, s, addr, write, may_block);
		k = page_kind(rt, s, pg, st);
		if (!may_block && kind_may_block(s, k))
			return RES_BLOCK;
		if (unlikely(rt->hooks.over_budget) && !c->no_throttle &&
		    rt->hooks.over_budget(rt)) {
			/* far memory over budget: give the evictor a moment */
			if (!may_block)
				return RES_BLOCK;
			rt->hooks.throttle(c);	/* installs our reads meanwhile */
		}
		if (atomic_compare_exchange_weak_explicit(w, &v,
				(v & ~PS_STATE_MASK) | PS_FILLING,
				memory_order_acquire, memory_order_acquire))
			break;
	}

	/* the run: claimed neighbours of the same kind inside the window */
	win = k == K_PARTIAL ? 1 : window_pages(c, s, page_down(rt, addr));
	/* in-thread, a fill goes through the slot's buffer (inthread.c) */
	if (k == K_FILL && c->in_signal && win > rt->tbounce_pages)
		win = rt->tbounce_pages;
	if (unlikely(rt->hooks.run_cap)) {
		size_t cap = rt->hooks.run_cap(rt);	/* under a budget: its overshoot */

		win = win < cap ? win : cap;
	}
	claim_run(rt, s, pg, win, k, &lo, &hi);
	/* far memory without MOVE: a page the program zapped after it was
	 * evicted may still be in the evictor's own zap (zap_victims()) */
	if (unlikely(rt->hooks.zap_coming) &&
	    rt->hooks.zap_coming(rt, s->pstate, s->start, lo, hi)) {
		finish_run(s, lo, hi, k == K_ZERO ? PS_DISCARDED : PS_ABSENT);
		park_fault(c, page_down(rt, addr), rt->page_size);
		return RES_DONE;
	}
	if (hi - lo > 1) {
		STAT_INC(c->st, fault_around);
		STAT_ADD(c->st, fault_around_pages, hi - lo - 1);
	}

	/* a fill callback may block: the rule (far/pagein.c, "asynchronous page-in") */
	if (k == K_FILL && may_block)
		fault_reads_drain(c);
	if (produce(c, s, lo, hi - lo, k, &src) < 0) {
		fail_page(c, s, lo, hi - lo, addr);
		return RES_DONE;
	}
	/* a read of zeros maps the shared zero page; a write gets its own page
	 * now, or it would fault a second time in the kernel */
	install(c, s, lo, hi - lo, k, k == K_ZERO && !write, src, addr);
	return RES_DONE;
}

enum fl_res fault_resolve(struct fl_fault_ctx *c, const struct fl_snap *s,
			  uintptr_t addr, bool write, bool may_block)
{
	return resolve(c, s, addr, write, may_block);
}

size_t fault_window_pages(struct fl_fault_ctx *c, const struct fl_snap *s, uintptr_t addr)
{
	return window_pages(c, s, addr);
}

void fault_claim_run(const struct fl_runtime *rt, const struct fl_snap *s, size_t pg,
		     size_t win, enum fl_kind k, size_t *lo, size_t *hi)
{
	claim_run(rt, s, pg, win, k, lo, hi);
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
	int ret = 0;

	if (unknown_defer(c, pg))
		return;
	STAT_INC(c->st, faults_unknown);
	if (!write)
		ret = uffd_zeropage(&rt->uffd, pg, rt->page_size, 0, &done);
	/* a write, or a uffd-wp marker ZEROPAGE refuses (see install()) */
	if (write || ret == -EEXIST)
		ret = uffd_copy(&rt->uffd, pg, fl_zero_buf, rt->page_size, 0, &done);
	if (ret == -EAGAIN)
		park_fault(c, pg, rt->page_size);
	else if (ret)
		uffd_wake(&rt->uffd, pg, rt->page_size);
}

/* a fault begins: the same counts and probe whichever thread resolves it */
static void count_fault(struct fl_fault_ctx *c, uintptr_t addr, bool write)
{
	STAT_INC(c->st, faults);
	FL_PROBE(fault, addr, (int)write);
	if (write)
		STAT_INC(c->st, faults_write);
	else
		STAT_INC(c->st, faults_read);
}

enum tier_ret { T_DONE, T_ABORT };

static enum tier_ret tier1(struct fl_fault_ctx *c, uintptr_t addr, bool write)
{
	struct fl_runtime *rt = c->rt;
	struct fl_index_root *ix = &rt->index;
	struct fl_region *r;
	struct fl_snap s;
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
	snap_take(&s, rt, r);
	FL_TEST_PAUSE(FL_PAUSE_SPF_LOOKED_UP, addr);
	if (likely(resolve(c, &s, addr, write, false) == RES_DONE)) {
		fl_rcu_read_unlock();
		STAT_INC(c->st, spf_ok);
		FL_PROBE(resolved, 1, addr);
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
	FL_PROBE(resolved, 2, addr);
	return T_DONE;
}

/* FL_TIERS_REGION: every fault under its region's read lock */
static enum tier_ret tier2(struct fl_fault_ctx *c, uintptr_t addr, bool write)
{
	struct fl_index_root *ix = &c->rt->index;
	struct fl_region *r;
	struct fl_snap s;
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
	snap_take(&s, c->rt, r);
	c->may_async = true;
	if (resolve(c, &s, addr, write, true) != RES_PENDING)
		region_end_read(r);
	c->may_async = false;
	STAT_INC(c->st, region_ok);
	FL_PROBE(resolved, 2, addr);
	return T_DONE;
}

static void tier3(struct fl_fault_ctx *c, uintptr_t addr, bool write)
{
	struct fl_runtime *rt = c->rt;
	struct fl_index_root *ix = &rt->index;
	struct fl_region *r;
	struct fl_snap s;

	STAT_INC(c->st, global_attempt);
	/* the rule (far/pagein.c, "asynchronous page-in"): a writer holding index_lock
	 * may be waiting for the region references our reads hold */
	fault_reads_drain(c);
	pthread_rwlock_rdlock(&ix->lock);
	r = index_lookup(ix->cur, addr);
	if (!r) {
		/* under the lock: no region can be registered here meanwhile
		 * (see tier1(): the zero page must not land in a new region) */
		serve_unknown(c, addr, write);
		pthread_rwlock_unlock(&ix->lock);
		return;
	}
	snap_take(&s, rt, r);
	resolve(c, &s, addr, write, true);
	pthread_rwlock_unlock(&ix->lock);
	STAT_INC(c->st, global_ok);
	FL_PROBE(resolved, 3, addr);
}

void fault_handle(struct fl_fault_ctx *c, uintptr_t addr, bool write)
{
	struct fl_runtime *rt = c->rt;

	count_fault(c, addr, write);

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

/*
 * Race: mremap() returns once the event thread has taken its REMAP off the
 * in-thread uffd's queue, and the program may touch the new address at
 * once, before the region is published there. The event thread's read
 * window is odd from before its read(2) until the event is counted in
 * events_active (handler.c), and as a polling reader it never sleeps in
 * it: look at the window first, then the count, and try again while
 * either says an event is on its way.
 */
bool fault_events_busy(struct fl_runtime *rt)
{
	for (unsigned int i = rt->nfault_handlers; i < rt->nhandlers; i++)
		if (atomic_load_explicit(&rt->handlers[i].reading, memory_order_seq_cst) & 1)
			return true;
	return atomic_load_explicit(&rt->events_active, memory_order_seq_cst) != 0;
}

static void inthread_ctx(struct fl_fault_ctx *c, struct fl_runtime *rt, int slot)
{
	memset(c, 0, sizeof(*c));
	c->rt = rt;
	c->st = &rt->tst[slot];
	/* K_PARTIAL's page, or a far-memory run (rt->tbounce_pages) */
	c->bounce = rt->tbounce + (((size_t)slot * rt->tbounce_pages) << rt->page_shift);
	c->in_signal = true;
	c->in_section = true;
}

/* are @r's write-protect faults wp.c's (fl_protect(), dirty tracking)? */
static bool inthread_wp_region(const struct fl_runtime *rt, const struct fl_region *r)
{
	return (r->flags & FL_REGION_WP) && rt->hooks.protect_fault_signal;
}

enum fl_tres fault_inthread(struct fl_runtime *rt, int slot, uintptr_t addr, bool write,
			    bool prot, struct fl_region **blk)
{
	struct fl_index_root *ix = &rt->index;
	struct fl_fault_ctx c;
	struct fl_region *r;
	struct fl_snap s;
	unsigned int seq;
	bool stale, closed = false;

	inthread_ctx(&c, rt, slot);
	/* the caller holds a sigrcu section: the index and its regions stay */
	seq = index_seq_begin(ix);
	r = index_lookup(fl_rcu_dereference(ix->cur), addr);
	if (unlikely(!r)) {
		/*
		 * A writer replacing it, or an event read but not applied
		 * (a REMAP about to publish it at its new place): look again.
		 * Otherwise it is not ours. Not served zeros, as a handler's
		 * fault in no region is (serve_unknown()): the kernel lets any
		 * uffd of the process resolve any registered range, so an
		 * install cannot tell whose range it is, and zeros in another
		 * runtime's region would replace its pager's bytes.
		 */
		if ((seq & 1) || index_seq_retry(ix, seq) || fault_events_busy(rt)) {
			STAT_INC(c.st, thread_retries);
			return TR_RETRY;
		}
		return TR_NONE;
	}
	/* a handler region raises no SIGBUS of ours: a poisoned page's (a
	 * fill error, say) is the program's */
	if (!(r->flags & FL_REGION_THREAD))
		return TR_NONE;
	if (unlikely(inthread_wp_region(rt, r))) {
		/*
		 * wp.c's protected ranges, read without its lock: only while
		 * its gate is open. A writer (a collection re-arming pages,
		 * fl_protect(), an event) closes it and then waits for our
		 * section to end, so what we read below stays as we read it.
		 * Seen closed, the fault is served outside the section under
		 * wp.c's lock for reading, as a handler serves it: not by
		 * waiting for the gate and faulting again, which a writer
		 * that closes it again at once can starve for ever.
		 */
		closed = rt->hooks.protect_closed(rt);
		if (prot && write) {
			if (!closed)
				return rt->hooks.protect_fault_signal(&c, addr);
			snap_take(&s, rt, r);
			goto hold;
		}
	}
	if (prot && write) {
		/* far memory's dirty tracking: the first write after a page-in
		 * (counted in far_wp_faults, as a handler's WP message is) */
		if (rt->hooks.dirty_fault && rt->hooks.dirty_fault(&c, r, addr))
			return TR_DONE;
		return TR_NONE;	/* no write protection of ours: not our fault */
	}
	/*
	 * A page far memory poisoned (its store read failed): the kernel
	 * raised this SIGBUS for the poison, not for a fault. The program's.
	 */
	if (unlikely(atomic_load_explicit(&r->pstate[(addr - r->start) >> rt->page_shift],
					  memory_order_acquire) & PS_POISONED))
		return TR_NONE;
	count_fault(&c, addr, write);
	STAT_INC(c.st, faults_thread);
	snap_take(&s, rt, r);
	if (likely(!closed)) {
		STAT_INC(c.st, spf_attempt);
		FL_TEST_PAUSE(FL_PAUSE_SPF_LOOKED_UP, addr);
		if (likely(resolve(&c, &s, addr, write, false) == RES_DONE)) {
			STAT_INC(c.st, spf_ok);
			FL_PROBE(resolved, 1, addr);
			return TR_DONE;
		}
		STAT_INC(c.st, spf_abort_blocking);
		if (!rt->hooks.page_in && s.pager != FL_PAGER_FILL) {
			STAT_INC(c.st, thread_retries);
			return TR_RETRY;
		}
	}
hold:
	/*
	 * Far memory (a page-in, or the budget's throttle), a fill that may
	 * block (FL_REGION_FILL_SIGNAL_SAFE) or wp.c's closed gate: each may
	 * wait (the store, the evictor, the fill's own I/O, the writer), and
	 * a wait inside the section would hold up every grace period of the
	 * process: take the region's read reference, as tier 2 does, and let
	 * the caller leave the section first. Refused (a writer holds the
	 * region): fault again.
	 */
	STAT_INC(c.st, region_attempt);
	if (!region_start_read_checked(r, addr, s.gen, &stale)) {
		STAT_INC(c.st, thread_retries);
		return TR_RETRY;
	}
	*blk = r;
	return TR_BLOCK;
}

void fault_inthread_block(struct fl_runtime *rt, int slot, struct fl_region *r,
			  uintptr_t addr, bool write, bool prot)
{
	struct fl_fault_ctx c;
	struct fl_snap s;

	inthread_ctx(&c, rt, slot);
	c.in_section = false;
	/*
	 * As a handler's tier 2: the store read (the store's signal-safe
	 * read) or the fill callback (FL_REGION_FILL_SIGNAL_SAFE) runs here,
	 * synchronously, and the evictor, the budget and a writer of wp.c's
	 * ranges are waited for as a handler waits for them (a write fault
	 * on a protected page: under wp.c's lock for reading, c.in_section
	 * false). Nothing here waits for this thread: the evictor never
	 * touches managed memory (MOVE eviction), and a writer waiting for
	 * our reference waits for this call only.
	 */
	if (prot && write && inthread_wp_region(rt, r)) {
		rt->hooks.protect_fault_signal(&c, addr);
	} else {
		snap_take(&s, rt, r);
		resolve(&c, &s, addr, write, true);
	}
	STAT_INC(c.st, region_ok);
	FL_PROBE(resolved, 2, addr);
	/* last: once the reference is gone, the runtime may be destroyed */
	region_end_read(r);
}

void region_make_resident_locked(struct fl_fault_ctx *c, struct fl_region *r,
				 uintptr_t a, uintptr_t b)
{
	struct fl_runtime *rt = c->rt;
	size_t last = (b - r->start) >> rt->page_shift;
	struct fl_snap s;

	snap_take(&s, rt, r);
	s.fault_around = FL_FAULT_AROUND_MAX;
	/*
	 * Runs as large as can be, but inside [a, b): the rest of the region
	 * stays managed (a cut of a few pages out of a large region), and
	 * pages read back past the cut would count against the budget with
	 * no throttle to hold them (c->no_throttle).
	 */
	s.run_lo = (a - r->start) >> rt->page_shift;
	s.run_hi = last;
	for (size_t p = s.run_lo; p < last; p++) {
		_Atomic uint32_t *w = &s.pstate[p];
		unsigned int tries = 0;
		uint64_t before, errs;

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
			errs = c->st->far_read_errors;
			resolve(c, &s, s.start + (p << rt->page_shift), true, true);
			STAT_ADD(c->st, fork_prepared_pages, c->st->pages_installed - before);
			/* a page the store could not give back is poisoned
			 * (both processes see SIGBUS there) and stays
			 * EVICTED: asking the store again would not help */
			if (c->st->far_read_errors != errs)
				break;
		}
	}
}
