/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-fork - fork() of a program with managed regions (copy, fill and
 * zero pagers), partly touched and partly modified by the parent. The
 * child reads every byte and must see exactly the parent's data: never
 * zeros for pages the parent had not produced yet. In the child every
 * fl_region_*() call returns -ENODEV and fl_runtime_destroy() only frees
 * memory. The child's exit code reports what it found (one bit per
 * check). The parent keeps working after the fork: new faults, a new
 * region, unregister. fork() is called while another thread is faulting.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "common.h"

#define NPG	64
#define BIGPG	1024

static struct fl_runtime *rt;
static uint8_t *csrc, *cwant, *fwant, *zwant;
static uint8_t *C, *F, *Z, *G;

static int fill_pat(void *arg, uint64_t offset, void *dst, size_t len)
{
	pat_fill((uintptr_t)arg, offset, dst, len);
	return 0;
}

static void *map_region(enum fl_pager pager, size_t npages, uint64_t seed)
{
	struct fl_region_opts o;
	void *p = NULL;

	fl_region_opts_init(&o);
	o.pager = pager;
	if (pager == FL_PAGER_COPY) {
		o.src = csrc;
		o.src_len = NPG * TPG - 1000;	/* the last page partly zeros */
	} else if (pager == FL_PAGER_FILL) {
		o.fill = fill_pat;
		o.fill_arg = (void *)(uintptr_t)seed;
	}
	if (fl_region_map(rt, npages * TPG, &o, &p)) {
		printf("Bail out! fl_region_map failed\n");
		exit(1);
	}
	return p;
}

/* a thread that keeps faulting on G while the main thread forks */
static atomic_bool stop;
static atomic_size_t g_done;

static void *toucher(void *arg)
{
	size_t bad = 0;

	(void)arg;
	for (size_t pg = 0; pg < BIGPG && !atomic_load(&stop); pg++) {
		bad += pat_bad(43, pg * TPG, G + pg * TPG, 64);
		atomic_store(&g_done, pg + 1);
	}
	return (void *)bad;
}

enum { CH_COPY = 1, CH_FILL = 2, CH_ZERO = 4, CH_BIG = 8, CH_ENODEV = 16, CH_DESTROY = 32 };

static int child(void)
{
	int rc = 0;
	void *p = NULL;

	if (memcmp(C, cwant, NPG * TPG))
		rc |= CH_COPY;
	if (memcmp(F, fwant, NPG * TPG))
		rc |= CH_FILL;
	if (memcmp(Z, zwant, NPG * TPG))
		rc |= CH_ZERO;
	if (pat_bad(43, 0, G, BIGPG * TPG))
		rc |= CH_BIG;
	if (fl_region_map(rt, TPG, NULL, &p) != -ENODEV ||
	    fl_region_register(rt, C, TPG, NULL) != -ENODEV ||
	    fl_region_unregister(rt, C) != -ENODEV ||
	    fl_region_resize(rt, C, TPG) != -ENODEV)
		rc |= CH_ENODEV;
	/* the child's copies are plain memory: writable, and destroy only frees */
	C[0] ^= 1;
	fl_runtime_destroy(rt);
	if (fl_region_count(NULL) != -EINVAL)
		rc |= CH_DESTROY;
	return rc;
}

int main(void)
{
	struct fl_stats a, b;
	pthread_t th;
	pid_t pid;
	int status = -1;
	void *tbad;
	uint8_t *n;
	size_t bad;

	rt = tap_runtime(NULL);
	tap_plan(10);
	csrc = malloc(NPG * TPG);
	cwant = calloc(NPG, TPG);
	fwant = malloc(NPG * TPG);
	zwant = calloc(NPG, TPG);
	pat_fill(41, 0, csrc, NPG * TPG);
	memcpy(cwant, csrc, NPG * TPG - 1000);
	pat_fill(42, 0, fwant, NPG * TPG);

	C = map_region(FL_PAGER_COPY, NPG, 0);
	F = map_region(FL_PAGER_FILL, NPG, 42);
	Z = map_region(FL_PAGER_ZERO, NPG, 0);
	G = map_region(FL_PAGER_FILL, BIGPG, 43);

	/* the parent touches some pages and modifies a few */
	for (size_t pg = 0; pg < 10; pg++)
		(void)((volatile uint8_t *)C)[pg * TPG];
	memset(C + 3 * TPG + 10, 0xc3, 300);
	memset(cwant + 3 * TPG + 10, 0xc3, 300);
	C[40 * TPG] = 0x40;	/* a write as the first touch */
	cwant[40 * TPG] = 0x40;
	for (size_t pg = 5; pg < 8; pg++)
		(void)((volatile uint8_t *)F)[pg * TPG];
	memset(F + 6 * TPG, 0xf6, 100);
	memset(fwant + 6 * TPG, 0xf6, 100);
	Z[2 * TPG + 5] = 0x25;
	zwant[2 * TPG + 5] = 0x25;

	stats_quiet(rt, &a);
	pthread_create(&th, NULL, toucher, NULL);
	while (atomic_load(&g_done) < 16)
		ms_sleep(1);
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(child());
	atomic_store(&stop, true);
	pthread_join(th, &tbad);
	tap_ok(pid > 0, "fork() with %d managed regions, another thread faulting", fl_region_count(rt));
	if (pid > 0)
		waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status), "the child exited normally (status 0x%x)", status);
	status = WIFEXITED(status) ? WEXITSTATUS(status) : 0xff;
	tap_ok(!(status & (CH_COPY | CH_FILL)),
	       "child: copy and fill regions hold exactly the parent's data, unproduced pages included (copy %s, fill %s)",
	       status & CH_COPY ? "WRONG" : "ok", status & CH_FILL ? "WRONG" : "ok");
	tap_ok(!(status & (CH_ZERO | CH_BIG)),
	       "child: zero region as the parent wrote it; the region being faulted during fork complete (zero %s, big %s)",
	       status & CH_ZERO ? "WRONG" : "ok", status & CH_BIG ? "WRONG" : "ok");
	tap_ok(!(status & CH_ENODEV), "child: fl_region_map/register/unregister/resize return -ENODEV");
	tap_ok(!(status & CH_DESTROY), "child: fl_runtime_destroy() returns and the child goes on");

	/* the parent goes on */
	stats_quiet(rt, &b);
	tap_diag("fork_prepared_pages %llu", ST_DELTA(a, b, fork_prepared_pages));
	bad = (size_t)tbad + memcmp(C, cwant, NPG * TPG) + memcmp(F, fwant, NPG * TPG) +
	      memcmp(Z, zwant, NPG * TPG) + pat_bad(43, 0, G, BIGPG * TPG);
	tap_ok(!bad, "parent after fork: every region still right (the faulting thread saw no bad byte)");
	n = map_region(FL_PAGER_FILL, NPG, 44);
	bad = pat_bad(44, 0, n, NPG * TPG);
	tap_ok(!bad, "parent after fork: a new region faults normally (%zu bad)", bad);
	TAP_EQ(fl_region_unregister(rt, n), 0);
	TAP_EQ(fl_region_count(rt), 4);
	fl_runtime_destroy(rt);
	free(csrc);
	free(cwant);
	free(fwant);
	free(zwant);
	return tap_done();
}
