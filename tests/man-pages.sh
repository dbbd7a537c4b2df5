#!/usr/bin/env bash
# man-pages.sh MAP BUILT_DOC_DIR - every exported function has a manual page.
# For each global symbol of the version script MAP: BUILT_DOC_DIR/SYM.3
# exists, is either a page or a ".so man3/PAGE.3" link to a built page, and
# the page's NAME section names SYM. Also: faultline(1) and faultline(7) are
# built, and every page names each function the link pages send to it.
set -u
map=$1
dir=$2
n=0
fail=0

ok() {		# ok COND-STATUS MESSAGE
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		fail=$((fail + 1))
	fi
}

# the NAME section of a roff page: from .SH NAME to the next .SH
name_section() {
	awk '/^\.SH/ { in_name = ($2 == "NAME" || $2 == "\"NAME\"") ; next } in_name' "$1"
}

syms=$(sed -n 's/^[[:space:]]*\(fl_[a-z0-9_]*\);/\1/p' "$map")
if [ -z "$syms" ]; then
	echo "1..1"
	echo "not ok 1 - no fl_ symbols found in $map"
	exit 1
fi
echo "1..$(($(echo "$syms" | wc -l) + 2))"

for p in faultline.1 faultline.7; do
	[ -s "$dir/$p" ] && grep -q '^\.SH' "$dir/$p"
	ok $? "$p is built"
done

for s in $syms; do
	page=$dir/$s.3
	if [ ! -s "$page" ]; then
		ok 1 "$s: no page $page"
		continue
	fi
	target=$(sed -n 's|^\.so man3/\(.*\)$|\1|p' "$page")
	if [ -n "$target" ]; then
		page=$dir/$target
		if [ ! -s "$page" ]; then
			ok 1 "$s: links to $target, which is not built"
			continue
		fi
	fi
	name_section "$page" | grep -qw -- "$s"
	ok $? "$s: documented in $(basename "$page")"
done
[ $fail = 0 ]
