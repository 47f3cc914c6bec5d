//! Safe by default: no write without consent, a client or data mistake stops the run before
//! any load (never a breaking point), and the files a run writes are its own.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Output;

use common::*;
use postgres::NoTls;

fn sql(statement: &str) -> u64 {
    let mut client = postgres::Client::connect(&shared_dsn(), NoTls).unwrap();
    client.batch_execute(statement).unwrap();
    client
        .query_one("SELECT count(*) FROM consent_victim", &[])
        .map(|row| row.get::<_, i64>(0) as u64)
        .unwrap_or(0)
}

fn run(logs: &Path, args: &[&str]) -> Output {
    pgstress_run(logs)
        .args(["--dsn", &shared_dsn(), "--no-report"])
        .args(args)
        .output()
        .unwrap()
}

fn logged_steps(logs: &Path) -> usize {
    std::fs::read_dir(logs)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("_steps.csv"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count() - 1)
        .sum()
}

#[test]
fn a_writing_query_is_refused_before_the_load_and_runs_with_allow_writes() {
    let rows = sql("CREATE TABLE IF NOT EXISTS consent_victim (id int);
         TRUNCATE consent_victim;
         INSERT INTO consent_victim SELECT generate_series(1, 10);");
    assert_eq!(rows, 10);
    let data = data_folder("ids.csv", "1\n2\n3\n4\n5\n");
    let data = data.path().to_str().unwrap();
    let query = "DELETE FROM consent_victim WHERE id = $1::int RETURNING 1";
    let logs = tempfile::tempdir().unwrap();
    let refused = run(
        logs.path(),
        &[
            "--steps", "1", "--step", "3", "--query", query, "--data", data,
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    let error = one_line_error(&refused.stderr);
    assert!(
        error.contains("--allow-writes") && error.contains("25006"),
        "{error}"
    );
    assert_eq!(sql("SELECT 1"), 10, "the refused run changed nothing");
    assert_eq!(logged_steps(logs.path()), 0, "no step ran");

    let allowed = run(
        logs.path(),
        &[
            "--steps",
            "1",
            "--step",
            "1",
            "--query",
            query,
            "--data",
            data,
            "--allow-writes",
            "--no-stop",
        ],
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed.stderr));
    assert!(text(&allowed.stdout).contains("writes:  allowed"));
    assert!(sql("SELECT 1") < 10, "with consent the query wrote");
}

#[test]
fn a_value_of_the_wrong_type_stops_the_run_naming_the_file_and_line() {
    let logs = tempfile::tempdir().unwrap();
    let output = run(
        logs.path(),
        &["--steps", "2", "--step", "5", "--query", "SELECT $1::int"],
    );
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(
        error.contains("22P02") && error.contains("sharding_1.csv line 1"),
        "{error}"
    );
    assert!(!text(&output.stdout).contains("breaking point"));
    assert_eq!(logged_steps(logs.path()), 0);
}

#[test]
fn a_header_row_is_named_and_skip_header_reads_past_it() {
    let good =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sharding_1.csv"))
            .unwrap();
    let with_header = format!(
        "url_hash\n{}",
        good.lines().take(20).collect::<Vec<_>>().join("\n")
    );
    let data = data_folder("hashes.csv", &with_header);
    let data = data.path().to_str().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let output = run(
        logs.path(),
        &["--steps", "1", "--step", "5", "--data", data],
    );
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(
        error.contains("hashes.csv has a header row") && error.contains("--skip-header"),
        "{error}"
    );
    let skipped = run(
        logs.path(),
        &[
            "--steps",
            "1",
            "--step",
            "5",
            "--data",
            data,
            "--skip-header",
        ],
    );
    assert_eq!(skipped.status.code(), Some(0), "{}", text(&skipped.stderr));
    let rows = step_rows(logs.path());
    assert_eq!(number(&rows[0], "ok"), 5, "{:?}", rows[0]);
}

#[test]
fn values_the_table_lacks_stop_the_run_as_no_row() {
    let data = data_folder("missing.csv", "00ff00ff\n00ff00fe\n");
    let data = data.path().to_str().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let output = run(
        logs.path(),
        &["--steps", "1", "--step", "5", "--data", data],
    );
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(
        error.contains("no row came back") && error.contains("missing.csv line 1"),
        "{error}"
    );
}

#[test]
fn a_stack_beyond_a_gibibyte_is_refused_by_name() {
    let logs = tempfile::tempdir().unwrap();
    let output = run(logs.path(), &["--stack-kib", "100000000"]);
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("--stack-kib '100000000'"), "{error}");
}

#[test]
fn steps_no_request_of_which_reached_the_server_get_no_verdict_on_it() {
    let logs = tempfile::tempdir().unwrap();
    // A 1 GiB stack (the most accepted) in a 1 GiB address space: no request thread starts,
    // while pgstress's own threads, with small stacks, do.
    let output = run_command(logs.path())
        .args(["--dsn", &shared_dsn(), "--no-report"])
        .args(["--steps", "2", "--step", "3", "--stack-kib", "1048576"])
        .env("MALLOC_ARENA_MAX", "1")
        .with_address_space(1 << 30)
        .output()
        .unwrap();
    // The default stop rules stay on: threads that never started are not the server failing.
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let rows = step_rows(logs.path());
    assert_eq!(rows.len(), 2);
    assert_eq!(number(&rows[0], "spawn"), 3, "{:?}", rows[0]);
    assert_eq!(number(&rows[1], "spawn"), 6, "{:?}", rows[1]);
    assert!(rows.iter().all(|row| row["flags"].contains("spawn-failed")));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("no verdict on the server: no request of any step reached it"),
        "{stdout}"
    );
    assert!(
        stdout.contains("spawn-failed from step 1") && !stdout.contains("handled"),
        "{stdout}"
    );
}

#[test]
fn runs_started_in_the_same_second_each_get_their_own_files() {
    let logs = tempfile::tempdir().unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            run_command(logs.path())
                .args(["--dsn", &shared_dsn(), "--no-report", "--quiet"])
                .args(["--steps", "1", "--step", "1", "--query", "SELECT 1"])
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let output = run.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    }
    let originals = std::fs::read_dir(logs.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.ends_with("_log.csv") && !name.ends_with("execution_time.csv")
        })
        .count();
    assert_eq!(originals, 4, "one failure log per run");
}

#[test]
fn a_link_planted_at_a_report_name_is_replaced_not_followed() {
    let logs = tempfile::tempdir().unwrap();
    let output = run(
        logs.path(),
        &["--steps", "1", "--step", "1", "--query", "SELECT 1"],
    );
    assert_eq!(output.status.code(), Some(0));
    let summary = log_file(logs.path(), "_summary.json");
    let prefix = summary.to_string_lossy().replace("_summary.json", "");
    let victim = logs.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let planted = format!("{prefix}_report.html");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let report = assert_cmd::Command::cargo_bin("pgstress")
        .unwrap()
        .args(["report", summary.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(report.status.code(), Some(0), "{}", text(&report.stderr));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!std::fs::symlink_metadata(&planted).unwrap().is_symlink());
}

#[test]
fn a_full_disk_mid_run_still_prints_the_verdict_of_the_finished_steps() {
    let logs = tempfile::tempdir().unwrap();
    // A file size limit makes a log write fail as a full disk does, part way through the run.
    let output = run_command(logs.path())
        .args(["--dsn", &shared_dsn(), "--query", "SELECT 1"])
        .args(["--steps", "40", "--step", "1", "--no-stop"])
        .with_file_size_limit(6 * 1024)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("logs could not be written"), "{error}");
    let stdout = text(&output.stdout);
    assert!(stdout.contains("no breaking point"), "{stdout}");
    for entry in std::fs::read_dir(logs.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let empty_picture = entry.metadata().unwrap().len() == 0
            && (name.ends_with(".png") || name.ends_with(".svg") || name.ends_with(".html"));
        assert!(!empty_picture, "an empty {name} was left");
        assert!(!name.ends_with(".tmp"), "a temporary {name} was left");
    }
}

/// Limits for the child pgstress only, set between fork and exec.
trait ChildLimits {
    fn with_address_space(&mut self, bytes: u64) -> &mut Self;
    fn with_file_size_limit(&mut self, bytes: u64) -> &mut Self;
}

impl ChildLimits for std::process::Command {
    fn with_address_space(&mut self, bytes: u64) -> &mut Self {
        limit(self, libc::RLIMIT_AS, bytes)
    }
    fn with_file_size_limit(&mut self, bytes: u64) -> &mut Self {
        limit(self, libc::RLIMIT_FSIZE, bytes)
    }
}

fn limit(
    command: &mut std::process::Command,
    resource: libc::__rlimit_resource_t,
    bytes: u64,
) -> &mut std::process::Command {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit is async-signal-safe, and only the child's limits change.
    let set = move || match unsafe { libc::setrlimit(resource, &limit) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    };
    unsafe { command.pre_exec(set) };
    command
}

#[test]
fn prepare_writes_the_values_of_the_rows_it_created() {
    // A database of its own, so that --rows decides what is there.
    let mut client = postgres::Client::connect(&shared_dsn(), NoTls).unwrap();
    // One statement each: DROP and CREATE DATABASE refuse a transaction block.
    client
        .batch_execute("DROP DATABASE IF EXISTS prepare_test")
        .unwrap();
    client
        .batch_execute("CREATE DATABASE prepare_test")
        .unwrap();
    let dsn = shared_dsn().replace("dbname=postgres", "dbname=prepare_test");
    let written = tempfile::tempdir().unwrap();
    let folder = written.path().join("values");
    let output = assert_cmd::Command::cargo_bin("pgstress")
        .unwrap()
        .args(["prepare", "--dsn", &dsn, "--rows", "2100", "--write-data"])
        .arg(&folder)
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("(2100 rows)"), "{stdout}");
    assert!(stdout.contains("wrote 105 parameter values"), "{stdout}");
    let files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, ["sharding_1.csv"]);
    // Every 20th row's hash, in order: the first 105 values of the repo's demo data, which
    // was written the same way from 100,000 rows.
    let values = std::fs::read_to_string(folder.join("sharding_1.csv")).unwrap();
    let demo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sharding_1.csv"))
            .unwrap();
    let expected: Vec<&str> = demo.lines().take(105).collect();
    assert_eq!(values.lines().collect::<Vec<_>>(), expected);
    // md5 of the URL of row 20, the first sampled.
    assert_eq!(expected[0], "76a3dabb98737c799d73b6c377c2b556");
    let mut prepared = postgres::Client::connect(&dsn, NoTls).unwrap();
    let rows: i64 = prepared
        .query_one("SELECT count(*) FROM sharding", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 2100);
}
