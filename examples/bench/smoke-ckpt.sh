#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# smoke-ckpt.sh FAULTLINE_BENCH - run the checkpoint workloads
# (`--quick --json dirty-collect ckpt-write lazy-restore live-snapshot`) and
# check that every line has its fields, every mode ran, no line is an error,
# the numbers are positive and every checked page held the right bytes.
# No timing assertion: the numbers are whatever this machine gives.
#
# Exit: 0 pass, 1 fail, 77 skip (with the reason printed).

bench=$1
if [ -z "$bench" ] || [ ! -x "$bench" ]; then
	echo "FAIL: usage: smoke-ckpt.sh path/to/faultline-bench (got '$bench')"
	exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
	echo "SKIP: python3 is not installed"
	exit 77
fi
why=$("$bench" --check-uffd)
rc=$?
if [ $rc -eq 77 ]; then
	echo "SKIP: $why"
	exit 77
elif [ $rc -ne 0 ]; then
	echo "FAIL: faultline-bench --check-uffd exited $rc: $why"
	exit 1
fi

out=$(mktemp) || exit 1
err=$(mktemp) || { rm -f "$out"; exit 1; }
trap 'rm -f "$out" "$err"' EXIT

"$bench" --quick --json --timeout 120 dirty-collect ckpt-write lazy-restore live-snapshot \
	>"$out" 2>"$err"
rc=$?
if [ $rc -ne 0 ]; then
	echo "FAIL: faultline-bench exited $rc"
	cat "$err"
	exit 1
fi

python3 - "$out" <<'PY'
import json, sys

want = {
    "dirty-collect": (["mode", "mib", "dirty_pct", "dirty_pages", "ms", "ms_min", "ms_max",
                       "write_ms", "repeats", "bad_pages"], {"async", "sync"}),
    "ckpt-write": (["mode", "io", "mib", "file_mib", "ms", "mb_s", "cpu_ms", "ratio",
                    "repeats"], {"faultline", "raw"}),
    "lazy-restore": (["mode", "cache", "mib", "ws_pages", "first_ms", "total_ms", "repeats",
                      "bad_pages"], {"eager", "lazy", "lazy-ws"}),
    "live-snapshot": (["mode", "pattern", "mib", "span_mib", "ms", "writes_per_sec", "repeats"],
                      {"none", "live"}),
}
seen = {w: set() for w in want}
bad = []
for n, line in enumerate(open(sys.argv[1]), 1):
    try:
        o = json.loads(line)
    except ValueError:
        bad.append("line %d is not JSON: %r" % (n, line))
        continue
    if "target" in o:
        continue
    w = o.get("workload")
    if w not in want:
        bad.append("line %d: unknown workload %r" % (n, w))
        continue
    if "error" in o:
        # async tracking needs WP_ASYNC (6.7+): the one error we accept
        if not (w == "dirty-collect" and o.get("mode") == "async"):
            bad.append("line %d: %s %s: %s: %s" % (n, w, o.get("mode"), o["error"],
                                                    o.get("strerror")))
        seen[w].add(o.get("mode"))
        continue
    fields, _ = want[w]
    for f in fields:
        if f not in o:
            bad.append("line %d: %s lacks %s" % (n, w, f))
        elif isinstance(o[f], (int, float)) and f not in ("bad_pages",) and o[f] <= 0 \
                and not (w == "live-snapshot" and f == "writes_per_sec"):
            bad.append("line %d: %s %s = %r, not positive" % (n, w, f, o[f]))
    if o.get("bad_pages", 0):
        bad.append("line %d: %s %s: %d pages held wrong bytes" % (n, w, o["mode"],
                                                                 o["bad_pages"]))
    seen[w].add(o.get("mode"))
for w, (_, modes) in want.items():
    if seen[w] != modes:
        bad.append("%s: modes %s, want %s" % (w, sorted(seen[w]), sorted(modes)))
for b in bad:
    print("FAIL: " + b)
if bad:
    sys.exit(1)
print("ok: every checkpoint workload and mode ran, every field present, no bad page")
PY
