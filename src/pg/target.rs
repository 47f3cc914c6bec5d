//! The server under load: how to reach it, with its password kept out of everything printed.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use postgres::config::Host;
use postgres::{Client, Config};
use thiserror::Error;

use crate::pg::tls::{self, Connector, SslMode, TlsError, TlsOptions};
use crate::pg::wire::InBand;

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
    /// The settings go in each request's transaction, not in the `options` startup parameter
    /// (a pooler such as PgBouncer refuses it).
    settings_in_band: bool,
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
            settings_in_band: false,
        })
    }

    /// The same target, its connections sending no `options` startup parameter.
    pub fn with_settings_in_band(mut self) -> Self {
        self.settings_in_band = true;
        self
    }

    pub fn settings_in_band(&self) -> bool {
        self.settings_in_band
    }

    /// The settings each request sends in its own transaction, when they cannot go in the
    /// startup packet.
    pub fn in_band(&self, timeout: Duration, allow_writes: bool) -> Option<InBand> {
        self.settings_in_band.then_some(InBand {
            read_only: !allow_writes,
            statement_timeout_ms: timeout.as_millis(),
        })
    }

    /// The user and database the target logs in as, and its password: for a pooler put in
    /// front of it. The password is for the pooler's private files only, never printed.
    pub fn login(&self) -> (String, Option<String>, String) {
        let user = self.config.get_user().unwrap_or("postgres").to_owned();
        let password = self
            .config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let dbname = self.config.get_dbname().unwrap_or(&user).to_owned();
        (user, password, dbname)
    }

    /// The first host and port, as a pooler's `[databases]` line names them.
    pub fn first_address(&self) -> (String, u16) {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        (
            host,
            self.config.get_ports().first().copied().unwrap_or(5432),
        )
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

    pub fn tls_options(&self) -> &TlsOptions {
        &self.tls
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
    /// server (statement_timeout), tagged so that pg_stat_activity shows whose load it is, and
    /// unless writes are allowed, every transaction read-only: a stress test repeats its query
    /// thousands of times, and must not change the data it is aimed at by mistake.
    pub fn request_config(
        &self,
        timeout: Duration,
        application_name: &str,
        allow_writes: bool,
    ) -> Config {
        let mut config = self.config.clone();
        config.ssl_mode(Connector::wire_mode(self.tls.mode));
        config.connect_timeout(timeout);
        config.application_name(application_name);
        if self.settings_in_band {
            return config;
        }
        let mut statement_timeout = format!("-c statement_timeout={}", timeout.as_millis().max(1));
        if !allow_writes {
            statement_timeout.push_str(" -c default_transaction_read_only=on");
        }
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
        // pgstress's own connections (the demo data, the monitor) are not the load.
        let config = self.request_config(timeout, application_name, true);
        let connector = self.connector.clone();
        match within(timeout, move || connector.connect(&config)) {
            Some(Ok(client)) => Ok(client),
            Some(Err(err)) => Err(ConnectError::Server(err)),
            None => Err(ConnectError::NoAnswer(timeout)),
        }
    }
}

/// Whether a connection failed because the target refuses the `options` startup parameter,
/// as PgBouncer does unless told to ignore it ("unsupported startup parameter", 08P01).
pub fn refuses_startup_options(err: &ConnectError) -> bool {
    let ConnectError::Server(err) = err else {
        return false;
    };
    err.as_db_error().is_some_and(|db| {
        db.code().code() == "08P01" && db.message().contains("unsupported startup parameter")
    })
}

/// Masks what looks like a password anywhere in free text (a DSN given where no DSN was
/// expected ends up in an error message): the value of every `password` key, quoted or not,
/// spaces around its `=` or not, and the `:...@` of a URL.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("password") {
        let after_key = &rest[at + "password".len()..];
        let after_equals = after_key.trim_start();
        let Some(value) = after_equals.strip_prefix('=') else {
            out.push_str(&rest[..at + "password".len()]);
            rest = after_key;
            continue;
        };
        let value = value.trim_start();
        out.push_str(&rest[..at]);
        out.push_str("password=***");
        let end = match value.chars().next() {
            // libpq's quoted value: up to the closing quote, backslash escapes skipped.
            Some('\'') => {
                let mut escaped = false;
                value
                    .char_indices()
                    .skip(1)
                    .find(|&(_, c)| {
                        let closes = c == '\'' && !escaped;
                        escaped = c == '\\' && !escaped;
                        closes
                    })
                    .map_or(value.len(), |(i, _)| i + 1)
            }
            _ => value
                .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '&'))
                .unwrap_or(value.len()),
        };
        rest = &value[end..];
    }
    out.push_str(rest);
    mask_url_passwords(&out)
}

/// `scheme://user:secret@host` becomes `scheme://user:***@host`.
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '\'' | '"'))
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority
            .rfind('@')
            .and_then(|at| authority[..at].find(':').map(|colon| (colon, at)))
        {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_free_text_are_masked() {
        assert_eq!(
            redact_secrets(
                "unexpected argument 'postgres://u:S3cr3t@h:5432/x?sslmode=require' found"
            ),
            "unexpected argument 'postgres://u:***@h:5432/x?sslmode=require' found"
        );
        assert_eq!(
            redact_secrets("unexpected argument 'host=h password=S3cr3t dbname=x' found"),
            "unexpected argument 'host=h password=*** dbname=x' found"
        );
        assert_eq!(
            redact_secrets("found 'host=h password = 'a b\\' c' dbname=x'"),
            "found 'host=h password=*** dbname=x'"
        );
        assert_eq!(
            redact_secrets("the password is not set"),
            "the password is not set"
        );
        assert_eq!(
            redact_secrets("see https://example.com/a and postgres://u@h/x"),
            "see https://example.com/a and postgres://u@h/x"
        );
    }

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
}
