#!/usr/bin/env bash
# Hold mode's benchmarks (docs/performance.md, "Holding a crowd"), each bounded in time, on
# loopback only, against a throwaway cluster this script starts (TLS on, SCRAM) and removes:
#
#   benches/hold.sh stack              # hold at 256..64 KiB stacks, lean and postgres, TLS or not
#   benches/hold.sh direct             # STEP=2000 STEPS=5: 10,000 held on max_connections=10100
#   benches/hold.sh pgbouncer          # STEP=5000 STEPS=10 through one PgBouncer, toward 50,000
#   benches/hold.sh agents             # STEP=12500 STEPS=4: 50,000 held through 4 PgBouncer
#                                      # processes (so_reuseport) from 4 agents on 127.0.0.2..5
#
# BIN (default target/release/pgstress), EVERY (10s), DURATION (30s), STEP / STEPS and
# SSLMODE (prefer: TLS, the server has it; disable: plain TCP) change the load. The PgBouncer run spreads its clients over SOURCES (default 127.0.0.2 to
# 127.0.0.9: each source address has its own ~28k ephemeral ports). pgstress raises its own
# open-file limit to the hard limit; past 20,000 connections run as root with NOFILE=120000
# and PID_MAX=131072 (restored on exit), e.g.
#   NOFILE=120000 PID_MAX=131072 STEP=10000 STEPS=5 benches/hold.sh pgbouncer
#
# Needs the PostgreSQL server binaries, pgbouncer, openssl and a `postgres` OS user.
set -euo pipefail

WHAT=${1:-direct}
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/pgstress}
EVERY=${EVERY:-10s}
DURATION=${DURATION:-30s}
PGBIN=${PGBIN:-$(dirname "$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb | tail -n 1)")}

die() { echo "hold.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "no pgstress at $BIN (cargo build --release)"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL server binaries in '$PGBIN'"
id postgres >/dev/null 2>&1 || die "no 'postgres' OS user to run the server as"

# Connections are descriptors: with NOFILE set (root with CAP_SYS_RESOURCE), this shell,
# pgstress and PgBouncer may open that many (at most fs.nr_open). With PID_MAX set (root), kernel.pid_max is raised for
# the run (a held connection is a thread, and each thread takes a pid) and restored after.
if [ -n "${NOFILE:-}" ]; then
    ulimit -Hn "$NOFILE" && ulimit -n "$NOFILE" || echo "hold.sh: the open-file limit stays $(ulimit -Hn)" >&2
fi
OLD_PID_MAX=$(cat /proc/sys/kernel/pid_max)
[ "$WHAT" = agents ] && PID_MAX=${PID_MAX:-131072}

WORK=$(mktemp -d /tmp/pgstress-hold.XXXXXX)
chmod 755 "$WORK"
PGDATA=$WORK/pgdata
BOUNCER=
BOUNCERS=()
AGENTS=()
SAMPLER=
cleanup() {
    [ -n "${PID_MAX:-}" ] && echo "$OLD_PID_MAX" >/proc/sys/kernel/pid_max
    [ -n "$BOUNCER" ] && kill "$BOUNCER" 2>/dev/null || true
    for pid in "${AGENTS[@]}" "${BOUNCERS[@]}" $SAMPLER; do kill "$pid" 2>/dev/null || true; done
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# A signal ends the script through its EXIT trap too: pid_max is restored on every exit.
trap 'exit 130' INT TERM HUP
[ -n "${PID_MAX:-}" ] && echo "$PID_MAX" >/proc/sys/kernel/pid_max

MAX_CONNECTIONS=${MAX_CONNECTIONS:-10100}
PORT=$((10000 + RANDOM % 20000))
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
printf '%s\n' "$PASSWORD" >"$WORK/pwfile"
mkdir -p "$PGDATA" "$WORK/socket"
chown postgres: "$WORK/pwfile" "$PGDATA" "$WORK/socket"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -U postgres --pwfile="$WORK/pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer --no-sync >/dev/null
# Every loopback source address may log in (the PgBouncer run's clients come from several).
sed -i '1i host all all 127.0.0.0/8 scram-sha-256' "$PGDATA/pg_hba.conf"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PGDATA/server.key" -out "$PGDATA/server.crt" \
    -days 1 -subj "/CN=127.0.0.1" 2>/dev/null
chown postgres: "$PGDATA/server.key" "$PGDATA/server.crt"
chmod 600 "$PGDATA/server.key"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 300 \
    -o "-c port=$PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$WORK/socket \
        -c max_connections=$MAX_CONNECTIONS -c fsync=off -c ssl=on -c shared_buffers=128MB" \
    start >/dev/null
DSN="host=127.0.0.1 port=$PORT user=postgres password=$PASSWORD dbname=postgres sslmode=${SSLMODE:-prefer}"

run() { timeout "${BOUND:-1800}" "$BIN" run --no-report --quiet --logs "$WORK/logs" "$@"; }

case "$WHAT" in
stack)
    # A thread that overflows its stack kills the process at its guard page: a run that ends
    # with every connection held was safe at that size.
    for kib in ${KIBS:-256 128 96 64}; do
        for client in lean postgres; do
            for ssl in disable require; do
                out=$(run --dsn "$DSN" --sslmode $ssl --client $client --stack-kib $kib \
                    --mode hold --steps 1 --step 500 --every 200ms --duration 3s \
                    --query 'SELECT $1::text' 2>&1) && rc=0 || rc=$?
                held=$(grep -o 'held [0-9]\+ (' <<<"$out" | head -n 1 || true)
                mem=$(grep -o 'pgstress [0-9.]* KiB' <<<"$out" | head -n 1 || true)
                why=$(grep -m 1 -o -i -E "overflow[^\n]*|Segmentation[^\n]*" <<<"$out" || true)
                echo "stack $kib KiB, $client, sslmode=$ssl: exit $rc, ${held:-none held} ${mem:+$mem per held} $why"
            done
        done
    done
    ;;
direct)
    STEP=${STEP:-2000} STEPS=${STEPS:-5}
    run --dsn "$DSN" --mode hold --steps "$STEPS" --step "$STEP" --every "$EVERY" \
        --duration "$DURATION" --query 'SELECT 1' --timeout 60s
    cat "$WORK"/logs/*_steps.csv
    ;;
pgbouncer)
    command -v pgbouncer >/dev/null || die "pgbouncer is missing (apt-get install -y pgbouncer)"
    STEP=${STEP:-5000} STEPS=${STEPS:-10}
    SOURCES=${SOURCES:-127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9}
    BPORT=$((PORT + 1))
    mkdir -p "$WORK/bouncer" && chown postgres: "$WORK/bouncer"
    printf '"postgres" "%s"\n' "$PASSWORD" >"$WORK/userlist.txt"
    cat >"$WORK/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$PORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 60000
ignore_startup_parameters = options,extra_float_digits
admin_users = postgres
pidfile = $WORK/bouncer/pgbouncer.pid
logfile = $WORK/bouncer/pgbouncer.log
log_connections = 0
log_disconnections = 0
INI
    chown -R postgres: "$WORK/userlist.txt" "$WORK/pgbouncer.ini"
    # PgBouncer's own descriptor limit: a file per client and per server connection.
    runuser -u postgres -- bash -c "ulimit -n \$(ulimit -Hn); exec pgbouncer -q $WORK/pgbouncer.ini" &
    BOUNCER=$!
    sleep 1
    run --dsn "host=127.0.0.1 port=$BPORT user=postgres password=$PASSWORD dbname=postgres" \
        --mode hold --steps "$STEPS" --step "$STEP" --every "$EVERY" --duration "$DURATION" \
        --query 'SELECT 1' --timeout 60s --source-address "$SOURCES" --no-stop --prepare never
    cat "$WORK"/logs/*_steps.csv
    ;;
agents)
    # The issue's target: 4 agents (each its own process, ~12,500 threads: 4 memory maps each,
    # under vm.max_map_count, and ~12,500 sockets, under the 20,000 open files a process may
    # have) on their own source addresses, through 4 PgBouncer processes sharing one port
    # (each ~12,500 clients, under its 20,000 files). Every thread takes a pid: PID_MAX
    # (default 131072 here) is raised for the run and restored on exit.
    command -v pgbouncer >/dev/null || die "pgbouncer is missing (apt-get install -y pgbouncer)"
    STEP=${STEP:-12500} STEPS=${STEPS:-4} PROCESSES=${PROCESSES:-4} NAGENTS=${NAGENTS:-4}
    BPORT=$((PORT + 1)) CPORT=$((PORT + 2))
    printf '"postgres" "%s"\n' "$PASSWORD" >"$WORK/userlist.txt"
    chown postgres: "$WORK/userlist.txt"
    for i in $(seq 1 "$PROCESSES"); do
        mkdir -p "$WORK/bouncer$i"
        cat >"$WORK/bouncer$i/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$PORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
so_reuseport = 1
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 60000
ignore_startup_parameters = options,extra_float_digits
admin_users = postgres
pidfile = $WORK/bouncer$i/pgbouncer.pid
logfile = $WORK/bouncer$i/pgbouncer.log
log_connections = 0
log_disconnections = 0
INI
        chown -R postgres: "$WORK/bouncer$i"
        runuser -u postgres -- bash -c "ulimit -n \$(ulimit -Hn); exec pgbouncer -q $WORK/bouncer$i/pgbouncer.ini" &
        BOUNCERS+=($!)
    done
    sleep 1
    BDSN="host=127.0.0.1 port=$BPORT user=postgres password=$PASSWORD dbname=postgres"
    run --dsn "$BDSN" --agents "$NAGENTS" --listen "127.0.0.1:$CPORT" --agents-timeout 60s \
        --mode hold --steps "$STEPS" --step "$STEP" --every "$EVERY" --duration "$DURATION" \
        --query 'SELECT 1' --timeout 60s --prepare never --no-stop &
    RUN=$!
    sleep 1
    # An agent ends with the run (it loses its coordinator), or at the EXIT trap. Its
    # --max-duration covers the plan's bound (every connect's deadline), not the run's time.
    for i in $(seq 1 "$NAGENTS"); do
        "$BIN" agent --coordinator "127.0.0.1:$CPORT" --dsn "$BDSN" \
            --name "agent$i" --source-address "127.0.0.$((i + 1))" \
            --max-connections 100000 --max-duration 12h >"$WORK/agent$i.log" 2>&1 &
        AGENTS+=($!)
    done
    # Every 5 s: each PgBouncer's and each agent's resident memory (KiB), threads and CPU
    # time (s), beside the step lines.
    BPIDS=$(cat "$WORK"/bouncer*/pgbouncer.pid | paste -sd,)
    APIDS=$(IFS=,; echo "${AGENTS[*]}")
    (
        while sleep 5; do
            echo "$(date +%s) $(ps -o pid=,comm=,rss=,nlwp=,cputimes= -p "$BPIDS,$APIDS" | tr -s ' ' | paste -sd ';')"
        done
    ) >"$WORK/usage.txt" &
    SAMPLER=$!
    wait "$RUN" || echo "hold.sh: the run ended with $?" >&2
    cat "$WORK"/logs/*_steps.csv
    # Each agent's crowd, step by step, from the summary.
    python3 - "$WORK"/logs/*_summary.json <<'PY'
import json, sys
for step in json.load(open(sys.argv[1]))["steps"]:
    for a in step.get("agents", []):
        h = a.get("hold") or {}
        print(f"step {step['step']} {a['agent']}: held {h.get('held')} dropped {h.get('dropped')} "
              f"pgstress {h.get('client_kib_per_held') or 0:.1f} KiB/held "
              f"{h.get('client_cpu_us_per_held') or 0:.0f} us CPU/s/held failures {a['failures']}")
PY
    cat "$WORK/usage.txt" >"${USAGE:-/tmp/hold-agents-usage.txt}"
    tail -n 3 "$WORK"/agent*.log
    ;;
*) die "say stack, direct, pgbouncer or agents" ;;
esac
