/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-prefetch - fl_prefetch reads an evicted range back in large
 * batches (read-ahead) before the program touches it, and the bytes are
 * right; bad arguments are refused.
 */
#include <stdint.h>
#include <string.h>

#include "tap.h"

#define PAGES	2048
#define BUDGET	512
#define RANGE	256

static size_t pgsz;

int main(int argc, char **argv)
{
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_stats a = { .size = sizeof(a) }, b = { .size = sizeof(b) };
	struct fl_runtime *rt;
	struct fl_store *store;
	uint8_t *m;
	size_t bad = 0;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(7);
	rt = tap_far_runtime(BUDGET * pgsz, argc, argv, &store, &ft);
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);
	for (size_t pg = 0; pg < PAGES; pg++)
		memset(m + pg * pgsz, (int)(pg * 7 + 1), pgsz);
	/* the first pages are the coldest: wait until they are out */
	for (int i = 0; i < 10000; i++) {
		fl_stats_get(rt, &a);
		if (a.far_evictions >= PAGES - BUDGET)
			break;
		usleep(1000);
	}
	TAP_EQ(fl_prefetch(rt, m, RANGE * pgsz), 0);
	fl_stats_get(rt, &b);
	tap_ok(b.far_pageins - a.far_pageins >= RANGE / 2 &&
	       b.far_readahead_pages > a.far_readahead_pages,
	       "prefetch read the range back with read-ahead (%llu pages, %llu ahead)",
	       (unsigned long long)(b.far_pageins - a.far_pageins),
	       (unsigned long long)(b.far_readahead_pages - a.far_readahead_pages));
	for (size_t pg = 0; pg < PAGES; pg++)
		for (size_t i = 0; i < pgsz; i += 256)
			bad += m[pg * pgsz + i] != (uint8_t)(pg * 7 + 1);
	tap_ok(bad == 0, "every byte right (%zu bad)", bad);
	TAP_EQ(fl_prefetch(rt, m + 1, pgsz), -EINVAL);
	TAP_EQ(fl_prefetch(rt, m + (PAGES - 1) * pgsz, 2 * pgsz), -EINVAL);
	TAP_EQ(fl_prefetch(NULL, m, pgsz), -EINVAL);
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	return tap_done();
}
