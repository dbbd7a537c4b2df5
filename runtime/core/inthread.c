/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * inthread.c - faults resolved by the faulting thread itself.
 *
 * A runtime created with fl_runtime_opts.resolve THREAD or AUTO opens a
 * second uffd with UFFD_FEATURE_SIGBUS and registers its in-thread regions
 * with it. A fault on one queues no message: the kernel raises SIGBUS
 * (BUS_ADRERR, the address in si_addr) in the faulting thread. Our handler
 * finds the region in the index, installs the page with the same resolve
 * code the handler threads run (core/fault.c, fault_inthread()) and
 * returns; the access runs again and finds its page. No hand-off, no
 * wake-up on another CPU: the cost is a signal delivery and return.
 *
 * What the handler may do: it interrupts arbitrary code of the program,
 * perhaps inside malloc, liburcu or the runtime's own writers. So inside
 * its section it takes no lock (the index is read inside a signal-safe
 * RCU section, sigrcu.h; an address in no region tries the index read
 * lock and never waits for it), allocates nothing (counters and a bounce
 * page per reader slot are set aside when the runtime starts), and waits
 * for nothing another thread must end: a page being produced, a writer
 * replacing the region, an event read but not yet applied: it returns,
 * the access faults again. What may wait (a far-memory page-in, a fill
 * that may block, a fault that wp.c's gate turned away) runs after the
 * section, under the region's read reference (fault_inthread_block()).
 * The other uffd's events (REMOVE, UNMAP, REMAP) are read by an event
 * thread of its own (handler.c) and applied by the same writers as the
 * first's.
 *
 * A SIGBUS that is not one of our faults (another signal code, an address
 * no in-thread runtime serves) goes to the handler the program had when
 * the first in-thread runtime started; with none, the default action.
 *
 * Lifetime: runtimes are published in a small table the handler reads
 * inside its section; fl_runtime_destroy() takes its runtime out and waits
 * for the sections in progress (sigrcu_synchronize) before anything the
 * handler may read is freed.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "internal.h"
#include "rcu.h"
#include "sigrcu.h"

#define FL_INTHREAD_RUNTIMES 64

static struct fl_runtime *_Atomic table[FL_INTHREAD_RUNTIMES];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned int ntable;		/* under table_lock */
/*
 * The program's handler, when we installed ours, or one it set since
 * through inthread_chain_swap() (the LD_PRELOAD shim's sigaction()). Two
 * copies: a setter writes the one the handler is not reading, then
 * switches (under table_lock).
 */
static struct sigaction prevs[2];
static _Atomic int prev_cur;
static _Atomic bool installed;		/* written under table_lock */

/*
 * glibc's own entry point: under the shim, sigaction() is the shim's, which
 * would take our handler for the program's.
 */
extern int __sigaction(int sig, const struct sigaction *act, struct sigaction *old);

/*
 * The kernel's page-fault error code: did the access write (@write), and
 * was the page present (@prot: a write-protect fault, far memory's dirty
 * tracking)? Only x86-64 is read; elsewhere every fault counts as a write
 * to a missing page, and far memory is not resolved in-thread
 * (inthread_open()).
 */
#if defined(__x86_64__)
#define FL_FAULT_KIND_KNOWN 1
#else
#define FL_FAULT_KIND_KNOWN 0
#endif

static void fault_kind(const void *uc, bool *write, bool *prot)
{
#if defined(__x86_64__)
	long long err = ((const ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR];

	*write = (err & 2) != 0;
	*prot = (err & 1) != 0;
#else
	(void)uc;
	*write = true;	/* a write gets its own page: right for a read too */
	*prot = false;
#endif
}

/*
 * The mask the program's handler would have run with had the kernel called
 * it: the interrupted code's and its sa_mask. Ours blocks every
 * asynchronous signal (see inthread_start()), and a handler that
 * longjmp()s out without restoring a mask would leave them blocked. SIGBUS
 * stays open: a fault of ours inside that handler must reach us. The raw
 * system call: under the shim, sigprocmask() is the shim's.
 */
static void program_mask(const void *uc, const struct sigaction *prev)
{
	sigset_t m = ((const ucontext_t *)uc)->uc_sigmask;

	for (int s = 1; s < NSIG; s++)
		if (sigismember(&prev->sa_mask, s) == 1)
			sigaddset(&m, s);
	sigdelset(&m, SIGBUS);
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &m, NULL, (size_t)(NSIG / 8));
}

/*
 * Not ours: do what would have happened without us. A fault the program
 * has no handler for repeats with the default action in place and kills
 * the process with the right address; a SIGBUS sent by kill(2) is raised
 * again the same way.
 */
static void chain(int sig, siginfo_t *si, void *uc)
{
	const struct sigaction prev = prevs[atomic_load_explicit(&prev_cur, memory_order_acquire)];
	struct sigaction dfl;

	if ((prev.sa_flags & SA_SIGINFO) ? prev.sa_sigaction != NULL :
	    (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN))
		program_mask(uc, &prev);
	if (prev.sa_flags & SA_SIGINFO) {
		if (prev.sa_sigaction) {
			prev.sa_sigaction(sig, si, uc);
			return;
		}
	} else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
		prev.sa_handler(sig);
		return;
	}
	if (prev.sa_handler == SIG_IGN && si->si_code <= 0)
		return;		/* sent, and ignored */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	__sigaction(SIGBUS, &dfl, NULL);
	atomic_store_explicit(&installed, false, memory_order_relaxed);
	if (si->si_code <= 0)
		raise(SIGBUS);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	struct fl_runtime *first = NULL, *rt = NULL;
	struct fl_region *blk = NULL;
	enum fl_tres res = TR_NONE;
	int saved = errno, slot;
	bool write, prot;

	slot = sigrcu_enter();
	if (slot < 0) {
		/* every reader slot is a live thread's: wait for one to go (a
		 * fault comes again; anything else is passed on uncounted) */
		if (si->si_code != BUS_ADRERR)
			chain(sig, si, uc);
		else
			sched_yield();
		errno = saved;
		return;
	}
	fault_kind(uc, &write, &prot);
	for (unsigned int i = 0; i < FL_INTHREAD_RUNTIMES && res == TR_NONE; i++) {
		rt = atomic_load_explicit(&table[i], memory_order_acquire);
		if (!rt || rt->forked_child)
			continue;
		first = first ? first : rt;
		/* ours are BUS_ADRERR; a sent one's SI_USER or SI_TKILL, a
		 * hardware-poisoned page's BUS_MCEERR_AR. A UFFDIO_POISON
		 * marker's is BUS_ADRERR too (6.18): fault_inthread() tells
		 * it by the region and the page word (PS_POISONED) */
		if (si->si_code == BUS_ADRERR)
			res = fault_inthread(rt, slot, (uintptr_t)si->si_addr, write, prot, &blk);
	}
	if (res == TR_NONE && first)
		STAT_INC(&first->tst[slot], thread_chained);
	sigrcu_exit(slot);
	/* Race: the region's reference, not the section, keeps @rt alive now:
	 * its destroy waits for the region's readers before it frees it */
	if (res == TR_BLOCK)
		fault_inthread_block(rt, slot, blk, (uintptr_t)si->si_addr, write, prot);
	if (res == TR_NONE)
		chain(sig, si, uc);
	errno = saved;
}

/* ---- runtimes ---- */

static bool handler_installed(void)
{
	return atomic_load_explicit(&installed, memory_order_relaxed);
}

/*
 * what the second uffd needs: SIGBUS, the events that keep the index true,
 * and POISON where the kernel has it: a failed fill (or store read) must
 * fail the access, not be retried for ever
 */
#define FL_TUFFD_WANTED (UFFD_FEATURE_SIGBUS | UFFD_FEATURE_EVENT_REMAP | \
			 UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP | \
			 UFFD_FEATURE_EXACT_ADDRESS | UFFD_FEATURE_POISON)

int inthread_open(struct fl_runtime *rt, const struct fl_runtime_opts *o)
{
	size_t stsz = (size_t)FL_SIGRCU_SLOTS * sizeof(struct fl_counters);
	size_t bsz;
	uint64_t want = FL_TUFFD_WANTED;
	int ret;

	rt->tuffd.fd = -1;
	rt->inthread_id = -1;
	rt->resolve = o->resolve;
	/* the forced locked tiers (benchmarks) are handler-thread tiers */
	if (o->resolve == FL_RESOLVE_HANDLER ||
	    (o->resolve == FL_RESOLVE_AUTO && o->tiers >= FL_TIERS_REGION)) {
		rt->resolve = FL_RESOLVE_HANDLER;
		return 0;
	}
	/*
	 * Far memory's write-protect faults (dirty tracking) must be told from
	 * missing ones: the fault's error code, read on x86-64 only. What else
	 * far memory needs in-thread, far_start() checks (inthread_refuse()).
	 */
	if (!(rt->uffd.kernel_features & UFFD_FEATURE_SIGBUS) ||
	    (o->store && !FL_FAULT_KIND_KNOWN)) {
		if (o->resolve == FL_RESOLVE_THREAD)
			return -EOPNOTSUPP;
		rt->resolve = FL_RESOLVE_HANDLER;
		return 0;
	}
	/* far memory: the put-back of a page whose write-back failed is a
	 * MOVE onto the region, and pages come back write-protected */
	if (o->store)
		want |= UFFD_FEATURE_MOVE | UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	/*
	 * fl_protect()'s write protection (FL_REGION_WP): the same WP mode as
	 * the first uffd's, so that a range's dirty tracking is one thing
	 * whichever uffd its region is on (PAGEMAP_SCAN's CHECK_WPASYNC asks
	 * the range's own uffd). A write-protect fault is told from a missing
	 * one by the error code: x86-64 only. Far memory's runtime offers no
	 * fl_protect().
	 */
	else if (FL_FAULT_KIND_KNOWN)
		want |= UFFD_FEATURE_PAGEFAULT_FLAG_WP |
			((o->flags & FL_RT_WP_ASYNC) ? UFFD_FEATURE_WP_ASYNC : 0);
	ret = uffd_open(&rt->tuffd, o->flags & FL_RT_USER_MODE_ONLY, want);
	if (ret)
		return ret;
	if (!uffd_has(&rt->tuffd, UFFD_FEATURE_SIGBUS | UFFD_FEATURE_EVENT_REMAP |
		      UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP) ||
	    (o->store && !uffd_has(&rt->tuffd, UFFD_FEATURE_MOVE))) {
		uffd_close(&rt->tuffd);
		if (o->resolve == FL_RESOLVE_THREAD)
			return -EOPNOTSUPP;
		rt->resolve = FL_RESOLVE_HANDLER;
		return 0;
	}
	rt->inthread_wp = !o->store && FL_FAULT_KIND_KNOWN &&
			  uffd_has(&rt->tuffd, UFFD_FEATURE_PAGEFAULT_FLAG_WP) &&
			  uffd_has(&rt->tuffd, UFFD_FEATURE_WP_ASYNC) ==
			  uffd_has(&rt->uffd, UFFD_FEATURE_WP_ASYNC);
	/* untouched until a thread takes the slot: virtual space only
	 * (a thread's pages are touched as far as its runs need them) */
	rt->tbounce_pages = FL_INTHREAD_RUN;
	bsz = ((size_t)FL_SIGRCU_SLOTS * rt->tbounce_pages) << rt->page_shift;
	rt->tst = mmap(NULL, stsz, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	rt->tbounce = mmap(NULL, bsz, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (rt->tst == MAP_FAILED || rt->tbounce == MAP_FAILED) {
		inthread_release(rt);
		return -ENOMEM;
	}
	madvise(rt->tbounce, bsz, MADV_DONTFORK);
	return 0;
}

int inthread_start(struct fl_runtime *rt)
{
	int ret = 0;

	if (rt->tuffd.fd < 0)
		return 0;
	pthread_mutex_lock(&table_lock);
	if (!installed) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_sigbus;
		/*
		 * SA_NODEFER: a fault inside the handler we chain to must
		 * reach us again: a SIGBUS the kernel forces while it is
		 * blocked kills the process. SA_ONSTACK: the program's
		 * alternate stack, if it keeps one for faults on a full stack.
		 *
		 * Race: every asynchronous signal is blocked while ours runs.
		 * A handler of the program's that interrupted us between our
		 * claim of a page (FILLING) and its install, and touched that
		 * page, would wait for a producer that cannot resume until it
		 * returns: it would fault for ever. A far-memory page-in keeps
		 * its run claimed for a whole store read. Blocked, the signal
		 * is delivered once we return, and finds the page in.
		 * Synchronous ones stay open: a fault raises them.
		 */
		sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK | SA_RESTART;
		sigfillset(&sa.sa_mask);
		sigdelset(&sa.sa_mask, SIGBUS);
		sigdelset(&sa.sa_mask, SIGSEGV);
		sigdelset(&sa.sa_mask, SIGILL);
		sigdelset(&sa.sa_mask, SIGFPE);
		sigdelset(&sa.sa_mask, SIGTRAP);
		sigdelset(&sa.sa_mask, SIGSYS);
		if (__sigaction(SIGBUS, &sa, &prevs[0]) < 0) {
			ret = -errno;
		} else {
			atomic_store_explicit(&prev_cur, 0, memory_order_release);
			atomic_store_explicit(&installed, true, memory_order_release);
		}
	}
	for (unsigned int i = 0; !ret && i < FL_INTHREAD_RUNTIMES; i++)
		if (!atomic_load_explicit(&table[i], memory_order_relaxed)) {
			rt->inthread_id = (int)i;
			/* publish: the handler reads a runtime whole or not at all */
			atomic_store_explicit(&table[i], rt, memory_order_release);
			ntable++;
			break;
		}
	if (!ret && rt->inthread_id < 0)
		ret = -EMFILE;
	pthread_mutex_unlock(&table_lock);
	return ret;
}

void inthread_stop(struct fl_runtime *rt)
{
	if (rt->inthread_id < 0)
		return;
	pthread_mutex_lock(&table_lock);
	atomic_store_explicit(&table[rt->inthread_id], NULL, memory_order_relaxed);
	rt->inthread_id = -1;
	/* Race: a handler that loaded the runtime still reads it: grace period
	 * before the caller frees anything */
	sigrcu_synchronize();
	if (!--ntable && atomic_load_explicit(&installed, memory_order_relaxed)) {
		struct sigaction cur;

		/* give the program its handler back, unless it changed it since */
		if (__sigaction(SIGBUS, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
		    cur.sa_sigaction == on_sigbus) {
			__sigaction(SIGBUS, &prevs[atomic_load(&prev_cur)], NULL);
			atomic_store_explicit(&installed, false, memory_order_relaxed);
		}
	}
	pthread_mutex_unlock(&table_lock);
}

FL_EXPORT int fl_sigbus_chain(const struct sigaction *act, struct sigaction *old)
{
	return inthread_chain_swap(act, old) ? 0 : -ENOENT;
}

FL_EXPORT int fl_prefault(const void *addr, size_t len)
{
	if (len && (uintptr_t)addr + len < (uintptr_t)addr)
		return -EINVAL;
	inthread_prefault((uintptr_t)addr, len);
	return 0;
}

bool inthread_chain_swap(const struct sigaction *act, struct sigaction *old)
{
	bool ours;

	pthread_mutex_lock(&table_lock);
	ours = atomic_load_explicit(&installed, memory_order_relaxed);
	if (ours) {
		int cur = atomic_load_explicit(&prev_cur, memory_order_relaxed);

		if (old)
			*old = prevs[cur];
		if (act) {
			prevs[!cur] = *act;
			atomic_store_explicit(&prev_cur, !cur, memory_order_release);
		}
	}
	pthread_mutex_unlock(&table_lock);
	return ours;
}

/*
 * Make the pages of [a, a + len) that in-thread regions have not produced
 * yet present, by an access in user mode (a fault we resolve), so that a
 * system call that reads or writes them does not fail EFAULT. Far memory
 * with dirty tracking: a clean page is write-protected, and a system
 * call's write into it would fail the same way; those pages (and missing
 * ones) are touched by a write that changes nothing (an atomic add of 0,
 * which a concurrent store of the program's cannot be lost to). So is
 * every page of an FL_REGION_WP region: whether it is armed is wp.c's to
 * know, and a write that changes nothing only makes it count as written
 * (its callback runs, as for the system call's own write). The
 * lookup is done inside a section, the touch after it: a page-in may wait
 * for the store or the evictor, and must not hold up grace periods.
 */
void inthread_prefault(uintptr_t a, size_t len)
{
	long ps = sysconf(_SC_PAGESIZE);
	uintptr_t end = a + len, p;

	if (!len || end < a || !handler_installed())
		return;
	for (p = a & ~(uintptr_t)(ps - 1); p < end; p += (uintptr_t)ps) {
		enum { NONE, READ, WRITE } touch = NONE;
		int slot = sigrcu_enter();

		if (slot < 0)
			return;
		for (unsigned int i = 0; i < FL_INTHREAD_RUNTIMES; i++) {
			struct fl_runtime *rt = atomic_load_explicit(&table[i], memory_order_acquire);
			struct fl_region *r;
			bool tracked;
			uint32_t v;

			if (!rt || rt->forked_child)
				continue;
			r = index_lookup(fl_rcu_dereference(rt->index.cur), p);
			if (!r || !(r->flags & FL_REGION_THREAD))
				continue;
			v = atomic_load_explicit(&r->pstate[(p - r->start) >> rt->page_shift],
						 memory_order_relaxed);
			tracked = rt->hooks.register_modes & UFFDIO_REGISTER_MODE_WP;
			if ((r->flags & FL_REGION_WP) ||
			    (tracked && (ps_state(v) != PS_RESIDENT || (v & PS_INSTORE))))
				touch = WRITE;
			else if (ps_state(v) != PS_RESIDENT)
				touch = READ;
			break;
		}
		sigrcu_exit(slot);
		if (touch == WRITE)
			__atomic_fetch_add((volatile char *)p, 0, __ATOMIC_RELAXED);	/* SIGBUS: ours */
		else if (touch == READ)
			(void)*(volatile const char *)p;				/* SIGBUS: ours */
	}
}

int inthread_refuse(struct fl_runtime *rt)
{
	if (rt->resolve == FL_RESOLVE_THREAD)
		return -EOPNOTSUPP;
	rt->resolve = FL_RESOLVE_HANDLER;
	inthread_release(rt);
	return 0;
}

void inthread_release(struct fl_runtime *rt)
{
	if (rt->tst && rt->tst != MAP_FAILED)
		munmap(rt->tst, (size_t)FL_SIGRCU_SLOTS * sizeof(struct fl_counters));
	if (rt->tbounce && rt->tbounce != MAP_FAILED)
		munmap(rt->tbounce,
		       ((size_t)FL_SIGRCU_SLOTS * rt->tbounce_pages) << rt->page_shift);
	rt->tst = NULL;
	rt->tbounce = NULL;
	rt->inthread_wp = false;
	uffd_close(&rt->tuffd);
}

void inthread_stats_add(const struct fl_runtime *rt, struct fl_counters *sum)
{
	unsigned int n = sigrcu_used();

	if (!rt->tst)
		return;
	for (unsigned int i = 0; i < n; i++)
		stats_add_block(sum, &rt->tst[i]);
}

void inthread_stats_reset(struct fl_runtime *rt)
{
	unsigned int n = sigrcu_used();

	if (!rt->tst)
		return;
	for (unsigned int i = 0; i < n; i++)
		stats_zero_block(&rt->tst[i]);
}
