#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# smoke.sh FAULTLINE_BENCH - run `faultline-bench --quick --json first-touch`,
# a small `farmem-scan` and a small `farmem-sort`, and check that every line
# has every field, that the measured numbers are positive and that every
# page held the right bytes; as root, that farmem-sort's kernel baseline
# (memcg) ran and named its swap, else that it says why it did not. No
# timing assertion: the numbers are whatever this machine gives.
#
# Exit: 0 pass, 1 fail, 77 skip (with the reason printed).

bench=$1
if [ -z "$bench" ] || [ ! -x "$bench" ]; then
	echo "FAIL: usage: smoke.sh path/to/faultline-bench (got '$bench')"
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

# --timeout: a run that hangs (a fault nobody serves) ends the bench with exit 3
"$bench" --quick --json --timeout 60 first-touch >"$out" 2>"$err"
rc=$?
if [ $rc -ne 0 ]; then
	echo "FAIL: faultline-bench --quick --json first-touch exited $rc"
	cat "$err"
	exit 1
fi

python3 - "$out" <<'PYEOF'
import json, sys

MODES = {"native", "native-thp", "bare-thread", "bare", "spf", "region", "global", "adaptive",
         "thread"}
RUNTIME = {"spf", "region", "global", "adaptive", "thread"}
POSITIVE = ["page_size", "fault_threads", "pages", "faults", "seconds",
            "faults_per_sec", "pages_per_sec", "ns_per_page",
            "p50_ns", "p99_ns", "p999_ns", "repeats"]
NONNEG = ["handler_threads", "churn", "churn_achieved"]
STRINGS = {"workload": {"first-touch"}, "mode": MODES,
           "order": {"seq", "random"}, "access": {"read", "write"},
           "placement": {"same", "cross", "any"}}
TIERS = ["spf_ok", "region_lock", "global_lock"]

fails = []
seen = set()
lines = 0
targets = 0

def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)

with open(sys.argv[1]) as f:
    for n, text in enumerate(f, 1):
        text = text.strip()
        if not text:
            continue
        try:
            o = json.loads(text)
        except ValueError as e:
            fails.append("line %d: not JSON (%s): %s" % (n, e, text[:80]))
            continue
        if "target" in o:
            targets += 1
            for k in ("detail", "ratio", "goal", "met"):
                if k not in o:
                    fails.append("line %d: target without %s" % (n, k))
            continue
        lines += 1
        where = "line %d (%s %s)" % (n, o.get("mode"), o.get("placement"))
        if "error" in o:
            fails.append("%s: run failed: %s: %s" % (where, o["error"], o.get("strerror")))
            continue
        for k, allowed in STRINGS.items():
            if o.get(k) not in allowed:
                fails.append("%s: %s = %r" % (where, k, o.get(k)))
        seen.add(o.get("mode"))
        for k in POSITIVE:
            if not num(o.get(k)) or o[k] <= 0:
                fails.append("%s: %s = %r, want a positive number" % (where, k, o.get(k)))
        for k in NONNEG:
            if not num(o.get(k)) or o[k] < 0:
                fails.append("%s: %s = %r, want a number >= 0" % (where, k, o.get(k)))
        if not num(o.get("fault_around")) or o["fault_around"] < -1:
            fails.append("%s: fault_around = %r" % (where, o.get("fault_around")))
        if o.get("bad_pages") != 0:
            fails.append("%s: bad_pages = %r: pages held the wrong bytes" % (where, o.get("bad_pages")))
        if o.get("mode") in RUNTIME:
            t = o.get("tiers")
            if not isinstance(t, dict):
                fails.append("%s: no tiers object" % where)
                continue
            for k in TIERS:
                if not num(t.get(k)) or t[k] < 0:
                    fails.append("%s: tiers.%s = %r" % (where, k, t.get(k)))
            a = t.get("spf_abort")
            if not isinstance(a, dict) or not num(a.get("total")):
                fails.append("%s: tiers.spf_abort.total missing" % where)
            if num(t.get("spf_ok")) and t["spf_ok"] + t.get("region_lock", 0) + t.get("global_lock", 0) <= 0:
                fails.append("%s: no fault resolved on any tier" % where)

if lines == 0:
    fails.append("no result lines")
if targets == 0:
    fails.append("no target lines")
missing = MODES - seen
if missing:
    fails.append("modes missing: %s" % ", ".join(sorted(missing)))
for m in fails:
    print("FAIL:", m)
if fails:
    sys.exit(1)
print("ok: %d result lines, %d target lines, modes: %s" % (lines, targets, ", ".join(sorted(seen))))
PYEOF
rc=$?
[ $rc -ne 0 ] && exit $rc

# far memory: a small farmem-scan (warm: the page cache is left alone), every
# field present, every word right, the metadata figure within its target
# (8 B per page)
"$bench" --json --timeout 60 --pages 1024 --far-io warm farmem-scan >"$out" 2>"$err"
rc=$?
if [ $rc -ne 0 ]; then
	echo "FAIL: faultline-bench --json --pages 1024 --far-io warm farmem-scan exited $rc"
	cat "$err"
	exit 1
fi
python3 - "$out" <<'PYEOF'
import json, sys

fails, seen = [], set()
for n, text in enumerate(open(sys.argv[1]), 1):
    o = json.loads(text)
    where = "farmem-scan line %d (%s %s)" % (n, o.get("mode"), o.get("order"))
    if "error" in o:
        fails.append("%s: run failed: %s: %s" % (where, o["error"], o.get("strerror")))
        continue
    seen.add((o.get("mode"), o.get("order")))
    for k in ("pages", "seconds", "pages_per_sec", "budget_pages"):
        if not isinstance(o.get(k), (int, float)) or o[k] <= 0:
            fails.append("%s: %s = %r, want a positive number" % (where, k, o.get(k)))
    if o.get("bad_words") != 0:
        fails.append("%s: bad_words = %r: wrong bytes read" % (where, o.get("bad_words")))
    if o.get("mode") == "faultline":
        m = o.get("metadata_bytes_per_page")
        if not isinstance(m, (int, float)) or not 0 < m <= 8:
            fails.append("%s: metadata_bytes_per_page = %r, want (0, 8]" % (where, m))
        if o.get("fault_threads") not in (1, 4):
            fails.append("%s: fault_threads = %r" % (where, o.get("fault_threads")))
        if not isinstance(o.get("pageins"), (int, float)) or o["pageins"] <= 0:
            fails.append("%s: pageins = %r: nothing came from the store" % (where, o.get("pageins")))
    elif o.get("mode") == "raw-store":
        if o.get("queue_depth") not in (1, 4, 32):
            fails.append("%s: queue_depth = %r" % (where, o.get("queue_depth")))
    else:
        fails.append("%s: unknown mode" % where)
want = {(m, d) for m in ("faultline", "raw-store") for d in ("seq", "random")}
if want - seen:
    fails.append("farmem-scan lines missing: %r" % sorted(want - seen))
for m in fails:
    print("FAIL:", m)
if fails:
    sys.exit(1)
print("ok: farmem-scan, %d mode/order pairs" % len(seen))
PYEOF
rc=$?
[ $rc -ne 0 ] && exit $rc

# farmem-sort: faultline against the kernel's own baseline (memcg: the same
# sort in a child in a memory cgroup limited to the budget, with swap). As
# root the baseline must run and name its swap; otherwise its row and the
# target line must say why there is none. 16384 pages: a 16 MiB budget, a
# group small enough to turn its LRU over fast (memswap.h says why that
# matters), in ~10-30 s on 2 busy vCPUs.
root=no
[ "$(id -u)" = 0 ] && root=yes
"$bench" --json --pages 16384 farmem-sort >"$out" 2>"$err"
rc=$?
if [ $rc -ne 0 ]; then
	echo "FAIL: faultline-bench --json --pages 16384 farmem-sort exited $rc"
	cat "$err"
	exit 1
fi
python3 - "$out" "$root" <<'PYEOF'
import json, sys

root = sys.argv[2] == "yes"
fails, rows, target = [], {}, None
for n, text in enumerate(open(sys.argv[1]), 1):
    o = json.loads(text)
    if o.get("target") == "farmem_sort_vs_memcg":
        target = o
    elif o.get("workload") == "farmem-sort":
        rows[o.get("mode")] = o
f, m = rows.get("faultline"), rows.get("memcg")
if not f:
    fails.append("no farmem-sort faultline line")
elif "error" in f:
    fails.append("farmem-sort faultline: run failed: %s" % f["error"])
else:
    for k in ("pages", "seconds", "budget_pages", "pageins"):
        if not isinstance(f.get(k), (int, float)) or f[k] <= 0:
            fails.append("farmem-sort faultline: %s = %r, want a positive number" % (k, f.get(k)))
    if f.get("bad_words") != 0:
        fails.append("farmem-sort faultline: bad_words = %r: the sort went wrong" % f.get("bad_words"))
if not m:
    fails.append("no farmem-sort memcg line")
elif m.get("swap") not in ("existing", "zram", "file", "none"):
    fails.append("farmem-sort memcg: swap = %r, want existing, zram, file or none" % m.get("swap"))
elif root:
    if "error" in m:
        fails.append("farmem-sort memcg (as root): the baseline failed: %s (swap %s %s)"
                     % (m["error"], m.get("swap"), m.get("swap_device", "")))
    elif m.get("swap") == "none" or not m.get("swap_device"):
        fails.append("farmem-sort memcg: ran without naming its swap: %r" % m)
    else:
        if not isinstance(m.get("seconds"), (int, float)) or m["seconds"] <= 0:
            fails.append("farmem-sort memcg: seconds = %r" % m.get("seconds"))
        if m.get("bad_words") != 0:
            fails.append("farmem-sort memcg: bad_words = %r" % m.get("bad_words"))
else:
    if not m.get("error"):
        fails.append("farmem-sort memcg (not root): no error saying why there is no baseline")
    else:
        print("skip: the memcg baseline needs root; its row says: %s" % m["error"])
if not target:
    fails.append("no farmem_sort_vs_memcg target line")
elif not ({"detail", "ratio", "goal", "met"} <= target.keys()):
    fails.append("farmem_sort_vs_memcg: fields missing: %r" % target)
elif isinstance(target["ratio"], (int, float)):
    if target["ratio"] <= 0 or "error" in target:
        fails.append("farmem_sort_vs_memcg: %r" % target)
elif target["ratio"] != "n/a" or not target.get("error") or target["met"] is not False:
    fails.append("farmem_sort_vs_memcg without a ratio must say n/a, why, met false: %r" % target)
elif root:
    fails.append("farmem_sort_vs_memcg (as root): no ratio: %s" % target.get("error"))
for x in fails:
    print("FAIL:", x)
if fails:
    sys.exit(1)
print("ok: farmem-sort, faultline %.2f s, memcg %s (swap %s %s)" % (
    f["seconds"], "%.2f s" % m["seconds"] if "seconds" in m else "none",
    m.get("swap"), m.get("swap_device", "")))
PYEOF
