//! Hold mode against real throwaway clusters: the crowd is kept from step to step (the
//! server's own pg_stat_activity sees the same backends), none is reconnected silently, a
//! PgBouncer's `max_client_conn` refusals are the pooler's, and `--source-address` spreads the
//! connections over the addresses listed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use pgstress::pg::local::pooler::ThrowawayPooler;

/// The application name of the run's sessions, which the test's own connection does not use.
const APP: &str = "pgstress-hold-test";

fn client(dsn: &str) -> postgres::Client {
    postgres::Client::connect(dsn, postgres::NoTls).unwrap()
}

/// The backends of the run's held sessions now, each with the address it came from (not its
/// monitoring session, named alike, whose query is never the run's).
fn held_backends(client: &mut postgres::Client) -> BTreeMap<i32, String> {
    let rows = client
        .query(
            "SELECT pid, coalesce(host(client_addr), '') FROM pg_stat_activity \
             WHERE application_name = $1 AND backend_type = 'client backend' \
             AND query = 'SELECT 1'",
            &[&APP],
        )
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Waits (bounded) until the run's sessions on the server number `count`; what was seen last.
fn wait_for_backends(
    client: &mut postgres::Client,
    count: usize,
    deadline: Duration,
) -> BTreeMap<i32, String> {
    let end = Instant::now() + deadline;
    loop {
        let seen = held_backends(client);
        if seen.len() == count || Instant::now() > end {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hold_args<'a>(dsn: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--dsn",
        dsn,
        "--mode",
        "hold",
        "--query",
        "SELECT 1",
        "--every",
        "300ms",
        "--no-report",
        "--quiet",
        "--timeout",
        "30s",
    ];
    args.extend_from_slice(extra);
    args
}

fn with_app(dsn: &str) -> String {
    format!("{dsn} application_name={APP}")
}

#[test]
fn hold_mode_keeps_every_connection_from_step_to_step_and_reconnects_none() {
    let server = start_server(&[("max_connections", "400")]);
    let dsn = server.dsn();
    let run_dsn = with_app(&dsn);
    let logs = tempfile::tempdir().unwrap();
    let args = hold_args(
        &run_dsn,
        &["--steps", "3", "--step", "100", "--duration", "6s"],
    );
    let run = spawn_pgstress(logs.path(), &args);
    let mut watcher = client(&dsn);
    // Each step's crowd as the server sees it, while the step holds it.
    let mut seen: Vec<BTreeMap<i32, String>> = Vec::new();
    for step in 1..=3usize {
        let backends = wait_for_backends(&mut watcher, step * 100, Duration::from_secs(60));
        if backends.len() != step * 100 {
            let output = finish_run(run);
            panic!(
                "step {step}: the server saw {} of the run's sessions: {}",
                backends.len(),
                output_text(&output)
            );
        }
        seen.push(backends);
    }
    let output = finish_run(run);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    // The backends of one step are all still there at the next: kept, not reconnected.
    for pair in seen.windows(2) {
        let (before, after): (BTreeSet<_>, BTreeSet<_>) =
            (pair[0].keys().collect(), pair[1].keys().collect());
        assert!(before.is_subset(&after), "a held connection was replaced");
    }
    let rows = step_rows(logs.path());
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        let size = 100 * (i as u64 + 1);
        assert_eq!(number(row, "held"), size, "{row:?}");
        assert_eq!(number(row, "held_opened"), 100, "{row:?}");
        assert_eq!(number(row, "held_reopened"), 0, "{row:?}");
        assert_eq!(number(row, "held_dropped"), 0, "{row:?}");
        assert_eq!(number(row, "failed"), 0, "{row:?}");
        // Every held connection sent its first query, and the older ones queried again.
        assert!(number(row, "ok") > size, "{row:?}");
        assert!(float(row, "client_kib_per_held") > 0.0, "{row:?}");
        assert!(number(row, "server_backends") > size, "{row:?}");
    }
    let stdout = text(&output.stdout);
    assert!(stdout.contains("no breaking point"), "{stdout}");
    assert!(
        stdout.contains("held 300 (opened 100, 0 reopened, 0 dropped)"),
        "{stdout}"
    );
}

#[test]
fn a_dropped_held_connection_is_counted_and_its_replacement_too() {
    let server = start_server(&[]);
    let dsn = server.dsn();
    let run_dsn = with_app(&dsn);
    let logs = tempfile::tempdir().unwrap();
    let args = hold_args(
        &run_dsn,
        &[
            "--steps",
            "2",
            "--step",
            "20",
            "--duration",
            "4s",
            "--no-stop",
        ],
    );
    let run = spawn_pgstress(logs.path(), &args);
    let mut watcher = client(&dsn);
    let backends = wait_for_backends(&mut watcher, 20, Duration::from_secs(60));
    assert_eq!(backends.len(), 20);
    // Five of step 1's sessions terminated by the server while it holds them.
    let victims: Vec<i32> = backends.keys().take(5).copied().collect();
    for pid in &victims {
        watcher
            .execute("SELECT pg_terminate_backend($1)", &[pid])
            .unwrap();
    }
    let output = finish_run(run);
    let rows = step_rows(logs.path());
    assert_eq!(rows.len(), 2, "{}", output_text(&output));
    let dropped: u64 = rows.iter().map(|r| number(r, "held_dropped")).sum();
    assert_eq!(dropped, 5, "{rows:?}");
    // Step 2 opened its 20 and the 5 that dropped, each counted as reopened.
    assert_eq!(number(&rows[1], "held_opened"), 25, "{:?}", rows[1]);
    assert_eq!(number(&rows[1], "held_reopened"), 5, "{:?}", rows[1]);
    assert_eq!(number(&rows[1], "held"), 40, "{:?}", rows[1]);
    // Their backends see the sockets close with the process, and end soon after.
    let pids: BTreeSet<i32> = wait_for_backends(&mut watcher, 0, Duration::from_secs(10))
        .into_keys()
        .collect();
    assert!(
        pids.is_empty(),
        "the run's connections closed with it: {pids:?}"
    );
}

#[test]
fn a_poolers_max_client_conn_refusals_are_the_poolers_not_the_servers() {
    let server = start_server(&[]);
    let settings: Vec<(String, String)> = [("pool_mode", "transaction"), ("max_client_conn", "60")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let pooler = ThrowawayPooler::start(&server.target(), &settings).expect("start pgbouncer");
    let run_dsn = pooler.dsn();
    let logs = tempfile::tempdir().unwrap();
    let args = hold_args(
        &run_dsn,
        &[
            "--steps",
            "2",
            "--step",
            "40",
            "--duration",
            "2s",
            "--no-stop",
        ],
    );
    let output = pgstress_run(logs.path()).args(&args).output().unwrap();
    let rows = step_rows(logs.path());
    assert_eq!(rows.len(), 2, "{}", output_text(&output));
    assert_eq!(number(&rows[0], "failed"), 0, "{:?}", rows[0]);
    let refused = number(&rows[1], "pooler_too_many_clients");
    // At most 60 clients: step 2's 80 cannot all be let in.
    assert!(refused >= 20, "{:?}", rows[1]);
    assert_eq!(number(&rows[1], "too_many_clients"), 0, "{:?}", rows[1]);
    assert_eq!(number(&rows[1], "server_failed"), 0, "{:?}", rows[1]);
    assert_eq!(number(&rows[1], "held") + refused, 80, "{:?}", rows[1]);
    let stdout = text(&output.stdout);
    assert!(
        !stdout.contains("breaking point: 80"),
        "the server is not blamed for the pooler's limit: {stdout}"
    );
}

#[test]
fn source_addresses_each_carry_their_share_of_the_held_connections() {
    let server = start_server(&[]);
    let dsn = server.dsn();
    let run_dsn = with_app(&dsn);
    let logs = tempfile::tempdir().unwrap();
    let args = hold_args(
        &run_dsn,
        &[
            "--steps",
            "1",
            "--step",
            "30",
            "--duration",
            "3s",
            "--source-address",
            "127.0.0.2,127.0.0.3",
            "--source-address",
            "127.0.0.4",
        ],
    );
    let run = spawn_pgstress(logs.path(), &args);
    let mut watcher = client(&dsn);
    let backends = wait_for_backends(&mut watcher, 30, Duration::from_secs(60));
    let output = finish_run(run);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    let mut by_address: BTreeMap<&str, usize> = BTreeMap::new();
    for address in backends.values() {
        *by_address.entry(address.as_str()).or_default() += 1;
    }
    let expected = BTreeMap::from([("127.0.0.2", 10), ("127.0.0.3", 10), ("127.0.0.4", 10)]);
    assert_eq!(by_address, expected);
}

#[test]
fn source_addresses_need_the_lean_client_and_every_a_span() {
    let logs = tempfile::tempdir().unwrap();
    let refused = |args: &[&str]| {
        let output = pgstress_run(logs.path()).args(args).output().unwrap();
        assert_ne!(output.status.code(), Some(0));
        one_line_error(&output.stderr)
    };
    let error = refused(&["--client", "postgres", "--source-address", "127.0.0.2"]);
    assert!(
        error.contains("--source-address") && error.contains("lean"),
        "{error}"
    );
    let error = refused(&["--mode", "hold", "--every", "0s"]);
    assert!(error.contains("--every"), "{error}");
    let error = refused(&["--mode", "pool", "--every", "1s"]);
    assert!(error.contains("--mode hold"), "{error}");
}
