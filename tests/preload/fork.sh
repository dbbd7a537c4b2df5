#!/usr/bin/env bash
# A program that forks and checks its child's view of managed memory; also
# read(2) into and a contended mutex in managed memory. Then a server's
# shape (fork-workers.c): workers forked without exec, one of them forking
# its own, each managing its block with a runtime of its own.
. "$(dirname "$0")/lib.sh"
probe_uffd
plan 11
"$FORK_VIEW" > "$WORK/native.out"
ok $? "fork-view runs natively"
"$FL_CLI" run --stats-file="$WORK/st.json" -- "$FORK_VIEW" > "$WORK/shim.out"
ok $? "fork-view under the shim exits 0 (the child saw the parent's bytes)"
cmp -s "$WORK/native.out" "$WORK/shim.out"
ok $? "fork-view under the shim prints the same bytes"
sed 's/^/# /' "$WORK/shim.out"
check_managed "$WORK/st.json" fork-view
# ~76 MiB managed under an 8 MiB budget: fork() reads the evicted pages back
# first (the child's copy is plain memory: an evicted page would read zeros)
"$FL_CLI" run --budget 8M --stats-file="$WORK/far.json" -- "$FORK_VIEW" > "$WORK/far.out"
ok $? "fork-view under an 8 MiB budget exits 0 (the child saw the parent's bytes)"
cmp -s "$WORK/native.out" "$WORK/far.out"
ok $? "fork-view under an 8 MiB budget prints the same bytes"
check_far "$WORK/far.json" "fork-view, 8M budget"

# forked workers: 48 MiB each (the second-level worker 24 MiB) under a
# 16 MiB budget each
"$FORK_WORKERS" 48 > "$WORK/fw-native.out"
ok $? "fork-workers runs natively: $(tr '\n' ' ' < "$WORK/fw-native.out")"
watched 120 "$WORK/fw.out" "$FL_CLI" run --budget 16M --stats-file="$WORK/fw.json" \
	-- "$FORK_WORKERS" 48
cmp -s "$WORK/fw-native.out" "$WORK/fw.out"
ok $? "fork-workers under a 16 MiB budget: the same checksums"
# one line per process: the parent (no runtime) and three workers
$PY - "$WORK/fw.json" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
w = [s for s in lines if s["runtime"]]
for s in lines:
    c = s["counters"]
    print("# pid %d: runtime %s, %d blocks, %d bytes at peak, %d evictions, %d page-ins, "
          "resident peak %d pages" % (s["pid"], s["runtime"], s["managed"]["malloc_blocks"],
          s["managed"]["bytes_peak"], c["far_evictions"], c["far_pageins"],
          c["far_resident_peak"]))
sys.exit(0 if len(w) == 3 and len({s["pid"] for s in w}) == 3 and
         all(s["managed"]["bytes_peak"] >= 24 << 20 for s in w) else 1)
PY
ok $? "each of the three workers managed its own block with a runtime of its own"
$PY - "$WORK/fw.json" <<'PY'
import json, sys
w = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
w = [s for s in w if s["runtime"]]
sys.exit(0 if w and all(s["counters"]["far_evictions"] > 0 and s["counters"]["far_pageins"] > 0
                        for s in w) else 1)
PY
ok $? "each worker's budget evicted and paged in its own pages"
done_testing
