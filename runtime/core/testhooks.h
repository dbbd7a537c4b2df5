/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * testhooks.h - pause points and failure injection for the interleaving and
 * fault-injection tests. They exist only in the library variant built with
 * -DFL_TEST_HOOKS (runtime/meson.build: faultline-hooks*), which only those
 * tests link; in every other build the macros compile to nothing.
 *
 * FL_TEST_PAUSE(point, addr): calls the test's hook, if one is installed,
 *	at a point where ordering matters; the hook may block to force an
 *	interleaving. Points (each names the race it exposes):
 *   FL_PAUSE_SPF_LOOKED_UP	tier1(): region found and snapshot taken,
 *				inside the RCU read section, before resolve()
 *				installs anything (races the writer's grace period)
 *   FL_PAUSE_REGION_RECHECK	region_start_read_checked(): reference taken,
 *				generation not yet re-checked (races the
 *				writer's region_write_lock)
 *   FL_PAUSE_WRITER_PUBLISHED	victims_quiesce_locked(): index published
 *				without the victims, before region_write_lock
 *   FL_PAUSE_WRITER_SYNCED	victims_quiesce_locked(): victims write-locked
 *				and a grace period passed
 *   FL_PAUSE_EVENT_TAKEN	handler_main(): read(2) returned an event
 *				(addr: a REMOVE's or UNMAP's start, a REMAP's
 *				destination), not yet counted in events_active
 *				(races a fault in no region that another handler
 *				reads: window_busy()); a hook that stands for a
 *				preempted handler must spin, not sleep
 *   FL_PAUSE_EVENT_READ	handler_main(): the same event counted, its
 *				range not yet announced (races the faults other
 *				handlers read after it: events_read_applied())
 *   FL_PAUSE_EVICT_PROTECT	far/evict.c evict_copy_locked(): a victim
 *				(addr) is EVICTING and about to be
 *				write-protected (races the program's zap of it)
 *   FL_PAUSE_EVICT_SETTLED	far/evict.c zap_victims(): the batch (addr: its
 *				first victim) is EVICTED and still mapped, the
 *				gate not yet taken, the words not yet looked at
 *				(races a page-in's read-ahead claiming a victim)
 *   FL_PAUSE_EVICT_ZAP		far/evict.c zap_range_gated(): gate held, words
 *				looked at, the run at addr about to be zapped
 *   FL_PAUSE_PAGEIN_CLAIMED	far/pagein.c far_resolve(): the run around the
 *				fault (addr) claimed FILLING, not yet read
 *				(holds read-ahead pages across the zapper's look)
 * FL_TEST_FAIL(site): true when the test scheduled a failure for this call
 *	of @site (the n-th call from now, or all of them: fl_test_fail_at).
 */
#ifndef FL_TESTHOOKS_H
#define FL_TESTHOOKS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum fl_test_point {
	FL_PAUSE_SPF_LOOKED_UP,
	FL_PAUSE_REGION_RECHECK,
	FL_PAUSE_WRITER_PUBLISHED,
	FL_PAUSE_WRITER_SYNCED,
	FL_PAUSE_EVENT_TAKEN,
	FL_PAUSE_EVENT_READ,
	FL_PAUSE_EVICT_PROTECT,
	FL_PAUSE_EVICT_SETTLED,
	FL_PAUSE_EVICT_ZAP,
	FL_PAUSE_PAGEIN_CLAIMED,
	FL_PAUSE_NR
};

enum fl_test_site {
	FL_FAIL_REGION_ALLOC,		/* region_alloc() returns NULL */
	FL_FAIL_INDEX_PUBLISH,		/* index_publish_locked() returns -ENOMEM */
	FL_FAIL_PUT_BACK,		/* evict.c far_put_back(): the MOVE back
					 * fails EAGAIN (an event pending) */
	FL_FAIL_MOVE_MISCOUNT,		/* evict.c evict_move_locked(): a MOVE
					 * that moved its whole run reports
					 * -EEXIST and nothing moved */
	FL_FAIL_NR
};

#ifdef FL_TEST_HOOKS
typedef void (*fl_test_pause_fn)(enum fl_test_point point, uintptr_t addr);

/* the test's hook; NULL: no pauses. Called from handler and writer threads. */
extern _Atomic(fl_test_pause_fn) fl_test_pause_hook;
/* n > 0: the n-th next call at that site fails (1: the next one);
 * n < 0: every call fails until it is set to 0 */
extern _Atomic int fl_test_fail_at[FL_FAIL_NR];

/* numa.c: pretend there are this many nodes (0: the real count), every
 * handler on node fl_test_numa_home, and a faulting thread's node is what
 * fl_test_numa_tid_node says (NULL: read from /proc). Set before
 * fl_runtime_create; lets a one-node machine run the remote-fill path. */
typedef int (*fl_test_tid_node_fn)(uint32_t tid);
extern _Atomic int fl_test_numa_nodes;
extern _Atomic int fl_test_numa_home;
extern _Atomic(fl_test_tid_node_fn) fl_test_numa_tid_node;

void fl_test_pause(enum fl_test_point point, uintptr_t addr);
bool fl_test_fail(enum fl_test_site site);

#define FL_TEST_PAUSE(point, addr)	fl_test_pause((point), (uintptr_t)(addr))
#define FL_TEST_FAIL(site)		fl_test_fail(site)
#else
#define FL_TEST_PAUSE(point, addr)	do { } while (0)
#define FL_TEST_FAIL(site)		false
#endif

#endif /* FL_TESTHOOKS_H */
