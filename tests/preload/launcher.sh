#!/usr/bin/env bash
# faultline run: exit status, --dry-run, errors; the shim's warnings on bad
# FAULTLINE_* values; faultline env/stats; the README table is generated.
. "$(dirname "$0")/lib.sh"
F=$FL_CLI
plan 24

"$F" run -- sh -c 'exit 7'; rc=$?
[ $rc = 7 ]; ok $? "run preserves the program's exit status (got $rc)"
"$F" run -- sh -c 'kill -TERM $$'; rc=$?
[ $rc = 143 ]; ok $? "a program killed by a signal: status 128+signal as the shell reports it (got $rc)"

out=$("$F" run --dry-run --handlers 2 --stats=json --fault-around 64K -- prog 'a b' c)
want="LD_PRELOAD=$(readlink -f "$FL_SHIM")
FAULTLINE_HANDLERS=2
FAULTLINE_STATS=json
FAULTLINE_FAULT_AROUND=64K
prog 'a b' c"
[ "$out" = "$want" ]; ok $? "--dry-run prints the environment and the command"
[ "$out" != "$want" ] && diag "got: $out"

LD_PRELOAD=/x/other.so "$F" run -n -- true | grep -qx "LD_PRELOAD=$(readlink -f "$FL_SHIM"):/x/other.so"
ok $? "an existing LD_PRELOAD is kept after the shim"

err=$("$F" run --budget bogus -- true 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"invalid --budget 'bogus'"* ]]; ok $? "bad --budget: exit 2, names the value (${err%%$'\n'*})"
err=$("$F" run --handlers 999 -- true 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"--handlers '999'"* ]]; ok $? "bad --handlers: exit 2, names the value"
err=$("$F" run --store "$WORK" -- true 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"--store '$WORK' needs a --budget"* ]]; ok $? "--store without --budget: exit 2 (${err%%$'\n'*})"
err=$("$F" run --budget 64M --store /nonexistent/dir/st -- true 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"invalid --store '/nonexistent/dir/st'"* ]]; ok $? "--store in a missing directory: exit 2, names the value (${err%%$'\n'*})"
err=$("$F" run -- /nonexistent/prog 2>&1); rc=$?
[ $rc = 127 ] && [[ $err == *"/nonexistent/prog"* ]]; ok $? "missing program: exit 127, named"
"$F" bogus >/dev/null 2>&1; rc=$?
[ $rc = 2 ]; ok $? "unknown command: exit 2"
"$F" --help | grep -q "faultline run"; ok $? "--help prints the usage"

err=$(FAULTLINE_MIN_REGION=lots FAULTLINE_STATS=maybe FAULTLINE_NOPE=1 LD_PRELOAD="$FL_SHIM" /bin/true 2>&1)
[[ $err == *"FAULTLINE_MIN_REGION='lots' is invalid"*"default '1M'"* ]]; ok $? "shim: bad size warns, naming variable and value, default kept"
[[ $err == *"FAULTLINE_STATS='maybe' is invalid"* ]]; ok $? "shim: bad enum warns"
[[ $err == *"unknown variable FAULTLINE_NOPE"* ]]; ok $? "shim: unknown variable warns"
diag "$err"

# far memory: 192 MiB written and read back under a 64 MiB budget
FARPROG='import hashlib
b = bytearray(192 << 20)
for i in range(0, len(b), 4096): b[i] = (i >> 12) & 0xff
print(hashlib.sha256(b).hexdigest())'
want=$($PY -c "$FARPROG")
mkdir "$WORK/tmpd"
out=$(TMPDIR="$WORK/tmpd" "$F" run --budget 64M --stats=json -- $PY -c "$FARPROG" 2>"$WORK/far.err")
tail -n 1 "$WORK/far.err" > "$WORK/far.json"
ev=$(json_get "$WORK/far.json" 's["counters"]["far_evictions"]')
pi=$(json_get "$WORK/far.json" 's["counters"]["far_pageins"]')
diag "--budget 64M: far_evictions=$ev far_pageins=$pi"
[ "$out" = "$want" ] || diag "got '$out', want '$want'; stderr and statistics: $(head -c 4000 "$WORK/far.err")"
[ "$out" = "$want" ] && [ "${ev:-0}" -gt 0 ] && [ "${pi:-0}" -gt 0 ]
ok $? "run --budget 64M --stats=json: same output, evictions and page-ins in the JSON"
[ -z "$(ls -A "$WORK/tmpd")" ]; ok $? "the default store (an unnamed file in \$TMPDIR) leaves nothing behind"

out=$(FAULTLINE_BUDGET=64M FAULTLINE_STORE="$WORK/st.%p" FAULTLINE_STATS=json LD_PRELOAD="$FL_SHIM" \
	$PY -c "$FARPROG; import os; print(os.getpid())" 2>"$WORK/far.err")
pid=${out##*$'\n'}
[ "${out%%$'\n'*}" = "$want" ] && [ "$(stat -c %a "$WORK/st.$pid" 2>&1)" = 600 ] &&
	[ "$(stat -c %s "$WORK/st.$pid")" -gt 0 ]
ok $? "FAULTLINE_STORE=FILE.%p: the pid's own file, mode 0600, written"
touch "$WORK/open.st" && chmod 644 "$WORK/open.st"
out=$(FAULTLINE_BUDGET=64M FAULTLINE_STORE="$WORK/open.st" LD_PRELOAD="$FL_SHIM" $PY -c "$FARPROG")
[ "$out" = "$want" ] && [ "$(stat -c %a "$WORK/open.st")" = 600 ]
ok $? "an existing store file readable by others is made mode 0600 before use"

err=$(FAULTLINE_BUDGET=512 FAULTLINE_STORE=/nonexistent/st FAULTLINE_LOG=info LD_PRELOAD="$FL_SHIM" $PY -c 'bytearray(4<<20)' 2>&1)
[[ $err == *"FAULTLINE_BUDGET='512' is invalid"*"default '0'"* ]] && [[ $err == *"runtime started"* ]]
ok $? "shim: a budget below 1M warns, names the value, runs without a budget"
out=$(FAULTLINE_BUDGET=64M FAULTLINE_STORE=/nonexistent/st FAULTLINE_STATS=json LD_PRELOAD="$FL_SHIM" $PY -c "$FARPROG" 2>"$WORK/far.err")
grep -v '^{' "$WORK/far.err" | sed 's/^/# /'
tail -n 1 "$WORK/far.err" > "$WORK/far.json"
[ "$out" = "$want" ] && grep -q "FAULTLINE_STORE='/nonexistent/st': No such file or directory; using an unnamed file" "$WORK/far.err" &&
	[ "$(json_get "$WORK/far.json" 's["counters"]["far_evictions"]')" -gt 0 ]
ok $? "shim: an unusable store warns, names it, and the default store is used"

# bash reads its own maps with a builtin; grep is a program it execs
out=$("$F" run --no-children -- bash -c 'n=0; while read -r l; do [[ $l == *libfaultline-preload* ]] && n=1; done < /proc/self/maps; echo $n; grep -c libfaultline-preload /proc/self/maps')
[ "$out" = "$(printf '1\n0')" ]; ok $? "--no-children: the program has the shim, what it execs does not ($(echo $out))"

"$F" env | grep -q "^FAULTLINE_BUDGET "; ok $? "env lists the options"

# the README's option table is `faultline env --markdown`, verbatim
readme=$(sed -n '/<!-- options:begin/,/<!-- options:end/p' "$SRCDIR/README.md" | sed '1d;$d')
[ -n "$readme" ] && [ "$readme" = "$("$F" env --markdown)" ]
ok $? "README's option table matches faultline env --markdown (regenerate: tests/preload/readme-options.sh)"

printf '{"version":1,"pid":1,"program":"x","managed":{"mmaps":2},"counters":{"faults":5}}\n' > "$WORK/s.json"
out=$("$F" stats "$WORK/s.json") && [[ $out == *faults*5*"messages read from the uffd"* ]]
ok $? "stats pretty-prints a JSON line"
done_testing
