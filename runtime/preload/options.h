/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * options.h - the FAULTLINE_* options of the LD_PRELOAD shim, declared once.
 *
 * One table (FL_PRELOAD_OPTIONS below) drives the environment parser the
 * shim runs at constructor time, `faultline env` (text and --markdown, which
 * is the README's table) and the launcher's validation of its own flags.
 *
 * Nothing here allocates, locks or calls getenv(): the parser reads a
 * caller-supplied environment vector (the shim passes `environ`), copies
 * string values into the options struct itself, and reports problems
 * through a callback with a stack buffer. That makes it safe in a
 * constructor that runs before the program's malloc is usable, and easy to
 * fuzz (tests/fuzz-options.c).
 *
 * Strings are copied, not pointed to, because the shim reads them long
 * after its constructor (FAULTLINE_STORE on the first managed mapping,
 * FAULTLINE_STATS_FILE at exit), and by then a program that sets its
 * process title (PostgreSQL, nginx, setproctitle()) has overwritten the
 * environment strings: they sit right after argv, and that is the space it
 * writes the title into.
 */
#ifndef FL_PRELOAD_OPTIONS_H
#define FL_PRELOAD_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fl_opt_type {
	FL_OPT_BOOL,	/* 1/0, yes/no, on/off, true/false */
	FL_OPT_SIZE,	/* bytes, with an optional K/M/G/T suffix (powers of 1024) */
	FL_OPT_UINT,	/* a decimal count */
	FL_OPT_ENUM,	/* one of the listed words */
	FL_OPT_STRING,	/* any text, at most FL_OPT_STRING_MAX - 1 bytes */
};

/* a string option's room, with its NUL: a path (PATH_MAX) */
#define FL_OPT_STRING_MAX	4096

enum fl_opt_stats { FL_OPT_STATS_OFF, FL_OPT_STATS_TEXT, FL_OPT_STATS_JSON };
enum fl_opt_log { FL_OPT_LOG_ERROR, FL_OPT_LOG_WARN, FL_OPT_LOG_INFO, FL_OPT_LOG_DEBUG };

/*
 * X(SUFFIX, field, type, default, choices, help): the variable is
 * FAULTLINE_<SUFFIX>. ENUM choices are a "|"-separated list; the value
 * stored is the index of the word. An ENUM whose first word is "off" also
 * takes the boolean words (so FAULTLINE_STATS=1 means text).
 */
#define FL_PRELOAD_OPTIONS(X) \
	X(DISABLE,	disable,	BOOL,	"no",	NULL, \
	  "do not manage any memory (the shim only passes calls through)") \
	X(MIN_REGION,	min_region,	SIZE,	"1M",	NULL, \
	  "smallest anonymous mapping or malloc block brought under the runtime") \
	X(MALLOC,	malloc,		BOOL,	"yes",	NULL, \
	  "serve malloc blocks >= MIN_REGION from managed mappings (glibc maps them out of sight of mmap interposition)") \
	X(HANDLERS,	handlers,	UINT,	"0",	NULL, \
	  "fault handler threads; 0: one per CPU") \
	X(PIN,		pin,		BOOL,	"yes",	NULL, \
	  "pin each handler thread to a CPU") \
	X(FAULT_AROUND,	fault_around,	SIZE,	"0",	NULL, \
	  "bytes resolved per fault: 0 adaptive (4K..4M on sequential runs), or a power of two from 4K to 4M") \
	X(TIERS,	tiers,		ENUM,	"adaptive", "adaptive|spf|region|global", \
	  "fault-resolution tiers (forced tiers are for benchmarks)") \
	X(RESOLVE,	resolve,	ENUM,	"handler", "handler|thread|auto", \
	  "which thread resolves a fault: handler threads; thread: the faulting thread itself, in a SIGBUS handler (no hand-off; the program's SIGBUS handlers are chained, SIGBUS is never blocked, and the read/write/recv/send/fread/fwrite families touch their buffers first: other system calls into never-touched memory fail EFAULT); auto: thread where the memory allows it (no budget)") \
	X(BUDGET,	budget,		SIZE,	"0",	NULL, \
	  "resident budget for managed memory (at least 1M); the coldest pages beyond it go to the store; 0: no budget") \
	X(EVICT,	evict,		ENUM,	"auto",	"auto|copy", \
	  "how far memory evicts: auto (UFFDIO_MOVE where the kernel has it), copy (write-protect, copy, zap: what kernels without MOVE, such as 6.1, get)") \
	X(STORE,	store,		STRING,	"",	NULL, \
	  "where evicted pages go (with a budget): a directory (an unnamed file in it), a file (%p is the pid; one process per file), or a pool of memcached servers, memcached://HOST:PORT[,HOST:PORT...][?replicas=N&encrypt=no&lease=S&timeout=MS]; empty: an unnamed file in $TMPDIR or /tmp") \
	X(STATS,	stats,		ENUM,	"off",	"off|text|json", \
	  "print statistics at exit") \
	X(STATS_FILE,	stats_file,	STRING,	"",	NULL, \
	  "where statistics go (appended; %p is the pid); empty: stderr") \
	X(STATS_INTERVAL_MS, stats_interval_ms, UINT, "0",	NULL, \
	  "also write a JSON statistics line every this many milliseconds (10 to 86400000) while the runtime runs; 0: only at exit") \
	X(TRIM_HEAP,	trim_heap,	BOOL,	"yes",	NULL, \
	  "with a budget, while the runtime evicts, return the pages of glibc's heaps that the program has freed to the kernel (malloc_trim), at most 4 times a second") \
	X(LIVE,		live,		BOOL,	"yes",	NULL, \
	  "publish the counters for faultline top in /dev/shm/faultline.UID.PID (mode 0600, removed at exit; a snapshot is taken only when someone watches)") \
	X(LOG,		log,		ENUM,	"warn",	"error|warn|info|debug", \
	  "what the shim reports on stderr") \
	X(CHILDREN,	children,	BOOL,	"yes",	NULL, \
	  "programs this one execs run under the shim too (no: the shim removes itself from LD_PRELOAD at start)")

#define FL_OPT_FIELD_BOOL(f)	bool f
#define FL_OPT_FIELD_SIZE(f)	uint64_t f
#define FL_OPT_FIELD_UINT(f)	uint64_t f
#define FL_OPT_FIELD_ENUM(f)	int f
#define FL_OPT_FIELD_STRING(f)	char f[FL_OPT_STRING_MAX]

/* the parsed values; strings are the struct's own copies (see above) */
struct fl_preload_options {
#define FL_OPT_DECLARE(sfx, field, type, def, choices, help) FL_OPT_FIELD_##type(field);
	FL_PRELOAD_OPTIONS(FL_OPT_DECLARE)
#undef FL_OPT_DECLARE
};

struct fl_opt_desc {
	const char *name;	/* "FAULTLINE_BUDGET" */
	enum fl_opt_type type;
	const char *def;	/* the default, as a user would write it */
	const char *choices;	/* ENUM: "a|b|c" */
	const char *help;
	size_t offset;		/* into struct fl_preload_options */
};

extern const struct fl_opt_desc fl_opt_table[];
extern const size_t fl_opt_count;

/* problem reports: @msg is a complete line without the trailing newline */
typedef void (*fl_opt_warn_fn)(void *arg, const char *msg);

/**
 * fl_opt_defaults() - fill @o with every option's default.
 * Context: any; no allocation.
 */
void fl_opt_defaults(struct fl_preload_options *o);

/**
 * fl_opt_parse_env() - set @o from the FAULTLINE_* entries of @envp.
 * @envp: NULL-terminated "NAME=value" vector (environ); NULL: none.
 *
 * Starts from the defaults. An invalid value is reported through @warn
 * ("FAULTLINE_X=value: ...; using the default D") and the default kept; an
 * unknown FAULTLINE_* name is reported too. A later duplicate wins.
 * Context: any; no allocation, no locks, no getenv().
 * Return: the number of problems reported.
 */
int fl_opt_parse_env(struct fl_preload_options *o, char *const *envp,
		     fl_opt_warn_fn warn, void *arg);

/**
 * fl_opt_find() - the descriptor named @name ("FAULTLINE_X"), or for
 * @namelen > 0 the one whose name is the first @namelen bytes of @name.
 * Return: the descriptor, or NULL.
 */
const struct fl_opt_desc *fl_opt_find(const char *name, size_t namelen);

/**
 * fl_opt_set() - parse @value for @d into @o (a string: copied).
 * @why: on failure, what was expected ("a size such as 512M"), static.
 * Return: 0; -EINVAL (value invalid, or a string of FL_OPT_STRING_MAX bytes
 *	or more; @o unchanged).
 */
int fl_opt_set(struct fl_preload_options *o, const struct fl_opt_desc *d,
	       const char *value, const char **why);

/**
 * fl_opt_format() - the value of @d in @o as a user would write it.
 * Return: snprintf's result.
 */
int fl_opt_format(const struct fl_preload_options *o, const struct fl_opt_desc *d,
		  char *buf, size_t len);

/* parsing helpers shared with the launcher */
int fl_opt_parse_size(const char *s, uint64_t *out);
int fl_opt_parse_bool(const char *s, bool *out);
const char *fl_opt_type_name(enum fl_opt_type t);

#endif /* FL_PRELOAD_OPTIONS_H */
