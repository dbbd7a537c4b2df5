/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sigrcu.c - signal-safe RCU readers. See sigrcu.h.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sigrcu.h"

static struct fl_sigrcu_slot slots[FL_SIGRCU_SLOTS];
/* slots [0, used) were ever claimed: writers look at no others */
static _Atomic uint32_t used;
/* this thread's slot + 1 (0: none yet); initial-exec: no allocation on first use */
static __thread int my_slot __attribute__((tls_model("initial-exec")));

static uint32_t my_tid(void)
{
	return (uint32_t)syscall(SYS_gettid);
}

static int claim(void)
{
	uint32_t tid = my_tid(), pid = (uint32_t)getpid();

	for (uint32_t i = 0; i < FL_SIGRCU_SLOTS; i++) {
		uint32_t free_owner = 0;

		if (atomic_compare_exchange_strong_explicit(&slots[i].owner, &free_owner, tid,
							    memory_order_relaxed,
							    memory_order_relaxed)) {
			uint32_t u = atomic_load_explicit(&used, memory_order_relaxed);

			while (u < i + 1 &&
			       !atomic_compare_exchange_weak_explicit(&used, &u, i + 1,
								      memory_order_relaxed,
								      memory_order_relaxed))
				;
			return (int)i;
		}
	}
	/*
	 * Full: take over the slot of a thread that has exited. Its last
	 * section ended with it (a thread leaves the handler before it can
	 * exit), so the count is 0; a tid reused since keeps its slot busy.
	 */
	for (uint32_t i = 0; i < FL_SIGRCU_SLOTS; i++) {
		uint32_t o = atomic_load_explicit(&slots[i].owner, memory_order_relaxed);

		if (atomic_load_explicit(&slots[i].nest, memory_order_relaxed) ||
		    (syscall(SYS_tgkill, pid, o, 0) == 0 || errno != ESRCH))
			continue;
		if (atomic_compare_exchange_strong_explicit(&slots[i].owner, &o, tid,
							    memory_order_relaxed,
							    memory_order_relaxed))
			return (int)i;
	}
	return -1;
}

int sigrcu_enter(void)
{
	int s = my_slot - 1;
	uint32_t n;

	if (s < 0) {
		int saved = errno;

		s = claim();
		errno = saved;
		if (s < 0)
			return -1;
		my_slot = s + 1;
	}
	n = atomic_load_explicit(&slots[s].nest, memory_order_relaxed);
	atomic_store_explicit(&slots[s].nest, n + 1, memory_order_relaxed);
	/* Race: the count must be visible before we read the index, or a
	 * writer that just unpublished a region could miss us and free it
	 * under our lookup (the writer's fence pairs with this one) */
	if (!n)
		atomic_thread_fence(memory_order_seq_cst);
	return s;
}

void sigrcu_exit(int s)
{
	uint32_t n = atomic_load_explicit(&slots[s].nest, memory_order_relaxed);

	if (n == 1) {
		/* everything the section read happens before a writer's wait ends */
		atomic_fetch_add_explicit(&slots[s].exits, 1, memory_order_release);
		atomic_store_explicit(&slots[s].nest, 0, memory_order_release);
	} else {
		atomic_store_explicit(&slots[s].nest, n - 1, memory_order_relaxed);
	}
}

unsigned int sigrcu_used(void)
{
	return atomic_load_explicit(&used, memory_order_acquire);
}

void sigrcu_synchronize(void)
{
	uint32_t n;

	/* pairs with the reader's fence: the unpublish is visible first */
	atomic_thread_fence(memory_order_seq_cst);
	n = atomic_load_explicit(&used, memory_order_acquire);
	for (uint32_t i = 0; i < n; i++) {
		struct fl_sigrcu_slot *sl = &slots[i];
		uint64_t e;
		unsigned int spins = 0;

		if (!atomic_load_explicit(&sl->nest, memory_order_acquire))
			continue;
		e = atomic_load_explicit(&sl->exits, memory_order_acquire);
		while (atomic_load_explicit(&sl->nest, memory_order_acquire) &&
		       atomic_load_explicit(&sl->exits, memory_order_acquire) == e) {
			/* the reader may be waiting for a CPU: give it ours */
			if (++spins < 64) {
				sched_yield();
			} else {
				struct timespec ts = { 0, 50000 };

				nanosleep(&ts, NULL);
			}
		}
	}
}

void sigrcu_fork_child(void)
{
	uint32_t n = atomic_load_explicit(&used, memory_order_relaxed);

	/* only this thread lives on: no other section is in progress, and the
	 * other slots' owners are gone (their tids mean nothing here) */
	for (uint32_t i = 0; i < n; i++)
		if ((int)i != my_slot - 1) {
			atomic_store_explicit(&slots[i].nest, 0, memory_order_relaxed);
			atomic_store_explicit(&slots[i].owner, 0, memory_order_relaxed);
		}
}
