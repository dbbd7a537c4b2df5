#!/usr/bin/env bash
# tests/flaky.sh - run the test suites again and again on a loaded machine
# and count, per test, the runs that failed. By hand, not in CI: a flaky test
# is a bug, and the interleavings behind one mostly show up only when the
# CPUs are busy, as they are on a shared CI machine.
#
# Usage: tests/flaky.sh [options] N
#   N               rounds
#   --setups LIST   meson test setups each round runs, in turn
#                   (default: "default asan tsan")
#   --ci            each round runs the whole CI command (./dev.sh test:
#                   every setup and the stock-kernel run) instead
#   --hogs K        CPU hogs kept running meanwhile (default: one per CPU;
#                   0: none)
#   --pair          run two instances of each setup at once (two suites
#                   competing for the CPUs, as two CI jobs on one machine)
#   --tests 'A B'   only these tests (meson test names, in every setup
#                   they exist in, e.g. 'farmem-rescue farmem-rescue-asan')
#   --build DIR     build directory (default: build; built first)
#   --keep DIR      where the logs of failed runs go (default: flaky-logs)
#
# Prints one line per test that failed at least once (runs, failures,
# timeouts, the first failing round's log), the load average seen, and a
# last line "flaky: N rounds, M tests failed at least once". Exit 1 if any
# test failed, 0 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds= setups="default asan tsan" ci=0 hogs=$(nproc) pair=0 only= build=build keep=flaky-logs
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
	case "$1" in
	--setups) setups=${2:?}; shift 2 ;;
	--ci) ci=1; shift ;;
	--hogs) hogs=${2:?}; shift 2 ;;
	--pair) pair=1; shift ;;
	--tests) only=${2:?}; shift 2 ;;
	--build) build=${2:?}; shift 2 ;;
	--keep) keep=${2:?}; shift 2 ;;
	-h|--help) usage ;;
	-*) echo "flaky.sh: unknown option '$1'" >&2; usage ;;
	*) [ -z "$rounds" ] || usage; rounds=$1; shift ;;
	esac
done
case "$rounds" in
''|*[!0-9]*|0) echo "flaky.sh: N must be a positive number of rounds, not '${rounds}'" >&2; exit 2 ;;
esac
case "$hogs" in
''|*[!0-9]*) echo "flaky.sh: --hogs takes a count, not '$hogs'" >&2; exit 2 ;;
esac

work=$(mktemp -d)
hog_pids=()
cleanup() {
	[ ${#hog_pids[@]} -eq 0 ] || kill "${hog_pids[@]}" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BUILD=$build ./dev.sh build >/dev/null
mkdir -p "$keep"
for ((i = 0; i < hogs; i++)); do
	sh -c 'while :; do :; done' &
	hog_pids+=($!)
done

# one meson test run of setup $1 into directory $2 (its testlog saved there)
run_setup() {
	local setup=$1 out=$2 logdir
	mkdir -p "$out"
	# shellcheck disable=SC2086
	meson test -C "$build" --setup "$setup" --no-rebuild --num-processes 2 --logbase "flaky-$BASHPID" \
		$only >"$out/console.txt" 2>&1 || true
	# meson names the log after the base and the setup
	logdir=$build/meson-logs
	for f in "$logdir/flaky-$BASHPID"*; do
		case "$f" in
		*.json) mv "$f" "$out/testlog.json" ;;
		*) rm -f "$f" ;;
		esac
	done
}

loads=()
for ((r = 1; r <= rounds; r++)); do
	rdir=$work/round-$r
	mkdir -p "$rdir"
	if [ $ci = 1 ]; then
		BUILD=$build CI=true ./dev.sh test >"$rdir/console.txt" 2>&1 || true
		# every setup's log, and the stock kernels' summary lines
		cp "$build"/meson-logs/testlog*.json "$rdir/" 2>/dev/null || true
		cp "$build"/kernels-summary.txt "$rdir/" 2>/dev/null || true
		tail -n 1 "$rdir/console.txt" >"$rdir/verdict.txt"
	else
		for setup in $setups; do
			run_setup "$setup" "$rdir/$setup-a" &
			a=$!
			if [ $pair = 1 ]; then
				run_setup "$setup" "$rdir/$setup-b" &
				wait $!
			fi
			wait $a
		done
	fi
	loads+=("$(cut -d' ' -f1 /proc/loadavg)")
	# as it goes: a run cut short still leaves each round's verdict
	printf 'round %d/%d done, load %s%s\n' "$r" "$rounds" "${loads[-1]}" \
		"$([ $ci = 1 ] && printf ': %s' "$(cat "$rdir/verdict.txt")")" >&2
done

python3 - "$work" "$keep" "$rounds" "${loads[*]}" <<'EOF'
import glob, json, os, re, shutil, sys

work, keep, rounds, loads = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split()
runs, fails, timeouts, first = {}, {}, {}, {}
ci_red = 0
for r in range(1, rounds + 1):
    rdir = os.path.join(work, f"round-{r}")
    for path in sorted(glob.glob(os.path.join(rdir, "**", "testlog*.json"), recursive=True)):
        for line in open(path):
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            name, res = t["name"], t.get("result", "")
            runs[name] = runs.get(name, 0) + 1
            if res in ("OK", "SKIP", "EXPECTEDFAIL"):
                continue
            fails[name] = fails.get(name, 0) + 1
            if res == "TIMEOUT":
                timeouts[name] = timeouts.get(name, 0) + 1
            if name not in first:
                dst = os.path.join(keep, f"round{r}-{name.replace('/', '_').replace(' ', '')}.log")
                with open(dst, "w") as f:
                    f.write(t.get("stdout", "") or "")
                    f.write(t.get("stderr", "") or "")
                first[name] = dst
    k = os.path.join(rdir, "kernels-summary.txt")
    if os.path.exists(k):
        for line in open(k):
            m = re.match(r"^kernel (\S+): (\d+) passed, (\d+) failed", line.strip())
            if m:
                name = f"stock kernel {m.group(1)}"
                runs[name] = runs.get(name, 0) + 1
                if int(m.group(3)):
                    fails[name] = fails.get(name, 0) + 1
                    if name not in first:
                        dst = os.path.join(keep, f"round{r}-kernel-{m.group(1)}.log")
                        shutil.copy(os.path.join(rdir, "console.txt"), dst)
                        first[name] = dst
    v = os.path.join(rdir, "verdict.txt")
    if os.path.exists(v):
        line = open(v).read().strip()
        m = re.match(r"^(\d+) passed, (\d+) failed", line)
        if not m or int(m.group(2)):
            ci_red += 1
            dst = os.path.join(keep, f"round{r}-ci.log")
            shutil.copy(os.path.join(rdir, "console.txt"), dst)
            print(f"round {r}: CI command red: {line!r} (log: {dst})")

print(f"{'test':44} {'runs':>5} {'failed':>6} {'timeout':>7}  first failing log")
for name in sorted(fails, key=lambda n: (-fails[n], n)):
    print(f"{name:44} {runs[name]:5} {fails[name]:6} {timeouts.get(name, 0):7}  {first.get(name, '')}")
total = sum(runs.values())
print(f"{len(runs)} tests, {total} test runs, load average at the end of each round: {' '.join(loads)}")
print(f"flaky: {rounds} rounds, {len(fails)} tests failed at least once"
      + (f", CI command red in {ci_red} rounds" if ci_red else ""))
sys.exit(1 if fails or ci_red or not total else 0)
EOF
