/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * faultline - run a program under the LD_PRELOAD shim, show the options,
 * pretty-print statistics, set up /dev/userfaultfd access (setup.c). See
 * doc/faultline.1.scd.
 *
 * Exit status: the program's own (run execs it); 2 for usage errors and
 * invalid option values; 1 for other errors; 126/127 when the program
 * cannot be executed / found (as env(1) and the shells do).
 */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faultline.h"
#include "options.h"
#include "cli.h"

#ifndef FL_LIBDIR
#define FL_LIBDIR "/usr/local/lib"
#endif
#define SHIM_NAME "libfaultline-preload.so"

const char *prog = "faultline";

void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
	exit(2);
}

static void usage(FILE *f)
{
	fprintf(f,
"Usage: %s run [OPTION]... [--] PROGRAM [ARG]...\n"
"       %s env [--markdown]\n"
"       %s stats FILE\n"
"       %s top [-b] [-d SECS] [-n COUNT] [PID] | -l\n"
"       %s plot [-o PNG] [-p PID] FILE\n"
"       %s setup --user NAME | --group GROUP | --undo | --check [--user NAME]\n"
"Run PROGRAM with its large anonymous memory (mmap and big malloc blocks)\n"
"managed by faultline's userfaultfd runtime, through LD_PRELOAD.\n"
"top shows a running program's counters and rates; plot draws the lines\n"
"of --stats-interval (`%s top --help`, `%s plot --help`).\n"
"setup (as root) lets a user or group open /dev/userfaultfd, which a program\n"
"that does not run as root needs (`%s setup --help`).\n"
"\n"
"run options (each sets the FAULTLINE_* variable named; see `%s env`):\n"
"  -b, --budget SIZE        resident budget, at least 1M; the coldest pages\n"
"                           beyond it go to the store (FAULTLINE_BUDGET)\n"
"  -s, --store PATH|URL     where evicted pages go: a directory or a file\n"
"                           (%%p: the pid), or memcached://HOST:PORT[,...]\n"
"                           [?replicas=N&encrypt=no]; default: an unnamed\n"
"                           file in $TMPDIR or /tmp (FAULTLINE_STORE)\n"
"  -H, --handlers N         fault handler threads, 0: one per CPU (FAULTLINE_HANDLERS)\n"
"  -m, --min-region SIZE    smallest managed mapping (FAULTLINE_MIN_REGION)\n"
"  -a, --fault-around SIZE  bytes per fault, 0: adaptive (FAULTLINE_FAULT_AROUND)\n"
"      --stats[=FORMAT]     print statistics at exit: text (default) or json\n"
"      --stats-file FILE    write them to FILE (%%p: the pid), not stderr\n"
"      --stats-interval SECS  also a JSON line every SECS while it runs\n"
"                           (FAULTLINE_STATS_INTERVAL_MS; draw: %s plot FILE)\n"
"      --no-malloc          leave malloc blocks to glibc (FAULTLINE_MALLOC=no)\n"
"      --no-children        programs it execs run without the shim\n"
"  -n, --dry-run            print the environment and command, run nothing\n"
"  -v, --verbose            more messages (twice: debug)\n"
"  -q, --quiet              errors only\n"
"\n"
"Sizes take K, M, G or T (powers of 1024). The exit status is PROGRAM's;\n"
"2 means a usage error, 126/127 that PROGRAM could not be run / found.\n",
		prog, prog, prog, prog, prog, prog, prog, prog, prog, prog, prog);
}

/* ---- finding the shim: beside us, in the build tree, or installed ---- */

static int find_shim(char *out, size_t len)
{
	char exe[PATH_MAX], *slash;
	const char *rel[] = { "", "/../preload", "/../lib", "/../lib64" };
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
		for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			char cand[PATH_MAX + 64];

			snprintf(cand, sizeof(cand), "%s%s/" SHIM_NAME, exe, rel[i]);
			if (!access(cand, R_OK) && realpath(cand, out))
				return 0;
		}
	}
	snprintf(out, len, "%s/" SHIM_NAME, FL_LIBDIR);
	return access(out, R_OK) ? -ENOENT : 0;
}

/* ---- run ---- */

struct setting {
	const char *name;
	const char *value;
};

static struct setting settings[32];
static size_t nsettings;

static void set_option(const char *flag, const char *var, const char *value)
{
	const struct fl_opt_desc *d = fl_opt_find(var, 0);
	struct fl_preload_options scratch;
	const char *why;

	fl_opt_defaults(&scratch);
	if (d && fl_opt_set(&scratch, d, value, &why))
		usage_error("invalid %s '%s': expected %s", flag, value, why);
	for (size_t i = 0; i < nsettings; i++)
		if (!strcmp(settings[i].name, var)) {
			settings[i].value = value;
			return;
		}
	settings[nsettings].name = var;
	settings[nsettings++].value = value;
}

/*
 * --store must be usable before the program starts: the shim would only
 * warn and fall back to the default store. A directory must be writable; a
 * file must be writable or creatable. "%p" (the pid) is checked as is: it
 * only changes the last component's name.
 */
static void check_store(const char *path)
{
	char dir[PATH_MAX];
	struct stat sb;
	char *slash;

	if (!strncmp(path, "memcached://", 12)) {
		/* the program never starts on a pool that cannot work: the
		 * store is made (every server asked) and dropped here first */
		struct fl_store *st;
		char why[512];
		int ret = fl_store_memcached_create(path, 0, &st, why, sizeof(why));

		if (ret)
			usage_error("invalid --store '%s': %s", path, why);
		fl_store_destroy(st);
		return;
	}
	if (stat(path, &sb) == 0) {
		if (access(path, S_ISDIR(sb.st_mode) ? W_OK | X_OK : W_OK))
			usage_error("invalid --store '%s': not writable (%s)", path, strerror(errno));
		return;
	}
	if (errno != ENOENT)
		usage_error("invalid --store '%s': %s", path, strerror(errno));
	if (strlen(path) >= sizeof(dir))
		usage_error("invalid --store '%s': path too long", path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (access(dir, W_OK | X_OK))
		usage_error("invalid --store '%s': cannot create a file in %s (%s)", path, dir,
			    strerror(errno));
}

/* print @s so that a shell reads it back as one word */
static void print_quoted(const char *s)
{
	if (*s && !s[strcspn(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~=%")]) {
		fputs(s, stdout);
		return;
	}
	putchar('\'');
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*s);
	}
	putchar('\'');
}

static int cmd_run(int argc, char **argv)
{
	enum { O_STATS = 256, O_STATS_FILE, O_STATS_INTERVAL, O_NO_MALLOC, O_NO_CHILDREN };
	static const struct option lopts[] = {
		{ "budget", required_argument, NULL, 'b' },
		{ "store", required_argument, NULL, 's' },
		{ "handlers", required_argument, NULL, 'H' },
		{ "min-region", required_argument, NULL, 'm' },
		{ "fault-around", required_argument, NULL, 'a' },
		{ "stats", optional_argument, NULL, O_STATS },
		{ "stats-file", required_argument, NULL, O_STATS_FILE },
		{ "stats-interval", required_argument, NULL, O_STATS_INTERVAL },
		{ "no-malloc", no_argument, NULL, O_NO_MALLOC },
		{ "no-children", no_argument, NULL, O_NO_CHILDREN },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *stats_file = NULL;
	char shim[PATH_MAX], *preload, interval[32];
	bool stats_interval = false;
	const char *budget = NULL, *store = NULL;
	bool dry = false;
	int c, verbose = 0, quiet = 0;
	const char *old;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+b:s:H:m:a:nvqh", lopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			set_option("--budget", "FAULTLINE_BUDGET", optarg);
			budget = optarg;
			break;
		case 's':
			if (!*optarg)
				usage_error("invalid --store '': expected a path");
			set_option("--store", "FAULTLINE_STORE", optarg);
			store = optarg;
			break;
		case 'H':
			set_option("--handlers", "FAULTLINE_HANDLERS", optarg);
			break;
		case 'm':
			set_option("--min-region", "FAULTLINE_MIN_REGION", optarg);
			break;
		case 'a':
			set_option("--fault-around", "FAULTLINE_FAULT_AROUND", optarg);
			break;
		case O_STATS:
			if (optarg && strcmp(optarg, "text") && strcmp(optarg, "json"))
				usage_error("invalid --stats '%s': expected text or json", optarg);
			set_option("--stats", "FAULTLINE_STATS", optarg ? optarg : "text");
			break;
		case O_STATS_FILE:
			if (!*optarg)
				usage_error("invalid --stats-file '': expected a file name");
			stats_file = optarg;
			set_option("--stats-file", "FAULTLINE_STATS_FILE", optarg);
			break;
		case O_STATS_INTERVAL: {
			char *end;
			double v;

			errno = 0;
			v = strtod(optarg, &end);
			if (!*optarg || *end || errno || !(v >= 0.01 && v <= 86400))
				usage_error("invalid --stats-interval '%s': expected seconds from "
					    "0.01 to 86400", optarg);
			snprintf(interval, sizeof(interval), "%.0f", v * 1000);
			set_option("--stats-interval", "FAULTLINE_STATS_INTERVAL_MS", interval);
			stats_interval = true;
			break;
		}
		case O_NO_MALLOC:
			set_option("--no-malloc", "FAULTLINE_MALLOC", "no");
			break;
		case O_NO_CHILDREN:
			set_option("--no-children", "FAULTLINE_CHILDREN", "no");
			break;
		case 'n':
			dry = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try '%s --help' for more information.\n", prog);
			return 2;
		}
	}
	if (optind >= argc)
		usage_error("run: missing PROGRAM");
	if (store) {
		uint64_t b = 0;

		if (!budget || (fl_opt_parse_size(budget, &b) == 0 && !b))
			usage_error("--store '%s' needs a --budget: only evicted pages go to "
				    "the store", store);
		check_store(store);
	}
	if (quiet)
		set_option("-q", "FAULTLINE_LOG", "error");
	else if (verbose)
		set_option("-v", "FAULTLINE_LOG", verbose > 1 ? "debug" : "info");
	if (stats_interval) {
		for (size_t i = 0; i < nsettings; i++)
			if (!strcmp(settings[i].name, "FAULTLINE_STATS") &&
			    strcmp(settings[i].value, "json"))
				usage_error("--stats-interval writes JSON lines: it does not go "
					    "with --stats=%s", settings[i].value);
		set_option("--stats-interval", "FAULTLINE_STATS", "json");
	}
	if (stats_file) {
		bool have = false;

		for (size_t i = 0; i < nsettings; i++)
			have |= !strcmp(settings[i].name, "FAULTLINE_STATS");
		if (!have)	/* a stats file alone means: statistics, as JSON */
			set_option("--stats-file", "FAULTLINE_STATS", "json");
	}
	if (find_shim(shim, sizeof(shim))) {
		fprintf(stderr, "%s: cannot find %s (looked beside %s and in %s)\n",
			prog, SHIM_NAME, "/proc/self/exe", FL_LIBDIR);
		return 1;
	}
	old = getenv("LD_PRELOAD");
	if (old && *old) {
		size_t len = strlen(shim) + strlen(old) + 2;

		preload = malloc(len);
		if (!preload) {
			perror(prog);
			return 1;
		}
		snprintf(preload, len, "%s:%s", shim, old);
	} else {
		preload = shim;
	}

	if (dry) {
		printf("LD_PRELOAD=");
		print_quoted(preload);
		putchar('\n');
		for (size_t i = 0; i < nsettings; i++) {
			printf("%s=", settings[i].name);
			print_quoted(settings[i].value);
			putchar('\n');
		}
		for (int i = optind; i < argc; i++) {
			if (i > optind)
				putchar(' ');
			print_quoted(argv[i]);
		}
		putchar('\n');
		return 0;
	}

	if (setenv("LD_PRELOAD", preload, 1)) {
		perror(prog);
		return 1;
	}
	for (size_t i = 0; i < nsettings; i++)
		if (setenv(settings[i].name, settings[i].value, 1)) {
			perror(prog);
			return 1;
		}
	if (stats_file && !strstr(stats_file, "%p")) {
		/* the shim appends (so that exec'd children add their line):
		 * start the file afresh for this run */
		FILE *f = fopen(stats_file, "w");

		if (!f) {
			fprintf(stderr, "%s: cannot write --stats-file '%s': %s\n",
				prog, stats_file, strerror(errno));
			return 1;
		}
		fclose(f);
	}
	execvp(argv[optind], argv + optind);
	c = errno;
	fprintf(stderr, "%s: cannot run '%s': %s\n", prog, argv[optind], strerror(c));
	return c == ENOENT ? 127 : 126;
}

/* ---- env ---- */

static int cmd_env(int argc, char **argv)
{
	bool md = argc > 1 && !strcmp(argv[1], "--markdown");
	extern char **environ;
	struct fl_preload_options now;

	if (argc > 2 || (argc == 2 && !md))
		usage_error("env: unknown argument '%s'", argv[argc - 1]);
	if (md) {
		printf("| variable | type | default | meaning |\n|---|---|---|---|\n");
		for (size_t i = 0; i < fl_opt_count; i++) {
			const struct fl_opt_desc *d = &fl_opt_table[i];

			printf("| `%s` | %s", d->name, fl_opt_type_name(d->type));
			/* a bare "|" would end the cell */
			for (const char *c = d->choices; c && *c; c++)
				printf("%s%s", c == d->choices ? ": " : "",
				       *c == '|' ? " \\| " : (char[]){ *c, 0 });
			printf(" | `%s` | %s |\n", *d->def ? d->def : "\"\"", d->help);
		}
		return 0;
	}
	/* the current environment, through the shim's own parser */
	fl_opt_parse_env(&now, environ, NULL, NULL);
	for (size_t i = 0; i < fl_opt_count; i++) {
		const struct fl_opt_desc *d = &fl_opt_table[i];
		const char *set = getenv(d->name);
		char cur[256];

		printf("%-24s %-7s default %s", d->name, fl_opt_type_name(d->type),
		       *d->def ? d->def : "\"\"");
		if (set) {
			fl_opt_format(&now, d, cur, sizeof(cur));
			printf("  (set: %s%s)", set,
			       strcmp(cur, set) && d->type != FL_OPT_STRING ? ", invalid or normalised" : "");
		}
		printf("\n    %s%s%s\n", d->help, d->choices ? "; one of " : "",
		       d->choices ? d->choices : "");
	}
	return 0;
}

/* ---- stats: a small JSON reader for the shim's one-object lines ---- */

struct jp {
	const char *s;
	int depth;
	bool err;
};

static void jp_ws(struct jp *p)
{
	while (*p->s == ' ' || *p->s == '\t' || *p->s == '\r' || *p->s == '\n')
		p->s++;
}

/* copy a JSON string (escapes kept simple: \x -> x) */
static void jp_string(struct jp *p, char *out, size_t len)
{
	size_t w = 0;

	if (*p->s != '"') {
		p->err = true;
		return;
	}
	for (p->s++; *p->s && *p->s != '"'; p->s++) {
		if (*p->s == '\\' && p->s[1])
			p->s++;
		if (w + 1 < len)
			out[w++] = *p->s;
	}
	out[w] = '\0';
	if (*p->s != '"')
		p->err = true;
	else
		p->s++;
}

static const char *counter_help(const char *name)
{
#define X(n, help) if (!strcmp(name, #n)) return help;
	FL_STAT_FIELDS(X)
#undef X
	return NULL;
}

static void jp_value(struct jp *p, const char *key, int indent);

static void jp_object(struct jp *p, int indent)
{
	char key[128];

	if (++p->depth > 16) {
		p->err = true;
		return;
	}
	p->s++;	/* { */
	jp_ws(p);
	while (!p->err && *p->s != '}') {
		jp_string(p, key, sizeof(key));
		jp_ws(p);
		if (*p->s != ':') {
			p->err = true;
			return;
		}
		p->s++;
		jp_ws(p);
		jp_value(p, key, indent);
		jp_ws(p);
		if (*p->s == ',')
			p->s++;
		else if (*p->s != '}')
			p->err = true;
		jp_ws(p);
	}
	if (*p->s == '}')
		p->s++;
	p->depth--;
}

static void jp_value(struct jp *p, const char *key, int indent)
{
	char buf[256];
	size_t n;

	if (*p->s == '{') {
		printf("%*s%s:\n", indent, "", key);
		jp_object(p, indent + 2);
		return;
	}
	if (*p->s == '"') {
		jp_string(p, buf, sizeof(buf));
		printf("%*s%-26s %s\n", indent, "", key, buf);
		return;
	}
	n = strcspn(p->s, ",}] \t\r\n");
	if (!n || n >= sizeof(buf)) {
		p->err = true;
		return;
	}
	memcpy(buf, p->s, n);
	buf[n] = '\0';
	p->s += n;
	if (strspn(buf, "0123456789") != n && strcmp(buf, "true") && strcmp(buf, "false")) {
		p->err = true;
		return;
	}
	{
		const char *help = counter_help(key);

		printf("%*s%-26s %14s%s%s\n", indent, "", key, buf, help ? "  " : "", help ? help : "");
	}
}

static int cmd_stats(int argc, char **argv)
{
	char line[1 << 16];
	unsigned long lineno = 0;
	int objects = 0;
	FILE *f;

	if (argc != 2)
		usage_error("stats: expected one FILE");
	f = strcmp(argv[1], "-") ? fopen(argv[1], "r") : stdin;
	if (!f) {
		fprintf(stderr, "%s: cannot open '%s': %s\n", prog, argv[1], strerror(errno));
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		struct jp p = { .s = line };

		lineno++;
		jp_ws(&p);
		if (!*p.s)
			continue;
		if (*p.s != '{') {
			p.err = true;
		} else {
			if (objects++)
				putchar('\n');
			jp_object(&p, 0);
			jp_ws(&p);
			if (*p.s)
				p.err = true;
		}
		if (p.err) {
			fprintf(stderr, "%s: %s:%lu: not a faultline statistics line (JSON object)\n",
				prog, argv[1], lineno);
			if (f != stdin)
				fclose(f);
			return 1;
		}
	}
	if (f != stdin)
		fclose(f);
	if (!objects) {
		fprintf(stderr, "%s: %s: no statistics in it\n", prog, argv[1]);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2)
		usage_error("missing command (run, env, stats, top, plot or setup)");
	cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("faultline %d.%d.%d\n", FL_VERSION_MAJOR, FL_VERSION_MINOR, FL_VERSION_PATCH);
		return 0;
	}
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "env"))
		return cmd_env(argc - 1, argv + 1);
	if (!strcmp(cmd, "stats"))
		return cmd_stats(argc - 1, argv + 1);
	if (!strcmp(cmd, "top"))
		return cmd_top(argc - 1, argv + 1);
	if (!strcmp(cmd, "plot"))
		return cmd_plot(argc - 1, argv + 1);
	if (!strcmp(cmd, "setup"))
		return cmd_setup(argc - 1, argv + 1);
	usage_error("unknown command '%s'", cmd);
}
