/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-verify - far memory never loses a write nor serves a stale
 * page: writer threads rewrite their own pages (every page carries its
 * index and a version in every word) under a budget of 1/8 of the region,
 * so that pages are evicted and read back while they are written. Every
 * page is checked before each rewrite and all of them at the end.
 * Argument "no-move" forces the write-protect/copy/zap eviction path;
 * "quick" runs a tenth of the work (stock-kernel guests, where a 6.1 kernel
 * takes the write-protect path anyway).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "tap.h"

#define THREADS		4
#define MAXPAGES	2048

static size_t PAGES = MAXPAGES, ITERS = 3000;

static size_t pgsz;
static uint64_t *mem;
static uint32_t version[MAXPAGES];
static _Atomic unsigned long bad;

static uint64_t word(size_t pg, uint32_t ver, size_t i)
{
	return ((uint64_t)pg << 40) ^ ((uint64_t)ver << 16) ^ i;
}

static void fill(size_t pg, uint32_t ver)
{
	uint64_t *p = mem + pg * (pgsz / 8);

	for (size_t i = 0; i < pgsz / 8; i++)
		p[i] = word(pg, ver, i);
}

static bool check(size_t pg, uint32_t ver)
{
	const uint64_t *p = mem + pg * (pgsz / 8);

	for (size_t i = 0; i < pgsz / 8; i++)
		if (p[i] != word(pg, ver, i))
			return false;
	return true;
}

static void *writer(void *arg)
{
	unsigned int id = (unsigned int)(uintptr_t)arg, seed = id * 7919 + 1;

	for (size_t it = 0; it < ITERS; it++) {
		size_t pg = (rand_r(&seed) % (PAGES / THREADS)) * THREADS + id;

		if (!check(pg, version[pg]))
			bad++;
		fill(pg, ++version[pg]);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	bool no_move = false;
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st = { .size = sizeof(st) };
	struct fl_features ft = { .size = sizeof(ft) };
	pthread_t th[THREADS];
	unsigned long final_bad = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "no-move"))
			no_move = true;
		if (!strcmp(argv[i], "quick")) {
			PAGES = 512;
			ITERS = 300;
		}
	}
	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(6);
	if (fl_store_memory_create(&store))
		tap_skip_all("no memory store");
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = PAGES / 8 * pgsz;
	if (no_move)
		o.flags |= FL_RT_EVICT_NO_MOVE;
	rt = tap_runtime(&o);
	fl_features(rt, &ft);
	if (!ft.move && !ft.wp)
		tap_skip_all("kernel has neither UFFDIO_MOVE nor WP: nothing can be evicted");
	tap_diag("eviction path: %s", ft.move && !no_move ? "UFFDIO_MOVE" : "WP, copy, zap");

	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&mem), 0);
	for (size_t pg = 0; pg < PAGES; pg++)
		fill(pg, 0);
	/* let the evictor get the set down to the budget first (a bound, not
	 * a timing assertion): the writers then work mostly on evicted pages */
	for (int i = 0; i < 10000; i++) {
		fl_stats_get(rt, &st);
		if (st.far_evictions >= PAGES / 2)
			break;
		usleep(1000);
	}
	for (unsigned int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, writer, (void *)(uintptr_t)i);
	for (unsigned int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	tap_ok(bad == 0, "every page had its last version before each rewrite (%lu bad)",
	       (unsigned long)bad);
	for (size_t pg = 0; pg < PAGES; pg++)
		final_bad += !check(pg, version[pg]);
	tap_ok(final_bad == 0, "every page has its last version at the end (%lu bad)", final_bad);

	TAP_EQ(fl_stats_get(rt, &st), 0);
	tap_diag("evictions %llu (clean %llu, move %llu), writebacks %llu, pageins %llu "
		 "(read-ahead %llu), wp faults %llu, aborts %llu, throttled %llu, faults %llu",
		 (unsigned long long)st.far_evictions, (unsigned long long)st.far_evict_clean,
		 (unsigned long long)st.far_evict_move, (unsigned long long)st.far_writebacks,
		 (unsigned long long)st.far_pageins, (unsigned long long)st.far_readahead_pages,
		 (unsigned long long)st.far_wp_faults, (unsigned long long)st.far_evict_aborts,
		 (unsigned long long)st.far_throttled, (unsigned long long)st.faults);
	tap_ok(st.far_evictions > PAGES / 2 && st.far_pageins > 0,
	       "pages were evicted and read back (%llu, %llu)",
	       (unsigned long long)st.far_evictions, (unsigned long long)st.far_pageins);
	tap_ok(no_move || !ft.move ? st.far_evict_move == 0 : st.far_evict_move > 0,
	       "the %s path was the one taken", no_move || !ft.move ? "non-MOVE" : "MOVE");
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	return tap_done();
}
