/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memswap.h - the kernel's own answer to a memory budget, for the
 * benchmarks that compare against it: a memory cgroup limited to the budget,
 * and the swap that the cgroup pages out to (memswap.c).
 *
 * Users: faultline-bench (farmem-sort, mode memcg) and, through the
 * faultline-bench-swap tool (bench-swap.c), preload-budget-bench.sh.
 *
 * One bench swap per machine at a time: bench_swap_up() takes an exclusive
 * flock(2) on BENCH_SWAP_DIR/lock and keeps it until bench_swap_down(), also
 * when it only uses a swap that was active already (so that no other run
 * removes a swap this one is paging to). What it makes is written to
 * BENCH_SWAP_DIR/state before it is made; the next holder of the lock that
 * finds a state file knows its writer died without tearing down (the lock
 * died with it) and removes that swap first.
 */
#ifndef FL_BENCH_MEMSWAP_H
#define FL_BENCH_MEMSWAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_SWAP_DIR "/run/faultline-bench"
/* the swap file, when there is no zram: on the root disk, not a tmpfs */
#define BENCH_SWAP_PATH "/var/tmp/faultline-bench-swap"
/* how long bench_swap_up() waits for another run's swap before it gives up */
#define BENCH_SWAP_WAIT_S 900
/* how often a waiting parent reads its group's memory.stat: memcg_stat_refresh() */
#define MEMCG_REFRESH_MS 10

enum bench_swap_kind {
	BENCH_SWAP_NONE,	/* no swap: bench_swap.why says why */
	BENCH_SWAP_EXISTING,	/* swap was active already: used as it is */
	BENCH_SWAP_ZRAM,	/* a zram device set up here (compressed RAM) */
	BENCH_SWAP_FILE,	/* a swap file set up here, BENCH_SWAP_PATH */
};

/* what bench_swap_up() may set up when no swap is active */
#define BENCH_SWAP_WANT_ZRAM (1u << BENCH_SWAP_ZRAM)
#define BENCH_SWAP_WANT_FILE (1u << BENCH_SWAP_FILE)
#define BENCH_SWAP_WANT_ANY (BENCH_SWAP_WANT_ZRAM | BENCH_SWAP_WANT_FILE)

struct bench_swap {
	enum bench_swap_kind kind;
	char device[256];	/* /dev/zramN, the file, or the first active swap area */
	char detail[160];	/* e.g. "lz4, 512 MiB"; existing: every active area */
	char note[512];		/* what was cleaned up first (an interrupted run's swap), or "" */
	char why[512];		/* kind NONE: why there is no swap */
	int err;		/* kind NONE: bench_swap_up()'s negative errno */
	/* private to memswap.c */
	int lock_fd;
	int zram;		/* the zram device set up here, or -1 */
	bool zram_added;	/* hot-added here: removed again at the end */
};

/**
 * bench_swap_up() - make sure swap is active, and keep it until bench_swap_down().
 * @bytes: the swap to set up when none is active (zram disk size or file size)
 * @want: BENCH_SWAP_WANT_*: what may be set up, zram before a file
 *
 * Swap that is active already is used as it is (kind EXISTING): adding ours
 * beside it would spread the pages over both. Needs root.
 * Context: may block up to BENCH_SWAP_WAIT_S seconds for another run's swap.
 * Return: 0 (@s->kind says which swap), or a negative errno with @s->why;
 * @s is ready for bench_swap_down() either way.
 */
int bench_swap_up(struct bench_swap *s, uint64_t bytes, unsigned int want);

/* remove what bench_swap_up() set up, release the lock; idempotent */
void bench_swap_down(struct bench_swap *s);

/* "none", "existing", "zram", "file" */
const char *bench_swap_kind_name(enum bench_swap_kind k);

/**
 * memcg_make() - a new memory cgroup limited to @limit bytes.
 * cgroup v2 where its memory controller is available, else v1's memory
 * hierarchy (hybrid mounts). @dir receives the group's path; remove it with
 * rmdir() once it is empty. Empty groups that runs of dead processes left
 * behind (memcg_make's names carry the pid) are removed first.
 * Return: 0, or a negative errno with @why.
 */
int memcg_make(uint64_t limit, char *dir, size_t dlen, char *why, size_t wlen);

/* move @pid into the group: 0 or a negative errno */
int memcg_attach(const char *dir, int pid);

/**
 * memcg_stat_refresh() - make the kernel bring the group's statistics up to
 * date, by reading its memory.stat.
 *
 * Why: limit reclaim decides whether to move pages from the active to the
 * inactive list (and so whether it can free anything at all) from the
 * group's LRU statistics, and it flushes those only when the last flush is
 * more than ~2 s old ("rate-limited": mem_cgroup_flush_stats_ratelimited()
 * in lru_prepare_scan_control()). A group of a few thousand pages that
 * swaps turns its whole LRU over in that time: every page it swaps in
 * comes back on the active list, reclaim empties the inactive list, the
 * stale counts say the inactive list is not low, nothing is deactivated, 16
 * reclaim passes in a row free nothing within a millisecond, and the kernel
 * OOM-kills the group's task with most of its memory in swap (seen on 6.18
 * with zram and with a swap file). Reading memory.stat flushes the counts;
 * a parent that does it every MEMCG_REFRESH_MS keeps them current.
 */
void memcg_stat_refresh(const char *dir);

/* the group's OOM kills so far (v1 memory.oom_control, v2 memory.events), or -1 */
long memcg_oom_kills(const char *dir);

#endif
