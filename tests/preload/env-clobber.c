/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * env-clobber - a program that sets its process title the way PostgreSQL,
 * nginx and setproctitle() do, then uses large memory (for env-clobber.sh).
 *
 * The argv and environment strings lie back to back at the top of the
 * stack; a process title is written over all of them. Mode "moved" first
 * copies the environment to the heap and points environ at the copy (what
 * those programs do, so that their own getenv() keeps working); mode
 * "inplace" does not. Either way every byte of the original strings is
 * then zeroed, before any large allocation: the shim must already hold
 * what it needs of FAULTLINE_* (the store on the first managed mapping, the
 * statistics file at exit).
 *
 * Then 48 MiB of malloc and 16 MiB of mmap are written and read back; the
 * program prints one checksum line (the same with or without the shim)
 * and, in mode "moved", what its own getenv() says of ENV_CLOBBER_PROBE.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

extern char **environ;

static void set_title(char **argv, int moved)
{
	char *start = argv[0], *end = argv[0];
	size_t n = 0;

	/* the contiguous area: argv strings, then environment strings */
	for (char **a = argv; *a; a++)
		if (*a == end || *a == end + 1)
			end = *a + strlen(*a);
	for (char **e = environ; *e; e++, n++)
		if (*e == end + 1)
			end = *e + strlen(*e);
	if (moved) {
		char **copy = malloc((n + 1) * sizeof(*copy));

		if (!copy)
			exit(1);
		for (size_t i = 0; i < n; i++) {
			copy[i] = strdup(environ[i]);
			if (!copy[i])
				exit(1);
		}
		copy[n] = NULL;
		environ = copy;
	}
	memset(start, 0, (size_t)(end - start));
	snprintf(start, (size_t)(end - start), "env-clobber: title");
}

/* write every page, then read every page back */
static uint64_t churn(unsigned char *p, size_t len, unsigned seed)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < len; i += 4096)
		p[i] = (unsigned char)((i >> 12) * 31 + seed);
	for (size_t i = 0; i < len; i += 4096)
		sum = sum * 131 + p[i];
	return sum;
}

int main(int argc, char **argv)
{
	size_t mlen = 48u << 20, plen = 16u << 20;
	unsigned char *m, *p;
	int moved;

	if (argc != 2 || (strcmp(argv[1], "moved") && strcmp(argv[1], "inplace"))) {
		fprintf(stderr, "usage: env-clobber moved|inplace\n");
		return 2;
	}
	moved = !strcmp(argv[1], "moved");
	set_title(argv, moved);

	m = malloc(mlen);
	p = mmap(NULL, plen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!m || p == MAP_FAILED) {
		fprintf(stderr, "env-clobber: out of memory\n");
		return 1;
	}
	printf("%s sum %016llx %016llx\n", moved ? "moved" : "inplace",
	       (unsigned long long)churn(m, mlen, 7), (unsigned long long)churn(p, plen, 11));
	if (moved)
		printf("ENV_CLOBBER_PROBE=%s\n", getenv("ENV_CLOBBER_PROBE") ?: "(unset)");
	free(m);
	munmap(p, plen);
	return 0;
}
