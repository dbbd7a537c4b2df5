/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-write-flap - write-back errors that come and go never cost a
 * byte. Round after round: every store write fails (EIO or ENOSPC) while
 * the program rewrites every page, so each page's write-back fails and the
 * page is put back; then the store recovers while write-backs are in flight,
 * the pages go out, and every byte must read back as last written. A last
 * round flips the failure on and off under the evictor's feet. The store
 * callbacks read their knobs once: a callback that says "written" wrote.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "common.h"

#define PAGES	256
#define BUDGET	32
#define ROUNDS	16

static size_t pgsz;
static char *backing;			/* the store's bytes */
static _Atomic int fail_write;
static _Atomic bool flap_stop;

static int st_read(void *arg, uint64_t off, void *buf, size_t len)
{
	memcpy(buf, backing + off % (PAGES * pgsz), len);
	return 0;
}

static int st_write(void *arg, uint64_t off, const void *buf, size_t len)
{
	int err = fail_write;	/* once: the main thread flips it meanwhile */

	if (err)
		return err;
	memcpy(backing + off % (PAGES * pgsz), buf, len);
	return 0;
}

static uint8_t byte_of(unsigned int round, size_t pg, size_t i)
{
	return (uint8_t)(round * 101 + pg * 31 + i * 7 + 1);
}

static void fill(char *m, unsigned int round)
{
	for (size_t pg = 0; pg < PAGES; pg++)
		for (size_t i = 0; i < pgsz; i += 64)
			m[pg * pgsz + i] = (char)byte_of(round, pg, i);
}

/* wrong bytes; the first wrong page is named in a diagnostic */
static size_t verify(const char *m, unsigned int round)
{
	size_t bad = 0;

	for (size_t pg = 0; pg < PAGES; pg++)
		for (size_t i = 0; i < pgsz; i += 64) {
			uint8_t got = (uint8_t)m[pg * pgsz + i];

			if (got != byte_of(round, pg, i) && !bad++)
				tap_diag("round %u: page %zu byte %zu: %u, want %u", round,
					 pg, i, got, byte_of(round, pg, i));
		}
	return bad;
}

/* the store fails and recovers every 200 µs */
static void *flapper(void *arg)
{
	(void)arg;
	for (unsigned int n = 0; !flap_stop; n++) {
		fail_write = n & 1 ? -EIO : 0;
		usleep(200);
	}
	fail_write = 0;
	return NULL;
}

int main(int argc, char **argv)
{
	struct fl_store_ops ops = { .size = sizeof(ops), .read = st_read, .write = st_write };
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st;
	pthread_t flap;
	size_t bad;
	char *m;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	tap_plan(2 + ROUNDS + 2);
	backing = calloc(PAGES, pgsz);
	TAP_EQ(fl_store_callbacks_create(&ops, NULL, &store), 0);
	rt = tap_far_runtime_on(store, BUDGET * pgsz, argc, argv, &ft);
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);

	for (unsigned int round = 0; round < ROUNDS; round++) {
		uint64_t errs, evs;

		stats_now(rt, &st);
		errs = st.far_store_errors;
		evs = st.far_evictions;
		/* every write-back fails while every page is rewritten */
		fail_write = round & 1 ? -ENOSPC : -EIO;
		fill(m, round);
		WAIT_FOR(rt, st, st.far_store_errors >= errs + 8);
		/* recovery lands while write-backs are in flight */
		fail_write = 0;
		WAIT_FOR(rt, st, st.far_evictions >= evs + (PAGES - 2 * BUDGET));
		bad = verify(m, round);
		tap_ok(bad == 0, "round %u: %llu store errors, %llu evictions, %zu wrong bytes",
		       round, (unsigned long long)(st.far_store_errors - errs),
		       (unsigned long long)(st.far_evictions - evs), bad);
	}

	/* the store flaps under the evictor's feet while pages are rewritten */
	flap_stop = false;
	if (pthread_create(&flap, NULL, flapper, NULL)) {
		tap_skip("no thread for the flapping store");
		tap_skip("no thread for the flapping store");
	} else {
		fill(m, ROUNDS);
		bad = verify(m, ROUNDS);
		flap_stop = true;
		pthread_join(flap, NULL);
		tap_ok(bad == 0, "flapping store: %zu wrong bytes", bad);
		/* the evictor caught up (most pages out): read them back */
		WAIT_FOR(rt, st, st.far_resident_pages <= BUDGET);
		bad = verify(m, ROUNDS);
		tap_ok(bad == 0, "after the flapping: every byte read back right (%zu wrong, %llu resident before)",
		       bad, (unsigned long long)st.far_resident_pages);
	}
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	free(backing);
	return tap_done();
}
