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
# The cgroup is v2's memory.max when the memory controller is on the v2
# hierarchy, else v1's memory.limit_in_bytes (hybrid mounts): both make the
# kernel reclaim the group's anonymous pages to swap above the limit.
# Without swap the kernel cannot go over the limit and OOM-kills, so the
# swap is set up here if none is active (and an active one is used as is),
# by faultline-bench-swap (examples/bench/memswap.c, as faultline-bench's
# farmem-sort does): one benchmark swap at a time, and a swap an interrupted
# run left behind is removed first. While it holds the swap the tool also
# reads the group's memory.stat every 10 ms: the kernel's reclaim otherwise
# decides from statistics up to ~2 s old and can OOM-kill a small group with
# most of it in swap (see memcg_stat_refresh() in memswap.h).
set -euo pipefail
build=${1:-build}
mib=${2:-1024}
budget=${3:-256}
runs=${4:-3}
touch=$(readlink -f "$build/examples/touch-pages")
cli=$(readlink -f "$build/runtime/cli/faultline")
swaptool=$(readlink -f "$build/examples/bench/faultline-bench-swap")
name=fl-bench-$$
cg=
tmp=
swap_pid=
swap_in=

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# hold_swap KIND: swap for the cgroup runs, 2x the working set, held by
# faultline-bench-swap until release_swap closes its standard input (or this
# script ends, which closes it too); sets swap_kind (existing, file, zram or
# none), swap_dev and swap_detail (for none: why)
hold_swap() {
	rm -f "$tmp/swap.in" "$tmp/swap.out"
	mkfifo "$tmp/swap.in"
	"$swaptool" --memcg "$cg" "$1" $((2 * mib)) < "$tmp/swap.in" > "$tmp/swap.out" &
	swap_pid=$!
	exec {swap_in}> "$tmp/swap.in"
	while [ ! -s "$tmp/swap.out" ] && kill -0 "$swap_pid" 2>/dev/null; do
		sleep 0.1
	done
	swap_kind=none swap_dev= swap_detail="faultline-bench-swap said nothing"
	read -r swap_kind swap_dev swap_detail < "$tmp/swap.out" || true
}
release_swap() {
	[ -n "$swap_pid" ] || return 0
	exec {swap_in}>&-
	wait "$swap_pid" || true
	swap_pid=
}

cleanup() {
	release_swap
	[ -n "$tmp" ] && rm -rf "$tmp"
	[ -n "$cg" ] && rmdir "$cg" 2>/dev/null || true
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "needs root (cgroup, swap)" >&2; exit 1; }

# the memory cgroup: v2 if its memory controller is there, else v1
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	cg=/sys/fs/cgroup/$name; mkdir "$cg"
	echo $((budget << 20)) > "$cg/memory.max"
	cgkind="cgroup v2 memory.max"
elif grep -qw memory /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
	cg=/sys/fs/cgroup/unified/$name; mkdir "$cg"
	echo $((budget << 20)) > "$cg/memory.max"
	cgkind="cgroup v2 memory.max"
elif [ -d /sys/fs/cgroup/memory ]; then
	cg=/sys/fs/cgroup/memory/$name; mkdir "$cg"
	echo $((budget << 20)) > "$cg/memory.limit_in_bytes"
	cgkind="cgroup v1 memory.limit_in_bytes (the v2 hierarchy has no memory controller here)"
else
	echo "no memory cgroup controller mounted" >&2; exit 1
fi

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

hold_swap file
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
	hold_swap zram
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
