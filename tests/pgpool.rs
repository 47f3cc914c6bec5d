//! Through pgpool-II (Debian's `pgpool2`, its defaults but for where it lives and what it
//! fronts), started by the test in front of a throwaway cluster: burst and pool mode get
//! their answers, pgpool's processes are sampled as the pooler's side, and the connections
//! its queue holds past its `num_init_children` are its limit, not the server's.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pgstress::sys::ports::free_listener_port;

/// A pgpool-II of the test's own, stopped (and its folder removed) when dropped.
struct Pgpool {
    child: Child,
    port: u16,
    _folder: tempfile::TempDir,
}

impl Drop for Pgpool {
    fn drop(&mut self) {
        // SIGINT is pgpool's fast shutdown; its children follow their parent.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgpool_binary() -> &'static str {
    let found = ["/usr/sbin/pgpool", "/usr/bin/pgpool"]
        .into_iter()
        .find(|bin| Path::new(bin).is_file());
    found.unwrap_or_else(|| panic!("no pgpool binary: apt-get install pgpool2 (see .ci/run)"))
}

/// pgpool-II in raw mode (one backend, no replication checks) in front of `backend_port`,
/// SCRAM to its clients with the server's user and password (pool_passwd, plain text).
fn start_pgpool(backend_port: u16, password: &str) -> Pgpool {
    start_pgpool_with(backend_port, password, "scram-sha-256", "")
}

/// As `start_pgpool`, its clients authenticated by `method` (pool_hba.conf; pgpool logs in to
/// the server with pool_passwd's password whatever it is) and `more` lines in pgpool.conf.
fn start_pgpool_with(backend_port: u16, password: &str, method: &str, more: &str) -> Pgpool {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path().display().to_string();
    let loopback = "127.0.0.1".parse().unwrap();
    let port = free_listener_port(loopback).unwrap();
    let pcp_port = free_listener_port(loopback).unwrap();
    let conf = format!(
        "backend_clustering_mode = 'raw'\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
         unix_socket_directories = '{dir}'\npcp_listen_addresses = ''\npcp_port = {pcp_port}\n\
         pcp_socket_dir = '{dir}'\npid_file_name = '{dir}/pgpool.pid'\nlogdir = '{dir}'\n\
         backend_hostname0 = '127.0.0.1'\nbackend_port0 = {backend_port}\n\
         backend_weight0 = 1\nenable_pool_hba = on\npool_passwd = '{dir}/pool_passwd'\n\
         health_check_period = 0\nsr_check_period = 0\n{more}"
    );
    let write = |name: &str, text: &str| std::fs::write(folder.path().join(name), text).unwrap();
    write("pgpool.conf", &conf);
    write(
        "pool_hba.conf",
        &format!("host all all 127.0.0.1/32 {method}\n"),
    );
    write("pool_passwd", &format!("postgres:TEXT{password}\n"));
    write("pcp.conf", "");
    let log = std::fs::File::create(folder.path().join("pgpool.log")).unwrap();
    let child = Command::new(pgpool_binary())
        .arg("-n")
        .args(["-f", &format!("{dir}/pgpool.conf")])
        .args(["-a", &format!("{dir}/pool_hba.conf")])
        .args(["-F", &format!("{dir}/pcp.conf")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pgpool = Pgpool {
        child,
        port,
        _folder: folder,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "pgpool did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pgpool
}

#[test]
fn burst_and_pool_mode_work_through_pgpool_as_configured() {
    let server = start_server(&[]);
    let pgpool = start_pgpool(server.port(), server.password());
    let dsn = format!(
        "host=127.0.0.1 port={} user=postgres password={} dbname=postgres",
        pgpool.port,
        server.password()
    );
    // pgpool salts afresh on every login (it holds the password), so every connection
    // derives its SCRAM keys: small steps, a generous deadline on a loaded machine.
    for args in [
        &["--mode", "burst"][..],
        &["--mode", "pool", "--workers", "4"],
    ] {
        let logs = tempfile::tempdir().unwrap();
        let output = pgstress_run(logs.path())
            .args(["--dsn", &dsn, "--steps", "2", "--step", "5"])
            .args(["--timeout", "60s", "--no-report", "--quiet"])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let rows = read_csv_with_header(&log_file(logs.path(), "_steps.csv"));
        assert_eq!(rows.len(), 2, "{args:?}: {stdout}");
        for row in &rows {
            assert_eq!(number(row, "failed"), 0, "{args:?}: {row:?}");
            assert_eq!(number(row, "ok"), number(row, "requests"), "{row:?}");
            assert!(
                !row["pooler_cpu_mean"].is_empty(),
                "pgpool is the process listening on the target's port: {row:?}"
            );
        }
        assert!(
            stdout.contains("pooler:  pgpool-II listens on the target's port; its CPU sampled"),
            "{args:?}: {stdout}"
        );
        assert!(!stdout.contains(server.password()), "{stdout}");
    }
}

/// The pgpool-II: 64 children, so 64 clients at once; the rest wait in its queue (its
/// listen backlog) unanswered. Trusted clients: the test is about the queue, and a debug build
/// deriving SCRAM keys for every one of 120 connections on a loaded machine would time some
/// out in their authentication, after pgpool answered.
fn pgpool_of_64(server: &pgstress::pg::local::server::ThrowawayServer) -> (Pgpool, String) {
    let pgpool = start_pgpool_with(
        server.port(),
        server.password(),
        "trust",
        "num_init_children = 64\n",
    );
    let dsn = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        pgpool.port
    );
    (pgpool, dsn)
}

#[test]
fn connections_pgpool_holds_in_its_queue_are_its_client_limit_not_the_servers() {
    // 130 connections on the server: the pool's old default, sized from it, was 126 workers.
    let server = start_server(&[("max_connections", "130")]);
    let (_pgpool, dsn) = pgpool_of_64(&server);
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", &dsn, "--mode", "pool", "--workers", "120"])
        .args(["--steps", "2", "--step", "100", "--timeout", "5s"])
        .args(["--no-report", "--quiet"])
        .output()
        .unwrap();
    let stdout = output_text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for row in step_rows(logs.path()) {
        // The workers beyond pgpool's children never got an answer while the others did.
        assert!(number(&row, "pooler_queued") > 0, "{row:?}\n{stdout}");
        assert_eq!(number(&row, "timeout"), 0, "{row:?}");
        assert_eq!(number(&row, "server_failed"), 0, "{row:?}");
        assert!(row["flags"].contains("pooler-queued"), "{row:?}");
        // 120 workers against pgpool's 64, though the server had 129 connections free.
        assert!(row["flags"].contains("over-max-connections"), "{row:?}");
    }
    assert!(stdout.contains("no breaking point"), "{stdout}");
    assert!(
        stdout.contains("possibly the pooler's") || stdout.contains("may have measured the pooler"),
        "{stdout}"
    );
    assert!(stdout.contains("pooler-queued from step 1"), "{stdout}");
    assert!(!stdout.contains("client's"), "no client blame: {stdout}");
    assert!(!stdout.contains("may have measured the client"), "{stdout}");
    let verdict = &summary(logs.path())["verdict"];
    assert_eq!(verdict["limit"]["side"], "pooler", "{verdict}");
    assert_eq!(verdict["limit"]["flag"], "pooler-queued", "{verdict}");
    assert!(verdict["breaking_point"].is_null(), "{verdict}");
}

#[test]
fn the_pools_default_workers_are_sized_by_pgpools_children() {
    let server = start_server(&[("max_connections", "130")]);
    let (_pgpool, dsn) = pgpool_of_64(&server);
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", &dsn, "--mode", "pool"])
        .args(["--steps", "2", "--step", "100", "--timeout", "5s"])
        .args(["--no-report", "--quiet"])
        .output()
        .unwrap();
    let stdout = output_text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    // 64 children less the margin of 3 (pgstress's own monitor holds one of them).
    assert!(stdout.contains("pool: 61 workers"), "{stdout}");
    assert!(
        stdout.contains(
            "its client limit: 64 at once (num_init_children 64 less reserved_connections 0)"
        ),
        "{stdout}"
    );
    for row in step_rows(logs.path()) {
        assert_eq!(number(&row, "failed"), 0, "{row:?}\n{stdout}");
        assert!(!row["flags"].contains("pooler-queued"), "{row:?}");
        assert!(!row["flags"].contains("over-max-connections"), "{row:?}");
    }
    assert!(stdout.contains("no breaking point"), "{stdout}");
    let limit = &summary(logs.path())["pooler_limit"];
    assert_eq!(limit["pooler"], "pgpool-II", "{limit}");
    assert_eq!(limit["clients"], 64, "{limit}");
}
