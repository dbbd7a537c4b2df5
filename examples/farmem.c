/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * farmem - far memory end to end: a working set 4x the resident budget,
 * written, then verified and rewritten in random and sequential passes.
 * Every byte is checked; exit 0 only if every byte was right.
 *
 *   farmem [--budget MiB] [--factor N] [--passes N] [--store memory|file]
 *          [--file PATH] [--no-move] [--stats] [--zipf ACCESSES] [--skew S] [--scan]
 *
 * --scan measures page-in rates: a sequential and a random pass reading one
 * word per page through the runtime, against the same store file read
 * directly with io_uring (4 KiB reads, 32 in flight), same run (file store).
 *
 * --zipf adds a phase of ACCESSES page accesses drawn from a Zipf law
 * (exponent --skew, default 0.99; page ranks shuffled) and replays the
 * same trace through an exact LRU of the budget's size: the ratio of the
 * runtime's demand page-ins to LRU's misses measures the eviction policy.
 *
 * Each 8-byte word holds (page, version, word index) mixed together, so a
 * page served stale (older version), from the wrong place, or as zeros is
 * caught at its first word.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <faultline.h>

static size_t pgsz, npages, words;
static uint64_t *mem;
static uint32_t *version;

static inline uint64_t word(size_t pg, uint32_t ver, size_t i)
{
	uint64_t x = ((uint64_t)pg << 32 | ver) * 0x9e3779b97f4a7c15ull;

	return x ^ (i * 0xbf58476d1ce4e5b9ull);
}

static void write_page(size_t pg)
{
	uint64_t *p = mem + pg * words;
	uint32_t v = ++version[pg];

	for (size_t i = 0; i < words; i++)
		p[i] = word(pg, v, i);
}

static size_t check_page(size_t pg)
{
	const uint64_t *p = mem + pg * words;
	size_t bad = 0;

	for (size_t i = 0; i < words; i++)
		bad += p[i] != word(pg, version[pg], i);
	return bad;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---- Zipf phase and exact LRU ---- */

struct lru {
	int32_t *prev, *next;
	uint8_t *in;
	int32_t head, tail;	/* head: most recent */
	size_t size, cap;
	uint64_t misses;
};

static void lru_unlink(struct lru *l, int32_t p)
{
	if (l->prev[p] >= 0)
		l->next[l->prev[p]] = l->next[p];
	else
		l->head = l->next[p];
	if (l->next[p] >= 0)
		l->prev[l->next[p]] = l->prev[p];
	else
		l->tail = l->prev[p];
}

static void lru_access(struct lru *l, int32_t p, bool count)
{
	if (l->in[p]) {
		lru_unlink(l, p);
	} else {
		if (count)
			l->misses++;
		if (l->size == l->cap) {
			int32_t t = l->tail;

			lru_unlink(l, t);
			l->in[t] = 0;
			l->size--;
		}
		l->in[p] = 1;
		l->size++;
	}
	l->prev[p] = -1;
	l->next[p] = l->head;
	if (l->head >= 0)
		l->prev[l->head] = p;
	l->head = p;
	if (l->tail < 0)
		l->tail = p;
}

static uint64_t rnd(uint64_t *s);

static size_t zipf_phase(struct fl_runtime *rt, size_t accesses, double skew,
			 size_t budget_pages, uint64_t *seed)
{
	double *cdf = malloc(npages * sizeof(*cdf)), sum = 0;
	size_t *perm = malloc(npages * sizeof(*perm)), bad = 0;
	struct lru l = { .head = -1, .tail = -1, .cap = budget_pages };
	/* the evictor works down to the low watermark (90 %): LRU at that size too */
	struct lru l9 = { .head = -1, .tail = -1, .cap = budget_pages * 9 / 10 };
	struct fl_stats st = { .size = sizeof(st) };
	uint64_t demand;

	l.prev = malloc(npages * sizeof(*l.prev));
	l.next = malloc(npages * sizeof(*l.next));
	l.in = calloc(npages, 1);
	l9.prev = malloc(npages * sizeof(*l9.prev));
	l9.next = malloc(npages * sizeof(*l9.next));
	l9.in = calloc(npages, 1);
	if (!cdf || !perm || !l.prev || !l.next || !l.in || !l9.prev || !l9.next || !l9.in) {
		fprintf(stderr, "farmem: no memory for the Zipf phase\n");
		return 1;
	}
	for (size_t i = 0; i < npages; i++) {
		sum += 1.0 / pow((double)(i + 1), skew);
		cdf[i] = sum;
		perm[i] = i;
	}
	for (size_t i = npages - 1; i > 0; i--) {	/* hot pages anywhere */
		size_t j = (size_t)(rnd(seed) % (i + 1)), t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	/* LRU starts where the runtime is: the pages touched last */
	for (size_t pg = 0; pg < npages; pg++) {
		lru_access(&l, (int32_t)pg, false);
		lru_access(&l9, (int32_t)pg, false);
	}
	fl_stats_reset(rt);
	for (size_t k = 0; k < accesses; k++) {
		double u = (double)(rnd(seed) >> 11) * (1.0 / 9007199254740992.0) * sum;
		size_t lo = 0, hi = npages - 1, pg;

		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (cdf[mid] < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		pg = perm[lo];
		bad += mem[pg * words] != word(pg, version[pg], 0);
		lru_access(&l, (int32_t)pg, true);
		lru_access(&l9, (int32_t)pg, true);
	}
	fl_stats_get(rt, &st);
	demand = st.far_pageins - st.far_readahead_pages;
	printf("  zipf s=%.2f  %zu accesses: demand page-ins %llu (read-ahead %llu), "
	       "exact LRU misses %llu at the budget (ratio %.3f), %llu at the low watermark "
	       "(ratio %.3f)\n", skew, accesses,
	       (unsigned long long)demand, (unsigned long long)st.far_readahead_pages,
	       (unsigned long long)l.misses, l.misses ? (double)demand / (double)l.misses : 0.0,
	       (unsigned long long)l9.misses, l9.misses ? (double)demand / (double)l9.misses : 0.0);
	free(cdf);
	free(perm);
	free(l.prev);
	free(l.next);
	free(l.in);
	free(l9.prev);
	free(l9.next);
	free(l9.in);
	return bad;
}

/* ---- --scan: the runtime against the raw store ---- */

static void shuffle(size_t *a, size_t n, uint64_t *seed)
{
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(rnd(seed) % (i + 1)), t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

static double raw_scan(const char *path, const size_t *order)
{
	enum { QD = 32 };
	struct io_uring ring;
	char *buf = aligned_alloc(4096, QD * pgsz);
	size_t next = 0, done = 0;
	unsigned int inflight = 0;
	double t;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || !buf || io_uring_queue_init(QD, &ring, 0)) {
		fprintf(stderr, "farmem: raw scan: cannot open %s or set up io_uring\n", path);
		return 0;
	}
	t = now();
	while (done < npages) {
		struct io_uring_cqe *cqe;

		while (inflight < QD && next < npages) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			unsigned int slot = (unsigned int)(next % QD);

			io_uring_prep_read(sqe, fd, buf + slot * pgsz, (unsigned int)pgsz,
					   (uint64_t)order[next] * pgsz);
			next++;
			inflight++;
		}
		io_uring_submit_and_wait(&ring, 1);
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			io_uring_cqe_seen(&ring, cqe);
			inflight--;
			done++;
		}
	}
	t = now() - t;
	io_uring_queue_exit(&ring);
	close(fd);
	free(buf);
	return (double)npages / t;
}

static double rt_scan(const size_t *order, size_t *bad)
{
	double t = now();

	for (size_t k = 0; k < npages; k++) {
		size_t pg = order[k];

		*bad += mem[pg * words] != word(pg, version[pg], 0);
	}
	return (double)npages / (now() - t);
}

static size_t scan_phase(struct fl_runtime *rt, const char *path, size_t budget_pages,
			 uint64_t *seed)
{
	size_t *seq = malloc(npages * sizeof(*seq)), *ran = malloc(npages * sizeof(*ran));
	struct fl_stats st = { .size = sizeof(st) };
	size_t bad = 0;
	double f_seq, f_ran, r_seq, r_ran;

	if (!seq || !ran)
		return 1;
	for (size_t i = 0; i < npages; i++)
		seq[i] = ran[i] = i;
	shuffle(ran, npages, seed);
	/* let the evictor settle so that most of the set is in the store */
	for (int i = 0; i < 2000; i++) {
		fl_stats_get(rt, &st);
		if (st.far_resident_pages && st.far_resident_pages <= budget_pages)
			break;
		usleep(1000);
	}
	f_seq = rt_scan(seq, &bad);
	r_seq = raw_scan(path, seq);
	f_ran = rt_scan(ran, &bad);
	r_ran = raw_scan(path, ran);
	printf("  scan seq:    faultline %.0f pages/s, raw store %.0f pages/s, ratio %.2f\n",
	       f_seq, r_seq, r_seq ? f_seq / r_seq : 0.0);
	printf("  scan random: faultline %.0f pages/s, raw store %.0f pages/s, ratio %.2f\n",
	       f_ran, r_ran, r_ran ? f_ran / r_ran : 0.0);
	free(seq);
	free(ran);
	return bad;
}

static void usage(void)
{
	fprintf(stderr, "usage: farmem [--budget MiB] [--factor N] [--passes N] "
		"[--store memory|file] [--file PATH] [--no-move] [--stats] "
		"[--zipf ACCESSES] [--skew S] [--scan]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t budget_mib = 32, factor = 4, passes = 2, bad = 0;
	const char *store_kind = "file", *path = NULL;
	bool no_move = false, show_stats = false;
	size_t zipf = 0;
	bool scan = false;
	char tmp_path[] = "/tmp/farmem-store-XXXXXX";
	double skew = 0.99;
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_store *store;
	struct fl_stats st = { .size = sizeof(st) };
	struct fl_features ft = { .size = sizeof(ft) };
	uint64_t seed = 88172645463325252ull;
	double t0, t;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--budget") && i + 1 < argc)
			budget_mib = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--factor") && i + 1 < argc)
			factor = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--passes") && i + 1 < argc)
			passes = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--store") && i + 1 < argc)
			store_kind = argv[++i];
		else if (!strcmp(argv[i], "--file") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--no-move"))
			no_move = true;
		else if (!strcmp(argv[i], "--stats"))
			show_stats = true;
		else if (!strcmp(argv[i], "--zipf") && i + 1 < argc)
			zipf = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--skew") && i + 1 < argc)
			skew = strtod(argv[++i], NULL);
		else if (!strcmp(argv[i], "--scan"))
			scan = true;
		else
			usage();
	}
	if (!budget_mib || !factor)
		usage();
	pgsz = (size_t)sysconf(_SC_PAGESIZE);
	words = pgsz / 8;
	npages = budget_mib * factor * (1u << 20) / pgsz;

	if (scan && !path) {
		/* the raw side needs a name to open: a private temporary one */
		int fd = mkstemp(tmp_path);

		if (fd < 0)
			return 1;
		close(fd);
		path = tmp_path;
	}
	if (scan)
		store_kind = "file";
	if (!strcmp(store_kind, "memory"))
		ret = fl_store_memory_create(&store);
	else if (!strcmp(store_kind, "file"))
		ret = fl_store_file_create(path, 0, &store);
	else
		usage();
	if (ret) {
		fprintf(stderr, "farmem: store: %s\n", fl_strerror(ret));
		return 1;
	}
	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = budget_mib << 20;
	if (no_move)
		o.flags |= FL_RT_EVICT_NO_MOVE;
	ret = fl_runtime_create(&o, &rt);
	if (ret) {
		fprintf(stderr, "farmem: runtime: %s\n", fl_strerror(ret));
		return ret == -EPERM || ret == -ENOSYS ? 77 : 1;
	}
	fl_features(rt, &ft);
	version = calloc(npages, sizeof(*version));
	ret = fl_region_map(rt, npages * pgsz, NULL, (void **)&mem);
	if (ret || !version) {
		fprintf(stderr, "farmem: region: %s\n", fl_strerror(ret ? ret : -ENOMEM));
		return 1;
	}
	printf("farmem: %zu MiB working set, %zu MiB budget, %s store, eviction by %s\n",
	       npages * pgsz >> 20, budget_mib, store_kind,
	       ft.move && !no_move ? "UFFDIO_MOVE" : ft.wp ? "WP, copy, zap" : "nothing (no MOVE, no WP)");

	t0 = now();
	for (size_t pg = 0; pg < npages; pg++)
		write_page(pg);
	printf("  fill        %6.2f s\n", now() - t0);
	for (size_t p = 0; p < passes; p++) {
		t = now();
		for (size_t k = 0; k < npages; k++) {
			size_t pg = (size_t)(rnd(&seed) % npages);

			bad += check_page(pg);
			if (k & 1)
				write_page(pg);
		}
		printf("  random %zu    %6.2f s\n", p, now() - t);
		t = now();
		for (size_t pg = 0; pg < npages; pg++) {
			bad += check_page(pg);
			if (pg % 3 == 0)
				write_page(pg);
		}
		printf("  sequential %zu %5.2f s\n", p, now() - t);
	}
	if (scan)
		bad += scan_phase(rt, path, (budget_mib << 20) / pgsz, &seed);
	if (zipf) {
		t = now();
		bad += zipf_phase(rt, zipf, skew, (budget_mib << 20) / pgsz, &seed);
		printf("  zipf        %6.2f s\n", now() - t);
	}
	t = now();
	for (size_t pg = 0; pg < npages; pg++)
		bad += check_page(pg);
	printf("  final check %6.2f s\n", now() - t);
	fl_stats_get(rt, &st);
	printf("farmem: %.2f s; faults %llu, pageins %llu (read-ahead %llu), evictions %llu "
	       "(clean %llu), writebacks %llu, throttled %llu, store errors %llu\n",
	       now() - t0, (unsigned long long)st.faults, (unsigned long long)st.far_pageins,
	       (unsigned long long)st.far_readahead_pages, (unsigned long long)st.far_evictions,
	       (unsigned long long)st.far_evict_clean, (unsigned long long)st.far_writebacks,
	       (unsigned long long)st.far_throttled, (unsigned long long)st.far_store_errors);
	printf("farmem: peak resident seen by the evictor %.1f MiB (budget %zu MiB), "
	       "budget overshoot rounds %llu\n",
	       (double)st.far_resident_peak * (double)pgsz / (1 << 20), budget_mib,
	       (unsigned long long)st.far_budget_overshoot);
	if (show_stats)
		fl_stats_print(rt, stdout, FL_STATS_TEXT);
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	if (path == tmp_path)
		unlink(tmp_path);
	free(version);
	printf("farmem: %s (%zu bad words)\n", bad ? "FAILED" : "every byte verified", bad);
	return bad ? 1 : 0;
}
