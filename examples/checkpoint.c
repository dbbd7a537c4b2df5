/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * checkpoint - a program mutates memory and checkpoints it periodically
 * (a full image, then incrementals), then restores the last image eagerly
 * and lazily into fresh mappings and verifies every page against a copy.
 * Exit 0 only if every page of every restore matches.
 *
 *   checkpoint [MiB] [checkpoints] [live]
 *
 * Defaults: 64 MiB, 10 checkpoints; "live" takes them as live snapshots.
 * Throughput against a raw write of the same bytes, dirty-set collection,
 * lazy against eager restore and the cost of a live snapshot are measured
 * by faultline-bench (workloads ckpt-write, dirty-collect, lazy-restore,
 * live-snapshot: examples/bench/ckpt.c), modes interleaved, medians.
 * Images go to a private directory under $TMPDIR (or /tmp), removed at exit.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>
#include <faultline.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void cleanup(char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[4096];

	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
	rmdir(dir);
}

static size_t compare(const char *a, const char *b, size_t npages, size_t ps)
{
	size_t bad = 0;

	for (size_t p = 0; p < npages; p++)
		bad += memcmp(a + p * ps, b + p * ps, ps) != 0;
	return bad;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 64;
	int nck = argc > 2 ? atoi(argv[2]) : 10;
	bool live = argc > 3 && !strcmp(argv[3], "live");
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), len = mib << 20, npages = len / ps;
	const char *tmp = getenv("TMPDIR");
	struct fl_runtime *rt;
	struct fl_region_opts ro;
	struct fl_ckpt *ck;
	struct fl_lazy *lz;
	char dir[4096], path[4200], *mem, *ref, *eager, *lazy;
	uint64_t x = 12345;
	size_t bad_e, bad_l;
	double t0, t_eager, t_lazy;
	int ret;

	if (!mib || nck < 1)
		return 2;
	ret = fl_runtime_create(NULL, &rt);
	if (ret) {
		fprintf(stderr, "checkpoint: runtime: %s\n", fl_strerror(ret));
		return 1;
	}
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	ret = fl_region_map(rt, len, &ro, (void **)&mem);
	if (ret) {
		fprintf(stderr, "checkpoint: region: %s\n", fl_strerror(ret));
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/fl-checkpoint-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("checkpoint: mkdtemp");
		return 1;
	}
	ret = fl_ckpt_create(rt, mem, len, FL_DIRTY_AUTO, &ck);
	if (ret) {
		fprintf(stderr, "checkpoint: %s\n", fl_strerror(ret));
		cleanup(dir);
		return 1;
	}
	for (size_t p = 0; p < npages; p += 3)
		memset(mem + p * ps, (int)(p & 0xff), ps);
	for (int k = 0; k < nck; k++) {
		struct stat sb;

		if (k)	/* mutate ~2% of the pages */
			for (size_t n = 0; n < npages / 50; n++) {
				x = x * 6364136223846793005ull + 1442695040888963407ull;
				mem[(x >> 20) % npages * ps + (x >> 8) % ps] = (char)x;
			}
		snprintf(path, sizeof(path), "%s/img.%d", dir, k);
		t0 = now();
		ret = fl_ckpt_save(ck, path, live ? FL_CKPT_LIVE : 0);
		if (ret) {
			fprintf(stderr, "checkpoint %d: %s\n", k, fl_strerror(ret));
			cleanup(dir);
			return 1;
		}
		stat(path, &sb);
		printf("checkpoint %d: %s, %lld KiB, %.1f ms\n", k, k ? "incremental" : "full",
		       (long long)sb.st_size >> 10, (now() - t0) * 1e3);
	}
	ref = malloc(len);
	memcpy(ref, mem, len);

	eager = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	t0 = now();
	ret = fl_restore(path, eager, len);
	t_eager = now() - t0;
	bad_e = ret ? npages : compare(ref, eager, npages, ps);
	if (ret)
		fprintf(stderr, "eager restore: %s\n", fl_strerror(ret));

	t0 = now();
	ret = fl_restore_lazy(rt, path, NULL, 0, &lz, (void **)&lazy);
	if (ret) {
		fprintf(stderr, "lazy restore: %s\n", fl_strerror(ret));
		bad_l = npages;
	} else {
		volatile char first = lazy[0];

		(void)first;
		printf("lazy restore: first access after %.2f ms\n", (now() - t0) * 1e3);
		bad_l = compare(ref, lazy, npages, ps);
		t_lazy = now() - t0;
		printf("lazy restore: all pages after %.1f ms\n", t_lazy * 1e3);
		fl_lazy_destroy(lz);
	}
	printf("eager restore: %.1f ms\n", t_eager * 1e3);
	printf("verified %zu pages: eager %zu bad, lazy %zu bad\n", npages, bad_e, bad_l);
	fl_ckpt_destroy(ck);
	fl_runtime_destroy(rt);
	munmap(eager, len);
	free(ref);
	cleanup(dir);
	return bad_e || bad_l ? 1 : 0;
}
