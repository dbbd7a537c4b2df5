#!/usr/bin/env bash
# server-load.sh - one server workload of programs-bench.sh, start to stop:
# the server started on 127.0.0.1 and a free port under a wrapper command
# (nothing, `faultline run ...`, or one that enters a memory cgroup), loaded
# over loopback, its data read back, a digest of it printed, the server
# stopped. The same workloads as the compatibility tests (tests/preload/):
#
#   server-load.sh redis DIR [WRAPPER...]      150,000 values of 400 bytes
#                                              (~90 MB), DEBUG DIGEST
#   server-load.sh memcached DIR [WRAPPER...]  100,000 values of 480 bytes
#                                              (~50 MB), multi-gets
#
# DIR is a scratch directory (the server's files, the load, its log). Only
# the server runs under the wrapper: the client's memory is neither managed
# nor charged. The standard output is the digest alone, so that a run can
# be compared byte for byte with a native one; exit non-zero if the server
# does not come up or the load fails.
set -euo pipefail
kind=${1:?redis or memcached}
dir=${2:?a scratch directory}
shift 2
src=$(readlink -f "$(dirname "$0")/../..")
srv=

stop() {
	local i
	[ -n "$srv" ] || return 0
	for ((i = 0; i < 200; i++)); do
		kill -0 "$srv" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$srv" 2>/dev/null; then
		echo "server-load: $kind did not stop: killed" >&2
		kill -9 "$srv"
	fi
	wait "$srv" 2>/dev/null || true
	srv=
}
trap '[ -z "$srv" ] || kill -9 "$srv" 2>/dev/null' EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# up CHECK...: wait up to 10 s for CHECK to succeed
up() {
	local i
	for ((i = 0; i < 200; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$srv" 2>/dev/null || break
		sleep 0.05
	done
	echo "server-load: $kind did not come up on 127.0.0.1:$port (log: $dir/$kind.log)" >&2
	exit 1
}

case "$kind" in
redis)
	keys=150000
	if [ ! -s "$dir/redis.resp" ]; then
		python3 "$src/tests/preload/redis-load.py" "$keys" > "$dir/redis.resp"
	fi
	cli=(redis-cli -h 127.0.0.1 -p "$port")
	"$@" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
		--enable-debug-command local --dir "$dir" > "$dir/redis.log" 2>&1 &
	srv=$!
	up sh -c '[ "$(redis-cli -h 127.0.0.1 -p "$1" ping)" = PONG ]' sh "$port"
	timeout 300 "${cli[@]}" --pipe < "$dir/redis.resp" > "$dir/redis.pipe" 2>&1 ||
		{ echo "server-load: redis-cli --pipe failed: $(tail -n 2 "$dir/redis.pipe")" >&2; exit 1; }
	echo "dbsize $(timeout 60 "${cli[@]}" dbsize)"
	echo "digest $(timeout 120 "${cli[@]}" debug digest)"
	timeout 10 "${cli[@]}" shutdown nosave >/dev/null 2>&1 || true
	stop
	;;
memcached)
	user=()
	[ "$(id -u)" != 0 ] || user=(-u root)	# memcached refuses root without -u
	"$@" memcached "${user[@]}" -l 127.0.0.1 -p "$port" -U 0 -m 512 -t 2 > "$dir/memcached.log" 2>&1 &
	srv=$!
	up python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()"
	timeout 300 python3 "$src/tests/preload/memcached-load.py" "$port" 100000
	kill -TERM "$srv"
	stop
	;;
*)
	echo "server-load: '$kind' is not a workload (redis, memcached)" >&2
	exit 2
	;;
esac
