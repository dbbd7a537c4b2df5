/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * heap-trim SECS - a program for tests/preload/heap-trim.sh: 48 MiB of
 * 1 KiB malloc blocks (glibc's brk heap), all freed but the last, which
 * pins the top of the heap so that free() alone cannot give the pages back;
 * then a 64 MiB malloc block (managed under the shim), written and checked
 * pass after pass for up to SECS seconds or until the process's RssAnon is
 * 4 MiB below what it was right after the frees (only malloc_trim() takes
 * the freed pages back). Meanwhile the block's resident pages (the budget,
 * 16 MiB in the test, and a run past it) and the runtime's read buffers
 * (a few MiB) come on top: 48 MiB freed leaves room for them. Prints
 * "trimmed" or "kept", and the number of bytes that did not read back as
 * written.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SMALL		1024
#define NSMALL		((48u << 20) / SMALL)
#define BIG		(64ul << 20)

static long rss_anon_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

int main(int argc, char **argv)
{
	static void *small[NSMALL];
	unsigned long bad = 0;
	long rss0;
	time_t end;
	unsigned char *b;
	bool trimmed = false;

	if (argc != 2)
		return 2;
	for (unsigned int i = 0; i < NSMALL; i++) {
		small[i] = malloc(SMALL);
		if (!small[i])
			return 1;
		memset(small[i], 0x5a, SMALL);
	}
	for (unsigned int i = 0; i + 1 < NSMALL; i++)
		free(small[i]);
	rss0 = rss_anon_kib();
	b = malloc(BIG);
	if (!b || rss0 < 0)
		return 1;
	end = time(NULL) + atol(argv[1]);
	for (unsigned int pass = 1; !trimmed && time(NULL) < end; pass++) {
		for (size_t i = 0; i < BIG; i += 4096)
			b[i] = (unsigned char)(pass + (i >> 12));
		for (size_t i = 0; i < BIG; i += 4096)
			bad += b[i] != (unsigned char)(pass + (i >> 12));
		trimmed = rss_anon_kib() < rss0 - 4096;
	}
	printf("%s\nbad %lu\n", trimmed ? "trimmed" : "kept", bad);
	free(b);
	free(small[NSMALL - 1]);
	return 0;
}
