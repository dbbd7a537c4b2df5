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
#   server-load.sh postgres DIR [WRAPPER...]   pgbench -i -s 10 (1,000,000
#                                              rows), a query sorting them
#                                              all (256 MiB work_mem)
#
# PostgreSQL refuses to run as root: it runs as the system user postgres
# (Debian's package makes it), which must be able to open /dev/userfaultfd
# under the shim (faultline setup --user postgres) and to write the shim's
# statistics files. Its cluster is made once per DIR (initdb, untimed by
# the first, native run) and copied for each run.
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
postgres)
	pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -x "$pgbin/postgres" ] && id postgres >/dev/null 2>&1 ||
		{ echo "server-load: PostgreSQL (and its user postgres) is not installed" >&2; exit 1; }
	as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
	if [ ! -d "$dir/pg-template" ]; then
		install -d -o postgres "$dir/pg-template"
		"${as_pg[@]}" "$pgbin/initdb" -D "$dir/pg-template" -A trust -U pg --no-sync \
			> "$dir/initdb.log" 2>&1 ||
			{ echo "server-load: initdb failed: $(tail -n 3 "$dir/initdb.log")" >&2; exit 1; }
	fi
	rm -rf "$dir/pg-data"
	cp -a "$dir/pg-template" "$dir/pg-data"
	"$@" "${as_pg[@]}" "$pgbin/postgres" -D "$dir/pg-data" -p "$port" -k "$dir/pg-data" \
		-c listen_addresses=127.0.0.1 -c shared_buffers=16MB -c work_mem=256MB \
		-c maintenance_work_mem=256MB -c max_parallel_workers_per_gather=0 \
		-c max_parallel_maintenance_workers=0 -c fsync=off > "$dir/postgres.log" 2>&1 &
	srv=$!
	up pg_isready -q -h 127.0.0.1 -p "$port"
	pgc=(-h 127.0.0.1 -p "$port" -U pg postgres)
	timeout 300 pgbench -i -q -s 10 "${pgc[@]}" > "$dir/pgbench.log" 2>&1 ||
		{ echo "server-load: pgbench -i failed: $(tail -n 2 "$dir/pgbench.log")" >&2; exit 1; }
	timeout 300 psql -X -A -t "${pgc[@]}" -c "select count(*), sum(abalance),
		md5(string_agg(aid::text || ':' || bid::text, ',' order by filler, aid desc))
		from pgbench_accounts"
	kill -INT "$srv"	# a fast shutdown
	stop
	;;
*)
	echo "server-load: '$kind' is not a workload (redis, memcached, postgres)" >&2
	exit 2
	;;
esac
