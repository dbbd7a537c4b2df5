#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# probes.sh LIB HEADER enabled|disabled - the library's USDT probes are
# exactly those HEADER (runtime/core/probes.h) documents, each with its
# arguments; built without probes, the library has none.
set -eu
lib=${1:?usage: probes.sh LIB PROBES.H enabled|disabled}
hdr=${2:?}
want_on=${3:?}
# skipped by the TAP plan, exit 0 (see tests/tap.h)
command -v readelf > /dev/null || { echo "1..0 # SKIP no readelf"; exit 0; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the documented list: " *   name(arg, ...)   what"
sed -n 's/^ \*   \([a-z_]*\)(\([^)]*\)).*/\1 \2/p' "$hdr" | sort -u > "$work/doc"
# what the library holds: provider faultline, name, argument count
readelf -n "$lib" | awk '
	/Provider:/ { prov = $2 }
	/Name:/ { name = $2 }
	/Arguments:/ { if (prov == "faultline") print name, NF - 1 }' | sort -u > "$work/lib"

if [ "$want_on" != enabled ]; then
	echo "1..1"
	if [ -s "$work/lib" ]; then
		echo "not ok 1 - built without probes, yet the library has: $(cut -d' ' -f1 "$work/lib" | tr '\n' ' ')"
		exit 1
	fi
	echo "ok 1 - built without probes: none in the library"
	exit 0
fi

n=$(wc -l < "$work/doc")
[ "$n" -gt 0 ] || { echo "1..1"; echo "not ok 1 - no probe documented in $hdr"; exit 1; }
echo "1..$((n + 1))"
i=0
fail=0
while read -r name args; do
	i=$((i + 1))
	nargs=$(echo "$args" | awk -F, '{ print NF }')
	got=$(awk -v n="$name" '$1 == n { print $2 }' "$work/lib" | sort -u | tr '\n' ' ')
	if [ -z "$got" ]; then
		echo "not ok $i - $name: documented, not in the library"
		fail=1
	elif [ "$got" != "$nargs " ]; then
		echo "not ok $i - $name: $nargs arguments documented, the library's sites have $got"
		fail=1
	else
		echo "ok $i - $name($args)"
	fi
done < "$work/doc"
i=$((i + 1))
extra=$(cut -d' ' -f1 "$work/lib" | sort -u | comm -23 - "$(cut -d' ' -f1 "$work/doc" | sort -u > "$work/docnames"; echo "$work/docnames")" | tr '\n' ' ')
if [ -n "$extra" ]; then
	echo "not ok $i - in the library, not documented: $extra"
	fail=1
else
	echo "ok $i - every probe in the library is documented"
fi
exit $fail
