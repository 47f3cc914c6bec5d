//! The embedded default: with no target, pgstress starts its own cluster, runs, and removes it.

mod common;

use std::path::PathBuf;

use common::*;

/// The folder named in the "started a throwaway PostgreSQL server ... in DIR" line.
fn throwaway_folder(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("started a throwaway"))
        .expect("no throwaway line");
    let after = line.split(" in ").nth(1).unwrap();
    PathBuf::from(after.split(" (binaries").next().unwrap())
}

#[test]
fn throwaway_run_removes_its_folder() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--steps", "2", "--step", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let folder = throwaway_folder(&stdout);
    assert!(
        folder.starts_with(std::env::temp_dir()),
        "{}",
        folder.display()
    );
    assert!(!folder.exists(), "{} is still there", folder.display());
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| number(r, "no_row") == 0), "{rows:?}");
}

#[test]
fn step_above_max_connections_counts_too_many_clients() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--steps",
            "1",
            "--step",
            "60",
            "--server-setting",
            "max_connections=5",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
    let row = &rows[0];
    assert!(number(row, "too_many_clients") > 0, "{row:?}");
    assert_eq!(number(row, "ok") + number(row, "failed"), 60);
    assert!(stdout.contains("first too_many_clients: 53300"), "{stdout}");
    assert!(!throwaway_folder(&stdout).exists());
}
