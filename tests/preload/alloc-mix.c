/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * alloc-mix - every call of the malloc family, small and large, with the
 * bytes checked, for tests/preload/allocators.sh: run natively and under
 * the shim, beside jemalloc or tcmalloc, the digest it prints must be the
 * same. On stderr it says which allocator served its small requests (from
 * the allocator's own statistics, when it has a C call for them).
 *
 *   alloc-mix [MiB]    MiB: the large blocks written twice (default 64)
 */
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t digest = 1469598103934665603ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void mix(const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		digest = (digest ^ c[i]) * 1099511628211ull;
}

static int fails;

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "alloc-mix: " __VA_ARGS__); \
	fputc('\n', stderr); fails++; } } while (0)

static void fill(unsigned char *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(seed + i * 7);
}

static int same(const unsigned char *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(seed + i * 7))
			return 0;
	return 1;
}

static int zeros(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* bytes the allocator says it holds, or -1 (no C call for it) */
static long long allocated(const char **who)
{
	int (*mallctl)(const char *, void *, size_t *, void *, size_t) =
		(int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "mallctl");
	int (*tc)(const char *, size_t *) =
		(int (*)(const char *, size_t *))dlsym(RTLD_DEFAULT, "MallocExtension_GetNumericProperty");

	if (mallctl) {
		uint64_t epoch = 1;
		size_t v, len = sizeof(v), elen = sizeof(epoch);

		*who = "jemalloc";
		mallctl("epoch", &epoch, &elen, &epoch, elen);
		if (!mallctl("stats.allocated", &v, &len, NULL, 0))
			return (long long)v;
		return -1;
	}
	if (tc) {
		size_t v;

		*who = "tcmalloc";
		if (tc("generic.current_allocated_bytes", &v))
			return (long long)v;
		return -1;
	}
	*who = "glibc";
	return -1;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 64;
	enum { NSMALL = 4000 };
	static unsigned char *small[NSMALL];
	static size_t small_len[NSMALL];
	const char *who = "?";
	long long before, after;
	unsigned char *p, *q, *big[64];
	size_t nbig;

	/* small requests: malloc, calloc, realloc both ways, usable size */
	before = allocated(&who);
	for (int i = 0; i < NSMALL; i++) {
		size_t n = 1 + next_rand() % 4000;

		small[i] = (i % 3 == 0) ? calloc(1, n) : malloc(n);
		CHECK(small[i], "small alloc %zu failed", n);
		if (!small[i])
			return 1;
		if (i % 3 == 0)
			CHECK(zeros(small[i], n), "calloc(%zu) not zeroed", n);
		CHECK(malloc_usable_size(small[i]) >= n, "usable %zu < %zu",
		      malloc_usable_size(small[i]), n);
		fill(small[i], n, (unsigned int)i);
		small_len[i] = n;
	}
	after = allocated(&who);
	fprintf(stderr, "alloc-mix: small requests: %s%s\n", who,
		before < 0 || after < 0 ? " (no statistics)" :
		after - before >= NSMALL * 1000 ? " (its statistics grew with them)" :
		" (its statistics did NOT grow with them)");
	for (int i = 0; i < NSMALL; i += 2) {
		size_t n = 1 + next_rand() % 8000;

		CHECK(same(small[i], small_len[i], (unsigned int)i), "small %d changed", i);
		p = realloc(small[i], n);
		CHECK(p, "realloc small %zu failed", n);
		if (!p)
			return 1;
		CHECK(same(p, n < small_len[i] ? n : small_len[i], (unsigned int)i),
		      "realloc small %d lost bytes", i);
		small[i] = p;
		fill(p, n, (unsigned int)i);
		small_len[i] = n;
	}
	for (int i = 0; i < NSMALL; i++) {
		CHECK(same(small[i], small_len[i], (unsigned int)i), "small %d changed", i);
		mix(small[i], small_len[i]);
		free(small[i]);
	}

	/* large: every entry point, alignment, zeroing, growth and shrinking */
	p = calloc(4, 1 << 20);
	CHECK(p && zeros(p, 4 << 20), "calloc 4 MiB not zeroed");
	free(p);
	p = malloc(2 << 20);
	CHECK(p, "malloc 2 MiB");
	if (!p)
		return 1;
	fill(p, 2 << 20, 1);
	q = realloc(p, 16 << 20);
	CHECK(q && same(q, 2 << 20, 1), "realloc 2 -> 16 MiB lost bytes");
	if (!q)
		return 1;
	fill(q, 16 << 20, 2);
	p = realloc(q, 100);
	CHECK(p && same(p, 100, 2), "realloc 16 MiB -> 100 B lost bytes");
	mix(p, 100);
	free(p);
	{
		void *a = NULL;
		int r = posix_memalign(&a, 65536, 2 << 20);

		CHECK(!r && a && !((uintptr_t)a & 65535), "posix_memalign 64K");
		CHECK(malloc_usable_size(a) >= (2u << 20), "usable of posix_memalign");
		free(a);
		a = aligned_alloc(4096, 4 << 20);
		CHECK(a && !((uintptr_t)a & 4095), "aligned_alloc 4K");
		free(a);
		a = memalign(256, 3 << 20);
		CHECK(a && !((uintptr_t)a & 255), "memalign 256");
		free(a);
		a = valloc(2 << 20);
		CHECK(a && !((uintptr_t)a & 4095), "valloc");
		free(a);
		CHECK(posix_memalign(&a, 3, 100) != 0, "posix_memalign(3) accepted");
	}

	/* large blocks written twice and read back: evicted under a budget */
	nbig = mib / 4 > 64 ? 64 : mib / 4;
	for (size_t i = 0; i < nbig; i++) {
		big[i] = malloc(4 << 20);
		CHECK(big[i], "malloc 4 MiB #%zu", i);
		if (!big[i])
			return 1;
		fill(big[i], 4 << 20, (unsigned int)(i * 3));
	}
	for (size_t i = 0; i < nbig; i++) {
		CHECK(same(big[i], 4 << 20, (unsigned int)(i * 3)), "block %zu changed", i);
		fill(big[i], 4 << 20, (unsigned int)(i * 5));
	}
	for (size_t i = 0; i < nbig; i++) {
		CHECK(same(big[i], 4 << 20, (unsigned int)(i * 5)), "block %zu changed (2)", i);
		mix(big[i], 4 << 20);
		free(big[i]);
	}
	printf("digest %016llx\n", (unsigned long long)digest);
	if (fails)
		fprintf(stderr, "alloc-mix: %d checks failed\n", fails);
	return fails ? 1 : 0;
}
