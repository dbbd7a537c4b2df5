/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-swap.c - faultline-bench-swap: the swap of memswap.c for scripts
 * (preload-budget-bench.sh), held for as long as the script keeps this
 * program's standard input open:
 *
 *   coproc SWAP { faultline-bench-swap --memcg "$cg" zram 2048; }
 *   read -r kind device detail <&"${SWAP[0]}"    # "zram /dev/zram1 ..." or "none WHY"
 *   ... run things in the cgroup ...
 *   exec {SWAP[1]}>&-; wait "$SWAP_PID"           # removes what it set up
 *
 * A script that dies closes the pipe, which is the same as being done.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memswap.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: faultline-bench-swap [--memcg DIR] zram|file|any MiB\n"
"\n"
"Makes sure swap is active for a memory-cgroup baseline and holds it until\n"
"standard input ends (or SIGINT, SIGTERM, SIGHUP), then removes what it set up.\n"
"Swap that is active already is used as it is; else a zram device of MiB (zram,\n"
"any) or a swap file of MiB (file, any; zram first). One line on standard output\n"
"when ready: 'KIND DEVICE DETAIL' (KIND existing, zram or file), or 'none WHY'.\n"
"A swap an interrupted run left behind is removed first (said on stderr).\n"
"\n"
"  --memcg DIR   meanwhile read DIR/memory.stat every %d ms: the kernel's reclaim\n"
"                in a small group otherwise works from statistics up to ~2 s old\n"
"                and OOM-kills with most of the group in swap\n"
"\n"
"Exit: 0 done, 1 no swap could be set up, 2 bad usage. Needs root.\n",
		MEMCG_REFRESH_MS);
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	const char *memcg = NULL;
	struct bench_swap sw;
	sigset_t block, orig;
	unsigned long mib;
	unsigned int want;
	char *end;
	int i = 1;

	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc > 2 && !strcmp(argv[1], "--memcg")) {
		memcg = argv[2];
		i = 3;
	}
	if (argc - i != 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[i], "zram"))
		want = BENCH_SWAP_WANT_ZRAM;
	else if (!strcmp(argv[i], "file"))
		want = BENCH_SWAP_WANT_FILE;
	else if (!strcmp(argv[i], "any"))
		want = BENCH_SWAP_WANT_ANY;
	else {
		fprintf(stderr, "faultline-bench-swap: bad swap kind '%s' (want zram, file or any)\n",
			argv[i]);
		return 2;
	}
	errno = 0;
	mib = strtoul(argv[i + 1], &end, 10);
	if (errno || end == argv[i + 1] || *end || argv[i + 1][0] == '-' || mib < 1 ||
	    mib > (1ul << 24)) {
		fprintf(stderr, "faultline-bench-swap: bad size '%s' (want MiB, 1..16777216)\n",
			argv[i + 1]);
		return 2;
	}

	/*
	 * The signals stay blocked except inside ppoll(): one that arrived
	 * between the check of `stop` and a plain poll() would be noticed only
	 * when standard input ends, possibly never.
	 */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &orig);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);	/* a reader that is gone: tear down all the same */

	if (bench_swap_up(&sw, (uint64_t)mib << 20, want)) {
		if (*sw.note)
			fprintf(stderr, "faultline-bench-swap: %s\n", sw.note);
		printf("none %s\n", sw.why);
		fflush(stdout);
		bench_swap_down(&sw);
		return 1;
	}
	if (*sw.note)
		fprintf(stderr, "faultline-bench-swap: %s\n", sw.note);
	printf("%s %s %s\n", bench_swap_kind_name(sw.kind), sw.device, sw.detail);
	fflush(stdout);

	while (!stop) {
		struct pollfd p = { .fd = 0, .events = POLLIN };
		struct timespec ts = { .tv_nsec = MEMCG_REFRESH_MS * 1000000L };
		char buf[256];
		int r = ppoll(&p, 1, memcg ? &ts : NULL, &orig);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		if (r == 0) {
			memcg_stat_refresh(memcg);
			continue;
		}
		if (read(0, buf, sizeof(buf)) <= 0)	/* the end, or a closed pipe */
			break;
	}
	bench_swap_down(&sw);
	return 0;
}
