# memcached-load.py PORT N - load N values into memcached over loopback (text
# protocol, noreply sets), read them all back with multi-gets and print the
# SHA-256 of the values in key order and how many were missing.
import socket, sys, hashlib
port = int(sys.argv[1]); n = int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
def val(i): return (b"%08d" % (i * 2654435761 % 100000000)) * 60
buf = bytearray()
for i in range(n):
    v = val(i)
    buf += b"set key:%d 0 0 %d noreply\r\n%s\r\n" % (i, len(v), v)
    if len(buf) > 1 << 20:
        s.sendall(buf); buf = bytearray()
s.sendall(buf)
h = hashlib.sha256(); f = s.makefile("rb"); missing = 0
for base in range(0, n, 100):
    keys = b" ".join(b"key:%d" % i for i in range(base, min(n, base + 100)))
    s.sendall(b"get " + keys + b"\r\n")
    got = {}
    while True:
        line = f.readline()
        if line == b"END\r\n": break
        _, k, _, ln = line.split()
        got[k] = f.read(int(ln) + 2)[:-2]
    for i in range(base, min(n, base + 100)):
        v = got.get(b"key:%d" % i)
        if v is None: missing += 1
        else: h.update(v)
print(h.hexdigest(), "missing", missing)
