#!/usr/bin/env bash
# PostgreSQL: initdb, pgbench -i (1,000,000 rows), and a query that sorts
# them all into one digest, natively, under the shim and under a 32 MiB
# budget; the query's answer must be the native one. The backends are forked
# from the postmaster without exec: each manages its own memory with a
# runtime of its own, and the one that runs the sort (256 MiB work_mem, a
# 190 MiB in-memory sort) must evict and page in under the budget. PostgreSQL
# refuses to run as root: a throwaway user runs it, let open /dev/userfaultfd
# with faultline setup (put back at exit). On 127.0.0.1 and a socket in the
# test's directory, started and stopped by the test.
. "$(dirname "$0")/lib.sh"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$PGBIN/initdb" ] || skip_all "PostgreSQL is not installed (Debian package postgresql-15)"
need pgbench postgresql-client
need psql postgresql-client
probe_uffd
uffd_user_begin pg
F=$FL_CLI
"$F" setup --user "$U" >/dev/null || skip_all "faultline setup --user $U failed"
as_user test -r "$FL_SHIM" -a -x "$F" || skip_all "the build tree is not readable by other users ($FL_SHIM)"
chmod 711 "$WORK"
D=$WORK/pg
mkdir "$D" && chown "$U" "$D"
pg_stop() { as_user "$PGBIN/pg_ctl" -D "$D/data" -m immediate stop >/dev/null 2>&1; }
UFFD_USER_CLEANUP=pg_stop
plan 7

QUERY="select count(*), sum(abalance), md5(string_agg(aid::text || ':' || bid::text, ','
  order by filler, aid desc)) from pgbench_accounts"
# pg LABEL [PREFIX...]: a fresh cluster under PREFIX (faultline run ...),
# loaded and queried; the answer in $D/LABEL.out
pg() {
	local label=$1 port
	shift
	rm -rf "$D/data"
	as_user "$PGBIN/initdb" -D "$D/data" -A trust -U pg --no-sync > "$D/$label.initdb" 2>&1 ||
		{ diag "initdb failed: $(tail -n 3 "$D/$label.initdb")"; return 1; }
	port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	as_user "$@" "$PGBIN/pg_ctl" -D "$D/data" -l "$D/$label.log" -w -t 60 -o "-p $port -k $D \
		-c listen_addresses=127.0.0.1 -c shared_buffers=16MB -c work_mem=256MB \
		-c maintenance_work_mem=256MB -c max_parallel_workers_per_gather=0 \
		-c max_parallel_maintenance_workers=0" start >/dev/null ||
		{ diag "pg_ctl start failed: $(tail -n 5 "$D/$label.log")"; return 1; }
	timeout 240 setpriv --reuid="$U" --regid="$(id -g "$U")" --init-groups -- \
		pgbench -i -q -s 10 -h 127.0.0.1 -p "$port" -U pg postgres > "$D/$label.pgbench" 2>&1 &&
	timeout 240 setpriv --reuid="$U" --regid="$(id -g "$U")" --init-groups -- \
		psql -X -A -t -h 127.0.0.1 -p "$port" -U pg -c "$QUERY" postgres > "$D/$label.out" 2>&1
	local rc=$?
	as_user "$PGBIN/pg_ctl" -D "$D/data" -w -t 60 stop >/dev/null 2>&1
	return $rc
}

pg native env
ok $? "native: initdb, pgbench -i -s 10, the query: $(cat "$D/native.out")"
want=$(cat "$D/native.out")

pg shim "$F" run --stats-file "$D/shim-%p.json" --
[ "$(cat "$D/shim.out")" = "$want" ]; ok $? "under the shim: the same answer ($(cat "$D/shim.out"))"

pg budget "$F" run --budget 32M --stats-file "$D/budget-%p.json" --
[ "$(cat "$D/budget.out")" = "$want" ]; ok $? "under --budget 32M: the same answer ($(cat "$D/budget.out"))"

# one statistics file per process (postmaster, backends, background workers)
# figures DIR PREFIX: one line per process with a runtime
figures() {
	$PY - "$1" "$2" <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/" + sys.argv[2] + "-*.json")):
    for l in open(f):
        s = json.loads(l)
        if s["runtime"]:
            c = s["counters"]
            print(s["pid"], s["managed"]["bytes_peak"], c["far_evictions"], c["far_pageins"],
                  c["far_resident_peak"], s["page_size"])
PY
}
figures "$D" shim > "$D/shim.fig"
figures "$D" budget > "$D/budget.fig"
diag "under the shim, per process with a runtime (pid, managed peak bytes, evictions, page-ins, resident peak pages):"
diag "$(cat "$D/shim.fig")"
diag "under --budget 32M:"
diag "$(cat "$D/budget.fig")"
n=$(wc -l < "$D/shim.fig")
[ "$n" -ge 2 ]; ok $? "the postmaster's forked processes manage their memory, each with a runtime of its own ($n runtimes)"
big=$(awk '$2 >= 128 * 1048576' "$D/shim.fig" | wc -l)
[ "$big" -ge 1 ]; ok $? "the sorting backend's memory is managed (a process with 128 MiB or more managed: $big)"
ev=$(awk '$3 > 0 && $4 > 0' "$D/budget.fig" | wc -l)
[ "$ev" -ge 1 ]; ok $? "under the budget the sorting backend evicts and pages in ($ev processes)"
# each process's resident peak: the budget + 25 % (java.sh says why)
over=$(awk '$5 * $6 > 32 * 1048576 * 5 / 4' "$D/budget.fig" | wc -l)
[ "$over" = 0 ]; ok $? "every process held its managed memory to the budget + 25 % ($over over)"
done_testing
