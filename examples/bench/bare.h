/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bare.h - the minimal userfaultfd loop, written plainly: the floor the
 * runtime is measured against. One uffd, MISSING registrations, handler
 * threads that read() a batch of messages and resolve each fault with
 * ZEROPAGE (read) or COPY from a zero buffer (write). Nothing else: no
 * index, no fault-around, no events.
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
