//! The verdict, stop rules, summary and gates, end to end against real clusters.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Holds every connection for half a second, so the requests of a step overlap for certain.
const SLOW_QUERY: &str = "SELECT $1::text FROM pg_sleep(0.5)";

fn summary(logs: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(log_file(logs, "_summary.json")).unwrap())
        .unwrap()
}

#[test]
fn first_step_above_max_connections_is_the_breaking_point() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--dsn",
            &dsn,
            "--steps",
            "3",
            "--step",
            "10",
            "--no-stop",
            "--query",
            SLOW_QUERY,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let verdict = &summary(logs.path())["verdict"];
    assert_eq!(verdict["capacity"], 10, "{verdict}");
    assert_eq!(verdict["breaking_point"]["step"], 2, "{verdict}");
    assert_eq!(
        verdict["breaking_point"]["dominant_failure"][0], "too_many_clients",
        "{verdict}"
    );
    assert!(
        stdout.contains("breaking point: 20 concurrent requests (step 2)"),
        "{stdout}"
    );

    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    assert!(
        !rows[0]["flags"].contains("over-max-connections"),
        "{:?}",
        rows[0]
    );
    assert!(
        rows[1]["flags"].contains("over-max-connections"),
        "{:?}",
        rows[1]
    );
    assert!(
        number(&rows[1], "server_connections_peak") >= 15,
        "{:?}",
        rows[1]
    );
}

#[test]
fn failure_rate_rule_stops_at_the_step_that_breaks_it() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    // Step 2 (20 requests) loses about 1 in 20 to the monitoring connection; step 3 (30) about 11.
    let output = pgstress_run(logs.path())
        .args([
            "--dsn",
            &dsn,
            "--steps",
            "6",
            "--step",
            "10",
            "--stop-failure-rate",
            "0.2",
        ])
        .args(["--query", SLOW_QUERY])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("stopped after step 3: --stop-failure-rate 0.2"),
        "{stdout}"
    );
    let rows = read_csv_without_header(&log_file(logs.path(), "_log.csv"));
    assert_eq!(
        rows.len(),
        3,
        "every step up to the stop is logged, none after: {rows:?}"
    );
    assert_eq!(summary(logs.path())["verdict"]["stopped"][0], 3);
}

#[test]
fn summary_json_matches_the_steps_csv() {
    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "3", "--step", "5"])
        .assert()
        .success();
    let summary = summary(logs.path());
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["pgstress_version"], env!("CARGO_PKG_VERSION"));
    assert!(summary["target"].as_str().unwrap().contains("password=***"));
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    let steps = summary["steps"].as_array().unwrap();
    assert_eq!(steps.len(), rows.len());
    for (json, csv) in steps.iter().zip(&rows) {
        for column in pgstress::logs::STEPS_HEADER {
            let text = match &json[column] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let same = text == csv[column]
                || text
                    .parse::<f64>()
                    .ok()
                    .zip(csv[column].parse::<f64>().ok())
                    .is_some_and(|(a, b)| a == b);
            assert!(same, "{column}: json {text} vs csv {}", csv[column]);
        }
        assert!(!json["latency_histogram_us"].as_str().unwrap().is_empty());
    }
}

#[test]
fn breached_gate_exits_3_and_a_kept_gate_exits_0() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--dsn",
            &shared_dsn(),
            "--steps",
            "2",
            "--step",
            "5",
            "--fail-if",
            "capacity<1000",
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("gate breached: capacity<1000"));

    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args([
            "--dsn",
            &shared_dsn(),
            "--steps",
            "2",
            "--step",
            "5",
            "--fail-if",
            "failed>1000",
        ])
        .assert()
        .code(0);
}
