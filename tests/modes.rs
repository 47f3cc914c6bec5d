//! Pool and rate modes, and `pgstress compare`, against a real cluster that accepts few
//! connections.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Each request holds its connection 20 ms, so requests queue behind busy workers.
const BUSY_QUERY: &str = "SELECT $1::text FROM pg_sleep(0.02)";

#[test]
fn pool_below_max_connections_queues_steps_far_above_it_without_failures() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    let stdout = run_ok(
        logs.path(),
        &[
            "--dsn",
            &dsn,
            "--mode",
            "pool",
            "--workers",
            "10",
            "--steps",
            "3",
            "--step",
            "60",
            "--query",
            BUSY_QUERY,
            "--no-report",
        ],
    );
    assert!(stdout.contains("pool: 10 workers"), "{stdout}");
    let rows = step_rows(logs.path());
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(number(row, "failed"), 0, "the queue's promise: {row:?}");
        assert_eq!(number(row, "ok"), number(row, "requests"));
        assert!(
            !row["flags"].contains("over-max-connections"),
            "10 workers stay under 17 usable connections: {row:?}"
        );
    }
    // 60, 120, 180 requests through 10 workers: each step's requests wait longer.
    let waits: Vec<f64> = rows.iter().map(|r| float(r, "queue_wait_p50_ms")).collect();
    assert!(
        waits[0] < waits[1] && waits[1] < waits[2],
        "queue wait should grow with the step: {waits:?}"
    );
    for row in &rows {
        // Each request holds its worker at least 20 ms, and service time counts from the start.
        assert!(float(row, "service_p50_ms") >= 20.0, "{row:?}");
        // Queued in order behind 10 workers, the k-th request (from 0) starts k / 10 rounds
        // of 20 ms after the first: the p99 request of 60 waits 100 ms, of 180 340 ms, less
        // the time the queue took to fill (half of it, allowed for a busy machine).
        let requests = number(row, "requests") as f64;
        let p99_index = (requests * 0.99).ceil() - 1.0;
        let least_wait = (p99_index / 10.0).floor() * 20.0 / 2.0;
        assert!(
            float(row, "queue_wait_p99_ms") >= least_wait,
            "the queue wait is measured: at least {least_wait} ms, {row:?}"
        );
    }
}

#[test]
fn a_timed_pool_step_keeps_its_size_queued_for_its_duration() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    // 4 workers; steps of 2 and of 8 requests kept queued for 1 s, each holding its worker
    // 20 ms. The gate names the second step by its size, its request count known only after.
    let stdout = run_ok(
        logs.path(),
        &[
            "--dsn",
            &dsn,
            "--mode",
            "pool",
            "--workers",
            "4",
            "--duration",
            "1s",
            "--steps",
            "2",
            "--start",
            "2",
            "--step",
            "6",
            "--query",
            BUSY_QUERY,
            "--fail-if",
            "failed>0@8",
            "--no-report",
        ],
    );
    assert!(
        stdout.contains("requests queued at once (+6 per step), each step kept up for 1s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pool: 4 workers keep each step's size of requests queued for 1s"),
        "{stdout}"
    );
    assert!(stdout.contains("gate passed: failed>0@8"), "{stdout}");
    let rows = step_rows(logs.path());
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in &rows {
        assert_eq!(number(row, "failed"), 0, "{row:?}");
        let wall = float(row, "wall_s");
        assert!(
            (1.0..5.0).contains(&wall),
            "the step lasts its time: {row:?}"
        );
        assert!(!row["flags"].contains("too-short-to-judge"), "{row:?}");
        // At most 1 s / 20 ms rounds of the requests on a worker, and the last ones finishing.
        let on_workers = number(row, "concurrency_asked");
        assert!(number(row, "requests") <= on_workers * 51, "{row:?}");
        assert!(number(row, "peak_in_flight") <= on_workers, "{row:?}");
    }
    let (two, eight) = (&rows[0], &rows[1]);
    assert_eq!(number(two, "concurrency_asked"), 2, "{two:?}");
    assert_eq!(number(eight, "concurrency_asked"), 4, "{eight:?}");
    // Replaced as they are answered: far more requests than the step's size.
    assert!(number(two, "requests") > 10, "{two:?}");
    // Twice the requests on a worker at once: more answered, and the 4 past the workers wait.
    assert!(
        float(eight, "throughput_rps") > 1.3 * float(two, "throughput_rps"),
        "{two:?}\n{eight:?}"
    );
    assert!(float(eight, "queue_wait_p50_ms") >= 10.0, "{eight:?}");
}

#[test]
fn pool_survives_its_connections_being_killed() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    // Every request first kills every other pgstress backend: the workers' connections die
    // under them, and each must reconnect to serve its next request.
    // One row whether or not there is another backend to kill (preflight wants a row).
    let killer = "SELECT $1::text, (SELECT count(pg_terminate_backend(pid)) FROM \
                  (SELECT pid FROM pg_stat_activity WHERE application_name = 'pgstress' \
                  AND pid <> pg_backend_pid() LIMIT 1) AS other)";
    let stdout = run_ok(
        logs.path(),
        &[
            "--dsn",
            &dsn,
            "--mode",
            "pool",
            "--workers",
            "4",
            "--steps",
            "2",
            "--step",
            "40",
            "--query",
            killer,
            "--no-stop",
            "--no-report",
        ],
    );
    let rows = step_rows(logs.path());
    assert_eq!(rows.len(), 2, "{stdout}");
    let total = |column: &str| rows.iter().map(|r| number(r, column)).sum::<u64>();
    assert_eq!(total("requests"), 120);
    // A request fails only on a connection a successful request killed, and each success
    // kills at most one: so at least as many succeed as fail, unless a worker whose
    // connection died stays dead and fails every request it takes from then on.
    assert!(
        total("ok") >= total("failed"),
        "reconnected workers keep serving: {} ok, {} failed: {stdout}",
        total("ok"),
        total("failed")
    );
    assert!(
        total("failed") > 0,
        "requests on killed connections fail, by class: {stdout}"
    );
    let classified = pgstress::model::outcome::FailureClass::ALL
        .iter()
        .map(|class| total(class.name()))
        .sum::<u64>();
    assert_eq!(classified, total("failed"), "every failure has its class");
}

#[test]
fn rate_offers_the_planned_count_at_its_due_times_and_logs_the_lag() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    run_ok(
        logs.path(),
        &[
            "--dsn",
            &dsn,
            "--mode",
            "rate",
            "--steps",
            "2",
            "--step",
            "40",
            "--duration",
            "500ms",
            "--arrival",
            "uniform",
            "--query",
            "SELECT $1::text",
            "--log-requests",
            "--no-report",
        ],
    );
    let rows = step_rows(logs.path());
    // 40/s and 80/s for half a second.
    for (row, offered) in rows.iter().zip([20i64, 40]) {
        let requests = number(row, "requests") as i64;
        assert!(
            (requests - offered).abs() <= 1,
            "offered {requests}, planned {offered}"
        );
        assert_eq!(number(row, "dropped"), 0, "a thread per request drops none");
    }
    let requests = read_csv_with_header(&log_file(logs.path(), "_requests.csv"));
    assert_eq!(
        requests.len() as u64,
        rows.iter().map(|r| number(r, "requests")).sum::<u64>()
    );
    // Evenly spaced: the k-th request of a step at r requests per second is due k / r s after
    // the step's start, and its start less its lag (the wait) is that due time, whatever
    // the machine's load made the lag.
    for (step, rate) in [("1", 40.0), ("2", 80.0)] {
        let mut due: Vec<f64> = requests
            .iter()
            .filter(|r| r["step"] == step)
            .map(|r| float(r, "start_ms") - float(r, "wait_ms"))
            .collect();
        due.sort_by(f64::total_cmp);
        for (k, at) in due.iter().enumerate() {
            let planned = k as f64 * 1000.0 / rate;
            assert!(
                (at - planned).abs() < 0.01,
                "step {step}: request {k} due at {at} ms, planned {planned} ms"
            );
        }
    }
}

#[test]
fn rate_with_too_few_workers_drops_and_blames_the_client() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    // One worker, 100 ms per request, 50 due in a second: most find the worker busy.
    let stdout = run_ok(
        logs.path(),
        &[
            "--dsn",
            &dsn,
            "--mode",
            "rate",
            "--steps",
            "1",
            "--step",
            "50",
            "--max-inflight",
            "1",
            "--query",
            "SELECT $1::text FROM pg_sleep(0.1)",
            "--no-report",
        ],
    );
    let rows = step_rows(logs.path());
    let row = &rows[0];
    assert_eq!(number(row, "requests"), 50);
    assert!(number(row, "dropped") >= 30, "{row:?}");
    assert_eq!(
        number(row, "failed"),
        0,
        "a drop is not a server failure: {row:?}"
    );
    assert_eq!(
        number(row, "ok") + number(row, "dropped"),
        number(row, "requests")
    );
    assert!(row["flags"].contains("rate-not-met"), "{row:?}");
    assert!(
        stdout.contains("may have measured the client"),
        "drops are the client's limit: {stdout}"
    );
}

#[test]
fn compare_prints_a_row_per_step_for_each_run() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    let common = [
        "--dsn",
        &dsn,
        "--steps",
        "2",
        "--step",
        "5",
        "--query",
        "SELECT $1::text",
        "--no-report",
    ];
    run_ok(logs.path(), &common);
    run_ok(
        logs.path(),
        &[&common[..], &["--mode", "pool", "--workers", "3"]].concat(),
    );
    let mut runs: Vec<_> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("_steps.csv"))
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 2);
    let output = assert_cmd::Command::cargo_bin("pgstress")
        .unwrap()
        .arg("compare")
        .args(&runs)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("burst mode"), "{stdout}");
    assert!(stdout.contains("pool mode"), "{stdout}");
    let rows: Vec<(u32, String)> = stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let step = fields.next()?.parse().ok()?;
            Some((step, fields.next()?.to_owned()))
        })
        .collect();
    let expected: Vec<(u32, String)> = [(1, "A"), (1, "B"), (2, "A"), (2, "B")]
        .iter()
        .map(|(s, r)| (*s, r.to_string()))
        .collect();
    assert_eq!(rows, expected, "{stdout}");
}

/// A run in the background, its output in files; `wait` fails past a deadline instead of
/// hanging, and returns the exit code and stdout.
struct Background {
    child: std::process::Child,
    out: tempfile::NamedTempFile,
}

impl Background {
    fn spawn(logs: &Path, args: &[&str]) -> Background {
        let out = tempfile::NamedTempFile::new().unwrap();
        let child = run_command(logs)
            .args(args)
            .stdout(out.reopen().unwrap())
            .stderr(out.reopen().unwrap())
            .spawn()
            .unwrap();
        Background { child, out }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pgstress hung: {}", read(self.out.path()));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status.code(), read(self.out.path()))
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn rate_behind_its_schedule_without_drops_is_the_clients_limit() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    let run = Background::spawn(
        logs.path(),
        &[
            "--dsn",
            &dsn,
            "--mode",
            "rate",
            "--steps",
            "2",
            "--step",
            "10",
            "--duration",
            "3s",
            "--pause",
            "0s",
            "--query",
            "SELECT $1::text",
            "--no-report",
        ],
    );
    // Frozen for 600 ms early in step 2 (20 due a second for 3 s), pgstress sends the
    // requests due meanwhile late: a thread per request drops none, so only their lag
    // says the schedule was not kept.
    wait_for_steps(logs.path(), 1, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(500));
    run.signal(nix::sys::signal::Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(600));
    run.signal(nix::sys::signal::Signal::SIGCONT);
    let (code, stdout) = run.wait();
    assert_eq!(code, Some(0), "{stdout}");
    let rows = step_rows(logs.path());
    let row = &rows[1];
    assert_eq!(number(row, "dropped"), 0, "{row:?}");
    assert_eq!(number(row, "failed"), 0, "{row:?}");
    assert!(float(row, "queue_wait_p99_ms") >= 300.0, "{row:?}");
    assert!(row["flags"].contains("rate-not-met"), "{row:?}");
    assert!(
        stdout.contains("may have measured the client"),
        "lag is the client's limit: {stdout}"
    );
}

/// A database of the small server's own for a test that locks it, made anew; its DSN.
fn fresh_database(dsn: &str, name: &str) -> (postgres::Client, String) {
    let mut control = postgres::Client::connect(dsn, postgres::NoTls).unwrap();
    // One statement each: DROP and CREATE DATABASE refuse a transaction block.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        control.batch_execute(&statement).unwrap();
    }
    (
        control,
        dsn.replace("dbname=postgres", &format!("dbname={name}")),
    )
}

#[test]
fn pool_workers_back_off_while_the_server_refuses_them() {
    let (_guard, dsn) = small_server();
    let (mut control, locked_dsn) = fresh_database(&dsn, "backoff_test");
    let logs = tempfile::tempdir().unwrap();
    let run = Background::spawn(
        logs.path(),
        &[
            "--dsn",
            &locked_dsn,
            "--mode",
            "pool",
            "--workers",
            "1",
            "--steps",
            "2",
            "--step",
            "6",
            "--pause",
            "5s",
            "--query",
            "SELECT $1::text",
            "--log-requests",
            "--no-stop",
            "--no-report",
        ],
    );
    // In the pause: the database takes no new connection, and the worker's dies.
    wait_for_steps(logs.path(), 1, Duration::from_secs(120));
    control
        .batch_execute(
            "ALTER DATABASE backoff_test ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = 'backoff_test' AND application_name = 'pgstress'",
        )
        .unwrap();
    let (code, stdout) = run.wait();
    control
        .batch_execute("DROP DATABASE backoff_test WITH (FORCE)")
        .unwrap();
    assert_eq!(code, Some(0), "{stdout}");
    let rows = step_rows(logs.path());
    assert_eq!(number(&rows[0], "ok"), 6, "{rows:?}");
    assert_eq!(number(&rows[1], "failed"), 12, "{rows:?}");
    // Step 2, one worker: the first request meets the dead connection, each later one
    // tries to reconnect, no sooner than 10 ms after the last failed try, then 20, 40 ...,
    // each wait jittered down to half of it at most.
    let requests = read_csv_with_header(&log_file(logs.path(), "_requests.csv"));
    let mut starts: Vec<f64> = requests
        .iter()
        .filter(|r| r["step"] == "2")
        .map(|r| float(r, "start_ms"))
        .collect();
    starts.sort_by(f64::total_cmp);
    assert_eq!(starts.len(), 12);
    for (k, pair) in starts[1..].windows(2).enumerate() {
        let backoff = (10.0 * 2f64.powi(k as i32)).min(1000.0);
        assert!(
            pair[1] - pair[0] >= backoff / 2.0 - 0.01,
            "try {} came {} ms after the one before, backoff {backoff} ms: {starts:?}",
            k + 2,
            pair[1] - pair[0]
        );
    }
}

#[test]
fn pool_connecting_per_request_opens_a_backend_for_every_request() {
    let (_guard, dsn) = small_server();
    let (mut control, counted_dsn) = fresh_database(&dsn, "per_request_test");
    let mut counted = postgres::Client::connect(&counted_dsn, postgres::NoTls).unwrap();
    // Each request records the backend that served it.
    counted
        .batch_execute(
            "CREATE TABLE served (pid int);
             CREATE FUNCTION served(value text) RETURNS text LANGUAGE sql
             AS $$ INSERT INTO served VALUES (pg_backend_pid()) RETURNING value $$",
        )
        .unwrap();
    let backends = |counted: &mut postgres::Client, extra: &[&str]| {
        counted.batch_execute("TRUNCATE served").unwrap();
        let logs = tempfile::tempdir().unwrap();
        let args = [
            "--dsn",
            &counted_dsn,
            "--mode",
            "pool",
            "--workers",
            "3",
            "--steps",
            "2",
            "--step",
            "10",
            "--query",
            "SELECT served($1::text)",
            "--allow-writes",
            "--no-report",
        ];
        run_ok(logs.path(), &[&args[..], extra].concat());
        // The calls each backend served, most first.
        counted
            .query(
                "SELECT count(*) FROM served GROUP BY pid ORDER BY 1 DESC",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get::<_, i64>(0))
            .collect::<Vec<i64>>()
    };
    // Kept connections: the 3 workers' backends serve the 30 requests (the pre-flight's
    // few calls come from backends of their own).
    let kept = backends(&mut counted, &[]);
    assert!(kept[..3].iter().sum::<i64>() >= 30, "{kept:?}");
    // A connection per request: a backend serves one request (the pre-flight's, two).
    let fresh = backends(&mut counted, &["--connect-per-request"]);
    assert!(
        fresh.len() >= 30 && fresh.iter().all(|calls| *calls <= 2),
        "{fresh:?}"
    );
    drop(counted);
    control
        .batch_execute("DROP DATABASE per_request_test WITH (FORCE)")
        .unwrap();
}

/// The same cases through every kept connection there is, both clients by both ways of running
/// the query: every request answered, a value the server cannot read classed `bad_value`, a
/// value the table lacks `no_row`, whichever client holds the connection.
#[test]
fn both_clients_keep_their_connections_through_the_same_cases() {
    let data = data_folder("mixed.csv", "1\n2\nnot a number\n99999\n");
    let data = data.path().to_str().unwrap();
    for client in ["lean", "postgres"] {
        for prepare in ["once", "never"] {
            let logs = tempfile::tempdir().unwrap();
            let what = format!("--client {client} --prepare {prepare}");
            run_ok(
                logs.path(),
                &[
                    "--dsn",
                    &shared_dsn(),
                    "--mode",
                    "pool",
                    "--workers",
                    "2",
                    "--client",
                    client,
                    "--prepare",
                    prepare,
                    "--query",
                    "SELECT 1 FROM generate_series(1, 10) AS n WHERE n = $1::int",
                    "--data",
                    data,
                    "--steps",
                    "1",
                    "--step",
                    "40",
                    "--no-stop",
                ],
            );
            let row = &step_rows(logs.path())[0];
            let (ok, bad, none) = (
                number(row, "ok"),
                number(row, "bad_value"),
                number(row, "no_row"),
            );
            assert_eq!(ok + bad + none, 40, "{what}: {row:?}");
            assert!(ok > 0 && bad > 0 && none > 0, "{what}: {row:?}");
            assert_eq!(number(row, "failed"), bad + none, "{what}: {row:?}");
        }
    }
}
