/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-options - the shim's FAULTLINE_* parser (runtime/preload/options.c):
 * defaults valid, each type's accepted and rejected forms, the warning
 * names the variable and the value and the default is kept.
 */
#include "tap.h"

#include "../runtime/preload/options.h"

static char last[1024];
static int nwarn;

static void warn(void *arg, const char *msg)
{
	(void)arg;
	nwarn++;
	snprintf(last, sizeof(last), "%s", msg);
}

static int parse1(struct fl_preload_options *o, const char *kv)
{
	char *envp[] = { (char *)kv, NULL };

	nwarn = 0;
	last[0] = '\0';
	return fl_opt_parse_env(o, envp, warn, NULL);
}

int main(void)
{
	struct fl_preload_options o, d;
	const char *why;
	uint64_t v;
	bool b;
	char buf[64];
	int bad = 0;

	tap_plan(18);
	fl_opt_defaults(&d);
	for (size_t i = 0; i < fl_opt_count; i++) {
		struct fl_preload_options t;

		fl_opt_defaults(&t);
		bad += fl_opt_set(&t, &fl_opt_table[i], fl_opt_table[i].def, &why) != 0;
	}
	tap_ok(!bad, "every default in the table parses (%d bad)", bad);
	tap_ok(d.min_region == 1u << 20 && d.malloc && !d.disable && d.stats == FL_OPT_STATS_OFF &&
	       d.log == FL_OPT_LOG_WARN && d.children, "defaults: 1M regions, malloc on, stats off, log warn");

	TAP_EQ(parse1(&o, "FAULTLINE_BUDGET=512M"), 0);
	tap_ok(o.budget == 512ull << 20, "size with M suffix");
	tap_ok(!fl_opt_parse_size("4096", &v) && v == 4096 && !fl_opt_parse_size("2GiB", &v) &&
	       v == 2ull << 30 && !fl_opt_parse_size("64kb", &v) && v == 65536,
	       "sizes: bytes, GiB, kb");
	tap_ok(fl_opt_parse_size("", &v) && fl_opt_parse_size("-1", &v) &&
	       fl_opt_parse_size("1X", &v) && fl_opt_parse_size("99999999999999999999", &v) &&
	       fl_opt_parse_size("20000000000T", &v) && fl_opt_parse_size(" 1", &v),
	       "sizes: empty, negative, bad suffix, overflow, spaces rejected");
	tap_ok(!fl_opt_parse_bool("on", &b) && b && !fl_opt_parse_bool("NO", &b) && !b &&
	       fl_opt_parse_bool("2", &b), "booleans: on, NO; 2 rejected");

	TAP_EQ(parse1(&o, "FAULTLINE_MIN_REGION=lots"), 1);
	tap_ok(strstr(last, "FAULTLINE_MIN_REGION") && strstr(last, "'lots'") &&
	       strstr(last, "'1M'") && o.min_region == d.min_region,
	       "invalid value: warning names variable, value, default; default kept (%s)", last);
	parse1(&o, "FAULTLINE_FAULT_AROUND=12K");
	tap_ok(nwarn == 1 && o.fault_around == 0, "fault-around must be a power of two");
	parse1(&o, "FAULTLINE_STATS=1");
	tap_ok(!nwarn && o.stats == FL_OPT_STATS_TEXT, "STATS=1 means text");
	parse1(&o, "FAULTLINE_STATS=json");
	tap_ok(!nwarn && o.stats == FL_OPT_STATS_JSON, "STATS=json");
	{
		/* a process title overwrites the environment strings in place */
		static char kv[] = "FAULTLINE_STATS_FILE=/tmp/st-%p.json";

		parse1(&o, kv);
		memset(kv, 0, sizeof(kv));
		tap_ok(!nwarn && !strcmp(o.stats_file, "/tmp/st-%p.json"),
		       "a string option is a copy: the environment string overwritten, the value kept");
	}
	{
		static char kv[sizeof("FAULTLINE_STORE=") - 1 + FL_OPT_STRING_MAX + 1];
		size_t k = sizeof("FAULTLINE_STORE=") - 1;

		memcpy(kv, "FAULTLINE_STORE=", k);
		memset(kv + k, 'a', FL_OPT_STRING_MAX - 1);		/* the longest that fits */
		parse1(&o, kv);
		tap_ok(!nwarn && strlen(o.store) == FL_OPT_STRING_MAX - 1,
		       "a string of FL_OPT_STRING_MAX - 1 bytes is kept whole");
		kv[k + FL_OPT_STRING_MAX - 1] = 'a';			/* one more */
		parse1(&o, kv);
		tap_ok(nwarn == 1 && strstr(last, "FAULTLINE_STORE='aaa") && strstr(last, "a...'") &&
		       strstr(last, "at most 4095 bytes") && !o.store[0],
		       "a string too long: warning names the variable and the limit, default kept (%.60s...)",
		       last);
	}
	parse1(&o, "FAULTLINE_HANDLRES=2");
	tap_ok(nwarn == 1 && strstr(last, "FAULTLINE_HANDLRES"), "unknown variable is reported");
	parse1(&o, "FAULTLINE_LOG=debug");
	fl_opt_format(&o, fl_opt_find("FAULTLINE_LOG", 0), buf, sizeof(buf));
	tap_ok(!strcmp(buf, "debug"), "format gives the enum word back");
	parse1(&o, "FAULTLINE_HANDLERS=4x");
	tap_ok(nwarn == 1 && o.handlers == 0, "count with junk rejected");
	return tap_done();
}
