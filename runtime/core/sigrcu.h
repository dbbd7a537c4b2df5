/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sigrcu.h - RCU readers that may run inside a signal handler.
 *
 * The in-thread fault path (inthread.c) reads the region index from the
 * SIGBUS handler of whatever thread faulted: a thread the runtime did not
 * create, interrupted anywhere, perhaps inside liburcu or malloc. liburcu's
 * readers must be registered first, and registering takes a mutex: not
 * from a signal handler. These readers need no registration: each thread
 * claims a slot of a fixed table with one compare-and-swap the first time
 * it faults (its tid as owner; a slot whose owner has exited is taken over
 * when the table is full) and keeps it in an initial-exec thread-local,
 * which a signal handler may read.
 *
 * Read side: the slot's nesting count goes up, then a full fence, then the
 * index is read; on the way out, a release store. Writers
 * (index_synchronize_locked) run sigrcu_synchronize() after liburcu's own
 * grace period: a fence, then for every slot in a section, a wait until it
 * leaves (its count back to 0, or its exit count moved). That is Dekker's
 * pattern: a reader that entered after the writer's fence sees the new
 * index; one that entered before is waited for.
 *
 * Nesting: a signal that interrupts the handler may fault again (a handler
 * of the program's that touches managed memory). Signals nest strictly, so
 * the inner section restores the count it found before the outer one goes
 * on: plain loads and stores of a thread's own slot suffice.
 */
#ifndef FL_SIGRCU_H
#define FL_SIGRCU_H

#include <stdatomic.h>
#include <stdint.h>

#define FL_SIGRCU_SLOTS 4096

struct fl_sigrcu_slot {
	_Alignas(64) _Atomic uint32_t owner;	/* tid; 0: free */
	_Atomic uint32_t nest;			/* > 0: inside a section */
	_Atomic uint64_t exits;			/* outermost sections left */
};

/*
 * sigrcu_enter() - enter a read-side section; returns this thread's slot
 * number, or -1 when every slot is owned by a live thread (the caller
 * cannot read the index: it lets the access run again).
 * Context: any, async-signal-safe.
 */
int sigrcu_enter(void);
/* sigrcu_exit() - leave the section sigrcu_enter() returned @slot for. */
void sigrcu_exit(int slot);
/*
 * sigrcu_synchronize() - wait until every section that began before the
 * call has ended. Context: not inside a section. Spins politely: sections
 * are short (one page install) and never block.
 */
void sigrcu_synchronize(void);
/* sigrcu_used() - slots [0, n) were ever claimed (0: writers skip the wait) */
unsigned int sigrcu_used(void);
/* sigrcu_fork_child() - in the child of fork(): every other thread is gone */
void sigrcu_fork_child(void);

#endif /* FL_SIGRCU_H */
