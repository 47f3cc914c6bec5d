//! Shared helpers: one throwaway PostgreSQL cluster per test binary, and readers for the logs.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use assert_cmd::Command;
use pgstress::pg::local::server::ThrowawayServer;

pub mod netns;
pub mod pooler;
mod slow_door;
#[allow(unused_imports)] // each test binary uses its own subset
pub use slow_door::slow_door;

static SERVER: Mutex<Option<ThrowawayServer>> = Mutex::new(None);

extern "C" fn stop_shared_server() {
    if let Some(server) = SERVER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        server.stop();
    }
}

/// The DSN of this test binary's cluster (started on first use, seeded with the demo table,
/// stopped and removed when the test binary exits).
pub fn shared_dsn() -> String {
    static DSN: OnceLock<String> = OnceLock::new();
    DSN.get_or_init(|| {
        let server = start_server(&[]);
        let dsn = server.dsn();
        *SERVER.lock().unwrap() = Some(server);
        // The test harness ends with exit(), which runs atexit handlers but no destructors.
        unsafe { libc::atexit(stop_shared_server) };
        dsn
    })
    .clone()
}

/// A cluster of this test's own (for tests that change or break the server), seeded.
pub fn start_server(settings: &[(&str, &str)]) -> ThrowawayServer {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let server = ThrowawayServer::start(&settings).unwrap_or_else(|err| {
        panic!("cannot start a throwaway PostgreSQL cluster (the tests need the server binaries: apt-get install postgresql): {err}")
    });
    let mut client = server
        .target()
        .connect(Duration::from_secs(10), "pgstress-test")
        .unwrap();
    pgstress::pg::local::demo::seed(&mut client, pgstress::pg::local::demo::DEFAULT_ROWS).unwrap();
    server
}

/// The variables that name a target (any libpq connection variable does), cleared for the
/// child processes that should not see the developer's own.
pub const TARGET_VARS: [&str; 16] = [
    "DATABASE_URL",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGDATABASE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGCONNECT_TIMEOUT",
];

/// `pgstress run` from the repo's root (so the default `data/` folder is the demo data),
/// writing into the given logs folder, with no target from the environment.
pub fn pgstress_run(logs: &Path) -> Command {
    Command::from_std(run_command(logs))
}

/// The same command as a plain process, for a run a test spawns, signals or limits.
pub fn run_command(logs: &Path) -> std::process::Command {
    let mut cmd = pgstress();
    cmd.arg("run").arg("--logs").arg(logs);
    cmd
}

/// pgstress with no subcommand yet, from the repo's root, with no target from the environment.
pub fn pgstress() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgstress"));
    for var in TARGET_VARS {
        cmd.env_remove(var);
    }
    // Under GitHub Actions the runs of the tests stay out of the job's own step summary.
    cmd.env_remove("GITHUB_STEP_SUMMARY");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// A `pgstress run` that must succeed; its stdout (both streams in the message if it fails).
pub fn run_ok(logs: &Path, args: &[&str]) -> String {
    let output = pgstress_run(logs).args(args).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    text(&output.stdout)
}

/// What a process wrote to one stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything a process said: its stdout, then its stderr.
pub fn output_text(output: &Output) -> String {
    format!("{}\n{}", text(&output.stdout), text(&output.stderr))
}

/// A data folder holding one file.
pub fn data_folder(name: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    dir
}

/// Waits until a run logging into `logs` has logged `steps` steps, failing past `deadline`.
pub fn wait_for_steps(logs: &Path, steps: usize, deadline: Duration) {
    let give_up = std::time::Instant::now() + deadline;
    loop {
        let logged = std::fs::read_dir(logs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("_log.csv"))
            .map_or(0, |p| std::fs::read_to_string(p).unwrap().lines().count());
        if logged >= steps {
            return;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the run never logged {steps} steps"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The one file in `dir` whose name ends with `suffix`.
pub fn log_file(dir: &Path, suffix: &str) -> PathBuf {
    let matches: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().ends_with(suffix))
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "expected one *{suffix} in {}: {matches:?}",
        dir.display()
    );
    matches.into_iter().next().unwrap()
}

/// A CSV row as a map from header to value.
pub type Row = std::collections::HashMap<String, String>;

/// The rows of a CSV file as maps from header to value.
pub fn read_csv_with_header(path: &Path) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

pub fn read_csv_without_header(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap();
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The run's steps, one row each, from its `_steps.csv`.
pub fn step_rows(logs: &Path) -> Vec<Row> {
    read_csv_with_header(&log_file(logs, "_steps.csv"))
}

/// The run's `_summary.json`.
pub fn summary(logs: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(log_file(logs, "_summary.json")).unwrap())
        .unwrap()
}

pub fn number(row: &Row, column: &str) -> u64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("column {column} = {:?}", row[column]))
}

pub fn float(row: &Row, column: &str) -> f64 {
    row[column].parse().unwrap_or_else(|_| {
        panic!(
            "column {column} = {:?} is not a number in {row:?}",
            row[column]
        )
    })
}

/// stderr of a failed command: exactly one line, starting with "Error:".
pub fn one_line_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).trim().to_owned();
    assert_eq!(
        text.lines().count(),
        1,
        "expected a one-line error, got:\n{text}"
    );
    assert!(text.starts_with("Error: "), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

/// A usage error: its one line, and clap's tip on a second line when clap had one.
pub fn usage_error(stderr: &[u8]) -> (String, Option<String>) {
    let text = String::from_utf8_lossy(stderr).trim().to_owned();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    let tip = lines.next().map(str::to_owned);
    assert_eq!(lines.next(), None, "at most two lines, got:\n{text}");
    assert!(first.starts_with("Error: "), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    if let Some(tip) = &tip {
        assert!(tip.starts_with("  tip: "), "{text}");
    }
    (first, tip)
}

/// This test binary's cluster that accepts 20 connections (17 for pgstress), seeded; started
/// on first use. Tests that use it run one at a time (they hold the guard), since each counts
/// on having its connections to itself.
pub fn small_server() -> (MutexGuard<'static, ()>, String) {
    static LOCK: Mutex<()> = Mutex::new(());
    static SMALL: OnceLock<Mutex<Option<ThrowawayServer>>> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let slot = SMALL.get_or_init(|| {
        extern "C" fn stop() {
            if let Some(slot) = SMALL.get()
                && let Some(server) = slot.lock().unwrap_or_else(|e| e.into_inner()).take()
            {
                server.stop();
            }
        }
        unsafe { libc::atexit(stop) };
        Mutex::new(Some(start_server(&[("max_connections", "20")])))
    });
    let dsn = slot.lock().unwrap().as_ref().unwrap().dsn();
    (guard, dsn)
}

/// Whether a test's prerequisite holds. When it does not, under `CI=true` the test fails (CI
/// installs every prerequisite, so a missing one is CI's fault, never a pass); elsewhere it
/// says it skipped and the caller returns.
pub fn prerequisite(holds: bool, what: &str) -> bool {
    if holds {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "missing prerequisite under CI=true: {what}"
    );
    eprintln!("skipped: {what}");
    false
}

/// A shell spinning on one CPU, killed (and reaped) however the test ends: whatever else is
/// pinned to that CPU gets about half of it and waits for it the rest of the time.
pub struct BusyLoop(std::process::Child);

impl BusyLoop {
    pub fn on_cpu(cpu: usize) -> Self {
        let child = std::process::Command::new("taskset")
            .args(["-c", &cpu.to_string(), "sh", "-c", "while :; do :; done"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("taskset (util-linux) and sh");
        BusyLoop(child)
    }
}

impl Drop for BusyLoop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every run a test waits for ends well within this; past it the test fails instead of hanging.
pub const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// `pgstress run` started in the background, its output captured.
pub fn spawn_pgstress(logs: &Path, args: &[&str]) -> std::process::Child {
    run_command(logs)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// A background run's output, killed and failed past `RUN_DEADLINE`.
pub fn finish_run(child: std::process::Child) -> Output {
    let pid = child.id();
    let deadline = std::time::Instant::now() + RUN_DEADLINE;
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if std::time::Instant::now() > deadline {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("pgstress hung past {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap()
}
