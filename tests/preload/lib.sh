# lib.sh - TAP helpers for the preload end-to-end tests (sourced).
# Environment from meson: FL_CLI, FL_SHIM, FORK_VIEW, SRCDIR.
set -u
# the options the tests set must not leak in from the caller
for v in $(env | sed -n 's/^\(FAULTLINE_[A-Z_]*\)=.*/\1/p'); do
	unset "$v"
done
TAP_N=0
TAP_FAILED=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fl-preload.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PY=/usr/bin/python3	# Debian's, not a pyenv shim

plan() { echo "TAP version 13"; echo "1..$1"; }
ok() {	# ok COND-EXIT-STATUS description
	TAP_N=$((TAP_N + 1))
	if [ "$1" = 0 ]; then echo "ok $TAP_N - $2"; else echo "not ok $TAP_N - $2"; TAP_FAILED=$((TAP_FAILED + 1)); fi
}
diag() { printf '%s\n' "$*" | sed 's/^/# /'; }	# every line a TAP comment
skip_all() { echo "1..0 # SKIP $*"; exit 77; }
done_testing() { [ "$TAP_FAILED" = 0 ] && exit 0; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || skip_all "$1 is not installed (Debian package $2)"; }

# uffd usable here? The shim says so at start if not; the tests then skip.
probe_uffd() {
	local out
	out=$(FAULTLINE_LOG=info LD_PRELOAD="$FL_SHIM" $PY -c 'bytearray(4<<20)' 2>&1 >/dev/null)
	case $out in
	*"runtime started"*) ;;
	*) skip_all "the runtime cannot run here: ${out:-no message}" ;;
	esac
}

# json_get FILE EXPR: evaluate a Python expression on the last JSON line (s)
json_get() {
	$PY -c 'import json,sys
lines=[l for l in open(sys.argv[1]) if l.strip()]
s=json.loads(lines[-1])
print(eval(sys.argv[2]))' "$1" "$2"
}

# watched SECS OUT CMD...: run CMD, its stdout to OUT, and say how long it took;
# if it is still running after SECS, print every thread's kernel stack and
# wait channel of it and its children (`faultline run` and env exec, so CMD's
# pid is the program's; the TAP log of a stalled run then shows
# where it stood), kill it and return 124. The caller's test timeout must
# leave room for SECS.
watched() {
	local secs=$1 out=$2 pid rc t0=$SECONDS p t
	shift 2
	"$@" > "$out" &
	pid=$!
	while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - t0)) -lt "$secs" ]; do
		sleep 1
	done
	if kill -0 "$pid" 2>/dev/null; then
		diag "still running after ${secs} s: $*"
		for p in $pid $(pgrep -P "$pid"); do
			for t in /proc/"$p"/task/*; do
				diag "pid $p tid ${t##*/} $(cat "$t/comm" 2>/dev/null) state $(awk '{print $3}' "$t/stat" 2>/dev/null) wchan $(cat "$t/wchan" 2>/dev/null)"
				diag "$(cat "$t/stack" 2>/dev/null | head -12)"
			done
		done
		kill -9 "$pid" $(pgrep -P "$pid") 2>/dev/null
		wait "$pid" 2>/dev/null
		return 124
	fi
	wait "$pid"
	rc=$?
	diag "$((SECONDS - t0)) s: $*"
	return $rc
}

# managed FILE: the stats show managed memory and faults
check_managed() {
	local f=$1 what=$2 regions faults
	faults=$(json_get "$f" 's["counters"]["faults"]')
	regions=$(json_get "$f" 's["counters"]["regions_registered"]')
	diag "$what: regions_registered=$regions faults=$faults pages_installed=$(json_get "$f" 's["counters"]["pages_installed"]') managed_peak=$(json_get "$f" 's["managed"]["bytes_peak"]')"
	[ "${regions:-0}" -gt 0 ] && [ "${faults:-0}" -gt 0 ]
	ok $? "$what: stats show managed memory (regions > 0, faults > 0)"
}

# far FILE what: under a budget, pages were evicted and read back
check_far() {
	local f=$1 what=$2 ev pi
	ev=$(json_get "$f" 's["counters"]["far_evictions"]')
	pi=$(json_get "$f" 's["counters"]["far_pageins"]')
	diag "$what: far_evictions=$ev far_pageins=$pi far_writebacks=$(json_get "$f" 's["counters"]["far_writebacks"]') managed_peak=$(json_get "$f" 's["managed"]["bytes_peak"]')"
	[ "${ev:-0}" -gt 0 ] && [ "${pi:-0}" -gt 0 ]
	ok $? "$what: stats show far memory at work (far_evictions > 0, far_pageins > 0)"
}
