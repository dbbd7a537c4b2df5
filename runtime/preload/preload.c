/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * preload.c - libfaultline-preload.so: bring an unmodified program's large
 * anonymous memory under the runtime.
 *
 * The shim is linked from the same objects as libfaultline (the static
 * library, whole), not a second implementation; this file only decides
 * which memory to hand to fl_region_register() and when to take it back.
 *
 * What is managed
 *   - mmap(NULL, len >= FAULTLINE_MIN_REGION, PROT_READ|PROT_WRITE,
 *     MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) called through the PLT: allocators
 *     that map their own arenas (jemalloc, CPython's obmalloc) and programs
 *     that map buffers directly; MAP_FIXED ones too (a commit over a
 *     reservation: the JVM). File, shared, hugetlb, stack, populated and
 *     not exactly read-write mappings are passed through untouched.
 *   - memory an mprotect() makes read-write inside a private anonymous
 *     mapping the program made (a commit into a PROT_NONE reservation: V8),
 *     in pieces of FAULTLINE_MIN_REGION or more; and managed memory stays
 *     read-write: see mprotect() below.
 *   - malloc blocks of FAULTLINE_MIN_REGION or more. glibc serves them with
 *     its *internal* mmap (a direct call inside libc), which interposing the
 *     mmap symbol never sees; glibc >= 2.34 has no hooks left either. So the
 *     malloc family is interposed: a large request gets its own page-aligned
 *     anonymous mapping, registered as a region, and recorded in a lock-free
 *     table keyed by the pointer (blk_*). Everything else goes to the
 *     allocator the program would have had without the shim (the next
 *     malloc in the lookup order: jemalloc, tcmalloc or glibc; see "the
 *     allocators" below). free(), realloc() and malloc_usable_size()
 *     look a pointer up only if it is page aligned (ours always are; an
 *     allocator's small chunks almost never), and never read memory around
 *     a pointer to decide: a header in front of the block could not tell
 *     another allocator's chunks from ours safely. calloc needs no memset:
 *     fresh mappings read zeros, and the zero pager produces zeros.
 *
 * Recursion and the runtime's own memory
 *   shim_depth (thread-local, initial-exec: no __tls_get_addr, no malloc)
 *   is raised while the shim runs its own code and calls into the runtime,
 *   and set for good on every thread the runtime creates (pthread_create
 *   is interposed only to the extent of marking threads started while the
 *   shim is active on the calling thread, or by a marked thread). With it
 *   raised, every interposed call goes straight to the real function (for
 *   the malloc family: glibc's): the runtime's own allocations (index
 *   arrays, page-state tables, the 4 MiB bounce buffers, liburcu's and
 *   liburing's) are never managed, never the program allocator's, and a
 *   handler thread never touches managed memory through the shim.
 *
 * The real functions: the program's malloc family through dlsym(RTLD_NEXT)
 * at its first call, the runtime's own through glibc's exported __libc_*
 * entry points (see "the allocators"); the mmap family through
 * dlsym(RTLD_NEXT) in the constructor, with raw system calls for calls
 * that come before it (other libraries' constructors).
 *
 * Fork: see shim_atfork_*; exec: see FAULTLINE_CHILDREN; exit: see
 * shim_fini(). Threads: the range table has a mutex, the block table is
 * lock-free; the runtime is created once, under rt_lock.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "faultline.h"
#include "live.h"
#include "live-shim.h"
#include "options.h"
#include "thread-mode.h"

#define SHIM_EXPORT __attribute__((visibility("default")))
#define SHIM_HIDDEN __attribute__((visibility("hidden")))
#define TLS_IE __attribute__((tls_model("initial-exec")))

extern char **environ;

/* glibc's own allocator entry points (exported by libc.so.6) */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
static void shim_free(void *ptr);

/* the runtime's own allocator (--wrap, see "the allocators") */
void *__wrap_malloc(size_t n);
void __wrap_free(void *p);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
int __wrap_posix_memalign(void **out, size_t align, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
/* jemalloc's calls that take a pointer (answered for the shim's blocks) */
void dallocx(void *ptr, int flags);
void sdallocx(void *ptr, size_t size, int flags);
size_t sallocx(const void *ptr, int flags);
void *rallocx(void *ptr, size_t size, int flags);
size_t xallocx(void *ptr, size_t size, size_t extra, int flags);

/* ---- state ---- */

enum shim_state {
	SHIM_UNINIT = 0,	/* constructor not run yet: pass everything through */
	SHIM_ACTIVE,		/* manage eligible memory */
	SHIM_OFF,		/* disabled, failed, no kernel faults: pass through */
};

static _Atomic int shim_state;
static struct fl_preload_options opt;
static size_t page_size = 4096;
static size_t min_region = 1u << 20;

static TLS_IE __thread int shim_depth;		/* >0: pass through */
static TLS_IE __thread int shim_rt_thread;	/* a thread the runtime started */

static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
/*
 * The interval lines (publisher thread) and the last line (destructor)
 * go through stats_lock; after the last one no interval line follows it.
 */
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static bool stats_final;
static struct fl_runtime *rt;			/* set once, under rt_lock */
static bool rt_tried;
static bool atfork_done;	/* the shim's fork handlers are registered */

/* shim counters (relaxed atomics: statistics only) */
static _Atomic uint64_t n_mmaps, n_blocks, n_bytes_now, n_bytes_peak, n_unmanaged;
static _Atomic uint64_t n_register_errors;
static _Atomic uint64_t n_heap_trims, n_heap_trim_ns;	/* FAULTLINE_TRIM_HEAP */
static uint64_t heap_trim_evictions;	/* far_evictions at the last trim tick */
static int (*libc_trim)(size_t);	/* glibc's malloc_trim */
#define TRIM_TICK_MS	250
static uint64_t start_ns;	/* CLOCK_MONOTONIC at the constructor */
static uint64_t shim_budget;	/* the runtime's budget, bytes (0: none) */

/* real mmap family; NULL until the constructor resolved them */
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static void *(*real_mremap)(void *, size_t, size_t, int, ...);
static int (*real_madvise)(void *, size_t, int);
static int (*real_mprotect)(void *, size_t, int);
static int (*real_pthread_create)(pthread_t *, const pthread_attr_t *,
				  void *(*)(void *), void *);

bool shim_bypass(void)
{
	return shim_depth || shim_rt_thread;
}

void *shim_next_sym(const char *name)
{
	void *p;

	/* as in nx_resolve(): what dlsym() allocates (its error string, say)
	 * is glibc's, which frees it itself with its own free() */
	shim_depth++;
	p = dlsym(RTLD_NEXT, name);
	shim_depth--;
	return p;
}

/* ---- logging: write(2) of a stack buffer, usable anywhere ---- */

__attribute__((format(printf, 2, 3)))
static void shim_log(int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (level > opt.log)
		return;
	n = snprintf(buf, sizeof(buf), "faultline[%d]: ", (int)getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	(void)!write(STDERR_FILENO, buf, (size_t)n);
}

static void opt_warn(void *arg, const char *msg)
{
	shim_log(FL_OPT_LOG_WARN, "warning: %s", msg);
}

/* ---- the real mmap family, safe before the constructor ---- */

static void *sys_mmap(void *a, size_t len, int prot, int flags, int fd, off_t off)
{
	if (real_mmap)
		return real_mmap(a, len, prot, flags, fd, off);
	return (void *)syscall(SYS_mmap, a, len, prot, flags, fd, off);
}

static int sys_munmap(void *a, size_t len)
{
	if (real_munmap)
		return real_munmap(a, len);
	return (int)syscall(SYS_munmap, a, len);
}

static void *sys_mremap(void *a, size_t old, size_t new, int flags, void *to)
{
	if (real_mremap)
		return real_mremap(a, old, new, flags, to);
	return (void *)syscall(SYS_mremap, a, old, new, flags, to);
}

static inline size_t page_up(size_t n)
{
	return (n + page_size - 1) & ~(page_size - 1);
}

/* ---- the runtime, created on the first managed mapping ---- */

static void shim_atfork_prepare(void);
static void shim_atfork_parent(void);
static void shim_atfork_child(void);
static void live_begin(uint64_t budget);

/*
 * Far memory: FAULTLINE_BUDGET with a store from FAULTLINE_STORE.
 *
 * The store is a file written with io_uring by the runtime's own threads
 * (the evictor writes, handlers read): those threads have shim_depth set
 * for good, so the rings liburing maps (shared mappings of the ring fd,
 * never eligible anyway), the per-thread ring state and the runtime's
 * staging buffers are never managed: no recursion, and no handler or
 * evictor ever touches managed memory through the store.
 *
 *   - empty: an unnamed O_TMPFILE (mode 0600) in $TMPDIR, else /tmp;
 *   - a directory: such an unnamed file in it;
 *   - memcached://...: a pool of memcached servers (far/store/memcached.c);
 *   - anything else (%p is the pid): that file, created with mode 0600 and
 *     truncated, and left in place at exit. A named file serves one process
 *     only: the shim takes an exclusive flock on it first, and a second
 *     process with the same setting (a child that execs with the inherited
 *     environment) is told so and gets an unnamed file instead. Without
 *     the lock the second one would truncate the first one's evicted pages.
 *
 * Nothing here fails the program: a store that cannot be opened falls
 * back to the default one, and without any the memory is managed with no
 * budget; each case is a warning naming the variable and its value.
 */
static struct fl_store *shim_store;	/* lives as long as the runtime: forever */
static char store_path[4096];
static int store_lock_fd = -1;		/* a named store's flock, held as long */

/* %p -> pid; Return: false if it does not fit */
static bool store_path_expand(const char *s)
{
	size_t w = 0;

	for (; *s; s++) {
		if (s[0] == '%' && s[1] == 'p') {
			int n = snprintf(store_path + w, sizeof(store_path) - w, "%d",
					 (int)getpid());

			if (n < 0 || (size_t)n >= sizeof(store_path) - w)
				return false;
			w += (size_t)n;
			s++;
		} else {
			if (w + 1 >= sizeof(store_path))
				return false;
			store_path[w++] = *s;
		}
	}
	store_path[w] = '\0';
	return true;
}

/* Context: shim_depth raised, rt_lock held. Return: 0 or -errno; @why set. */
static int store_open_named(struct fl_store **out, const char **why)
{
	struct stat sb;
	int fd, ret;

	if (!store_path_expand(opt.store)) {
		*why = "path too long";
		return -ENAMETOOLONG;
	}
	if (stat(store_path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		ret = fl_store_file_create(store_path, 0, out);
		*why = ret == -EOPNOTSUPP ? "the file system has no unnamed files (O_TMPFILE)" :
		       strerror(-ret);
		return ret;
	}
	/* kept open (and locked) as long as the store; close-on-exec */
	fd = open(store_path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		*why = strerror(-ret);
		return ret;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ret = -errno;
		close(fd);
		*why = ret == -EWOULDBLOCK ? "in use by another process (add %p to the "
		       "name, or give a directory)" : strerror(-ret);
		return ret;
	}
	/* evicted pages are the program's memory: no one else may read them
	 * (an existing regular file keeps its mode through O_TRUNC) */
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 077) &&
	    fchmod(fd, sb.st_mode & 0700) < 0) {
		ret = -errno;
		close(fd);
		*why = "readable by others, and its mode cannot be changed";
		return ret;
	}
	ret = fl_store_file_create(store_path, 0, out);
	if (ret) {
		close(fd);
		*why = strerror(-ret);
		return ret;
	}
	store_lock_fd = fd;
	return 0;
}

/* Context: shim_depth raised, rt_lock held. Sets ro->store/budget or not. */
static void shim_farmem_setup(struct fl_runtime_opts *ro)
{
	const char *why;
	int ret;

	if (!opt.budget)
		return;	/* a store alone: shim_init() said it is ignored */
	if (!strncmp(opt.store, "memcached://", 12)) {
		/* a pool: nothing on disk, no lock (each store has its own
		 * random id in every key, so processes sharing the URL never
		 * meet); without it the pages would go to a local file the
		 * user did not ask for: say so */
		char err[256];

		ret = fl_store_memcached_create(opt.store, 0, &shim_store, err, sizeof(err));
		if (!ret)
			snprintf(store_path, sizeof(store_path), "%s", opt.store);	/* for the log */
		else
			shim_log(FL_OPT_LOG_WARN, "warning: FAULTLINE_STORE='%s': %s; using an "
				 "unnamed file in $TMPDIR or /tmp", opt.store, err);
	} else if (opt.store[0]) {
		ret = store_open_named(&shim_store, &why);
		if (ret) {
			shim_log(FL_OPT_LOG_WARN, "warning: FAULTLINE_STORE='%s': %s; using an "
				 "unnamed file in $TMPDIR or /tmp", opt.store, why);
			store_path[0] = '\0';
		}
	}
	if (!shim_store) {
		ret = fl_store_file_create(NULL, 0, &shim_store);
		if (ret) {
			char v[32];

			fl_opt_format(&opt, fl_opt_find("FAULTLINE_BUDGET", 0), v, sizeof(v));
			shim_log(FL_OPT_LOG_WARN, "warning: FAULTLINE_BUDGET=%s: no backing store "
				 "(an unnamed file in $TMPDIR or /tmp: %s); memory is managed "
				 "without a budget", v, strerror(-ret));
			shim_store = NULL;
			return;
		}
	}
	ro->store = shim_store;
	ro->budget = (size_t)opt.budget;
}

static void shim_farmem_drop(struct fl_runtime_opts *ro)
{
	fl_store_destroy(shim_store);
	shim_store = NULL;
	if (store_lock_fd >= 0)
		close(store_lock_fd);
	store_lock_fd = -1;
	ro->store = NULL;
	ro->budget = 0;
}

/* Context: shim_depth raised. Return: the runtime, or NULL (then SHIM_OFF). */
static struct fl_runtime *shim_runtime(void)
{
	struct fl_runtime_opts ro;
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_runtime *r = NULL;
	int ret;

	if (__atomic_load_n(&rt, __ATOMIC_ACQUIRE))
		return rt;
	pthread_mutex_lock(&rt_lock);
	if (rt || rt_tried)
		goto out;
	rt_tried = true;
	fl_runtime_opts_init(&ro);
	ro.handlers = (unsigned int)opt.handlers;
	ro.tiers = (enum fl_tier_policy)opt.tiers;
	/* the option table's words are the enum's, in its order; set even
	 * when "handler": fl_runtime_opts_init() read the variable too */
	ro.resolve = (enum fl_resolve)opt.resolve;
	if (ro.resolve != FL_RESOLVE_HANDLER)
		shim_thread_mode_set(true);
	if (!opt.pin)
		ro.flags |= FL_RT_NO_PIN;
	if (opt.evict == 1)
		ro.flags |= FL_RT_EVICT_NO_MOVE;
	/* store and budget are fl_runtime_create() options: set them first */
	shim_farmem_setup(&ro);
	/*
	 * A budget keeps handler threads. In-thread far memory would fail a
	 * system call's write into a clean page (write-protected for dirty
	 * tracking) or into one the evictor took back after the shim touched
	 * it, with EFAULT, and an unmodified program cannot retry that.
	 */
	if (ro.store)
		ro.resolve = FL_RESOLVE_HANDLER;
	ret = fl_runtime_create(&ro, &r);
	if (ret && ro.store) {
		shim_log(FL_OPT_LOG_WARN, "warning: cannot start the runtime with far memory: "
			 "%s; trying without a budget", fl_strerror(ret));
		shim_farmem_drop(&ro);
		ret = fl_runtime_create(&ro, &r);
	}
	/*
	 * Both warnings below name the fix by uid, not by name: getpwuid()
	 * may load NSS modules, and we may be inside the program's first
	 * large malloc. `faultline setup --user` takes a uid.
	 */
	if (ret) {
		if (ret == -EPERM || ret == -EACCES)
			shim_log(FL_OPT_LOG_WARN, "warning: cannot start the runtime: %s; "
				 "memory is not managed (no userfaultfd for this user; to let "
				 "it open /dev/userfaultfd, as root: faultline setup --user %u)",
				 fl_strerror(ret), (unsigned int)getuid());
		else
			shim_log(FL_OPT_LOG_WARN, "warning: cannot start the runtime: %s; "
				 "memory is not managed", fl_strerror(ret));
		atomic_store(&shim_state, SHIM_OFF);
		shim_thread_mode_set(false);
		goto out;
	}
	if (fl_features(r, &ft) == 0 && !ft.kernel_faults) {
		/* a read(2) into a managed buffer or a futex word in one would
		 * fail with EFAULT: unsafe for unmodified programs */
		shim_log(FL_OPT_LOG_WARN, "warning: the userfaultfd is user-mode only: "
			 "kernel-mode accesses (read(2) into a buffer, futexes) to managed "
			 "memory would fail; memory is not managed (to let this user open "
			 "/dev/userfaultfd, as root: faultline setup --user %u)",
			 (unsigned int)getuid());
		fl_runtime_destroy(r);
		shim_farmem_drop(&ro);
		r = NULL;
		atomic_store(&shim_state, SHIM_OFF);
		shim_thread_mode_set(false);
		goto out;
	}
	if ((enum fl_resolve)opt.resolve != FL_RESOLVE_HANDLER && !ft.inthread) {
		shim_thread_mode_set(false);
		shim_log(FL_OPT_LOG_INFO, "FAULTLINE_RESOLVE: faults are resolved by handler "
			 "threads (%s)", ro.store ? "a budget's far memory needs them" :
			 "no UFFD_FEATURE_SIGBUS in this kernel");
	}
	if (ro.store && !ft.move && !ft.wp)
		shim_log(FL_OPT_LOG_WARN, "warning: FAULTLINE_BUDGET: this kernel has neither "
			 "UFFDIO_MOVE nor userfaultfd write-protect: nothing can be evicted, "
			 "memory stays resident");
	/*
	 * Registered after the runtime's own fork handlers (fl_runtime_create
	 * installs them), so our prepare runs first: it takes range_lock
	 * before the runtime's prepare takes the index writer locks, the same
	 * order as munmap() (range_lock, then fl_region_unregister): no
	 * lock-order inversion between a forking thread and an unmapping one.
	 */
	if (!atfork_done) {	/* once: a forked child's runtime inherits them */
		pthread_atfork(shim_atfork_prepare, shim_atfork_parent, shim_atfork_child);
		atfork_done = true;
	}
	if (opt.log >= FL_OPT_LOG_INFO) {
		shim_log(FL_OPT_LOG_INFO, "runtime started: min region %zu bytes, malloc %s, "
			 "uffd %s, budget %zu bytes%s%s", min_region, opt.malloc ? "on" : "off",
			 ft.open_method == FL_OPEN_DEV ? "/dev/userfaultfd" : "userfaultfd(2)",
			 ro.budget, !ro.store ? "" : store_path[0] ? ", store " : ", store unnamed",
			 ro.store ? store_path : "");
	}
	__atomic_store_n(&rt, r, __ATOMIC_RELEASE);
	live_begin(ro.budget);
out:
	pthread_mutex_unlock(&rt_lock);
	return rt;
}

static struct fl_region_opts region_opts;

/* Context: shim_depth raised. Return: true if [a, a + len) is now managed. */
static bool shim_register(void *a, size_t len)
{
	struct fl_runtime *r = shim_runtime();
	int ret;

	if (!r || atomic_load(&shim_state) != SHIM_ACTIVE)
		return false;
	ret = fl_region_register(r, a, len, &region_opts);
	if (ret) {
		atomic_fetch_add_explicit(&n_register_errors, 1, memory_order_relaxed);
		shim_log(FL_OPT_LOG_DEBUG, "register %p+%zu: %s", a, len, fl_strerror(ret));
		return false;
	}
	return true;
}

/*
 * Take all of [a, a + len) out of the runtime, whatever regions it holds
 * now (a block the program gave a guard page is in two pieces: see
 * mprotect()). @keep: the bytes must survive (mremap, a range only partly
 * unmapped). Else the caller unmaps the whole range next, and far memory
 * need not read its evicted pages back from the store first
 * (FL_UNREGISTER_DISCARD): a free() of a mostly evicted 1 GiB block would
 * read it all in, far over the budget, only to unmap it.
 */
static void shim_unregister(void *a, size_t len, bool keep)
{
	int ret;

	if (!rt || atomic_load(&shim_state) != SHIM_ACTIVE)
		return;	/* no runtime (or the shim is off): nothing is registered */
	ret = fl_range_unregister(rt, a, len, keep ? 0 : FL_UNREGISTER_DISCARD);
	if (ret)
		shim_log(FL_OPT_LOG_DEBUG, "unregister %p+%zu: %s", a, len, fl_strerror(ret));
}

static void bytes_add(size_t len)
{
	uint64_t now = atomic_fetch_add_explicit(&n_bytes_now, len, memory_order_relaxed) + len;
	uint64_t peak = atomic_load_explicit(&n_bytes_peak, memory_order_relaxed);

	while (now > peak && !atomic_compare_exchange_weak_explicit(&n_bytes_peak, &peak, now,
					memory_order_relaxed, memory_order_relaxed))
		;
}

static void bytes_sub(size_t len)
{
	atomic_fetch_sub_explicit(&n_bytes_now, len, memory_order_relaxed);
}

/* ---- managed mmap ranges: a small sorted-free table under a mutex ---- */

#define RANGES_MAX 4096
struct range {
	uintptr_t start, end;
};
static pthread_mutex_t range_lock = PTHREAD_MUTEX_INITIALIZER;
static struct range ranges[RANGES_MAX];
static _Atomic size_t nranges;

/* Context: range_lock held */
static bool range_add_locked(uintptr_t a, uintptr_t b)
{
	size_t n = atomic_load_explicit(&nranges, memory_order_relaxed);

	if (n == RANGES_MAX)
		return false;
	ranges[n].start = a;
	ranges[n].end = b;
	atomic_store_explicit(&nranges, n + 1, memory_order_relaxed);
	return true;
}

/* Context: range_lock held */
static void range_del_locked(size_t i)
{
	size_t n = atomic_load_explicit(&nranges, memory_order_relaxed) - 1;

	ranges[i] = ranges[n];
	atomic_store_explicit(&nranges, n, memory_order_relaxed);
}

/* Context: shim_depth raised, range_lock held. Manage [a, b) as a region. */
static void range_register_locked(uintptr_t a, uintptr_t b)
{
	if (!range_add_locked(a, b)) {
		atomic_fetch_add_explicit(&n_unmanaged, 1, memory_order_relaxed);
		return;
	}
	if (!shim_register((void *)a, b - a)) {
		range_del_locked(atomic_load_explicit(&nranges, memory_order_relaxed) - 1);
		return;
	}
	atomic_fetch_add_explicit(&n_mmaps, 1, memory_order_relaxed);
	bytes_add(b - a);
}

/* Context: shim_depth raised, range_lock held. Manage [a, b) if big enough. */
static void range_manage_locked(uintptr_t a, uintptr_t b)
{
	if (b - a >= min_region)
		range_register_locked(a, b);
}

/*
 * Cut [a, b) out of the runtime's regions (fl_range_unregister): the pieces
 * of a range outside it stay managed as they are. False if the runtime could
 * not (no memory to split): the caller then takes the whole range out.
 */
static bool shim_carve(uintptr_t a, uintptr_t b, bool discard)
{
	int ret;

	if (!rt || atomic_load(&shim_state) != SHIM_ACTIVE)
		return true;	/* no runtime (or the shim is off): nothing is registered */
	ret = fl_range_unregister(rt, (void *)a, b - a, discard ? FL_UNREGISTER_DISCARD : 0);
	if (ret && ret != -ENOENT) {
		shim_log(FL_OPT_LOG_DEBUG, "unregister %#lx-%#lx: %s", (unsigned long)a,
			 (unsigned long)b, fl_strerror(ret));
		return false;
	}
	return true;
}

/*
 * Take [a, b) of every managed range overlapping it out of the runtime
 * before the caller changes the mapping (munmap, mremap, mmap MAP_FIXED over
 * it). The unregister comes first: it waits for faults in flight on the range
 * to drain and for a grace period, so no handler can install a page into
 * whatever the kernel maps there next. The pieces of a range outside [a, b)
 * stay managed, with their pages as they were (resident ones still counted
 * against the budget, evicted ones still in the store). Only if the runtime
 * cannot split a range does the whole range leave, keeping its bytes; its
 * pieces are then returned in @keep, to register again once the kernel is
 * done. @discard: the caller unmaps [a, b) for sure, so far memory need not
 * read the evicted pages inside it back.
 * Context: shim_depth raised, range_lock held. Return: pieces in @keep.
 */
static size_t ranges_release_locked(uintptr_t a, uintptr_t b, struct range *keep, size_t max,
				    bool *found, bool discard)
{
	struct range add[2];	/* ranges are disjoint: at most two pieces stay */
	size_t nk = 0, na = 0;

	for (size_t i = 0; i < atomic_load_explicit(&nranges, memory_order_relaxed);) {
		struct range r = ranges[i];
		uintptr_t ca = r.start > a ? r.start : a, cb = r.end < b ? r.end : b;

		if (r.start >= b || r.end <= a) {
			i++;
			continue;
		}
		if (found)
			*found = true;
		range_del_locked(i);	/* the last range moves to i */
		if (shim_carve(ca, cb, discard)) {
			bytes_sub(cb - ca);
			if (r.start < ca && na < 2)
				add[na++] = (struct range){ r.start, ca };
			if (r.end > cb && na < 2)
				add[na++] = (struct range){ cb, r.end };
			continue;
		}
		shim_unregister((void *)r.start, r.end - r.start, true);
		bytes_sub(r.end - r.start);
		if (r.start < a && nk < max)
			keep[nk++] = (struct range){ r.start, a };
		if (r.end > b && nk < max)
			keep[nk++] = (struct range){ b, r.end };
	}
	/* a full table (one range cut in two): the piece stays registered
	 * untracked, and the kernel's UNMAP event takes it out when it goes */
	for (size_t i = 0; i < na; i++)
		if (!range_add_locked(add[i].start, add[i].end))
			atomic_fetch_add_explicit(&n_unmanaged, 1, memory_order_relaxed);
	return nk;
}

static bool ranges_empty(void)
{
	return !atomic_load_explicit(&nranges, memory_order_relaxed);
}

/*
 * ---- private anonymous mappings the program made: where a commit comes from ----
 *
 * A runtime that reserves memory with PROT_NONE and commits it with
 * mprotect(PROT_READ | PROT_WRITE) (V8) makes read-write private anonymous
 * memory without an mmap the shim could manage. mprotect() cannot tell what
 * kind of memory it is given (a file mapping, a shared one, a stack), and
 * /proc/self/maps is far too slow to read on every call; so the shim records
 * every private anonymous mapping of min_region or more the program makes
 * through mmap, whatever its protection, and cuts the record wherever the
 * program unmaps, remaps or maps over it. A commit inside a record is the
 * program's private anonymous memory. Entries are disjoint.
 */
static struct range anon_maps[RANGES_MAX];
static _Atomic size_t nanon_maps;

static bool anon_empty(void)
{
	return !atomic_load_explicit(&nanon_maps, memory_order_relaxed);
}

/* a private anonymous mapping of the kind the runtime can manage: any size */
static bool anon_kind(int flags, int fd)
{
	const int skip = MAP_SHARED | MAP_HUGETLB | MAP_GROWSDOWN | MAP_STACK;

	return fd == -1 && (flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE &&
	       !(flags & skip);
}

/* the shape of mapping a commit may come from: any protection */
static bool anon_shape(size_t len, int flags, int fd)
{
	return len >= min_region && anon_kind(flags, fd);
}

/* Context: range_lock held. A full table forgets the mapping: never managed. */
static void anon_add_locked(uintptr_t a, uintptr_t b)
{
	size_t n = atomic_load_explicit(&nanon_maps, memory_order_relaxed);

	if (n == RANGES_MAX) {
		atomic_fetch_add_explicit(&n_unmanaged, 1, memory_order_relaxed);
		return;
	}
	anon_maps[n] = (struct range){ a, b };
	atomic_store_explicit(&nanon_maps, n + 1, memory_order_relaxed);
}

/*
 * Cut [a, b) out of the records (unmapped, remapped, mapped over).
 * Context: range_lock held. Return: whether a record overlapped it.
 */
static bool anon_cut_locked(uintptr_t a, uintptr_t b)
{
	bool found = false;

	for (size_t i = 0; i < atomic_load_explicit(&nanon_maps, memory_order_relaxed);) {
		struct range r = anon_maps[i];
		size_t n;

		if (r.start >= b || r.end <= a) {
			i++;
			continue;
		}
		found = true;
		n = atomic_load_explicit(&nanon_maps, memory_order_relaxed) - 1;
		anon_maps[i] = anon_maps[n];	/* the last record moves to i */
		atomic_store_explicit(&nanon_maps, n, memory_order_relaxed);
		if (r.start < a && a - r.start >= min_region)
			anon_add_locked(r.start, a);
		if (r.end > b && r.end - b >= min_region)
			anon_add_locked(b, r.end);
	}
	return found;
}

/* Context: range_lock held. Whether one record holds all of [a, b). */
static bool anon_covers_locked(uintptr_t a, uintptr_t b)
{
	for (size_t i = 0; i < atomic_load_explicit(&nanon_maps, memory_order_relaxed); i++)
		if (anon_maps[i].start <= a && b <= anon_maps[i].end)
			return true;
	return false;
}

/* Context: range_lock held. The managed range holding @x, or -1. */
static ssize_t range_at_locked(uintptr_t x)
{
	for (size_t i = 0; i < atomic_load_explicit(&nranges, memory_order_relaxed); i++)
		if (ranges[i].start <= x && x < ranges[i].end)
			return (ssize_t)i;
	return -1;
}

/*
 * [a, b) became read-write (mprotect): manage what of it lies in a recorded
 * mapping and is not managed yet, each such piece if it is min_region or
 * more, as its own region (the same rule as for an mmap).
 * Context: shim_depth raised, range_lock held.
 */
static void range_commit_locked(uintptr_t a, uintptr_t b)
{
	for (size_t i = 0; i < atomic_load_explicit(&nanon_maps, memory_order_relaxed); i++) {
		uintptr_t x = anon_maps[i].start > a ? anon_maps[i].start : a;
		uintptr_t e = anon_maps[i].end < b ? anon_maps[i].end : b;

		while (x < e) {
			uintptr_t g = e;
			ssize_t k = range_at_locked(x);

			if (k >= 0) {
				x = ranges[k].end;
				continue;
			}
			/* the gap ends where the next managed range begins */
			for (size_t j = 0; j < atomic_load_explicit(&nranges, memory_order_relaxed); j++)
				if (ranges[j].start > x && ranges[j].start < g)
					g = ranges[j].start;
			range_manage_locked(x, g);
			x = g;
		}
	}
}

/*
 * [a, b), smaller than min_region, was just mapped read-write with
 * mmap(MAP_FIXED) over a recorded mapping: a commit into a reservation, fresh
 * and empty. The JVM commits G1's card table, block offset table and mark
 * bitmaps this way a page or a few at a time, and they grow to megabytes: a
 * region per commit would flood the index, none would leave them outside the
 * budget. So the commit joins the managed range that ends where it begins
 * (fl_region_resize() grows that region in place: a side table committed in
 * address order is one region), and with no such range it starts one, a
 * small region to grow. Commits scattered downwards cost a region each: new
 * ones start only while the table is at most half full, which keeps room
 * for the program's big mappings. Not for mprotect() commits: those may
 * flip a JIT's code pages between executable and writable at every
 * compilation, and joining them would cut and grow regions as often.
 * Context: shim_depth raised, range_lock held.
 */
static void range_join_locked(uintptr_t a, uintptr_t b)
{
	for (size_t i = 0; i < atomic_load_explicit(&nranges, memory_order_relaxed); i++) {
		int ret;

		if (ranges[i].end != a)
			continue;
		/*
		 * Race: none with a fault. Until mmap() returns, no thread of
		 * the program knows [a, b) is there; and the resize waits for
		 * the faults in flight on the region before it changes it.
		 */
		ret = rt && atomic_load(&shim_state) == SHIM_ACTIVE ?
			fl_region_resize(rt, (void *)ranges[i].start, b - ranges[i].start) :
			-ENODEV;
		if (!ret) {
			ranges[i].end = b;	/* counted in regions_resized */
			bytes_add(b - a);
			return;
		}
		/* -ENOSPC: the region filled its store extent; start another */
		shim_log(FL_OPT_LOG_DEBUG, "grow %#lx to %#lx: %s", (unsigned long)ranges[i].start,
			 (unsigned long)b, fl_strerror(ret));
		break;
	}
	if (atomic_load_explicit(&nranges, memory_order_relaxed) < RANGES_MAX / 2)
		range_register_locked(a, b);
}

/* ---- managed malloc blocks: a lock-free table keyed by the pointer ----
 *
 * Open addressing, bounded probing (BLK_PROBE slots from the hash): a
 * lookup of a pointer that is not ours costs at most BLK_PROBE loads. A
 * block whose insert finds no free slot in its window is not managed (it
 * is served by glibc instead). Keys: 0 empty, BLK_BUSY claimed by an
 * insert that is filling the slot, BLK_TOMB freed (reusable), else the
 * block's address. Only the thread that owns a block (allocated or frees
 * it) writes its slot; lookups of other pointers skip BUSY and TOMB.
 */
#define BLK_SLOTS	(1u << 16)
#define BLK_PROBE	32
#define BLK_BUSY	((uintptr_t)1)
#define BLK_TOMB	((uintptr_t)2)

struct blk {
	_Atomic uintptr_t key;
	size_t maplen;		/* the mapping: [key, key + maplen) */
	bool managed;		/* registered with the runtime */
};
static struct blk blk_tab[BLK_SLOTS];
static _Atomic bool blk_any;	/* some block was ever made: free() must look */

static inline size_t blk_hash(uintptr_t p)
{
	uint64_t h = (uint64_t)p >> 12;

	h *= 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 48);	/* 16 bits: BLK_SLOTS */
}

static struct blk *blk_find(const void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	size_t h;

	if (!p || (p & (page_size - 1)) || !atomic_load_explicit(&blk_any, memory_order_relaxed))
		return NULL;
	h = blk_hash(p);
	for (size_t i = 0; i < BLK_PROBE; i++) {
		struct blk *b = &blk_tab[(h + i) & (BLK_SLOTS - 1)];
		uintptr_t k = atomic_load_explicit(&b->key, memory_order_acquire);

		if (k == p)
			return b;
		if (!k)
			return NULL;
	}
	return NULL;
}

static struct blk *blk_insert(uintptr_t p, size_t maplen, bool managed)
{
	size_t h = blk_hash(p);

	for (size_t i = 0; i < BLK_PROBE; i++) {
		struct blk *b = &blk_tab[(h + i) & (BLK_SLOTS - 1)];
		uintptr_t k = atomic_load_explicit(&b->key, memory_order_relaxed);

		if ((k == 0 || k == BLK_TOMB) &&
		    atomic_compare_exchange_strong_explicit(&b->key, &k, BLK_BUSY,
					memory_order_acquire, memory_order_relaxed)) {
			b->maplen = maplen;
			b->managed = managed;
			/* publish the fields with the key: a lookup that sees
			 * the key sees them */
			atomic_store_explicit(&b->key, p, memory_order_release);
			return b;
		}
	}
	return NULL;
}

static void blk_remove(struct blk *b)
{
	atomic_store_explicit(&b->key, BLK_TOMB, memory_order_release);
}

/*
 * A new block of at least @size bytes aligned to @align (a power of two).
 * Context: shim_depth raised. Return: the block, or NULL (the caller then
 * asks glibc; errno untouched).
 */
static void *blk_alloc(size_t size, size_t align)
{
	size_t maplen = page_up(size), extra = align > page_size ? align : 0;
	uintptr_t base, p;
	void *m;
	bool managed;

	if (!maplen || maplen < size || maplen + extra < maplen)
		return NULL;
	m = sys_mmap(NULL, maplen + extra, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	base = (uintptr_t)m;
	p = extra ? (base + align - 1) & ~(uintptr_t)(align - 1) : base;
	if (extra) {
		if (p > base)
			sys_munmap(m, p - base);
		if (base + maplen + extra > p + maplen)
			sys_munmap((void *)(p + maplen), base + maplen + extra - (p + maplen));
	}
	managed = shim_register((void *)p, maplen);
	if (!blk_insert(p, maplen, managed)) {
		if (managed)
			shim_unregister((void *)p, maplen, false);
		sys_munmap((void *)p, maplen);
		atomic_fetch_add_explicit(&n_unmanaged, 1, memory_order_relaxed);
		return NULL;
	}
	atomic_store_explicit(&blk_any, true, memory_order_relaxed);
	if (managed) {
		atomic_fetch_add_explicit(&n_blocks, 1, memory_order_relaxed);
		bytes_add(maplen);
	}
	return (void *)p;
}

/* Context: shim_depth raised; @b found by blk_find() for @ptr. */
static void blk_free(struct blk *b, void *ptr)
{
	size_t maplen = b->maplen;

	/* unregister before munmap: see ranges_release_locked() */
	if (b->managed) {
		shim_unregister(ptr, maplen, false);
		bytes_sub(maplen);
	}
	blk_remove(b);
	sys_munmap(ptr, maplen);
}

static inline bool shim_manages(void)
{
	return !shim_depth && atomic_load_explicit(&shim_state, memory_order_relaxed) == SHIM_ACTIVE;
}

/* ---- the allocators: the program's, and the runtime's own ----
 *
 * A request the shim does not serve with a managed block goes to the
 * allocator the program would have called without the shim: the next
 * definition of the same function in the lookup order (dlsym RTLD_NEXT),
 * which is jemalloc's or tcmalloc's when the program links or preloads one
 * after the shim, and glibc's otherwise. Never glibc's by fiat: a program
 * whose allocator is jemalloc hands every pointer to jemalloc's free() and
 * malloc_usable_size().
 *
 * The shim's and the runtime's own allocations (shim_depth raised: the
 * shim's code, the runtime's threads) go to glibc's __libc_* entry points
 * instead, and so do the runtime's calls to malloc & co., whatever the
 * lookup order (the shim is linked with --wrap for them: __wrap_* below).
 * The program's allocator may call mmap() with its own locks held, and the
 * program may fault on managed memory inside its allocator: a runtime that
 * allocated from the program's allocator there would wait for a lock that
 * the faulting thread, or this very thread, holds.
 *
 * Bootstrap: the first call resolves the next allocator (maybe before our
 * constructor, from another library's). dlsym() may itself allocate; it
 * runs with shim_depth raised, so its allocations are glibc's, and glibc
 * keeps and frees them itself.
 */
struct next_alloc {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*memalign)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	size_t (*usable)(void *);
};
static struct next_alloc nx;
static _Atomic bool nx_ready;
static size_t (*libc_usable)(void *);	/* glibc's own malloc_usable_size */

static void *nx_sym(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

static void nx_resolve(void)
{
	struct next_alloc n;
	void *libc;

	shim_depth++;
	n.malloc = (void *(*)(size_t))nx_sym("malloc");
	n.free = (void (*)(void *))nx_sym("free");
	n.calloc = (void *(*)(size_t, size_t))nx_sym("calloc");
	n.realloc = (void *(*)(void *, size_t))nx_sym("realloc");
	n.posix_memalign = (int (*)(void **, size_t, size_t))nx_sym("posix_memalign");
	n.aligned_alloc = (void *(*)(size_t, size_t))nx_sym("aligned_alloc");
	n.memalign = (void *(*)(size_t, size_t))nx_sym("memalign");
	n.valloc = (void *(*)(size_t))nx_sym("valloc");
	n.pvalloc = (void *(*)(size_t))nx_sym("pvalloc");
	n.usable = (size_t (*)(void *))nx_sym("malloc_usable_size");
	shim_thread_mode_resolve();	/* same reason: see thread-mode.c */
	libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
	if (libc) {
		libc_usable = (size_t (*)(void *))dlsym(libc, "malloc_usable_size");
		/* FAULTLINE_TRIM_HEAP's: looked up here, not when the runtime
		 * starts (see heap_trim_tick()) */
		libc_trim = (int (*)(size_t))dlsym(libc, "malloc_trim");
		dlclose(libc);
	}
	if (!n.malloc || !n.free || !n.calloc || !n.realloc) {
		/* cannot happen with glibc, which defines them all: glibc's */
		n.malloc = __libc_malloc;
		n.free = __libc_free;
		n.calloc = __libc_calloc;
		n.realloc = __libc_realloc;
	}
	/*
	 * Racing threads compute the same pointers; each is stored whole.
	 * nx_ready is set after them (release): a reader that sees it sees
	 * them.
	 */
#define NX_SET(f) __atomic_store_n(&nx.f, n.f, __ATOMIC_RELAXED)
	NX_SET(malloc); NX_SET(free); NX_SET(calloc); NX_SET(realloc);
	NX_SET(posix_memalign); NX_SET(aligned_alloc); NX_SET(memalign);
	NX_SET(valloc); NX_SET(pvalloc); NX_SET(usable);
#undef NX_SET
	atomic_store_explicit(&nx_ready, true, memory_order_release);
	shim_depth--;
}

static inline const struct next_alloc *next(void)
{
	if (!atomic_load_explicit(&nx_ready, memory_order_acquire))
		nx_resolve();
	return &nx;
}

static size_t next_usable(void *p)
{
	const struct next_alloc *n = next();

	return n->usable ? n->usable(p) : 0;
}

/* the runtime's own (see above): referenced as malloc & co. by its objects */
SHIM_HIDDEN void *__wrap_malloc(size_t n)
{
	return __libc_malloc(n);
}

SHIM_HIDDEN void __wrap_free(void *p)
{
	__libc_free(p);
}

SHIM_HIDDEN void *__wrap_calloc(size_t n, size_t size)
{
	return __libc_calloc(n, size);
}

SHIM_HIDDEN void *__wrap_realloc(void *p, size_t n)
{
	return __libc_realloc(p, n);
}

SHIM_HIDDEN int __wrap_posix_memalign(void **out, size_t align, size_t n)
{
	void *p;

	if (!align || (align & (align - 1)) || align % sizeof(void *))
		return EINVAL;
	p = __libc_memalign(align, n);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

SHIM_HIDDEN void *__wrap_aligned_alloc(size_t align, size_t n)
{
	return __libc_memalign(align, n);
}

/* a managed block for the program, or NULL: not eligible, or none made */
static void *blk_try(size_t size, size_t align)
{
	void *p;

	if (size < min_region || !opt.malloc || !shim_manages())
		return NULL;
	shim_depth++;
	p = blk_alloc(size, align);
	shim_depth--;
	return p;
}

/* free() proper; exported free() and the other entry points call this, not
 * free(): a call to free() from here could bind to another library's */
static void shim_free(void *ptr)
{
	struct blk *b = blk_find(ptr);

	if (b) {
		shim_depth++;
		blk_free(b, ptr);
		shim_depth--;
	} else if (!ptr) {
		return;
	} else if (shim_depth) {
		__libc_free(ptr);
	} else {
		next()->free(ptr);
	}
}

/* ---- the malloc family ---- */

static void *shim_malloc(size_t size)
{
	void *p;

	if (shim_depth)
		return __libc_malloc(size);
	p = blk_try(size, 1);
	return p ? p : next()->malloc(size);
}

SHIM_EXPORT void *malloc(size_t size)
{
	return shim_malloc(size);
}

SHIM_EXPORT void free(void *ptr)
{
	shim_free(ptr);
}

SHIM_EXPORT void *calloc(size_t n, size_t size)
{
	size_t total;
	void *p = NULL;

	if (shim_depth)
		return __libc_calloc(n, size);
	/* a fresh mapping and the zero pager: the block reads zeros */
	if (!__builtin_mul_overflow(n, size, &total))
		p = blk_try(total, 1);
	return p ? p : next()->calloc(n, size);
}

static void *shim_realloc(void *ptr, size_t size)
{
	struct blk *b = blk_find(ptr);
	void *np;

	if (!b) {
		size_t old;

		if (shim_depth)
			return __libc_realloc(ptr, size);
		if (!ptr)
			return shim_malloc(size);
		/* the program's chunk grows into a managed block */
		np = blk_try(size, 1);
		if (!np)
			return next()->realloc(ptr, size);
		old = next_usable(ptr);
		memcpy(np, ptr, old < size ? old : size);
		next()->free(ptr);
		return np;
	}
	if (!size) {
		shim_free(ptr);
		return NULL;
	}
	if (size <= b->maplen && size > b->maplen / 2)
		return ptr;	/* fits, and not much is wasted */
	shim_depth++;
	if (size < min_region) {
		/* back to the program's allocator */
		np = next()->malloc(size);
		if (np) {
			memcpy(np, ptr, size);
			blk_free(b, ptr);
		}
	} else {
		/*
		 * Move or resize the mapping: unregister (faults in flight drain,
		 * a grace period passes), let the kernel mremap it (pages move,
		 * no copy), register the result. Missing pages of a zero-pager
		 * region read zeros either way, so nothing is lost in between.
		 */
		size_t maplen = page_up(size);
		bool managed = b->managed;

		if (managed)
			shim_unregister(ptr, b->maplen, true);
		np = sys_mremap(ptr, b->maplen, maplen, MREMAP_MAYMOVE, NULL);
		if (np == MAP_FAILED) {
			if (managed)
				b->managed = shim_register(ptr, b->maplen);
			np = NULL;
			errno = ENOMEM;
		} else {
			if (managed)
				bytes_sub(b->maplen);
			blk_remove(b);
			managed = shim_register(np, maplen);
			if (!blk_insert((uintptr_t)np, maplen, managed)) {
				/* no slot: hand the bytes to the program's allocator */
				void *g = next()->malloc(size);

				if (managed)
					shim_unregister(np, maplen, true);
				if (g)
					memcpy(g, np, size);
				sys_munmap(np, maplen);
				np = g;
			} else if (managed) {
				bytes_add(maplen);
			}
		}
	}
	shim_depth--;
	return np;
}

SHIM_EXPORT void *realloc(void *ptr, size_t size)
{
	return shim_realloc(ptr, size);
}

SHIM_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	void *p;

	if (!align || (align & (align - 1)) || align % sizeof(void *))
		return EINVAL;
	if (shim_depth)
		return __wrap_posix_memalign(out, align, size);
	p = blk_try(size, align);
	if (!p)
		return next()->posix_memalign ? next()->posix_memalign(out, align, size) :
			__wrap_posix_memalign(out, align, size);
	*out = p;
	return 0;
}

SHIM_EXPORT void *aligned_alloc(size_t align, size_t size)
{
	void *p;

	if (!align || (align & (align - 1))) {
		errno = EINVAL;
		return NULL;
	}
	if (shim_depth)
		return __libc_memalign(align, size);
	p = blk_try(size, align);
	return p ? p : next()->aligned_alloc ? next()->aligned_alloc(align, size) :
		__libc_memalign(align, size);
}

SHIM_EXPORT void *memalign(size_t align, size_t size)
{
	size_t a = align;
	void *p;

	if (shim_depth)
		return __libc_memalign(align, size);
	/* glibc rounds a non-power-of-two alignment up */
	if (a & (a - 1))
		a = (size_t)1 << (64 - __builtin_clzl(a));
	p = blk_try(size, a ? a : 1);
	return p ? p : next()->memalign ? next()->memalign(align, size) :
		__libc_memalign(align, size);
}

SHIM_EXPORT void *valloc(size_t size)
{
	void *p;

	if (shim_depth)
		return __libc_memalign(page_size, size);
	p = blk_try(size, page_size);
	return p ? p : next()->valloc ? next()->valloc(size) : __libc_memalign(page_size, size);
}

SHIM_EXPORT void *pvalloc(size_t size)
{
	void *p;

	if (shim_depth)
		return __libc_memalign(page_size, page_up(size ? size : 1));
	p = blk_try(page_up(size ? size : 1), page_size);
	return p ? p : next()->pvalloc ? next()->pvalloc(size) :
		__libc_memalign(page_size, page_up(size ? size : 1));
}

SHIM_EXPORT size_t malloc_usable_size(void *ptr)
{
	struct blk *b = blk_find(ptr);

	if (b)
		return b->maplen;
	if (!ptr)
		return 0;
	if (shim_depth) {
		if (!libc_usable)
			next();
		return libc_usable ? libc_usable(ptr) : 0;
	}
	return next_usable(ptr);
}

/*
 * jemalloc's non-standard calls that take a pointer: a program linked with
 * jemalloc may hand them a block the shim made (it got it from malloc).
 * Blocks are answered here; other pointers go to jemalloc. The flags of
 * rallocx (alignment, zeroing) need nothing for a block: it is page
 * aligned, and the pages a mapping grows by read zeros.
 */
SHIM_EXPORT void dallocx(void *ptr, int flags)
{
	static void (*fn)(void *, int);

	if (blk_find(ptr)) {
		shim_free(ptr);
		return;
	}
	if (!fn)
		fn = (void (*)(void *, int))nx_sym("dallocx");
	if (fn)
		fn(ptr, flags);
}

SHIM_EXPORT void sdallocx(void *ptr, size_t size, int flags)
{
	static void (*fn)(void *, size_t, int);

	if (blk_find(ptr)) {
		shim_free(ptr);
		return;
	}
	if (!fn)
		fn = (void (*)(void *, size_t, int))nx_sym("sdallocx");
	if (fn)
		fn(ptr, size, flags);
}

SHIM_EXPORT size_t sallocx(const void *ptr, int flags)
{
	static size_t (*fn)(const void *, int);
	struct blk *b = blk_find(ptr);

	if (b)
		return b->maplen;
	if (!fn)
		fn = (size_t (*)(const void *, int))nx_sym("sallocx");
	return fn ? fn(ptr, flags) : 0;
}

SHIM_EXPORT void *rallocx(void *ptr, size_t size, int flags)
{
	static void *(*fn)(void *, size_t, int);

	if (blk_find(ptr))
		return size ? shim_realloc(ptr, size) : NULL;
	if (!fn)
		fn = (void *(*)(void *, size_t, int))nx_sym("rallocx");
	return fn ? fn(ptr, size, flags) : NULL;
}

SHIM_EXPORT size_t xallocx(void *ptr, size_t size, size_t extra, int flags)
{
	static size_t (*fn)(void *, size_t, size_t, int);
	struct blk *b = blk_find(ptr);

	if (b)
		return b->maplen;	/* a block never grows in place */
	if (!fn)
		fn = (size_t (*)(void *, size_t, size_t, int))nx_sym("xallocx");
	return fn ? fn(ptr, size, extra, flags) : 0;
}

/* ---- the mmap family ---- */

/*
 * Read-write, nothing else: far memory's evictor moves a victim into staging
 * frames that are read-write, and UFFDIO_MOVE refuses a page whose access
 * flags differ (PROT_EXEC included), so such a page could never be evicted.
 */
static bool prot_managed(int prot)
{
	return (prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) == (PROT_READ | PROT_WRITE);
}

/*
 * Private anonymous read-write memory the program maps itself, big enough.
 * MAP_FIXED included: a runtime that reserves its heap with PROT_NONE and
 * commits it piece by piece with mmap(MAP_FIXED, PROT_READ | PROT_WRITE) over
 * the reservation (the JVM) gets a fresh, empty mapping each time, which is
 * managed like any other; the reservation itself (PROT_NONE) is not.
 */
static bool mmap_eligible(size_t len, int prot, int flags, int fd)
{
	const int skip = MAP_SHARED | MAP_HUGETLB | MAP_GROWSDOWN | MAP_STACK | MAP_POPULATE;

	return len >= min_region && fd == -1 &&
	       (flags & (MAP_ANONYMOUS | MAP_PRIVATE)) == (MAP_ANONYMOUS | MAP_PRIVATE) &&
	       !(flags & skip) && (flags & MAP_TYPE) == MAP_PRIVATE && prot_managed(prot);
}

/*
 * The project builds with _FILE_OFFSET_BITS=64, under which <sys/mman.h>
 * renames mmap to mmap64; name both symbols explicitly (off_t is 64-bit on
 * every target this runs on, so they are the same function).
 */
SHIM_EXPORT void *shim_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__asm__("mmap");
SHIM_EXPORT void *shim_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
	__asm__("mmap64");

SHIM_EXPORT void *shim_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct range keep[2 * 8];
	size_t nk = 0;
	bool shape = anon_shape(len, flags, fd), in_rec = false;
	uintptr_t a = (uintptr_t)addr, b = a + page_up(len);
	void *p;

	if (!shim_manages() ||
	    (!shape && anon_empty() && (!(flags & MAP_FIXED) || ranges_empty())))
		return sys_mmap(addr, len, prot, flags, fd, off);
	shim_depth++;
	pthread_mutex_lock(&range_lock);
	if (flags & MAP_FIXED) {
		/* the new mapping replaces whatever is there: release it first */
		nk = ranges_release_locked(a, b, keep, 16, NULL, false);
		/*
		 * Private anonymous memory mapped over a record (a commit, an
		 * uncommit) is still the program's private anonymous memory:
		 * the record stays whole. Anything else cuts it.
		 */
		in_rec = len && !(a & (page_size - 1)) && b > a && anon_kind(flags, fd) &&
			 anon_covers_locked(a, b);
		if (!in_rec)
			anon_cut_locked(a, b);
	}
	p = sys_mmap(addr, len, prot, flags, fd, off);
	for (size_t i = 0; i < nk; i++)
		range_manage_locked(keep[i].start, keep[i].end);
	/*
	 * Where the kernel put a mapping, no record can be right any more
	 * (the memory there was unmapped behind the shim's back: a direct
	 * system call, or libc's own munmap). A MAP_FIXED call that fails may
	 * have unmapped the old memory all the same.
	 */
	if (p == MAP_FAILED && in_rec)
		anon_cut_locked(a, b);
	if (p != MAP_FAILED && !(flags & MAP_FIXED))
		anon_cut_locked((uintptr_t)p, (uintptr_t)p + page_up(len));
	if (p != MAP_FAILED && shape && !in_rec)
		anon_add_locked((uintptr_t)p, (uintptr_t)p + page_up(len));
	if (p != MAP_FAILED && mmap_eligible(len, prot, flags, fd))
		range_manage_locked((uintptr_t)p, (uintptr_t)p + page_up(len));
	else if (p != MAP_FAILED && in_rec && prot_managed(prot) && !(flags & MAP_POPULATE))
		range_join_locked(a, b);
	pthread_mutex_unlock(&range_lock);
	shim_depth--;
	return p;
}

SHIM_EXPORT void *shim_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return shim_mmap(addr, len, prot, flags, fd, off);
}

SHIM_EXPORT int munmap(void *addr, size_t len)
{
	struct range keep[16];
	size_t nk;
	int ret;

	if (shim_depth || (ranges_empty() && anon_empty()) ||
	    atomic_load_explicit(&shim_state, memory_order_relaxed) != SHIM_ACTIVE)
		return sys_munmap(addr, len);
	shim_depth++;
	pthread_mutex_lock(&range_lock);
	/* munmap fails only on bad arguments: check those before discarding */
	nk = ranges_release_locked((uintptr_t)addr, (uintptr_t)addr + page_up(len), keep, 16, NULL,
				   len && !((uintptr_t)addr & (page_size - 1)));
	ret = sys_munmap(addr, len);
	if (!ret)
		anon_cut_locked((uintptr_t)addr, (uintptr_t)addr + page_up(len));
	for (size_t i = 0; i < nk; i++)
		range_manage_locked(keep[i].start, keep[i].end);
	pthread_mutex_unlock(&range_lock);
	shim_depth--;
	return ret;
}

SHIM_EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	struct range keep[16];
	void *to = NULL, *p;
	bool managed = false;
	size_t nk;

	if (flags & MREMAP_FIXED) {
		va_list ap;

		va_start(ap, flags);
		to = va_arg(ap, void *);
		va_end(ap);
	}
	if (shim_depth || (ranges_empty() && anon_empty()) ||
	    atomic_load_explicit(&shim_state, memory_order_relaxed) != SHIM_ACTIVE)
		return sys_mremap(old, old_len, new_len, flags, to);
	shim_depth++;
	pthread_mutex_lock(&range_lock);
	/* the source, and a MREMAP_FIXED destination, leave the runtime first */
	nk = ranges_release_locked((uintptr_t)old, (uintptr_t)old + page_up(old_len ? old_len : 1),
				   keep, 16, &managed, false);
	if (to)
		nk += ranges_release_locked((uintptr_t)to, (uintptr_t)to + page_up(new_len),
					    keep + nk, 16 - nk, NULL, false);
	p = sys_mremap(old, old_len, new_len, flags, to);
	for (size_t i = 0; i < nk; i++)
		range_manage_locked(keep[i].start, keep[i].end);
	/*
	 * The records follow: what the call moved inside one recorded mapping
	 * is recorded where it is now. Anything else it touched is forgotten
	 * (a failed call's too, which may have done part of its work), never
	 * guessed: a record must not claim memory that is not private
	 * anonymous. MREMAP_DONTUNMAP leaves the source mapped, empty, as it was.
	 */
	if (p != MAP_FAILED) {
		uintptr_t a = (uintptr_t)old, b = a + page_up(old_len);
		bool whole = old_len && anon_covers_locked(a, b);

		if (!(flags & MREMAP_DONTUNMAP) && old_len)
			anon_cut_locked(a, b);
		anon_cut_locked((uintptr_t)p, (uintptr_t)p + page_up(new_len));
		if (whole && page_up(new_len) >= min_region)
			anon_add_locked((uintptr_t)p, (uintptr_t)p + page_up(new_len));
	} else {
		anon_cut_locked((uintptr_t)old, (uintptr_t)old + page_up(old_len ? old_len : 1));
		if (to)
			anon_cut_locked((uintptr_t)to, (uintptr_t)to + page_up(new_len));
	}
	/* the moved (or, on failure, untouched) source stays managed; an
	 * unmanaged source does not become managed by moving */
	if (managed && p != MAP_FAILED)
		range_manage_locked((uintptr_t)p, (uintptr_t)p + page_up(new_len));
	else if (managed)
		range_manage_locked((uintptr_t)old, (uintptr_t)old + page_up(old_len));
	pthread_mutex_unlock(&range_lock);
	shim_depth--;
	return p;
}

/*
 * madvise changes nothing the shim tracks: MADV_DONTNEED / MADV_FREE of
 * managed memory reaches the runtime as a REMOVE event (those pages read
 * zeros afterwards). It is interposed so that a debug log shows what the
 * program does to its managed memory.
 */
SHIM_EXPORT int madvise(void *addr, size_t len, int advice)
{
	if (!real_madvise)
		return (int)syscall(SYS_madvise, addr, len, advice);
	if (!shim_depth && opt.log >= FL_OPT_LOG_DEBUG && !ranges_empty())
		shim_log(FL_OPT_LOG_DEBUG, "madvise(%p, %zu, %d)", addr, len, advice);
	return real_madvise(addr, len, advice);
}

/*
 * Managed memory is read-write, always (prot_managed()): far memory's
 * evictor moves or copies a victim out through the program's mapping, which
 * a MOVE refuses for a page whose protection differs from its staging
 * frames' and a copy cannot read under PROT_NONE. So a managed range that is
 * to get any other protection leaves the runtime first, keeping its bytes
 * (its evicted pages are read back), while it is still read-write; the
 * pieces beside it stay managed. The other way round is a commit: memory a
 * program reserved with PROT_NONE and makes read-write (V8's heap pages), or
 * made read-only and writable again, is managed from the moment the call
 * returns, where it lies in a private anonymous mapping the program made
 * (anon_maps[]).
 *
 * A call that fails leaves what it released unmanaged (the kernel may have
 * changed part of the range before failing): correct, only not managed.
 */
SHIM_EXPORT int mprotect(void *addr, size_t len, int prot)
{
	uintptr_t a = (uintptr_t)addr, b = a + page_up(len);
	bool rw = prot_managed(prot);
	struct range keep[16];
	size_t nk = 0;
	int ret;

	if (!real_mprotect)
		return (int)syscall(SYS_mprotect, addr, len, prot);
	if (!shim_manages() || !len || (a & (page_size - 1)) || b < a ||
	    (ranges_empty() && anon_empty() &&
	     !atomic_load_explicit(&blk_any, memory_order_relaxed)))
		return real_mprotect(addr, len, prot);	/* nothing of ours, or EINVAL */
	if (opt.log >= FL_OPT_LOG_DEBUG)
		shim_log(FL_OPT_LOG_DEBUG, "mprotect(%p, %zu, %d)", addr, len, prot);
	shim_depth++;
	pthread_mutex_lock(&range_lock);
	/*
	 * Before the change: no victim may be caught read-only or PROT_NONE.
	 * Malloc blocks too (a guard page at one end of a block used as a
	 * stack): the piece leaves, and the block's free() takes the rest.
	 */
	if (!rw) {
		nk = ranges_release_locked(a, b, keep, 16, NULL, false);
		if (atomic_load_explicit(&blk_any, memory_order_relaxed))
			shim_carve(a, b, false);
	}
	ret = real_mprotect(addr, len, prot);
	for (size_t i = 0; i < nk; i++)
		range_manage_locked(keep[i].start, keep[i].end);
	if (!ret && rw)
		range_commit_locked(a, b);
	pthread_mutex_unlock(&range_lock);
	shim_depth--;
	return ret;
}

/* ---- threads the runtime starts never have their memory managed ---- */

struct thread_start {
	void *(*fn)(void *);
	void *arg;
};

static void *runtime_thread_main(void *p)
{
	struct thread_start ts = *(struct thread_start *)p;

	__libc_free(p);
	shim_rt_thread = 1;
	shim_depth = 1;		/* for good: handler threads never touch managed memory */
	return ts.fn(ts.arg);
}

SHIM_EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr,
			       void *(*fn)(void *), void *arg)
{
	struct thread_start *ts;
	int ret;

	if (!real_pthread_create)
		real_pthread_create = (int (*)(pthread_t *, const pthread_attr_t *,
					       void *(*)(void *), void *))
			dlsym(RTLD_NEXT, "pthread_create");
	if (!real_pthread_create)
		return EAGAIN;
	/* an application thread: nothing to do */
	if (!shim_depth && !shim_rt_thread)
		return real_pthread_create(t, attr, fn, arg);
	ts = __libc_malloc(sizeof(*ts));
	if (!ts)
		return EAGAIN;
	ts->fn = fn;
	ts->arg = arg;
	ret = real_pthread_create(t, attr, runtime_thread_main, ts);
	if (ret)
		__libc_free(ts);
	return ret;
}

/* ---- fork ----
 *
 * The runtime's fork policy (runtime.c) makes the child see exactly the
 * parent's data and marks the child's copy of the runtime unusable (no
 * threads, no uffd). The child's copies of managed ranges and blocks are
 * plain anonymous memory (the kernel does not carry the registration
 * across fork without EVENT_FORK): the shim forgets them (free() of a block
 * still unmaps it, with nothing to unregister). Memory the child maps
 * afterwards gets a runtime of the child's own, started at its first
 * eligible mapping as in an exec'd child: its own handlers, budget, store
 * and counters file. A server that forks its workers (PostgreSQL's
 * backends, a multiprocessing pool) thus has each worker's memory managed,
 * each under FAULTLINE_BUDGET.
 *
 * Locks: the handlers take range_lock, rt_lock and stats_lock across fork
 * (in that order, the order of munmap() -> register -> start a runtime;
 * the statistics thread only tries range_lock), so that the child, whose
 * other threads are gone, finds none of them held.
 */
static bool shim_forked;	/* this process is a fork()ed child */

static void shim_atfork_prepare(void)
{
	/*
	 * Raised across fork: the runtime's prepare handler, which runs right
	 * after this one, maps a bounce buffer on this (application) thread,
	 * and must neither be managed nor wait for range_lock, held here.
	 */
	shim_depth++;
	pthread_mutex_lock(&range_lock);
	pthread_mutex_lock(&rt_lock);
	pthread_mutex_lock(&stats_lock);
}

static void shim_atfork_parent(void)
{
	pthread_mutex_unlock(&stats_lock);
	pthread_mutex_unlock(&rt_lock);
	pthread_mutex_unlock(&range_lock);
	shim_depth--;
}

/* Context: the child, single-threaded, before fork() returns in it */
static void shim_atfork_child(void)
{
	shim_forked = true;
	__atomic_store_n(&rt, NULL, __ATOMIC_RELAXED);
	rt_tried = false;
	/* the parent's store and its lock stay the parent's */
	shim_store = NULL;
	if (store_lock_fd >= 0)
		close(store_lock_fd);
	store_lock_fd = -1;
	atomic_store_explicit(&nranges, 0, memory_order_relaxed);
	/* what the parent recorded may be gone here (MADV_DONTFORK): the
	 * child manages commits only of mappings it makes itself */
	atomic_store_explicit(&nanon_maps, 0, memory_order_relaxed);
	for (size_t i = 0; i < BLK_SLOTS; i++)
		blk_tab[i].managed = false;
	/* the counters are the process's: the child starts from none */
	atomic_store(&n_mmaps, 0);
	atomic_store(&n_blocks, 0);
	atomic_store(&n_bytes_now, 0);
	atomic_store(&n_bytes_peak, 0);
	atomic_store(&n_unmanaged, 0);
	atomic_store(&n_register_errors, 0);
	atomic_store(&n_heap_trims, 0);
	atomic_store(&n_heap_trim_ns, 0);
	heap_trim_evictions = 0;
	stats_final = false;
	live_fork_child();
	pthread_mutex_unlock(&stats_lock);
	pthread_mutex_unlock(&rt_lock);
	pthread_mutex_unlock(&range_lock);
	shim_depth--;
}

/* ---- exec: FAULTLINE_CHILDREN=no removes the shim from LD_PRELOAD ---- */

static void strip_ld_preload(void)
{
	static const char key[] = "LD_PRELOAD=";
	static const char me[] = "libfaultline-preload.so";

	for (char **e = environ; e && *e; e++) {
		char *v, *w, *tok;

		if (strncmp(*e, key, sizeof(key) - 1))
			continue;
		/* rewrite the value in place, dropping our entry: it only shrinks */
		v = w = *e + sizeof(key) - 1;
		while (*v) {
			size_t len;

			while (*v == ':' || *v == ' ')
				v++;
			tok = v;
			len = strcspn(v, ": ");
			v += len;
			if (!len)
				break;
			if (len >= sizeof(me) - 1 &&
			    !memcmp(tok + len - (sizeof(me) - 1), me, sizeof(me) - 1) &&
			    (len == sizeof(me) - 1 || tok[len - sizeof(me)] == '/'))
				continue;
			if (w != *e + sizeof(key) - 1)
				*w++ = ':';
			memmove(w, tok, len);
			w += len;
		}
		*w = '\0';
	}
}

/* ---- statistics: at exit, every FAULTLINE_STATS_INTERVAL_MS, live ---- */

/*
 * The process's anonymous resident memory and its peak resident set, from
 * /proc/self/status, in bytes (0 if unreadable): beside the managed bytes
 * they show how much of the program the runtime holds. No stdio, no malloc.
 */
static void proc_rss(uint64_t *anon, uint64_t *hwm)
{
	char buf[4096];
	ssize_t n;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	*anon = *hwm = 0;
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		uint64_t *out = !strncmp(l, "RssAnon:", 8) ? anon : !strncmp(l, "VmHWM:", 6) ? hwm : NULL;
		char *c = l;

		if (!out)
			continue;
		while (*c && (*c < '0' || *c > '9') && *c != '\n')
			c++;
		for (*out = 0; *c >= '0' && *c <= '9'; c++)
			*out = *out * 10 + (uint64_t)(*c - '0');
		*out <<= 10;	/* kB */
	}
}

/* bytes of [a, b) the kernel has resident (mincore: never faults) */
static uint64_t resident_of(uintptr_t a, uintptr_t b)
{
	unsigned char v[1024];
	uint64_t n = 0;

	while (a < b) {
		size_t len = b - a < sizeof(v) * page_size ? b - a : sizeof(v) * page_size;

		if (mincore((void *)a, len, v) == 0)	/* ENOMEM: unmapped meanwhile */
			for (size_t i = 0; i < len / page_size; i++)
				n += v[i] & 1;
		a += len;
	}
	return n * page_size;
}

/*
 * The managed memory (mmap ranges, managed malloc blocks) the kernel has
 * resident now: the part of the process's RssAnon the runtime holds, so
 * that the rest, what the shim does not manage, is measured, not guessed.
 * The range table is read under its lock if it can be had at once; at exit
 * another thread may hold it for good, and a torn entry costs a wrong
 * figure, never a fault (mincore of a range no longer mapped fails).
 */
static uint64_t managed_resident(void)
{
	bool locked = pthread_mutex_trylock(&range_lock) == 0;
	size_t n = atomic_load_explicit(&nranges, memory_order_relaxed);
	uint64_t sum = 0;

	for (size_t i = 0; i < n && i < RANGES_MAX; i++)
		sum += resident_of(ranges[i].start, ranges[i].end);
	if (locked)
		pthread_mutex_unlock(&range_lock);
	if (!atomic_load_explicit(&blk_any, memory_order_relaxed))
		return sum;
	for (size_t i = 0; i < BLK_SLOTS; i++) {
		uintptr_t k = atomic_load_explicit(&blk_tab[i].key, memory_order_acquire);

		if (k > BLK_TOMB && blk_tab[i].managed)
			sum += resident_of(k, k + blk_tab[i].maplen);
	}
	return sum;
}

static void shim_snapshot(struct fl_live_snap *s)
{
	struct fl_runtime *r = __atomic_load_n(&rt, __ATOMIC_ACQUIRE);

	s->st.size = sizeof(s->st);
	if (!r || fl_stats_get(r, &s->st))
		memset(&s->st, 0, sizeof(s->st));
	else
		s->regions = (uint64_t)fl_region_count(r);
	s->mmaps = n_mmaps;
	s->malloc_blocks = n_blocks;
	s->bytes_now = n_bytes_now;
	s->bytes_peak = n_bytes_peak;
	s->not_managed = n_unmanaged;
	s->register_errors = n_register_errors;
	proc_rss(&s->rss_anon, &s->vm_hwm);
	s->managed_resident = managed_resident();
	s->heap_trims = n_heap_trims;
	s->heap_trim_ns = n_heap_trim_ns;
}

static void stats_write(FILE *f)
{
	struct fl_live_snap s;
	char prog[256] = "";
	int fd;
	ssize_t n;

	memset(&s, 0, sizeof(s));
	shim_snapshot(&s);
	fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, prog, sizeof(prog) - 1);
		prog[n > 0 ? n - 1 : 0] = '\0';	/* drop the newline */
		close(fd);
	}
	for (char *c = prog; *c; c++)
		if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
			*c = '_';
	if (opt.stats == FL_OPT_STATS_JSON) {
		/* time_ms: since the shim started (one line per interval has
		 * the same pid and a growing time_ms; the last is at exit) */
		fprintf(f, "{\"version\":2,\"pid\":%d,\"program\":\"%s\",\"time_ms\":%llu,"
			"\"runtime\":%s,\"budget\":%llu,\"page_size\":%zu,\"regions\":%llu,"
			"\"managed\":{\"mmaps\":%llu,\"malloc_blocks\":%llu,"
			"\"bytes_now\":%llu,\"bytes_peak\":%llu,\"not_managed\":%llu,"
			"\"register_errors\":%llu},\"process\":{\"rss_anon\":%llu,\"vm_hwm\":%llu,"
			"\"managed_resident\":%llu,\"heap_trims\":%llu,\"heap_trim_ms\":%.3f},"
			"\"counters\":{",
			(int)getpid(), prog,
			(unsigned long long)((live_now_ns() - start_ns) / 1000000u),
			rt ? "true" : "false", (unsigned long long)shim_budget, page_size,
			(unsigned long long)s.regions,
			(unsigned long long)s.mmaps, (unsigned long long)s.malloc_blocks,
			(unsigned long long)s.bytes_now, (unsigned long long)s.bytes_peak,
			(unsigned long long)s.not_managed, (unsigned long long)s.register_errors,
			(unsigned long long)s.rss_anon, (unsigned long long)s.vm_hwm,
			(unsigned long long)s.managed_resident, (unsigned long long)s.heap_trims,
			(double)s.heap_trim_ns / 1e6);
		const char *sep = "";
#define X(name, help) \
		fprintf(f, "%s\"%s\":%llu", sep, #name, (unsigned long long)s.st.name); sep = ",";
		FL_STAT_FIELDS(X)
#undef X
		fprintf(f, "}}\n");
	} else {
		fprintf(f, "faultline statistics for %s (pid %d)\n", prog, (int)getpid());
		fprintf(f, "  %-22s %llu\n", "regions (now)", (unsigned long long)s.regions);
		fprintf(f, "  %-22s %llu\n", "managed mmaps", (unsigned long long)s.mmaps);
		fprintf(f, "  %-22s %llu\n", "managed malloc blocks", (unsigned long long)s.malloc_blocks);
		fprintf(f, "  %-22s %llu\n", "managed bytes (peak)", (unsigned long long)s.bytes_peak);
		fprintf(f, "  %-22s %llu\n", "process RssAnon bytes", (unsigned long long)s.rss_anon);
		fprintf(f, "  %-22s %llu\n", "process VmHWM bytes", (unsigned long long)s.vm_hwm);
		fprintf(f, "  %-22s %llu\n", "managed resident bytes",
			(unsigned long long)s.managed_resident);
		if (s.heap_trims)
			fprintf(f, "  %-22s %llu (%.1f ms)\n", "heap trims",
				(unsigned long long)s.heap_trims, (double)s.heap_trim_ns / 1e6);
#define X(name, help) \
		if (s.st.name) fprintf(f, "  %-22s %llu  # %s\n", #name, (unsigned long long)s.st.name, help);
		FL_STAT_FIELDS(X)
#undef X
	}
}

static void stats_print(bool final)
{
	char path[4096];
	size_t w = 0;
	FILE *f = stderr;

	pthread_mutex_lock(&stats_lock);
	if (stats_final)
		goto out;
	stats_final = final;
	if (opt.stats_file[0]) {
		for (const char *s = opt.stats_file; *s && w < sizeof(path) - 24; s++) {
			if (s[0] == '%' && s[1] == 'p') {
				w += (size_t)snprintf(path + w, sizeof(path) - w, "%d", (int)getpid());
				s++;
			} else {
				path[w++] = *s;
			}
		}
		path[w] = '\0';
		/* appended: an exec'd child writing the same file adds a line */
		f = fopen(path, "ae");
		if (!f) {
			shim_log(FL_OPT_LOG_ERROR, "cannot open FAULTLINE_STATS_FILE %s: %s",
				 path, strerror(errno));
			goto out;
		}
	}
	stats_write(f);
	if (f != stderr)
		fclose(f);
	else
		fflush(f);
out:
	pthread_mutex_unlock(&stats_lock);
}

static void stats_line(void)
{
	stats_print(false);
}

static void live_warn(const char *path, int err)
{
	shim_log(FL_OPT_LOG_INFO, "cannot publish the counters for faultline top in %s: %s",
		 path, strerror(err));
}

/*
 * FAULTLINE_TRIM_HEAP. A budget holds managed memory only; the program's
 * small allocations live in glibc's heaps (brk, per-thread arenas), which
 * keep the pages of what the program freed until malloc_trim() gives them
 * back. While the runtime evicts (the budget is under pressure) those pages
 * go back once a tick: node under a 64 MiB budget held 4 to 5 MiB of free
 * heap at its peak, and trims once a second came too late for a peak that
 * builds up in two. A trim locks each arena in turn for one to three
 * milliseconds (counted in heap_trim_ns): no more than every TRIM_TICK_MS,
 * and never while nothing is evicted.
 *
 * Deadlock check: the tick runs on the publisher thread, which no fault
 * waits for; a program thread that holds an arena lock touches only
 * glibc's own memory, which is never managed (glibc maps its arenas and
 * large chunks with internal calls the shim does not see).
 *
 * glibc's malloc_trim, looked up in libc itself: with jemalloc or tcmalloc
 * as the program's allocator, glibc's heaps are the runtime's and ld.so's.
 * It is looked up with the next allocator (nx_resolve(), at the first
 * allocation or in the constructor), never when the runtime starts: a dlopen() or dlsym() then
 * frees the last dl error string, which the program's allocator made, with
 * glibc's free() (jemalloc after the shim aborted in "free(): invalid
 * pointer").
 */
static void heap_trim_tick(void)
{
	struct fl_runtime *r = __atomic_load_n(&rt, __ATOMIC_ACQUIRE);
	struct fl_stats st = { .size = sizeof(st) };
	uint64_t t0;

	if (!r || !libc_trim || fl_stats_get(r, &st) || st.far_evictions == heap_trim_evictions)
		return;
	heap_trim_evictions = st.far_evictions;
	t0 = live_now_ns();
	libc_trim(0);
	atomic_fetch_add_explicit(&n_heap_trim_ns, live_now_ns() - t0, memory_order_relaxed);
	atomic_fetch_add_explicit(&n_heap_trims, 1, memory_order_relaxed);
}

static const struct live_ops shim_live_ops = {
	.snapshot = shim_snapshot,
	.line = stats_line,
	.warn = live_warn,
	.tick = heap_trim_tick,
};

/* Context: shim_runtime(), shim_depth raised (the thread is the runtime's) */
static void live_begin(uint64_t budget)
{
	struct live_cfg cfg = {
		.publish = opt.live,
		.interval_ms = opt.stats_interval_ms,
		.budget = budget,
		.start_ns = start_ns,
	};
	int ret;

	if (budget && opt.trim_heap && libc_trim)
		cfg.tick_ms = TRIM_TICK_MS;

	shim_budget = budget;
	ret = live_start(&shim_live_ops, &cfg);

	if (ret)
		shim_log(FL_OPT_LOG_WARN, "warning: cannot start the statistics thread: %s%s",
			 strerror(-ret), opt.stats_interval_ms ?
			 "; no FAULTLINE_STATS_INTERVAL_MS lines" : "");
}

/*
 * At exit the runtime stays: other threads and later destructors may still
 * touch managed memory, and the handler threads must keep serving them
 * until the process is gone. We only print.
 */
__attribute__((destructor))
static void shim_fini(void)
{
	shim_depth++;
	/* a forked child that managed nothing of its own has nothing to say */
	if (atomic_load(&shim_state) != SHIM_UNINIT && (!shim_forked || rt)) {
		live_stop();
		if (opt.stats != FL_OPT_STATS_OFF)
			stats_print(true);
	}
	shim_depth--;
}

__attribute__((constructor))
static void shim_init(void)
{
	long pg = sysconf(_SC_PAGESIZE);

	shim_depth++;
	start_ns = live_now_ns();
	if (pg > 0)
		page_size = (size_t)pg;
	/*
	 * getenv() is not safe this early: read environ directly. The parser
	 * copies string values into opt: the strings themselves may be
	 * overwritten by the time we use them (a process title, see options.h).
	 */
	fl_opt_parse_env(&opt, environ, opt_warn, NULL);
	min_region = page_up((size_t)opt.min_region);
	if (!opt.children)
		strip_ld_preload();
	if (opt.stats_interval_ms && opt.stats != FL_OPT_STATS_JSON) {
		if (opt.stats == FL_OPT_STATS_TEXT)
			shim_log(FL_OPT_LOG_WARN, "warning: FAULTLINE_STATS_INTERVAL_MS writes JSON "
				 "lines: FAULTLINE_STATS=json, not text");
		opt.stats = FL_OPT_STATS_JSON;
	}
	if (opt.live)
		live_forget_stale();

	real_mmap = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
	real_munmap = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "munmap");
	real_mremap = (void *(*)(void *, size_t, size_t, int, ...))dlsym(RTLD_NEXT, "mremap");
	real_madvise = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "madvise");
	real_mprotect = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "mprotect");
	real_pthread_create = (int (*)(pthread_t *, const pthread_attr_t *,
				       void *(*)(void *), void *))dlsym(RTLD_NEXT, "pthread_create");
	/* the next allocator and glibc's own entry points, while no dl error
	 * string of the program's is pending (see heap_trim_tick()) */
	(void)next();

	fl_region_opts_init(&region_opts);
	region_opts.fault_around = (size_t)opt.fault_around;

	if (opt.disable) {
		shim_log(FL_OPT_LOG_INFO, "FAULTLINE_DISABLE set: memory is not managed");
		atomic_store(&shim_state, SHIM_OFF);
	} else if (!real_mmap || !real_munmap || !real_mremap) {
		shim_log(FL_OPT_LOG_ERROR, "cannot resolve mmap/munmap/mremap: memory is not managed");
		atomic_store(&shim_state, SHIM_OFF);
	} else {
		atomic_store(&shim_state, SHIM_ACTIVE);
	}
	if (!opt.budget && opt.store[0])
		shim_log(FL_OPT_LOG_WARN, "warning: FAULTLINE_STORE='%s' without "
			 "FAULTLINE_BUDGET: no far memory, the store is not used", opt.store);
	shim_depth--;
}
