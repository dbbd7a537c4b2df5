/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * handler.c - handler threads: read the uffd, resolve faults themselves (no
 * queue hand-off), process events.
 *
 * N threads, by default one per CPU and pinned to it, all block in read(2)
 * on the same uffd. The kernel wakes them all when a message arrives; the
 * one on the faulting thread's CPU is usually first (on these VMs a wake-up
 * on the same vCPU costs ~10 us, on the other ~80-100 us). read(2) returns
 * up to FL_MSG_BATCH messages at once when several are queued.
 *
 * Stopping: each handler owns nothing to poll; instead the runtime keeps one
 * "doorbell" page per handler registered on the uffd. fl_runtime_destroy()
 * touches them one by one; a handler that reads a doorbell fault resolves it
 * and exits (after installing its reads in flight, with far memory). Without
 * asynchronous page-in the hot loop stays a single blocking read(2).
 *
 * A runtime that resolves faults in the faulting thread (inthread.c) has
 * one more handler: it reads the second uffd, where only events arrive (a
 * fault there is a SIGBUS), in the same read-window protocol. A doorbell
 * on that uffd would be a SIGBUS too: it polls an eventfd that stops it.
 *
 * EAGAIN: while an event (REMOVE, UNMAP, REMAP) sits unread, the kernel
 * refuses every resolving ioctl. The fault's range is parked (park.c) and
 * this handler goes back to read(2), where it finds the event; the retrier
 * wakes parked ranges after events were processed (or after 1 ms at most),
 * and the faulting threads fault again. Handlers never spin and never sleep
 * on something only they could deliver.
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "rcu.h"
#include "testhooks.h"

#define FL_MSG_BATCH 16

static int ctx_init(struct fl_fault_ctx *c, struct fl_runtime *rt,
		    struct fl_counters *st)
{
	memset(c, 0, sizeof(*c));
	c->rt = rt;
	c->st = st;
	/* runtime memory, never registered: the fill bounce buffer */
	c->bounce = mmap(NULL, FL_FAULT_AROUND_MAX, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (c->bounce == MAP_FAILED) {
		c->bounce = NULL;
		return -ENOMEM;
	}
	/* a forked child has no use for it, and it is not the program's */
	madvise(c->bounce, FL_FAULT_AROUND_MAX, MADV_DONTFORK);
	return 0;
}

static void ctx_fini(struct fl_fault_ctx *c)
{
	if (c->aio)
		c->rt->hooks.aio_fini(c);
	if (c->bounce)
		munmap(c->bounce, FL_FAULT_AROUND_MAX);
	c->bounce = NULL;
	numa_ctx_fini(c);
}

static bool is_doorbell(const struct fl_runtime *rt, uintptr_t a)
{
	uintptr_t d = (uintptr_t)rt->doorbell;

	return a >= d && a < d + rt->doorbell_len;
}

/* returns true when this handler must exit (it answered a doorbell) */
static bool handle_msg(struct fl_handler *h, const struct uffd_msg *m)
{
	struct fl_runtime *rt = h->rt;
	struct fl_fault_ctx *c = &h->ctx;
	uintptr_t a;
	size_t done;

	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		a = (uintptr_t)m->arg.pagefault.address;
		if (unlikely(is_doorbell(rt, a))) {
			int ret;

			/* the rule (far/pagein.c): this handler is about to
			 * exit, nobody else would install its reads */
			fault_reads_drain(c);
			ret = uffd_zeropage(&rt->uffd, page_down(rt, a),
						rt->page_size, 0, &done);

			if (ret == -EAGAIN) {
				/* not answered: the bell rings again later, and
				 * this handler must still be here to hear it */
				park_fault(c, page_down(rt, a), rt->page_size);
				return false;
			}
			if (ret)
				uffd_wake(&rt->uffd, page_down(rt, a), rt->page_size);
			return true;
		}
		if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
			/* far memory first (dirty tracking, the non-MOVE
			 * eviction race); a far runtime offers no fl_protect() */
			if (rt->hooks.dirty_fault && rt->hooks.dirty_fault(c, NULL, a))
				return false;
			if (rt->hooks.protect_fault)
				rt->hooks.protect_fault(c, a);	/* write protection */
			else
				uffd_wake(&rt->uffd, page_down(rt, a), rt->page_size);
			return false;
		}
		/* numa.c: the page goes to the faulting thread's node */
		numa_fault_begin(c, m->arg.pagefault.feat.ptid);
		c->fault_ptid = m->arg.pagefault.feat.ptid;	/* asynchronous page-in */
		fault_handle(c, a, m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE);
		return false;
	default:
		/*
		 * The rule (far/pagein.c): every event is applied by an index
		 * writer that waits for region readers, our reads' references
		 * among them; and the program thread that raised it sleeps
		 * meanwhile.
		 */
		fault_reads_drain(c);
		break;
	}
	/* counted once applied: a count seen means the event's effect is too */
	switch (m->event) {
	case UFFD_EVENT_REMOVE:
		event_remove(c, (uintptr_t)m->arg.remove.start, (uintptr_t)m->arg.remove.end);
		STAT_INC(c->st, events_remove);
		break;
	case UFFD_EVENT_UNMAP:
		event_unmap(c, (uintptr_t)m->arg.remove.start, (uintptr_t)m->arg.remove.end);
		STAT_INC(c->st, events_unmap);
		break;
	case UFFD_EVENT_REMAP:
		event_remap(c, (uintptr_t)m->arg.remap.from, (uintptr_t)m->arg.remap.to,
			    (size_t)m->arg.remap.len);
		STAT_INC(c->st, events_remap);
		break;
	default:
		STAT_INC(c->st, events_other);
		break;
	}
	/* publish "an event was processed", then let parked faults go again */
	atomic_fetch_add_explicit(&rt->events_seen, 1, memory_order_release);
	atomic_fetch_sub_explicit(&rt->events_active, 1, memory_order_release);
	atomic_fetch_sub_explicit(&rt->wp_events_pending, 1, memory_order_release);
	park_event_done(rt);
	return false;
}

/*
 * Asynchronous page-in: sleep until the (non-blocking) uffd has something,
 * installing the reads that complete meanwhile. With no read of ours in
 * flight the uffd is polled alone: nothing can complete, and a signal left
 * on the eventfd (the file store's ring signals it for synchronous reads
 * too) would only wake us for nothing. It stays set and is cleared the next
 * time a read is in flight, before that read is looked for
 * (fault_reads_clear()).
 */
static void wait_uffd_or_reads(struct fl_handler *h)
{
	struct fl_fault_ctx *c = &h->ctx;

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = h->fd, .events = POLLIN },
			{ .fd = c->aio ? c->aio->efd : -1, .events = POLLIN },
			{ .fd = h->stop_fd, .events = POLLIN },
		};
		nfds_t n;
		int timeout = -1, rc;

		fault_reads_complete(c);
		n = c->aio && c->aio->npending ? 2 : 1;
		if (h->stop_fd >= 0) {		/* no reads of its own: slot 1 unused */
			p[1].fd = -1;
			n = 3;
		}
		/*
		 * Read buffers that hold a run's pages stay resident while
		 * faults keep coming (giving them back after each run makes
		 * the kernel fault them in again for the next); once the
		 * handler has been idle that long, they go back.
		 */
		if (n == 1 && c->aio && c->aio->held)
			timeout = FL_AIO_IDLE_MS;
		rc = poll(p, n, timeout);
		if (rc < 0)
			return;		/* EINTR: the caller's read(2) decides */
		if (rc == 0) {
			h->rt->hooks.aio_idle(c);
			continue;
		}
		if (n == 2 && (p[1].revents & POLLIN)) {
			fault_reads_clear(c);
			fault_reads_complete(c);
		}
		if (p[0].revents)	/* POLLIN; POLLERR/POLLNVAL: read(2) says why */
			return;
		if (n == 3 && p[2].revents)
			return;		/* stop: handler_main() looks */
	}
}

/*
 * The batch's events: their ranges, published before the read window
 * closes (events_read_applied()); a REMAP covers both its old and new place.
 */
static void announce_events(struct fl_handler *h, const struct uffd_msg *msgs, ssize_t n)
{
	uintptr_t lo = UINTPTR_MAX, hi = 0;

	for (ssize_t i = 0; i < n; i++) {
		const struct uffd_msg *m = &msgs[i];
		uintptr_t a, b;

		if (m->event == UFFD_EVENT_PAGEFAULT)
			continue;
		if (m->event == UFFD_EVENT_REMAP) {
			a = (uintptr_t)m->arg.remap.from;
			b = (uintptr_t)m->arg.remap.to;
			if (b < a) {
				uintptr_t t = a;

				a = b;
				b = t;
			}
			b += (uintptr_t)m->arg.remap.len;
		} else if (m->event == UFFD_EVENT_REMOVE || m->event == UFFD_EVENT_UNMAP) {
			a = (uintptr_t)m->arg.remove.start;
			b = (uintptr_t)m->arg.remove.end;
		} else {
			a = 0;		/* FORK, or one we do not know: everything */
			b = UINTPTR_MAX;
		}
		lo = a < lo ? a : lo;
		hi = b > hi ? b : hi;
	}
	if (hi) {
		atomic_store_explicit(&h->ev_lo, lo, memory_order_relaxed);
		atomic_store_explicit(&h->ev_hi, hi, memory_order_relaxed);
	}
}

#ifdef FL_TEST_HOOKS
/* the address a pause point names for an event: see testhooks.h */
static uintptr_t msg_addr(const struct uffd_msg *m)
{
	return m->event == UFFD_EVENT_REMAP ? m->arg.remap.to : m->arg.remove.start;
}
#endif

static void *handler_main(void *arg)
{
	struct fl_handler *h = arg;
	struct fl_runtime *rt = h->rt;
	struct uffd_msg msgs[FL_MSG_BATCH];
	bool stop = false, full = false;
	uint32_t window = 0;

	fl_rcu_register_thread();
	atomic_store_explicit(&h->tid, (uint32_t)gettid(), memory_order_relaxed);
	while (!stop) {
		bool events = false;
		ssize_t n;

		/*
		 * Polling handlers (non-blocking uffd): after a batch shorter
		 * than the buffer the queue was most likely empty; sleep first
		 * rather than pay a read(2) that says EAGAIN.
		 */
		if (h->polls && !full)
			wait_uffd_or_reads(h);
		if (atomic_load_explicit(&h->stop, memory_order_acquire))
			break;
		/*
		 * The read window opens before read(2) can hand us an event
		 * (seq_cst: the kernel's queue lock then orders it before any
		 * later read of another handler) and closes once the batch's
		 * events are counted and announced: see window_busy().
		 */
		atomic_store_explicit(&h->reading, ++window, memory_order_seq_cst);
		n = read(h->fd, msgs, sizeof(msgs));
		full = n == (ssize_t)sizeof(msgs);
		if (n < 0) {
			atomic_store_explicit(&h->reading, ++window, memory_order_release);
			if (errno == EAGAIN && h->polls)
				continue;	/* another handler took it: sleep again */
			/* never die: the application would hang on its faults */
			if (errno != EINTR && errno != EAGAIN)
				STAT_INC(&h->st, ioctl_errors);
			if (errno == EBADF)
				break;
			continue;
		}
		n /= (ssize_t)sizeof(msgs[0]);
		/*
		 * Announce the batch's events before resolving anything: a
		 * fault that finds no region while an event is read but not
		 * yet applied must wait for it (unknown_defer()), and so must
		 * a far page-in of a page in its range (events_read_applied()).
		 * wp.c: collections wait for events read but not processed.
		 */
		for (ssize_t i = 0; i < n; i++)
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT) {
				FL_TEST_PAUSE(FL_PAUSE_EVENT_TAKEN, msg_addr(&msgs[i]));
				events = true;
				atomic_fetch_add_explicit(&rt->wp_events_pending, 1,
							  memory_order_relaxed);
				atomic_fetch_add_explicit(&rt->events_active, 1,
							  memory_order_seq_cst);
				FL_TEST_PAUSE(FL_PAUSE_EVENT_READ, msg_addr(&msgs[i]));
			}
		if (events)
			announce_events(h, msgs, n);
		atomic_store_explicit(&h->reading, ++window, memory_order_release);
		for (ssize_t i = 0; i < n; i++)
			stop |= handle_msg(h, &msgs[i]);
		/* the batch's events are applied: a page-in in their range may go */
		if (events) {
			atomic_store_explicit(&h->ev_hi, 0, memory_order_release);
			atomic_store_explicit(&h->ev_lo, 0, memory_order_release);
		}
		/* reads that completed meanwhile (the memory store: at once) */
		fault_reads_complete(&h->ctx);
	}
	fault_reads_drain(&h->ctx);	/* EBADF: never leave reads behind */
	fl_rcu_unregister_thread();
	return NULL;
}

const char *task_stat(uint32_t tid, char *buf, size_t size)
{
	char path[64];
	const char *p;
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%u/stat", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	len = read(fd, buf, size - 1);
	close(fd);
	if (len <= 0)
		return NULL;
	buf[len] = 0;
	/* the name (field 2) may hold spaces and parentheses: skip to its end */
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p + 2 : NULL;
}

/*
 * window_busy() - may @h hold an event it read and has not counted yet?
 *
 * Race: the program's mremap() (munmap, MADV_DONTNEED) returns once *a*
 * handler has taken its event off the queue, and that handler can lose its
 * CPU before it counts the event (the wake-up of the program's thread
 * preempts it). A fault raised after that return may meanwhile be read by
 * another handler: it must see that an event is in flight. The taker's
 * window is odd then, and its thread runs or waits for a CPU: from dequeue
 * to close it never sleeps. (The kernel dequeues with the reader marked
 * TASK_INTERRUPTIBLE, interrupts off, and marks it running a few
 * instructions later: long before the program thread it wakes can fault
 * and another handler read that fault.) An odd window whose (blocking)
 * handler sleeps is a read(2) waiting on an empty queue: it holds nothing,
 * and everything it read before was counted when its previous window
 * closed. A polling handler's read never sleeps, so its odd window is
 * always busy. The state comes from /proc (~10 us): only faults in no
 * region, registrations (register_wait_events()) and page-ins that meet
 * an open window pay it.
 * Context: any thread. Return: true if @h is inside a window that may hold
 * an uncounted event.
 */
bool window_busy(const struct fl_handler *h)
{
	uint32_t s = atomic_load_explicit(&h->reading, memory_order_seq_cst);
	uint32_t tid = atomic_load_explicit(&h->tid, memory_order_relaxed);
	char buf[512];
	const char *st;

	if (!(s & 1))
		return false;
	if (h->polls || !tid)
		return true;
	st = task_stat(tid, buf, sizeof(buf));
	/* gone: nothing to hold; 'S': asleep in read(2), see above */
	if (!st || *st == 'S')
		return false;
	/* it may have left the window while we looked */
	return atomic_load_explicit(&h->reading, memory_order_seq_cst) == s;
}

/* ---- start / stop ---- */

static int cpu_of_index(const cpu_set_t *set, unsigned int i)
{
	int n = CPU_COUNT(set), k = 0;

	if (n <= 0)
		return -1;
	i %= (unsigned int)n;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, set) && k++ == (int)i)
			return cpu;
	return -1;
}

int handlers_start(struct fl_runtime *rt, const struct fl_runtime_opts *o)
{
	cpu_set_t set;
	unsigned int n = o->handlers, nall;
	int ret;

	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		CPU_SET(0, &set);
	if (!n)
		n = (unsigned int)CPU_COUNT(&set);
	if (!n)
		n = 1;
	/* each handler's read window has a cache line of its own; one more
	 * reads the in-thread uffd's events */
	nall = n + (rt->tuffd.fd >= 0);
	rt->handlers = aligned_alloc(_Alignof(struct fl_handler), nall * sizeof(*rt->handlers));
	if (!rt->handlers)
		return -ENOMEM;
	memset(rt->handlers, 0, nall * sizeof(*rt->handlers));
	for (unsigned int i = 0; i < nall; i++)
		rt->handlers[i].stop_fd = -1;
	rt->nhandlers = nall;
	rt->nfault_handlers = n;

	/* doorbells: runtime memory, registered so that a touch is a fault */
	rt->doorbell_len = (size_t)n * rt->page_size;
	rt->doorbell = mmap(NULL, rt->doorbell_len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rt->doorbell == MAP_FAILED) {
		rt->doorbell = NULL;
		return -ENOMEM;
	}
	madvise(rt->doorbell, rt->doorbell_len, MADV_DONTFORK);
	ret = uffd_register(&rt->uffd, (uintptr_t)rt->doorbell, rt->doorbell_len,
			    UFFDIO_REGISTER_MODE_MISSING, NULL);
	if (ret < 0)
		return ret;

	ret = park_start(rt);
	if (ret)
		return ret;

	for (unsigned int i = 0; i < nall; i++) {
		struct fl_handler *h = &rt->handlers[i];
		bool events_only = i == n;
		pthread_attr_t attr;
		cpu_set_t one;

		h->rt = rt;
		h->idx = i;
		h->cpu = -1;
		h->fd = events_only ? rt->tuffd.fd : rt->uffd.fd;
		if (!(o->flags & FL_RT_NO_PIN) && !events_only)
			h->cpu = o->handler_cpus ? o->handler_cpus[i] : cpu_of_index(&set, i);
		ret = ctx_init(&h->ctx, rt, &h->st);
		if (!ret)
			ret = numa_ctx_init(&h->ctx, h->cpu);
		if (!ret && rt->hooks.aio_init && !events_only)
			ret = rt->hooks.aio_init(&h->ctx);
		if (ret < 0)
			return ret;
		/* far memory: asynchronous page-in, and short read windows
		 * for its page-ins (events_read_applied()); the in-thread
		 * uffd's reader polls its stop eventfd beside it */
		h->polls = h->ctx.aio || rt->hooks.page_in || events_only;
		if (events_only) {
			h->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			if (h->stop_fd < 0)
				return -errno;
		}
		if (h->polls && !(fcntl(h->fd, F_GETFL) & O_NONBLOCK)) {
			/* the handlers poll the uffd (the kernel answers
			 * poll(2) on a blocking uffd with POLLERR) */
			int fl = fcntl(h->fd, F_GETFL);

			if (fl < 0 || fcntl(h->fd, F_SETFL, fl | O_NONBLOCK) < 0)
				return -errno;
		}
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 256 << 10);
		if (h->cpu >= 0) {
			CPU_ZERO(&one);
			CPU_SET(h->cpu, &one);
			pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
		}
		ret = pthread_create(&h->thread, &attr, handler_main, h);
		pthread_attr_destroy(&attr);
		if (ret)
			return ret == EINVAL ? -EINVAL : -EAGAIN;
		h->started = true;
	}
	return 0;
}

void handlers_stop(struct fl_runtime *rt)
{
	unsigned int started = 0;

	for (unsigned int i = 0; i < rt->nhandlers; i++) {
		struct fl_handler *h = &rt->handlers[i];

		if (h->stop_fd >= 0 && h->started) {
			uint64_t one = 1;

			atomic_store_explicit(&h->stop, true, memory_order_release);
			if (write(h->stop_fd, &one, sizeof(one)) < 0) {
				/* cannot fail: the count is far from its limit */
			}
		} else {
			started += h->started;
		}
	}
	/* one doorbell per running handler; each stops exactly one */
	for (unsigned int i = 0; i < started; i++) {
		volatile char *bell = (char *)rt->doorbell + (size_t)i * rt->page_size;

		(void)*bell;
	}
	for (unsigned int i = 0; i < rt->nhandlers; i++) {
		if (rt->handlers[i].started)
			pthread_join(rt->handlers[i].thread, NULL);
		ctx_fini(&rt->handlers[i].ctx);
		if (rt->handlers[i].stop_fd >= 0)
			close(rt->handlers[i].stop_fd);
		rt->handlers[i].stop_fd = -1;
	}
	park_stop(rt);
	if (rt->doorbell) {
		/* unregister before munmap: an UNMAP event now would wait
		 * forever for a handler to read it */
		uffd_unregister(&rt->uffd, (uintptr_t)rt->doorbell, rt->doorbell_len);
		munmap(rt->doorbell, rt->doorbell_len);
	}
	rt->doorbell = NULL;
}

/* the fork-prepare and writer contexts borrow these */
int fault_ctx_init(struct fl_fault_ctx *c, struct fl_runtime *rt, struct fl_counters *st)
{
	return ctx_init(c, rt, st);
}

void fault_ctx_fini(struct fl_fault_ctx *c)
{
	ctx_fini(c);
}
