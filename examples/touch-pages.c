/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * touch-pages - the preload benchmark's workload: malloc a buffer (1 GiB by
 * default) and write one byte in each page, in order; print the time taken
 * by the writes. Run it natively and under `faultline run` to compare
 * (examples/bench/preload-bench.sh does, three times each).
 *
 *   touch-pages [MiB]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 1024, len = mib << 20;
	long pg = sysconf(_SC_PAGESIZE);
	struct timespec a, b;
	unsigned long sum = 0;
	volatile char *p;

	p = malloc(len);
	if (!p) {
		perror("malloc");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (size_t i = 0; i < len; i += (size_t)pg)
		p[i] = (char)(i >> 12);
	clock_gettime(CLOCK_MONOTONIC, &b);
	for (size_t i = 0; i < len; i += (size_t)pg)
		sum += (unsigned char)p[i];
	printf("touched %zu MiB page by page in %.3f s (checksum %lu)\n", mib,
	       (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9, sum);
	free((void *)p);
	return 0;
}
