#!/usr/bin/env bash
# faultline top on a running program: the counters file (mode, owner,
# removed at exit, stale ones), the frames it prints checked against the
# program's own statistics, run --stats-interval's JSON lines, faultline
# plot, and the errors of each.
. "$(dirname "$0")/lib.sh"
F=$FL_CLI
plan 33
probe_uffd

# $LIVE_PROG DIR: 64 MiB written over and over (here under a 16 MiB budget)
# until DIR/idle; then DIR/done, and no memory touched until DIR/stop

# wait_for PATH SECS: until PATH exists
wait_for() {
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		[ -e "$1" ] && return 0
		sleep 0.05
	done
	return 1
}
# frame_val OUT LABEL COLUMN N: column 2 (total) or 3 (per s) of row LABEL in frame N (1-based)
frame_val() {
	awk -v lab="$2" -v col="$3" -v want="$4" '
		/^faultline top - pid/ { n++ }
		n == want && substr($0, 1, 24) ~ "^" lab " *$" { split(substr($0, 25), f, " "); print f[col - 1] }' "$1"
}

me=$(id -u)
"$F" run --budget 16M --stats-interval 0.2 --stats-file "$WORK/lines.jsonl" -- \
	"$LIVE_PROG" "$WORK" &
pid=$!
file=/dev/shm/faultline.$me.$pid
wait_for "$file" 20; ok $? "the counters file appears: $file"
[ "$(stat -c '%a %u' "$file" 2>/dev/null)" = "600 $me" ]
ok $? "it is mode 0600 and the user's ($(stat -c '%a %u' "$file" 2>&1))"

"$F" top -l > "$WORK/list" 2>&1
awk -v p="$pid" '$1 == p && $3 == "preload-live"' "$WORK/list" | grep -q .
ok $? "top -l lists the program"
diag "$(cat "$WORK/list")"

"$F" top -b -n 3 -d 0.5 "$pid" > "$WORK/top" 2> "$WORK/top.err"; rc=$?
frames=$(grep -c "^faultline top - pid $pid (preload-live)" "$WORK/top")
[ $rc = 0 ] && [ "$frames" = 3 ]; ok $? "top -b -n 3: exit 0, three frames naming pid and program (rc $rc, $frames frames)"
diag "$(tail -n 22 "$WORK/top")"
grep -q "^resident: .* of a 16.0 MiB budget" "$WORK/top"; ok $? "the frames show resident memory against the 16 MiB budget"
e1=$(frame_val "$WORK/top" evictions 2 1); e3=$(frame_val "$WORK/top" evictions 2 3)
[ "${e1:-0}" -gt 0 ] && [ "${e3:-0}" -ge "$e1" ]
ok $? "evictions: counted, and never going back (frame 1: ${e1:-none}, frame 3: ${e3:-none})"
rates=$(for n in 1 2 3; do frame_val "$WORK/top" evictions 3 $n; done | tr '\n' ' ')
awk -v r="$rates" 'BEGIN { n = split(r, a, " "); for (i = 1; i <= n; i++) if (a[i] > 0) exit 0; exit 1 }'
ok $? "evictions per second: above zero while the program thrashes ($rates)"

# idle: the program touches nothing now; its counters of faults stand still
touch "$WORK/idle"
wait_for "$WORK/done" 30
"$F" top -b -n 1 -d 0.1 "$pid" > "$WORK/idle.top"; rc=$?
[ $rc = 0 ]; ok $? "top -n 1 on the idle program: exit 0"
touch "$WORK/stop"
wait "$pid"; rc=$?
[ $rc = 0 ]; ok $? "the program exits 0"
[ ! -e "$file" ]; ok $? "the counters file is removed at exit"

# the exit line of the program (the lines of its pid: the last one)
grep "\"pid\":$pid," "$WORK/lines.jsonl" > "$WORK/mine.jsonl"
tail -n 1 "$WORK/mine.jsonl" > "$WORK/last.json"
for c in faults:faults pages_installed:"pages installed" far_pageins:page-ins; do
	want=$(json_get "$WORK/last.json" "s['counters']['${c%%:*}']")
	got=$(frame_val "$WORK/idle.top" "${c#*:}" 2 1)
	[ -n "$want" ] && [ "$got" = "$want" ]
	ok $? "top's ${c#*:} after the work is the program's own count at exit ($got, $want)"
done

ra=$(json_get "$WORK/last.json" 's["process"]["rss_anon"]')
hwm=$(json_get "$WORK/last.json" 's["process"]["vm_hwm"]')
# at exit the managed memory sits between the evictor's low mark (90 % of
# the budget) and the budget; a batch may take it a little below the mark.
# The runtime's own memory is small (a 256 KiB zero buffer): the anonymous
# RSS need not reach the budget, only come near it.
[ "${ra:-0}" -ge $(((16 << 20) * 85 / 100)) ] && [ "${hwm:-0}" -ge "$ra" ]
ok $? "the statistics give the process's anonymous RSS (${ra:-none}) and its peak RSS (${hwm:-none})"
grep -q "^process:  .* anonymous resident (.* of it managed, [0-9]*%), .* peak resident set" "$WORK/top"
ok $? "top shows the process's own resident memory, and how much of it is managed"
mr=$(json_get "$WORK/last.json" 's["process"]["managed_resident"]')
[ "${mr:-0}" -gt 0 ] && [ "$mr" -le "${ra:-0}" ]
ok $? "the statistics give the managed memory's resident bytes (${mr:-none}), a part of the anonymous RSS (${ra:-none})"

n=$(wc -l < "$WORK/mine.jsonl")
$PY - "$WORK/mine.jsonl" <<'EOF'
import json, sys
t = [json.loads(l)["time_ms"] for l in open(sys.argv[1])]
sys.exit(0 if len(t) >= 3 and all(a < b for a, b in zip(t, t[1:])) else 1)
EOF
ok $? "--stats-interval 0.2: $n JSON lines of the program, time_ms increasing"

if command -v gnuplot >/dev/null; then
	"$F" plot -o "$WORK/p.png" "$WORK/lines.jsonl" > "$WORK/plot.out" 2>&1; rc=$?
	[ $rc = 0 ] && [ "$(head -c 8 "$WORK/p.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
	ok $? "plot: a PNG (rc $rc: $(cat "$WORK/plot.out"))"
else
	echo "ok $((TAP_N += 1)) # SKIP plot: gnuplot is not installed (Debian package gnuplot-nox)"
fi
head -n 1 "$WORK/mine.jsonl" > "$WORK/one.jsonl"
err=$("$F" plot "$WORK/one.jsonl" 2>&1); rc=$?
[ $rc = 1 ] && [[ $err == *"1 statistics line of pid $pid"* ]]; ok $? "plot of one line: exit 1, says why (${err%%$'\n'*})"
{ head -n 1 "$WORK/mine.jsonl"; echo '{"pid":1,"oops":2}'; } > "$WORK/bad.jsonl"
err=$("$F" plot "$WORK/bad.jsonl" 2>&1); rc=$?
[ $rc = 1 ] && [[ $err == *"bad.jsonl:2: not a faultline statistics line"* ]]; ok $? "plot of a bad line: exit 1, names file and line (${err%%$'\n'*})"

# errors: each names what was wrong
err=$("$F" top -d 0 1 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"invalid --delay '0'"* ]]; ok $? "top -d 0: exit 2, names the value"
err=$("$F" top abc 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"invalid PID 'abc'"* ]]; ok $? "top abc: exit 2, names the value"
err=$("$F" top $$ 2>&1); rc=$?
[ $rc = 1 ] && [[ $err == *"process $$ publishes no faultline counters"* ]]; ok $? "top of a process not under faultline: exit 1 (${err%%$'\n'*})"
err=$("$F" run --stats-interval 0 -- true 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"invalid --stats-interval '0'"* ]]; ok $? "run --stats-interval 0: exit 2, names the value"
err=$("$F" run --stats=text --stats-interval 1 -- true 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"--stats-interval writes JSON lines"* ]]; ok $? "run --stats=text --stats-interval: exit 2 (${err%%$'\n'*})"

# a stopped process does not answer: top says so instead of hanging
mkdir "$WORK/stopped"
"$F" run -- "$LIVE_PROG" "$WORK/stopped" &
spid=$!
wait_for /dev/shm/faultline.$me.$spid 20
kill -STOP "$spid"
err=$("$F" top -b -n 1 -d 0.1 "$spid" 2>&1); rc=$?
[ $rc = 1 ] && [[ $err == *"did not answer"* ]]; ok $? "top of a stopped process: exit 1 (${err%%$'\n'*})"
# killed: the file stays behind; top -l removes it, top of the pid says no process
kill -KILL "$spid"; kill -CONT "$spid" 2>/dev/null
wait "$spid" 2>/dev/null
[ -e /dev/shm/faultline.$me.$spid ]; ok $? "a killed program leaves its file behind"
"$F" top -l > "$WORK/list2"
! grep -q "^ *$spid " "$WORK/list2" && [ ! -e /dev/shm/faultline.$me.$spid ]
ok $? "top -l does not list it and removes the stale file"
err=$("$F" top "$spid" 2>&1); rc=$?
[ $rc = 1 ] && [[ $err == *"no process $spid"* ]]; ok $? "top of the dead pid: exit 1 (${err%%$'\n'*})"

# a process stopped between creating its file and starting its publisher
# leaves a file of zeros: it does not answer (not a foreign file); once it
# is gone, the file is stale and top -l removes it
sleep 60 &
zpid=$!
zfile=/dev/shm/faultline.$me.$zpid
truncate -s 64K "$zfile"
err=$("$F" top -b -n 1 "$zpid" 2>&1); rc=$?
[ $rc = 1 ] && [[ $err == *"did not answer"*"while its runtime was starting"* ]]
ok $? "top of a process whose publisher never started: exit 1 (${err%%$'\n'*})"
kill "$zpid"; wait "$zpid" 2>/dev/null
"$F" top -l > "$WORK/list3"
[ ! -e "$zfile" ]; ok $? "top -l removes that file once the process is gone"

# FAULTLINE_LIVE=no: nothing published
mkdir "$WORK/nolive"; touch "$WORK/nolive/idle"
FAULTLINE_LIVE=no "$F" run -- "$LIVE_PROG" "$WORK/nolive" &
npid=$!
wait_for "$WORK/nolive/done" 30
[ ! -e /dev/shm/faultline.$me.$npid ]; ok $? "FAULTLINE_LIVE=no: no counters file"
touch "$WORK/nolive/stop"
wait "$npid"; ok $? "that program exits 0"
done_testing
