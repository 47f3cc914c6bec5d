#!/usr/bin/env bash
# Connection throughput through the throwaway PgBouncer with 1 and with 2 processes on one
# port (`--pooler-processes`, so_reuseport): a timed pool step of workers each opening a new
# connection per request (`SELECT 1`), so that every request is a client connection PgBouncer
# accepts, authenticates (SCRAM) and closes. Loopback only, bounded: each run is one step of
# DURATION, rounds alternate 1 and 2 processes so that a noisy neighbour weighs on both.
#
#   benches/pooler_processes.sh                 # ROUNDS=3 WORKERS=16 DURATION=5s
#   ROUNDS=2 WORKERS=32 benches/pooler_processes.sh
#
# Needs a release build (cargo build --release) and pgbouncer.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-16}
DURATION=${DURATION:-5s}
BIN=${BIN:-target/release/pgstress}
[ -x "$BIN" ] || { echo "pooler_processes.sh: build it first: cargo build --release" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pgstress-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

printf '%-9s %-6s %13s %7s %7s %6s %9s %8s %7s  %s\n' processes round connections/s p50_ms p99_ms failed pgstress% server% pooler% flags
for round in $(seq 1 "$ROUNDS"); do
    for processes in 1 2; do
        logs="$WORK/logs-$processes-$round"
        timeout 300 "$BIN" run --pooler pgbouncer --pooler-processes "$processes" --no-pin \
            --pooler-setting pool_mode=transaction \
            --mode pool --connect-per-request --workers "$WORKERS" --duration "$DURATION" \
            --steps 1 --step "$WORKERS" --query 'SELECT 1' --timeout 30s \
            --no-report --quiet --logs "$logs" >/dev/null
        python3 - "$logs" "$processes" "$round" <<'PY'
import csv, glob, sys
logs, processes, round_ = sys.argv[1:]
row = next(csv.DictReader(open(glob.glob(f"{logs}/*_steps.csv")[0])))
cpu = lambda column: f"{float(row[column] or 'nan'):.0f}"
print(f"{processes:<9} {round_:<6} {int(row['ok']) / float(row['wall_s']):13.0f} "
      f"{float(row['latency_p50_ms']):7.1f} {float(row['latency_p99_ms']):7.1f} {row['failed']:>6} "
      f"{cpu('process_cpu_mean'):>9} {cpu('server_cpu_mean'):>8} {cpu('pooler_cpu_mean'):>7}  {row['flags']}")
PY
    done
done
