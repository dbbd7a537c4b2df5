/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench.h - what one measured line of faultline-bench is: its configuration
 * (struct cfg) and its result (struct result), shared by the runner
 * (bench.c) and the report (report.c).
 */
#ifndef FL_BENCH_H
#define FL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "hist.h"

#define MAX_THREADS 64

enum place { P_SAME = 0, P_CROSS, P_ANY };

extern const char *const place_names[];
extern const char *const churn_names[];

struct cfg {
	const char *workload;
	enum mode mode;
	bool random, write;
	long fault_around;		/* bytes; 0 off; FA_ADAPTIVE */
	unsigned int fthreads, hthreads;
	enum place place;
	unsigned int churn;		/* writer ops/s; 0 calm */
	enum churn_kind churn_kind;
	size_t pages;			/* total over the faulting threads */
	int fcpu[MAX_THREADS];		/* -1: unpinned */
	int hcpu[MAX_THREADS];
	bool no_pin;			/* handlers unpinned (FL_RT_NO_PIN) */
	int churn_cpu;
};

struct result {
	struct cfg c;
	int err;			/* negative errno; 0 ok */
	const char *err_what;
	unsigned int runs;		/* repeats that succeeded */
	uint64_t pages, faults;
	double seconds, faults_per_sec, pages_per_sec, ns_per_page;
	uint64_t p50, p99, p999;
	double churn_achieved;		/* ops/s the writer really did */
	uint64_t churn_ops, churn_errors;
	int churn_first_error;
	uint64_t bad_pages;		/* pages whose bytes were wrong afterwards */
	uint64_t handler_errors;	/* bare handler errors */
	bool has_tiers;
	struct tiers t;
	struct hist *hist;		/* merged over faulting threads */
};

/* report.c */
struct report_opts {
	bool json;
	const char *plot_dir;
};
void report_header(const struct report_opts *o, const char *workload);
void report_result(const struct report_opts *o, const struct result *r);
void report_note(const struct report_opts *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void report_targets(const struct report_opts *o, const struct result *all, size_t n);
void report_plots(const struct report_opts *o, const struct result *all, size_t n);

#endif
