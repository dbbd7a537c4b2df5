/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * numa.c - NUMA placement of fault fills. See numa-place.h.
 *
 * Where a filled page lands. UFFDIO_COPY allocates the destination page in
 * the handler's context: the range's own policy (the program's mbind) wins,
 * else the handler thread's policy, else the node of the CPU it runs on,
 * which for a pinned handler is fixed. So without help every page lands on
 * the node of whichever handler read the fault first. With THREAD_ID we
 * know the faulting thread; its node is the node of the CPU it last ran on
 * (it is blocked in the fault, so that is where it faulted).
 *
 * Why set_mempolicy on the handler and not mbind on the range: mbind would
 * split the program's VMAs (one per differently-placed page: VMA count
 * limits, and every split is an mmap_lock writer that makes COPYs fail
 * EAGAIN), and it would override a policy the program chose. A thread
 * policy touches nothing but the handler, and the program's own range
 * policy still wins over it. MPOL_PREFERRED, not BIND: a full node must
 * never fail a fault, the page goes elsewhere instead.
 *
 * Cost: a handler sets its policy only when the wanted node differs from
 * the one it set last (a syscall per change of node, none while a handler
 * keeps serving one node). The faulting thread's node comes from a small
 * handler-private tid cache, refreshed by reading /proc/self/task/<tid>/stat
 * (field 39, the CPU it last ran on; ~6-8 us) when the thread has had
 * FL_NUMA_RESAMPLE faults on this handler *and* FL_NUMA_RESAMPLE_MS have
 * passed since the last read (a coarse clock read per 128 faults decides):
 * at most one read per thread per 10 ms, whatever the fault rate. A thread
 * that migrated to another node is followed within max(128 faults, 10 ms). A tid reused by a new
 * thread inherits the old entry until the next resample: a placement
 * preference, never a correctness question.
 *
 * The handler's other allocations: its bounce buffer is bound to its own
 * node with mbind before the first touch (a range policy outlives the
 * thread policy switches); its rare heap allocations follow whatever
 * policy is set, which is harmless.
 *
 * The evictor's staging frames need no placement: UFFDIO_MOVE moves the
 * program's page itself (its physical frame stays on its node) into the
 * frame's virtual address, and the frames are emptied with MADV_DONTNEED
 * after write-back, never filled from. The no-MOVE copy buffer is one
 * batch of transient copies, first-touched by the evictor.
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "testhooks.h"

static int test_nodes(void)
{
#ifdef FL_TEST_HOOKS
	return atomic_load_explicit(&fl_test_numa_nodes, memory_order_relaxed);
#else
	return 0;
#endif
}

void numa_probe(struct fl_runtime *rt)
{
	struct fl_numa *n = &rt->numa;
	int forced = test_nodes();

	memset(n, 0, sizeof(*n));
	if (numa_available() < 0 && !forced) {
		n->why = "unavailable (no NUMA support in this kernel): placement off";
		return;
	}
	n->nodes = forced ? forced : numa_num_configured_nodes();
	if (n->nodes <= 1) {
		n->why = "placement off (one node)";
		return;
	}
	if (!uffd_has(&rt->uffd, UFFD_FEATURE_THREAD_ID)) {
		n->why = "several nodes, no UFFD_FEATURE_THREAD_ID: pages land on the handler's node";
		return;
	}
	n->placement = true;
	n->why = forced ? "placement on the faulting thread's node (simulated nodes: test hook)" :
		"placement on the faulting thread's node (THREAD_ID, set_mempolicy per handler)";
}

int numa_ctx_init(struct fl_fault_ctx *c, int cpu)
{
	struct fl_runtime *rt = c->rt;
	struct fl_numa_ctx *nc;
	int home;

	if (rt->numa.nodes <= 1)
		return 0;
	home = cpu >= 0 ? numa_node_of_cpu(cpu) : -1;
#ifdef FL_TEST_HOOKS
	if (test_nodes())
		home = atomic_load_explicit(&fl_test_numa_home, memory_order_relaxed);
#endif
	if (home >= 0 && c->bounce && !test_nodes()) {
		unsigned long mask[16] = { 0 };

		/* before the first touch: pages of a range allocate on first touch */
		if ((unsigned int)home < sizeof(mask) * 8) {
			mask[(unsigned int)home / (8 * sizeof(mask[0]))] |=
				1ul << ((unsigned int)home % (8 * sizeof(mask[0])));
			mbind(c->bounce, FL_FAULT_AROUND_MAX, MPOL_PREFERRED, mask,
			      sizeof(mask) * 8, 0);
		}
	}
	if (!rt->numa.placement)
		return 0;
	nc = calloc(1, sizeof(*nc));
	if (!nc)
		return -ENOMEM;
	nc->home = home;
	nc->cur = -1;
	c->numa = nc;
	return 0;
}

void numa_ctx_fini(struct fl_fault_ctx *c)
{
	free(c->numa);
	c->numa = NULL;
}

/* the CPU @tid last ran on: /proc/self/task/<tid>/stat field 39; -1 if gone */
static int tid_cpu(uint32_t tid)
{
	char buf[1024];
	const char *p = task_stat(tid, buf, sizeof(buf));

	/* p is at field 3; 36 more separators reach field 39 */
	for (int field = 3; field < 39 && p; field++)
		p = strchr(p, ' ') ? strchr(p, ' ') + 1 : NULL;
	return p ? atoi(p) : -1;
}

static int tid_node(struct fl_fault_ctx *c, uint32_t tid)
{
	int cpu;

#ifdef FL_TEST_HOOKS
	fl_test_tid_node_fn fn = atomic_load_explicit(&fl_test_numa_tid_node,
						      memory_order_acquire);

	if (fn)
		return fn(tid);
#endif
	(void)c;
	cpu = tid_cpu(tid);
	return cpu >= 0 ? numa_node_of_cpu(cpu) : -1;
}

/* milliseconds, wrapping; the vDSO's coarse clock (~15 ns) */
static uint32_t coarse_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

void __numa_fault_place(struct fl_fault_ctx *c, uint32_t ptid)
{
	struct fl_numa_ctx *nc = c->numa;
	struct fl_numa_tid *e;
	int node, want;

	if (!ptid)
		return;		/* not a page fault with THREAD_ID */
	e = &nc->cache[(ptid * 2654435761u) >> 26];	/* 64 slots */
	if (e->tid != ptid || !e->left) {
		uint32_t now = coarse_ms();

		/* a known thread is re-read at most every FL_NUMA_RESAMPLE_MS */
		if (e->tid != ptid || now - e->sampled_ms >= FL_NUMA_RESAMPLE_MS) {
			STAT_INC(c->st, numa_tid_samples);
			node = tid_node(c, ptid);
			e->tid = ptid;
			e->node = (int16_t)(node >= 0 ? node : nc->home);
			e->sampled_ms = now;
		}
		e->left = FL_NUMA_RESAMPLE;
	}
	e->left--;
	node = e->node;
	if (node < 0)
		return;		/* unpinned handler, thread gone: keep the policy */
	if (node != nc->home)
		STAT_INC(c->st, numa_remote_fills);
	/*
	 * The handler's own node is its default policy (it is pinned there):
	 * -1 stands for it, so a handler that only serves its own node never
	 * makes the call.
	 */
	want = node == nc->home ? -1 : node;
	if (want != nc->cur) {
		unsigned long mask[16] = { 0 };
		int ret;

		if (want >= (int)(sizeof(mask) * 8))
			return;
		if (want < 0) {
			ret = set_mempolicy(MPOL_DEFAULT, NULL, 0);
		} else {
			mask[(unsigned int)want / (8 * sizeof(mask[0]))] |=
				1ul << ((unsigned int)want % (8 * sizeof(mask[0])));
			ret = set_mempolicy(MPOL_PREFERRED, mask, sizeof(mask) * 8);
		}
		if (ret == 0) {
			nc->cur = want;
			STAT_INC(c->st, numa_policy_sets);
		} else {
			STAT_INC(c->st, ioctl_errors);
		}
	}
}
