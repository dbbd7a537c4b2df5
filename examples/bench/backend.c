/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "backend.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define THP_SIZE (2ul << 20)

const char *const mode_names[M_NR] = {
	[M_NATIVE] = "native",
	[M_THP] = "native-thp",
	[M_BARE_THREAD] = "bare-thread",
	[M_BARE] = "bare",
	[M_SPF] = "spf",
	[M_REGION] = "region",
	[M_GLOBAL] = "global",
	[M_ADAPTIVE] = "adaptive",
	[M_THREAD] = "thread",
};

static const enum fl_tier_policy mode_tiers[M_NR] = {
	[M_SPF] = FL_TIERS_SPF,
	[M_REGION] = FL_TIERS_REGION,
	[M_GLOBAL] = FL_TIERS_GLOBAL,
	[M_ADAPTIVE] = FL_TIERS_ADAPTIVE,
	[M_THREAD] = FL_TIERS_ADAPTIVE,
};

int backend_open(struct backend *b, enum mode mode, unsigned int handlers,
		 const int *cpus, bool no_pin)
{
	struct fl_runtime_opts o;

	memset(b, 0, sizeof(*b));
	b->mode = mode;
	b->ps = (size_t)sysconf(_SC_PAGESIZE);
	if (mode == M_BARE)
		return bare_open(handlers, no_pin ? NULL : cpus, &b->bare, NULL);
	if (mode == M_BARE_THREAD)
		return bare_open_thread(&b->bare, NULL);
	if (!mode_is_runtime(mode))
		return 0;
	fl_runtime_opts_init(&o);
	o.handlers = handlers;
	o.tiers = mode_tiers[mode];
	/* explicit: fl_runtime_opts_init() takes FAULTLINE_RESOLVE from the environment */
	o.resolve = mode == M_THREAD ? FL_RESOLVE_THREAD : FL_RESOLVE_HANDLER;
	if (no_pin)
		o.flags |= FL_RT_NO_PIN;
	else
		o.handler_cpus = cpus;
	if (mode == M_THREAD) {
		/* the handlers only read events there: one, wherever it runs */
		o.handlers = 1;
		o.handler_cpus = NULL;
		o.flags |= FL_RT_NO_PIN;
	}
	return fl_runtime_create(&o, &b->rt);
}

static int anon_map(size_t len, void **out)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

static int anon_map_fixed(void *addr, size_t len)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);

	return p == MAP_FAILED ? -errno : 0;
}

static int no_thp(void *addr, size_t len)
{
	/*
	 * Native: the 4 KiB kernel path. Bare: one message per 4 KiB page,
	 * like the runtime (which does the same on its own regions).
	 */
	return madvise(addr, len, MADV_NOHUGEPAGE) ? -errno : 0;
}

static void fill_region_opts(struct backend *b, struct fl_region_opts *ro,
			     long fault_around)
{
	fl_region_opts_init(ro);
	ro->pager = FL_PAGER_ZERO;
	if (fault_around == FA_ADAPTIVE)
		ro->fault_around = FL_FAULT_AROUND_ADAPTIVE;
	else if (fault_around == 0)
		ro->fault_around = b->ps;	/* off: one page per fault */
	else
		ro->fault_around = (size_t)fault_around;
}

int backend_map(struct backend *b, size_t len, long fault_around,
		enum churn_kind layout, void **addr)
{
	struct fl_region_opts ro;
	void *p;
	int ret;

	b->len = len;
	b->layout = layout;
	if (mode_is_runtime(b->mode) && layout != CHURN_NEIGHBOUR) {
		fill_region_opts(b, &ro, fault_around);
		ret = fl_region_map(b->rt, len, &ro, &p);
		if (ret)
			return ret;
		b->base = p;
		*addr = p;
		return 0;
	}
	if (b->mode == M_THP) {
		uintptr_t a;

		b->map_len = len + THP_SIZE;
		ret = anon_map(b->map_len, &p);
		if (ret)
			return ret;
		b->map_addr = p;
		a = ((uintptr_t)p + THP_SIZE - 1) & ~(THP_SIZE - 1);
		b->base = (char *)a;
		if (madvise(b->base, len, MADV_HUGEPAGE)) {
			ret = -errno;
			goto err_unmap;
		}
		*addr = b->base;
		return 0;
	}
	/* neighbour layout: [left 1 MiB][region][right 1 MiB + 1 MiB to grow] */
	b->map_len = layout == CHURN_NEIGHBOUR ? NB_LEN + len + 2 * NB_LEN : len;
	ret = anon_map(b->map_len, &p);
	if (ret)
		return ret;
	b->map_addr = p;
	b->base = layout == CHURN_NEIGHBOUR ? b->map_addr + NB_LEN : b->map_addr;
	ret = no_thp(b->base, len);
	if (ret)
		goto err_unmap;
	if (mode_is_bare(b->mode))
		ret = bare_register(b->bare, b->base, len);
	else if (mode_is_runtime(b->mode)) {
		fill_region_opts(b, &ro, fault_around);
		ret = fl_region_register(b->rt, b->base, len, &ro);
	}
	if (ret)
		goto err_unmap;
	*addr = b->base;
	return 0;

err_unmap:
	munmap(b->map_addr, b->map_len);
	b->map_addr = NULL;
	b->base = NULL;
	return ret;
}

static void churn_err(struct backend *b, int err)
{
	if (!err)
		return;
	if (!b->churn_errors++)
		b->first_churn_error = err;
}

/*
 * CHURN_OTHER, four steps: map 2 MiB, shrink to 1 MiB, grow back to 2 MiB
 * (the tail was ours a moment ago, so growing in place usually works; when
 * something else took it, -ENOMEM is counted), unmap.
 */
static void churn_other(struct backend *b)
{
	struct fl_region_opts ro;
	void *p;
	int err = 0;

	switch (b->step % 4) {
	case 0:
		if (b->mode == M_NATIVE || mode_is_bare(b->mode)) {
			err = anon_map(2 * NB_LEN, &p);
			if (!err && mode_is_bare(b->mode)) {
				err = bare_register(b->bare, p, 2 * NB_LEN);
				if (err)
					munmap(p, 2 * NB_LEN);
			}
		} else {
			fl_region_opts_init(&ro);
			err = fl_region_map(b->rt, 2 * NB_LEN, &ro, &p);
		}
		if (err) {
			churn_err(b, err);
			return;		/* stay on this step */
		}
		b->other = p;
		b->other_len = 2 * NB_LEN;
		break;
	case 1:
		if (b->mode == M_NATIVE || mode_is_bare(b->mode)) {
			if (mode_is_bare(b->mode))
				err = bare_unregister(b->bare, b->other + NB_LEN, NB_LEN);
			if (!err && munmap(b->other + NB_LEN, NB_LEN))
				err = -errno;
		} else {
			err = fl_region_resize(b->rt, b->other, NB_LEN);
		}
		if (!err)
			b->other_len = NB_LEN;
		break;
	case 2:
		if (b->mode == M_NATIVE || mode_is_bare(b->mode)) {
			p = mremap(b->other, NB_LEN, 2 * NB_LEN, 0);
			if (p == MAP_FAILED)
				err = -errno;
			else if (mode_is_bare(b->mode))
				err = bare_register(b->bare, b->other + NB_LEN, NB_LEN);
		} else {
			err = fl_region_resize(b->rt, b->other, 2 * NB_LEN);
		}
		if (!err)
			b->other_len = 2 * NB_LEN;
		break;
	case 3:
		if (b->mode == M_NATIVE || mode_is_bare(b->mode)) {
			if (mode_is_bare(b->mode))
				err = bare_unregister(b->bare, b->other, b->other_len);
			if (munmap(b->other, b->other_len) && !err)
				err = -errno;
		} else {
			err = fl_region_unregister(b->rt, b->other);
		}
		b->other = NULL;
		b->other_len = 0;
		break;
	}
	churn_err(b, err);
	b->step++;
}

/*
 * CHURN_NEIGHBOUR, six steps on the ranges touching the fault region:
 * attach left, attach right, grow right, shrink right, detach left, detach
 * right. In the kernel each one splits or merges VMAs next to the faulting
 * one under the mmap write lock; in the runtime each one publishes a new
 * index version next to the region being faulted on.
 */
static void churn_neighbour(struct backend *b)
{
	struct fl_region_opts ro;
	char *left = b->base - NB_LEN, *right = b->base + b->len;
	int err = 0;

	fl_region_opts_init(&ro);
	switch (b->step % 6) {
	case 0:
		if (b->mode == M_NATIVE)
			err = anon_map_fixed(left, NB_LEN);
		else if (mode_is_bare(b->mode))
			err = bare_register(b->bare, left, NB_LEN);
		else
			err = fl_region_register(b->rt, left, NB_LEN, &ro);
		b->left_on = !err;
		break;
	case 1:
		if (b->mode == M_NATIVE)
			err = anon_map_fixed(right, NB_LEN);
		else if (mode_is_bare(b->mode))
			err = bare_register(b->bare, right, NB_LEN);
		else
			err = fl_region_register(b->rt, right, NB_LEN, &ro);
		b->right_on = !err;
		b->right_len = NB_LEN;
		break;
	case 2:
		if (!b->right_on)
			break;
		if (b->mode == M_NATIVE)
			err = anon_map_fixed(right + NB_LEN, NB_LEN);
		else if (mode_is_bare(b->mode))
			err = bare_register(b->bare, right + NB_LEN, NB_LEN);
		else
			err = fl_region_resize(b->rt, right, 2 * NB_LEN);
		if (!err)
			b->right_len = 2 * NB_LEN;
		break;
	case 3:
		if (!b->right_on || b->right_len != 2 * NB_LEN)
			break;
		if (b->mode == M_NATIVE)
			err = munmap(right + NB_LEN, NB_LEN) ? -errno : 0;
		else if (mode_is_bare(b->mode))
			err = bare_unregister(b->bare, right + NB_LEN, NB_LEN);
		else
			err = fl_region_resize(b->rt, right, NB_LEN);
		if (!err)
			b->right_len = NB_LEN;
		break;
	case 4:
		if (!b->left_on)
			break;
		if (b->mode == M_NATIVE)
			err = munmap(left, NB_LEN) ? -errno : 0;
		else if (mode_is_bare(b->mode))
			err = bare_unregister(b->bare, left, NB_LEN);
		else
			err = fl_region_unregister(b->rt, left);
		b->left_on = false;
		break;
	case 5:
		if (!b->right_on)
			break;
		if (b->mode == M_NATIVE)
			err = munmap(right, b->right_len) ? -errno : 0;
		else if (mode_is_bare(b->mode))
			err = bare_unregister(b->bare, right, b->right_len);
		else
			err = fl_region_unregister(b->rt, right);
		b->right_on = false;
		break;
	}
	churn_err(b, err);
	b->step++;
}

void backend_churn_op(struct backend *b, enum churn_kind kind)
{
	if (kind == CHURN_OTHER)
		churn_other(b);
	else if (kind == CHURN_NEIGHBOUR)
		churn_neighbour(b);
}

const struct stat_field stat_fields[] = {
#define FL_STAT_ENTRY(name, help) { #name, offsetof(struct fl_stats, name) },
	FL_STAT_FIELDS(FL_STAT_ENTRY)
#undef FL_STAT_ENTRY
};
const size_t n_stat_fields = sizeof(stat_fields) / sizeof(stat_fields[0]);

bool backend_tiers(struct backend *b, struct tiers *t)
{
	size_t i;

	memset(t, 0, sizeof(*t));
	if (!b->rt)
		return false;
	t->s.size = sizeof(t->s);
	if (fl_stats_get(b->rt, &t->s))
		return false;
	for (i = 0; i < n_stat_fields; i++)
		if (!strncmp(stat_fields[i].name, "spf_abort_", 10))
			t->spf_abort += stat_at(&t->s, stat_fields[i].off);
	return true;
}

void backend_close(struct backend *b, uint64_t *handler_errors)
{
	if (handler_errors)
		*handler_errors = 0;
	if (b->rt) {
		/* churn leftovers first, then the fault region */
		if (b->other)
			fl_region_unregister(b->rt, b->other);
		if (b->left_on)
			fl_region_unregister(b->rt, b->base - NB_LEN);
		if (b->right_on)
			fl_region_unregister(b->rt, b->base + b->len);
		if (b->base)
			fl_region_unregister(b->rt, b->base);
	} else if (b->other) {
		/* native / bare: unmapping drops any registration with it */
		munmap(b->other, b->other_len);
	}
	if (b->map_addr) {
		/* after unregister: registered memory stays mapped, unmap it */
		munmap(b->map_addr, b->map_len);
	}
	if (b->bare)
		bare_close(b->bare, NULL, handler_errors);
	fl_runtime_destroy(b->rt);
	memset(b, 0, sizeof(*b));
}
