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

#ifndef _LGPL_SOURCE
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
#define fl_rcu_register_thread()	urcu_mb_register_thread()
#define fl_rcu_unregister_thread()	urcu_mb_unregister_thread()

#if defined(__SANITIZE_THREAD__)
/*
 * liburcu is not instrumented, so TSan cannot see that a grace period
 * orders every read-side section before the code after synchronize_rcu().
 * Tell it: each reader releases a token as it leaves its section, and the
 * writer acquires it once the grace period is over.
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
