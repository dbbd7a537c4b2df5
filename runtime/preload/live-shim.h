/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * live-shim.h - what the shim (preload.c) and its publisher (live.c) share.
 */
#ifndef FL_PRELOAD_LIVE_SHIM_H
#define FL_PRELOAD_LIVE_SHIM_H

#include <stdbool.h>
#include <stdint.h>

struct fl_live_snap;

struct live_ops {
	/* fill every field but t_ns; Context: the publisher thread */
	void (*snapshot)(struct fl_live_snap *s);
	/* write one statistics line (FAULTLINE_STATS_INTERVAL_MS) */
	void (*line)(void);
	/* the counters file could not be made (@err: errno) */
	void (*warn)(const char *path, int err);
	/* housekeeping every live_cfg.tick_ms (FAULTLINE_TRIM_HEAP) */
	void (*tick)(void);
};

struct live_cfg {
	bool publish;		/* FAULTLINE_LIVE: the file for faultline top */
	uint64_t interval_ms;	/* FAULTLINE_STATS_INTERVAL_MS; 0: none */
	uint64_t budget;	/* bytes, shown beside the resident pages */
	uint64_t start_ns;	/* CLOCK_MONOTONIC at the shim's start */
	uint64_t tick_ms;	/* ops->tick() this often; 0: never */
};

/* CLOCK_MONOTONIC in ns */
uint64_t live_now_ns(void);

/* remove a file an earlier image of this pid left. Context: constructor. */
void live_forget_stale(void);

/*
 * live_start() - start the publisher thread, which also runs the ticks
 * (once; later calls do nothing).
 * Context: the shim's recursion guard raised (the thread must be the
 * runtime's). Return: 0 (also when only the file failed: @ops->warn
 * said so); -errno if the thread could not start.
 */
int live_start(const struct live_ops *ops, const struct live_cfg *cfg);

/*
 * live_fork_child() - in the child of fork(): forget the parent's file
 * (without removing it) so that live_start() can publish the child's.
 * Context: the shim's atfork child handler.
 */
void live_fork_child(void);

/* live_stop() - at exit: the file's name goes, the thread stops waking */
void live_stop(void);

#endif /* FL_PRELOAD_LIVE_SHIM_H */
