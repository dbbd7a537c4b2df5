/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * numa-place.h - NUMA placement of fault fills (numa.c). Not "numa.h":
 * runtime/ is on the include path and would hide libnuma's <numa.h>.
 *
 * Handlers are pinned one per CPU, so the kernel allocates a page a handler
 * installs with UFFDIO_COPY on the *handler's* node (the calling thread's
 * memory policy, when the program set no policy on the range). With
 * UFFD_FEATURE_THREAD_ID each fault names the faulting thread; when that
 * thread last ran on another node, the handler switches its own policy to
 * MPOL_PREFERRED(that node) before resolving, so the page lands where it
 * is used. On one node, without libnuma support, or without THREAD_ID,
 * placement is off and the fault path pays one predictable branch.
 */
#ifndef FL_NUMA_PLACE_H
#define FL_NUMA_PLACE_H

#include <stdbool.h>
#include <stdint.h>

struct fl_runtime;
struct fl_fault_ctx;

struct fl_numa {
	int nodes;		/* configured nodes; 0 when libnuma is unavailable */
	bool placement;		/* per-fault placement on the faulting thread's node */
	const char *why;	/* fl_features_print's "numa:" line */
};

/* tid -> node cache entries per handler (direct-mapped, handler-private) */
#define FL_NUMA_CACHE 64
/* a cached node is re-read after this many faults of the thread, and at
 * least this many ms after the last read (numa.c: the cost) */
#define FL_NUMA_RESAMPLE 128
#define FL_NUMA_RESAMPLE_MS 10

struct fl_numa_tid {
	uint32_t tid;
	int16_t node;
	uint16_t left;		/* faults until the clock is checked */
	uint32_t sampled_ms;	/* when the node was read (coarse, wrapping) */
};

struct fl_numa_ctx {
	int home;		/* the handler's node; -1: unpinned */
	int cur;		/* node of the preferred policy set; -1: default (home) */
	struct fl_numa_tid cache[FL_NUMA_CACHE];
};

/**
 * numa_probe() - fill @rt->numa: node count and whether placement is on.
 * Context: runtime creation, after uffd_open, before handlers_start.
 */
void numa_probe(struct fl_runtime *rt);

/**
 * numa_ctx_init() - give a handler's context its node: @cpu's node (-1:
 * unpinned), the bounce buffer bound there before its first touch, and a
 * tid cache when placement is on.
 * Context: handlers_start, before the handler thread exists. Return: 0; -ENOMEM.
 */
int numa_ctx_init(struct fl_fault_ctx *c, int cpu);
void numa_ctx_fini(struct fl_fault_ctx *c);

void __numa_fault_place(struct fl_fault_ctx *c, uint32_t ptid);

/**
 * numa_fault_begin() - before resolving a fault from thread @ptid (0:
 * unknown), make this handler's allocations prefer @ptid's node.
 * Context: the handler thread owning @c (its policy is per thread).
 */
#define numa_fault_begin(c, ptid)					\
	do {								\
		if (__builtin_expect((c)->numa != NULL, 0))		\
			__numa_fault_place((c), (ptid));		\
	} while (0)

#endif /* FL_NUMA_PLACE_H */
