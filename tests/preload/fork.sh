#!/usr/bin/env bash
# A program that forks and checks its child's view of managed memory; also
# read(2) into and a contended mutex in managed memory.
. "$(dirname "$0")/lib.sh"
probe_uffd
plan 7
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
done_testing
