#!/usr/bin/env bash
# node: a typed array of 192 MiB (V8 allocates its backing store with the
# C allocator: a managed block) written and hashed, natively, under the shim
# and under a 64 MiB budget; the hashes must match and the statistics show
# the array managed and evicted. Then V8's own heap (js-heap.js): its pages
# are 256 KiB, reserved PROT_NONE and committed with mprotect, so under
# --min-region 256K and a 64 MiB budget they are managed and evicted, and
# the checksum is the native one.
. "$(dirname "$0")/lib.sh"
need node nodejs
plan 8
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

js=$SRCDIR/tests/preload/js-heap.js
want=$(node "$js")
watched 120 "$WORK/heap.out" "$F" run --min-region 256K --budget 64M \
	--stats-file "$WORK/heap.json" -- node "$js"
out=$(cat "$WORK/heap.out")
[ -n "$want" ] && [ "$out" = "$want" ]; ok $? "V8's heap under --budget 64M: the same checksum (${out:-nothing}, native $want)"
m=$(json_get "$WORK/heap.json" 's["managed"]["mmaps"]')
# about 130 MiB of 256 KiB pages, each committed on its own
[ "${m:-0}" -ge 300 ]; ok $? "V8's heap pages are managed ($m mappings)"
check_far "$WORK/heap.json" "V8's heap under --budget 64M"
done_testing
