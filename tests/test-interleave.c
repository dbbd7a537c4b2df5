/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-interleave - the fault protocol's hard cases, forced deterministically
 * through the pause points of runtime/core/testhooks.h (FL_TEST_HOOKS builds only):
 *
 *  a. a speculative fault that found the old region, paused inside its RCU
 *     read section, races the removal of the range and its re-registration
 *     with other contents: the writer cannot pass its grace period while
 *     the fault is paused, and the new region never holds the old page;
 *  b. a reader holding a stale pointer to a region object that was freed
 *     and reused for the next region: the generation re-check refuses it
 *     and leaves the reused object's lock as it was;
 *  c. a writer waiting for a tier-2 reader while another reader arrives
 *     with a pointer it found before the writer came: the late reader is
 *     refused at the refcount (region_abort_locked) and falls back; the
 *     writer gets through as soon as the early reader leaves;
 *  d. the handler that took an mremap's REMAP off the queue loses its CPU
 *     before it counts the event (a spinning pause: it stays runnable, as
 *     a preempted thread does) while the program reads the new address
 *     through the other handler: the fault, in no region for now, waits
 *     for the event however long that takes, never served zeros;
 *  e. the same for a munmap()'s UNMAP, while the program maps the same
 *     addresses again and registers a new region there: the registration
 *     waits until the event is applied, which then leaves the new region
 *     alone (applied after it, it dropped the new region from the index).
 *
 * Every wait here waits for a state (a pause point reached, a counter, a
 * lock word), never for time; the one sleep only widens a window in which
 * a broken protocol would show itself.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "core/internal.h"
#include "core/testhooks.h"

/* ---- gates: a pause point that blocks one thread until released ---- */

static pthread_mutex_t gm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gcv = PTHREAD_COND_INITIALIZER;

struct gate {
	uintptr_t page;		/* armed for this page, 0: not armed */
	bool arrived, released;
};

static struct gate gates[FL_PAUSE_NR];
static unsigned int passed[FL_PAUSE_NR];	/* every call, armed or not */
static size_t page_size;

static void deadline(struct timespec *ts, int secs)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += secs;
}

/* the spinning gate of case d: a handler held runnable, as if preempted */
static _Atomic uintptr_t spin_page;
static _Atomic bool spin_arrived, spin_released;

static void spin_gate(uintptr_t addr)
{
	uintptr_t want = atomic_load(&spin_page);
	struct timespec t0, t;

	if (!want || addr != want || !atomic_compare_exchange_strong(&spin_page, &want, 0))
		return;
	atomic_store(&spin_arrived, true);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* bounded: a broken test must fail, not hang the suite */
	do {
		sched_yield();
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (!atomic_load(&spin_released) && t.tv_sec - t0.tv_sec < 20);
}

static void hook(enum fl_test_point p, uintptr_t addr)
{
	struct gate *g = &gates[p];
	struct timespec ts;

	if (p == FL_PAUSE_EVENT_TAKEN) {
		spin_gate(addr);
		return;
	}

	pthread_mutex_lock(&gm);
	passed[p]++;
	pthread_cond_broadcast(&gcv);
	if (g->page && (addr & ~(uintptr_t)(page_size - 1)) == g->page) {
		g->page = 0;
		g->arrived = true;
		pthread_cond_broadcast(&gcv);
		/* bounded: a broken test must fail, not hang the suite */
		deadline(&ts, 20);
		while (!g->released)
			if (pthread_cond_timedwait(&gcv, &gm, &ts))
				break;
	}
	pthread_mutex_unlock(&gm);
}

static void arm(enum fl_test_point p, const void *page)
{
	pthread_mutex_lock(&gm);
	gates[p] = (struct gate){ .page = (uintptr_t)page };
	pthread_mutex_unlock(&gm);
}

static void release(enum fl_test_point p)
{
	pthread_mutex_lock(&gm);
	gates[p].released = true;
	pthread_cond_broadcast(&gcv);
	pthread_mutex_unlock(&gm);
}

/* wait until the gate's thread arrived; false after 10 s */
static bool wait_arrived(enum fl_test_point p)
{
	struct timespec ts;
	bool ok;

	deadline(&ts, 10);
	pthread_mutex_lock(&gm);
	while (!gates[p].arrived)
		if (pthread_cond_timedwait(&gcv, &gm, &ts))
			break;
	ok = gates[p].arrived;
	pthread_mutex_unlock(&gm);
	return ok;
}

/* wait until point @p was passed more than @n times; false after 10 s */
static bool wait_passed(enum fl_test_point p, unsigned int n)
{
	struct timespec ts;
	bool ok;

	deadline(&ts, 10);
	pthread_mutex_lock(&gm);
	while (passed[p] <= n)
		if (pthread_cond_timedwait(&gcv, &gm, &ts))
			break;
	ok = passed[p] > n;
	pthread_mutex_unlock(&gm);
	return ok;
}

static unsigned int passed_count(enum fl_test_point p)
{
	unsigned int n;

	pthread_mutex_lock(&gm);
	n = passed[p];
	pthread_mutex_unlock(&gm);
	return n;
}

/* ---- threads ---- */

struct toucher {
	pthread_t t;
	volatile unsigned char *p;
	unsigned char got;
};

static void *touch_fn(void *arg)
{
	struct toucher *t = arg;

	t->got = *t->p;
	return NULL;
}

static void touch_start(struct toucher *t, void *p)
{
	t->p = p;
	pthread_create(&t->t, NULL, touch_fn, t);
}

static struct fl_runtime *rt;

struct rewriter {
	pthread_t t;
	void *addr;
	size_t len;
	const void *src;	/* NULL: unregister only */
	struct toucher *after;	/* remap only once this access completed */
	int ret_unreg, ret_reg;
	_Atomic bool done;
};

/* fl_region_unregister(), then a fresh mapping at the same address and a
 * new region with other contents on it */
static void *rewrite_fn(void *arg)
{
	struct rewriter *w = arg;
	struct fl_region_opts ro;

	w->ret_unreg = fl_region_unregister(rt, w->addr);
	/* the faulting thread may be woken and still not have run its load:
	 * remapping under it would hand it the fresh mapping's bytes */
	if (w->after)
		pthread_join(w->after->t, NULL);
	if (w->src) {
		munmap(w->addr, w->len);
		mmap(w->addr, w->len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		fl_region_opts_init(&ro);
		ro.pager = FL_PAGER_COPY;
		ro.src = w->src;
		ro.src_len = w->len;
		ro.fault_around = page_size;
		w->ret_reg = fl_region_register(rt, w->addr, w->len, &ro);
	}
	atomic_store(&w->done, true);
	return NULL;
}

static void *map_pages(size_t n)
{
	void *p = mmap(NULL, n * page_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		printf("Bail out! mmap failed\n");
		exit(1);
	}
	return p;
}

static int register_copy_flags(void *p, size_t len, const void *src, unsigned int flags)
{
	struct fl_region_opts ro;

	fl_region_opts_init(&ro);
	ro.flags = flags;
	ro.pager = FL_PAGER_COPY;
	ro.src = src;
	ro.src_len = len;
	ro.fault_around = page_size;	/* one page per fault: exactly the page we race */
	return fl_region_register(rt, p, len, &ro);
}

static int register_copy(void *p, size_t len, const void *src)
{
	return register_copy_flags(p, len, src, 0);
}

static struct fl_region *lookup(void *p)
{
	struct fl_region *r;

	pthread_rwlock_rdlock(&rt->index.lock);
	r = index_lookup(rt->index.cur, (uintptr_t)p);
	pthread_rwlock_unlock(&rt->index.lock);
	return r;
}

static uint64_t stat_of(size_t off)
{
	struct fl_stats st = { .size = sizeof(st) };

	fl_stats_get(rt, &st);
	return *(uint64_t *)((char *)&st + off);
}
#define STAT(f) stat_of(offsetof(struct fl_stats, f))

static bool all_bytes(const void *p, size_t len, unsigned char v)
{
	const volatile unsigned char *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i] != v)
			return false;
	return true;
}

/* ---- a ---- */

static void case_stale_install(void)
{
	const size_t n = 4, len = n * page_size;
	unsigned char *old_src = malloc(len), *new_src = malloc(len);
	unsigned char *p = map_pages(n);
	struct toucher t;
	struct rewriter w = { .addr = p, .len = len, .src = new_src, .after = &t };
	unsigned int synced0;
	bool synced_early;

	memset(old_src, 0xaa, len);
	memset(new_src, 0xbb, len);
	TAP_EQ(register_copy(p, len, old_src), 0);

	arm(FL_PAUSE_SPF_LOOKED_UP, p);
	touch_start(&t, p);
	tap_ok(wait_arrived(FL_PAUSE_SPF_LOOKED_UP),
	       "a: speculative fault paused after its lookup, inside RCU");

	synced0 = passed_count(FL_PAUSE_WRITER_SYNCED);
	pthread_create(&w.t, NULL, rewrite_fn, &w);
	tap_ok(wait_passed(FL_PAUSE_WRITER_PUBLISHED, 0),
	       "a: writer published the index without the region");
	/* give a broken writer time to run ahead: no assertion on time */
	usleep(50 * 1000);
	synced_early = passed_count(FL_PAUSE_WRITER_SYNCED) != synced0 ||
		       atomic_load(&w.done);
	tap_ok(!synced_early, "a: writer cannot pass its grace period while the fault is in its read section");
	release(FL_PAUSE_SPF_LOOKED_UP);
	pthread_join(w.t, NULL);	/* it joined t */
	tap_ok(t.got == 0xaa, "a: the fault raised on the old region read the old region's byte (0x%02x)", t.got);
	tap_ok(w.ret_unreg == 0 && w.ret_reg == 0, "a: unregister %d, register again %d",
	       w.ret_unreg, w.ret_reg);
	tap_ok(all_bytes(p, len, 0xbb), "a: the new region holds only its own contents, never the old page");
	TAP_EQ(fl_region_unregister(rt, p), 0);
	munmap(p, len);
	free(old_src);
	free(new_src);
}

/* ---- b ---- */

static void case_stale_pointer(void)
{
	const size_t n = 2, len = n * page_size;
	unsigned char *old_src = malloc(len), *new_src = malloc(len);
	unsigned char *p = map_pages(n);
	struct fl_region *r, *r2;
	uint64_t gen;
	bool stale = false, got;

	memset(old_src, 0x11, len);
	memset(new_src, 0x22, len);
	TAP_EQ(register_copy(p, len, old_src), 0);
	r = lookup(p);
	gen = r ? r->gen : 0;

	/* the region goes and the next one comes: the pool hands back r */
	TAP_EQ(fl_region_unregister(rt, p), 0);
	TAP_EQ(register_copy(p, len, new_src), 0);
	r2 = lookup(p);
	if (r2 != r)
		tap_diag("b: the pool did not reuse the object (%p, %p): re-check still applies", (void *)r, (void *)r2);

	got = r && region_start_read_checked(r, (uintptr_t)p, gen, &stale);
	tap_ok(!got && stale, "b: a stale pointer to a reused region object is refused (stale=%d)", stale);
	tap_ok(r2 && atomic_load(&r2->refcnt) == REF_ATTACHED,
	       "b: the reused object's lock is as it was (refcnt %u)", r2 ? (unsigned)atomic_load(&r2->refcnt) : 0);
	tap_ok(all_bytes(p, len, 0x22), "b: the new region serves its own contents");
	TAP_EQ(fl_region_unregister(rt, p), 0);
	munmap(p, len);
	free(old_src);
	free(new_src);
}

/* ---- c ---- */

static int fill_pattern(void *arg, uint64_t off, void *dst, size_t len)
{
	memset(dst, 0x40 + (int)(off / page_size), len);
	return 0;
}

static void case_writer_progress(void)
{
	const size_t n = 4, len = n * page_size;
	unsigned char *p = map_pages(n);
	struct fl_region_opts ro;
	struct fl_region *r;
	struct toucher early, late;
	struct rewriter w = { .addr = p, .len = len, .src = NULL };
	uint64_t locked0;
	bool biased = false, refused = false;

	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_FILL;	/* may block: tier 1 hands over to tier 2 */
	ro.fill = fill_pattern;
	ro.fault_around = page_size;
	TAP_EQ(fl_region_register(rt, p, len, &ro), 0);
	r = lookup(p);

	/* the early reader holds the region's read lock, paused before its re-check */
	arm(FL_PAUSE_REGION_RECHECK, p);
	touch_start(&early, p);
	tap_ok(wait_arrived(FL_PAUSE_REGION_RECHECK), "c: early reader holds the region's read lock");

	/* the late reader found the region, before any writer came */
	arm(FL_PAUSE_SPF_LOOKED_UP, p + page_size);
	touch_start(&late, p + page_size);
	tap_ok(wait_arrived(FL_PAUSE_SPF_LOOKED_UP), "c: late reader found the region (speculatively)");

	locked0 = STAT(region_abort_locked);
	pthread_create(&w.t, NULL, rewrite_fn, &w);
	for (int i = 0; i < 10000 && !biased; i++) {
		biased = r && atomic_load(&r->refcnt) >= REF_WRITER;
		if (!biased)
			usleep(1000);
	}
	tap_ok(biased, "c: writer set its offset and waits for the early reader");

	release(FL_PAUSE_SPF_LOOKED_UP);
	for (int i = 0; i < 10000 && !refused; i++) {
		refused = STAT(region_abort_locked) > locked0;
		if (!refused)
			usleep(1000);
	}
	tap_ok(refused, "c: the late reader is refused at the refcount and falls back (region_abort_locked)");
	tap_ok(!atomic_load(&w.done), "c: the writer still waits for the reader that got in before it");

	release(FL_PAUSE_REGION_RECHECK);
	pthread_join(w.t, NULL);
	pthread_join(early.t, NULL);
	pthread_join(late.t, NULL);
	tap_ok(w.ret_unreg == 0, "c: the writer got through (unregister %d)", w.ret_unreg);
	tap_ok(early.got == 0x40, "c: the early reader's fault was served by the fill (0x%02x)", early.got);
	tap_ok(late.got == 0, "c: the late fault ended on the unregistered range: plain zeros (0x%02x)", late.got);
	TAP_EQ(fl_region_count(rt), 0);
	munmap(p, len);
}

static void case_event_taken(void)
{
	size_t len = 4 * page_size;
	unsigned char *src = malloc(len);
	void *p = map_pages(4), *dst, *q;
	uint64_t unknown0 = STAT(faults_unknown), waits0 = STAT(faults_unknown_waits);
	struct toucher t;

	memset(src, 0x5d, len);
	dst = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/*
	 * A handler region: the race needs a second reader of the uffd. An
	 * in-thread region's events have one reader, which takes the REMAP,
	 * applies it, and only then reads the UNMAP that mremap() waits for.
	 */
	TAP_EQ(register_copy_flags(p, len, src, FL_REGION_HANDLER), 0);
	atomic_store(&spin_page, (uintptr_t)dst);	/* the REMAP's destination */
	q = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	/* mremap() returns once the event is off the queue: the handler that
	 * took it may still be on its way to the pause point */
	for (int i = 0; i < 10000 && !atomic_load(&spin_arrived); i++)
		usleep(1000);
	tap_ok(q == dst && atomic_load(&spin_arrived),
	       "d: mremap returned; the handler that took its REMAP runs and has not counted it");
	touch_start(&t, q);
	/* the read reaches a handler (on a busy machine that alone may take
	 * longer than the window below) */
	for (int i = 0; i < 10000 && STAT(faults_unknown_waits) == waits0; i++)
		usleep(1000);
	/* widens the window: far longer than the 5 ms a fault in no region
	 * waits at least, and than the 1 ms between its retries */
	usleep(50 * 1000);
	tap_ok(STAT(faults_unknown_waits) > waits0,
	       "d: the read at the new address waits (%llu waits)",
	       (unsigned long long)(STAT(faults_unknown_waits) - waits0));
	tap_ok(STAT(faults_unknown) == unknown0,
	       "d: and is not served as a fault in no region (%llu)",
	       (unsigned long long)(STAT(faults_unknown) - unknown0));
	atomic_store(&spin_released, true);
	pthread_join(t.t, NULL);
	tap_ok(t.got == 0x5d, "d: once the event is applied the read gets the moved page (0x%02x)",
	       t.got);
	tap_ok(all_bytes(q, len, 0x5d), "d: every moved page holds its bytes");
	fl_region_unregister(rt, q);
	munmap(q, len);
	free(src);
}

struct registrar {
	pthread_t t;
	void *addr;
	size_t len;
	const void *src;
	int ret;
	_Atomic bool done;
};

static void *register_fn(void *arg)
{
	struct registrar *g = arg;

	g->ret = register_copy(g->addr, g->len, g->src);
	atomic_store(&g->done, true);
	return NULL;
}

static void case_unmap_taken(void)
{
	size_t len = 4 * page_size;
	unsigned char *src = malloc(len);
	void *p = map_pages(4), *again;
	struct registrar g = { .len = len, .src = src };
	bool early;

	memset(src, 0x6e, len);
	TAP_EQ(register_copy(p, len, map_pages(4)), 0);
	atomic_store(&spin_arrived, false);
	atomic_store(&spin_released, false);
	atomic_store(&spin_page, (uintptr_t)p);		/* the UNMAP's start */
	munmap(p, len);
	for (int i = 0; i < 10000 && !atomic_load(&spin_arrived); i++)
		usleep(1000);
	again = mmap(p, len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	tap_ok(atomic_load(&spin_arrived) && again == p,
	       "e: munmap returned, its UNMAP's taker runs uncounted; the same addresses mapped again");
	g.addr = again;
	pthread_create(&g.t, NULL, register_fn, &g);
	usleep(50 * 1000);	/* widens the window: a registration not held is done by now */
	early = atomic_load(&g.done);
	tap_ok(!early, "e: the registration of the new mapping waits for the event");
	atomic_store(&spin_released, true);
	pthread_join(g.t, NULL);
	TAP_EQ(g.ret, 0);
	tap_ok(lookup(again) != NULL, "e: once the event is applied the new region stays in the index");
	tap_ok(all_bytes(again, len, 0x6e), "e: and serves its own bytes");
	fl_region_unregister(rt, again);
	munmap(again, len);
	free(src);
}

int main(void)
{
	struct fl_runtime_opts o;

	page_size = (size_t)sysconf(_SC_PAGESIZE);
	fl_runtime_opts_init(&o);
	o.handlers = 2;		/* one may be paused while the other serves */
	o.flags = FL_RT_NO_PIN;
	rt = tap_runtime(&o);
	atomic_store(&fl_test_pause_hook, hook);

	tap_plan(37);
	case_stale_install();
	case_stale_pointer();
	case_writer_progress();
	case_event_taken();
	case_unmap_taken();

	atomic_store(&fl_test_pause_hook, NULL);
	fl_runtime_destroy(rt);
	return tap_done();
}
