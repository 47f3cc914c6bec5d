//! The server's side from SQL alone, against a real cluster pgstress cannot see: the server
//! also listens on the near end of a veth pair the test makes itself (an address no other
//! host can reach), and the runs reach it there. A target that is not loopback is not looked
//! for among this machine's processes (`ConnectTarget::is_loopback`, app/preflight.rs), so
//! pgstress judges it as it would a server on another machine: no direct CPU, only what
//! `pg_stat_activity` and `pg_stat_database` show.

mod common;

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use pgstress::pg::local::server::ThrowawayServer;

/// The test's own veth pair: its near end's address, reachable from this machine only.
const VETH_ADDRESS: &str = "10.231.7.1";

/// The veth pair's name, this test binary's own.
fn veth_name() -> String {
    format!("pgs{}", std::process::id() % 1_000_000)
}

/// Makes the veth pair (as root) and returns its near end's address; None when it cannot.
fn own_address() -> Option<String> {
    common::netns::make_veth(&veth_name(), &format!("{VETH_ADDRESS}/30"))
        .then(|| VETH_ADDRESS.to_owned())
}

/// Removes the veth pair.
fn remove_veth() {
    common::netns::remove_veth(&veth_name());
}

/// The server as a remote one: its DSN through this machine's own address.
struct Remote {
    server: ThrowawayServer,
    dsn: String,
}

/// This test binary's cluster, listening on loopback and on `address`, which its pg_hba.conf
/// lets in with the same password.
fn start_remote(address: &str) -> Remote {
    let listen = format!("127.0.0.1,{address}");
    let server = start_server(&[("listen_addresses", &listen)]);
    let hba = server.folder().join("data").join("pg_hba.conf");
    let mut rules = std::fs::read_to_string(&hba).unwrap();
    rules.push_str(&format!("host all all {address}/32 scram-sha-256\n"));
    std::fs::write(&hba, rules).unwrap();
    let mut local = server
        .target()
        .connect(Duration::from_secs(10), "pgstress-test")
        .unwrap();
    local.simple_query("SELECT pg_reload_conf()").unwrap();
    let dsn = server
        .dsn()
        .replace("host=127.0.0.1", &format!("host={address}"));
    let give_up = Instant::now() + Duration::from_secs(20);
    while postgres::Client::connect(&dsn, postgres::NoTls).is_err() {
        assert!(Instant::now() < give_up, "{dsn} never let the test in");
        std::thread::sleep(Duration::from_millis(50));
    }
    Remote { server, dsn }
}

/// The remote server's DSN, held by one test at a time: every client's sessions count in the
/// server's active sessions, so a test's load would show in another's.
fn remote() -> Option<(MutexGuard<'static, ()>, String)> {
    static LOCK: Mutex<()> = Mutex::new(());
    static REMOTE: OnceLock<Option<Mutex<Option<Remote>>>> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let slot = REMOTE.get_or_init(|| {
        extern "C" fn stop() {
            if let Some(Some(slot)) = REMOTE.get()
                && let Some(remote) = slot.lock().unwrap_or_else(|e| e.into_inner()).take()
            {
                remote.server.stop();
            }
            remove_veth();
        }
        remove_veth();
        let address = own_address()?;
        unsafe { libc::atexit(stop) };
        Some(Mutex::new(Some(start_remote(&address))))
    });
    if !prerequisite(
        slot.is_some(),
        "a veth pair of the test's own (root and iproute2's ip)",
    ) {
        return None;
    }
    let dsn = slot.as_ref()?.lock().unwrap().as_ref()?.dsn.clone();
    Some((guard, dsn))
}

/// A run against `dsn` that must succeed: its stdout, steps and summary.
fn run(logs: &std::path::Path, dsn: &str, args: &[&str]) -> (String, Vec<Row>, serde_json::Value) {
    let output = pgstress_run(logs)
        .args(["--dsn", dsn, "--quiet"])
        .args(args)
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    (text(&output.stdout), step_rows(logs), summary(logs))
}

/// `SELECT count(*)` over a stream of `n` numbers: CPU only. (`FROM generate_series(...)`
/// would first store them all, and past work_mem write them to a temporary file: IO waits.)
fn count_to(n: u64) -> String {
    format!("SELECT count(*) FROM (SELECT generate_series(1, {n})) AS numbers")
}

/// The count that keeps one backend busy about `seconds` on this machine now, from the
/// time of a smaller one.
fn count_lasting(dsn: &str, seconds: f64) -> u64 {
    let mut client = postgres::Client::connect(dsn, postgres::NoTls).unwrap();
    let probe = 2_000_000;
    client.simple_query(&count_to(probe)).unwrap();
    let started = Instant::now();
    client.simple_query(&count_to(probe)).unwrap();
    let per_number = started.elapsed().as_secs_f64() / probe as f64;
    (seconds / per_number) as u64
}

#[test]
fn a_cpu_heavy_query_fills_the_servers_cores_by_the_sampled_estimate() {
    let Some((_guard, dsn)) = remote() else {
        return;
    };
    // Four requests each busy on a CPU for about 2 s alone, against a server of one core.
    let query = count_to(count_lasting(&dsn, 2.0));
    let logs = tempfile::tempdir().unwrap();
    let args = [
        "--query",
        &query,
        "--steps",
        "1",
        "--step",
        "4",
        "--timeout",
        "300s",
    ];
    let (stdout, rows, summary) = run(
        logs.path(),
        &dsn,
        &[&args[..], &["--server-cores", "1"]].concat(),
    );
    assert!(
        stdout.contains("source:  server side sql-estimate: its CPU is not seen from here")
            && stdout.contains("judged against its 1 CPU (--server-cores)"),
        "{stdout}"
    );
    let row = &rows[0];
    assert_eq!(row["ok"], "4", "{row:?}");
    assert_eq!(row["server_source"], "sql-estimate", "{row:?}");
    assert_eq!(float(row, "server_cores"), 1.0);
    assert_eq!(row["server_cpu_mean"], "", "no direct measurement: {row:?}");
    let on_cpu = float(row, "server_aas_cpu");
    assert!(on_cpu >= 1.0, "AAS on CPU {on_cpu}: {row:?}");
    assert!(float(row, "server_cpu_own_mean") >= 100.0, "{row:?}");
    assert!(row["server_wait_events"].starts_with("CPU "), "{row:?}");
    assert!(row["flags"].contains("server-saturated"), "{row:?}");
    let verdict = summary["verdict_text"].to_string();
    assert!(
        verdict.contains("filled")
            && verdict.contains("the server's sessions on CPU averaged")
            && verdict.contains("the sampled estimate from pg_stat_activity"),
        "{verdict}"
    );
    assert_eq!(summary["server_source"], "sql-estimate");
    assert_eq!(summary["cpus"]["server_cores"], 1.0);
    assert_eq!(summary["steps"][0]["server_source"], "sql-estimate");
    // The report: each step's source, the estimate's rule, and its line on the CPU chart.
    let html = std::fs::read_to_string(log_file(logs.path(), "_report.html")).unwrap();
    assert!(
        html.contains("<td class=\"text\">sql-estimate</td>")
            && html.contains("90% CPU mean over the step, of each side&#39;s own CPUs")
            && html.contains("its sessions on CPU reaching its cores"),
        "{html}"
    );
    let chart = std::fs::read_to_string(log_file(logs.path(), "_cpu.svg")).unwrap();
    assert!(
        chart.contains("server est. mean") && chart.contains("100% est. saturation"),
        "{chart}"
    );
}

#[test]
fn sleeping_sessions_wait_in_timeout_not_on_cpu() {
    let Some((_guard, dsn)) = remote() else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let args = [
        "--query",
        "SELECT pg_sleep(2)",
        "--steps",
        "1",
        "--step",
        "4",
        "--server-cores",
        "1",
    ];
    let (_, rows, summary) = run(logs.path(), &dsn, &args);
    let row = &rows[0];
    assert_eq!(row["server_source"], "sql-estimate", "{row:?}");
    let (asleep, on_cpu) = (
        float(row, "server_aas_timeout"),
        float(row, "server_aas_cpu"),
    );
    assert!(asleep >= 2.0, "AAS in Timeout {asleep}: {row:?}");
    assert!(on_cpu < 0.5, "AAS on CPU {on_cpu}: {row:?}");
    assert!(
        row["server_wait_events"].starts_with("Timeout:PgSleep "),
        "{row:?}"
    );
    assert!(number(row, "server_aas_peak") >= 4, "{row:?}");
    assert!(!row["flags"].contains("server-saturated"), "{row:?}");
    let verdict = summary["verdict_text"].to_string();
    assert!(verdict.contains("neither side's filled"), "{verdict}");
}

#[test]
fn the_servers_own_counters_carry_at_least_what_pgstress_counted() {
    let Some((_guard, dsn)) = remote() else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    // No --server-cores: the sessions are logged, not judged.
    let (stdout, rows, _) = run(logs.path(), &dsn, &["--steps", "3", "--step", "10"]);
    assert!(
        stdout.contains("not judged: give --server-cores"),
        "{stdout}"
    );
    for row in &rows {
        let ok = number(row, "ok");
        assert_eq!(ok, number(row, "requests"), "{row:?}");
        // A connection per request: its start-up transaction and its query's, and its session.
        assert!(number(row, "server_xact_commit") >= ok, "{row:?}");
        assert!(number(row, "server_sessions") >= ok, "{row:?}");
        assert_eq!(row["server_xact_rollback"], "0", "{row:?}");
        assert_eq!(row["server_deadlocks"], "0", "{row:?}");
        assert_eq!(row["server_sessions_fatal"], "0", "{row:?}");
        assert_eq!(row["server_source"], "sql-estimate", "{row:?}");
        assert_eq!(row["server_cores"], "", "{row:?}");
        assert_eq!(row["server_cpu_own_mean"], "", "{row:?}");
        assert!(!row["flags"].contains("server-saturated"), "{row:?}");
    }
}

#[test]
fn a_local_server_is_measured_and_never_called_an_estimate() {
    let Some((_guard, remote_dsn)) = remote() else {
        return;
    };
    // The same server through loopback: its processes are found, its CPU measured.
    let dsn = remote_dsn.replace(&format!("host={VETH_ADDRESS}"), "host=127.0.0.1");
    let logs = tempfile::tempdir().unwrap();
    let args = [
        "--query",
        "SELECT pg_sleep(0.5)",
        "--steps",
        "1",
        "--step",
        "3",
        "--server-cores",
        "64",
        "--no-report",
    ];
    let (stdout, rows, summary) = run(logs.path(), &dsn, &args);
    assert!(
        stdout.contains("--server-cores 64 left unused: the server runs on this machine"),
        "{stdout}"
    );
    assert!(stdout.contains("source:  server side local:"), "{stdout}");
    let row = &rows[0];
    assert_eq!(row["server_source"], "local", "{row:?}");
    assert!(!row["server_cpu_own_mean"].is_empty(), "{row:?}");
    assert!(float(row, "server_cores") < 64.0, "its own CPUs: {row:?}");
    assert!(float(row, "server_aas_timeout") >= 1.0, "{row:?}");
    let verdict = summary["verdict_text"].to_string();
    assert!(!verdict.contains("estimate"), "{verdict}");
    assert_eq!(summary["server_source"], "local");
}
