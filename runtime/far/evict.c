/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * evict.c - far memory: the resident budget, the evictor, and the eviction
 * race protocol.
 *
 * Page states (region.h): RESIDENT -> EVICTING (the evictor's claim, by CAS,
 * only from RESIDENT with no pin) -> EVICTED (bytes in the store only) ->
 * FILLING (a handler reads it back, pagein.c) -> RESIDENT. PS_INSTORE says
 * the store holds the page's exact bytes: set when a page is paged in with
 * UFFDIO_COPY_MODE_WP, cleared by the write-protect fault of the first write
 * *before* the protection is lifted. A page evicted with INSTORE still set
 * is dropped without write-back.
 *
 * The race with a program thread writing the page while it is evicted:
 *
 * With UFFDIO_MOVE (6.8+), under the region's read lock:
 *   1. CAS RESIDENT -> EVICTING. Faults on the page now go to tier 2 and
 *      sleep on the page's word; pins fail their fast path.
 *   2. UFFDIO_MOVE the page into a staging frame (registered on the same
 *      uffd, MADV_DONTFORK). Atomic in the kernel (page table lock): a write
 *      either landed before (it is in the frame) or faults afterwards (the
 *      PTE is gone: MISSING fault, tier 2, waits for step 5). A MOVE that
 *      fails is checked against the page tables, not its count: a kernel
 *      has reported -EEXIST and nothing moved for a run it moved whole
 *      (moved_anyway()).
 *   3. Read the word again. If INSTORE is still set, no write happened
 *      before the move: a write needs the WP fault that clears INSTORE
 *      first, and that fault's handler lifted the protection (ordering
 *      through the page table lock) before the write could land.
 *   4. Write the frame back unless clean. On a store error MOVE the frame
 *      back (the PTE is still empty: every fault on it waits in step 1's
 *      state) and settle RESIDENT: never lost, overshoot counted. If that
 *      move fails (EAGAIN: an event is unread, and waiting for it under
 *      the region lock could deadlock), rescue the bytes into runtime
 *      memory and settle EVICTED|RESCUED (far_put_back(), rescue.c).
 *   5. CAS EVICTING -> EVICTED|INSTORE, wake the page's sleepers: they read
 *      it back from the store. A REMOVE (the program's MADV_DONTNEED) that
 *      arrived meanwhile already made the word DISCARDED: the CAS fails and
 *      the frame is dropped, the page reads zeros as the program asked.
 *   6. Drop the region lock, then empty the staging frames for reuse:
 *      unregister them, MADV_DONTNEED, register again (a MADV_DONTNEED on
 *      the registered range would raise a REMOVE event, and until a handler
 *      read it every COPY in the process would fail EAGAIN).
 *
 * Without MOVE (6.1; FL_RT_EVICT_NO_MOVE forces it): write-protect, copy,
 * write back, zap:
 *   1. CAS RESIDENT -> EVICTING.
 *   2. UFFDIO_WRITEPROTECT the page (clean pages are still protected from
 *      their page-in), copy it to runtime memory, write it back.
 *   3. CAS EVICTING -> EVICTED|INSTORE, off the budget's count (before the
 *      zap, which may never come). A write between 2 and 3 raised a WP
 *      fault whose handler CASed EVICTING -> RESIDENT and lifted the
 *      protection: our CAS fails, the eviction is abandoned, nothing is lost
 *      (the copy in the store is simply not trusted: INSTORE stays clear).
 *      A write after 3 raises a WP fault that finds EVICTED: while the
 *      zapper holds @gate the handler parks it (retried after the next
 *      event) and the write waits; otherwise it takes the page back
 *      (below), and the zap skips it.
 *   4. Drop the region lock; take @gate (API writers take it before the
 *      index lock, so the range cannot be unregistered under us); announce
 *      the batch's span (a fault that refills a page of it, zapped by the
 *      program meanwhile, parks: far_zap_coming()); check the address
 *      still belongs to a region whose word says EVICTED; publish the zap
 *      range; MADV_DONTNEED. That blocks until a handler reads the REMOVE
 *      event; we wait until it is applied (events_wait_applied()): the
 *      handler recognises our range (far_own_remove), leaves the words
 *      EVICTED, and wakes the range: the parked writer faults MISSING and
 *      reads the page back from the store.
 *   The zap lands only on what that look saw EVICTED. A victim that a
 *   page-in's read-ahead held FILLING at the look stays mapped, and the
 *   install finds it present (EEXIST): mapped, write-protected, the store's
 *   bytes. Holding the gate, nobody can be about to zap an EVICTED page
 *   without looking again, so the install (trylock: a handler never waits
 *   for the gate) copies it once more and settles it RESIDENT (EEXIST: it
 *   is mapped and ours; success: a zap whose look came first landed since),
 *   or, failing the trylock, puts it back EVICTED, and the WP fault of a
 *   later write takes it back under the gate if mincore() says it is still
 *   mapped (far_wp_fault()). Only reads reach a page left so, and they see
 *   its bytes.
 *   The evictor reads managed memory in 2 (the copy). If the program zapped
 *   the page meanwhile, that read faults: a MISSING fault on an EVICTING
 *   page is served a write-protected zero page at once (what the program's
 *   zap asked for), so the evictor never waits on a handler that waits on it.
 *   Known window: the program's own munmap/mremap of the range (handled on
 *   handler threads, which cannot take @gate) racing step 4.
 *
 * Budget: resident is counted at install (+), eviction, the program's zaps
 * (REMOVE events) and unregisters (-); the count drifts only with zaps that
 * race a fill (DISCARD_PENDING) and with UNMAPs kept for a REMAP, and is
 * reset from the words at the end of a whole CLOCK sweep that evicted
 * nothing, with no index writer and the count unchanged meanwhile
 * (evictor_main() says why).
 * The evictor wakes above high and evicts down to low; a fault that finds
 * the count above the budget waits while the evictor brings it down
 * (far_throttle(), bounded; counted in far_throttled).
 *
 * Reference information (CLOCK): PS_REF is set when a page is read back
 * from the store, when the first write after that dirties it (WP fault) and
 * by fl_pin. The hand clears it (second chance); a page without it goes.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "far.h"
#include "core/rcu.h"
#include "core/probes.h"
#include "core/testhooks.h"

#define EXTENT_ALIGN ((uint64_t)1 << 30)

static long futex_wait_ms(_Atomic uint32_t *w, uint32_t val, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	return syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* ---- the core's hooks: regions, events, fork, the gate ---- */

int far_region_init(struct fl_runtime *rt, struct fl_region *r)
{
	struct fl_far *f = rt->far;
	uint64_t len = r->end - r->start, ext;

	if (!f)
		return 0;
	ext = (2 * len + EXTENT_ALIGN - 1) & ~(EXTENT_ALIGN - 1);
	if (f->store_next + ext < f->store_next)
		return -ENOSPC;
	r->store_off = f->store_next;
	r->store_extent = ext;
	f->store_next += ext;
	return 0;
}

/* @pages resident pages left the runtime's hands (zapped, unregistered) */
void far_note_gone(struct fl_runtime *rt, long pages)
{
	if (rt->far && pages)
		atomic_fetch_sub_explicit(&rt->far->resident, pages, memory_order_relaxed);
}

/*
 * Pages [a, b) of @r are gone for good (the region left the runtime, or an
 * UNMAP dropped them and no REMAP took them back): so are their bytes in the
 * store and their rescued copies (rescue.c), and they stop counting as
 * resident. Context: index writer; @r quiesced or detached.
 */
void far_range_gone(struct fl_runtime *rt, const struct fl_region *r, uintptr_t a, uintptr_t b)
{
	struct fl_far *f = rt->far;
	uint64_t off;
	long n;

	if (!f || !r->store_extent || b <= a)
		return;
	off = r->store_off + (a - r->start);
	store_discard(f->store, off, b - a);
	n = far_rescue_drop(&f->rescue, off, off + (b - a));
	/* and its resident pages: quiesced, none is in transit */
	for (uintptr_t p = a; p < b; p += rt->page_size)
		n += ps_state(atomic_load_explicit(&r->pstate[(p - r->start) >> rt->page_shift],
						   memory_order_relaxed)) == PS_RESIDENT;
	far_note_gone(rt, n);
}

/*
 * The program zapped rescued page @addr of @r (event_remove()), which holds
 * the page FILLING: its copy goes and stops counting as resident, and the
 * word becomes DISCARDED (sleepers woken; the caller wakes the range).
 * Race: the copy goes while we hold the page: once the word is DISCARDED a
 * fault can install the page anew and the evictor rescue it again, and a
 * drop after that would take the new copy.
 */
void far_rescued_gone(struct fl_runtime *rt, const struct fl_region *r, uintptr_t addr)
{
	struct fl_far *f = rt->far;
	_Atomic uint32_t *w = &r->pstate[(addr - r->start) >> rt->page_shift];
	uint64_t off = r->store_off + (addr - r->start);
	struct rescued *e = far_rescue_take(&f->rescue, off);
	uint32_t old = atomic_load_explicit(w, memory_order_relaxed), nw;

	if (e) {
		far_rescue_free(&f->rescue, e);
		atomic_fetch_sub_explicit(&f->resident, 1, memory_order_relaxed);
	}
	do
		nw = (old & ~(PS_STATE_MASK | PS_WAITERS | PS_RESCUED | PS_INSTORE |
			      PS_DISCARD_PENDING | PS_POISONED)) | PS_DISCARDED;
	while (!atomic_compare_exchange_weak_explicit(w, &old, nw, memory_order_release,
						      memory_order_relaxed));
	if (old & PS_WAITERS)
		page_wake(w);
}

void far_region_gone(struct fl_runtime *rt, struct fl_region *r)
{
	far_range_gone(rt, r, r->start, r->end);
}

void far_gate_lock(struct fl_runtime *rt)
{
	if (rt->far)
		pthread_mutex_lock(&rt->far->gate);
}

/*
 * Fork policy (runtime.c): the child's copy of a managed range holds only
 * what is resident, so before fork() the forking thread reads every evicted
 * page back (region_make_resident_locked). The evictor must not take pages
 * out meanwhile: it is paused between two batches, holding no page in
 * transit. The budget is overshot until the evictor catches up.
 */
void far_fork_prepare(struct fl_runtime *rt)
{
	if (rt->far)
		pthread_mutex_lock(&rt->far->batch_lock);
}

void far_fork_done(struct fl_runtime *rt)
{
	if (rt->far)
		pthread_mutex_unlock(&rt->far->batch_lock);
}

void far_gate_unlock(struct fl_runtime *rt)
{
	if (rt->far)
		pthread_mutex_unlock(&rt->far->gate);
}

/*
 * For a handler, which must never wait for the gate: the zapper holds it
 * while it waits for a handler to read its REMOVE event. Return: true if
 * taken (the caller lets it go with far_gate_unlock()).
 */
bool far_gate_trylock(struct fl_far *f)
{
	return pthread_mutex_trylock(&f->gate) == 0;
}

/* ---- the fault side ---- */

/* far_resident_peak = max(peak, @now); raised by handlers and the evictor */
static void note_peak(struct fl_far *f, long now)
{
	uint64_t peak = __atomic_load_n(&f->st->far_resident_peak, __ATOMIC_RELAXED);

	while (now > 0 && (uint64_t)now > peak &&
	       !__atomic_compare_exchange_n(&f->st->far_resident_peak, &peak, (uint64_t)now,
					    true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void far_note_installed(struct fl_runtime *rt, long pages)
{
	struct fl_far *f = rt->far;
	long now;

	if (!f)
		return;
	now = atomic_fetch_add_explicit(&f->resident, pages, memory_order_relaxed) + pages;
	/* at install, exact: the evictor's own sampling misses short overshoots */
	note_peak(f, now);
	if (now > f->high && now - pages <= f->high) {
		atomic_fetch_add_explicit(&f->kick, 1, memory_order_release);
		futex_wake_all(&f->kick);
	}
}

/*
 * far_zap_coming() - is a non-MOVE zap about to land on pages [lo, hi) of
 * the region whose words are @pstate and which starts at @start?
 * Context: a filler that has just claimed those pages (-> FILLING); it
 * un-claims them and parks the fault if so (see zap_victims()).
 */
bool far_zap_coming(const struct fl_runtime *rt, _Atomic uint32_t *pstate, uintptr_t start,
		    size_t lo, size_t hi)
{
	const struct fl_far *f = rt->far;

	if (!f || f->move)
		return false;
	/* our claims enter the single total order before the look (a seq_cst
	 * read-modify-write of each word: the evictor reads those words) */
	for (size_t p = lo; p < hi; p++)
		atomic_fetch_or_explicit(&pstate[p], 0, memory_order_seq_cst);
	return atomic_load_explicit(&f->zap_hi, memory_order_seq_cst) >
		       start + (lo << rt->page_shift) &&
	       atomic_load_explicit(&f->zap_lo, memory_order_seq_cst) <
		       start + (hi << rt->page_shift);
}

bool far_over_budget(const struct fl_runtime *rt)
{
	const struct fl_far *f = rt->far;

	return f && f->evicts &&
	       atomic_load_explicit(&f->resident, memory_order_relaxed) > f->budget;
}

/*
 * far_run_cap() - the most pages one fault installs under the budget.
 *
 * Every handler checks the count before it produces a run, none after, so
 * each may install one run past the budget before the throttle sees it: a
 * 4 MiB fault-around run per handler was a 25 % overshoot of a 32 MiB
 * budget. A run is at most budget / (16 x handlers) pages (the power of two
 * at or below): together they overshoot by a sixteenth at most. Fault-around
 * amortises its fault over the run; 1 MiB runs (32 MiB, two handlers) keep
 * nearly all of that. But never fewer than FAR_RUN_MIN pages: with budgets
 * of a few hundred pages, one-page runs made every fault over the budget
 * wait out the throttle on its own (a 32-page budget's write test ran 4x
 * longer), for an overshoot of a few pages less.
 */
#define FAR_RUN_MIN	16	/* pages */

size_t far_run_cap(const struct fl_runtime *rt)
{
	const struct fl_far *f = rt->far;
	unsigned long cap = (unsigned long)f->budget / (16ul * (rt->nhandlers ? rt->nhandlers : 1));

	if (!f->evicts)
		return SIZE_MAX;	/* nothing is held to the budget */
	if (cap < FAR_RUN_MIN)
		return FAR_RUN_MIN;
	return (size_t)1 << (63 - __builtin_clzl(cap));
}

/*
 * Context: a handler thread, may block (tier 2 or 3).
 *
 * Paces a fault-in stream to the evictor: waits as long as the count stays
 * over the budget AND keeps falling, so a program that installs 4 MiB
 * fault-around runs faster than the evictor writes them back is held near
 * the budget instead of running ahead of it (touch-pages 1 GiB under a
 * 256 MiB budget peaked at 560-721 MiB resident with a fixed 4 ms wait).
 *
 * Bounded: the evictor may itself wait for a handler to read an event
 * (zaps), and pinned or unevictable pages can keep the count above the
 * budget for good; so after FAR_THROTTLE_STALL_MS without the count falling
 * (or FAR_THROTTLE_MAX_MS in all) the fault goes ahead and the overshoot
 * shows in far_resident_peak. A millisecond without the count falling
 * counts towards the stall if a batch ended in it (a batch that freed
 * nothing: pages written meanwhile, pinned, in transit), if the evictor
 * waits on a handler (it may be this one), or if it is idle although it
 * looked at the count after our first kick (asleep with nothing to do, out
 * of victims). Not while a batch is under way, and not while the evictor
 * has not run since our kick: on a busy machine it may wait several
 * milliseconds for a CPU, at the start of a round as in the middle of one,
 * and a stall counted then let a fast writer run ahead of the budget (a
 * 128 MiB sequential fill under a 32 MiB budget reached twice the budget at
 * load 5 on 2 vCPUs; reserve-commit under 32 MiB, 152 % at load 6).
 *
 * The handler's own page-in reads keep completing meanwhile: each round
 * installs what has completed (far_aio_complete(), never blocks), so the
 * threads waiting for them are not held for the throttle's length, and a
 * read that never completes (a store held back) holds the throttle no
 * longer than its bound.
 */
#define FAR_THROTTLE_STALL_MS	4
#define FAR_THROTTLE_MAX_MS	1000

void far_throttle(struct fl_fault_ctx *c)
{
	struct fl_far *f = c->rt->far;
	long best = atomic_load_explicit(&f->resident, memory_order_relaxed);
	int stalled = 0;

	STAT_INC(c->st, far_throttled);
	FL_PROBE(throttle, best, f->budget);
	/* our first kick: the evictor has looked at the count since once
	 * kick_seen reaches it (wrapping compare) */
	uint32_t k0 = atomic_fetch_add_explicit(&f->kick, 1, memory_order_seq_cst) + 1;

	futex_wake_all(&f->kick);
	for (int ms = 0; ms < FAR_THROTTLE_MAX_MS && stalled < FAR_THROTTLE_STALL_MS &&
			 far_over_budget(c->rt); ms++) {
		uint32_t p = atomic_load_explicit(&f->progress, memory_order_acquire);
		uint32_t ev;
		long now;

		if (ms) {
			atomic_fetch_add_explicit(&f->kick, 1, memory_order_release);
			futex_wake_all(&f->kick);
		}
		futex_wait_ms(&f->progress, p, 1);
		far_aio_complete(c);
		now = atomic_load_explicit(&f->resident, memory_order_relaxed);
		ev = atomic_load_explicit(&f->evicting, memory_order_relaxed);
		if (now < best) {
			best = now;
			stalled = 0;
		} else if (atomic_load_explicit(&f->progress, memory_order_relaxed) != p ||
			   ev == FAR_ON_HANDLER ||
			   (ev == FAR_IDLE &&
			    (int32_t)(atomic_load_explicit(&f->kick_seen, memory_order_seq_cst) -
				      k0) >= 0)) {
			stalled++;	/* a batch that freed nothing, or no batch coming */
		}
	}
}

/* is the page at @pa mapped (a present PTE)? mincore(2): a uffd-wp marker
 * or an empty PTE is not; neither is a page swapped out and not cached */
static bool page_present(uintptr_t pa, size_t len)
{
	unsigned char vec = 0;

	return mincore((void *)pa, len, &vec) == 0 && (vec & 1);
}

/* settle an EVICTING word to @to (keeping pins and flags in @keep); wake sleepers */
static bool settle(_Atomic uint32_t *w, unsigned int to, uint32_t set, uint32_t clear)
{
	uint32_t old = atomic_load_explicit(w, memory_order_relaxed), nw;

	do {
		if (ps_state(old) != PS_EVICTING)
			return false;
		nw = ((old & ~(PS_STATE_MASK | PS_WAITERS | clear)) | to | set);
	} while (!atomic_compare_exchange_weak_explicit(w, &old, nw, memory_order_acq_rel,
							memory_order_relaxed));
	if (old & PS_WAITERS)
		page_wake(w);
	return true;
}

/*
 * A write-protect fault. Ours when the runtime has far memory: the first
 * write after a page-in (dirty tracking) or a write racing a non-MOVE
 * eviction. Context: handler thread. Return: true if handled here.
 */
bool far_wp_fault(struct fl_fault_ctx *c, struct fl_region *r, uintptr_t addr)
{
	struct fl_runtime *rt = c->rt;
	struct fl_far *f = rt->far;
	uintptr_t pa = page_down(rt, addr);
	const struct fl_uffd *u = &rt->uffd;
	_Atomic uint32_t *w = NULL;
	bool locked = false, stranded = false, section = !r;
	int ret;

	if (!f)
		return false;
	STAT_INC(c->st, far_wp_faults);
	/* in-thread, the caller found @r inside its own section */
	if (section) {
		fl_rcu_read_lock();
		r = index_lookup(fl_rcu_dereference(rt->index.cur), addr);
	}
	if (r) {
		u = region_uffd(rt, r);
		uint32_t v;

		w = &r->pstate[(pa - r->start) >> rt->page_shift];
		v = atomic_load_explicit(w, memory_order_acquire);
		for (;;) {
			unsigned int st = ps_state(v);

			if (st == PS_RESIDENT || (st == PS_EVICTING && !f->move)) {
				/*
				 * Lock the word (FILLING) across the un-protect:
				 * the evictor skips it and no page-in can
				 * re-install the page meanwhile, so the
				 * un-protect below hits the very mapping whose
				 * INSTORE we clear. (Without the lock: clear,
				 * MOVE out as dirty, read back as clean, then
				 * our un-protect on the new mapping: a write
				 * on a page marked clean, lost at its next
				 * eviction.) From EVICTING (no MOVE) this
				 * abandons the eviction: the evictor's CAS fails.
				 */
				if (atomic_compare_exchange_weak_explicit(w, &v,
						(v & ~(PS_STATE_MASK | PS_INSTORE)) | PS_FILLING | PS_REF,
						memory_order_acq_rel, memory_order_acquire)) {
					locked = true;
					break;
				}
				continue;
			}
			if (st == PS_EVICTED && !f->move && !(v & PS_RESCUED) &&
			    far_gate_trylock(f)) {
				/*
				 * EVICTED, and we hold the gate: no zap of it is
				 * under way, and none comes without a look at the
				 * word under the gate first (zap_victims()). Is it
				 * still mapped? Race: the WP fault was raised
				 * before a zap that has landed since (its REMOVE
				 * applied, the gate let go): the page is gone,
				 * and taking it back would set RESIDENT over an
				 * empty PTE (the next eviction copied zeros into
				 * the store: wrong bytes). The gate keeps the
				 * answer true while we hold it. Still mapped, it
				 * is stranded (a page-in's read-ahead held it
				 * FILLING when the zapper looked, then found it
				 * present and could not take it back:
				 * pagein.c far_install()) or about to be zapped
				 * by a batch not yet at its look: take it back as
				 * the RESIDENT case below, and the look skips it.
				 * Parking instead waited for a zap that may never
				 * come: the write faulted every millisecond, for
				 * good. Gone, the write comes again as a MISSING
				 * fault and reads the page back (parked below).
				 */
				bool mapped = page_present(pa, rt->page_size);
				bool got = mapped && atomic_compare_exchange_strong_explicit(w, &v,
						(v & ~(PS_STATE_MASK | PS_INSTORE)) | PS_FILLING | PS_REF,
						memory_order_acq_rel, memory_order_acquire);

				far_gate_unlock(rt);
				if (got) {
					locked = stranded = true;
					break;
				}
				if (mapped)
					continue;	/* the word changed: look again */
			}
			if (st == PS_EVICTED || st == PS_EVICTING || st == PS_FILLING) {
				/*
				 * In transit (evicted and not yet zapped without
				 * MOVE, the zapper holding the gate; being moved
				 * out; being read back): the write waits and
				 * comes again after the next event or 1 ms, as WP
				 * or as a MISSING fault. (In-thread: it runs again.)
				 */
				if (section)
					fl_rcu_read_unlock();
				park_fault(c, pa, rt->page_size);
				return true;
			}
			break;	/* absent or discarded: nothing of ours is mapped */
		}
	}
	ret = uffd_writeprotect(u, pa, rt->page_size, false, false);
	/* INSTORE stays clear: dirty. A stranded page was off the budget's
	 * count since its eviction: it counts again, unless the program
	 * zapped it meanwhile (DISCARDED) */
	if (locked && !page_finish(w, PS_RESIDENT) && stranded)
		far_note_installed(rt, 1);
	if (section)
		fl_rcu_read_unlock();
	if (ret == -EAGAIN)
		park_fault(c, pa, rt->page_size);
	else if (ret && !c->in_signal)
		uffd_wake(u, pa, rt->page_size);
	return true;
}

/*
 * A REMOVE event: is it the evictor's own zap (non-MOVE step 4)? Then the
 * words stay EVICTED (they would become DISCARDED for a program's zap).
 * Context: handler thread.
 */
bool far_own_remove(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end)
{
	struct fl_far *f = c->rt->far;

	if (!f || !atomic_load_explicit(&f->zap_pending, memory_order_acquire))
		return false;
	if (atomic_load_explicit(&f->zap_start, memory_order_relaxed) != start ||
	    atomic_load_explicit(&f->zap_end, memory_order_relaxed) != end)
		return false;
	atomic_store_explicit(&f->zap_pending, 0, memory_order_release);
	/* writers parked on the EVICTED page fault again, now MISSING */
	uffd_wake(&c->rt->uffd, start, end - start);
	return true;
}

/* ---- the evictor ---- */

struct victim {
	size_t pg;
	uintptr_t addr;
	bool taken;		/* MOVE done / copy made */
	bool dirty;
};

/*
 * Is a page mapped at @addr? From /proc/self/pagemap. Return: 1 (present),
 * 0 (no page: none, or only a uffd-wp marker), -1 (cannot tell: a swap or
 * migration entry, which a MOVE waits out, or no pagemap).
 */
static int page_mapped(const struct fl_far *f, uintptr_t addr, unsigned int shift)
{
	uint64_t e;

	if (f->pagemap_fd < 0 ||
	    pread(f->pagemap_fd, &e, sizeof(e), (off_t)((addr >> shift) * sizeof(e))) != sizeof(e))
		return -1;
	if (e >> 63)			/* PM_PRESENT */
		return 1;
	return (e >> 62) & 1 ? -1 : 0;	/* PM_SWAP: swap or migration entry */
}

/*
 * How many pages of [i, j) did a failed UFFDIO_MOVE really move, counting
 * from @i (where its reported count ended)? The kernel's count is not to be
 * trusted after an error: on this machine's 6.18 a MOVE of a run came back
 * -EEXIST with nothing counted while it had moved every page of the run
 * (seen: the victims' PTEs empty, their frames full). Believing the count
 * set the victims RESIDENT with empty PTEs and dropped their frames: pages
 * lost, their next fault a duplicate forever. A frame is written only by
 * this evictor's MOVE, emptied after every batch (step 6) and found empty
 * before each (staging_is_empty()): a full frame whose victim's PTE is
 * empty holds that victim's page.
 * Context: evictor, region read lock held.
 */
static size_t moved_anyway(struct fl_runtime *rt, const struct victim *v, const char *stg,
			   size_t i, size_t j)
{
	const struct fl_far *f = rt->far;
	size_t k = i;

	while (k < j && page_mapped(f, (uintptr_t)stg + k * rt->page_size, rt->page_shift) == 1 &&
	       page_mapped(f, v[k].addr, rt->page_shift) == 0)
		k++;
	return k - i;
}

static void evicted_one(struct fl_far *f, bool clean)
{
	atomic_fetch_sub_explicit(&f->resident, 1, memory_order_relaxed);
	STAT_INC(f->st, far_evictions);
	if (clean)
		STAT_INC(f->st, far_evict_clean);
}

/*
 * MOVE step 4's error path: the store refused the page in @frame; it must
 * not be lost. Move it back where it was (its PTE is still empty: every
 * fault on it waits in the EVICTING state). Once, never in a wait loop: the
 * move fails EAGAIN while any event of the process is unread, and the
 * handler that would read it may be asleep on a page of this very batch or
 * waiting for this region's readers, us among them (a deadlock that, with
 * a timeout, lost the page). When it fails, rescue the bytes into runtime
 * memory (rescue.c; the spare was reserved before the batch) and settle the
 * page EVICTED|RESCUED: its next fault installs them from there.
 * Context: evictor, region read lock held.
 */
static void far_put_back(struct fl_runtime *rt, struct fl_region *r, const struct victim *x,
			 char *frame)
{
	struct fl_far *f = rt->far;
	_Atomic uint32_t *w = &r->pstate[x->pg];
	uint64_t off = r->store_off + ((uint64_t)x->pg << rt->page_shift);
	struct rescued *e;
	size_t done;
	int ret;

	ret = FL_TEST_FAIL(FL_FAIL_PUT_BACK) ? -EAGAIN :
	      uffd_move(region_uffd(rt, r), x->addr, (uintptr_t)frame, rt->page_size, 0, &done);
	/* as in evict_move_locked(): a failed MOVE may have moved it all the same */
	if (ret && !FL_TEST_FAIL(FL_FAIL_PUT_BACK) &&
	    page_mapped(f, x->addr, rt->page_shift) == 1 &&
	    page_mapped(f, (uintptr_t)frame, rt->page_shift) == 0) {
		STAT_INC(f->st, far_move_miscounts);
		uffd_wake(region_uffd(rt, r), x->addr, rt->page_size);
		ret = 0;
	}
	if (!ret) {
		if (settle(w, PS_RESIDENT, 0, PS_INSTORE))
			return;
		/*
		 * The program zapped the page meanwhile (REMOVE made the word
		 * DISCARDED): it asked for zeros, and we just mapped the old
		 * bytes again. Take them back out; ENOENT: the zap got them
		 * first. (A read between the zap and this move sees the old
		 * bytes: the install race of doc/architecture.md, "Races the
		 * kernel leaves open".)
		 */
		uffd_move(&rt->uffd, (uintptr_t)frame, x->addr, rt->page_size,
			  UFFDIO_MOVE_MODE_DONTWAKE, &done);
		atomic_fetch_sub_explicit(&f->resident, 1, memory_order_relaxed);
		return;
	}
	/*
	 * Race: put the copy before the word says RESCUED. A REMOVE that
	 * turns the word DISCARDED right after must find the copy to drop it;
	 * one that came before makes the settle fail, and we drop it.
	 */
	e = far_rescue_put(&f->rescue, off, frame, rt->page_size);
	STAT_INC(f->st, far_rescues);
	if (!settle(w, PS_EVICTED, PS_RESCUED, PS_INSTORE | PS_REF) &&
	    far_rescue_remove(&f->rescue, e)) {
		far_rescue_free(&f->rescue, e);
		atomic_fetch_sub_explicit(&f->resident, 1, memory_order_relaxed);
	}
	/* still resident: it takes memory, the overshoot stays visible */
}

/* MOVE path, steps 2-5, region read lock held. Return: frames used. */
static size_t evict_move_locked(struct fl_runtime *rt, struct fl_region *r,
				struct victim *v, size_t n)
{
	struct fl_far *f = rt->far;
	struct store_req req[FAR_BATCH];
	unsigned int nreq = 0, map[FAR_BATCH];
	char *stg = f->staging;
	size_t done;

	for (size_t i = 0; i < n; ) {
		size_t j = i + 1, moved;
		int ret;

		/* one MOVE per run of adjacent victims (frames are adjacent too) */
		while (j < n && v[j].addr == v[j - 1].addr + rt->page_size)
			j++;
		ret = uffd_move(&rt->uffd, (uintptr_t)stg + i * rt->page_size, v[i].addr,
				(j - i) * rt->page_size, UFFDIO_MOVE_MODE_DONTWAKE, &done);
		if (!ret && FL_TEST_FAIL(FL_FAIL_MOVE_MISCOUNT)) {
			ret = -EEXIST;	/* what the kernel once said of a run it moved */
			done = 0;
		}
		moved = done >> rt->page_shift;
		if (ret) {
			/* the count can be short: what did the kernel really do? */
			size_t more = moved_anyway(rt, v, stg, i + moved, j);

			if (more) {
				STAT_ADD(f->st, far_move_miscounts, more);
				moved += more;
				if (i + moved == j)
					ret = 0;	/* the whole run moved */
			}
			/*
			 * The page that stopped the run, its frame empty: if its
			 * PTE is empty too the program zapped it, whatever the
			 * errno says (a run cut short by a hole comes back
			 * -EAGAIN with the pages before it counted).
			 */
			if (ret && ret != -ENOENT &&
			    page_mapped(f, v[i + moved].addr, rt->page_shift) == 0 &&
			    page_mapped(f, (uintptr_t)stg + (i + moved) * rt->page_size,
					rt->page_shift) == 0)
				ret = -ENOENT;
		}
		for (size_t k = i; k < i + moved; k++) {
			_Atomic uint32_t *w = &r->pstate[v[k].pg];

			v[k].taken = true;
			STAT_INC(f->st, far_evict_move);
			/* step 3: after the move, INSTORE tells whether a write came before */
			v[k].dirty = !(atomic_load_explicit(w, memory_order_acquire) & PS_INSTORE);
			if (v[k].dirty) {
				map[nreq] = (unsigned int)k;
				req[nreq++] = (struct store_req){
					.op = STORE_WRITE,
					.off = r->store_off + ((uint64_t)v[k].pg << rt->page_shift),
					.buf = stg + k * rt->page_size,
					.len = rt->page_size,
				};
			}
		}
		if (!ret) {
			i = j;
			continue;
		}
		/* the page at i + moved stopped the run */
		i += moved;
		if (ret == -ENOENT) {
			/* the program zapped it: it reads zeros now */
			settle(&r->pstate[v[i].pg], PS_DISCARDED, 0, PS_INSTORE | PS_REF);
			atomic_fetch_sub_explicit(&f->resident, 1, memory_order_relaxed);
		} else {
			/* EAGAIN (event pending), EBUSY (page shared after
			 * fork, pinned by the kernel): try again another time */
			STAT_INC(f->st, far_evict_aborts);
			settle(&r->pstate[v[i].pg], PS_RESIDENT, 0, 0);
		}
		i++;
	}
	FL_PROBE(evict, r->start, n, nreq);
	if (nreq) {
		FL_PROBE(writeback, nreq);
		store_io(f->store, req, nreq);
	}
	for (unsigned int k = 0; k < nreq; k++) {
		struct victim *x = &v[map[k]];

		if (!req[k].res) {
			STAT_INC(f->st, far_writebacks);
			continue;
		}
		/* step 4's error path */
		STAT_INC(f->st, far_store_errors);
		x->taken = false;
		far_put_back(rt, r, x, stg + map[k] * rt->page_size);
	}
	for (size_t i = 0; i < n; i++) {
		if (!v[i].taken)
			continue;
		/* step 5 */
		if (settle(&r->pstate[v[i].pg], PS_EVICTED, PS_INSTORE, PS_REF))
			evicted_one(f, !v[i].dirty);
		else
			atomic_fetch_sub_explicit(&f->resident, 1, memory_order_relaxed);
		/* a thread that faulted meanwhile waits in the kernel: wake it */
		uffd_wake(region_uffd(rt, r), v[i].addr, rt->page_size);
	}
	return n;
}

/*
 * Copy a page the program may be writing. The race is by design: a write
 * that lands during the copy raises a WP fault first, and its handler
 * abandons the eviction (step 3), so a torn copy is never trusted. TSan
 * cannot see write protection: this copy is not instrumented.
 */
__attribute__((no_sanitize("thread"), noinline))
static void copy_protected(void *dst, const void *src, size_t len)
{
	const volatile uint64_t *s = src;
	uint64_t *d = dst;

	for (size_t i = 0; i < len / sizeof(*d); i++)
		d[i] = s[i];
}

/* non-MOVE path, steps 2-3, region read lock held */
static void evict_copy_locked(struct fl_runtime *rt, struct fl_region *r,
			      struct victim *v, size_t n)
{
	struct fl_far *f = rt->far;
	struct store_req req[FAR_BATCH];
	unsigned int nreq = 0, map[FAR_BATCH];
	char *buf = f->buf;

	for (size_t i = 0; i < n; i++) {
		_Atomic uint32_t *w = &r->pstate[v[i].pg];
		uint32_t x = atomic_load_explicit(w, memory_order_acquire);

		v[i].dirty = !(x & PS_INSTORE);
		if (v[i].dirty && ps_state(x) != PS_EVICTING) {
			/*
			 * The program zapped it since we claimed it (DISCARDED):
			 * nothing to save, and a write-protect of its empty PTE
			 * would leave a uffd-wp marker (WP_UNPOPULATED). The
			 * settle below fails and counts it gone. A zap landing
			 * after this look still leaves one: fault.c install()
			 * copies over it.
			 */
			v[i].dirty = false;
			v[i].taken = true;
			continue;
		}
		if (v[i].dirty) {
			int ret;

			FL_TEST_PAUSE(FL_PAUSE_EVICT_PROTECT, v[i].addr);
			ret = uffd_writeprotect(region_uffd(rt, r), v[i].addr, rt->page_size, true, false);

			/* (the kernel refuses MODE_DONTWAKE with MODE_WP) */
			if (ret) {
				STAT_INC(f->st, far_evict_aborts);
				settle(w, PS_RESIDENT, 0, 0);
				continue;
			}
			/* protected: the copy is the page's last state unless a
			 * WP fault abandons the eviction (step 3's CAS fails) */
			copy_protected(buf + i * rt->page_size, (const void *)v[i].addr,
				       rt->page_size);
			map[nreq] = (unsigned int)i;
			req[nreq++] = (struct store_req){
				.op = STORE_WRITE,
				.off = r->store_off + ((uint64_t)v[i].pg << rt->page_shift),
				.buf = buf + i * rt->page_size,
				.len = rt->page_size,
			};
		}
		v[i].taken = true;
	}
	FL_PROBE(evict, r->start, n, nreq);
	if (nreq) {
		FL_PROBE(writeback, nreq);
		store_io(f->store, req, nreq);
	}
	for (unsigned int k = 0; k < nreq; k++) {
		struct victim *x = &v[map[k]];

		if (!req[k].res) {
			STAT_INC(f->st, far_writebacks);
			continue;
		}
		STAT_INC(f->st, far_store_errors);
		x->taken = false;
		settle(&r->pstate[x->pg], PS_RESIDENT, 0, PS_INSTORE);
		uffd_writeprotect(region_uffd(rt, r), x->addr, rt->page_size, false, false);
	}
	for (size_t i = 0; i < n; i++) {
		_Atomic uint32_t *w = &r->pstate[v[i].pg];

		if (!v[i].taken)
			continue;
		if (settle(w, PS_EVICTED, PS_INSTORE, PS_REF)) {
			/*
			 * Off the count now, not at the zap: a zap that never
			 * comes (the region went first, or a read-back found
			 * the page present and counted it again) would leave
			 * it counted for good, and far_range_gone() counts
			 * only RESIDENT words (seen: 128 pages stuck in the
			 * count after a discard, the evictor then taking the
			 * next region's pages).
			 */
			evicted_one(f, !v[i].dirty);
			continue;
		}
		v[i].taken = false;
		if (ps_state(atomic_load_explicit(w, memory_order_relaxed)) == PS_DISCARDED)
			far_note_gone(rt, 1);	/* the program zapped it */
		else
			STAT_INC(f->st, far_evict_aborts);	/* a write abandoned it */
	}
}

/* zap [addr, addr + len) and wait until a handler has seen its REMOVE; @gate held */
static void zap_range_gated(struct fl_runtime *rt, uintptr_t addr, size_t len)
{
	struct fl_far *f = rt->far;

	FL_TEST_PAUSE(FL_PAUSE_EVICT_ZAP, addr);
	atomic_store_explicit(&f->zap_start, addr, memory_order_relaxed);
	atomic_store_explicit(&f->zap_end, addr + len, memory_order_relaxed);
	atomic_store_explicit(&f->zap_pending, 1, memory_order_release);
	/*
	 * madvise() returns once a handler has read our REMOVE event (a
	 * range no longer registered makes none); that handler clears
	 * zap_pending when it applies it (far_own_remove()). Wait for that
	 * exactly, never for a while: an event of ours applied after we gave
	 * up would be taken for the program's zap, and the evicted pages
	 * would read zeros.
	 */
	atomic_store_explicit(&f->evicting, FAR_ON_HANDLER, memory_order_relaxed);
	if (madvise((void *)addr, len, MADV_DONTNEED) == 0)
		events_wait_applied(rt, addr, addr + len);
	atomic_store_explicit(&f->evicting, FAR_AT_WORK, memory_order_relaxed);
	atomic_store_explicit(&f->zap_pending, 0, memory_order_release);
}

/*
 * Non-MOVE step 4, no region lock held: zap the evicted victims, one
 * madvise (one REMOVE event) per run of adjacent pages.
 */
static void zap_victims(struct fl_runtime *rt, struct victim *v, size_t n)
{
	struct fl_far *f = rt->far;
	bool ok[FAR_BATCH];
	struct fl_region *r;

	FL_TEST_PAUSE(FL_PAUSE_EVICT_SETTLED, v[0].addr);
	pthread_mutex_lock(&f->gate);
	/*
	 * Race: a victim the program zapped itself meanwhile is DISCARDED,
	 * and a fault may refill it (zeros, then the program's writes): our
	 * zap must not land on that. Announce the span first, then look at
	 * the words; a filler claims, then looks at the span (all seq_cst:
	 * far_zap_coming()). Either our look sees its claim (not EVICTED: not
	 * zapped) or its look sees the span, and it waits for the zap.
	 */
	atomic_store_explicit(&f->zap_lo, v[0].addr, memory_order_seq_cst);
	atomic_store_explicit(&f->zap_hi, v[n - 1].addr + rt->page_size, memory_order_seq_cst);
	/* which victims still belong to a region that says EVICTED */
	fl_rcu_read_lock();
	for (size_t i = 0; i < n; i++) {
		ok[i] = false;
		if (!v[i].taken)
			continue;
		r = index_lookup(fl_rcu_dereference(rt->index.cur), v[i].addr);
		if (r)
			ok[i] = ps_state(atomic_load_explicit(
				&r->pstate[(v[i].addr - r->start) >> rt->page_shift],
				memory_order_seq_cst)) == PS_EVICTED;
	}
	fl_rcu_read_unlock();	/* madvise waits for a handler: never inside RCU */
	for (size_t i = 0; i < n; ) {
		size_t j = i + 1;

		if (!ok[i]) {
			i++;
			continue;
		}
		while (j < n && ok[j] && v[j].addr == v[j - 1].addr + rt->page_size)
			j++;
		zap_range_gated(rt, v[i].addr, (j - i) * rt->page_size);
		i = j;
	}
	atomic_store_explicit(&f->zap_hi, 0, memory_order_release);
	atomic_store_explicit(&f->zap_lo, 0, memory_order_release);
	pthread_mutex_unlock(&f->gate);
}

/* claim up to FAR_BATCH victims of @r from the hand; returns how many */
static size_t pick_locked(struct fl_runtime *rt, struct fl_region *r, struct victim *v,
			  size_t want)
{
	struct fl_far *f = rt->far;
	size_t npages = region_npages(r, rt->page_shift), n = 0;

	if (f->hand_gen != r->gen) {
		if (f->hand_page)
			f->sweep_partial = true;	/* replaced under the hand */
		f->hand_gen = r->gen;
		f->hand_page = 0;
	}
	while (f->hand_page < npages && n < want) {
		size_t pg = f->hand_page++;
		_Atomic uint32_t *w = &r->pstate[pg];
		uint32_t x = atomic_load_explicit(w, memory_order_relaxed);

		if (ps_state(x) == PS_FILLING || ps_state(x) == PS_EVICTING) {
			/*
			 * In transit counts as resident for the recount: an
			 * install adds its pages to the count before it turns
			 * their words RESIDENT, and a sweep that saw only
			 * FILLING words must not reset the count to zero.
			 */
			f->sweep_resident++;
			continue;
		}
		if (ps_state(x) == PS_EVICTED && (x & PS_RESCUED)) {
			f->sweep_resident++;	/* in runtime memory (rescue.c) */
			continue;
		}
		if (ps_state(x) != PS_RESIDENT)
			continue;
		f->sweep_resident++;
		if (x >> PS_PIN_SHIFT)
			continue;
		if (x & PS_REF) {
			/* second chance */
			atomic_fetch_and_explicit(w, ~PS_REF, memory_order_relaxed);
			continue;
		}
		if (!atomic_compare_exchange_strong_explicit(w, &x,
				(x & ~PS_STATE_MASK) | PS_EVICTING,
				memory_order_acquire, memory_order_relaxed))
			continue;
		v[n].pg = pg;
		v[n].addr = r->start + (pg << rt->page_shift);
		v[n].taken = v[n].dirty = false;
		n++;
	}
	return n;
}

/*
 * Step 6: the first @n frames back to empty for the next batch. Unregistered
 * for the madvise: on a registered range it would raise a REMOVE event, and
 * until a handler reads it every COPY in the process fails EAGAIN
 * (mmap_changing) and its fault is parked.
 */
static void staging_empty(struct fl_runtime *rt, size_t n)
{
	struct fl_far *f = rt->far;
	size_t len = FAR_BATCH * rt->page_size;

	if (uffd_unregister(&rt->uffd, (uintptr_t)f->staging, len) == 0) {
		madvise(f->staging, n * rt->page_size, MADV_DONTNEED);
		if (uffd_register(&rt->uffd, (uintptr_t)f->staging, len,
				  UFFDIO_REGISTER_MODE_MISSING, NULL))
			f->move = false;	/* cannot happen; fall back */
	} else {
		madvise(f->staging, n * rt->page_size, MADV_DONTNEED);
	}
}

/*
 * Are the frames empty, as every batch must find them? moved_anyway() takes
 * a full frame for its victim's page: a frame left full would pass its old
 * bytes off as a victim's. One pagemap read. Return: true also when it
 * cannot tell (no pagemap: moved_anyway() then finds nothing either).
 */
static bool staging_is_empty(const struct fl_runtime *rt)
{
	const struct fl_far *f = rt->far;
	uint64_t e[FAR_BATCH];
	off_t at = (off_t)(((uintptr_t)f->staging >> rt->page_shift) * sizeof(e[0]));

	if (f->pagemap_fd < 0 || pread(f->pagemap_fd, e, sizeof(e), at) != (ssize_t)sizeof(e))
		return true;
	for (size_t k = 0; k < FAR_BATCH; k++)
		if (e[k] >> 63)
			return false;
	return true;
}

/* one batch from the hand's region. Return: -1 at the end of a sweep */
static int evict_batch(struct fl_runtime *rt, size_t want)
{
	struct fl_far *f = rt->far;
	struct victim v[FAR_BATCH];
	struct fl_index *x;
	struct fl_region *r;
	size_t n = 0, npages;
	uint64_t gen;
	bool stale;

	if (f->move && !staging_is_empty(rt)) {
		/* never seen; but the evictor must not go on from it */
		staging_empty(rt, FAR_BATCH);
		if (!staging_is_empty(rt)) {
			f->sweep_partial = true;
			return -1;	/* end the sweep, back off */
		}
	}
	if (f->move) {
		/* one spare rescue entry per victim, before any is claimed:
		 * the error path (far_put_back) must never allocate */
		unsigned int spares = far_rescue_reserve(&f->rescue, rt->page_size, FAR_BATCH);

		if (!spares) {
			f->sweep_partial = true;
			return -1;	/* no memory: end the sweep, back off */
		}
		if (want > spares)
			want = spares;
	}
	fl_rcu_read_lock();
	x = fl_rcu_dereference(rt->index.cur);
	if (!x->n) {
		fl_rcu_read_unlock();
		return -1;
	}
	if (f->hand_idx >= x->n) {
		f->hand_idx = 0;
		fl_rcu_read_unlock();
		return -1;
	}
	r = x->e[f->hand_idx].r;
	gen = r->gen;
	if (!region_start_read_checked(r, r->start, gen, &stale)) {
		fl_rcu_read_unlock();
		f->sweep_partial = true;	/* its pages go uncounted */
		f->hand_idx++;		/* being changed by a writer: skip it */
		f->hand_gen = 0;
		f->hand_page = 0;
		return 0;
	}
	fl_rcu_read_unlock();

	n = pick_locked(rt, r, v, want < FAR_BATCH ? want : FAR_BATCH);
	npages = region_npages(r, rt->page_shift);
	if (n && f->move)
		evict_move_locked(rt, r, v, n);
	else if (n)
		evict_copy_locked(rt, r, v, n);
	if (f->hand_page >= npages) {
		/* next region, from its first page */
		f->hand_idx++;
		f->hand_gen = 0;
		f->hand_page = 0;
	}
	region_end_read(r);

	if (n && f->move) {
		staging_empty(rt, n);	/* step 6 */
	} else if (n) {
		zap_victims(rt, v, n);
	}
	if (n)
		f->sweep_evicted = true;
	atomic_fetch_add_explicit(&f->progress, 1, memory_order_release);
	futex_wake_all(&f->progress);
	return (int)n;
}

static void *evictor_main(void *arg)
{
	struct fl_runtime *rt = arg;
	struct fl_far *f = rt->far;

	fl_rcu_register_thread();
	while (!atomic_load_explicit(&f->stop, memory_order_acquire)) {
		uint32_t k = atomic_load_explicit(&f->kick, memory_order_acquire);
		long res;
		int sweeps = 0;

		/* before the count: a throttled fault that sees this knows
		 * we looked at the count after its kick (far_throttle()) */
		atomic_store_explicit(&f->kick_seen, k, memory_order_seq_cst);
		res = atomic_load_explicit(&f->resident, memory_order_seq_cst);

		/* gauges, in the evictor's own counter block */
		__atomic_store_n(&f->st->far_resident_pages, (uint64_t)(res > 0 ? res : 0),
				 __ATOMIC_RELAXED);
		note_peak(f, res);
		if (res <= f->high) {
			futex_wait_ms(&f->kick, k, 20);
			continue;
		}
		atomic_store_explicit(&f->evicting, FAR_AT_WORK, memory_order_relaxed);
		while (!atomic_load_explicit(&f->stop, memory_order_relaxed) &&
		       (res = atomic_load_explicit(&f->resident, memory_order_relaxed)) > f->low) {
			int got;

			pthread_mutex_lock(&f->batch_lock);
			got = evict_batch(rt, (size_t)(res - f->low));
			pthread_mutex_unlock(&f->batch_lock);

			if (got >= 0)
				continue;
			/* end of a sweep */
			STAT_INC(f->st, far_sweeps);
			if (!f->sweep_evicted && !f->sweep_partial &&
			    !index_seq_retry(&rt->index, f->sweep_seq)) {
				/*
				 * Nothing evictable found: recount from the
				 * words, but only if the hand saw every region
				 * whole, no index writer came by, and the count
				 * did not move during the sweep. Pages
				 * installed behind the hand were counted at
				 * install and never seen by it; a region
				 * skipped (a writer held it) or unpublished (on
				 * its way out: far_range_gone() takes its
				 * rescued pages off the count) was not seen at
				 * all. A plain store lost them and left the
				 * budget unenforced (seen under TSan: the count
				 * at -512 with 512 pages resident, the evictor
				 * asleep). Such a sweep leaves it to the next.
				 */
				long was = f->sweep_start;

				atomic_compare_exchange_strong_explicit(&f->resident, &was,
						f->sweep_resident, memory_order_relaxed,
						memory_order_relaxed);
			}
			f->sweep_resident = 0;
			f->sweep_evicted = false;
			f->sweep_partial = false;
			f->sweep_seq = index_seq_begin(&rt->index);
			f->sweep_start = atomic_load_explicit(&f->resident, memory_order_relaxed);
			if (++sweeps >= 3)
				break;	/* pins, errors, pages in transit */
		}
		atomic_store_explicit(&f->evicting, FAR_IDLE, memory_order_relaxed);
		if (atomic_load_explicit(&f->resident, memory_order_relaxed) > f->budget) {
			STAT_INC(f->st, far_budget_overshoot);
			usleep(1000);
		}
	}
	fl_rcu_unregister_thread();
	return NULL;
}

/* ---- start / stop ---- */

/* the evictor's counters, and the rescued pages' gauge */
static void far_stats_add(const struct fl_runtime *rt, struct fl_counters *sum)
{
	stats_add_block(sum, rt->far->st);
	sum->far_rescued_pages = (uint64_t)atomic_load_explicit(&rt->far->rescue.count,
								memory_order_relaxed);
}

static void far_stats_reset(struct fl_runtime *rt)
{
	stats_zero_block(rt->far->st);
}

static const char *far_evict_mode(const struct fl_runtime *rt)
{
	return rt->far->move ? "UFFDIO_MOVE into staging frames" :
	       rt->far->wp ? "write-protect, copy, write back, zap (no MOVE, or FL_RT_EVICT_NO_MOVE)" :
	       "off: neither MOVE nor WP, far memory stays resident";
}

int far_start(struct fl_runtime *rt, const struct fl_runtime_opts *o)
{
	struct fl_far *f;
	size_t len = FAR_BATCH * rt->page_size;
	int ret;

	if (!o->store)
		return 0;
	f = zalloc_aligned(_Alignof(struct fl_far), sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->pagemap_fd = -1;
	f->st = zalloc_aligned(_Alignof(struct fl_counters), sizeof(*f->st));
	if (!f->st) {
		free(f);
		return -ENOMEM;
	}
	if (far_rescue_init(&f->rescue)) {
		free(f->st);
		free(f);
		return -ENOMEM;
	}
	pthread_mutex_init(&f->gate, NULL);
	pthread_mutex_init(&f->batch_lock, NULL);
	f->store = o->store;
	f->budget = (long)(o->budget >> rt->page_shift);
	f->high = f->budget * (o->budget_high_pct ? o->budget_high_pct : 100) / 100;
	f->low = f->budget * (o->budget_low_pct ? o->budget_low_pct : 90) / 100;
	f->wp = uffd_has(&rt->uffd, UFFD_FEATURE_PAGEFAULT_FLAG_WP);
	f->move = uffd_has(&rt->uffd, UFFD_FEATURE_MOVE) && !(o->flags & FL_RT_EVICT_NO_MOVE);
	rt->far = f;
	/* the core's hooks: before the handlers start (core/hooks.h) */
	rt->hooks.register_modes = f->wp ? UFFDIO_REGISTER_MODE_WP : 0;
	rt->hooks.stop = far_stop;
	rt->hooks.release = far_free;
	rt->hooks.fork_prepare = far_fork_prepare;
	rt->hooks.fork_done = far_fork_done;
	rt->hooks.gate_lock = far_gate_lock;
	rt->hooks.gate_unlock = far_gate_unlock;
	rt->hooks.region_init = far_region_init;
	rt->hooks.region_gone = far_region_gone;
	rt->hooks.range_gone = far_range_gone;
	rt->hooks.own_remove = far_own_remove;
	rt->hooks.rescued_gone = far_rescued_gone;
	rt->hooks.gone = far_note_gone;
	rt->hooks.stats_add = far_stats_add;
	rt->hooks.stats_reset = far_stats_reset;
	rt->hooks.evict_mode = far_evict_mode;
	rt->hooks.page_in = far_resolve;
	rt->hooks.installed = far_note_installed;
	rt->hooks.over_budget = far_over_budget;
	rt->hooks.throttle = far_throttle;
	rt->hooks.run_cap = far_run_cap;
	rt->hooks.zap_coming = far_zap_coming;
	rt->hooks.dirty_fault = far_wp_fault;
	if (store_has_async(f->store)) {
		rt->hooks.aio_init = far_aio_init;
		rt->hooks.aio_fini = far_aio_fini;
		rt->hooks.aio_complete = far_aio_complete;
		rt->hooks.aio_drain = far_aio_drain;
		rt->hooks.aio_idle = far_aio_idle;
	}

	/* before anything that can fail: far_free() closes it */
	f->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	f->staging = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	f->buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->staging == MAP_FAILED || f->buf == MAP_FAILED) {
		if (f->staging == MAP_FAILED)
			f->staging = NULL;
		if (f->buf == MAP_FAILED)
			f->buf = NULL;
		return -ENOMEM;
	}
	madvise(f->staging, len, MADV_DONTFORK);
	madvise(f->buf, len, MADV_DONTFORK);
	if (f->move) {
		/* MOVE's destination must be registered on the same uffd */
		ret = uffd_register(&rt->uffd, (uintptr_t)f->staging, len,
				    UFFDIO_REGISTER_MODE_MISSING, NULL);
		if (ret)
			f->move = false;
	}
	/*
	 * In the faulting thread (core/inthread.c): the page-in reads the store
	 * in a signal handler, and only MOVE eviction never waits on a fault
	 * (the non-MOVE zapper waits for its own REMOVE, and protects pages a
	 * fault may be writing). Otherwise handler threads, or -EOPNOTSUPP.
	 */
	if (rt->tuffd.fd >= 0 && (!store_has_signal_read(f->store) || !f->move)) {
		ret = inthread_refuse(rt);
		if (ret)
			return ret;
	}
	if (!f->move && !f->wp)
		return 0;	/* no safe way to evict: far memory stays resident */
	f->evicts = true;	/* before any region exists: read by handlers */
	if (pthread_create(&f->thread, NULL, evictor_main, rt))
		return -EAGAIN;
	f->started = true;
	return 0;
}

void far_stop(struct fl_runtime *rt)
{
	struct fl_far *f = rt->far;

	if (!f)
		return;
	if (f->started) {
		atomic_store_explicit(&f->stop, true, memory_order_release);
		atomic_fetch_add_explicit(&f->kick, 1, memory_order_release);
		futex_wake_all(&f->kick);
		pthread_join(f->thread, NULL);
		f->started = false;
	}
}

void far_free(struct fl_runtime *rt)
{
	struct fl_far *f = rt->far;
	size_t len = FAR_BATCH * rt->page_size;

	if (!f)
		return;
	/* in a fork child these MADV_DONTFORK areas do not exist: whatever
	 * the child mapped there since is not ours to unmap */
	if (f->staging && !rt->forked_child) {
		/* unregister before munmap: an UNMAP event with no handler
		 * left would never be read */
		if (f->move)
			uffd_unregister(&rt->uffd, (uintptr_t)f->staging, len);
		munmap(f->staging, len);
	}
	if (f->buf && !rt->forked_child)
		munmap(f->buf, len);
	if (f->pagemap_fd >= 0)
		close(f->pagemap_fd);
	far_rescue_fini(&f->rescue);
	pthread_mutex_destroy(&f->gate);
	pthread_mutex_destroy(&f->batch_lock);
	free(f->st);
	free(f);
	rt->far = NULL;
}
