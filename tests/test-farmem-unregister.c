/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-unregister - a registered mapping (the program's own memory,
 * which outlives its registration) under a tight budget keeps every byte
 * when it leaves the runtime: fl_region_unregister, fl_region_resize
 * (shrink) and fl_runtime_destroy read evicted pages back first. The shim
 * relies on this for mremap() of managed memory.
 *
 * fl_range_unregister cuts a range out of a region: the range's evicted pages
 * are read back (or, with FL_UNREGISTER_DISCARD, dropped), the pieces outside
 * stay managed as they were, and the budget still holds for them: their
 * resident pages are still counted (a piece registered anew would not count
 * the pages it already has, and the budget would leak by that much).
 */
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>

#include "tap.h"

#define PAGES	2048
#define BUDGET	256

static size_t pgsz;

static uint8_t *fill_and_evict(struct fl_runtime *rt, unsigned int salt)
{
	struct fl_stats st = { .size = sizeof(st) }, st0 = { .size = sizeof(st0) };
	uint8_t *m = mmap(NULL, PAGES * pgsz, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED || fl_region_register(rt, m, PAGES * pgsz, NULL))
		return NULL;
	fl_stats_get(rt, &st0);
	for (size_t pg = 0; pg < PAGES; pg++)
		memset(m + pg * pgsz, (int)(pg * 13 + salt), pgsz);
	for (int i = 0; i < 10000; i++) {
		fl_stats_get(rt, &st);
		if (st.far_evictions - st0.far_evictions >= PAGES - 2 * BUDGET)
			break;
		usleep(1000);
	}
	return m;
}

static size_t bad_pages(const uint8_t *m, size_t pages, unsigned int salt)
{
	size_t bad = 0;

	for (size_t pg = 0; pg < pages; pg++)
		bad += m[pg * pgsz] != (uint8_t)(pg * 13 + salt) ||
		       m[pg * pgsz + pgsz - 1] != (uint8_t)(pg * 13 + salt);
	return bad;
}

/* pages of [p, p + pages) the kernel has resident */
static size_t resident_pages(uint8_t *p, size_t pages)
{
	unsigned char v[PAGES];
	size_t n = 0;

	if (mincore(p, pages * pgsz, v))
		return (size_t)-1;
	for (size_t i = 0; i < pages; i++)
		n += v[i] & 1;
	return n;
}

/* pages of [from, to) that hold neither their bytes nor zeros */
static size_t wrong_nor_zero(const uint8_t *m, size_t from, size_t to, unsigned int salt,
			     size_t *zero)
{
	size_t bad = 0;

	*zero = 0;
	for (size_t pg = from; pg < to; pg++) {
		uint8_t b = m[pg * pgsz], e = m[pg * pgsz + pgsz - 1];

		if (b == (uint8_t)(pg * 13 + salt) && e == b)
			continue;
		if (!b && !e)
			++*zero;
		else
			bad++;
	}
	return bad;
}

static void range_cases(struct fl_runtime *rt)
{
	struct fl_stats st = { .size = sizeof(st) };
	size_t zero, res, bad;
	uint64_t before;
	uint8_t *m = fill_and_evict(rt, 4);

	tap_ok(m != NULL, "fill a second registered mapping, let it be evicted");
	if (!m)
		return;
	TAP_EQ(fl_range_unregister(rt, m, PAGES * pgsz, 2), -EINVAL);
	TAP_EQ(fl_range_unregister(rt, m + 1, pgsz, 0), -EINVAL);
	TAP_EQ(fl_range_unregister(rt, m, 0, 0), -EINVAL);
	TAP_EQ(fl_range_unregister(rt, m, SIZE_MAX & ~(pgsz - 1), 0), -EOVERFLOW);
	TAP_EQ(fl_region_count(rt), 1);

	/* cut pages [512, 1024) out: read back, two pieces stay */
	TAP_EQ(fl_range_unregister(rt, m + 512 * pgsz, 512 * pgsz, 0), 0);
	TAP_EQ(fl_region_count(rt), 2);
	tap_ok(!bad_pages(m, PAGES, 4), "after the cut every page holds its bytes (%zu bad)",
	       bad_pages(m, PAGES, 4));
	TAP_EQ(fl_range_unregister(rt, m + 512 * pgsz, 512 * pgsz, 0), -ENOENT);
	/* the head piece owns no store slot beyond its own pages */
	TAP_EQ(fl_region_resize(rt, m, 513 * pgsz), -ENOSPC);

	/* the pieces are still under the budget: read them all again */
	for (int round = 0; round < 2; round++)
		(void)bad_pages(m, 512, 4), (void)bad_pages(m + 1024 * pgsz, 1024, 4);
	for (int i = 0; i < 5000; i++) {
		res = resident_pages(m, 512) + resident_pages(m + 1024 * pgsz, 1024);
		if (res <= BUDGET + BUDGET / 4)
			break;
		usleep(1000);
	}
	fl_stats_get(rt, &st);
	tap_ok(res <= BUDGET + BUDGET / 4, "the pieces' resident pages stay within the budget: "
	       "%zu resident (kernel), %llu counted, budget %d", res,
	       (unsigned long long)st.far_resident_pages, BUDGET);

	/* discard pages [1024, 1536): evicted ones read zeros, no page is
	 * anything but its bytes or zeros, and the rest stays right */
	for (size_t pg = 1024; pg < PAGES; pg++)
		memset(m + pg * pgsz, (int)(pg * 13 + 5), pgsz);
	usleep(100000);
	/*
	 * A cut of four pages reads back those four, no more: its evicted
	 * neighbours stay in the store (a read-ahead run past the cut would
	 * make them resident with no throttle to hold the budget).
	 */
	fl_stats_get(rt, &st);
	before = st.far_pageins;
	TAP_EQ(fl_range_unregister(rt, m + 1540 * pgsz, 4 * pgsz, 0), 0);
	fl_stats_get(rt, &st);
	tap_ok(st.far_pageins - before <= 4, "a cut of 4 pages reads back at most 4 (%llu)",
	       (unsigned long long)(st.far_pageins - before));
	TAP_EQ(fl_range_unregister(rt, m + 1024 * pgsz, 512 * pgsz, FL_UNREGISTER_DISCARD), 0);
	bad = wrong_nor_zero(m, 1024, 1536, 5, &zero);
	tap_ok(!bad && zero > 0, "discarded pages hold their bytes or zeros (%zu wrong, %zu zero)",
	       bad, zero);
	bad = wrong_nor_zero(m, 1536, PAGES, 5, &zero);
	tap_ok(!bad && !zero, "the pieces after the discarded range kept their bytes "
	       "(%zu wrong, %zu zero)", bad, zero);
	TAP_EQ(fl_region_count(rt), 3);

	/* one range over the pieces and the holes between them */
	TAP_EQ(fl_range_unregister(rt, m, PAGES * pgsz, 0), 0);
	TAP_EQ(fl_region_count(rt), 0);
	tap_ok(!bad_pages(m, 512, 4) && !wrong_nor_zero(m, 1536, PAGES, 5, &zero) && !zero,
	       "a range over two pieces takes both out, bytes kept");
	munmap(m, PAGES * pgsz);
}

int main(int argc, char **argv)
{
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_runtime *rt;
	struct fl_store *store;
	uint8_t *m;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(28);
	rt = tap_far_runtime(BUDGET * pgsz, argc, argv, &store, &ft);

	m = fill_and_evict(rt, 1);
	tap_ok(m != NULL, "register %d pages of our own mapping, fill, let them be evicted", PAGES);
	if (!m)
		return tap_done();
	TAP_EQ(fl_region_unregister(rt, m), 0);
	tap_ok(!bad_pages(m, PAGES, 1), "after unregister every page holds its bytes (%zu bad)",
	       bad_pages(m, PAGES, 1));
	munmap(m, PAGES * pgsz);

	m = fill_and_evict(rt, 2);
	TAP_EQ(fl_region_resize(rt, m, PAGES / 2 * pgsz), 0);
	tap_ok(!bad_pages(m, PAGES, 2), "after a shrink the unregistered tail kept its bytes too "
	       "(%zu bad)", bad_pages(m, PAGES, 2));
	TAP_EQ(fl_region_unregister(rt, m), 0);
	munmap(m, PAGES * pgsz);

	range_cases(rt);

	m = fill_and_evict(rt, 3);
	fl_runtime_destroy(rt);
	tap_ok(!bad_pages(m, PAGES, 3), "after fl_runtime_destroy the registered mapping "
	       "holds its bytes (%zu bad)", bad_pages(m, PAGES, 3));
	fl_store_destroy(store);
	return tap_done();
}
