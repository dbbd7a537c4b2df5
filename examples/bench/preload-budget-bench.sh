#!/usr/bin/env bash
# preload-budget-bench.sh - touch-pages (1 GiB malloc'd, written page by page,
# read back, freed) under a resident budget: the shim's far memory
# (FAULTLINE_BUDGET) against the kernel's own answer, a memory cgroup of the
# same limit with swap. Median of N runs of each; ratios against the cgroup.
#
#   examples/bench/preload-budget-bench.sh [BUILD] [MiB] [BUDGET_MiB] [runs]
#
# Needs root (cgroup, swap). Configurations:
#   shim, store on disk   FAULTLINE_STORE=/var/tmp: an unnamed file on the
#                         root file system (it goes through the page cache)
#   shim, store in RAM    FAULTLINE_STORE=/dev/shm (tmpfs)
#   ..., fault-around 64K the same with FAULTLINE_FAULT_AROUND=64K: with the
#                         adaptive default (up to 4 MiB per fault) this
#                         page-by-page writer outruns the evictor and the peak
#                         RSS goes over the budget; 64K runs keep it in
# The disk comparison is not like for like: the shim's store file lives in
# the page cache (nothing forces it out with this much free RAM), the swap
# file is written to the disk. tmpfs vs zram is the closer pair.
#   cgroup + swap file    memory limit, swap on a file on the root file
#                         system (made here, removed at exit)
#   cgroup + zram         memory limit, swap on a zram device of its own
#                         (lz4), if the kernel has zram
# The cgroup and its swap: examples/bench/memcg-lib.sh.
set -euo pipefail
build=${1:-build}
mib=${2:-1024}
budget=${3:-256}
runs=${4:-3}
touch=$(readlink -f "$build/examples/touch-pages")
cli=$(readlink -f "$build/runtime/cli/faultline")
swaptool=$(readlink -f "$build/examples/bench/faultline-bench-swap")
name=fl-bench-$$
. "$(dirname "$0")/memcg-lib.sh"

[ "$(id -u)" = 0 ] || { echo "needs root (cgroup, swap)" >&2; exit 1; }

memcg_create "$budget"

# the peak RSS (VmHWM, from GNU time) says whether the limit held: the
# cgroup enforces it; the shim's budget is the runtime's own count
tmp=$(mktemp -d)
rssfile=$tmp/rss
run() {	# label, command... (the command runs touch-pages)
	local label=$1 i t0 t1 out wall=() inner=() rss=()
	shift
	for ((i = 0; i < runs; i++)); do
		t0=$(date +%s.%N)
		out=$(/usr/bin/time -f %M -o "$rssfile" "$@")
		t1=$(date +%s.%N)
		wall+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')")
		inner+=("$(echo "$out" | sed -n 's/.* in \([0-9.]*\) s.*/\1/p')")
		rss+=("$(($(tail -n 1 "$rssfile") >> 10))")
	done
	w=$(printf '%s\n' "${wall[@]}" | median)
	printf '%-34s wall median %7.3f s  writes median %7.3f s  peak RSS median %5d MiB  (wall: %s)\n' \
		"$label" "$w" "$(printf '%s\n' "${inner[@]}" | median)" \
		"$(printf '%s\n' "${rss[@]}" | median)" "${wall[*]}"
	last=$w
}

# commands, not functions: GNU time runs them
in_cgroup=(sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$cg" "$touch" "$mib")
shim() { echo "$cli" run --budget "${budget}M" --store "$@" -- "$touch" "$mib"; }

echo "# touch-pages $mib MiB, budget/limit $budget MiB, median of $runs; $(nproc) CPUs; kernel $(uname -r)"
echo "# $cgkind"
run "native (no limit)" "$touch" "$mib"; native=$last
run "shim, store on disk (/var/tmp)" $(shim /var/tmp); shim_disk=$last
run "shim, store in RAM (/dev/shm)" $(shim /dev/shm); shim_ram=$last
# fault-around 64K: smaller runs let the evictor keep up (see doc/performance.md)
run "shim, /var/tmp, fault-around 64K" $(shim /var/tmp --fault-around 64K); shim_64k=$last
run "shim, /dev/shm, fault-around 64K" $(shim /dev/shm --fault-around 64K); shim_ram64k=$last

hold_swap file $((2 * mib))
case $swap_kind in
existing)
	echo "# swap already active: $swap_dev ($swap_detail)"
	run "cgroup + existing swap" "${in_cgroup[@]}"; cg_file=$last; cg_zram=
	release_swap
	;;
file)
	echo "# swap file $swap_dev ($swap_detail, on $(df --output=source "$swap_dev" | tail -1))"
	run "cgroup + swap file" "${in_cgroup[@]}"; cg_file=$last
	release_swap
	cg_zram=
	hold_swap zram $((2 * mib))
	if [ "$swap_kind" = zram ]; then
		echo "# zram swap $swap_dev ($swap_detail)"
		run "cgroup + zram swap" "${in_cgroup[@]}"; cg_zram=$last
	else
		echo "# no zram swap: $swap_dev $swap_detail"
	fi
	release_swap
	;;
*)
	echo "no swap for the cgroup runs: $swap_dev $swap_detail" >&2
	exit 1
	;;
esac
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "# ratios of wall medians (lower is faster)"
echo "shim disk store / cgroup swap file: $(ratio "$shim_disk" "$cg_file")"
if [ -n "$cg_zram" ]; then
	echo "shim RAM store / cgroup zram swap:   $(ratio "$shim_ram" "$cg_zram")"
	echo "shim RAM store, fault-around 64K / cgroup zram swap: $(ratio "$shim_ram64k" "$cg_zram")"
fi
echo "shim disk, fault-around 64K / cgroup swap file: $(ratio "$shim_64k" "$cg_file")"
echo "shim disk store / native:           $(ratio "$shim_disk" "$native")"
echo "cgroup swap file / native:          $(ratio "$cg_file" "$native")"
