/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-race - index writers racing faults. Writer threads register,
 * unregister and resize (grow and shrink) regions, made both ways
 * (fl_region_map, and the test's own mmap + fl_region_register), while
 * application threads fault on and verify pages of the same and the
 * neighbouring regions. Every region is a copy or fill pager over a shared
 * source at an offset that differs per slot and per incarnation, so a page
 * installed from a stale region (an older incarnation at the same address,
 * a neighbour) is detected by its bytes.
 *
 * Ownership: each slot has a descriptor (alive, address, safe length)
 * under a per-slot rwlock. Application threads hold it for reading while
 * they access pages below the safe length; a writer changes the
 * descriptor under the write lock and only then calls into the runtime:
 * it lowers the safe length before shrinking, raises it after growing,
 * and marks the slot dead before unregistering. So no page is touched
 * after its region lost it, while the runtime's writer protocol still
 * runs concurrently with faults on the same region (below the safe
 * length) and on every other region.
 *
 * Duration: 6 s, or argv[1] / FL_RACE_SECONDS seconds (suite 'soak' runs a
 * longer one). The abort counters of every tier are reported; the test
 * requires that tier 1 aborted on the sequence count and that tier 3
 * served faults, and that nothing was lost: every byte right, every
 * region accounted for.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#include "common.h"

#define NSLOTS		16
#define NWRITERS	2
#define NAPPS		3
#define MAXPG		256
#define SRC_PG		(MAXPG + 64)

static struct fl_runtime *rt;
static uint8_t *src;

struct slot {
	pthread_rwlock_t lock;
	/* under lock */
	bool alive;
	bool owned;		/* fl_region_map; else our mmap of MAXPG pages */
	uint8_t *addr;
	size_t safe_pg;		/* pages the application may touch */
	const uint8_t *want;	/* expected bytes of page 0 */
	/* writer's own */
	size_t len_pg;
	unsigned int incarnation;
};

static struct slot slots[NSLOTS];
static atomic_bool stop;
static atomic_ulong pages_checked, bad_pages, ops[6], op_fail;
enum { OP_MAP, OP_REG, OP_UNREG, OP_GROW, OP_SHRINK, OP_GROW_REFUSED };
static const char *const op_names[] = { "map", "register", "unregister", "grow", "shrink",
					 "grow refused (no room)" };

static int fill_from(void *arg, uint64_t offset, void *dst, size_t len)
{
	memcpy(dst, (const uint8_t *)arg + offset, len);
	return 0;
}

static uint64_t xs(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/* ---- writers ---- */

static void slot_create(struct slot *s, size_t idx, uint64_t *rng)
{
	struct fl_region_opts o;
	size_t npg = 16 + xs(rng) % (MAXPG - 16);
	const uint8_t *base = src + ((idx * 7 + s->incarnation * 13) % 64) * TPG;
	bool own = xs(rng) & 1;
	void *p = NULL;
	int ret;

	fl_region_opts_init(&o);
	if (xs(rng) % 3 == 0) {
		o.pager = FL_PAGER_FILL;	/* blocking: tier 2 */
		o.fill = fill_from;
		o.fill_arg = (void *)base;
	} else {
		o.pager = FL_PAGER_COPY;
		o.src = base;
		o.src_len = MAXPG * TPG;
	}
	o.fault_around = xs(rng) & 1 ? TPG : FL_FAULT_AROUND_ADAPTIVE;
	if (own) {
		p = mmap(NULL, MAXPG * TPG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		ret = p == MAP_FAILED ? -ENOMEM : fl_region_register(rt, p, npg * TPG, &o);
		if (ret && p != MAP_FAILED)
			munmap(p, MAXPG * TPG);
	} else {
		ret = fl_region_map(rt, npg * TPG, &o, &p);
	}
	if (ret) {
		atomic_fetch_add(&op_fail, 1);
		tap_diag("slot %zu: %s failed: %s", idx, own ? "register" : "map", fl_strerror(ret));
		return;
	}
	atomic_fetch_add(&ops[own ? OP_REG : OP_MAP], 1);
	s->len_pg = npg;
	pthread_rwlock_wrlock(&s->lock);
	s->alive = true;
	s->owned = !own;
	s->addr = p;
	s->safe_pg = npg;
	s->want = base;
	pthread_rwlock_unlock(&s->lock);
}

static void slot_change(struct slot *s, size_t idx, uint64_t *rng)
{
	unsigned int what = xs(rng) % 8;
	size_t npg;
	int ret;

	if (what < 2) {
		/* dead first: no application thread touches it from now on */
		pthread_rwlock_wrlock(&s->lock);
		s->alive = false;
		s->safe_pg = 0;
		pthread_rwlock_unlock(&s->lock);
		ret = fl_region_unregister(rt, s->addr);
		if (ret) {
			atomic_fetch_add(&op_fail, 1);
			tap_diag("slot %zu: unregister: %s", idx, fl_strerror(ret));
		}
		if (!s->owned)
			munmap(s->addr, MAXPG * TPG);
		atomic_fetch_add(&ops[OP_UNREG], 1);
		s->incarnation++;
		return;
	}
	if (what < 5 && s->len_pg > 16) {
		npg = 8 + xs(rng) % (s->len_pg - 8);
		pthread_rwlock_wrlock(&s->lock);
		s->safe_pg = npg;
		pthread_rwlock_unlock(&s->lock);
		ret = fl_region_resize(rt, s->addr, npg * TPG);
		if (ret) {
			atomic_fetch_add(&op_fail, 1);
			tap_diag("slot %zu: shrink to %zu pages: %s", idx, npg, fl_strerror(ret));
			return;
		}
		s->len_pg = npg;
		atomic_fetch_add(&ops[OP_SHRINK], 1);
		return;
	}
	if (s->len_pg < MAXPG) {
		npg = s->len_pg + 1 + xs(rng) % (MAXPG - s->len_pg);
		ret = fl_region_resize(rt, s->addr, npg * TPG);
		if (ret == -ENOMEM || ret == -EEXIST) {
			/* a map region's neighbour took the room: legitimate */
			if (!s->owned) {
				atomic_fetch_add(&op_fail, 1);
				tap_diag("slot %zu: grow of a registered region: %s", idx, fl_strerror(ret));
			}
			atomic_fetch_add(&ops[OP_GROW_REFUSED], 1);
			return;
		}
		if (ret) {
			atomic_fetch_add(&op_fail, 1);
			tap_diag("slot %zu: grow to %zu pages: %s", idx, npg, fl_strerror(ret));
			return;
		}
		s->len_pg = npg;
		pthread_rwlock_wrlock(&s->lock);
		s->safe_pg = npg;
		pthread_rwlock_unlock(&s->lock);
		atomic_fetch_add(&ops[OP_GROW], 1);
	}
}

static void *writer(void *arg)
{
	size_t w = (uintptr_t)arg;
	uint64_t rng = 0x1234567ull + w * 0x9e3779b97f4a7c15ull;

	while (!atomic_load(&stop)) {
		size_t idx = w + NWRITERS * (xs(&rng) % (NSLOTS / NWRITERS));
		struct slot *s = &slots[idx];

		if (!s->alive)
			slot_create(s, idx, &rng);
		else
			slot_change(s, idx, &rng);
		if (xs(&rng) % 4 == 0)
			ms_sleep(1);	/* let faults pile up between writes */
	}
	return NULL;
}

/* ---- application threads ---- */

static void *app(void *arg)
{
	uint64_t rng = 0xabcdef12ull + (uintptr_t)arg * 0xbf58476d1ce4e5b9ull;
	unsigned long checked = 0, bad = 0;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct slot *s = &slots[xs(&rng) % NSLOTS];

		pthread_rwlock_rdlock(&s->lock);
		if (s->alive && s->safe_pg) {
			for (int k = 0; k < 8; k++) {
				size_t pg = xs(&rng) % s->safe_pg;

				if (memcmp(s->addr + pg * TPG, s->want + pg * TPG, TPG)) {
					if (bad < 5)
						tap_diag("slot %zu page %zu: wrong bytes",
							 (size_t)(s - slots), pg);
					bad++;
				}
				checked++;
			}
		}
		pthread_rwlock_unlock(&s->lock);
	}
	atomic_fetch_add(&pages_checked, checked);
	atomic_fetch_add(&bad_pages, bad);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *env = getenv("FL_RACE_SECONDS");
	double secs = argc > 1 ? atof(argv[1]) : env ? atof(env) : 6;
	pthread_t wt[NWRITERS], at[NAPPS];
	struct fl_stats st;
	size_t live = 0, bad = 0;
	int count;

	if (secs <= 0)
		secs = 6;
	rt = tap_runtime(NULL);
	tap_plan(6);
	src = malloc(SRC_PG * TPG);
	pat_fill(51, 0, src, SRC_PG * TPG);
	for (int i = 0; i < NSLOTS; i++)
		pthread_rwlock_init(&slots[i].lock, NULL);
	tap_diag("%d writers, %d application threads, %d slots, %.0f s", NWRITERS, NAPPS, NSLOTS, secs);

	for (uintptr_t i = 0; i < NWRITERS; i++)
		pthread_create(&wt[i], NULL, writer, (void *)i);
	for (uintptr_t i = 0; i < NAPPS; i++)
		pthread_create(&at[i], NULL, app, (void *)i);
	ms_sleep((unsigned int)(secs * 1000));
	atomic_store(&stop, true);
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(wt[i], NULL);
	for (int i = 0; i < NAPPS; i++)
		pthread_join(at[i], NULL);

	for (int i = 0; i < 6; i++)
		tap_diag("%-24s %lu", op_names[i], atomic_load(&ops[i]));
	tap_ok(atomic_load(&bad_pages) == 0 && atomic_load(&pages_checked) > 0,
	       "%lu page reads verified while writers raced, %lu wrong",
	       atomic_load(&pages_checked), atomic_load(&bad_pages));
	tap_ok(atomic_load(&op_fail) == 0 && atomic_load(&ops[OP_UNREG]) > 0 &&
	       atomic_load(&ops[OP_GROW]) > 0 && atomic_load(&ops[OP_SHRINK]) > 0,
	       "every writer call succeeded (%lu failed)", atomic_load(&op_fail));

	/* nothing lost: the live regions are all there, every page right */
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *s = &slots[i];

		if (!s->alive)
			continue;
		live++;
		bad += memcmp(s->addr, s->want, s->safe_pg * TPG) != 0;
	}
	count = fl_region_count(rt);
	stats_quiet(rt, &st);
	tap_ok(count == (int)live && !bad &&
	       st.regions_registered - st.regions_unregistered == live,
	       "nothing lost: %d regions (%zu live slots), registered %llu - unregistered %llu, %zu bad",
	       count, live, (unsigned long long)st.regions_registered,
	       (unsigned long long)st.regions_unregistered, bad);

	tap_diag("faults %llu installed %llu dup %llu unknown %llu", (unsigned long long)st.faults,
		 (unsigned long long)st.pages_installed, (unsigned long long)st.faults_dup,
		 (unsigned long long)st.faults_unknown);
	tap_diag("tier 1: attempt %llu ok %llu abort_seq_odd %llu abort_seq_changed %llu abort_blocking %llu",
		 (unsigned long long)st.spf_attempt, (unsigned long long)st.spf_ok,
		 (unsigned long long)st.spf_abort_seq_odd, (unsigned long long)st.spf_abort_seq_changed,
		 (unsigned long long)st.spf_abort_blocking);
	tap_diag("tier 2: attempt %llu ok %llu abort_locked %llu abort_stale %llu",
		 (unsigned long long)st.region_attempt, (unsigned long long)st.region_ok,
		 (unsigned long long)st.region_abort_locked, (unsigned long long)st.region_abort_stale);
	tap_diag("tier 3: attempt %llu ok %llu", (unsigned long long)st.global_attempt,
		 (unsigned long long)st.global_ok);
	tap_diag("kernel: eexist %llu eagain %llu parked_retries %llu range_gone %llu ioctl_errors %llu",
		 (unsigned long long)st.copy_eexist, (unsigned long long)st.copy_eagain,
		 (unsigned long long)st.parked_retries, (unsigned long long)st.range_gone,
		 (unsigned long long)st.ioctl_errors);
	tap_diag("writers: index_writes %llu grace_periods %llu resized %llu",
		 (unsigned long long)st.index_writes, (unsigned long long)st.grace_periods,
		 (unsigned long long)st.regions_resized);
	tap_ok(st.spf_abort_seq_odd + st.spf_abort_seq_changed > 0 && st.global_ok > 0,
	       "tier 1 aborted on the sequence count (%llu odd, %llu changed) and tier 3 served %llu faults",
	       (unsigned long long)st.spf_abort_seq_odd, (unsigned long long)st.spf_abort_seq_changed,
	       (unsigned long long)st.global_ok);
	tap_ok(st.ioctl_errors == 0 && st.fill_errors == 0,
	       "no uffd ioctl error (%llu), no fill error (%llu)",
	       (unsigned long long)st.ioctl_errors, (unsigned long long)st.fill_errors);

	for (int i = 0; i < NSLOTS; i++) {
		struct slot *s = &slots[i];

		if (!s->alive)
			continue;
		fl_region_unregister(rt, s->addr);
		if (!s->owned)
			munmap(s->addr, MAXPG * TPG);
	}
	TAP_EQ(fl_region_count(rt), 0);
	fl_runtime_destroy(rt);
	free(src);
	return tap_done();
}
