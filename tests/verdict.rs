//! The verdict, stop rules, summary and gates, end to end against real clusters.

mod common;

use common::*;
use serde_json::Value;

/// Holds every connection for half a second, so the requests of a step overlap for certain.
const SLOW_QUERY: &str = "SELECT $1::text FROM pg_sleep(0.5)";

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

    let rows = step_rows(logs.path());
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
fn summary_and_steps_csv_agree_with_the_requests_they_count() {
    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "3", "--step", "5"])
        .arg("--log-requests")
        .assert()
        .success();
    let summary = summary(logs.path());
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["pgstress_version"], env!("CARGO_PKG_VERSION"));
    assert!(summary["target"].as_str().unwrap().contains("password=***"));
    let rows = step_rows(logs.path());
    let steps = summary["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(rows.len(), 3);
    // The per-request log is written from the records themselves, before any aggregation:
    // the aggregates in both files must count and measure the same requests.
    let requests = read_csv_with_header(&log_file(logs.path(), "_requests.csv"));
    for (i, (json, csv)) in steps.iter().zip(&rows).enumerate() {
        let step = (i + 1).to_string();
        let mine: Vec<_> = requests.iter().filter(|r| r["step"] == step).collect();
        let count = |outcome: &str| mine.iter().filter(|r| r["outcome"] == outcome).count() as u64;
        assert_eq!(mine.len() as u64, 5 * (i as u64 + 1));
        for (column, expected) in [
            ("requests", mine.len() as u64),
            ("ok", count("ok")),
            ("failed", mine.len() as u64 - count("ok")),
            ("too_many_clients", count("too_many_clients")),
        ] {
            assert_eq!(number(csv, column), expected, "steps.csv {column}");
            assert_eq!(json[column].as_u64(), Some(expected), "summary {column}");
        }
        let slowest = mine
            .iter()
            .filter(|r| r["outcome"] == "ok")
            .map(|r| r["latency_ms"].parse::<f64>().unwrap())
            .fold(0.0, f64::max);
        // The histogram keeps 3 significant digits; the CSV rounds to 0.001 ms.
        for max in [
            csv["latency_max_ms"].parse::<f64>().unwrap(),
            json["latency_max_ms"].as_f64().unwrap(),
        ] {
            assert!(
                (max - slowest).abs() <= slowest * 0.002 + 0.002,
                "step {step}: max {max} ms, slowest request {slowest} ms"
            );
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

/// Two steps of 3 and 6 requests of `SLOW_QUERY` (each at least 500 ms) on the shared
/// cluster, with `extra`: the exit code, the terminal and the summary.
fn slow_run(extra: &[&str]) -> (Option<i32>, String, Value) {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "2", "--step", "3"])
        .args(["--query", SLOW_QUERY])
        .args(extra)
        .output()
        .unwrap();
    let stdout = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), stdout, summary(logs.path()))
}

#[test]
fn a_p99_over_the_slo_is_a_breaking_point_without_failures() {
    let (code, stdout, summary) = slow_run(&["--slo-p99", "100ms"]);
    assert_eq!(code, Some(0), "{stdout}");
    let verdict = &summary["verdict"];
    assert_eq!(verdict["breaking_point"]["step"], 1, "{verdict}");
    assert_eq!(verdict["breaking_point"]["failed"], 0, "{verdict}");
    assert_eq!(verdict["capacity"], Value::Null, "{verdict}");
    assert!(stdout.contains("over the 100ms SLO"), "{stdout}");
    // Without the SLO the same run has no breaking point.
    let (_, stdout, summary) = slow_run(&[]);
    assert_eq!(summary["verdict"]["capacity"], 6, "{stdout}");
}

#[test]
fn the_p99_stop_rule_ends_the_run_at_the_first_slow_step() {
    let (code, stdout, summary) = slow_run(&["--stop-p99", "100ms"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("stopped after step 1: --stop-p99 100ms"),
        "{stdout}"
    );
    assert_eq!(summary["verdict"]["stopped"][0], 1);
    assert_eq!(summary["verdict"]["stopped"][1]["rule"], "p99");
    assert_eq!(summary["steps"].as_array().unwrap().len(), 1);
    // A limit above every request's latency lets the run go on.
    let (_, stdout, summary) = slow_run(&["--stop-p99", "1h"]);
    assert_eq!(summary["steps"].as_array().unwrap().len(), 2, "{stdout}");
}

#[test]
fn latency_gates_of_a_step_and_of_every_step_end_to_end() {
    // Every request takes at least 500 ms: these hold for certain, whatever the machine.
    for (gate, code) in [
        ("p99>=400ms@3", 3),
        ("max>=400ms", 3),
        ("p50>=400ms@6", 3),
        ("p99<400ms", 0),
        ("max<400ms@6", 0),
    ] {
        let (got, stdout, _) = slow_run(&["--fail-if", gate]);
        assert_eq!(got, Some(code), "--fail-if {gate}: {stdout}");
        assert_eq!(
            stdout.contains(&format!("gate breached: {gate}")),
            code == 3,
            "{stdout}"
        );
    }
}
