/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-ckpt-live - consistent live snapshots: writer threads keep changing
 * pages while the image is written; the image equals memory at the
 * snapshot instant, checked against a reference copy taken with the
 * writers stopped just before it. Full, then incremental.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "ckpt-util.h"
#include "tap.h"

#define NPAGES 2048
#define NWRITERS 2

static char *mem;
static size_t ps;
static atomic_int pause_req, paused, stop;

static void *writer(void *arg)
{
	uint64_t x = (uintptr_t)arg * 7919 + 1;

	while (!atomic_load(&stop)) {
		if (atomic_load(&pause_req)) {
			atomic_fetch_add(&paused, 1);
			while (atomic_load(&pause_req))
				sched_yield();
			atomic_fetch_sub(&paused, 1);
		}
		/* from the end backwards: ahead of the saver, which goes forwards */
		/* each writer its own pages: no race between the writers */
		for (size_t p = NPAGES; p-- > 0 && !atomic_load(&pause_req);) {
			if (p % NWRITERS != (uintptr_t)arg)
				continue;
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			mem[p * ps + (x >> 33) % ps] = (char)(x >> 56);
		}
	}
	return NULL;
}

struct saver {
	struct fl_ckpt *ck;
	const char *path;
	unsigned int flags;
	int ret;
};

static void *saver_main(void *arg)
{
	struct saver *s = arg;

	s->ret = fl_ckpt_save(s->ck, s->path, s->flags);
	return NULL;
}

static uint64_t collects(struct fl_runtime *rt)
{
	struct fl_stats st = { .size = sizeof(st) };

	fl_stats_get(rt, &st);
	return st.dirty_collects;
}

/* one live save with writers running; returns 0 if restore == reference */
static int live_round(struct fl_runtime *rt, struct fl_ckpt *ck, const char *path,
		      unsigned int flags, char *ref)
{
	static uint64_t want[NPAGES], got[NPAGES];
	struct saver s = { ck, path, flags | FL_CKPT_LIVE, 0 };
	uint64_t c0 = collects(rt);
	pthread_t t;
	char *m;
	int ret;

	/* stop the writers, copy the reference, start the snapshot, and let
	 * the writers go once its instant T (the collection) has passed */
	atomic_store(&pause_req, 1);
	while (atomic_load(&paused) < NWRITERS)
		sched_yield();
	memcpy(ref, mem, NPAGES * ps);
	pthread_create(&t, NULL, saver_main, &s);
	while (collects(rt) == c0)
		sched_yield();
	atomic_store(&pause_req, 0);
	pthread_join(t, NULL);
	if (s.ret) {
		tap_diag("save: %s", fl_strerror(s.ret));
		return s.ret;
	}
	m = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ret = fl_restore(path, m, NPAGES * ps);
	if (!ret) {
		hash_pages(ref, NPAGES, ps, want);
		hash_pages(m, NPAGES, ps, got);
		ret = memcmp(want, got, sizeof(want)) ? -EILSEQ : 0;
	}
	munmap(m, NPAGES * ps);
	return ret;
}

int main(void)
{
	struct fl_runtime *rt = tap_runtime(NULL);
	struct fl_region_opts ro;
	struct fl_ckpt *ck = NULL;
	struct fl_stats st = { .size = sizeof(st) };
	pthread_t w[NWRITERS];
	char *dir, p0[512], p1[512], p2[512], *ref;
	int ret;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	ret = fl_region_map(rt, NPAGES * ps, &ro, (void **)&mem);
	if (ret == -EOPNOTSUPP)
		tap_skip_all("kernel without uffd-wp");
	dir = ckpt_tmpdir();
	if (!dir)
		tap_skip_all("no writable temporary directory");
	ref = malloc(NPAGES * ps);
	tap_plan(5);
	snprintf(p0, sizeof(p0), "%s/live.0", dir);
	snprintf(p1, sizeof(p1), "%s/live.1", dir);
	snprintf(p2, sizeof(p2), "%s/live.2", dir);
	memset(mem, 1, NPAGES / 2 * ps);
	TAP_EQ(fl_ckpt_create(rt, mem, NPAGES * ps, FL_DIRTY_SYNC, &ck), 0);
	for (int i = 0; i < NWRITERS; i++)
		pthread_create(&w[i], NULL, writer, (void *)(uintptr_t)i);
	TAP_EQ(live_round(rt, ck, p0, FL_CKPT_FULL, ref), 0);
	TAP_EQ(live_round(rt, ck, p1, 0, ref), 0);
	TAP_EQ(live_round(rt, ck, p2, 0, ref), 0);
	atomic_store(&stop, 1);
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(w[i], NULL);
	fl_stats_get(rt, &st);
	tap_ok(st.wp_callbacks > 0, "writers hit protected pages during the snapshots "
	       "(%llu callbacks, %llu copied before a write)",
	       (unsigned long long)st.wp_callbacks, (unsigned long long)st.ckpt_live_copies);
	fl_ckpt_destroy(ck);
	tap_diag_resolve(rt);
	fl_runtime_destroy(rt);
	free(ref);
	ckpt_rmdir(dir);
	return tap_done();
}
