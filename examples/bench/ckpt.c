/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ckpt.c - faultline-bench's checkpoint workloads.
 *
 *   dirty-collect  a 1 GiB region, 0.1 / 1 / 10 % of its pages written, then
 *                  one fl_dirty_collect() (get the dirty set and re-arm it):
 *                  async (WP_ASYNC + PAGEMAP_SCAN) and sync (WP faults)
 *   ckpt-write     a full image (fl_ckpt_save) against a raw sequential
 *                  write(2) of the same bytes from the same memory, to the
 *                  same file system with the same open flags and an
 *                  fdatasync in both; O_DIRECT and buffered
 *   lazy-restore   cold start of a program that reads a working set of the
 *                  restored memory: eager restore, lazy restore, and lazy
 *                  with the working set recorded by an earlier lazy run
 *                  prefetched (REAP); time to the first access and in all
 *   live-snapshot  a program that writes random pages: its writes/s during
 *                  a live snapshot (FL_CKPT_LIVE) against without one
 *
 * Every mode of a workload runs in the same process, interleaved round by
 * round (and the order of the modes alternates), so drift of a shared,
 * noisy machine hits all modes alike; lines are medians of the rounds and
 * ratios are medians of the per-round ratios. Files go to a private
 * directory under $FL_BENCH_DIR, $TMPDIR or /var/tmp (not /tmp, often a
 * tmpfs), removed at the end. Page caches are dropped before each timed
 * write and restore when we may (root); a note says when we may not.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <faultline.h>

#include "ckpt.h"
#include "json.h"

static struct ckpt_env env;
static size_t ps;

void ckpt_setup(const struct ckpt_env *e)
{
	env = *e;
	ps = (size_t)sysconf(_SC_PAGESIZE);
}

static unsigned int rounds(void)
{
	unsigned int min = env.quick ? 3 : 5;

	return env.repeat > min ? env.repeat : min;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e6;
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* sorts @v */
static double median(double *v, unsigned int n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);

	if (!p) {
		fprintf(stderr, "faultline-bench: out of memory\n");
		exit(1);
	}
	return p;
}

/* ---- report: one table or one JSON object per line ---- */

static void error_line(const char *wl, const char *mode, const char *what, int err)
{
	if (env.rep->json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_str(&w, "workload", wl);
		jw_str(&w, "mode", mode);
		jw_str(&w, "error", what);
		jw_str(&w, "strerror", fl_strerror(err));
		jw_end(&w);
	} else {
		printf("%-14s %-10s error: %s: %s\n", wl, mode, what, fl_strerror(err));
	}
}

enum goal { G_NONE, G_GE, G_LE };

/* a target (or, with G_NONE, just a ratio worth reading) from this run */
static void target(const char *name, const char *detail, double v, enum goal op, double goal)
{
	bool have = v > 0, met = have && (op == G_GE ? v >= goal : v <= goal);

	if (env.rep->json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_str(&w, "target", name);
		jw_str(&w, "detail", detail);
		if (have)
			jw_f64(&w, op == G_LE ? "value" : "ratio", v);
		else
			jw_str(&w, op == G_LE ? "value" : "ratio", "n/a");
		if (op != G_NONE) {
			jw_f64(&w, "goal", goal);
			jw_str(&w, "goal_op", op == G_GE ? ">=" : "<=");
			jw_bool(&w, "met", met);
		}
		jw_end(&w);
		return;
	}
	if (!have)
		printf("%-66s    n/a  not measured in this run\n", detail);
	else if (op == G_NONE)
		printf("%-66s %7.3f\n", detail, v);
	else
		printf("%-66s %7.3f  (goal %s %.2f)  %s\n", detail, v, op == G_GE ? ">=" : "<=",
		       goal, met ? "met" : "MISSED");
}

static void header(const char *wl)
{
	if (!env.rep->json)
		printf("\n== %s\n", wl);
}

/* ---- files ---- */

static char dir[4096];
static int drop_ok = -1;	/* -1 unknown, 0 no, 1 yes */

static const char *make_dir(void)
{
	const char *base = getenv("FL_BENCH_DIR");

	if (!base || !*base)
		base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/var/tmp";
	snprintf(dir, sizeof(dir), "%s/fl-bench-ckpt-XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "faultline-bench: mkdtemp %s: %s\n", dir, strerror(errno));
		exit(1);
	}
	return dir;
}

static void remove_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[4400];

	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
	rmdir(dir);
}

static void path_of(char *p, size_t n, const char *name)
{
	snprintf(p, n, "%s/%s", dir, name);
}

/*
 * Write back everything dirty and drop the clean page cache, so that each
 * timed write starts with no other writeback in flight and each restore
 * reads from the device. Needs root; without it the runs are "warm".
 */
static bool drop_caches(void)
{
	int fd;

	sync();
	if (drop_ok == 0)
		return false;
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "3", 1) != 1) {
		if (drop_ok < 0)
			report_note(env.rep, "cannot drop the page cache (%s): runs are warm, "
				    "not cold", strerror(errno));
		drop_ok = 0;
		if (fd >= 0)
			close(fd);
		return false;
	}
	close(fd);
	drop_ok = 1;
	return true;
}

/* a page's expected bytes: word k of page p */
static uint64_t pattern(uint64_t p, uint64_t k)
{
	return mix64(p << 12 | k) | 1;	/* never a zero word: no page is all zero */
}

static void fill_pages(char *mem, size_t npages)
{
	for (size_t p = 0; p < npages; p++) {
		uint64_t *q = (uint64_t *)(mem + p * ps);

		for (size_t k = 0; k < ps / 8; k++)
			q[k] = pattern(p, k);
	}
}

static bool page_ok(const char *mem, size_t p)
{
	const uint64_t *q = (const uint64_t *)(mem + p * ps);
	uint64_t bad = 0;

	/* read every word, as a program reading the page would */
	for (size_t k = 0; k < ps / 8; k++)
		bad |= q[k] ^ pattern(p, k);
	return !bad;
}

/* ---- dirty-collect ---- */

static size_t gcd(size_t a, size_t b)
{
	while (b) {
		size_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

static double dc_async_1pct;	/* ms, for the target */

static void dc_run(bool async, size_t len)
{
	static const double pct[] = { 0.1, 1, 10 };
	const char *mode = async ? "async" : "sync";
	size_t npages = len / ps, nd, stride;
	unsigned int n = rounds(), r;
	struct fl_runtime_opts o;
	struct fl_region_opts ro;
	struct fl_runtime *rt;
	uint64_t *bm = xcalloc((npages + 63) / 64, sizeof(uint64_t)), seed = 0x5eed;
	double *ms = xcalloc(n, sizeof(double)), *wms = xcalloc(n, sizeof(double));
	char *mem;
	int ret;

	fl_runtime_opts_init(&o);
	if (async)
		o.flags |= FL_RT_WP_ASYNC;
	ret = fl_runtime_create(&o, &rt);
	if (ret) {
		error_line("dirty-collect", mode, "fl_runtime_create", ret);
		goto out_free;
	}
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	ret = fl_region_map(rt, len, &ro, (void **)&mem);
	if (ret) {
		error_line("dirty-collect", mode, "fl_region_map", ret);
		goto out_rt;
	}
	/* resident first: we time collection, not first touches */
	memset(mem, 1, len);
	ret = fl_dirty_start(rt, mem, len, async ? FL_DIRTY_ASYNC : FL_DIRTY_SYNC);
	if (ret) {
		error_line("dirty-collect", mode, "fl_dirty_start", ret);
		goto out_rt;
	}
	(void)fl_dirty_collect(rt, mem, bm, npages, &nd);
	/* pages start + i * stride (mod npages) are distinct for i < npages */
	for (stride = npages / 2 + 12345; gcd(stride, npages) != 1; stride++)
		;
	for (size_t k = 0; k < sizeof(pct) / sizeof(pct[0]); k++) {
		size_t want = (size_t)((double)npages * pct[k] / 100), bad = 0;

		for (r = 0; r < n; r++) {
			size_t start = mix64(seed++) % npages;
			uint64_t t0 = now_ns();

			for (size_t i = 0; i < want; i++)
				mem[(start + i * stride) % npages * ps] = (char)(r + 2);
			wms[r] = ms_since(t0);
			t0 = now_ns();
			ret = fl_dirty_collect(rt, mem, bm, npages, &nd);
			ms[r] = ms_since(t0);
			if (ret) {
				error_line("dirty-collect", mode, "fl_dirty_collect", ret);
				goto out_unprotect;
			}
			/* untimed: exactly the pages we wrote */
			for (size_t i = 0; i < want; i++) {
				size_t p = (start + i * stride) % npages;

				bad += !(bm[p / 64] >> (p % 64) & 1);
			}
			bad += nd != want;
		}
		double mmin, mmax, mmed, wmed;

		mmed = median(ms, n);
		mmin = ms[0];
		mmax = ms[n - 1];
		wmed = median(wms, n);
		if (env.rep->json) {
			struct jw w;

			jw_begin(&w, stdout);
			jw_str(&w, "workload", "dirty-collect");
			jw_str(&w, "mode", mode);
			jw_u64(&w, "mib", len >> 20);
			jw_f64(&w, "dirty_pct", pct[k]);
			jw_u64(&w, "dirty_pages", want);
			jw_f64(&w, "ms", mmed);
			jw_f64(&w, "ms_min", mmin);
			jw_f64(&w, "ms_max", mmax);
			jw_f64(&w, "write_ms", wmed);
			jw_u64(&w, "repeats", n);
			jw_u64(&w, "bad_pages", bad);
			jw_end(&w);
		} else {
			printf("%-10s %6zu %9g %11zu %9.3f %9.3f %9.3f %10.3f %6zu\n", mode,
			       len >> 20, pct[k], want, mmed, mmin, mmax, wmed, bad);
		}
		if (async && pct[k] == 1 && len == 1ul << 30)
			dc_async_1pct = mmed;
	}
out_unprotect:
	fl_unprotect(rt, mem, len);
out_rt:
	fl_runtime_destroy(rt);
out_free:
	free(ms);
	free(wms);
	free(bm);
}

void wl_dirty_collect(void)
{
	header("dirty-collect");
	if (!env.rep->json)
		printf("%-10s %6s %9s %11s %9s %9s %9s %10s %6s\n", "mode", "MiB", "dirty%",
		       "dirty_pages", "ms", "ms_min", "ms_max", "write_ms", "bad");
	/* 1 GiB even with --quick: collection is what is timed, and it is cheap */
	dc_run(true, 1ul << 30);
	dc_run(false, 1ul << 30);
	target("dirty_collect_async_1pct_ms", "dirty-collect: async, 1 GiB, 1 % dirty: ms (median)",
	       dc_async_1pct, G_LE, 2.0);
}

/* ---- ckpt-write ---- */

static double cpu_ms(void)
{
	struct timespec ts;

	/* the whole process: io_uring's workers are our threads too */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* what a program would do: write(2) from its memory, 4 MiB at a time (the
 * image writer's request size) */
static int raw_write(const char *path, const char *mem, size_t len, bool direct)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC |
		      (direct ? O_DIRECT : 0), 0600);
	size_t o = 0, chunk = 4u << 20;
	int ret = 0;

	if (fd < 0)
		return -errno;
	while (o < len) {
		ssize_t k = pwrite(fd, mem + o, len - o < chunk ? len - o : chunk, (off_t)o);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			ret = k < 0 ? -errno : -EIO;
			break;
		}
		o += (size_t)k;
	}
	if (!ret && fdatasync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	return ret;
}

static void cw_line(const char *mode, const char *io, size_t len, double file_mib, double ms,
		    double cpu, double ratio, unsigned int n)
{
	double mbs = ms > 0 ? (double)len / 1e6 / (ms / 1e3) : 0;

	if (env.rep->json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_str(&w, "workload", "ckpt-write");
		jw_str(&w, "mode", mode);
		jw_str(&w, "io", io);
		jw_u64(&w, "mib", len >> 20);
		jw_f64(&w, "file_mib", file_mib);
		jw_f64(&w, "ms", ms);
		jw_f64(&w, "mb_s", mbs);
		jw_f64(&w, "cpu_ms", cpu);
		jw_f64(&w, "ratio", ratio);
		jw_u64(&w, "repeats", n);
		jw_end(&w);
	} else {
		printf("%-10s %-8s %6zu %9.1f %9.1f %8.0f %9.1f %7.3f\n", mode, io, len >> 20,
		       file_mib, ms, mbs, cpu, ratio);
	}
}

void wl_ckpt_write(void)
{
	size_t len = env.quick ? 256ul << 20 : 1ul << 30;
	unsigned int n = rounds(), r, io;
	double *t[2], *c[2], *ratio = xcalloc(n, sizeof(double));
	char pfl[4400], praw[4400];
	struct fl_region_opts ro;
	struct fl_runtime *rt;
	struct fl_ckpt *ck;
	double file_mib = 0;
	char *mem;
	int ret;

	header("ckpt-write");
	for (int m = 0; m < 2; m++) {
		t[m] = xcalloc(n, sizeof(double));
		c[m] = xcalloc(n, sizeof(double));
	}
	ret = fl_runtime_create(NULL, &rt);
	if (ret) {
		error_line("ckpt-write", "faultline", "fl_runtime_create", ret);
		goto out_free;
	}
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	ret = fl_region_map(rt, len, &ro, (void **)&mem);
	if (ret) {
		error_line("ckpt-write", "faultline", "fl_region_map", ret);
		goto out_rt;
	}
	fill_pages(mem, len / ps);
	ret = fl_ckpt_create(rt, mem, len, FL_DIRTY_AUTO, &ck);
	if (ret) {
		error_line("ckpt-write", "faultline", "fl_ckpt_create", ret);
		goto out_rt;
	}
	make_dir();
	path_of(pfl, sizeof(pfl), "image");
	path_of(praw, sizeof(praw), "raw");
	if (!env.rep->json)
		printf("%-10s %-8s %6s %9s %9s %8s %9s %7s\n", "mode", "io", "MiB", "file_MiB",
		       "ms", "MB/s", "cpu_ms", "ratio");
	for (io = 0; io < 2; io++) {
		bool direct = io == 0;
		const char *ios = direct ? "direct" : "buffered";

		for (r = 0; r < n; r++) {
			/* alternate which goes first: neither always follows the other's discards */
			for (int j = 0; j < 2; j++) {
				int m = (int)((r + (unsigned int)j) % 2);
				uint64_t t0;
				double c0;

				unlink(pfl);
				unlink(praw);
				drop_caches();
				c0 = cpu_ms();
				t0 = now_ns();
				if (m == 0)
					ret = fl_ckpt_save(ck, pfl, FL_CKPT_FULL | FL_CKPT_FSYNC |
							   (direct ? FL_CKPT_DIRECT : 0));
				else
					ret = raw_write(praw, mem, len, direct);
				t[m][r] = ms_since(t0);
				c[m][r] = cpu_ms() - c0;
				if (ret) {
					error_line("ckpt-write", m ? "raw" : "faultline", ios, ret);
					goto next_io;
				}
				if (m == 0) {
					struct stat st;

					file_mib = stat(pfl, &st) ? 0 : (double)st.st_size / (1 << 20);
				}
			}
			ratio[r] = t[1][r] / t[0][r];
		}
		double rmed = median(ratio, n);

		cw_line("faultline", ios, len, file_mib, median(t[0], n), median(c[0], n), rmed, n);
		cw_line("raw", ios, len, (double)len / (1 << 20), median(t[1], n), median(c[1], n),
			1, n);
		target(direct ? "ckpt_write_vs_raw_direct" : "ckpt_write_vs_raw_buffered",
		       direct ? "ckpt-write: image MB/s / raw write MB/s, O_DIRECT, fdatasync"
			      : "ckpt-write: image MB/s / raw write MB/s, buffered, fdatasync",
		       rmed, G_GE, 0.8);
next_io:
		unlink(pfl);
		unlink(praw);
	}
	remove_dir();
	fl_ckpt_destroy(ck);
out_rt:
	fl_runtime_destroy(rt);
out_free:
	for (int m = 0; m < 2; m++) {
		free(t[m]);
		free(c[m]);
	}
	free(ratio);
}

/* ---- lazy-restore ---- */

enum lr_mode { LR_EAGER, LR_LAZY, LR_LAZY_WS, LR_NR };
static const char *const lr_names[LR_NR] = { "eager", "lazy", "lazy-ws" };

struct lr_run {
	double first_ms, total_ms;
	size_t bad;
	int err;
	const char *err_what;
};

/*
 * One cold start: restore, then read the working set @ws (page numbers, in
 * the program's order), every byte checked. Time from the call that
 * restores to the first page read, and to the last.
 */
static void lr_once(struct fl_runtime *rt, enum lr_mode m, const char *img, const char *wsf,
		    size_t len, const uint32_t *ws, size_t nws, struct lr_run *out)
{
	struct fl_lazy *lz = NULL;
	char *mem = NULL;
	uint64_t t0;
	int ret;

	memset(out, 0, sizeof(*out));
	drop_caches();
	t0 = now_ns();
	if (m == LR_EAGER) {
		mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED) {
			out->err = -errno;
			out->err_what = "mmap";
			return;
		}
		ret = fl_restore(img, mem, len);
		out->err_what = "fl_restore";
	} else {
		ret = fl_restore_lazy(rt, img, m == LR_LAZY_WS ? wsf : NULL, 0, &lz,
				      (void **)&mem);
		out->err_what = "fl_restore_lazy";
	}
	if (ret) {
		out->err = ret;
		if (m == LR_EAGER)
			munmap(mem, len);
		return;
	}
	out->bad += !page_ok(mem, ws[0]);
	out->first_ms = ms_since(t0);
	for (size_t i = 1; i < nws; i++)
		out->bad += !page_ok(mem, ws[i]);
	out->total_ms = ms_since(t0);
	if (m == LR_EAGER)
		munmap(mem, len);
	else
		fl_lazy_destroy(lz);
}

void wl_lazy_restore(void)
{
	size_t len = env.quick ? 64ul << 20 : 256ul << 20, npages = len / ps, nws = npages / 10;
	unsigned int n = rounds(), r;
	double *first[LR_NR], *total[LR_NR], *gain = xcalloc(n, sizeof(double));
	double *ftte = xcalloc(n, sizeof(double)), *tote = xcalloc(n, sizeof(double));
	uint32_t *perm = xcalloc(npages, sizeof(uint32_t));
	char img[4400], wsf[4400];
	size_t bad[LR_NR] = { 0 };
	struct fl_region_opts ro;
	struct fl_runtime *rt;
	struct fl_lazy *lz;
	struct fl_ckpt *ck;
	struct lr_run run;
	uint64_t seed = 0x1a2b;
	char *mem;
	int ret, m;

	header("lazy-restore");
	for (m = 0; m < LR_NR; m++) {
		first[m] = xcalloc(n, sizeof(double));
		total[m] = xcalloc(n, sizeof(double));
	}
	/* the working set: 10 % of the pages, in a random order */
	for (size_t i = 0; i < npages; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = npages - 1; i > 0; i--) {
		size_t j = mix64(seed++) % (i + 1);
		uint32_t x = perm[i];

		perm[i] = perm[j];
		perm[j] = x;
	}
	ret = fl_runtime_create(NULL, &rt);
	if (ret) {
		error_line("lazy-restore", "eager", "fl_runtime_create", ret);
		goto out_free;
	}
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	ret = fl_region_map(rt, len, &ro, (void **)&mem);
	if (ret) {
		error_line("lazy-restore", "eager", "fl_region_map", ret);
		goto out_rt;
	}
	fill_pages(mem, npages);
	make_dir();
	path_of(img, sizeof(img), "image");
	path_of(wsf, sizeof(wsf), "ws");
	ret = fl_ckpt_create(rt, mem, len, FL_DIRTY_AUTO, &ck);
	if (!ret) {
		ret = fl_ckpt_save(ck, img, FL_CKPT_FULL | FL_CKPT_FSYNC);
		fl_ckpt_destroy(ck);
	}
	fl_region_unregister(rt, mem);
	if (ret) {
		error_line("lazy-restore", "eager", "fl_ckpt_save", ret);
		goto out_dir;
	}
	/* an earlier run of the program: lazy, its first touches recorded */
	ret = fl_restore_lazy(rt, img, NULL, 0, &lz, (void **)&mem);
	if (!ret) {
		for (size_t i = 0; i < nws; i++)
			bad[LR_LAZY] += !page_ok(mem, perm[i]);
		ret = fl_lazy_ws_save(lz, wsf);
		fl_lazy_destroy(lz);
	}
	if (ret) {
		error_line("lazy-restore", "lazy", "record the working set", ret);
		goto out_dir;
	}
	if (!env.rep->json)
		printf("%-10s %6s %9s %9s %10s %6s\n", "mode", "MiB", "ws_pages", "first_ms",
		       "total_ms", "bad");
	for (r = 0; r < n; r++)
		for (int j = 0; j < LR_NR; j++) {
			m = (int)((r + (unsigned int)j) % LR_NR);
			lr_once(rt, (enum lr_mode)m, img, wsf, len, perm, nws, &run);
			if (run.err) {
				error_line("lazy-restore", lr_names[m], run.err_what, run.err);
				goto out_dir;
			}
			first[m][r] = run.first_ms;
			total[m][r] = run.total_ms;
			bad[m] += run.bad;
		}
	for (r = 0; r < n; r++) {
		ftte[r] = first[LR_EAGER][r] / first[LR_LAZY][r];
		tote[r] = total[LR_EAGER][r] / total[LR_LAZY][r];
		gain[r] = total[LR_LAZY][r] / total[LR_LAZY_WS][r];
	}
	for (m = 0; m < LR_NR; m++) {
		double f = median(first[m], n), t = median(total[m], n);

		if (env.rep->json) {
			struct jw w;

			jw_begin(&w, stdout);
			jw_str(&w, "workload", "lazy-restore");
			jw_str(&w, "mode", lr_names[m]);
			jw_str(&w, "cache", drop_ok == 1 ? "cold" : "warm");
			jw_u64(&w, "mib", len >> 20);
			jw_u64(&w, "ws_pages", nws);
			jw_f64(&w, "first_ms", f);
			jw_f64(&w, "total_ms", t);
			jw_u64(&w, "repeats", n);
			jw_u64(&w, "bad_pages", bad[m]);
			jw_end(&w);
		} else {
			printf("%-10s %6zu %9zu %9.2f %10.1f %6zu\n", lr_names[m], len >> 20, nws,
			       f, t, bad[m]);
		}
	}
	target("lazy_first_access_speedup",
	       "lazy-restore: eager / lazy time to the first access", median(ftte, n), G_NONE, 0);
	target("lazy_total_speedup",
	       "lazy-restore: eager / lazy time to the whole working set", median(tote, n),
	       G_NONE, 0);
	target("lazy_ws_prefetch_gain",
	       "lazy-restore: lazy / lazy with working-set prefetch, whole working set",
	       median(gain, n), G_NONE, 0);
out_dir:
	remove_dir();
out_rt:
	fl_runtime_destroy(rt);
out_free:
	for (m = 0; m < LR_NR; m++) {
		free(first[m]);
		free(total[m]);
	}
	free(gain);
	free(ftte);
	free(tote);
	free(perm);
}

/* ---- live-snapshot ---- */

struct lw {
	pthread_t th;
	char *mem;
	size_t npages;
	_Atomic size_t span;	/* pages written: the last span of the region */
	_Atomic uint64_t count;
	atomic_bool stop;
};

/* the program: one 8-byte store to a random page of its span, as fast as it can */
static void *lw_main(void *arg)
{
	struct lw *w = arg;
	uint64_t n = 0;

	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		size_t span = atomic_load_explicit(&w->span, memory_order_relaxed);
		char *base = w->mem + (w->npages - span) * ps;

		for (int i = 0; i < 256; i++, n++) {
			uint64_t x = mix64(n);

			((volatile uint64_t *)(base + x % span * ps))[(x >> 40) % (ps / 8)] = x | 1;
		}
		atomic_store_explicit(&w->count, n, memory_order_relaxed);
	}
	return NULL;
}

static uint64_t live_copies(struct fl_runtime *rt)
{
	struct fl_stats st = { .size = sizeof(st) };

	return fl_stats_get(rt, &st) ? 0 : st.ckpt_live_copies;
}

/*
 * One writing pattern: rounds of (a window without a snapshot, a live
 * snapshot), alternating which comes first; the quiet window lasts as long
 * as the previous snapshot. Return: 0, or the failed save's error.
 */
static int ls_pattern(struct fl_runtime *rt, struct fl_ckpt *ck, struct lw *w, const char *img,
		      const char *pattern, size_t span, size_t len)
{
	unsigned int n = rounds(), r;
	double *ms[2], *rate[2], *cp = xcalloc(n, sizeof(double)), *ratio = xcalloc(n, sizeof(double));
	double window_ms = 200;
	char detail[160], name[64];
	int ret = 0;

	for (int m = 0; m < 2; m++) {
		ms[m] = xcalloc(n, sizeof(double));
		rate[m] = xcalloc(n, sizeof(double));
	}
	atomic_store_explicit(&w->span, span, memory_order_relaxed);
	usleep(200000);		/* the span written once: the writer's steady state */
	for (r = 0; r < n; r++)
		for (int j = 0; j < 2; j++) {
			int m = (int)((r + (unsigned int)j) % 2);	/* 0 none, 1 live */
			uint64_t c0, t0, cp0 = live_copies(rt);

			unlink(img);
			c0 = atomic_load_explicit(&w->count, memory_order_relaxed);
			t0 = now_ns();
			if (m == 0) {
				usleep((useconds_t)(window_ms * 1e3));
			} else {
				ret = fl_ckpt_save(ck, img, FL_CKPT_FULL | FL_CKPT_LIVE);
				if (ret) {
					error_line("live-snapshot", "live", "fl_ckpt_save", ret);
					goto out;
				}
			}
			ms[m][r] = ms_since(t0);
			rate[m][r] = (double)(atomic_load_explicit(&w->count, memory_order_relaxed) -
					      c0) / (ms[m][r] / 1e3);
			if (m == 1) {
				cp[r] = (double)(live_copies(rt) - cp0);
				window_ms = ms[m][r];	/* the next quiet window: as long */
			}
		}
	for (r = 0; r < n; r++)
		ratio[r] = rate[0][r] > 0 ? rate[1][r] / rate[0][r] : 0;
	for (int m = 0; m < 2; m++) {
		double t = median(ms[m], n), wr = median(rate[m], n);

		if (env.rep->json) {
			struct jw jw;

			jw_begin(&jw, stdout);
			jw_str(&jw, "workload", "live-snapshot");
			jw_str(&jw, "mode", m ? "live" : "none");
			jw_str(&jw, "pattern", pattern);
			jw_u64(&jw, "mib", len >> 20);
			jw_u64(&jw, "span_mib", (span * ps) >> 20);
			jw_f64(&jw, "ms", t);
			jw_f64(&jw, "writes_per_sec", wr);
			if (m)
				jw_f64(&jw, "live_copies", median(cp, n));
			jw_u64(&jw, "repeats", n);
			jw_end(&jw);
		} else {
			printf("%-10s %-8s %6zu %8zu %9.1f %14.0f %11.0f\n", m ? "live" : "none",
			       pattern, len >> 20, (span * ps) >> 20, t, wr, m ? median(cp, n) : 0);
		}
	}
	snprintf(name, sizeof(name), "live_snapshot_throughput_%s", pattern);
	snprintf(detail, sizeof(detail),
		 "live-snapshot: writes/s during a live snapshot / without, %s (%zu MiB)",
		 pattern, (span * ps) >> 20);
	target(name, detail, median(ratio, n), G_NONE, 0);
out:
	for (int m = 0; m < 2; m++) {
		free(ms[m]);
		free(rate[m]);
	}
	free(cp);
	free(ratio);
	return ret;
}

void wl_live_snapshot(void)
{
	size_t len = env.quick ? 64ul << 20 : 256ul << 20, npages = len / ps;
	struct fl_region_opts ro;
	struct fl_runtime *rt;
	struct fl_ckpt *ck;
	struct lw w;
	char img[4400];
	int ret;

	header("live-snapshot");
	memset(&w, 0, sizeof(w));
	ret = fl_runtime_create(NULL, &rt);
	if (ret) {
		error_line("live-snapshot", "live", "fl_runtime_create", ret);
		return;
	}
	fl_region_opts_init(&ro);
	ro.flags = FL_REGION_WP;
	ret = fl_region_map(rt, len, &ro, (void **)&w.mem);
	if (ret) {
		error_line("live-snapshot", "live", "fl_region_map", ret);
		goto out_rt;
	}
	fill_pages(w.mem, npages);
	ret = fl_ckpt_create(rt, w.mem, len, FL_DIRTY_SYNC, &ck);
	if (ret) {
		error_line("live-snapshot", "live", "fl_ckpt_create", ret);
		goto out_rt;
	}
	make_dir();
	path_of(img, sizeof(img), "image");
	w.npages = npages;
	atomic_init(&w.span, npages);
	ret = pthread_create(&w.th, NULL, lw_main, &w);
	if (ret) {
		error_line("live-snapshot", "live", "pthread_create", -ret);
		goto out_ck;
	}
	if (!env.rep->json)
		printf("%-10s %-8s %6s %8s %9s %14s %11s\n", "mode", "pattern", "MiB", "span_MiB",
		       "ms", "writes/s", "live_copies");
	/* uniform: the worst case, every page written before the saver gets
	 * to it; hot: a program whose writes stay in 4 MiB of the region, at
	 * its end, which the saver (in page order) reaches last */
	if (!ls_pattern(rt, ck, &w, img, "uniform", npages, len))
		ls_pattern(rt, ck, &w, img, "hot", (4u << 20) / ps, len);
	atomic_store_explicit(&w.stop, true, memory_order_relaxed);
	pthread_join(w.th, NULL);
out_ck:
	unlink(img);
	remove_dir();
	fl_ckpt_destroy(ck);
out_rt:
	fl_runtime_destroy(rt);
}
