//! Several PgBouncer processes on one port (`--pooler-processes`, `so_reuseport`): each takes
//! connections, each is stopped and its folder removed after the run, each runs with the
//! descriptor limit its max_client_conn needs, and `pooler-saturated` names the process whose
//! core is full.

mod common;

use std::path::Path;

use common::pooler::*;
use common::*;
use pgstress::pg::local::pooler::{PoolerPlan, ThrowawayPooler};

fn two_processes<'a>(settings: &'a [(String, String)], largest: Option<u32>) -> PoolerPlan<'a> {
    PoolerPlan {
        settings,
        processes: 2,
        largest_step: largest,
    }
}

/// One process's transactions so far, from its own console on its own unix socket.
fn transactions(pooler: &ThrowawayPooler, index: usize) -> u64 {
    let mut console = pooler
        .process_console(index)
        .connect(std::time::Duration::from_secs(10), "pgstress-test")
        .expect("the process's console");
    let rows = console.simple_query("SHOW STATS").unwrap();
    rows.iter()
        .filter_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => {
                row.get("total_xact_count")?.parse::<u64>().ok()
            }
            _ => None,
        })
        .sum()
}

/// A process's open-file limit, from /proc/PID/limits.
fn open_files_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// No process's command line names `folder` (PgBouncer runs with its ini file inside it).
#[test]
fn both_processes_take_connections_with_their_own_limits_and_are_gone_after_stop() {
    let server = start_server(&[]);
    let transaction = settings(&[("pool_mode", "transaction")]);
    // Sized for a step of 3,000: each process holds its share and a quarter more.
    let pooler = ThrowawayPooler::start_planned(
        &server.target(),
        two_processes(&transaction, Some(3000)),
        None,
    )
    .expect("start two pgbouncer processes");
    let pids = pooler.pids();
    assert_eq!(pids.len(), 2);
    assert!(
        pooler.description().contains("max_client_conn=1907")
            && pooler.description().contains("2 processes"),
        "{}",
        pooler.description()
    );
    for pid in &pids {
        assert!(
            open_files_limit(*pid) >= 1907 + 20 + 64,
            "pid {pid} may open {} files",
            open_files_limit(*pid)
        );
    }
    let logs = tempfile::tempdir().unwrap();
    // 40 connections, each kept by its worker: the kernel hashes each to one process, and
    // all 40 landing on one would be a 1 in 2^39 chance.
    let output = pgstress_run(logs.path())
        .args(["--dsn", &pooler.dsn(), "--query", "SELECT 1"])
        .args([
            "--mode",
            "pool",
            "--workers",
            "40",
            "--steps",
            "1",
            "--step",
            "200",
        ])
        .args(["--timeout", "60s", "--no-report", "--quiet"])
        .output()
        .unwrap();
    let stdout = output_text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert_eq!(number(&step_rows(logs.path())[0], "ok"), 200, "{stdout}");
    assert!(
        stdout.contains("its CPU sampled (2 processes"),
        "pgstress finds both listeners on the port: {stdout}"
    );
    let each = [transactions(&pooler, 0), transactions(&pooler, 1)];
    assert!(
        each.iter().all(|&n| n > 0),
        "transactions per process: {each:?}"
    );
    assert!(each.iter().sum::<u64>() >= 200, "{each:?}");
    let folders: Vec<std::path::PathBuf> =
        pooler.folders().iter().map(|f| f.to_path_buf()).collect();
    assert_eq!(folders.len(), 2);
    assert_ne!(folders[0], folders[1], "each process has its own folder");
    pooler.stop();
    for (pid, folder) in pids.iter().zip(&folders) {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still runs"
        );
        assert!(!folder.exists(), "{} is still there", folder.display());
    }
}

#[test]
fn a_run_with_two_processes_removes_both_and_counts_both_client_limits() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--pooler", "pgbouncer", "--pooler-processes", "2"])
        .args(["--pooler-setting", "pool_mode=transaction"])
        .args([
            "--mode",
            "pool",
            "--workers",
            "8",
            "--steps",
            "2",
            "--step",
            "20",
        ])
        .args(["--timeout", "60s", "--no-report", "--quiet"])
        .output()
        .unwrap();
    let stdout = output_text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("2 processes"), "{stdout}");
    // Each process's max_client_conn, from one console, counted twice.
    assert!(
        stdout
            .contains("its client limit: 200 at once (max_client_conn 100 in each of 2 processes)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("throwaway pooler stopped and removed"),
        "{stdout}"
    );
    let folders = pooler_folders(&stdout);
    assert_eq!(folders.len(), 2, "{stdout}");
    for folder in &folders {
        assert_pooler_gone(folder);
    }
}

fn pin(pid: u32, cpu: usize) {
    let set = pgstress::sys::affinity::cpu_set(&[cpu]).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid as i32), &set).unwrap();
}

#[test]
fn pooler_saturated_names_the_process_whose_core_a_busy_loop_shares() {
    // By construction: process 2 is pinned to a CPU a busy loop of the test's own fills, so
    // while its handshakes last its thread is always runnable. Process 1 is pinned to another
    // CPU at the highest priority (nice -20), so that whatever else runs there (a shared
    // machine's other work) it hardly waits: it does the same share of the handshakes on
    // about a whole CPU, in about half the time process 2 takes on half of one.
    let cpus = pgstress::sys::affinity::available();
    if !prerequisite(cpus.len() >= 2, "two CPUs, one for each PgBouncer process") {
        return;
    }
    let (free, busy) = (cpus[0], *cpus.last().unwrap());
    let _busy = BusyLoop::on_cpu(busy);
    let server = start_server(&[]);
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = slow_handshake_certificate(certs.path());
    let tls = settings(&[
        ("client_tls_sslmode", "allow"),
        ("client_tls_cert_file", &cert),
        ("client_tls_key_file", &key),
        ("max_client_conn", "600"),
    ]);
    let pooler = ThrowawayPooler::start_planned(&server.target(), two_processes(&tls, None), None)
        .expect("start two pgbouncer processes");
    let pids = pooler.pids();
    pin(pids[0], free);
    pin(pids[1], busy);
    // SAFETY: setpriority on a process of this test's; it reads and writes no memory.
    let niced = unsafe { libc::setpriority(libc::PRIO_PROCESS, pids[0], -20) };
    assert_eq!(niced, 0, "{}", std::io::Error::last_os_error());
    let dsn = pooler.dsn().replace("sslmode=disable", "sslmode=require");
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--dsn", &dsn, "--query", "SELECT 1", "--steps", "1", "--step", "400",
        ])
        .args(["--timeout", "60s", "--no-report", "--quiet"])
        .output()
        .unwrap();
    let stdout = output_text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let row = &step_rows(logs.path())[0];
    assert_eq!(number(row, "ok"), 400, "{row:?}");
    assert!(
        row["flags"].contains("pooler-saturated"),
        "{row:?}\n{stdout}"
    );
    let each = format!("pooler processes: 1 (pid {}) core", pids[0]);
    assert!(stdout.contains(&each), "each process's core: {stdout}");
    let second = stdout.split(&format!("2 (pid {}) core", pids[1])).nth(1);
    assert!(
        second.is_some_and(|rest| rest.lines().next().unwrap().ends_with(", full")),
        "{stdout}"
    );
    let named = format!("PgBouncer process 2 of 2 (pid {}): a full core", pids[1]);
    assert!(stdout.contains(&named), "{named}\n{stdout}");
    let summary = summary(logs.path());
    assert_eq!(
        summary["verdict"]["limit"]["process"],
        format!("process 2 of 2 (pid {})", pids[1]),
        "{summary}"
    );
}

#[test]
fn sigkill_mid_step_still_removes_every_process_and_folder() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let logs = tempfile::tempdir().unwrap();
    let mut child = run_command(logs.path())
        .args(["--pooler", "pgbouncer", "--pooler-processes", "2"])
        .args([
            "--query",
            "SELECT pg_sleep(5)",
            "--steps",
            "2",
            "--step",
            "4",
        ])
        .args(["--no-report", "--quiet"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Step 1 holds its connections in pg_sleep for 5 s: the kill lands in the step.
    let deadline = Instant::now() + RUN_DEADLINE;
    while !std::fs::read_dir(logs.path())
        .unwrap()
        .flatten()
        .any(|e| e.path().to_string_lossy().ends_with("_steps.csv"))
    {
        assert!(Instant::now() < deadline, "the run never started its steps");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let folders = pooler_folders(&stdout);
    assert_eq!(folders.len(), 2, "{stdout}");
    // Each process's watchdog wakes when pgstress's end of its pipe closes.
    let deadline = Instant::now() + Duration::from_secs(60);
    for folder in &folders {
        while folder.exists() || !no_process_mentions(folder) {
            assert!(
                Instant::now() < deadline,
                "{} or its pgbouncer outlived pgstress",
                folder.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
