/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * farmem.h - faultline-bench's far-memory workloads, farmem.c:
 *
 *   farmem-scan  a region 4x its budget, every page written and evicted
 *                to a file store, then read (one word per page) in seq or
 *                random order by 1 and by 4 threads: mode faultline; and
 *                the same store file read directly with io_uring, 4 KiB
 *                reads at queue depth 1, 32 and 4: mode raw-store. Same
 *                process run, interleaved. With --far-store, the store is
 *                a memcached pool and raw-store reads its items with
 *                libmemcached (get at 1 and 4 threads, mget of 32 keys:
 *                farmem-mc.h).
 *   farmem-sort  an in-place quicksort of an array 4x the budget: mode
 *                faultline (region under the budget, file store or the
 *                --far-store pool) and mode
 *                memcg (the same sort in a child in a memory cgroup whose
 *                limit is the budget, with swap: memswap.h). Runs only
 *                when named.
 */
#ifndef FL_BENCH_FARMEM_H
#define FL_BENCH_FARMEM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"

/* how the store file is read: both modes always alike */
enum far_io {
	FAR_IO_COLD,	/* buffered; written back and dropped from the page cache before each scan */
	FAR_IO_WARM,	/* buffered, the page cache left as the run made it */
	FAR_IO_DIRECT,	/* O_DIRECT on both sides */
};

struct farmem_opts {
	const struct report_opts *rep;
	bool quick;
	unsigned int repeat;
	size_t pages;		/* --pages: working-set pages (0: default) */
	enum far_io io;
	unsigned int swap;	/* --swap: BENCH_SWAP_WANT_* for the memcg mode; 0: any */
	const char *store_url;	/* --far-store: a memcached pool instead of a file */
};

/* parse --far-io: 0, or -EINVAL */
int farmem_parse_io(const char *s, enum far_io *out);

/* parse --swap (zram, file, any) into BENCH_SWAP_WANT_* bits: 0, or -EINVAL */
int farmem_parse_swap(const char *s, unsigned int *want);

/*
 * A thread's slice of a scan order, the first member of its argument: the
 * thread waits at @bar, stamps @t0, reads @order[0..@n), stamps @t1 and
 * counts wrong words in @bad (farmem.c's scanners, farmem-mc.c's clients).
 */
struct slice {
	pthread_t th;
	const size_t *order;
	size_t n;
	pthread_barrier_t *bar;
	double t0, t1;
	uint64_t bad;
};

/*
 * Run @fn on @nthreads threads, @s[i] the slice i of @order[0..@n) (the
 * rest of each argument set by the caller). Return: seconds from the first
 * start to the last end; @bad: the wrong words of all.
 */
double slices_run(struct slice *const *s, unsigned int nthreads, const size_t *order,
		  size_t n, void *(*fn)(void *), uint64_t *bad);

void farmem_scan(const struct farmem_opts *o);
void farmem_sort(const struct farmem_opts *o);

#endif
