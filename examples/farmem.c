/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * farmem - far memory end to end: a working set 4x the resident budget,
 * written, then verified and rewritten in random and sequential passes.
 * Every byte is checked; exit 0 only if every byte was right.
 *
 *   farmem [--budget MiB] [--factor N] [--passes N] [--store memory|file]
 *          [--file PATH] [--no-move] [--stats]
 *
 * Each 8-byte word holds (page, version, word index) mixed together, so a
 * page served stale (older version), from the wrong place, or as zeros is
 * caught at its first word.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <faultline.h>

static size_t pgsz, npages, words;
static uint64_t *mem;
static uint32_t *version;

static inline uint64_t word(size_t pg, uint32_t ver, size_t i)
{
	uint64_t x = ((uint64_t)pg << 32 | ver) * 0x9e3779b97f4a7c15ull;

	return x ^ (i * 0xbf58476d1ce4e5b9ull);
}

static void write_page(size_t pg)
{
	uint64_t *p = mem + pg * words;
	uint32_t v = ++version[pg];

	for (size_t i = 0; i < words; i++)
		p[i] = word(pg, v, i);
}

static size_t check_page(size_t pg)
{
	const uint64_t *p = mem + pg * words;
	size_t bad = 0;

	for (size_t i = 0; i < words; i++)
		bad += p[i] != word(pg, version[pg], i);
	return bad;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void usage(void)
{
	fprintf(stderr, "usage: farmem [--budget MiB] [--factor N] [--passes N] "
		"[--store memory|file] [--file PATH] [--no-move] [--stats]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t budget_mib = 32, factor = 4, passes = 2, bad = 0;
	const char *store_kind = "file", *path = NULL;
	bool no_move = false, show_stats = false;
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st = { .size = sizeof(st) };
	struct fl_features ft = { .size = sizeof(ft) };
	uint64_t seed = 88172645463325252ull;
	double t0, t;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--budget") && i + 1 < argc)
			budget_mib = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--factor") && i + 1 < argc)
			factor = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--passes") && i + 1 < argc)
			passes = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--store") && i + 1 < argc)
			store_kind = argv[++i];
		else if (!strcmp(argv[i], "--file") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--no-move"))
			no_move = true;
		else if (!strcmp(argv[i], "--stats"))
			show_stats = true;
		else
			usage();
	}
	if (!budget_mib || !factor)
		usage();
	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	words = pgsz / 8;
	npages = budget_mib * factor * (1u << 20) / pgsz;

	if (!strcmp(store_kind, "memory"))
		ret = fl_store_memory_create(&store);
	else if (!strcmp(store_kind, "file"))
		ret = fl_store_file_create(path, 0, &store);
	else
		usage();
	if (ret) {
		fprintf(stderr, "farmem: store: %s\n", fl_strerror(ret));
		return 1;
	}
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = budget_mib << 20;
	if (no_move)
		o.flags |= FL_RT_EVICT_NO_MOVE;
	ret = fl_runtime_create(&o, &rt);
	if (ret) {
		fprintf(stderr, "farmem: runtime: %s\n", fl_strerror(ret));
		return ret == -EPERM || ret == -ENOSYS ? 77 : 1;
	}
	fl_features(rt, &ft);
	version = calloc(npages, sizeof(*version));
	ret = fl_region_map(rt, npages * pgsz, NULL, (void **)&mem);
	if (ret || !version) {
		fprintf(stderr, "farmem: region: %s\n", fl_strerror(ret ? ret : -ENOMEM));
		return 1;
	}
	printf("farmem: %zu MiB working set, %zu MiB budget, %s store, eviction by %s\n",
	       npages * pgsz >> 20, budget_mib, store_kind,
	       ft.move && !no_move ? "UFFDIO_MOVE" : ft.wp ? "WP, copy, zap" : "nothing (no MOVE, no WP)");

	t0 = now();
	for (size_t pg = 0; pg < npages; pg++)
		write_page(pg);
	printf("  fill        %6.2f s\n", now() - t0);
	for (size_t p = 0; p < passes; p++) {
		t = now();
		for (size_t k = 0; k < npages; k++) {
			size_t pg = (size_t)(rnd(&seed) % npages);

			bad += check_page(pg);
			if (k & 1)
				write_page(pg);
		}
		printf("  random %zu    %6.2f s\n", p, now() - t);
		t = now();
		for (size_t pg = 0; pg < npages; pg++) {
			bad += check_page(pg);
			if (pg % 3 == 0)
				write_page(pg);
		}
		printf("  sequential %zu %5.2f s\n", p, now() - t);
	}
	t = now();
	for (size_t pg = 0; pg < npages; pg++)
		bad += check_page(pg);
	printf("  final check %6.2f s\n", now() - t);
	fl_stats_get(rt, &st);
	printf("farmem: %.2f s; faults %llu, pageins %llu (read-ahead %llu), evictions %llu "
	       "(clean %llu), writebacks %llu, throttled %llu, store errors %llu\n",
	       now() - t0, (unsigned long long)st.faults, (unsigned long long)st.far_pageins,
	       (unsigned long long)st.far_readahead_pages, (unsigned long long)st.far_evictions,
	       (unsigned long long)st.far_evict_clean, (unsigned long long)st.far_writebacks,
	       (unsigned long long)st.far_throttled, (unsigned long long)st.far_store_errors);
	printf("farmem: peak resident seen by the evictor %.1f MiB (budget %zu MiB), "
	       "budget overshoot rounds %llu\n",
	       (double)st.far_resident_peak * (double)pgsz / (1 << 20), budget_mib,
	       (unsigned long long)st.far_budget_overshoot);
	if (show_stats)
		fl_stats_print(rt, stdout, FL_STATS_TEXT);
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	free(version);
	printf("farmem: %s (%zu bad words)\n", bad ? "FAILED" : "every byte verified", bad);
	return bad ? 1 : 0;
}
