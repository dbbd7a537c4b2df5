/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * plot.c - `faultline plot FILE`: draw the statistics lines that
 * `faultline run --stats-interval S` wrote (one JSON object a line, see
 * the shim's stats_write()) with gnuplot: resident memory against the
 * budget, and fault, page-in and eviction rates, over time, to a PNG.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* the value of "key": in @line (our own lines: every key is unique) */
static bool num(const char *line, const char *key, uint64_t *out)
{
	char pat[64];
	const char *p;
	char *end;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(line, pat);
	if (!p)
		return false;
	p += strlen(pat);
	if (*p < '0' || *p > '9')
		return false;
	errno = 0;
	*out = strtoull(p, &end, 10);
	return !errno && (*end == ',' || *end == '}');
}

struct point {
	uint64_t pid, budget, page_size, t_ms, resident, faults, pageins, evictions, throttled;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* the pid with the most lines: a run's shell wrappers and short children
 * write one line each, at exit; the program watched writes one a period */
static uint64_t busiest(const struct point *pts, size_t n)
{
	uint64_t *pids = malloc(n * sizeof(*pids)), best = n ? pts[0].pid : 0;
	size_t run = 0, most = 0;

	if (!pids)
		return best;
	for (size_t i = 0; i < n; i++)
		pids[i] = pts[i].pid;
	qsort(pids, n, sizeof(*pids), cmp_u64);
	for (size_t i = 0; i < n; i++) {
		run = i && pids[i] == pids[i - 1] ? run + 1 : 1;
		if (run > most) {
			most = run;
			best = pids[i];
		}
	}
	free(pids);
	return best;
}

/* a path inside a gnuplot single-quoted string: ' doubles */
static void gp_quote(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

static void plot_usage(FILE *f)
{
	fprintf(f,
"Usage: %s plot [-o PNG] [-p PID] FILE\n"
"Draw the statistics lines of FILE (written by `%s run --stats-interval S\n"
"--stats-file FILE`) with gnuplot: resident memory and the budget, and the\n"
"rates of faults, page-ins and evictions, over time.\n"
"  -o, --output PNG   the picture (default: FILE.png)\n"
"  -p, --pid PID      the process to draw (default: the first in FILE)\n", prog, prog);
}

int cmd_plot(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char line[1 << 16], dir[] = "/tmp/faultline-plot.XXXXXX", data[64], script[64];
	const char *file, *out = NULL;
	char *outbuf = NULL;
	struct point *pts = NULL, p;
	size_t n = 0, cap = 0;
	uint64_t pid = 0, budget = 0, page_size = 4096, v;
	unsigned long lineno = 0;
	int c, st;
	pid_t child;
	FILE *f, *d;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+o:p:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (!*optarg)
				usage_error("plot: invalid --output '': expected a file name");
			out = optarg;
			break;
		case 'p': {
			char *end;

			errno = 0;
			pid = strtoull(optarg, &end, 10);
			if (!*optarg || *optarg < '0' || *optarg > '9' || *end || errno ||
			    !pid || pid > INT_MAX)
				usage_error("plot: invalid --pid '%s': expected a process id", optarg);
			break;
		}
		case 'h':
			plot_usage(stdout);
			return 0;
		default:
			fprintf(stderr, "Try '%s plot --help' for more information.\n", prog);
			return 2;
		}
	}
	if (argc - optind != 1)
		usage_error("plot: expected one FILE");
	file = argv[optind];
	f = fopen(file, "r");
	if (!f) {
		fprintf(stderr, "%s: plot: cannot open '%s': %s\n", prog, file, strerror(errno));
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		uint64_t lp;

		lineno++;
		if (line[strspn(line, " \t\r\n")] == '\0')
			continue;
		if (line[0] != '{' || !num(line, "pid", &lp) || !num(line, "time_ms", &p.t_ms) ||
		    !num(line, "far_resident_pages", &p.resident) || !num(line, "faults", &p.faults) ||
		    !num(line, "far_pageins", &p.pageins) || !num(line, "far_evictions", &p.evictions) ||
		    !num(line, "far_throttled", &p.throttled)) {
			fprintf(stderr, "%s: plot: %s:%lu: not a faultline statistics line with "
				"time_ms (written by run --stats-interval)\n", prog, file, lineno);
			fclose(f);
			free(pts);
			return 1;
		}
		p.pid = lp;
		p.budget = num(line, "budget", &v) ? v : 0;
		p.page_size = num(line, "page_size", &v) && v ? v : 4096;
		if (n == cap) {
			struct point *np = realloc(pts, (cap = cap ? 2 * cap : 256) * sizeof(*pts));

			if (!np) {
				perror(prog);
				fclose(f);
				free(pts);
				return 1;
			}
			pts = np;
		}
		pts[n++] = p;
	}
	fclose(f);
	if (!pid)
		pid = busiest(pts, n);
	/* that process's lines only */
	{
		size_t k = 0;

		for (size_t i = 0; i < n; i++) {
			if (pts[i].pid != pid)
				continue;
			budget = pts[i].budget;
			page_size = pts[i].page_size;
			pts[k++] = pts[i];
		}
		n = k;
	}
	if (n < 2) {
		fprintf(stderr, "%s: plot: %s: %zu statistics line%s of pid %" PRIu64 ": a plot needs "
			"two or more (run --stats-interval S, and a run longer than S)\n",
			prog, file, n, n == 1 ? "" : "s", pid);
		free(pts);
		return 1;
	}
	if (!out) {
		size_t len = strlen(file) + 5;

		outbuf = malloc(len);
		if (!outbuf) {
			perror(prog);
			free(pts);
			return 1;
		}
		snprintf(outbuf, len, "%s.png", file);
		out = outbuf;
	}
	if (!mkdtemp(dir)) {
		fprintf(stderr, "%s: plot: cannot make a directory in /tmp: %s\n", prog, strerror(errno));
		free(pts);
		free(outbuf);
		return 1;
	}
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(script, sizeof(script), "%s/plot.gp", dir);
	d = fopen(data, "w");
	if (!d)
		goto write_error;
	/* seconds, resident MiB, budget MiB, faults/s, page-ins/s,
	 * evictions/s, throttled/s: rates between consecutive lines */
	for (size_t i = 1; i < n; i++) {
		double dt = (double)(pts[i].t_ms - pts[i - 1].t_ms) / 1000;
#define RATE(f) (pts[i].f >= pts[i - 1].f && dt > 0 ? \
		 (double)(pts[i].f - pts[i - 1].f) / dt : 0.0)

		if (pts[i].t_ms < pts[i - 1].t_ms)
			continue;
		fprintf(d, "%.3f %.3f %.3f %.1f %.1f %.1f %.1f\n",
			(double)pts[i].t_ms / 1000,
			(double)pts[i].resident * (double)page_size / 1048576,
			(double)budget / 1048576, RATE(faults), RATE(pageins),
			RATE(evictions), RATE(throttled));
#undef RATE
	}
	if (fclose(d))
		goto write_error;
	d = fopen(script, "w");
	if (!d)
		goto write_error;
	snprintf(line, sizeof(line), "faultline: pid %" PRIu64 " (%s)", pid, file);
	fprintf(d, "set terminal pngcairo size 1000,760 noenhanced\nset output ");
	gp_quote(d, out);
	fprintf(d, "\nset multiplot layout 2,1 title ");
	gp_quote(d, line);
	fprintf(d, "\nset grid\nset key top left\nset xlabel 'seconds'\n"
		"set ylabel 'MiB'\nset yrange [0:*]\nplot ");
	gp_quote(d, data);
	fprintf(d, " using 1:2 with lines lw 2 title 'resident'");
	if (budget)
		fprintf(d, ", '' using 1:3 with lines dt 2 title 'budget'");
	fprintf(d, "\nset ylabel 'per second'\nplot ");
	gp_quote(d, data);
	fprintf(d, " using 1:4 with lines title 'faults', '' using 1:5 with lines "
		"title 'page-ins', '' using 1:6 with lines title 'evictions', "
		"'' using 1:7 with lines title 'throttled faults'\nunset multiplot\n");
	if (fclose(d))
		goto write_error;
	free(pts);
	child = fork();
	if (child == 0) {
		execlp("gnuplot", "gnuplot", script, (char *)NULL);
		_exit(errno == ENOENT ? 127 : 126);
	}
	if (child < 0 || waitpid(child, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		if (child > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 127)
			fprintf(stderr, "%s: plot: gnuplot is not installed (Debian: apt-get "
				"install gnuplot-nox); the data and script are in %s\n", prog, dir);
		else
			fprintf(stderr, "%s: plot: gnuplot failed; the data and script are in %s\n",
				prog, dir);
		free(outbuf);
		return 1;
	}
	unlink(data);
	unlink(script);
	rmdir(dir);
	printf("%s\n", out);
	free(outbuf);
	return 0;
write_error:
	fprintf(stderr, "%s: plot: cannot write in %s: %s\n", prog, dir, strerror(errno));
	free(pts);
	free(outbuf);
	return 1;
}
