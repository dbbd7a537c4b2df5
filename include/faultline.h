/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faultline.h - the whole public API of libfaultline, a userfaultfd-based
 * user-space paging runtime.
 *
 * Conventions (as liburing's):
 *  - every call returns 0 (or a count) on success and a negative errno on
 *    failure; no call ever sets errno, prints, or aborts the process;
 *  - results come back through out-parameters;
 *  - structs the caller fills start with a `size` field that
 *    fl_*_opts_init() sets, so old callers keep working as fields are added;
 *  - fl_runtime_destroy(NULL) is a no-op.
 *
 * Regions are named by their start address, like munmap(2): there is no
 * region handle that could dangle after an unregister.
 */
#ifndef FAULTLINE_H
#define FAULTLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_VERSION_MAJOR 0
#define FL_VERSION_MINOR 1
#define FL_VERSION_PATCH 0

struct fl_runtime;
struct fl_store;

/* ------------------------------------------------------------------------ */
/* Runtime                                                                   */

/**
 * enum fl_tier_policy - which fault-resolution tiers the runtime may use.
 * @FL_TIERS_ADAPTIVE: speculative first, region read lock for blocking
 *	resolutions, index-locked fallback when writers race (the default).
 * @FL_TIERS_SPF: speculative only; a fault that cannot be resolved
 *	speculatively goes straight to the locked fallback.
 * @FL_TIERS_REGION: skip the speculative tier; every fault takes its
 *	region's read lock (one atomic inc/dec on the region's refcount).
 * @FL_TIERS_GLOBAL: every fault takes the index lock for reading.
 *
 * The forced policies exist so that benchmarks can compare the tiers on the
 * same work; correctness does not depend on the policy.
 */
enum fl_tier_policy {
	FL_TIERS_ADAPTIVE = 0,
	FL_TIERS_SPF,
	FL_TIERS_REGION,
	FL_TIERS_GLOBAL,
};

/* fl_runtime_opts.flags */
#define FL_RT_NO_PIN		(1u << 0) /* do not pin handler threads to CPUs */
#define FL_RT_USER_MODE_ONLY	(1u << 1) /* open the uffd user-mode-only on purpose */
/*
 * FL_RT_WP_ASYNC: enable UFFD_FEATURE_WP_ASYNC on the runtime's uffd. The
 * kernel then resolves every write-protect fault itself (no message reaches
 * a handler) and dirty tracking reads the written pages with PAGEMAP_SCAN.
 * It is a per-uffd switch that changes the meaning of *all* WP faults, so
 * such a runtime offers no fl_protect() callbacks and no live snapshots.
 * Off by default: the default runtime is sync-capable. fl_runtime_create()
 * fails with -EOPNOTSUPP when the kernel lacks WP_ASYNC (before 6.7).
 */
#define FL_RT_WP_ASYNC		(1u << 2)
#define FL_RT_EVICT_NO_MOVE	(1u << 3) /* far memory: never evict with UFFDIO_MOVE
					   * (tests; what a 6.1 kernel gets anyway) */

#define FL_MAX_HANDLERS 256

/**
 * enum fl_resolve - which thread resolves a fault.
 * @FL_RESOLVE_HANDLER: a handler thread reads the fault from the uffd and
 *	resolves it while the faulting thread sleeps in the kernel: two
 *	context switches per fault, and a wake-up across CPUs when the
 *	handler runs on another one. Serves every region. The default.
 * @FL_RESOLVE_THREAD: the faulting thread resolves its own fault: the
 *	runtime opens a second uffd with UFFD_FEATURE_SIGBUS, the kernel
 *	raises SIGBUS in the faulting thread, and the runtime's SIGBUS handler
 *	installs the page and returns (doc/architecture.md, "In the faulting
 *	thread"). Every region of the runtime is resolved so unless it asks
 *	for FL_REGION_HANDLER; a region that cannot be (see FL_REGION_THREAD)
 *	is refused with -EOPNOTSUPP.
 * @FL_RESOLVE_AUTO: in the faulting thread for every region that can be,
 *	by a handler thread for the others.
 *
 * fl_runtime_opts_init() takes the default from the environment variable
 * FAULTLINE_RESOLVE (handler, thread or auto), so that a program or a test
 * suite can be switched without a rebuild; any other value makes
 * fl_runtime_create() fail with -EINVAL.
 */
enum fl_resolve {
	FL_RESOLVE_HANDLER = 0,
	FL_RESOLVE_THREAD,
	FL_RESOLVE_AUTO,
};

/**
 * struct fl_runtime_opts - options for fl_runtime_create().
 * @size: sizeof(struct fl_runtime_opts); set by fl_runtime_opts_init().
 * @handlers: number of handler threads, 1..FL_MAX_HANDLERS; 0 means one
 *	per CPU in the calling thread's affinity mask.
 * @handler_cpus: NULL: handler i is pinned to the i-th CPU of the affinity
 *	mask (modulo its size). Otherwise an array of @handlers CPU numbers;
 *	-1 leaves that handler unpinned. Ignored with FL_RT_NO_PIN.
 * @tiers: tier policy, see enum fl_tier_policy.
 * @flags: FL_RT_* flags.
 * @store: far memory: the backing store evicted pages go to (see "Far
 *	memory" below). NULL (the default): no far memory, @budget ignored.
 *	The caller keeps ownership and destroys the store after
 *	fl_runtime_destroy(); one store serves one runtime.
 * @budget: far memory: bytes of managed memory the runtime keeps resident
 *	(rounded down to pages; 0 with a store: -EINVAL).
 * @budget_high_pct, @budget_low_pct: watermarks in percent of @budget: the
 *	evictor starts above high and stops at low. 0: defaults 100 and 90.
 *	A runtime with a store owns the uffd's write-protect faults: @store
 *	with FL_RT_WP_ASYNC is -EINVAL, and fl_protect()/fl_dirty_start() on
 *	it return -EOPNOTSUPP (checkpoints of far memory are not offered yet).
 * @resolve: see enum fl_resolve. Anything but FL_RESOLVE_HANDLER needs the
 *	kernel's UFFD_FEATURE_SIGBUS (4.14); with @store also UFFDIO_MOVE
 *	eviction (not FL_RT_EVICT_NO_MOVE), a store whose read is
 *	signal-safe (the file and memory stores; FL_STORE_READ_SIGNAL_SAFE)
 *	and x86-64 (FL_RESOLVE_THREAD without them: -EOPNOTSUPP;
 *	FL_RESOLVE_AUTO resolves every region in handler threads). A signal handler
 *	takes no lock, so in-thread faults take tier 1 only: FL_RESOLVE_THREAD
 *	with @tiers FL_TIERS_REGION or FL_TIERS_GLOBAL is -EINVAL, and
 *	FL_RESOLVE_AUTO with them resolves in handler threads. The runtime then
 *	keeps a SIGBUS handler installed process-wide while it lives (see
 *	FL_REGION_THREAD for what that asks of the program).
 */
struct fl_runtime_opts {
	size_t size;
	unsigned int handlers;
	const int *handler_cpus;
	enum fl_tier_policy tiers;
	unsigned int flags;
	/* far memory (appended in 0.1; see fl_store_*()) */
	struct fl_store *store;
	size_t budget;
	unsigned int budget_high_pct;
	unsigned int budget_low_pct;
	/* in-thread resolution (appended in 0.2) */
	enum fl_resolve resolve;
};

/**
 * fl_runtime_opts_init() - fill @o with the defaults.
 * Context: any.
 */
void fl_runtime_opts_init(struct fl_runtime_opts *o);

/**
 * fl_runtime_create() - open a userfaultfd, probe the kernel's features and
 * start the handler threads.
 * @o: options, or NULL for the defaults.
 * @out: the new runtime.
 *
 * The uffd is opened through /dev/userfaultfd, else userfaultfd(2), else
 * userfaultfd(2) with UFFD_USER_MODE_ONLY (each fallback taken on ENOENT,
 * EACCES or EPERM). fl_features() reports what was obtained.
 *
 * Context: any thread; not from a handler thread or a fill callback.
 * Return: 0; -EINVAL (bad options); -EPERM (no way to open a userfaultfd);
 *	-ENOSYS (kernel without userfaultfd); -EOPNOTSUPP (a feature @o asks
 *	for, e.g. FL_RT_WP_ASYNC, that the kernel lacks); -EMFILE (no file
 *	descriptor left); -ENOMEM; -EAGAIN (threads).
 */
int fl_runtime_create(const struct fl_runtime_opts *o, struct fl_runtime **out);

/**
 * fl_runtime_destroy() - unregister every region, stop the handler threads
 * and free the runtime. Regions created by fl_region_map() are unmapped;
 * memory registered with fl_region_register() stays mapped, with the pages
 * that were resident. NULL is a no-op.
 * Context: no other thread may use @rt concurrently or afterwards, and no
 *	application thread may still be blocked on a fault in a managed range.
 */
void fl_runtime_destroy(struct fl_runtime *rt);

/* ------------------------------------------------------------------------ */
/* Regions                                                                   */

/**
 * enum fl_pager - what produces the contents of a page on its first touch.
 * @FL_PAGER_ZERO: zeros (reads map the shared zero page; writes get a
 *	private zeroed page at once, so they do not fault twice).
 * @FL_PAGER_COPY: bytes from a caller's buffer (@src, @src_len); the part of
 *	the region beyond @src_len reads as zeros. The buffer must stay valid
 *	and unchanged while the region is registered.
 * @FL_PAGER_FILL: a callback fills each page run on a handler thread.
 */
enum fl_pager {
	FL_PAGER_ZERO = 0,
	FL_PAGER_COPY,
	FL_PAGER_FILL,
};

/**
 * typedef fl_fill_fn - produce @len bytes of a region at @offset into @dst.
 * @arg: fl_region_opts.fill_arg.
 * @offset: byte offset in the region, page aligned.
 * @dst: a runtime buffer (not managed memory), @len bytes.
 * @len: a multiple of the page size.
 *
 * Context: a handler thread; also the thread that calls fork() (the child's
 *	copy is produced first), and with far memory a thread that
 *	unregisters, shrinks or destroys the region (its evicted pages are
 *	read back). It must not touch managed memory (that would deadlock:
 *	the handler would wait on a fault only it can resolve) and must not
 *	call into the runtime (writers wait for fills in flight).
 * Return: 0, or a negative errno, counted in fill_errors: with
 *	UFFDIO_POISON (6.6) the faulting access then fails with SIGBUS;
 *	without it the fill is retried on the next fault.
 */
typedef int (*fl_fill_fn)(void *arg, uint64_t offset, void *dst, size_t len);

/* fl_region_opts.fault_around */
#define FL_FAULT_AROUND_ADAPTIVE 0	/* grow 4 KiB .. 4 MiB on sequential runs */
#define FL_FAULT_AROUND_MAX (4u << 20)

/* fl_region_opts.flags */
#define FL_REGION_FILL_NONBLOCK	(1u << 0) /* fill never blocks: may run on tier 1 */
/*
 * FL_REGION_WP: register the range for write-protect faults too (MISSING|WP),
 * as fl_protect(), dirty tracking and checkpoints need. Needs the kernel's
 * UFFD_FEATURE_PAGEFAULT_FLAG_WP: fl_region_map/register fail -EOPNOTSUPP
 * without it.
 */
#define FL_REGION_WP		(1u << 1)
/*
 * FL_REGION_THREAD, FL_REGION_HANDLER: resolve this region's faults in the
 * faulting thread, or in handler threads, whatever the runtime's
 * fl_runtime_opts.resolve says. In-thread resolution needs a runtime
 * created with FL_RESOLVE_THREAD or FL_RESOLVE_AUTO (-EINVAL otherwise)
 * and serves the zero and copy pagers, far memory's regions where the
 * runtime allows it (fl_runtime_opts.resolve), and the fill pager whose
 * callback is marked FL_REGION_FILL_SIGNAL_SAFE: it then runs in the
 * faulting thread's SIGBUS handler (-EOPNOTSUPP without the mark). With FL_REGION_WP too, on x86-64
 * (the fault's error code tells a write-protect fault from a missing one)
 * and in a runtime without a store: fl_protect()'s callbacks then run in
 * the writing thread's SIGBUS handler (see fl_wp_fn), and dirty tracking
 * and checkpoints need no handler thread (-EOPNOTSUPP elsewhere).
 *
 * What an in-thread region asks of the program:
 *  - SIGBUS is not blocked in a thread that touches it (the kernel would
 *    kill the process), and the program's own SIGBUS handler, if any, was
 *    installed before the runtime was created (the runtime chains to it
 *    for every SIGBUS that is not one of its faults) and is not replaced
 *    afterwards;
 *  - system calls do not read or write never-touched pages of it: with
 *    UFFD_FEATURE_SIGBUS a kernel-mode access to a missing page fails
 *    with EFAULT instead of faulting (read(2) into a fresh buffer, say),
 *    and so does a write into a write-protected page (a clean far-memory
 *    page, a page fl_protect() armed). fl_prefault() the buffer first.
 * The handler runs on the thread's alternate signal stack if it has one
 * and needs less than 2 KiB of it.
 */
#define FL_REGION_THREAD	(1u << 2)
#define FL_REGION_HANDLER	(1u << 3)
/*
 * FL_REGION_FILL_SIGNAL_SAFE: the fill callback is async-signal-safe (no
 * malloc, no lock the program may hold; pread(2) and other system calls
 * are fine), so an in-thread region may run it in the faulting thread's
 * SIGBUS handler. It may still block: it runs outside the runtime's
 * lock-free section, holding only the region's read reference, as a
 * handler's tier 2 does (unless FL_REGION_FILL_NONBLOCK says it never
 * blocks). Its run is then at most 16 pages (the faulting thread's
 * buffer). Only with FL_PAGER_FILL (-EINVAL otherwise).
 */
#define FL_REGION_FILL_SIGNAL_SAFE (1u << 4)

/**
 * struct fl_region_opts - per-region options.
 * @size: sizeof(struct fl_region_opts); set by fl_region_opts_init().
 * @pager: see enum fl_pager.
 * @src, @src_len: FL_PAGER_COPY's source.
 * @fill, @fill_arg: FL_PAGER_FILL's callback.
 * @fault_around: bytes resolved per fault: FL_FAULT_AROUND_ADAPTIVE, or a
 *	power of two from the page size (off) to FL_FAULT_AROUND_MAX. The
 *	window is aligned to its size, clipped to the region, and covers only
 *	pages not yet produced.
 * @flags: FL_REGION_* flags.
 */
struct fl_region_opts {
	size_t size;
	enum fl_pager pager;
	const void *src;
	size_t src_len;
	fl_fill_fn fill;
	void *fill_arg;
	size_t fault_around;
	unsigned int flags;
};

/**
 * fl_region_opts_init() - fill @o with the defaults (zero pager, adaptive
 * fault-around).
 * Context: any.
 */
void fl_region_opts_init(struct fl_region_opts *o);

/**
 * fl_region_map() - map a new anonymous private region of @len bytes and
 * bring it under the runtime.
 * @rt: the runtime.
 * @len: bytes, a non-zero multiple of the page size.
 * @o: region options, or NULL for the defaults.
 * @addr: out: the region's start address.
 *
 * Context: any thread but a handler thread; first waits until the events
 *	handlers have read over the range (an earlier munmap of the same
 *	addresses) are applied, then takes the index writer lock; waits for
 *	an RCU grace period only on failure paths. May block.
 * Return: 0; -EINVAL (bad argument); -ENOMEM (address space, memory);
 *	-EOVERFLOW (absurd length); -EOPNOTSUPP (FL_REGION_WP without the
 *	kernel's uffd-wp); -ENODEV (runtime unusable after fork).
 */
int fl_region_map(struct fl_runtime *rt, size_t len,
		  const struct fl_region_opts *o, void **addr);

/**
 * fl_region_register() - bring an existing anonymous private mapping
 * [@addr, @addr + @len) under the runtime. Pages already present stay as
 * they are; only missing pages are produced by the pager.
 *
 * The mapping must be anonymous and private. This is not checked: the
 * kernel registers shared anonymous (shmem) memory as well, and the runtime
 * does not look up the mapping's kind; such a region is not supported.
 *
 * Context: as fl_region_map().
 * Return: 0; -EINVAL (unaligned, zero length, @o invalid, or a range the
 *	kernel refuses to register, e.g. a file mapping); -EEXIST (overlaps a
 *	region); -ENOMEM (part of the range is not mapped); -EOVERFLOW
 *	(@addr + @len wraps); -EOPNOTSUPP (FL_REGION_WP without uffd-wp);
 *	-EBUSY (the range is registered with another userfaultfd); -ENODEV
 *	(runtime unusable after fork).
 */
int fl_region_register(struct fl_runtime *rt, void *addr, size_t len,
		       const struct fl_region_opts *o);

/**
 * fl_region_unregister() - take the region that starts at @addr out of the
 * runtime. The region is unpublished, in-flight faults on it drain, an RCU
 * grace period passes, and only then is the range unregistered from the
 * uffd (and, for a region made by fl_region_map(), unmapped): no handler
 * can install a page into whatever the range becomes next.
 *
 * Context: any thread but a handler thread or a fill callback. Blocks for
 *	a grace period.
 * Return: 0; -EINVAL (@addr not page aligned); -ENOENT (no region starts
 *	at @addr, including a second unregister of the same region); -ENODEV
 *	(runtime unusable after fork).
 */
int fl_region_unregister(struct fl_runtime *rt, void *addr);

/**
 * fl_region_unregister_discard() - as fl_region_unregister(), for a caller
 * that is about to unmap the range (munmap, free): its contents are not
 * needed. With far memory the evicted pages are then dropped from the store
 * instead of read back (which costs a store read per page and can take
 * resident memory far over the budget just before the unmap); afterwards
 * they read as zeros until the caller unmaps the range. Without far memory
 * it is fl_region_unregister().
 *
 * Context: as fl_region_unregister().
 * Return: as fl_region_unregister().
 */
int fl_region_unregister_discard(struct fl_runtime *rt, void *addr);

/**
 * fl_range_unregister() - take [@addr, @addr + @len) out of the runtime,
 * whatever regions it covers or cuts: a region inside it goes as by
 * fl_region_unregister(); a region it cuts is split, and its pieces outside
 * the range stay registered with their pages as they were (resident pages
 * still counted against the budget, evicted ones still in the store: nothing
 * is read back for them). For an munmap(2), mprotect(2) or mmap(MAP_FIXED)
 * of part of a region. The range leaves with the same ordering as a whole
 * region (unpublished, faults drained, a grace period, then unregistered);
 * pieces of a region made by fl_region_map() are unmapped.
 * @flags: 0, or FL_UNREGISTER_DISCARD: the caller is about to unmap the
 *	range; with far memory its evicted pages are dropped, not read back
 *	(as fl_region_unregister_discard()).
 *
 * Context: as fl_region_unregister().
 * Return: 0; -EINVAL (unaligned, zero length, unknown flag); -ENOENT (no
 *	region overlaps the range); -ENOMEM (no memory to split a region: the
 *	regions taken out before it stay out, the rest stay as they were);
 *	-EOVERFLOW (@addr + @len wraps); -ENODEV (after fork).
 */
#define FL_UNREGISTER_DISCARD	(1u << 0)
int fl_range_unregister(struct fl_runtime *rt, void *addr, size_t len, unsigned int flags);

/**
 * fl_region_resize() - change the length of the region that starts at @addr.
 * Shrinking unregisters (and for fl_region_map() regions unmaps) the tail.
 * Growing extends the region in place: for fl_region_map() regions the
 * runtime maps the extension (mremap without moving); for registered
 * regions the caller must have mapped it.
 *
 * Context: as fl_region_unregister().
 * Return: 0; -EINVAL (unaligned, zero length); -ENOENT (no region at
 *	@addr); -EEXIST (growth would overlap another region); -ENOMEM (no
 *	room to grow in place, or extension not mapped); -ENOSPC (far memory:
 *	growth beyond the region's store extent); -EOVERFLOW; -ENODEV.
 */
int fl_region_resize(struct fl_runtime *rt, void *addr, size_t new_len);

/**
 * fl_region_count() - number of registered regions.
 * Context: any thread but a fill or store callback (takes the index read
 *	lock). Return: the count (>= 0); -EINVAL (@rt NULL).
 */
int fl_region_count(const struct fl_runtime *rt);

/* ------------------------------------------------------------------------ */
/* Far memory: backing stores, budget, pin, prefetch                         */

/*
 * With fl_runtime_opts.store and .budget set, every region of the runtime is
 * far memory: at most about @budget bytes of it stay resident; an evictor
 * thread moves the coldest pages (CLOCK) to the store and a fault on an
 * evicted page reads it back. A program never sees a wrong byte: a page being
 * written while it is evicted is either evicted with that write or stays
 * resident; a store read error makes the access fail with SIGBUS (never a
 * zero page); a store write error keeps the page resident (counted in
 * store_errors and budget_overshoot).
 *
 * Store offsets are the runtime's business: each region gets an extent of
 * twice its length rounded up to 1 GiB; a far region cannot grow beyond it
 * (fl_region_resize: -ENOSPC).
 */

/**
 * struct fl_store_ops - a user-provided backing store.
 * @size: sizeof(struct fl_store_ops).
 * @read: fill @buf with the @len bytes at @off. Bytes never written read as
 *	zeros. Return 0, or a negative errno (the faulting access then gets
 *	SIGBUS). A short read must be reported as -EIO.
 * @write: store @len bytes at @off. Return 0 or a negative errno (-ENOSPC,
 *	-EIO...): the page then stays resident and eviction is retried later.
 * @discard: optional (NULL): the runtime no longer needs [@off, @off+@len).
 * @flush: optional: make written data durable (never needed for paging).
 * @destroy: optional: called once by fl_store_destroy().
 * @flags: optional (appended in 0.4): FL_STORE_READ_SIGNAL_SAFE says that
 *	@read is async-signal-safe (it takes no lock, allocates nothing, calls
 *	only async-signal-safe functions). Only then may a runtime resolve
 *	faults in the faulting thread (FL_RESOLVE_THREAD, AUTO) with this
 *	store: the page-in runs @read in that thread's SIGBUS handler.
 *	Unknown bits: -EINVAL.
 *
 * Context of every callback: concurrently, from the runtime's threads and
 * from the callbacks store's own worker threads (up to four, which run
 * page-in reads so that a handler never waits for @read); @read also from
 * application threads that read evicted pages back (fl_region_unregister(),
 * fl_region_resize(), fl_runtime_destroy(), fork()), @discard also from
 * handlers applying an munmap. @off and @len are page multiples. They must
 * not touch managed memory or call into the runtime, and may block.
 */
struct fl_store_ops {
	size_t size;
	int (*read)(void *arg, uint64_t off, void *buf, size_t len);
	int (*write)(void *arg, uint64_t off, const void *buf, size_t len);
	int (*discard)(void *arg, uint64_t off, size_t len);
	int (*flush)(void *arg);
	void (*destroy)(void *arg);
	/* appended in 0.4 */
	unsigned int flags;
};

#define FL_STORE_READ_SIGNAL_SAFE	(1u << 0)

/**
 * fl_store_memory_create() - a store in the process's own anonymous memory
 * (for tests and experiments: it saves no memory).
 * Context: any. Return: 0; -EINVAL; -ENOMEM.
 */
int fl_store_memory_create(struct fl_store **out);

/* fl_store_file_create() flags */
#define FL_STORE_FILE_DIRECT	(1u << 0)	/* O_DIRECT (page-aligned I/O) */

/**
 * fl_store_file_create() - a store in a file, read and written with io_uring
 * (one ring per thread that does store I/O; pread/pwrite where io_uring
 * cannot be set up).
 * @path: NULL: an unnamed O_TMPFILE with mode 0600 in $TMPDIR (else /tmp):
 *	no other user can read evicted pages and nothing is left after exit.
 *	A directory: such an unnamed file in it. Otherwise this file, created
 *	with mode 0600 if missing, truncated.
 * @flags: FL_STORE_FILE_* flags.
 * Context: any. Return: 0; -EINVAL; -errno of open(2) (-EACCES, -ENOENT,
 *	-EOPNOTSUPP when the file system has no O_TMPFILE...); -ENOMEM.
 */
int fl_store_file_create(const char *path, unsigned int flags, struct fl_store **out);

/**
 * fl_store_memcached_create() - a store on a pool of memcached servers.
 * @url: memcached://HOST:PORT[,HOST:PORT...][?OPTIONS], HOST a name, an
 *	IPv4 address or [an IPv6 one]; OPTIONS, joined with '&':
 *	replicas=N	each page on N + 1 servers (default 0; fewer than the
 *			servers): losing any N of them loses no page
 *	encrypt=no	authenticate the pages without encrypting them (for
 *			a pool no one else can reach; default yes)
 *	timeout=MS	give up on a server after MS milliseconds (2000); a
 *			server that fails for a whole timeout with no answer
 *			in between is lost, and until then reads of pages
 *			whose only copy it holds wait for it
 *	lease=S		items live S seconds unless renewed (default 600,
 *			10 to 2592000, 0: for ever); a thread of the store
 *			renews them, so a process that ends without
 *			destroying its store leaves nothing past its lease
 * @flags: 0.
 * @err: if not NULL, a message naming what is wrong (@errlen bytes).
 *
 * One item a page, keyed by a random id of the store and the page's
 * offset, sealed with a random key that never leaves the process
 * (XChaCha20-Poly1305, or its Poly1305 tag alone with encrypt=no) over the
 * bytes, the offset and a write generation: a page that was lost,
 * replaced, went stale or was changed on a server is never read back as
 * the page, but fails the read (the access gets SIGBUS) unless a replica
 * has it right.
 * The servers should run with -M (no eviction of items). Every server must
 * answer before the store is made.
 * Context: any. Return: 0; -EINVAL (a malformed @url); -E2BIG (over 64
 *	servers); -ECONNREFUSED (a server did not answer); -EOPNOTSUPP (built
 *	without libmemcached); -ENOMEM.
 */
int fl_store_memcached_create(const char *url, unsigned int flags, struct fl_store **out,
			      char *err, size_t errlen);

/**
 * fl_store_callbacks_create() - a store made of the caller's callbacks.
 * @ops: copied; @ops->read and @ops->write are required.
 * @arg: passed to every callback.
 * Context: any. Return: 0; -EINVAL; -ENOMEM.
 */
int fl_store_callbacks_create(const struct fl_store_ops *ops, void *arg,
			      struct fl_store **out);

/**
 * fl_store_destroy() - free a store (its file is closed; an O_TMPFILE
 * vanishes). NULL is a no-op.
 * Context: no runtime may still use @s (destroy the runtime first).
 */
void fl_store_destroy(struct fl_store *s);

/**
 * fl_pin() - make [@addr, @addr + @len) resident and keep it from eviction
 * until fl_unpin(). Pins nest (up to 65535 per page).
 * The fast path reads the page words with atomics only and, when every page
 * is resident, takes the pins with compare-and-swap (counted in pin_fast);
 * otherwise the caller touches the missing pages itself (faulting them in)
 * and retries page by page (pin_slow).
 * Context: any thread but a handler thread or a store/fill callback; the
 *	range must lie in one region and must not be unregistered while pinned.
 *	May block (page-in). Works without far memory too (pins then only
 *	make the range resident).
 * Return: 0; -EINVAL (unaligned, zero length, crosses a region end);
 *	-ENOENT (not in a region); -EBUSY (pin count limit); -ENODEV.
 */
int fl_pin(struct fl_runtime *rt, void *addr, size_t len);

/**
 * fl_unpin() - drop one pin of each page of [@addr, @addr + @len).
 * Context: any thread. Never waits for I/O; may wait briefly for an index
 *	writer that is replacing the region.
 * Return: 0; -EINVAL (a page was not pinned: the others are unpinned);
 *	-ENOENT.
 */
int fl_unpin(struct fl_runtime *rt, void *addr, size_t len);

/**
 * fl_prefetch() - bring [@addr, @addr + @len) in now, in large batches
 * (read-ahead), without pinning it: later faults on it are avoided as long
 * as the budget lets the pages stay.
 * Context: as fl_pin(). Return: as fl_pin(), without -EBUSY.
 */
int fl_prefetch(struct fl_runtime *rt, void *addr, size_t len);

/* ------------------------------------------------------------------------ */
/* Kernel features                                                           */

/* how the userfaultfd was opened */
enum fl_open_method {
	FL_OPEN_DEV = 1,		/* /dev/userfaultfd */
	FL_OPEN_SYSCALL,		/* userfaultfd(2) */
	FL_OPEN_SYSCALL_USER_ONLY,	/* userfaultfd(2, UFFD_USER_MODE_ONLY) */
};

/**
 * struct fl_features - what the kernel gave the runtime.
 * @size: set by the caller to sizeof(struct fl_features).
 * @kernel_features: UFFDIO_API feature bits the kernel supports.
 * @features: the bits the runtime enabled on its uffd.
 * @ioctls: range ioctls available on an anonymous MISSING registration.
 * @open_method: enum fl_open_method.
 * @kernel_faults: true when kernel-mode accesses to managed memory (read(2)
 *	into it, a futex word in it) are intercepted like user accesses;
 *	false when the uffd is user-mode-only and such accesses fail EFAULT.
 * @wp, @wp_unpopulated, @wp_async, @minor_shmem, @move, @poison,
 *	@thread_id, @event_fork, @event_remap, @event_remove, @event_unmap,
 *	@sigbus: the individual capabilities: @wp_async, @event_fork and
 *	@sigbus say what the kernel offers (the runtime enables them only
 *	where asked to), the others are true only when enabled and usable.
 * @zero_write: how a write fault on a zero-pager page is resolved
 *	("copy" of a zero buffer).
 * @numa_nodes: configured NUMA nodes (0: the kernel has no NUMA support).
 * @numa_placement: true when each fault's page is placed on the faulting
 *	thread's node (several nodes and THREAD_ID); false on one node.
 * @inthread: true when the runtime resolves faults in the faulting thread
 *	(fl_runtime_opts.resolve, a second uffd with UFFD_FEATURE_SIGBUS).
 *	Such regions serve user-mode accesses only: a system call that reads
 *	or writes a missing page of one fails with EFAULT.
 */
struct fl_features {
	size_t size;
	uint64_t kernel_features;
	uint64_t features;
	uint64_t ioctls;
	enum fl_open_method open_method;
	bool kernel_faults;
	bool wp, wp_unpopulated, wp_async, minor_shmem, move, poison;
	bool thread_id, event_fork, event_remap, event_remove, event_unmap;
	bool sigbus;
	const char *zero_write;
	int numa_nodes;
	bool numa_placement;
	/* appended in 0.2 */
	bool inthread;
};

/**
 * fl_features() - report the kernel features the runtime probed.
 * Context: any. Return: 0; -EINVAL (@rt or @out NULL, @out->size too small).
 */
int fl_features(const struct fl_runtime *rt, struct fl_features *out);

/**
 * fl_features_print() - print the feature report, one "name: value" per line.
 * Context: any. Return: 0; -EINVAL; -EIO (write error).
 */
int fl_features_print(const struct fl_runtime *rt, FILE *f);

/* ------------------------------------------------------------------------ */
/* In-thread resolution: what a program or an interposer does around it      */

struct sigaction;

/**
 * fl_sigbus_chain() - set the SIGBUS handler that the runtime's own passes
 * every SIGBUS to that is not one of its faults, while an in-thread runtime
 * (fl_runtime_opts.resolve) keeps its handler installed: what sigaction(2)
 * for SIGBUS must become for a program that sets its handler after such a
 * runtime started (the LD_PRELOAD shim routes the program's sigaction() and
 * signal() here).
 * @act: the new handler (as for sigaction(2)), or NULL to only read.
 * @old: out: the previous one, or NULL.
 * Context: any thread, not a signal handler. Process-wide.
 * Return: 0; -ENOENT when no in-thread runtime's handler is installed
 *	(then sigaction(2) is the way).
 */
int fl_sigbus_chain(const struct sigaction *act, struct sigaction *old);

/**
 * fl_prefault() - make the never-touched pages of in-thread regions in
 * [@addr, @addr + @len) present, by reading them in this thread, so that a
 * system call that reads or writes them does not fail with EFAULT (a
 * kernel-mode access to a missing page of an in-thread region). Far memory
 * in-thread: evicted pages are read back, and clean pages (write-protected
 * for dirty tracking) are made writable by a write that changes nothing;
 * the evictor may still take a page back before the system call runs
 * (fl_pin() first keeps it in). An FL_REGION_WP region: every page gets
 * such a write, so an armed one counts as written (its fl_protect()
 * callback runs) even if the system call only reads it. Pages of other
 * memory are not touched, and unmapped addresses are not an error.
 * Context: any thread, not a signal handler. Return: 0; -EINVAL (the range
 *	wraps around).
 */
int fl_prefault(const void *addr, size_t len);

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */

/*
 * Every counter, declared once. X(name, help). The struct, the text table
 * and the JSON object are generated from this list; new counters are only
 * ever appended (and FL_STATS_VERSION bumped) so old callers keep working.
 */
#define FL_STAT_FIELDS(X) \
	X(faults,		"faults: messages read from the uffd, and faults resolved in the faulting thread") \
	X(faults_read,		"read faults") \
	X(faults_write,		"write faults") \
	X(faults_dup,		"duplicate messages for a page already being produced") \
	X(faults_unknown,	"faults on an address in no region (woken, not served)") \
	X(pages_installed,	"pages installed (COPY/ZEROPAGE), fault-around included") \
	X(pages_zero,		"pages mapped to the shared zero page") \
	X(fault_around,		"faults resolved with more than one page") \
	X(fault_around_pages,	"extra pages installed by fault-around") \
	X(spf_attempt,		"tier 1 (speculative) attempts") \
	X(spf_ok,		"tier 1 successes") \
	X(spf_abort_seq_odd,	"tier 1 aborts: index writer active at entry") \
	X(spf_abort_seq_changed,"tier 1 aborts: index changed during lookup") \
	X(spf_abort_blocking,	"tier 1 hand-offs: resolution may block (tier 2)") \
	X(region_attempt,	"tier 2 (region read lock) attempts") \
	X(region_ok,		"tier 2 successes") \
	X(region_abort_locked,	"tier 2 aborts: region write-locked, detached or at the reader limit") \
	X(region_abort_stale,	"tier 2 aborts: region object reused (range/generation re-check)") \
	X(global_attempt,	"tier 3 (index read lock) attempts") \
	X(global_ok,		"tier 3 successes") \
	X(copy_eexist,		"COPY/ZEROPAGE found the page present (EEXIST): woken") \
	X(copy_eagain,		"COPY/ZEROPAGE deferred by a pending event (EAGAIN): parked") \
	X(parked_retries,	"retries of parked faults") \
	X(range_gone,		"COPY/ZEROPAGE on a range unmapped meanwhile (ENOENT): woken") \
	X(process_gone,		"COPY/ZEROPAGE after the process exited (ESRCH)") \
	X(fill_errors,		"fill callback errors (faulting access gets SIGBUS)") \
	X(ioctl_errors,		"other uffd ioctl errors") \
	X(events_remove,	"REMOVE events (MADV_DONTNEED and friends)") \
	X(events_unmap,		"UNMAP events (munmap of managed memory)") \
	X(events_remap,		"REMAP events (mremap of managed memory)") \
	X(events_other,		"other events") \
	X(remove_races,		"REMOVE events that overlapped a page being produced") \
	X(regions_registered,	"regions registered") \
	X(regions_unregistered,	"regions unregistered") \
	X(regions_resized,	"regions resized") \
	X(index_writes,		"index versions published") \
	X(grace_periods,	"RCU grace periods waited for by writers") \
	X(fork_prepared_pages,	"pages made resident before fork()") \
	X(faults_wp,		"write-protect faults read from the uffd") \
	X(wp_callbacks,		"fl_protect() callbacks run (first write to a protected page)") \
	X(wp_dup,		"WP faults on a page whose callback another handler runs") \
	X(wp_unknown,		"WP faults outside any protected range (unprotected and woken)") \
	X(wp_installs,		"fault-path installs made write-protected (armed range)") \
	X(dirty_collects,	"dirty-set collections (fl_dirty_collect, checkpoints)") \
	X(dirty_pages,		"dirty pages reported by collections") \
	X(ckpt_images,		"checkpoint images written") \
	X(ckpt_pages,		"pages written to checkpoint images (data + zero entries)") \
	X(ckpt_live_copies,	"live snapshot: pages copied before a write (copy-before-write)") \
	X(faults_unknown_waits,	"faults in no region parked while a mapping event may be in flight") \
	X(far_pageins,		"far memory: pages read back from the store") \
	X(far_readahead_pages,	"far memory: of those, pages read ahead of the fault") \
	X(far_evictions,	"far memory: pages evicted") \
	X(far_evict_clean,	"far memory: of those, clean pages dropped without write-back") \
	X(far_evict_move,	"far memory: of those, taken out with UFFDIO_MOVE") \
	X(far_writebacks,	"far memory: pages written to the store") \
	X(far_evict_aborts,	"far memory: evictions undone (written meanwhile, EAGAIN, busy page)") \
	X(far_store_errors,	"far memory: store read/write errors") \
	X(far_read_errors,	"far memory: store read errors (the access got SIGBUS)") \
	X(far_budget_overshoot,	"far memory: evictor rounds that ended above the budget") \
	X(far_throttled,	"far memory: faults delayed because resident memory was over budget") \
	X(far_wp_faults,	"far memory: write-protect faults (dirty tracking, eviction races)") \
	X(far_sweeps,		"far memory: full CLOCK sweeps") \
	X(pin_fast,		"fl_pin calls served by the lockless fast path") \
	X(pin_slow,		"fl_pin calls that faulted pages in (slow path)") \
	X(far_resident_pages,	"far memory (gauge): resident pages, as the evictor last saw them") \
	X(far_resident_peak,	"far memory (gauge): highest resident page count") \
	X(metadata_bytes,	"(gauge) runtime metadata of managed memory: page-state tables and region objects, bytes") \
	X(numa_tid_samples,	"NUMA: faulting threads' nodes looked up (tid cache misses and resamples)") \
	X(numa_remote_fills,	"NUMA: faults resolved for a thread on another node than the handler's") \
	X(numa_policy_sets,	"NUMA: handler memory-policy switches (set_mempolicy MPOL_PREFERRED)") \
	X(far_aio_reads,	"far memory: store reads a handler started and went on serving faults") \
	X(far_aio_drain_waits,	"far memory: waits of a handler for its own reads before it blocked") \
	X(far_rescues,		"far memory: pages whose write-back failed and that could not be put back: kept in runtime memory") \
	X(far_rescued_pages,	"far memory (gauge): pages held in runtime memory after a failed write-back") \
	X(far_event_waits,	"far memory: page-ins held back until an event read before them was applied") \
	X(far_move_miscounts,	"far memory: pages a failed UFFDIO_MOVE moved without counting them (found in the page tables)") \
	X(far_aio_idle_releases, "far memory: read buffers a handler gave back after it had been idle") \
	X(faults_thread,	"faults resolved in the faulting thread (SIGBUS; also counted in faults)") \
	X(thread_retries,	"in-thread faults that returned to run the access again (page being produced, writer or event in flight)") \
	X(thread_chained,	"SIGBUS signals that were not the runtime's, passed to the program's handler")

#define FL_STATS_VERSION 12

/**
 * struct fl_stats - a snapshot of the counters, summed over threads.
 * @size: set by the caller to sizeof(struct fl_stats) before fl_stats_get().
 * @version: FL_STATS_VERSION of the library that filled it.
 */
struct fl_stats {
	uint32_t size;
	uint32_t version;
#define FL_STAT_DECLARE(name, help) uint64_t name;
	FL_STAT_FIELDS(FL_STAT_DECLARE)
#undef FL_STAT_DECLARE
};

/**
 * fl_stats_get() - take a snapshot of the counters. Counters are per thread
 * and summed here: the snapshot is not atomic across counters.
 * @out: @out->size must be set; only that many bytes are filled.
 * Context: any. Return: 0; -EINVAL.
 */
int fl_stats_get(const struct fl_runtime *rt, struct fl_stats *out);

/* fl_stats_print() formats */
enum fl_stats_format {
	FL_STATS_TEXT = 0,	/* "name value  # help" lines */
	FL_STATS_JSON,		/* one JSON object on one line */
};

/**
 * fl_stats_print() - print a snapshot.
 * Context: any thread but a fill or store callback (reads the region count
 *	under the index read lock). Return: 0; -EINVAL; -EIO (write error).
 */
int fl_stats_print(const struct fl_runtime *rt, FILE *f, enum fl_stats_format fmt);

/**
 * fl_stats_reset() - zero every counter (e.g. between benchmark phases).
 * Context: any; counters incremented concurrently may survive the reset.
 */
void fl_stats_reset(struct fl_runtime *rt);

/* ------------------------------------------------------------------------ */
/* Write protection and dirty tracking (runtime/ckpt/wp.c)                        */

/**
 * typedef fl_wp_fn - called once on the first write to a protected page.
 * @arg: fl_protect()'s @arg.
 * @page: the page's address in the region (page aligned).
 * @len: the page size.
 *
 * The callback runs on a handler thread while the writer sleeps in the
 * kernel and the page still holds its old contents: it may read (copy) the
 * page through @page. The page is resident and write-protected, so reading
 * it does not fault; the callback must NOT write it (that would fault on a
 * page only this handler can release: deadlock), must not touch other
 * managed memory, and must not call fl_protect/fl_unprotect/fl_dirty_*()
 * (they wait for callbacks in flight). Only after it returns is the page
 * unprotected and the writer woken ("copy before unprotect").
 *
 * In an in-thread region (FL_REGION_THREAD, or a runtime whose resolve is
 * FL_RESOLVE_THREAD or FL_RESOLVE_AUTO), the writer runs the callback
 * itself, in its SIGBUS handler, before its write: the same contract, and
 * the callback must also be async-signal-safe (no malloc, no lock the
 * interrupted code may hold; atomics, memcpy and system calls are fine),
 * because it interrupts the program wherever the write was. A thread that
 * writes the page while another runs the callback faults again until it
 * is done. A callback that is not signal-safe belongs to a region
 * registered with FL_REGION_HANDLER.
 */
typedef void (*fl_wp_fn)(void *arg, void *page, size_t len);

/**
 * fl_protect() - write-protect [@addr, @addr + @len) and call @cb on the
 * first write to each of its pages. The range must lie inside one region
 * registered with FL_REGION_WP and overlap no other protected range.
 * Pages not yet produced are covered too: the runtime installs them
 * write-protected (this works without UFFD_FEATURE_WP_UNPOPULATED, as on
 * 6.1, because every first touch of a registered page comes through the
 * runtime's MISSING path).
 * @cb: may be NULL: the range is then only tracked (see fl_dirty_collect()).
 *
 * Context: any thread but a handler thread or a callback; may block.
 * Return: 0; -EINVAL (unaligned, zero length, not inside one FL_REGION_WP
 *	region); -EEXIST (overlaps a protected range); -EOPNOTSUPP (no
 *	uffd-wp, or @cb on an FL_RT_WP_ASYNC runtime); -ENODEV (in a child
 *	after fork(): the child's runtime manages nothing); -ENOMEM.
 */
int fl_protect(struct fl_runtime *rt, void *addr, size_t len, fl_wp_fn cb, void *arg);

/**
 * fl_unprotect() - end the protection (or dirty tracking) of the range that
 * fl_protect()/fl_dirty_start() made at exactly [@addr, @addr + @len): the
 * write protection is cleared and writers sleeping on it are woken.
 * Context: as fl_protect(). Waits for callbacks in flight.
 * Return: 0; -EINVAL; -ENOENT (no such protected range).
 */
int fl_unprotect(struct fl_runtime *rt, void *addr, size_t len);

/**
 * enum fl_dirty_mode - how fl_dirty_start() learns which pages were written.
 * @FL_DIRTY_AUTO: the best the runtime has: async on an FL_RT_WP_ASYNC
 *	runtime, sync otherwise.
 * @FL_DIRTY_SYNC: each first write raises a WP fault that a handler
 *	records in a per-page table, then unprotects the page; collection
 *	re-protects the written pages.
 * @FL_DIRTY_ASYNC: UFFD_FEATURE_WP_ASYNC: the kernel unprotects on write
 *	by itself; collection is one PAGEMAP_SCAN get-and-clear
 *	(PM_SCAN_WP_MATCHING) over /proc/self/pagemap. Needs FL_RT_WP_ASYNC.
 */
enum fl_dirty_mode {
	FL_DIRTY_AUTO = 0,
	FL_DIRTY_SYNC,
	FL_DIRTY_ASYNC,
};

/**
 * fl_dirty_start() - start tracking writes to [@addr, @addr + @len) (same
 * rules as fl_protect() with no callback). Every page starts clean. Ends
 * with fl_unprotect(). Tracking follows the range across mremap (REMAP
 * events: a wholly moved range moves; a partly moved one ends) and counts
 * pages dropped with MADV_DONTNEED (REMOVE events) as written: their
 * contents changed to zeros.
 * Context: as fl_protect().
 * Return: as fl_protect(); -EOPNOTSUPP also for a mode the runtime cannot
 *	serve (ASYNC without FL_RT_WP_ASYNC, SYNC with it).
 */
int fl_dirty_start(struct fl_runtime *rt, void *addr, size_t len, enum fl_dirty_mode mode);

/**
 * fl_dirty_collect() - get and clear the set of pages written since
 * tracking started or since the previous collection, and re-arm them.
 * @addr: the start of a range given to fl_dirty_start() or fl_protect().
 * @bitmap: out: bit i (word i / 64, bit i % 64) set if page i was written.
 * @nbits: bits in @bitmap, at least the range's pages.
 * @ndirty: out, may be NULL: the number of bits set.
 * Context: as fl_protect(); holds the range's writers off while it works.
 * Return: 0; -EINVAL; -ENOENT (no range starts at @addr); -ENOSPC
 *	(@nbits too small); -EIO (PAGEMAP_SCAN failed).
 */
int fl_dirty_collect(struct fl_runtime *rt, void *addr, uint64_t *bitmap,
		     size_t nbits, size_t *ndirty);

/* ------------------------------------------------------------------------ */
/* Checkpoints and restore (runtime/ckpt/checkpoint.c, format in runtime/ckpt/image.h) */

struct fl_ckpt;
struct fl_lazy;

/* fl_ckpt_save() flags */
#define FL_CKPT_FULL	(1u << 0) /* every page: a new chain base */
#define FL_CKPT_LIVE	(1u << 1) /* consistent live snapshot: writers may run */
#define FL_CKPT_FSYNC	(1u << 2) /* fdatasync the image before returning */
#define FL_CKPT_DIRECT	(1u << 3) /* write with O_DIRECT (no page cache; buffered
				   * where the file system refuses O_DIRECT) */

/**
 * fl_ckpt_create() - a checkpointer for [@addr, @addr + @len), a range
 * inside one FL_REGION_WP region. Starts dirty tracking with @mode
 * (see fl_dirty_start()); fl_ckpt_destroy() ends it.
 * Context: as fl_protect().
 * Return: as fl_dirty_start().
 */
int fl_ckpt_create(struct fl_runtime *rt, void *addr, size_t len,
		   enum fl_dirty_mode mode, struct fl_ckpt **out);

/**
 * fl_ckpt_save() - write an image to @path, a new file (created 0600 with
 * O_EXCL and O_NOFOLLOW: an existing file or symlink there is an error).
 * The first save, and any with FL_CKPT_FULL, writes every page and starts a
 * chain; the others write only the pages written since the previous save
 * and name it as their parent (by file name: a chain lives in one
 * directory). Without FL_CKPT_LIVE the program must not write the range
 * during the save (the image would mix instants). With FL_CKPT_LIVE the
 * image is the range as of one instant (the start of the save) while the
 * program keeps running: pages are copied before their first write.
 *
 * Context: any thread but a handler thread; one save at a time per @ck.
 * Return: 0; -EEXIST (@path exists); -EXDEV (@path not in the directory of
 *	the chain); -EOPNOTSUPP (FL_CKPT_LIVE on async tracking); -errno of
 *	open/write (the partial file is removed).
 */
int fl_ckpt_save(struct fl_ckpt *ck, const char *path, unsigned int flags);

/**
 * fl_ckpt_destroy() - stop tracking and free @ck. NULL is a no-op.
 * Context: any thread but a handler thread; not concurrently with
 *	fl_ckpt_save() on @ck. Waits for write-protect callbacks in flight.
 */
void fl_ckpt_destroy(struct fl_ckpt *ck);

/**
 * fl_image_check() - validate the image at @path and its whole chain, data
 * checksums included. Images are untrusted input: every error is a return.
 * @len: out, may be NULL: the byte length of the imaged range.
 * Context: any. Return: 0; -ENODATA (truncated); -EBADMSG (corrupt: bad
 *	magic, checksum or structure); -EPROTONOSUPPORT (unknown version);
 *	-EINVAL (another page size); -ESTALE (a parent that is not the one
 *	the child was made from); -ELOOP (chain too long, or a symbolic
 *	link: images are opened O_NOFOLLOW); -EOPNOTSUPP (an image of more
 *	than one region); -errno of open/read.
 */
int fl_image_check(const char *path, size_t *len);

/**
 * fl_restore() - eager restore: read the chain ending at @path into
 * [@addr, @addr + @len), ordinary writable memory (or a runtime region),
 * @len the imaged length. Every page is written; data checksums verified.
 * Context: any thread but a handler thread.
 * Return: 0; -EINVAL (@len differs); the errors of fl_image_check().
 */
int fl_restore(const char *path, void *addr, size_t len);

/**
 * fl_restore_lazy() - lazy restore: map a new region whose pages are read
 * from the chain ending at @path on first touch (a fill pager), with the
 * chain validated up front and each page's checksum verified when it is
 * read (a bad page fails its access with SIGBUS, counted in fill_errors).
 * First touches are recorded in order; fl_lazy_ws_save() writes them as a
 * working set. @ws_path, if not NULL, names such a file from an earlier
 * run: a prefetch thread then reads their data ahead in file order (large
 * reads, queued at once) and touches the pages in the recorded order.
 * @flags: FL_REGION_* flags for the new region (e.g. FL_REGION_WP); the
 *	fill is always marked FL_REGION_FILL_SIGNAL_SAFE (a pread(2) and a
 *	CRC), so an in-thread runtime reads each page in the faulting thread.
 * @addr: out: the region.
 * Context: any thread but a handler thread.
 * Return: 0; the errors of fl_image_check() and fl_region_map(); a bad
 *	working-set file is -EBADMSG, one that cannot be opened -errno of
 *	open(2) (the restore does not start either way); -EOVERFLOW (more
 *	than 2^32 pages).
 */
int fl_restore_lazy(struct fl_runtime *rt, const char *path, const char *ws_path,
		    unsigned int flags, struct fl_lazy **out, void **addr);

/**
 * fl_lazy_ws_save() - write the first-touch order seen so far to @ws_path
 * (a new file, 0600, O_EXCL|O_NOFOLLOW).
 * Context: any thread but a handler thread. Return: 0; -EEXIST; -errno.
 */
int fl_lazy_ws_save(struct fl_lazy *lz, const char *ws_path);

/**
 * fl_lazy_destroy() - stop prefetching, unregister (and unmap) the region,
 * free @lz. NULL is a no-op.
 * Context: as fl_region_unregister(): any thread but a handler thread or a
 *	fill callback; blocks for a grace period.
 */
void fl_lazy_destroy(struct fl_lazy *lz);

/**
 * fl_strerror() - a short description of a negative errno returned by this
 * library. Context: any. Return: a static string.
 */
const char *fl_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* FAULTLINE_H */
