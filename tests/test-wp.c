/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-wp - fl_protect(): the callback runs once per page on its first
 * write, sees the page's old contents (resident and never-touched pages
 * alike: no WP_UNPOPULATED needed), and the write lands afterwards.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "tap.h"

#define NPAGES 64

struct seen {
	uintptr_t base;
	size_t ps;
	unsigned char first[NPAGES];	/* first byte of each page at callback time */
	int calls[NPAGES];
};

static void on_write(void *arg, void *page, size_t len)
{
	struct seen *s = arg;
	size_t p = ((uintptr_t)page - s->base) / s->ps;

	/* read only: the page is resident and write-protected */
	/* atomics: the handoff to main goes through the kernel, which
	 * ThreadSanitizer cannot see */
	__atomic_store_n(&s->first[p], *(volatile unsigned char *)page, __ATOMIC_RELEASE);
	__atomic_add_fetch(&s->calls[p], 1, __ATOMIC_RELAXED);
	(void)len;
}

static char *g_mem;
static size_t g_ps;

static void *writer(void *arg)
{
	/* each writer its own byte of every page: they race for the
	 * page's first write, not on the byte */
	size_t at = (char)(uintptr_t)arg == 'x' ? 1 : 2;

	for (size_t p = 0; p < NPAGES; p++)
		g_mem[p * g_ps + at] = (char)(uintptr_t)arg;
	return NULL;
}

int main(void)
{
	struct fl_runtime *rt = tap_runtime(NULL);
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_region_opts ro;
	static struct seen s;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), bad = 0, once = 0;
	struct fl_stats st = { .size = sizeof(st) };
	pthread_t th[2];
	char *mem, *plain;

	fl_features(rt, &ft);
	if (!ft.wp)
		tap_skip_all("kernel without uffd-wp (UFFD_FEATURE_PAGEFAULT_FLAG_WP)");
	tap_plan(11);
	tap_diag("wp_unpopulated: %s (not needed: the runtime installs armed pages protected)",
		 ft.wp_unpopulated ? "yes" : "no");
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	TAP_EQ(fl_region_map(rt, NPAGES * ps, &ro, (void **)&mem), 0);
	TAP_EQ(fl_region_map(rt, NPAGES * ps, NULL, (void **)&plain), 0);
	TAP_EQ(fl_protect(rt, plain, ps, on_write, &s), -EINVAL);

	/* even pages resident with 'A', odd pages never touched */
	for (size_t p = 0; p < NPAGES; p += 2)
		memset(mem + p * ps, 'A', ps);
	s.base = (uintptr_t)mem;
	s.ps = ps;
	TAP_EQ(fl_protect(rt, mem, NPAGES * ps, on_write, &s), 0);
	TAP_EQ(fl_protect(rt, mem + ps, ps, on_write, &s), -EEXIST);
	/* reads never call back */
	for (size_t p = 0; p < NPAGES; p++)
		bad += mem[p * ps] != (p % 2 ? 0 : 'A');
	g_mem = mem;
	g_ps = ps;
	pthread_create(&th[0], NULL, writer, (void *)(uintptr_t)'x');
	pthread_create(&th[1], NULL, writer, (void *)(uintptr_t)'y');
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	for (size_t p = 0; p < NPAGES; p++) {
		bad += __atomic_load_n(&s.first[p], __ATOMIC_ACQUIRE) != (p % 2 ? 0 : 'A');
		once += __atomic_load_n(&s.calls[p], __ATOMIC_ACQUIRE) == 1;
		bad += mem[p * ps + 1] != 'x' || mem[p * ps + 2] != 'y';
	}
	tap_ok(!bad, "callbacks saw old contents, writes landed after (%zu bad)", bad);
	tap_ok(once == NPAGES, "exactly one callback per page with two writers (%zu of %d)",
	       once, NPAGES);
	mem[5] = 'z';
	tap_ok(__atomic_load_n(&s.calls[0], __ATOMIC_ACQUIRE) == 1, "a second write to a page does not call back");
	TAP_EQ(fl_unprotect(rt, mem, ps), -ENOENT);
	TAP_EQ(fl_unprotect(rt, mem, NPAGES * ps), 0);
	fl_stats_get(rt, &st);
	tap_ok(st.wp_callbacks == NPAGES && st.faults_wp >= NPAGES,
	       "counters: wp_callbacks %llu, faults_wp %llu",
	       (unsigned long long)st.wp_callbacks, (unsigned long long)st.faults_wp);
	tap_diag_resolve(rt);
	fl_runtime_destroy(rt);
	return tap_done();
}
