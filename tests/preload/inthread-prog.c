// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * inthread-prog.c - an unmodified program doing what the in-thread mode
 * must survive under the shim (FAULTLINE_RESOLVE=auto): it sets its SIGBUS
 * handler late, blocks SIGBUS, reads and writes never-touched buffers with
 * system calls, and faults inside a signal handler whose mask holds every
 * signal. It prints one line per check and a digest: the same natively
 * and under the shim.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1u << 20)

static volatile sig_atomic_t bus_calls;
static volatile unsigned char *usr1_buf;
static volatile int usr1_sum = -1;

static void on_bus(int sig)
{
	(void)sig;
	bus_calls++;
}

static void on_usr1(int sig)
{
	(void)sig;
	/* never touched before: a fault inside a handler that blocks everything */
	for (size_t o = 0; o < 2 * MiB; o += 4096)
		usr1_buf[o] = 1;
	usr1_sum = 0;
	for (size_t o = 0; o < 2 * MiB; o += 4096)
		usr1_sum += usr1_buf[o];
}

static uint64_t fnv(const unsigned char *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

int main(void)
{
	unsigned char *a = malloc(8 * MiB), *b, *z;
	uint64_t h = 0xcbf29ce484222325ull;
	struct sigaction sa;
	sigset_t all;
	int fds[2];
	ssize_t got;
	size_t n;
	FILE *f;

	/* a first large block: the shim's runtime starts here */
	for (size_t o = 0; o < 8 * MiB; o += 4096)
		a[o] = (unsigned char)(o >> 12);
	for (size_t o = 0; o < 8 * MiB; o += 4096)	/* only what it wrote: */
		h = fnv(a + o, 1, h);			/* MALLOC_PERTURB_ */

	/* the program's SIGBUS handler, set after the runtime started */
	signal(SIGBUS, on_bus);
	raise(SIGBUS);
	printf("own SIGBUS handler called: %d\n", (int)bus_calls);

	/* SIGBUS blocked, then never-touched memory touched */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	b = malloc(4 * MiB);
	for (size_t o = 0; o < 4 * MiB; o += 4096)
		b[o] = 7;
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	for (size_t o = 0; o < 4 * MiB; o += 4096)
		h = fnv(b + o, 1, h);
	printf("touched with every signal blocked\n");

	/* read(2) into a never-touched buffer */
	if (pipe(fds))
		return 1;
	z = malloc(4 * MiB);
	if (fork() == 0) {
		unsigned char chunk[4096];

		for (int i = 0; i < 1024; i++) {
			memset(chunk, i & 0xff, sizeof(chunk));
			if (write(fds[1], chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
				_exit(1);
		}
		_exit(0);
	}
	close(fds[1]);
	n = 0;
	while (n < 4 * MiB && (got = read(fds[0], z + n, 4 * MiB - n)) > 0)
		n += (size_t)got;
	close(fds[0]);
	printf("read into a fresh buffer: %zu bytes (%s)\n", n, got < 0 ? "error" : "ok");
	h = fnv(z, 4 * MiB, h);

	/* fwrite of a never-touched calloc'd buffer */
	f = fopen("/dev/null", "w");
	free(a);
	a = calloc(1, 6 * MiB);
	n = f ? fwrite(a, 1, 6 * MiB, f) : 0;
	if (f)
		fclose(f);
	printf("fwrite of a fresh calloc'd buffer: %zu bytes\n", n);

	/* a fault in a handler installed with a full mask */
	usr1_buf = malloc(2 * MiB);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigfillset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	raise(SIGUSR1);
	printf("fault inside a handler that blocks every signal: %d\n", usr1_sum);

	printf("digest %016llx\n", (unsigned long long)h);
	return 0;
}
