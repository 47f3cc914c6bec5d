//! Every way a run ends removes its throwaway server: Ctrl-C, SIGTERM and SIGHUP end the run
//! in order (exit 130, 143, 129); after SIGKILL the watchdog removes the server, and when the
//! watchdog is gone too, the next run removes the leftover and says so.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Every run here ends well within this; past it the test fails instead of hanging.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// The watchdog's immediate shutdown takes well under a second; this bounds a loaded machine.
const CLEANUP_DEADLINE: Duration = Duration::from_secs(20);

/// A pgstress run in the background whose output goes to files, readable while it runs.
struct Run {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    _files: tempfile::TempDir,
}

fn spawn(logs: &Path, tmpdir: Option<&Path>, args: &[&str]) -> Run {
    let files = tempfile::tempdir().unwrap();
    let (out, err) = (files.path().join("out"), files.path().join("err"));
    let mut command = run_command(logs);
    command
        .args(["--no-report", "--quiet"])
        .args(args)
        .stdout(Stdio::from(File::create(&out).unwrap()))
        .stderr(Stdio::from(File::create(&err).unwrap()));
    if let Some(tmpdir) = tmpdir {
        command.env("TMPDIR", tmpdir);
    }
    let child = command.spawn().unwrap();
    Run {
        child,
        out,
        err,
        _files: files,
    }
}

impl Run {
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The throwaway folder, once the run has started its server.
    fn folder(&self) -> PathBuf {
        let deadline = Instant::now() + RUN_DEADLINE;
        loop {
            if let Some(line) = self
                .stdout()
                .lines()
                .find(|l| l.starts_with("started a throwaway"))
            {
                let after = line.split(" in ").nth(1).unwrap();
                return PathBuf::from(after.split(" (binaries").next().unwrap());
            }
            assert!(Instant::now() < deadline, "no server: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit code, or None when killed by a signal; fails past the deadline.
    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + RUN_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pgstress hung past {RUN_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The processes working in the cluster's folder: the postmaster and every backend work in
/// its data folder, so this finds the cluster's processes, and only them.
fn cluster_processes(folder: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(folder))
        })
        .collect()
}

/// How long until the folder and every process of the cluster are gone; fails past the
/// deadline.
fn wait_until_removed(folder: &Path) -> Duration {
    let start = Instant::now();
    while folder.exists() || !cluster_processes(folder).is_empty() {
        assert!(
            start.elapsed() < CLEANUP_DEADLINE,
            "{} or its processes {:?} still there after {CLEANUP_DEADLINE:?}",
            folder.display(),
            cluster_processes(folder)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// Signals a run in `mode` while its step 2 is in flight; the step ends (burst and pool run
/// it to its end, rate sends no more of it), is logged, the server is removed, and the exit
/// code is 128 + the signal. The steps log's rows.
fn ends_in_order(signal: Signal, code: i32, mode: &[&str]) -> Vec<HashMap<String, String>> {
    let logs = tempfile::tempdir().unwrap();
    let query = "SELECT $1::text FROM pg_sleep(2)";
    let mut run = spawn(
        logs.path(),
        None,
        &[&["--steps", "5", "--step", "5", "--query", query], mode].concat(),
    );
    let folder = run.folder();
    wait_for_steps(logs.path(), 1, RUN_DEADLINE);
    // Step 2 starts within a few ms of step 1's row and lasts at least 2 s: the signal lands
    // in it even on a loaded machine.
    std::thread::sleep(Duration::from_millis(800));
    assert!(!cluster_processes(&folder).is_empty(), "the server runs");
    signal::kill(run.pid(), signal).unwrap();
    let sent = Instant::now();
    let status = run.wait();
    let took = sent.elapsed();
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_eq!(status, Some(code), "{stdout}{stderr}");
    assert!(
        stdout.contains("throwaway server stopped and removed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("interrupted after 2 of 5 steps"),
        "{stdout}"
    );
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    assert_eq!(rows.len(), 2, "step 1 and the step in flight: {rows:?}");
    assert!(!folder.exists(), "{} is still there", folder.display());
    assert_eq!(cluster_processes(&folder), Vec::<u32>::new());
    eprintln!("{signal} {mode:?}: exit {code} {took:?} after the signal (step in flight included)");
    rows
}

#[test]
fn ctrl_c_ends_the_run_and_removes_the_server() {
    let rows = ends_in_order(Signal::SIGINT, 130, &[]);
    assert_eq!(number(&rows[1], "ok"), 10, "{:?}", rows[1]);
}

#[test]
fn sigterm_ends_the_run_like_ctrl_c_with_143() {
    let rows = ends_in_order(Signal::SIGTERM, 143, &[]);
    assert_eq!(number(&rows[1], "ok"), 10, "{:?}", rows[1]);
}

#[test]
fn sighup_ends_the_run_like_ctrl_c_with_129() {
    let rows = ends_in_order(Signal::SIGHUP, 129, &[]);
    assert_eq!(number(&rows[1], "ok"), 10, "{:?}", rows[1]);
}

#[test]
fn ctrl_c_in_pool_mode_lets_the_queued_step_finish() {
    // 10 requests of 2 s through 5 workers: two rounds, the signal comes in the first.
    let rows = ends_in_order(Signal::SIGINT, 130, &["--mode", "pool", "--workers", "5"]);
    assert_eq!(number(&rows[1], "ok"), 10, "{:?}", rows[1]);
    assert!(!rows[1]["flags"].contains("partial"), "{:?}", rows[1]);
}

#[test]
fn ctrl_c_in_rate_mode_sends_no_more_of_the_step() {
    // Step 2 offers 10 a second for 3 s; the signal comes after about 0.8 s of it.
    let rows = ends_in_order(Signal::SIGINT, 130, &["--mode", "rate", "--duration", "3s"]);
    // The requests sent before the signal are answered; the rest of the 30 never go.
    let (ok, unsent) = (number(&rows[1], "ok"), number(&rows[1], "unsent"));
    assert!(ok >= 1 && unsent >= 1 && ok + unsent == 30, "{:?}", rows[1]);
    assert!(rows[1]["flags"].contains("partial"), "{:?}", rows[1]);
}

#[test]
fn ctrl_c_cuts_a_timed_pool_step_short() {
    // Steps of 10 s: 5 workers, step 2 keeping 10 requests of 2 s queued; the signal comes
    // about 0.8 s into it. The 5 on a worker finish, the 5 waiting are never sent.
    let rows = ends_in_order(
        Signal::SIGINT,
        130,
        &["--mode", "pool", "--workers", "5", "--duration", "10s"],
    );
    let step = &rows[1];
    assert_eq!(number(step, "ok"), 5, "{step:?}");
    assert_eq!(number(step, "unsent"), 5, "{step:?}");
    assert!(step["flags"].contains("partial"), "{step:?}");
    assert!(float(step, "wall_s") < 10.0, "cut short: {step:?}");
}

#[test]
fn ctrl_c_during_the_pause_ends_the_run_without_waiting_it_out() {
    let logs = tempfile::tempdir().unwrap();
    // A pause far beyond RUN_DEADLINE: a run that sleeps it out fails the wait below.
    let args = ["--steps", "3", "--step", "5", "--pause", "1h"];
    let mut run = spawn(logs.path(), None, &args);
    let folder = run.folder();
    wait_for_steps(logs.path(), 1, RUN_DEADLINE);
    std::thread::sleep(Duration::from_millis(300));
    signal::kill(run.pid(), Signal::SIGINT).unwrap();
    let status = run.wait();
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_eq!(status, Some(130), "{stdout}{stderr}");
    assert!(
        stdout.contains("interrupted after 1 of 3 steps"),
        "{stdout}"
    );
    assert!(!folder.exists(), "{} is still there", folder.display());
}

#[test]
fn sigterm_during_setup_still_removes_the_server() {
    let logs = tempfile::tempdir().unwrap();
    let mut run = spawn(logs.path(), None, &["--steps", "3", "--step", "5"]);
    // The server is up; the demo table, the preflight and the header are still to come.
    let folder = run.folder();
    signal::kill(run.pid(), Signal::SIGTERM).unwrap();
    let status = run.wait();
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_eq!(status, Some(143), "{stdout}{stderr}");
    assert!(
        stdout.contains("interrupted after 0 of 3 steps"),
        "{stdout}"
    );
    assert!(!folder.exists(), "{} is still there", folder.display());
    assert_eq!(cluster_processes(&folder), Vec::<u32>::new());
}

#[test]
fn after_sigkill_the_watchdog_removes_the_server() {
    let logs = tempfile::tempdir().unwrap();
    let mut run = spawn(
        logs.path(),
        None,
        &["--steps", "3", "--step", "5", "--pause", "60s"],
    );
    let folder = run.folder();
    wait_for_steps(logs.path(), 1, RUN_DEADLINE);
    assert!(!cluster_processes(&folder).is_empty(), "the server runs");
    signal::kill(run.pid(), Signal::SIGKILL).unwrap();
    assert_eq!(run.wait(), None, "killed");
    let took = wait_until_removed(&folder);
    eprintln!("SIGKILL: server and folder removed {took:?} after pgstress died");
}

/// The watchdog of a run: the child of `pgstress` whose $0 names it.
fn watchdog_of(pgstress: Pid) -> Pid {
    let children = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after_name = &stat[stat.rfind(')').map_or(0, |at| at + 1)..];
            after_name.split_whitespace().nth(1) == Some(&pgstress.to_string())
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                String::from_utf8_lossy(&cmdline).contains("pgstress-watchdog")
            })
        })
        .collect::<Vec<_>>();
    assert_eq!(children.len(), 1, "one watchdog: {children:?}");
    Pid::from_raw(children[0])
}

/// Kills the processes of a cluster a failed test left behind.
struct Tidy(PathBuf);

impl Drop for Tidy {
    fn drop(&mut self) {
        for pid in cluster_processes(&self.0) {
            let _ = signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

#[test]
fn a_server_left_by_a_killed_run_and_watchdog_is_removed_by_the_next_run() {
    use std::os::unix::fs::PermissionsExt;
    // A temporary folder of this test's own, so that no other run removes the leftover first.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let args = ["--steps", "3", "--step", "5", "--pause", "60s"];
    let mut run = spawn(logs.path(), Some(tmp.path()), &args);
    let folder = run.folder();
    let _tidy = Tidy(folder.clone());
    wait_for_steps(logs.path(), 1, RUN_DEADLINE);
    signal::kill(watchdog_of(run.pid()), Signal::SIGKILL).unwrap();
    signal::kill(run.pid(), Signal::SIGKILL).unwrap();
    assert_eq!(run.wait(), None, "killed");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        folder.exists() && !cluster_processes(&folder).is_empty(),
        "with its watchdog killed too, the server outlives the run"
    );

    let next_logs = tempfile::tempdir().unwrap();
    let mut next = spawn(
        next_logs.path(),
        Some(tmp.path()),
        &["--steps", "1", "--step", "2"],
    );
    assert_eq!(next.wait(), Some(0), "{}", next.stderr());
    let said = format!(
        "removed a throwaway server left by pgstress process {}, which no longer runs: {} (its postmaster",
        run.pid(),
        folder.display()
    );
    assert!(next.stdout().contains(&said), "{}", next.stdout());
    assert!(!folder.exists(), "{} is still there", folder.display());
    assert_eq!(cluster_processes(&folder), Vec::<u32>::new());
}
