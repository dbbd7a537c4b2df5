#!/usr/bin/env bash
# stress-ng's VM stressor with --verify under the shim. Its workers are
# fork()ed children, which do not manage new memory (the child's runtime is
# unusable after fork): this checks that they run correctly under the shim,
# and that the parent's own large memory was managed.
. "$(dirname "$0")/lib.sh"
need stress-ng stress-ng
probe_uffd
plan 3
"$FL_CLI" run --stats-file="$WORK/st.json" -- \
	stress-ng --vm 2 --vm-bytes 64M --vm-method all --verify --vm-ops 4000 \
	--timeout 20s --metrics-brief > "$WORK/out" 2>&1
rc=$?
sed 's/^/# /' "$WORK/out" | tail -n 8
! grep -qi "fail\|error\|verif.*mismatch" "$WORK/out" && [ $rc = 0 ]
ok $? "stress-ng --vm --verify passes under the shim (exit $rc)"
[ -s "$WORK/st.json" ] && json_get "$WORK/st.json" 's["pid"]' >/dev/null
ok $? "statistics written at exit"
# under a budget: stress-ng's workers are fork()ed children, which run
# without a budget (README, Known limits), so this checks only that the
# parent's far memory set-up and its fork() keep the workers correct
"$FL_CLI" run --budget 8M --stats-file="$WORK/far.json" -- \
	stress-ng --vm 2 --vm-bytes 64M --vm-method all --verify --vm-ops 4000 \
	--timeout 20s --metrics-brief > "$WORK/far.out" 2>&1
rc=$?
! grep -qi "fail\|error\|verif.*mismatch" "$WORK/far.out" && [ $rc = 0 ]
ok $? "stress-ng --vm --verify passes under an 8 MiB budget (exit $rc)"
done_testing
