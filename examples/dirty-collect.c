/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dirty-collect - how long collecting (and re-arming) the dirty set of a
 * region takes: async (WP_ASYNC + PAGEMAP_SCAN) vs sync (WP faults).
 *
 *   dirty-collect [MiB] [rounds]      (default 1024 MiB, 5 rounds)
 *
 * Prints one line per mode and dirty percentage (0.1, 1, 10): the median
 * "ms" to collect, and, separately, what the writes cost (sync: a WP fault
 * per first write). Pages are made resident first.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <faultline.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int run(bool async, size_t len, int rounds)
{
	static const double pct[] = { 0.1, 1, 10 };
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), npages = len / ps, nd;
	struct fl_runtime_opts o;
	struct fl_region_opts ro;
	struct fl_runtime *rt;
	uint64_t *bm = calloc((npages + 63) / 64, 8), x = 1;
	double ms[64], wms[64];
	char *mem;
	int ret;

	fl_runtime_opts_init(&o);
	if (async)
		o.flags |= FL_RT_WP_ASYNC;
	ret = fl_runtime_create(&o, &rt);
	if (ret) {
		printf("{\"workload\":\"dirty-collect\",\"mode\":\"%s\",\"skip\":\"%s\"}\n",
		       async ? "async" : "sync", fl_strerror(ret));
		free(bm);
		return 0;
	}
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	ret = fl_region_map(rt, len, &ro, (void **)&mem);
	if (!ret) {
		memset(mem, 1, len);
		ret = fl_dirty_start(rt, mem, len, FL_DIRTY_AUTO);
	}
	if (ret) {
		fprintf(stderr, "dirty-collect: %s\n", fl_strerror(ret));
		fl_runtime_destroy(rt);
		free(bm);
		return 1;
	}
	fl_dirty_collect(rt, mem, bm, npages, &nd);
	for (size_t k = 0; k < sizeof(pct) / sizeof(pct[0]); k++) {
		size_t want = (size_t)(npages * pct[k] / 100), got = 0;

		for (int r = 0; r < rounds && r < 64; r++) {
			double t0 = now();

			for (size_t i = 0; i < want; i++) {
				x = x * 6364136223846793005ull + 1442695040888963407ull;
				mem[(x >> 17) % npages * ps] = (char)r;
			}
			wms[r] = (now() - t0) * 1e3;
			t0 = now();
			fl_dirty_collect(rt, mem, bm, npages, &nd);
			ms[r] = (now() - t0) * 1e3;
			got += nd;
		}
		qsort(ms, (size_t)rounds, sizeof(double), cmp);
		qsort(wms, (size_t)rounds, sizeof(double), cmp);
		printf("{\"workload\":\"dirty-collect\",\"mode\":\"%s\",\"mib\":%zu,"
		       "\"dirty_pct\":%g,\"dirty_pages\":%zu,\"ms\":%.3f,\"ms_min\":%.3f,"
		       "\"write_ms\":%.3f}\n", async ? "async" : "sync", len >> 20, pct[k],
		       got / (size_t)rounds, ms[rounds / 2], ms[0], wms[rounds / 2]);
	}
	fl_unprotect(rt, mem, len);
	fl_runtime_destroy(rt);
	free(bm);
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 1024;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;

	if (!mib || rounds < 1 || rounds > 64)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	return run(true, mib << 20, rounds) | run(false, mib << 20, rounds);
}
