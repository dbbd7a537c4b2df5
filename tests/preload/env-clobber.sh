#!/usr/bin/env bash
# A program that writes its process title over its environment strings
# (PostgreSQL, nginx, setproctitle) must see no difference under the shim,
# and the shim must still honour FAULTLINE_STORE and FAULTLINE_STATS_FILE,
# which it uses only after the strings are gone (first managed mapping,
# exit). Program: env-clobber.c.
. "$(dirname "$0")/lib.sh"
P=$ENV_CLOBBER
probe_uffd
plan 9

for mode in moved inplace; do
	want=$(ENV_CLOBBER_PROBE=kept "$P" $mode)
	out=$(ENV_CLOBBER_PROBE=kept FAULTLINE_BUDGET=16M FAULTLINE_STORE="$WORK/st.$mode" \
		FAULTLINE_STATS=json FAULTLINE_STATS_FILE="$WORK/stats.$mode.json" \
		LD_PRELOAD="$FL_SHIM" "$P" $mode 2>"$WORK/err.$mode")
	[ -n "$want" ] && [ "$out" = "$want" ]
	ok $? "$mode: the program's output is the same as without the shim"
	[ "$out" != "$want" ] && diag "want: $want" "got: $out" "$(cat "$WORK/err.$mode")"
	lines=$(grep -c '^{' "$WORK/stats.$mode.json" 2>/dev/null)
	regions=$(json_get "$WORK/stats.$mode.json" 's["counters"]["regions_registered"]' 2>/dev/null)
	[ "${lines:-0}" = 1 ] && ! grep -q '^{' "$WORK/err.$mode" && [ "${regions:-0}" -gt 0 ]
	ok $? "$mode: the statistics are in FAULTLINE_STATS_FILE, not on stderr (regions_registered=$regions)"
	ev=$(json_get "$WORK/stats.$mode.json" 's["counters"]["far_evictions"]' 2>/dev/null)
	size=$(stat -c %s "$WORK/st.$mode" 2>/dev/null)
	[ "${ev:-0}" -gt 0 ] && [ "${size:-0}" -gt 0 ]
	ok $? "$mode: evicted pages went to the FAULTLINE_STORE file (far_evictions=$ev, file size ${size:-none})"
	grep -v '^{' "$WORK/err.$mode" | sed 's/^/# stderr: /'
done

# the launcher's --store and --stats-file, same thing
want=$(ENV_CLOBBER_PROBE=kept "$P" moved)
out=$(ENV_CLOBBER_PROBE=kept "$FL_CLI" run --budget 16M --store "$WORK/st.run" \
	--stats-file "$WORK/stats.run.json" -- "$P" moved 2>"$WORK/err.run")
regions=$(json_get "$WORK/stats.run.json" 's["counters"]["regions_registered"]' 2>/dev/null)
[ "$out" = "$want" ] && [ "${regions:-0}" -gt 0 ] && ! grep -q '^{' "$WORK/err.run"
ok $? "faultline run --stats-file: same output, statistics in the file (regions_registered=$regions)"
ev=$(json_get "$WORK/stats.run.json" 's["counters"]["far_evictions"]' 2>/dev/null)
size=$(stat -c %s "$WORK/st.run" 2>/dev/null)
[ "${ev:-0}" -gt 0 ] && [ "${size:-0}" -gt 0 ]
ok $? "faultline run --store FILE: the file was used (far_evictions=$ev, file size ${size:-none})"

# a value longer than the shim keeps: a warning naming it, the default used
long=$(printf '%*s' 5000 '' | tr ' ' a)
out=$(FAULTLINE_STATS=json FAULTLINE_STATS_FILE="$WORK/$long" LD_PRELOAD="$FL_SHIM" \
	"$P" inplace 2>"$WORK/err.long")
grep -q "FAULTLINE_STATS_FILE='$WORK/aaa.*\.\.\.' is invalid (expected text of at most 4095 bytes); using the default ''" \
	"$WORK/err.long" && [ "$(grep -c '^{' "$WORK/err.long")" = 1 ] && [ "$out" = "$(ENV_CLOBBER_PROBE=kept "$P" inplace)" ]
ok $? "a FAULTLINE_STATS_FILE too long: a warning names it and the limit, statistics go to stderr"
grep -v '^{' "$WORK/err.long" | cut -c1-150 | sed 's/^/# stderr: /'
done_testing
