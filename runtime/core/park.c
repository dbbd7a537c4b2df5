/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * park.c - faults that cannot be resolved yet, and the thread that lets
 * them come again.
 *
 * While an event (REMOVE, UNMAP, REMAP) sits unread, the kernel refuses
 * every resolving ioctl with EAGAIN. A resolver never waits for that: it
 * parks the fault's range (park_fault()) and goes back to its uffd, where
 * it may be the one to read the event. The retrier wakes parked ranges
 * after an event was processed, or after 1 ms at most, and the faulting
 * threads fault again. Three other waits use the same parking: a fault in
 * no region while an event may be moving its range (unknown_defer()), and a
 * far page-in whose range an event read but not yet applied may have
 * dropped (events_read_applied(), events_wait_applied()): the handler read
 * windows those look at are published by handler.c.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "probes.h"

void park_fault(struct fl_fault_ctx *c, uintptr_t start, size_t len)
{
	struct fl_runtime *rt = c->rt;

	if (c->in_signal) {
		/* in the faulting thread (inthread.c): no lock here, and no
		 * need to park: returning runs the access again. Let the
		 * thread that reads the pending event have the CPU first. */
		STAT_INC(c->st, thread_retries);
		sched_yield();
		return;
	}
	pthread_mutex_lock(&rt->park_lock);
	if (rt->nparked == rt->parked_cap) {
		size_t cap = rt->parked_cap ? 2 * rt->parked_cap : 64;
		struct fl_parked *p = realloc(rt->parked, cap * sizeof(*p));

		if (!p) {
			/* cannot remember it: wake it now, it faults again */
			pthread_mutex_unlock(&rt->park_lock);
			uffd_wake(&rt->uffd, start, len);
			return;
		}
		rt->parked = p;
		rt->parked_cap = cap;
	}
	rt->parked[rt->nparked++] = (struct fl_parked){ start, len };
	FL_PROBE(park, start, len);
	pthread_cond_signal(&rt->park_cond);
	pthread_mutex_unlock(&rt->park_lock);
}

/*
 * unknown_defer() - should a fault on @page, found in no region, wait?
 *
 * Race: the program's mremap() returns as soon as *a* handler has read the
 * REMAP event, and it may touch the new address at once; another handler
 * can read that fault before the first one has applied the event to the
 * index. The address is then in no region with an even, unchanged count,
 * and serving it zeros would lose the moved pages. Handlers count the
 * events they read (events_active) before resolving anything else, and the
 * moments between read(2) taking an event and that count are each
 * handler's read window (window_busy()). So a fault in no region is parked
 * (woken after the next event or 1 ms, when it faults again) while another
 * handler's window is busy or any event is counted and not yet applied:
 * the caller holds the index lock for reading, so one cannot be applied
 * between its lookup and this look. And it waits at least
 * FL_UNKNOWN_WAIT_NS from its first sighting: a thread of the program that
 * touches the new address before its mremap() returned races an event not
 * read yet. Only then is it served zeros. Stale messages (their range
 * already unregistered) just age out.
 * Context: any resolving thread; takes park_lock. Return: true if parked.
 */
#define FL_UNKNOWN_WAIT_NS (5ull * 1000 * 1000)
/* a page not seen again within this long starts a new episode: its range
 * may have been reused since (parked faults come back within ~1 ms) */
#define FL_UNKNOWN_GAP_NS (10ull * 1000 * 1000)

/* is a handler other than @c's in a busy read window? Windows first, then
 * events_active: a window closes after its events are counted */
static bool windows_busy(const struct fl_fault_ctx *c)
{
	for (unsigned int i = 0; i < c->rt->nhandlers; i++) {
		const struct fl_handler *h = &c->rt->handlers[i];

		if (&h->ctx != c && window_busy(h))
			return true;
	}
	return false;
}

bool unknown_defer(struct fl_fault_ctx *c, uintptr_t page)
{
	struct fl_runtime *rt = c->rt;
	struct fl_unknown *slot = NULL, *oldest = &rt->unknown[0];
	struct timespec ts;
	uint64_t now;
	bool ripe = false, wait = true;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	pthread_mutex_lock(&rt->park_lock);
	for (unsigned int i = 0; i < FL_UNKNOWN_SLOTS; i++) {
		struct fl_unknown *u = &rt->unknown[i];

		if (u->page == page && u->last_ns && now - u->last_ns < FL_UNKNOWN_GAP_NS) {
			slot = u;
			break;
		}
		if (u->last_ns < oldest->last_ns)
			oldest = u;
	}
	if (slot) {
		slot->last_ns = now;
		ripe = now - slot->first_ns >= FL_UNKNOWN_WAIT_NS;
	} else {
		*oldest = (struct fl_unknown){ page, now, now };
	}
	pthread_mutex_unlock(&rt->park_lock);
	/* the windows' states come from /proc: looked at outside park_lock */
	if (ripe && !windows_busy(c) &&
	    !atomic_load_explicit(&rt->events_active, memory_order_seq_cst)) {
		pthread_mutex_lock(&rt->park_lock);
		if (slot->page == page)	/* else reused for another: let it age */
			*slot = (struct fl_unknown){ 0, 0, 0 };
		pthread_mutex_unlock(&rt->park_lock);
		wait = false;
	}
	if (wait) {
		STAT_INC(c->st, faults_unknown_waits);
		park_fault(c, page, rt->page_size);
	}
	return wait;
}

/*
 * events_read_applied() - may a far page-in of [start, end) go ahead?
 *
 * Race: the program's MADV_DONTNEED (munmap, mremap) returns as soon as
 * *a* handler has read its event, and the kernel zaps the range right
 * after; the program may touch a page of it at once, and another handler
 * can read that fault before the first one has applied the event to the
 * page words. A page that far memory keeps outside the mapping (EVICTED:
 * in the store, or rescued) still says EVICTED then, and a page-in would
 * give the program back the bytes it just dropped. So wait out every other
 * handler's read window (window_busy(); far memory's handlers poll and
 * read without blocking, so a window is a few instructions long unless the
 * handler is preempted), then look at the ranges of the events read and
 * not yet applied. The caller parks the fault if this says no (an event in
 * range, or a window still open after a few yields): it comes back after
 * the event (handle_msg() signals the retrier), or 1 ms later.
 * An event read after our fault was read is not ordered before it by the
 * program either (the fault was raised before the event's call returned):
 * that is the install race of doc/architecture.md ("Races the kernel
 * leaves open"), which this does not close. Context: a far-memory
 * resolving thread, no page claimed yet.
 * Return: true if no event overlapping [start, end) is read and unapplied.
 */
/*
 * Wait until @h is out of the read window it may be in (or, blocking,
 * asleep in it: window_busy()), at most @spins yields (0: for as long as
 * it takes). Return: false if it still is.
 */
static bool read_window_wait(const struct fl_handler *h, unsigned int spins)
{
	uint32_t s = atomic_load_explicit(&h->reading, memory_order_seq_cst);

	if (!(s & 1))
		return true;
	for (unsigned int i = 0; !spins || i < spins; i++) {
		if (atomic_load_explicit(&h->reading, memory_order_seq_cst) != s ||
		    (!h->polls && !window_busy(h)))
			return true;
		if (spins)
			sched_yield();
		else
			usleep(20);
	}
	return false;
}

static bool events_overlap(const struct fl_handler *h, uintptr_t start, uintptr_t end)
{
	return atomic_load_explicit(&h->ev_hi, memory_order_acquire) > start &&
	       atomic_load_explicit(&h->ev_lo, memory_order_acquire) < end;
}

#define FL_WINDOW_SPINS 64

bool events_read_applied(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end)
{
	struct fl_runtime *rt = c->rt;

	for (unsigned int i = 0; i < rt->nhandlers; i++) {
		struct fl_handler *h = &rt->handlers[i];

		/* our own batch: its faults come before its events */
		if (&h->ctx == c)
			continue;
		/* a window is a non-blocking read(2) long, unless its
		 * handler was preempted: then park rather than keep this
		 * handler from reading events (the one holding up that
		 * program thread may be next in the queue) */
		if (!read_window_wait(h, FL_WINDOW_SPINS) || events_overlap(h, start, end)) {
			STAT_INC(c->st, far_event_waits);
			return false;
		}
	}
	return true;
}

/*
 * events_wait_applied() - wait until every event overlapping [start, end)
 * that a handler has read so far is applied.
 * Context: not a handler; no runtime lock held that applying an event
 * takes (the index lock; region locks, whose readers it waits for).
 */
void events_wait_applied(struct fl_runtime *rt, uintptr_t start, uintptr_t end)
{
	for (unsigned int i = 0; i < rt->nhandlers; i++) {
		read_window_wait(&rt->handlers[i], 0);
		while (events_overlap(&rt->handlers[i], start, end))
			usleep(50);
	}
}

static void *park_main(void *arg)
{
	struct fl_runtime *rt = arg;
	struct fl_parked batch[64];

	pthread_mutex_lock(&rt->park_lock);
	while (!rt->park_stop) {
		uint64_t seen;
		struct timespec ts;
		size_t n;

		if (!rt->nparked) {
			pthread_cond_wait(&rt->park_cond, &rt->park_lock);
			continue;
		}
		/*
		 * Wait until a handler processed an event, or 1 ms: the event
		 * that caused EAGAIN may have been read before we parked, and
		 * the kernel clears mmap_changing only after the event's
		 * sender wakes up, so a bounded wait is the only sure bound.
		 */
		seen = atomic_load_explicit(&rt->events_seen, memory_order_acquire);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		while (!rt->park_stop &&
		       atomic_load_explicit(&rt->events_seen, memory_order_acquire) == seen &&
		       pthread_cond_timedwait(&rt->park_cond, &rt->park_lock, &ts) == 0)
			;
		n = rt->nparked < 64 ? rt->nparked : 64;
		rt->nparked -= n;
		memcpy(batch, rt->parked + rt->nparked, n * sizeof(batch[0]));
		pthread_mutex_unlock(&rt->park_lock);
		for (size_t i = 0; i < n; i++) {
			STAT_INC(&rt->park_st, parked_retries);
			FL_PROBE(retry, batch[i].start, batch[i].len);
			uffd_wake(&rt->uffd, batch[i].start, batch[i].len);
		}
		pthread_mutex_lock(&rt->park_lock);
	}
	pthread_mutex_unlock(&rt->park_lock);
	return NULL;
}

/* an event was processed (events_seen is bumped): parked faults may go */
void park_event_done(struct fl_runtime *rt)
{
	pthread_mutex_lock(&rt->park_lock);
	if (rt->nparked)
		pthread_cond_signal(&rt->park_cond);
	pthread_mutex_unlock(&rt->park_lock);
}

int park_start(struct fl_runtime *rt)
{
	rt->park_started = !pthread_create(&rt->park_thread, NULL, park_main, rt);
	return rt->park_started ? 0 : -EAGAIN;
}

void park_stop(struct fl_runtime *rt)
{
	if (!rt->park_started)
		return;
	pthread_mutex_lock(&rt->park_lock);
	rt->park_stop = true;
	pthread_cond_signal(&rt->park_cond);
	pthread_mutex_unlock(&rt->park_lock);
	pthread_join(rt->park_thread, NULL);
}
