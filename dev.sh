#!/usr/bin/env bash
# dev.sh - set up a Debian 12 machine for faultline, build it, and run it.
#
#   ./dev.sh run [MiB] [threads]   install what is missing, build, run the
#                                  fill-callback example (examples/fill-region.c)
#   ./dev.sh test                  install what is missing, build, run every
#                                  test suite: default, asan, tsan, and the
#                                  kernel subset on Debian 12's stock 6.1 kernel
#   ./dev.sh build                 install what is missing and build
#
# Environment: BUILD (build dir, default build), FL_SKIP_KERNELS=1 (test:
# leave out the stock-kernel run), FL_KERNELS (kernels for it, default 6.1).
# The last line of `test` is "N passed, N failed, N skipped"; the exit status
# is non-zero if anything failed or timed out.
set -euo pipefail
cd "$(dirname "$0")"

BUILD=${BUILD:-build}
# what a fresh Debian 12 lacks for building and testing (gcc, make, git and
# python3 are assumed); the stock-kernel runner installs its own (qemu, ...)
# sqlite3, stress-ng, python3: the preload tests run them (tests/preload/);
# spin model-checks runtime/core/faultpath.pml; clang + libclang-rt: the libFuzzer tests;
# scdoc: the manual pages (doc/); systemtap-sdt-dev: <sys/sdt.h>, the USDT probes;
# gnuplot-nox: faultline plot and the benchmarks' pictures (tests/preload/live.sh);
# libjemalloc2, libtcmalloc-minimal4: the shim beside other allocators (allocators.sh);
# redis-server: a jemalloc program under the shim (redis.sh; it starts its own, on 127.0.0.1);
# nodejs: V8 under the shim (node.sh); memcached: its slabs under the shim (memcached.sh);
# openjdk-17-jdk-headless: the JVM's heap under the shim (java.sh compiles its program);
# postgresql: forked backends under the shim (postgres.sh runs its own cluster)
# libmemcached-dev, libsodium-dev: the store on memcached servers (sealed pages)
PKGS=(meson ninja-build pkg-config gcc liburing-dev liburcu-dev libnuma-dev libc6-dev
	libmemcached-dev libsodium-dev
	python3 sqlite3 stress-ng spin clang libclang-rt-14-dev scdoc systemtap-sdt-dev
	gnuplot-nox libjemalloc2 libtcmalloc-minimal4 redis-server
	nodejs memcached openjdk-17-jdk-headless postgresql)

install_missing() {
	local need=() p sudo=
	for p in "${PKGS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
	done
	[ ${#need[@]} -eq 0 ] && return 0
	[ "$(id -u)" = 0 ] || sudo=sudo
	echo "dev.sh: installing ${need[*]}" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

build() {
	install_missing
	if [ ! -f "$BUILD/build.ninja" ]; then
		meson setup "$BUILD" -Dwerror=true
	fi
	ninja -C "$BUILD"
}

run_tests() {
	local rc=0 setup kernels_out
	rm -f "$BUILD"/meson-logs/testlog*.json "$BUILD"/kernels-summary.txt
	for setup in default asan tsan; do
		echo "== meson test --setup $setup" >&2
		meson test -C "$BUILD" --setup "$setup" --print-errorlogs \
			--num-processes 2 || rc=1
	done
	if [ "${FL_SKIP_KERNELS:-0}" != 1 ]; then
		echo "== stock kernels: ${FL_KERNELS:-6.1}" >&2
		# shellcheck disable=SC2086
		if ! tests/kernels/run.sh ${FL_KERNELS:-6.1} | tee "$BUILD/kernels-summary.txt"; then
			rc=1
		fi
	fi
	python3 tests/summary.py "$BUILD" || rc=1
	return $rc
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
run)
	build
	exec "$BUILD/examples/fill-region" "$@"
	;;
test)
	build
	run_tests
	;;
build)
	build
	;;
*)
	echo "usage: ./dev.sh run [MiB] [threads] | test | build" >&2
	exit 2
	;;
esac
