#!/usr/bin/env bash
# The shim beside another allocator: jemalloc and tcmalloc after the shim in
# the lookup order (as a program linked with them has it) and before it
# (LD_PRELOADed first), under a budget. Every call of the malloc family
# (alloc-mix.c), the bytes compared with a native run; small requests must
# reach the program's allocator, large ones or its extents be managed, and
# nothing may deadlock (the runtime never allocates from the program's
# allocator).
. "$(dirname "$0")/lib.sh"
plan 13
probe_uffd
F=$FL_CLI
LIB=/usr/lib/x86_64-linux-gnu
JE=$LIB/libjemalloc.so.2
TC=$LIB/libtcmalloc_minimal.so.4
SHIM=$(readlink -f "$FL_SHIM")

want=$("$ALLOC_MIX" 64 2>/dev/null)
[[ $want == "digest "* ]]; ok $? "native run: $want"

# last_line FILE: the last statistics line of alloc-mix (not of a wrapper)
last_line() { grep '"program":"preload-alloc-m"' "$1" | tail -n 1 > "$1.last"; echo "$1.last"; }

# shim first (the program's own allocator after it): 64 MiB under 16 MiB
# shim_first NAME LIBRARY
shim_first() {
	local name=$1 lib=$2 out st
	rm -f "$WORK/$name.json"
	LD_PRELOAD=$lib watched 60 "$WORK/$name.out" "$F" run --budget 16M \
		--stats-file "$WORK/$name.json" -- "$ALLOC_MIX" 64 2> "$WORK/$name.err"
	out=$(cat "$WORK/$name.out")
	[ "$out" = "$want" ]; ok $? "$name after the shim, 16 MiB budget: same digest (${out:-nothing})"
	[ "$out" != "$want" ] && diag "$(cat "$WORK/$name.err")"
	st=$(last_line "$WORK/$name.json")
	grep -q "small requests: $name (its statistics grew with them)" "$WORK/$name.err"
	ok $? "$name after the shim: small requests reach $name ($(grep -o 'small requests: .*' "$WORK/$name.err"))"
	check_far "$st" "$name after the shim"
}

# allocator first: it serves everything, maps its extents through the shim
# alloc_first NAME LIBRARY
alloc_first() {
	local name=$1 lib=$2 out st
	rm -f "$WORK/$name-first.json"
	LD_PRELOAD=$lib:$SHIM FAULTLINE_BUDGET=16M FAULTLINE_STATS=json \
		FAULTLINE_STATS_FILE="$WORK/$name-first.json" \
		watched 60 "$WORK/$name-first.out" "$ALLOC_MIX" 64 2> "$WORK/$name-first.err"
	out=$(cat "$WORK/$name-first.out")
	[ "$out" = "$want" ]; ok $? "$name before the shim, 16 MiB budget: same digest, no deadlock (${out:-nothing})"
	[ "$out" != "$want" ] && diag "$(cat "$WORK/$name-first.err")"
	st=$(last_line "$WORK/$name-first.json")
	diag "$name first: managed $(json_get "$st" 's["managed"]') evictions $(json_get "$st" 's["counters"]["far_evictions"]')"
}

if [ -e "$JE" ]; then
	shim_first jemalloc "$JE"
	alloc_first jemalloc "$JE"
	m=$(json_get "$WORK/jemalloc-first.json.last" 's["managed"]["mmaps"]')
	[ "${m:-0}" -gt 0 ]; ok $? "jemalloc before the shim: its extents (mmap) are managed ($m mappings)"
	check_far "$WORK/jemalloc-first.json.last" "jemalloc before the shim"
else
	for i in 1 2 3 4 5 6; do
		echo "ok $((TAP_N += 1)) # SKIP $JE is not installed (Debian package libjemalloc2)"
	done
fi

if [ -e "$TC" ]; then
	shim_first tcmalloc "$TC"
	# tcmalloc takes its memory with sbrk(2) first: nothing for the shim
	# to manage, but the run must still be right
	alloc_first tcmalloc "$TC"
else
	for i in 1 2 3 4; do
		echo "ok $((TAP_N += 1)) # SKIP $TC is not installed (Debian package libtcmalloc-minimal4)"
	done
fi

# glibc alone: large blocks are the shim's, small ones glibc's
out=$("$F" run --budget 16M --stats-file "$WORK/glibc.json" -- "$ALLOC_MIX" 64 2> "$WORK/glibc.err")
[ "$out" = "$want" ] && grep -q "small requests: glibc" "$WORK/glibc.err"
ok $? "glibc's malloc under the shim: same digest"
b=$(json_get "$(last_line "$WORK/glibc.json")" 's["managed"]["malloc_blocks"]')
[ "${b:-0}" -ge 16 ]; ok $? "glibc's malloc: the 4 MiB blocks are managed ($b blocks)"
done_testing
