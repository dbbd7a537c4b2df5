#!/usr/bin/env bash
# A program that forks and checks its child's view of managed memory; also
# read(2) into and a contended mutex in managed memory.
. "$(dirname "$0")/lib.sh"
probe_uffd
plan 4
"$FORK_VIEW" > "$WORK/native.out"
ok $? "fork-view runs natively"
"$FL_CLI" run --stats-file="$WORK/st.json" -- "$FORK_VIEW" > "$WORK/shim.out"
ok $? "fork-view under the shim exits 0 (the child saw the parent's bytes)"
cmp -s "$WORK/native.out" "$WORK/shim.out"
ok $? "fork-view under the shim prints the same bytes"
sed 's/^/# /' "$WORK/shim.out"
check_managed "$WORK/st.json" fork-view
done_testing
