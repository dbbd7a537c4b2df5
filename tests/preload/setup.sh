#!/usr/bin/env bash
# faultline setup: a program that does not run as root gets no usable
# userfaultfd on a stock system (vm.unprivileged_userfaultfd=0,
# /dev/userfaultfd root:root 0600), so the shim manages nothing; after
# `faultline setup --user NAME` it opens /dev/userfaultfd and its memory is
# managed, far memory included; `setup --undo` puts the device back. Errors
# (not root, unknown names, no device) change nothing.
#
# Runs as root with a throwaway system user. /dev/userfaultfd, the udev rule,
# /etc/udev/rules.d and the group are put back as they were found, whatever
# happens (trap), and a lock keeps two runs of this test from overlapping.
. "$(dirname "$0")/lib.sh"
F=$FL_CLI
P=$ENV_CLOBBER

uffd_user_begin setup
UID_U=$(id -u "$U")
as_user test -r "$FL_SHIM" -a -x "$P" -a -x "$F" ||
	skip_all "the build tree is not readable by other users ($FL_SHIM)"
UD=$WORK/u
chmod 711 "$WORK"
mkdir "$UD" && chown "$U" "$UD"
node() { stat -c '%U:%G %a' $DEV; }
in_group() { id -nG "$U" | tr ' ' '\n' | grep -qx faultline; }
UNPRIV=$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)
plan 16

# ---- errors change nothing ----
before=$(node)
err=$(as_user "$F" setup --user "$U" 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"must be run as root"* ]] && [ "$(node)" = "$before" ]
ok $? "setup as a user that is not root: exit 2, says so, $DEV unchanged ($err)"
err=$("$F" setup --user no-such-user-$$ 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"unknown user 'no-such-user-$$'"* ]] && [ "$(node)" = "$before" ] &&
	{ [ -n "$GROUP_EXISTED" ] || ! getent group faultline >/dev/null; }
ok $? "setup --user unknown: exit 2, names it, nothing changed ($err)"
err=$("$F" setup --group no-such-group-$$ 2>&1); rc=$?
[ $rc = 2 ] && [[ $err == *"unknown group 'no-such-group-$$'"* ]] && [ "$(node)" = "$before" ]
ok $? "setup --group unknown: exit 2, names it, nothing changed"
# no device: a private mount namespace with an empty /dev
err=$(unshare -m sh -c "mount -t tmpfs none /dev && exec \"$F\" setup --user $U" 2>&1); rc=$?
if [[ $err == *"unshare"* || $err == *"mount"* ]]; then
	echo "ok $((TAP_N += 1)) # SKIP no private mount namespace here: $err"
else
	[ $rc = 2 ] && [[ $err == *"no $DEV"* ]] && ! in_group &&
		{ [ -n "$GROUP_EXISTED" ] || ! getent group faultline >/dev/null; }
	ok $? "setup without $DEV: exit 2, says so, no group made, user not added ($err)"
fi

# ---- before: the shim says what to do, and manages nothing ----
want=$(ENV_CLOBBER_PROBE=kept "$P" moved)
if [ "$UNPRIV" = 0 ] && [ "$DEV_MODE" = 600 ]; then
	out=$(as_user env ENV_CLOBBER_PROBE=kept FAULTLINE_STATS=json \
		FAULTLINE_STATS_FILE="$UD/before.json" LD_PRELOAD="$FL_SHIM" "$P" moved 2>"$WORK/before.err")
	rt=$(json_get "$UD/before.json" 's["runtime"]' 2>/dev/null)
	[ "$out" = "$want" ] && [ "$rt" = False ] &&
		grep -q "faultline setup --user $UID_U" "$WORK/before.err"
	ok $? "before: the program runs unmanaged (runtime: $rt) and the warning names 'faultline setup --user $UID_U'"
	sed 's/^/# stderr: /' "$WORK/before.err"
	out=$("$F" setup --check --user "$U"); rc=$?
	[ $rc = 1 ] && [[ $out == *"to fix, as root: faultline setup --user $U"* ]]
	ok $? "before: setup --check --user: exit 1, names the fix"
	diag "$out"
else
	echo "ok $((TAP_N += 1)) # SKIP users get full userfaultfd here already (vm.unprivileged_userfaultfd=$UNPRIV, $DEV mode $DEV_MODE)"
	echo "ok $((TAP_N += 1)) # SKIP as above"
fi

# ---- setup --user ----
out=$("$F" setup --user "$U" 2>&1); rc=$?
diag "$out"
if [ -d $RULES ]; then
	grep -qx 'KERNEL=="userfaultfd", OWNER="root", GROUP="faultline", MODE="0660"' $RULE
else
	[ ! -e $RULE ] && [[ $out == *"until the next boot"* ]]
fi
rule=$?
[ $rc = 0 ] && [ "$(node)" = "root:faultline 660" ] && in_group && [ $rule = 0 ]
ok $? "setup --user: $DEV root:faultline 0660, user in the group, rule written where udev has a rules directory"
out=$("$F" setup --check --user "$U"); rc=$?
[ $rc = 0 ] && [[ $out == *"full userfaultfd through $DEV"* ]]
ok $? "setup --check --user: exit 0, full userfaultfd through $DEV"
diag "$out"

# the user's program: managed, far memory at work, same output
out=$(as_user env ENV_CLOBBER_PROBE=kept "$F" run --budget 16M --store "$UD/st" \
	--stats-file "$UD/st.json" -- "$P" moved 2>"$WORK/run.err"); rc=$?
sed 's/^/# stderr: /' "$WORK/run.err"
mmaps=$(json_get "$UD/st.json" 's["managed"]["mmaps"] + s["managed"]["malloc_blocks"]' 2>/dev/null)
faults=$(json_get "$UD/st.json" 's["counters"]["faults"]' 2>/dev/null)
ev=$(json_get "$UD/st.json" 's["counters"]["far_evictions"]' 2>/dev/null)
[ $rc = 0 ] && [ "$out" = "$want" ]
ok $? "as the user, under faultline run --budget 16M: the program's output is right"
[ "${mmaps:-0}" -gt 0 ] && [ "${faults:-0}" -gt 0 ] && [ "${ev:-0}" -gt 0 ] && [ ! -s "$WORK/run.err" ]
ok $? "as the user: memory managed, no warning (managed mmaps+blocks=$mmaps faults=$faults far_evictions=$ev)"

# ---- undo ----
out=$("$F" setup --undo 2>&1); rc=$?
diag "$out"
[ $rc = 0 ] && [ "$(node)" = "root:root 600" ] && [ ! -e $RULE ]
ok $? "setup --undo: $DEV root:root 0600, no rule"
out=$("$F" setup --check --user "$U"); rc=$?
if [ "$UNPRIV" = 0 ]; then
	[ $rc = 1 ]
	ok $? "after --undo: setup --check --user exits 1 again"
else
	echo "ok $((TAP_N += 1)) # SKIP vm.unprivileged_userfaultfd=$UNPRIV"
fi

# ---- setup --group, with a udev rules directory (made for the test if missing) ----
for d in /etc/udev $RULES; do
	[ -d $d ] || { mkdir $d && MADE_DIRS+=("$d"); }
done
out=$("$F" setup --group faultline 2>&1); rc=$?
diag "$out"
[ $rc = 0 ] && [ "$(node)" = "root:faultline 660" ] &&
	grep -qx 'KERNEL=="userfaultfd", OWNER="root", GROUP="faultline", MODE="0660"' $RULE &&
	[ "$(stat -c %a $RULE)" = 644 ]
ok $? "setup --group: $DEV root:faultline 0660 and the udev rule $RULE"
out=$("$F" setup --check); rc=$?
[ $rc = 0 ] && [[ $out == *"udev rule: $RULE (group faultline)"* ]]
ok $? "setup --check reports the rule and its group"
out=$("$F" setup --undo 2>&1); rc=$?
[ $rc = 0 ] && [ "$(node)" = "root:root 600" ] && [ ! -e $RULE ] && [[ $out == *"removed $RULE"* ]]
ok $? "setup --undo removes the rule and restores $DEV"
# --undo again: nothing to do, still fine
"$F" setup --undo >/dev/null 2>&1; rc=$?
[ $rc = 0 ] && [ "$(node)" = "root:root 600" ]
ok $? "setup --undo twice: exit 0, nothing changes"
done_testing
