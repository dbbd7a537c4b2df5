/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * live.c - the shim's publisher thread: counters for `faultline top` (the
 * file and protocol are in live.h), with FAULTLINE_STATS_INTERVAL_MS a
 * statistics line every interval, and the shim's periodic housekeeping
 * (ops->tick: FAULTLINE_TRIM_HEAP).
 *
 * One thread, asleep on a futex: it wakes when a reader asks for a
 * snapshot, when the next interval line or tick is due, or at exit. The
 * fault path is not touched; a snapshot is fl_stats_get() and a few shim
 * counters.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "live.h"
#include "live-shim.h"

static struct fl_live *live;		/* the mapped file, or &local */
static struct fl_live local;		/* no file: the interval lines only */
static char live_path[64];		/* empty: no file to remove */
static const struct live_ops *ops;
static uint64_t interval_ns;
static uint64_t tick_ns;
static _Atomic bool stopping;

uint64_t live_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* process-shared futexes: the word may sit in a MAP_SHARED file */
static void futex_wait_ns(_Atomic uint32_t *w, uint32_t val, uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };

	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, ns ? &ts : NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void live_forget_stale(void)
{
	char path[64];

	/*
	 * A file with our name was left by an earlier image of this pid
	 * (exec keeps the pid, not the publisher) or by a dead process
	 * whose pid we got: nobody answers through it any more.
	 */
	fl_live_path(path, sizeof(path), (unsigned int)getuid(), (int)getpid());
	(void)unlink(path);
}

static struct fl_live *live_create(char *path, size_t len, int *err)
{
	size_t sz = (sizeof(struct fl_live) + 4095) & ~(size_t)4095;
	struct fl_live *l;
	int fd;

	fl_live_path(path, len, (unsigned int)getuid(), (int)getpid());
	/*
	 * O_EXCL|O_NOFOLLOW: /dev/shm is world-writable; a name planted by
	 * someone else (a symlink, a file of theirs) is never written
	 * through. Ours from an earlier image is removed first, at start.
	 */
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	if (ftruncate(fd, (off_t)sz)) {
		*err = errno;
		goto fail;
	}
	l = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (l == MAP_FAILED) {
		*err = errno;
		goto fail;
	}
	close(fd);
	return l;
fail:
	close(fd);
	unlink(path);
	return NULL;
}

static void publish(void)
{
	struct fl_live_snap s;

	memset(&s, 0, sizeof(s));
	ops->snapshot(&s);
	s.t_ns = live_now_ns();
	fl_live_snap_write(live, &s);
}

static void *live_main(void *arg)
{
	uint64_t next = interval_ns ? live_now_ns() + interval_ns : 0;
	uint64_t next_tick = tick_ns ? live_now_ns() + tick_ns : 0;
	uint32_t seen = 0;
	sigset_t all;

	(void)arg;
	/* the program's signals are for the program's threads */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	live->publisher_tid = (int32_t)syscall(SYS_gettid);
	/* readers take a file whose version is 0 for one still starting */
	atomic_store_explicit(&live->version, FL_LIVE_VERSION, memory_order_release);
	for (;;) {
		/*
		 * req is read before the wait below: a request that comes in
		 * between changes the word, and FUTEX_WAIT then returns at
		 * once (EAGAIN) instead of sleeping through it.
		 */
		uint32_t r = atomic_load_explicit(&live->req, memory_order_acquire);
		uint64_t now, wait = 0;

		if (atomic_load(&stopping))
			break;
		if (r != seen) {
			publish();
			seen = r;
			/* the snapshot is complete (seq even) before served says so */
			atomic_store_explicit(&live->served, r, memory_order_release);
			futex_wake_all(&live->served);
		}
		now = live_now_ns();
		if (interval_ns && now >= next) {
			ops->line();
			next += interval_ns;
			if (next <= now)	/* a line took longer than the interval */
				next = now + interval_ns;
		}
		if (tick_ns && now >= next_tick) {
			ops->tick();
			now = live_now_ns();
			next_tick = now + tick_ns;
		}
		/* the nearer of the two deadlines; 0: none, sleep until asked */
		if (interval_ns)
			wait = next > now ? next - now : 1;
		if (tick_ns && (!wait || next_tick - now < wait))
			wait = next_tick - now;	/* > 0: set after now above */
		futex_wait_ns(&live->req, r, wait);
	}
	return NULL;
}

int live_start(const struct live_ops *o, const struct live_cfg *cfg)
{
	pthread_t t;
	int err = 0, fd;

	if (live || (!cfg->publish && !cfg->interval_ms && !cfg->tick_ms))
		return 0;
	ops = o;
	interval_ns = cfg->interval_ms * 1000000u;
	tick_ns = cfg->tick_ms * 1000000u;
	live = cfg->publish ? live_create(live_path, sizeof(live_path), &err) : NULL;
	if (!live) {
		if (cfg->publish)
			o->warn(live_path, err);
		live_path[0] = '\0';
		live = &local;
	}
	memcpy(live->magic, FL_LIVE_MAGIC, sizeof(live->magic));
	live->size = sizeof(*live);
	live->pid = (int32_t)getpid();
	live->start_ns = cfg->start_ns;
	live->budget = cfg->budget;
	live->page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, live->program, sizeof(live->program) - 1);

		live->program[n > 0 ? n - 1 : 0] = '\0';	/* drop the newline */
		close(fd);
	}
	/* the caller has the shim's recursion guard up: the interposed
	 * pthread_create marks this thread as the runtime's for good */
	err = pthread_create(&t, NULL, live_main, NULL);
	if (err) {
		live_stop();
		return -err;
	}
	pthread_detach(t);
	return 0;
}

void live_fork_child(void)
{
	/* the parent's file and thread: not ours (the parent removes the file) */
	if (live && live != &local)
		munmap(live, sizeof(*live));
	live = NULL;
	live_path[0] = '\0';
	atomic_store(&stopping, false);
}

void live_stop(void)
{
	if (!live)
		return;
	/*
	 * The thread is not joined: it may be in the middle of a snapshot
	 * or an interval line (which checks for the final line under the
	 * caller's lock). The mapping stays; only the name goes, so that no
	 * new reader finds it.
	 */
	atomic_store(&stopping, true);
	atomic_fetch_add_explicit(&live->req, 1, memory_order_release);
	futex_wake_all(&live->req);
	if (live_path[0]) {
		(void)unlink(live_path);
		live_path[0] = '\0';
	}
}
