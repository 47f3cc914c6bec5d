//! A small run against a real cluster writes its log files, with the right names,
//! headers and one row per step, and its counts add up.

mod common;

use common::*;
use pgstress::model::outcome::FailureClass;

#[test]
fn small_run_writes_every_log_file() {
    let logs = tempfile::tempdir().unwrap();
    // The pictures are tests/report.rs's subject; here only the logs.
    pgstress_run(logs.path())
        .args([
            "--dsn",
            &shared_dsn(),
            "--steps",
            "3",
            "--step",
            "10",
            "--no-report",
        ])
        .assert()
        .success();

    let names: Vec<String> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    let failures_log = log_file(logs.path(), "_log.csv");
    let timestamp = &failures_log.file_name().unwrap().to_str().unwrap()[..15];
    assert!(
        chrono::NaiveDateTime::parse_from_str(timestamp, "%m%d%Y_%H%M%S").is_ok(),
        "timestamp {timestamp} is not %m%d%Y_%H%M%S"
    );
    for suffix in [
        "log.csv",
        "log_execution_time.csv",
        "steps.csv",
        "cpu.csv",
        "summary.json",
    ] {
        assert!(
            names.contains(&format!("{timestamp}_{suffix}")),
            "{suffix} missing from {names:?}"
        );
    }
}

#[test]
fn original_logs_have_one_headerless_row_per_step() {
    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "3", "--step", "10"])
        .assert()
        .success();

    let failures = read_csv_without_header(&log_file(logs.path(), "_log.csv"));
    let requests: Vec<&str> = failures.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(requests, ["10", "20", "30"]);
    assert!(
        failures.iter().all(|row| row.len() == 2 && row[1] == "0"),
        "{failures:?}"
    );

    let times = read_csv_without_header(&log_file(logs.path(), "_log_execution_time.csv"));
    assert_eq!(times.len(), 3);
    for row in &times {
        let seconds: f64 = row[1].parse().unwrap();
        assert!(seconds > 0.0 && seconds < 60.0, "{row:?}");
    }
}

#[test]
fn steps_csv_counts_add_up_and_every_lookup_finds_its_row() {
    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "3", "--step", "10"])
        .assert()
        .success();

    let path = log_file(logs.path(), "_steps.csv");
    let header = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(header, pgstress::logs::STEPS_HEADER.join(","));
    let rows = read_csv_with_header(&path);
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(number(row, "step"), i as u64 + 1);
        assert_eq!(number(row, "requests"), 10 * (i as u64 + 1));
        // `requests` is ok + failed + dropped by definition; burst mode drops none.
        assert_eq!(number(row, "dropped"), 0, "{row:?}");
        let by_class: u64 = FailureClass::ALL
            .iter()
            .map(|c| number(row, c.name()))
            .sum();
        assert_eq!(by_class, number(row, "failed"));
        // data/*.csv holds hashes of the demo rows: a lookup that finds nothing is a bug.
        assert_eq!(number(row, "no_row"), 0, "{row:?}");
        // A peak needs three samples, which a short step may not have; a mean it always has.
        assert!(
            !row["latency_p99_ms"].is_empty() && !row["host_cpu_mean"].is_empty(),
            "{row:?}"
        );
        assert!(
            !row["server_cpu_mean"].is_empty(),
            "a loopback server's CPU is visible: {row:?}"
        );
    }
}

#[test]
fn cpu_csv_has_samples_for_every_step() {
    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "2", "--step", "10"])
        .assert()
        .success();

    let rows = read_csv_with_header(&log_file(logs.path(), "_cpu.csv"));
    for step in 1..=2 {
        let samples: Vec<_> = rows.iter().filter(|r| number(r, "step") == step).collect();
        assert!(!samples.is_empty(), "no CPU sample for step {step}");
        for sample in samples {
            assert_eq!(number(sample, "requests"), 10 * step);
            let host: f64 = sample["host_cpu_pct"].parse().unwrap();
            assert!((0.0..=100.0).contains(&host), "{sample:?}");
        }
    }
}

#[test]
fn parameter_with_quotes_is_bound_not_spliced() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("quotes.csv"),
        "\"it's a \"\"quoted\"\"; DROP TABLE sharding; --\"\n",
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "1", "--step", "5"])
        .args([
            "--query",
            "SELECT $1::text WHERE $1::text LIKE 'it''s a \"quoted\"%'",
        ])
        .arg("--data")
        .arg(data.path())
        .assert()
        .success();
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    assert_eq!(number(&rows[0], "ok"), 5, "{:?}", rows[0]);
}

#[test]
fn query_without_parameter_needs_no_data() {
    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args([
            "--dsn",
            &shared_dsn(),
            "--steps",
            "1",
            "--step",
            "4",
            "--query",
            "SELECT 1",
        ])
        .args(["--data", "/no/such/folder"])
        .assert()
        .success();
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    assert_eq!(number(&rows[0], "ok"), 4);
}

#[test]
fn config_file_sets_the_plan_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgstress.toml");
    std::fs::write(&config, "steps = 4\nstep = 3\nstart = 2\n").unwrap();
    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "2"])
        .arg("--config")
        .arg(&config)
        .assert()
        .success();
    let rows = read_csv_without_header(&log_file(logs.path(), "_log.csv"));
    let requests: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(requests, ["2", "5"]);
}

#[test]
fn failing_query_is_classified_as_query() {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // The first row (which pre-flight sends alone) works; every other value makes the query
    // fail at run time (42809: not a sequence), an error of the query, not of its data.
    let rows = format!("probe\n{}", "boom\n".repeat(999));
    std::fs::write(data.path().join("values.csv"), rows).unwrap();
    pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "1", "--step", "3"])
        .args(["--data", data.path().to_str().unwrap(), "--no-stop"])
        .args([
            "--query",
            "SELECT CASE WHEN $1 = 'probe' THEN 1 ELSE nextval('pg_class_oid_index'::regclass)::int END",
        ])
        .assert()
        .success();
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    let query = number(&rows[0], "query");
    // Three draws among 1,000 values, one of them the probe: at least two hit a `boom`.
    assert!(query >= 2, "{:?}", rows[0]);
    assert_eq!(query + number(&rows[0], "ok"), 3, "{:?}", rows[0]);
}

#[test]
fn a_query_that_fails_for_every_value_stops_before_the_load() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "1", "--step", "3"])
        .args(["--query", "SELECT 1 / (length($1) - length($1))"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("22012: division by zero"), "{error}");
}

#[test]
fn statement_timeout_is_classified_as_timeout() {
    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args([
            "--dsn",
            &shared_dsn(),
            "--steps",
            "1",
            "--step",
            "2",
            "--timeout",
            "300ms",
        ])
        .args(["--query", "SELECT pg_sleep(5), $1"])
        .assert()
        .success();
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    assert_eq!(number(&rows[0], "timeout"), 2, "{:?}", rows[0]);
}

/// At the client's open-file limit (soft and hard both 80, so pgstress cannot raise its own),
/// a step of 150 requests each holding its connection for a second, in a burst and through a
/// pool of 150 workers: the requests beyond the limit fail as `client`, and what pgstress holds
/// between steps (a burst's sockets made ahead for the next step, a pool's kept connections)
/// leaves it the descriptors its summary and report need (issue 32, item 1). The second's sleep
/// keeps every connection of the step open at once, whatever the machine's speed.
#[test]
fn the_summary_and_report_are_written_at_the_open_file_limit() {
    use std::os::unix::process::CommandExt;
    const LIMIT: libc::rlim_t = 80;
    let server = start_server(&[]);
    for mode in [
        &["--mode", "burst"][..],
        &["--mode", "pool", "--workers", "150"],
    ] {
        let logs = tempfile::tempdir().unwrap();
        let mut command = run_command(logs.path());
        command
            .args(["--dsn", &server.dsn(), "--steps", "1", "--step", "150"])
            .args(["--query", "SELECT pg_sleep(1)"])
            .args(mode);
        // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent's.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: LIMIT,
                    rlim_max: LIMIT,
                };
                match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{mode:?}: {stdout}\n{stderr}");

        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(log_file(logs.path(), "_summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["complete"], true, "{mode:?}: {summary}");
        let steps = summary["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 1, "{mode:?}: {summary}");
        let step = &steps[0];
        assert_eq!(step["requests"], 150, "{mode:?}: {step}");
        let failed = step["failed"].as_u64().unwrap();
        // 150 connections open at once cannot fit in 80 descriptors.
        assert!(failed >= 150 - LIMIT, "{mode:?}: {step}");
        assert_eq!(step["client"].as_u64(), Some(failed), "{mode:?}: {step}");
        assert_eq!(
            step["ok"].as_u64().unwrap() + failed,
            150,
            "{mode:?}: {step}"
        );
        // The verdict, which only the summary carries, is there.
        let verdict = summary["verdict_text"].as_array().unwrap();
        assert!(!verdict.is_empty(), "{mode:?}: {summary}");
        log_file(logs.path(), "_report.html");
    }
    server.stop();
}
