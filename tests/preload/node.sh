#!/usr/bin/env bash
# node: a typed array of 192 MiB (V8 allocates its backing store with the
# C allocator: a managed block) written and hashed, natively, under the shim
# and under a 64 MiB budget; the hashes must match and the statistics show
# the array managed and evicted.
. "$(dirname "$0")/lib.sh"
need node nodejs
plan 5
probe_uffd
F=$FL_CLI
want=$(node "$SRCDIR/tests/preload/typed-array.js")
[ ${#want} = 64 ]; ok $? "native: $want"

out=$("$F" run --stats-file "$WORK/plain.json" -- node "$SRCDIR/tests/preload/typed-array.js")
[ "$out" = "$want" ]; ok $? "under the shim: the same hash"
b=$(json_get "$WORK/plain.json" 's["managed"]["bytes_peak"]')
[ "${b:-0}" -ge $((192 << 20)) ]; ok $? "the array's 192 MiB are managed ($b bytes at peak)"

watched 100 "$WORK/budget.out" "$F" run --budget 64M --stats-file "$WORK/budget.json" -- node "$SRCDIR/tests/preload/typed-array.js"
[ "$(cat "$WORK/budget.out")" = "$want" ]; ok $? "under --budget 64M: the same hash"
check_far "$WORK/budget.json" "node under --budget 64M"
done_testing
