#!/usr/bin/env bash
# sort(1) of a ~40 MB file with a 100 MB buffer: same bytes out.
. "$(dirname "$0")/lib.sh"
need sort coreutils
[ -x "$PY" ] || skip_all "$PY is not installed (Debian package python3)"
probe_uffd
plan 5
$PY -c '
import random, sys
r = random.Random(7)
with open(sys.argv[1], "w") as f:
    for i in range(1500000):
        f.write("%016x %08d %s\n" % (r.getrandbits(64), i, "xyz"[i % 3] * (i % 5)))
' "$WORK/in.txt"
diag "input: $(wc -c < "$WORK/in.txt") bytes"
LC_ALL=C sort -S 100M "$WORK/in.txt" > "$WORK/native.out"
ok $? "sort runs natively"
LC_ALL=C "$FL_CLI" run --stats-file="$WORK/st.json" -- sort -S 100M "$WORK/in.txt" > "$WORK/shim.out"
cmp -s "$WORK/native.out" "$WORK/shim.out"
ok $? "sort under the shim prints the same bytes"
check_managed "$WORK/st.json" sort
# the file is larger than the budget, and so is sort's buffer
# 30-60 s on 2 loaded vCPUs: a run past 150 s is reported with its threads' stacks
watched 150 "$WORK/far.out" env LC_ALL=C "$FL_CLI" run --budget 32M --stats-file="$WORK/far.json" -- \
	sort -S 100M "$WORK/in.txt"
cmp -s "$WORK/native.out" "$WORK/far.out"
ok $? "sort under a 32 MiB budget prints the same bytes"
check_far "$WORK/far.json" "sort, 32M budget"
done_testing
