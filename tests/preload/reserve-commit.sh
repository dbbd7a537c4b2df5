#!/usr/bin/env bash
# Reserve-then-commit memory (reserve-commit.c: a PROT_NONE reservation
# committed piece by piece, uncommitted and committed again, a piece made
# read-only for a while, part of a piece unmapped, malloc blocks with a guard
# page), both ways a runtime commits: mmap(MAP_FIXED) over the reservation
# (the JVM) and mprotect (V8).
# Each way: the same digest natively, under the shim and under a budget a
# quarter of the committed memory; the committed pieces are managed, and the
# budget holds for them after the cuts. Then side tables committed a page at
# a time (the JVM's G1).
. "$(dirname "$0")/lib.sh"
plan 25
probe_uffd
F=$FL_CLI

# under_budget NAME MIB ARGS...: reserve-commit ARGS under --budget MIB M:
# the digest $want, far memory at work, resident memory held to the budget
# + 25 % (see java.sh) + one fault-around batch of 4 MiB
under_budget() {
	local name=$1 mib=$2 out pk bp
	shift 2
	watched 100 "$WORK/budget-$name.out" "$F" run --budget ${mib}M \
		--stats-file "$WORK/budget-$name.json" -- "$RESERVE_COMMIT" "$@"
	out=$(cat "$WORK/budget-$name.out")
	[ "$out" = "$want" ]; ok $? "$name, under --budget ${mib}M: the same digest (${out:-nothing})"
	check_far "$WORK/budget-$name.json" "reserve-commit $name under --budget ${mib}M"
	pk=$(json_get "$WORK/budget-$name.json" 's["counters"]["far_resident_peak"]')
	bp=$((mib << 20 >> 12))
	[ "${pk:-0}" -gt 0 ] && [ "$pk" -le $((bp * 5 / 4 + 1024)) ]
	ok $? "$name: resident memory held to the budget + 25 % + 4 MiB ($pk of $bp pages at peak)"
}

for how in mmap mprotect; do
	want=$("$RESERVE_COMMIT" 64 $how)
	[[ $want == "digest "* ]]; ok $? "$how, native: $want"

	out=$("$F" run --stats-file "$WORK/plain-$how.json" -- "$RESERVE_COMMIT" 64 $how)
	[ "$out" = "$want" ]; ok $? "$how, under the shim: the same digest (${out:-nothing})"
	m=$(json_get "$WORK/plain-$how.json" 's["managed"]["mmaps"]')
	# 16 pieces, piece 1 again, piece 0 writable again, the last 64 MiB: 19
	[ "${m:-0}" -ge 19 ]; ok $? "$how: every committed piece is managed ($m mappings; 19 commits)"
	# each guarded block leaves whole at free(), so the next one, mapped
	# at the same address, registers
	b=$(json_get "$WORK/plain-$how.json" 's["managed"]["malloc_blocks"]')
	e=$(json_get "$WORK/plain-$how.json" 's["managed"]["register_errors"]')
	[ "${b:-0}" -ge 4 ] && [ "${e:-1}" -eq 0 ]
	ok $? "$how: the guarded blocks are managed ($b blocks, $e registration errors)"

	under_budget $how 32 64 $how
done

# The evictor without UFFDIO_MOVE (Linux 6.1's) copies a victim through the
# program's mapping: a managed page the program made PROT_NONE (the
# uncommits, the read-only piece, the guard pages) must have left the
# runtime first, or the copy is a SIGSEGV.
watched 100 "$WORK/copy.out" env FAULTLINE_EVICT=copy "$F" run --budget 32M \
	--stats-file "$WORK/copy.json" -- "$RESERVE_COMMIT" 64 mprotect
out=$(cat "$WORK/copy.out")
[ "$out" = "$want" ]; ok $? "mprotect, copying evictor: the same digest (${out:-nothing})"
ev=$(json_get "$WORK/copy.json" 's["counters"]["far_evictions"]')
mv=$(json_get "$WORK/copy.json" 's["counters"]["far_evict_move"]')
[ "${ev:-0}" -gt 0 ] && [ "${mv:-1}" -eq 0 ]
ok $? "mprotect: the copying evictor at work ($ev evictions, $mv by MOVE)"

# Side tables committed a page or a few at a time (G1's card table and
# bitmaps): each commit joins the region that ends where it begins, so a
# table committed in address order is one region, and the budget covers it.
want=$("$RESERVE_COMMIT" 32 pages)
[[ $want == "digest "* ]]; ok $? "pages, native: $want"
out=$("$F" run --stats-file "$WORK/pages.json" -- "$RESERVE_COMMIT" 32 pages)
[ "$out" = "$want" ]; ok $? "pages, under the shim: the same digest (${out:-nothing})"
n=$(json_get "$WORK/pages.json" 's["regions"]')
g=$(json_get "$WORK/pages.json" 's["counters"]["regions_resized"]')
# 8192 pages in ~3300 commits, 2048 committed again one by one: a region
# grown ~5300 times; the quarter cut out leaves two, and the 64 pages
# committed downwards are a region each
[ "${g:-0}" -ge 5000 ] && [ "${n:-999}" -le 70 ]
ok $? "pages: commits joined the region below them ($g resizes, $n regions)"
r=$(json_get "$WORK/pages.json" 's["process"]["rss_anon"]')
m=$(json_get "$WORK/pages.json" 's["process"]["managed_resident"]')
[ "${m:-0}" -gt 0 ] && [ $((m * 10)) -ge $((${r:-1} * 9)) ]
ok $? "pages: the tables are managed ($m of $r bytes of anonymous memory)"
# (a cut reads back only the pages it takes out: none past it, unthrottled)
under_budget pages 8 32 pages

# The same with malloc blocks only: a program with no mapping of its own
want=$("$RESERVE_COMMIT" blocks)
watched 100 "$WORK/blocks.out" env FAULTLINE_EVICT=copy "$F" run --budget 32M \
	--stats-file "$WORK/blocks.json" -- "$RESERVE_COMMIT" blocks
out=$(cat "$WORK/blocks.out")
[[ $want == "digest "* ]] && [ "$out" = "$want" ]
ok $? "blocks, copying evictor: the same digest (${out:-nothing}, native ${want:-nothing})"
check_far "$WORK/blocks.json" "blocks under --budget 32M"
done_testing
