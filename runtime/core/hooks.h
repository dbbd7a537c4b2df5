/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hooks.h - what the core asks of the subsystems built on it.
 *
 * The core resolves faults on its own pagers (zero, copy, fill). Far memory
 * (far/) adds pages that live in a store and a resident budget; write
 * protection (ckpt/wp.c) adds protected ranges. Neither is known to the
 * core by name: each sets the hooks it serves when it starts (far_start(),
 * wp_init(), called by fl_runtime_create() in runtime/create.c), before
 * the handler threads exist, and never changes them afterwards, so every
 * thread reads them without ordering. A hook left NULL is a subsystem that
 * is not there; the core tests the pointer (one load, the branch it had
 * before) and calls it only when set. The page-state word (core/region.h)
 * keeps states only far memory sets (EVICTING, EVICTED, the rescued and
 * in-store flags): the core moves them only as its protocol says.
 */
#ifndef FL_HOOKS_H
#define FL_HOOKS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fl_runtime;
struct fl_fault_ctx;
struct fl_snap;
struct fl_region;
struct fl_counters;

/*
 * how an in-thread fault ended (core/fault.c fault_inthread(), and the
 * write-protect faults of wp.c resolved there)
 */
enum fl_tres { TR_DONE, TR_RETRY, TR_NONE, TR_BLOCK };

/* how a resolution ended; RES_PENDING: a store read is in flight and owns
 * the region read reference */
enum fl_res { RES_DONE, RES_BLOCK, RES_PENDING };

/*
 * A handler's reads in flight, kept by the subsystem that starts them
 * (far/pagein.c embeds it first in its own state). The handler polls @efd
 * next to its uffd while @npending is not zero, and calls aio_complete when
 * it is readable (see handler.c).
 */
struct fl_aio_head {
	int efd;
	unsigned int npending;
	/* its buffers hold pages: aio_idle() gives them back once the
	 * handler has been idle for FL_AIO_IDLE_MS */
	bool held;
};

#define FL_AIO_IDLE_MS	50

struct fl_hooks {
	/* ---- far memory ---- */
	/* a fault on an EVICTING or EVICTED page (only far memory sets those
	 * states, and it sets this hook before it can) */
	enum fl_res (*page_in)(struct fl_fault_ctx *c, const struct fl_snap *s,
			       uintptr_t addr, bool write, bool may_block);
	/* @pages were installed: the resident count */
	void (*installed)(struct fl_runtime *rt, long pages);
	/* over the resident budget? Then throttle() before producing a page */
	bool (*over_budget)(const struct fl_runtime *rt);
	void (*throttle)(struct fl_fault_ctx *c);
	/* the most pages one fault may install (a fault-around run) */
	size_t (*run_cap)(const struct fl_runtime *rt);
	/* a zap of pages [lo, hi), just claimed, may be coming: un-claim and park */
	bool (*zap_coming)(const struct fl_runtime *rt, _Atomic uint32_t *pstate,
			   uintptr_t start, size_t lo, size_t hi);
	/* a write-protect fault far memory caused (dirty tracking): true if so;
	 * @r: its region, found by the caller inside a read-side section, or
	 * NULL: look it up */
	bool (*dirty_fault)(struct fl_fault_ctx *c, struct fl_region *r, uintptr_t addr);
	/* a handler's asynchronous reads (c->aio): set up, tear down, install
	 * what completed (never blocks), install all (waits) */
	int (*aio_init)(struct fl_fault_ctx *c);
	void (*aio_fini)(struct fl_fault_ctx *c);
	void (*aio_complete)(struct fl_fault_ctx *c);
	void (*aio_drain)(struct fl_fault_ctx *c);
	/* nothing in flight and no fault for a while: release the buffers */
	void (*aio_idle)(struct fl_fault_ctx *c);

	/* ---- far memory: the runtime, its regions and events ---- */
	uint64_t register_modes;	/* uffd modes every region adds (WP) */
	/* stop background work before the regions go / free all once the
	 * handlers have stopped */
	void (*stop)(struct fl_runtime *rt);
	void (*release)(struct fl_runtime *rt);
	/* fork: hold background work between batches / let it go */
	void (*fork_prepare)(struct fl_runtime *rt);
	void (*fork_done)(struct fl_runtime *rt);
	/* API writers take the gate before the index lock (far/evict.c) */
	void (*gate_lock)(struct fl_runtime *rt);
	void (*gate_unlock)(struct fl_runtime *rt);
	/* a region is registered (its store extent) / leaves the runtime */
	int (*region_init)(struct fl_runtime *rt, struct fl_region *r);
	void (*region_gone)(struct fl_runtime *rt, struct fl_region *r);
	/* pages [a, b) of @r are gone for good (an UNMAP no REMAP took back) */
	void (*range_gone)(struct fl_runtime *rt, const struct fl_region *r,
			   uintptr_t a, uintptr_t b);
	/* a REMOVE event of far memory's own making: true if it is one */
	bool (*own_remove)(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end);
	/* a REMOVE dropped the page at @addr, kept in runtime memory */
	void (*rescued_gone)(struct fl_runtime *rt, const struct fl_region *r,
			     uintptr_t addr);
	/* @pages resident pages were dropped by the kernel */
	void (*gone)(struct fl_runtime *rt, long pages);
	/* counters and gauges of its own threads, and how it evicts */
	void (*stats_add)(const struct fl_runtime *rt, struct fl_counters *sum);
	void (*stats_reset)(struct fl_runtime *rt);
	const char *(*evict_mode)(const struct fl_runtime *rt);

	/* ---- write protection ---- */
	/* a write-protect fault that is not far memory's */
	void (*protect_fault)(struct fl_fault_ctx *c, uintptr_t addr);
	/*
	 * The same in the faulting thread's SIGBUS handler (an in-thread
	 * FL_REGION_WP region): inside a sigrcu section once
	 * protect_closed() said false in it (no writer changes the ranges
	 * until the section ends), or outside any (c->in_section false),
	 * where it takes the ranges' lock for reading. Returns an enum
	 * fl_tres.
	 */
	enum fl_tres (*protect_fault_signal)(struct fl_fault_ctx *c, uintptr_t addr);
	/* a writer of the protected ranges is at work: in-thread readers
	 * serve their faults outside their section, under its lock */
	bool (*protect_closed)(const struct fl_runtime *rt);
	/* must [a, a + len) of an FL_REGION_WP region be installed protected? */
	bool (*install_protected)(struct fl_fault_ctx *c, uintptr_t a, size_t len);
	/* protected ranges end with the memory [start, end) (@unmap: the
	 * kernel dropped it), follow a REMAP, see a REMOVE */
	void (*protect_forget)(struct fl_runtime *rt, uintptr_t start, uintptr_t end, bool unmap);
	void (*protect_remap)(struct fl_fault_ctx *c, uintptr_t from, uintptr_t to, size_t len);
	void (*protect_remove)(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end);
	void (*protect_stats_add)(const struct fl_runtime *rt, struct fl_counters *sum);
	void (*protect_stats_reset)(struct fl_runtime *rt);
	void (*protect_release)(struct fl_runtime *rt);
};

#endif /* FL_HOOKS_H */
