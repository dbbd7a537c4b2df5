#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# layering.sh LIB - the subsystems call each other only downwards.
#
# From the object files of the static library LIB: no symbol that a core
# object leaves undefined is defined by a far-memory or checkpoint object
# (the core reaches them only through runtime/core/hooks.h), and far memory
# and checkpoints use nothing of each other. The link itself, not a reading
# of the sources: a call through a macro or a renamed include is seen too.
set -eu
lib=${1:?usage: layering.sh LIBFAULTLINE.A}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
ar x "$lib"
ls core_*.o far_*.o ckpt_*.o > /dev/null 2>&1 || {
	echo "1..0 # SKIP $lib has no core_/far_/ckpt_ objects"
	exit 0	# skipped by the TAP plan (see tests/tap.h)
}

defined() { nm --defined-only -g "$@" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u; }
undefined() { nm -u "$@" 2>/dev/null | awk '{ print $NF }' | sort -u; }

defined core_*.o > core.def
defined far_*.o > far.def
defined ckpt_*.o > ckpt.def
undefined core_*.o > core.undef
undefined far_*.o > far.undef
undefined ckpt_*.o > ckpt.undef

n=0
fail=0
check() {	# check USER PROVIDER
	n=$((n + 1))
	used=$(comm -12 "$1.undef" "$2.def" | tr '\n' ' ')
	if [ -n "$used" ]; then
		echo "not ok $n - $1 uses nothing of $2 # it does: $used"
		fail=1
	else
		echo "ok $n - $1 uses nothing of $2"
	fi
}
echo "1..5"
check core far
check core ckpt
check far ckpt
check ckpt far
# and the layers do lean on the core (a check that cannot fail is no check)
n=$((n + 1))
if [ -n "$(comm -12 far.undef core.def)" ] && [ -n "$(comm -12 ckpt.undef core.def)" ]; then
	echo "ok $n - far and ckpt call into the core"
else
	echo "not ok $n - far and ckpt call into the core # the object names changed?"
	fail=1
fi
exit $fail
