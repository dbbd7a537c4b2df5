/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ckpt.h - faultline-bench's checkpoint workloads: dirty-set
 * collection, image write throughput against a raw write, lazy against
 * eager restore, and a program's slowdown during a live snapshot.
 */
#ifndef FL_BENCH_CKPT_H
#define FL_BENCH_CKPT_H

#include <stdbool.h>

#include "bench.h"

/* what the runner's options say; ckpt_setup() copies it before any workload */
struct ckpt_env {
	const struct report_opts *rep;
	unsigned int repeat;	/* the workloads take at least 5 (--quick: 3) */
	bool quick;
};

void ckpt_setup(const struct ckpt_env *env);

void wl_dirty_collect(void);
void wl_ckpt_write(void);
void wl_lazy_restore(void);
void wl_live_snapshot(void);

#endif
