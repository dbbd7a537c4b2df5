/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rcu.c - the runtime's RCU readers, and what fork() does to them.
 *
 * Every thread of the runtime that reads the index under RCU (handlers, the
 * evictor, application threads that pin) registers through here, which
 * keeps the address of its liburcu reader (the thread-local struct
 * urcu_reader liburcu's registry links). In the child of a fork only the
 * forking thread lives on; the readers of the parent's other threads stay
 * in liburcu's registry, and one that was inside a read-side section when
 * fork() copied the memory would keep every grace period of the child
 * waiting for it forever. Worse, glibc reuses the dead threads' stacks, and
 * the thread-local blocks in them, for the child's new threads: a new thread
 * that registers links a reader already linked in the registry, and the
 * list becomes a cycle (a forked child that started a runtime of its own,
 * as the LD_PRELOAD shim's children do, spun forever in its first grace
 * period). fl_rcu_fork_child() takes the dead threads' readers out of the
 * registry. liburcu offers that only for its bp flavor, so it is done here
 * on the reader's own list node, in the one thread left, with no grace
 * period in flight (fork() happens with every runtime's index writer lock
 * held, and every synchronize_rcu() of ours runs under one) and no thread of
 * ours inside liburcu's register or unregister (readers_lock).
 */
#include <pthread.h>

#include "rcu.h"
#include <urcu/static/urcu-mb.h>	/* struct urcu_reader, urcu_mb_reader */

#define FL_RCU_READERS	1024

/* readers_lock also covers liburcu's register and unregister, so that no
 * thread of ours is inside them (holding liburcu's registry lock) at fork */
static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct urcu_reader *readers[FL_RCU_READERS];
static size_t nreaders;

void fl_rcu_register_thread(void)
{
	pthread_mutex_lock(&readers_lock);
	urcu_mb_register_thread();
	/* more readers than that: the ones beyond are not closed after fork
	 * (a forked child's grace periods could then wait on them) */
	if (nreaders < FL_RCU_READERS)
		readers[nreaders++] = &URCU_TLS(urcu_mb_reader);
	pthread_mutex_unlock(&readers_lock);
}

void fl_rcu_unregister_thread(void)
{
	struct urcu_reader *me = &URCU_TLS(urcu_mb_reader);

	pthread_mutex_lock(&readers_lock);
	for (size_t i = 0; i < nreaders; i++)
		if (readers[i] == me) {
			readers[i] = readers[--nreaders];
			break;
		}
	urcu_mb_unregister_thread();
	pthread_mutex_unlock(&readers_lock);
}

void fl_rcu_fork_prepare(void)
{
	pthread_mutex_lock(&readers_lock);
}

void fl_rcu_fork_parent(void)
{
	pthread_mutex_unlock(&readers_lock);
}

void fl_rcu_fork_child(void)
{
	struct urcu_reader *me = &URCU_TLS(urcu_mb_reader);
	size_t k = 0;

	for (size_t i = 0; i < nreaders; i++) {
		if (readers[i] == me) {
			readers[k++] = me;
			continue;
		}
		/* its thread is gone: so is its section, if it was in one */
		cds_list_del(&readers[i]->node);
		readers[i]->ctr = 0;
		readers[i]->registered = 0;
	}
	nreaders = k;
	pthread_mutex_unlock(&readers_lock);
}
