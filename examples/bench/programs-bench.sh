#!/usr/bin/env bash
# programs-bench.sh - real programs under a resident budget: each natively,
# under `faultline run --budget B`, and in a memory cgroup limited to B with
# swap (zram where the kernel has it, else a swap file), median of N runs,
# one table at the end. The output of every run must be the native run's.
#
#   examples/bench/programs-bench.sh [BUILD] [runs] [PATTERN]
#
# PATTERN (an extended regular expression) picks the programs by name.
# Needs root (cgroup, swap), and the programs the tests use (java, node,
# python3, redis-server, memcached, PostgreSQL: ./dev.sh installs them). A
# server runs one load from start to stop (examples/bench/server-load.sh):
# its wall time is the load's, and only the server runs under the shim or in
# the cgroup. PostgreSQL runs as the user postgres: when that user cannot
# open /dev/userfaultfd, the script grants it (faultline setup --user
# postgres) and takes the grant back at the end (faultline setup --undo).
# Its processes each have a runtime and a budget of their own, while the
# cgroup holds all of them to one limit: the figures are the sorting
# backend's, the process that held the most.
# The columns:
#   managed    of the process's anonymous memory under the shim, the share
#              that was managed (process.managed_resident / process.rss_anon)
#              when the process held the most (statistics every 50 ms)
#   res/B      the managed memory's resident peak (far_resident_peak)
#              against the budget
#   RSS        the process's peak RSS under the shim (all memory)
#   vs native  wall time under the shim / natively
#   vs cgroup  wall time under the shim / in the cgroup with swap
# The cgroup and its swap: examples/bench/memcg-lib.sh.
set -euo pipefail
build=$(readlink -f "${1:-build}")
runs=${2:-3}
only=${3:-}
case "$runs" in
''|*[!0-9]*|0) echo "programs-bench.sh: runs must be a positive number, not '$runs'" >&2; exit 2 ;;
esac
cli=$build/runtime/cli/faultline
swaptool=$build/examples/bench/faultline-bench-swap
src=$(readlink -f "$(dirname "$0")/../..")
name=fl-programs-$$
. "$(dirname "$0")/memcg-lib.sh"

[ "$(id -u)" = 0 ] || { echo "needs root (cgroup, swap)" >&2; exit 1; }
for p in java javac node python3 redis-server redis-cli memcached pgbench psql; do
	command -v $p >/dev/null || { echo "$p is not installed (./dev.sh installs it)" >&2; exit 1; }
done
tmp=$(mktemp -d)
chmod 755 "$tmp"
# the statistics files: written by each process, PostgreSQL's as its user
mkdir -m 1777 "$tmp/st"

# the programs: the compatibility tests' workloads (tests/preload/)
javac -d "$tmp" "$src/tests/preload/Big.java"
cat > "$tmp/far.py" <<'PY'
import hashlib
b = bytearray(192 << 20)
for i in range(0, len(b), 4096): b[i] = (i >> 12) & 0xff
print(hashlib.sha256(b).hexdigest())
PY

# name|runtime or allocator|budget MiB|more options of faultline run|command
# @W in the command stands for the wrapper of the run: nothing natively,
# `faultline run ... --` under the shim, one that enters the cgroup.
# (V8's heap pages are 256 KiB: node's own heap needs --min-region 256K)
mkdir "$tmp/srv"
load=$src/examples/bench/server-load.sh
programs=(
	"java Parallel|JVM heap (mmap MAP_FIXED)|128||@W java -Xmx512m -XX:+UseParallelGC -cp $tmp Big 300"
	"java G1|JVM heap (mmap MAP_FIXED)|128||@W java -Xmx1g -XX:+UseG1GC -cp $tmp Big 300"
	"node typed array|V8, backing store by malloc|64||@W node $src/tests/preload/typed-array.js"
	"node objects|V8's heap (mprotect)|64|--min-region 256K|@W node $src/tests/preload/js-heap.js"
	"python3 bytearray|CPython, glibc malloc|64||@W python3 $tmp/far.py"
	"reserve-commit|PROT_NONE + MAP_FIXED|32||@W $build/tests/preload/preload-reserve-commit 64"
	"redis, 90 MB|jemalloc (linked)|32||$load redis $tmp/srv @W"
	"memcached, 50 MB|slabs from malloc|24||$load memcached $tmp/srv @W"
	"postgres, 1M rows|forked backends, palloc|32||$load postgres $tmp/srv @W"
)
if [ -n "$only" ]; then
	printf '%s\n' "${programs[@]}" | cut -d'|' -f1 | grep -qE -- "$only" ||
		{ echo "programs-bench.sh: no program's name matches '$only'" >&2; exit 2; }
fi
# the cgroup's wrapper: the command enters the group, then runs
cat > "$tmp/in-cg" <<'SH'
#!/bin/sh
echo $$ > "$FL_BENCH_CG/cgroup.procs" && exec "$@"
SH
chmod 755 "$tmp/in-cg"

# measure FILE command...: wall seconds and the child's peak RSS (KiB) on
# one line of FILE, its standard output to FILE.out
measure() {
	local f=$1
	shift
	python3 - "$f" "$@" <<'PY'
import os, subprocess, sys, time
f, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
with open(f + ".out", "w") as out:
    p = subprocess.Popen(cmd, stdout=out)
    _, status, ru = os.wait4(p.pid, 0)
t1 = time.monotonic()
with open(f, "w") as o:
    o.write("%.3f %d %d\n" % (t1 - t0, ru.ru_maxrss, os.waitstatus_to_exitcode(status)))
PY
}

# series LABEL command...: runs times; prints the median wall; checks the output
series() {
	local label=$1 i w=()
	shift
	for ((i = 0; i < runs; i++)); do
		[[ $label != *.shim ]] || rm -f "$tmp"/st/st-*.json	# the last run's only
		measure "$tmp/m" "$@"
		read -r wall _ rc < "$tmp/m"
		if [ "$rc" != 0 ] || ! cmp -s "$tmp/m.out" "$tmp/want"; then
			echo "$label: exit $rc, output $(head -c 80 "$tmp/m.out") (want $(cat "$tmp/want"))" >&2
			exit 1
		fi
		w+=("$wall")
	done
	printf '%s\n' "${w[@]}" | median
}

# PostgreSQL's user and /dev/userfaultfd
undo_setup=
if printf '%s\n' "${programs[@]}" | cut -d'|' -f1 | grep -E -- "${only:-.}" | grep -q postgres; then
	id postgres >/dev/null 2>&1 || { echo "no user postgres (./dev.sh installs PostgreSQL)" >&2; exit 1; }
	if ! "$cli" setup --check --user postgres >/dev/null 2>&1; then
		"$cli" setup --user postgres >/dev/null
		undo_setup=1
	fi
fi
trap 'memcg_cleanup; [ -z "$undo_setup" ] || "$cli" setup --undo >/dev/null' EXIT

memcg_create 64
hold_swap zram 2048
if [ "$swap_kind" = none ]; then
	release_swap
	hold_swap file 2048
fi
[ "$swap_kind" != none ] || { echo "no swap for the cgroup runs: $swap_dev $swap_detail" >&2; exit 1; }

echo "# median of $runs runs; $(nproc) CPUs; kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# kernel side: $cgkind, swap: $swap_kind $swap_dev ($swap_detail)"
printf '%-18s %-28s %6s %8s %6s %8s %8s %9s %9s\n' program "runtime / allocator" budget \
	managed res/B RSS native "vs native" "vs cgroup"
export FL_BENCH_CG=$cg
for p in "${programs[@]}"; do
	IFS='|' read -r label kind budget opts cmd <<< "$p"
	[ -z "$only" ] || [[ $label =~ $only ]] || continue
	key=${label// /_}
	key=${key//,/}
	# shellcheck disable=SC2086
	${cmd//@W/} > "$tmp/want"
	# shellcheck disable=SC2086
	native=$(series "$key.native" ${cmd//@W/})
	# shellcheck disable=SC2086
	shim=$(series "$key.shim" ${cmd//@W/$cli run --budget ${budget}M $opts --stats-interval 0.05 \
		--stats-file $tmp/st/st-%p.json --})
	memcg_limit "$budget"
	# shellcheck disable=SC2086
	cgt=$(series "$key.cg" ${cmd//@W/$tmp/in-cg})
	# the shim's last run: of its processes with a runtime, the one that
	# held the most anonymous memory; its line with the most
	python3 - "$tmp" "$budget" > "$tmp/fig" <<'PY'
import glob, json, sys
lines = [json.loads(l) for f in glob.glob(sys.argv[1] + "/st/st-*.json") for l in open(f) if l.strip()]
lines = [l for l in lines if l["runtime"]]
s = max(lines, key=lambda l: l["process"]["rss_anon"])
run = [l for l in lines if l["pid"] == s["pid"]]
p, end = s["process"], run[-1]
share = 100.0 * p["managed_resident"] / p["rss_anon"] if p["rss_anon"] else 0
res = 100.0 * end["counters"]["far_resident_peak"] * s["page_size"] / (int(sys.argv[2]) << 20)
print("%.0f%% %.0f%% %d" % (share, res, end["process"]["vm_hwm"] >> 20))
PY
	read -r share res hwm < "$tmp/fig"
	printf '%-18s %-28s %4sM %8s %6s %6sM %7.2fs %9.2f %9.2f\n' "$label" "$kind" "$budget" \
		"$share" "$res" "$hwm" "$native" \
		"$(awk -v a="$shim" -v b="$native" 'BEGIN {print a / b}')" \
		"$(awk -v a="$shim" -v b="$cgt" 'BEGIN {print a / b}')"
done
