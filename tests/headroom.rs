//! Before the load, pgstress says which step this machine cannot hold and the setting to
//! raise: made by construction in a child whose open-file limit the test lowers, never by
//! changing a machine-wide setting.

mod common;

use common::*;

/// The child's open-file limit, soft and hard: the hard one too, so that pgstress cannot
/// raise it.
const LIMIT: u64 = 256;

#[test]
fn a_step_past_the_open_file_limit_is_announced_before_any_load() {
    use std::os::unix::process::CommandExt;
    let logs = tempfile::tempdir().unwrap();
    let mut command = run_command(logs.path());
    // The lean client holds one file per connection, pgstress 64 besides: step 1 (100
    // connections, 164 files) fits in 256, step 2 (200, 264) does not.
    command
        .args(["--dsn", &shared_dsn(), "--query", "SELECT 1"])
        .args(["--steps", "2", "--step", "100", "--client", "lean"])
        .args(["--no-report", "--timeout", "60s"]);
    // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent's.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let output = command.output().unwrap();
    let stdout = output_text(&output);
    let warning = "warning: from step 2 (200 connections) pgstress needs about 264 open files, \
                   but may open 256 (RLIMIT_NOFILE)";
    let said = stdout.find(warning).unwrap_or_else(|| panic!("{stdout}"));
    assert!(stdout[said..].contains("raise `ulimit -n`"), "{stdout}");
    let first_step = stdout
        .find("step  1/2")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(said < first_step, "said before the load: {stdout}");
    assert_eq!(
        stdout.matches("warning: from step").count(),
        1,
        "only the open files fall short here: {stdout}"
    );
}

#[test]
fn a_local_pgbouncer_short_of_descriptors_for_its_share_is_announced_before_any_load() {
    use pgstress::pg::local::pooler::ThrowawayPooler;
    let server = start_server(&[]);
    let settings = [("max_client_conn".to_owned(), "200".to_owned())];
    let pooler = ThrowawayPooler::start(&server.target(), &settings).expect("start pgbouncer");
    // The test's own PgBouncer, lowered to 150 files: 100 clients and its 84 besides do not
    // fit, though the step itself still runs (100 clients, 20 server connections).
    lower_open_files(pooler.pid(), 150);
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", &pooler.dsn(), "--query", "SELECT 1"])
        .args([
            "--steps",
            "1",
            "--step",
            "100",
            "--no-report",
            "--timeout",
            "60s",
        ])
        .output()
        .unwrap();
    let stdout = output_text(&output);
    let warning = format!(
        "warning: from step 1 (100 connections, about 100 for each of the pooler's 1 process) \
         the local PgBouncer's process {} may open 150 files",
        pooler.pid()
    );
    let said = stdout
        .find(&warning)
        .unwrap_or_else(|| panic!("{warning}\n{stdout}"));
    assert!(stdout[said..].contains("LimitNOFILE"), "{stdout}");
    let first_step = stdout
        .find("step  1/1")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(said < first_step, "said before the load: {stdout}");
}

/// Lowers another process's open-file limit with util-linux's `prlimit`, run as that
/// process's owner (user and group): lowering a limit needs no privilege, reaching another
/// user's process does.
fn lower_open_files(pid: u32, files: u64) {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let process = std::fs::metadata(format!("/proc/{pid}")).unwrap();
    let output = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={files}:{files}"))
        .gid(process.gid())
        .uid(process.uid())
        .output()
        .expect("prlimit (util-linux)");
    assert!(output.status.success(), "{}", output_text(&output));
}
