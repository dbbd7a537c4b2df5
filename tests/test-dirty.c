/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-dirty - dirty tracking, argument "sync" or "async": exactly the
 * written pages are reported, collection clears and re-arms, never-touched
 * pages are tracked, MADV_DONTNEED counts as a write, mremap keeps tracking.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "tap.h"

#define NPAGES 256

static size_t count_bits(const uint64_t *bm, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += bm[i / 64] >> (i % 64) & 1;
	return c;
}

static int bit(const uint64_t *bm, size_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

int main(int argc, char **argv)
{
	bool async = argc > 1 && !strcmp(argv[1], "async");
	struct fl_runtime_opts o;
	struct fl_runtime *rt = NULL;
	struct fl_region_opts ro;
	uint64_t bm[NPAGES / 64];
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), nd = 0, wrong = 0;
	struct fl_stats st = { .size = sizeof(st) };
	uint64_t ev;
	char *mem, *moved;
	int ret;

	fl_runtime_opts_init(&o);
	if (async)
		o.flags |= FL_RT_WP_ASYNC;
	ret = fl_runtime_create(&o, &rt);
	if (ret == -EOPNOTSUPP)
		tap_skip_all("kernel without UFFD_FEATURE_WP_ASYNC (6.7+): async tracking off");
	if (ret == -EPERM || ret == -ENOSYS)
		tap_skip_all("cannot open a userfaultfd here: %s", fl_strerror(ret));
	if (ret) {
		printf("Bail out! fl_runtime_create: %s\n", fl_strerror(ret));
		return 1;
	}
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	ret = fl_region_map(rt, NPAGES * ps, &ro, (void **)&mem);
	if (ret == -EOPNOTSUPP)
		tap_skip_all("kernel without uffd-wp");
	tap_plan(14);
	tap_diag("mode: %s", async ? "async (WP_ASYNC + PAGEMAP_SCAN)" : "sync (WP faults)");
	TAP_EQ(ret, 0);
	/* the first half resident before tracking starts */
	memset(mem, 1, NPAGES / 2 * ps);
	TAP_EQ(fl_dirty_start(rt, mem, NPAGES * ps, async ? FL_DIRTY_SYNC : FL_DIRTY_ASYNC),
	       -EOPNOTSUPP);
	TAP_EQ(fl_dirty_start(rt, mem, NPAGES * ps, FL_DIRTY_AUTO), 0);
	TAP_EQ(fl_dirty_collect(rt, mem, bm, NPAGES, &nd), 0);
	tap_ok(nd == 0, "nothing written yet: %zu dirty", nd);

	/* every 3rd page, resident and never-touched alike; reads elsewhere */
	for (size_t p = 0; p < NPAGES; p++) {
		if (p % 3 == 0)
			mem[p * ps + 7] = 9;
		else
			(void)*(volatile char *)(mem + p * ps);
	}
	TAP_EQ(fl_dirty_collect(rt, mem, bm, NPAGES, &nd), 0);
	for (size_t p = 0; p < NPAGES; p++)
		wrong += bit(bm, p) != (p % 3 == 0);
	tap_ok(!wrong && nd == count_bits(bm, NPAGES),
	       "exactly the written pages: %zu dirty, %zu wrong", nd, wrong);
	fl_dirty_collect(rt, mem, bm, NPAGES, &nd);
	tap_ok(nd == 0, "collection cleared the set: %zu dirty", nd);

	/* scattered runs are re-protected over their span (wp.c): all armed again */
	for (size_t p = 0; p < NPAGES; p += 3)
		mem[p * ps + 8] = 10;
	fl_dirty_collect(rt, mem, bm, NPAGES, &nd);
	wrong = 0;
	for (size_t p = 0; p < NPAGES; p++)
		wrong += bit(bm, p) != (p % 3 == 0);
	tap_ok(!wrong && nd == (NPAGES + 2) / 3,
	       "the same scattered pages written again: all seen (%zu dirty, %zu wrong)", nd, wrong);

	/* re-armed: write again; and drop some pages (their contents change) */
	mem[10 * ps] = 1;
	fl_stats_get(rt, &st);
	ev = st.events_remove;
	madvise(mem + 20 * ps, 2 * ps, MADV_DONTNEED);
	/* the REMOVE event is read before madvise returns, but a handler may
	 * not have counted it yet (see wp_collect) */
	do
		fl_stats_get(rt, &st);
	while (st.events_remove == ev);
	fl_dirty_collect(rt, mem, bm, NPAGES, &nd);
	tap_ok(nd == 3 && bit(bm, 10) && bit(bm, 20) && bit(bm, 21),
	       "re-armed pages and MADV_DONTNEED pages reported: %zu dirty", nd);

	/* mremap the whole region: tracking follows it */
	fl_stats_get(rt, &st);
	ev = st.events_remap;
	moved = mmap(NULL, NPAGES * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	moved = mremap(mem, NPAGES * ps, NPAGES * ps, MREMAP_MAYMOVE | MREMAP_FIXED, moved);
	if (moved == MAP_FAILED) {
		tap_ok(0, "mremap failed");
		moved = mem;
	}
	do
		fl_stats_get(rt, &st);
	while (moved != mem && st.events_remap == ev);
	moved[30 * ps] = 2;
	ret = fl_dirty_collect(rt, moved, bm, NPAGES, &nd);
	tap_ok(ret == 0 && nd == 1 && bit(bm, 30),
	       "after mremap: collect at the new address: %d, %zu dirty", ret, nd);
	TAP_EQ(fl_dirty_collect(rt, mem, bm, NPAGES, &nd), -ENOENT);
	TAP_EQ(fl_dirty_collect(rt, moved, bm, 10, &nd), -ENOSPC);
	TAP_EQ(fl_unprotect(rt, moved, NPAGES * ps), 0);
	tap_diag_resolve(rt);
	fl_runtime_destroy(rt);
	return tap_done();
}
