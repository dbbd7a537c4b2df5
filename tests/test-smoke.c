/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-smoke - the smallest end-to-end check: create a runtime, map a zero
 * region and a copy region, touch them, check the bytes and the counters.
 */
#include <stdint.h>

#include "common.h"

int main(void)
{
	struct fl_runtime *rt = tap_runtime(NULL);
	struct fl_region_opts ro;
	struct fl_stats st = { .size = sizeof(st) };
	static unsigned char src[1 << 20];
	unsigned char *z, *c;
	size_t bad = 0;

	tap_plan(7);
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (unsigned char)(i * 7 + 3);

	TAP_EQ(fl_region_map(rt, 1 << 20, NULL, (void **)&z), 0);
	fl_region_opts_init(&ro);
	ro.pager = FL_PAGER_COPY;
	ro.src = src;
	ro.src_len = sizeof(src);
	TAP_EQ(fl_region_map(rt, 2 << 20, &ro, (void **)&c), 0);

	for (size_t i = 0; i < (1 << 20); i += 512)
		bad += z[i] != 0;
	z[4096] = 1;
	tap_ok(!bad && z[4096] == 1, "zero region reads zeros and takes a write");
	bad = 0;
	for (size_t i = 0; i < (2 << 20); i++)
		bad += c[i] != (i < sizeof(src) ? src[i] : 0);
	tap_ok(!bad, "copy region: source bytes, then zeros past the source (%zu bad)", bad);

	/* a handler counts a page after the COPY that woke us: let it settle */
	stats_quiet(rt, &st);
	TAP_EQ(fl_stats_get(rt, &st), 0);
	tap_ok(st.faults > 0 && st.pages_installed >= 256 + 512,
	       "counters: %llu faults, %llu pages installed",
	       (unsigned long long)st.faults, (unsigned long long)st.pages_installed);
	TAP_EQ(fl_region_count(rt), 2);
	fl_runtime_destroy(rt);
	return tap_done();
}
