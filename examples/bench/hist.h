/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hist.h - a small log-linear latency histogram (HdrHistogram-like).
 *
 * Values are nanoseconds. Below HIST_SUB every value has its own bucket;
 * above, each power of two is split into HIST_HALF linear buckets, so a
 * recorded value is known to within 1/HIST_HALF (~1.6 %: two significant
 * digits). Values above the top bucket are clamped into it.
 *
 * Context: a histogram belongs to one thread while it records; merge after
 * the threads have been joined. No locking, no allocation after init.
 */
#ifndef FL_BENCH_HIST_H
#define FL_BENCH_HIST_H

#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS	7
#define HIST_SUB	(1u << HIST_SUB_BITS)		/* 128 exact buckets */
#define HIST_HALF	(HIST_SUB / 2)			/* 64 per octave above */
#define HIST_MAX_SHIFT	40				/* up to ~2^46 ns */
#define HIST_BUCKETS	(HIST_SUB + HIST_MAX_SHIFT * HIST_HALF)

struct hist {
	uint64_t count;
	uint64_t min, max;
	double sum;
	uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t ns);
void hist_merge(struct hist *dst, const struct hist *src);
/* q in [0, 1]; returns the middle of the bucket holding the q-quantile, 0 if empty */
uint64_t hist_quantile(const struct hist *h, double q);
/* "value_ns cumulative_fraction" lines, one per non-empty bucket (a CDF) */
int hist_write_cdf(const struct hist *h, FILE *f);

#endif
