#!/usr/bin/env bash
# python3 computing over large buffers: same output with and without the shim.
. "$(dirname "$0")/lib.sh"
[ -x "$PY" ] || skip_all "$PY is not installed (Debian package python3)"
probe_uffd
plan 5
cat > "$WORK/prog.py" <<'PYEOF'
import hashlib
# a big bytearray (one malloc block), written page by page and sliced
b = bytearray(64 << 20)
for i in range(0, len(b), 4096):
    b[i] = (i >> 12) & 0xff
b[1 << 20:2 << 20] = bytes(range(256)) * 4096
print("bytearray", hashlib.sha256(b).hexdigest())
# a list of big bytes objects, built, transformed, dropped
chunks = [bytes([n]) * (3 << 20) + b[n << 12:(n + 1) << 12] for n in range(24)]
chunks = [c.upper() if n % 2 else c[::-1] for n, c in enumerate(chunks)]
print("chunks", len(chunks), hashlib.sha256(b"".join(chunks)).hexdigest())
del chunks
# many small objects: obmalloc arenas come from mmap through the PLT
d = {i: str(i) * 3 for i in range(300000)}
print("dict", sum(len(v) for v in d.values()))
# growth by realloc
s = bytearray()
for n in range(200):
    s += bytes([n]) * 65536
print("grown", len(s), hashlib.sha256(s).hexdigest())
PYEOF
$PY "$WORK/prog.py" > "$WORK/native.out"
ok $? "python3 runs natively"
"$FL_CLI" run --stats-file="$WORK/st.json" -- $PY "$WORK/prog.py" > "$WORK/shim.out"
cmp -s "$WORK/native.out" "$WORK/shim.out"
ok $? "python3 under the shim prints the same bytes"
check_managed "$WORK/st.json" python3
# a budget well below its peak (~200 MiB managed): pages go to the store and back
"$FL_CLI" run --budget 32M --stats-file="$WORK/far.json" -- $PY "$WORK/prog.py" > "$WORK/far.out"
cmp -s "$WORK/native.out" "$WORK/far.out"
ok $? "python3 under a 32 MiB budget prints the same bytes"
check_far "$WORK/far.json" "python3, 32M budget"
done_testing
