/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * reserve-commit - memory the way a managed runtime's heap uses it: one large
 * PROT_NONE reservation, committed piece by piece, written and read back,
 * then some pieces uncommitted and committed again, which must read zeros,
 * most pieces made PROT_NONE for a while (with malloc blocks with a guard
 * page at the front, a stack's, made meanwhile), then read-only and read,
 * and the middle of one piece unmapped. Two ways to commit:
 *   mmap      mmap(MAP_FIXED, PROT_READ | PROT_WRITE) over the reservation,
 *             uncommitted by mmap(MAP_FIXED | MAP_NORESERVE, PROT_NONE) (the
 *             JVM's way);
 *   mprotect  mprotect(PROT_READ | PROT_WRITE), uncommitted by
 *             madvise(MADV_DONTNEED) and mprotect(PROT_NONE) (V8's way).
 * Prints a digest of every committed byte: the same run natively and under
 * the shim must print the same line.
 *
 * A third way, pages: side tables committed a page or a few at a time (see
 * side_tables()).
 *
 * Usage: reserve-commit MIB [mmap|mprotect|pages]   (MIB committed at once;
 *        the reservation is 4x, for pages 2x; mmap by default)
 *        reserve-commit blocks   (malloc blocks only: see blocks_only())
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PIECE	((size_t)4 << 20)

static uint64_t digest = 1469598103934665603ull;

static void mix(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i += 512) {
		digest ^= p[i] | (uint64_t)p[i + 511] << 8;
		digest *= 1099511628211ull;
	}
}

static void fill(uint8_t *p, size_t len, unsigned int salt)
{
	for (size_t i = 0; i < len; i += 4096)
		memset(p + i, (int)((i >> 12) * 7 + salt), 4096);
}

static int by_mprotect;

static int commit(uint8_t *p, size_t len)
{
	if (by_mprotect)
		return mprotect(p, len, PROT_READ | PROT_WRITE);
	return mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		    -1, 0) == p ? 0 : -1;
}

static int uncommit(uint8_t *p, size_t len)
{
	if (by_mprotect)
		return madvise(p, len, MADV_DONTNEED) || mprotect(p, len, PROT_NONE) ? -1 : 0;
	return mmap(p, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
		    -1, 0) == p ? 0 : -1;
}

/*
 * Blocks with a guard page, the way a stack is made from malloc: the first
 * page is written, then made PROT_NONE while the rest is written and read.
 */
static int guarded_blocks(void)
{
	for (unsigned int k = 0; k < 4; k++) {
		void *v;
		uint8_t *blk;

		if (posix_memalign(&v, 4096, 4 * PIECE))
			return fprintf(stderr, "posix_memalign failed\n"), 1;
		blk = v;
		memset(blk, 0x5a, 4096);
		if (mprotect(blk, 4096, PROT_NONE))
			return perror("guard"), 1;
		fill(blk + 4096, 4 * PIECE - 4096, k);
		mix(blk + 4096, 4 * PIECE - 4096);
		if (mprotect(blk, 4096, PROT_READ | PROT_WRITE))
			return perror("unguard"), 1;
		mix(blk, 4096);
		free(blk);
	}
	return 0;
}

/*
 * Only malloc blocks (no mapping of the program's own): four of 16 MiB
 * written, the back half of each made PROT_NONE while dirty, the front
 * halves read twice, then all read again and freed.
 */
static int blocks_only(void)
{
	uint8_t *blk[4];

	for (unsigned int k = 0; k < 4; k++) {
		void *v;

		if (posix_memalign(&v, 4096, 4 * PIECE))
			return fprintf(stderr, "posix_memalign failed\n"), 1;
		blk[k] = v;
		fill(blk[k], 4 * PIECE, k);
	}
	for (unsigned int k = 0; k < 4; k++)
		if (mprotect(blk[k] + 2 * PIECE, 2 * PIECE, PROT_NONE))
			return perror("mprotect"), 1;
	for (unsigned int r = 0; r < 2; r++)
		for (unsigned int k = 0; k < 4; k++)
			mix(blk[k], 2 * PIECE);
	for (unsigned int k = 0; k < 4; k++) {
		if (mprotect(blk[k] + 2 * PIECE, 2 * PIECE, PROT_READ | PROT_WRITE))
			return perror("mprotect"), 1;
		mix(blk[k], 4 * PIECE);
		free(blk[k]);
	}
	printf("digest %016llx\n", (unsigned long long)digest);
	return 0;
}

/*
 * Side tables, the way the JVM's G1 collector commits its card table and
 * mark bitmaps: one reservation committed a page or a few at a time with
 * mmap(MAP_FIXED), in address order, each commit written at once; then a
 * quarter uncommitted 16 pages at a time and committed again page by page
 * (zeros, then written), and 64 pages above it all committed from the top
 * down; everything read back.
 */
static int side_tables(size_t mib)
{
	size_t pages = (mib << 20) / 4096, pg, k;
	uint8_t *t = mmap(NULL, 2 * (mib << 20), PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (t == MAP_FAILED)
		return perror("reserve"), 1;
	for (pg = 0; pg < pages; pg += k) {
		k = 1 + (pg / 7) % 4;
		if (pg + k > pages)
			k = pages - pg;
		if (commit(t + pg * 4096, k * 4096))
			return perror("commit"), 1;
		fill(t + pg * 4096, k * 4096, (unsigned int)pg);
	}
	mix(t, pages * 4096);
	for (pg = pages / 2; pg < 3 * pages / 4; pg += 16)
		if (uncommit(t + pg * 4096, 16 * 4096))
			return perror("uncommit"), 1;
	for (pg = pages / 2; pg < 3 * pages / 4; pg++) {
		if (commit(t + pg * 4096, 4096))
			return perror("commit"), 1;
		if (t[pg * 4096] || t[pg * 4096 + 4095])
			return fprintf(stderr, "recommitted page %zu not zero\n", pg), 1;
		fill(t + pg * 4096, 4096, (unsigned int)pg + 5);
	}
	for (pg = pages + 64; pg-- > pages;) {
		if (commit(t + pg * 4096, 4096))
			return perror("commit"), 1;
		fill(t + pg * 4096, 4096, (unsigned int)pg);
	}
	for (k = 0; k < 2; k++)
		mix(t, (pages + 64) * 4096);
	printf("digest %016llx\n", (unsigned long long)digest);
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 0, n = mib * (1 << 20) / PIECE;
	uint8_t *res;

	if (argc > 1 && !strcmp(argv[1], "blocks"))
		return blocks_only();
	if (n >= 4 && argc > 2 && !strcmp(argv[2], "pages"))
		return side_tables(mib);
	if (n < 4 || (argc > 2 && strcmp(argv[2], "mmap") && strcmp(argv[2], "mprotect"))) {
		fprintf(stderr, "usage: reserve-commit MIB [mmap|mprotect|pages] | blocks "
			"(MIB: 16 or more)\n");
		return 2;
	}
	by_mprotect = argc > 2 && !strcmp(argv[2], "mprotect");
	res = mmap(NULL, 4 * n * PIECE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (res == MAP_FAILED)
		return perror("reserve"), 1;
	/* commit every other piece first, then the ones between: pieces are
	 * not all committed in address order */
	for (size_t k = 0; k < 2; k++)
		for (size_t i = k; i < n; i += 2) {
			if (commit(res + i * PIECE, PIECE))
				return perror("commit"), 1;
			fill(res + i * PIECE, PIECE, (unsigned int)i);
		}
	for (size_t i = 0; i < n; i++)
		mix(res + i * PIECE, PIECE);
	/* uncommit pieces 1 and 2, commit piece 1 again: zeros, then bytes */
	if (uncommit(res + PIECE, 2 * PIECE) || commit(res + PIECE, PIECE))
		return perror("uncommit"), 1;
	for (size_t i = 0; i < PIECE; i += 4096)
		if (res[PIECE + i] || res[PIECE + i + 4095])
			return fprintf(stderr, "recommitted piece: byte %zu not zero\n", i), 1;
	fill(res + PIECE, PIECE, 99);
	/*
	 * Pieces 4 to n - 1 written again, then out of reach while other
	 * memory is busy (what of them is resident is dirty: an evictor that
	 * took those pages through the mapping now would fault), then
	 * read-only and read, then written again.
	 */
	fill(res + 4 * PIECE, (n - 4) * PIECE, 7);
	if (mprotect(res + 4 * PIECE, (n - 4) * PIECE, PROT_NONE))
		return perror("mprotect"), 1;
	if (guarded_blocks())
		return 1;
	if (mprotect(res + 4 * PIECE, (n - 4) * PIECE, PROT_READ))
		return perror("mprotect"), 1;
	mix(res + 4 * PIECE, (n - 4) * PIECE);
	if (mprotect(res + 4 * PIECE, (n - 4) * PIECE, PROT_READ | PROT_WRITE))
		return perror("mprotect"), 1;
	fill(res + 4 * PIECE, PIECE / 2, 42);
	/* the middle half of piece 3 goes */
	if (munmap(res + 3 * PIECE + PIECE / 4, PIECE / 2))
		return perror("munmap"), 1;
	/* a second pass over what is committed, in reverse */
	for (size_t i = n; i-- > 0;) {
		if (i == 2)
			continue;
		if (i == 3) {
			mix(res + 3 * PIECE, PIECE / 4);
			mix(res + 3 * PIECE + 3 * PIECE / 4, PIECE / 4);
			continue;
		}
		mix(res + i * PIECE, PIECE);
	}
	/* beyond the committed pieces: commit more, fill, read */
	if (commit(res + n * PIECE, n * PIECE))
		return perror("commit"), 1;
	fill(res + n * PIECE, n * PIECE, 3);
	mix(res + n * PIECE, n * PIECE);
	printf("digest %016llx\n", (unsigned long long)digest);
	return 0;
}
