/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-features - the feature report names, for every feature the runtime
 * degrades on, the mechanism this kernel gets, and it agrees with
 * fl_features(). Runs in the stock-kernel guests (suite 'kernel'): on 6.1
 * it must say MOVE-less eviction, synchronous dirty tracking, no POISON.
 */
#include <stdint.h>

#include "tap.h"

static char report[8192];

static const char *line(const char *key)
{
	static char buf[512];
	char want[64];
	const char *p;
	size_t n;

	/* at the start of a line: "dirty_tracking:" is not "far_dirty_tracking:" */
	snprintf(want, sizeof(want), "\n%s", key);
	p = strstr(report, want);
	if (!p)
		return "";
	p++;
	n = strcspn(p, "\n");
	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	memcpy(buf, p, n);
	buf[n] = 0;
	return buf;
}

int main(void)
{
	struct fl_runtime_opts o;
	struct fl_runtime *rt;
	struct fl_features ft = { .size = sizeof(ft) };
	struct fl_store *st = NULL;
	FILE *f;

	tap_plan(8);
	rt = tap_runtime(NULL);
	TAP_EQ(fl_features(rt, &ft), 0);
	f = fmemopen(report, sizeof(report) - 1, "w");
	TAP_EQ(fl_features_print(rt, f), 0);
	fclose(f);
	tap_diag("kernel features 0x%llx, move %d, poison %d, wp %d, wp_async %d",
		 (unsigned long long)ft.kernel_features, ft.move, ft.poison, ft.wp, ft.wp_async);

	tap_ok(strstr(line("fill_error:"), ft.poison ? "UFFDIO_POISON" : "no POISON") != NULL,
	       "fill errors: %s", line("fill_error:"));
	tap_ok(strstr(line("far_read_error:"), ft.poison ? "UFFDIO_POISON" : "no POISON") != NULL,
	       "store read errors: %s", line("far_read_error:"));
	tap_ok(strstr(line("dirty_tracking:"), !ft.wp ? "unavailable" :
		      ft.wp_async ? "WP_ASYNC available" : "no WP_ASYNC") != NULL,
	       "dirty tracking: %s", line("dirty_tracking:"));
	tap_ok(!ft.wp || strstr(line("wp_never_touched:"), "COPY_MODE_WP") != NULL,
	       "never-touched pages: %s", line("wp_never_touched:"));
	fl_runtime_destroy(rt);

	/* with a store: the eviction mechanism actually chosen */
	fl_runtime_opts_init(&o);
	if (fl_store_memory_create(&st) == 0) {
		o.store = st;
		o.budget = 16 << 20;
	}
	rt = tap_runtime(&o);
	f = fmemopen(report, sizeof(report) - 1, "w");
	fl_features_print(rt, f);
	fclose(f);
	tap_ok(strstr(line("far_evict:"), ft.move ? "UFFDIO_MOVE" :
		      ft.wp ? "write-protect, copy" : "off") != NULL,
	       "eviction: %s", line("far_evict:"));
	tap_ok(strstr(line("intercepts:"), ft.kernel_faults ? "kernel-mode accesses (read(2)" :
		      "user-mode accesses only") != NULL, "%s", line("intercepts:"));
	fl_runtime_destroy(rt);
	fl_store_destroy(st);
	return tap_done();
}
