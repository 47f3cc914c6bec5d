#!/usr/bin/env bash
# What the monitor's sample costs the server: the query of src/measure/sampler/server_stats.rs
# (sessions by wait event from pg_stat_activity, the database's counters from
# pg_stat_database), timed on the server by pg_stat_statements and end to end by pgbench,
# with 0 to a few hundred other sessions open, idle or active; the query it replaced beside it.
#
#   benches/sampling_cost.sh              # SAMPLES=2000 SESSIONS="0 100 300" by default
#   SAMPLES=500 SESSIONS="0 300" benches/sampling_cost.sh
#
# Needs the PostgreSQL server binaries, pg_stat_statements (postgresql-contrib, in Debian's
# postgresql package), pgbench and psql, and a `postgres` OS user to run the server as.
set -euo pipefail

SAMPLES=${SAMPLES:-2000}
SESSIONS=${SESSIONS:-"0 100 300"}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

die() { echo "sampling_cost.sh: $*" >&2; exit 1; }
command -v pgbench >/dev/null || die "pgbench is missing (apt-get install -y postgresql-client)"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL server binaries in '$PGBIN'"
id postgres >/dev/null 2>&1 || die "no 'postgres' OS user to run the server as"

WORK=$(mktemp -d /tmp/pgstress-sampling.XXXXXX)
chmod 755 "$WORK"
PGDATA=$WORK/pgdata
HOLDERS=()
cleanup() {
    for pid in "${HOLDERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$((10000 + RANDOM % 22768))
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGPASSWORD=$PASSWORD PGDATABASE=postgres
printf '%s\n' "$PASSWORD" >"$WORK/pwfile"
mkdir -p "$PGDATA" "$WORK/socket" "$WORK/log"
chown postgres: "$WORK/pwfile" "$PGDATA" "$WORK/socket" "$WORK/log"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -U postgres --pwfile="$WORK/pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer --no-sync >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/log/server.log" -w -t 120 \
    -o "-c port=$PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$WORK/socket \
        -c max_connections=600 -c fsync=off -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on" \
    start >/dev/null
psql -XqAtc 'CREATE EXTENSION pg_stat_statements'

# The sampler's query, with the requests' application_name as a literal (pgstress binds it).
cat >"$WORK/sample.sql" <<'SQL'
WITH a AS (
    SELECT backend_type = 'client backend' AND application_name = 'pgstress' AS ours,
           state = 'active' AS active,
           coalesce(wait_event_type || ':' || wait_event, 'CPU') AS event
    FROM pg_stat_get_activity(NULL)
    WHERE backend_type IN ('client backend', 'parallel worker') AND pid <> pg_backend_pid()
)
SELECT (SELECT count(*) FROM a WHERE ours)::int,
       (SELECT count(*) FROM a WHERE ours AND active)::int,
       (SELECT string_agg(n || ' ' || event, E'\n' ORDER BY event)
          FROM (SELECT event, count(*) AS n FROM a WHERE active GROUP BY event) e),
       pg_stat_get_db_xact_commit(d.oid), pg_stat_get_db_xact_rollback(d.oid),
       pg_stat_get_db_sessions(d.oid), pg_stat_get_db_sessions_abandoned(d.oid),
       pg_stat_get_db_sessions_fatal(d.oid),
       pg_stat_get_db_deadlocks(d.oid), pg_stat_get_db_temp_bytes(d.oid)
FROM pg_database d WHERE d.datname = current_database();
SQL
# The same through the views, pg_stat_activity and pg_stat_database (to_jsonb for the
# counters a server before 14 lacks): what the sampler first sent.
cat >"$WORK/views.sql" <<'SQL'
WITH a AS (
    SELECT backend_type = 'client backend' AND application_name = 'pgstress' AS ours,
           state = 'active' AS active,
           coalesce(wait_event_type || ':' || wait_event, 'CPU') AS event
    FROM pg_stat_activity
    WHERE backend_type IN ('client backend', 'parallel worker') AND pid <> pg_backend_pid()
), d AS (
    SELECT to_jsonb(s) AS j FROM pg_stat_database s WHERE datname = current_database()
)
SELECT (SELECT count(*) FROM a WHERE ours)::int,
       (SELECT count(*) FROM a WHERE ours AND active)::int,
       (SELECT string_agg(n || ' ' || event, E'\n' ORDER BY event)
          FROM (SELECT event, count(*) AS n FROM a WHERE active GROUP BY event) e),
       j->>'xact_commit', j->>'xact_rollback', j->>'sessions', j->>'sessions_abandoned',
       j->>'sessions_fatal', j->>'deadlocks', j->>'temp_bytes'
FROM (SELECT 1) AS one LEFT JOIN d ON true;
SQL
# The query it replaced: the run's own sessions by state, nothing else.
cat >"$WORK/before.sql" <<'SQL'
SELECT count(*)::int, count(*) FILTER (WHERE state = 'active')::int
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND application_name = 'pgstress' AND pid <> pg_backend_pid();
SQL
echo 'SELECT pg_sleep(600);' >"$WORK/active.sql"
printf '\\sleep 600 s\n' >"$WORK/idle.sql"

# Holds N sessions open, each idle or in pg_sleep, until killed.
hold() { # sessions kind
    [ "$1" -gt 0 ] || return 0
    PGAPPNAME=pgstress pgbench -n -c "$1" -j 4 -T 600 -f "$WORK/$2.sql" >/dev/null 2>&1 &
    HOLDERS+=("$!")
    local seen=0
    for _ in $(seq 1 600); do
        seen=$(psql -XAtc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgstress'")
        [ "$seen" -ge "$1" ] && return 0
        sleep 0.1
    done
    die "only $seen of $1 sessions opened"
}
release() {
    for pid in "${HOLDERS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    HOLDERS=()
    sleep 1
}

# One query's cost: pg_stat_statements' mean and stddev execution time on the server, and
# pgbench's mean latency (the round trip over loopback, as the monitor makes it).
cost() { # script
    psql -XqAtc 'SELECT pg_stat_statements_reset()' >/dev/null
    local latency
    latency=$(pgbench -n -c 1 -t "$SAMPLES" -f "$WORK/$1.sql" 2>/dev/null | awk '/latency average/ {print $4}')
    psql -XAtc "SELECT round(mean_plan_time::numeric, 3), round(mean_exec_time::numeric, 3),
                       round(stddev_exec_time::numeric, 3)
                FROM pg_stat_statements WHERE query LIKE '%pg_stat_%activity%'
                ORDER BY calls DESC LIMIT 1" | tr '|' ' ' | {
        read -r plan mean stddev
        printf '%-7s %8s %8s %8s %10s\n' "$1" "$plan" "$mean" "$stddev" "$latency"
    }
}

echo "PostgreSQL $(psql -XAtc 'SHOW server_version'), $SAMPLES samples each; times in ms"
for kind in idle active; do
    for sessions in $SESSIONS; do
        [ "$kind" = active ] && [ "$sessions" = 0 ] && continue
        hold "$sessions" "$kind"
        echo "-- $sessions other sessions, $kind"
        printf '%-7s %8s %8s %8s %10s\n' query plan execute stddev "round trip"
        cost sample
        cost views
        cost before
        release
    done
done
