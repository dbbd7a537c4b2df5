/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-wp-remap - dirty tracking follows an mremap() even when the two
 * events the move raises are applied in the other order.
 *
 * mremap() sends REMAP(from -> to), waits until a handler has read it,
 * then sends UNMAP(from). With two handlers the second can apply the UNMAP
 * while the first has not applied the REMAP yet: the UNMAP then drops the
 * protected range, and the REMAP must take it back (wp.c wp_forget); a
 * write to the new address meanwhile finds no range and must wait for the
 * REMAP (unknown_defer), not be released unseen. Here the handler that
 * reads the REMAP is held (the FL_PAUSE_EVENT_READ hook) until the UNMAP
 * is applied and the write has faulted.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"
#include "core/testhooks.h"

#define NPAGES	64

static size_t pgsz;
static _Atomic uintptr_t hold_addr;	/* hold the handler that reads this event */
static _Atomic int held;
static _Atomic int release_it;

static void hook(enum fl_test_point point, uintptr_t addr)
{
	uintptr_t want = atomic_load(&hold_addr);

	if (point != FL_PAUSE_EVENT_READ || !want || addr != want ||
	    !atomic_compare_exchange_strong(&hold_addr, &want, 0))
		return;
	atomic_store(&held, 1);
	/* bounded: a runtime that waits for this handler must not hang the test */
	for (int i = 0; i < 10000 && !atomic_load(&release_it); i++)
		ms_sleep(1);
	atomic_store(&held, 0);
}

static void *write_page(void *arg)
{
	*(volatile char *)arg = 2;
	return NULL;
}

/*
 * Map, protect and mremap a region with the REMAP's reader held. Return:
 * false if the UNMAP was not applied meanwhile (the kernel handed it to the
 * held handler in the same read(2) as the REMAP: then they are applied in
 * order, and the caller tries again).
 */
static bool attempt(struct fl_runtime *rt, char **memp, char **movedp)
{
	struct fl_region_opts ro;
	struct fl_stats st, st0;
	char *mem, *moved;
	int ret;

	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	ret = fl_region_map(rt, NPAGES * pgsz, &ro, (void **)&mem);
	if (ret == -EOPNOTSUPP)
		tap_skip_all("kernel without uffd-wp");
	if (ret) {
		printf("Bail out! fl_region_map: %s\n", fl_strerror(ret));
		exit(1);
	}
	memset(mem, 1, NPAGES * pgsz);
	ret = fl_dirty_start(rt, mem, NPAGES * pgsz, FL_DIRTY_SYNC);
	if (ret) {
		printf("Bail out! fl_dirty_start: %s\n", fl_strerror(ret));
		exit(1);
	}
	stats_now(rt, &st0);
	moved = mmap(NULL, NPAGES * pgsz, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	atomic_store(&release_it, 0);
	atomic_store(&hold_addr, (uintptr_t)moved);	/* the REMAP's destination */
	/* returns once the UNMAP is read: by the other handler, ours is held */
	moved = mremap(mem, NPAGES * pgsz, NPAGES * pgsz, MREMAP_MAYMOVE | MREMAP_FIXED, moved);
	if (moved == MAP_FAILED) {
		printf("Bail out! mremap: %s\n", strerror(errno));
		exit(1);
	}
	*memp = mem;
	*movedp = moved;
	for (int i = 0; i < 10000 && !atomic_load(&held); i++)
		ms_sleep(1);
	if (!atomic_load(&held)) {
		tap_diag("the REMAP's reader never reached the pause point");
		return false;
	}
	for (int i = 0; i < 2000; i++) {
		stats_now(rt, &st);
		if (st.events_unmap > st0.events_unmap)
			return true;
		ms_sleep(1);
	}
	tap_diag("the UNMAP came in the held handler's batch: again");
	atomic_store(&release_it, 1);
	while (atomic_load(&held))
		ms_sleep(1);
	fl_region_unregister(rt, moved);
	munmap(moved, NPAGES * pgsz);
	return false;
}

int main(void)
{
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_stats st, st0;
	uint64_t bm[NPAGES / 64];
	size_t nd = 0;
	char *mem = NULL, *moved = NULL;
	bool reached = false;
	pthread_t t;
	int ret;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	fl_runtime_opts_init(&o);
	o.handlers = 2;		/* one held with the REMAP, one for the rest */
	o.flags = FL_RT_NO_PIN;
	rt = tap_runtime(&o);
	fl_features(rt, &ft);
	if (!ft.event_remap || !ft.event_unmap || !ft.wp)
		tap_skip_all("no UFFD_EVENT_REMAP/UNMAP or uffd-wp: nothing to follow");
	atomic_store(&fl_test_pause_hook, hook);
	tap_plan(6);
	for (int i = 0; i < 8 && !reached; i++) {
		stats_now(rt, &st0);
		reached = attempt(rt, &mem, &moved);
	}
	tap_ok(reached, "the REMAP's reader held, the UNMAP applied before it");
	if (!reached)
		return tap_done();
	stats_now(rt, &st);
	tap_ok(st.events_remap == st0.events_remap,
	       "the REMAP not applied yet (%llu unmaps, %llu remaps)",
	       (unsigned long long)(st.events_unmap - st0.events_unmap),
	       (unsigned long long)(st.events_remap - st0.events_remap));

	/* a write at the new address: no protected range there yet */
	stats_now(rt, &st0);
	pthread_create(&t, NULL, write_page, moved + 5 * pgsz);
	WAIT_FOR(rt, st, st.faults_unknown_waits > st0.faults_unknown_waits);
	tap_ok(st.faults_unknown_waits > st0.faults_unknown_waits &&
	       st.wp_unknown == st0.wp_unknown,
	       "the write waits for the REMAP (%llu waits), not released unseen",
	       (unsigned long long)(st.faults_unknown_waits - st0.faults_unknown_waits));
	atomic_store(&release_it, 1);
	pthread_join(t, NULL);

	ret = fl_dirty_collect(rt, moved, bm, NPAGES, &nd);
	tap_ok(ret == 0 && nd == 1 && (bm[0] >> 5 & 1),
	       "tracking followed the move: collect at the new address %d, %zu dirty", ret, nd);
	TAP_EQ(fl_dirty_collect(rt, mem, bm, NPAGES, &nd), -ENOENT);
	moved[9 * pgsz] = 3;
	ret = fl_dirty_collect(rt, moved, bm, NPAGES, &nd);
	tap_ok(ret == 0 && nd == 1 && (bm[0] >> 9 & 1),
	       "and stays armed there: %d, %zu dirty", ret, nd);
	atomic_store(&fl_test_pause_hook, NULL);
	tap_diag_resolve(rt);
	fl_runtime_destroy(rt);
	return tap_done();
}
