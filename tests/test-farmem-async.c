/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-async - asynchronous page-in under churn: faulting threads
 * read and rewrite random evicted pages (every word carries its page and
 * version) while another thread keeps mapping, filling, growing, shrinking
 * and unregistering regions of its own (index writers that wait for region
 * readers, which handlers' reads in flight are), all under a budget of 1/8
 * of the pages. Every byte is verified, in both kinds of region.
 * Argument "file": the file store (io_uring) instead of the memory store;
 * "no-move": the write-protect/copy/zap eviction path.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "tap.h"

#define THREADS		4
#define PAGES		1024
#define ITERS		4000
#define CHURN_PAGES	128

static size_t pgsz;
static uint64_t *mem;
static uint32_t version[PAGES];
static _Atomic unsigned long bad, churn_bad, churn_rounds, churn_errors;
static _Atomic bool stop;
static size_t iters = ITERS;
static struct fl_runtime *rt;

static uint64_t word(uint64_t tag, size_t pg, uint32_t ver, size_t i)
{
	return (tag << 56) ^ ((uint64_t)pg << 36) ^ ((uint64_t)ver << 16) ^ i;
}

static void fill(uint64_t *m, uint64_t tag, size_t pg, uint32_t ver)
{
	uint64_t *p = m + pg * (pgsz / 8);

	for (size_t i = 0; i < pgsz / 8; i++)
		p[i] = word(tag, pg, ver, i);
}

static bool check(const uint64_t *m, uint64_t tag, size_t pg, uint32_t ver)
{
	const uint64_t *p = m + pg * (pgsz / 8);

	for (size_t i = 0; i < pgsz / 8; i++)
		if (p[i] != word(tag, pg, ver, i))
			return false;
	return true;
}

/* random pages of its own share: check (a page-in, mostly), then rewrite
 * one in four (the rest stay clean: dropped without write-back) */
static void *faulter(void *arg)
{
	unsigned int id = (unsigned int)(uintptr_t)arg, seed = id * 7919 + 1;

	for (size_t it = 0; it < iters; it++) {
		size_t pg = (rand_r(&seed) % (PAGES / THREADS)) * THREADS + id;

		if (!check(mem, 1, pg, version[pg]))
			bad++;
		if (rand_r(&seed) % 4 == 0)
			fill(mem, 1, pg, ++version[pg]);
	}
	return NULL;
}

/* regions of its own: map, fill, grow, read back, shrink, unregister */
static void *churner(void *arg)
{
	unsigned int seed = 4242;
	uint64_t round = 0;

	(void)arg;
	while (!atomic_load(&stop)) {
		uint64_t *m;
		size_t n = CHURN_PAGES;

		if (fl_region_map(rt, n * pgsz, NULL, (void **)&m)) {
			churn_errors++;
			break;
		}
		round++;
		for (size_t pg = 0; pg < n; pg++)
			fill(m, 2 + (round & 63), pg, (uint32_t)round);
		/* grow in place when there is room (-ENOMEM: not here) */
		if (fl_region_resize(rt, m, 2 * n * pgsz) == 0) {
			for (size_t pg = n; pg < 2 * n; pg++)
				fill(m, 2 + (round & 63), pg, (uint32_t)round);
			n *= 2;
		}
		for (int k = 0; k < 200; k++) {
			size_t pg = (size_t)rand_r(&seed) % n;

			if (!check(m, 2 + (round & 63), pg, (uint32_t)round))
				churn_bad++;
		}
		if (fl_region_resize(rt, m, n / 2 * pgsz)) {
			churn_errors++;
		} else {
			n /= 2;
			for (size_t pg = 0; pg < n; pg++)
				if (!check(m, 2 + (round & 63), pg, (uint32_t)round))
					churn_bad++;
		}
		if (fl_region_unregister(rt, m))
			churn_errors++;
		churn_rounds++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	bool file = false, no_move = false;
	struct fl_runtime_opts o;
	struct fl_store *store;
	struct fl_stats st = { .size = sizeof(st) };
	struct fl_stats st2 = { .size = sizeof(st2) };
	struct fl_features ft = { .size = sizeof(ft) };
	pthread_t th[THREADS], ch;
	unsigned long final_bad = 0;

	for (int i = 1; i < argc; i++) {
		file |= !strcmp(argv[i], "file");
		no_move |= !strcmp(argv[i], "no-move");
	}
	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(9);
	if (file ? fl_store_file_create(NULL, 0, &store) : fl_store_memory_create(&store))
		tap_skip_all("no %s store", file ? "file" : "memory");
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = PAGES / 8 * pgsz;
	/*
	 * One handler: a read that would be the only one in flight is
	 * synchronous when another handler can take the next fault, so with
	 * more handlers whether any read goes asynchronous depends on two
	 * reads overlapping, which a loaded machine need not give. With one,
	 * every read is asynchronous, under the index writers' churn.
	 */
	o.handlers = 1;
	if (no_move) {
		/* slow there (writes to evicted pages park until the zap's
		 * event; as slow before asynchronous page-in): a quarter */
		o.flags |= FL_RT_EVICT_NO_MOVE;
		iters = ITERS / 4;
	}
	rt = tap_runtime(&o);
	fl_features(rt, &ft);
	if (!ft.move && !ft.wp)
		tap_skip_all("kernel has neither UFFDIO_MOVE nor WP: nothing can be evicted");
	tap_diag("store: %s; eviction path: %s", file ? "file" : "memory",
		 ft.move && !no_move ? "UFFDIO_MOVE" : "WP, copy, zap");

	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&mem), 0);
	for (size_t pg = 0; pg < PAGES; pg++)
		fill(mem, 1, pg, 0);
	/* let the evictor bring the set down first (a bound, not a timing
	 * assertion): the faulters then start mostly on evicted pages */
	for (int i = 0; i < 10000; i++) {
		fl_stats_get(rt, &st);
		if (st.far_evictions >= PAGES / 2)
			break;
		usleep(1000);
	}
	pthread_create(&ch, NULL, churner, NULL);
	for (unsigned int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, faulter, (void *)(uintptr_t)i);
	for (unsigned int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	atomic_store(&stop, true);
	pthread_join(ch, NULL);

	for (size_t pg = 0; pg < PAGES; pg++)
		final_bad += !check(mem, 1, pg, version[pg]);
	tap_ok(bad == 0 && final_bad == 0,
	       "every page had its last version, at each access and at the end (%lu, %lu bad)",
	       (unsigned long)bad, final_bad);
	tap_ok(churn_bad == 0 && churn_errors == 0 && churn_rounds > 0,
	       "%lu rounds of map/resize/unregister meanwhile, every byte right (%lu bad, %lu errors)",
	       (unsigned long)churn_rounds, (unsigned long)churn_bad,
	       (unsigned long)churn_errors);
	TAP_EQ(fl_stats_get(rt, &st), 0);
	tap_diag("pageins %llu (read-ahead %llu), async reads %llu, drain waits %llu, "
		 "evictions %llu, parked %llu, faults %llu",
		 (unsigned long long)st.far_pageins, (unsigned long long)st.far_readahead_pages,
		 (unsigned long long)st.far_aio_reads, (unsigned long long)st.far_aio_drain_waits,
		 (unsigned long long)st.far_evictions, (unsigned long long)st.parked_retries,
		 (unsigned long long)st.faults);
	tap_ok(st.far_pageins > 0 && st.far_aio_reads > 0,
	       "pages were read back by asynchronous reads (%llu pages, %llu reads)",
	       (unsigned long long)st.far_pageins, (unsigned long long)st.far_aio_reads);

	/*
	 * Idle handlers give their read buffers back (far_aio_idle()); the
	 * reads after that land in the buffers faulted in afresh: every page
	 * read once more, from the store where it was evicted.
	 */
	for (int i = 0; i < 1000 && st.far_aio_idle_releases == 0; i++) {
		usleep(10000);
		fl_stats_get(rt, &st);
	}
	tap_ok(st.far_aio_idle_releases > 0, "idle handlers released their read buffers (%llu)",
	       (unsigned long long)st.far_aio_idle_releases);
	final_bad = 0;
	for (size_t pg = 0; pg < PAGES; pg++)
		final_bad += !check(mem, 1, pg, version[pg]);
	TAP_EQ(fl_stats_get(rt, &st2), 0);
	tap_ok(final_bad == 0 && st2.far_pageins > st.far_pageins,
	       "after the release, %llu more pages read back, every byte right (%lu bad)",
	       (unsigned long long)(st2.far_pageins - st.far_pageins), final_bad);
	TAP_EQ(fl_region_unregister(rt, mem), 0);
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	return tap_done();
}
