/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * live.h - a running program's counters, published for `faultline top`.
 *
 * The shim keeps one small file per process, /dev/shm/faultline.UID.PID,
 * mode 0600 (only the same user, and root, can read it), removed at exit.
 * Nothing is written to it on the fault path: a publisher thread of the
 * shim sleeps on a futex in the file and takes a snapshot (fl_stats_get()
 * and the shim's own counters) only when a reader asks for one:
 *
 *   reader                              publisher (shim thread)
 *   r = ++req; futex_wake(req)     ->   wakes; snapshot under seq (odd while
 *                                       written); served = r; futex_wake(served)
 *   futex_wait(served) until >= r  <-
 *   copy the snapshot while seq is even and unchanged
 *
 * Both words are process-shared futexes (no FUTEX_PRIVATE_FLAG): the file
 * is mapped MAP_SHARED by both processes. A watcher that reads every second
 * costs the program one snapshot a second; nobody watching costs nothing.
 *
 * Liveness: a process killed by a signal leaves its file behind, and an
 * exec(2) keeps the pid but not the publisher. The file names the
 * publisher's thread id; a reader that cannot find /proc/PID/task/TID (or
 * gets no answer) treats the file as stale. A new image of the same pid
 * removes a stale file at start. The file exists before the publisher
 * runs, and @version is the last word the publisher sets: a reader waits
 * a while for it, then takes a file still at 0 for a process that does
 * not answer (stopped while starting) or, if PID is gone, a stale one.
 *
 * The layout is shared by the shim and the launcher, which are built from
 * the same tree; @version changes with any change to it.
 */
#ifndef FL_PRELOAD_LIVE_H
#define FL_PRELOAD_LIVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "faultline.h"

#define FL_LIVE_DIR	"/dev/shm"
#define FL_LIVE_PREFIX	"faultline."
#define FL_LIVE_MAGIC	"fl-live"	/* 8 bytes with its NUL */
#define FL_LIVE_VERSION	(4u << 16 | FL_STATS_VERSION)

/* what one snapshot holds: 64-bit words only, copied word by word */
struct fl_live_snap {
	uint64_t t_ns;			/* CLOCK_MONOTONIC when taken */
	uint64_t regions;		/* regions registered now */
	uint64_t mmaps;			/* the shim's counters (see its JSON) */
	uint64_t malloc_blocks;
	uint64_t bytes_now;
	uint64_t bytes_peak;
	uint64_t not_managed;
	uint64_t register_errors;
	uint64_t rss_anon;		/* the process's RssAnon, bytes */
	uint64_t vm_hwm;		/* its peak resident set (VmHWM), bytes */
	uint64_t managed_resident;	/* managed memory resident now (mincore), bytes */
	uint64_t heap_trims;		/* FAULTLINE_TRIM_HEAP: malloc_trim calls */
	uint64_t heap_trim_ns;		/* and the time they took */
	struct fl_stats st;		/* st.size and st.version share a word */
};

struct fl_live {
	char magic[8];			/* FL_LIVE_MAGIC */
	_Atomic uint32_t version;	/* FL_LIVE_VERSION; 0 while starting */
	uint32_t size;			/* sizeof(struct fl_live) */
	int32_t pid;
	int32_t publisher_tid;		/* the thread that answers */
	uint64_t start_ns;		/* CLOCK_MONOTONIC at the shim's start */
	uint64_t budget;		/* FAULTLINE_BUDGET, bytes; 0: none */
	uint64_t page_size;
	char program[64];		/* /proc/PID/comm at start */
	_Atomic uint32_t req;		/* readers: add 1, wake */
	_Atomic uint32_t served;	/* publisher: the req last answered, wake */
	_Atomic uint32_t seq;		/* odd while snap is written */
	uint32_t pad;
	struct fl_live_snap snap;
};

/* "/dev/shm/faultline.UID.PID"; Return: snprintf's */
static inline int fl_live_path(char *buf, size_t len, unsigned int uid, int pid)
{
	return snprintf(buf, len, FL_LIVE_DIR "/" FL_LIVE_PREFIX "%u.%d", uid, pid);
}

#define FL_LIVE_WORDS (sizeof(struct fl_live_snap) / sizeof(uint64_t))
_Static_assert(sizeof(struct fl_live_snap) % sizeof(uint64_t) == 0,
	       "the snapshot is copied as 64-bit words");

/*
 * The snapshot is a sequence lock: the publisher makes seq odd, writes the
 * words, makes it even again; a reader's copy counts only if seq was even
 * and the same before and after it. The words are relaxed atomics, so
 * neither side ever reads a torn word; the fences order them against seq.
 */
static inline void fl_live_snap_write(struct fl_live *l, const struct fl_live_snap *s)
{
	uint32_t q = atomic_load_explicit(&l->seq, memory_order_relaxed);
	_Atomic uint64_t *dst = (_Atomic uint64_t *)&l->snap;
	const uint64_t *src = (const uint64_t *)s;

	atomic_store_explicit(&l->seq, q + 1, memory_order_relaxed);
	/* seq odd before any word changes */
	atomic_thread_fence(memory_order_release);
	for (size_t i = 0; i < FL_LIVE_WORDS; i++)
		atomic_store_explicit(&dst[i], src[i], memory_order_relaxed);
	/* every word written before seq is even again */
	atomic_store_explicit(&l->seq, q + 2, memory_order_release);
}

/* Return: true if @out is a consistent copy; false if the publisher kept
 * writing through @tries attempts */
static inline bool fl_live_snap_read(const struct fl_live *l, struct fl_live_snap *out,
				     int tries)
{
	const _Atomic uint64_t *src = (const _Atomic uint64_t *)&l->snap;
	uint64_t *dst = (uint64_t *)out;

	while (tries-- > 0) {
		uint32_t q = atomic_load_explicit(&l->seq, memory_order_acquire);

		if (q & 1)
			continue;
		for (size_t i = 0; i < FL_LIVE_WORDS; i++)
			dst[i] = atomic_load_explicit(&src[i], memory_order_relaxed);
		/* the words read before seq is looked at again */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&l->seq, memory_order_relaxed) == q)
			return true;
	}
	return false;
}

#endif /* FL_PRELOAD_LIVE_H */
