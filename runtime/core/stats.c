/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stats.c - per-thread counters summed on read, the feature report, and
 * error strings. Every counter comes from FL_STAT_FIELDS in faultline.h.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "internal.h"

void stats_add_block(struct fl_counters *sum, const struct fl_counters *c)
{
#define X(name, help) sum->name += __atomic_load_n(&c->name, __ATOMIC_RELAXED);
	FL_STAT_FIELDS(X)
#undef X
}

void stats_zero_block(struct fl_counters *c)
{
#define X(name, help) __atomic_store_n(&c->name, 0, __ATOMIC_RELAXED);
	FL_STAT_FIELDS(X)
#undef X
}

void stats_sum(const struct fl_runtime *rt, struct fl_counters *sum)
{
	memset(sum, 0, sizeof(*sum));
	stats_add_block(sum, &rt->wst);
	stats_add_block(sum, &rt->park_st);
	for (unsigned int i = 0; i < rt->nhandlers; i++)
		stats_add_block(sum, &rt->handlers[i].st);
	stats_add_block(sum, &rt->pin_st);
	inthread_stats_add(rt, sum);	/* the faulting threads' own */
	if (rt->hooks.protect_stats_add)	/* application-thread counters */
		rt->hooks.protect_stats_add(rt, sum);
	if (rt->hooks.stats_add)	/* far memory: the evictor's, a gauge */
		rt->hooks.stats_add(rt, sum);
	/* a gauge, not a counter: fl_stats_reset() leaves it alone */
	sum->metadata_bytes = (uint64_t)atomic_load_explicit(&rt->meta_bytes,
							      memory_order_relaxed);
}

FL_EXPORT int fl_stats_get(const struct fl_runtime *rt, struct fl_stats *out)
{
	struct fl_counters sum;
	struct fl_stats full;
	size_t n;

	if (!rt || !out || out->size < offsetof(struct fl_stats, faults))
		return -EINVAL;
	n = out->size < sizeof(full) ? out->size : sizeof(full);
	stats_sum(rt, &sum);
	full.size = (uint32_t)n;
	full.version = FL_STATS_VERSION;
#define X(name, help) full.name = sum.name;
	FL_STAT_FIELDS(X)
#undef X
	memcpy(out, &full, n);
	return 0;
}

FL_EXPORT void fl_stats_reset(struct fl_runtime *rt)
{
	if (!rt)
		return;
	stats_zero_block(&rt->wst);
	stats_zero_block(&rt->park_st);
	stats_zero_block(&rt->pin_st);
	for (unsigned int i = 0; i < rt->nhandlers; i++)
		stats_zero_block(&rt->handlers[i].st);
	inthread_stats_reset(rt);
	if (rt->hooks.stats_reset)
		rt->hooks.stats_reset(rt);
	if (rt->hooks.protect_stats_reset)
		rt->hooks.protect_stats_reset(rt);
}

FL_EXPORT int fl_stats_print(const struct fl_runtime *rt, FILE *f, enum fl_stats_format fmt)
{
	struct fl_counters s;
	int err = 0;

	if (!rt || !f || (fmt != FL_STATS_TEXT && fmt != FL_STATS_JSON))
		return -EINVAL;
	stats_sum(rt, &s);
	if (fmt == FL_STATS_JSON) {
		const char *sep = "";

		err |= fprintf(f, "{\"version\":%d,", FL_STATS_VERSION) < 0;
		err |= fprintf(f, "\"regions\":%d,\"handlers\":%u,\"counters\":{",
			       fl_region_count(rt), rt->nfault_handlers) < 0;
#define X(name, help) \
		err |= fprintf(f, "%s\"%s\":%llu", sep, #name, (unsigned long long)s.name) < 0; \
		sep = ",";
		FL_STAT_FIELDS(X)
#undef X
		err |= fprintf(f, "}}\n") < 0;
	} else {
		err |= fprintf(f, "%-24s %d\n", "regions", fl_region_count(rt)) < 0;
		err |= fprintf(f, "%-24s %u\n", "handlers", rt->nfault_handlers) < 0;
#define X(name, help) \
		err |= fprintf(f, "%-24s %-12llu # %s\n", #name, (unsigned long long)s.name, help) < 0;
		FL_STAT_FIELDS(X)
#undef X
	}
	if (fflush(f))
		err = 1;
	return err ? -EIO : 0;
}

FL_EXPORT int fl_features(const struct fl_runtime *rt, struct fl_features *out)
{
	const struct fl_uffd *u;
	struct fl_features f;
	size_t n;

	if (!rt || !out || out->size < offsetof(struct fl_features, open_method))
		return -EINVAL;
	u = &rt->uffd;
	memset(&f, 0, sizeof(f));
	n = out->size < sizeof(f) ? out->size : sizeof(f);
	f.size = n;
	f.kernel_features = u->kernel_features;
	f.features = u->features;
	f.ioctls = u->ioctls;
	f.open_method = u->method;
	f.kernel_faults = u->method != FL_OPEN_SYSCALL_USER_ONLY;
	f.wp = uffd_has(u, UFFD_FEATURE_PAGEFAULT_FLAG_WP);
	f.wp_unpopulated = uffd_has(u, UFFD_FEATURE_WP_UNPOPULATED);
	f.wp_async = (u->kernel_features & UFFD_FEATURE_WP_ASYNC) != 0;
	f.minor_shmem = uffd_has(u, UFFD_FEATURE_MINOR_SHMEM);
	f.move = uffd_has(u, UFFD_FEATURE_MOVE);
	f.poison = uffd_has(u, UFFD_FEATURE_POISON);
	f.thread_id = uffd_has(u, UFFD_FEATURE_THREAD_ID);
	f.event_fork = (u->kernel_features & UFFD_FEATURE_EVENT_FORK) != 0;
	f.event_remap = uffd_has(u, UFFD_FEATURE_EVENT_REMAP);
	f.event_remove = uffd_has(u, UFFD_FEATURE_EVENT_REMOVE);
	f.event_unmap = uffd_has(u, UFFD_FEATURE_EVENT_UNMAP);
	f.sigbus = (u->kernel_features & UFFD_FEATURE_SIGBUS) != 0;
	f.zero_write = "copy";
	f.numa_nodes = rt->numa.nodes;
	f.numa_placement = rt->numa.placement;
	f.inthread = rt->tuffd.fd >= 0;
	memcpy(out, &f, n);
	return 0;
}

static const char *open_name(enum fl_open_method m)
{
	switch (m) {
	case FL_OPEN_DEV:
		return "/dev/userfaultfd";
	case FL_OPEN_SYSCALL:
		return "userfaultfd(2)";
	case FL_OPEN_SYSCALL_USER_ONLY:
		return "userfaultfd(2, UFFD_USER_MODE_ONLY)";
	}
	return "?";
}

FL_EXPORT int fl_features_print(const struct fl_runtime *rt, FILE *f)
{
	struct fl_features ft = { .size = sizeof(ft) };
	int err = 0;

	if (!f || fl_features(rt, &ft))
		return -EINVAL;
#define B(x) ((x) ? "yes" : "no")
	err |= fprintf(f, "open: %s\n", open_name(ft.open_method)) < 0;
	err |= fprintf(f, "kernel_features: 0x%llx\nenabled_features: 0x%llx\nioctls: 0x%llx\n",
		       (unsigned long long)ft.kernel_features,
		       (unsigned long long)ft.features,
		       (unsigned long long)ft.ioctls) < 0;
	err |= fprintf(f, "intercepts: %s\n", ft.kernel_faults ?
		       "user and kernel-mode accesses (read(2) into managed memory works)" :
		       "user-mode accesses only (kernel-mode accesses to a missing page fail EFAULT)") < 0;
	err |= fprintf(f, "wp: %s\nwp_unpopulated: %s\nwp_async: %s\nminor_shmem: %s\n",
		       B(ft.wp), B(ft.wp_unpopulated), B(ft.wp_async), B(ft.minor_shmem)) < 0;
	err |= fprintf(f, "move: %s\npoison: %s\nthread_id: %s\nsigbus: %s\n",
		       B(ft.move), B(ft.poison), B(ft.thread_id), B(ft.sigbus)) < 0;
	/* which accesses each mode serves (inthread.c) */
	err |= fprintf(f, "resolve: %s\n", !ft.inthread ?
		       (ft.sigbus ? "handler threads (in-thread available: fl_runtime_opts.resolve)" :
			"handler threads (no UFFD_FEATURE_SIGBUS: no in-thread mode)") :
		       rt->resolve == FL_RESOLVE_THREAD ?
		       "in the faulting thread (SIGBUS); handler regions on request" :
		       "in the faulting thread where the region allows it, else handler threads") < 0;
	if (ft.inthread)
		err |= fprintf(f, "inthread_intercepts: user-mode accesses only (a system call "
			       "into a missing page of an in-thread region fails EFAULT%s)\n",
			       rt->far ? ", and so does its write into a clean far page, "
			       "write-protected for dirty tracking" :
			       rt->inthread_wp ? ", and so does its write into a page fl_protect() "
			       "armed" : "") < 0;
	if (ft.inthread && !rt->far)
		err |= fprintf(f, "inthread_wp: %s\n", rt->inthread_wp ?
			       "FL_REGION_WP regions too (callbacks run in the writing thread's "
			       "signal handler)" :
			       "no: FL_REGION_WP regions use handler threads (no uffd-wp on the "
			       "second uffd, or not x86-64)") < 0;
	err |= fprintf(f, "events: remove=%s unmap=%s remap=%s fork=%s\n",
		       B(ft.event_remove), B(ft.event_unmap), B(ft.event_remap),
		       ft.event_fork ? "available, not used (fork policy: produce before fork)" : "no") < 0;
	err |= fprintf(f, "fill_error: %s\n", ft.poison ?
		       "UFFDIO_POISON (the access gets SIGBUS)" :
		       "no POISON: the page stays absent and the fill is retried on the next fault") < 0;
	err |= fprintf(f, "far_evict: %s\n", rt->hooks.evict_mode ? rt->hooks.evict_mode(rt) :
		       ft.move ? "available (UFFDIO_MOVE)" :
		       ft.wp ? "available (write-protect, copy, zap)" : "unavailable: needs MOVE or WP") < 0;
	err |= fprintf(f, "far_dirty_tracking: %s\n", ft.wp ?
		       "WP faults (pages read back are write-protected)" :
		       "none: every evicted page is written back") < 0;
	err |= fprintf(f, "far_read_error: %s\n", ft.poison ?
		       "UFFDIO_POISON (the access gets SIGBUS)" :
		       "no POISON: the fault is retried every 1 ms until the store answers") < 0;
	/* checkpoints (wp.c): which mechanism each kernel gets */
	err |= fprintf(f, "dirty_tracking: %s\n",
		       !ft.wp ? "unavailable (no UFFD_FEATURE_PAGEFAULT_FLAG_WP)" :
		       (rt->flags & FL_RT_WP_ASYNC) ?
		       "asynchronous (WP_ASYNC + PAGEMAP_SCAN)" :
		       ft.wp_async ?
		       "synchronous WP faults (WP_ASYNC available: FL_RT_WP_ASYNC)" :
		       "synchronous WP faults (no WP_ASYNC in this kernel)") < 0;
	err |= fprintf(f, "wp_never_touched: %s\n", !ft.wp ? "unavailable" :
		       "installed write-protected on first touch (UFFDIO_COPY_MODE_WP; "
		       "needs no WP_UNPOPULATED)") < 0;
	err |= fprintf(f, "zero_write: %s\n", ft.zero_write) < 0;
	err |= fprintf(f, "numa: %d node%s: %s\n", rt->numa.nodes,
		       rt->numa.nodes == 1 ? "" : "s", rt->numa.why ? rt->numa.why : "?") < 0;
#undef B
	return err || fflush(f) ? -EIO : 0;
}

FL_EXPORT const char *fl_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -EINVAL:
		return "invalid argument (unaligned, zero length, bad option)";
	case -EEXIST:
		return "range overlaps a registered region";
	case -ENOENT:
		return "no region starts at that address";
	case -ENOMEM:
		return "out of memory or address space, or range not mapped";
	case -EOVERFLOW:
		return "length too large";
	case -EPERM:
		return "no permission to open a userfaultfd (need root, CAP_SYS_PTRACE, /dev/userfaultfd access or vm.unprivileged_userfaultfd=1)";
	case -ENOSYS:
		return "kernel without userfaultfd";
	case -ENODEV:
		return "runtime unusable in a forked child";
	case -EIO:
		return "I/O error";
	case -EOPNOTSUPP:
		return "not supported by this kernel or runtime mode";
	case -ENODATA:
		return "image truncated";
	case -EBADMSG:
		return "image corrupt (bad magic, checksum or structure)";
	case -EPROTONOSUPPORT:
		return "image format version not supported";
	case -ESTALE:
		return "image chain broken (parent is not the image the child was made from)";
	}
	/* -INT_MIN overflows: no errno is that large anyway */
	if (err < 0 && err != INT_MIN) {
		const char *s = strerrordesc_np(-err);

		return s ? s : "unknown error";
	}
	return err < 0 ? "unknown error" : "not an error code";
}
