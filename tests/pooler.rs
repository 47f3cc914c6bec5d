//! Through PgBouncer (Debian's binary, as configured by default) in front of real throwaway
//! clusters: every mode gets its answers in session and transaction pooling, a pool that
//! prepares once through transaction pooling is a one-line error before any load, and the
//! throwaway pooler of `--pooler pgbouncer` is gone after the run.

mod common;

use std::path::Path;

use common::pooler::*;
use common::*;
use pgstress::pg::local::pooler::ThrowawayPooler;

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
            // `--client postgres` derives its SCRAM keys on every connection: slow on a
            // loaded machine in a debug build.
            "--timeout",
            "60s",
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
    assert_eq!(output.status.code(), Some(1), "{output:?}");
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
    let folders = pooler_folders(&stdout);
    assert_eq!(folders.len(), 1, "{stdout}");
    assert_pooler_gone(&folders[0]);
    let summary = std::fs::read_to_string(log_file(logs.path(), "_summary.json")).unwrap();
    assert!(summary.contains("\"pooler\": \"PgBouncer"), "{summary}");
}

/// No process's command line names `folder` (PgBouncer runs with its ini file inside it).
#[test]
fn sigterm_mid_step_removes_the_throwaway_pooler() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let logs = tempfile::tempdir().unwrap();
    let mut child = run_command(logs.path())
        .args(["--pooler", "pgbouncer", "--query", "SELECT pg_sleep(5)"])
        .args(["--steps", "2", "--step", "4", "--no-report", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Step 1 holds its connections in pg_sleep for 5 s: the signal lands in the step.
    let deadline = Instant::now() + Duration::from_secs(120);
    let steps_log = |logs: &Path| {
        std::fs::read_dir(logs)
            .unwrap()
            .flatten()
            .any(|e| e.path().to_string_lossy().ends_with("_steps.csv"))
    };
    while !steps_log(logs.path()) {
        assert!(Instant::now() < deadline, "the run never started its steps");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(child.try_wait(), Ok(None)) {
        assert!(Instant::now() < deadline, "pgstress did not end on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143), "{stdout}");
    let folders = pooler_folders(&stdout);
    assert_eq!(folders.len(), 1, "{stdout}");
    assert_pooler_gone(&folders[0]);
}

#[test]
fn clients_past_max_client_conn_are_the_poolers_refusal_not_the_servers() {
    let logs = tempfile::tempdir().unwrap();
    // 20 requests hold their connections for 2 s; PgBouncer takes 10 clients (pgstress's
    // monitor and console among them) and refuses the rest.
    let output = pgstress_run(logs.path())
        .args([
            "--pooler",
            "pgbouncer",
            "--pooler-setting",
            "max_client_conn=10",
        ])
        .args([
            "--query",
            "SELECT pg_sleep(2)",
            "--steps",
            "1",
            "--step",
            "20",
        ])
        .args(["--timeout", "60s", "--no-report", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    let row = &rows[0];
    assert!(number(row, "pooler_too_many_clients") >= 10, "{row:?}");
    assert_eq!(number(row, "too_many_clients"), 0, "{row:?}");
    assert_eq!(number(row, "query"), 0, "{row:?}");
    assert_eq!(number(row, "server_failed"), 0, "not the server's: {row:?}");
    assert!(row["flags"].contains("pooler-refused"), "{row:?}");
    assert!(
        stdout.contains("the ramp may have measured the pooler, not the server — pooler-refused"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("no breaking point")),
        "the server failed nothing: {stdout}"
    );
    assert_eq!(output.status.code(), Some(0), "{stdout}");
}

#[test]
fn the_pools_default_workers_are_sized_by_pgbouncers_client_limit() {
    // The server takes 100 connections; PgBouncer 40 clients, its console read as its stats
    // user. In transaction pooling the 40 are its limit: 37 workers (pgstress's monitor and
    // console are clients too). In session pooling (its default) each client holds one of the
    // 20 server connections of default_pool_size for its whole session: 17 workers.
    for (mode, workers, limit) in [
        (
            "transaction",
            37,
            "its client limit: 40 at once (max_client_conn 40)",
        ),
        (
            "session",
            17,
            "its client limit: 20 at once (pool_mode session: default_pool_size 20, of \
             max_client_conn 40)",
        ),
    ] {
        let logs = tempfile::tempdir().unwrap();
        let output = pgstress_run(logs.path())
            .args(["--dsn", &shared_dsn(), "--pooler", "pgbouncer"])
            .args(["--pooler-setting", "max_client_conn=40"])
            .args(["--pooler-setting", &format!("pool_mode={mode}")])
            .args(["--mode", "pool", "--steps", "1", "--step", "50"])
            .args(["--timeout", "60s", "--no-report", "--quiet"])
            .output()
            .unwrap();
        let stdout = output_text(&output);
        assert_eq!(output.status.code(), Some(0), "{mode}: {stdout}");
        assert!(
            stdout.contains(&format!("pool: {workers} workers")),
            "{mode}: {stdout}"
        );
        assert!(stdout.contains(limit), "{mode}: {stdout}");
        let row = &step_rows(logs.path())[0];
        assert_eq!(number(row, "failed"), 0, "{mode}: {row:?}");
    }
}

#[test]
fn pgbouncers_one_thread_full_of_tls_handshakes_is_pooler_saturated() {
    // Full by construction, on any machine: PgBouncer is pinned to one CPU that a busy loop
    // of the test's own shares, so while its handshakes last its thread is always runnable
    // (running, or waiting for that CPU), however fast the CPU is.
    let cpu = *pgstress::sys::affinity::available().last().unwrap();
    let _busy = BusyLoop::on_cpu(cpu);
    let server = start_server(&[]);
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = slow_handshake_certificate(certs.path());
    let pooler = ThrowawayPooler::start_on(
        &server.target(),
        &settings(&[
            ("client_tls_sslmode", "allow"),
            ("client_tls_cert_file", &cert),
            ("client_tls_key_file", &key),
            ("max_client_conn", "400"),
        ]),
        Some(&[cpu]),
    )
    .expect("start pgbouncer");
    let dsn = pooler.dsn().replace("sslmode=disable", "sslmode=require");
    // 200 handshakes at once: all of PgBouncer's thread it can get, little of pgstress's.
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--dsn", &dsn, "--query", "SELECT 1", "--steps", "1", "--step", "200",
        ])
        .args(["--timeout", "60s", "--no-report", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    let row = &rows[0];
    assert_eq!(number(row, "ok"), 200, "{row:?}");
    assert!(
        row["flags"].contains("pooler-saturated"),
        "{row:?}\n{stdout}"
    );
    assert!(
        stdout.contains("its CPU sampled (pid") && stdout.contains("1 core"),
        "PgBouncer listens on the target's port: {stdout}"
    );
}

#[test]
fn an_idle_pgbouncer_beside_a_busy_loop_is_not_pooler_saturated() {
    // The control for the test above: the same pinning and busy loop, but only plain
    // connections, so PgBouncer's thread is rarely runnable and the flag must stay down.
    let cpu = *pgstress::sys::affinity::available().last().unwrap();
    let _busy = BusyLoop::on_cpu(cpu);
    let server = start_server(&[]);
    let pooler =
        ThrowawayPooler::start_on(&server.target(), &[], Some(&[cpu])).expect("start pgbouncer");
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", &pooler.dsn(), "--query", "SELECT pg_sleep(1)"])
        .args(["--steps", "1", "--step", "5"])
        .args(["--timeout", "60s", "--no-report", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    assert_eq!(number(&rows[0], "ok"), 5, "{:?}", rows[0]);
    assert!(
        !rows[0]["flags"].contains("pooler-saturated"),
        "{:?}\n{stdout}",
        rows[0]
    );
}
