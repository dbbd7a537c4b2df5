/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * wp.h - write protection with callbacks, and dirty tracking (wp.c).
 *
 * Lock order: index_lock (read or write) -> wp->lock. Nothing that holds
 * wp->lock waits for the index lock or a liburcu grace period, so an index
 * writer may take wp->lock (wp_forget) and a tier-1 fault inside RCU may
 * take it for reading (wp_install_protected). A writer holding it for
 * writing waits for a sigrcu grace period (wp.c, the gate), which is
 * sound because in-thread faults, the only sigrcu readers, take no lock.
 */
#ifndef FL_WP_H
#define FL_WP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "faultline.h"
#include "core/hooks.h"

struct fl_runtime;
struct fl_fault_ctx;
struct fl_counters;

int wp_init(struct fl_runtime *rt);
void wp_fini(struct fl_runtime *rt);

/* A UFFD_PAGEFAULT_FLAG_WP message. Context: a handler thread. */
void wp_fault(struct fl_fault_ctx *c, uintptr_t addr);

/*
 * The same, raised as SIGBUS in the writer of an in-thread region: the
 * writer runs the callback itself. Returns an enum fl_tres (core/hooks.h).
 * Context: async-signal; a sigrcu section in which the gate was seen open.
 */
enum fl_tres wp_fault_signal(struct fl_fault_ctx *c, uintptr_t addr);

/*
 * wp_install_protected() - must a fault-path install of [a, a + len) be made
 * write-protected (UFFDIO_COPY_MODE_WP)? True when a page of it is armed in
 * a protected range. Context: a handler, in a tier (RCU, region or index
 * read lock held): takes wp->lock for reading; or an in-thread fault, in
 * a section with the gate seen open: takes nothing (outside one, a fill
 * that may block: the read lock, as a handler).
 */
bool wp_install_protected(struct fl_fault_ctx *c, uintptr_t a, size_t len);

/* Events and unregistration: protected ranges follow, or end with, the memory. */
void wp_forget(struct fl_runtime *rt, uintptr_t start, uintptr_t end, bool unmap);
void wp_event_remove(struct fl_fault_ctx *c, uintptr_t start, uintptr_t end);
void wp_event_remap(struct fl_fault_ctx *c, uintptr_t from, uintptr_t to, size_t len);

/*
 * wp_collect() - fl_dirty_collect() for the range starting at @start; when
 * @set_cb, the range's callback becomes (@cb, @arg) in the same critical
 * section, so that the re-arm and the new callback take effect at one
 * instant (the live snapshot's "T").
 */
int wp_collect(struct fl_runtime *rt, uintptr_t start, uint64_t *bm, size_t nbits,
	       size_t *ndirty, bool set_cb, fl_wp_fn cb, void *arg);

/* wp_set_callback() - change the callback; returns once no old one runs */
int wp_set_callback(struct fl_runtime *rt, uintptr_t start, fl_wp_fn cb, void *arg);

/* the pager of the FL_REGION_WP region holding [a, a + len); -EINVAL if none */
int wp_region_pager(struct fl_runtime *rt, uintptr_t a, size_t len, enum fl_pager *pager);

/* counters of application-thread work (checkpoints): one block, one mutex */
void wp_stat_add(struct fl_runtime *rt, size_t field_off, uint64_t n);
#define WP_STAT_ADD(rt, field, n) \
	wp_stat_add(rt, offsetof(struct fl_counters, field), n)

/* summed by stats.c */
void wp_stats_add(const struct fl_runtime *rt, struct fl_counters *sum);
void wp_stats_reset(struct fl_runtime *rt);

#endif /* FL_WP_H */
