/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * region.h - the region object: the runtime's VMA.
 *
 * Fields are immutable while the region is published in the index: writers
 * never change a published region in place, they unpublish it, wait, and
 * publish a new object (see the writer protocol in runtime.c). That is what
 * lets tier 1 read them with no lock at all.
 *
 * The refcount lock (seed 001, the kernel's vm_refcnt):
 *   0                      detached
 *   1                      attached, unlocked
 *   1 + n                  attached, n readers (n < REF_READER_LIMIT)
 *   REF_WRITER + 1 + n     a writer holds it and waits for n readers to drain
 * Readers take it with inc-not-zero-below-limit, so a writer, once it added
 * its offset, admits no new reader: it cannot starve. Region objects are
 * recycled through a pool (typesafe reuse, as SLAB_TYPESAFE_BY_RCU): a reader
 * that took a reference re-checks that the object still covers its address
 * with the generation it saw.
 *
 * Page-state words: one uint32 per page, in a MAP_NORESERVE array.
 */
#ifndef FL_REGION_H
#define FL_REGION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline.h"

#define REF_DETACHED		0u
#define REF_ATTACHED		1u
#define REF_READER_LIMIT	(1u << 20)
#define REF_WRITER		(1u << 30)

/* page-state word layout */
#define PS_STATE_MASK		0x7u
#define PS_ABSENT		0u	/* never produced: the pager makes it */
#define PS_FILLING		1u	/* a thread is producing it */
#define PS_RESIDENT		2u	/* installed */
#define PS_DISCARDED		3u	/* zapped by the program (REMOVE): reads zero */
/* far memory (evict.c): RESIDENT -> EVICTING -> EVICTED -> FILLING -> RESIDENT */
#define PS_EVICTING		4u	/* the evictor owns it: being taken out / written back */
#define PS_EVICTED		5u	/* its bytes live in the store only */
#define PS_WAITERS		(1u << 3)	/* someone sleeps on this word */
#define PS_DISCARD_PENDING	(1u << 4)	/* REMOVE hit it while FILLING */
#define PS_INSTORE		(1u << 5)	/* far: the store holds these exact bytes (clean) */
#define PS_REF			(1u << 6)	/* far: CLOCK reference bit */
#define PS_RESCUED		(1u << 7)	/* far, EVICTED: the bytes are in runtime
						 * memory, not the store (rescue.c) */
#define PS_FA_SHIFT		8		/* adaptive fault-around hint, bits 8..12: */
#define PS_FA_MASK		(0x1fu << PS_FA_SHIFT)	/* log2(previous window) + 1 */
#define PS_POISONED		(1u << 13)	/* UFFDIO_POISON marks it (far, EVICTED:
						 * its store read failed; RESIDENT: its
						 * fill failed): an access raises SIGBUS */
#define PS_PIN_SHIFT		16		/* pin count, bits 16..31 */
#define PS_PIN_ONE		(1u << PS_PIN_SHIFT)
#define PS_PIN_MAX		0xffffu

static inline unsigned ps_state(uint32_t w)
{
	return w & PS_STATE_MASK;
}

/* internal region flags (above the public FL_REGION_* bits) */
#define R_OWNED		(1u << 16)	/* made by fl_region_map: we unmap it */

struct fl_region {
	/* --- immutable while published; read speculatively by tier 1 --- */
	uintptr_t start, end;
	uint64_t gen;		/* unique for each use of this object */
	uint64_t pgoff;		/* byte offset of start in the pager's source */
	enum fl_pager pager;
	const void *src;
	size_t src_len;
	fl_fill_fn fill;
	void *fill_arg;
	size_t fault_around;
	unsigned int flags;
	_Atomic uint32_t *pstate;
	size_t pstate_bytes;
	_Atomic int64_t *meta;	/* the runtime's metadata gauge (region_alloc) */
	/* far memory: page i lives at store offset store_off + i * page size */
	uint64_t store_off;
	uint64_t store_extent;	/* bytes reserved at store_off */

	/* --- the lock, on its own cache line: only tier 2 and writers --- */
	_Alignas(64) _Atomic uint32_t refcnt;
	struct fl_region *pool_next;
};

/** region_npages() - pages in @r. */
static inline size_t region_npages(const struct fl_region *r, unsigned shift)
{
	return (r->end - r->start) >> shift;
}

/*
 * region_alloc() - a zeroed region object from the pool with a fresh
 * generation and a page-state table for @npages, detached (refcnt 0).
 * @meta: NULL, or a gauge charged with the object and its page-state table
 *	until region_free() (the runtime's metadata_bytes statistic).
 * Context: an index writer. Return: NULL on ENOMEM.
 */
struct fl_region *region_alloc(size_t npages, _Atomic int64_t *meta);

/*
 * region_free() - return @r to the pool. Context: an index writer,
 * @r detached, and a grace period has passed since it was unpublished.
 */
void region_free(struct fl_region *r);

/* region_pool_drain() - free pooled objects. Context: no runtime left (tests). */
void region_pool_drain(void);

/* region_attach() - 0 -> 1. Context: writer, @r not yet published. */
void region_attach(struct fl_region *r);

/*
 * region_start_read() - take a read reference: inc-not-zero-below-limit.
 * Return: false if @r is detached, write-locked, or at the reader limit;
 *	the caller falls back to the locked tier.
 * Context: any; in an RCU read-side section when @r came from the index.
 * Ordering: acquire on success.
 */
bool region_start_read(struct fl_region *r);

/*
 * region_start_read_checked() - region_start_read(), then re-check that the
 * object still covers @addr with generation @gen (it may have been freed
 * and reused since the caller looked it up). On a failed re-check the
 * reference is dropped and *stale is set.
 */
bool region_start_read_checked(struct fl_region *r, uintptr_t addr,
			       uint64_t gen, bool *stale);

/* region_end_read() - drop a read reference; wakes a writer waiting for the last one. */
void region_end_read(struct fl_region *r);

/*
 * region_write_lock() - add the writer offset and sleep (futex) until every
 * reader left. Context: index writer lock held (one writer per region).
 * May block.
 */
void region_write_lock(struct fl_region *r);

/* region_write_unlock() - drop the writer offset. */
void region_write_unlock(struct fl_region *r);

/* region_detach_locked() - write-locked with no readers -> detached (0). */
void region_detach_locked(struct fl_region *r);

/*
 * Page words. page_wait() sleeps on the page's own word until its state is
 * no longer @state (seed 002: no long shared wait list). page_set() stores a
 * new word and wakes the word's sleepers if any.
 */
void page_wait(_Atomic uint32_t *w, unsigned state);
/* page_wait_ms() - one sleep of at most @ms; returns early, never loops */
void page_wait_ms(_Atomic uint32_t *w, unsigned state, long ms);
void page_wake(_Atomic uint32_t *w);

/*
 * page_finish() - FILLING -> @to (RESIDENT, or back to ABSENT/DISCARDED).
 * A REMOVE that arrived meanwhile (PS_DISCARD_PENDING) turns @to into
 * DISCARDED. Wakes sleepers. Return: true if DISCARD_PENDING was seen.
 */
bool page_finish(_Atomic uint32_t *w, unsigned to);

#endif /* FL_REGION_H */
