/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * top.c - `faultline top`: the counters and rates of a process running
 * under the shim, refreshed in place, read from the file the shim publishes
 * (runtime/preload/live.h has the file and the protocol).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "live.h"

/* how long a snapshot may take to come: the publisher only has to wake */
#define ANSWER_MS 2000

struct watched {
	struct fl_live *l;
	size_t len;
	int pid;
	unsigned int uid;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* is the thread that answers for @l still there (not exited, not exec'd)? */
static bool publisher_alive(const struct fl_live *l)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)l->pid, (int)l->publisher_tid);
	return access(path, F_OK) == 0;
}

/*
 * Map the file of @pid (owned by @uid). Return: 0; -ENOENT (no file: not
 * under the shim, runtime not started yet, or FAULTLINE_LIVE=no), -ESTALE
 * (the process that wrote it is gone), -ETIMEDOUT (its publisher never
 * started: the process is stopped), -EPROTO (not a file of this version),
 * -errno.
 */
static int live_map(struct watched *w, int pid, unsigned int uid)
{
	char path[64];
	struct stat sb;
	void *m;
	int fd;

	fl_live_path(path, sizeof(path), uid, pid);
	fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -EPROTO : -errno;
	/* the name says whose it is: a file someone else put there is not read */
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode) || sb.st_uid != uid ||
	    (size_t)sb.st_size < sizeof(struct fl_live)) {
		close(fd);
		return -EPROTO;
	}
	m = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -errno;
	w->l = m;
	w->len = (size_t)sb.st_size;
	w->pid = pid;
	w->uid = uid;
	/*
	 * The shim creates the file, then starts its publisher, which sets
	 * version last (release: everything before it is written). A process
	 * stopped or killed in between leaves a file of zeros so far: that
	 * is a process that does not answer, or a stale file, never a
	 * foreign one.
	 */
	for (int i = 0; i < ANSWER_MS / 10 &&
	     !atomic_load_explicit(&w->l->version, memory_order_acquire); i++)
		usleep(10000);
	if (!atomic_load_explicit(&w->l->version, memory_order_acquire)) {
		char proc[32];

		munmap(m, w->len);
		snprintf(proc, sizeof(proc), "/proc/%d", pid);
		return access(proc, F_OK) ? -ESTALE : -ETIMEDOUT;
	}
	if (memcmp(w->l->magic, FL_LIVE_MAGIC, sizeof(w->l->magic)) ||
	    atomic_load_explicit(&w->l->version, memory_order_acquire) != FL_LIVE_VERSION ||
	    w->l->size != sizeof(struct fl_live) || w->l->pid != pid) {
		munmap(m, w->len);
		return -EPROTO;
	}
	if (!publisher_alive(w->l)) {
		munmap(m, w->len);
		return -ESTALE;
	}
	return 0;
}

static void live_unmap(struct watched *w)
{
	if (w->l)
		munmap(w->l, w->len);
	w->l = NULL;
}

/* ask for a snapshot and copy it. Return: 0; -ETIMEDOUT; -ESRCH (gone) */
static int live_sample(struct watched *w, struct fl_live_snap *out)
{
	struct fl_live *l = w->l;
	uint32_t r = atomic_fetch_add_explicit(&l->req, 1, memory_order_acq_rel) + 1;
	uint64_t deadline = now_ns() + (uint64_t)ANSWER_MS * 1000000u;

	syscall(SYS_futex, (uint32_t *)&l->req, FUTEX_WAKE, 1, NULL, NULL, 0);
	for (;;) {
		uint32_t s = atomic_load_explicit(&l->served, memory_order_acquire);
		uint64_t t = now_ns();
		struct timespec ts;

		/* served catches up with r (wrapping counters) */
		if ((int32_t)(s - r) >= 0)
			break;
		if (!publisher_alive(l))
			return -ESRCH;
		if (t >= deadline)
			return -ETIMEDOUT;
		/* at most 100 ms a wait: the process may exit meanwhile */
		t = deadline - t < 100000000u ? deadline - t : 100000000u;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)t;
		syscall(SYS_futex, (uint32_t *)&l->served, FUTEX_WAIT, s, &ts, NULL, 0);
	}
	return fl_live_snap_read(l, out, 1000) ? 0 : -EAGAIN;
}

/* ---- the screen ---- */

static void human(char *buf, size_t len, double bytes)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;

	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

struct row {
	const char *label;
	size_t off;	/* into struct fl_stats */
};

#define ROW(label, field) { label, offsetof(struct fl_stats, field) }
static const struct row rows[] = {
	ROW("faults", faults),
	ROW("  reads", faults_read),
	ROW("  writes", faults_write),
	ROW("  tier 1 (speculative)", spf_ok),
	ROW("  tier 2 (region lock)", region_ok),
	ROW("  tier 3 (index lock)", global_ok),
	ROW("  write-protect", faults_wp),
	ROW("  duplicates", faults_dup),
	ROW("pages installed", pages_installed),
	ROW("page-ins", far_pageins),
	ROW("  read ahead", far_readahead_pages),
	ROW("evictions", far_evictions),
	ROW("  clean (no write-back)", far_evict_clean),
	ROW("write-backs", far_writebacks),
	ROW("throttled faults", far_throttled),
	ROW("parked retries", parked_retries),
	ROW("store errors", far_store_errors),
	ROW("read errors (SIGBUS)", far_read_errors),
	ROW("fill errors", fill_errors),
};

static uint64_t field(const struct fl_live_snap *s, size_t off)
{
	uint64_t v;

	memcpy(&v, (const char *)&s->st + off, sizeof(v));
	return v;
}

static void frame(const struct watched *w, const struct fl_live_snap *a,
		  const struct fl_live_snap *b, double every)
{
	const struct fl_live *l = w->l;
	double dt = (double)(b->t_ns - a->t_ns) / 1e9;
	double ps = (double)l->page_size;
	char now[32], peak[32], res[32], bud[32], rpeak[32];

	human(now, sizeof(now), (double)b->bytes_now);
	human(peak, sizeof(peak), (double)b->bytes_peak);
	printf("faultline top - pid %d (%s) - up %.1f s - every %.1f s\n", w->pid,
	       l->program, (double)(b->t_ns - l->start_ns) / 1e9, every);
	printf("managed:  %llu regions, %llu mmaps, %llu malloc blocks, %s now, %s peak, "
	       "%llu not managed, %llu register errors\n",
	       (unsigned long long)b->regions, (unsigned long long)b->mmaps,
	       (unsigned long long)b->malloc_blocks, now, peak,
	       (unsigned long long)b->not_managed, (unsigned long long)b->register_errors);
	human(res, sizeof(res), (double)b->rss_anon);
	human(rpeak, sizeof(rpeak), (double)b->vm_hwm);
	human(bud, sizeof(bud), (double)b->managed_resident);
	printf("process:  %s anonymous resident (%s of it managed, %.0f%%), %s peak resident "
	       "set (all memory, managed or not)\n", res, bud,
	       b->rss_anon ? 100.0 * (double)b->managed_resident / (double)b->rss_anon : 0.0,
	       rpeak);
	human(res, sizeof(res), (double)b->st.far_resident_pages * ps);
	human(rpeak, sizeof(rpeak), (double)b->st.far_resident_peak * ps);
	if (l->budget) {
		human(bud, sizeof(bud), (double)l->budget);
		printf("resident: %s of a %s budget (%.0f%%), peak %s, %llu pages rescued\n",
		       res, bud, 100.0 * (double)b->st.far_resident_pages * ps / (double)l->budget,
		       rpeak, (unsigned long long)b->st.far_rescued_pages);
	} else {
		printf("resident: no budget (far memory off)\n");
	}
	printf("%-24s %14s %12s\n", "", "total", "per s");
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint64_t x = field(b, rows[i].off), y = field(a, rows[i].off);

		/* a counter reset (fl_stats_reset) reads as no rate, not a wrap */
		printf("%-24s %14llu %12.1f\n", rows[i].label, (unsigned long long)x,
		       x >= y && dt > 0 ? (double)(x - y) / dt : 0.0);
	}
}

/* ---- finding the process ---- */

static int parse_pid(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (!*s || *s < '0' || *s > '9' || *end || errno || v <= 0 || v > INT_MAX)
		usage_error("top: invalid PID '%s': expected a process id", s);
	return (int)v;
}

/* the files under FL_LIVE_DIR this user may read: for each, @fn(pid, uid) */
static int scan(void (*fn)(int pid, unsigned int uid, void *arg), void *arg)
{
	unsigned int me = (unsigned int)getuid();
	struct dirent *d;
	DIR *dir = opendir(FL_LIVE_DIR);
	int n = 0;

	if (!dir)
		return 0;
	while ((d = readdir(dir))) {
		unsigned int uid;
		int pid, end = 0;

		if (strncmp(d->d_name, FL_LIVE_PREFIX, sizeof(FL_LIVE_PREFIX) - 1) ||
		    sscanf(d->d_name + sizeof(FL_LIVE_PREFIX) - 1, "%u.%d%n", &uid, &pid, &end) != 2 ||
		    d->d_name[sizeof(FL_LIVE_PREFIX) - 1 + end] || pid <= 0 || (me && uid != me))
			continue;
		fn(pid, uid, arg);
		n++;
	}
	closedir(dir);
	return n;
}

struct found {
	int n, pid;
	unsigned int uid;
	bool print;
};

static void found_one(int pid, unsigned int uid, void *arg)
{
	struct found *f = arg;
	struct watched w = { 0 };
	int ret = live_map(&w, pid, uid);

	if (ret == -ESTALE && uid == (unsigned int)getuid()) {
		/* left by a process that was killed or exec'd without the shim */
		char path[64];

		fl_live_path(path, sizeof(path), uid, pid);
		unlink(path);
	}
	if (ret)
		return;
	if (f->print) {
		char bud[32] = "none";

		if (w.l->budget)
			human(bud, sizeof(bud), (double)w.l->budget);
		if (!f->n)
			printf("%8s %6s %-16s %10s  %s\n", "PID", "UID", "PROGRAM", "UP", "BUDGET");
		printf("%8d %6u %-16s %9.0fs  %s\n", pid, uid, w.l->program,
		       (double)(now_ns() - w.l->start_ns) / 1e9, bud);
	}
	f->n++;
	f->pid = pid;
	f->uid = uid;
	live_unmap(&w);
}

static void open_or_die(struct watched *w, int pid)
{
	char proc[32];
	struct stat sb;
	int ret;

	snprintf(proc, sizeof(proc), "/proc/%d", pid);
	if (stat(proc, &sb)) {
		fprintf(stderr, "%s: top: no process %d\n", prog, pid);
		exit(1);
	}
	ret = live_map(w, pid, (unsigned int)sb.st_uid);
	if (!ret)
		return;
	if (ret == -ENOENT || ret == -ESTALE)
		fprintf(stderr, "%s: top: process %d publishes no faultline counters (not "
			"under the shim, its runtime not started yet: that is at its first "
			"managed mapping, or FAULTLINE_LIVE=no)\n", prog, pid);
	else if (ret == -EACCES || ret == -EPERM)
		fprintf(stderr, "%s: top: cannot read the counters of process %d: %s "
			"(only its user and root can)\n", prog, pid, strerror(-ret));
	else if (ret == -ETIMEDOUT)
		fprintf(stderr, "%s: top: process %d did not answer within %d ms: stopped "
			"(SIGSTOP, a debugger) while its runtime was starting\n", prog, pid,
			ANSWER_MS);
	else if (ret == -EPROTO)
		fprintf(stderr, "%s: top: the counters file of process %d is not one this "
			"faultline reads (another version, or not faultline's)\n", prog, pid);
	else
		fprintf(stderr, "%s: top: process %d: %s\n", prog, pid, strerror(-ret));
	exit(1);
}

static double parse_secs(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (!*s || *end || errno || !isfinite(v) || v < 0.05 || v > 3600)
		usage_error("top: invalid --delay '%s': expected seconds from 0.05 to 3600", s);
	return v;
}

static void top_usage(FILE *f)
{
	fprintf(f,
"Usage: %s top [-b] [-d SECS] [-n COUNT] [PID]\n"
"       %s top -l\n"
"Show the counters and rates of a process running under faultline (its\n"
"LD_PRELOAD shim), refreshed in place. Without PID: the one such process of\n"
"this user (root: of any user).\n"
"  -d, --delay SECS     between refreshes (default 1; 0.05 to 3600)\n"
"  -n, --iterations N   stop after N refreshes (default: until the process exits)\n"
"  -b, --batch          print each refresh after the last, no screen control\n"
"  -l, --list           list the processes that publish counters, and exit\n"
"Exit status: 0 when the process exited or N refreshes were shown; 1 when\n"
"it cannot be watched; 2 for usage errors.\n", prog, prog);
}

int cmd_top(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "delay", required_argument, NULL, 'd' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "batch", no_argument, NULL, 'b' },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct watched w = { 0 };
	struct fl_live_snap a, b;
	struct found f = { 0 };
	double every = 1.0;
	long count = 0;
	bool batch = false, list = false, clear;
	int c, pid, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+d:n:blh", lopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			every = parse_secs(optarg);
			break;
		case 'n': {
			char *end;

			errno = 0;
			count = strtol(optarg, &end, 10);
			if (!*optarg || *end || errno || count <= 0)
				usage_error("top: invalid --iterations '%s': expected a "
					    "positive count", optarg);
			break;
		}
		case 'b':
			batch = true;
			break;
		case 'l':
			list = true;
			break;
		case 'h':
			top_usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try '%s top --help' for more information.\n", prog);
			return 2;
		}
	}
	if (argc - optind > 1)
		usage_error("top: unexpected argument '%s'", argv[optind + 1]);
	if (list) {
		if (optind < argc)
			usage_error("top: --list takes no PID");
		f.print = true;
		scan(found_one, &f);
		if (!f.n)
			printf("no process publishes faultline counters\n");
		return 0;
	}
	if (optind < argc) {
		pid = parse_pid(argv[optind]);
	} else {
		scan(found_one, &f);
		if (!f.n) {
			fprintf(stderr, "%s: top: no process publishes faultline counters\n", prog);
			return 1;
		}
		if (f.n > 1) {
			fprintf(stderr, "%s: top: %d processes run under faultline; name one "
				"(%s top -l lists them)\n", prog, f.n, prog);
			return 1;
		}
		pid = f.pid;
	}
	open_or_die(&w, pid);
	clear = !batch && isatty(STDOUT_FILENO);
	ret = live_sample(&w, &a);
	for (long i = 0; !ret && (!count || i < count); i++) {
		struct timespec ts = { (time_t)every, (long)((every - (double)(time_t)every) * 1e9) };

		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
		ret = live_sample(&w, &b);
		if (ret)
			break;
		if (clear)
			fputs("\033[H\033[J", stdout);
		else if (i)
			putchar('\n');
		frame(&w, &a, &b, every);
		fflush(stdout);
		a = b;
	}
	live_unmap(&w);
	if (ret == -ESRCH) {
		fprintf(stderr, "%s: top: process %d exited\n", prog, pid);
		return 0;
	}
	if (ret == -ETIMEDOUT) {
		fprintf(stderr, "%s: top: process %d did not answer within %d ms: stopped "
			"(SIGSTOP, a debugger), or its publisher is stuck\n", prog, pid, ANSWER_MS);
		return 1;
	}
	if (ret) {
		fprintf(stderr, "%s: top: process %d: its snapshot kept changing while read\n",
			prog, pid);
		return 1;
	}
	return 0;
}
