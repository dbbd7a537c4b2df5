/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-tiers - one multi-threaded fault workload under each tier policy:
 * 4 application threads touch every page of a copy-pager region and a
 * (blocking) fill-pager region in one random order, first touch a read or
 * a write, and verify every byte. Under each policy the counters must show
 * that the policy's tier served the faults:
 *   ADAPTIVE  tier 1 for copy pages, tier 2 for blocking fills, no tier 3;
 *   SPF       tier 1 for copy pages, blocking fills straight to tier 3;
 *   REGION    every fault on tier 2;
 *   GLOBAL    every fault on tier 3, no tier 1 or 2 attempt.
 * No writer races here, so no abort other than the blocking hand-off.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COPY_LEN	(12u << 20)
#define FILL_LEN	(4u << 20)
#else
#define COPY_LEN	(48u << 20)
#define FILL_LEN	(16u << 20)
#endif
#define NPAGES		((COPY_LEN + FILL_LEN) / TPG)
#define NTHREADS	4

static uint8_t *copy_src, *fill_src;
static uint32_t *order;		/* a permutation of page numbers */

static int fill_from(void *arg, uint64_t offset, void *dst, size_t len)
{
	memcpy(dst, (const uint8_t *)arg + offset, len);
	return 0;
}

struct work {
	int t;
	uint8_t *copy, *fill;
	size_t bad;
};

static void *app_thread(void *arg)
{
	struct work *w = arg;

	for (size_t i = (size_t)w->t; i < NPAGES; i += NTHREADS) {
		size_t pg = order[i];
		volatile uint8_t *p;
		const uint8_t *want;

		if (pg < COPY_LEN / TPG) {
			p = w->copy + pg * TPG;
			want = copy_src + pg * TPG;
		} else {
			p = w->fill + (pg * TPG - COPY_LEN);
			want = fill_src + (pg * TPG - COPY_LEN);
		}
		/* first touch: a write (of the right byte) on every 3rd page */
		if (i % 3 == 0)
			p[pg % TPG] = want[pg % TPG];
		else
			(void)p[pg % TPG];
		w->bad += memcmp((const void *)p, want, TPG) != 0;
	}
	return NULL;
}

static const char *const names[] = { "ADAPTIVE", "SPF", "REGION", "GLOBAL" };

static void run_policy(enum fl_tier_policy pol)
{
	struct fl_runtime_opts ro;
	struct fl_region_opts o;
	struct fl_runtime *rt;
	struct fl_stats s;
	struct work w[NTHREADS];
	pthread_t th[NTHREADS];
	uint8_t *copy, *fill;
	size_t bad = 0;
	unsigned long long f, ok;

	fl_runtime_opts_init(&ro);
	ro.tiers = pol;
	rt = tap_runtime(&ro);
	fl_region_opts_init(&o);
	o.pager = FL_PAGER_COPY;
	o.src = copy_src;
	o.src_len = COPY_LEN;
	o.fault_around = TPG;	/* one page per fault: many faults */
	TAP_EQ(fl_region_map(rt, COPY_LEN, &o, (void **)&copy), 0);
	fl_region_opts_init(&o);
	o.pager = FL_PAGER_FILL;
	o.fill = fill_from;
	o.fill_arg = fill_src;
	o.fault_around = TPG;
	TAP_EQ(fl_region_map(rt, FILL_LEN, &o, (void **)&fill), 0);

	for (int t = 0; t < NTHREADS; t++) {
		w[t] = (struct work){ .t = t, .copy = copy, .fill = fill };
		pthread_create(&th[t], NULL, app_thread, &w[t]);
	}
	for (int t = 0; t < NTHREADS; t++) {
		pthread_join(th[t], NULL);
		bad += w[t].bad;
	}
	stats_quiet(rt, &s);
	tap_ok(!bad && s.pages_installed == NPAGES,
	       "%s: %u pages by %d threads in random order, every byte right (%zu bad pages), %llu installed",
	       names[pol], (unsigned)NPAGES, NTHREADS, bad, (unsigned long long)s.pages_installed);
	tap_diag("%s: faults %llu (dup %llu) spf %llu/%llu blocking %llu region %llu/%llu "
		 "global %llu/%llu", names[pol],
		 (unsigned long long)s.faults, (unsigned long long)s.faults_dup,
		 (unsigned long long)s.spf_ok, (unsigned long long)s.spf_attempt,
		 (unsigned long long)s.spf_abort_blocking,
		 (unsigned long long)s.region_ok, (unsigned long long)s.region_attempt,
		 (unsigned long long)s.global_ok, (unsigned long long)s.global_attempt);
	f = s.faults;
	switch (pol) {
	case FL_TIERS_ADAPTIVE:
		ok = s.spf_attempt == f && s.spf_ok + s.region_ok == f &&
		     s.region_ok == s.spf_abort_blocking && s.region_ok >= FILL_LEN / TPG &&
		     s.global_attempt == 0;
		break;
	case FL_TIERS_SPF:
		ok = s.spf_attempt == f && s.spf_ok + s.global_ok == f &&
		     s.global_ok == s.spf_abort_blocking && s.global_ok >= FILL_LEN / TPG &&
		     s.region_attempt == 0;
		break;
	case FL_TIERS_REGION:
		ok = s.region_ok == f && s.region_attempt == f &&
		     s.spf_attempt == 0 && s.global_attempt == 0;
		break;
	case FL_TIERS_GLOBAL:
	default:
		ok = s.global_ok == f && s.global_attempt == f &&
		     s.spf_attempt == 0 && s.region_attempt == 0;
		break;
	}
	tap_ok(ok && f >= NPAGES, "%s: the counters show the policy's tiers served all %llu faults",
	       names[pol], f);
	fl_runtime_destroy(rt);
}

int main(void)
{
	uint64_t x = 0x2545f4914f6cdd1dull;

	copy_src = malloc(COPY_LEN);
	fill_src = malloc(FILL_LEN);
	order = malloc(NPAGES * sizeof(*order));
	pat_fill(11, 0, copy_src, COPY_LEN);
	pat_fill(12, 0, fill_src, FILL_LEN);
	for (uint32_t i = 0; i < NPAGES; i++)
		order[i] = i;
	for (uint32_t i = NPAGES - 1; i > 0; i--) {
		uint32_t j, t;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		j = (uint32_t)((x * 0x2545f4914f6cdd1dull) % (i + 1));
		t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	tap_plan(16);
	for (int pol = FL_TIERS_ADAPTIVE; pol <= FL_TIERS_GLOBAL; pol++)
		run_policy((enum fl_tier_policy)pol);
	free(copy_src);
	free(fill_src);
	free(order);
	return tap_done();
}
