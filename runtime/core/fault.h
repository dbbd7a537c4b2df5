/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault.h - the core fault path's pieces that a subsystem resolving pages
 * on it uses (far memory's page-in: far/pagein.c). The tiers, and when a
 * region may be read without a lock, are in fault.c.
 */
#ifndef FL_FAULT_H
#define FL_FAULT_H

#include "internal.h"

/*
 * Zeros to copy from. Never written, but not free: a kernel may give a read
 * of never-written anonymous memory a page of its own instead of the shared
 * zero page (the 6.18 guests this was measured on do), so it is resident
 * memory of every process, outside any budget. Small, then: a longer run of
 * zeros is copied from it FL_ZERO_BUF bytes at a time (install()).
 */
#define FL_ZERO_BUF (256u << 10)
extern char fl_zero_buf[FL_ZERO_BUF];

/* What a fault needs from its region, copied under RCU. */
struct fl_snap {
	struct fl_region *r;
	const struct fl_uffd *uffd;	/* the one the region is registered with */
	uintptr_t start, end;
	uint64_t gen, pgoff;
	enum fl_pager pager;
	const char *src;
	size_t src_len;
	fl_fill_fn fill;
	void *fill_arg;
	size_t fault_around;
	unsigned int flags;
	_Atomic uint32_t *pstate;
	uint64_t store_off;		/* far memory */
	size_t run_lo, run_hi;		/* runs stay inside pages [run_lo, run_hi) */
};

/* how a page's contents are produced */
enum fl_kind { K_ZERO, K_SRC, K_PARTIAL, K_FILL,
	       K_EVICTED /* far memory: read back from the store (read-ahead runs) */ };

/*
 * fault_resolve() - produce and install the page at @addr, with fault-around
 * (the tiers' resolve()). Context: the region of @s is pinned by RCU, its
 * read lock, or index_lock; @may_block false on tier 1.
 */
enum fl_res fault_resolve(struct fl_fault_ctx *c, const struct fl_snap *s,
			  uintptr_t addr, bool write, bool may_block);
/* the fault-around window in pages for a fault at @addr (adaptive or fixed) */
size_t fault_window_pages(struct fl_fault_ctx *c, const struct fl_snap *s, uintptr_t addr);
/*
 * fault_claim_run() - grow the run [*lo, *hi) around page @pg (claimed by the
 * caller) through neighbours of kind @k that can be claimed (-> FILLING),
 * inside @pg's window of @win pages, and leave the adaptive hint.
 */
void fault_claim_run(const struct fl_runtime *rt, const struct fl_snap *s, size_t pg,
		     size_t win, enum fl_kind k, size_t *lo, size_t *hi);

#endif /* FL_FAULT_H */
