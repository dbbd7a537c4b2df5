/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faultline-bench - fault-path benchmark: the kernel, the bare userfaultfd
 * loop and the faultline runtime tier by tier, on the same work in the same
 * process run so that their ratios are fair on a noisy machine.
 *
 * Modelled on mmtests pft and will-it-scale page_fault1: threads touch
 * every page of a fresh region once (one byte per page), and we time the
 * whole pass and each access.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "ckpt.h"
#include "farmem.h"

const char *const place_names[] = { "same", "cross", "any" };
const char *const churn_names[] = { "none", "other", "neighbour" };

enum workload { W_FIRST_TOUCH, W_FAULT_AROUND, W_CHURN, W_SCALING, W_LATENCY,
	W_DIRTY_COLLECT, W_CKPT_WRITE, W_LAZY_RESTORE, W_LIVE_SNAPSHOT,
	W_FARMEM_SCAN, W_FARMEM_SORT, W_NR };
static const char *const workload_names[W_NR] = {
	"first-touch", "fault-around", "churn", "scaling", "latency",
	"dirty-collect", "ckpt-write", "lazy-restore", "live-snapshot",
	"farmem-scan", "farmem-sort",
};

#define MAX_RATES 8

/* pages per run; --quick and --pages change them */
struct sizes {
	size_t ft_same, ft_cross, fa, churn, scale_per_thread, lat_same, lat_cross;
};

static const struct sizes full_sizes = {
	.ft_same = 65536, .ft_cross = 8192, .fa = 65536, .churn = 65536,
	.scale_per_thread = 16384, .lat_same = 65536, .lat_cross = 16384,
};
/* ~25-35 s in all on 2 vCPUs: cross-vCPU faults cost ~100 us each */
static const struct sizes quick_sizes = {
	.ft_same = 16384, .ft_cross = 1024, .fa = 16384, .churn = 16384,
	.scale_per_thread = 2048, .lat_same = 16384, .lat_cross = 2048,
};

static struct {
	struct report_opts rep;
	bool quick;
	unsigned int repeat;
	unsigned int threads;		/* scaling: 1..threads */
	unsigned int timeout;		/* seconds per run before we give up */
	unsigned int modes;		/* bit per enum mode */
	unsigned int workloads;		/* bit per enum workload */
	struct sizes sz;
	unsigned int rates[MAX_RATES];	/* --churn */
	unsigned int nrates;
	size_t ps;
	int ncpu;
	int cpus[CPU_SETSIZE];		/* the CPUs of our affinity mask */
	struct result *all;		/* every reported line, for the targets */
	size_t nall, capall;
} g;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("faultline-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("faultline-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'faultline-bench --help'.\n", stderr);
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* ------------------------------------------------------------------------ */
/* Faulting threads and the churn writer                                     */

struct worker {
	pthread_t th;
	int cpu;
	char *base;
	size_t npages;
	size_t ps;
	uint32_t *perm;			/* NULL: sequential */
	bool write;
	pthread_barrier_t *bar;
	uint64_t t0, t1, faults, bad, sink;
	int err;
	struct hist hist;
};

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t *make_perm(size_t n, uint64_t seed)
{
	uint32_t *p = malloc(n * sizeof(*p));
	size_t i;

	if (!p)
		die("out of memory for a %zu-page permutation", n);
	for (i = 0; i < n; i++)
		p[i] = (uint32_t)i;
	for (i = n - 1; i > 0; i--) {
		size_t j = (size_t)(splitmix64(&seed) % (i + 1));
		uint32_t t = p[i];

		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

static uint64_t thread_faults(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru))
		return 0;
	/* a fault resolved by a uffd handler is retried, and counted as major;
	 * one resolved in this thread's SIGBUS handler is not counted at all */
	return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt + bare_thread_faults();
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t prev, t, f0, sum = 0;
	size_t i;

	w->err = pin_self(w->cpu);
	/* everything above this barrier is untimed set-up */
	pthread_barrier_wait(w->bar);
	f0 = thread_faults();
	prev = now_ns();
	w->t0 = prev;
	for (i = 0; i < w->npages; i++) {
		char *p = w->base + (w->perm ? w->perm[i] : i) * w->ps;

		if (w->write)
			*(volatile char *)p = 1;
		else
			sum += (uint64_t)*(volatile char *)p;
		/* one clock read per page: the interval includes the loop itself */
		t = now_ns();
		hist_record(&w->hist, t - prev);
		prev = t;
	}
	w->t1 = prev;
	w->faults = thread_faults() - f0;
	w->sink = sum;
	/* untimed: every page must hold what a user expects */
	for (i = 0; i < w->npages; i++) {
		const char *p = w->base + i * w->ps;

		if (p[0] != (w->write ? 1 : 0) || p[w->ps - 1] != 0)
			w->bad++;
	}
	return NULL;
}

struct churner {
	pthread_t th;
	struct backend *b;
	enum churn_kind kind;
	unsigned int rate;
	int cpu;
	pthread_barrier_t *bar;
	atomic_bool stop;
	uint64_t ops;
	double seconds;
};

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000ull),
			       .tv_nsec = (long)(t % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/*
 * The writer owns the backend's churn state until it is joined. It keeps its
 * rate by absolute deadlines; when an operation takes longer than the period
 * (a grace period, a writer lock) it does not try to catch up in a burst.
 */
static void *churn_main(void *arg)
{
	struct churner *c = arg;
	uint64_t period = 1000000000ull / c->rate, t0, next, t;

	(void)pin_self(c->cpu);
	pthread_barrier_wait(c->bar);
	t0 = now_ns();
	next = t0;
	t = t0;
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		backend_churn_op(c->b, c->kind);
		c->ops++;
		next += period;
		t = now_ns();
		if (next > t)
			sleep_until(next);
		else if (t - next > 10 * period)
			next = t;
	}
	c->seconds = (double)(now_ns() - t0) / 1e9;
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* One run                                                                   */

static volatile sig_atomic_t watchdog_armed;
static char watchdog_what[160];

static void watchdog(int sig)
{
	static const char msg[] = "faultline-bench: a run did not finish in time, giving up: ";

	(void)sig;
	if (!watchdog_armed)
		return;
	/* a faulting thread is blocked on a fault nobody serves: nothing to save */
	(void)!write(2, msg, sizeof(msg) - 1);
	(void)!write(2, watchdog_what, strlen(watchdog_what));
	(void)!write(2, "\n", 1);
	_exit(3);
}

static void run_once(const struct cfg *c, struct result *r, uint64_t seed)
{
	pthread_barrier_t bar;
	struct churner ch;
	struct backend be;
	struct worker *w;
	size_t len = c->pages * g.ps, per, done = 0;
	uint64_t tmin = UINT64_MAX, tmax = 0;
	unsigned int i, nbar;
	void *addr;
	int ret;

	memset(r, 0, sizeof(*r));
	r->c = *c;
	snprintf(watchdog_what, sizeof(watchdog_what), "%s %s %u pages",
		 c->workload, mode_names[c->mode], (unsigned int)c->pages);
	ret = backend_open(&be, c->mode, c->hthreads, c->hcpu, c->no_pin);
	if (ret) {
		r->err = ret;
		r->err_what = mode_is_runtime(c->mode) ? "fl_runtime_create" : "bare_open";
		return;
	}
	ret = backend_map(&be, len, c->fault_around, c->churn_kind, &addr);
	if (ret) {
		r->err = ret;
		r->err_what = mode_is_runtime(c->mode) ? "fl_region_map/register" : "map";
		backend_close(&be, NULL);
		return;
	}
	w = calloc(c->fthreads, sizeof(*w));
	if (!w)
		die("out of memory");
	nbar = c->fthreads + 1 + (c->churn ? 1 : 0);
	ret = pthread_barrier_init(&bar, NULL, nbar);
	if (ret)
		die("pthread_barrier_init: %s", strerror(ret));
	per = c->pages / c->fthreads;
	for (i = 0; i < c->fthreads; i++) {
		w[i].cpu = c->fcpu[i];
		w[i].ps = g.ps;
		w[i].base = (char *)addr + done * g.ps;
		w[i].npages = i + 1 == c->fthreads ? c->pages - done : per;
		w[i].write = c->write;
		w[i].bar = &bar;
		w[i].perm = c->random ? make_perm(w[i].npages, seed + i) : NULL;
		hist_init(&w[i].hist);
		done += w[i].npages;
	}
	memset(&ch, 0, sizeof(ch));
	watchdog_armed = 1;
	alarm(g.timeout);
	/* a thread we cannot start would leave the others at the barrier: fatal */
	for (i = 0; i < c->fthreads; i++) {
		ret = pthread_create(&w[i].th, NULL, worker_main, &w[i]);
		if (ret)
			die("pthread_create: %s", strerror(ret));
	}
	if (c->churn) {
		ch.b = &be;
		ch.kind = c->churn_kind;
		ch.rate = c->churn;
		ch.cpu = c->churn_cpu;
		ch.bar = &bar;
		atomic_init(&ch.stop, false);
		ret = pthread_create(&ch.th, NULL, churn_main, &ch);
		if (ret)
			die("pthread_create: %s", strerror(ret));
	}
	pthread_barrier_wait(&bar);
	r->hist = malloc(sizeof(*r->hist));
	if (!r->hist)
		die("out of memory");
	hist_init(r->hist);
	for (i = 0; i < c->fthreads; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].t0 < tmin)
			tmin = w[i].t0;
		if (w[i].t1 > tmax)
			tmax = w[i].t1;
		r->faults += w[i].faults;
		r->bad_pages += w[i].bad;
		hist_merge(r->hist, &w[i].hist);
		if (w[i].err && !r->err) {
			r->err = w[i].err;
			r->err_what = "pin faulting thread";
		}
		free(w[i].perm);
	}
	if (c->churn) {
		/* the writer may be mid-operation (a grace period): it finishes it */
		atomic_store_explicit(&ch.stop, true, memory_order_relaxed);
		pthread_join(ch.th, NULL);
		r->churn_ops = ch.ops;
		r->churn_achieved = ch.seconds > 0 ? (double)ch.ops / ch.seconds : 0;
	}
	r->churn_errors = be.churn_errors;
	r->churn_first_error = be.first_churn_error;
	r->has_tiers = backend_tiers(&be, &r->t);
	/* resolved in the faulting threads' SIGBUS handler: the kernel counts
	 * none of them, the runtime does (its runtime lives for this run only) */
	if (c->mode == M_THREAD && r->has_tiers)
		r->faults += r->t.s.faults_thread;
	backend_close(&be, &r->handler_errors);
	alarm(0);
	watchdog_armed = 0;
	pthread_barrier_destroy(&bar);
	free(w);

	r->pages = c->pages;
	r->seconds = (double)(tmax - tmin) / 1e9;
	if (r->seconds <= 0)
		r->seconds = 1e-9;
	r->faults_per_sec = (double)r->faults / r->seconds;
	r->pages_per_sec = (double)r->pages / r->seconds;
	r->ns_per_page = r->seconds * 1e9 / (double)r->pages;
	r->p50 = hist_quantile(r->hist, 0.50);
	r->p99 = hist_quantile(r->hist, 0.99);
	r->p999 = hist_quantile(r->hist, 0.999);
	r->runs = 1;
}

/* ------------------------------------------------------------------------ */
/* Repeats and medians                                                       */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * Field-wise medians over the repeats that succeeded; the tier counters and
 * the histogram come from the repeat with the median pages/s.
 */
static void reduce(struct result *rr, unsigned int n, struct result *out)
{
	double *v = calloc(n, sizeof(*v)), *key = calloc(n, sizeof(*key));
	struct result **good = calloc(n, sizeof(*good));
	unsigned int ok = 0, i, mid = 0;

	if (!v || !key || !good)
		die("out of memory");
	for (i = 0; i < n; i++)
		if (!rr[i].err)
			good[ok++] = &rr[i];
	if (!ok) {
		*out = rr[0];
		out->hist = NULL;
		for (i = 0; i < n; i++)
			free(rr[i].hist);
		goto out_free;
	}
	for (i = 0; i < ok; i++)
		key[i] = good[i]->pages_per_sec;
	qsort(key, ok, sizeof(key[0]), cmp_double);
	for (i = 0; i < ok; i++)
		if (good[i]->pages_per_sec == key[(ok - 1) / 2])
			mid = i;
	*out = *good[mid];
#define MED(field, type) do { \
		for (i = 0; i < ok; i++) \
			v[i] = (double)good[i]->field; \
		out->field = (type)median(v, ok); \
	} while (0)
	MED(seconds, double);
	MED(faults_per_sec, double);
	MED(pages_per_sec, double);
	MED(ns_per_page, double);
	MED(faults, uint64_t);
	MED(p50, uint64_t);
	MED(p99, uint64_t);
	MED(p999, uint64_t);
	MED(churn_achieved, double);
#undef MED
	out->runs = ok;
	out->bad_pages = 0;
	out->handler_errors = 0;
	for (i = 0; i < ok; i++) {
		out->bad_pages += good[i]->bad_pages;
		out->handler_errors += good[i]->handler_errors;
	}
	for (i = 0; i < n; i++)
		if (&rr[i] != good[mid])
			free(rr[i].hist);
out_free:
	free(good);
	free(key);
	free(v);
}

static void keep(const struct result *r)
{
	if (g.nall == g.capall) {
		g.capall = g.capall ? 2 * g.capall : 256;
		g.all = realloc(g.all, g.capall * sizeof(*g.all));
		if (!g.all)
			die("out of memory");
	}
	g.all[g.nall++] = *r;
}

/*
 * Run every configuration of a group @g.repeat times, interleaved (repeat
 * by repeat, mode by mode) so that drift of the machine hits all alike.
 */
static void run_group(struct cfg *cfgs, unsigned int n)
{
	struct result *rr, out;
	unsigned int i, k;

	if (!n)
		return;
	rr = calloc((size_t)n * g.repeat, sizeof(*rr));
	if (!rr)
		die("out of memory");
	for (k = 0; k < g.repeat; k++)
		for (i = 0; i < n; i++)
			run_once(&cfgs[i], &rr[i * g.repeat + k], 0x5eed0000u + k * 131 + i);
	for (i = 0; i < n; i++) {
		reduce(&rr[i * g.repeat], g.repeat, &out);
		report_result(&g.rep, &out);
		keep(&out);
	}
	fflush(stdout);
	free(rr);
}

/* ------------------------------------------------------------------------ */
/* Workloads                                                                 */

static bool mode_on(enum mode m)
{
	return g.modes & (1u << m);
}

static void cfg_init(struct cfg *c, const char *wl, enum mode m, bool random,
		     bool write, size_t pages)
{
	unsigned int i;

	memset(c, 0, sizeof(*c));
	c->workload = wl;
	c->mode = m;
	c->random = random;
	c->write = write;
	c->pages = pages;
	c->fthreads = 1;
	c->hthreads = mode_is_uffd(m) ? 1 : 0;
	for (i = 0; i < MAX_THREADS; i++) {
		c->fcpu[i] = -1;
		c->hcpu[i] = -1;
	}
	c->churn_cpu = g.ncpu > 1 ? g.cpus[1] : -1;
	c->place = P_SAME;
	c->fcpu[0] = g.cpus[0];
	c->hcpu[0] = g.cpus[0];
}

/*
 * One faulting thread: same = its handler on its CPU; cross = the handler
 * on the other CPU; any = nobody pinned. The kernel (native) always
 * resolves on the faulting CPU: its lines say "same", 0 handlers.
 */
static void cfg_place(struct cfg *c, enum place p)
{
	c->place = p;
	switch (p) {
	case P_SAME:
		c->fcpu[0] = g.cpus[0];
		c->hcpu[0] = g.cpus[0];
		break;
	case P_CROSS:
		c->fcpu[0] = g.cpus[0];
		c->hcpu[0] = g.cpus[1];
		break;
	case P_ANY:
		c->fcpu[0] = -1;
		c->hcpu[0] = -1;
		c->no_pin = true;
		break;
	}
}

static bool cross_ok(void)
{
	static bool told;

	if (g.ncpu >= 2)
		return true;
	if (!told)
		report_note(&g.rep, "only one CPU: 'cross' placement skipped");
	told = true;
	return false;
}

static void wl_first_touch(void)
{
	static const enum place places[] = { P_SAME, P_CROSS, P_ANY };
	struct cfg cfgs[M_NR];
	unsigned int o, a, p, n;
	enum mode m;

	report_header(&g.rep, "first-touch");
	for (o = 0; o < 2; o++)
		for (a = 0; a < 2; a++)
			for (p = 0; p < 3; p++) {
				if (places[p] == P_CROSS && !cross_ok())
					continue;
				n = 0;
				for (m = 0; m < M_NR; m++) {
					if (!mode_on(m) || (!mode_is_uffd(m) && places[p] != P_SAME))
						continue;
					cfg_init(&cfgs[n], "first-touch", m, o, !a,
						 places[p] == P_SAME ? g.sz.ft_same : g.sz.ft_cross);
					if (mode_is_uffd(m))
						cfg_place(&cfgs[n], places[p]);
					n++;
				}
				run_group(cfgs, n);
			}
}

static const long fa_windows[] = {
	0, 16 << 10, 64 << 10, 256 << 10, 2 << 20, FA_ADAPTIVE,
};
#define N_FA (sizeof(fa_windows) / sizeof(fa_windows[0]))

static void wl_fault_around(void)
{
	struct cfg cfgs[M_NR * N_FA];
	unsigned int o, a, n, k;
	enum mode m;

	report_header(&g.rep, "fault-around");
	for (o = 0; o < 2; o++)
		for (a = 0; a < 2; a++) {
			n = 0;
			for (m = 0; m < M_NR; m++) {
				if (!mode_on(m))
					continue;
				/* the kernel and the bare loop have no window: one line each */
				for (k = 0; k < (mode_is_runtime(m) ? N_FA : 1); k++) {
					cfg_init(&cfgs[n], "fault-around", m, o, !a, g.sz.fa);
					cfgs[n].fault_around = fa_windows[k];
					n++;
				}
			}
			run_group(cfgs, n);
		}
}

static void wl_churn(void)
{
	static const unsigned int quick_rates[] = { 0, 1000, 10000 };
	static const unsigned int full_rates[] = { 0, 100, 1000, 10000, 100000 };
	const unsigned int *rates = g.quick ? quick_rates : full_rates;
	unsigned int nrates = g.quick ? 3 : 5, r, n;
	struct cfg cfgs[M_NR * MAX_RATES];

	if (g.nrates) {
		rates = g.rates;
		nrates = g.nrates;
	}
	enum churn_kind k;
	enum mode m;

	report_header(&g.rep, "churn");
	if (g.ncpu < 2)
		report_note(&g.rep, "one CPU: the churn writer shares it with the faulting thread");
	for (k = CHURN_OTHER; k <= CHURN_NEIGHBOUR; k++) {
		n = 0;
		for (r = 0; r < nrates; r++)
			for (m = 0; m < M_NR; m++) {
				if (!mode_on(m) || m == M_THP)
					continue;
				cfg_init(&cfgs[n], "churn", m, true, true, g.sz.churn);
				cfgs[n].churn = rates[r];
				cfgs[n].churn_kind = k;
				n++;
			}
		run_group(cfgs, n);
	}
}

static void wl_scaling(void)
{
	unsigned int f, h, i, j, n, N = g.threads;
	struct cfg cfgs[M_NR];
	enum mode m;

	report_header(&g.rep, "scaling");
	for (f = 1; f <= N; f++)
		for (h = 1; h <= N; h++) {
			n = 0;
			for (m = 0; m < M_NR; m++) {
				bool same = true;

				if (!mode_on(m) || m == M_THP || (!mode_is_uffd(m) && h != 1))
					continue;
				cfg_init(&cfgs[n], "scaling", m, true, true,
					 g.sz.scale_per_thread * f);
				cfgs[n].fthreads = f;
				cfgs[n].hthreads = mode_is_uffd(m) ? h : 0;
				/* faulting thread i and handler i share CPU i (mod CPUs) */
				for (i = 0; i < f; i++)
					cfgs[n].fcpu[i] = g.cpus[i % (unsigned int)g.ncpu];
				for (j = 0; j < cfgs[n].hthreads; j++)
					cfgs[n].hcpu[j] = g.cpus[j % (unsigned int)g.ncpu];
				/* "same": every faulting thread has a handler on its CPU */
				for (i = 0; i < f && mode_is_uffd(m); i++)
					if (i % (unsigned int)g.ncpu >= h)
						same = false;
				cfgs[n].place = same ? P_SAME : P_CROSS;
				n++;
			}
			run_group(cfgs, n);
		}
}

static void wl_latency(void)
{
	static const enum place places[] = { P_SAME, P_CROSS, P_ANY };
	struct cfg cfgs[M_NR];
	unsigned int p, n;
	enum mode m;

	report_header(&g.rep, "latency");
	for (p = 0; p < 3; p++) {
		if (places[p] == P_CROSS && !cross_ok())
			continue;
		n = 0;
		for (m = 0; m < M_NR; m++) {
			if (!mode_on(m) || (!mode_is_uffd(m) && places[p] != P_SAME))
				continue;
			cfg_init(&cfgs[n], "latency", m, true, true,
				 places[p] == P_SAME ? g.sz.lat_same : g.sz.lat_cross);
			if (mode_is_uffd(m))
				cfg_place(&cfgs[n], places[p]);
			n++;
		}
		run_group(cfgs, n);
	}
}

/* far memory (farmem.c): --pages is the working set; --far-io the store's I/O */
static enum far_io far_io_opt;
static size_t far_pages_opt;
static unsigned int far_swap_opt;	/* farmem-sort memcg: BENCH_SWAP_WANT_*; 0 = any */
static const char *far_store_opt;	/* a memcached pool's URL; NULL: a file */

static void wl_farmem(void (*fn)(const struct farmem_opts *))
{
	struct farmem_opts o = {
		.rep = &g.rep, .quick = g.quick, .repeat = g.repeat,
		.pages = far_pages_opt, .io = far_io_opt, .swap = far_swap_opt,
		.store_url = far_store_opt,
	};

	alarm(0);	/* the far-memory runs take their own time; no watchdog */
	fn(&o);
}

static void wl_farmem_scan(void)
{
	wl_farmem(farmem_scan);
}

static void wl_farmem_sort(void)
{
	wl_farmem(farmem_sort);
}

static void (*const workload_fn[W_NR])(void) = {
	wl_first_touch, wl_fault_around, wl_churn, wl_scaling, wl_latency,
	wl_dirty_collect, wl_ckpt_write, wl_lazy_restore, wl_live_snapshot,
	wl_farmem_scan, wl_farmem_sort,
};

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

static void usage(FILE *f)
{
	fprintf(f,
"usage: faultline-bench [options] [workload...]\n"
"\n"
"Fault-path benchmark: the kernel's own first touch, a bare userfaultfd loop\n"
"(handler threads, or in the faulting thread's SIGBUS handler: bare-thread)\n"
"and the faultline runtime with each tier policy, on the same work in one run.\n"
"\n"
"workloads (default: all but farmem-sort, which adds swap and a cgroup):\n"
"  first-touch   4 KiB pages, seq and random order, read and write access,\n"
"                placement same / cross / any\n"
"  fault-around  the same with fault-around windows 16K..2M and adaptive\n"
"  churn         a writer maps/resizes/unmaps other regions or the fault\n"
"                region's neighbours at a set rate (ops/s) while faults run\n"
"  scaling       faulting threads x handler threads, 1..N\n"
"  latency       per-access latency histogram, p50/p99/p999\n"
"  dirty-collect checkpoints: collect and re-arm the dirty set of 1 GiB,\n"
"                0.1/1/10 %% dirty, async and sync tracking (ms)\n"
"  ckpt-write    checkpoints: full image vs raw write(2) of the same bytes,\n"
"                O_DIRECT and buffered, fdatasync'd (MB/s, ratio)\n"
"  lazy-restore  checkpoints: eager vs lazy vs lazy + working-set prefetch,\n"
"                time to first access and to the whole working set\n"
"  live-snapshot checkpoints: program writes/s during a live snapshot vs not\n"
"  (checkpoint files go under $FL_BENCH_DIR, $TMPDIR or /var/tmp)\n"
"  farmem-scan   far memory: a region 4x its budget, evicted to a file store,\n"
"                read seq / random by 1 and 4 threads: modes faultline and\n"
"                raw-store (the same file with io_uring, 4 KiB reads, queue\n"
"                depth 1, 4 and 32)\n"
"  farmem-sort   far memory: in-place sort of an array 4x the budget: modes\n"
"                faultline and memcg (a child in a memory cgroup limited to\n"
"                the budget; with no swap active, sets up zram or else a swap\n"
"                file for the run, see --swap)\n"
"\n"
"modes: native native-thp bare-thread bare spf region global adaptive\n"
"\n"
"options:\n"
"  --json          one JSON object per line instead of the table\n"
"  --quick         smaller runs: everything in under a minute on 2 vCPUs\n"
"  --repeat N      run each line N times, report medians (default 1)\n"
"  --plot DIR      write data, a gnuplot script and PNGs (needs gnuplot) to DIR\n"
"  --modes LIST    comma-separated subset of the modes\n"
"  --threads N     scaling: up to N faulting and N handler threads (default: CPUs)\n"
"  --pages N       pages per run for every workload (per thread for scaling)\n"
"  --churn LIST    churn writer rates in ops/s, e.g. 0,1000,10000 (0 = calm)\n"
"  --timeout SEC   give up (exit 3) when one run takes longer (default 120)\n"
"  --check-uffd    exit 0 if a userfaultfd can be opened, 77 (with the reason) if not\n"
"  --far-io IO     far-memory store I/O, alike for every mode: cold (default:\n"
"                  page cache written back and dropped before each scan), warm,\n"
"                  direct (O_DIRECT)\n"
"  --far-store URL far memory on a memcached pool instead of a file:\n"
"                  memcached://HOST:PORT[,...][?OPTIONS] as FAULTLINE_STORE;\n"
"                  farmem-scan's raw-store then reads the same items with\n"
"                  libmemcached (get at 1 and 4 threads, mget of 32 keys)\n"
"  --swap KIND     farmem-sort memcg: the swap to set up when none is active:\n"
"                  zram, file (on /var/tmp) or any (default: zram, else a file)\n"
"  -h, --help      this text\n"
"\n"
"JSON fields: workload mode order access page_size fault_around (bytes; 0 off,\n"
"-1 adaptive) fault_threads handler_threads placement churn churn_kind\n"
"churn_achieved pages faults seconds faults_per_sec pages_per_sec ns_per_page\n"
"p50_ns p99_ns p999_ns repeats bad_pages, and for runtime modes a tiers object.\n"
"Faults are the faulting threads' own counts (getrusage), so fault-around and\n"
"THP show as fewer faults than pages. Target ratios come last.\n"
"farmem-* JSON fields: workload mode order page_size io queue_depth (raw-store)\n"
"fault_threads (faultline scan) budget_pages pages seconds pages_per_sec (scan)\n"
"pageins and metadata_bytes_per_page (faultline) swap (memcg: existing, zram,\n"
"file or none) swap_device repeats failed_repeats failed_why bad_words;\n"
"a failed line has error and strerror instead of the numbers.\n");
}

/* --far-store: a pool that answers now, or the reason it cannot serve */
static void check_far_store(const char *url)
{
	struct fl_store *s;
	char why[256] = "";
	int ret = fl_store_memcached_create(url, 0, &s, why, sizeof(why));

	if (ret)
		usage_error("bad value for --far-store: '%s': %s", url,
			    why[0] ? why : strerror(-ret));
	fl_store_destroy(s);
	far_store_opt = url;
}

static unsigned long parse_num(const char *opt, const char *s, unsigned long lo,
			       unsigned long hi)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		usage_error("bad value for %s: '%s' (want %lu..%lu)", opt, s, lo, hi);
	return v;
}

static void parse_rates(const char *s)
{
	char *copy = strdup(s), *tok, *save = NULL;

	if (!copy)
		die("out of memory");
	g.nrates = 0;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (g.nrates == MAX_RATES)
			usage_error("bad value for --churn: '%s' (at most %d rates)", s, MAX_RATES);
		g.rates[g.nrates++] = (unsigned int)parse_num("--churn", tok, 0, 10000000);
	}
	free(copy);
	if (!g.nrates)
		usage_error("bad value for --churn: '%s'", s);
}

static unsigned int parse_modes(const char *s)
{
	char *copy = strdup(s), *tok, *save = NULL;
	unsigned int mask = 0;
	enum mode m;

	if (!copy)
		die("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (m = 0; m < M_NR; m++)
			if (!strcmp(tok, mode_names[m]))
				break;
		if (m == M_NR)
			usage_error("unknown mode in --modes: '%s'", tok);
		mask |= 1u << m;
	}
	free(copy);
	if (!mask)
		usage_error("bad value for --modes: '%s'", s);
	return mask;
}

static int check_uffd(void)
{
	const char *how;
	int fd = bare_uffd_open(&how);

	if (fd < 0) {
		printf("userfaultfd unavailable: %s\n", strerror(-fd));
		return 77;
	}
	close(fd);
	printf("userfaultfd: opened via %s\n", how);
	return 0;
}

static void warm_up(void)
{
	size_t len = 64ul << 20, i;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	/* get the kernel's page allocator and our own code paths warm */
	if (p == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	for (i = 0; i < len; i += g.ps)
		p[i] = 1;
	if (munmap(p, len))
		die("munmap: %s", strerror(errno));
}

static void print_banner(const char *uffd_how)
{
	struct utsname u;
	char thp[64] = "?";
	FILE *f;

	if (uname(&u))
		strcpy(u.release, "?");
	f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (f) {
		if (!fgets(thp, sizeof(thp), f))
			strcpy(thp, "?");
		thp[strcspn(thp, "\n")] = 0;
		fclose(f);
	}
	f = fopen("/proc/loadavg", "r");
	if (f) {
		double load;

		/* the ratios stay fair, the absolute numbers do not */
		if (fscanf(f, "%lf", &load) == 1 && load >= 0.5)
			report_note(&g.rep, "load average %.2f before we started: other programs "
				    "share these CPUs, expect noisy numbers", load);
		fclose(f);
	}
	report_note(&g.rep, "faultline-bench %d.%d.%d: kernel %s, %d CPUs, page %zu, "
		    "uffd via %s, THP %s, %s, repeat %u",
		    FL_VERSION_MAJOR, FL_VERSION_MINOR, FL_VERSION_PATCH, u.release,
		    g.ncpu, g.ps, uffd_how, thp, g.quick ? "quick" : "full", g.repeat);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "quick", no_argument, NULL, 'q' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "plot", required_argument, NULL, 'p' },
		{ "modes", required_argument, NULL, 'm' },
		{ "threads", required_argument, NULL, 't' },
		{ "pages", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "churn", required_argument, NULL, 'C' },
		{ "check-uffd", no_argument, NULL, 'c' },
		{ "far-io", required_argument, NULL, 'F' },
		{ "swap", required_argument, NULL, 'S' },
		{ "far-store", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long pages = 0;
	struct sigaction sa;
	const char *how = "none";
	cpu_set_t set;
	int opt, i, fd;
	enum workload w;

	/* one line at a time, also into a pipe: progress shows, and a hang loses nothing */
	setvbuf(stdout, NULL, _IOLBF, 0);
	g.repeat = 1;
	g.timeout = 120;
	g.modes = (1u << M_NR) - 1;
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 'j': g.rep.json = true; break;
		case 'q': g.quick = true; break;
		case 'r': g.repeat = (unsigned int)parse_num("--repeat", optarg, 1, 1000); break;
		case 'p':
			if (!*optarg)
				usage_error("bad value for --plot: '' (want a directory)");
			g.rep.plot_dir = optarg;
			break;
		case 'm': g.modes = parse_modes(optarg); break;
		case 't': g.threads = (unsigned int)parse_num("--threads", optarg, 1, MAX_THREADS); break;
		case 'n': pages = parse_num("--pages", optarg, 1, 1ul << 24); break;
		case 'T': g.timeout = (unsigned int)parse_num("--timeout", optarg, 1, 86400); break;
		case 'C': parse_rates(optarg); break;
		case 'c': return check_uffd();
		case 'F':
			if (farmem_parse_io(optarg, &far_io_opt))
				usage_error("bad value for --far-io: '%s' (cold, warm or direct)", optarg);
			break;
		case 'S':
			if (farmem_parse_swap(optarg, &far_swap_opt))
				usage_error("bad value for --swap: '%s' (zram, file or any)", optarg);
			break;
		case 'M': check_far_store(optarg); break;
		case 'h': usage(stdout); return 0;
		default: fputs("Try 'faultline-bench --help'.\n", stderr); return 2;
		}
	}
	for (i = optind; i < argc; i++) {
		for (w = 0; w < W_NR; w++)
			if (!strcmp(argv[i], workload_names[w]))
				break;
		if (w == W_NR)
			usage_error("unknown workload: '%s'", argv[i]);
		g.workloads |= 1u << w;
	}
	if (!g.workloads)
		/* farmem-sort changes the machine (swap, a memory cgroup)
		 * while it runs: only when asked for by name */
		g.workloads = ((1u << W_NR) - 1) & ~(1u << W_FARMEM_SORT);

	g.ps = (size_t)sysconf(_SC_PAGESIZE);
	if (sched_getaffinity(0, sizeof(set), &set))
		die("sched_getaffinity: %s", strerror(errno));
	for (i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &set))
			g.cpus[g.ncpu++] = i;
	if (!g.threads)
		g.threads = g.ncpu < MAX_THREADS ? (unsigned int)g.ncpu : MAX_THREADS;
	g.sz = g.quick ? quick_sizes : full_sizes;
	far_pages_opt = pages;
	if (pages) {
		g.sz.ft_same = g.sz.ft_cross = g.sz.fa = g.sz.churn = pages;
		g.sz.scale_per_thread = g.sz.lat_same = g.sz.lat_cross = pages;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = watchdog;
	if (sigaction(SIGALRM, &sa, NULL))
		die("sigaction: %s", strerror(errno));

	fd = bare_uffd_open(&how);
	if (fd < 0) {
		report_note(&g.rep, "userfaultfd unavailable (%s): only the native modes run",
			    strerror(-fd));
		g.modes &= (1u << M_NATIVE) | (1u << M_THP);
		how = "none";
	} else {
		close(fd);
	}
	if (!g.modes)
		die("no mode left to run");
	print_banner(how);
	warm_up();
	ckpt_setup(&(struct ckpt_env){ .rep = &g.rep, .repeat = g.repeat, .quick = g.quick });

	for (w = 0; w < W_NR; w++)
		if (g.workloads & (1u << w))
			workload_fn[w]();
	if (g.nall)	/* the far-memory workloads report their own ratios */
		report_targets(&g.rep, g.all, g.nall);
	if (g.rep.plot_dir)
		report_plots(&g.rep, g.all, g.nall);
	for (size_t k = 0; k < g.nall; k++)
		free(g.all[k].hist);
	free(g.all);
	return 0;
}
