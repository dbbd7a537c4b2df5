/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * farmem.c - far-memory workloads of faultline-bench (see farmem.h).
 *
 * Fairness rules, since the ratios are what the far-memory targets (seq
 * >= 0.8x, random >= 0.7x the raw store's IOPS) are about:
 * - Both scan modes read the very same file (the runtime's store file, by
 *   name), in the same process run, one right after the other, 4 KiB pages.
 * - Both use the page cache the same way (--far-io): cold (default as root:
 *   the file is written back and the page cache dropped before each scan),
 *   warm, or O_DIRECT for both.
 * - raw-store at queue depth 1 is what one faulting thread can have in
 *   flight, at 4 what 4 faulting threads (with 4 handler threads) can;
 *   queue depth 32 is what the store can do.
 * - The sort is the same code on the same data in both sort modes; only the
 *   sort is timed (the fill that pushes the array out to the store or to
 *   swap is not).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <faultline.h>

#include "farmem.h"
#include "farmem-mc.h"
#include "../sort-u64.h"
#include "json.h"
#include "memswap.h"

#define RAW_QD_MAX 32
#define FARMEM_MAX_SCANNERS 4	/* faulting threads of the multi-thread lines */

struct far_line {
	const char *workload;
	const char *mode;		/* faultline, raw-store, memcg */
	const char *order;		/* seq, random; "-" for the sort */
	unsigned int qd;		/* raw-store: reads in flight; faultline: faulting threads */
	size_t pages;			/* pages scanned / array pages */
	size_t budget_pages;
	double seconds, pages_per_sec;
	double pageins;			/* faultline: pages read from the store */
	double meta_per_page;		/* faultline: metadata_bytes / managed pages */
	uint64_t bad;			/* wrong words seen */
	int err;			/* 0, -errno, or 1 (skipped: see why) */
	unsigned int failed;		/* repeats that failed (why) beside the good ones */
	const char *swap;		/* memcg: the swap it pages to: bench_swap_kind_name() */
	const char *swap_device;
	char why[200];
};

static const char *const io_names[] = { "cold", "warm", "direct" };

int farmem_parse_io(const char *s, enum far_io *out)
{
	for (unsigned int i = 0; i < sizeof(io_names) / sizeof(io_names[0]); i++)
		if (!strcmp(s, io_names[i])) {
			*out = (enum far_io)i;
			return 0;
		}
	return -EINVAL;
}

int farmem_parse_swap(const char *s, unsigned int *want)
{
	if (!strcmp(s, "zram"))
		*want = BENCH_SWAP_WANT_ZRAM;
	else if (!strcmp(s, "file"))
		*want = BENCH_SWAP_WANT_FILE;
	else if (!strcmp(s, "any"))
		*want = BENCH_SWAP_WANT_ANY;
	else
		return -EINVAL;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* the first word of page @pg holds this: a stale or misplaced page is caught */
static uint64_t page_tag(size_t pg)
{
	return mix64(pg ^ 0xfa12ull);
}

static size_t *make_order(size_t n, bool random, uint64_t seed)
{
	size_t *o = malloc(n * sizeof(*o));

	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i++)
		o[i] = i;
	for (size_t i = n - 1; random && i > 0; i--) {
		size_t j = (size_t)(mix64(seed + i) % (i + 1)), t = o[i];

		o[i] = o[j];
		o[j] = t;
	}
	return o;
}

/* the page cache as --far-io says: written back and dropped when cold */
static void cache_prepare(enum far_io io, const char *path)
{
	int fd, dc;

	if (io != FAR_IO_COLD)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fdatasync(fd);	/* drop_caches drops only clean pages */
		close(fd);
	}
	dc = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (dc >= 0) {
		(void)!write(dc, "1", 1);
		close(dc);
	}
}

static bool can_drop_caches(void)
{
	return access("/proc/sys/vm/drop_caches", W_OK) == 0;
}

/* ------------------------------------------------------------------------ */
/* farmem-scan                                                               */

/* raw-store: @path read with io_uring, 4 KiB at @qd in flight, in @order */
static void raw_scan(const char *path, enum far_io io, const size_t *order, size_t n,
		     unsigned int qd, size_t ps, struct far_line *l)
{
	struct io_uring ring;
	char *buf = NULL;
	size_t next = 0, done = 0;
	unsigned int inflight = 0;
	uint64_t slot_busy = 0;
	size_t slot_page[RAW_QD_MAX];
	double t;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC | (io == FAR_IO_DIRECT ? O_DIRECT : 0));
	if (fd < 0) {
		l->err = -errno;
		snprintf(l->why, sizeof(l->why), "open store file");
		return;
	}
	buf = aligned_alloc(ps, RAW_QD_MAX * ps);
	ret = buf ? io_uring_queue_init(RAW_QD_MAX, &ring, 0) : -ENOMEM;
	if (ret) {
		l->err = ret;
		snprintf(l->why, sizeof(l->why), "io_uring_queue_init");
		free(buf);
		close(fd);
		return;
	}
	cache_prepare(io, path);
	t = now_s();
	while (done < n) {
		struct io_uring_cqe *cqe;

		while (inflight < qd && next < n) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			unsigned int s = (unsigned int)__builtin_ctzll(~slot_busy);

			slot_busy |= 1ull << s;
			slot_page[s] = order[next];
			io_uring_prep_read(sqe, fd, buf + s * ps, (unsigned int)ps,
					   (uint64_t)order[next] * ps);
			io_uring_sqe_set_data64(sqe, s);
			next++;
			inflight++;
		}
		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0 && ret != -EINTR) {
			l->err = ret;
			snprintf(l->why, sizeof(l->why), "io_uring_submit_and_wait");
			break;
		}
		while (io_uring_peek_cqe(&ring, &cqe) == 0) {
			unsigned int s = (unsigned int)io_uring_cqe_get_data64(cqe);

			if (cqe->res != (int)ps ||
			    *(uint64_t *)(buf + s * ps) != page_tag(slot_page[s]))
				l->bad++;
			io_uring_cqe_seen(&ring, cqe);
			slot_busy &= ~(1ull << s);
			inflight--;
			done++;
		}
	}
	t = now_s() - t;
	io_uring_queue_exit(&ring);
	close(fd);
	free(buf);
	l->pages = n;
	l->seconds = t;
	l->pages_per_sec = t > 0 ? (double)n / t : 0;
}

struct scanner {
	struct slice s;		/* first */
	const char *mem;
	size_t ps;
};

static void *scanner_main(void *arg)
{
	struct scanner *w = arg;

	pthread_barrier_wait(w->s.bar);
	w->s.t0 = now_s();
	for (size_t k = 0; k < w->s.n; k++) {
		size_t pg = w->s.order[k];

		w->s.bad += *(const volatile uint64_t *)(w->mem + pg * w->ps) != page_tag(pg);
	}
	w->s.t1 = now_s();
	return NULL;
}

double slices_run(struct slice *const *s, unsigned int nthreads, const size_t *order,
		  size_t n, void *(*fn)(void *), uint64_t *bad)
{
	pthread_barrier_t bar;
	double tmin = 1e300, tmax = 0;
	size_t per = n / nthreads;

	pthread_barrier_init(&bar, NULL, nthreads);
	for (unsigned int i = 0; i < nthreads; i++) {
		s[i]->order = order + i * per;
		s[i]->n = i + 1 == nthreads ? n - i * per : per;
		s[i]->bar = &bar;
		s[i]->bad = 0;
		if (pthread_create(&s[i]->th, NULL, fn, s[i])) {
			fprintf(stderr, "faultline-bench: pthread_create failed\n");
			exit(1);	/* the others wait at the barrier */
		}
	}
	for (unsigned int i = 0; i < nthreads; i++) {
		pthread_join(s[i]->th, NULL);
		tmin = s[i]->t0 < tmin ? s[i]->t0 : tmin;
		tmax = s[i]->t1 > tmax ? s[i]->t1 : tmax;
		*bad += s[i]->bad;
	}
	pthread_barrier_destroy(&bar);
	return tmax > tmin ? tmax - tmin : 0;
}

/*
 * Read pages of [mem, mem + npages pages) round robin until every page that
 * was in memory at the start has been out of it at one look (mincore(2)):
 * evicted after its last write, so in the store. Bounded in time, not in
 * passes: on a loaded machine the evictor may not run for a while, and a
 * throttled fault then goes ahead over the budget, so that a pass can end
 * with nothing evicted (four passes were not enough at load 7): after each
 * pass the evictor gets time to bring the resident set under the budget.
 * Return: 0, or -ETIMEDOUT if some page never left in 60 s.
 */
static int settle_to_file(struct fl_runtime *rt, const char *mem, size_t npages,
			  size_t budget_pages, size_t ps, uint64_t *bad)
{
	unsigned char *vec = malloc(npages);
	bool *pend = calloc(npages, sizeof(*pend));
	struct fl_stats st = { .size = sizeof(st) };
	double end = now_s() + 60;
	size_t left = 0;

	if (!vec || !pend || mincore((void *)mem, npages * ps, vec)) {
		free(vec);
		free(pend);
		return -ENOMEM;
	}
	for (size_t pg = 0; pg < npages; pg++)
		left += pend[pg] = vec[pg] & 1;
	for (size_t k = 0; left && now_s() < end; k++) {
		size_t pg = k % npages;

		if (!pend[pg])
			*bad += *(const volatile uint64_t *)(mem + pg * ps) != page_tag(pg);
		if (k % 64 == 63 && !mincore((void *)mem, npages * ps, vec))
			for (size_t q = 0; q < npages; q++)
				if (pend[q] && !(vec[q] & 1)) {
					pend[q] = false;
					left--;
				}
		for (int i = 0; pg == npages - 1 && left && i < 1000; i++) {
			fl_stats_get(rt, &st);
			if (st.far_resident_pages <= budget_pages)
				break;
			usleep(1000);
		}
	}
	free(vec);
	free(pend);
	return left ? -ETIMEDOUT : 0;
}

/*
 * The store of a far-memory run: a file (named in @path, which raw-store
 * opens by name: same directory, same disk), or the --far-store pool.
 */
static int far_store(const struct farmem_opts *o, char *path, struct fl_store **store,
		     char *why, size_t n)
{
	int fd, ret;

	if (o->store_url)
		return fl_store_memcached_create(o->store_url, 0, store, why, n);
	if (!path)
		ret = fl_store_file_create(NULL, o->io == FAR_IO_DIRECT ? FL_STORE_FILE_DIRECT : 0,
					   store);
	else if ((fd = mkstemp(path)) < 0) {
		snprintf(why, n, "mkstemp %s", path);
		return -errno;
	} else {
		close(fd);
		ret = fl_store_file_create(path, o->io == FAR_IO_DIRECT ? FL_STORE_FILE_DIRECT : 0,
					   store);
	}
	if (ret)
		snprintf(why, n, "fl_store_file_create");
	return ret;
}

/*
 * raw-store on the pool: the region's items read with libmemcached, in
 * @order. The runtime's line ran with @nthreads faulting threads: at one,
 * queue depth 1 is a get at a time and more is mget batches of that many
 * keys; at more, as many client threads, a get at a time each.
 */
static void raw_mc_scan(const char *url, const size_t *order, size_t n,
			unsigned int nthreads, unsigned int qd, struct far_line *l)
{
	struct mc_raw *r = NULL;
	size_t read = 0;
	int ret = mc_raw_open(url, n, &r, l->why, sizeof(l->why));

	if (!ret)
		ret = nthreads > 1 ? mc_raw_scan(r, order, n, qd, 1, &l->seconds, &l->bad, &read)
				   : mc_raw_scan(r, order, n, 1, qd, &l->seconds, &l->bad, &read);
	if (ret) {
		l->err = ret;
		if (!l->why[0])
			snprintf(l->why, sizeof(l->why), "libmemcached reads");
	}
	mc_raw_close(r);
	l->pages = read;
	l->pages_per_sec = l->seconds > 0 ? (double)read / l->seconds : 0;
}

/*
 * One scan run: the runtime's line (@nthreads faulting threads, as many
 * handler threads, each thread a slice of the order), then raw-store at each
 * queue depth of @qds on the file the runtime left. @l: 1 + @nqd lines.
 */
static void scan_run(const struct farmem_opts *o, size_t npages, size_t budget_pages,
		     bool random, uint64_t seed, unsigned int nthreads,
		     const unsigned int *qds, unsigned int nqd, struct far_line *l)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	char path[] = "/var/tmp/faultline-bench-store-XXXXXX";
	struct fl_stats st = { .size = sizeof(st) };
	struct scanner w[FARMEM_MAX_SCANNERS];
	struct slice *ws[FARMEM_MAX_SCANNERS];
	struct fl_runtime_opts ro;
	struct fl_runtime *rt = NULL;
	struct fl_store *store = NULL;
	size_t *order = NULL;
	uint64_t pageins0;
	double secs;
	char *mem;
	int ret;

	for (unsigned int i = 0; i <= nqd; i++) {
		memset(&l[i], 0, sizeof(l[i]));
		l[i].workload = "farmem-scan";
		l[i].mode = i ? "raw-store" : "faultline";
		l[i].order = random ? "random" : "seq";
		l[i].qd = i ? qds[i - 1] : nthreads;
		l[i].budget_pages = budget_pages;
	}
	ret = far_store(o, path, &store, l[0].why, sizeof(l[0].why));
	if (ret) {
		l[0].err = ret;
		goto out;
	}
	fl_runtime_opts_init(&ro);
	ro.store = store;
	ro.budget = budget_pages * ps;
	/* one handler per faulting thread at least (before asynchronous
	 * page-in a handler blocked on its store read); FL_BENCH_FAR_HANDLERS
	 * sets the count for comparisons */
	ro.handlers = nthreads > (unsigned int)sysconf(_SC_NPROCESSORS_ONLN) ? nthreads : 0;
	if (getenv("FL_BENCH_FAR_HANDLERS"))
		ro.handlers = (unsigned int)atoi(getenv("FL_BENCH_FAR_HANDLERS"));
	ret = fl_runtime_create(&ro, &rt);
	if (!ret)
		ret = fl_region_map(rt, npages * ps, NULL, (void **)&mem);
	if (ret) {
		l[0].err = ret;
		snprintf(l[0].why, sizeof(l[0].why), rt ? "fl_region_map" : "fl_runtime_create");
		goto out;
	}
	order = make_order(npages, random, seed);
	if (!order) {
		l[0].err = -ENOMEM;
		goto out;
	}
	/* untimed: every page written, so that all but the budget goes to the store */
	for (size_t pg = 0; pg < npages; pg++) {
		*(uint64_t *)(mem + pg * ps) = page_tag(pg);
		mem[pg * ps + ps - 1] = 1;
	}
	for (int i = 0; i < 5000; i++) {	/* the evictor settles: <= 5 s */
		fl_stats_get(rt, &st);
		if (st.far_resident_pages && st.far_resident_pages <= budget_pages)
			break;
		usleep(1000);
	}
	/*
	 * Untimed: every page into the file before anything else. raw-store
	 * reads the file for the pages, and a page is there only once it was
	 * evicted after its write. Those still in memory after the fill are
	 * the dirty ones (and, without UFFDIO_MOVE, evicted ones not zapped
	 * yet): read other pages until each of them has left memory. The
	 * dance below assumed the evictor kept exactly the last pages
	 * written; on a loaded machine it had not settled, and 16 pages that
	 * stayed in memory through it were never written: raw-store read
	 * them wrong (bad_words = 16).
	 */
	ret = settle_to_file(rt, mem, npages, budget_pages, ps, &l[0].bad);
	if (ret) {
		l[0].err = ret;
		snprintf(l[0].why, sizeof(l[0].why), "pages never left memory after the fill");
		goto out;
	}
	/*
	 * Untimed: the resident set is the last pages written, dirty. Make it
	 * the same pages, clean: read the first budget's worth back (the
	 * dirty ones are written back to make room), then the last (the
	 * first go again, clean: dropped). Otherwise the timed scan starts by
	 * writing back a budget of dirty pages, which raw-store never does:
	 * the seq scan spent 4.5-5.6 ms per 2 MiB window in the throttle until
	 * that was done, 0.2 ms after.
	 */
	for (size_t pg = 0; pg < budget_pages && pg < npages; pg++)
		l[0].bad += *(const volatile uint64_t *)(mem + pg * ps) != page_tag(pg);
	for (size_t pg = npages > budget_pages ? npages - budget_pages : 0; pg < npages; pg++)
		l[0].bad += *(const volatile uint64_t *)(mem + pg * ps) != page_tag(pg);
	if (!o->store_url)
		cache_prepare(o->io, path);
	fl_stats_get(rt, &st);
	pageins0 = st.far_pageins;
	for (unsigned int i = 0; i < nthreads; i++) {
		w[i] = (struct scanner){ .mem = mem, .ps = ps };
		ws[i] = &w[i].s;
	}
	secs = slices_run(ws, nthreads, order, npages, scanner_main, &l[0].bad);
	fl_stats_get(rt, &st);
	l[0].pages = npages;
	l[0].seconds = secs;
	l[0].pages_per_sec = secs > 0 ? (double)npages / secs : 0;
	l[0].pageins = (double)(st.far_pageins - pageins0);
	l[0].meta_per_page = (double)st.metadata_bytes / (double)npages;

	/*
	 * Every page is in the file now (written back when evicted, or read
	 * from it). Raw reads before fl_runtime_destroy(), which reads the
	 * evicted pages back and discards the region's store extent.
	 */
	for (unsigned int i = 1; i <= nqd; i++)
		if (o->store_url)
			raw_mc_scan(o->store_url, order, npages, nthreads, qds[i - 1], &l[i]);
		else
			raw_scan(path, o->io, order, npages, qds[i - 1], ps, &l[i]);
out:
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
	if (!o->store_url)
		unlink(path);
	free(order);
	if (l[0].err)
		for (unsigned int i = 1; i <= nqd; i++)
			if (!l[i].err) {
				l[i].err = l[0].err;
				snprintf(l[i].why, sizeof(l[i].why), "%s", l[0].why);
			}
}

/* ------------------------------------------------------------------------ */
/* Output                                                                    */

static void line_header(const struct farmem_opts *o, const char *wl)
{
	if (o->rep->json)
		return;
	printf("\n== %s\n", wl);
	/* qd: raw-store's reads in flight; faultline's faulting threads */
	printf("%-10s %-6s %3s %9s %8s %8s %10s %12s %9s %10s\n", "mode", "order", "qd",
	       "pages", "budget", "seconds", "pages/s", "pageins", "meta B/pg", "io");
}

/* the scans read the store as --far-io says; the sort does not drop caches */
static const char *line_io(const struct farmem_opts *o, const struct far_line *l)
{
	if (!strcmp(l->mode, "memcg"))
		return "swap";
	if (o->store_url)
		return "memcached";
	if (strcmp(l->workload, "farmem-scan") && o->io != FAR_IO_DIRECT)
		return "buffered";
	return io_names[o->io];
}

static void line_print(const struct farmem_opts *o, const struct far_line *l,
		       unsigned int runs)
{
	char meta[24], qd[16], io[32];

	if (o->rep->json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_str(&w, "workload", l->workload);
		jw_str(&w, "mode", l->mode);
		jw_str(&w, "order", l->order);
		jw_u64(&w, "page_size", (uint64_t)sysconf(_SC_PAGESIZE));
		jw_str(&w, "io", line_io(o, l));
		if (!strcmp(l->mode, "raw-store"))
			jw_u64(&w, "queue_depth", l->qd);
		else if (!strcmp(l->workload, "farmem-scan"))
			jw_u64(&w, "fault_threads", l->qd);
		jw_u64(&w, "budget_pages", l->budget_pages);
		if (l->swap) {
			jw_str(&w, "swap", l->swap);
			if (l->swap_device && *l->swap_device)
				jw_str(&w, "swap_device", l->swap_device);
		}
		if (l->err) {
			jw_str(&w, "error", l->why);
			if (l->err < 0)
				jw_str(&w, "strerror", strerror(-l->err));
			jw_end(&w);
			return;
		}
		jw_u64(&w, "pages", l->pages);
		jw_f64(&w, "seconds", l->seconds);
		if (!strcmp(l->workload, "farmem-scan"))
			jw_f64(&w, "pages_per_sec", l->pages_per_sec);
		if (!strcmp(l->mode, "faultline")) {
			jw_f64(&w, "pageins", l->pageins);
			jw_f64(&w, "metadata_bytes_per_page", l->meta_per_page);
		}
		jw_u64(&w, "repeats", runs);
		if (l->failed) {
			jw_u64(&w, "failed_repeats", l->failed);
			jw_str(&w, "failed_why", l->why);
		}
		jw_u64(&w, "bad_words", l->bad);
		jw_end(&w);
		return;
	}
	if (l->err) {
		if (strcmp(l->workload, "farmem-scan"))
			snprintf(qd, sizeof(qd), "-");
		else
			snprintf(qd, sizeof(qd), "%u", l->qd);
		printf("%-10s %-6s %3s  %s: %s%s%s\n", l->mode, l->order, qd, l->why,
		       l->err < 0 ? strerror(-l->err) : "skipped", l->swap ? "; swap: " : "",
		       l->swap ? l->swap : "");
		return;
	}
	if (!strcmp(l->mode, "faultline"))
		snprintf(meta, sizeof(meta), "%.2f", l->meta_per_page);
	else
		snprintf(meta, sizeof(meta), "-");
	if (strcmp(l->workload, "farmem-scan"))
		snprintf(qd, sizeof(qd), "-");
	else
		snprintf(qd, sizeof(qd), "%u", l->qd);
	/* memcg: the swap it pages to */
	if (l->swap)
		snprintf(io, sizeof(io), "swap:%s", l->swap);
	else
		snprintf(io, sizeof(io), "%s", line_io(o, l));
	printf("%-10s %-6s %3s %9zu %8zu %8.3f %10.0f %12.0f %9s %10s", l->mode, l->order,
	       qd, l->pages, l->budget_pages, l->seconds, l->pages_per_sec, l->pageins,
	       meta, io);
	if (l->bad)
		printf("  BAD DATA: %llu words", (unsigned long long)l->bad);
	if (l->failed)
		printf("  (%u of %u repeats failed: %s)", l->failed, l->failed + runs, l->why);
	putchar('\n');
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* field-wise medians over the repeats that succeeded, into @rr[0] */
static unsigned int reduce_lines(struct far_line *rr, unsigned int n)
{
	double v[64];
	unsigned int ok = 0, i;
	uint64_t bad = 0;
	struct far_line first_ok;

	for (i = 0; i < n; i++)
		bad += rr[i].bad;
	for (i = 0; i < n && ok < 64; i++)
		if (!rr[i].err)
			rr[ok++] = rr[i];
	if (!ok)
		return 0;
	first_ok = rr[0];
#define MED(field) do { \
		for (i = 0; i < ok; i++) \
			v[i] = rr[i].field; \
		qsort(v, ok, sizeof(v[0]), cmp_double); \
		first_ok.field = ok % 2 ? v[ok / 2] : (v[ok / 2 - 1] + v[ok / 2]) / 2; \
	} while (0)
	MED(seconds);
	MED(pages_per_sec);
	MED(pageins);
	MED(meta_per_page);
#undef MED
	first_ok.bad = bad;
	rr[0] = first_ok;
	return ok;
}

/*
 * Per order: one faulting thread against raw-store at queue depth 1 (what
 * one thread can have in flight) and 32 (what the store can do); then
 * FARMEM_MAX_SCANNERS threads (and as many handlers) against queue depth
 * FARMEM_MAX_SCANNERS.
 */
#define SCAN_LINES 5

void farmem_scan(const struct farmem_opts *o)
{
	static const unsigned int qd_one[] = { 1, RAW_QD_MAX }, qd_many[] = { FARMEM_MAX_SCANNERS };
	size_t npages = o->pages ? o->pages : o->quick ? 16384 : 65536;
	size_t budget = npages / 4 ? npages / 4 : 1;
	unsigned int rep = o->repeat ? o->repeat : 1;
	struct far_line *rr = calloc((size_t)rep * 2 * SCAN_LINES, sizeof(*rr));
	double med[2][SCAN_LINES] = { { 0 } };

	if (!rr)
		return;
	line_header(o, "farmem-scan");
	if (o->io == FAR_IO_COLD && !can_drop_caches())
		report_note(o->rep, "farmem-scan: cannot write /proc/sys/vm/drop_caches (not root?): "
			    "the store file stays in the page cache for both modes");
	/* repeat by repeat, order by order: drift hits every line alike */
	for (unsigned int k = 0; k < rep; k++)
		for (int ord = 0; ord < 2; ord++) {
			struct far_line l[SCAN_LINES];
			uint64_t seed = 0x5ca0000u + k * 7 + (unsigned int)ord;

			scan_run(o, npages, budget, ord, seed, 1, qd_one, 2, l);
			scan_run(o, npages, budget, ord, seed, FARMEM_MAX_SCANNERS, qd_many, 1, l + 3);
			for (int i = 0; i < SCAN_LINES; i++)
				rr[(size_t)(ord * SCAN_LINES + i) * rep + k] = l[i];
		}
	for (int ord = 0; ord < 2; ord++)
		for (int i = 0; i < SCAN_LINES; i++) {
			struct far_line *x = &rr[(size_t)(ord * SCAN_LINES + i) * rep];
			unsigned int ok = reduce_lines(x, rep);

			line_print(o, x, ok);
			med[ord][i] = ok ? x->pages_per_sec : 0;
		}
	for (int ord = 0; ord < 2; ord++) {
		double *m = med[ord];

		/* on a pool: libmemcached's get at equal concurrency (qd 1, 4
		 * threads) and its mget of 32 keys */
		if (o->store_url && m[1] > 0 && m[2] > 0 && m[4] > 0) {
			report_note(o->rep, "farmem-scan %s on memcached: faultline / libmemcached "
				    "get = %.2f (1 thread), %.2f (%d threads); / mget of %d keys = "
				    "%.2f (1 thread), %.2f (%d threads); target >= %s at equal "
				    "concurrency", ord ? "random" : "seq", m[0] / m[1], m[3] / m[4],
				    FARMEM_MAX_SCANNERS, RAW_QD_MAX, m[0] / m[2], m[3] / m[2],
				    FARMEM_MAX_SCANNERS, ord ? "0.8" : "1.0");
			continue;
		}
		if (m[1] > 0 && m[2] > 0 && m[4] > 0)
			report_note(o->rep, "farmem-scan %s: faultline / raw-store = %.2f (1 thread / "
				    "qd 1), %.2f (%d threads / qd %d), %.2f (1 thread / qd %d), "
				    "%.2f (%d threads / qd %d); target >= %s", ord ? "random" : "seq",
				    m[0] / m[1], m[3] / m[4], FARMEM_MAX_SCANNERS, FARMEM_MAX_SCANNERS,
				    m[0] / m[2], RAW_QD_MAX, m[3] / m[2], FARMEM_MAX_SCANNERS, RAW_QD_MAX,
				    ord ? "0.7" : "0.8");
	}
	free(rr);
}

/* ------------------------------------------------------------------------ */
/* farmem-sort                                                               */

struct sort_out {
	double seconds;
	uint64_t bad;		/* 0: sorted and the checksums match */
};

/* fill @a, sort it (timed), verify it: the same for both modes */
static void sort_body(uint64_t *a, size_t n, uint64_t seed, struct sort_out *out)
{
	uint64_t sum = 0, x = 0, sum2 = 0, x2 = 0;
	double t;

	for (size_t i = 0; i < n; i++) {
		a[i] = mix64(seed + i);
		sum += a[i];
		x ^= a[i];
	}
	t = now_s();
	sort_u64(a, n);
	out->seconds = now_s() - t;
	out->bad = 0;
	for (size_t i = 0; i < n; i++) {
		sum2 += a[i];
		x2 ^= a[i];
		if (i && a[i - 1] > a[i])
			out->bad++;
	}
	if (sum2 != sum || x2 != x)
		out->bad++;
}

static void sort_faultline(const struct farmem_opts *o, size_t n, size_t budget,
			   uint64_t seed, struct far_line *l)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = (n * sizeof(uint64_t) + ps - 1) & ~(ps - 1);
	struct fl_stats st = { .size = sizeof(st) };
	struct fl_runtime_opts ro;
	struct fl_runtime *rt = NULL;
	struct fl_store *store = NULL;
	struct sort_out so;
	void *mem;
	int ret;

	ret = far_store(o, NULL, &store, l->why, sizeof(l->why));
	if (ret) {
		l->err = ret;
		return;
	}
	fl_runtime_opts_init(&ro);
	ro.store = store;
	ro.budget = budget;
	ret = fl_runtime_create(&ro, &rt);
	if (!ret)
		ret = fl_region_map(rt, len, NULL, &mem);
	if (ret) {
		l->err = ret;
		snprintf(l->why, sizeof(l->why), rt ? "fl_region_map" : "fl_runtime_create");
	} else {
		sort_body(mem, n, seed, &so);
		fl_stats_get(rt, &st);
		l->seconds = so.seconds;
		l->bad = so.bad;
		l->pageins = (double)st.far_pageins;
		l->meta_per_page = (double)st.metadata_bytes / (double)(len / ps);
	}
	fl_runtime_destroy(rt);
	fl_store_destroy(store);
}

/* ---- memcg mode ---- */

/*
 * The same sort in a forked child inside a memory cgroup limited to the
 * budget, paging to @sw. Only the sort is timed, in the child.
 */
static void sort_memcg(size_t n, size_t budget, uint64_t seed, const struct bench_swap *sw,
		       struct far_line *l)
{
	size_t len = n * sizeof(uint64_t);
	int pfd[2] = { -1, -1 }, go[2] = { -1, -1 }, status;
	char dir[320];
	struct sort_out so;
	pid_t pid, parent;
	long ooms;
	int ret;

	l->swap = bench_swap_kind_name(sw->kind);
	l->swap_device = sw->device;
	if (sw->kind == BENCH_SWAP_NONE) {
		/* without swap the kernel cannot hold the child under the limit: it kills it */
		l->err = sw->err ? sw->err : -ENODEV;
		snprintf(l->why, sizeof(l->why), "no swap for the cgroup: %.170s", sw->why);
		return;
	}
	ret = memcg_make(budget, dir, sizeof(dir), l->why, sizeof(l->why));
	if (ret) {
		l->err = ret;
		return;
	}
	if (pipe2(pfd, O_CLOEXEC) || pipe2(go, O_CLOEXEC)) {
		l->err = -errno;
		snprintf(l->why, sizeof(l->why), "pipe");
		goto out;
	}
	parent = getpid();
	pid = fork();
	if (pid < 0) {
		l->err = -errno;
		snprintf(l->why, sizeof(l->why), "fork");
		goto out;
	}
	if (pid == 0) {
		char c;
		void *a;

		/* die with the parent: nobody would read the result, and the child
		 * holds the swap's lock (the descriptor came with fork) until it
		 * exits; a parent that died before the prctl is seen by getppid() */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(2);
		close(pfd[0]);
		close(go[1]);
		/* wait until the parent has put us into the group */
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (a == MAP_FAILED)
			_exit(3);
		madvise(a, len, MADV_NOHUGEPAGE);	/* as the runtime: 4 KiB pages */
		sort_body(a, n, seed, &so);
		if (write(pfd[1], &so, sizeof(so)) != (ssize_t)sizeof(so))
			_exit(4);
		_exit(0);
	}
	close(pfd[1]);
	close(go[0]);
	pfd[1] = go[0] = -1;
	ret = memcg_attach(dir, (int)pid);
	if (ret) {
		l->err = ret;
		snprintf(l->why, sizeof(l->why), "write %.150s/cgroup.procs", dir);
		kill(pid, SIGKILL);
	} else if (write(go[1], "g", 1) != 1) {
		kill(pid, SIGKILL);
	}
	/* the group's statistics kept current while the child sorts: see
	 * memcg_stat_refresh() for the OOM kill that this prevents */
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int r = poll(&p, 1, MEMCG_REFRESH_MS);

		if (r > 0 || (r < 0 && errno != EINTR))
			break;
		memcg_stat_refresh(dir);
	}
	if (read(pfd[0], &so, sizeof(so)) == (ssize_t)sizeof(so)) {
		l->seconds = so.seconds;
		l->bad = so.bad;
	}
	waitpid(pid, &status, 0);
	if (!l->err && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		ooms = memcg_oom_kills(dir);
		l->err = ooms > 0 ? -ENOMEM : -ECHILD;
		if (ooms > 0)
			snprintf(l->why, sizeof(l->why),
				 "the sort child was OOM-killed in the cgroup (limit %zu MiB, swap %s %.40s)",
				 budget >> 20, l->swap, sw->device);
		else if (WIFSIGNALED(status))
			snprintf(l->why, sizeof(l->why), "the sort child died of signal %d (%s)",
				 WTERMSIG(status), strsignal(WTERMSIG(status)));
		else
			snprintf(l->why, sizeof(l->why), "the sort child exited with status %d",
				 WEXITSTATUS(status));
	}
out:
	for (int i = 0; i < 2; i++) {
		if (pfd[i] >= 0)
			close(pfd[i]);
		if (go[i] >= 0)
			close(go[i]);
	}
	rmdir(dir);
}

/* the ratio as a target line (JSON) and a note; without one of the two, @why */
static void sort_target(const struct farmem_opts *o, double faultline_s, double memcg_s,
			const char *why)
{
	static const char detail[] = "farmem-sort: faultline / memcg seconds (medians)";
	bool have = faultline_s > 0 && memcg_s > 0;
	double ratio = have ? faultline_s / memcg_s : 0;

	if (o->rep->json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_str(&w, "target", "farmem_sort_vs_memcg");
		jw_str(&w, "detail", detail);
		if (have)
			jw_f64(&w, "ratio", ratio);
		else
			jw_str(&w, "ratio", "n/a");
		jw_f64(&w, "goal", 1.0);
		jw_str(&w, "goal_op", "<=");
		jw_bool(&w, "met", have && ratio <= 1.0);
		if (!have)
			jw_str(&w, "error", why);
		jw_end(&w);
	}
	if (have)
		report_note(o->rep, "farmem-sort: faultline / memcg seconds = %.2f (target: <= 1.0)",
			    ratio);
	else
		report_note(o->rep, "farmem-sort: NO faultline / memcg ratio: %s", why);
}

void farmem_sort(const struct farmem_opts *o)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	/* 32768 pages, a 32 MiB budget, with --quick: small groups turn their
	 * LRU over fastest, see memcg_stat_refresh() */
	size_t npages = o->pages ? o->pages : o->quick ? 32768 : 65536;
	size_t n = npages * ps / sizeof(uint64_t), budget = npages / 4 * ps;
	unsigned int rep = o->repeat ? o->repeat : 1;
	struct far_line *rr = calloc((size_t)rep * 2, sizeof(*rr));
	char fail_why[2][sizeof(rr->why) + 16] = { "", "" };
	double med[2] = { 0, 0 };
	struct bench_swap sw;

	if (!rr)
		return;
	/* twice the array: room for the copies the swap cache keeps */
	bench_swap_up(&sw, 2 * (uint64_t)npages * ps, o->swap ? o->swap : BENCH_SWAP_WANT_ANY);
	line_header(o, "farmem-sort");
	if (*sw.note)
		report_note(o->rep, "farmem-sort: %s", sw.note);
	if (sw.kind != BENCH_SWAP_NONE)
		report_note(o->rep, "farmem-sort: memcg swap: %s %s (%s)%s", bench_swap_kind_name(sw.kind),
			    sw.device, sw.detail,
			    sw.kind == BENCH_SWAP_EXISTING ? "" : ", removed again at the end");
	for (unsigned int k = 0; k < rep; k++)
		for (int m = 0; m < 2; m++) {
			struct far_line *l = &rr[(size_t)m * rep + k];

			memset(l, 0, sizeof(*l));
			l->workload = "farmem-sort";
			l->mode = m ? "memcg" : "faultline";
			l->order = "-";
			l->pages = npages;
			l->budget_pages = budget / ps;
			if (m)
				sort_memcg(n, budget, 0x50e7 + k, &sw, l);
			else
				sort_faultline(o, n, budget, 0x50e7 + k, l);
			l->pages_per_sec = l->seconds > 0 ? (double)npages / l->seconds : 0;
		}
	for (int m = 0; m < 2; m++) {
		struct far_line *x = &rr[(size_t)m * rep];
		char why[sizeof(x->why)] = "";
		unsigned int ok;

		/* the last failure's reason, before reduce_lines() keeps the good runs */
		for (unsigned int k = 0; k < rep; k++)
			if (x[k].err)
				snprintf(why, sizeof(why), "%s", x[k].why);
		ok = reduce_lines(x, rep);
		if (ok && ok < rep) {
			/* a repeat that failed is not dropped silently */
			x->failed = rep - ok;
			snprintf(x->why, sizeof(x->why), "%s", why);
		}
		if (ok < rep)
			snprintf(fail_why[m], sizeof(fail_why[m]), "%s: %s", x->mode, why);
		line_print(o, x, ok);
		med[m] = ok ? x->seconds : 0;
	}
	sort_target(o, med[0], med[1], med[0] > 0 ? fail_why[1] : fail_why[0]);
	bench_swap_down(&sw);
	free(rr);
}
