#!/usr/bin/env python3
# redis-load.py N: the redis workload's dataset as redis protocol for
# `redis-cli --pipe` on standard output: N keys key:I, each a 400-byte
# value derived from I. Shared by the compatibility test (redis.sh) and
# the benchmark's server load (examples/bench/server-load.sh).
import sys

n = int(sys.argv[1])
out = sys.stdout.buffer
for i in range(n):
    k = b"key:%d" % i
    v = (b"%08d" % (i * 2654435761 % 100000000)) * 50
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
