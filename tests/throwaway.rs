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
            // Each request holds its connection, so that the 60 overlap whatever the timing.
            "--query",
            "SELECT $1::text FROM pg_sleep(0.5)",
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

/// psql as another OS user, with a clean environment (no PGPASSWORD unless given).
fn psql_as(user: &str, conninfo: &str, password: Option<&str>) -> std::process::Output {
    let mut psql = std::process::Command::new("runuser");
    psql.args(["-u", user, "--", "psql", "-w", "-X", "-At", "-d", conninfo])
        .args(["-c", "SELECT 1"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/");
    if let Some(password) = password {
        psql.env("PGPASSWORD", password);
    }
    psql.output()
        .expect("runuser and psql (apt-get install postgresql-client)")
}

fn failed_with(output: &std::process::Output, words: &str) -> bool {
    !output.status.success() && String::from_utf8_lossy(&output.stderr).contains(words)
}

#[test]
fn another_os_user_cannot_reach_the_throwaway_server() {
    use std::os::unix::fs::MetadataExt;
    if !prerequisite(
        nix::unistd::geteuid().is_root(),
        "only root can act as another OS user (runuser)",
    ) {
        return;
    }
    let server = start_server(&[]);
    let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    let folder = std::fs::metadata(server.folder()).unwrap();
    assert_eq!(folder.mode() & 0o777, 0o700, "{:o}", folder.mode());
    assert_eq!(
        folder.uid(),
        postgres.uid.as_raw(),
        "owned by the server's OS user"
    );
    let mut client = server
        .target()
        .connect(std::time::Duration::from_secs(10), "pgstress-test")
        .unwrap();
    let listen: String = client
        .query_one("SHOW listen_addresses", &[])
        .unwrap()
        .get(0);
    assert_eq!(listen, "127.0.0.1");

    let socket = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.folder().display(),
        server.port()
    );
    let tcp = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        server.port()
    );
    let password = Some(server.password());
    // Controls: psql as nobody works here, and the socket works for its owner with the
    // password; so the refusals below are the lock's doing.
    let nobody_with_password = psql_as("nobody", &tcp, password);
    assert!(
        nobody_with_password.status.success(),
        "{nobody_with_password:?}"
    );
    let owner_with_password = psql_as("postgres", &socket, password);
    assert!(
        owner_with_password.status.success(),
        "{owner_with_password:?}"
    );

    let nobody_tcp = psql_as("nobody", &tcp, None);
    assert!(
        failed_with(&nobody_tcp, "no password supplied"),
        "{nobody_tcp:?}"
    );
    let nobody_socket = psql_as("nobody", &socket, password);
    assert!(
        failed_with(&nobody_socket, "Permission denied"),
        "{nobody_socket:?}"
    );
    // Not trust, not peer: even the server's own OS user needs the password on the socket.
    let owner_socket = psql_as("postgres", &socket, None);
    assert!(
        failed_with(&owner_socket, "no password supplied"),
        "{owner_socket:?}"
    );
    server.stop();
}
