/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * runtime.c - the core's part of runtime create (runtime/create.c has the
 * rest), destroy, the region API, the writer protocol, events, and the fork
 * policy.
 *
 * The writer protocol (every change to the index: register, unregister,
 * resize, and the program's own munmap/mremap seen as events):
 *
 *   1. index_write_begin: index_lock for writing, index_seq odd.
 *   2. publish an index without the regions being changed ("victims").
 *   3. write-lock each victim: no new tier-2 reader gets in (no starvation),
 *      and we sleep until the present ones leave; then detach it.
 *   4. wait for an RCU grace period: every tier-1 fault that found a victim
 *      in an older index has finished, its page installed.
 *   5. only now touch the kernel (UFFDIO_UNREGISTER, munmap, mremap) and
 *      build the replacement regions from the victims' page states.
 *   6. publish the index with the replacements.
 *   7. free the victims (typesafe pool: reused only by later writers).
 *   8. index_write_end: count even, unlock.
 *
 * Why 4 before 5: a handler that looked a region up speculatively may still
 * be inside UFFDIO_COPY. If we unregistered first and the program mapped
 * something new in the range, it would receive a stale page. A fault in a
 * victim's range during 2..6 finds no region while the count is odd, so it
 * goes to tier 3 and waits on index_lock for the new version.
 *
 * Registering a new region needs none of 2..7: nothing can be using it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "rcu.h"
#include "sigrcu.h"
#include "testhooks.h"

/* live runtimes, for the fork handlers */
static pthread_mutex_t rt_list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fl_runtime *rt_list;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* unpublished arrays are freed at the next grace period; bound them */
#define RETIRED_MAX 32

FL_EXPORT void fl_runtime_opts_init(struct fl_runtime_opts *o)
{
	if (!o)
		return;
	const char *e = getenv("FAULTLINE_RESOLVE");

	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->tiers = FL_TIERS_ADAPTIVE;
	o->resolve = FL_RESOLVE_HANDLER;
	/* a value fl_runtime_create() refuses (-EINVAL), not one it ignores */
	if (e && *e)
		o->resolve = !strcmp(e, "handler") ? FL_RESOLVE_HANDLER :
			     !strcmp(e, "thread") ? FL_RESOLVE_THREAD :
			     !strcmp(e, "auto") ? FL_RESOLVE_AUTO : (enum fl_resolve)-1;
}

FL_EXPORT void fl_region_opts_init(struct fl_region_opts *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->pager = FL_PAGER_ZERO;
	o->fault_around = FL_FAULT_AROUND_ADAPTIVE;
}

/* ---- fork policy ----
 *
 * The uffd is opened without UFFD_FEATURE_EVENT_FORK, so the child's copies
 * of managed mappings are ordinary anonymous memory: a page missing in the
 * child is zero-filled by the child's kernel. That is right for every page
 * whose content is zeros anyway (zero pager, REMOVEd pages, the part of a
 * copy pager beyond its source), and wrong for every other page not yet
 * produced. So before fork() we produce exactly those (copy-pager pages
 * within the source, fill-pager pages) in the forking thread, holding every
 * runtime's index writer lock so that no region changes meanwhile. The
 * child then reads exactly the parent's data, never zeros; the price is
 * paid only by regions with non-zero pagers, and only once per page.
 * In the child the runtime has no threads: it is marked unusable, every
 * call returns -ENODEV and fl_runtime_destroy() only frees memory.
 * Serving the child through EVENT_FORK was rejected: the child's pages
 * would be produced later from the parent's pagers, after the parent may
 * have changed them (and far memory would have to snapshot its store).
 */
/*
 * A runtime inherited through an earlier fork (forked_child) has no threads
 * and no uffd: the three handlers leave it alone. A child that forks again
 * must not wait for its events, and must not close its old uffd number,
 * which the child may have reused for another file since.
 */
static void atfork_prepare(void)
{
	pthread_mutex_lock(&rt_list_lock);
	for (struct fl_runtime *rt = rt_list; rt; rt = rt->next_rt) {
		struct fl_fault_ctx c;
		struct fl_index *x;
		bool have_ctx;

		if (rt->forked_child)
			continue;

		/* a MADV_DONTNEED the program made before fork() is applied
		 * before evicted pages are read back (events_read_applied());
		 * applying it takes the index lock we are about to hold */
		events_wait_applied(rt, 0, UINTPTR_MAX);
		if (rt->hooks.fork_prepare)
			rt->hooks.fork_prepare(rt);	/* evictor paused between batches */
		index_write_begin(&rt->index);
		x = rt->index.cur;
		have_ctx = fault_ctx_init(&c, rt, &rt->wst) == 0;
		c.no_throttle = true;
		c.events_ordered = true;
		/* far memory: evicted pages are not in the child's copy either */
		for (size_t i = 0; have_ctx && i < x->n; i++)
			if (x->e[i].r->pager != FL_PAGER_ZERO || rt->hooks.page_in)
				region_make_resident_locked(&c, x->e[i].r, x->e[i].r->start,
							    x->e[i].r->end);
		if (have_ctx)
			fault_ctx_fini(&c);
	}
	fl_rcu_fork_prepare();
}

static void atfork_parent(void)
{
	fl_rcu_fork_parent();
	for (struct fl_runtime *rt = rt_list; rt; rt = rt->next_rt) {
		if (rt->forked_child)
			continue;
		index_write_end(&rt->index);
		if (rt->hooks.fork_done)
			rt->hooks.fork_done(rt);
	}
	pthread_mutex_unlock(&rt_list_lock);
}

static void atfork_child(void)
{
	fl_rcu_fork_child();	/* before any grace period of the child */
	sigrcu_fork_child();
	for (struct fl_runtime *rt = rt_list; rt; rt = rt->next_rt) {
		if (rt->forked_child)
			continue;
		rt->forked_child = true;
		uffd_close(&rt->uffd);
		uffd_close(&rt->tuffd);
		index_fork_child(&rt->index);
		if (rt->hooks.fork_done)	/* this thread took it: it may unlock it */
			rt->hooks.fork_done(rt);
	}
	pthread_mutex_unlock(&rt_list_lock);
}

static void atfork_register(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- create / destroy ---- */

static int opts_copy(struct fl_runtime_opts *dst, const struct fl_runtime_opts *o)
{
	fl_runtime_opts_init(dst);
	if (!o)
		return 0;
	if (o->size < offsetof(struct fl_runtime_opts, flags) + sizeof(o->flags) ||
	    o->size > sizeof(*dst))
		return -EINVAL;
	memcpy(dst, o, o->size);
	if (dst->tiers > FL_TIERS_GLOBAL || dst->handlers > FL_MAX_HANDLERS ||
	    (unsigned int)dst->resolve > FL_RESOLVE_AUTO ||
	    /* a signal handler takes no lock: tier 1 only (inthread.c) */
	    (dst->resolve == FL_RESOLVE_THREAD && dst->tiers >= FL_TIERS_REGION) ||
	    (dst->flags & ~(FL_RT_NO_PIN | FL_RT_USER_MODE_ONLY | FL_RT_WP_ASYNC |
			    FL_RT_EVICT_NO_MOVE)))
		return -EINVAL;
	/* far memory */
	if (dst->store && (dst->flags & FL_RT_WP_ASYNC))
		return -EINVAL;	/* async WP would hide the writes that make a page dirty */
	if (dst->store && (dst->budget < (size_t)sysconf(_SC_PAGESIZE) ||
			   dst->budget_high_pct > 100 || dst->budget_low_pct > 100 ||
			   (dst->budget_high_pct && dst->budget_low_pct > dst->budget_high_pct)))
		return -EINVAL;
	if (dst->handler_cpus) {
		if (!dst->handlers)
			return -EINVAL;
		for (unsigned int i = 0; i < dst->handlers; i++)
			if (dst->handler_cpus[i] < -1 || dst->handler_cpus[i] >= CPU_SETSIZE)
				return -EINVAL;
	}
	return 0;
}

/*
 * The core of a runtime, in three steps around the subsystems that hook
 * into it (runtime/create.c): runtime_init() opens the uffd and sets up
 * the index; the subsystems start and set their hooks; runtime_start()
 * starts the handler threads, which read the hooks from their start.
 */
int runtime_init(const struct fl_runtime_opts *o, struct fl_runtime_opts *opts,
		 struct fl_runtime **out)
{
	struct fl_runtime *rt;
	long pg;
	int ret;

	ret = opts_copy(opts, o);
	if (ret)
		return ret;
	pthread_once(&atfork_once, atfork_register);

	rt = zalloc_aligned(_Alignof(struct fl_runtime), sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	pg = sysconf(_SC_PAGESIZE);
	rt->page_size = (size_t)pg;
	rt->page_shift = (unsigned int)__builtin_ctzl((unsigned long)pg);
	rt->tiers = opts->tiers;
	rt->flags = opts->flags;
	rt->uffd.fd = -1;
	rt->tuffd.fd = -1;
	rt->inthread_id = -1;
	pthread_mutex_init(&rt->park_lock, NULL);
	pthread_cond_init(&rt->park_cond, NULL);

	ret = index_init(&rt->index);
	if (ret)
		goto err_free;
	ret = uffd_open(&rt->uffd, opts->flags & FL_RT_USER_MODE_ONLY, FL_UFFD_WANTED |
			((opts->flags & FL_RT_WP_ASYNC) ? UFFD_FEATURE_WP_ASYNC : 0));
	if (ret)
		goto err_index;
	ret = inthread_open(rt, opts);
	if (ret) {
		uffd_close(&rt->uffd);
		goto err_index;
	}
	numa_probe(rt);		/* before handlers_start: they take their node */
	*out = rt;
	return 0;

err_index:
	index_fini(&rt->index);
err_free:
	pthread_mutex_destroy(&rt->park_lock);
	pthread_cond_destroy(&rt->park_cond);
	free(rt);
	return ret;
}

int runtime_start(struct fl_runtime *rt, const struct fl_runtime_opts *opts)
{
	int ret = handlers_start(rt, opts);

	if (!ret)
		ret = inthread_start(rt);
	if (ret)
		return ret;
	pthread_mutex_lock(&rt_list_lock);
	rt->next_rt = rt_list;
	rt_list = rt;
	pthread_mutex_unlock(&rt_list_lock);
	return 0;
}

/* undo runtime_init() and whatever started after it; no region exists */
void runtime_abort(struct fl_runtime *rt)
{
	if (rt->hooks.stop)
		rt->hooks.stop(rt);
	inthread_stop(rt);
	handlers_stop(rt);
	if (rt->hooks.release)
		rt->hooks.release(rt);
	free(rt->handlers);
	uffd_close(&rt->uffd);
	inthread_release(rt);
	if (rt->hooks.protect_release)
		rt->hooks.protect_release(rt);
	index_fini(&rt->index);
	pthread_mutex_destroy(&rt->park_lock);
	pthread_cond_destroy(&rt->park_cond);
	free(rt->parked);
	free(rt);
}

static void remove_region_locked(struct fl_runtime *rt, struct fl_region *r,
				 bool kernel_ops, bool readback);
static void unmapped_free_locked(struct fl_runtime *rt);

FL_EXPORT void fl_runtime_destroy(struct fl_runtime *rt)
{
	struct fl_runtime **pp;

	if (!rt)
		return;
	pthread_mutex_lock(&rt_list_lock);
	for (pp = &rt_list; *pp; pp = &(*pp)->next_rt)
		if (*pp == rt) {
			*pp = rt->next_rt;
			break;
		}
	pthread_mutex_unlock(&rt_list_lock);

	if (!rt->forked_child && rt->hooks.stop)
		rt->hooks.stop(rt);	/* no eviction while the regions go */
	index_write_begin(&rt->index);
	while (rt->index.cur->n) {
		struct fl_region *r = rt->index.cur->e[0].r;

		if (rt->forked_child) {
			/* no handlers, no uffd: only our own bookkeeping */
			if (index_publish_locked(&rt->index, &r, 1, NULL, 0))
				break;
			if (r->flags & R_OWNED)
				munmap((void *)r->start, r->end - r->start);
			region_free(r);
			continue;
		}
		remove_region_locked(rt, r, true, true);
	}
	if (!rt->forked_child)
		index_synchronize_locked(&rt->index);
	index_write_end(&rt->index);

	/* no SIGBUS handler reads this runtime past here (the fork child's
	 * never did: it skips runtimes marked forked) */
	inthread_stop(rt);
	if (!rt->forked_child)
		handlers_stop(rt);
	unmapped_free_locked(rt);	/* no handler left to apply an event */
	if (rt->hooks.release)
		rt->hooks.release(rt);
	free(rt->handlers);
	uffd_close(&rt->uffd);
	inthread_release(rt);
	if (rt->hooks.protect_release)
		rt->hooks.protect_release(rt);
	index_fini(&rt->index);
	/* in a fork child the parent's retrier may have been waiting on the
	 * condition: glibc's destroy would wait for that thread forever */
	if (!rt->forked_child) {
		pthread_mutex_destroy(&rt->park_lock);
		pthread_cond_destroy(&rt->park_cond);
	}
	free(rt->parked);
	free(rt);
}

/* ---- regions ---- */

/*
 * Which thread resolves the region's faults: FL_REGION_THREAD set on the
 * way out if the faulting thread does, neither flag otherwise. In-thread
 * resolution serves the zero and copy pagers, a fill pager whose callback
 * says it is signal-safe (it runs in the signal handler), and write
 * protection where the second uffd has it (inthread_open(): rt->inthread_wp).
 */
static int region_resolve(const struct fl_runtime *rt, struct fl_region_opts *o)
{
	bool can = (o->pager != FL_PAGER_FILL || (o->flags & FL_REGION_FILL_SIGNAL_SAFE)) &&
		   (!(o->flags & FL_REGION_WP) || rt->inthread_wp);
	bool thread;

	if ((o->flags & FL_REGION_THREAD) && (o->flags & FL_REGION_HANDLER))
		return -EINVAL;
	if (o->flags & FL_REGION_HANDLER) {
		thread = false;
	} else if ((o->flags & FL_REGION_THREAD) || rt->resolve == FL_RESOLVE_THREAD) {
		if (rt->tuffd.fd < 0)
			return rt->resolve == FL_RESOLVE_HANDLER ? -EINVAL : -EOPNOTSUPP;
		if (!can)
			return -EOPNOTSUPP;
		thread = true;
	} else {
		thread = rt->resolve == FL_RESOLVE_AUTO && rt->tuffd.fd >= 0 && can;
	}
	o->flags &= ~(FL_REGION_THREAD | FL_REGION_HANDLER);
	if (thread)
		o->flags |= FL_REGION_THREAD;
	return 0;
}

static int region_opts_copy(const struct fl_runtime *rt, struct fl_region_opts *dst,
			    const struct fl_region_opts *o)
{
	fl_region_opts_init(dst);
	if (!o)
		return region_resolve(rt, dst);
	if (o->size < offsetof(struct fl_region_opts, flags) + sizeof(o->flags) ||
	    o->size > sizeof(*dst))
		return -EINVAL;
	memcpy(dst, o, o->size);
	switch (dst->pager) {
	case FL_PAGER_ZERO:
		break;
	case FL_PAGER_COPY:
		if (dst->src_len && !dst->src)
			return -EINVAL;
		break;
	case FL_PAGER_FILL:
		if (!dst->fill)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	if (dst->fault_around != FL_FAULT_AROUND_ADAPTIVE &&
	    (dst->fault_around < rt->page_size || dst->fault_around > FL_FAULT_AROUND_MAX ||
	     (dst->fault_around & (dst->fault_around - 1))))
		return -EINVAL;
	if (dst->flags & ~(FL_REGION_FILL_NONBLOCK | FL_REGION_WP | FL_REGION_THREAD |
			   FL_REGION_HANDLER | FL_REGION_FILL_SIGNAL_SAFE))
		return -EINVAL;
	if ((dst->flags & FL_REGION_FILL_SIGNAL_SAFE) && dst->pager != FL_PAGER_FILL)
		return -EINVAL;
	/* FL_REGION_WP (wp.c) needs uffd-wp on anonymous memory */
	if ((dst->flags & FL_REGION_WP) &&
	    !uffd_has(&rt->uffd, UFFD_FEATURE_PAGEFAULT_FLAG_WP))
		return -EOPNOTSUPP;
	return region_resolve(rt, dst);
}

static int range_check(const struct fl_runtime *rt, uintptr_t a, size_t len)
{
	if (!len || !page_aligned(rt, a) || !page_aligned(rt, len))
		return -EINVAL;
	if (a + len < a)
		return -EOVERFLOW;
	return 0;
}

/*
 * range_mapped() - -ENOMEM unless every page of [a, a + len) is mapped.
 * UFFDIO_REGISTER accepts a range with holes (it registers the mappings it
 * finds and fails, EINVAL, only when it finds none): a region spanning a
 * hole would stand for memory no mapping backs, and whatever the program
 * maps there later would not be registered. msync(MS_ASYNC) does nothing
 * to anonymous memory but fails ENOMEM on a hole. errno is left as found.
 */
static int range_mapped(uintptr_t a, size_t len)
{
	int saved = errno, ret = 0;

	if (msync((void *)a, len, MS_ASYNC) < 0 && errno == ENOMEM)
		ret = -ENOMEM;
	errno = saved;
	return ret;
}

static void region_set_opts(struct fl_region *r, const struct fl_region_opts *o)
{
	r->pager = o->pager;
	r->src = o->src;
	r->src_len = o->pager == FL_PAGER_COPY ? o->src_len : 0;
	r->fill = o->fill;
	r->fill_arg = o->fill_arg;
	r->fault_around = o->fault_around;
	r->flags = o->flags;
}

/*
 * region_piece() - a new, unpublished region standing for [a, b) of @r,
 * placed at @at, @len bytes long (>= b - a: the rest is new, absent), with
 * @r's attributes and page states. Context: writer; @r quiescent (steps 3-4).
 */
static struct fl_region *region_piece(struct fl_runtime *rt, const struct fl_region *r,
				      uintptr_t a, uintptr_t b, uintptr_t at, size_t len)
{
	struct fl_region *n = region_alloc(len >> rt->page_shift, &rt->meta_bytes);
	size_t first = (a - r->start) >> rt->page_shift;
	size_t np = (b - a) >> rt->page_shift;

	if (!n)
		return NULL;
	n->start = at;
	n->end = at + len;
	n->pgoff = r->pgoff + (a - r->start);
	n->pager = r->pager;
	n->src = r->src;
	n->src_len = r->src_len;
	n->fill = r->fill;
	n->fill_arg = r->fill_arg;
	n->fault_around = r->fault_around;
	n->flags = r->flags;
	/*
	 * Far memory: the piece keeps its pages' store slots. A piece that
	 * ends before @r does gets no more than its own: the slots beyond b
	 * belong to the pieces after it, and a piece that grew into them
	 * (fl_region_resize) would overwrite their evicted pages.
	 */
	if (r->store_extent > a - r->start) {
		n->store_off = r->store_off + (a - r->start);
		n->store_extent = r->store_extent - (a - r->start);
		if (b < r->end && n->store_extent > b - a)
			n->store_extent = b - a;
	}
	for (size_t i = 0; i < np; i++) {
		uint32_t v = atomic_load_explicit(&r->pstate[first + i], memory_order_relaxed);

		/* untouched words stay untouched: sparse tables stay sparse */
		if (v)
			atomic_store_explicit(&n->pstate[i], v & ~PS_WAITERS,
					      memory_order_relaxed);
	}
	return n;
}

/* steps 2-4 of the writer protocol for @nv victims */
static int victims_quiesce_locked(struct fl_runtime *rt, struct fl_region **v, size_t nv)
{
	int ret = index_publish_locked(&rt->index, v, nv, NULL, 0);

	if (ret)
		return ret;
	STAT_INC(&rt->wst, index_writes);
	FL_TEST_PAUSE(FL_PAUSE_WRITER_PUBLISHED, v[0]->start);
	for (size_t i = 0; i < nv; i++)
		region_write_lock(v[i]);
	index_synchronize_locked(&rt->index);
	STAT_INC(&rt->wst, grace_periods);
	FL_TEST_PAUSE(FL_PAUSE_WRITER_SYNCED, v[0]->start);
	return 0;
}

/* undo victims_quiesce_locked(): the victims come back as they were */
static void victims_restore_locked(struct fl_runtime *rt, struct fl_region **v, size_t nv)
{
	for (size_t i = 0; i < nv; i++)
		region_write_unlock(v[i]);
	/* cannot fail for lack of memory in practice: the array shrank by nv
	 * entries a moment ago; if it does, the regions are lost to the index
	 * but stay registered, and their faults are served zeros */
	if (!index_publish_locked(&rt->index, NULL, 0, v, nv))
		STAT_INC(&rt->wst, index_writes);
}

/* steps 6-7: publish the replacements, free the victims */
static int victims_replace_locked(struct fl_runtime *rt, struct fl_region **v, size_t nv,
				  struct fl_region **fresh, size_t nf)
{
	int ret;

	for (size_t i = 0; i < nf; i++)
		region_attach(fresh[i]);
	ret = index_publish_locked(&rt->index, NULL, 0, fresh, nf);
	if (ret)
		return ret;
	STAT_INC(&rt->wst, index_writes);
	for (size_t i = 0; i < nv; i++) {
		region_detach_locked(v[i]);
		region_free(v[i]);
	}
	return 0;
}

/*
 * unmapped_keep_locked() - remember @r, unpublished and detached, as dropped
 * by an UNMAP of [start, end); the oldest remembered region is freed to make
 * room. unmapped_take_locked() - take back the region whose dropped range is
 * exactly [start, end) (what mremap's UNMAP of its old range drops), or
 * NULL. Exactly: a range reused since must never resurrect an old region.
 * Context: index writer lock held.
 */
static void unmapped_keep_locked(struct fl_runtime *rt, struct fl_region *r,
				 uintptr_t start, uintptr_t end)
{
	struct fl_unmapped *u = &rt->unmapped[rt->unmapped_next++ % FL_UNMAPPED_KEEP];

	/* no REMAP took it back: its dropped pages are gone for good */
	if (u->r && rt->hooks.range_gone)
		rt->hooks.range_gone(rt, u->r, u->start, u->end);
	region_free(u->r);
	*u = (struct fl_unmapped){ r, start, end };
}

static struct fl_region *unmapped_take_locked(struct fl_runtime *rt, uintptr_t start,
					      uintptr_t end)
{
	for (unsigned int i = 0; i < FL_UNMAPPED_KEEP; i++) {
		struct fl_unmapped *u = &rt->unmapped[i];
		struct fl_region *r = u->r;

		if (r && u->start == start && u->end == end) {
			*u = (struct fl_unmapped){ NULL, 0, 0 };
			return r;
		}
	}
	return NULL;
}

static void unmapped_free_locked(struct fl_runtime *rt)
{
	for (unsigned int i = 0; i < FL_UNMAPPED_KEEP; i++) {
		region_free(rt->unmapped[i].r);
		rt->unmapped[i] = (struct fl_unmapped){ NULL, 0, 0 };
	}
}

static void maybe_reclaim_locked(struct fl_runtime *rt)
{
	if (rt->index.nretired >= RETIRED_MAX) {
		index_synchronize_locked(&rt->index);
		STAT_INC(&rt->wst, grace_periods);
	}
}

static uint64_t register_modes(const struct fl_runtime *rt, const struct fl_region *r)
{
	/* far memory's dirty tracking (hooks), fl_protect()'s (wp.c) */
	return UFFDIO_REGISTER_MODE_MISSING | rt->hooks.register_modes |
	       ((r->flags & FL_REGION_WP) ? UFFDIO_REGISTER_MODE_WP : 0);
}

/*
 * Race: munmap() and mremap() return once *a* handler has taken their UNMAP
 * event off the queue, and the program may map the same addresses again at
 * once (a fresh mapping usually lands in the hole just left). A handler
 * preempted between taking the event and applying it would then apply it
 * to the new region registered meanwhile: drop it from the index, and keep
 * it for a REMAP to take back. Its faults were served zeros, and an
 * mremap() of it brought that back with the zero pages (test-events, "a
 * read at the new address", 1 run in ~300 under load). So a registration
 * first waits until every event a handler has read over its range is
 * applied. Context: no runtime lock held (applying an event takes the
 * index lock); not from a handler thread.
 */
static void register_wait_events(struct fl_runtime *rt, uintptr_t a, size_t len)
{
	events_wait_applied(rt, a, a + len);
}

static int register_locked(struct fl_runtime *rt, uintptr_t a, size_t len,
			   const struct fl_region_opts *o, unsigned int rflags)
{
	struct fl_region *r;
	int ret;

	if (index_overlaps(rt->index.cur, a, a + len, NULL))
		return -EEXIST;
	r = region_alloc(len >> rt->page_shift, &rt->meta_bytes);
	if (!r)
		return -ENOMEM;
	r->start = a;
	r->end = a + len;
	region_set_opts(r, o);
	r->flags |= rflags;
	ret = rt->hooks.region_init ? rt->hooks.region_init(rt, r) : 0;
	if (ret)
		goto err_free;
	ret = uffd_register(region_uffd(rt, r), a, len, register_modes(rt, r), NULL);
	if (ret)
		goto err_free;
	region_attach(r);
	ret = index_publish_locked(&rt->index, NULL, 0, &r, 1);
	if (ret)
		goto err_unregister;
	STAT_INC(&rt->wst, index_writes);
	STAT_INC(&rt->wst, regions_registered);
	maybe_reclaim_locked(rt);
	return 0;

err_unregister:
	uffd_unregister(region_uffd(rt, r), a, len);
err_free:
	region_detach_locked(r);
	region_free(r);
	return ret;
}

FL_EXPORT int fl_region_register(struct fl_runtime *rt, void *addr, size_t len,
				 const struct fl_region_opts *o)
{
	struct fl_region_opts opts;
	int ret;

	if (!rt)
		return -EINVAL;
	ret = range_check(rt, (uintptr_t)addr, len);
	if (!ret)
		ret = region_opts_copy(rt, &opts, o);
	if (ret)
		return ret;
	if (rt->forked_child)
		return -ENODEV;
	ret = range_mapped((uintptr_t)addr, len);
	if (ret)
		return ret;
	register_wait_events(rt, (uintptr_t)addr, len);
	index_write_begin(&rt->index);
	ret = register_locked(rt, (uintptr_t)addr, len, &opts, 0);
	index_write_end(&rt->index);
	return ret;
}

FL_EXPORT int fl_region_map(struct fl_runtime *rt, size_t len,
			    const struct fl_region_opts *o, void **addr)
{
	struct fl_region_opts opts;
	void *p;
	int ret;

	if (!rt || !addr || !len)
		return -EINVAL;
	if (len & (rt->page_size - 1))
		return -EINVAL;
	if (len > ((size_t)1 << 56))
		return -EOVERFLOW;
	ret = region_opts_copy(rt, &opts, o);
	if (ret)
		return ret;
	if (rt->forked_child)
		return -ENODEV;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	register_wait_events(rt, (uintptr_t)p, len);
	index_write_begin(&rt->index);
	ret = register_locked(rt, (uintptr_t)p, len, &opts, R_OWNED);
	index_write_end(&rt->index);
	if (ret) {
		munmap(p, len);
		return ret;
	}
	*addr = p;
	return 0;
}

/* the whole of @r goes; kernel_ops false when the kernel already unmapped it */
/*
 * region_readback_locked() - far memory: a region registered over the
 * program's own mapping outlives its registration, and once [@a, @b) of it
 * leaves the runtime nothing could produce the evicted pages there again:
 * read them back first. Regions made by fl_region_map() are unmapped
 * instead: nothing to save. Context: index writer lock held, @r quiesced (unpublished and
 * write-locked: the evictor, which works under the region read lock, can
 * take no page out any more), and the far gate held (fl_region_unregister,
 * fl_region_resize) or the evictor stopped (fl_runtime_destroy): no
 * non-MOVE zap can land while we read pages back.
 */
static void region_readback_locked(struct fl_runtime *rt, struct fl_region *r,
				   uintptr_t a, uintptr_t b)
{
	struct fl_fault_ctx c;

	if (!rt->hooks.page_in || (r->flags & R_OWNED))
		return;
	if (fault_ctx_init(&c, rt, &rt->wst)) {
		STAT_INC(&rt->wst, far_store_errors);	/* no bounce buffer: pages stay out */
		return;
	}
	c.no_throttle = true;
	c.no_zap_coming = true;	/* callers hold the gate, or stopped the evictor */
	c.events_ordered = true;	/* index writer: no event can be applied now */
	region_make_resident_locked(&c, r, a, b);
	fault_ctx_fini(&c);
}

/* @readback false: the caller drops the contents (far memory: not read back) */
static void remove_region_locked(struct fl_runtime *rt, struct fl_region *r,
				 bool kernel_ops, bool readback)
{
	uintptr_t a = r->start;
	size_t len = r->end - r->start;

	if (victims_quiesce_locked(rt, &r, 1)) {
		/* no memory for a smaller array: take the slow way, no unpublish.
		 * Everything below is still safe: readers that found @r are
		 * drained, new ones are held by the write lock and the odd count
		 * until we drop it; but the array then keeps @r, so retry. */
		region_write_lock(r);
		index_synchronize_locked(&rt->index);
		while (index_publish_locked(&rt->index, &r, 1, NULL, 0))
			usleep(1000);
		index_synchronize_locked(&rt->index);
	}
	if (rt->hooks.protect_forget)	/* protections end with the region */
		rt->hooks.protect_forget(rt, a, a + len, false);
	if (kernel_ops) {
		if (readback)
			region_readback_locked(rt, r, a, a + len);	/* before the range stops being ours */
		uffd_unregister(region_uffd(rt, r), a, len);
		if (r->flags & R_OWNED)
			munmap((void *)a, len);
	}
	if (rt->hooks.region_gone)
		rt->hooks.region_gone(rt, r);
	region_detach_locked(r);
	region_free(r);
	STAT_INC(&rt->wst, regions_unregistered);
}

static void gate_lock(struct fl_runtime *rt)
{
	if (rt->hooks.gate_lock)
		rt->hooks.gate_lock(rt);
}

static void gate_unlock(struct fl_runtime *rt)
{
	if (rt->hooks.gate_unlock)
		rt->hooks.gate_unlock(rt);
}

static struct fl_region *find_start_locked(struct fl_runtime *rt, uintptr_t a)
{
	struct fl_region *r = index_lookup(rt->index.cur, a);

	return r && r->start == a ? r : NULL;
}

/*
 * Collect up to @max regions overlapping [start, end) of the current index.
 * Context: index lock held (read or write).
 */
static size_t overlapping_locked(struct fl_runtime *rt, uintptr_t start, uintptr_t end,
				 struct fl_region **out, size_t max)
{
	const struct fl_index *x = rt->index.cur;
	size_t n = 0;

	for (size_t i = 0; i < x->n && n < max; i++)
		if (x->e[i].start < end && x->e[i].end > start)
			out[n++] = x->e[i].r;
	return n;
}

static int unregister_common(struct fl_runtime *rt, void *addr, bool readback)
{
	struct fl_region *r;

	if (!rt)
		return -EINVAL;
	if (!page_aligned(rt, (uintptr_t)addr))
		return -EINVAL;
	if (rt->forked_child)
		return -ENODEV;
	gate_lock(rt);	/* before the index lock: see far/evict.c, non-MOVE step 4 */
	index_write_begin(&rt->index);
	r = find_start_locked(rt, (uintptr_t)addr);
	if (r)
		remove_region_locked(rt, r, true, readback);
	index_write_end(&rt->index);
	gate_unlock(rt);
	return r ? 0 : -ENOENT;
}

FL_EXPORT int fl_region_unregister(struct fl_runtime *rt, void *addr)
{
	return unregister_common(rt, addr, true);
}

FL_EXPORT int fl_region_unregister_discard(struct fl_runtime *rt, void *addr)
{
	return unregister_common(rt, addr, false);
}

FL_EXPORT int fl_region_resize(struct fl_runtime *rt, void *addr, size_t new_len)
{
	uintptr_t a = (uintptr_t)addr;
	struct fl_region *r, *n = NULL;
	size_t old_len;
	int ret;

	if (!rt)
		return -EINVAL;
	ret = range_check(rt, a, new_len);
	if (ret)
		return ret;
	if (rt->forked_child)
		return -ENODEV;
	gate_lock(rt);	/* before the index lock: see far/evict.c, non-MOVE step 4 */
	index_write_begin(&rt->index);
	r = find_start_locked(rt, a);
	if (!r) {
		ret = -ENOENT;
		goto out;
	}
	old_len = r->end - r->start;
	if (new_len == old_len)
		goto out;
	if (rt->hooks.page_in && new_len > r->store_extent) {
		ret = -ENOSPC;	/* beyond the region's store extent */
		goto out;
	}
	if (new_len > old_len && index_overlaps(rt->index.cur, a + old_len, a + new_len, r)) {
		ret = -EEXIST;
		goto out;
	}
	ret = victims_quiesce_locked(rt, &r, 1);
	if (ret)
		goto out;
	/* a shrink gives the tail back to the program: its evicted pages too */
	if (new_len < old_len)
		region_readback_locked(rt, r, a + new_len, a + old_len);
	n = region_piece(rt, r, a, a + (new_len < old_len ? new_len : old_len), a, new_len);
	if (!n) {
		ret = -ENOMEM;
		goto restore;
	}
	if (new_len < old_len) {
		/* the tail's faults drained above: unregister, then unmap */
		if (rt->hooks.protect_forget)
			rt->hooks.protect_forget(rt, a + new_len, a + old_len, false);
		uffd_unregister(region_uffd(rt, r), a + new_len, old_len - new_len);
		if (r->flags & R_OWNED)
			munmap((void *)(a + new_len), old_len - new_len);
		/* the tail's pages stop counting as resident, its slots go */
		if (rt->hooks.range_gone)
			rt->hooks.range_gone(rt, r, a + new_len, a + old_len);
	} else {
		if ((r->flags & R_OWNED) &&
		    mremap(addr, old_len, new_len, 0) == MAP_FAILED) {
			ret = -errno == -EFAULT ? -ENOMEM : -errno;
			goto restore;
		}
		/* the caller's extension: wholly mapped, as for register */
		if (!(r->flags & R_OWNED)) {
			ret = range_mapped(a + old_len, new_len - old_len);
			if (ret)
				goto restore;
		}
		ret = uffd_register(region_uffd(rt, r), a + old_len, new_len - old_len,
				    register_modes(rt, r), NULL);
		if (ret) {
			if (r->flags & R_OWNED)
				munmap((void *)(a + old_len), new_len - old_len);
			/* the kernel's -EINVAL for a hole reads better as "not mapped" */
			if (ret == -EINVAL && !(r->flags & R_OWNED))
				ret = -ENOMEM;
			goto restore;
		}
	}
	/*
	 * The kernel has the new length now (tail unregistered and unmapped,
	 * or extension mapped and registered): there is no way back. Only the
	 * new index array can fail to allocate; wait for memory rather than
	 * republish the victim with a length the kernel no longer agrees with
	 * (test-inject injects exactly that).
	 */
	while (victims_replace_locked(rt, &r, 1, &n, 1))
		usleep(1000);
	ret = 0;
	STAT_INC(&rt->wst, regions_resized);
	goto out;

restore:
	if (n) {
		region_detach_locked(n);
		region_free(n);
	}
	victims_restore_locked(rt, &r, 1);
out:
	index_write_end(&rt->index);
	gate_unlock(rt);
	return ret;
}

/*
 * One region @r overlapping [a, b): cut the overlap out of it (step numbers:
 * the writer protocol of doc/architecture.md). The pieces outside are new
 * regions carrying @r's page states and store slots: nothing is read back
 * or counted again for them. Context: index writer lock and far gate held.
 */
static int carve_locked(struct fl_runtime *rt, struct fl_region *r, uintptr_t a, uintptr_t b,
			bool readback)
{
	uintptr_t ca = r->start > a ? r->start : a, cb = r->end < b ? r->end : b;
	struct fl_region *fresh[2];
	size_t nf = 0;
	int ret;

	if (ca == r->start && cb == r->end) {
		remove_region_locked(rt, r, true, readback);
		return 0;
	}
	ret = victims_quiesce_locked(rt, &r, 1);
	if (ret)
		return ret;
	if (r->start < ca)
		fresh[nf++] = region_piece(rt, r, r->start, ca, r->start, ca - r->start);
	if (r->end > cb)
		fresh[nf++] = region_piece(rt, r, cb, r->end, cb, r->end - cb);
	for (size_t i = 0; i < nf; i++)
		if (!fresh[i]) {
			for (size_t j = 0; j < nf; j++)
				region_free(fresh[j]);
			victims_restore_locked(rt, &r, 1);
			return -ENOMEM;
		}
	/*
	 * Quiesced: no fault resolves on @r and the evictor takes nothing
	 * from it. Read back (the gate keeps non-MOVE zaps out), then stop
	 * write protection, then unregister: a fault that raced us on the
	 * cut range is woken by the unregister and refaults as plain memory.
	 */
	if (readback)
		region_readback_locked(rt, r, ca, cb);
	if (rt->hooks.protect_forget)
		rt->hooks.protect_forget(rt, ca, cb, false);
	uffd_unregister(region_uffd(rt, r), ca, cb - ca);
	if (r->flags & R_OWNED)
		munmap((void *)ca, cb - ca);
	if (rt->hooks.range_gone)	/* not resident any more, slots freed */
		rt->hooks.range_gone(rt, r, ca, cb);
	/* as in fl_region_resize(): the kernel has changed, no way back */
	while (victims_replace_locked(rt, &r, 1, fresh, nf))
		usleep(1000);
	STAT_INC(&rt->wst, regions_resized);
	return 0;
}

FL_EXPORT int fl_range_unregister(struct fl_runtime *rt, void *addr, size_t len,
				  unsigned int flags)
{
	uintptr_t a = (uintptr_t)addr;
	struct fl_region *r;
	int ret, n = 0;

	if (!rt)
		return -EINVAL;
	ret = range_check(rt, a, len);
	if (ret)
		return ret;
	if (flags & ~FL_UNREGISTER_DISCARD)
		return -EINVAL;
	if (rt->forked_child)
		return -ENODEV;
	/*
	 * Nothing there is the common answer (the shim asks before every
	 * mprotect to anything but read-write): give it from the read side, without
	 * the gate or a writer section that would send faults down the locked
	 * path. A region registered after this look is the caller's race.
	 */
	pthread_rwlock_rdlock(&rt->index.lock);
	n = (int)overlapping_locked(rt, a, a + len, &r, 1);
	pthread_rwlock_unlock(&rt->index.lock);
	if (!n)
		return -ENOENT;
	n = 0;
	gate_lock(rt);	/* before the index lock: see far/evict.c, non-MOVE step 4 */
	index_write_begin(&rt->index);
	/* each turn takes one region out of [a, a + len): the loop ends */
	while (overlapping_locked(rt, a, a + len, &r, 1)) {
		ret = carve_locked(rt, r, a, a + len, !(flags & FL_UNREGISTER_DISCARD));
		if (ret)
			break;
		n++;
	}
	index_write_end(&rt->index);
	gate_unlock(rt);
	return ret ? ret : n ? 0 : -ENOENT;
}

FL_EXPORT int fl_region_count(const struct fl_runtime *rt)
{
	struct fl_runtime *m = (struct fl_runtime *)rt;
	int n;

	if (!rt)
		return -EINVAL;
	pthread_rwlock_rdlock(&m->index.lock);
	n = (int)m->index.cur->n;
	pthread_rwlock_unlock(&m->index.lock);
	return n;
}

/* ---- events: the program changed its own mappings ---- */

/*
 * The program unmapped [start, end) (munmap, or mmap over it): the kernel
 * already dropped the pages and the registration. Regions wholly inside go;
 * regions cut by it keep the pieces outside.
 */
void event_unmap(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end)
{
	struct fl_runtime *rt = c->rt;
	struct fl_region *v[8], *fresh[2];

	index_write_begin(&rt->index);
	if (rt->hooks.protect_forget)	/* the kernel dropped the memory */
		rt->hooks.protect_forget(rt, start, end, true);
	for (;;) {
		size_t nv = overlapping_locked(rt, start, end, v, 1), nf = 0;
		struct fl_region *r = v[0];

		if (!nv)
			break;
		if (victims_quiesce_locked(rt, &r, 1))
			break;
		if (r->start < start)
			fresh[nf++] = region_piece(rt, r, r->start, start, r->start,
						   start - r->start);
		if (r->end > end)
			fresh[nf++] = region_piece(rt, r, end, r->end, end, r->end - end);
		for (size_t i = 0; i < nf; i++)
			if (!fresh[i]) {
				/* cannot keep the pieces: drop them from the
				 * runtime, their faults are then served zeros */
				for (size_t j = 0; j < nf; j++)
					if (fresh[j]) {
						region_free(fresh[j]);
						fresh[j] = NULL;
					}
				nf = 0;
				STAT_INC(c->st, ioctl_errors);
				break;
			}
		/* publish the pieces, keep the victim: a REMAP of this very
		 * range may still be on its way (see event_remap) */
		for (size_t i = 0; i < nf; i++)
			region_attach(fresh[i]);
		if (index_publish_locked(&rt->index, NULL, 0, fresh, nf)) {
			for (size_t i = 0; i < nf; i++) {
				region_detach_locked(fresh[i]);
				region_free(fresh[i]);
			}
			victims_restore_locked(rt, &r, 1);
			break;
		}
		STAT_INC(&rt->wst, index_writes);
		region_detach_locked(r);
		unmapped_keep_locked(rt, r, r->start > start ? r->start : start,
				     r->end < end ? r->end : end);
		STAT_INC(&rt->wst, regions_unregistered);
	}
	index_write_end(&rt->index);
}

/*
 * The program moved [from, from + len) to @to (mremap). The kernel moved the
 * pages and kept the registration: move the index entries and page states
 * with them.
 */
void event_remap(struct fl_fault_ctx *c, uintptr_t from, uintptr_t to, size_t len)
{
	struct fl_runtime *rt = c->rt;
	uintptr_t end = from + len;
	struct fl_region *v[1], *fresh[3];
	struct fl_region *moved[64];
	size_t nmoved = 0;

	if (rt->hooks.protect_remap)	/* protections follow the pages */
		rt->hooks.protect_remap(c, from, to, len);
	index_write_begin(&rt->index);
	for (;;) {
		size_t nf = 0;
		struct fl_region *r;
		uintptr_t a, b;
		bool skip = false;

		if (!overlapping_locked(rt, from, end, v, 1)) {
			/*
			 * Race: mremap() sends REMAP(from -> to) and then
			 * UNMAP(from); another handler may have applied the
			 * UNMAP first and dropped the region we are to move.
			 * It kept it: move what it dropped.
			 */
			if (nmoved || !(r = unmapped_take_locked(rt, from, end)))
				break;
			a = r->start > from ? r->start : from;
			b = r->end < end ? r->end : end;
			fresh[0] = region_piece(rt, r, a, b, to + (a - from), b - a);
			region_free(r);
			if (!fresh[0] || victims_replace_locked(rt, NULL, 0, fresh, 1)) {
				region_free(fresh[0]);
				STAT_INC(c->st, ioctl_errors);
				break;
			}
			STAT_INC(&rt->wst, regions_registered);
			break;
		}
		r = v[0];
		for (size_t i = 0; i < nmoved; i++)
			skip |= moved[i] == r;
		if (skip)
			break;	/* moved onto itself: done */
		if (victims_quiesce_locked(rt, &r, 1))
			break;
		a = r->start > from ? r->start : from;
		b = r->end < end ? r->end : end;
		if (r->start < a)
			fresh[nf++] = region_piece(rt, r, r->start, a, r->start, a - r->start);
		fresh[nf++] = region_piece(rt, r, a, b, to + (a - from), b - a);
		if (r->end > b)
			fresh[nf++] = region_piece(rt, r, b, r->end, b, r->end - b);
		for (size_t i = 0; i < nf; i++)
			if (!fresh[i]) {
				for (size_t j = 0; j < nf; j++)
					if (fresh[j])
						region_free(fresh[j]);
				nf = 0;
				STAT_INC(c->st, ioctl_errors);
				break;
			}
		if (victims_replace_locked(rt, &r, 1, fresh, nf)) {
			victims_restore_locked(rt, &r, 1);
			break;
		}
		for (size_t i = 0; i < nf && nmoved < 64; i++)
			if (fresh[i]->start >= to && fresh[i]->start < to + len)
				moved[nmoved++] = fresh[i];
		if (!nf)
			break;
	}
	index_write_end(&rt->index);
}

/*
 * The program dropped [start, end) (MADV_DONTNEED, MADV_REMOVE): those pages
 * read zeros from now on. Not an index writer: the index read lock keeps the
 * regions still while we change page words. A page being filled right now
 * is marked; its filler settles it as DISCARDED (see fault.c finish_run).
 */
void event_remove(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end)
{
	struct fl_runtime *rt = c->rt;
	const struct fl_index *x;
	long zapped = 0;

	if (rt->hooks.own_remove && rt->hooks.own_remove(c, start, end))
		return;	/* far memory: the evictor's zap, the pages stay EVICTED */
	if (rt->hooks.protect_remove)	/* before the zap, pages intact */
		rt->hooks.protect_remove(c, start, end);
	pthread_rwlock_rdlock(&rt->index.lock);
	x = rt->index.cur;
	for (size_t i = 0; i < x->n; i++) {
		struct fl_region *r = x->e[i].r;
		uintptr_t a, b;

		if (x->e[i].start >= end || x->e[i].end <= start)
			continue;
		a = r->start > start ? r->start : page_down(rt, start);
		b = r->end < end ? r->end : end;
		for (uintptr_t p = a; p < b; p += rt->page_size) {
			_Atomic uint32_t *w = &r->pstate[(p - r->start) >> rt->page_shift];
			uint32_t v = atomic_load_explicit(w, memory_order_relaxed), nv;

			do {
				unsigned int st = ps_state(v);

				if (st == PS_FILLING) {
					nv = v | PS_DISCARD_PENDING;
					STAT_INC(c->st, remove_races);
				} else if (st == PS_EVICTED && (v & PS_RESCUED)) {
					/* far memory: hold it while its rescued
					 * copy goes (far_rescued_gone) */
					nv = (v & ~PS_STATE_MASK) | PS_FILLING;
				} else if (st == PS_DISCARDED ||
					   (st == PS_ABSENT && r->pager == FL_PAGER_ZERO)) {
					break;	/* reads zero already: no write */
				} else {
					/* a poisoned page is a zero page again */
					nv = (v & ~(PS_STATE_MASK | PS_POISONED)) | PS_DISCARDED;
				}
			} while (!atomic_compare_exchange_weak_explicit(w, &v, nv,
					memory_order_release, memory_order_relaxed));
			/* far memory: a page under eviction may have sleepers */
			if (ps_state(v) == PS_EVICTING && (v & PS_WAITERS))
				page_wake(w);
			/* far memory: the kernel frees it; off the budget's count */
			zapped += ps_state(v) == PS_RESIDENT;
			/* far memory: we hold the rescued page: its copy goes,
			 * then it is DISCARDED (evict.c far_rescued_gone) */
			if (ps_state(v) == PS_EVICTED && (v & PS_RESCUED))
				rt->hooks.rescued_gone(rt, r, p);
		}
	}
	pthread_rwlock_unlock(&rt->index.lock);
	if (zapped && rt->hooks.gone)
		rt->hooks.gone(rt, zapped);
	/* a fault on a zapped page may have been taken for a duplicate of a
	 * RESIDENT page and dropped before we got here: let it fault again */
	uffd_wake(&rt->uffd, start, end - start);
}
