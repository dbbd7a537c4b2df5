#!/usr/bin/env python3
"""Helper for tests/kernels/run.sh (stdlib only).

  select  pick the tests to run from `meson introspect --tests` (suite `kernel`
          by default, or FL_KERNEL_TESTS), write plan.json, print the ninja
          targets that must be built
  stage   fill an initramfs staging dir: test binaries (and, for any that are
          not static, their shared libraries) at their host paths, and /init
  collect read the guest's serial console on stdin, tee it to a log, show
          progress, then print failing tests' output and the summary line
          `kernel <version>: N passed, N failed, N skipped`; exit 0 only if
          nothing failed and at least one test ran

Markers written by the guest (NONCE is random per run, so nothing a test
prints can be mistaken for one; they are searched anywhere in a line, after
CR and escape sequences are removed, so console noise does not hide them):
  === FLTEST NONCE GUEST kernel=<uname -r> ...
  === FLTEST NONCE BEGIN <i>
  === FLTEST NONCE KMSG <i> <kernel log line seen while test i ran>
  === FLTEST NONCE END <i> rc=<exit status> secs=<elapsed>
  === FLTEST NONCE DONE
"""
import fnmatch
import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import time

SKIP_RC = 77


def die(msg):
    print(f"run.sh: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- select

def suites_of(t):
    # introspect spells suites "project:suite"; accept both spellings
    out = set()
    for s in t.get("suite", []):
        out.add(s)
        out.add(s.split(":", 1)[-1])
    return out


def cmd_select(a):
    tests = []
    if a.builddir:
        raw = subprocess.run(["meson", "introspect", "--tests", a.builddir],
                             check=True, capture_output=True, text=True).stdout
        tests = json.loads(raw)
    sel_env = os.environ.get("FL_KERNEL_TESTS", "").replace(",", " ").split()
    suite = os.environ.get("FL_KERNEL_SUITE", "kernel")
    chosen = []
    if sel_env:
        # each entry: a test name (fnmatch pattern) or suite:NAME
        for pat in sel_env:
            if pat.startswith("suite:"):
                hit = [t for t in tests if pat[6:] in suites_of(t)]
            else:
                hit = [t for t in tests if fnmatch.fnmatchcase(t["name"], pat)]
            if not hit and pat != "uffd-probe":
                die(f"FL_KERNEL_TESTS entry {pat!r} matches no test"
                    + ("" if a.builddir else " (no meson build: only uffd-probe exists)"))
            for t in hit:
                if t not in chosen:
                    chosen.append(t)
    else:
        chosen = [t for t in tests if suite in suites_of(t)]
    if a.builddir and not chosen and not sel_env:  # FL_KERNEL_TESTS=uffd-probe: probe only
        die(f"no test selected: mark tests with suite '{suite}' in meson.build "
            "or set FL_KERNEL_TESTS")

    # meson runs higher priority first; keep declaration order otherwise
    chosen.sort(key=lambda t: -t.get("priority", 0))
    mult = float(os.environ.get("FL_KERNEL_TIMEOUT_MULTIPLIER", "5"))
    flat = os.environ.get("FL_KERNEL_TIMEOUT")
    plan = []
    if a.probe:
        plan.append({"name": "uffd-probe", "cmd": [a.probe], "env": {},
                     "cwd": "/tmp", "timeout": int(flat or 60), "protocol": "tap"})
    for t in chosen:
        to = t.get("timeout") or 0
        limit = int(flat) if flat else (int(to * mult) if to > 0 else 600)
        plan.append({"name": t["name"], "cmd": t["cmd"], "env": t.get("env") or {},
                     "cwd": t.get("workdir") or a.builddir, "timeout": max(limit, 1),
                     "protocol": t.get("protocol", "exitcode")})
    with open(a.plan, "w") as f:
        json.dump(plan, f, indent=1)

    # ninja targets: the executables and whatever the tests depend on
    if a.builddir and chosen:
        targets = json.loads(subprocess.run(
            ["meson", "introspect", "--targets", a.builddir],
            check=True, capture_output=True, text=True).stdout)
        byid = {t["id"]: t for t in targets}
        outs = set()
        for t in chosen:
            outs.add(t["cmd"][0])
            for d in t.get("depends", []):
                for fn in byid.get(d, {}).get("filename", []):
                    outs.add(fn)
        for o in sorted(outs):
            if os.path.isabs(o) and o.startswith(os.path.abspath(a.builddir) + "/"):
                print(os.path.relpath(o, a.builddir))


# ---------------------------------------------------------------- stage

def is_elf(p):
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def needs_libs(p):
    r = subprocess.run(["readelf", "-lW", p], capture_output=True, text=True)
    return "Requesting program interpreter" in r.stdout


def shared_libs(p):
    r = subprocess.run(["ldd", p], capture_output=True, text=True)
    libs = []
    for line in r.stdout.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def put(stage, src, strip):
    dst = os.path.join(stage, os.path.normpath(src).lstrip("/"))
    if os.path.exists(dst):
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(src, dst, follow_symlinks=True)
    if strip and is_elf(dst):
        # smaller initramfs, faster boot; keeps the symbol table
        subprocess.run(["strip", "--strip-debug", dst], capture_output=True)


def cmd_stage(a):
    plan = json.load(open(a.plan))
    dynamic = []
    for t in plan:
        exe = t["cmd"][0]
        if not os.path.isfile(exe):
            die(f"test {t['name']!r}: {exe} was not built")
        put(a.stage, exe, True)
        # data files named on the command line travel along at the same path
        for arg in t["cmd"][1:]:
            if os.path.isabs(arg) and os.path.isfile(arg):
                put(a.stage, arg, False)
        if is_elf(exe) and needs_libs(exe):
            dynamic.append(t["name"])
            for lib in shared_libs(exe):
                put(a.stage, lib, False)
                if os.path.islink(lib):
                    put(a.stage, os.path.realpath(lib), False)
    if dynamic:
        print(f"run.sh: note: not static, shared libraries copied into the guest: "
              f"{', '.join(dynamic)}", file=sys.stderr)

    n = a.nonce
    lines = [
        "#!/bin/sh",
        "/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp",
        "/bin/busybox --install -s",
        "export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root",
        "mkdir -p /root",
        "mount -t proc proc /proc",
        "mount -t sysfs sys /sys",
        "mount -t devtmpfs dev /dev",
        "mkdir -p /dev/shm /dev/pts",
        "mount -t tmpfs tmpfs /dev/shm",
        # /tmp stays on the rootfs (itself a tmpfs): a mount over it would hide
        # test files staged at host paths under /tmp
        "chmod 1777 /tmp",
        "mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null",
        "mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null",
        "ip link set lo up 2>/dev/null",
        "ulimit -c 0; ulimit -l unlimited 2>/dev/null",
        # keep kernel messages off the console while tests run; problems are
        # fetched from the ring buffer after each test and reported as KMSG
        "dmesg -n 1; dmesg -c >/dev/null",
        f'echo "=== FLTEST {n} GUEST kernel=$(uname -r) cpus=$(nproc) '
        f'memkb=$(sed -n \'s/^MemTotal: *\\([0-9]*\\).*/\\1/p\' /proc/meminfo) '
        f'up=$(cut -d" " -f1 /proc/uptime)"',
        "fl_run() {",
        "  i=$1; lim=$2; dir=$3; shift 3",
        "  mkdir -p \"$dir\"; cd \"$dir\" || cd /tmp",
        f'  echo; echo "=== FLTEST {n} BEGIN $i"',
        "  t0=$(cut -d' ' -f1 /proc/uptime)",
        "  timeout -s KILL \"$lim\" \"$@\" </dev/null 2>&1",
        "  rc=$?",
        "  t1=$(cut -d' ' -f1 /proc/uptime)",
        "  cd /",
        "  dmesg -c | grep -iE 'BUG|Oops|WARNING|panic|lockup|hung|blocked for|"
        "general protection|Call Trace|RIP:|segfault|traps:|invalid opcode|"
        "userfaultfd|Out of memory|oom|Killed process' | head -n 60 |",
        f'    while IFS= read -r l; do echo "=== FLTEST {n} KMSG $i $l"; done',
        f'  echo; echo "=== FLTEST {n} END $i rc=$rc secs=$(awk "BEGIN{{print $t1-$t0}}")"',
        "}",
    ]
    for i, t in enumerate(plan):
        envs = [f"{k}={v}" for k, v in sorted(t["env"].items())]
        argv = (["env"] + envs if envs else []) + t["cmd"]
        lines.append(f"fl_run {i} {t['timeout']} {shlex.quote(t['cwd'])} "
                     + " ".join(shlex.quote(x) for x in argv))
    lines += [f'echo "=== FLTEST {n} DONE"', "sync", "poweroff -f", "sleep 5", ""]
    init = os.path.join(a.stage, "init")
    with open(init, "w") as f:
        f.write("\n".join(lines))
    os.chmod(init, 0o755)


# ---------------------------------------------------------------- collect

ANSI = re.compile(rb"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")
KERNEL_PROBLEM = re.compile(
    r"BUG:|Oops|WARNING:|Kernel panic|soft lockup|hard LOCKUP|blocked for more than|"
    r"general protection fault|kernel BUG|RCU stall|rcu_sched self-detected")
PRINTK = re.compile(r"^\s*\[\s*\d+\.\d+\] ")
TAP_NOT_OK = re.compile(r"^\s*not ok\b(?!.*#\s*TODO)", re.I)
TAP_PLAN = re.compile(r"^\s*1\.\.(\d+)(\s*#\s*skip.*)?", re.I)
TAP_OK = re.compile(r"^\s*(not )?ok\b", re.I)


def verdict(t, res):
    """-> (status, reason); status in PASS FAIL SKIP"""
    if res is None or "rc" not in res:
        seen = [l for l in (res or {}).get("out", [])
                if PRINTK.match(l) and KERNEL_PROBLEM.search(l)]
        return "FAIL", ("no result: " + PRINTK.sub("", seen[0]) if seen else
                        "no result (guest died, hung or ran out of time)")
    rc, secs, out, kmsg = res["rc"], res["secs"], res["out"], res["kmsg"]
    # kernel lines from the ring buffer, and any the console printed directly
    problems = [k for k in kmsg if KERNEL_PROBLEM.search(k)]
    problems += [l for l in out if PRINTK.match(l) and KERNEL_PROBLEM.search(l)]
    if problems:
        return "FAIL", f"kernel reported a problem: {problems[0]}"
    if rc == 137 and secs >= t["timeout"] - 1:
        return "FAIL", f"timed out after {t['timeout']} s"
    if rc == SKIP_RC:
        return "SKIP", "exit 77"
    if rc != 0:
        return "FAIL", f"exit status {rc}"
    if t["protocol"] == "tap":
        planned, ran, skipall = None, 0, False
        for line in out:
            if line.lstrip().startswith("Bail out!"):
                return "FAIL", "TAP: Bail out!"
            if TAP_NOT_OK.search(line):
                return "FAIL", f"TAP: {line.strip()}"
            m = TAP_PLAN.match(line)
            if m and planned is None:
                planned, skipall = int(m.group(1)), bool(m.group(2))
            if TAP_OK.match(line):
                ran += 1
        if planned == 0 and skipall:
            return "SKIP", "TAP: 1..0 # SKIP"
        if planned is not None and ran != planned:
            return "FAIL", f"TAP: planned {planned}, ran {ran}"
    return "PASS", ""


def cmd_collect(a):
    plan = json.load(open(a.plan))
    n = re.escape(a.nonce)
    rx = re.compile(rf"=== FLTEST {n} (GUEST|BEGIN|KMSG|END|DONE)\b ?(.*)")
    verbose = os.environ.get("FL_KERNEL_VERBOSE", "") not in ("", "0")
    tag = a.label
    results, cur, buf, kmsg = {}, None, [], []
    version, done, tail = None, False, []
    start = time.monotonic()
    deadline = start + a.total_timeout
    why = ""
    log = open(a.log, "wb")
    qemu = subprocess.Popen(a.qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    fd = qemu.stdout.fileno()
    pending = b""
    eof = False
    done_at = None
    while not eof:
        now = time.monotonic()
        if not why and now > deadline:
            why = f"killed after {a.total_timeout:.0f} s"
            qemu.kill()
        elif not why and done_at and now > done_at + 15:
            why = "guest finished but did not power off"
            qemu.kill()
        r, _, _ = select.select([qemu.stdout], [], [], 1.0)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            eof = True
            chunk = b""
        log.write(chunk)
        log.flush()
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if eof and pending:
            lines.append(pending)
        for raw in lines:
            line = ANSI.sub(b"", raw).replace(b"\r", b"")
            line = line.decode("utf-8", "replace")
            tail = (tail + [line])[-40:]
            if verbose:
                print(f"  [{tag}] {line}", file=sys.stderr, flush=True)
            m = rx.search(line)
            if not m:
                if cur is not None:
                    buf.append(line)
                    if line.startswith("# uffd-probe:"):
                        print(f"  [{tag}] {line[2:]}", file=sys.stderr, flush=True)
                continue
            kind, rest = m.group(1), m.group(2)
            before = line[:m.start()]
            if cur is not None and before.strip():
                buf.append(before)
            if kind == "GUEST":
                mm = re.search(r"kernel=(\S+)", rest)
                version = mm.group(1) if mm else version
                print(f"  [{tag}] guest up after {time.monotonic() - start:.1f} s: {rest}",
                      file=sys.stderr, flush=True)
            elif kind == "BEGIN":
                cur, buf, kmsg = int(rest.split()[0]), [], []
            elif kind == "KMSG":
                parts = rest.split(" ", 1)
                kmsg.append(parts[1] if len(parts) > 1 else "")
            elif kind == "END":
                mm = re.match(r"(\d+) rc=(\d+) secs=([0-9.]+)", rest)
                if mm and int(mm.group(1)) < len(plan):
                    i = int(mm.group(1))
                    results[i] = {"rc": int(mm.group(2)), "secs": float(mm.group(3)),
                                  "out": buf, "kmsg": kmsg}
                    st, reason = verdict(plan[i], results[i])
                    print(f"  [{tag}] {st:4} {plan[i]['name']} ({results[i]['secs']:.1f} s)"
                          + (f": {reason}" if reason and st != "PASS" else ""),
                          file=sys.stderr, flush=True)
                cur, buf, kmsg = None, [], []
            elif kind == "DONE":
                done, done_at = True, time.monotonic()
    qrc = qemu.wait()
    wall = time.monotonic() - start
    if not why:
        why = f"qemu exited with status {qrc} before the end marker"
    log.close()
    print(f"  [{tag}] qemu wall {wall:.1f} s", file=sys.stderr, flush=True)

    if version is None:
        version = a.fallback_version
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for i, t in enumerate(plan):
        res = results.get(i)
        if res is None and cur == i:  # died inside this test: keep what it printed
            res_partial = {"out": buf, "kmsg": kmsg}
        else:
            res_partial = None
        st, reason = verdict(t, res or res_partial)
        counts[st] += 1
        if st == "FAIL":
            print(f"--- kernel {version}: FAIL {t['name']}: {reason}")
            print(f"    command: {' '.join(shlex.quote(x) for x in t['cmd'])}")
            shown = res or res_partial
            if shown:
                out = list(shown["out"])
                while out and not out[-1].strip():
                    out.pop()
                for l in out:
                    print(f"    | {l}")
                for k in shown["kmsg"]:
                    print(f"    | [kernel] {k}")
    if not done:
        print(f"--- kernel {version}: the guest did not finish ({why}); "
              + ("output shown above" if cur is not None else "last console lines:"))
        if cur is None:
            for l in tail[-25:]:
                print(f"    | {l}")
    print(f"kernel {version}: {counts['PASS']} passed, {counts['FAIL']} failed, "
          f"{counts['SKIP']} skipped", flush=True)
    ok = counts["FAIL"] == 0 and counts["PASS"] > 0 and done
    with open(a.log + ".counts", "w") as f:
        f.write(f"{counts['PASS']} {counts['FAIL']} {counts['SKIP']} {int(ok)}\n")
    sys.exit(0 if ok else 1)


def main():
    import argparse
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("select")
    s.add_argument("--builddir")
    s.add_argument("--probe")
    s.add_argument("--plan", required=True)
    s = sub.add_parser("stage")
    s.add_argument("--plan", required=True)
    s.add_argument("--stage", required=True)
    s.add_argument("--nonce", required=True)
    s = sub.add_parser("collect")
    s.add_argument("--plan", required=True)
    s.add_argument("--nonce", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--label", required=True)
    s.add_argument("--fallback-version", required=True)
    s.add_argument("--total-timeout", type=float, required=True)
    s.add_argument("qemu", nargs="+")
    a = p.parse_args()
    {"select": cmd_select, "stage": cmd_stage, "collect": cmd_collect}[a.cmd](a)


if __name__ == "__main__":
    main()
