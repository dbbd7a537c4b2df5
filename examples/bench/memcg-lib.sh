# memcg-lib.sh - the kernel's side of the budget benchmarks, sourced by
# preload-budget-bench.sh and programs-bench.sh: a memory cgroup limited to
# the budget, and a swap for it held by faultline-bench-swap
# (examples/bench/memswap.c, as faultline-bench's farmem-sort does). The
# caller sets name (the cgroup's) and swaptool, and later tmp (a scratch
# directory, removed at exit); sourcing this sets the EXIT trap that
# releases the swap and removes the cgroup and tmp.
#
# The cgroup is v2's memory.max when the memory controller is on the v2
# hierarchy, else v1's memory.limit_in_bytes (hybrid mounts): both make the
# kernel reclaim the group's anonymous pages to swap above the limit.
# Without swap the kernel cannot go over the limit and OOM-kills, so the
# swap is set up by hold_swap if none is active (and an active one is used
# as is): one benchmark swap at a time, and a swap an interrupted run left
# behind is removed first. While it holds the swap the tool also reads the
# group's memory.stat every 10 ms: the kernel's reclaim otherwise decides
# from statistics up to ~2 s old and can OOM-kill a small group with most
# of it in swap (see memcg_stat_refresh() in memswap.h).
cg= swap_pid= swap_in= tmp=

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# memcg_create MiB: make the group, limited to MiB; sets cg and cgkind
memcg_create() {
	if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
		cg=/sys/fs/cgroup/$name; mkdir "$cg"
		echo $(($1 << 20)) > "$cg/memory.max"
		cgkind="cgroup v2 memory.max"
	elif grep -qw memory /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
		cg=/sys/fs/cgroup/unified/$name; mkdir "$cg"
		echo $(($1 << 20)) > "$cg/memory.max"
		cgkind="cgroup v2 memory.max"
	elif [ -d /sys/fs/cgroup/memory ]; then
		cg=/sys/fs/cgroup/memory/$name; mkdir "$cg"
		echo $(($1 << 20)) > "$cg/memory.limit_in_bytes"
		cgkind="cgroup v1 memory.limit_in_bytes (the v2 hierarchy has no memory controller here)"
	else
		echo "no memory cgroup controller mounted" >&2
		return 1
	fi
}

# memcg_limit MiB: change the group's limit
memcg_limit() {
	if [ -e "$cg/memory.max" ]; then
		echo $(($1 << 20)) > "$cg/memory.max"
	else
		echo $(($1 << 20)) > "$cg/memory.limit_in_bytes"
	fi
}

# hold_swap KIND MiB: swap for the cgroup runs (KIND file or zram), MiB
# large, held by faultline-bench-swap until release_swap closes its standard
# input (or the script ends, which closes it too); sets swap_kind (existing,
# file, zram or none), swap_dev and swap_detail (for none: why)
hold_swap() {
	rm -f "$tmp/swap.in" "$tmp/swap.out"
	mkfifo "$tmp/swap.in"
	"$swaptool" --memcg "$cg" "$1" "$2" < "$tmp/swap.in" > "$tmp/swap.out" &
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

memcg_cleanup() {
	release_swap
	[ -n "$cg" ] && rmdir "$cg" 2>/dev/null
	[ -n "$tmp" ] && rm -rf "$tmp"
	true
}
trap memcg_cleanup EXIT
