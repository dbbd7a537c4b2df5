/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fork-view - a plain program (no faultline API) that the preload tests run
 * with and without the shim and whose output must be the same bytes.
 *
 * It fills a large malloc block and a large anonymous mmap (both managed
 * under the shim), forks, and has the child check that it sees exactly the
 * parent's bytes, free the parent's malloc block (plain memory in the child)
 * and allocate a large block of its own. Kernel-mode accesses go to managed
 * memory: read(2) from a pipe into a buffer, and a mutex (futex word) in a
 * block two threads contend on. Prints checksums; exit 0 when all is well.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCK	(48u << 20)
#define MAP	(16u << 20)

struct shared {
	pthread_mutex_t lock;	/* the futex word lives in managed memory */
	uint64_t counter;
};

static uint64_t sum(const unsigned char *p, size_t n)
{
	uint64_t s = 0;

	for (size_t i = 0; i < n; i += 512)
		s = s * 31 + p[i];
	return s;
}

static void *bump(void *arg)
{
	struct shared *s = arg;

	for (int i = 0; i < 100000; i++) {
		pthread_mutex_lock(&s->lock);
		s->counter++;
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

int main(void)
{
	unsigned char *blk = calloc(1, BLOCK), *map, *buf, *kid;
	struct shared *sh = calloc(1, 4u << 20);
	int pfd[2], status;
	pthread_t t[2];
	uint64_t want;
	pid_t pid;
	ssize_t n;

	map = mmap(NULL, MAP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	buf = malloc(8u << 20);
	if (!blk || !sh || !buf || map == MAP_FAILED)
		return 2;
	/* every other page written: the rest (calloc) must read as zeros everywhere */
	for (size_t i = 0; i < BLOCK; i += 8192)
		memset(blk + i, (int)(i >> 13) & 0xff, 4096);
	for (size_t i = 0; i < MAP; i++)
		map[i] = (unsigned char)(i * 7);
	want = sum(blk, BLOCK) ^ sum(map, MAP);
	printf("parent checksum %016llx\n", (unsigned long long)want);

	/* kernel writes into managed memory */
	if (pipe(pfd))
		return 2;
	if (write(pfd[1], "kernel-mode write into a managed buffer", 39) != 39)
		return 2;
	n = read(pfd[0], buf + (5u << 20), 64);
	printf("read(2) into managed buffer: %zd bytes: %.39s\n", n, (char *)buf + (5u << 20));

	pthread_mutex_init(&sh->lock, NULL);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, bump, sh);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("mutex in managed memory: %llu\n", (unsigned long long)sh->counter);

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		uint64_t got = sum(blk, BLOCK) ^ sum(map, MAP);
		int ok = got == want;

		printf("child sees %s\n", ok ? "the parent's bytes" : "DIFFERENT bytes");
		memset(blk, 0xee, BLOCK);	/* copy-on-write: the parent must not see it */
		free(blk);
		kid = malloc(BLOCK);
		if (!kid)
			_exit(3);
		memset(kid, 1, BLOCK);
		printf("child allocated and freed its own block: %llu\n",
		       (unsigned long long)sum(kid, BLOCK) % 1000);
		free(kid);
		munmap(map, MAP);
		fflush(stdout);
		_exit(ok ? 0 : 1);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		return 1;
	printf("parent still sees %s\n",
	       (sum(blk, BLOCK) ^ sum(map, MAP)) == want ? "its own bytes" : "CHANGED bytes");
	blk = realloc(blk, 2 * BLOCK);	/* a managed block moves */
	printf("after realloc: %016llx\n", (unsigned long long)sum(blk, BLOCK));
	free(blk);
	munmap(map, MAP);
	free(buf);
	free(sh);
	return 0;
}
