/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-errors - a failing store never costs a byte: write errors
 * (EIO, ENOSPC) keep pages resident; a read error or a short read makes the
 * access fail with SIGBUS (UFFDIO_POISON), never a zero page; slow I/O is
 * only slow.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common.h"

#define PAGES	512
#define BUDGET	64

static size_t pgsz;
static char *backing;			/* the store's bytes */
static _Atomic int fail_write, fail_read, short_read, slow_us;

/*
 * The store callbacks read each knob once. Race (test bug, fixed): with
 * "if (fail_write) return fail_write;" the main thread's "fail_write = 0"
 * could land between the two loads, and the write returned 0 without
 * copying: the runtime rightly trusted a store that had said yes, dropped
 * the page as written back, and the verify read back its slot's zeros
 * (~1 run in 150 under TSan with load, the ENOSPC -> recovered step).
 */
static int st_read(void *arg, uint64_t off, void *buf, size_t len)
{
	int err = fail_read, us = slow_us;

	if (err)
		return err;
	if (us)
		usleep((useconds_t)us);
	memcpy(buf, backing + off % (PAGES * pgsz), len);
	return short_read ? (int)(len / 2) : 0;	/* positive: a short read */
}

static int st_write(void *arg, uint64_t off, const void *buf, size_t len)
{
	int err = fail_write, us = slow_us;

	if (err)
		return err;
	if (us)
		usleep((useconds_t)us);
	/* each region has its own 1 GiB-aligned extent; one region at a time */
	memcpy(backing + off % (PAGES * pgsz), buf, len);
	return 0;
}

static uint8_t byte_of(size_t pg, size_t i)
{
	return (uint8_t)(pg * 31 + i * 7 + 1);
}

static void fill(char *m)
{
	for (size_t pg = 0; pg < PAGES; pg++)
		for (size_t i = 0; i < pgsz; i += 64)
			m[pg * pgsz + i] = (char)byte_of(pg, i);
}

/* wrong bytes; the first wrong one is named in a diagnostic */
static size_t verify(const char *m)
{
	size_t bad = 0;

	for (size_t pg = 0; pg < PAGES; pg++)
		for (size_t i = 0; i < pgsz; i += 64) {
			uint8_t got = (uint8_t)m[pg * pgsz + i];

			if (got != byte_of(pg, i) && !bad++)
				tap_diag("page %zu byte %zu: %u, want %u", pg, i, got,
					 byte_of(pg, i));
		}
	return bad;
}

static sigjmp_buf jb;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(jb, 1);
}

/* read each page's first byte; count SIGBUS and wrong bytes */
static void probe(const char *m, size_t *sigbus, size_t *wrong)
{
	volatile size_t pg;

	*sigbus = *wrong = 0;
	for (pg = 0; pg < PAGES; pg++) {
		if (sigsetjmp(jb, 1)) {
			(*sigbus)++;
			continue;
		}
		if ((uint8_t)((volatile const char *)m)[pg * pgsz] != byte_of(pg, 0))
			(*wrong)++;
	}
}

int main(int argc, char **argv)
{
	/* its read is a memcpy: signal-safe, so in-thread runs may use it too */
	struct fl_store_ops ops = { .size = sizeof(ops), .read = st_read, .write = st_write,
				     .flags = FL_STORE_READ_SIGNAL_SAFE };
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st;
	struct sigaction sa;
	size_t sigbus, wrong;
	char *m;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(13);
	backing = calloc(PAGES, pgsz);
	TAP_EQ(fl_store_callbacks_create(&ops, NULL, &store), 0);
	rt = tap_far_runtime_on(store, BUDGET * pgsz, argc, argv, &ft);
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);

	/* 1. every write fails with EIO: nothing is evicted, nothing lost */
	fail_write = -EIO;
	fill(m);
	WAIT_FOR(rt, st, st.far_store_errors >= 8);
	tap_ok(st.far_store_errors >= 8 && st.far_evictions == 0,
	       "EIO on write: %llu store errors, %llu evictions",
	       (unsigned long long)st.far_store_errors, (unsigned long long)st.far_evictions);
	tap_ok(verify(m) == 0, "EIO on write: every byte still there");

	/* 2. ENOSPC, then the store recovers: eviction resumes */
	fail_write = -ENOSPC;
	stats_now(rt, &st);
	{
		uint64_t errs = st.far_store_errors;

		WAIT_FOR(rt, st, st.far_store_errors > errs && st.far_budget_overshoot > 0);
	}
	tap_ok(verify(m) == 0, "ENOSPC on write: every byte still there");
	tap_ok(st.far_budget_overshoot > 0, "the overshoot is reported (%llu rounds)",
	       (unsigned long long)st.far_budget_overshoot);
	fail_write = 0;
	WAIT_FOR(rt, st, st.far_evictions >= PAGES - 2 * BUDGET);
	tap_ok(st.far_evictions >= PAGES - 2 * BUDGET,
	       "store recovered: %llu pages evicted", (unsigned long long)st.far_evictions);

	/* 3. slow I/O: only slower */
	slow_us = 200;
	tap_ok(verify(m) == 0, "slow store: every byte read back right");
	slow_us = 0;
	WAIT_FOR(rt, st, st.far_evictions >= 2 * (PAGES - 2 * BUDGET));
	/*
	 * The count above is cumulative: it can be reached while the verify
	 * just read everything back, and on the non-MOVE path an evicted page
	 * stays present (write-protected, readable) until its zap lands. What
	 * the next step needs is pages really out of memory: ask mincore(2).
	 */
	for (int i = 0; i < 10000 && pages_out(m, PAGES) == 0; i++)
		usleep(1000);

	/* 4. read errors: SIGBUS, never a wrong byte */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	/* in-thread resolution (FAULTLINE_RESOLVE): the runtime's handler
	 * stays and passes the poisoned pages' SIGBUS on to ours */
	if (fl_sigbus_chain(&sa, NULL) != 0)
		sigaction(SIGBUS, &sa, NULL);
	if (!ft.poison) {
		tap_ok(1, "# SKIP no UFFDIO_POISON: a read error is retried, not signalled");
		tap_ok(1, "# SKIP no UFFDIO_POISON");
		tap_ok(1, "# SKIP no UFFDIO_POISON");
		tap_ok(1, "# SKIP no UFFDIO_POISON");
	} else {
		fail_read = -EIO;
		probe(m, &sigbus, &wrong);
		tap_ok(sigbus > 0 && wrong == 0, "EIO on read: %zu accesses got SIGBUS, %zu wrong bytes",
		       sigbus, wrong);
		fail_read = 0;
		stats_now(rt, &st);
		tap_ok(st.far_read_errors >= sigbus, "read errors counted (%llu)",
		       (unsigned long long)st.far_read_errors);

		/* a short read is an error too; poisoned pages stay poisoned */
		TAP_EQ(fl_region_unregister(rt, m), 0);
		TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);
	}
	if (ft.poison) {
		fill(m);
		WAIT_FOR(rt, st, st.far_evictions >= 3 * (PAGES - 2 * BUDGET));
		short_read = 1;
		probe(m, &sigbus, &wrong);
		short_read = 0;
		tap_ok(sigbus > 0 && wrong == 0, "short read: %zu accesses got SIGBUS, %zu wrong bytes",
		       sigbus, wrong);
	} else {
		tap_ok(1, "# SKIP no UFFDIO_POISON");
	}
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	free(backing);
	return tap_done();
}
