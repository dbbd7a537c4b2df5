/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-unregister - a registered mapping (the program's own memory,
 * which outlives its registration) under a tight budget keeps every byte
 * when it leaves the runtime: fl_region_unregister, fl_region_resize
 * (shrink) and fl_runtime_destroy read evicted pages back first. The shim
 * relies on this for mremap() of managed memory.
 */
#include <stdint.h>
#include <string.h>
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

int main(int argc, char **argv)
{
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_runtime *rt;
	struct fl_store *store;
	uint8_t *m;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(6);
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

	m = fill_and_evict(rt, 3);
	fl_runtime_destroy(rt);
	tap_ok(!bad_pages(m, PAGES, 3), "after fl_runtime_destroy the registered mapping "
	       "holds its bytes (%zu bad)", bad_pages(m, PAGES, 3));
	fl_store_destroy(store);
	return tap_done();
}
