/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-numa - NUMA placement (runtime/core/numa.c), on whatever nodes this
 * machine has (usually one):
 *
 *  a. the real probe: fl_features reports libnuma's node count and says
 *     whether placement is on, the report has a "numa:" line saying why;
 *     two threads fault a copy region in, every byte is right and every
 *     page sits on a node the move_pages(2) query accepts (node 0 on a
 *     one-node machine);
 *  b. two simulated nodes (FL_TEST_HOOKS: every handler "on node 1", one
 *     faulting thread "on node 0", the other "on node 1"), so the remote
 *     and the local path both run, interleaved: the tids the runtime asks
 *     about are exactly the faulting threads' gettid() (THREAD_ID's ptid),
 *     the handlers switch their policy to MPOL_PREFERRED(0) for the remote
 *     thread (a real set_mempolicy, which node 0 accepts) and back to the
 *     default for the local one, only the remote thread's faults count as
 *     remote fills, the pages land on node 0, every byte right.
 */
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "core/internal.h"
#include "core/testhooks.h"

#define PAGES 512u
#define THREADS 2

static unsigned char src[PAGES * TPG];

/* ---- the tid hook: which threads the runtime asked about ---- */

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t seen[64];
static unsigned int nseen;
static _Atomic uint32_t remote_tid;

static int hook_tid_node(uint32_t tid)
{
	pthread_mutex_lock(&seen_lock);
	bool dup = false;

	for (unsigned int i = 0; i < nseen; i++)
		dup |= seen[i] == tid;
	if (!dup && nseen < 64)
		seen[nseen++] = tid;
	pthread_mutex_unlock(&seen_lock);
	/* toucher 0 is "on node 0" (remote to the handlers), the rest on 1 */
	return tid == atomic_load(&remote_tid) ? 0 : 1;
}

static bool was_seen(uint32_t tid)
{
	bool r = false;

	pthread_mutex_lock(&seen_lock);
	for (unsigned int i = 0; i < nseen; i++)
		r |= seen[i] == tid;
	pthread_mutex_unlock(&seen_lock);
	return r;
}

/* ---- faulting threads: each touches every other page, its own half ---- */

struct toucher {
	unsigned char *base;
	unsigned int idx;
	uint32_t tid;
	unsigned long sum;
};

static void *touch_main(void *arg)
{
	struct toucher *t = arg;

	t->tid = (uint32_t)gettid();
	if (t->idx == 0)
		atomic_store(&remote_tid, t->tid);
	for (unsigned int pg = t->idx; pg < PAGES; pg += THREADS)
		t->sum += t->base[(size_t)pg * TPG + pg % TPG];
	return NULL;
}

static void touch_all(unsigned char *base, struct toucher *t)
{
	pthread_t th[THREADS];

	for (unsigned int i = 0; i < THREADS; i++) {
		t[i] = (struct toucher){ .base = base, .idx = i };
		pthread_create(&th[i], NULL, touch_main, &t[i]);
	}
	for (unsigned int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
}

/* pages on node @want (-1: any valid node); returns the count that are not */
static unsigned int pages_off_node(unsigned char *base, int want)
{
	static void *pages[PAGES];
	static int status[PAGES];
	unsigned int bad = 0;

	for (unsigned int i = 0; i < PAGES; i++)
		pages[i] = base + (size_t)i * TPG;
	if (move_pages(0, PAGES, pages, NULL, status, 0) != 0)
		return PAGES;
	for (unsigned int i = 0; i < PAGES; i++)
		bad += want < 0 ? status[i] < 0 : status[i] != want;
	return bad;
}

static unsigned char *copy_region(struct fl_runtime *rt)
{
	struct fl_region_opts ro;
	void *p = NULL;

	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_COPY;
	ro.src = src;
	ro.src_len = sizeof(src);
	ro.fault_around = TPG;	/* off: every page is a fault of its toucher */
	if (fl_region_map(rt, sizeof(src), &ro, &p))
		return NULL;
	return p;
}

int main(void)
{
	/* placement is what the handler threads do: the faulting thread's
	 * own installs (in-thread regions) follow its policy by themselves */
	struct fl_runtime_opts handler_opts;
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_stats st = { .size = sizeof(st) };
	struct toucher t[THREADS];
	struct fl_runtime *rt;
	unsigned char *m;
	char report[8192] = "";
	FILE *f;
	int real_nodes = numa_available() < 0 ? 0 : numa_num_configured_nodes();

	fl_runtime_opts_init(&handler_opts);
	handler_opts.resolve = FL_RESOLVE_HANDLER;

	tap_plan(13);
	pat_fill(7, 0, src, sizeof(src));

	/* a. the real probe */
	rt = tap_runtime(&handler_opts);
	TAP_EQ(fl_features(rt, &ft), 0);
	f = fmemopen(report, sizeof(report) - 1, "w");
	fl_features_print(rt, f);
	fclose(f);
	tap_ok(ft.numa_nodes == real_nodes &&
	       ft.numa_placement == (real_nodes > 1 && ft.thread_id),
	       "features: %d node(s) (libnuma says %d), placement %s",
	       ft.numa_nodes, real_nodes, ft.numa_placement ? "on" : "off");
	tap_ok(strstr(report, "\nnuma: ") &&
	       (real_nodes != 1 || strstr(report, "placement off (one node)")),
	       "report: %.*s", (int)strcspn(strstr(report, "\nnuma: ") ?
					     strstr(report, "\nnuma: ") + 1 : "", "\n"),
	       strstr(report, "\nnuma: ") ? strstr(report, "\nnuma: ") + 1 : "");
	m = copy_region(rt);
	if (!m) {
		printf("Bail out! fl_region_map failed\n");
		return 1;
	}
	touch_all(m, t);
	tap_ok(!pat_bad(7, 0, m, sizeof(src)), "real probe: every byte right");
	tap_ok(!pages_off_node(m, real_nodes == 1 ? 0 : -1),
	       "real probe: every page on %s", real_nodes == 1 ? "node 0" : "a valid node");
	fl_runtime_destroy(rt);

	/* b. two simulated nodes: handlers on 1, faulting threads on 0 */
	atomic_store(&fl_test_numa_nodes, 2);
	atomic_store(&fl_test_numa_home, 1);
	atomic_store(&fl_test_numa_tid_node, hook_tid_node);
	rt = tap_runtime(&handler_opts);
	TAP_EQ(fl_features(rt, &ft), 0);
	if (!ft.thread_id) {
		for (int i = 0; i < 7; i++)
			tap_skip("no UFFD_FEATURE_THREAD_ID: no per-thread placement");
		fl_runtime_destroy(rt);
		return tap_done();
	}
	tap_ok(ft.numa_nodes == 2 && ft.numa_placement, "simulated: 2 nodes, placement on");
	m = copy_region(rt);
	if (!m) {
		printf("Bail out! fl_region_map failed\n");
		return 1;
	}
	touch_all(m, t);
	tap_ok(!pat_bad(7, 0, m, sizeof(src)), "simulated: every byte right");
	tap_ok(was_seen(t[0].tid) && was_seen(t[1].tid),
	       "the fault's ptid is the faulting thread's gettid (%u, %u)", t[0].tid, t[1].tid);
	{
		bool stray = false;

		pthread_mutex_lock(&seen_lock);
		for (unsigned int i = 0; i < nseen; i++)
			stray |= seen[i] != t[0].tid && seen[i] != t[1].tid &&
				 seen[i] != (uint32_t)gettid();
		pthread_mutex_unlock(&seen_lock);
		tap_ok(!stray, "no tid but the faulting threads' was looked up (%u seen)", nseen);
	}
	stats_quiet(rt, &st);
	TAP_EQ(fl_stats_get(rt, &st), 0);
	tap_ok(st.numa_remote_fills > 0 && st.numa_remote_fills < st.faults &&
	       st.numa_tid_samples > 0 &&
	       /* at most one switch into and one back out per remote fault */
	       st.numa_policy_sets > 0 && st.numa_policy_sets <= 2 * st.numa_remote_fills &&
	       st.ioctl_errors == 0,
	       "remote path: %llu of %llu faults remote, %llu tid samples, %llu policy sets, %llu errors",
	       (unsigned long long)st.numa_remote_fills, (unsigned long long)st.faults,
	       (unsigned long long)st.numa_tid_samples,
	       (unsigned long long)st.numa_policy_sets,
	       (unsigned long long)st.ioctl_errors);
	tap_ok(!pages_off_node(m, 0), "simulated: every page on node 0 (the threads' node)");
	fl_runtime_destroy(rt);
	atomic_store(&fl_test_numa_tid_node, NULL);
	atomic_store(&fl_test_numa_nodes, 0);
	return tap_done();
}
