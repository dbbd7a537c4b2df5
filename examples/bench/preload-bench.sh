#!/usr/bin/env bash
# preload-bench.sh - 1 GiB malloc'd and written page by page (touch-pages),
# natively and under the shim; median of N runs of each (default 3).
#
#   examples/bench/preload-bench.sh [BUILD] [MiB] [runs]
#
# Prints the wall time of the whole program (malloc, writes, free, exit)
# and touch-pages' own time for the writes. Under a budget, against a
# memory cgroup with swap: preload-budget-bench.sh beside this script.
set -euo pipefail
build=${1:-build}
mib=${2:-1024}
runs=${3:-3}
touch=$build/examples/touch-pages
cli=$build/runtime/cli/faultline

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() {	# label, command...
	local label=$1 i t0 t1 wall=() inner=()
	shift
	for ((i = 0; i < runs; i++)); do
		t0=$(date +%s.%N)
		out=$("$@" "$touch" "$mib")
		t1=$(date +%s.%N)
		wall+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')")
		inner+=("$(echo "$out" | sed -n 's/.* in \([0-9.]*\) s.*/\1/p')")
	done
	printf '%-28s wall median %6.3f s  writes median %6.3f s  (wall: %s)\n' "$label" \
		"$(printf '%s\n' "${wall[@]}" | median)" "$(printf '%s\n' "${inner[@]}" | median)" \
		"${wall[*]}"
}

run "native" env
run "faultline (adaptive)" "$cli" run --
run "faultline (fault-around 4M)" "$cli" run --fault-around 4M --
# fault-around off: one fault per page, the fault path alone
run "faultline (fault-around off)" "$cli" run --fault-around 4K --
run "faultline (in-thread, off)" env FAULTLINE_RESOLVE=auto "$cli" run --fault-around 4K --
run "faultline (in-thread, adaptive)" env FAULTLINE_RESOLVE=auto "$cli" run --
