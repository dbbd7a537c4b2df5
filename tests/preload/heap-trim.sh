#!/usr/bin/env bash
# FAULTLINE_TRIM_HEAP: under a budget, while the runtime evicts, the pages of
# glibc's heap that the program freed go back to the kernel (heap-trim.c:
# 48 MiB freed under a pinned top, then a managed block 4x the budget written
# and read pass after pass). Without a budget or with the option off they
# stay, and nothing is trimmed.
. "$(dirname "$0")/lib.sh"
plan 6
probe_uffd
F=$FL_CLI

watched 60 "$WORK/on.out" "$F" run --budget 16M --stats-file "$WORK/on.json" -- "$HEAP_TRIM" 40
out=$(tr '\n' ' ' < "$WORK/on.out")
[ "$out" = "trimmed bad 0 " ]; ok $? "under --budget 16M the freed heap went back, every byte right (${out:-nothing})"
n=$(json_get "$WORK/on.json" 's["process"]["heap_trims"]')
ms=$(json_get "$WORK/on.json" 's["process"]["heap_trim_ms"]')
diag "heap_trims=$n heap_trim_ms=$ms far_evictions=$(json_get "$WORK/on.json" 's["counters"]["far_evictions"]')"
[ "${n:-0}" -gt 0 ]; ok $? "the statistics count the trims ($n, $ms ms)"

FAULTLINE_TRIM_HEAP=no watched 60 "$WORK/off.out" "$F" run --budget 16M \
	--stats-file "$WORK/off.json" -- "$HEAP_TRIM" 2
out=$(tr '\n' ' ' < "$WORK/off.out")
[ "$out" = "kept bad 0 " ]; ok $? "FAULTLINE_TRIM_HEAP=no: the freed heap stays (${out:-nothing})"
n=$(json_get "$WORK/off.json" 's["process"]["heap_trims"]')
[ "$n" = 0 ]; ok $? "FAULTLINE_TRIM_HEAP=no: no trims ($n)"

watched 60 "$WORK/nob.out" "$F" run --stats-file "$WORK/nob.json" -- "$HEAP_TRIM" 2
out=$(tr '\n' ' ' < "$WORK/nob.out")
[ "$out" = "kept bad 0 " ]; ok $? "no budget: the freed heap stays (${out:-nothing})"
n=$(json_get "$WORK/nob.json" 's["process"]["heap_trims"]')
[ "$n" = 0 ]; ok $? "no budget: no trims ($n)"
done_testing
