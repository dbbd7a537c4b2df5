/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hooks.h - what the core's fault path asks of the subsystems built on it.
 *
 * The core resolves faults on its own pagers (zero, copy, fill). Far memory
 * (far/) adds pages that live in a store and a resident budget; write
 * protection (ckpt/wp.c) adds protected ranges. Neither is known to the
 * core by name: each sets the hooks it serves when it starts (far_start(),
 * wp_init()), before the handler threads exist, and never changes them
 * afterwards, so the handlers read them without ordering. A hook left NULL
 * is a subsystem that is not there; the core tests the pointer (one load,
 * the branch it had before) and calls it only when set.
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
};

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
	/* a zap of pages [lo, hi), just claimed, may be coming: un-claim and park */
	bool (*zap_coming)(const struct fl_runtime *rt, _Atomic uint32_t *pstate,
			   uintptr_t start, size_t lo, size_t hi);
	/* a write-protect fault far memory caused (dirty tracking): true if so */
	bool (*dirty_fault)(struct fl_fault_ctx *c, uintptr_t addr);
	/* a handler's asynchronous reads (c->aio): set up, tear down, install
	 * what completed (never blocks), install all (waits) */
	int (*aio_init)(struct fl_fault_ctx *c);
	void (*aio_fini)(struct fl_fault_ctx *c);
	void (*aio_complete)(struct fl_fault_ctx *c);
	void (*aio_drain)(struct fl_fault_ctx *c);

	/* ---- write protection ---- */
	/* a write-protect fault that is not far memory's */
	void (*wp_fault)(struct fl_fault_ctx *c, uintptr_t addr);
	/* must [a, a + len) of an FL_REGION_WP region be installed protected? */
	bool (*install_protected)(struct fl_fault_ctx *c, uintptr_t a, size_t len);
};

#endif /* FL_HOOKS_H */
