#!/usr/bin/env bash
# Real programs with the shim built with ASan and UBSan (asan setup only):
# the JVM with the Parallel and the G1 collector, node's own heap and
# reserve-commit's three ways of committing, each under a budget, output
# compared with a native run, the statistics checked for managed and
# evicted memory, and no sanitizer report written.
#
# ASan's runtime must come first in the lookup order (it checks), so it is
# preloaded before the shim, and the program's malloc is then ASan's: what
# runs under the sanitizers here is the shim's handling of the program's
# own mappings (mmap, MAP_FIXED commits, mprotect, munmap, madvise, mremap)
# and the whole runtime below it (faults, eviction, page-in). The shim's
# malloc blocks run under the sanitizers in no real program; their tests
# are the default setup's (alloc-mix, allocators.sh).
. "$(dirname "$0")/lib.sh"
[ -n "${ASAN_SHIM:-}" ] && [ -f "$ASAN_SHIM" ] || skip_all "no ASan build of the shim"
[ -n "${ASAN_LIB:-}" ] && [ -f "$ASAN_LIB" ] || skip_all "no libasan to preload (${ASAN_LIB:-})"
plan 15
probe_uffd

# asan_run NAME BUDGET MIN-REGION CMD...: the program under the ASan shim,
# its output to $WORK/NAME.out, statistics to $WORK/NAME.*.json, sanitizer
# reports to $WORK/NAME-san.*
asan_run() {
	local name=$1 budget=$2 minr=$3
	shift 3
	# the JVM handles SIGSEGV and SIGBUS itself; leaks are the program's
	watched 300 "$WORK/$name.out" env \
		ASAN_OPTIONS="detect_leaks=0:handle_segv=0:handle_sigbus=0:allow_user_segv_handler=1:log_path=$WORK/$name-san" \
		UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$WORK/$name-san" \
		LD_PRELOAD="$ASAN_LIB:$ASAN_SHIM" FAULTLINE_BUDGET="$budget" \
		FAULTLINE_MIN_REGION="$minr" FAULTLINE_STATS=json \
		FAULTLINE_STATS_FILE="$WORK/$name.%p.json" "$@"
}

# check NAME PROGRAM WANT: the same output, far memory at work, no report
check() {
	local name=$1 prog=$2 want=$3 out st ev pi reports
	out=$(cat "$WORK/$name.out")
	[ "$out" = "$want" ]; ok $? "$name: the same output as natively (${out:-nothing})"
	st=$(grep -h "\"program\":\"$prog\"" "$WORK/$name".*.json 2>/dev/null | tail -n 1)
	printf '%s\n' "$st" > "$WORK/$name.last"
	ev=$(json_get "$WORK/$name.last" 's["counters"]["far_evictions"]' 2>/dev/null)
	pi=$(json_get "$WORK/$name.last" 's["counters"]["far_pageins"]' 2>/dev/null)
	reports=$(cat "$WORK/$name"-san.* 2>/dev/null)
	diag "$name: far_evictions=${ev:-?} far_pageins=${pi:-?} regions_resized=$(json_get "$WORK/$name.last" 's["counters"]["regions_resized"]' 2>/dev/null)"
	[ "${ev:-0}" -gt 0 ] && [ "${pi:-0}" -gt 0 ] && [ -z "$reports" ]
	ok $? "$name: evicted and read back, no ASan or UBSan report"
	[ -n "$reports" ] && diag "$(printf '%s\n' "$reports" | head -n 40)"
}

# /proc/self/comm of reserve-commit: 15 characters
RC=$RESERVE_COMMIT
for how in mmap mprotect; do
	want=$("$RC" 64 $how)
	[[ $want == "digest "* ]]; ok $? "reserve-commit $how, native: $want"
	asan_run rc-$how 32M 1M "$RC" 64 $how
	check rc-$how preload-reserve "$want"
done
want=$("$RC" 32 pages)
[[ $want == "digest "* ]]; ok $? "reserve-commit pages, native: $want"
asan_run rc-pages 8M 1M "$RC" 32 pages
check rc-pages preload-reserve "$want"

if command -v java >/dev/null && command -v javac >/dev/null &&
   javac -d "$WORK" "$SRCDIR/tests/preload/Big.java"; then
	for gc in Parallel G1; do
		jvm=(java -Xmx1g -XX:+Use${gc}GC -Xshare:auto -cp "$WORK" Big 300)
		want=$("${jvm[@]}")
		asan_run java-$gc 128M 1M "${jvm[@]}"
		check java-$gc java "$want"
	done
else
	for i in 1 2 3 4; do ok 0 "# SKIP java or javac is not installed (openjdk-17-jdk-headless)"; done
fi

if command -v node >/dev/null; then
	want=$(node "$SRCDIR/tests/preload/js-heap.js")
	# V8's heap pages are 256 KiB, committed with mprotect
	asan_run node 64M 256K node "$SRCDIR/tests/preload/js-heap.js"
	check node node "$want"
else
	for i in 1 2; do ok 0 "# SKIP node is not installed (nodejs)"; done
fi
done_testing
