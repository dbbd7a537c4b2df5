/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tap.h - the test programs' tiny harness. One program per behaviour.
 * Exit codes: 0 pass (or skipped: see tap_skip_all()), 1 fail.
 * Output is TAP 13: "1..N", "ok K - name", "not ok K - name", "# ..." lines.
 */
#ifndef FL_TAP_H
#define FL_TAP_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <faultline.h>

static int tap_n, tap_failed;

static inline void tap_plan(int n)
{
	printf("TAP version 13\n1..%d\n", n);
	fflush(stdout);
}

__attribute__((format(printf, 2, 3)))
static inline int tap_ok(int cond, const char *fmt, ...)
{
	va_list ap;

	printf("%s %d - ", cond ? "ok" : "not ok", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		tap_failed++;
	return cond;
}

__attribute__((format(printf, 1, 2)))
static inline void tap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* one case skipped (a kernel feature missing, ...): an "ok" line with the reason */
__attribute__((format(printf, 1, 2)))
static inline void tap_skip(const char *fmt, ...)
{
	va_list ap;

	printf("ok %d - # SKIP ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/*
 * Skip the whole program: the TAP plan "1..0 # SKIP why", exit 0. Exit 77,
 * the skip of exit-code tests, is an error to meson's TAP runner (Debian
 * 12's meson 1.0 reports any non-zero exit of a TAP test as ERROR); the
 * plan is how TAP says a file was skipped, and meson shows it as SKIP.
 */
__attribute__((noreturn, format(printf, 1, 2)))
static inline void tap_skip_all(const char *fmt, ...)
{
	va_list ap;

	printf("1..0 # SKIP ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(0);
}

static inline int tap_done(void)
{
	if (tap_failed)
		printf("# %d of %d failed\n", tap_failed, tap_n);
	fflush(stdout);
	return tap_failed ? 1 : 0;
}

/* expect a call to return exactly @want (0 or a negative errno) */
#define TAP_EQ(call, want) do {						\
	long _got = (long)(call), _want = (long)(want);			\
	tap_ok(_got == _want, "%s == %s (got %ld: %s)", #call, #want,	\
	       _got, _got <= 0 ? fl_strerror((int)_got) : "count");	\
} while (0)

/*
 * A runtime for a test, or skip when this machine cannot open a userfaultfd
 * (no root, no /dev/userfaultfd access, vm.unprivileged_userfaultfd=0).
 */
static inline struct fl_runtime *tap_runtime(const struct fl_runtime_opts *o)
{
	struct fl_runtime *rt = NULL;
	int ret = fl_runtime_create(o, &rt);

	if (ret == -EPERM || ret == -ENOSYS || ret == -EACCES)
		tap_skip_all("cannot open a userfaultfd here: %s", fl_strerror(ret));
	if (ret) {
		printf("Bail out! fl_runtime_create: %s\n", fl_strerror(ret));
		exit(1);
	}
	return rt;
}

/*
 * Say which threads resolved @rt's faults: the -thread runs of a test
 * (FAULTLINE_RESOLVE=auto) show here that their faults were in-thread.
 */
static inline void tap_diag_resolve(struct fl_runtime *rt)
{
	struct fl_stats st = { .size = sizeof(st) };

	fl_stats_get(rt, &st);
	tap_diag("resolved: %llu faults in-thread of %llu, %llu write-protect faults",
		 (unsigned long long)st.faults_thread, (unsigned long long)st.faults,
		 (unsigned long long)st.faults_wp);
}

/*
 * A far-memory runtime for a test over @store with a budget of @budget
 * bytes; the non-MOVE eviction path when argv[1] is "no-move". Skips when
 * the kernel can evict nothing (neither UFFDIO_MOVE nor write-protect).
 */
static inline struct fl_runtime *tap_far_runtime_on(struct fl_store *store, size_t budget,
						    int argc, char **argv,
						    struct fl_features *ft)
{
	struct fl_runtime_opts o;
	struct fl_runtime *rt;

	fl_runtime_opts_init(&o);
	o.store = store;
	o.budget = budget;
	if (argc > 1 && !strcmp(argv[1], "no-move"))
		o.flags |= FL_RT_EVICT_NO_MOVE;
	rt = tap_runtime(&o);
	ft->size = sizeof(*ft);
	fl_features(rt, ft);
	if (!ft->move && !ft->wp)
		tap_skip_all("kernel has neither UFFDIO_MOVE nor WP: nothing can be evicted");
	return rt;
}

/* the same over a new memory store (*@store, for fl_store_destroy) */
static inline struct fl_runtime *tap_far_runtime(size_t budget, int argc, char **argv,
						 struct fl_store **store,
						 struct fl_features *ft)
{
	if (fl_store_memory_create(store))
		tap_skip_all("no memory store");
	return tap_far_runtime_on(*store, budget, argc, argv, ft);
}

#endif /* FL_TAP_H */
