/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * backend.h - one interface over the ways a page can be produced on first
 * touch: the kernel itself (native, native-thp), the bare userfaultfd loop
 * (handler threads, or in the faulting thread: bare-thread), and the
 * faultline runtime with a tier policy. A workload maps its region,
 * runs threads over it and, for churn, asks for writer operations; it does
 * not care which backend does the work.
 *
 * Functions return 0 or a negative errno. A backend is used by the thread
 * that opened it, except backend_churn_op(), which one writer thread calls
 * while faulting threads run.
 */
#ifndef FL_BENCH_BACKEND_H
#define FL_BENCH_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <faultline.h>

#include "bare.h"

enum mode {
	M_NATIVE = 0,
	M_THP,
	M_BARE_THREAD,		/* the bare loop in the faulting thread (SIGBUS) */
	M_BARE,
	M_SPF,
	M_REGION,
	M_GLOBAL,
	M_ADAPTIVE,
	M_THREAD,	/* the runtime, resolving in the faulting thread */
	M_NR,
};

enum churn_kind {
	CHURN_NONE = 0,
	CHURN_OTHER,		/* map / resize / unmap other regions */
	CHURN_NEIGHBOUR,	/* register / resize / unregister the fault region's neighbours */
};

/* fault_around value meaning "the runtime's adaptive window" */
#define FA_ADAPTIVE (-1L)

extern const char *const mode_names[M_NR];

static inline bool mode_is_runtime(enum mode m)
{
	return m >= M_SPF;
}

/* resolved by handler threads (the bare loop, the runtime) */
static inline bool mode_is_uffd(enum mode m)
{
	return m >= M_BARE && m != M_THREAD;
}

/* the bare loop, in either form */
static inline bool mode_is_bare(enum mode m)
{
	return m == M_BARE || m == M_BARE_THREAD;
}

/*
 * The runtime's counters, kept whole: the report walks FL_STAT_FIELDS to
 * find every spf_abort_* and region_abort_* reason, so a counter added to
 * the header shows up here without a change.
 */
struct tiers {
	struct fl_stats s;
	uint64_t spf_abort;		/* sum of the spf_abort_* reasons */
};

struct stat_field {
	const char *name;
	size_t off;
};
extern const struct stat_field stat_fields[];
extern const size_t n_stat_fields;

static inline uint64_t stat_at(const struct fl_stats *s, size_t off)
{
	return *(const uint64_t *)((const char *)s + off);
}


struct backend {
	enum mode mode;
	size_t ps;
	struct bare *bare;
	struct fl_runtime *rt;
	/* the fault region */
	char *base;
	size_t len;
	size_t map_len;		/* native-thp over-maps to align to 2 MiB */
	char *map_addr;
	enum churn_kind layout;
	/* churn state, owned by the one writer thread */
	unsigned int step;
	char *other;
	size_t other_len;
	bool left_on, right_on;
	size_t right_len;
	uint64_t churn_errors;
	int first_churn_error;
};

#define NB_LEN	(1ul << 20)	/* neighbour and churn region unit: 1 MiB */

/*
 * backend_open() - prepare @mode with @handlers handler threads pinned to
 * @cpus (NULL or -1 entries: unpinned; @no_pin: FL_RT_NO_PIN).
 */
int backend_open(struct backend *b, enum mode mode, unsigned int handlers,
		 const int *cpus, bool no_pin);
/*
 * backend_map() - the fault region of @len bytes, nothing resident.
 * @fault_around: bytes (0 off, FA_ADAPTIVE); runtime modes only.
 * @layout: CHURN_NEIGHBOUR leaves room on both sides for neighbour regions.
 */
int backend_map(struct backend *b, size_t len, long fault_around,
		enum churn_kind layout, void **addr);
/* one writer operation of @kind; errors are counted, not fatal */
void backend_churn_op(struct backend *b, enum churn_kind kind);
/* fill @t (runtime modes); false for others */
bool backend_tiers(struct backend *b, struct tiers *t);
/* undo backend_map() and backend_churn_op() leftovers, then backend_open() */
void backend_close(struct backend *b, uint64_t *handler_errors);

#endif
