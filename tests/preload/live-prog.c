/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * live-prog DIR - a program for tests/preload/live.sh: maps 64 MiB and
 * writes a byte of every page over and over until DIR/idle exists, then
 * creates DIR/done and touches no memory of its own (no malloc, no stdio)
 * until DIR/stop exists, so that its fault counters stand still. Gives up
 * after 60 s either way.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define LEN (64ul << 20)

int main(int argc, char **argv)
{
	char idle[4096], done[4096], stop[4096];
	time_t t0 = time(NULL);
	unsigned char *b;
	int fd;

	if (argc != 2)
		return 2;
	snprintf(idle, sizeof(idle), "%s/idle", argv[1]);
	snprintf(done, sizeof(done), "%s/done", argv[1]);
	snprintf(stop, sizeof(stop), "%s/stop", argv[1]);
	b = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b == MAP_FAILED)
		return 1;
	while (access(idle, F_OK) && time(NULL) - t0 < 60)
		for (unsigned long i = 0; i < LEN; i += 4096)
			b[i]++;
	fd = open(done, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0)
		close(fd);
	while (access(stop, F_OK) && time(NULL) - t0 < 60)
		usleep(20000);
	return 0;
}
