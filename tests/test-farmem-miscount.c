/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-miscount - the MOVE evictor believes the page tables, not a
 * failed UFFDIO_MOVE's count.
 *
 * Under load, a 6.18 kernel answered a MOVE of a run of victims with
 * -EEXIST and nothing counted although it had moved every page of the run
 * into the staging frames. The evictor took the count for the truth: it
 * set the victims RESIDENT again with their PTEs empty and dropped the
 * frames at the end of the batch. The pages were lost, and a fault on one
 * was taken for a duplicate of a resident page, forever (seen as a python
 * program spinning at 120k faults a second under `faultline run --budget`).
 *
 * FL_FAIL_MOVE_MISCOUNT makes every MOVE that moved its run report just
 * that. 256 pages, each with its own bytes, are written under a 32-page
 * budget (the evictor takes them out in batches) and read back by a thread
 * within a bound (a hang is reported, not waited out): every byte must be
 * the one written, and the evictor must have found the moved pages
 * (far_move_miscounts).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "core/testhooks.h"

#define PAGES	256
#define BUDGET	32

static size_t pgsz;

struct reader {
	const volatile unsigned char *m;
	size_t bad;
	_Atomic bool done;
};

static void *read_all(void *arg)
{
	struct reader *r = arg;

	for (size_t pg = 0; pg < PAGES; pg++)
		for (size_t i = 0; i < pgsz; i += 512)
			r->bad += r->m[pg * pgsz + i] != (unsigned char)(pg * 7 + i / 512);
	atomic_store(&r->done, true);
	return NULL;
}

int main(void)
{
	struct fl_features ft = { .size = sizeof(ft) };
	struct reader rd = { 0 };
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st;
	unsigned char *m;
	pthread_t t;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	if (fl_store_memory_create(&store)) {
		printf("Bail out! store\n");
		return 1;
	}
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = BUDGET * pgsz;
	o.handlers = 2;
	o.flags = FL_RT_NO_PIN;
	rt = tap_runtime(&o);
	fl_features(rt, &ft);
	if (!ft.move)
		tap_skip_all("no UFFDIO_MOVE: the evictor write-protects and copies instead");
	tap_plan(5);
	atomic_store(&fl_test_fail_at[FL_FAIL_MOVE_MISCOUNT], -1);
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);
	for (size_t pg = 0; pg < PAGES; pg++)
		for (size_t i = 0; i < pgsz; i += 512)
			m[pg * pgsz + i] = (unsigned char)(pg * 7 + i / 512);
	WAIT_FOR(rt, st, st.far_evictions >= PAGES - 2 * BUDGET);
	tap_ok(st.far_evictions >= PAGES - 2 * BUDGET, "pages were evicted (%llu)",
	       (unsigned long long)st.far_evictions);

	rd.m = m;
	pthread_create(&t, NULL, read_all, &rd);
	for (int i = 0; i < 20000 && !atomic_load(&rd.done); i++)
		ms_sleep(1);
	stats_now(rt, &st);
	tap_ok(atomic_load(&rd.done), "every page is read back (%llu duplicate faults)",
	       (unsigned long long)st.faults_dup);
	if (!atomic_load(&rd.done)) {
		printf("Bail out! pages were lost: the reader faults forever\n");
		_exit(1);
	}
	pthread_join(t, NULL);
	tap_ok(rd.bad == 0, "every byte is the one written (%zu wrong)", rd.bad);
	tap_ok(st.far_move_miscounts > 0, "the evictor found the pages the MOVE moved "
	       "without counting them (%llu)", (unsigned long long)st.far_move_miscounts);
	atomic_store(&fl_test_fail_at[FL_FAIL_MOVE_MISCOUNT], 0);
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	return tap_done();
}
