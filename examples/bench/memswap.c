/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * memswap.c - a memory cgroup and the swap it pages out to, for the
 * kernel baselines of the benchmarks (see memswap.h).
 *
 * Swap, in this order: swap that is active already; else a zram device of
 * our own (hot-added when the kernel can, removed again at the end); else
 * a swap file on the root disk. zram comes first because it is what a
 * machine without a swap disk would use, and because it is synchronous:
 * a page written to it is free at once, where a page written to a disk
 * stays under write-back for a while. The swap header is written here
 * (mkswap's format 1), so nothing beyond the kernel is needed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memswap.h"

#define STATE_FILE BENCH_SWAP_DIR "/state"
#define LOCK_FILE BENCH_SWAP_DIR "/lock"
#define ZRAM_CONTROL "/sys/class/zram-control"
#define MIB(b) ((unsigned long long)((b) >> 20))

extern char **environ;

static const char *const kind_names[] = { "none", "existing", "zram", "file" };

const char *bench_swap_kind_name(enum bench_swap_kind k)
{
	return (unsigned int)k < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[k] : "?";
}

/* ---- small file helpers ---- */

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* the file's first line, without the newline */
static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");

	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

static bool exists(const char *path)
{
	struct stat st;

	return !stat(path, &st);
}

static bool pid_alive(long pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* ---- /proc/swaps ---- */

/* is @path an active swap area? With @path NULL: is any? */
static bool swap_active(const char *path)
{
	FILE *f = fopen("/proc/swaps", "re");
	char line[512], name[256];
	bool found = false;

	if (!f)
		return false;
	if (!fgets(line, sizeof(line), f)) {	/* the header */
		fclose(f);
		return false;
	}
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%255s", name) == 1)
			found = !path || !strcmp(name, path);
	fclose(f);
	return found;
}

/* the active swap areas: the first one's name into @first, all into @all */
static int swap_describe(char *first, size_t flen, char *all, size_t alen)
{
	FILE *f = fopen("/proc/swaps", "re");
	char line[512], name[256], type[32];
	unsigned long long size, used;
	size_t off = 0;
	int n = 0;

	*first = *all = 0;
	if (!f)
		return 0;
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return 0;
	}
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%255s %31s %llu %llu", name, type, &size, &used) != 4)
			continue;
		if (!n++)
			snprintf(first, flen, "%s", name);
		if (off < alen)
			off += (size_t)snprintf(all + off, alen - off, "%s%s (%s, %llu MiB, %llu MiB used)",
						off ? "; " : "", name, type, size >> 10, used >> 10);
	}
	fclose(f);
	return n;
}

/* ---- the swap header (mkswap's format 1) ---- */

/*
 * Page 0 of a swap area: 1024 bytes left for a boot block, then version,
 * last_page, nr_badpages, uuid, label; "SWAPSPACE2" in its last 10 bytes.
 */
static int swap_header_write(const char *path, uint64_t bytes)
{
	long ps = sysconf(_SC_PAGESIZE);
	uint32_t info[3] = { 1, (uint32_t)(bytes / (uint64_t)ps - 1), 0 };
	char *page = calloc(1, (size_t)ps);
	int fd, ret = 0;

	if (!page)
		return -ENOMEM;
	memcpy(page + 1024, info, sizeof(info));
	memcpy(page + ps - 10, "SWAPSPACE2", 10);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		ret = -errno;
	else if (pwrite(fd, page, (size_t)ps, 0) != (ssize_t)ps || fsync(fd))
		ret = errno ? -errno : -EIO;
	if (fd >= 0)
		close(fd);
	free(page);
	return ret;
}

/* ---- the state file: what this run made, for a run after a crash ---- */

static void boot_id(char *buf, size_t len)
{
	if (read_line("/proc/sys/kernel/random/boot_id", buf, len))
		snprintf(buf, len, "unknown");
}

/* Written before the swap is made: a crash in between leaves a state naming
 * something that may not exist yet, which the cleanup tolerates. */
static int state_write(const struct bench_swap *s, uint64_t bytes)
{
	char boot[64], tmp[] = STATE_FILE ".new";
	FILE *f;

	boot_id(boot, sizeof(boot));
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "boot %s\nkind %s\ndevice %s\nzram %d\nadded %d\nbytes %llu\npid %d\n", boot,
		bench_swap_kind_name(s->kind), s->device, s->zram, s->zram_added ? 1 : 0,
		(unsigned long long)bytes, (int)getpid());
	if (fflush(f) || fsync(fileno(f))) {
		int e = -errno;

		fclose(f);
		unlink(tmp);
		return e;
	}
	fclose(f);
	return rename(tmp, STATE_FILE) ? -errno : 0;
}

static void zram_teardown(int id, bool added)
{
	char p[96], num[16];

	snprintf(p, sizeof(p), "/sys/block/zram%d/reset", id);
	(void)write_str(p, "1");
	if (added) {
		snprintf(num, sizeof(num), "%d", id);
		(void)write_str(ZRAM_CONTROL "/hot_remove", num);
	}
}

/*
 * With the lock held: a state file means its writer died holding the lock
 * (the lock went with it) before it tore its swap down. Remove that swap,
 * unless the state comes from an earlier boot (nothing of it survived; a
 * zram device of the same number now would be someone else's).
 */
static void stale_state_clean(struct bench_swap *s)
{
	char line[512], boot[64] = "", now[64], device[256] = "", kind[16] = "";
	unsigned long long bytes = 0;
	int zram = -1, added = 0;
	long pid = 0;
	FILE *f = fopen(STATE_FILE, "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "boot %63s", boot) != 1 && sscanf(line, "kind %15s", kind) != 1 &&
		    sscanf(line, "device %255s", device) != 1 && sscanf(line, "zram %d", &zram) != 1 &&
		    sscanf(line, "added %d", &added) != 1 && sscanf(line, "bytes %llu", &bytes) != 1)
			(void)sscanf(line, "pid %ld", &pid);
	fclose(f);
	boot_id(now, sizeof(now));
	if (strcmp(boot, now)) {
		unlink(STATE_FILE);
		return;
	}
	if (*device && swap_active(device) && swapoff(device)) {
		/* still in use: then it is the swap this run uses (kind EXISTING) */
		snprintf(s->note, sizeof(s->note),
			 "an interrupted run (pid %ld) left its %s swap %s active and swapoff failed (%s): "
			 "using it", pid, kind, device, strerror(errno));
		return;
	}
	if (!strcmp(kind, "zram") && zram >= 0) {
		char p[96], size[32] = "";

		/* ours if it still has our size, or none yet (hot-added, not set up) */
		snprintf(p, sizeof(p), "/sys/block/zram%d/disksize", zram);
		if (!read_line(p, size, sizeof(size)) &&
		    (strtoull(size, NULL, 10) == bytes || (added && !strcmp(size, "0"))))
			zram_teardown(zram, added);
	} else if (!strcmp(kind, "file") && *device) {
		unlink(device);
	}
	unlink(STATE_FILE);
	snprintf(s->note, sizeof(s->note),
		 "removed the %s swap %s that an interrupted run (pid %ld) left behind", kind,
		 *device ? device : "(not set up yet)", pid);
}

/*
 * Swap files of faultline-bench versions that named them
 * BENCH_SWAP_FILE-<pid> and kept no state: remove those whose process is gone.
 */
static void stale_files_clean(struct bench_swap *s)
{
	FILE *f = fopen("/proc/swaps", "re");
	char line[512], name[256];
	size_t plen = strlen(BENCH_SWAP_PATH);

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *end;
		long pid;

		if (sscanf(line, "%255s", name) != 1 || strncmp(name, BENCH_SWAP_PATH "-", plen + 1))
			continue;
		pid = strtol(name + plen + 1, &end, 10);
		if (*end || pid_alive(pid))
			continue;
		if (swapoff(name)) {
			fprintf(stderr, "faultline-bench: swapoff %s: %s\n", name, strerror(errno));
			continue;
		}
		unlink(name);
		snprintf(s->note, sizeof(s->note),
			 "removed the swap file %s that an interrupted run (pid %ld) left active", name, pid);
	}
	fclose(f);
}

/* ---- the lock ---- */

/*
 * The lock file is never removed: a run that unlinked it could leave a waiter
 * holding a lock on the old inode while a newcomer creates and locks a new
 * one, and both would think they own the swap.
 */
static int lock_take(struct bench_swap *s)
{
	char pid[24] = "";
	int fd, n;

	if (mkdir(BENCH_SWAP_DIR, 0700) && errno != EEXIST) {
		n = -errno;
		snprintf(s->why, sizeof(s->why), "mkdir %s: %s", BENCH_SWAP_DIR, strerror(-n));
		return n;
	}
	fd = open(LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		n = -errno;
		snprintf(s->why, sizeof(s->why), "open %s: %s", LOCK_FILE, strerror(-n));
		return n;
	}
	for (n = 0; flock(fd, LOCK_EX | LOCK_NB); n++) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			n = -errno;
			close(fd);
			snprintf(s->why, sizeof(s->why), "flock %s: %s", LOCK_FILE, strerror(-n));
			return n;
		}
		if (n == 0) {
			ssize_t r = pread(fd, pid, sizeof(pid) - 1, 0);

			pid[r > 0 ? r : 0] = 0;
			pid[strcspn(pid, "\n")] = 0;
			fprintf(stderr, "faultline-bench: waiting up to %d s for the benchmark swap that "
				"pid %s holds\n", BENCH_SWAP_WAIT_S, *pid ? pid : "?");
		}
		if (n >= BENCH_SWAP_WAIT_S * 10) {
			close(fd);
			snprintf(s->why, sizeof(s->why), "pid %s held the benchmark swap (%s) for over %d s",
				 *pid ? pid : "?", LOCK_FILE, BENCH_SWAP_WAIT_S);
			return -EBUSY;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	/* only for the message of a waiter: failing to write it does no harm */
	if (!ftruncate(fd, 0))
		(void)!pwrite(fd, pid, (size_t)n, 0);
	s->lock_fd = fd;
	return 0;
}

/* ---- zram ---- */

static void modprobe_zram(void)
{
	char *argv[] = { "modprobe", "-q", "zram", NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st;

	if (posix_spawn_file_actions_init(&fa))
		return;
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (!posix_spawnp(&pid, "modprobe", &fa, NULL, argv, environ))
		waitpid(pid, &st, 0);
	posix_spawn_file_actions_destroy(&fa);
}

/* a zram device of our own: hot-added, else zram0 when it is unused */
static int zram_pick(struct bench_swap *s, char *why, size_t wlen)
{
	char buf[32];

	if (!exists(ZRAM_CONTROL) && !exists("/sys/block/zram0")) {
		modprobe_zram();
		if (!exists(ZRAM_CONTROL) && !exists("/sys/block/zram0")) {
			snprintf(why, wlen, "no zram in this kernel (modprobe zram failed)");
			return -ENODEV;
		}
	}
	/* reading hot_add creates a device and returns its number */
	if (!read_line(ZRAM_CONTROL "/hot_add", buf, sizeof(buf))) {
		s->zram = atoi(buf);
		s->zram_added = true;
		return 0;
	}
	if (!read_line("/sys/block/zram0/disksize", buf, sizeof(buf)) && !strcmp(buf, "0") &&
	    !swap_active("/dev/zram0")) {
		s->zram = 0;
		return 0;
	}
	snprintf(why, wlen, "no free zram device (zram0 in use, no %s/hot_add)", ZRAM_CONTROL);
	return -EBUSY;
}

static int zram_up(struct bench_swap *s, uint64_t bytes, char *why, size_t wlen)
{
	char p[96], algs[256] = "", alg[32] = "default", num[32];
	int ret;

	ret = zram_pick(s, why, wlen);
	if (ret)
		return ret;
	s->kind = BENCH_SWAP_ZRAM;
	snprintf(s->device, sizeof(s->device), "/dev/zram%d", s->zram);
	ret = state_write(s, bytes);
	if (ret) {
		snprintf(why, wlen, "write %s: %s", STATE_FILE, strerror(-ret));
		goto fail;
	}
	/* lz4 where the kernel has it: the fastest of zram's compressors */
	snprintf(p, sizeof(p), "/sys/block/zram%d/comp_algorithm", s->zram);
	if (!read_line(p, algs, sizeof(algs))) {
		char *tok, *save = NULL;

		for (tok = strtok_r(algs, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
			if (!strcmp(tok, "lz4") || !strcmp(tok, "[lz4]"))
				(void)write_str(p, "lz4");
	}
	/* the one in use is the one in brackets */
	if (!read_line(p, algs, sizeof(algs)) && strchr(algs, '['))
		sscanf(strchr(algs, '[') + 1, "%31[^]]", alg);
	snprintf(p, sizeof(p), "/sys/block/zram%d/disksize", s->zram);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)bytes);
	ret = write_str(p, num);
	if (ret) {
		snprintf(why, wlen, "set %s: %s", p, strerror(-ret));
		goto fail;
	}
	ret = swap_header_write(s->device, bytes);
	if (ret) {
		snprintf(why, wlen, "write the swap header on %.64s: %s", s->device, strerror(-ret));
		goto fail;
	}
	if (swapon(s->device, 0)) {
		ret = -errno;
		snprintf(why, wlen, "swapon %.64s: %s", s->device, strerror(-ret));
		goto fail;
	}
	snprintf(s->detail, sizeof(s->detail), "zram%d, %s, %llu MiB%s", s->zram, alg, MIB(bytes),
		 s->zram_added ? ", hot-added" : "");
	return 0;
fail:
	zram_teardown(s->zram, s->zram_added);
	unlink(STATE_FILE);
	s->zram = -1;
	s->zram_added = false;
	s->kind = BENCH_SWAP_NONE;
	s->device[0] = 0;
	return ret;
}

/* ---- a swap file ---- */

static int file_fill(int fd, uint64_t bytes, bool zeros)
{
	static const char zero[1 << 16];

	if (!zeros)
		return fallocate(fd, 0, 0, (off_t)bytes) ? -errno : 0;
	for (uint64_t done = 0; done < bytes; done += sizeof(zero))
		if (write(fd, zero, sizeof(zero)) != (ssize_t)sizeof(zero))
			return errno ? -errno : -EIO;
	return fsync(fd) ? -errno : 0;
}

static int file_up(struct bench_swap *s, uint64_t bytes, char *why, size_t wlen)
{
	int ret = 0, fd;

	s->kind = BENCH_SWAP_FILE;
	snprintf(s->device, sizeof(s->device), "%s", BENCH_SWAP_PATH);
	ret = state_write(s, bytes);
	if (ret) {
		snprintf(why, wlen, "write %s: %s", STATE_FILE, strerror(-ret));
		goto fail;
	}
	/* allocated, not a sparse file: swapon refuses holes; written with zeros
	 * where fallocate is missing or its unwritten extents are refused */
	for (int zeros = 0; zeros < 2; zeros++) {
		unlink(BENCH_SWAP_PATH);	/* under the lock, this name is ours */
		fd = open(BENCH_SWAP_PATH, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			ret = -errno;
			snprintf(why, wlen, "create %s: %s", BENCH_SWAP_PATH, strerror(-ret));
			goto fail;
		}
		ret = file_fill(fd, bytes, zeros);
		close(fd);
		if (ret == -EOPNOTSUPP && !zeros)
			continue;
		if (ret) {
			snprintf(why, wlen, "fill %s: %s", BENCH_SWAP_PATH, strerror(-ret));
			goto fail;
		}
		ret = swap_header_write(BENCH_SWAP_PATH, bytes);
		if (ret) {
			snprintf(why, wlen, "write the swap header on %s: %s", BENCH_SWAP_PATH,
				 strerror(-ret));
			goto fail;
		}
		if (!swapon(BENCH_SWAP_PATH, 0)) {
			snprintf(s->detail, sizeof(s->detail), "%llu MiB%s", MIB(bytes),
				 zeros ? ", written with zeros" : ", fallocated");
			return 0;
		}
		ret = -errno;
		snprintf(why, wlen, "swapon %s: %s%s", BENCH_SWAP_PATH, strerror(-ret),
			 ret == -EINVAL ? " (a swap file needs a disk file system, not a tmpfs)" : "");
		if (ret != -EINVAL)
			goto fail;
	}
fail:
	unlink(BENCH_SWAP_PATH);
	unlink(STATE_FILE);
	s->kind = BENCH_SWAP_NONE;
	s->device[0] = 0;
	return ret;
}

/* ---- up and down ---- */

static int swap_up(struct bench_swap *s, uint64_t bytes, unsigned int want)
{
	long ps = sysconf(_SC_PAGESIZE);
	char zwhy[220] = "", fwhy[220] = "";
	int ret;

	memset(s, 0, sizeof(*s));
	s->lock_fd = -1;
	s->zram = -1;
	bytes = (bytes + (uint64_t)ps - 1) & ~(uint64_t)(ps - 1);
	if (geteuid() != 0) {
		snprintf(s->why, sizeof(s->why), "swap for a memory cgroup needs root");
		return -EPERM;
	}
	ret = lock_take(s);
	if (ret)
		return ret;
	stale_state_clean(s);
	stale_files_clean(s);
	if (swap_describe(s->device, sizeof(s->device), s->detail, sizeof(s->detail))) {
		s->kind = BENCH_SWAP_EXISTING;
		return 0;
	}
	ret = -ENODEV;
	if (want & BENCH_SWAP_WANT_ZRAM) {
		ret = zram_up(s, bytes, zwhy, sizeof(zwhy));
		if (!ret)
			return 0;
	}
	if (want & BENCH_SWAP_WANT_FILE) {
		ret = file_up(s, bytes, fwhy, sizeof(fwhy));
		if (!ret) {
			if (*zwhy)	/* say why not zram */
				snprintf(s->note + strlen(s->note), sizeof(s->note) - strlen(s->note),
					 "%sno zram: %s", *s->note ? "; " : "", zwhy);
			return 0;
		}
	}
	snprintf(s->why, sizeof(s->why), "no swap could be set up%s%s%s%s", *zwhy ? "; zram: " : "",
		 zwhy, *fwhy ? "; swap file: " : "", fwhy);
	return ret;
}

int bench_swap_up(struct bench_swap *s, uint64_t bytes, unsigned int want)
{
	s->err = swap_up(s, bytes, want);
	return s->err;
}

void bench_swap_down(struct bench_swap *s)
{
	bool gone = true;

	if (s->lock_fd < 0)
		return;
	if (s->kind == BENCH_SWAP_ZRAM || s->kind == BENCH_SWAP_FILE) {
		if (swapoff(s->device)) {
			fprintf(stderr, "faultline-bench: swapoff %s: %s (the next run retries)\n",
				s->device, strerror(errno));
			gone = false;
		} else if (s->kind == BENCH_SWAP_ZRAM) {
			zram_teardown(s->zram, s->zram_added);
		} else {
			unlink(s->device);
		}
		if (gone)	/* else the state stays, for the next run's cleanup */
			unlink(STATE_FILE);
	}
	/* the lock goes last: until here no other run may touch the swap */
	close(s->lock_fd);
	s->lock_fd = -1;
	s->kind = BENCH_SWAP_NONE;
}

/* ---- memory cgroups ---- */

static int write_num(const char *dir, const char *file, unsigned long long v)
{
	char p[400], num[32];

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	snprintf(num, sizeof(num), "%llu", v);
	return write_str(p, num);
}

/* empty groups named <prefix><pid> whose process is gone */
static void stale_groups_clean(const char *root)
{
	static const char *const prefixes[] = { "faultline-bench-", "fl-bench-" };
	DIR *d = opendir(root);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
			size_t n = strlen(prefixes[i]);
			char *end, p[600];
			long pid;

			if (strncmp(e->d_name, prefixes[i], n))
				continue;
			pid = strtol(e->d_name + n, &end, 10);
			if (*end || pid_alive(pid))
				continue;
			snprintf(p, sizeof(p), "%s/%s", root, e->d_name);
			rmdir(p);	/* fails while a task is still in it: then it stays */
		}
	closedir(d);
}

int memcg_make(uint64_t limit, char *dir, size_t dlen, char *why, size_t wlen)
{
	FILE *m = fopen("/proc/self/mounts", "re");
	char line[512], v1[256] = "", v2[256] = "", p[300];
	const char *root, *limit_file;
	int ret;

	if (!m) {
		ret = -errno;
		snprintf(why, wlen, "open /proc/self/mounts: %s", strerror(-ret));
		return ret;
	}
	while (fgets(line, sizeof(line), m)) {
		char src[64], mnt[256], type[32], opts[256];

		if (sscanf(line, "%63s %255s %31s %255s", src, mnt, type, opts) != 4)
			continue;
		if (!strcmp(type, "cgroup2") && !*v2) {
			char ctl[256] = "";

			snprintf(p, sizeof(p), "%s/cgroup.controllers", mnt);
			if (!read_line(p, ctl, sizeof(ctl)) && strstr(ctl, "memory"))
				snprintf(v2, sizeof(v2), "%s", mnt);
		} else if (!strcmp(type, "cgroup") && strstr(opts, "memory") && !*v1) {
			snprintf(v1, sizeof(v1), "%s", mnt);
		}
	}
	fclose(m);
	if (*v2) {
		snprintf(p, sizeof(p), "%s/cgroup.subtree_control", v2);
		(void)write_str(p, "+memory");
		root = v2;
		limit_file = "memory.max";
	} else if (*v1) {
		root = v1;
		limit_file = "memory.limit_in_bytes";
	} else {
		snprintf(why, wlen, "no memory cgroup (neither a v2 memory controller nor a v1 memory hierarchy)");
		return -ENOENT;
	}
	stale_groups_clean(root);
	snprintf(dir, dlen, "%s/faultline-bench-%d", root, (int)getpid());
	if (mkdir(dir, 0700) && errno != EEXIST) {
		ret = -errno;
		snprintf(why, wlen, "mkdir %s: %s%s", dir, strerror(-ret),
			 ret == -EACCES || ret == -EPERM ? " (needs root)" : "");
		return ret;
	}
	ret = write_num(dir, limit_file, (unsigned long long)limit);
	if (ret) {
		snprintf(why, wlen, "write %s/%s: %s", dir, limit_file, strerror(-ret));
		rmdir(dir);
	}
	return ret;
}

int memcg_attach(const char *dir, int pid)
{
	return write_num(dir, "cgroup.procs", (unsigned long long)pid);
}

void memcg_stat_refresh(const char *dir)
{
	char p[400], buf[4096];
	int fd;

	snprintf(p, sizeof(p), "%s/memory.stat", dir);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
}

long memcg_oom_kills(const char *dir)
{
	static const char *const files[] = { "memory.events", "memory.oom_control" };
	char p[400], line[128];
	long v = -1;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && v < 0; i++) {
		FILE *f;

		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		f = fopen(p, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "oom_kill %ld", &v) == 1)
				break;
		fclose(f);
	}
	return v;
}
