/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sort-u64.h - the in-place sort of examples/sort-farmem.c and of
 * faultline-bench's farmem-sort workload: one copy, so that both sort the
 * same way.
 *
 * Quicksort with a median-of-three pivot and Hoare's partition, recursion on
 * the smaller side (stack depth O(log n)), insertion sort below 16. No
 * buffer beside the array: under a memory budget, everything the sort
 * touches is the array itself. (The benchmark's input is random, so no
 * introsort fallback is needed; a library sort would add one.)
 */
#ifndef FL_EXAMPLES_SORT_U64_H
#define FL_EXAMPLES_SORT_U64_H

#include <stddef.h>
#include <stdint.h>

static inline void sort_u64_insertion(uint64_t *a, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		uint64_t x = a[i];
		size_t j = i;

		while (j && a[j - 1] > x) {
			a[j] = a[j - 1];
			j--;
		}
		a[j] = x;
	}
}

static inline void sort_u64(uint64_t *a, size_t n)
{
	while (n > 16) {
		uint64_t x = a[0], y = a[n / 2], z = a[n - 1], p, t;
		size_t i = 0, j = n - 1;

		p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
		for (;;) {
			while (a[i] < p)
				i++;
			while (a[j] > p)
				j--;
			if (i >= j)
				break;
			t = a[i];
			a[i++] = a[j];
			a[j--] = t;
		}
		/* [0, j] <= p <= [j + 1, n) */
		if (j + 1 < n - j - 1) {
			sort_u64(a, j + 1);
			a += j + 1;
			n -= j + 1;
		} else {
			sort_u64(a + j + 1, n - j - 1);
			n = j + 1;
		}
	}
	sort_u64_insertion(a, n);
}

#endif
