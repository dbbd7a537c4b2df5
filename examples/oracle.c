/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faultline-oracle - a race oracle for the fault path, after the kernel's
 * uffd-stress "bounce" test.
 *
 * Two counter regions (one COPY pager, served speculatively on tier 1; one
 * FILL pager, served under the region read lock on tier 2) hold one record
 * per page: a futex lock word, an owner and a counter. Program threads pick
 * random pages, take the page's lock (the lock word lives in managed memory,
 * so the first touch of a page may be a fault, and a FUTEX_WAIT probe on an
 * absent page is a kernel-mode fault), check they own it alone, increment
 * the counter and keep their own tally. Every round the main thread stops
 * them, snapshots both regions (faulting in what was never touched),
 * checks every counter against the tallies, unregisters the regions and
 * maps new ones whose pagers serve the snapshot: the next round faults every
 * page it touches again, and the counters must come through intact.
 * Meanwhile writer threads keep the index busy: they map, touch, check,
 * resize and unregister small regions of their own, and grow and shrink the
 * counter regions under the program threads' feet.
 *
 *   faultline-oracle [--seconds S] [--threads N] [--handlers M]
 *                    [--writers W] [--pages P] [--seed X] [--faults F]
 *                    [--tiers adaptive|spf|region|global] [--budget BYTES]
 *                    [--require-aborts 0|1]
 *
 * Stops after S seconds, or once F faults were handled if F is given. Exit
 * status 0 when every counter and every byte checked was right (and, with
 * --require-aborts 1, some tier abort path was taken), 1 if not, 2 on bad
 * usage, 77 when no userfaultfd can be opened. --budget is accepted for
 * the far-memory evictor to come and ignored until then.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <faultline.h>

#define NREG 2			/* counter regions: COPY, FILL */
#define MAX_THREADS 64
#define MAX_WRITERS 16
#define SLACK 16		/* pages past the counters: writers shrink and regrow them */

/* the record at the start of every counter page */
struct rec {
	_Atomic uint32_t lock;	/* 0 free, 1 locked, 2 locked with waiters */
	_Atomic uint32_t owner;
	uint64_t count;
};

static size_t page_size;
static unsigned int npages = 128;	/* per counter region */
static unsigned int nthreads = 4, nhandlers = 2, nwriters = 2;
static double seconds = 10;
static uint64_t seed, want_faults;
static enum fl_tier_policy tiers = FL_TIERS_ADAPTIVE;
static long require_aborts;

static struct fl_runtime *rt;

/* counter regions: base addresses, guarded by regions_lock against writers'
 * resizes; program threads read them only between round barriers */
static pthread_mutex_t regions_lock = PTHREAD_MUTEX_INITIALIZER;
static char *base[NREG];
static size_t cur_len[NREG];		/* their lengths now */
static char *snap[2][NREG];		/* double-buffered snapshots: the pagers' sources */
static int snap_cur;			/* the buffer the live regions are served from */

static pthread_barrier_t round_start, round_end;
static _Atomic bool round_stop, all_stop;

static uint64_t *tally[MAX_THREADS];	/* per thread, NREG * npages */
static _Atomic uint64_t errors, lock_violations, pattern_errors, futex_probes;
static _Atomic uint64_t writer_ops, writer_resizes, writer_resize_refused;

static long futex(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)w, op, val, ts, NULL, 0);
}

/* Drepper's mutex, "Futexes are tricky", take 3 */
static void rec_lock(struct rec *r)
{
	uint32_t c = 0;

	if (atomic_compare_exchange_strong(&r->lock, &c, 1))
		return;
	if (c != 2)
		c = atomic_exchange(&r->lock, 2);
	while (c != 0) {
		futex(&r->lock, FUTEX_WAIT, 2, NULL);
		c = atomic_exchange(&r->lock, 2);
	}
}

static void rec_unlock(struct rec *r)
{
	if (atomic_fetch_sub(&r->lock, 1) != 1) {
		atomic_store(&r->lock, 0);
		futex(&r->lock, FUTEX_WAKE, 1, NULL);
	}
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* FILL pager: serve the snapshot; now and then slowly, to widen windows */
static int fill_from_snap(void *arg, uint64_t off, void *dst, size_t len)
{
	const char *src = arg;
	size_t have = (size_t)npages * page_size;
	size_t n = off >= have ? 0 : have - off < len ? have - off : len;

	memcpy(dst, src + off, n);
	memset((char *)dst + n, 0, len - n);	/* the slack reads zeros */
	if (((off / page_size) & 63) == 7)
		usleep(50);
	return 0;
}

static int map_counters(int buf)
{
	struct fl_region_opts ro;
	int ret;

	for (int i = 0; i < NREG; i++) {
		fl_region_opts_init(&ro);
		if (i == 0) {
			ro.pager = FL_PAGER_COPY;
			ro.src = snap[buf][i];
			ro.src_len = (size_t)npages * page_size;
		} else {
			ro.pager = FL_PAGER_FILL;
			ro.fill = fill_from_snap;
			ro.fill_arg = snap[buf][i];
		}
		cur_len[i] = (size_t)(npages + SLACK) * page_size;
		ret = fl_region_map(rt, cur_len[i], &ro, (void **)&base[i]);
		if (ret)
			return ret;
	}
	return 0;
}

static void *program_thread(void *arg)
{
	unsigned int me = (unsigned int)(uintptr_t)arg;
	uint64_t s = seed ^ (0x9e3779b97f4a7c15ull * (me + 1));
	uint64_t *mine = tally[me];

	for (;;) {
		pthread_barrier_wait(&round_start);
		if (atomic_load(&all_stop))
			break;
		while (!atomic_load_explicit(&round_stop, memory_order_relaxed)) {
			uint64_t x = xorshift(&s);
			unsigned int reg = (unsigned int)(x & 1);
			unsigned int pg = (unsigned int)((x >> 8) % npages);
			struct rec *r = (struct rec *)(base[reg] + (size_t)pg * page_size);

			if (((x >> 40) & 15) == 0) {
				/* the kernel reads the word: a kernel-mode fault if the
				 * page is absent; the value never matches: EAGAIN */
				struct timespec zero = { 0, 0 };

				futex(&r->lock, FUTEX_WAIT, 0xdeadbeefu, &zero);
				atomic_fetch_add_explicit(&futex_probes, 1, memory_order_relaxed);
			}
			rec_lock(r);
			atomic_store_explicit(&r->owner, me + 1, memory_order_relaxed);
			r->count++;
			if (atomic_load_explicit(&r->owner, memory_order_relaxed) != me + 1)
				atomic_fetch_add(&lock_violations, 1);
			rec_unlock(r);
			mine[reg * npages + pg]++;
		}
		pthread_barrier_wait(&round_end);
	}
	return NULL;
}

/* a writer's own small regions: map, touch, check, resize, unregister */
static const char *pattern;
static size_t pattern_len;

static bool check_pattern(const char *p, size_t from, size_t to)
{
	for (size_t o = from; o < to; o += page_size / 4)
		if (p[o] != (o < pattern_len ? pattern[o] : 0))
			return false;
	return true;
}

static void *writer_thread(void *arg)
{
	uint64_t s = seed ^ (0xc2b2ae3d27d4eb4full * ((uintptr_t)arg + 1));

	while (!atomic_load(&all_stop)) {
		uint64_t x = xorshift(&s);
		struct fl_region_opts ro;
		char *p;
		size_t n = 1 + (x >> 8) % 8, len = n * page_size;

		atomic_fetch_add(&writer_ops, 1);
		if ((x & 3) == 0) {
			/* shrink a counter region's slack and grow it back, under
			 * the program threads' feet: every resize replaces the
			 * region object they are faulting on */
			int i = (int)((x >> 4) & 1), ret;
			size_t full = (size_t)(npages + SLACK) * page_size;
			size_t cut = (1 + (x >> 12) % SLACK) * page_size;

			pthread_mutex_lock(&regions_lock);
			if (cur_len[i] - cut >= (size_t)npages * page_size) {
				ret = fl_region_resize(rt, base[i], cur_len[i] - cut);
				if (ret)
					atomic_fetch_add(&errors, 1);
				else
					cur_len[i] -= cut;
			}
			ret = fl_region_resize(rt, base[i], full);
			if (ret == 0) {
				cur_len[i] = full;
				atomic_fetch_add(&writer_resizes, 1);
			}
			else if (ret == -ENOMEM || ret == -EEXIST)
				/* something else was mapped in the hole: stay short */
				atomic_fetch_add(&writer_resize_refused, 1);
			else
				atomic_fetch_add(&errors, 1);
			pthread_mutex_unlock(&regions_lock);
			continue;
		}
		fl_region_opts_init(&ro);
		ro.pager = FL_PAGER_COPY;
		ro.src = pattern;
		ro.src_len = pattern_len;
		if (fl_region_map(rt, len, &ro, (void **)&p)) {
			atomic_fetch_add(&errors, 1);
			continue;
		}
		if (!check_pattern(p, 0, len))
			atomic_fetch_add(&pattern_errors, 1);
		if (fl_region_resize(rt, p, 2 * len) == 0) {
			if (!check_pattern(p, 0, 2 * len))
				atomic_fetch_add(&pattern_errors, 1);
			if (fl_region_resize(rt, p, len))
				atomic_fetch_add(&errors, 1);
		}
		if (fl_region_unregister(rt, p))
			atomic_fetch_add(&errors, 1);
	}
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* snapshot the live regions into the other buffer and check every counter */
static uint64_t snapshot_and_check(int into, uint64_t *total)
{
	uint64_t bad = 0;

	*total = 0;
	for (int i = 0; i < NREG; i++) {
		memcpy(snap[into][i], base[i], (size_t)npages * page_size);
		for (unsigned int pg = 0; pg < npages; pg++) {
			const struct rec *r = (const struct rec *)(snap[into][i] + (size_t)pg * page_size);
			uint64_t want = 0;

			for (unsigned int t = 0; t < nthreads; t++)
				want += tally[t][i * npages + pg];
			if (r->count != want || atomic_load(&r->lock) != 0) {
				if (bad < 5)
					fprintf(stderr, "oracle: region %d page %u: count %" PRIu64
						" expected %" PRIu64 ", lock %u\n", i, pg, r->count,
						want, atomic_load(&r->lock));
				bad++;
			}
			*total += r->count;
		}
	}
	return bad;
}

static long num(const char *s, const char *what, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 0);
	if (errno || *end || v < lo || v > hi) {
		fprintf(stderr, "faultline-oracle: bad %s '%s' (expected %ld..%ld)\n", what, s, lo, hi);
		exit(2);
	}
	return v;
}

static void usage(void)
{
	fprintf(stderr, "usage: faultline-oracle [--seconds S] [--threads N] [--handlers M] "
		"[--writers W] [--pages P] [--seed X] [--faults F] "
		"[--tiers adaptive|spf|region|global] [--budget BYTES] [--require-aborts 0|1]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct fl_runtime_opts o;
	struct fl_stats st = { .size = sizeof(st) };
	pthread_t prog[MAX_THREADS], wr[MAX_WRITERS];
	uint64_t rounds = 0, bad = 0, total = 0;
	double t0, t_end;
	bool budget = false;
	char *pbuf;
	int ret;

	seed = (uint64_t)time(NULL);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--seconds"))
			seconds = (double)num(v, "seconds", 1, 1000000);
		else if (!strcmp(a, "--threads"))
			nthreads = (unsigned int)num(v, "threads", 1, MAX_THREADS);
		else if (!strcmp(a, "--handlers"))
			nhandlers = (unsigned int)num(v, "handlers", 1, FL_MAX_HANDLERS);
		else if (!strcmp(a, "--writers"))
			nwriters = (unsigned int)num(v, "writers", 0, MAX_WRITERS);
		else if (!strcmp(a, "--pages"))
			npages = (unsigned int)num(v, "pages", 2, 1 << 20);
		else if (!strcmp(a, "--seed"))
			seed = (uint64_t)num(v, "seed", 1, LONG_MAX);
		else if (!strcmp(a, "--require-aborts"))
			require_aborts = num(v, "require-aborts", 0, 1);
		else if (!strcmp(a, "--faults"))
			want_faults = (uint64_t)num(v, "faults", 1, LONG_MAX);
		else if (!strcmp(a, "--budget")) {
			num(v, "budget", 0, LONG_MAX);
			budget = true;
		} else if (!strcmp(a, "--tiers")) {
			if (!strcmp(v, "adaptive"))
				tiers = FL_TIERS_ADAPTIVE;
			else if (!strcmp(v, "spf"))
				tiers = FL_TIERS_SPF;
			else if (!strcmp(v, "region"))
				tiers = FL_TIERS_REGION;
			else if (!strcmp(v, "global"))
				tiers = FL_TIERS_GLOBAL;
			else
				usage();
		} else {
			usage();
		}
	}
	if (budget)
		printf("faultline-oracle: --budget: not supported yet (far memory has not landed); ignored\n");
	if (!seed)
		seed = 1;
	page_size = (size_t)sysconf(_SC_PAGESIZE);

	fl_runtime_opts_init(&o);
	o.handlers = nhandlers;
	o.flags = FL_RT_NO_PIN;
	o.tiers = tiers;
	ret = fl_runtime_create(&o, &rt);
	if (ret == -EPERM || ret == -ENOSYS || ret == -EACCES) {
		printf("faultline-oracle: skipped: cannot open a userfaultfd here: %s\n", fl_strerror(ret));
		return 77;
	}
	if (ret) {
		fprintf(stderr, "faultline-oracle: fl_runtime_create: %s\n", fl_strerror(ret));
		return 1;
	}

	pattern_len = 8 * page_size + page_size / 2;	/* a partial last page */
	pbuf = malloc(pattern_len);
	pattern = pbuf;
	for (int b = 0; b < 2; b++)
		for (int i = 0; i < NREG; i++)
			snap[b][i] = calloc(npages, page_size);
	for (unsigned int t = 0; t < nthreads; t++)
		tally[t] = calloc((size_t)NREG * npages, sizeof(uint64_t));
	if (!pbuf || !snap[1][NREG - 1] || !tally[nthreads - 1]) {
		fprintf(stderr, "faultline-oracle: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < pattern_len; i++)
		pbuf[i] = (char)(1 + (i * 131) % 251);
	snap_cur = 0;
	ret = map_counters(snap_cur);
	if (ret) {
		fprintf(stderr, "faultline-oracle: fl_region_map: %s\n", fl_strerror(ret));
		return 1;
	}

	printf("faultline-oracle: seed %" PRIu64 ", %u program threads, %u handlers, %u writers, "
	       "%u pages x %d regions, %.0f s%s\n", seed, nthreads, nhandlers, nwriters,
	       npages, NREG, seconds, want_faults ? " (or the fault target)" : "");
	fflush(stdout);

	pthread_barrier_init(&round_start, NULL, nthreads + 1);
	pthread_barrier_init(&round_end, NULL, nthreads + 1);
	for (unsigned int t = 0; t < nthreads; t++)
		pthread_create(&prog[t], NULL, program_thread, (void *)(uintptr_t)t);
	for (unsigned int w = 0; w < nwriters; w++)
		pthread_create(&wr[w], NULL, writer_thread, (void *)(uintptr_t)w);

	t0 = now();
	t_end = t0 + seconds;
	for (;;) {
		int next = !snap_cur;
		uint64_t b;

		atomic_store(&round_stop, false);
		pthread_barrier_wait(&round_start);
		usleep(20000 + (unsigned int)(xorshift(&seed) % 80000));
		atomic_store(&round_stop, true);
		pthread_barrier_wait(&round_end);

		/* program threads parked: snapshot, check, and bounce */
		pthread_mutex_lock(&regions_lock);
		b = snapshot_and_check(next, &total);
		bad += b;
		rounds++;
		for (int i = 0; i < NREG; i++)
			if (fl_region_unregister(rt, base[i]))
				atomic_fetch_add(&errors, 1);
		snap_cur = next;
		ret = map_counters(snap_cur);
		pthread_mutex_unlock(&regions_lock);
		if (ret) {
			fprintf(stderr, "faultline-oracle: fl_region_map: %s\n", fl_strerror(ret));
			atomic_fetch_add(&errors, 1);
			break;
		}
		fl_stats_get(rt, &st);
		if (b || now() >= t_end || (want_faults && st.faults >= want_faults))
			break;
	}
	atomic_store(&all_stop, true);
	pthread_barrier_wait(&round_start);
	for (unsigned int t = 0; t < nthreads; t++)
		pthread_join(prog[t], NULL);
	for (unsigned int w = 0; w < nwriters; w++)
		pthread_join(wr[w], NULL);

	fl_stats_get(rt, &st);
	printf("rounds %" PRIu64 " in %.1f s; increments verified %" PRIu64 " (%u x %d counters), "
	       "bad counters %" PRIu64 ", lock violations %" PRIu64 "\n",
	       rounds, now() - t0, total, npages, NREG, bad, atomic_load(&lock_violations));
	printf("faults %" PRIu64 " (FUTEX_WAIT probes of lock words %" PRIu64 "), pages installed %" PRIu64
	       ", duplicates %" PRIu64 ", unknown %" PRIu64 "; in the faulting thread %" PRIu64
	       " (retries %" PRIu64 ")\n",
	       st.faults, atomic_load(&futex_probes), st.pages_installed, st.faults_dup,
	       st.faults_unknown, st.faults_thread, st.thread_retries);
	printf("tier 1: attempts %" PRIu64 ", ok %" PRIu64 ", abort seq odd %" PRIu64
	       ", abort seq changed %" PRIu64 ", to tier 2 %" PRIu64 "\n",
	       st.spf_attempt, st.spf_ok, st.spf_abort_seq_odd, st.spf_abort_seq_changed,
	       st.spf_abort_blocking);
	printf("tier 2: attempts %" PRIu64 ", ok %" PRIu64 ", abort locked %" PRIu64
	       ", abort stale %" PRIu64 "\n",
	       st.region_attempt, st.region_ok, st.region_abort_locked, st.region_abort_stale);
	printf("tier 3: attempts %" PRIu64 ", ok %" PRIu64 "\n", st.global_attempt, st.global_ok);
	printf("writers: %" PRIu64 " operations, counter-region resizes %" PRIu64
	       " (refused for room %" PRIu64 "), pattern errors %" PRIu64 ", call errors %" PRIu64
	       "; index writes %" PRIu64 ", grace periods %" PRIu64 "\n",
	       atomic_load(&writer_ops), atomic_load(&writer_resizes),
	       atomic_load(&writer_resize_refused), atomic_load(&pattern_errors),
	       atomic_load(&errors), st.index_writes, st.grace_periods);

	for (int i = 0; i < NREG; i++)
		fl_region_unregister(rt, base[i]);
	fl_runtime_destroy(rt);
	for (int b = 0; b < 2; b++)
		for (int i = 0; i < NREG; i++)
			free(snap[b][i]);
	for (unsigned int t = 0; t < nthreads; t++)
		free(tally[t]);
	free(pbuf);

	if (require_aborts && !(st.spf_abort_seq_odd + st.spf_abort_seq_changed +
				st.region_abort_locked + st.region_abort_stale)) {
		printf("FAIL: no abort path was taken (--require-aborts 1)\n");
		return 1;
	}
	if (bad || atomic_load(&lock_violations) || atomic_load(&pattern_errors) ||
	    atomic_load(&errors) || st.fill_errors || st.ioctl_errors) {
		printf("FAIL\n");
		return 1;
	}
	printf("PASS\n");
	return 0;
}
