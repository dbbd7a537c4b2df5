#!/usr/bin/env bash
# redis-server (linked with jemalloc) under the shim: started on 127.0.0.1,
# loaded over loopback, its dataset digest (DEBUG DIGEST) and values
# compared with a native run; once without a budget and once with a budget
# well below its memory, where its jemalloc extents must be managed and
# evicted. Each server is stopped after its part, and killed if the test
# ends early.
. "$(dirname "$0")/lib.sh"
need redis-server redis-server
need redis-cli redis-tools
plan 9
probe_uffd
F=$FL_CLI
KEYS=150000	# 150k values of 400 bytes: ~90 MB in the server

SRV_PID=
trap 'rm -rf "$WORK"; [ -z "$SRV_PID" ] || kill -9 "$SRV_PID" 2>/dev/null' EXIT

free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# the dataset, as redis protocol for redis-cli --pipe
$PY "$SRCDIR/tests/preload/redis-load.py" "$KEYS" > "$WORK/load.resp"

# serve NAME [faultline run options...]: start, load, digest, sample, stop
serve() {
	local name=$1 port i cli
	shift
	port=$(free_port)
	cli=(redis-cli -h 127.0.0.1 -p "$port")
	if [ "$name" = native ]; then
		redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
			--enable-debug-command local --dir "$WORK" > "$WORK/$name.log" 2>&1 &
	else
		"$F" run "$@" --stats-file "$WORK/$name.json" -- redis-server --bind 127.0.0.1 \
			--port "$port" --save '' --appendonly no --enable-debug-command local \
			--dir "$WORK" > "$WORK/$name.log" 2>&1 &
	fi
	SRV_PID=$!
	for ((i = 0; i < 200; i++)); do
		[ "$("${cli[@]}" ping 2>/dev/null)" = PONG ] && break
		sleep 0.05
	done
	timeout 120 "${cli[@]}" --pipe < "$WORK/load.resp" > "$WORK/$name.pipe" 2>&1
	timeout 60 "${cli[@]}" debug digest > "$WORK/$name.digest" 2>&1
	for i in 0 1 77777 149999; do
		timeout 10 "${cli[@]}" get "key:$i"
	done > "$WORK/$name.values" 2>&1
	timeout 10 "${cli[@]}" dbsize > "$WORK/$name.dbsize" 2>&1
	timeout 10 "${cli[@]}" shutdown nosave > /dev/null 2>&1
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
	diag "$name: $(tail -n 1 "$WORK/$name.pipe"); dbsize $(cat "$WORK/$name.dbsize"); digest $(cat "$WORK/$name.digest")"
}

serve native
[ "$(cat "$WORK/native.dbsize")" = "$KEYS" ]; ok $? "native: $KEYS keys loaded over loopback"

serve plain
cmp -s "$WORK/native.digest" "$WORK/plain.digest" && cmp -s "$WORK/native.values" "$WORK/plain.values"
ok $? "under the shim, no budget: same DEBUG DIGEST and values as native"
m=$(json_get "$WORK/plain.json" 's["managed"]["mmaps"]')
[ "${m:-0}" -gt 0 ]; ok $? "no budget: jemalloc's extents are managed ($m mappings)"
grep -q "malloc=jemalloc" "$WORK/plain.log" || redis-server --version | grep -q "malloc=jemalloc"
ok $? "the server's allocator is jemalloc ($(redis-server --version | grep -o 'malloc=[^ ]*'))"

serve budget --budget 32M
cmp -s "$WORK/native.digest" "$WORK/budget.digest" && cmp -s "$WORK/native.values" "$WORK/budget.values"
ok $? "under --budget 32M: same DEBUG DIGEST and values as native"
[ "$(cat "$WORK/budget.dbsize")" = "$KEYS" ]; ok $? "under --budget 32M: all $KEYS keys"
check_far "$WORK/budget.json" "redis under --budget 32M"
peak=$(json_get "$WORK/budget.json" 's["counters"]["far_resident_peak"]')
bytes=$(json_get "$WORK/budget.json" 's["managed"]["bytes_peak"]')
diag "managed peak $bytes bytes; resident peak $((peak * 4096)) bytes"
[ "${bytes:-0}" -gt $((64 << 20)) ]; ok $? "the managed memory (${bytes:-0} bytes at peak) is well above the budget: the dataset was managed"
[ "$((peak * 4096))" -le $(( (32 << 20) + (32 << 20) / 10 + (8 << 20) )) ]
ok $? "resident peak $((peak * 4096)) bytes: the budget held (within 10 % + 8 MiB of a batch)"
done_testing
