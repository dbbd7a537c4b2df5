#!/usr/bin/env bash
# Reserve-then-commit memory (reserve-commit.c: a PROT_NONE reservation
# committed piece by piece with mmap(MAP_FIXED), uncommitted and committed
# again, part of a piece unmapped): the same digest natively, under the shim
# and under a budget a quarter of the committed memory; the committed pieces
# are managed, and the budget holds for them after the cuts.
. "$(dirname "$0")/lib.sh"
plan 6
probe_uffd
F=$FL_CLI

want=$("$RESERVE_COMMIT" 64)
[[ $want == "digest "* ]]; ok $? "native: $want"

out=$("$F" run --stats-file "$WORK/plain.json" -- "$RESERVE_COMMIT" 64)
[ "$out" = "$want" ]; ok $? "under the shim: the same digest (${out:-nothing})"
m=$(json_get "$WORK/plain.json" 's["managed"]["mmaps"]')
# 16 pieces, piece 1 again, the last 64 MiB: 18 commits
[ "${m:-0}" -ge 18 ]; ok $? "every committed piece is managed ($m mappings; 18 commits)"

watched 100 "$WORK/budget.out" "$F" run --budget 32M --stats-file "$WORK/budget.json" \
	-- "$RESERVE_COMMIT" 64
out=$(cat "$WORK/budget.out")
[ "$out" = "$want" ]; ok $? "under --budget 32M: the same digest (${out:-nothing})"
check_far "$WORK/budget.json" "reserve-commit under --budget 32M"
# the bound: 25 % (see java.sh), and one fault-around batch of 4 MiB
pk=$(json_get "$WORK/budget.json" 's["counters"]["far_resident_peak"]')
bp=$((32 << 20 >> 12))
[ "${pk:-0}" -gt 0 ] && [ "$pk" -le $((bp * 5 / 4 + 1024)) ]
ok $? "resident memory held to the budget + 25 % + 4 MiB ($pk of $bp pages at peak)"
done_testing
