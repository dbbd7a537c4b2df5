/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * testhooks.c - the hooks behind testhooks.h; built only into the
 * FL_TEST_HOOKS library variants.
 */
#include "testhooks.h"

_Atomic(fl_test_pause_fn) fl_test_pause_hook;
_Atomic int fl_test_fail_at[FL_FAIL_NR];
_Atomic int fl_test_numa_nodes;
_Atomic int fl_test_numa_home;
_Atomic(fl_test_tid_node_fn) fl_test_numa_tid_node;

void fl_test_pause(enum fl_test_point point, uintptr_t addr)
{
	fl_test_pause_fn fn = atomic_load_explicit(&fl_test_pause_hook,
						   memory_order_acquire);

	if (fn)
		fn(point, addr);
}

bool fl_test_fail(enum fl_test_site site)
{
	int n = atomic_load_explicit(&fl_test_fail_at[site], memory_order_relaxed);

	if (n < 0)
		return true;
	while (n > 0)
		if (atomic_compare_exchange_weak_explicit(&fl_test_fail_at[site], &n, n - 1,
							  memory_order_relaxed,
							  memory_order_relaxed))
			return n == 1;
	return false;
}
