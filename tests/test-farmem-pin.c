/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-pin - fl_pin keeps pages resident through eviction pressure:
 * the lockless fast path for a resident range, the slow path for an evicted
 * one, no fault on a pinned range, nesting, errors; and pins racing the
 * evictor from another thread never cost a byte.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <string.h>

#include "tap.h"

#define PAGES	1024
#define BUDGET	64
#define PINNED	16

static size_t pgsz;
static char *m;
static struct fl_runtime *rt;
static _Atomic bool stop;
static _Atomic unsigned long pin_bad, pin_errs;

static uint8_t byte_of(size_t pg, size_t i)
{
	return (uint8_t)(pg * 13 + i * 3 + 5);
}

static size_t verify_range(size_t from, size_t to)
{
	size_t bad = 0;

	for (size_t pg = from; pg < to; pg++)
		for (size_t i = 0; i < pgsz; i += 128)
			bad += (uint8_t)m[pg * pgsz + i] != byte_of(pg, i);
	return bad;
}

static void stats(struct fl_stats *st)
{
	st->size = sizeof(*st);
	fl_stats_get(rt, st);
}

static void *pinner(void *arg)
{
	unsigned int seed = 42;

	while (!stop) {
		size_t pg = PINNED + rand_r(&seed) % (PAGES - PINNED - 8);

		if (fl_pin(rt, m + pg * pgsz, 8 * pgsz)) {
			pin_errs++;
			continue;
		}
		pin_bad += verify_range(pg, pg + 8);
		if (fl_unpin(rt, m + pg * pgsz, 8 * pgsz))
			pin_errs++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_store *store;
	struct fl_stats a, b;
	pthread_t th;
	size_t bad = 0;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(13);
	rt = tap_far_runtime(BUDGET * pgsz, argc, argv, &store, &ft);
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);
	for (size_t pg = 0; pg < PAGES; pg++)
		for (size_t i = 0; i < pgsz; i += 128)
			m[pg * pgsz + i] = (char)byte_of(pg, i);
	/* the first pages are the coldest: wait until the evictor took them */
	for (int i = 0; i < 10000; i++) {
		stats(&a);
		if (a.far_evictions >= PAGES - 2 * BUDGET)
			break;
		usleep(1000);
	}

	TAP_EQ(fl_pin(rt, m, PINNED * pgsz), 0);
	stats(&a);
	tap_ok(a.pin_slow == 1 && a.pin_fast == 0, "an evicted range takes the slow path");
	TAP_EQ(fl_pin(rt, m, PINNED * pgsz), 0);
	stats(&a);
	tap_ok(a.pin_fast == 1, "a resident range takes the lockless fast path");

	/* pressure: everything else, twice */
	for (int r = 0; r < 2; r++)
		bad += verify_range(PINNED, PAGES);
	stats(&a);
	bad += verify_range(0, PINNED);
	stats(&b);
	tap_ok(bad == 0, "bytes right under pressure (%zu bad)", bad);
	tap_ok(b.faults == a.faults, "reading the pinned range took no fault (%llu)",
	       (unsigned long long)(b.faults - a.faults));

	TAP_EQ(fl_unpin(rt, m, PINNED * pgsz), 0);
	TAP_EQ(fl_unpin(rt, m, PINNED * pgsz), 0);
	TAP_EQ(fl_unpin(rt, m, PINNED * pgsz), -EINVAL);
	TAP_EQ(fl_pin(rt, m + (PAGES - 1) * pgsz, 2 * pgsz), -EINVAL);
	TAP_EQ(fl_pin(rt, (void *)(uintptr_t)pgsz, pgsz), -ENOENT);

	/* pins racing the evictor and a reader */
	pthread_create(&th, NULL, pinner, NULL);
	bad = 0;
	for (int r = 0; r < 3; r++)
		bad += verify_range(0, PAGES);
	stop = true;
	pthread_join(th, NULL);
	tap_ok(bad == 0 && pin_bad == 0 && pin_errs == 0,
	       "pins racing eviction: %zu + %lu bad bytes, %lu errors", bad,
	       (unsigned long)pin_bad, (unsigned long)pin_errs);
	stats(&a);
	tap_diag("pin_fast %llu, pin_slow %llu, evictions %llu",
		 (unsigned long long)a.pin_fast, (unsigned long long)a.pin_slow,
		 (unsigned long long)a.far_evictions);
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	return tap_done();
}
