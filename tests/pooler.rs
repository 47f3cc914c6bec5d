//! Through PgBouncer (Debian's binary, as configured by default) in front of real throwaway
//! clusters: every mode gets its answers in session and transaction pooling, a pool that
//! prepares once through transaction pooling is a one-line error before any load, and the
//! throwaway pooler of `--pooler pgbouncer` is gone after the run.

mod common;

use std::path::Path;

use common::*;
use pgstress::pg::pooler::ThrowawayPooler;

fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run(logs: &Path, dsn: &str, args: &[&str]) -> std::process::Output {
    pgstress_run(logs)
        .args([
            "--dsn",
            dsn,
            "--steps",
            "2",
            "--step",
            "20",
            "--no-report",
            "--quiet",
        ])
        .args(args)
        .output()
        .unwrap()
}

fn assert_all_ok(output: &std::process::Output, logs: &Path, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{what}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = read_csv_with_header(&log_file(logs, "_steps.csv"));
    assert_eq!(rows.len(), 2, "{what}: no step may stop the run: {stdout}");
    for row in &rows {
        assert_eq!(number(row, "failed"), 0, "{what}: {row:?}");
        assert_eq!(
            number(row, "ok"),
            number(row, "requests"),
            "{what}: {row:?}"
        );
    }
    assert!(stdout.contains("no breaking point"), "{what}: {stdout}");
    stdout
}

#[test]
fn every_mode_works_through_pgbouncer_as_configured_in_session_and_transaction_pooling() {
    let server = start_server(&[]);
    for mode in ["session", "transaction"] {
        let pooler = ThrowawayPooler::start(&server.target(), &settings(&[("pool_mode", mode)]))
            .expect("start pgbouncer");
        let dsn = pooler.dsn();
        for args in [
            &["--mode", "burst"][..],
            &["--mode", "pool", "--workers", "8"],
            &["--mode", "rate", "--duration", "1s"],
            &["--mode", "burst", "--client", "postgres"],
        ] {
            let logs = tempfile::tempdir().unwrap();
            let what = format!("{mode} pooling, {args:?}");
            let output = run(logs.path(), &dsn, args);
            let stdout = assert_all_ok(&output, logs.path(), &what);
            assert!(
                stdout.contains("pooler:  the target refused the `options` startup parameter"),
                "{what}: {stdout}"
            );
        }
        pooler.stop();
    }
}

#[test]
fn preparing_once_through_transaction_pooling_is_a_one_line_error_before_any_load() {
    let server = start_server(&[]);
    let pooler =
        ThrowawayPooler::start(&server.target(), &settings(&[("pool_mode", "transaction")]))
            .expect("start pgbouncer");
    let logs = tempfile::tempdir().unwrap();
    let output = run(
        logs.path(),
        &pooler.dsn(),
        &["--mode", "pool", "--workers", "4", "--prepare", "once"],
    );
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("give --prepare never"), "{error}");
    assert!(!error.contains(server.password()), "{error}");
    let logged = std::fs::read_dir(logs.path()).unwrap().count();
    assert_eq!(logged, 0, "no step ran, so no log was written");
    // The same through session pooling is fine: the server connection is the client's.
    let session = ThrowawayPooler::start(&server.target(), &[]).expect("start pgbouncer");
    let logs = tempfile::tempdir().unwrap();
    let output = run(
        logs.path(),
        &session.dsn(),
        &["--mode", "pool", "--workers", "4", "--prepare", "once"],
    );
    assert_all_ok(&output, logs.path(), "session pooling, --prepare once");
}

#[test]
fn a_throwaway_pgbouncer_is_recorded_and_removed_after_the_run() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--pooler",
            "pgbouncer",
            "--pooler-setting",
            "pool_mode=transaction",
        ])
        .args([
            "--mode",
            "pool",
            "--workers",
            "4",
            "--steps",
            "2",
            "--step",
            "20",
        ])
        .args(["--no-report", "--quiet"])
        .output()
        .unwrap();
    let stdout = assert_all_ok(&output, logs.path(), "--pooler pgbouncer");
    assert!(
        stdout.contains("pooler:  PgBouncer") && stdout.contains("pool_mode=transaction"),
        "{stdout}"
    );
    assert!(
        stdout.contains("throwaway pooler stopped and removed"),
        "{stdout}"
    );
    let folder = stdout
        .split("started a throwaway pooler: ")
        .nth(1)
        .and_then(|rest| rest.split(" in ").nth(1))
        .and_then(|rest| rest.split(';').next())
        .expect("the pooler's folder is named");
    assert!(!Path::new(folder).exists(), "{folder} is still there");
    assert!(
        no_process_mentions(folder),
        "a pgbouncer of {folder} still runs"
    );
    let summary = std::fs::read_to_string(log_file(logs.path(), "_summary.json")).unwrap();
    assert!(summary.contains("\"pooler\": \"PgBouncer"), "{summary}");
}

/// No process's command line names `folder` (PgBouncer runs with its ini file inside it).
fn no_process_mentions(folder: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().all(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|cmdline| !String::from_utf8_lossy(&cmdline).contains(folder))
            .unwrap_or(true)
    })
}
