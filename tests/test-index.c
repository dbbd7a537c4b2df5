/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-index - unit tests of the region index, its sequence count and the
 * region refcount lock (runtime/index.[ch], runtime/region.[ch]).
 *
 *  - 5000 regions with random gaps: index_lookup / index_overlaps agree with
 *    a brute-force model, after one big publish, incremental publishes and
 *    deletions;
 *  - index_seq_begin / index_seq_retry: odd while a writer is in, retry
 *    after any write; readers that pass the retry check never see a
 *    half-done write (two publishes inside one write section);
 *  - refcount lock: detached refuses readers; the reader limit; a writer
 *    drains readers and, once its offset is set, no new reader gets in
 *    (no starvation); a reader/writer stress;
 *  - typesafe reuse: a region freed and handed out again by region_alloc()
 *    while a reader still holds the old pointer: region_start_read_checked()
 *    fails with *stale set.
 *
 * Index functions run under RCU (registered reader threads) or with the
 * index writer lock held, as their contracts say.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include "tap.h"
#include "core/index.h"
#include "core/rcu.h"
#include "core/region.h"
#include "core/internal.h"
#include "far/far.h"

#define NREG	5000
#define PG	4096u
#define NREG_BATCH (NREG - 500)	/* the rest is published one at a time */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible from the printed seed */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static struct fl_region *mkregion(uintptr_t start, uintptr_t end)
{
	struct fl_region *r = region_alloc(1, NULL);

	if (!r) {
		printf("Bail out! region_alloc: out of memory\n");
		exit(1);
	}
	r->start = start;
	r->end = end;
	region_attach(r);
	return r;
}

/* ---- the brute-force model ---- */

static struct fl_region *model[NREG];
static bool live[NREG];

static struct fl_region *model_lookup(uintptr_t a)
{
	for (size_t i = 0; i < NREG; i++)
		if (live[i] && a >= model[i]->start && a < model[i]->end)
			return model[i];
	return NULL;
}

static bool model_overlaps(uintptr_t s, uintptr_t e, const struct fl_region *skip)
{
	for (size_t i = 0; i < NREG; i++)
		if (live[i] && model[i] != skip && model[i]->start < e && model[i]->end > s)
			return true;
	return false;
}

/* compare lookups and overlap queries at random points; returns mismatches */
static size_t compare_model(struct fl_index_root *ix, uintptr_t lo, uintptr_t hi, int nq)
{
	size_t bad = 0;

	/* the writer lock is the other legal context for index_lookup() */
	index_write_begin(ix);
	for (int q = 0; q < nq; q++) {
		uintptr_t a = lo + rnd() % (hi - lo);
		uintptr_t len = 1 + rnd() % (6 * PG);
		const struct fl_region *skip = (q & 3) == 0 ? model_lookup(a) : NULL;

		bad += index_lookup(ix->cur, a) != model_lookup(a);
		bad += index_overlaps(ix->cur, a, a + len, skip) != model_overlaps(a, a + len, skip);
	}
	/* regions' first and last byte, and the bytes just outside */
	for (int q = 0; q < nq / 4; q++) {
		size_t i = rnd() % NREG;
		uintptr_t s = model[i]->start, e = model[i]->end;

		bad += index_lookup(ix->cur, s) != model_lookup(s);
		bad += index_lookup(ix->cur, e - 1) != model_lookup(e - 1);
		bad += index_lookup(ix->cur, s - 1) != model_lookup(s - 1);
		bad += index_lookup(ix->cur, e) != model_lookup(e);
	}
	index_write_end(ix);
	return bad;
}

static bool sorted_disjoint(const struct fl_index *x)
{
	for (size_t i = 0; i + 1 < x->n; i++)
		if (x->e[i].end > x->e[i + 1].start || x->e[i].start >= x->e[i].end)
			return false;
	return true;
}

static void test_big_index(void)
{
	struct fl_index_root ix;
	struct fl_region *batch[NREG];
	uintptr_t a = 0x100000000ull, lo = a, hi;
	size_t bad, n = 0;

	TAP_EQ(index_init(&ix), 0);
	for (size_t i = 0; i < NREG; i++) {
		uintptr_t gap = (rnd() % 4) * PG;	/* 0: adjacent regions */
		uintptr_t len = (1 + rnd() % 8) * PG;

		a += gap;
		model[i] = mkregion(a, a + len);
		a += len;
	}
	hi = a + 16 * PG;

	/* most in one publish (shuffled: the index must sort it) */
	for (size_t i = 0; i < NREG_BATCH; i++)
		batch[n++] = model[i];
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = rnd() % (i + 1);
		struct fl_region *t = batch[i];

		batch[i] = batch[j];
		batch[j] = t;
	}
	index_write_begin(&ix);
	TAP_EQ(index_publish_locked(&ix, NULL, 0, batch, n), 0);
	index_write_end(&ix);
	for (size_t i = 0; i < NREG_BATCH; i++)
		live[i] = true;
	/* the rest one at a time, in random order */
	index_write_begin(&ix);
	n = 0;
	for (size_t i = NREG_BATCH; i < NREG; i++)
		batch[n++] = model[i];
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = rnd() % (i + 1);
		struct fl_region *t = batch[i];

		batch[i] = batch[j];
		batch[j] = t;
	}
	bad = 0;
	for (size_t i = 0; i < n; i++) {
		bad += index_publish_locked(&ix, NULL, 0, &batch[i], 1) != 0;
		if (i % 256 == 255)
			index_synchronize_locked(&ix);
	}
	index_synchronize_locked(&ix);
	index_write_end(&ix);
	for (size_t i = NREG_BATCH; i < NREG; i++)
		live[i] = true;
	tap_ok(!bad && ix.cur->n == NREG && sorted_disjoint(ix.cur),
	       "%d regions published (one batch + one at a time): %zu entries, sorted, disjoint",
	       NREG, ix.cur->n);

	bad = compare_model(&ix, lo - 4 * PG, hi, 2500);
	tap_ok(!bad, "index_lookup/index_overlaps agree with the brute-force model (%zu mismatches)", bad);

	/* delete a random ~half in one publish, then some more one by one */
	n = 0;
	for (size_t i = 0; i < NREG; i++)
		if (rnd() & 1) {
			batch[n++] = model[i];
			live[i] = false;
		}
	index_write_begin(&ix);
	TAP_EQ(index_publish_locked(&ix, batch, n, NULL, 0), 0);
	for (size_t k = 0; k < 200; k++) {
		size_t i = rnd() % NREG;

		if (!live[i])
			continue;
		bad += index_publish_locked(&ix, &model[i], 1, NULL, 0) != 0;
		live[i] = false;
	}
	index_synchronize_locked(&ix);
	index_write_end(&ix);
	n = 0;
	for (size_t i = 0; i < NREG; i++)
		n += live[i];
	tap_ok(!bad && ix.cur->n == n && sorted_disjoint(ix.cur),
	       "after deletions: %zu entries (model %zu)", ix.cur->n, n);
	bad = compare_model(&ix, lo - 4 * PG, hi, 2500);
	tap_ok(!bad, "after deletions the index still agrees with the model (%zu mismatches)", bad);

	/* remove the rest: an empty index finds nothing */
	n = 0;
	for (size_t i = 0; i < NREG; i++)
		if (live[i]) {
			batch[n++] = model[i];
			live[i] = false;
		}
	index_write_begin(&ix);
	TAP_EQ(index_publish_locked(&ix, batch, n, NULL, 0), 0);
	index_synchronize_locked(&ix);
	index_write_end(&ix);
	tap_ok(ix.cur->n == 0 && !index_lookup(ix.cur, model[0]->start) &&
	       !index_overlaps(ix.cur, 0, UINTPTR_MAX, NULL),
	       "empty index: no lookup hit, no overlap");

	for (size_t i = 0; i < NREG; i++) {
		region_detach_locked(model[i]);
		region_free(model[i]);
	}
	index_fini(&ix);
}

/* ---- the sequence count ---- */

static void test_seq_single(void)
{
	struct fl_index_root ix;
	unsigned int s0, s1, s2;

	TAP_EQ(index_init(&ix), 0);
	s0 = index_seq_begin(&ix);
	tap_ok(!(s0 & 1) && !index_seq_retry(&ix, s0),
	       "idle count is even (%u) and a read section with no writer needs no retry", s0);
	index_write_begin(&ix);
	s1 = index_seq_begin(&ix);
	tap_ok((s1 & 1) && index_seq_retry(&ix, s1) && index_seq_retry(&ix, s0),
	       "inside a write section the count is odd (%u): retry for a sample taken inside and before", s1);
	index_write_end(&ix);
	s2 = index_seq_begin(&ix);
	tap_ok(!(s2 & 1) && s2 != s0 && index_seq_retry(&ix, s0) && index_seq_retry(&ix, s1) &&
	       !index_seq_retry(&ix, s2),
	       "after the write: even again (%u), older samples retry, the new one does not", s2);
	index_fini(&ix);
}

/*
 * Readers look two regions up through two separate dereferences of the
 * index; the writer removes / re-adds them with two publishes inside one
 * write section. A reader that passes index_seq_retry() must see both or
 * neither. A third, stable region must be found by every lookup at all.
 */
struct seq_shared {
	struct fl_index_root ix;
	struct fl_region *a, *b, *stable;
	atomic_bool stop;
	atomic_ulong checks, retries, odd, torn, stable_lost;
};

static void *seq_reader(void *arg)
{
	struct seq_shared *S = arg;
	unsigned long checks = 0, retries = 0, odd = 0, torn = 0, lost = 0;

	fl_rcu_register_thread();
	while (!atomic_load(&S->stop) || checks < 1000) {
		unsigned int seq = index_seq_begin(&S->ix);
		struct fl_region *ra, *rb, *rs;

		fl_rcu_read_lock();
		ra = index_lookup(fl_rcu_dereference(S->ix.cur), S->a->start);
		rs = index_lookup(fl_rcu_dereference(S->ix.cur), S->stable->start + PG);
		rb = index_lookup(fl_rcu_dereference(S->ix.cur), S->b->end - 1);
		fl_rcu_read_unlock();
		lost += rs != S->stable;
		if (seq & 1)
			odd++;
		if (index_seq_retry(&S->ix, seq)) {
			retries++;
			sched_yield();	/* let the writer finish */
			continue;
		}
		checks++;
		torn += (ra != NULL) != (rb != NULL);
		torn += (ra && ra != S->a) || (rb && rb != S->b);
	}
	fl_rcu_unregister_thread();
	atomic_fetch_add(&S->checks, checks);
	atomic_fetch_add(&S->retries, retries);
	atomic_fetch_add(&S->odd, odd);
	atomic_fetch_add(&S->torn, torn);
	atomic_fetch_add(&S->stable_lost, lost);
	return NULL;
}

static void test_seq_threads(void)
{
	static struct seq_shared S;
	struct fl_region *both[2];
	pthread_t th[2];
	int writes = 1000;

	TAP_EQ(index_init(&S.ix), 0);
	S.a = mkregion(0x10000000, 0x10004000);
	S.stable = mkregion(0x10008000, 0x1000c000);
	S.b = mkregion(0x10010000, 0x10020000);
	both[0] = S.a;
	both[1] = S.b;
	index_write_begin(&S.ix);
	index_publish_locked(&S.ix, NULL, 0, &S.stable, 1);
	index_publish_locked(&S.ix, NULL, 0, both, 2);
	index_write_end(&S.ix);

	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, seq_reader, &S);
	for (int w = 0; w < writes; w++) {
		bool present = !(w & 1);

		index_write_begin(&S.ix);
		/* two publishes: in between, a is gone (or back) but b not yet */
		if (present) {
			index_publish_locked(&S.ix, &S.a, 1, NULL, 0);
			sched_yield();
			index_publish_locked(&S.ix, &S.b, 1, NULL, 0);
		} else {
			index_publish_locked(&S.ix, NULL, 0, &S.a, 1);
			sched_yield();
			index_publish_locked(&S.ix, NULL, 0, &S.b, 1);
		}
		if (w % 64 == 63)
			index_synchronize_locked(&S.ix);
		index_write_end(&S.ix);
	}
	atomic_store(&S.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	tap_diag("seq readers: %lu consistent checks, %lu retries (%lu sampled odd)",
		 atomic_load(&S.checks), atomic_load(&S.retries), atomic_load(&S.odd));
	tap_ok(atomic_load(&S.torn) == 0 && atomic_load(&S.checks) > 0,
	       "a reader that passes index_seq_retry never sees half a write (%lu torn)",
	       atomic_load(&S.torn));
	tap_ok(atomic_load(&S.stable_lost) == 0,
	       "a region not being changed is found by every RCU lookup during %d writes (%lu lost)",
	       writes, atomic_load(&S.stable_lost));

	index_write_begin(&S.ix);
	index_synchronize_locked(&S.ix);
	index_write_end(&S.ix);
	index_fini(&S.ix);
	region_free(S.a);
	region_free(S.b);
	region_free(S.stable);
}

/* ---- the refcount lock ---- */

static uint32_t refcnt(struct fl_region *r)
{
	return atomic_load(&r->refcnt);
}

static void test_ref_basic(void)
{
	struct fl_region *r = region_alloc(1, NULL);
	unsigned long n = 0;
	bool ok;

	tap_ok(r && refcnt(r) == REF_DETACHED && !region_start_read(r),
	       "a new region is detached and refuses readers");
	region_attach(r);
	ok = region_start_read(r) && region_start_read(r) && refcnt(r) == REF_ATTACHED + 2;
	region_end_read(r);
	region_end_read(r);
	tap_ok(ok && refcnt(r) == REF_ATTACHED, "attached: two readers in and out (refcnt back to 1)");

	while (region_start_read(r))
		n++;
	tap_ok(n >= REF_READER_LIMIT - 2 && n < REF_READER_LIMIT && !region_start_read(r),
	       "reader limit: %lu readers admitted, then refused (REF_READER_LIMIT %u)",
	       n, REF_READER_LIMIT);
	region_end_read(r);
	ok = region_start_read(r);
	tap_ok(ok, "one reader leaves: the next one gets in");
	for (unsigned long i = 0; i < n; i++)
		region_end_read(r);
	tap_ok(refcnt(r) == REF_ATTACHED, "all readers gone: refcnt %u", refcnt(r));

	region_write_lock(r);	/* no readers: must not block */
	ok = !region_start_read(r) && refcnt(r) == REF_WRITER + REF_ATTACHED;
	region_write_unlock(r);
	tap_ok(ok && region_start_read(r), "write-locked refuses readers; unlocked admits them");
	region_end_read(r);
	region_write_lock(r);
	region_detach_locked(r);
	tap_ok(refcnt(r) == REF_DETACHED && !region_start_read(r), "detached after write lock: refused");
	region_free(r);
}

/*
 * Three readers hold the lock; a writer arrives and waits. While it waits
 * (its offset visible), new readers keep trying and must all fail; the
 * writer must not get the lock before the last holder leaves.
 */
struct drain_shared {
	struct fl_region *r;
	atomic_int holding, release, writer_in, writer_may_leave;
	atomic_int early;	/* writer got in while a reader still held */
};

static void *drain_reader(void *arg)
{
	struct drain_shared *D = arg;

	if (!region_start_read(D->r))
		return (void *)1;
	atomic_fetch_add(&D->holding, 1);
	while (!atomic_load(&D->release))
		sched_yield();
	D->early += atomic_load(&D->writer_in);
	region_end_read(D->r);
	return NULL;
}

static void *drain_writer(void *arg)
{
	struct drain_shared *D = arg;

	region_write_lock(D->r);
	atomic_store(&D->writer_in, 1);
	while (!atomic_load(&D->writer_may_leave))
		sched_yield();
	region_write_unlock(D->r);
	return NULL;
}

static void test_ref_drain(void)
{
	static struct drain_shared D;
	pthread_t rd[3], wr;
	unsigned long tries = 0, admitted = 0;
	void *rv;
	int failed = 0;

	D.r = region_alloc(1, NULL);
	region_attach(D.r);
	for (int i = 0; i < 3; i++)
		pthread_create(&rd[i], NULL, drain_reader, &D);
	while (atomic_load(&D.holding) < 3)
		sched_yield();
	pthread_create(&wr, NULL, drain_writer, &D);
	while (refcnt(D.r) < REF_WRITER)
		sched_yield();
	/* the writer waits; newcomers keep trying and must not get in */
	for (tries = 0; tries < 100000; tries++)
		if (region_start_read(D.r)) {
			admitted++;
			region_end_read(D.r);
		}
	tap_ok(!admitted && !atomic_load(&D.writer_in) && refcnt(D.r) == REF_WRITER + REF_ATTACHED + 3,
	       "writer waiting on 3 readers: %lu new readers tried, %lu admitted (no starvation)",
	       tries, admitted);
	atomic_store(&D.release, 1);
	for (int i = 0; i < 3; i++) {
		pthread_join(rd[i], &rv);
		failed += rv != NULL;
	}
	while (!atomic_load(&D.writer_in))
		sched_yield();
	tap_ok(!failed && !atomic_load(&D.early) && refcnt(D.r) == REF_WRITER + REF_ATTACHED,
	       "the writer gets the lock only after the last reader left (early %d)",
	       atomic_load(&D.early));
	atomic_store(&D.writer_may_leave, 1);
	pthread_join(wr, NULL);
	tap_ok(refcnt(D.r) == REF_ATTACHED && region_start_read(D.r),
	       "writer unlocked: readers admitted again");
	region_end_read(D.r);
	region_free(D.r);
}

/* readers check a two-word invariant the writer breaks only under its lock */
struct stress_shared {
	struct fl_region *r;
	int x, y;
	atomic_bool stop;
	atomic_ulong reads, refused, broken;
};

static void *stress_reader(void *arg)
{
	struct stress_shared *T = arg;
	unsigned long reads = 0, refused = 0, broken = 0;

	while (!atomic_load_explicit(&T->stop, memory_order_relaxed)) {
		if (!region_start_read(T->r)) {
			refused++;
			sched_yield();
			continue;
		}
		broken += T->x != T->y;
		reads++;
		region_end_read(T->r);
		if (!(reads & 255))
			sched_yield();
	}
	atomic_fetch_add(&T->reads, reads);
	atomic_fetch_add(&T->refused, refused);
	atomic_fetch_add(&T->broken, broken);
	return NULL;
}

static void test_ref_stress(void)
{
	static struct stress_shared T;
	pthread_t th[3];
	int rounds = 500;

	T.r = region_alloc(1, NULL);
	region_attach(T.r);
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, stress_reader, &T);
	for (int i = 0; i < rounds; i++) {
		region_write_lock(T.r);
		T.x = i + 1;
		sched_yield();
		T.y = i + 1;
		region_write_unlock(T.r);
		if (!(i & 7))
			sched_yield();
	}
	atomic_store(&T.stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	tap_ok(atomic_load(&T.broken) == 0 && refcnt(T.r) == REF_ATTACHED,
	       "stress: %d write sections, %lu read sections (%lu refused), invariant broken %lu times",
	       rounds, atomic_load(&T.reads), atomic_load(&T.refused), atomic_load(&T.broken));
	region_free(T.r);
}

/*
 * Seed 001's hard case: a reader looked region r up (under RCU, long ago)
 * and kept the pointer and generation; meanwhile r was unpublished, freed,
 * and region_alloc() handed the same object out for a new region.
 */
static void test_stale_reuse(void)
{
	struct fl_region *r, *r2;
	uintptr_t addr = 0x20000000 + PG;
	uint64_t gen;
	bool stale = true, ok;

	r = mkregion(0x20000000, 0x20010000);
	gen = r->gen;
	ok = region_start_read_checked(r, addr, gen, &stale);
	tap_ok(ok && !stale, "checked read lock on a live region with its generation: taken");
	region_end_read(r);

	/* the writer's way out: lock, detach, free (after a grace period) */
	region_write_lock(r);
	region_detach_locked(r);
	region_free(r);
	ok = region_start_read_checked(r, addr, gen, &stale);
	tap_ok(!ok && !stale && refcnt(r) == REF_DETACHED,
	       "freed, not yet reused: refused as detached, refcnt untouched");

	/* reuse for a region that covers the very same address */
	r2 = region_alloc(1, NULL);
	if (r2 != r) {
		for (int i = 0; i < 3; i++)
			tap_skip("region_alloc did not hand the freed object back (pool order)");
		region_free(r2);
		return;
	}
	r2->start = 0x20000000;
	r2->end = 0x20010000;
	region_attach(r2);
	tap_ok(r2 == r && r2->gen != gen, "region_alloc reuses the freed object with a new generation (%llu -> %llu)",
	       (unsigned long long)gen, (unsigned long long)r2->gen);
	ok = region_start_read_checked(r, addr, gen, &stale);
	tap_ok(!ok && stale && refcnt(r2) == REF_ATTACHED,
	       "stale pointer, same range, old generation: refused with *stale, reference dropped (refcnt %u)",
	       refcnt(r2));
	/* reused for another range: the range check catches it too */
	region_write_lock(r2);
	region_detach_locked(r2);
	region_free(r2);
	r2 = region_alloc(1, NULL);
	r2->start = 0x30000000;
	r2->end = 0x30001000;
	region_attach(r2);
	ok = region_start_read_checked(r2, addr, r2->gen, &stale);
	tap_ok(!ok && stale && refcnt(r2) == REF_ATTACHED,
	       "reused for another range: an address outside it is refused with *stale");
	region_write_lock(r2);
	region_detach_locked(r2);
	region_free(r2);
}

/*
 * The runtime's own structs with cache-line aligned members (counter
 * blocks, far memory's hot words) are allocated that aligned: calloc()
 * gives 16 bytes, and an access through a misaligned pointer is undefined
 * (UBSan saw it in the shim, whose allocator is glibc's).
 */
static void test_runtime_alignment(void)
{
	struct fl_runtime_opts o;
	struct fl_runtime *rt = NULL;
	struct fl_store *st = NULL;
	int ret;

	fl_runtime_opts_init(&o);
	if (!fl_store_memory_create(&st)) {
		o.store = st;
		o.budget = 1 << 20;
	}
	ret = fl_runtime_create(&o, &rt);
	if (ret || !rt->far) {
		tap_skip("no far-memory runtime here: %s", fl_strerror(ret));
	} else {
		tap_ok(!((uintptr_t)rt % _Alignof(struct fl_runtime)) &&
		       !((uintptr_t)rt->far % _Alignof(struct fl_far)) &&
		       !((uintptr_t)rt->far->st % _Alignof(struct fl_counters)) &&
		       (!rt->wp || !((uintptr_t)rt->wp % 64)),
		       "runtime structs aligned as their members need (%p %p %p %p)",
		       (void *)rt, (void *)rt->far, (void *)rt->far->st, (void *)rt->wp);
	}
	if (rt)
		fl_runtime_destroy(rt);
	if (st)
		fl_store_destroy(st);
}

int main(void)
{
	const char *seed = getenv("FL_TEST_SEED");

	if (seed)
		rng_state = strtoull(seed, NULL, 0) | 1;
	tap_plan(33);
	tap_diag("seed 0x%llx (FL_TEST_SEED to repeat)", (unsigned long long)rng_state);
	test_big_index();
	test_seq_single();
	test_seq_threads();
	test_ref_basic();
	test_ref_drain();
	test_ref_stress();
	test_stale_reuse();
	region_pool_drain();
	test_runtime_alignment();
	return tap_done();
}
