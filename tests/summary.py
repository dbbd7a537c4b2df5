#!/usr/bin/env python3
"""Print the one line CI reads: 'N passed, N failed, N skipped'.

Counts every meson test result in BUILD/meson-logs/testlog*.json (one file
per test setup) and the per-kernel lines of tests/kernels/run.sh saved in
BUILD/kernels-summary.txt. Exit 1 if anything failed or timed out, or if
nothing ran at all.
"""
import glob
import json
import os
import re
import sys

build = sys.argv[1] if len(sys.argv) > 1 else "build"
passed = failed = skipped = 0
bad = []
for path in sorted(glob.glob(os.path.join(build, "meson-logs", "testlog*.json"))):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            res = t.get("result", "")
            if res in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif res == "SKIP":
                skipped += 1
            else:  # FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS, INTERRUPT
                failed += 1
                bad.append(f"{t.get('name')} ({res})")

kpath = os.path.join(build, "kernels-summary.txt")
if os.path.exists(kpath):
    pat = re.compile(r"^kernel (\S+): (\d+) passed, (\d+) failed, (\d+) skipped")
    seen = False
    with open(kpath) as f:
        for line in f:
            m = pat.match(line.strip())
            if m:
                seen = True
                passed += int(m.group(2))
                failed += int(m.group(3))
                skipped += int(m.group(4))
                if int(m.group(3)):
                    bad.append(f"kernel {m.group(1)}")
    if not seen:
        failed += 1
        bad.append("stock-kernel run printed no summary")

for b in bad:
    print(f"failed: {b}")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or passed == 0 else 0)
