//! One request against PostgreSQL, and how it failed.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::config::Host;
use postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config};
use thiserror::Error;

use crate::tls::{self, Connector, SslMode, TlsError, TlsOptions};

#[derive(Debug, Error)]
pub enum TargetError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    // The DSN itself is not repeated: a malformed one may hold a password in any shape.
    #[error("invalid DSN: {reason}; give a key=value string or a postgres:// URL")]
    BadDsn { reason: String },
}

/// A server to connect to, with its password kept out of everything printed.
#[derive(Clone)]
pub struct ConnectTarget {
    config: Config,
    redacted: String,
    tls: TlsOptions,
    connector: Connector,
}

impl fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl ConnectTarget {
    /// Parses a DSN; `fallback_password` (PGPASSWORD) applies when the DSN has none, as in libpq.
    pub fn parse(dsn: &str, fallback_password: Option<&str>) -> Result<Self, TargetError> {
        let (rest, mode, root_cert) = tls::split_dsn(dsn);
        let mut config: Config =
            rest.parse()
                .map_err(|err: postgres::Error| TargetError::BadDsn {
                    reason: describe_error(&err),
                })?;
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_user().is_none() {
            config.user(&default_user());
        }
        if config.get_password().is_none()
            && let Some(password) = fallback_password
        {
            config.password(password);
        }
        let mode = mode.map(|m| m.parse()).transpose()?.unwrap_or_default();
        Self::from_config(config, TlsOptions { mode, root_cert })
    }

    pub fn from_config(config: Config, tls: TlsOptions) -> Result<Self, TargetError> {
        if let Some(path) = &tls.root_cert {
            tls::check_root_cert(path)?;
        }
        let connector = Connector::build(&tls)?;
        let redacted = describe(&config, &tls);
        Ok(ConnectTarget {
            config,
            redacted,
            tls,
            connector,
        })
    }

    /// The same target with the TLS settings given on the command line, which win over the DSN's.
    pub fn with_tls(
        self,
        mode: Option<SslMode>,
        root_cert: Option<std::path::PathBuf>,
    ) -> Result<Self, TargetError> {
        if mode.is_none() && root_cert.is_none() {
            return Ok(self);
        }
        let tls = TlsOptions {
            mode: mode.unwrap_or(self.tls.mode),
            root_cert: root_cert.or(self.tls.root_cert),
        };
        Self::from_config(self.config, tls)
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The target as it may be printed: no password, ever.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Whether every host is on this machine's loopback, so its processes are visible here.
    pub fn is_loopback(&self) -> bool {
        self.config.get_hosts().iter().all(|host| match host {
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Host::Unix(_) => true,
        })
    }

    /// The connection settings one request uses: the deadline enforced on connect and on the
    /// server (statement_timeout), tagged so that pg_stat_activity shows whose load it is.
    pub fn request_config(&self, timeout: Duration, application_name: &str) -> Config {
        let mut config = self.config.clone();
        config.ssl_mode(Connector::wire_mode(self.tls.mode));
        config.connect_timeout(timeout);
        config.application_name(application_name);
        let statement_timeout = format!("-c statement_timeout={}", timeout.as_millis().max(1));
        let options = match config.get_options() {
            Some(existing) => format!("{existing} {statement_timeout}"),
            None => statement_timeout,
        };
        config.options(&options);
        config
    }

    /// A connection for setup and monitoring, never counted in a step. `timeout` bounds the
    /// whole connection, startup and authentication included, which `connect_timeout` alone
    /// does not: a stopped server's kernel still accepts the TCP connection.
    pub fn connect(
        &self,
        timeout: Duration,
        application_name: &str,
    ) -> Result<Client, ConnectError> {
        let config = self.request_config(timeout, application_name);
        let connector = self.connector.clone();
        match within(timeout, move || connector.connect(&config)) {
            Some(Ok(client)) => Ok(client),
            Some(Err(err)) => Err(ConnectError::Server(err)),
            None => Err(ConnectError::NoAnswer(timeout)),
        }
    }
}

/// Why a setup connection failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("{}", describe_error(.0))]
    Server(postgres::Error),
    #[error("no answer within {}: the server accepts connections but does not respond", humantime::format_duration(*.0))]
    NoAnswer(Duration),
}

/// Runs `work` on a thread of its own and waits at most `deadline` for it. A thread still
/// blocked on a server that stopped answering is left behind; it ends with the process.
pub fn within<T: Send + 'static>(
    deadline: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (done, result) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("pgstress-deadline".into())
        .spawn(move || {
            let _ = done.send(work());
        })
        .ok()?;
    result.recv_timeout(deadline).ok()
}

/// The server's message when there is one (with its SQLSTATE), else the client's chain of causes.
pub fn describe_error(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = err.to_string();
            let mut source = StdError::source(err);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "postgres".to_owned())
}

fn describe(config: &Config, tls: &TlsOptions) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let mut text = format!("host={}", hosts.join(","));
    if !ports.is_empty() {
        text.push_str(&format!(" port={}", ports.join(",")));
    }
    if let Some(user) = config.get_user() {
        text.push_str(&format!(" user={user}"));
    }
    if config.get_password().is_some() {
        text.push_str(" password=***");
    }
    if let Some(dbname) = config.get_dbname() {
        text.push_str(&format!(" dbname={dbname}"));
    }
    if tls.mode != SslMode::Prefer {
        text.push_str(&format!(" sslmode={}", tls.mode));
    }
    text
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// Connection refused or reset: nobody listening, or the server dropped us.
    Refused,
    /// SQLSTATE 53300: the server is at max_connections.
    TooManyClients,
    /// SQLSTATE 28P01 / 28000: wrong password or no pg_hba entry.
    Auth,
    /// Connect timeout, statement_timeout (57014), or pgstress's own deadline.
    Timeout,
    /// Any other SQLSTATE.
    Query,
    /// The query succeeded but returned no row (the original's rule for failure).
    NoRow,
    /// The request's thread could not be started.
    Spawn,
    /// Anything else.
    Io,
}

impl FailureClass {
    pub const ALL: [FailureClass; 8] = [
        FailureClass::Refused,
        FailureClass::TooManyClients,
        FailureClass::Auth,
        FailureClass::Timeout,
        FailureClass::Query,
        FailureClass::NoRow,
        FailureClass::Spawn,
        FailureClass::Io,
    ];

    /// The name used in logs and in the terminal.
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Refused => "refused",
            FailureClass::TooManyClients => "too_many_clients",
            FailureClass::Auth => "auth",
            FailureClass::Timeout => "timeout",
            FailureClass::Query => "query",
            FailureClass::NoRow => "no_row",
            FailureClass::Spawn => "spawn",
            FailureClass::Io => "io",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Classifies a client error by SQLSTATE first, then by the I/O error underneath it.
pub fn classify(err: &postgres::Error) -> FailureClass {
    if let Some(db) = err.as_db_error() {
        return match db.code().code() {
            "53300" => FailureClass::TooManyClients,
            "28P01" | "28000" => FailureClass::Auth,
            "57014" => FailureClass::Timeout,
            // Operator intervention: the server is shutting down or restarting (57P01, 57P02),
            // or not yet accepting connections (57P03): it dropped or refused us.
            "57P01" | "57P02" | "57P03" => FailureClass::Refused,
            _ => FailureClass::Query,
        };
    }
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return classify_io(io.kind());
        }
        source = cause.source();
    }
    FailureClass::Io
}

fn classify_io(kind: io::ErrorKind) -> FailureClass {
    use io::ErrorKind::*;
    match kind {
        ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => {
            FailureClass::Refused
        }
        TimedOut | WouldBlock => FailureClass::Timeout,
        _ => FailureClass::Io,
    }
}

/// A failure: its class and the first line of what the server or the client said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
}

impl Failure {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }

    fn from_error(err: &postgres::Error) -> Self {
        let message = match err.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => err.to_string(),
        };
        Failure::new(classify(err), message)
    }
}

/// What one request measured.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When the request started, from the step's release; None when it never ran.
    pub start_offset: Option<Duration>,
    pub connect: Option<Duration>,
    pub query: Option<Duration>,
    pub latency: Duration,
    pub outcome: Result<(), Failure>,
}

impl RequestRecord {
    /// A request that never ran: its thread could not start, or it missed the step's deadline.
    pub fn failed_without_running(failure: Failure, latency: Duration) -> Self {
        RequestRecord {
            start_offset: None,
            connect: None,
            query: None,
            latency,
            outcome: Err(failure),
        }
    }
}

/// What every request of a run sends.
pub struct RequestSpec {
    pub config: Config,
    pub connector: Connector,
    pub query: String,
}

/// One request: open a new connection, run the query, read the rows, close.
pub fn execute(spec: &RequestSpec, param: Option<&str>, start_offset: Duration) -> RequestRecord {
    let started = Instant::now();
    let (connect, query, outcome) = match spec.connector.connect(&spec.config) {
        Err(err) => (None, None, Err(Failure::from_error(&err))),
        Ok(mut client) => {
            let connected = Instant::now();
            let result = match param {
                Some(value) => client.query(spec.query.as_str(), &[&TextParam(value)]),
                None => client.query(spec.query.as_str(), &[]),
            };
            let outcome = match result {
                Ok(rows) if rows.is_empty() => {
                    Err(Failure::new(FailureClass::NoRow, "no row came back"))
                }
                Ok(_) => Ok(()),
                Err(err) => Err(Failure::from_error(&err)),
            };
            (
                Some(connected - started),
                Some(connected.elapsed()),
                outcome,
            )
            // The client closes as it drops here: closing is not part of the latency.
        }
    };
    let latency = match (connect, query) {
        (Some(connect), Some(query)) => connect + query,
        _ => started.elapsed(),
    };
    RequestRecord {
        start_offset: Some(start_offset),
        connect,
        query,
        latency,
        outcome,
    }
}

/// A parameter sent in text format, so the server parses it for whatever type `$1` has
/// (as psql and psycopg2 do). Always bound, never spliced into the SQL.
#[derive(Debug)]
pub struct TextParam<'a>(pub &'a str);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_dsn_is_printed_without_password() {
        let target = ConnectTarget::parse(
            "host=127.0.0.1 port=5999 user=u password=s3cret dbname=d",
            None,
        )
        .unwrap();
        assert_eq!(
            target.redacted(),
            "host=127.0.0.1 port=5999 user=u password=*** dbname=d"
        );
        assert!(!format!("{target:?}").contains("s3cret"));
    }

    #[test]
    fn url_dsn_is_printed_without_password() {
        let target = ConnectTarget::parse("postgres://u:s3cret@localhost:5999/d", None).unwrap();
        assert!(!target.redacted().contains("s3cret"));
        assert!(target.redacted().contains("password=***"));
        assert!(target.is_loopback());
    }

    #[test]
    fn bad_dsn_error_hides_a_quoted_password() {
        let err = ConnectTarget::parse("host=x password='s3cret with spaces' port=no", None)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret") && !err.contains("spaces"), "{err}");
    }

    #[test]
    fn bad_dsn_error_hides_password() {
        let err = ConnectTarget::parse("host=x password=s3cret bogus=1", None)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("bogus"), "{err}");
        let err = ConnectTarget::parse("postgres://u:s3cret@h:notaport/d", None)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn pgpassword_fills_a_missing_password() {
        let target = ConnectTarget::parse("host=127.0.0.1", Some("pw")).unwrap();
        assert!(target.redacted().contains("password=***"));
    }

    #[test]
    fn remote_host_is_not_loopback() {
        assert!(
            !ConnectTarget::parse("host=db.example.com", None)
                .unwrap()
                .is_loopback()
        );
    }

    #[test]
    fn io_errors_map_to_classes() {
        assert_eq!(
            classify_io(io::ErrorKind::ConnectionRefused),
            FailureClass::Refused
        );
        assert_eq!(
            classify_io(io::ErrorKind::ConnectionReset),
            FailureClass::Refused
        );
        assert_eq!(classify_io(io::ErrorKind::TimedOut), FailureClass::Timeout);
        assert_eq!(
            classify_io(io::ErrorKind::PermissionDenied),
            FailureClass::Io
        );
    }

    #[test]
    fn class_names_are_unique_and_indexed_in_order() {
        for (i, class) in FailureClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i);
        }
        let mut names: Vec<_> = FailureClass::ALL.iter().map(|c| c.name()).collect();
        names.dedup();
        assert_eq!(names.len(), FailureClass::ALL.len());
    }
}
