#!/usr/bin/env bash
# Build tests/fuzz-options.c with clang's libFuzzer (+ASan/UBSan) and run it
# for a bounded number of inputs. Skips without clang.
. "$(dirname "$0")/lib.sh"
CLANG=${CLANG:-$(command -v clang || true)}
[ -n "$CLANG" ] || skip_all "clang is not installed (libFuzzer needs it)"
plan 2
bin=$WORK/fuzz-options
"$CLANG" -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$SRCDIR/include" -I"$SRCDIR/runtime/preload" \
	"$SRCDIR/tests/fuzz-options.c" "$SRCDIR/runtime/preload/options.c" -o "$bin" 2> "$WORK/cc.log"
rc=$?
[ $rc = 0 ] || sed 's/^/# /' "$WORK/cc.log"
[ $rc = 0 ] || skip_all "clang cannot build a libFuzzer target here"
ok 0 "fuzz target builds"
mkdir -p "$WORK/corpus"
printf 'FAULTLINE_BUDGET=512M' > "$WORK/corpus/a"
printf 'FAULTLINE_STATS=json\nFAULTLINE_LOG=debug' > "$WORK/corpus/b"
"$bin" -runs=200000 -max_len=256 -seed=1 "$WORK/corpus" > "$WORK/fuzz.log" 2>&1
rc=$?
tail -n 3 "$WORK/fuzz.log" | sed 's/^/# /'
ok $rc "fuzz-options: 200000 inputs, no crash or sanitizer report"
done_testing
