/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sort-farmem - sort an array larger than the memory budget (umap's
 * umapsort is the peer): the array lives in a far-memory region, at most
 * --budget MiB of it resident, the rest in the store. The sort is in place
 * (examples/sort-u64.h), so the array is all the memory it touches.
 *
 *   sort-farmem [--mib N] [--budget MiB] [--store file|memory] [--no-move] [--stats]
 *
 * Defaults: a 128 MiB array (16 M 64-bit keys) under a 32 MiB budget, file
 * store; about 10 s on 2 vCPUs. The keys are pseudo-random; afterwards every
 * key is checked to be in order and the sum and xor of all keys to be what
 * they were before the sort (nothing lost, nothing made up).
 *
 * Exit: 0 sorted and verified; 1 not; 2 usage; 77 no userfaultfd here.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <faultline.h>

#include "sort-u64.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t key(uint64_t i)
{
	uint64_t z = i * 0x9e3779b97f4a7c15ull + 0x50e7;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void usage(void)
{
	fprintf(stderr, "usage: sort-farmem [--mib N] [--budget MiB] [--store file|memory] "
		"[--no-move] [--stats]\n");
	exit(2);
}

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || !v || v > (1ul << 20))
		usage();
	return v;
}

int main(int argc, char **argv)
{
	size_t mib = 128, budget_mib = 32, n, unsorted = 0;
	const char *store_kind = "file";
	bool no_move = false, show_stats = false;
	struct fl_stats st = { .size = sizeof(st) };
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	uint64_t *a, sum = 0, x = 0, sum2 = 0, x2 = 0;
	double t0, t_fill, t_sort;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			mib = parse_size(argv[++i]);
		else if (!strcmp(argv[i], "--budget") && i + 1 < argc)
			budget_mib = parse_size(argv[++i]);
		else if (!strcmp(argv[i], "--store") && i + 1 < argc)
			store_kind = argv[++i];
		else if (!strcmp(argv[i], "--no-move"))
			no_move = true;
		else if (!strcmp(argv[i], "--stats"))
			show_stats = true;
		else
			usage();
	}
	if (!strcmp(store_kind, "file"))
		ret = fl_store_file_create(NULL, 0, &store);
	else if (!strcmp(store_kind, "memory"))
		ret = fl_store_memory_create(&store);
	else
		usage();
	if (ret) {
		fprintf(stderr, "sort-farmem: store: %s\n", fl_strerror(ret));
		return 1;
	}
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = budget_mib << 20;
	if (no_move)
		o.flags |= FL_RT_EVICT_NO_MOVE;
	ret = fl_runtime_create(&o, &rt);
	if (ret) {
		fprintf(stderr, "sort-farmem: runtime: %s\n", fl_strerror(ret));
		fl_store_destroy(store);
		if (ret == -EPERM || ret == -ENOSYS) {
			printf("SKIP: no userfaultfd here (%s)\n", fl_strerror(ret));
			return 77;
		}
		return 1;
	}
	n = (mib << 20) / sizeof(uint64_t);
	ret = fl_region_map(rt, n * sizeof(uint64_t), NULL, (void **)&a);
	if (ret) {
		fprintf(stderr, "sort-farmem: region: %s\n", fl_strerror(ret));
		fl_runtime_destroy(rt);
		fl_store_destroy(store);
		return 1;
	}
	printf("sort-farmem: %zu keys (%zu MiB) under a %zu MiB budget, %s store\n",
	       n, mib, budget_mib, store_kind);

	t0 = now();
	for (size_t i = 0; i < n; i++) {
		a[i] = key(i);
		sum += a[i];
		x ^= a[i];
	}
	t_fill = now() - t0;
	t0 = now();
	sort_u64(a, n);
	t_sort = now() - t0;
	for (size_t i = 0; i < n; i++) {
		sum2 += a[i];
		x2 ^= a[i];
		if (i && a[i - 1] > a[i])
			unsorted++;
	}
	fl_stats_get(rt, &st);
	printf("  fill %.2f s, sort %.2f s; page-ins %llu (read-ahead %llu), evictions %llu "
	       "(clean %llu), peak resident %.1f MiB\n", t_fill, t_sort,
	       (unsigned long long)st.far_pageins, (unsigned long long)st.far_readahead_pages,
	       (unsigned long long)st.far_evictions, (unsigned long long)st.far_evict_clean,
	       (double)st.far_resident_peak * (double)sysconf(_SC_PAGESIZE) / (1 << 20));
	if (show_stats)
		fl_stats_print(rt, stdout, FL_STATS_TEXT);
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	if (unsorted || sum2 != sum || x2 != x) {
		printf("sort-farmem: FAILED: %zu keys out of order, checksum %s\n", unsorted,
		       sum2 == sum && x2 == x ? "matches" : "DIFFERS (keys lost or made up)");
		return 1;
	}
	printf("sort-farmem: sorted and verified (every key in order, sum and xor unchanged)\n");
	return 0;
}
