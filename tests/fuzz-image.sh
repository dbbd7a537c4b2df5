#!/usr/bin/env bash
# fuzz-image.sh - build tests/fuzz-image.c with clang's libFuzzer (+ASan/UBSan)
# and run it against the checkpoint image parser for a bounded time.
# For gcc builds of the project (a clang build has the meson target
# 'fuzz-image' instead). Exit 0 pass, 1 fail, 77 skip with the reason.
# Usage: fuzz-image.sh SRCDIR WORKDIR [SECONDS]
set -u
src=$1 work=$2 secs=${3:-20}
clang=${CLANG:-$(command -v clang || true)}
if [ -z "$clang" ]; then
	echo "1..0 # SKIP clang is not installed (libFuzzer needs it)"
	exit 0	# skipped by the TAP plan (see tests/tap.h)
fi
# the corpus is shared (libFuzzer adds files to it); the binary and logs are
# this run's own: a second run at once must not rebuild what this one runs
mkdir -p "$work/corpus"
corpus=$work/corpus
work=$work/run.$$
mkdir -p "$work"
bin=$work/fuzz-image
if ! "$clang" -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -I"$src/include" -I"$src/runtime" \
	$(pkg-config --cflags liburing 2>/dev/null) \
	"$src/tests/fuzz-image.c" "$src/runtime/ckpt/image.c" -o "$bin" -lpthread \
	> "$work/cc.log" 2>&1; then
	sed 's/^/# /' "$work/cc.log"
	rm -rf "$work"
	echo "1..0 # SKIP clang cannot build a libFuzzer target here"
	exit 0	# skipped by the TAP plan (see tests/tap.h)
fi
echo "1..1"
"$bin" -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 -seed=1 "$corpus" \
	> "$work/fuzz.log" 2>&1
rc=$?
grep -E "^Done|ERROR|SUMMARY" "$work/fuzz.log" | sed 's/^/# /'
if [ $rc = 0 ]; then
	echo "ok 1 - fuzz-image: ${secs} s of inputs, no crash or sanitizer report"
	rm -rf "$work"
else
	echo "not ok 1 - fuzz-image: crash or sanitizer report (exit $rc), see $work/fuzz.log"
fi
exit $rc
