/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fork-workers - a server's shape: the parent forks workers that do not
 * exec, and each allocates, writes and reads a large block of its own; the
 * first worker then forks a worker of its own. Each sends
 * its checksum to the parent over a pipe and exits normally; the parent
 * prints them in order. Natively and under the shim the output must be the
 * same bytes; under the shim each worker's block is managed by a runtime of
 * the worker's own.
 *
 * Usage: fork-workers MIB
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t work(size_t len, unsigned int id)
{
	unsigned char *p = malloc(len);
	uint64_t s = 0;

	if (!p)
		exit(3);
	for (size_t i = 0; i < len; i += 4096)
		memset(p + i, (int)((i >> 12) * 3 + id), 4096);
	for (int r = 0; r < 2; r++)
		for (size_t i = 0; i < len; i += 512)
			s = s * 31 + p[i] + (uint64_t)r;
	free(p);
	return s;
}

/* fork a worker that writes work()'s sum to a pipe; Return: the read end */
static int spawn(size_t len, unsigned int id, pid_t *pid)
{
	int fd[2];

	if (pipe(fd))
		exit(2);
	fflush(stdout);
	*pid = fork();
	if (*pid < 0)
		exit(2);
	if (*pid == 0) {
		uint64_t s;
		int sub = -1;
		pid_t spid = 0;

		close(fd[0]);
		s = work(len, id);
		/* a worker's own worker, forked once this one has a runtime
		 * (its handlers and evictor are not in the copy) */
		if (id == 1)
			sub = spawn(len / 2, 3, &spid);
		if (write(fd[1], &s, sizeof(s)) != sizeof(s))
			exit(4);
		if (sub >= 0) {
			int st;

			if (read(sub, &s, sizeof(s)) != sizeof(s) || write(fd[1], &s, sizeof(s)) !=
			    sizeof(s) || waitpid(spid, &st, 0) != spid || !WIFEXITED(st) ||
			    WEXITSTATUS(st))
				exit(5);
		}
		exit(0);	/* exit, not _exit: the shim's statistics are written */
	}
	close(fd[1]);
	return fd[0];
}

int main(int argc, char **argv)
{
	size_t len = (argc > 1 ? strtoul(argv[1], NULL, 10) : 0) << 20;
	int fd[2], st, bad = 0;
	pid_t pid[2];

	if (!len) {
		fprintf(stderr, "usage: fork-workers MIB\n");
		return 2;
	}
	for (unsigned int i = 0; i < 2; i++)
		fd[i] = spawn(len, i + 1, &pid[i]);
	for (unsigned int i = 0; i < 2; i++) {
		uint64_t s;

		while (read(fd[i], &s, sizeof(s)) == sizeof(s))
			printf("worker %u: %016llx\n", i + 1, (unsigned long long)s);
		if (waitpid(pid[i], &st, 0) != pid[i] || !WIFEXITED(st) || WEXITSTATUS(st))
			bad = 1;
	}
	return bad;
}
