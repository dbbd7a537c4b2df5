/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-async-slow - a slow store read never stops a handler: with a
 * single handler thread, one thread faults on an evicted page whose store
 * read is held back (the callback waits for the test), and meanwhile faults
 * on another region's pages (zero pages, then one of them written) are
 * served. Then the read is let go and the first thread gets its bytes.
 * Twice: under the budget, then over it (pinned pages hold the count above
 * the budget, so region B's faults are throttled: the throttle must install
 * the handler's reads as they complete, not wait for them).
 * A handler that waited for the read would leave the second thread stuck:
 * the test waits for it with a 20 s bound and then reports not ok.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "tap.h"

#define PAGES	512
#define BUDGET	64

static size_t pgsz;
static char *backing;
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_armed, gate_open, entered;
static char *a_mem, *b_mem, *c_mem;
static size_t a_page, b_first;
static _Atomic int a_byte = -1, b_done;

/* each region has its own 1 GiB-aligned store extent: A, B, C in turn */
static char *slot(uint64_t off)
{
	uint64_t r = off >> 30 < 3 ? off >> 30 : 2;

	return backing + r * PAGES * pgsz + (off & ((1u << 30) - 1)) % (PAGES * pgsz);
}

static int st_read(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	pthread_mutex_lock(&gate_lock);
	/* only the first read after arming: region B's pages may be evicted
	 * and read back meanwhile too (CPU hogs, a slow faulting thread) */
	if (gate_armed && !entered) {
		entered = true;
		pthread_cond_broadcast(&gate_cond);
		while (!gate_open)
			pthread_cond_wait(&gate_cond, &gate_lock);
	}
	pthread_mutex_unlock(&gate_lock);
	memcpy(buf, slot(off), len);
	return 0;
}

static int st_write(void *arg, uint64_t off, const void *buf, size_t len)
{
	(void)arg;
	memcpy(slot(off), buf, len);
	return 0;
}

static uint8_t byte_of(size_t pg)
{
	return (uint8_t)(pg * 31 + 7);
}

static void *touch_a(void *arg)
{
	(void)arg;
	atomic_store(&a_byte, (uint8_t)((volatile char *)a_mem)[a_page * pgsz]);
	return NULL;
}

static void *touch_b(void *arg)
{
	int sum = 0;

	(void)arg;
	for (size_t pg = b_first; pg < b_first + 3; pg++)
		sum += ((volatile char *)b_mem)[pg * pgsz];	/* zero pages */
	((volatile char *)b_mem)[(b_first + 3) * pgsz] = 42;	/* a write */
	atomic_store(&b_done, sum == 0 &&
		     ((volatile char *)b_mem)[(b_first + 3) * pgsz] == 42 ? 1 : 2);
	return NULL;
}

/* wait for @flag with a bound of @ms (no timing assertion: a hang guard) */
static bool wait_flag(_Atomic int *flag, int ms)
{
	for (int i = 0; i < ms && !atomic_load(flag); i++)
		usleep(1000);
	return atomic_load(flag) != 0;
}

/* a page of region A that is out (evicted), as the kernel sees it */
static bool evicted_page(size_t *page)
{
	static unsigned char vec[PAGES];

	if (mincore(a_mem, PAGES * pgsz, vec))
		return false;
	for (size_t pg = 0; pg < PAGES; pg++)
		if (!(vec[pg] & 1) && pg != a_page) {
			*page = pg;
			return true;
		}
	return false;
}

/*
 * One round: hold the store read of an evicted page of A, fault on region
 * B's pages [@first, @first + 4) meanwhile, then let the read go.
 */
static void held_round(struct fl_runtime *rt, const char *when, size_t first)
{
	struct fl_stats st = { .size = sizeof(st) }, st0 = { .size = sizeof(st0) };
	pthread_t ta, tb;
	size_t page;
	bool b_ok;

	if (!evicted_page(&page)) {
		tap_ok(false, "%s: a page of region A is evicted", when);
		tap_ok(false, "%s: (not run)", when);
		tap_ok(false, "%s: (not run)", when);
		return;
	}
	tap_ok(true, "%s: a page of region A is evicted (page %zu)", when, page);
	a_page = page;
	b_first = first;
	atomic_store(&a_byte, -1);
	atomic_store(&b_done, 0);
	fl_stats_get(rt, &st0);
	pthread_mutex_lock(&gate_lock);
	gate_armed = true;
	entered = gate_open = false;
	pthread_mutex_unlock(&gate_lock);
	pthread_create(&ta, NULL, touch_a, NULL);
	/* the read of A's page is in the store callback, held back */
	pthread_mutex_lock(&gate_lock);
	while (!entered)
		pthread_cond_wait(&gate_cond, &gate_lock);
	pthread_mutex_unlock(&gate_lock);

	pthread_create(&tb, NULL, touch_b, NULL);
	b_ok = wait_flag(&b_done, 20000);
	fl_stats_get(rt, &st);
#define D(f) (unsigned long long)(st.f - st0.f)
	tap_diag("%s, meanwhile: resident %llu (budget %d), throttled %llu, drain waits %llu, "
		 "tier 3 %llu, events %llu/%llu/%llu, spf aborts %llu/%llu/%llu, "
		 "region aborts %llu/%llu, faults %llu, parked %llu", when,
		 (unsigned long long)st.far_resident_pages, BUDGET, D(far_throttled),
		 D(far_aio_drain_waits), D(global_attempt), D(events_remove), D(events_unmap),
		 D(events_other), D(spf_abort_seq_odd), D(spf_abort_seq_changed),
		 D(spf_abort_blocking), D(region_abort_stale), D(region_abort_locked), D(faults),
		 D(parked_retries));
	tap_ok(b_ok && atomic_load(&b_done) == 1 && atomic_load(&a_byte) == -1,
	       "%s: region B's faults were served while A's store read was held back "
	       "(B %s, A %s, throttled %llu)", when,
	       !b_ok ? "stuck" : atomic_load(&b_done) == 1 ? "right" : "WRONG",
	       atomic_load(&a_byte) == -1 ? "pending" : "done", D(far_throttled));
#undef D

	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	gate_armed = false;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	tap_ok(atomic_load(&a_byte) == byte_of(a_page),
	       "%s: A's page has its bytes once the read completes (%d, want %d)", when,
	       atomic_load(&a_byte), byte_of(a_page));
}

int main(void)
{
	struct fl_store_ops ops = { .size = sizeof(ops), .read = st_read, .write = st_write };
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st = { .size = sizeof(st) };
	struct fl_features ft = { .size = sizeof(ft) };
	size_t pinned = BUDGET + 16;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(14);
	backing = calloc(3 * PAGES, pgsz);
	if (!backing || fl_store_callbacks_create(&ops, NULL, &store))
		tap_skip_all("no callbacks store");
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = BUDGET * pgsz;
	/* evict from 3/4 of the budget down to half: once the evictor is
	 * done, region B's faults find room under the budget */
	o.budget_high_pct = 75;
	o.budget_low_pct = 50;
	o.handlers = 1;
	rt = tap_runtime(&o);
	fl_features(rt, &ft);
	if (!ft.move && !ft.wp)
		tap_skip_all("kernel has neither UFFDIO_MOVE nor WP: nothing can be evicted");

	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&a_mem), 0);
	TAP_EQ(fl_region_map(rt, 8 * pgsz, NULL, (void **)&b_mem), 0);
	TAP_EQ(fl_region_map(rt, pinned * pgsz, NULL, (void **)&c_mem), 0);
	for (size_t pg = 0; pg < PAGES; pg++)
		memset(a_mem + pg * pgsz, byte_of(pg), pgsz);
	/*
	 * Until the evictor is done (bounded): no eviction for 100 ms (it
	 * wakes every 20 ms and refreshes the resident gauge each time) and
	 * the count at most the high watermark, so that the first round's
	 * faults find room under the budget.
	 */
	for (int i = 0, still = 0; i < 2000 && still < 5; i++) {
		uint64_t ev;

		fl_stats_get(rt, &st);
		ev = st.far_evictions;
		usleep(20000);
		fl_stats_get(rt, &st);
		if (st.far_evictions == ev && ev >= BUDGET &&
		    st.far_resident_pages <= BUDGET * 3 / 4)
			still++;
		else
			still = 0;
	}
	tap_diag("evictor done: %llu evictions, %llu resident",
		 (unsigned long long)st.far_evictions, (unsigned long long)st.far_resident_pages);
	a_page = PAGES;		/* none yet */
	held_round(rt, "under the budget", 0);

	/* pinned pages the evictor cannot take keep the count over the
	 * budget for good: every fault of B's is throttled */
	TAP_EQ(fl_pin(rt, c_mem, pinned * pgsz), 0);
	/* the gauge is the evictor's, refreshed each time it wakes */
	for (int i = 0; i < 5000; i++) {
		fl_stats_get(rt, &st);
		if (st.far_resident_pages > BUDGET)
			break;
		usleep(1000);
	}
	tap_ok(st.far_resident_pages > BUDGET, "over the budget: %llu resident, budget %d",
	       (unsigned long long)st.far_resident_pages, BUDGET);
	held_round(rt, "over the budget", 4);
	TAP_EQ(fl_unpin(rt, c_mem, pinned * pgsz), 0);

	TAP_EQ(fl_stats_get(rt, &st), 0);
	tap_ok(st.far_aio_reads > 0, "the reads were asynchronous (far_aio_reads %llu)",
	       (unsigned long long)st.far_aio_reads);
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	free(backing);
	return tap_done();
}
