/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-discard - fl_region_unregister_discard() on a registered
 * mapping mostly evicted under a tight budget: it reads nothing back from
 * the store (the caller unmaps next: the shim's free() and munmap()), the
 * resident count does not grow, and the region is gone (-ENOENT after).
 * A plain fl_region_unregister() of the same setup reads pages back, so the
 * test tells the two apart.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"

#define PAGES	2048
#define BUDGET	256

static size_t pgsz;

static uint8_t *fill_and_evict(struct fl_runtime *rt)
{
	struct fl_stats st = { .size = sizeof(st) }, st0 = { .size = sizeof(st0) };
	uint8_t *m = mmap(NULL, PAGES * pgsz, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED || fl_region_register(rt, m, PAGES * pgsz, NULL))
		return NULL;
	fl_stats_get(rt, &st0);
	for (size_t pg = 0; pg < PAGES; pg++)
		memset(m + pg * pgsz, (int)(pg * 13 + 1), pgsz);
	for (int i = 0; i < 10000; i++) {
		fl_stats_get(rt, &st);
		if (st.far_evictions - st0.far_evictions >= PAGES - 2 * BUDGET)
			break;
		usleep(1000);
	}
	return m;
}

/*
 * Page-ins once the handlers are quiet: the fill itself pages some in (a
 * page installed ahead by fault-around, evicted before the program wrote
 * it), and a handler counts them after it woke the program, so a plain
 * snapshot right after the fill can miss one and see it arrive later.
 */
static uint64_t pageins(struct fl_runtime *rt)
{
	struct fl_stats st;

	stats_quiet(rt, &st);
	return st.far_pageins;
}

int main(int argc, char **argv)
{
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_runtime *rt;
	struct fl_store *store;
	uint64_t before, after;
	uint8_t *m;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(11);
	rt = tap_far_runtime(BUDGET * pgsz, argc, argv, &store, &ft);

	m = fill_and_evict(rt);
	tap_ok(m != NULL, "register %d pages of our own mapping, fill, let them be evicted", PAGES);
	if (!m)
		return tap_done();
	before = pageins(rt);
	TAP_EQ(fl_region_unregister_discard(rt, m), 0);
	after = pageins(rt);
	tap_ok(after == before, "discard read nothing back from the store (%llu page-ins)",
	       (unsigned long long)(after - before));
	TAP_EQ(fl_region_unregister_discard(rt, m), -ENOENT);
	munmap(m, PAGES * pgsz);

	/* the control: a plain unregister of the same setup reads pages back */
	m = fill_and_evict(rt);
	before = pageins(rt);
	TAP_EQ(fl_region_unregister(rt, m), 0);
	after = pageins(rt);
	tap_ok(after > before, "a plain unregister reads the evicted pages back (%llu page-ins)",
	       (unsigned long long)(after - before));
	munmap(m, PAGES * pgsz);

	/*
	 * The pages a discard drops leave the budget's count: a region filled
	 * right after to below the budget evicts nothing. (The count kept
	 * them once: the evictor then took the new region's pages out.)
	 */
	m = fill_and_evict(rt);
	tap_ok(m != NULL, "again: %d pages filled under a %d-page budget", PAGES, BUDGET);
	if (!m)
		return tap_done();
	{
		struct fl_stats st = { .size = sizeof(st) }, st0 = { .size = sizeof(st0) };
		size_t small = BUDGET * 3 / 4;
		uint8_t *n = mmap(NULL, small * pgsz, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		usleep(100 * 1000);	/* the evictor done: at the low mark, asleep */
		TAP_EQ(fl_region_register(rt, n, small * pgsz, NULL), 0);
		TAP_EQ(fl_region_unregister_discard(rt, m), 0);
		munmap(m, PAGES * pgsz);
		fl_stats_get(rt, &st0);
		memset(n, 7, small * pgsz);
		usleep(100 * 1000);	/* the evictor wakes within 20 ms */
		fl_stats_get(rt, &st);
		tap_ok(st.far_evictions == st0.far_evictions,
		       "%zu pages under a %d-page budget after the discard: %llu evicted",
		       small, BUDGET, (unsigned long long)(st.far_evictions - st0.far_evictions));
		TAP_EQ(fl_region_unregister(rt, n), 0);
		munmap(n, small * pgsz);
	}
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	return tap_done();
}
