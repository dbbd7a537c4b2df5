/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fill-region - map a region whose pages a callback produces on first touch,
 * read it from several threads, check every byte, print the statistics.
 *
 *   fill-region [MiB] [threads]      (defaults: 64 MiB, 2 threads)
 *
 * The callback runs on a faultline handler thread and writes into a buffer
 * of the runtime's: it never touches the region itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <faultline.h>

#define PAGE 4096u

/* page i holds the 64-bit words i*512 .. i*512+511: a pattern we can check */
static int fill(void *arg, uint64_t offset, void *dst, size_t len)
{
	uint64_t *w = dst;

	(void)arg;
	for (size_t i = 0; i < len / 8; i++)
		w[i] = offset / 8 + i;
	return 0;
}

struct job {
	const uint64_t *base;
	size_t words, first, step;
	size_t bad;
};

static void *reader(void *arg)
{
	struct job *j = arg;

	/* stride over pages so that the threads fault on different ones */
	for (size_t p = j->first; p < j->words / 512; p += j->step)
		for (size_t i = 0; i < 512; i++)
			if (j->base[p * 512 + i] != p * 512 + i)
				j->bad++;
	return NULL;
}

static long arg_num(const char *s, const char *what, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi) {
		fprintf(stderr, "fill-region: bad %s '%s' (expected %ld..%ld)\n", what, s, lo, hi);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? (size_t)arg_num(argv[1], "size in MiB", 1, 1 << 20) : 64;
	unsigned int nthr = argc > 2 ? (unsigned int)arg_num(argv[2], "thread count", 1, 64) : 2;
	struct fl_region_opts ro;
	struct fl_runtime *rt;
	pthread_t th[64];
	struct job jobs[64];
	size_t len = mib << 20, bad = 0;
	void *p;
	int ret;

	ret = fl_runtime_create(NULL, &rt);
	if (ret) {
		fprintf(stderr, "fill-region: fl_runtime_create: %s\n", fl_strerror(ret));
		return ret == -EPERM || ret == -ENOSYS ? 77 : 1;
	}
	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_FILL;
	ro.fill = fill;
	ret = fl_region_map(rt, len, &ro, &p);
	if (ret) {
		fprintf(stderr, "fill-region: fl_region_map: %s\n", fl_strerror(ret));
		fl_runtime_destroy(rt);
		return 1;
	}
	for (unsigned int t = 0; t < nthr; t++) {
		jobs[t] = (struct job){ p, len / 8, t, nthr, 0 };
		pthread_create(&th[t], NULL, reader, &jobs[t]);
	}
	for (unsigned int t = 0; t < nthr; t++) {
		pthread_join(th[t], NULL);
		bad += jobs[t].bad;
	}
	printf("fill-region: %zu MiB, %u threads, %zu bad words\n", mib, nthr, bad);
	fl_features_print(rt, stdout);
	fl_stats_print(rt, stdout, FL_STATS_TEXT);
	fl_runtime_destroy(rt);
	return bad ? 1 : 0;
}
