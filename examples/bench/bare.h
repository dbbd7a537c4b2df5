/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bare.h - the minimal userfaultfd loop, written plainly: the floor the
 * runtime is measured against. One uffd, MISSING registrations, handler
 * threads that read() a batch of messages and resolve each fault with
 * ZEROPAGE (read) or COPY from a zero buffer (write). Nothing else: no
 * index, no fault-around, no events.
 *
 * Its in-thread variant (bare_open_thread()) opens the uffd with
 * UFFD_FEATURE_SIGBUS: a fault raises SIGBUS in the faulting thread, and
 * the signal handler resolves it with the same ioctls and returns. No
 * handler thread, no hand-off, no wake-up: the ceiling of resolving faults
 * in the faulting thread.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef FL_BENCH_BARE_H
#define FL_BENCH_BARE_H

#include <stddef.h>
#include <stdint.h>

struct bare;

/*
 * bare_open() - open a uffd (/dev/userfaultfd, else userfaultfd(2), else
 * userfaultfd(2) user-mode-only) and start @handlers threads; handler i is
 * pinned to @cpus[i] unless that is -1 (or @cpus is NULL).
 * @how: out, optional: "dev", "syscall" or "syscall-user-only".
 */
int bare_open(unsigned int handlers, const int *cpus, struct bare **out,
	      const char **how);
/*
 * bare_open_thread() - the in-thread loop: a uffd with UFFD_FEATURE_SIGBUS
 * and a SIGBUS handler (the previous action comes back at bare_close()).
 * One at a time in a process (-EBUSY); -EOPNOTSUPP without the feature.
 * Faults its ranges cannot serve (and every SIGBUS not for a missing page)
 * get the default action: the process ends as it would have.
 */
int bare_open_thread(struct bare **out, const char **how);
/*
 * bare_thread_faults() - faults the calling thread had resolved in its
 * SIGBUS handler. The kernel counts none of them (a fault that raises the
 * signal is not accounted, and the access that runs again finds the page).
 */
uint64_t bare_thread_faults(void);
/* register / unregister an existing anonymous private range for MISSING faults */
int bare_register(struct bare *b, void *addr, size_t len);
int bare_unregister(struct bare *b, void *addr, size_t len);
/*
 * bare_close() - ring one doorbell per handler, join them, close the uffd.
 * Context: no thread may still be faulting on registered memory.
 * @msgs: out, optional: fault messages served (doorbells excluded).
 * @errors: out, optional: ioctl/read errors the handlers met.
 */
void bare_close(struct bare *b, uint64_t *msgs, uint64_t *errors);

/* open a uffd the way bare_open() does; returns the fd or a negative errno */
int bare_uffd_open(const char **how);

#endif
