//! Each side on its own CPUs, against real clusters: the throwaway server's postmaster (and so
//! every backend) is pinned, the run says which CPUs each side had, and pgstress sharing its
//! one CPU with a busy loop is flagged `client-saturated`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use pgstress::pg::local::server::ThrowawayServer;
use pgstress::sys::affinity;

fn two_cpus() -> bool {
    prerequisite(
        affinity::available().len() >= 2,
        "pinning the sides apart needs two CPUs",
    )
}

#[test]
fn the_postmaster_and_its_backends_run_on_the_cpus_given() {
    if !two_cpus() {
        return;
    }
    let server_cpu = *affinity::available().last().unwrap();
    let server = ThrowawayServer::start_on(&[], Some(&[server_cpu])).unwrap();
    assert_eq!(
        affinity::allowed_of(server.postmaster_pid()),
        Some(vec![server_cpu])
    );
    let mut client = server
        .target()
        .connect(Duration::from_secs(10), "pgstress-test")
        .unwrap();
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_eq!(affinity::allowed_of(backend as u32), Some(vec![server_cpu]));
    // A restart keeps the pinning.
    let mut server = server;
    server.restart().unwrap();
    assert_eq!(
        affinity::allowed_of(server.postmaster_pid()),
        Some(vec![server_cpu])
    );
    server.stop();
}

#[test]
fn a_default_run_pins_the_sides_apart_and_says_so() {
    if !two_cpus() {
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--steps", "2", "--step", "10", "--no-report", "--quiet"])
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("pinned apart"), "{stdout}");
    assert!(stdout.contains("CPUs: "), "{stdout}");
    assert!(!stdout.contains("shared CPUs"), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(log_file(logs.path(), "_summary.json")).unwrap(),
    )
    .unwrap();
    let cpus = &summary["cpus"];
    assert_eq!(cpus["pinned"], true, "{cpus}");
    assert_eq!(cpus["shared"], false, "{cpus}");
    assert_eq!(cpus["server_cores"], 1.0, "{cpus}");
    for row in read_csv_with_header(&log_file(logs.path(), "_steps.csv")) {
        for column in ["process_cpu_mean", "server_cpu_mean", "client_cpu_wait_ms"] {
            assert!(!row[column].is_empty(), "{column} empty: {row:?}");
        }
    }
}

#[test]
fn no_pin_shares_the_cpus_and_says_so() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--no-pin",
            "--steps",
            "1",
            "--step",
            "5",
            "--no-report",
            "--quiet",
        ])
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("share CPUs"), "{stdout}");
    assert!(stdout.contains("shared CPUs"), "{stdout}");
}

/// A step of 1 s from pgstress pinned to one CPU beside a busy loop spinning on it: four pool
/// workers running short lookups back to back, so that every CPU taken from them shows in
/// their wait (docs/verdict.md: 0.55 to 1.12 of their requests' time), over a step long
/// enough to judge by construction. Its rows and what it printed.
fn pool_beside_a_busy_loop(more: &[&str]) -> (Vec<Row>, String) {
    let dsn = shared_dsn();
    let cpu = affinity::available()[0];
    let _busy = BusyLoop::on_cpu(cpu);
    let logs = tempfile::tempdir().unwrap();
    let output = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(assert_cmd::cargo::cargo_bin("pgstress"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DATABASE_URL")
        .env_remove("PGHOST")
        .args(["run", "--dsn", &dsn, "--logs"])
        .arg(logs.path())
        .args(["--mode", "pool", "--workers", "4", "--duration", "1s"])
        .args(["--steps", "1", "--step", "4", "--no-report"])
        .args(more)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    (rows, output_text(&output))
}

#[test]
fn pgstress_sharing_its_cpu_with_a_busy_loop_is_client_saturated() {
    let (rows, _) = pool_beside_a_busy_loop(&[]);
    assert!(float(&rows[0], "wall_s") >= 1.0, "{:?}", rows[0]);
    assert!(
        rows[0]["flags"].contains("client-saturated"),
        "wait share {}: {:?}",
        rows[0]["client_cpu_wait_share"],
        rows[0]
    );
}

#[test]
fn a_step_too_short_to_judge_raises_no_cpu_flag_however_full_its_cpu() {
    // The step of the test above, whose CPU a busy loop fills: there it is client-saturated.
    // Sampled every 60 s, its second is shorter than the run's resolution on the CPU, by
    // construction: its figures are logged, and judged on neither side.
    let (rows, stdout) = pool_beside_a_busy_loop(&["--sample-every", "60s"]);
    let step = &rows[0];
    assert!(float(step, "wall_s") < 60.0, "{step:?}");
    assert!(!step["client_cpu_wait_share"].is_empty(), "{step:?}");
    assert!(!step["process_cpu_mean"].is_empty(), "{step:?}");
    assert!(step["flags"].contains("too-short-to-judge"), "{step:?}");
    for flag in ["client-saturated", "server-saturated", "pooler-saturated"] {
        assert!(!step["flags"].contains(flag), "{flag}: {step:?}");
    }
    assert!(
        stdout.contains("CPUs: not judged: every step lasted under 1m"),
        "{stdout}"
    );
    assert!(!stdout.contains("client was saturated"), "{stdout}");
    assert!(!stdout.contains("may have measured the client"), "{stdout}");
}

#[test]
fn pool_steps_shorter_than_a_sampling_interval_still_see_the_servers_cpu() {
    // Sampling every 60 s, each pool step of 200 short lookups ends long before a second
    // sample: its means come from counters read at the step's release and end, and it has
    // no peak (a peak is never one sample presented as a peak).
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--mode", "pool", "--workers", "4"])
        .args(["--steps", "3", "--step", "200", "--sample-every", "60s"])
        .args(["--no-report", "--quiet"])
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in &rows {
        let value = |column: &str| -> f64 {
            row[column]
                .parse()
                .unwrap_or_else(|_| panic!("{column}: {row:?}"))
        };
        assert!(value("wall_s") < 60.0, "the setup failed: {row:?}");
        assert!(value("server_cpu_mean") > 0.0, "{row:?}");
        assert!(
            value("process_cpu_mean") <= value("host_cpu_mean"),
            "pgstress above the host: {row:?}"
        );
        assert!(row["server_cpu_peak"].is_empty(), "{row:?}");
        assert!(row["host_cpu_peak"].is_empty(), "{row:?}");
    }
}
