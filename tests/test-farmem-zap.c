/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-farmem-zap - a MADV_DONTNEED of far memory reads zeros at once, even
 * while the handler that read its REMOVE event has not applied it yet.
 *
 * The kernel resumes the madvise() caller as soon as a handler has read the
 * event, and zaps the range. The program then touches a zapped page whose
 * bytes far memory still holds (evicted to the store, or rescued into
 * runtime memory after a failed write-back): another handler reads that
 * fault. If it paged the page in before the event was applied to the page
 * words, the program would read the bytes it had just dropped. Here the
 * handler that reads the event is held at that very point (the
 * FL_PAUSE_EVENT_READ hook) while a thread reads the zapped range; the page-
 * ins must wait for the event (far_event_waits) and then read zeros.
 *
 * Args: "no-move": evict without UFFDIO_MOVE (write-protect, copy, zap).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"
#include "core/testhooks.h"

#define PAGES	512
#define BUDGET	64

static size_t pgsz;
static char *backing;			/* the store's bytes, by store offset */
static size_t backing_len;
static _Atomic int fail_write;

static _Atomic int armed;		/* hold the next handler that reads an event */
static _Atomic int held;		/* a handler is held */
static _Atomic int release_it;
static _Atomic uintptr_t zap_addr;

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
	int err = atomic_load(&fail_write);

	(void)arg;
	if (err)
		return err;
	if (off + len > backing_len)
		return -ENOSPC;
	memcpy(backing + off, buf, len);
	return 0;
}

static void hook(enum fl_test_point point, uintptr_t addr)
{
	int one = 1;

	/* the test's own zap only: without MOVE the evictor zaps too */
	if (point != FL_PAUSE_EVENT_READ || addr != atomic_load(&zap_addr) ||
	    !atomic_compare_exchange_strong(&armed, &one, 0))
		return;
	atomic_store(&held, 1);
	/* bounded: a runtime that waits for this handler must not hang the test */
	for (int i = 0; i < 10000 && !atomic_load(&release_it); i++)
		ms_sleep(1);
	atomic_store(&held, 0);
}

struct reader {
	const char *m;
	size_t pages;
	size_t bad;
	_Atomic bool done;
};

static void *read_zeros(void *arg)
{
	struct reader *r = arg;

	for (size_t pg = 0; pg < r->pages; pg++)
		for (size_t i = 0; i < pgsz; i += 64)
			r->bad += ((volatile const char *)r->m)[pg * pgsz + i] != 0;
	atomic_store(&r->done, true);
	return NULL;
}

/*
 * Zap the first half of @m with the event's reader held, read it from
 * another thread meanwhile, then let the event go. Return: wrong bytes.
 */
static size_t zap_held(struct fl_runtime *rt, char *m, const char *what)
{
	struct reader rd = { .m = m, .pages = PAGES / 2 };
	struct fl_stats st, st0;
	pthread_t t;

	stats_now(rt, &st0);
	atomic_store(&release_it, 0);
	atomic_store(&zap_addr, (uintptr_t)m);
	atomic_store(&armed, 1);
	TAP_EQ(madvise(m, PAGES / 2 * pgsz, MADV_DONTNEED), 0);
	/* madvise returns once the event is read; its reader reaches the
	 * pause point a moment later (or, preempted, a while later) */
	for (int i = 0; i < 10000 && !atomic_load(&held); i++)
		ms_sleep(1);
	tap_ok(atomic_load(&held), "%s: the event's reader is held, the event unannounced", what);
	pthread_create(&t, NULL, read_zeros, &rd);
	/* the reader's page-ins wait for the event: give them time to be wrong */
	WAIT_FOR(rt, st, atomic_load(&rd.done) || st.far_event_waits > st0.far_event_waits);
	ms_sleep(20);
	atomic_store(&release_it, 1);
	pthread_join(t, NULL);
	stats_now(rt, &st);
	tap_ok(st.far_event_waits > st0.far_event_waits,
	       "%s: page-ins waited for the event (%llu times)", what,
	       (unsigned long long)(st.far_event_waits - st0.far_event_waits));
	return rd.bad;
}

static uint8_t byte_of(unsigned int seed, size_t pg, size_t i)
{
	return (uint8_t)(pg * 31 + i * 7 + seed * 13 + 1);
}

static void fill(char *m, size_t lo, size_t hi, unsigned int seed)
{
	for (size_t pg = lo; pg < hi; pg++)
		for (size_t i = 0; i < pgsz; i += 64)
			m[pg * pgsz + i] = (char)byte_of(seed, pg, i);
}

static size_t verify(const char *m, size_t lo, size_t hi, unsigned int seed)
{
	size_t bad = 0;

	for (size_t pg = lo; pg < hi; pg++)
		for (size_t i = 0; i < pgsz; i += 64) {
			uint8_t got = (uint8_t)((volatile const char *)m)[pg * pgsz + i];

			if (got != byte_of(seed, pg, i) && !bad++)
				tap_diag("page %zu byte %zu: %u, want %u", pg, i, got,
					 byte_of(seed, pg, i));
		}
	return bad;
}

int main(int argc, char **argv)
{
	struct fl_store_ops ops = { .size = sizeof(ops), .read = st_read, .write = st_write };
	struct fl_features ft = { .size = sizeof(ft) };
	bool no_move = argc > 1 && !strcmp(argv[1], "no-move");
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st;
	size_t bad;
	char *m;

	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	backing_len = 2 * PAGES * pgsz;
	backing = mmap(NULL, backing_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (fl_store_callbacks_create(&ops, NULL, &store)) {
		printf("Bail out! fl_store_callbacks_create\n");
		return 1;
	}
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = BUDGET * pgsz;
	o.handlers = 2;		/* one held with the event, one serving the reads */
	o.flags = FL_RT_NO_PIN | (no_move ? FL_RT_EVICT_NO_MOVE : 0);
	rt = tap_runtime(&o);
	fl_features(rt, &ft);
	if (!ft.event_remove)
		tap_skip_all("no UFFD_EVENT_REMOVE: a MADV_DONTNEED is not seen");
	if (!no_move && !ft.move)
		tap_skip_all("no UFFDIO_MOVE (the no-move variant covers this kernel)");
	if (!ft.move && !ft.wp)
		tap_skip_all("neither UFFDIO_MOVE nor WP: nothing can be evicted");
	tap_plan(no_move ? 7 : 13);
	atomic_store(&fl_test_pause_hook, hook);
	TAP_EQ(fl_region_map(rt, PAGES * pgsz, NULL, (void **)&m), 0);

	/* 1. pages evicted to the store */
	fill(m, 0, PAGES, 1);
	WAIT_FOR(rt, st, pages_out(m, PAGES / 2) >= PAGES / 4);
	tap_ok(pages_out(m, PAGES / 2) >= PAGES / 4, "evicted: %zu of the pages to zap",
	       pages_out(m, PAGES / 2));
	bad = zap_held(rt, m, "evicted pages");
	tap_ok(bad == 0, "zapped evicted pages read zeros (%zu wrong bytes)", bad);
	tap_ok(verify(m, PAGES / 2, PAGES, 1) == 0, "the pages not zapped read right");

	if (!no_move) {
		/* 2. pages rescued into runtime memory: write-back and put-back fail */
		atomic_store(&fail_write, -EIO);
		atomic_store(&fl_test_fail_at[FL_FAIL_PUT_BACK], -1);
		fill(m, 0, PAGES, 2);
		WAIT_FOR(rt, st, pages_out(m, PAGES / 2) >= PAGES / 4 &&
			 st.far_rescued_pages >= PAGES / 4);
		tap_ok(st.far_rescued_pages >= PAGES / 4, "rescued: %llu pages",
		       (unsigned long long)st.far_rescued_pages);
		bad = zap_held(rt, m, "rescued pages");
		tap_ok(bad == 0, "zapped rescued pages read zeros (%zu wrong bytes)", bad);
		atomic_store(&fl_test_fail_at[FL_FAIL_PUT_BACK], 0);
		atomic_store(&fail_write, 0);
		tap_ok(verify(m, PAGES / 2, PAGES, 2) == 0, "the pages not zapped read right");
	}
	fl_runtime_destroy(rt);
	atomic_store(&fl_test_pause_hook, NULL);
	fl_store_destroy(store);
	munmap(backing, backing_len);
	return tap_done();
}
