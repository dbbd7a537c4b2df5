/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rescue.c - far memory: pages whose write-back failed and that could not
 * be put back where they were (evict.c, MOVE step 4).
 *
 * The evictor has moved the page into a staging frame; the store refused
 * the write; moving it back failed too (EAGAIN while any event of the
 * process is unread: the handler that would read it may be asleep on a page
 * of this very batch, or waiting for this region's readers, so waiting for
 * the put-back under the region lock could deadlock). The frame is about to
 * be emptied for the next batch, so the bytes are copied here, keyed by the
 * page's store offset, and the word becomes EVICTED|PS_RESCUED: the next
 * fault installs them from here (pagein.c far_rescue_in()), never from the
 * store. A rescued page still counts as resident: it still takes memory,
 * and the budget overshoot stays visible.
 *
 * The copy can never fail for want of memory: the evictor reserves one
 * spare entry per victim before it claims any (far_rescue_reserve(); a
 * batch is cut to the spares it has), so the error path, which runs under
 * the region read lock, never allocates.
 *
 * Lifetime of an entry: it belongs to its page's word while the word says
 * EVICTED|RESCUED, and only whoever holds the page touches it: the evictor
 * puts it while the page is EVICTING, before the settle (a REMOVE right
 * after must find it); a filler (pagein.c far_rescue_in()) or event_remove()
 * (evict.c far_rescued_gone()) first claims the word FILLING and then takes
 * it; the region going away (far_range_gone()) drops it with no page in
 * transit. So one page never has two entries, and nobody drops a newer
 * copy than the one it meant (an earlier cut dropped by offset after the
 * word was released, and could).
 *
 * A mutex and a chained hash: entries exist only after store errors, and
 * every path here is an error path or the page-in of a rescued page.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "far.h"

struct rescued {
	struct rescued *next;
	uint64_t off;			/* the page's store offset */
	unsigned char data[];		/* one page */
};

#define RESCUE_BUCKETS0	64

static size_t bucket(const struct far_rescue *rs, uint64_t off)
{
	return (size_t)((off >> 12) * 0x9e3779b97f4a7c15ull >> 32) & (rs->nbuckets - 1);
}

int far_rescue_init(struct far_rescue *rs)
{
	rs->tab = calloc(RESCUE_BUCKETS0, sizeof(*rs->tab));
	if (!rs->tab)
		return -ENOMEM;
	rs->nbuckets = RESCUE_BUCKETS0;
	pthread_mutex_init(&rs->lock, NULL);
	return 0;
}

/* single-threaded (runtime destroy, or a fork child's): no lock */
void far_rescue_fini(struct far_rescue *rs)
{
	struct rescued *e, *n;

	for (size_t b = 0; rs->tab && b < rs->nbuckets; b++)
		for (e = rs->tab[b]; e; e = n) {
			n = e->next;
			free(e);
		}
	for (e = rs->spare; e; e = n) {
		n = e->next;
		free(e);
	}
	free(rs->tab);
	rs->tab = NULL;
	rs->spare = NULL;
	pthread_mutex_destroy(&rs->lock);
}

/* double the table when it is crowded; on no memory it just stays crowded */
static void grow_locked(struct far_rescue *rs)
{
	size_t nb = rs->nbuckets * 2;
	struct rescued **t = calloc(nb, sizeof(*t)), **old = rs->tab;
	size_t ob = rs->nbuckets;

	if (!t)
		return;
	rs->tab = t;
	rs->nbuckets = nb;
	for (size_t b = 0; b < ob; b++) {
		struct rescued *e = old[b], *n;

		for (; e; e = n) {
			size_t i = bucket(rs, e->off);

			n = e->next;
			e->next = t[i];
			t[i] = e;
		}
	}
	free(old);
}

unsigned int far_rescue_reserve(struct far_rescue *rs, size_t page_size, unsigned int want)
{
	unsigned int have;

	pthread_mutex_lock(&rs->lock);
	while (rs->nspare < want) {
		struct rescued *e;

		pthread_mutex_unlock(&rs->lock);
		e = malloc(sizeof(*e) + page_size);
		pthread_mutex_lock(&rs->lock);
		if (!e)
			break;
		e->next = rs->spare;
		rs->spare = e;
		rs->nspare++;
	}
	have = rs->nspare;
	pthread_mutex_unlock(&rs->lock);
	return have;
}

struct rescued *far_rescue_put(struct far_rescue *rs, uint64_t off, const void *page,
			       size_t page_size)
{
	struct rescued *e;

	pthread_mutex_lock(&rs->lock);
	e = rs->spare;		/* reserved by the caller: never NULL */
	rs->spare = e->next;
	rs->nspare--;
	pthread_mutex_unlock(&rs->lock);
	e->off = off;
	memcpy(e->data, page, page_size);
	far_rescue_insert(rs, e);
	return e;
}

void far_rescue_insert(struct far_rescue *rs, struct rescued *e)
{
	size_t i;

	pthread_mutex_lock(&rs->lock);
	if (rs->count >= (long)rs->nbuckets)
		grow_locked(rs);
	i = bucket(rs, e->off);
	e->next = rs->tab[i];
	rs->tab[i] = e;
	atomic_store_explicit(&rs->count, rs->count + 1, memory_order_relaxed);
	pthread_mutex_unlock(&rs->lock);
}

static void unlink_locked(struct far_rescue *rs, struct rescued **pp)
{
	*pp = (*pp)->next;
	atomic_store_explicit(&rs->count, rs->count - 1, memory_order_relaxed);
}

struct rescued *far_rescue_take(struct far_rescue *rs, uint64_t off)
{
	struct rescued **pp, *e = NULL;

	if (!atomic_load_explicit(&rs->count, memory_order_relaxed))
		return NULL;
	pthread_mutex_lock(&rs->lock);
	for (pp = &rs->tab[bucket(rs, off)]; *pp; pp = &(*pp)->next)
		if ((*pp)->off == off) {
			e = *pp;
			unlink_locked(rs, pp);
			break;
		}
	pthread_mutex_unlock(&rs->lock);
	return e;
}

bool far_rescue_remove(struct far_rescue *rs, struct rescued *e)
{
	struct rescued **pp;
	bool found = false;

	pthread_mutex_lock(&rs->lock);
	for (pp = &rs->tab[bucket(rs, e->off)]; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			unlink_locked(rs, pp);
			found = true;
			break;
		}
	pthread_mutex_unlock(&rs->lock);
	return found;
}

const void *far_rescue_data(const struct rescued *e)
{
	return e->data;
}

/* keep it as a spare while the evictor could use one */
static void free_locked(struct far_rescue *rs, struct rescued *e)
{
	if (rs->nspare < FAR_BATCH) {
		e->next = rs->spare;
		rs->spare = e;
		rs->nspare++;
	} else {
		free(e);
	}
}

void far_rescue_free(struct far_rescue *rs, struct rescued *e)
{
	pthread_mutex_lock(&rs->lock);
	free_locked(rs, e);
	pthread_mutex_unlock(&rs->lock);
}

long far_rescue_drop(struct far_rescue *rs, uint64_t lo, uint64_t hi)
{
	long n = 0;

	/* the common case: nothing was ever rescued; no lock */
	if (!atomic_load_explicit(&rs->count, memory_order_relaxed))
		return 0;
	pthread_mutex_lock(&rs->lock);
	for (size_t b = 0; b < rs->nbuckets; b++) {
		struct rescued **pp = &rs->tab[b];

		while (*pp) {
			struct rescued *e = *pp;

			if (e->off >= lo && e->off < hi) {
				unlink_locked(rs, pp);
				free_locked(rs, e);
				n++;
			} else {
				pp = &e->next;
			}
		}
	}
	pthread_mutex_unlock(&rs->lock);
	return n;
}
