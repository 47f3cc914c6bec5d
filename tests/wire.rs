//! The lean connection (pgstress::pg::wire) against a real cluster configured for each
//! authentication method, side by side with the `postgres` crate's path, and against a fake
//! server on loopback that misbehaves.

mod common;
#[path = "wire/fake.rs"]
mod fake;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::start_server;
use pgstress::model::outcome::FailureClass;
use pgstress::pg::local::server::ThrowawayServer;
use pgstress::pg::request::{RequestClient, RequestSpec, execute};
use pgstress::pg::target::tls::{SslMode, TlsOptions};
use pgstress::pg::wire::{self, Address, ConnectParams, Connection, Hosts, Session};

/// The cluster of these tests: TLS on, and one role per authentication method.
struct Cluster {
    port: u16,
    folder: PathBuf,
    root_cert: PathBuf,
    _certs: tempfile::TempDir,
}

static SERVER: Mutex<Option<ThrowawayServer>> = Mutex::new(None);

extern "C" fn stop_server() {
    if let Some(server) = SERVER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        server.stop();
    }
}

/// pg_hba: the role's name says how it logs in; everyone else uses SCRAM.
const HBA: &str = "local all all trust
host all trust_user 127.0.0.1/32 trust
host all pw_user 127.0.0.1/32 password
host all md5_user 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
";

const ROLES: &str = "SET password_encryption = 'md5';
CREATE ROLE md5_user LOGIN PASSWORD 'md5 secret';
SET password_encryption = 'scram-sha-256';
CREATE ROLE scram_user LOGIN PASSWORD 'scram secret';
CREATE ROLE pw_user LOGIN PASSWORD 'plain secret';
CREATE ROLE trust_user LOGIN;
CREATE ROLE limited LOGIN CONNECTION LIMIT 0 PASSWORD 'limited secret';";

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let certs = tempfile::tempdir().unwrap();
        let (cert, key) = make_certificate(certs.path());
        let (cert_setting, key_setting) = (cert.display().to_string(), key.display().to_string());
        let server = start_server(&[
            ("ssl", "on"),
            ("ssl_cert_file", &cert_setting),
            ("ssl_key_file", &key_setting),
        ]);
        let mut client = postgres::Client::connect(&server.dsn(), postgres::NoTls).unwrap();
        client.batch_execute(ROLES).unwrap();
        std::fs::write(server.folder().join("data/pg_hba.conf"), HBA).unwrap();
        client.batch_execute("SELECT pg_reload_conf()").unwrap();
        let cluster = Cluster {
            port: server.port(),
            folder: server.folder().to_owned(),
            root_cert: cert,
            _certs: certs,
        };
        *SERVER.lock().unwrap() = Some(server);
        unsafe { libc::atexit(stop_server) };
        wait_for_hba(&cluster);
        cluster
    })
}

/// The reload is asynchronous: wait until the trust line lets a password-less role in.
fn wait_for_hba(cluster: &Cluster) {
    let params = cluster.params("trust_user", None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(err) = wire::run_once(&params, "SELECT 1", None, Duration::from_secs(5)) {
        assert!(Instant::now() < deadline, "pg_hba.conf not reloaded: {err}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A certificate for `localhost`, owned by the server's OS user (as in tests/tls.rs).
fn make_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let output = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("these tests need the openssl command");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        for path in [dir, &cert, &key] {
            nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
        }
    }
    (cert, key)
}

impl Cluster {
    fn params(&self, user: &str, password: Option<&str>) -> ConnectParams {
        ConnectParams {
            hosts: Hosts::one(Address::Tcp {
                host: "127.0.0.1".into(),
                port: self.port,
            }),
            user: user.into(),
            password: password.map(str::to_owned),
            database: Some("postgres".into()),
            application_name: Some("pgstress-wire-test".into()),
            extra: Vec::new(),
            tls: None,
            scram_per_connection: false,
            in_band: None,
            source: Default::default(),
            channel_binding: Default::default(),
            keepalives: None,
        }
    }

    /// The cluster's Unix socket.
    fn unix_address(&self) -> Address {
        Address::Unix(self.folder.join(format!(".s.PGSQL.{}", self.port)))
    }

    fn tls_options(&self, mode: SslMode) -> TlsOptions {
        TlsOptions {
            client_cert: None,
            client_key: None,
            mode,
            root_cert: Some(self.root_cert.clone()),
        }
    }

    fn with_tls(&self, mut params: ConnectParams, mode: SslMode) -> ConnectParams {
        params.tls = wire::WireTls::from_options(&self.tls_options(mode)).unwrap();
        params
    }

    /// The same request through `request::execute`, as `pgstress run` makes it: through the
    /// `postgres` crate, or (`lean`) through the lean connection with sslmode prefer.
    fn execute_class(
        &self,
        lean: bool,
        user: &str,
        password: &str,
        sql: &str,
        param: Option<&str>,
    ) -> Option<FailureClass> {
        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname("postgres");
        config.connect_timeout(Duration::from_secs(1));
        let tls = self.tls_options(SslMode::Disable);
        let client = match lean {
            true => RequestClient::Lean {
                scram_per_connection: false,
            },
            false => RequestClient::Postgres,
        };
        let spec = RequestSpec::new(
            config,
            &tls,
            Default::default(),
            sql.into(),
            Duration::from_secs(1),
            client,
        )
        .unwrap();
        execute(&spec, param, Duration::ZERO)
            .outcome
            .err()
            .map(|f| f.class)
    }
}

fn class_of(params: &ConnectParams, sql: &str, param: Option<&str>) -> Option<FailureClass> {
    let started = Instant::now();
    let result = wire::rows_outcome(wire::run_once(params, sql, param, Duration::from_secs(1)));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    result.err().map(|f| f.class)
}

const SSL_QUERY: &str = "SELECT $1::text FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl";

#[test]
fn each_authentication_method_logs_in_and_a_wrong_password_is_auth() {
    let cluster = cluster();
    for (user, password) in [
        ("trust_user", None),
        ("pw_user", Some("plain secret")),
        ("md5_user", Some("md5 secret")),
        ("scram_user", Some("scram secret")),
    ] {
        let params = cluster.params(user, password);
        assert_eq!(
            class_of(&params, "SELECT $1::text", Some("x")),
            None,
            "{user}"
        );
        if password.is_some() {
            let wrong = cluster.params(user, Some("wrong"));
            assert_eq!(
                class_of(&wrong, "SELECT 1", None),
                Some(FailureClass::Auth),
                "{user}"
            );
        }
    }
}

#[test]
fn tls_modes_encrypt_and_scram_binds_the_channel() {
    let cluster = cluster();
    for mode in [SslMode::Prefer, SslMode::Require, SslMode::VerifyCa] {
        let params = cluster.with_tls(cluster.params("scram_user", Some("scram secret")), mode);
        let mut conn =
            Connection::connect(&params, Instant::now() + Duration::from_secs(2)).unwrap();
        assert!(
            conn.channel_bound(),
            "{mode}: SCRAM-SHA-256-PLUS expected over TLS"
        );
        assert_eq!(
            conn.query("", Some(SSL_QUERY), Some("x")).unwrap(),
            1,
            "{mode}"
        );
    }
    let md5 = cluster.with_tls(
        cluster.params("md5_user", Some("md5 secret")),
        SslMode::Require,
    );
    assert_eq!(class_of(&md5, SSL_QUERY, Some("x")), None);
    // Plain SCRAM without TLS: no binding, and not encrypted.
    let plain = cluster.params("scram_user", Some("scram secret"));
    let mut conn = Connection::connect(&plain, Instant::now() + Duration::from_secs(2)).unwrap();
    assert!(!conn.channel_bound());
    assert_eq!(conn.query("", Some(SSL_QUERY), Some("x")).unwrap(), 0);
}

#[test]
fn verify_full_checks_the_host_name() {
    let cluster = cluster();
    let mut params = cluster.with_tls(
        cluster.params("scram_user", Some("scram secret")),
        SslMode::VerifyFull,
    );
    let failure = wire::rows_outcome(wire::run_once(
        &params,
        "SELECT 1",
        None,
        Duration::from_secs(2),
    ))
    .unwrap_err();
    assert_eq!(failure.class, FailureClass::Io);
    assert!(
        failure.message.contains("certificate verify failed"),
        "{}",
        failure.message
    );
    params.hosts = Hosts::one(Address::Tcp {
        host: "localhost".into(),
        port: cluster.port,
    });
    // localhost may resolve to ::1 first, where the server does not listen: the next address
    // is tried.
    assert_eq!(class_of(&params, SSL_QUERY, Some("x")), None);
}

#[test]
fn a_unix_socket_and_extra_startup_parameters_work() {
    let cluster = cluster();
    let mut params = cluster.params("postgres", None);
    params.hosts = Hosts::one(cluster.unix_address());
    params
        .extra
        .push(("options".into(), "-c statement_timeout=4321".into()));
    let sql = "SELECT 1 WHERE current_setting('statement_timeout') = '4321ms'";
    assert_eq!(class_of(&params, sql, None), None);
}

/// A burst thread's socket, made before its gate: only for TCP to an IP address, and a request
/// on it is the same request.
#[test]
fn a_socket_made_ahead_carries_the_request() {
    let cluster = cluster();
    let params = cluster.params("scram_user", Some("scram secret"));
    let deadline = || Instant::now() + Duration::from_secs(5);
    let ready = wire::ReadySocket::new(&params).expect("a socket for 127.0.0.1");
    let timed = wire::timed_request(
        &params,
        Some(ready),
        "SELECT $1::text",
        Some("x"),
        deadline(),
    );
    assert_eq!(timed.outcome.err().map(|f| f.class), None);
    assert!(timed.connect.is_some() && timed.query.is_some());
    assert_eq!(timed.node, None, "one host, no node to record");
    let wrong = cluster.params("scram_user", Some("wrong"));
    let ready = wire::ReadySocket::new(&wrong).unwrap();
    let timed = wire::timed_request(&wrong, Some(ready), "SELECT 1", None, deadline());
    assert_eq!(
        timed.outcome.err().map(|f| f.class),
        Some(FailureClass::Auth)
    );
    let mut by_name = cluster.params("scram_user", Some("scram secret"));
    by_name.hosts = Hosts::one(Address::Tcp {
        host: "localhost".into(),
        port: cluster.port,
    });
    assert!(wire::ReadySocket::new(&by_name).is_none(), "a name");
    let mut unix = by_name.clone();
    unix.hosts = Hosts::one(cluster.unix_address());
    assert!(wire::ReadySocket::new(&unix).is_none(), "a Unix socket");
}

#[test]
fn cached_and_per_connection_scram_give_the_same_outcomes() {
    let cluster = cluster();
    let cached = cluster.params("scram_user", Some("scram secret"));
    let fresh = ConnectParams {
        scram_per_connection: true,
        ..cached.clone()
    };
    let queries = [
        ("SELECT $1::text", Some("x")),
        ("SELECT 1 WHERE false", None),
        ("SELECT * FROM no_such_table", None),
    ];
    assert_eq!(class_of(&cached, "SELECT 1", None), None); // derives, if no test did yet
    for (sql, param) in queries {
        let before = wire::key_derivations();
        let with_cache = class_of(&cached, sql, param);
        assert_eq!(wire::key_derivations(), before, "the cache derived again");
        assert_eq!(with_cache, class_of(&fresh, sql, param), "{sql}");
        assert_eq!(
            wire::key_derivations(),
            before + 1,
            "per connection derives every time"
        );
    }
    let wrong = ConnectParams {
        password: Some("wrong".into()),
        ..fresh
    };
    assert_eq!(class_of(&wrong, "SELECT 1", None), Some(FailureClass::Auth));
}

#[test]
fn outcome_classes_match_the_postgres_crate() {
    let cluster = cluster();
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<FailureClass>,
    );
    let cases: [Case; 6] = [
        (
            "scram_user",
            "scram secret",
            "SELECT $1::text",
            Some("x"),
            None,
        ),
        (
            "scram_user",
            "scram secret",
            "SELECT 1 WHERE $1 = 'y'",
            Some("x"),
            Some(FailureClass::NoRow),
        ),
        (
            "scram_user",
            "scram secret",
            "SELECT * FROM no_such_table",
            None,
            Some(FailureClass::Query),
        ),
        (
            "scram_user",
            "wrong",
            "SELECT 1",
            None,
            Some(FailureClass::Auth),
        ),
        (
            "limited",
            "limited secret",
            "SELECT 1",
            None,
            Some(FailureClass::TooManyClients),
        ),
        (
            "scram_user",
            "scram secret",
            "SELECT pg_sleep(3)",
            None,
            Some(FailureClass::Timeout),
        ),
    ];
    for (user, password, sql, param, expected) in cases {
        let lean = class_of(&cluster.params(user, Some(password)), sql, param);
        assert_eq!(lean, expected, "lean: {user} {sql}");
        for lean in [false, true] {
            let class = cluster.execute_class(lean, user, password, sql, param);
            assert_eq!(
                class, expected,
                "request::execute, lean {lean}: {user} {sql}"
            );
        }
    }
}

#[test]
fn a_session_prepares_once_and_runs_many_times() {
    let cluster = cluster();
    let params = cluster.params("scram_user", Some("scram secret"));
    let deadline = || Instant::now() + Duration::from_secs(2);
    let mut session = Session::open(
        &params,
        "SELECT $1::int FROM generate_series(1, $1::int)",
        true,
        deadline(),
    )
    .unwrap();
    for n in 1..=5 {
        assert_eq!(
            session.execute(Some(&n.to_string()), deadline()).unwrap(),
            n
        );
    }
    let err = session
        .execute(Some("not a number"), deadline())
        .unwrap_err();
    assert_eq!(err.class(), FailureClass::BadValue, "{err}");
    assert_eq!(
        session.execute(Some("2"), deadline()).unwrap(),
        2,
        "the session survives an error"
    );
}

/// pgstress's own queries (the monitor's) read values: the first row's, as text, NULL as None.
#[test]
fn first_row_returns_the_first_rows_values_as_text() {
    let cluster = cluster();
    let params = cluster.params("scram_user", Some("scram secret"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut conn = Connection::connect(&params, deadline).unwrap();
    let sql = "SELECT n, n * 10, NULL::text, $1::text FROM generate_series(3, 5) AS n";
    let row = conn.first_row(sql, Some("éa")).unwrap();
    let expected = [Some("3"), Some("30"), None, Some("éa")].map(|v| v.map(str::to_owned));
    assert_eq!(row, Some(expected.to_vec()));
    assert_eq!(conn.first_row("SELECT 1 WHERE false", None).unwrap(), None);
    let err = conn.first_row("SELECT $1::int", Some("x")).unwrap_err();
    assert_eq!(err.class(), FailureClass::BadValue, "{err}");
    let again = conn.first_row("SELECT 7", None).unwrap();
    assert_eq!(
        again,
        Some(vec![Some("7".to_owned())]),
        "usable after an error"
    );
}

/// The pre-flight's check of the query: the parameters counted on the unnamed statement,
/// nothing run (a write is not done), an error in the server's words, the connection usable
/// after it, and no statement left behind under a name.
#[test]
fn parameters_are_counted_on_the_unnamed_statement_without_running_the_query() {
    let cluster = cluster();
    let params = cluster.params("scram_user", Some("scram secret"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut conn = Connection::connect(&params, deadline).unwrap();
    assert_eq!(conn.parameters_of("SELECT 1").unwrap(), 0);
    assert_eq!(conn.parameters_of("SELECT $1::text, $2::int").unwrap(), 2);
    let err = conn.parameters_of("SELEC 1").unwrap_err();
    assert!(err.to_string().starts_with("42601"), "{err}");
    // Described, never run: the sequence is where it was.
    let sql = "CREATE TEMP SEQUENCE IF NOT EXISTS described";
    conn.first_row(sql, None).unwrap();
    assert_eq!(
        conn.parameters_of("SELECT nextval('described')").unwrap(),
        0
    );
    let next = conn.first_row("SELECT nextval('described')", None).unwrap();
    assert_eq!(next, Some(vec![Some("1".to_owned())]));
    let named = conn
        .first_row("SELECT count(*) FROM pg_prepared_statements", None)
        .unwrap();
    assert_eq!(named, Some(vec![Some("0".to_owned())]));
}
