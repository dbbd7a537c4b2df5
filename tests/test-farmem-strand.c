/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-strand - without UFFDIO_MOVE, a victim that a page-in's
 * read-ahead holds while the evictor looks at its batch is never left
 * evicted and mapped for good.
 *
 * The non-MOVE evictor settles its batch EVICTED (write-protected, still
 * mapped), then, under its gate, looks at the words and zaps what still
 * says EVICTED. A fault on a zapped neighbour reads a run back and may
 * claim such a victim (FILLING) before that look: the look skips it, and
 * the install then finds it present (EEXIST). Put back EVICTED, it waited
 * for a zap that never came: a write to it parked every millisecond for
 * good, and a run that began with it looped (seen as a 240 s hang of
 * farmem-verify-no-move under TSan on a loaded machine).
 *
 * The pause points hold the evictor at its settled batch and a handler
 * with the run claimed, so that the look sees the claim. Then:
 *  A. the run is installed once the zaps are done: the install takes the
 *     page back under the gate (pagein.c far_install());
 *  B. the run is installed while the evictor holds the gate before a zap:
 *     the page is put back EVICTED, and the write that comes later takes
 *     it back (evict.c far_wp_fault()).
 * Each time a write to the page must complete (a hang is reported, not
 * waited out), and every byte of the region is checked at the end.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"
#include "core/testhooks.h"

#define PAGES	256
#define WIN	16		/* fault-around and read-ahead window, pages */
#define BUDGET	64
#define MAXREC	256

static size_t pgsz;
static char *m;
static uint8_t seed[PAGES];	/* the pattern each page holds */

/* what the hook holds, and its answers */
static _Atomic int hold_settled, hold_zap;
static _Atomic uintptr_t hold_pagein;
static _Atomic int held_settled, held_zap, held_pagein;
static _Atomic int go_settled, go_zap, go_pagein;
/* the dirty victims of the batch held (FL_PAUSE_EVICT_PROTECT) */
static _Atomic int recording, nrec;
static uintptr_t rec[MAXREC];

/* bounded: a runtime that waits for a held thread must not hang the test */
static void hold(_Atomic int *held, _Atomic int *go)
{
	atomic_store(held, 1);
	for (int i = 0; i < 10000 && !atomic_load(go); i++)
		ms_sleep(1);
	atomic_store(held, 0);
}

static void hook(enum fl_test_point point, uintptr_t addr)
{
	int one = 1;
	uintptr_t want;

	switch (point) {
	case FL_PAUSE_EVICT_PROTECT:
		if (atomic_load(&recording) && atomic_load(&nrec) < MAXREC)
			rec[atomic_fetch_add(&nrec, 1)] = addr;
		break;
	case FL_PAUSE_EVICT_SETTLED:
		if (atomic_compare_exchange_strong(&hold_settled, &one, 0)) {
			atomic_store(&recording, 0);
			hold(&held_settled, &go_settled);
		}
		break;
	case FL_PAUSE_EVICT_ZAP:
		if (atomic_compare_exchange_strong(&hold_zap, &one, 0))
			hold(&held_zap, &go_zap);
		break;
	case FL_PAUSE_PAGEIN_CLAIMED:
		want = atomic_load(&hold_pagein);
		if (want && (addr & ~(pgsz - 1)) == want &&
		    atomic_compare_exchange_strong(&hold_pagein, &want, 0))
			hold(&held_pagein, &go_pagein);
		break;
	default:
		break;
	}
}

static bool wait_set(_Atomic int *flag)
{
	for (int i = 0; i < 10000 && !atomic_load(flag); i++)
		ms_sleep(1);
	return atomic_load(flag);
}

static bool present(size_t pg)
{
	unsigned char v = 0;

	return !mincore(m + pg * pgsz, pgsz, &v) && (v & 1);
}

struct access {
	size_t pg;
	bool write;
	size_t bad;
	_Atomic bool done;
};

static void *access_page(void *arg)
{
	struct access *a = arg;
	volatile uint8_t *p = (volatile uint8_t *)m + a->pg * pgsz;

	if (a->write) {
		seed[a->pg] = (uint8_t)(seed[a->pg] + 1);
		for (size_t i = 0; i < pgsz; i++)
			p[i] = pat(seed[a->pg], a->pg * pgsz + i);
	} else {
		a->bad = pat_bad(seed[a->pg], a->pg * pgsz, p, pgsz);
	}
	atomic_store(&a->done, true);
	return NULL;
}

/* run an access on a thread of its own; false if it did not end in 10 s */
static bool access_bounded(struct access *a, pthread_t *t)
{
	atomic_store(&a->done, false);
	pthread_create(t, NULL, access_page, a);
	for (int i = 0; i < 10000 && !atomic_load(&a->done); i++)
		ms_sleep(1);
	if (!atomic_load(&a->done))
		return false;
	pthread_join(*t, NULL);
	return true;
}

static bool recorded(uintptr_t a)
{
	for (int i = 0; i < atomic_load(&nrec); i++)
		if (rec[i] == a)
			return true;
	return false;
}

/* a victim recorded outside the window [lo, lo + WIN) */
static bool victim_outside(size_t lo)
{
	for (int i = 0; i < atomic_load(&nrec); i++) {
		size_t pg = (rec[i] - (uintptr_t)m) / pgsz;

		if (pg < lo || pg >= lo + WIN)
			return true;
	}
	return false;
}

/*
 * A victim X and a zapped page Y below it in X's window, with nothing but
 * evicted pages between them: Y's read-ahead run reaches X. The victims
 * are still mapped, every other page not mapped is evicted and zapped.
 * With @need_zap (case B), also a victim outside that window: Y's run
 * claims every evicted victim of the window, and with none left EVICTED
 * the evictor has nothing to zap and never comes to the pause that the
 * case installs under (seen once, under ASan on a loaded machine).
 */
static bool pick(size_t *x, size_t *y, bool need_zap)
{
	if (atomic_load(&nrec) < 2)
		return false;
	for (int i = 0; i < atomic_load(&nrec); i++) {
		size_t xp = (rec[i] - (uintptr_t)m) / pgsz, lo = xp & ~(size_t)(WIN - 1);

		if (!present(xp) || (need_zap && !victim_outside(lo)))
			continue;
		for (size_t yp = xp; yp-- > lo; ) {
			if (recorded((uintptr_t)m + yp * pgsz))
				continue;	/* a victim: evicted, claimable */
			if (present(yp))
				break;		/* resident: the run stops there */
			*x = xp;
			*y = yp;
			return true;
		}
	}
	return false;
}

/* write whole evicted windows until the evictor holds a batch */
static bool trigger(void)
{
	for (size_t b = 0; b < PAGES && !atomic_load(&held_settled); b += WIN) {
		bool out = true;

		for (size_t pg = b; pg < b + WIN; pg++)
			out &= !present(pg);
		if (!out)
			continue;
		for (size_t pg = b; pg < b + WIN && !atomic_load(&held_settled); pg++)
			pat_fill(seed[pg], pg * pgsz, m + pg * pgsz, pgsz);
	}
	return wait_set(&held_settled);
}

/* wait until the evictor has left zap_victims(): an API writer takes its gate */
static void gate_barrier(struct fl_runtime *rt)
{
	/* not a region: the call takes the gate, finds nothing, -ENOENT */
	fl_region_unregister(rt, m + PAGES * pgsz);
}

static void bail(const char *why)
{
	/* threads held or hung in the runtime: no destroy */
	printf("Bail out! %s\n", why);
	fflush(stdout);
	_exit(1);
}

static void one_case(struct fl_runtime *rt, bool hold_gate)
{
	const char *name = hold_gate ? "B (installed under the zapper's gate)" :
				       "A (installed after the zaps)";
	struct access rd = { 0 }, wr = { 0 };
	struct fl_stats st0, st;
	size_t x = 0, y = 0;
	bool found = false;
	pthread_t t;

	for (int attempt = 0; attempt < 200 && !found; attempt++) {
		atomic_store(&go_settled, 0);
		atomic_store(&nrec, 0);
		atomic_store(&recording, 1);
		atomic_store(&hold_settled, 1);
		if (!trigger())
			bail("the evictor never took a batch");
		found = pick(&x, &y, hold_gate);
		if (found)
			break;
		/* no such pair in this batch: let it go, try the next one */
		atomic_store(&go_settled, 1);
		gate_barrier(rt);
		for (int i = 0; i < 10000 && atomic_load(&held_settled); i++)
			ms_sleep(1);
	}
	tap_ok(found, "%s: the evictor holds a settled batch with a victim in a zapped "
	       "page's read-ahead window (victim %zu, fault at %zu)", name, x, y);
	if (!found)
		bail("no batch to race");

	/* the read-ahead of y claims x, and is held there */
	atomic_store(&go_pagein, 0);
	atomic_store(&hold_pagein, (uintptr_t)m + y * pgsz);
	rd.pg = y;
	atomic_store(&rd.done, false);
	pthread_create(&t, NULL, access_page, &rd);
	if (!wait_set(&held_pagein))
		bail("the page-in never claimed its run");

	/* the evictor looks at its words (x is FILLING) and zaps the rest */
	atomic_store(&go_zap, 0);
	atomic_store(&hold_zap, hold_gate);
	atomic_store(&go_settled, 1);
	if (hold_gate) {
		if (!wait_set(&held_zap))
			bail("the evictor never came to a zap");
	} else {
		/* every victim outside y's window zapped, then the gate free */
		for (int i = 0; i < 10000; i++) {
			bool left = false;

			for (int k = 0; k < atomic_load(&nrec); k++) {
				size_t pg = (rec[k] - (uintptr_t)m) / pgsz;

				left |= pg / WIN != y / WIN && present(pg);
			}
			if (!left)
				break;
			ms_sleep(1);
		}
		gate_barrier(rt);
	}
	tap_ok(present(x), "%s: the evictor left alone the victim the read-ahead held", name);

	/* the run is installed: y now, x is found present */
	stats_now(rt, &st0);
	atomic_store(&go_pagein, 1);
	for (int i = 0; i < 10000 && !atomic_load(&rd.done); i++)
		ms_sleep(1);
	if (!atomic_load(&rd.done))
		bail("the fault that read the run ahead never completed");
	pthread_join(t, NULL);
	if (hold_gate) {
		/* x put back EVICTED (the gate is held): then let the zaps go */
		WAIT_FOR(rt, st, st.copy_eexist > st0.copy_eexist);
		tap_ok(st.copy_eexist > st0.copy_eexist, "%s: the install found the victim "
		       "present (%llu EEXIST)", name, ST_DELTA(st0, st, copy_eexist));
		atomic_store(&go_zap, 1);
		gate_barrier(rt);
	}
	tap_ok(rd.bad == 0, "%s: the faulting page reads its bytes (%zu wrong)", name, rd.bad);

	/* x is mapped and nobody will zap it: a write must go through */
	wr.pg = x;
	wr.write = true;
	if (!access_bounded(&wr, &t))
		bail("a write to the victim never completes: evicted, mapped, never zapped");
	tap_ok(1, "%s: a write to the victim completes", name);
	stats_quiet(rt, &st);
}

int main(void)
{
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_region_opts ro;
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st;
	size_t bad = 0;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	if (fl_store_memory_create(&store)) {
		printf("Bail out! store\n");
		return 1;
	}
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = BUDGET * pgsz;
	o.budget_high_pct = 100;
	o.budget_low_pct = 50;
	o.handlers = 2;		/* one held with its run claimed, one serving */
	o.flags = FL_RT_NO_PIN | FL_RT_EVICT_NO_MOVE;
	rt = tap_runtime(&o);
	fl_features(rt, &ft);
	if (!ft.wp)
		tap_skip_all("no write protection: nothing is evicted without MOVE");
	tap_plan(10);
	atomic_store(&fl_test_pause_hook, hook);
	fl_region_opts_init(&ro);
	ro.fault_around = WIN * pgsz;	/* a fixed window: read-ahead reaches x */
	if (fl_region_map(rt, PAGES * pgsz, &ro, (void **)&m))
		bail("fl_region_map");
	memset(seed, 1, sizeof(seed));
	for (size_t pg = 0; pg < PAGES; pg++)
		pat_fill(seed[pg], pg * pgsz, m + pg * pgsz, pgsz);
	stats_quiet(rt, &st);

	one_case(rt, false);
	one_case(rt, true);

	for (size_t pg = 0; pg < PAGES; pg++)
		bad += pat_bad(seed[pg], pg * pgsz, (const uint8_t *)m + pg * pgsz, pgsz);
	tap_ok(bad == 0, "every page holds its last bytes (%zu wrong)", bad);
	fl_runtime_destroy(rt);
	atomic_store(&fl_test_pause_hook, NULL);
	fl_store_destroy(store);
	return tap_done();
}
