/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json.h - just enough of a JSON writer for one object per line.
 * Context: one writer per thread; no allocation.
 */
#ifndef FL_BENCH_JSON_H
#define FL_BENCH_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JW_MAX_DEPTH 8

struct jw {
	FILE *f;
	int depth;
	bool first[JW_MAX_DEPTH];
};

void jw_begin(struct jw *w, FILE *f);		/* "{" */
void jw_end(struct jw *w);			/* "}\n" */
void jw_obj_begin(struct jw *w, const char *key);	/* "key":{ */
void jw_obj_end(struct jw *w);
void jw_str(struct jw *w, const char *key, const char *val);
void jw_u64(struct jw *w, const char *key, uint64_t val);
void jw_i64(struct jw *w, const char *key, int64_t val);
void jw_f64(struct jw *w, const char *key, double val);
void jw_bool(struct jw *w, const char *key, bool val);

#endif
