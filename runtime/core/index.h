/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * index.h - the region index: the runtime's VMA tree.
 *
 * The lookup structure is an immutable sorted array of non-overlapping
 * [start, end) entries, published with rcu_assign_pointer and searched by
 * binary search (O(log n), cache-friendly, thousands of regions). A writer
 * builds a new array and publishes it; the old one is freed only after a
 * grace period. Readers write nothing.
 *
 * index_seq is odd while a writer is inside its critical section. Tier 1
 * consults it only when a lookup finds no region: "nothing here" is a
 * trustworthy answer only if no writer was changing the index meanwhile
 * (a region being resized or re-published is briefly absent). A region that
 * *is* found is safe to use with no check at all: writers never modify a
 * published region, they unpublish it and wait a grace period first.
 *
 * index_lock: writers take it for writing; tier 3 takes it for reading.
 */
#ifndef FL_INDEX_H
#define FL_INDEX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "region.h"

struct fl_index_ent {
	uintptr_t start, end;
	struct fl_region *r;
};

struct fl_index {
	size_t n;
	struct fl_index_ent e[];
};

struct fl_index_root {
	struct fl_index *cur;		/* RCU-published */
	_Atomic unsigned int seq;	/* odd: a writer is in */
	pthread_rwlock_t lock;
	/* arrays unpublished since the last grace period (writers only) */
	struct fl_index **retired;
	size_t nretired, retired_cap;
};

int index_init(struct fl_index_root *ix);
/* index_fini() - Context: no readers or writers left. */
void index_fini(struct fl_index_root *ix);

/*
 * index_seq_begin() - sample the count. Odd: a writer is in.
 * index_seq_retry() - true if the index may have changed since @seq was
 * sampled (or a writer was in at the time).
 * Context: any. Ordering: acquire / read barrier before the re-read, like
 * read_seqcount_begin/retry.
 */
static inline unsigned int index_seq_begin(struct fl_index_root *ix)
{
	return atomic_load_explicit(&ix->seq, memory_order_acquire);
}

static inline bool index_seq_retry(struct fl_index_root *ix, unsigned int seq)
{
#if defined(__SANITIZE_THREAD__)
	/* TSan models no fences: a read-modify-write orders our lookup's loads
	 * before the re-read just as well (only in TSan builds) */
	unsigned int now = atomic_fetch_add_explicit(&ix->seq, 0, memory_order_acq_rel);
#else
	/* smp_rmb(): the lookup's loads happen before the count is read again */
	atomic_thread_fence(memory_order_acquire);
	unsigned int now = atomic_load_explicit(&ix->seq, memory_order_relaxed);
#endif
	return (seq & 1) || now != seq;
}

/*
 * index_lookup() - the region covering @addr in @x, or NULL.
 * Context: RCU read side (with @x from rcu_dereference) or index_lock held.
 */
struct fl_region *index_lookup(const struct fl_index *x, uintptr_t addr);

/* index_overlaps() - true if [start, end) overlaps an entry of @x other than @skip. */
bool index_overlaps(const struct fl_index *x, uintptr_t start, uintptr_t end,
		    const struct fl_region *skip);

/*
 * index_write_begin() / index_write_end() - take index_lock for writing and
 * make the count odd / even again. Full barriers on both sides, so that a
 * reader that sees an even, unchanged count saw no part of the change.
 */
void index_write_begin(struct fl_index_root *ix);
void index_write_end(struct fl_index_root *ix);

/*
 * index_fork_child() - in a fork child, instead of index_write_end() for the
 * section the forking thread opened: count even, and a fresh lock.
 * Context: the child of fork(), single-threaded, in the atfork child handler.
 */
void index_fork_child(struct fl_index_root *ix);

/*
 * index_publish_locked() - publish a copy of the current array with @ndel
 * regions removed and @nadd regions added (their start/end as they are now).
 * The old array is retired, freed after the next grace period.
 * Context: index_write_begin() held. Return: 0, -ENOMEM (nothing changed).
 */
int index_publish_locked(struct fl_index_root *ix,
			 struct fl_region *const *del, size_t ndel,
			 struct fl_region *const *add, size_t nadd);

/*
 * index_synchronize_locked() - wait for an RCU grace period, then free the
 * retired arrays. Context: index_write_begin() held, not in an RCU read side.
 */
void index_synchronize_locked(struct fl_index_root *ix);

#endif /* FL_INDEX_H */
