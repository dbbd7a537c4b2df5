#!/usr/bin/env bash
# sqlite3 building and querying a database: same output with and without.
. "$(dirname "$0")/lib.sh"
need sqlite3 sqlite3
probe_uffd
plan 5
cat > "$WORK/q.sql" <<'SQL'
PRAGMA cache_size = -65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO t SELECT i, (i * 7919) % 1000, printf('%08d-%x-%s', i, i * 2654435761 % 4294967296, substr('abcdefghij', 1 + i % 10)) FROM n;
CREATE INDEX t_k ON t(k);
SELECT count(*), sum(k), min(v), max(v) FROM t;
SELECT k, count(*), sum(length(v)) FROM t GROUP BY k ORDER BY k LIMIT 5;
SELECT id, v FROM t WHERE k = 123 ORDER BY v DESC LIMIT 3;
SELECT length(group_concat(v, ',')) FROM t;
SELECT length(zeroblob(20000000)), hex(substr(zeroblob(20000000), 19999990, 4));
SELECT count(*) FROM (SELECT DISTINCT substr(v, 10, 6) FROM t);
SQL
sqlite3 "$WORK/native.db" < "$WORK/q.sql" > "$WORK/native.out"
ok $? "sqlite3 runs natively"
"$FL_CLI" run --min-region 256K --stats-file="$WORK/st.json" -- sqlite3 "$WORK/shim.db" < "$WORK/q.sql" > "$WORK/shim.out"
cmp -s "$WORK/native.out" "$WORK/shim.out" && cmp -s "$WORK/native.db" "$WORK/shim.db"
ok $? "sqlite3 under the shim prints the same bytes and writes the same database"
check_managed "$WORK/st.json" sqlite3
"$FL_CLI" run --min-region 256K --budget 8M --stats-file="$WORK/far.json" -- sqlite3 "$WORK/far.db" < "$WORK/q.sql" > "$WORK/far.out"
cmp -s "$WORK/native.out" "$WORK/far.out" && cmp -s "$WORK/native.db" "$WORK/far.db"
ok $? "sqlite3 under an 8 MiB budget prints the same bytes and writes the same database"
check_far "$WORK/far.json" "sqlite3, 8M budget"
done_testing
