#!/usr/bin/env bash
# FAULTLINE_RESOLVE=auto under the shim: faults resolved in the thread that
# takes them. inthread-prog.c does what the mode must survive in an
# unmodified program (its own SIGBUS handler set late, SIGBUS blocked,
# system calls into never-touched buffers, a fault in a handler that blocks
# every signal): same output as natively, and the statistics show the
# faults resolved in-thread. Then sort and python, byte for byte.
. "$(dirname "$0")/lib.sh"
plan 9
probe_uffd
F=$FL_CLI

want=$("$INTHREAD_PROG")
prog_want=$want
[[ $want == *"digest "* ]]; ok $? "native run: $(tail -n 1 <<< "$want")"

FAULTLINE_RESOLVE=auto watched 60 "$WORK/prog.out" "$F" run --stats-file "$WORK/prog.json" \
	-- "$INTHREAD_PROG"
out=$(cat "$WORK/prog.out")
[ "$out" = "$want" ]; ok $? "the program's output under FAULTLINE_RESOLVE=auto is the native one"
[ "$out" != "$want" ] && diag "$out"
ft=$(json_get "$WORK/prog.json" 's["counters"]["faults_thread"]')
fa=$(json_get "$WORK/prog.json" 's["counters"]["faults"]')
[ "${ft:-0}" -gt 10 ] && [ "$ft" = "$fa" ]
ok $? "every fault resolved in its thread ($ft of $fa)"
ch=$(json_get "$WORK/prog.json" 's["counters"]["thread_chained"]')
[ "${ch:-0}" -ge 1 ]; ok $? "the raised SIGBUS went to the program's handler (thread_chained $ch)"

FAULTLINE_RESOLVE=handler watched 60 "$WORK/h.out" "$F" run --stats-file "$WORK/h.json" \
	-- "$INTHREAD_PROG"
[ "$(cat "$WORK/h.out")" = "$want" ]; ok $? "the same program with handler threads: same output"
ft=$(json_get "$WORK/h.json" 's["counters"]["faults_thread"]')
[ "$ft" = 0 ]; ok $? "handler threads: no fault resolved in-thread ($ft)"

# sort reads its input with fread_unlocked into managed buffers
head -c 12000000 /dev/urandom | base64 > "$WORK/in.txt"
want=$(sort "$WORK/in.txt" | sha256sum)
FAULTLINE_RESOLVE=auto watched 90 "$WORK/sort.out" "$F" run --stats-file "$WORK/sort.json" \
	-- sort -S 64M -o "$WORK/sorted" "$WORK/in.txt"
got=$(sha256sum < "$WORK/sorted")
ft=$(json_get "$WORK/sort.json" 's["counters"]["faults_thread"]')
[ "$got" = "$want" ] && [ "${ft:-0}" -gt 0 ]
ok $? "sort under FAULTLINE_RESOLVE=auto: same bytes, $ft faults in-thread"

py='b = bytearray(96 << 20)
for i in range(0, len(b), 4096): b[i] = i % 251
print(sum(b[::4096 * 3]), len(b))'
want=$(python3 -c "$py")
FAULTLINE_RESOLVE=auto watched 60 "$WORK/py.out" "$F" run --stats-file "$WORK/py.json" \
	-- python3 -c "$py"
ft=$(json_get "$WORK/py.json" 's["counters"]["faults_thread"]')
[ "$(cat "$WORK/py.out")" = "$want" ] && [ "${ft:-0}" -gt 0 ]
ok $? "python3 under FAULTLINE_RESOLVE=auto: same output, $ft faults in-thread"

# a budget needs handler threads: said, and honoured
FAULTLINE_RESOLVE=auto FAULTLINE_LOG=info watched 60 "$WORK/b.out" "$F" run --budget 16M \
	--stats-file "$WORK/b.json" -- "$INTHREAD_PROG" 2> "$WORK/b.err"
ft=$(json_get "$WORK/b.json" 's["counters"]["faults_thread"]')
[ "$(cat "$WORK/b.out")" = "$prog_want" ] && [ "$ft" = 0 ] &&
	grep -q "FAULTLINE_RESOLVE: faults are resolved by handler threads" "$WORK/b.err"
ok $? "with a budget: handler threads, said so on stderr, same output ($ft in-thread)"
done_testing
