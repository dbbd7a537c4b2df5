/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-async-slow - a slow store read never stops a handler: with a
 * single handler thread, one thread faults on an evicted page whose store
 * read is held back (the callback waits for the test), and meanwhile faults
 * on another region's pages (zero pages, then one of them written) are
 * served. Then the read is let go and the first thread gets its bytes.
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
static char *a_mem, *b_mem;
static size_t a_page;
static _Atomic int a_byte = -1, b_done;

static int st_read(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	pthread_mutex_lock(&gate_lock);
	if (gate_armed) {
		entered = true;
		pthread_cond_broadcast(&gate_cond);
		while (!gate_open)
			pthread_cond_wait(&gate_cond, &gate_lock);
	}
	pthread_mutex_unlock(&gate_lock);
	memcpy(buf, backing + off % (PAGES * pgsz), len);
	return 0;
}

static int st_write(void *arg, uint64_t off, const void *buf, size_t len)
{
	(void)arg;
	memcpy(backing + off % (PAGES * pgsz), buf, len);
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
	for (size_t pg = 0; pg < 4; pg++)
		sum += ((volatile char *)b_mem)[pg * pgsz];	/* zero pages */
	((volatile char *)b_mem)[5 * pgsz] = 42;		/* a write */
	atomic_store(&b_done, sum == 0 && ((volatile char *)b_mem)[5 * pgsz] == 42 ? 1 : 2);
	return NULL;
}

/* wait for @flag with a bound of @ms (no timing assertion: a hang guard) */
static bool wait_flag(_Atomic int *flag, int ms)
{
	for (int i = 0; i < ms && !atomic_load(flag); i++)
		usleep(1000);
	return atomic_load(flag) != 0;
}

int main(void)
{
	struct fl_store_ops ops = { .size = sizeof(ops), .read = st_read, .write = st_write };
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st = { .size = sizeof(st) };
	struct fl_features ft = { .size = sizeof(ft) };
	unsigned char vec[PAGES];
	pthread_t ta, tb;
	bool found = false, b_ok;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(7);
	backing = calloc(PAGES, pgsz);
	if (!backing || fl_store_callbacks_create(&ops, NULL, &store))
		tap_skip_all("no callbacks store");
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = BUDGET * pgsz;
	/* evict down to half the budget: region B's faults then find room
	 * (over the budget a handler would finish its own reads first) */
	o.budget_low_pct = 50;
	o.handlers = 1;
	rt = tap_runtime(&o);
	fl_features(rt, &ft);
	if (!ft.move && !ft.wp)
		tap_skip_all("kernel has neither UFFDIO_MOVE nor WP: nothing can be evicted");

	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&a_mem), 0);
	TAP_EQ(fl_region_map(rt, 8 * pgsz, NULL, (void **)&b_mem), 0);
	for (size_t pg = 0; pg < PAGES; pg++)
		memset(a_mem + pg * pgsz, byte_of(pg), pgsz);
	/* until the evictor brought the count well under the budget (bounded):
	 * region B's faults must not wait for it */
	for (int i = 0; i < 10000; i++) {
		fl_stats_get(rt, &st);
		if (st.far_evictions >= PAGES - BUDGET && st.far_resident_pages <= BUDGET / 2 + 4)
			break;
		usleep(1000);
	}
	/* a page of A that is out (evicted), as the kernel sees it */
	if (!mincore(a_mem, PAGES * pgsz, vec))
		for (size_t pg = PAGES / 2; pg < PAGES && !found; pg++)
			if (!(vec[pg] & 1)) {
				a_page = pg;
				found = true;
			}
	tap_ok(found, "a page of region A is evicted (page %zu)", a_page);
	if (!found)
		return tap_done();

	pthread_mutex_lock(&gate_lock);
	gate_armed = true;
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
	tap_diag("resident %llu (budget %d), throttled %llu, drain waits %llu",
		 (unsigned long long)st.far_resident_pages, BUDGET,
		 (unsigned long long)st.far_throttled, (unsigned long long)st.far_aio_drain_waits);
	tap_ok(b_ok && atomic_load(&b_done) == 1 && atomic_load(&a_byte) == -1,
	       "region B's faults were served while A's store read was held back");

	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	tap_ok(atomic_load(&a_byte) == byte_of(a_page),
	       "A's page has its bytes once the read completes (%d, want %d)",
	       atomic_load(&a_byte), byte_of(a_page));
	TAP_EQ(fl_stats_get(rt, &st), 0);
	tap_ok(st.far_aio_reads > 0, "the read was asynchronous (far_aio_reads %llu)",
	       (unsigned long long)st.far_aio_reads);
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	free(backing);
	return tap_done();
}
