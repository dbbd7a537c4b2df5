/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rcu.h - the liburcu flavor faultline uses, in one place.
 *
 * mb: readers are only the runtime's own threads (handlers), registered
 * when they start; the read side updates a thread-local counter with a full
 * fence on each side: no atomic read-modify-write, no shared cache line
 * written, ~2 fences per fault (~60 ns against ~8 us of fault).
 *
 * Why not memb, whose read side has no fence: its synchronize_rcu() sends a
 * membarrier(2) IPI to every CPU running one of our threads, i.e. to the
 * faulting CPU, for every writer's grace period. Measured with
 * faultline-bench churn (10000 register/unregister/resize ops/s on the
 * faulting region's neighbours, 2 vCPUs): memb kept 0.72-0.77x of the calm
 * fault rate, mb 0.97-0.99x (bare uffd loop under the same churn: 0.88x).
 */
#ifndef FL_RCU_H
#define FL_RCU_H

/*
 * _LGPL_SOURCE inlines the read side (rcu_read_lock/unlock) into our code,
 * except under TSan. Inlined, liburcu's own words become accesses that TSan
 * checks as ours: rcu_read_unlock reads urcu_mb_gp.futex and, if a writer
 * sleeps in synchronize_rcu (futex == -1), stores 0 and wakes it. TSan takes
 * these volatile accesses for plain ones and never sees the writer's -1 (in
 * the library), so two readers leaving their sections together race on the
 * word, in frames of far_wp_fault, evict_batch, tier1... In liburcu they are
 * relaxed accesses its fences order: the reader stores its counter, fences,
 * reads futex; the writer stores -1, fences, reads the counters. Either the
 * writer sees the reader gone or the reader sees -1 and wakes it; two
 * readers both storing 0 and waking it is harmless.
 *
 * Out of line, the read side runs in the uninstrumented library and TSan
 * sees none of liburcu's words, while every access of ours inside a section
 * is still checked. (Not __tsan_acquire/__tsan_release on &urcu_mb_gp around
 * the inlined code: that would order every reader's past after every later
 * reader's future and hide races between our own threads. Not a suppression
 * by function name: it relies on inlined frames and covers the whole
 * function.) Cost, TSan builds only: none, the call is cheaper than the
 * instrumented inline code (~120 against ~170 ns per lock+unlock).
 */
#if defined(__SANITIZE_THREAD__)
#undef _LGPL_SOURCE
#elif !defined(_LGPL_SOURCE)
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-mb.h>
#include <urcu/pointer.h>

/*
 * Publication and subscription: a release store and a consume load, as
 * rcu_assign_pointer/rcu_dereference, but through C11 atomics so that TSan
 * sees them for what they are.
 */
#define fl_rcu_assign_pointer(p, v)	__atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
#define fl_rcu_dereference(p)		__atomic_load_n(&(p), __ATOMIC_CONSUME)

#define fl_rcu_read_lock()		urcu_mb_read_lock()

/*
 * Register and unregister a reader thread (rcu.c keeps their readers for
 * fork); the fork hooks are called from the runtime's atfork handlers.
 */
void fl_rcu_register_thread(void);
void fl_rcu_unregister_thread(void);
void fl_rcu_fork_prepare(void);
void fl_rcu_fork_parent(void);
void fl_rcu_fork_child(void);

#if defined(__SANITIZE_THREAD__)
/*
 * liburcu is not instrumented, so TSan cannot see that a grace period
 * orders every read-side section before the code after synchronize_rcu().
 * Tell it: each reader releases a token as it leaves its section, and the
 * writer acquires it once the grace period is over. Readers never acquire
 * it, so it orders no reader after another.
 */
#include <sanitizer/tsan_interface.h>
extern char fl_rcu_tsan_token;
#define fl_rcu_read_unlock() do {					\
	__tsan_release(&fl_rcu_tsan_token);				\
	urcu_mb_read_unlock();					\
} while (0)
#define fl_synchronize_rcu() do {					\
	urcu_mb_synchronize_rcu();					\
	__tsan_acquire(&fl_rcu_tsan_token);				\
} while (0)
#else
#define fl_rcu_read_unlock()		urcu_mb_read_unlock()
#define fl_synchronize_rcu()		urcu_mb_synchronize_rcu()
#endif

#endif /* FL_RCU_H */
