#!/usr/bin/env bash
# memcached under the shim: its slab pages (1 MiB malloc blocks) managed.
# Started on 127.0.0.1 and a free port, loaded over loopback with 100,000
# values (~50 MB), read back with multi-gets, the digest of the values
# compared with a native run; once without a budget, once with a 24 MiB
# budget, where the slabs must be evicted and read back. Each server is
# stopped after its part, and killed if the test ends early.
. "$(dirname "$0")/lib.sh"
need memcached memcached
plan 6
probe_uffd
F=$FL_CLI
N=100000
LOAD="$(dirname "$0")/memcached-load.py"
# memcached refuses to run as root without -u
USER_OPT=()
[ "$(id -u)" = 0 ] && USER_OPT=(-u root)

SRV_PID=
trap 'rm -rf "$WORK"; [ -z "$SRV_PID" ] || kill -9 "$SRV_PID" 2>/dev/null' EXIT
free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# serve NAME [faultline run options...]: start, load and read back, stop
serve() {
	local name=$1 port i
	shift
	port=$(free_port)
	if [ "$name" = native ]; then
		memcached "${USER_OPT[@]}" -l 127.0.0.1 -p "$port" -U 0 -m 512 -t 2 > "$WORK/$name.log" 2>&1 &
	else
		"$F" run "$@" --stats-file "$WORK/$name.json" -- memcached "${USER_OPT[@]}" \
			-l 127.0.0.1 -p "$port" -U 0 -m 512 -t 2 > "$WORK/$name.log" 2>&1 &
	fi
	SRV_PID=$!
	for ((i = 0; i < 200; i++)); do
		$PY -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" 2>/dev/null && break
		sleep 0.05
	done
	timeout 150 $PY "$LOAD" "$port" "$N" > "$WORK/$name.out" 2>&1
	kill -TERM "$SRV_PID"
	for ((i = 0; i < 200; i++)); do
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$SRV_PID" 2>/dev/null; then
		diag "$name: the server did not stop: killed"
		kill -9 "$SRV_PID"
	fi
	wait "$SRV_PID" 2>/dev/null
	SRV_PID=
	diag "$name: $(cat "$WORK/$name.out")"
}

serve native
want=$(cat "$WORK/native.out")
[[ $want == *" missing 0" ]]; ok $? "native: $N values stored and read back"

serve plain
[ "$(cat "$WORK/plain.out")" = "$want" ]; ok $? "under the shim, no budget: the same values"
b=$(json_get "$WORK/plain.json" 's["managed"]["malloc_blocks"]')
[ "${b:-0}" -ge 40 ]; ok $? "no budget: the slab pages are managed ($b blocks)"

serve budget --budget 24M
[ "$(cat "$WORK/budget.out")" = "$want" ]; ok $? "under --budget 24M: the same values"
check_far "$WORK/budget.json" "memcached under --budget 24M"
peak=$(json_get "$WORK/budget.json" 's["counters"]["far_resident_peak"]')
[ "$((peak * 4096))" -le $(( (24 << 20) + (24 << 20) / 10 + (8 << 20) )) ]
ok $? "resident peak $((peak * 4096)) bytes: the budget held (within 10 % + 8 MiB of a batch)"
done_testing
