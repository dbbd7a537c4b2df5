/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * thread-mode.h - the shim when the runtime resolves faults in the
 * faulting thread (FAULTLINE_RESOLVE=thread|auto): thread-mode.c.
 */
#ifndef FL_PRELOAD_THREAD_MODE_H
#define FL_PRELOAD_THREAD_MODE_H

#include <stdbool.h>

/*
 * Interpose (or not): on before the runtime starts, when the options ask
 * for in-thread resolution (a sigaction() then still reaches the kernel,
 * and the runtime's start takes the handler it set for the one to chain
 * to); off again if the runtime started without it.
 */
void shim_thread_mode_set(bool enable);
/* preload.c: is this call the shim's or the runtime's own (pass through)? */
bool shim_bypass(void);
/* look up the next definitions of what it interposes (from nx_resolve()) */
void shim_thread_mode_resolve(void);
/* preload.c: dlsym(RTLD_NEXT, @name), its allocations glibc's */
void *shim_next_sym(const char *name);

#endif
