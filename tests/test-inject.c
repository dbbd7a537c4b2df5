/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-inject - injected failures in the core, and what a user sees:
 *
 *  1. a fill callback that fails with EIO on a schedule: the access to such
 *     a page raises SIGBUS (UFFDIO_POISON; without it the fill is retried
 *     and the access succeeds), every failure is counted in fill_errors,
 *     every other page holds its bytes;
 *  2. a fill callback that sleeps: while it sleeps, faults on another
 *     region and on other pages of its own region are served;
 *  3. allocation failures injected at region_alloc() and
 *     index_publish_locked() (FL_TEST_HOOKS builds only): the public call
 *     returns -ENOMEM and the runtime is as before (region count, contents,
 *     a retry succeeds); where the kernel was already changed, the call
 *     completes instead of leaving the index and the kernel disagreeing.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

#include "tap.h"
#include "core/internal.h"
#include "core/testhooks.h"

static struct fl_runtime *rt;
static size_t page_size;

/* ---- SIGBUS catching, for the thread that touches ---- */

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_armed;

static void on_sigbus(int sig)
{
	if (bus_armed)
		siglongjmp(bus_jmp, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* read one byte; -1 when the access raised SIGBUS */
static int read_byte(const volatile unsigned char *p)
{
	int v;

	if (sigsetjmp(bus_jmp, 1)) {
		bus_armed = 0;
		return -1;
	}
	bus_armed = 1;
	v = *p;
	bus_armed = 0;
	return v;
}

static uint64_t stat_of(size_t off)
{
	struct fl_stats st = { .size = sizeof(st) };

	fl_stats_get(rt, &st);
	return *(uint64_t *)((char *)&st + off);
}
#define STAT(f) stat_of(offsetof(struct fl_stats, f))

/* ---- 1: EIO on a schedule ---- */

static bool have_poison;
static _Atomic unsigned int eio_calls[16];

/* pages 1, 5, 9, 13 fail: always with POISON (their access must SIGBUS),
 * only on the first try without it (the access is retried) */
static int fill_eio(void *arg, uint64_t off, void *dst, size_t len)
{
	size_t pg = off / page_size;

	if (pg % 4 == 1 && (have_poison || atomic_fetch_add(&eio_calls[pg], 1) == 0))
		return -EIO;
	memset(dst, 0x30 + (int)pg, len);
	return 0;
}

static void case_eio(void)
{
	const size_t n = 16;
	struct fl_region_opts ro;
	unsigned char *p;
	uint64_t err0 = STAT(fill_errors);
	size_t bus = 0, good = 0, want_bus = have_poison ? 4 : 0;

	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_FILL;
	ro.fill = fill_eio;
	ro.fault_around = page_size;
	TAP_EQ(fl_region_map(rt, n * page_size, &ro, (void **)&p), 0);
	for (size_t i = 0; i < n; i++) {
		int v = read_byte(p + i * page_size);

		if (v < 0)
			bus += i % 4 == 1;
		else
			good += v == 0x30 + (int)i;
	}
	tap_ok(bus == want_bus && good == n - want_bus,
	       "1: EIO pages %s (%zu SIGBUS), the other pages hold their bytes (%zu of %zu)",
	       have_poison ? "raise SIGBUS via UFFDIO_POISON" : "are retried (no POISON here)",
	       bus, good, n - want_bus);
	tap_ok(STAT(fill_errors) - err0 == 4, "1: every failed fill counted (fill_errors +%llu)",
	       (unsigned long long)(STAT(fill_errors) - err0));
	if (have_poison)
		tap_ok(read_byte(p + page_size) < 0, "1: a poisoned page stays poisoned: SIGBUS again");
	else
		tap_ok(1, "1: # SKIP no UFFDIO_POISON on this kernel");
	TAP_EQ(fl_region_unregister(rt, p), 0);
}

/* ---- 2: a slow fill does not hold up other faults ---- */

static pthread_mutex_t slow_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slow_cv = PTHREAD_COND_INITIALIZER;
static bool slow_in, slow_go;

static int fill_slow(void *arg, uint64_t off, void *dst, size_t len)
{
	if (off == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 20;	/* bounded: a broken test fails, never hangs */
		pthread_mutex_lock(&slow_m);
		slow_in = true;
		pthread_cond_broadcast(&slow_cv);
		while (!slow_go)
			if (pthread_cond_timedwait(&slow_cv, &slow_m, &ts))
				break;
		pthread_mutex_unlock(&slow_m);
	}
	memset(dst, 0x60 + (int)(off / page_size), len);
	return 0;
}

static void *touch0(void *arg)
{
	return (void *)(uintptr_t)*(volatile unsigned char *)arg;
}

static void case_slow(void)
{
	const size_t n = 8;
	static unsigned char src[8 * 4096];
	struct fl_region_opts ro;
	unsigned char *slow, *other;
	pthread_t t;
	void *got;
	size_t good_other = 0, good_own = 0;
	bool still_in;

	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_FILL;
	ro.fill = fill_slow;
	ro.fault_around = page_size;
	TAP_EQ(fl_region_map(rt, n * page_size, &ro, (void **)&slow), 0);
	memset(src, 0x77, sizeof(src));
	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_COPY;
	ro.src = src;
	ro.src_len = sizeof(src) < n * page_size ? sizeof(src) : n * page_size;
	TAP_EQ(fl_region_map(rt, n * page_size, &ro, (void **)&other), 0);

	pthread_create(&t, NULL, touch0, slow);
	pthread_mutex_lock(&slow_m);
	while (!slow_in)
		pthread_cond_wait(&slow_cv, &slow_m);
	pthread_mutex_unlock(&slow_m);

	/* one handler sleeps in the fill; the others serve */
	for (size_t i = 0; i < n; i++)
		good_other += other[i * page_size] == (i * page_size < ro.src_len ? 0x77 : 0);
	for (size_t i = 1; i < n; i++)
		good_own += slow[i * page_size] == 0x60 + i;
	pthread_mutex_lock(&slow_m);
	still_in = !slow_go;
	slow_go = true;
	pthread_cond_broadcast(&slow_cv);
	pthread_mutex_unlock(&slow_m);
	pthread_join(t, &got);
	tap_ok(still_in && good_other == n && good_own == n - 1,
	       "2: while a fill sleeps, another region (%zu/%zu) and its own other pages (%zu/%zu) are served",
	       good_other, n, good_own, n - 1);
	tap_ok((uintptr_t)got == 0x60, "2: the slow page arrives once its fill returns (0x%02x)",
	       (unsigned)(uintptr_t)got);
	TAP_EQ(fl_region_unregister(rt, slow), 0);
	TAP_EQ(fl_region_unregister(rt, other), 0);
}

/* ---- 3: allocation failures ---- */

static void fail_next(enum fl_test_site s, int nth)
{
	atomic_store(&fl_test_fail_at[s], nth);
}

static size_t region_len(void *p)
{
	struct fl_region *r;
	size_t len = 0;

	pthread_rwlock_rdlock(&rt->index.lock);
	r = index_lookup(rt->index.cur, (uintptr_t)p);
	if (r && r->start == (uintptr_t)p)
		len = r->end - r->start;
	pthread_rwlock_unlock(&rt->index.lock);
	return len;
}

static bool mapped(void *p, size_t len)
{
	return msync(p, len, MS_ASYNC) == 0;
}

static bool bytes_ok(const unsigned char *p, size_t len, const unsigned char *src, size_t src_len)
{
	for (size_t o = 0; o < len; o += page_size / 2)
		if (p[o] != (o < src_len ? src[o] : 0))
			return false;
	return true;
}

static void case_alloc(void)
{
	const size_t n = 8, len = n * page_size;
	unsigned char *src = malloc(len), *p, *q;
	struct fl_region_opts ro;
	int count;
	uint64_t regd;

	for (size_t i = 0; i < len; i++)
		src[i] = (unsigned char)(i * 13 + 1);
	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_COPY;
	ro.src = src;
	ro.src_len = len;

	/* fl_region_map: the region object, then the index array */
	count = fl_region_count(rt);
	regd = STAT(regions_registered);
	fail_next(FL_FAIL_REGION_ALLOC, 1);
	TAP_EQ(fl_region_map(rt, len, &ro, (void **)&p), -ENOMEM);
	fail_next(FL_FAIL_INDEX_PUBLISH, 1);
	TAP_EQ(fl_region_map(rt, len, &ro, (void **)&p), -ENOMEM);
	tap_ok(fl_region_count(rt) == count && STAT(regions_registered) == regd,
	       "3: failed maps leave no region behind (count %d)", fl_region_count(rt));

	/* fl_region_register on the caller's mapping: nothing stays registered */
	q = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fail_next(FL_FAIL_INDEX_PUBLISH, 1);
	TAP_EQ(fl_region_register(rt, q, len, &ro), -ENOMEM);
	tap_ok(q[0] == 0, "3: after a failed register the range is plain memory again (zeros)");
	munmap(q, len);

	TAP_EQ(fl_region_map(rt, len, &ro, (void **)&p), 0);
	tap_ok(bytes_ok(p, len / 2, src, len), "3: the retry works and serves its source");

	/* resize: quiesce (publish), the new object, the replacement (publish) */
	fail_next(FL_FAIL_INDEX_PUBLISH, 1);
	TAP_EQ(fl_region_resize(rt, p, len / 2), -ENOMEM);
	fail_next(FL_FAIL_REGION_ALLOC, 1);
	TAP_EQ(fl_region_resize(rt, p, len / 2), -ENOMEM);
	tap_ok(region_len(p) == len && mapped(p, len) && bytes_ok(p, len, src, len),
	       "3: failed resizes leave the region as it was (length %zu, bytes, mapping)",
	       region_len(p));
	/* the replacement's publish fails after the kernel dropped the tail:
	 * there is no way back, so the resize must complete */
	fail_next(FL_FAIL_INDEX_PUBLISH, 2);
	TAP_EQ(fl_region_resize(rt, p, len / 2), 0);
	tap_ok(region_len(p) == len / 2 && bytes_ok(p, len / 2, src, len),
	       "3: a resize whose last publish failed completes (length %zu)", region_len(p));

	/* unregister: without memory for a smaller array it takes the slow way */
	count = fl_region_count(rt);
	fail_next(FL_FAIL_INDEX_PUBLISH, 1);
	TAP_EQ(fl_region_unregister(rt, p), 0);
	tap_ok(fl_region_count(rt) == count - 1 && region_len(p) == 0,
	       "3: unregister without memory for the new index still takes the region out");
	free(src);
}

int main(void)
{
	struct fl_runtime_opts o;
	struct fl_features f = { .size = sizeof(f) };
	struct sigaction sa;

	page_size = (size_t)sysconf(_SC_PAGESIZE);
	/* before the runtime: one that resolves in-thread chains to it */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);
	fl_runtime_opts_init(&o);
	o.handlers = 3;		/* one sleeps in a fill, the others serve */
	o.flags = FL_RT_NO_PIN;
	rt = tap_runtime(&o);
	fl_features(rt, &f);
	have_poison = f.poison;

	tap_plan(25);
	case_eio();
	case_slow();
	case_alloc();

	fl_runtime_destroy(rt);
	return tap_done();
}
