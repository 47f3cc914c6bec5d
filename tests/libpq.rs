//! The target resolved as libpq resolves it, against real throwaway clusters: the password
//! file, the service file, libpq's variables alone, sslmode from the environment, a client
//! certificate, connect_timeout, and a first run from a folder without `data/`. Variables are
//! set on the child process only.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::*;

/// `pgstress run` of one small step of `SELECT 1`, in a clean environment with `home` as HOME.
fn run_in(home: &Path, logs: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::cargo_bin("pgstress").unwrap();
    for var in TARGET_VARS {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home).envs(env.iter().copied());
    cmd.args(["run", "--steps", "1", "--step", "2", "--query", "SELECT 1"])
        .arg("--logs")
        .arg(logs)
        .arg("--no-report");
    cmd
}

/// The value of `key` in a key=value DSN without quotes.
fn dsn_value(dsn: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    dsn.split_whitespace()
        .find_map(|part| part.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in the DSN"))
        .to_owned()
}

fn write_private(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_ok(output: &std::process::Output, logs: &Path) -> String {
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    let rows = step_rows(logs);
    assert_eq!(number(&rows[0], "ok"), 2, "{:?}", rows[0]);
    assert!(!stdout.contains("throwaway"), "{stdout}");
    stdout
}

#[test]
fn password_from_pgpass_and_a_readable_pgpass_ignored_with_a_warning() {
    let dsn = shared_dsn();
    let (port, password) = (dsn_value(&dsn, "port"), dsn_value(&dsn, "password"));
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    write_private(
        &pgpass,
        &format!("127.0.0.1:{port}:*:postgres:{password}\n"),
        0o600,
    );
    let env = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", &port),
        ("PGUSER", "postgres"),
    ];
    let logs = tempfile::tempdir().unwrap();
    let output = run_in(home.path(), logs.path(), &env).output().unwrap();
    let stdout = assert_ok(&output, logs.path());
    assert!(stdout.contains("password from ~/.pgpass"), "{stdout}");
    assert!(!stdout.contains(&password), "{stdout}");

    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let output = run_in(home.path(), logs.path(), &env).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("group or world access"), "{stdout}");
    let error = one_line_error(&output.stderr);
    assert!(error.contains("~/.pgpass (mode 0600)"), "{error}");
}

#[test]
fn a_service_file_names_the_server() {
    let dsn = shared_dsn();
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("services.conf");
    let service = format!(
        "# the lab\n[lab]\nhost=127.0.0.1\nport={}\nuser=postgres\npassword={}\ndbname=postgres\n",
        dsn_value(&dsn, "port"),
        dsn_value(&dsn, "password")
    );
    write_private(&file, &service, 0o600);
    let logs = tempfile::tempdir().unwrap();
    let env = [
        ("PGSERVICE", "lab"),
        ("PGSERVICEFILE", file.to_str().unwrap()),
    ];
    let output = run_in(home.path(), logs.path(), &env).output().unwrap();
    let stdout = assert_ok(&output, logs.path());
    assert!(stdout.contains("from PGSERVICE=lab in "), "{stdout}");

    // prepare finds the same server the same way (the demo table is there: nothing changes).
    let mut prepare = Command::cargo_bin("pgstress").unwrap();
    for var in TARGET_VARS {
        prepare.env_remove(var);
    }
    let output = prepare
        .env("HOME", home.path())
        .envs(env)
        .args(["prepare", "--rows", "10"])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("from PGSERVICE=lab in "), "{stdout}");
}

#[test]
fn pg_variables_alone_mean_a_real_server() {
    let dsn = shared_dsn();
    let port = dsn_value(&dsn, "port");
    let password = dsn_value(&dsn, "password");
    let home = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let env = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "postgres"),
        ("PGPASSWORD", password.as_str()),
    ];
    let output = run_in(home.path(), logs.path(), &env).output().unwrap();
    let stdout = assert_ok(&output, logs.path());
    assert!(stdout.contains(&format!("port={port}")), "{stdout}");

    // PGPORT alone: libpq's socket folder on that port, never a throwaway server.
    let logs = tempfile::tempdir().unwrap();
    let output = run_in(home.path(), logs.path(), &[("PGPORT", "1")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("port=1"), "{error}");
    assert!(!text(&output.stdout).contains("throwaway"));
}

#[test]
fn pgsslmode_require_against_a_server_without_tls_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let output = run_in(home.path(), logs.path(), &[("PGSSLMODE", "require")])
        .args(["--dsn", &shared_dsn()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(
        error.to_lowercase().contains("tls") || error.contains("SSL"),
        "{error}"
    );
}

#[test]
fn connect_timeout_bounds_the_setup_connection() {
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let port = pgstress::sys::ports::free_listener_port(ip).unwrap();
    // Accepted by the kernel, never answered.
    let _listener = std::net::TcpListener::bind((ip, port)).unwrap();
    let home = tempfile::tempdir().unwrap();
    for (dsn, env) in [
        (
            format!("host=127.0.0.1 port={port} user=u connect_timeout=2"),
            vec![],
        ),
        (
            format!("host=127.0.0.1 port={port} user=u"),
            vec![("PGCONNECT_TIMEOUT", "2")],
        ),
    ] {
        let logs = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let output = run_in(home.path(), logs.path(), &env)
            .args(["--dsn", &dsn])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(output.status.code(), Some(1));
        let error = one_line_error(&output.stderr);
        assert!(error.contains("2s"), "{error}");
        assert!(took < Duration::from_secs(8), "took {took:?}: {error}");
    }
}

/// A CA that signs both the server's certificate and the client's (CN `certuser`).
fn make_certificates(dir: &Path) -> [PathBuf; 4] {
    let path = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("these tests need the openssl command (apt-get install openssl)");
        assert!(output.status.success(), "{}", text(&output.stderr));
    };
    openssl(
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ]
        .into_iter()
        .chain(["-subj", "/CN=testca", "-keyout", "ca.key", "-out", "ca.crt"])
        .collect::<Vec<_>>(),
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=certuser",
        ]
        .into_iter()
        .chain(["-keyout", "client.key", "-out", "client.csr"])
        .collect::<Vec<_>>(),
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
        ]
        .into_iter()
        .chain(["-CAcreateserial", "-days", "1", "-out", "client.crt"])
        .collect::<Vec<_>>(),
    );
    [
        path("ca.crt"),
        path("ca.key"),
        path("client.crt"),
        path("client.key"),
    ]
}

#[test]
fn a_client_certificate_is_accepted_by_cert_authentication() {
    let certs = tempfile::tempdir().unwrap();
    let [ca_cert, ca_key, client_cert, client_key] = make_certificates(certs.path());
    let hba = certs.path().join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all scram-sha-256\nhostssl all certuser 127.0.0.1/32 cert\nhost all postgres 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        for path in [certs.path(), &ca_cert, &ca_key, &hba] {
            nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
        }
    }
    let [ca, key, hba_file] = [&ca_cert, &ca_key, &hba].map(|p| p.display().to_string());
    let server = start_server(&[
        ("ssl", "on"),
        ("ssl_cert_file", &ca),
        ("ssl_key_file", &key),
        ("ssl_ca_file", &ca),
        ("hba_file", &hba_file),
    ]);
    let mut admin = server
        .target()
        .connect(Duration::from_secs(10), "pgstress-test")
        .unwrap();
    admin.batch_execute("CREATE ROLE certuser LOGIN").unwrap();
    // The client's certificate where libpq looks for it by default.
    let home = tempfile::tempdir().unwrap();
    let dot = home.path().join(".postgresql");
    std::fs::create_dir(&dot).unwrap();
    std::fs::copy(&client_cert, dot.join("postgresql.crt")).unwrap();
    let key_text = std::fs::read_to_string(&client_key).unwrap();
    write_private(&dot.join("postgresql.key"), &key_text, 0o600);
    let dsn = format!(
        "host=127.0.0.1 port={} user=certuser dbname=postgres sslmode=require",
        server.port()
    );
    let logs = tempfile::tempdir().unwrap();
    let output = run_in(home.path(), logs.path(), &[])
        .args(["--dsn", &dsn])
        .output()
        .unwrap();
    assert_ok(&output, logs.path());
    server.stop();
}

#[test]
fn a_first_run_from_a_folder_without_data() {
    let folder = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::cargo_bin("pgstress").unwrap();
    for var in TARGET_VARS {
        cmd.env_remove(var);
    }
    let output = cmd
        .env("HOME", home.path())
        .current_dir(folder.path())
        .args(["run", "--steps", "1", "--step", "5", "--no-report"])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("demo table"), "{stdout}");
    let rows = step_rows(&folder.path().join("logs"));
    assert_eq!(number(&rows[0], "ok"), 5, "{:?}", rows[0]);
}

#[test]
fn unsupported_keywords_are_named_and_url_passwords_never_shown() {
    let home = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let output = run_in(home.path(), logs.path(), &[])
        .args(["--dsn", "host=127.0.0.1 sslcrl=/tmp/crl.pem"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("\"sslcrl\""), "{error}");

    let logs = tempfile::tempdir().unwrap();
    let output = run_in(home.path(), logs.path(), &[])
        .args(["--dsn", "postgres://u:p@Zq9/x7K@127.0.0.1:1/d"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!all.contains("Zq9") && !all.contains("x7K"), "{all}");
    assert!(one_line_error(&output.stderr).contains("host=127.0.0.1 port=1"));
}
