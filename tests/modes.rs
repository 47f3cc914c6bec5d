//! Pool and rate modes, and `pgstress compare`, against a real cluster that accepts few
//! connections.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;

/// Each request holds its connection 20 ms, so requests queue behind busy workers.
const BUSY_QUERY: &str = "SELECT $1::text FROM pg_sleep(0.02)";

fn run_ok(logs: &Path, args: &[&str]) -> String {
    let output = pgstress_run(logs).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn float(row: &HashMap<String, String>, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("{column} = '{}' is not a number", row[column]))
}

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
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
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
        assert!(float(row, "latency_p99_ms") >= float(row, "service_p99_ms"));
    }
}

#[test]
fn pool_survives_its_connections_being_killed() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    // Every request first kills every other pgstress backend: the workers' connections die
    // under them, and each must reconnect to serve its next request.
    let killer = "SELECT $1::text, (SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                  WHERE application_name = 'pgstress' AND pid <> pg_backend_pid())";
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
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    assert_eq!(rows.len(), 2, "{stdout}");
    let total = |column: &str| rows.iter().map(|r| number(r, column)).sum::<u64>();
    assert_eq!(total("requests"), 120);
    assert_eq!(total("ok") + total("failed"), 120);
    assert!(
        total("ok") > 0,
        "reconnected workers keep serving: {stdout}"
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
fn rate_offers_the_planned_count_and_corrected_latency_includes_the_lag() {
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
            "poisson",
            "--query",
            "SELECT $1::text",
            "--log-requests",
            "--no-report",
        ],
    );
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    // 40/s and 80/s for half a second.
    for (row, offered) in rows.iter().zip([20i64, 40]) {
        let requests = number(row, "requests") as i64;
        assert!(
            (requests - offered).abs() <= 1,
            "offered {requests}, planned {offered}"
        );
        assert_eq!(
            number(row, "ok") + number(row, "failed") + number(row, "dropped"),
            number(row, "requests")
        );
    }
    let requests = read_csv_with_header(&log_file(logs.path(), "_requests.csv"));
    assert_eq!(
        requests.len() as u64,
        rows.iter().map(|r| number(r, "requests")).sum::<u64>()
    );
    for request in &requests {
        let corrected = float(request, "latency_ms");
        let uncorrected = float(request, "service_ms");
        assert!(
            corrected >= uncorrected,
            "corrected {corrected} < uncorrected {uncorrected}: {request:?}"
        );
        assert!(
            !request["wait_ms"].is_empty(),
            "the lag is logged: {request:?}"
        );
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
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
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
