/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common.h - small helpers the integration tests share: a reproducible
 * byte pattern, quiescent statistics snapshots, a SIGBUS catcher.
 */
#ifndef FL_TEST_COMMON_H
#define FL_TEST_COMMON_H

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

#define TPG 4096u

/* the byte at offset @off of pattern @seed: differs from page to page */
static inline uint8_t pat(uint64_t seed, uint64_t off)
{
	uint64_t x = (off >> 12) * 0x9e3779b97f4a7c15ull + seed * 0xbf58476d1ce4e5b9ull;

	return (uint8_t)((x >> 29) ^ (x >> 43) ^ off ^ (off >> 8));
}

static inline void pat_fill(uint64_t seed, uint64_t off, void *dst, size_t len)
{
	uint8_t *d = dst;

	for (size_t i = 0; i < len; i++)
		d[i] = pat(seed, off + i);
}

/* bytes of [p, p + len) that differ from pattern @seed at offset @off */
static inline size_t pat_bad(uint64_t seed, uint64_t off, const volatile uint8_t *p, size_t len)
{
	size_t bad = 0;

	for (size_t i = 0; i < len; i++)
		bad += p[i] != pat(seed, off + i);
	return bad;
}

static inline void ms_sleep(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * A statistics snapshot once the handlers are quiet: a handler wakes the
 * faulting thread (COPY) before it adds the pages it installed, so a
 * snapshot right after an access may miss the last few counts.
 */
/*
 * Whether a thread of this process other than the caller is running, waiting
 * for a CPU, or in an uninterruptible wait (state R or D): one of the
 * runtime's threads with work in hand.
 */
static inline bool others_busy(void)
{
	pid_t me = (pid_t)syscall(SYS_gettid);
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	bool busy = false;

	if (!d)
		return false;
	while (!busy && (e = readdir(d))) {
		char path[300], buf[512], *p;
		ssize_t n;
		int fd;

		if (e->d_name[0] == '.' || atoi(e->d_name) == me)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;	/* the thread is gone */
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		p = strrchr(buf, ')');	/* the name may hold spaces and parentheses */
		busy = p && p[1] == ' ' && (p[2] == 'R' || p[2] == 'D');
	}
	closedir(d);
	return busy;
}

static inline void stats_quiet(const struct fl_runtime *rt, struct fl_stats *st)
{
	struct fl_stats prev;
	int still = 0;

	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	fl_stats_get(rt, st);
	/*
	 * A handler counts after the ioctl that woke the program, and the
	 * woken thread can take its CPU at that very moment: on a loaded
	 * machine the handler may then wait for a CPU far longer than any
	 * quiet time. Settled means unchanged over three samples in a row
	 * with no other thread of the process running or waiting to run
	 * (a handler between its ioctl and its count is runnable), and
	 * unchanged once more after that look: a handler preempted through
	 * the three samples may run, count and go idle between the last
	 * sample and the look at /proc, which then finds nobody busy; 5 s
	 * at most.
	 */
	for (int i = 0; i < 1000; i++) {
		prev = *st;
		ms_sleep(5);
		fl_stats_get(rt, st);
		still = memcmp(&prev, st, sizeof(prev)) ? 0 : still + 1;
		if (still >= 3 && !others_busy()) {
			prev = *st;
			fl_stats_get(rt, st);
			if (!memcmp(&prev, st, sizeof(prev)))
				break;
			still = 0;
		}
	}
}

#define ST_DELTA(a, b, f) ((unsigned long long)((b).f - (a).f))

/* a statistics snapshot, now */
static inline void stats_now(const struct fl_runtime *rt, struct fl_stats *st)
{
	st->size = sizeof(*st);
	fl_stats_get(rt, st);
}

/*
 * Poll until @cond (over snapshot @st) holds, for up to 10 s: a bound for a
 * background thread (the evictor) to get somewhere, not a timing
 * assertion; the caller checks @cond again.
 */
#define WAIT_FOR(rt, st, cond) do {					\
	for (int wait_i_ = 0; wait_i_ < 10000; wait_i_++) {		\
		stats_now((rt), &(st));					\
		if (cond)						\
			break;						\
		ms_sleep(1);						\
	}								\
} while (0)

/* pages of [m, m + @pages pages) not in memory, as the kernel sees it
 * (mincore(2)): evicted and really gone, not merely counted so */
static inline size_t pages_out(const void *m, size_t pages)
{
	unsigned char *vec = malloc(pages);
	size_t out = 0;

	if (vec && !mincore((void *)m, pages * (size_t)sysconf(_SC_PAGESIZE), vec))
		for (size_t pg = 0; pg < pages; pg++)
			out += !(vec[pg] & 1);
	free(vec);
	return out;
}

/* ---- SIGBUS: touch an address and report whether the access faulted ---- */

static sigjmp_buf sigbus_env;
static volatile sig_atomic_t sigbus_seen;

static inline void sigbus_handler(int sig)
{
	(void)sig;
	sigbus_seen = 1;
	siglongjmp(sigbus_env, 1);
}

/* read one byte at @p; true if it raised SIGBUS. *@val gets the byte otherwise. */
static inline bool read_sigbus(const volatile uint8_t *p, uint8_t *val)
{
	struct sigaction sa, old;
	bool bus;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sigbus_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	sigbus_seen = 0;
	if (sigsetjmp(sigbus_env, 1) == 0)
		*val = *p;
	bus = sigbus_seen;
	sigaction(SIGBUS, &old, NULL);
	return bus;
}

#endif /* FL_TEST_COMMON_H */
