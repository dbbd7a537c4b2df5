#!/usr/bin/env bash
# The JVM: its heap is one PROT_NONE reservation, committed piece by piece
# with mmap(MAP_FIXED) over it. A program that fills 300 arrays of 1 MiB and
# sums them, with the Parallel and the G1 collector: natively, under the shim
# (the committed heap must be managed) and under a 128 MiB budget (the same
# output, evictions and page-ins, resident memory held near the budget).
# The program: Big.java.
. "$(dirname "$0")/lib.sh"
need java openjdk-17-jre-headless
need javac openjdk-17-jdk-headless
plan 10
probe_uffd
F=$FL_CLI
javac -d "$WORK" "$SRCDIR/tests/preload/Big.java" || { echo "Bail out! javac failed"; exit 1; }
BUDGET_PAGES=$((128 << 20 >> 12))

# the JVM's own statistics line (a wrapper's, if any, comes before it)
jvm_line() { grep '"program":"java"' "$1" | tail -n 1 > "$1.last"; echo "$1.last"; }

# collector NAME -XX:+UseNAMEGC heap
collector() {
	local name=$1 flag=$2 heap=$3 want out st b ev pk hwm
	local jvm=(java -Xmx"$heap" "$flag" -Xshare:auto -cp "$WORK" Big 300)

	want=$("${jvm[@]}")
	[[ $want == "sum "* ]]; ok $? "$name natively: $want"

	watched 120 "$WORK/$name.out" "$F" run --stats-file "$WORK/$name.json" -- "${jvm[@]}" \
		2> "$WORK/$name.err"
	out=$(cat "$WORK/$name.out")
	[ "$out" = "$want" ]; ok $? "$name under the shim: the same output (${out:-nothing})"
	[ "$out" != "$want" ] && diag "$(tail -n 5 "$WORK/$name.err")"
	st=$(jvm_line "$WORK/$name.json")
	b=$(json_get "$st" 's["managed"]["bytes_peak"]')
	[ "${b:-0}" -ge $((300 << 20)) ]
	ok $? "$name: the committed heap is managed ($(json_get "$st" 's["managed"]["mmaps"]') mappings, $b bytes at peak)"

	watched 150 "$WORK/$name-b.out" "$F" run --budget 128M --stats-file "$WORK/$name-b.json" \
		-- "${jvm[@]}" 2> "$WORK/$name-b.err"
	out=$(cat "$WORK/$name-b.out")
	[ "$out" = "$want" ]; ok $? "$name under --budget 128M: the same output (${out:-nothing})"
	[ "$out" != "$want" ] && diag "$(tail -n 5 "$WORK/$name-b.err")"
	st=$(jvm_line "$WORK/$name-b.json")
	ev=$(json_get "$st" 's["counters"]["far_evictions"]')
	pk=$(json_get "$st" 's["counters"]["far_resident_peak"]')
	hwm=$(json_get "$st" 's["process"]["vm_hwm"]')
	diag "$name under --budget 128M: far_evictions=$ev far_pageins=$(json_get "$st" 's["counters"]["far_pageins"]') managed resident peak ${pk} pages, process peak RSS $hwm bytes; at exit anonymous RSS $(json_get "$st" 's["process"]["rss_anon"]') bytes, $(json_get "$st" 's["process"]["managed_resident"]') of them managed"
	# the heap alone is over 300 MiB: held to the budget it must evict.
	# Its resident peak: the budget is not a hard limit (README, known
	# limits): each handler may install a 4 MiB fault-around batch past it,
	# and a throttled fault goes ahead when the evictor's batches free
	# nothing, as while the collector's threads write the heap. Quiet, the
	# peak is 1-4 % over; at load 6 on 2 vCPUs up to 15 %. A heap left
	# uncounted would grow without bound: the test allows 25 %.
	[ "${ev:-0}" -gt $((128 << 20 >> 12)) ] && [ "${pk:-0}" -gt 0 ] &&
		[ "$pk" -le $((BUDGET_PAGES * 5 / 4)) ]
	ok $? "$name: the heap was evicted ($ev pages), resident memory held to the budget + 25 % ($pk of $BUDGET_PAGES pages)"
}

collector parallel -XX:+UseParallelGC 512m
# G1 gives an array of 1 MiB and a header two regions (humongous): more heap
collector g1 -XX:+UseG1GC 1g
done_testing
