/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * options.c - the FAULTLINE_* option table and its parser (see options.h).
 * Pure functions of their arguments: no allocation, no locks, no getenv().
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "faultline.h"
#include "options.h"

const struct fl_opt_desc fl_opt_table[] = {
#define FL_OPT_ROW(sfx, field, type, def, choices, help) \
	{ "FAULTLINE_" #sfx, FL_OPT_##type, def, choices, help, \
	  offsetof(struct fl_preload_options, field) },
	FL_PRELOAD_OPTIONS(FL_OPT_ROW)
#undef FL_OPT_ROW
};
const size_t fl_opt_count = sizeof(fl_opt_table) / sizeof(fl_opt_table[0]);

const char *fl_opt_type_name(enum fl_opt_type t)
{
	switch (t) {
	case FL_OPT_BOOL: return "bool";
	case FL_OPT_SIZE: return "size";
	case FL_OPT_UINT: return "count";
	case FL_OPT_ENUM: return "enum";
	case FL_OPT_STRING: return "string";
	}
	return "?";
}

int fl_opt_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "yes", "on", "true", "y" };
	static const char *const no[] = { "0", "no", "off", "false", "n" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* decimal digits only: no sign, no spaces, no hex (strtoull takes all three) */
static int parse_u64(const char **sp, uint64_t *out)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*sp = s;
	*out = v;
	return 0;
}

int fl_opt_parse_size(const char *s, uint64_t *out)
{
	uint64_t v, mul = 1;
	int ret = parse_u64(&s, &v);

	if (ret)
		return ret;
	switch (*s) {
	case 'k': case 'K': mul = 1ull << 10; s++; break;
	case 'm': case 'M': mul = 1ull << 20; s++; break;
	case 'g': case 'G': mul = 1ull << 30; s++; break;
	case 't': case 'T': mul = 1ull << 40; s++; break;
	default: break;
	}
	/* 512M, 512MB, 512MiB and 4096B are all fine */
	if (mul > 1 && (*s == 'i' || *s == 'I'))
		s++;
	if (*s == 'b' || *s == 'B')
		s++;
	if (*s)
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

/* index of @s in the "|"-separated @choices, or -1 */
static int choice_index(const char *choices, const char *s)
{
	size_t n = strlen(s);
	int i = 0;

	for (const char *c = choices; c; i++) {
		const char *bar = strchr(c, '|');
		size_t len = bar ? (size_t)(bar - c) : strlen(c);

		if (n && len == n && !strncasecmp(c, s, n))
			return i;
		c = bar ? bar + 1 : NULL;
	}
	return -1;
}

/* per-option range checks beyond the type */
static int opt_check(const struct fl_opt_desc *d, uint64_t v, const char **why)
{
	switch (d->offset) {
	case offsetof(struct fl_preload_options, min_region):
		*why = "a size from 4K to 1T";
		return v >= 4096 && v <= (1ull << 40) ? 0 : -EINVAL;
	case offsetof(struct fl_preload_options, handlers):
		*why = "a count from 0 to 256";
		return v <= FL_MAX_HANDLERS ? 0 : -EINVAL;
	case offsetof(struct fl_preload_options, fault_around):
		*why = "0 or a power of two from 4K to 4M";
		return v == 0 || (v >= 4096 && v <= FL_FAULT_AROUND_MAX && !(v & (v - 1))) ?
			0 : -EINVAL;
	case offsetof(struct fl_preload_options, stats_interval_ms):
		*why = "0 or milliseconds from 10 to 86400000";
		return v == 0 || (v >= 10 && v <= 86400000) ? 0 : -EINVAL;
	case offsetof(struct fl_preload_options, budget):
		*why = "0 or a size of at least 1M";
		return v == 0 || v >= (1u << 20) ? 0 : -EINVAL;
	default:
		return 0;
	}
}

int fl_opt_set(struct fl_preload_options *o, const struct fl_opt_desc *d,
	       const char *value, const char **why)
{
	char *field = (char *)o + d->offset;
	uint64_t v;
	bool b;
	int i;

	switch (d->type) {
	case FL_OPT_BOOL:
		*why = "a boolean: 1/0, yes/no, on/off";
		if (fl_opt_parse_bool(value, &b))
			return -EINVAL;
		memcpy(field, &b, sizeof(b));
		return 0;
	case FL_OPT_SIZE:
		*why = "a size such as 4096, 64K, 512M or 2G";
		if (fl_opt_parse_size(value, &v) || opt_check(d, v, why))
			return -EINVAL;
		memcpy(field, &v, sizeof(v));
		return 0;
	case FL_OPT_UINT:
		*why = "a decimal count";
		if (parse_u64(&value, &v) || *value || opt_check(d, v, why))
			return -EINVAL;
		memcpy(field, &v, sizeof(v));
		return 0;
	case FL_OPT_ENUM:
		*why = d->choices;
		i = choice_index(d->choices, value);
		if (i < 0 && !strncmp(d->choices, "off|", 4) && !fl_opt_parse_bool(value, &b))
			i = b ? 1 : 0;
		if (i < 0)
			return -EINVAL;
		memcpy(field, &i, sizeof(i));
		return 0;
	case FL_OPT_STRING: {
		size_t n = strnlen(value, FL_OPT_STRING_MAX);

		_Static_assert(FL_OPT_STRING_MAX == 4096, "the message below says 4095");
		*why = "text of at most 4095 bytes";
		if (n >= FL_OPT_STRING_MAX)
			return -EINVAL;
		memcpy(field, value, n + 1);
		return 0;
	}
	}
	*why = "?";
	return -EINVAL;
}

void fl_opt_defaults(struct fl_preload_options *o)
{
	const char *why;

	memset(o, 0, sizeof(*o));
	/* the defaults go through the same parser: tests/test-options checks
	 * that every one of them is valid */
	for (size_t i = 0; i < fl_opt_count; i++)
		(void)fl_opt_set(o, &fl_opt_table[i], fl_opt_table[i].def, &why);
}

const struct fl_opt_desc *fl_opt_find(const char *name, size_t namelen)
{
	if (!namelen)
		namelen = strlen(name);
	for (size_t i = 0; i < fl_opt_count; i++)
		if (strlen(fl_opt_table[i].name) == namelen &&
		    !memcmp(fl_opt_table[i].name, name, namelen))
			return &fl_opt_table[i];
	return NULL;
}

int fl_opt_format(const struct fl_preload_options *o, const struct fl_opt_desc *d,
		  char *buf, size_t len)
{
	const char *field = (const char *)o + d->offset;
	uint64_t v;
	bool b;
	int i;

	switch (d->type) {
	case FL_OPT_BOOL:
		memcpy(&b, field, sizeof(b));
		return snprintf(buf, len, "%s", b ? "yes" : "no");
	case FL_OPT_SIZE:
	case FL_OPT_UINT:
		memcpy(&v, field, sizeof(v));
		if (d->type == FL_OPT_SIZE && v && !(v & ((1ull << 30) - 1)))
			return snprintf(buf, len, "%lluG", (unsigned long long)(v >> 30));
		if (d->type == FL_OPT_SIZE && v && !(v & ((1ull << 20) - 1)))
			return snprintf(buf, len, "%lluM", (unsigned long long)(v >> 20));
		if (d->type == FL_OPT_SIZE && v && !(v & ((1ull << 10) - 1)))
			return snprintf(buf, len, "%lluK", (unsigned long long)(v >> 10));
		return snprintf(buf, len, "%llu", (unsigned long long)v);
	case FL_OPT_ENUM: {
		const char *c = d->choices;

		memcpy(&i, field, sizeof(i));
		for (; i > 0 && c; i--) {
			c = strchr(c, '|');
			c = c ? c + 1 : NULL;
		}
		if (!c)
			return snprintf(buf, len, "?");
		return snprintf(buf, len, "%.*s", (int)strcspn(c, "|"), c);
	}
	case FL_OPT_STRING:
		return snprintf(buf, len, "%s", field);
	}
	return snprintf(buf, len, "?");
}

int fl_opt_parse_env(struct fl_preload_options *o, char *const *envp,
		     fl_opt_warn_fn warn, void *arg)
{
	static const char prefix[] = "FAULTLINE_";
	int problems = 0;

	fl_opt_defaults(o);
	for (; envp && *envp; envp++) {
		const char *e = *envp, *eq, *why;
		const struct fl_opt_desc *d;
		char msg[512];

		if (strncmp(e, prefix, sizeof(prefix) - 1))
			continue;
		eq = strchr(e, '=');
		if (!eq)
			continue;
		d = fl_opt_find(e, (size_t)(eq - e));
		if (!d) {
			problems++;
			if (warn) {
				snprintf(msg, sizeof(msg), "unknown variable %.*s (ignored; `faultline env` lists them)",
					 (int)(eq - e) > 200 ? 200 : (int)(eq - e), e);
				warn(arg, msg);
			}
			continue;
		}
		if (fl_opt_set(o, d, eq + 1, &why)) {
			problems++;
			if (warn) {
				snprintf(msg, sizeof(msg), "%s='%.200s%s' is invalid (expected %s); using the default '%s'",
					 d->name, eq + 1, strnlen(eq + 1, 201) > 200 ? "..." : "", why, d->def);
				warn(arg, msg);
			}
		}
	}
	return problems;
}
