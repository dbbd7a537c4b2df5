#!/usr/bin/env bash
# A real program's far memory on a pool of memcached servers: python3 over a
# 160 MiB buffer under `faultline run --budget 32M --store memcached://...`
# with three servers the test starts on 127.0.0.1 (-M, free ports) and stops:
# the same output as natively, pages evicted and read back through the pool
# with no read error, and nothing of a process left in the pool once its
# lease (10 s here, the shortest) has run out, since the shim never destroys its store. A
# pool that does not answer is refused before the program starts. The
# benchmark's farmem-scan on the pool: every line ran, no wrong word.
. "$(dirname "$0")/lib.sh"
need memcached memcached
probe_uffd
plan 7
F=$FL_CLI
USER_OPT=()
[ "$(id -u)" = 0 ] && USER_OPT=(-u root)	# memcached refuses root without -u
PIDS=()
trap 'rm -rf "$WORK"; [ ${#PIDS[@]} -eq 0 ] || kill -9 "${PIDS[@]}" 2>/dev/null' EXIT
free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

PORTS=()
for i in 0 1 2; do
	PORTS+=("$(free_port)")
	memcached "${USER_OPT[@]}" -l 127.0.0.1 -p "${PORTS[i]}" -U 0 -M -m 256 -t 1 \
		> "$WORK/mc$i.log" 2>&1 &
	PIDS+=($!)
done
for p in "${PORTS[@]}"; do
	for ((i = 0; i < 200; i++)); do
		$PY -c "import socket; socket.create_connection(('127.0.0.1', $p)).close()" 2>/dev/null && break
		sleep 0.05
	done
done
POOL="memcached://127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]},127.0.0.1:${PORTS[2]}"

# the items of faultline stores on the pool (memcached lists live ones only)
pool_items() {
	$PY - "${PORTS[@]}" <<'PY'
import socket, sys
n = 0
for p in sys.argv[1:]:
    s = socket.create_connection(("127.0.0.1", int(p)))
    s.sendall(b"lru_crawler metadump all\r\n")
    d = b""
    while not d.endswith(b"END\r\n"):
        r = s.recv(1 << 16)
        if not r:
            break
        d += r
    n += d.count(b"key=fl")
print(n)
PY
}

cat > "$WORK/prog.py" <<'PYEOF'
import hashlib
b = bytearray(160 << 20)
for i in range(0, len(b), 4096):
    b[i] = (i >> 12) & 0xff
b[5 << 20:6 << 20] = bytes(range(256)) * 4096
print(hashlib.sha256(b).hexdigest())
print(sum(b[::4096]))
PYEOF
$PY "$WORK/prog.py" > "$WORK/native.out"

# the default lease (600 s): a short one is for the check of what is left
"$F" run --budget 32M --store "$POOL?replicas=1" --stats-file="$WORK/far.json" \
	-- $PY "$WORK/prog.py" > "$WORK/far.out" 2> "$WORK/far.err"
cmp -s "$WORK/native.out" "$WORK/far.out"
ok $? "python3 with its far memory on three memcached servers prints the same bytes"
check_far "$WORK/far.json" "python3, 32M budget, memcached pool"
re=$(json_get "$WORK/far.json" 's["counters"]["far_read_errors"]')
[ "$re" = 0 ]; ok $? "no read errors ($re)"
# what a process leaves: a short run with a 10 s lease, on the emptied pool
for p in "${PORTS[@]}"; do
	$PY -c "import socket; s = socket.create_connection(('127.0.0.1', $p)); s.sendall(b'flush_all\r\n'); s.recv(16)"
done
cat > "$WORK/small.py" <<'PYEOF'
b = bytearray(48 << 20)
for i in range(0, len(b), 4096):
    b[i] = 1
PYEOF
"$F" run --budget 8M --store "$POOL?lease=10" -- $PY "$WORK/small.py"
n=$(pool_items)
diag "items of the process in the pool when it ended: $n"
for ((i = 0; i < 150 && n > 0; i++)); do
	sleep 0.1
	n=$(pool_items)
done
[ "$n" = 0 ]; ok $? "nothing of the process left in the pool after its lease ($n items)"

dead=$(free_port)
"$F" run --budget 32M --store "memcached://127.0.0.1:$dead" -- true 2> "$WORK/dead.err"
rc=$?
diag "$(head -n 1 "$WORK/dead.err")"
[ $rc = 2 ] && grep -q "127.0.0.1:$dead" "$WORK/dead.err" && ! [ -s "$WORK/dead.out" ]
ok $? "a pool that does not answer: refused before the program starts (exit $rc)"
"$F" run --budget 32M --store "memcached://127.0.0.1:${PORTS[0]}?replicas=1" -- true 2> "$WORK/bad.err"
rc=$?
[ $rc = 2 ] && grep -q "replicas=1" "$WORK/bad.err"
ok $? "replicas=1 over one server: refused, the value named (exit $rc)"

# faultline-bench on the pool: the runtime's page-in and libmemcached's own
# reads of the same items (numbers not judged: this is no timed test)
"$FL_BENCH" --json --pages 2048 --far-store "$POOL" farmem-scan > "$WORK/bench.json" \
	2> "$WORK/bench.err"
rc=$?
$PY - "$WORK/bench.json" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
scan = [l for l in lines if l.get('workload') == 'farmem-scan']
modes = sorted(set((l['mode'], l['order']) for l in scan))
bad = [l for l in scan if 'error' in l or l['bad_words'] or l['pages'] < 2048 * 3 // 4
       or l['io'] != 'memcached']
print('# %d lines, modes %s' % (len(scan), modes))
for l in bad:
    print('# bad line: %s' % l)
sys.exit(len(scan) != 10 or len(modes) != 4 or bool(bad))
PY
ok $? "faultline-bench farmem-scan on the pool: 10 lines, each read right (exit $rc)"
done_testing
