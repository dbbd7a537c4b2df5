/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "hist.h"

#include <string.h>

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

static unsigned int msb64(uint64_t v)
{
	return 63u - (unsigned int)__builtin_clzll(v);
}

static unsigned int bucket_of(uint64_t v)
{
	unsigned int shift;

	if (v < HIST_SUB)
		return (unsigned int)v;
	/* v >> shift lands in [HIST_HALF, HIST_SUB) */
	shift = msb64(v) - (HIST_SUB_BITS - 1);
	if (shift > HIST_MAX_SHIFT)
		return HIST_BUCKETS - 1;
	return HIST_SUB + (shift - 1) * HIST_HALF +
	       (unsigned int)((v >> shift) - HIST_HALF);
}

/* lowest value of bucket i, and its width */
static void bucket_range(unsigned int i, uint64_t *lo, uint64_t *width)
{
	unsigned int shift;

	if (i < HIST_SUB) {
		*lo = i;
		*width = 1;
		return;
	}
	shift = (i - HIST_SUB) / HIST_HALF + 1;
	*lo = ((uint64_t)HIST_HALF + (i - HIST_SUB) % HIST_HALF) << shift;
	*width = 1ull << shift;
}

void hist_record(struct hist *h, uint64_t ns)
{
	h->b[bucket_of(ns)]++;
	h->count++;
	h->sum += (double)ns;
	if (ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	unsigned int i;

	for (i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t want, seen = 0, lo, width, mid;
	unsigned int i;

	if (!h->count)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	want = (uint64_t)(q * (double)h->count + 0.5);
	if (want < 1)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			bucket_range(i, &lo, &width);
			mid = lo + width / 2;
			/* never report outside what was actually recorded */
			if (mid < h->min)
				mid = h->min;
			if (mid > h->max)
				mid = h->max;
			return mid;
		}
	}
	return h->max;
}

int hist_write_cdf(const struct hist *h, FILE *f)
{
	uint64_t seen = 0, lo, width;
	unsigned int i;

	if (!h->count)
		return 0;
	for (i = 0; i < HIST_BUCKETS; i++) {
		if (!h->b[i])
			continue;
		seen += h->b[i];
		bucket_range(i, &lo, &width);
		if (fprintf(f, "%llu %.6f\n", (unsigned long long)(lo + width - 1),
			    (double)seen / (double)h->count) < 0)
			return -1;
	}
	return 0;
}
