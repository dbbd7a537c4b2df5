/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * far.h - far memory: resident budget and evictor (evict.c), page-in
 * (pagein.c), pages rescued from a failed write-back (rescue.c), stores
 * (store/). See evict.c for the protocol.
 */
#ifndef FL_FAR_H
#define FL_FAR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/hooks.h"
#include "store/store.h"

struct fl_runtime;
struct fl_fault_ctx;
struct fl_region;
struct fl_runtime_opts;
struct fl_counters;
struct fl_snap;

#define FAR_BATCH 64		/* pages per eviction batch (staging frames) */

/* rescue.c: pages whose write-back failed and could not be put back */
struct rescued;
struct far_rescue {
	pthread_mutex_t lock;
	struct rescued **tab;		/* chained hash by store offset */
	size_t nbuckets;
	_Atomic long count;		/* entries; read unlocked as "any at all?" */
	struct rescued *spare;		/* reserved entries: the error path never allocates */
	unsigned int nspare;
};

int far_rescue_init(struct far_rescue *rs);
void far_rescue_fini(struct far_rescue *rs);
/* top the spares up to @want (may allocate; no locks held). Return: spares */
unsigned int far_rescue_reserve(struct far_rescue *rs, size_t page_size, unsigned int want);
/*
 * An entry belongs to its page's word while the word says EVICTED|RESCUED;
 * only whoever holds the page (EVICTING: the evictor; FILLING: a filler or
 * event_remove) puts, takes or removes it, so two entries for one page
 * never coexist and nobody drops another's.
 */
/* keep a copy of @page under store offset @off; uses a reserved spare */
struct rescued *far_rescue_put(struct far_rescue *rs, uint64_t off, const void *page,
			       size_t page_size);
/* unlink the copy under @off and hand it over (NULL: none) */
struct rescued *far_rescue_take(struct far_rescue *rs, uint64_t off);
/* link a taken copy back (no allocation) */
void far_rescue_insert(struct far_rescue *rs, struct rescued *e);
/* unlink exactly @e if it is linked. Return: whether it was */
bool far_rescue_remove(struct far_rescue *rs, struct rescued *e);
void far_rescue_free(struct far_rescue *rs, struct rescued *e);
const void *far_rescue_data(const struct rescued *e);
/* drop the copies of store offsets [lo, hi): the pages are gone. Return: how many */
long far_rescue_drop(struct far_rescue *rs, uint64_t lo, uint64_t hi);

struct fl_far {
	struct fl_store *store;
	long budget, high, low;		/* pages */
	bool move;			/* evict with UFFDIO_MOVE */
	bool wp;			/* dirty tracking and the non-MOVE race need WP */
	bool evicts;			/* an evictor runs (MOVE or WP available) */

	/* pages resident in far regions: approximate (see evict.c) */
	_Alignas(64) _Atomic long resident;
	_Atomic uint32_t kick;		/* futex: bumped to wake the evictor */
	_Atomic uint32_t kick_seen;	/* the last @kick the evictor looked at */
	_Atomic uint32_t progress;	/* futex: bumped after each evictor batch */
	_Atomic uint32_t evicting;	/* FAR_IDLE, FAR_AT_WORK, FAR_ON_HANDLER */

	/* store extents: bump allocator, index writer lock held */
	_Alignas(64) uint64_t store_next;

	/* the evictor */
	pthread_t thread;
	bool started;
	_Atomic bool stop;
	void *staging;			/* FAR_BATCH frames registered on the uffd (MOVE) */
	int pagemap_fd;			/* /proc/self/pagemap: what a failed MOVE did */
	void *buf;			/* FAR_BATCH pages of copies (no MOVE) */
	size_t hand_idx, hand_page;	/* CLOCK hand: index position, page */
	uint64_t hand_gen;
	long sweep_resident;		/* RESIDENT words seen in the current sweep */
	long sweep_start;		/* @resident when the sweep began */
	unsigned int sweep_seq;		/* index seq when the sweep began */
	bool sweep_evicted;
	bool sweep_partial;		/* a region went unseen: no recount */

	/*
	 * Zaps without MOVE (MADV_DONTNEED on the evicted page): serialised
	 * against API writers by @gate, and recognised by the handler that
	 * reads their REMOVE event through the zap_* handshake.
	 */
	pthread_mutex_t gate;
	/* held by the evictor around each batch; fork takes it (far_fork_*) */
	pthread_mutex_t batch_lock;
	_Atomic uintptr_t zap_start, zap_end;
	_Atomic uint32_t zap_pending;
	/* the span of the batch being zapped (far_zap_coming()); 0, 0: none */
	_Atomic uintptr_t zap_lo, zap_hi;

	struct far_rescue rescue;

	struct fl_counters *st;		/* the evictor's counters */
};

/* the core's hooks (core/hooks.h), set by far_start() */
int far_start(struct fl_runtime *rt, const struct fl_runtime_opts *o);
void far_stop(struct fl_runtime *rt);		/* stop the evictor, drop staging */
void far_free(struct fl_runtime *rt);		/* after handlers_stop */
int far_region_init(struct fl_runtime *rt, struct fl_region *r);	/* writer lock held */
void far_region_gone(struct fl_runtime *rt, struct fl_region *r);
void far_range_gone(struct fl_runtime *rt, const struct fl_region *r, uintptr_t a, uintptr_t b);
void far_rescued_gone(struct fl_runtime *rt, const struct fl_region *r, uintptr_t addr);
void far_gate_lock(struct fl_runtime *rt);
/* fork: pause the evictor between batches / let it go (parent and child) */
void far_fork_prepare(struct fl_runtime *rt);
void far_fork_done(struct fl_runtime *rt);
void far_gate_unlock(struct fl_runtime *rt);
bool far_gate_trylock(struct fl_far *f);	/* handlers: never wait for it */

bool far_wp_fault(struct fl_fault_ctx *c, struct fl_region *r, uintptr_t addr);
bool far_own_remove(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end);

/* pagein.c: the core's page_in and aio hooks (core/hooks.h) */
enum fl_res far_resolve(struct fl_fault_ctx *c, const struct fl_snap *s,
			uintptr_t addr, bool write, bool may_block);
int far_aio_init(struct fl_fault_ctx *c);
void far_aio_fini(struct fl_fault_ctx *c);
void far_aio_complete(struct fl_fault_ctx *c);
void far_aio_drain(struct fl_fault_ctx *c);
void far_aio_idle(struct fl_fault_ctx *c);

/* what the evictor is doing (fl_far.evicting), for the throttle */
enum { FAR_IDLE, FAR_AT_WORK, FAR_ON_HANDLER };

/* evict.c: the core's budget hooks */
void far_note_installed(struct fl_runtime *rt, long pages);
void far_note_gone(struct fl_runtime *rt, long pages);
bool far_over_budget(const struct fl_runtime *rt);
size_t far_run_cap(const struct fl_runtime *rt);
bool far_zap_coming(const struct fl_runtime *rt, _Atomic uint32_t *pstate, uintptr_t start,
		    size_t lo, size_t hi);
void far_throttle(struct fl_fault_ctx *c);

#endif /* FL_FAR_H */
