/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "json.h"

#include <math.h>

static void jw_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void jw_key(struct jw *w, const char *key)
{
	if (!w->first[w->depth])
		fputc(',', w->f);
	w->first[w->depth] = false;
	jw_string(w->f, key);
	fputc(':', w->f);
}

void jw_begin(struct jw *w, FILE *f)
{
	w->f = f;
	w->depth = 0;
	w->first[0] = true;
	fputc('{', f);
}

void jw_end(struct jw *w)
{
	fputs("}\n", w->f);
}

void jw_obj_begin(struct jw *w, const char *key)
{
	jw_key(w, key);
	fputc('{', w->f);
	if (w->depth + 1 < JW_MAX_DEPTH)
		w->depth++;
	w->first[w->depth] = true;
}

void jw_obj_end(struct jw *w)
{
	fputc('}', w->f);
	if (w->depth > 0)
		w->depth--;
}

void jw_str(struct jw *w, const char *key, const char *val)
{
	jw_key(w, key);
	jw_string(w->f, val ? val : "");
}

void jw_u64(struct jw *w, const char *key, uint64_t val)
{
	jw_key(w, key);
	fprintf(w->f, "%llu", (unsigned long long)val);
}

void jw_i64(struct jw *w, const char *key, int64_t val)
{
	jw_key(w, key);
	fprintf(w->f, "%lld", (long long)val);
}

void jw_f64(struct jw *w, const char *key, double val)
{
	jw_key(w, key);
	if (isfinite(val) && fabs(val) >= 1e6 && fabs(val) < 1e15)
		fprintf(w->f, "%.0f", val);	/* rates: whole numbers, no exponent */
	else if (isfinite(val))
		fprintf(w->f, "%.6g", val);
	else
		fputs("null", w->f);	/* JSON has no inf/nan */
}

void jw_bool(struct jw *w, const char *key, bool val)
{
	jw_key(w, key);
	fputs(val ? "true" : "false", w->f);
}
