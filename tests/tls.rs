//! TLS against a real cluster started with a self-signed certificate made by the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use pgstress::pg::local::server::ThrowawayServer;

/// Where the certificate lives, and the cluster using it.
struct TlsServer {
    _certs: tempfile::TempDir,
    root_cert: PathBuf,
    dsn: String,
    port: u16,
}

static SERVER: std::sync::Mutex<Option<ThrowawayServer>> = std::sync::Mutex::new(None);

extern "C" fn stop_server() {
    if let Some(server) = SERVER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        server.stop();
    }
}

/// A certificate for the host name `localhost` only, so verify-full against 127.0.0.1 fails.
fn make_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("these tests need the openssl command (apt-get install openssl)");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    if nix::unistd::geteuid().is_root() {
        // The server runs as postgres and insists on owning its private key.
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        for path in [dir, &cert, &key] {
            nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
        }
    }
    (cert, key)
}

fn tls_server() -> &'static TlsServer {
    static TLS: OnceLock<TlsServer> = OnceLock::new();
    TLS.get_or_init(|| {
        let certs = tempfile::tempdir().unwrap();
        let (cert, key) = make_certificate(certs.path());
        let cert_setting = cert.display().to_string();
        let key_setting = key.display().to_string();
        let server = start_server(&[
            ("ssl", "on"),
            ("ssl_cert_file", &cert_setting),
            ("ssl_key_file", &key_setting),
        ]);
        let (dsn, port) = (server.dsn(), server.port());
        *SERVER.lock().unwrap() = Some(server);
        unsafe { libc::atexit(stop_server) };
        TlsServer {
            root_cert: cert,
            _certs: certs,
            dsn,
            port,
        }
    })
}

/// Succeeds only over TLS (or only without it).
fn ssl_query(ssl: bool) -> String {
    format!("SELECT $1::text FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl = {ssl}")
}

/// A step of three requests, every one of them ok.
fn three_ok(dsn: &str, query: &str) {
    let logs = tempfile::tempdir().unwrap();
    run_ok(
        logs.path(),
        &[
            "--dsn", dsn, "--steps", "1", "--step", "3", "--query", query,
        ],
    );
    let rows = step_rows(logs.path());
    assert_eq!(number(&rows[0], "ok"), 3, "{:?}", rows[0]);
}

#[test]
fn require_encrypts_every_request() {
    let server = tls_server();
    three_ok(&format!("{} sslmode=require", server.dsn), &ssl_query(true));
}

#[test]
fn prefer_encrypts_where_the_server_offers_it_and_falls_back_where_not() {
    let server = tls_server();
    three_ok(&format!("{} sslmode=prefer", server.dsn), &ssl_query(true));
    // The shared cluster has no certificate: prefer connects in plain text.
    three_ok(
        &format!("{} sslmode=prefer", shared_dsn()),
        &ssl_query(false),
    );
}

#[test]
fn disable_connects_in_plain_text() {
    let server = tls_server();
    three_ok(
        &format!("{} sslmode=disable", server.dsn),
        &ssl_query(false),
    );
}

#[test]
fn verify_full_accepts_the_certificates_host_name() {
    let server = tls_server();
    let dsn = server.dsn.replace("host=127.0.0.1", "host=localhost");
    let dsn = format!(
        "{dsn} sslmode=verify-full sslrootcert={}",
        server.root_cert.display()
    );
    three_ok(&dsn, &ssl_query(true));
}

#[test]
fn verify_full_refuses_another_host_name() {
    let server = tls_server();
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--dsn",
            &server.dsn,
            "--sslmode",
            "verify-full",
            "--sslrootcert",
        ])
        .arg(&server.root_cert)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("certificate verify failed"), "{error}");
}

#[test]
fn verify_ca_checks_the_chain_but_not_the_host_name() {
    let server = tls_server();
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:{}/postgres?sslmode=verify-ca&sslrootcert={}",
        server
            .dsn
            .split("password=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap(),
        server.port,
        server.root_cert.display()
    );
    three_ok(&url, &ssl_query(true));
}

#[test]
fn verify_ca_refuses_a_certificate_another_authority_signed() {
    let server = tls_server();
    let other = tempfile::tempdir().unwrap();
    let (stranger, _) = make_certificate(other.path());
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--dsn",
            &server.dsn,
            "--sslmode",
            "verify-ca",
            "--sslrootcert",
        ])
        .arg(&stranger)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("certificate verify failed"), "{error}");
}

#[test]
fn require_refuses_a_server_without_tls() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--sslmode", "require"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let error = one_line_error(&output.stderr);
    assert!(!error.is_empty());
}

#[test]
fn verify_full_without_a_root_certificate_is_refused_before_connecting() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", "host=127.0.0.1 port=1 sslmode=verify-full"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(one_line_error(&output.stderr).contains("needs a root certificate"));
}

#[test]
fn require_with_a_root_certificate_checks_the_chain_as_libpq_does() {
    let server = tls_server();
    let with_root = |cert: &Path| {
        format!(
            "{} sslmode=require sslrootcert={}",
            server.dsn,
            cert.display()
        )
    };
    three_ok(&with_root(&server.root_cert), &ssl_query(true));
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = make_certificate(other.path());
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", &with_root(&other_cert)])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("certificate verify failed"), "{error}");
}

#[test]
fn pgsslmode_and_the_default_root_certificate_from_the_home_folder() {
    let server = tls_server();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    std::fs::copy(&server.root_cert, home.path().join(".postgresql/root.crt")).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .env("HOME", home.path())
        .env("PGSSLMODE", "verify-ca")
        .args(["--dsn", &server.dsn, "--steps", "1", "--step", "2"])
        .args(["--query", &ssl_query(true)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("sslmode=verify-ca"), "{stdout}");
    assert!(stdout.contains("PGSSLMODE"), "{stdout}");
}

#[test]
fn channel_binding_require_holds_over_tls_and_refuses_without_it() {
    // SCRAM over TLS binds the login to the channel (SCRAM-SHA-256-PLUS): both clients run.
    let server = tls_server();
    let bound = format!("{} sslmode=require channel_binding=require", server.dsn);
    three_ok(&bound, &ssl_query(true));
    let logs = tempfile::tempdir().unwrap();
    run_ok(
        logs.path(),
        &[
            "--dsn", &bound, "--steps", "1", "--step", "3", "--client", "postgres",
        ],
    );
    // Without TLS there is no channel to bind to: a one-line refusal naming the setting,
    // before any load.
    let plain = format!("{} sslmode=disable channel_binding=require", server.dsn);
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", &plain, "--steps", "1", "--step", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("channel bind"), "{error}");
    assert_eq!(
        std::fs::read_dir(logs.path()).unwrap().count(),
        0,
        "no step ran"
    );
}
