/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-rescue - a page whose write-back failed and that could not be
 * moved back where it was is kept in runtime memory (evict.c far_put_back,
 * rescue.c), never lost.
 *
 * 1. The race itself, no hooks: one handler thread, asleep on a page of the
 *    batch being evicted, and an event nobody reads (a MADV_DONTNEED); the
 *    store then fails the write. The MOVE back fails EAGAIN for as long as
 *    the evictor waits. Before the rescue, the evictor retried for 100 ms
 *    per page under the region lock and then gave the page up: the
 *    faulting thread never got it back (it looped as a duplicate fault).
 * 2. With the put-back forced to fail (FL_FAIL_PUT_BACK): rescued pages
 *    read back right, a MADV_DONTNEED on them reads zeros and drops the
 *    copies, unregister reads them back into the program's own mapping,
 *    unregister_discard and runtime destroy free them (ASan: no leak).
 * MOVE path only: without UFFDIO_MOVE the page never leaves its mapping.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common.h"
#include "core/testhooks.h"

#define PAGES	512
#define BUDGET	64
#define SMALL	16		/* pages of the second region (the zapped one) */

static size_t pgsz;
static char *backing;			/* the store's bytes, by store offset */
static size_t backing_len;
static _Atomic int fail_write;
static _Atomic int hold;		/* writes wait while set */
static _Atomic uint64_t held_off;	/* first held write's offset + 1 */

static int st_read(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	if (off + len > backing_len)
		return -EIO;
	memcpy(buf, backing + off, len);
	return 0;
}

static int st_write(void *arg, uint64_t off, const void *buf, size_t len)
{
	uint64_t zero = 0;
	int err;

	(void)arg;
	if (atomic_load(&hold)) {
		atomic_compare_exchange_strong(&held_off, &zero, off + 1);
		while (atomic_load(&hold))
			usleep(200);
	}
	err = fail_write;	/* read once: see test-farmem-errors */
	if (err)
		return err;
	if (off + len > backing_len)
		return -ENOSPC;
	memcpy(backing + off, buf, len);
	return 0;
}

static uint8_t byte_of(unsigned int seed, size_t pg, size_t i)
{
	return (uint8_t)(pg * 31 + i * 7 + seed * 13 + 1);
}

static _Atomic size_t pages_filled;	/* by the last fill(), so far */

static void fill(char *m, size_t pages, unsigned int seed)
{
	atomic_store(&pages_filled, 0);
	for (size_t pg = 0; pg < pages; pg++) {
		for (size_t i = 0; i < pgsz; i += 64)
			m[pg * pgsz + i] = (char)byte_of(seed, pg, i);
		atomic_store(&pages_filled, pg + 1);
	}
}

/* wrong bytes of pages [lo, hi); @seed 0 with zero set: expect zeros */
static size_t verify(const char *m, size_t lo, size_t hi, unsigned int seed, bool zero)
{
	size_t bad = 0;

	for (size_t pg = lo; pg < hi; pg++)
		for (size_t i = 0; i < pgsz; i += 64) {
			uint8_t got = (uint8_t)((volatile const char *)m)[pg * pgsz + i];
			uint8_t want = zero ? 0 : byte_of(seed, pg, i);

			if (got != want && !bad++)
				tap_diag("page %zu byte %zu: %u, want %u", pg, i, got, want);
		}
	return bad;
}

struct reader {
	const char *m;
	size_t pg;
	size_t bad;
	_Atomic bool done;
};

static void *read_page(void *arg)
{
	struct reader *r = arg;

	r->bad = verify(r->m, r->pg, r->pg + 1, 1, false);
	atomic_store(&r->done, true);
	return NULL;
}

static void *zap_page(void *arg)
{
	madvise(arg, pgsz, MADV_DONTNEED);
	return NULL;
}

/* wait up to @ms for @flag; true if it was set */
static bool wait_flag(_Atomic bool *flag, unsigned int ms)
{
	for (unsigned int i = 0; i < ms && !atomic_load(flag); i++)
		ms_sleep(1);
	return atomic_load(flag);
}

static void *fill_region(void *arg)
{
	fill(arg, PAGES, 1);
	return NULL;
}

/*
 * Part 1. Returns false (and says why) if the interleaving was not reached:
 * the caller tries again.
 */
static bool race_once(struct fl_runtime *rt, char *m, char *q, bool *lost)
{
	struct reader rd = { .m = m };
	pthread_t filler, reader, zapper;
	struct fl_stats st, st0;
	uint64_t off;
	bool whole;

	*lost = false;
	stats_now(rt, &st0);
	atomic_store(&held_off, 0);
	atomic_store(&hold, 1);
	fail_write = -EIO;
	/*
	 * Over budget: the evictor starts a batch. From a thread of its own:
	 * the batch may hold the page the filler is writing, and then the
	 * filler waits for the held write like the reader below (and the
	 * only handler sleeps on its page instead: the same race).
	 */
	pthread_create(&filler, NULL, fill_region, m);
	WAIT_FOR(rt, st, atomic_load(&held_off) != 0);
	off = atomic_load(&held_off);
	if (!off) {
		atomic_store(&hold, 0);
		pthread_join(filler, NULL);
		tap_diag("no write-back started");
		return false;
	}
	/* the evictor waits in our write with a batch moved out (EVICTING) */
	rd.pg = (size_t)(off - 1) / pgsz;	/* the first region's extent starts at 0 */
	/* the filler may be stuck inside that very page: then the reader
	 * sees it half written, and only the bytes after the join count */
	whole = rd.pg < atomic_load(&pages_filled);
	stats_now(rt, &st0);
	pthread_create(&reader, NULL, read_page, &rd);
	/* the only handler takes the reader's fault and sleeps on the word */
	WAIT_FOR(rt, st, st.faults > st0.faults);
	ms_sleep(50);
	/* an event it cannot read while it sleeps: MOVE now fails EAGAIN */
	pthread_create(&zapper, NULL, zap_page, q);
	ms_sleep(50);
	atomic_store(&hold, 0);		/* the write fails: put the batch back */

	if (!wait_flag(&rd.done, 20000)) {
		/* the page is gone: the thread can never finish. Say so and
		 * leave it (the process exits with the verdict) */
		*lost = true;
		return true;
	}
	pthread_join(filler, NULL);
	pthread_join(reader, NULL);
	pthread_join(zapper, NULL);
	fail_write = 0;
	stats_now(rt, &st);
	if (!rd.bad && !st.far_rescues) {
		tap_diag("the put-back did not fail (reader page %zu): no rescue", rd.pg);
		return false;
	}
	if (!whole)
		rd.bad = verify(m, rd.pg, rd.pg + 1, 1, false);
	/* before the rescue: zeros here (the frame was emptied) */
	tap_ok(rd.bad == 0, "the page the handler slept on read back right (%zu bad)", rd.bad);
	return true;
}

static void part1(void)
{
	/* its read is a memcpy: signal-safe, so in-thread runs may use it too */
	struct fl_store_ops ops = { .size = sizeof(ops), .read = st_read, .write = st_write,
				     .flags = FL_STORE_READ_SIGNAL_SAFE };
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st;
	char *m, *q;
	bool lost = false, reached = false;

	TAP_EQ(fl_store_callbacks_create(&ops, NULL, &store), 0);
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = BUDGET * pgsz;
	o.handlers = 1;
	/* the interleaving needs the handler thread asleep on the page */
	o.resolve = FL_RESOLVE_HANDLER;
	rt = tap_runtime(&o);
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);
	TAP_EQ(fl_region_map(rt, SMALL * pgsz, NULL, (void **)&q), 0);
	memset(q, 1, SMALL * pgsz);

	for (int attempt = 0; attempt < 3 && !reached && !lost; attempt++) {
		reached = race_once(rt, m, q, &lost);
		if (!reached)
			ms_sleep(100);
	}
	if (lost) {
		tap_ok(0, "the page the handler slept on came back (thread still blocked after 20 s)");
		printf("Bail out! a page was lost: the evictor gave it up\n");
		exit(1);
	}
	if (!reached) {
		tap_ok(0, "the interleaving was reached (3 attempts)");
		fail_write = 0;
		atomic_store(&hold, 0);
	}
	stats_now(rt, &st);
	tap_ok(st.far_rescues > 0, "rescued, not lost: %llu pages (%llu still in runtime memory)",
	       (unsigned long long)st.far_rescues, (unsigned long long)st.far_rescued_pages);
	tap_ok(verify(m, 0, PAGES, 1, false) == 0, "every byte of the region read back right");
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
}

static void part2(void)
{
	/* its read is a memcpy: signal-safe, so in-thread runs may use it too */
	struct fl_store_ops ops = { .size = sizeof(ops), .read = st_read, .write = st_write,
				     .flags = FL_STORE_READ_SIGNAL_SAFE };
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st;
	char *m, *own;

	TAP_EQ(fl_store_callbacks_create(&ops, NULL, &store), 0);
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = BUDGET * pgsz;
	rt = tap_runtime(&o);
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);

	/* every write fails, and so does every put-back */
	fail_write = -EIO;
	atomic_store(&fl_test_fail_at[FL_FAIL_PUT_BACK], -1);
	fill(m, PAGES, 2);
	WAIT_FOR(rt, st, st.far_rescued_pages >= PAGES / 2);
	tap_ok(st.far_rescued_pages >= PAGES / 2 && st.far_evictions == 0,
	       "put-back fails: %llu pages rescued, %llu evicted",
	       (unsigned long long)st.far_rescued_pages, (unsigned long long)st.far_evictions);
	tap_ok(pages_out(m, PAGES) >= PAGES / 2, "they are out of the mapping (%zu pages)",
	       pages_out(m, PAGES));
	tap_ok(st.far_budget_overshoot > 0 || st.far_resident_pages > BUDGET,
	       "still counted as resident: %llu pages, overshoot reported %llu times",
	       (unsigned long long)st.far_resident_pages,
	       (unsigned long long)st.far_budget_overshoot);
	tap_ok(verify(m, 0, PAGES, 2, false) == 0, "every rescued byte reads back right");

	/* the program zaps rescued pages: zeros, and the copies go */
	WAIT_FOR(rt, st, pages_out(m, PAGES / 2) >= PAGES / 4);
	TAP_EQ(madvise(m, PAGES / 2 * pgsz, MADV_DONTNEED), 0);
	tap_ok(verify(m, 0, PAGES / 2, 0, true) == 0, "zapped rescued pages read zeros");
	tap_ok(verify(m, PAGES / 2, PAGES, 2, false) == 0, "the others still read right");

	/* the store recovers: the rescued pages come back, then evict as usual */
	atomic_store(&fl_test_fail_at[FL_FAIL_PUT_BACK], 0);
	fail_write = 0;
	tap_ok(verify(m, PAGES / 2, PAGES, 2, false) == 0, "store back: every byte right");
	WAIT_FOR(rt, st, st.far_evictions >= PAGES / 4);
	tap_ok(verify(m, PAGES / 2, PAGES, 2, false) == 0 && st.far_evictions >= PAGES / 4,
	       "evicted and read back from the store: right (%llu evictions)",
	       (unsigned long long)st.far_evictions);

	/* unregister_discard drops rescued copies with the region */
	fail_write = -EIO;
	atomic_store(&fl_test_fail_at[FL_FAIL_PUT_BACK], -1);
	fill(m, PAGES, 3);
	WAIT_FOR(rt, st, st.far_rescued_pages >= PAGES / 4);
	TAP_EQ(fl_region_unregister_discard(rt, m), 0);
	stats_now(rt, &st);
	TAP_EQ(st.far_rescued_pages, 0);

	/* unregister reads them back into the program's own mapping */
	own = mmap(NULL, PAGES * pgsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TAP_EQ(fl_region_register(rt, own, PAGES * pgsz, NULL), 0);
	fill(own, PAGES, 4);
	WAIT_FOR(rt, st, st.far_rescued_pages >= PAGES / 4);
	tap_ok(st.far_rescued_pages >= PAGES / 4, "own mapping: %llu pages rescued",
	       (unsigned long long)st.far_rescued_pages);
	if (st.far_rescued_pages < PAGES / 4)
		fl_stats_print(rt, stdout, FL_STATS_TEXT);
	TAP_EQ(fl_region_unregister(rt, own), 0);
	stats_now(rt, &st);
	tap_ok(st.far_rescued_pages == 0 && verify(own, 0, PAGES, 4, false) == 0,
	       "unregister read every rescued page back (%llu copies left)",
	       (unsigned long long)st.far_rescued_pages);
	munmap(own, PAGES * pgsz);

	/* destroy with copies outstanding: freed (ASan reports a leak otherwise) */
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);
	fill(m, PAGES, 5);
	WAIT_FOR(rt, st, st.far_rescued_pages >= PAGES / 4);
	tap_ok(st.far_rescued_pages > 0, "destroy with %llu rescued pages",
	       (unsigned long long)st.far_rescued_pages);
	fl_runtime_destroy(rt);
	atomic_store(&fl_test_fail_at[FL_FAIL_PUT_BACK], 0);
	fail_write = 0;
	fl_store_destroy(store);
}

int main(void)
{
	struct fl_runtime_opts o;
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_runtime *rt;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	/* each region's store extent is 1 GiB aligned: the third region of
	 * part 2 starts at 2 GiB. Untouched, the mapping costs nothing */
	backing_len = ((size_t)4 << 30) + 2 * PAGES * pgsz;
	backing = mmap(NULL, backing_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	tap_plan(25);
	fl_runtime_opts_init(&o);
	rt = tap_runtime(&o);
	fl_features(rt, &ft);
	fl_runtime_destroy(rt);
	if (!ft.move)
		tap_skip_all("no UFFDIO_MOVE: an evicted page never leaves its mapping, "
			     "so it is never put back");
	part1();
	part2();
	munmap(backing, backing_len);
	return tap_done();
}
