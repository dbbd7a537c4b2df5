/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-marker - a page the program zaps while the non-MOVE evictor
 * is about to write-protect it is served zeros, never left unmapped.
 *
 * Without UFFDIO_MOVE the evictor write-protects each dirty victim, copies
 * it, writes it back and zaps it. If the program zaps a victim first (its
 * REMOVE applied: the word says DISCARDED) and the write-protect comes
 * after, the kernel (WP_UNPOPULATED) leaves a uffd-wp marker in the empty
 * PTE. UFFDIO_ZEROPAGE refuses a marker with EEXIST, which the fault path
 * took for "present": the word went RESIDENT on an unmapped page and every
 * later fault on it was dropped as a duplicate, the faulting thread (here
 * the evictor's own copy, then the program) spinning forever.
 *
 * The FL_PAUSE_EVICT_PROTECT hook holds the evictor right before the
 * write-protect of its first victim while the program zaps that page and
 * the REMOVE is applied; then the evictor goes on and a thread reads the
 * page: zeros, within a bound (a hang is reported, not waited out).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"
#include "core/testhooks.h"

#define PAGES	256
#define BUDGET	32

static size_t pgsz;

static _Atomic int armed;		/* hold the evictor at its next victim */
static _Atomic int held;
static _Atomic int release_it;
static _Atomic uintptr_t victim;

static void hook(enum fl_test_point point, uintptr_t addr)
{
	int one = 1;

	if (point != FL_PAUSE_EVICT_PROTECT || !atomic_compare_exchange_strong(&armed, &one, 0))
		return;
	atomic_store(&victim, addr);
	atomic_store(&held, 1);
	/* bounded: a runtime that waits for the evictor must not hang the test */
	for (int i = 0; i < 10000 && !atomic_load(&release_it); i++)
		ms_sleep(1);
	atomic_store(&held, 0);
}

struct reader {
	const volatile char *page;
	size_t bad;
	_Atomic bool done;
};

static void *read_page(void *arg)
{
	struct reader *r = arg;

	for (size_t i = 0; i < pgsz; i += 64)
		r->bad += r->page[i] != 0;
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
	struct fl_stats st, st0;
	pthread_t t;
	char *m;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	if (fl_store_memory_create(&store)) {
		printf("Bail out! store\n");
		return 1;
	}
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = BUDGET * pgsz;
	o.handlers = 2;
	o.flags = FL_RT_NO_PIN | FL_RT_EVICT_NO_MOVE;
	rt = tap_runtime(&o);
	fl_features(rt, &ft);
	if (!ft.wp)
		tap_skip_all("no write protection: nothing is evicted without MOVE");
	if (!ft.event_remove)
		tap_skip_all("no UFFD_EVENT_REMOVE: a MADV_DONTNEED is not seen");
	tap_plan(6);
	atomic_store(&fl_test_pause_hook, hook);
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);

	/* dirty pages over the budget: the evictor takes a batch and stops
	 * at its first victim's write-protect. No more writes then: with the
	 * evictor held mid-batch, every fault over the budget waits out the
	 * throttle's bound (1 s), and runs under a budget this small are one
	 * page long */
	atomic_store(&armed, 1);
	for (size_t pg = 0; pg < PAGES && !atomic_load(&held); pg++)
		memset(m + pg * pgsz, (int)(pg | 1), pgsz);
	for (int i = 0; i < 10000 && !atomic_load(&held); i++)
		ms_sleep(1);
	tap_ok(atomic_load(&held), "the evictor is held before write-protecting a victim");

	/* the program zaps the victim; its REMOVE is applied (counted after) */
	stats_now(rt, &st0);
	TAP_EQ(madvise((void *)atomic_load(&victim), pgsz, MADV_DONTNEED), 0);
	WAIT_FOR(rt, st, st.events_remove > st0.events_remove);
	tap_ok(st.events_remove > st0.events_remove, "the zap's REMOVE is applied");

	/* the write-protect lands on the empty PTE; the evictor's own copy
	 * faults on it, then the program reads it */
	atomic_store(&release_it, 1);
	rd.page = (const volatile char *)atomic_load(&victim);
	pthread_create(&t, NULL, read_page, &rd);
	for (int i = 0; i < 10000 && !atomic_load(&rd.done); i++)
		ms_sleep(1);
	stats_now(rt, &st);
	tap_ok(atomic_load(&rd.done), "the zapped victim is served (%llu duplicate faults, "
	       "%llu EEXIST)", (unsigned long long)st.faults_dup,
	       (unsigned long long)st.copy_eexist);
	if (!atomic_load(&rd.done)) {
		/* the reader and the evictor never come back: no destroy */
		printf("Bail out! a page is left unmapped\n");
		_exit(1);
	}
	pthread_join(t, NULL);
	tap_ok(rd.bad == 0, "the zapped victim reads zeros (%zu wrong bytes)", rd.bad);
	fl_runtime_destroy(rt);
	atomic_store(&fl_test_pause_hook, NULL);
	fl_store_destroy(store);
	return tap_done();
}
