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
# a TAP file is skipped by its plan, with exit 0 (see tests/tap.h)
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
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

# A throwaway system user, for tests of what programs that do not run as
# root get (and of servers that refuse to run as root): uffd_user_begin NAME
# makes the user fl$NAME$$ (in $U), records /dev/userfaultfd, the udev rule
# that `faultline setup` writes and the group it makes, and puts them back
# at exit (uffd_user_restore, the EXIT trap; a test that makes directories
# for the rule lists them in MADE_DIRS). A lock keeps two such tests from
# overlapping. Skips (77) where it cannot run. as_user runs a command as $U.
DEV=/dev/userfaultfd
RULES=/etc/udev/rules.d
RULE=$RULES/60-faultline-userfaultfd.rules
uffd_user_begin() {
	[ "$(id -u)" = 0 ] || skip_all "needs root (it adds a user and changes $DEV)"
	[ -c $DEV ] || skip_all "no $DEV (Linux 6.1 or later)"
	need useradd passwd
	need setpriv util-linux
	need flock util-linux
	exec 9>/tmp/faultline-setup-test.lock
	flock -w 300 9 || skip_all "another test holds /tmp/faultline-setup-test.lock"
	DEV_OWNER=$(stat -c %u:%g $DEV)
	DEV_MODE=$(stat -c %a $DEV)
	GROUP_EXISTED=$(getent group faultline >/dev/null && echo yes)
	[ -e $RULE ] && cp -p $RULE "$WORK/rule.saved"
	MADE_DIRS=()
	U=fl$1$$
	trap uffd_user_restore EXIT
	trap 'exit 1' INT TERM HUP
	useradd -r -M -s /usr/sbin/nologin "$U" || skip_all "useradd -r -M $U failed"
}
uffd_user_restore() {
	local i
	[ -n "${UFFD_USER_CLEANUP:-}" ] && $UFFD_USER_CLEANUP
	# whatever the user still runs (a server the cleanup could not stop,
	# the test killed in the middle) goes, or userdel refuses
	pkill -KILL -u "$U" 2>/dev/null
	for ((i = 0; i < 50; i++)); do pgrep -u "$U" >/dev/null || break; sleep 0.1; done
	userdel "$U" 2>/dev/null
	[ -z "$GROUP_EXISTED" ] && groupdel faultline 2>/dev/null
	chmod 600 $DEV && chown "$DEV_OWNER" $DEV && chmod "$DEV_MODE" $DEV
	if [ -e "$WORK/rule.saved" ]; then cp -p "$WORK/rule.saved" $RULE; else rm -f $RULE; fi
	for ((i = ${#MADE_DIRS[@]} - 1; i >= 0; i--)); do rmdir "${MADE_DIRS[i]}"; done
	rm -rf "$WORK"
}
# fd 9 (the lock) is not passed on: a server started this way and left
# running would hold the lock and stall every later such test
as_user() { setpriv --reuid="$U" --regid="$(id -g "$U")" --init-groups -- "$@" 9>&-; }
