#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# spin-model.sh - model-check runtime/core/faultpath.pml (the fault tiers, the
# region refcount lock, the sequence count and the grace period) with spin:
# the real protocol must verify (safety: every assertion; liveness: the
# writer always finishes, under weak fairness), and each mutant must be
# caught with the property it breaks. TAP; skipped (1..0 # SKIP) without spin or gcc.
#
# usage: spin-model.sh [path/to/faultpath.pml]
set -u

PML=${1:-$(dirname "$0")/../runtime/core/faultpath.pml}
CC=${CC:-gcc}

if ! command -v spin >/dev/null 2>&1; then
	echo "1..0 # SKIP spin is not installed (Debian package spin; ./dev.sh installs it)"
	exit 0	# skipped by the TAP plan (see tests/tap.h)
fi
if ! command -v "$CC" >/dev/null 2>&1; then
	echo "1..0 # SKIP no C compiler ($CC) to build spin's verifier"
	exit 0	# skipped by the TAP plan (see tests/tap.h)
fi
[ -r "$PML" ] || { echo "Bail out! cannot read $PML"; exit 1; }
PML=$(cd "$(dirname "$PML")" && pwd)/$(basename "$PML")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fl-spin.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT INT TERM
cd "$WORK" || exit 1

n=0
failed=0
ok() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}

# build NAME "spin -D flags" "cc -D flags": NAME/pan. -O0: these state
# spaces are small, and gcc -O2 on pan.c costs more than the search
build() {
	name=$1 sflags=$2 cflags=$3
	mkdir -p "$name" && cd "$name" || return 1
	# shellcheck disable=SC2086
	spin $sflags -a "$PML" >spin.log 2>&1 &&
		# shellcheck disable=SC2086
		"$CC" -O0 -w $cflags -o pan pan.c >cc.log 2>&1
	rc=$?
	[ $rc = 0 ] || sed 's/^/# /' spin.log cc.log
	cd .. || return 1
	return $rc
}

# verify NAME ARGS...: run pan, keep its output in NAME/out, report figures
verify() {
	name=$1
	shift
	start=$(date +%s.%N)
	(cd "$name" && ./pan "$@" >out 2>&1)
	end=$(date +%s.%N)
	states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$name/out" | head -1)
	errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$name/out" | head -1)
	secs=$(echo "$start $end" | awk '{ printf "%.2f", $2 - $1 }')
	echo "# $name: ${states:-?} states stored, errors: ${errors:-?}, ${secs} s"
	grep -E '^pan:[0-9]+: ' "$name/out" |
		head -1 | sed 's/^/#   /'
}

errors_of() {
	sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$1/out" | head -1
}

echo "TAP version 13"
echo "1..6"

SAFE="-DSAFETY -DNOCLAIM"
LIVE=""

# the protocol as the code has it
build real "" "$SAFE" && verify real -m200000
[ "$(errors_of real)" = 0 ] && grep -q 'Full statespace search' real/out
ok $? "real protocol: no stale install, no use after free, FILLING exclusive, no reader past the writer offset"

build real-live "" "$LIVE" && verify real-live -a -f -m400000 -N writer_done
[ "$(errors_of real-live)" = 0 ]
ok $? "real protocol: the writer always finishes (ltl writer_done, weak fairness)"

# mutants: each must fail, with the property it breaks
build no-grace "-DNO_GRACE -DNO_USE_CHECK" "$SAFE" && verify no-grace -m200000
grep -q 'assertion violated.*reg_content' no-grace/out
ok $? "mutant NO_GRACE (no synchronize_rcu before unregister): stale install found"

build unknown-unlocked "-DUNKNOWN_UNLOCKED" "$SAFE" && verify unknown-unlocked -m200000
grep -q 'assertion violated.*3==reg_content' unknown-unlocked/out
ok $? "mutant UNKNOWN_UNLOCKED (serve_unknown outside index_lock): zero page in the new region found"

build no-bias "-DNO_BIAS" "$SAFE" && verify no-bias -m200000
grep -q 'assertion violated.*refcnt' no-bias/out
ok $? "mutant NO_BIAS (plain inc-not-zero): reader entering past the writer offset found"

build reader-pref "-DREADER_PREF" "$LIVE" && verify reader-pref -a -f -m400000 -N writer_done
grep -q 'acceptance cycle' reader-pref/out
ok $? "mutant READER_PREF (index_lock preferring readers): writer starvation cycle found"

[ $failed = 0 ] || echo "# $failed of $n failed"
[ $failed = 0 ]
