/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rcu.h - the liburcu flavor faultline uses, in one place.
 *
 * memb: readers are only the runtime's own threads (handlers, the parked
 * fault retrier), registered when they start; the read side is a
 * thread-local counter update, inlined (_LGPL_SOURCE): no atomic
 * read-modify-write and no fence. synchronize_rcu() uses membarrier(2).
 */
#ifndef FL_RCU_H
#define FL_RCU_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-memb.h>
#include <urcu/pointer.h>

#define fl_rcu_read_lock()		urcu_memb_read_lock()
#define fl_rcu_read_unlock()		urcu_memb_read_unlock()
#define fl_rcu_register_thread()	urcu_memb_register_thread()
#define fl_rcu_unregister_thread()	urcu_memb_unregister_thread()
#define fl_synchronize_rcu()		urcu_memb_synchronize_rcu()

#endif /* FL_RCU_H */
