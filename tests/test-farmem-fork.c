/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-fork - fork() of a program whose far memory is mostly
 * evicted: the child must read exactly the parent's bytes (never the zeros
 * an evicted page's empty PTE would give it), while a parent thread keeps
 * writing; the parent's data stays right after the fork and eviction goes
 * on.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>

#include <string.h>

#include "tap.h"

#define PAGES	1024
#define BUDGET	64

static size_t pgsz;
static uint64_t *m;
static _Atomic bool stop;

static uint64_t word(size_t pg, size_t i)
{
	return ((uint64_t)pg << 20) ^ (i * 0x9e3779b97f4a7c15ull) ^ 0x5555;
}

static size_t verify(size_t from, size_t to)
{
	size_t bad = 0, w = pgsz / 8;

	for (size_t pg = from; pg < to; pg++)
		for (size_t i = 0; i < w; i += 16)
			bad += m[pg * w + i] != word(pg, i);
	return bad;
}

/* rewrites the same values over the second half: faults and evictions go on */
static void *writer(void *arg)
{
	size_t w = pgsz / 8;

	(void)arg;
	while (!stop)
		for (size_t pg = PAGES / 2; pg < PAGES && !stop; pg++)
			m[pg * w] = word(pg, 0);
	return NULL;
}

int main(int argc, char **argv)
{
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_stats st = { .size = sizeof(st) };
	struct fl_runtime *rt;
	struct fl_store *store;
	pthread_t th;
	size_t w;
	pid_t pid;
	int status = 0;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	w = pgsz / 8;
	tap_plan(5);
	rt = tap_far_runtime(BUDGET * pgsz, argc, argv, &store, &ft);
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);
	for (size_t pg = 0; pg < PAGES; pg++)
		for (size_t i = 0; i < w; i++)
			m[pg * w + i] = word(pg, i);
	for (int i = 0; i < 10000; i++) {
		fl_stats_get(rt, &st);
		if (st.far_evictions >= PAGES - 2 * BUDGET)
			break;
		usleep(1000);
	}
	tap_ok(st.far_evictions >= PAGES - 2 * BUDGET, "most pages evicted before fork (%llu)",
	       (unsigned long long)st.far_evictions);

	pthread_create(&th, NULL, writer, NULL);
	usleep(10000);
	pid = fork();
	if (pid == 0) {
		size_t bad = verify(0, PAGES);

		fl_runtime_destroy(rt);
		_exit(bad ? 1 : 0);
	}
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "the child read every byte of the parent's far memory (status %d)", status);
	stop = true;
	pthread_join(th, NULL);
	tap_ok(verify(0, PAGES) == 0, "the parent's bytes are right after the fork");
	fl_stats_get(rt, &st);
	tap_ok(st.fork_prepared_pages >= PAGES / 2, "evicted pages were read back before fork (%llu)",
	       (unsigned long long)st.fork_prepared_pages);
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	return tap_done();
}
