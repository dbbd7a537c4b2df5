/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * internal.h - the runtime object and what its parts share.
 */
#ifndef FL_INTERNAL_H
#define FL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faultline.h"
#include "hooks.h"
#include "index.h"
#include "region.h"
#include "uffd.h"
#include "numa-place.h"

#define FL_EXPORT __attribute__((visibility("default")))

#ifndef likely
#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)
#endif

/* ---- statistics: one block per thread that counts, summed on read ---- */

struct fl_counters {
#define FL_STAT_DECLARE(name, help) uint64_t name;
	FL_STAT_FIELDS(FL_STAT_DECLARE)
#undef FL_STAT_DECLARE
} __attribute__((aligned(64)));

/*
 * Only the owning thread adds to its block; readers (fl_stats_get) load
 * concurrently. Relaxed atomics: no fence, no locked instruction, no shared
 * cache line on the fault path.
 */
#define STAT_ADD(c, field, n)						\
	__atomic_store_n(&(c)->field,					\
			 __atomic_load_n(&(c)->field, __ATOMIC_RELAXED) + (n), \
			 __ATOMIC_RELAXED)
#define STAT_INC(c, field) STAT_ADD(c, field, 1)

/* ---- fault resolution context: one per thread that resolves faults ---- */

struct fl_fault_ctx {
	struct fl_runtime *rt;
	struct fl_counters *st;
	void *bounce;			/* FL_FAULT_AROUND_MAX bytes, for fill callbacks */
	/* a handler's asynchronous reads (hooks.h: far memory's page-in); NULL elsewhere */
	struct fl_aio_head *aio;
	bool may_async;			/* set by the tiers while they hold a region read ref */
	uint32_t fault_ptid;		/* the fault being resolved: its thread (numa.c), 0 unknown */
	bool no_throttle;		/* far memory: never wait for the evictor (fork) */
	bool no_zap_coming;		/* far memory: the caller holds the evictor's gate
					 * (or stopped it): no non-MOVE zap can land */
	bool events_ordered;		/* far memory: not a handler; the caller waited
					 * for the events read before it, or holds the
					 * index writer lock that applying one needs */
	struct fl_numa_ctx *numa;	/* handlers with NUMA placement on; else NULL */
	bool in_signal;			/* the faulting thread's SIGBUS handler
					 * (inthread.c): no lock, no wait on
					 * anything only another thread ends */
	bool in_section;		/* ... inside its sigrcu section (else it
					 * holds the region's read reference:
					 * fault_inthread_block()) */
};

struct fl_handler {
	struct fl_runtime *rt;
	pthread_t thread;
	unsigned int idx;
	int cpu;			/* -1: unpinned */
	bool started;
	bool polls;			/* poll(2), then a non-blocking read(2) */
	struct fl_fault_ctx ctx;
	struct fl_counters st;
	int fd;				/* the uffd it reads: the runtime's, or
					 * the in-thread one's (events only) */
	int stop_fd;			/* the in-thread uffd's reader: an eventfd
					 * that stops it (no doorbell: a fault on
					 * that uffd is a SIGBUS); -1 */
	_Atomic bool stop;
	/*
	 * The read window (unknown_defer(), events_read_applied()), written
	 * by this handler only: @reading is odd from before its read(2) until
	 * the events that read returned are counted and announced, their
	 * ranges in [ev_lo, ev_hi) until they are applied (0, 0: none). A
	 * blocking handler's window also spans its sleep in read(2): it holds
	 * an event only while it runs (window_busy()). @tid: its thread, for
	 * that test; 0 before it starts.
	 */
	_Alignas(64) _Atomic uint32_t reading;
	_Atomic uint32_t tid;
	_Atomic uintptr_t ev_lo, ev_hi;
};

/* a fault in no region, held back a while: see unknown_defer() */
struct fl_unknown {
	uintptr_t page;
	uint64_t first_ns, last_ns;
};
#define FL_UNKNOWN_SLOTS 32

/* a fault deferred by EAGAIN: the range to wake once the event is read */
struct fl_parked {
	uintptr_t start;
	size_t len;
};

/*
 * The largest far-memory read-ahead run, or fill run, a fault resolved
 * in-thread installs (pages): each reader slot sets aside a buffer of it.
 */
#define FL_INTHREAD_RUN	16

struct fl_runtime {
	struct fl_uffd uffd;
	/*
	 * In-thread resolution (inthread.c): a second uffd with
	 * UFFD_FEATURE_SIGBUS (fd -1 when off), its counter blocks and bounce
	 * pages, one per signal-safe reader slot (sigrcu.h), and the default
	 * mode of new regions.
	 */
	struct fl_uffd tuffd;
	struct fl_counters *tst;
	char *tbounce;
	size_t tbounce_pages;		/* per slot: FL_INTHREAD_RUN */
	enum fl_resolve resolve;
	bool inthread_wp;		/* FL_REGION_WP regions may be in-thread ones */
	int inthread_id;		/* its place in inthread.c's table; -1 */
	unsigned int page_shift;
	size_t page_size;
	enum fl_tier_policy tiers;
	unsigned int flags;

	struct fl_index_root index;

	/* writer-side counters: only touched with the index writer lock held */
	struct fl_counters wst;

	unsigned int nhandlers;		/* threads reading a uffd, */
	unsigned int nfault_handlers;	/* of which the runtime's: the rest read
					 * the in-thread uffd's events */
	struct fl_handler *handlers;
	/* far memory: store reads of page-ins in flight, all handlers (far/pagein.c);
	 * a line of its own: every read start and completion writes it */
	struct {
		_Alignas(64) _Atomic unsigned int n;
	} far_reads;

	/* doorbell pages: touching page i makes one handler exit */
	void *doorbell;
	size_t doorbell_len;

	/* parked faults and the thread that retries them */
	pthread_mutex_t park_lock;
	pthread_cond_t park_cond;
	struct fl_parked *parked;
	size_t nparked, parked_cap;
	bool park_stop;
	bool park_started;
	pthread_t park_thread;
	struct fl_counters park_st;
	_Atomic uint64_t events_seen;	/* bumped after each event is processed */
	_Atomic uint32_t events_active;	/* events read, not yet applied */
	struct fl_unknown unknown[FL_UNKNOWN_SLOTS];	/* under park_lock */

	/* write protection and dirty tracking (wp.c) */
	struct wp_root *wp;
	_Atomic unsigned long wp_events_pending;	/* events read, not yet processed */

	/*
	 * Regions dropped by UNMAP events, kept a while (index writers only):
	 * mremap() sends REMAP(old -> new) and then UNMAP(old), and two
	 * handlers may apply them in either order; see event_remap().
	 */
#define FL_UNMAPPED_KEEP 8
	struct fl_unmapped {
		struct fl_region *r;		/* detached, unpublished, intact */
		uintptr_t start, end;		/* the range the UNMAP dropped */
	} unmapped[FL_UNMAPPED_KEEP];
	unsigned int unmapped_next;

	struct fl_numa numa;		/* numa.c: node count, placement on/off */

	/* far memory: NULL unless fl_runtime_opts.store was given (far.h) */
	struct fl_far *far;
	/* what far memory and write protection serve on the fault path */
	struct fl_hooks hooks;
	struct fl_counters pin_st;	/* fl_pin/fl_prefetch callers: atomic adds */
	/* region objects and page-state tables allocated: the metadata_bytes gauge */
	_Atomic int64_t meta_bytes;

	/* fork: set in the child, where the runtime has no threads */
	bool forked_child;
	struct fl_runtime *next_rt;	/* list of live runtimes for atfork */
};

/*
 * Zeroed memory for a struct with cache-line aligned members (the counter
 * blocks, the far memory's hot words): calloc() aligns to 16 bytes only,
 * and a member access through a misaligned pointer is undefined (UBSan
 * reports it once the allocator is glibc's, as under the shim). @size is a
 * multiple of @align: sizeof() of such a struct always is.
 */
static inline void *zalloc_aligned(size_t align, size_t size)
{
	void *p = aligned_alloc(align, size);

	if (p)
		memset(p, 0, size);
	return p;
}

static inline uintptr_t page_down(const struct fl_runtime *rt, uintptr_t a)
{
	return a & ~(uintptr_t)(rt->page_size - 1);
}

/* the uffd @r's range is registered with */
static inline const struct fl_uffd *region_uffd(const struct fl_runtime *rt,
						const struct fl_region *r)
{
	return (r->flags & FL_REGION_THREAD) ? &rt->tuffd : &rt->uffd;
}

static inline bool page_aligned(const struct fl_runtime *rt, uintptr_t a)
{
	return !(a & (rt->page_size - 1));
}

/* fault.c */
/*
 * fault_handle() - resolve one fault at @addr (any address in the page).
 * Context: a handler thread (or the forking thread for fork_prepare), RCU
 * registered, not in a read-side section. Never touches managed memory.
 */
void fault_handle(struct fl_fault_ctx *c, uintptr_t addr, bool write);

/*
 * fault_inthread() - resolve the fault at @addr in the faulting thread
 * (inthread.c's SIGBUS handler); @prot: a write to a present page that is
 * write-protected (far memory's dirty tracking). TR_DONE: installed, or
 * being produced by another thread: the access runs again; TR_RETRY: not
 * now (a writer or an event in flight, a page being produced): the access
 * runs again and faults again if it must; TR_NONE: not a fault of this
 * runtime; TR_BLOCK: a far-memory page-in, or a fill that may block,
 * which may wait (a store read, the evictor, the budget, the fill's own
 * I/O): the region's read reference is taken and
 * *@blk names the region; the caller leaves its section, then calls
 * fault_inthread_block(), which drops the reference. A writer of the
 * write-protected ranges at work (ckpt/wp.c's gate closed) is TR_BLOCK
 * too: the fault is served under wp.c's lock for reading.
 * Context: async-signal; inside a sigrcu section whose slot is @slot.
 */
enum fl_tres fault_inthread(struct fl_runtime *rt, int slot, uintptr_t addr, bool write,
			    bool prot, struct fl_region **blk);
/* Context: async-signal; no sigrcu section; the read reference of @r held */
void fault_inthread_block(struct fl_runtime *rt, int slot, struct fl_region *r,
			  uintptr_t addr, bool write, bool prot);

/*
 * region_make_resident_locked() - produce every page of [@a, @b) of @r (page
 * aligned, inside it) that the runtime alone could produce: the evicted ones,
 * and those a fill or copy pager makes (what the child of a fork, or the
 * program after an unregister, could not reproduce by itself).
 * Context: index writer lock held; @r published, or quiesced.
 */
void region_make_resident_locked(struct fl_fault_ctx *c, struct fl_region *r,
				 uintptr_t a, uintptr_t b);

/*
 * A resolver's own reads in flight (hooks.h), before anything that may
 * block: the rule of far/pagein.c ("asynchronous page-in").
 * fault_reads_complete() installs those that completed, never blocks;
 * fault_reads_drain() waits for all. Context: the thread that owns @c.
 */
static inline void fault_reads_complete(struct fl_fault_ctx *c)
{
	if (c->aio && c->aio->npending)
		c->rt->hooks.aio_complete(c);
}

/*
 * Clear the eventfd, then look for completions: in that order, a completion
 * that lands after the clear signals it again, so the next poll(2) cannot
 * miss it. Looking without clearing is safe too: the eventfd stays readable
 * and the next poll returns at once.
 */
static inline void fault_reads_clear(struct fl_fault_ctx *c)
{
	uint64_t x;

	if (c->aio && read(c->aio->efd, &x, sizeof(x)) < 0) {
		/* EAGAIN: nothing signalled */
	}
}

static inline void fault_reads_drain(struct fl_fault_ctx *c)
{
	if (c->aio && c->aio->npending)
		c->rt->hooks.aio_drain(c);
}

/* runtime.c: the core's part of fl_runtime_create() (runtime/create.c) */
int runtime_init(const struct fl_runtime_opts *o, struct fl_runtime_opts *opts,
		 struct fl_runtime **out);
int runtime_start(struct fl_runtime *rt, const struct fl_runtime_opts *opts);
void runtime_abort(struct fl_runtime *rt);

/* handler.c */
int handlers_start(struct fl_runtime *rt, const struct fl_runtime_opts *o);
void handlers_stop(struct fl_runtime *rt);
int fault_ctx_init(struct fl_fault_ctx *c, struct fl_runtime *rt, struct fl_counters *st);
void fault_ctx_fini(struct fl_fault_ctx *c);
/* the fields of /proc/self/task/<tid>/stat after the name (@buf holds them);
 * NULL if the thread is gone */
const char *task_stat(uint32_t tid, char *buf, size_t size);
bool window_busy(const struct fl_handler *h);

/* park.c: faults that must come again later, and the retrier */
void park_fault(struct fl_fault_ctx *c, uintptr_t start, size_t len);
bool unknown_defer(struct fl_fault_ctx *c, uintptr_t page);
bool events_read_applied(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end);
void events_wait_applied(struct fl_runtime *rt, uintptr_t start, uintptr_t end);
void park_event_done(struct fl_runtime *rt);
int park_start(struct fl_runtime *rt);
void park_stop(struct fl_runtime *rt);

/* events, processed by handler threads: each is an index writer */
void event_remove(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end);
void event_unmap(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end);
void event_remap(struct fl_fault_ctx *c, uintptr_t from, uintptr_t to, size_t len);

/* inthread.c: the second uffd, the SIGBUS handler, the runtimes it serves */
int inthread_open(struct fl_runtime *rt, const struct fl_runtime_opts *o);
int inthread_start(struct fl_runtime *rt);
void inthread_stop(struct fl_runtime *rt);
void inthread_release(struct fl_runtime *rt);
/*
 * inthread_refuse() - far memory cannot be served in-thread (far_start()):
 * -EOPNOTSUPP under FL_RESOLVE_THREAD; under AUTO, every region goes to
 * handler threads (0). Context: creation, before inthread_start().
 */
int inthread_refuse(struct fl_runtime *rt);
void inthread_stats_add(const struct fl_runtime *rt, struct fl_counters *sum);
void inthread_stats_reset(struct fl_runtime *rt);
/*
 * For the LD_PRELOAD shim, which keeps the runtime's SIGBUS handler in
 * place: inthread_chain_swap() - while it is installed, make @act (if
 * non-NULL) the handler it passes foreign SIGBUS signals to and return the
 * previous one in *@old (if non-NULL); false (nothing done) when it is not
 * installed. inthread_prefault() - make the never-touched pages of in-thread
 * regions in [a, a + len) present before a system call accesses them.
 */
/*
 * fault_events_busy() - an event of the in-thread uffd is read but not yet
 * applied, or about to be read: a fault that finds nothing where the event
 * may put something comes again. Context: async-signal-safe.
 */
bool fault_events_busy(struct fl_runtime *rt);
struct sigaction;
bool inthread_chain_swap(const struct sigaction *act, struct sigaction *old);
void inthread_prefault(uintptr_t a, size_t len);

/* stats.c */
void stats_sum(const struct fl_runtime *rt, struct fl_counters *sum);
/* add (relaxed loads) / zero one block of counters */
void stats_add_block(struct fl_counters *sum, const struct fl_counters *c);
void stats_zero_block(struct fl_counters *c);

#endif /* FL_INTERNAL_H */
