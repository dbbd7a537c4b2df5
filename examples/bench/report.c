/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * report.c - the readable table, the JSON lines, the target ratios and the
 * plots. Notes go to stdout in table mode and to stderr with --json, so
 * that stdout stays one JSON object per line.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "json.h"

void report_note(const struct report_opts *o, const char *fmt, ...)
{
	FILE *f = o->json ? stderr : stdout;
	va_list ap;

	fputs("# ", f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
}

static const char *fa_str(long fa, char *buf, size_t n)
{
	if (fa == 0)
		return "off";
	if (fa == FA_ADAPTIVE)
		return "adapt";
	if (fa >= (1L << 20))
		snprintf(buf, n, "%ldM", fa >> 20);
	else
		snprintf(buf, n, "%ldK", fa >> 10);
	return buf;
}

void report_header(const struct report_opts *o, const char *workload)
{
	if (o->json)
		return;
	printf("\n== %s\n", workload);
	printf("%-11s %-6s %-5s %5s %5s %-5s %-10s %7s %10s %10s %8s %7s %7s %8s %6s\n",
	       "mode", "order", "acc", "fa", "f/h", "place", "churn", "pages",
	       "faults/s", "pages/s", "ns/page", "p50", "p99", "p999", "spf%");
}

static double spf_frac(const struct tiers *t)
{
	uint64_t done = t->s.spf_ok + t->s.region_ok + t->s.global_ok;

	return done ? (double)t->s.spf_ok / (double)done : 0;
}

static void json_result(const struct result *r)
{
	const struct cfg *c = &r->c;
	struct jw w;

	jw_begin(&w, stdout);
	jw_str(&w, "workload", c->workload);
	jw_str(&w, "mode", mode_names[c->mode]);
	jw_str(&w, "order", c->random ? "random" : "seq");
	jw_str(&w, "access", c->write ? "write" : "read");
	jw_u64(&w, "page_size", (uint64_t)sysconf(_SC_PAGESIZE));
	jw_i64(&w, "fault_around", c->fault_around);
	jw_u64(&w, "fault_threads", c->fthreads);
	jw_u64(&w, "handler_threads", c->hthreads);
	jw_str(&w, "placement", place_names[c->place]);
	jw_u64(&w, "churn", c->churn);
	jw_str(&w, "churn_kind", churn_names[c->churn_kind]);
	if (r->err) {
		jw_str(&w, "error", r->err_what);
		jw_str(&w, "strerror", strerror(-r->err));
		jw_end(&w);
		return;
	}
	jw_f64(&w, "churn_achieved", r->churn_achieved);
	jw_u64(&w, "churn_errors", r->churn_errors);
	jw_u64(&w, "pages", r->pages);
	jw_u64(&w, "faults", r->faults);
	jw_f64(&w, "seconds", r->seconds);
	jw_f64(&w, "faults_per_sec", r->faults_per_sec);
	jw_f64(&w, "pages_per_sec", r->pages_per_sec);
	jw_f64(&w, "ns_per_page", r->ns_per_page);
	jw_u64(&w, "p50_ns", r->p50);
	jw_u64(&w, "p99_ns", r->p99);
	jw_u64(&w, "p999_ns", r->p999);
	jw_u64(&w, "repeats", r->runs);
	jw_u64(&w, "bad_pages", r->bad_pages);
	if (mode_is_bare(c->mode))
		jw_u64(&w, "handler_errors", r->handler_errors);
	if (r->has_tiers) {
		const struct fl_stats *s = &r->t.s;
		size_t i;

		jw_obj_begin(&w, "tiers");
		jw_u64(&w, "faults", s->faults);
		jw_u64(&w, "spf_attempt", s->spf_attempt);
		jw_u64(&w, "spf_ok", s->spf_ok);
		jw_obj_begin(&w, "spf_abort");
		jw_u64(&w, "total", r->t.spf_abort);
		for (i = 0; i < n_stat_fields; i++)
			if (!strncmp(stat_fields[i].name, "spf_abort_", 10))
				jw_u64(&w, stat_fields[i].name + 10, stat_at(s, stat_fields[i].off));
		jw_obj_end(&w);
		jw_u64(&w, "region_attempt", s->region_attempt);
		jw_u64(&w, "region_lock", s->region_ok);
		jw_obj_begin(&w, "region_abort");
		for (i = 0; i < n_stat_fields; i++)
			if (!strncmp(stat_fields[i].name, "region_abort_", 13))
				jw_u64(&w, stat_fields[i].name + 13, stat_at(s, stat_fields[i].off));
		jw_obj_end(&w);
		jw_u64(&w, "global_attempt", s->global_attempt);
		jw_u64(&w, "global_lock", s->global_ok);
		jw_f64(&w, "spf_fraction", spf_frac(&r->t));
		jw_u64(&w, "pages_installed", s->pages_installed);
		jw_u64(&w, "fault_around_pages", s->fault_around_pages);
		jw_u64(&w, "faults_dup", s->faults_dup);
		jw_u64(&w, "copy_eexist", s->copy_eexist);
		jw_u64(&w, "ioctl_errors", s->ioctl_errors);
		/* what the churn writer cost: index versions and grace periods */
		jw_u64(&w, "index_writes", s->index_writes);
		jw_u64(&w, "grace_periods", s->grace_periods);
		jw_obj_end(&w);
	}
	jw_end(&w);
}

void report_result(const struct report_opts *o, const struct result *r)
{
	const struct cfg *c = &r->c;
	char fa[24], fh[24], churn[32], spf[16];

	if (o->json) {
		json_result(r);
		return;
	}
	snprintf(fh, sizeof(fh), "%u/%u", c->fthreads, c->hthreads);
	if (c->churn_kind == CHURN_NONE)
		snprintf(churn, sizeof(churn), "-");
	else
		snprintf(churn, sizeof(churn), "%u%s", c->churn,
			 c->churn_kind == CHURN_OTHER ? "/oth" : "/nbr");
	if (r->err) {
		printf("%-11s %-6s %-5s %5s %5s %-5s %-10s  error: %s: %s\n",
		       mode_names[c->mode], c->random ? "random" : "seq",
		       c->write ? "write" : "read", fa_str(c->fault_around, fa, sizeof(fa)),
		       fh, place_names[c->place], churn, r->err_what, strerror(-r->err));
		return;
	}
	if (r->has_tiers)
		snprintf(spf, sizeof(spf), "%.1f", 100 * spf_frac(&r->t));
	else
		snprintf(spf, sizeof(spf), "-");
	printf("%-11s %-6s %-5s %5s %5s %-5s %-10s %7llu %10.0f %10.0f %8.0f %7llu %7llu %8llu %6s",
	       mode_names[c->mode], c->random ? "random" : "seq",
	       c->write ? "write" : "read", fa_str(c->fault_around, fa, sizeof(fa)),
	       fh, place_names[c->place], churn, (unsigned long long)r->pages,
	       r->faults_per_sec, r->pages_per_sec, r->ns_per_page,
	       (unsigned long long)r->p50, (unsigned long long)r->p99,
	       (unsigned long long)r->p999, spf);
	if (c->churn)
		printf("  (did %.0f ops/s%s)", r->churn_achieved,
		       r->churn_errors ? ", with errors" : "");
	if (r->churn_errors)
		printf("  churn errors: %llu (first: %s)",
		       (unsigned long long)r->churn_errors, strerror(-r->churn_first_error));
	if (r->bad_pages)
		printf("  BAD DATA in %llu pages", (unsigned long long)r->bad_pages);
	if (r->handler_errors)
		printf("  handler errors: %llu", (unsigned long long)r->handler_errors);
	putchar('\n');
}

/* ------------------------------------------------------------------------ */
/* Targets                                                                   */

struct want {
	const char *workload;
	int mode;		/* -1 any */
	int random, write;	/* -1 any */
	long fa;		/* LONG_MIN any */
	int place;		/* -1 any */
	int fthreads;		/* 0 any */
	int churn;		/* -1 any */
	int kind;		/* -1 any */
};

#define ANY_FA (-1000L)

static bool match(const struct result *r, const struct want *w)
{
	const struct cfg *c = &r->c;

	return !r->err && !strcmp(c->workload, w->workload) &&
	       (w->mode < 0 || (int)c->mode == w->mode) &&
	       (w->random < 0 || c->random == w->random) &&
	       (w->write < 0 || c->write == w->write) &&
	       (w->fa == ANY_FA || c->fault_around == w->fa) &&
	       (w->place < 0 || (int)c->place == w->place) &&
	       (!w->fthreads || (int)c->fthreads == w->fthreads) &&
	       (w->churn < 0 || (int)c->churn == w->churn) &&
	       (w->kind < 0 || (int)c->churn_kind == w->kind);
}

static const struct result *find(const struct result *all, size_t n, const struct want *w)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (match(&all[i], w))
			return &all[i];
	return NULL;
}

static void target(const struct report_opts *o, const char *name, const char *detail,
		   double num, double den, double goal)
{
	bool have = num > 0 && den > 0;
	double ratio = have ? num / den : 0;

	if (o->json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_str(&w, "target", name);
		jw_str(&w, "detail", detail);
		if (have)
			jw_f64(&w, "ratio", ratio);
		else
			jw_str(&w, "ratio", "n/a");
		jw_f64(&w, "goal", goal);
		jw_bool(&w, "met", have && ratio >= goal);
		jw_end(&w);
		return;
	}
	if (have)
		printf("%-72s %6.3f  (goal >= %.2f)  %s\n", detail, ratio, goal,
		       ratio >= goal ? "met" : "MISSED");
	else
		printf("%-72s    n/a  (goal >= %.2f)  not measured in this run\n", detail, goal);
}

/* what an in-thread mode's line is held against, and the goal (write, read) */
struct vs_goal {
	enum mode mode;
	int place;
	const char *name;
	double goal_write, goal_read;
};

/*
 * Targets of mode @m (one line per workload, no handler to place): 4K
 * random first touch, one thread, against each of @vs; and 2 faulting
 * threads against one (goal 1.8).
 */
static void in_thread_targets(const struct report_opts *o, const struct result *all, size_t n,
			      enum mode m, const char *label, const char *key,
			      const struct vs_goal *vs, size_t nvs)
{
	const struct result *a, *b;
	char detail[256], name[64];
	int acc;

	for (acc = 1; acc >= 0; acc--) {
		struct want w = { "first-touch", m, 1, acc, 0, P_SAME, 1, 0, -1 };

		a = find(all, n, &w);
		for (size_t k = 0; k < nvs; k++) {
			w.mode = vs[k].mode;
			w.place = vs[k].place;
			b = find(all, n, &w);
			snprintf(detail, sizeof(detail), "%s / %s%s faults/s, 4K random %s first touch",
				 label, mode_names[vs[k].mode],
				 vs[k].place == P_ANY ? " (any)" : vs[k].mode == M_BARE ? " (same)" : "",
				 acc ? "write" : "read");
			snprintf(name, sizeof(name), "%s_vs_%s_%s", key, vs[k].name,
				 acc ? "write" : "read");
			target(o, name, detail, a ? a->faults_per_sec : 0, b ? b->faults_per_sec : 0,
			       acc ? vs[k].goal_write : vs[k].goal_read);
		}
	}
	a = find(all, n, &(struct want){ "scaling", m, -1, -1, ANY_FA, -1, 2, 0, -1 });
	b = find(all, n, &(struct want){ "scaling", m, -1, -1, ANY_FA, -1, 1, 0, -1 });
	snprintf(detail, sizeof(detail), "%s, 2 faulting threads / 1, faults/s", label);
	snprintf(name, sizeof(name), "%s_scaling", key);
	target(o, name, detail, a ? a->faults_per_sec : 0, b ? b->faults_per_sec : 0, 1.8);
}

void report_targets(const struct report_opts *o, const struct result *all, size_t n)
{
	const struct result *a, *b, *best = NULL;
	char detail[160];
	uint64_t spf = 0, done = 0;
	size_t i;
	int acc, k, rate;

	if (!o->json)
		printf("\n== targets (ratios from this run)\n");

	/* 1: adaptive vs bare, 4 KiB random first touch, same CPU, one thread */
	for (acc = 1; acc >= 0; acc--) {
		struct want w = { "first-touch", M_ADAPTIVE, 1, acc, 0, P_SAME, 1, 0, -1 };

		a = find(all, n, &w);
		w.mode = M_BARE;
		b = find(all, n, &w);
		snprintf(detail, sizeof(detail),
			 "adaptive/bare faults/s, 4K random %s first touch, same, 1 thread",
			 acc ? "write" : "read");
		target(o, acc ? "adaptive_vs_bare_write" : "adaptive_vs_bare_read", detail,
		       a ? a->faults_per_sec : 0, b ? b->faults_per_sec : 0, 0.95);
		/*
		 * The same from the median access time: a few multi-ms stalls
		 * (another program taking the CPU) move the mean, not the p50.
		 */
		snprintf(detail, sizeof(detail),
			 "  same, from p50 (1/p50 adaptive vs bare; robust to stalls)");
		target(o, acc ? "adaptive_vs_bare_write_p50" : "adaptive_vs_bare_read_p50", detail,
		       a && a->p50 ? 1.0 / (double)a->p50 : 0,
		       b && b->p50 ? 1.0 / (double)b->p50 : 0, 0.95);
	}

	/* 2: best sequential fault-around vs the kernel's 4 KiB first touch */
	for (acc = 1; acc >= 0; acc--) {
		struct want w = { "fault-around", M_NATIVE, 0, acc, 0, -1, 0, -1, -1 };

		best = NULL;
		b = find(all, n, &w);
		for (i = 0; i < n; i++) {
			const struct result *r = &all[i];

			if (!match(r, &(struct want){ "fault-around", -1, 0, acc, ANY_FA, -1, 0, -1, -1 }) ||
			    !mode_is_runtime(r->c.mode))
				continue;
			if (!best || r->pages_per_sec > best->pages_per_sec)
				best = r;
		}
		if (best) {
			char fa[24];

			if (best->c.fault_around == FA_ADAPTIVE)
				snprintf(fa, sizeof(fa), "adaptive");
			else if (!best->c.fault_around)
				snprintf(fa, sizeof(fa), "off");
			else
				snprintf(fa, sizeof(fa), "%ldK", best->c.fault_around >> 10);
			snprintf(detail, sizeof(detail),
				 "best seq fault-around (%s, %s) / native pages/s, %s",
				 mode_names[best->c.mode], fa, acc ? "write" : "read");
		} else {
			snprintf(detail, sizeof(detail), "best seq fault-around / native pages/s, %s",
				 acc ? "write" : "read");
		}
		target(o, acc ? "fault_around_vs_native_write" : "fault_around_vs_native_read",
		       detail, best ? best->pages_per_sec : 0, b ? b->pages_per_sec : 0, 1.5);
	}

	/* 3: churn: adaptive keeps its calm rate and beats forced global */
	for (k = CHURN_OTHER; k <= CHURN_NEIGHBOUR; k++) {
		for (i = 0; i < n; i++) {
			const struct result *calm, *glob, *r = &all[i];
			struct want w = { "churn", M_ADAPTIVE, -1, -1, ANY_FA, -1, 0, 0, k };

			if (!match(r, &(struct want){ "churn", M_ADAPTIVE, -1, -1, ANY_FA, -1, 0, -1, k }) ||
			    !r->c.churn)
				continue;
			rate = (int)r->c.churn;
			calm = find(all, n, &w);
			w.mode = M_GLOBAL;
			w.churn = rate;
			glob = find(all, n, &w);
			snprintf(detail, sizeof(detail), "churn %d/s %s: adaptive / adaptive calm, faults/s",
				 rate, churn_names[k]);
			target(o, "churn_vs_calm", detail, r->faults_per_sec,
			       calm ? calm->faults_per_sec : 0, 0.9);
			snprintf(detail, sizeof(detail), "churn %d/s %s: adaptive / global, faults/s",
				 rate, churn_names[k]);
			target(o, "churn_vs_global", detail, r->faults_per_sec,
			       glob ? glob->faults_per_sec : 0, 3.0);
		}
	}

	/* 4: without churn, faults resolved on the speculative tier */
	for (i = 0; i < n; i++) {
		const struct result *r = &all[i];

		if (r->err || !r->has_tiers || r->c.mode != M_ADAPTIVE || r->c.churn)
			continue;
		spf += r->t.s.spf_ok;
		done += r->t.s.spf_ok + r->t.s.region_ok + r->t.s.global_ok;
	}
	target(o, "spf_fraction", "spf_ok / resolved faults, adaptive, every line without churn",
	       (double)spf, (double)done, 0.99);

	/*
	 * 5: the ceiling of resolving faults in the faulting thread (the bare
	 * loop in a SIGBUS handler), against the goals set for that mode:
	 * what the plain loop reaches bounds what a runtime can.
	 */
	in_thread_targets(o, all, n, M_BARE_THREAD, "in-thread ceiling: bare-thread", "bare_thread",
			  (const struct vs_goal[]){ { M_BARE, P_ANY, "bare_any", 5.0, 5.0 },
						    { M_NATIVE, P_SAME, "native", 0.4, 0.4 } }, 2);
	/*
	 * 6: the runtime's in-thread mode against the same goals. Its one
	 * line per workload has no handler to place: the faulting thread
	 * resolves, wherever it runs. Against the bare loop at default
	 * placement (what a program's threads get), at the same vCPU (its
	 * best case; reads: no slower), and the kernel.
	 */
	in_thread_targets(o, all, n, M_THREAD, "in-thread: thread", "thread",
			  (const struct vs_goal[]){ { M_BARE, P_ANY, "bare_any", 5.0, 5.0 },
						    { M_BARE, P_SAME, "bare_same", 1.2, 1.0 },
						    { M_NATIVE, P_SAME, "native", 0.4, 0.4 } }, 3);
	fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Plots                                                                     */

static FILE *open_in(const char *dir, const char *name)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		fprintf(stderr, "faultline-bench: %s: %s\n", path, strerror(errno));
	return f;
}

void report_plots(const struct report_opts *o, const struct result *all, size_t n)
{
	static const enum mode modes[] = { M_NATIVE, M_BARE_THREAD, M_BARE, M_SPF, M_REGION, M_GLOBAL,
					   M_ADAPTIVE, M_THREAD, M_THP };
	bool have_scaling = false, have_lat[3] = { false, false, false };
	char name[128];
	unsigned int mi, p, h, hmax = 1;
	FILE *gp, *f;
	size_t i;
	pid_t pid;
	int st;

	if (mkdir(o->plot_dir, 0777) && errno != EEXIST) {
		fprintf(stderr, "faultline-bench: --plot %s: %s\n", o->plot_dir, strerror(errno));
		return;
	}
	gp = open_in(o->plot_dir, "plot.gp");
	if (!gp)
		return;
	fprintf(gp, "set terminal pngcairo size 900,560 noenhanced\nset grid\nset key outside right\n");

	/*
	 * scaling: faults/s per mode against faulting x handler threads. One
	 * x position per (f, h) pair, shared by all modes; native (no handler)
	 * sits at h = 1.
	 */
	for (i = 0; i < n; i++)
		if (!all[i].err && !strcmp(all[i].c.workload, "scaling") &&
		    all[i].c.hthreads > hmax)
			hmax = all[i].c.hthreads;
	for (mi = 0; mi < sizeof(modes) / sizeof(modes[0]); mi++) {

		snprintf(name, sizeof(name), "scaling-%s.dat", mode_names[modes[mi]]);
		f = NULL;
		for (i = 0; i < n; i++) {
			const struct result *r = &all[i];

			if (r->err || strcmp(r->c.workload, "scaling") || r->c.mode != modes[mi])
				continue;
			if (!f && !(f = open_in(o->plot_dir, name)))
				break;
			h = r->c.hthreads ? r->c.hthreads : 1;
			fprintf(f, "%u \"%u/%u\" %.0f\n", (r->c.fthreads - 1) * hmax + h - 1,
				r->c.fthreads, h, r->faults_per_sec);
		}
		if (f) {
			fclose(f);
			fprintf(gp, "%s'%s' using 1:3:xtic(2) with linespoints title '%s'",
				have_scaling ? ", \\\n  " :
				"set output 'scaling.png'\nset title 'scaling: 4K random write first touch'\n"
				"set xlabel 'faulting/handler threads (native: faulting threads)'\n"
				"set ylabel 'faults/s'\nunset logscale\nplot ",
				name, mode_names[modes[mi]]);
			have_scaling = true;
		}
	}
	if (have_scaling)
		fprintf(gp, "\n");

	/* latency CDF per mode, one plot per placement */
	for (p = 0; p < 3; p++) {
		const char *terms[sizeof(modes) / sizeof(modes[0])];
		unsigned int nt = 0, t;

		for (mi = 0; mi < sizeof(modes) / sizeof(modes[0]); mi++) {
			for (i = 0; i < n; i++) {
				const struct result *r = &all[i];

				if (r->err || !r->hist || strcmp(r->c.workload, "latency") ||
				    r->c.mode != modes[mi] || r->c.place != p)
					continue;
				snprintf(name, sizeof(name), "latency-%s-%s.cdf",
					 place_names[p], mode_names[modes[mi]]);
				f = open_in(o->plot_dir, name);
				if (!f)
					break;
				hist_write_cdf(r->hist, f);
				fclose(f);
				terms[nt++] = mode_names[modes[mi]];
				break;
			}
		}
		if (!nt)
			continue;
		have_lat[p] = true;
		fprintf(gp, "set output 'latency-%s.png'\n"
			"set title 'latency CDF: 4K random write first touch, placement %s'\n"
			"set xlabel 'ns per access'\nset ylabel 'fraction of accesses'\n"
			"set logscale x\nplot ", place_names[p], place_names[p]);
		for (t = 0; t < nt; t++)
			fprintf(gp, "%s'latency-%s-%s.cdf' using 1:2 with lines title '%s'",
				t ? ", \\\n  " : "", place_names[p], terms[t], terms[t]);
		fprintf(gp, "\n");
	}
	fclose(gp);
	if (!have_scaling && !have_lat[0] && !have_lat[1] && !have_lat[2]) {
		report_note(o, "--plot: nothing to plot (run the scaling or latency workload)");
		return;
	}

	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "faultline-bench: fork: %s\n", strerror(errno));
		return;
	}
	if (!pid) {
		if (chdir(o->plot_dir))
			_exit(126);
		execlp("gnuplot", "gnuplot", "plot.gp", (char *)NULL);
		_exit(errno == ENOENT ? 127 : 126);
	}
	if (waitpid(pid, &st, 0) < 0) {
		fprintf(stderr, "faultline-bench: waitpid: %s\n", strerror(errno));
		return;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
		report_note(o, "gnuplot is not installed: no PNGs; data and plot.gp are in %s "
			    "(apt-get install gnuplot-nox, then: cd %s && gnuplot plot.gp)",
			    o->plot_dir, o->plot_dir);
	else if (!WIFEXITED(st) || WEXITSTATUS(st))
		report_note(o, "gnuplot failed (status %d): see the messages above; data in %s",
			    WIFEXITED(st) ? WEXITSTATUS(st) : -1, o->plot_dir);
	else
		report_note(o, "plots written to %s (scaling.png, latency-*.png)", o->plot_dir);
}
