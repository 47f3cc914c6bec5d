#!/usr/bin/env bash
# pgstress side by side with pgbench and with the original's design, on one throwaway server.
#
#   benches/compare.sh            # everything, 3 pairs per comparison
#   PAIRS=5 PARTS="a b" benches/compare.sh
#
# Builds pgstress (release), starts its own PostgreSQL cluster on a free 127.0.0.1 port
# (SCRAM password authentication over TCP, as a real deployment), loads the demo table, then
# runs each comparison alternately, A B A B, and prints the medians and their ratios:
#   a  connection per request: pgstress burst steps vs pgbench -C -c N -j 2
#   b  persistent connections: pgstress --mode pool (lean and --client postgres) vs
#      pgbench -c N -j 2 -M prepared
#   c  the original's design (benches/original.py, psycopg2 + multiprocessing) vs burst mode
#      (lean and --client postgres) vs the design's floor (examples/ramp_floor.rs: the same
#      ramp and lookups on the lean connection with nothing measured) vs pgbench -C, the same
#      requests, alternating on one server
#   d  launch scaling: one burst step of 1,000, 5,000 and 10,000 threads
#   e  the same steps with pgstress pinned to CPU 0 and the server to the other CPUs (taskset),
#      to tell pgstress's own launch from the competition with a server on the same cores
# Client CPU is user + system time of the client process and its children (/usr/bin/time).
# Raw figures and every run's logs are kept in $RESULTS (default target/bench-results/<time>).
#
# Settings (environment):
#   PAIRS=3                 pairs per comparison (A B repeated)
#   PARTS="a b c d e"       which comparisons to run
#   SIZES="50 100 300"      concurrency of a and b
#   TOTAL=1200              requests per run in a (about; the same for both tools)
#   POOL_TOTAL=20000        requests per run in b
#   ORIG_STEPS=6 ORIG_STEP=50    the ramp of c: 50, 100, ... 300, 1,050 requests (the original's
#                           default is 15 steps, to 750)
#   SCALE_SIZES="1000 5000 10000" SCALE_TIMEOUT=30s   part d
#   MAX_CONNECTIONS=1000    the server's max_connections for a, b and c
#   SCALE_MAX_CONNECTIONS=10100  ... and for d
#   PGBIN=/usr/lib/postgresql/15/bin   PostgreSQL server binaries
set -euo pipefail

PAIRS=${PAIRS:-3}
PARTS=${PARTS:-"a b c d e"}
SIZES=${SIZES:-"50 100 300"}
TOTAL=${TOTAL:-1200}
POOL_TOTAL=${POOL_TOTAL:-20000}
ORIG_STEPS=${ORIG_STEPS:-6}
ORIG_STEP=${ORIG_STEP:-50}
SCALE_SIZES=${SCALE_SIZES:-"1000 5000 10000"}
SCALE_TIMEOUT=${SCALE_TIMEOUT:-30s}
MAX_CONNECTIONS=${MAX_CONNECTIONS:-1000}
SCALE_MAX_CONNECTIONS=${SCALE_MAX_CONNECTIONS:-10100}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
TIME=/usr/bin/time

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCHES=$ROOT/benches
RESULTS=${RESULTS:-$ROOT/target/bench-results/$(date +%Y%m%d_%H%M%S)}
RAW=$RESULTS/raw.tsv

die() { echo "compare.sh: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }
has_part() { [[ " $PARTS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- prerequisites
[ -x "$TIME" ] || die "$TIME is missing (apt-get install -y time)"
command -v pgbench >/dev/null || die "pgbench is missing (apt-get install -y postgresql-client)"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL server binaries in '$PGBIN' (apt-get install -y postgresql)"
id postgres >/dev/null 2>&1 || die "no 'postgres' OS user to run the server as"

note "building pgstress (release)"
(cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example ramp_floor)
BIN=$ROOT/target/release/pgstress
FLOOR=$ROOT/target/release/examples/ramp_floor

# ---------------------------------------------------------------- throwaway cluster
WORK=$(mktemp -d /tmp/pgstress-bench.XXXXXX)
chmod 755 "$WORK"
PGDATA=$WORK/pgdata
SERVER_UP=0
cleanup() {
    if [ "$SERVER_UP" = 1 ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local port
    while :; do
        port=$((10000 + RANDOM % 22768))  # below the ephemeral range
        ss -Hltn "sport = :$port" 2>/dev/null | grep -q . || { echo "$port"; return; }
    done
}

PORT=$(free_port)
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
DSN="host=127.0.0.1 port=$PORT user=postgres password=$PASSWORD dbname=postgres"
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGPASSWORD=$PASSWORD PGDATABASE=postgres

printf '%s\n' "$PASSWORD" >"$WORK/pwfile"
mkdir -p "$PGDATA" "$WORK/socket" "$WORK/log"
chown postgres: "$WORK/pwfile" "$PGDATA" "$WORK/socket" "$WORK/log"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -U postgres --pwfile="$WORK/pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer --no-sync >"$WORK/initdb.log" 2>&1 ||
    die "initdb failed: $(cat "$WORK/initdb.log")"

start_server() { # max_connections
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/log/server.log" -w -t 120 \
        -o "-c port=$PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$WORK/socket -c max_connections=$1 -c fsync=off" \
        start >/dev/null || die "the server did not start: $(tail -n 5 "$WORK/log/server.log")"
    SERVER_UP=1
}
stop_server() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    SERVER_UP=0
}

mkdir -p "$RESULTS"
start_server "$MAX_CONNECTIONS"
"$BIN" prepare --dsn "$DSN" --write-data "$WORK/data" >/dev/null
PG_VERSION=$(psql -XAtc 'SHOW server_version')
note "PostgreSQL $PG_VERSION on 127.0.0.1:$PORT (max_connections $MAX_CONNECTIONS), results in $RESULTS"

# The pgbench script computes the lookup pgstress makes: the demo's row n has
# url_hash = md5('https://example.com/page/' || n), and the parameter files hold every 20th row.
cat >"$WORK/lookup.sql" <<'SQL'
\set id 20 * random(1, 5000)
SELECT * FROM sharding WHERE url_hash = decode(md5('https://example.com/page/' || :id), 'hex');
SQL

# ---------------------------------------------------------------- measuring
# raw.tsv: part tool size pair requests failed elapsed_s cpu_s rss_kib tool_rps spread_ms spawn server_cpu_s
printf 'part\ttool\tsize\tpair\trequests\tfailed\telapsed_s\tcpu_s\trss_kib\ttool_rps\tspread_ms\tspawn\tserver_cpu_s\n' >"$RAW"
record() { printf '%s\t' "$@" "$SERVER_CPU" | sed 's/\t$//' >>"$RAW"; echo >>"$RAW"; }

# CPU seconds of the server so far: the postmaster's own and that of every backend it reaped.
CLK_TCK=$(getconf CLK_TCK)
server_cpu_total() {
    cut -d')' -f2 "/proc/$(head -n 1 "$PGDATA/postmaster.pid")/stat" |
        awk -v hz="$CLK_TCK" '{ printf "%.2f\n", ($12 + $13 + $14 + $15) / hz }'
}

# Runs a command under /usr/bin/time; sets ELAPSED, CPU (user + sys, children included), RSS,
# and SERVER_CPU, the server's CPU seconds meanwhile.
timed() { # out-prefix command...
    local prefix=$1 server_before
    shift
    server_before=$(server_cpu_total)
    "$TIME" -f '%e %U %S %M' -o "$prefix.time" "$@" >"$prefix.out" 2>&1 || true
    SERVER_CPU=$(awk -v a="$server_before" -v b="$(server_cpu_total)" 'BEGIN { printf "%.2f", b - a }')
    read -r ELAPSED user sys RSS < <(tail -n 1 "$prefix.time")
    CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.3f", u + s }')
}

# Sums columns of a pgstress steps CSV by header name: prints requests failed sum_wall spread_max spawn.
steps_totals() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        { req += $col["requests"]; failed += $col["failed"]; wall += $col["wall_s"];
          spawn += $col["spawn"]; if ($col["launch_spread_ms"] > spread) spread = $col["launch_spread_ms"] }
        END { printf "%d %d %.6f %.1f %d\n", req, failed, wall, spread, spawn }' "$1"
}

# A ramp of `steps` steps of +1 around `size`, so that the run sends steps * size requests.
# (pgstress has no constant ramp: --step 0 is refused.)
ramp_start() { echo $(($1 - ($2 - 1) / 2)); }

run_pgstress() { # part size pair prefix args...   (TOOL=name: the tool column, default pgstress)
    local part=$1 size=$2 pair=$3 prefix=$4
    shift 4
    rm -rf "$prefix.logs"
    timed "$prefix" ${CLIENT_PIN:-} "$BIN" run --dsn "$DSN" --data "$WORK/data" --logs "$prefix.logs" --no-stop "$@"
    local steps_csv req failed wall spread spawn
    steps_csv=$(ls "$prefix".logs/*_steps.csv 2>/dev/null | head -n 1)
    [ -n "$steps_csv" ] || die "pgstress wrote no steps CSV: $(tail -n 5 "$prefix.out")"
    read -r req failed wall spread spawn < <(steps_totals "$steps_csv")
    local rps
    rps=$(awk -v r="$req" -v w="$wall" 'BEGIN { printf "%.1f", (w > 0 ? r / w : 0) }')
    record "$part" "${TOOL:-pgstress}" "$size" "$pair" "$req" "$failed" "$ELAPSED" "$CPU" "$RSS" "$rps" "$spread" "$spawn"
}

# Waits until the server has worked off the last storm: after a step of 10,000 connections the
# postmaster still forks a backend for each one queued, long after its client gave up, and a
# run started then would time out in pre-flight. At most SETTLE_SECONDS (default 180).
settle() {
    local deadline=$((SECONDS + ${SETTLE_SECONDS:-180})) backends
    while [ "$SECONDS" -lt "$deadline" ]; do
        backends=$(PGCONNECT_TIMEOUT=5 psql -XAtc "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'" 2>/dev/null || true)
        [ "$backends" = 1 ] && return
        sleep 2
    done
    die "the server did not settle within ${SETTLE_SECONDS:-180} s after the last run"
}

run_pgbench() { # part size pair prefix transactions-per-client args...
    local part=$1 size=$2 pair=$3 prefix=$4 per_client=$5
    shift 5
    timed "$prefix" pgbench -n -c "$size" -j 2 -t "$per_client" -f "$WORK/lookup.sql" "$@"
    local done tps
    done=$(awk '/number of transactions actually processed/ { split($NF, a, "/"); print a[1] }' "$prefix.out")
    tps=$(awk '/^tps = / { print $3; exit }' "$prefix.out")
    [ -n "$done" ] || die "pgbench failed: $(tail -n 5 "$prefix.out")"
    local want=$((size * per_client))
    record "$part" pgbench "$size" "$pair" "$want" $((want - done)) "$ELAPSED" "$CPU" "$RSS" "${tps:-0}" "" ""
}

# ---- a: connection per request
if has_part a; then
    for pair in $(seq 1 "$PAIRS"); do
        for size in $SIZES; do
            steps=$(((TOTAL + size - 1) / size))
            steps=$((steps | 1)) # odd, so the ramp is centred on size
            note "a: pair $pair, $size concurrent, $((steps * size)) requests"
            run_pgstress a "$size" "$pair" "$RESULTS/a-pgstress-$size-$pair" \
                --steps "$steps" --start "$(ramp_start "$size" "$steps")" --step 1
            run_pgbench a "$size" "$pair" "$RESULTS/a-pgbench-$size-$pair" "$steps" -C
        done
    done
fi

# ---- b: persistent connections
POOL_MODE=0
if "$BIN" run --help | grep -q -- '--mode'; then POOL_MODE=1; fi
if has_part b && [ "$POOL_MODE" = 0 ]; then
    note "b: skipped: this pgstress has no --mode (pool mode not built yet)"
elif has_part b; then
    for pair in $(seq 1 "$PAIRS"); do
        for size in $SIZES; do
            per_client=$(((POOL_TOTAL + size - 1) / size))
            steps=5
            note "b: pair $pair, $size workers, $((per_client * size)) requests"
            run_pgstress b "$size" "$pair" "$RESULTS/b-pgstress-$size-$pair" --mode pool --workers "$size" \
                --steps "$steps" --start "$(ramp_start $((per_client * size / steps)) "$steps")" --step 1
            # The pool prepares the query once per connection: pgbench does the same with -M prepared.
            run_pgbench b "$size" "$pair" "$RESULTS/b-pgbench-$size-$pair" "$per_client" -M prepared
            # The pool's workers through the postgres crate, as before they used the lean connection.
            TOOL=postgres run_pgstress b "$size" "$pair" "$RESULTS/b-postgres-$size-$pair" --mode pool \
                --workers "$size" --client postgres --steps "$steps" \
                --start "$(ramp_start $((per_client * size / steps)) "$steps")" --step 1
        done
    done
fi

# ---- c: the original's design
PYTHON=""
for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import psycopg2' 2>/dev/null; then
        PYTHON=$(command -v "$candidate")
        break
    fi
done
if has_part c && [ -z "$PYTHON" ]; then
    note "c: skipped: no python3 with psycopg2 (apt-get install -y python3-psycopg2)"
elif has_part c; then
    requests=$((ORIG_STEP * ORIG_STEPS * (ORIG_STEPS + 1) / 2))
    for pair in $(seq 1 "$PAIRS"); do
        note "c: round $pair, original design, $ORIG_STEPS steps of +$ORIG_STEP ($requests requests)"
        prefix=$RESULTS/c-original-$pair
        timed "$prefix" "$PYTHON" "$BENCHES/original.py" --dsn "$DSN" --data "$WORK/data" \
            --logs "$prefix.logs" --steps "$ORIG_STEPS" --step "$ORIG_STEP"
        cpu_csv=$(ls "$prefix".logs/*_steps_cpu.csv 2>/dev/null | head -n 1)
        [ -n "$cpu_csv" ] || die "original.py failed: $(tail -n 5 "$prefix.out")"
        read -r failed wall < <(awk -F, 'NR > 1 { f += $3; w += $4 } END { printf "%d %.6f\n", f, w }' "$cpu_csv")
        record c original "$ORIG_STEP" "$pair" "$requests" "$failed" "$ELAPSED" "$CPU" "$RSS" \
            "$(awk -v r="$requests" -v w="$wall" 'BEGIN { printf "%.1f", r / w }')" "" ""
        note "c: round $pair, pgstress burst (lean connection)"
        run_pgstress c "$ORIG_STEP" "$pair" "$RESULTS/c-pgstress-$pair" --steps "$ORIG_STEPS" --step "$ORIG_STEP"
        # The same requests through the postgres crate (before the lean connection), and through
        # pgbench -C at the first step's concurrency: every client of the comparison on one server.
        note "c: round $pair, the design's floor (examples/ramp_floor.rs)"
        prefix=$RESULTS/c-floor-$pair
        timed "$prefix" "$FLOOR" "$DSN" "$WORK/data" "$ORIG_STEPS" "$ORIG_STEP"
        read -r total ok < <(awk '/ requests, / { print $1, $3 }' "$prefix.out")
        [ -n "${ok:-}" ] || die "ramp_floor failed: $(tail -n 5 "$prefix.out")"
        record c floor "$ORIG_STEP" "$pair" "$total" $((total - ok)) "$ELAPSED" "$CPU" "$RSS" "" "" ""
        note "c: round $pair, pgstress burst --client postgres"
        TOOL=postgres run_pgstress c "$ORIG_STEP" "$pair" "$RESULTS/c-postgres-$pair" --steps "$ORIG_STEPS" \
            --step "$ORIG_STEP" --client postgres
        note "c: round $pair, pgbench -C -c $ORIG_STEP, $requests requests"
        run_pgbench c "$ORIG_STEP" "$pair" "$RESULTS/c-pgbench-$pair" $((requests / ORIG_STEP)) -C
    done
fi

# ---- d: launch scaling
if has_part d; then
    stop_server
    start_server "$SCALE_MAX_CONNECTIONS"
    note "d: server restarted with max_connections $(psql -XAtc 'SHOW max_connections')"
    for pair in $(seq 1 "$PAIRS"); do
        for size in $SCALE_SIZES; do
            note "d: run $pair, one step of $size threads"
            settle
            run_pgstress d "$size" "$pair" "$RESULTS/d-pgstress-$size-$pair" \
                --steps 1 --start "$size" --timeout "$SCALE_TIMEOUT"
        done
    done
fi

# ---- e: launch scaling, client and server on separate cores
if has_part e && [ "$(nproc)" -lt 2 ]; then
    note "e: skipped: one CPU, nothing to separate"
elif has_part e; then
    has_part d || { stop_server; start_server "$SCALE_MAX_CONNECTIONS"; }
    # Children inherit the affinity: every backend forked from now on runs on CPUs 1..n-1.
    taskset -a -p -c "1-$(($(nproc) - 1))" "$(head -n 1 "$PGDATA/postmaster.pid")" >/dev/null
    CLIENT_PIN="taskset -c 0"
    for pair in $(seq 1 "$PAIRS"); do
        for size in $SCALE_SIZES; do
            note "e: run $pair, one step of $size threads, pgstress on CPU 0 alone"
            settle
            run_pgstress e "$size" "$pair" "$RESULTS/e-pgstress-$size-$pair" \
                --steps 1 --start "$size" --timeout "$SCALE_TIMEOUT"
        done
    done
    CLIENT_PIN=""
fi

# ---------------------------------------------------------------- the table
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Median of an expression over the runs of one part/tool/size, e.g. field 'cpu_s/requests'.
med() { # part tool size awk-expression
    awk -F'\t' -v p="$1" -v t="$2" -v s="$3" 'NR == 1 { next } $1 == p && $2 == t && $3 == s {
        requests = $5; failed = $6; elapsed = $7; cpu = $8; rss = $9; tool_rps = $10; spread = $11; spawn = $12; server = $13
        print '"$4"' }' "$RAW" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "") print "-"; else printf f, v }'; }

cores=$(nproc)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "machine: $cores cores ($cpu_model), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); PostgreSQL $PG_VERSION on 127.0.0.1, SCRAM over TCP"
echo "medians of $PAIRS runs each; CPU = user + sys of the client process and its children"

compare_table() { # part title
    local part=$1
    echo
    echo "$2"
    printf '%-6s %-9s %8s %6s %10s %10s %12s %12s %12s\n' N tool requests failed rps_run rps_tool cpu_ms/req server_ms/req rss_MiB
    for size in $SIZES; do
        for tool in pgstress postgres pgbench; do
            [ -n "$(med "$part" "$tool" "$size" requests)" ] || continue
            printf '%-6s %-9s %8s %6s %10s %10s %12s %12s %12s\n' "$size" "$tool" \
                "$(med "$part" "$tool" "$size" requests)" "$(med "$part" "$tool" "$size" failed)" \
                "$(fmt "$(med "$part" "$tool" "$size" 'requests/elapsed')" %.0f)" \
                "$(fmt "$(med "$part" "$tool" "$size" tool_rps)" %.0f)" \
                "$(fmt "$(med "$part" "$tool" "$size" '1000*cpu/requests')" %.3f)" \
                "$(fmt "$(med "$part" "$tool" "$size" '1000*server/requests')" %.3f)" \
                "$(fmt "$(med "$part" "$tool" "$size" 'rss/1024')" %.1f)"
        done
        local a_run b_run a_tool b_tool a_cpu b_cpu
        a_run=$(med "$part" pgstress "$size" 'requests/elapsed')
        b_run=$(med "$part" pgbench "$size" 'requests/elapsed')
        a_tool=$(med "$part" pgstress "$size" tool_rps)
        b_tool=$(med "$part" pgbench "$size" tool_rps)
        a_cpu=$(med "$part" pgstress "$size" 'cpu/requests')
        b_cpu=$(med "$part" pgbench "$size" 'cpu/requests')
        printf '%-6s %-9s   throughput x%s (whole run), x%s (as each tool reports it); client CPU per request x%s\n' \
            "$size" ratio "$(ratio "$a_run" "$b_run")" "$(ratio "$a_tool" "$b_tool")" "$(ratio "$a_cpu" "$b_cpu")"
    done
}

if has_part a; then
    compare_table a "a. connection per request: pgstress burst (step ramp centred on N, +1 per step) vs pgbench -C -c N -j 2"
    echo "   rps_run = requests / whole process wall time; rps_tool = pgstress: requests / sum of step walls (release to last end), pgbench: its tps"
    echo "   server_ms/req = the server's CPU (postmaster and reaped backends) during the run / requests"
fi
if has_part b && [ "$POOL_MODE" = 1 ]; then
    compare_table b "b. persistent connections: pgstress --mode pool --workers N vs pgbench -c N -j 2 -M prepared"
fi
if has_part c && [ -n "$PYTHON" ]; then
    echo
    echo "c. the original's design (benches/original.py: a process and a connection per request) vs pgstress burst, steps of +$ORIG_STEP to $((ORIG_STEP * ORIG_STEPS))"
    printf '%-9s %8s %6s %10s %12s %12s %14s\n' tool requests failed wall_s cpu_s cpu_ms/req server_ms/req
    for tool in original postgres pgstress floor pgbench; do
        [ -n "$(med c "$tool" "$ORIG_STEP" requests)" ] || continue
        printf '%-9s %8s %6s %10s %12s %12s %14s\n' "$tool" "$(med c "$tool" "$ORIG_STEP" requests)" \
            "$(med c "$tool" "$ORIG_STEP" failed)" "$(fmt "$(med c "$tool" "$ORIG_STEP" elapsed)" %.2f)" \
            "$(fmt "$(med c "$tool" "$ORIG_STEP" cpu)" %.2f)" "$(fmt "$(med c "$tool" "$ORIG_STEP" '1000*cpu/requests')" %.3f)" \
            "$(fmt "$(med c "$tool" "$ORIG_STEP" '1000*server/requests')" %.3f)"
    done
    echo "   postgres = pgstress burst --client postgres (the postgres crate, as before the lean connection); floor = examples/ramp_floor.rs (the same ramp on the lean connection, nothing measured); pgbench = pgbench -C -c $ORIG_STEP -j 2"
    lean_cpu=$(med c pgstress "$ORIG_STEP" 'cpu/requests')
    echo "ratio     client CPU per request: original / pgstress x$(ratio "$(med c original "$ORIG_STEP" 'cpu/requests')" "$lean_cpu"), pgstress / pgbench -C x$(ratio "$lean_cpu" "$(med c pgbench "$ORIG_STEP" 'cpu/requests')"), postgres crate / lean x$(ratio "$(med c postgres "$ORIG_STEP" 'cpu/requests')" "$lean_cpu")"
    floor_cpu=$(med c floor "$ORIG_STEP" 'cpu/requests')
    echo "          the design's floor: original / floor x$(ratio "$(med c original "$ORIG_STEP" 'cpu/requests')" "$floor_cpu"), pgstress / floor x$(ratio "$lean_cpu" "$floor_cpu")"
    echo "          wall: original / pgstress x$(ratio "$(med c original "$ORIG_STEP" elapsed)" "$(med c pgstress "$ORIG_STEP" elapsed)")"
    echo "per step (medians): wall_s from launch to last join (original) / release to last end (pgstress); cpu_s original from os.times, pgstress ~ process_cpu_mean x cores x wall"
    printf '%-6s %14s %14s %14s %14s\n' requests orig_wall_s pgstress_wall_s orig_cpu_s pgstress_cpu_s
    for i in $(seq 1 "$ORIG_STEPS"); do
        ow=$(for f in "$RESULTS"/c-original-*.logs/*_steps_cpu.csv; do awk -F, -v i="$i" 'NR > 1 && $1 == i { print $4 }' "$f"; done | median)
        oc=$(for f in "$RESULTS"/c-original-*.logs/*_steps_cpu.csv; do awk -F, -v i="$i" 'NR > 1 && $1 == i { print $5 }' "$f"; done | median)
        pw=$(for f in "$RESULTS"/c-pgstress-*.logs/*_steps.csv; do
            awk -F, -v i="$i" 'NR == 1 { for (k = 1; k <= NF; k++) col[$k] = k; next } $1 == i { print $col["wall_s"] }' "$f"
        done | median)
        pc=$(for f in "$RESULTS"/c-pgstress-*.logs/*_steps.csv; do
            awk -F, -v i="$i" -v n="$cores" 'NR == 1 { for (k = 1; k <= NF; k++) col[$k] = k; next }
                $1 == i { print $col["process_cpu_mean"] / 100 * n * $col["wall_s"] }' "$f"
        done | median)
        printf '%-6s %14s %14s %14s %14s\n' $((i * ORIG_STEP)) "$(fmt "$ow" %.3f)" "$(fmt "$pw" %.3f)" "$(fmt "$oc" %.3f)" "$(fmt "$pc" %.3f)"
    done
fi
scale_table() { # part title
    local part=$1
    echo
    echo "$2"
    printf '%-7s %10s %8s %8s %18s %10s %8s\n' threads peak_MiB ok spawn first_to_last_ms elapsed_s cpu_s
    for size in $SCALE_SIZES; do
        printf '%-7s %10s %8s %8s %18s %10s %8s\n' "$size" "$(fmt "$(med "$part" pgstress "$size" 'rss/1024')" %.1f)" \
            "$(med "$part" pgstress "$size" 'requests-failed')" "$(med "$part" pgstress "$size" spawn)" \
            "$(fmt "$(med "$part" pgstress "$size" spread)" %.1f)" "$(fmt "$(med "$part" pgstress "$size" elapsed)" %.2f)" \
            "$(fmt "$(med "$part" pgstress "$size" cpu)" %.2f)"
    done
    echo "   failures by class: see $RESULTS/$part-*.logs/*_steps.csv"
}
if has_part d; then
    scale_table d "d. launch scaling: one burst step (server max_connections $SCALE_MAX_CONNECTIONS, --timeout $SCALE_TIMEOUT)"
fi
if has_part e && [ "$(nproc)" -ge 2 ]; then
    scale_table e "e. as d, pgstress on CPU 0 alone, the server on CPUs 1-$(($(nproc) - 1))"
fi
echo
echo "raw figures: $RAW"
