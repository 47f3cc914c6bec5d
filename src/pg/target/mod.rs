//! The server under load: where it is (libpq's resolution of a DSN, the environment, the
//! password and service files), how to reach it (TLS), with its password kept out of
//! everything printed (redact).

pub mod libpq;
pub mod redact;
pub mod route;
pub mod tls;

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, Instant};

use postgres::config::Host;
use postgres::{Client, Config};
use thiserror::Error;

use self::libpq::{Inputs, LibpqError, Resolved};
use self::route::Route;
use self::tls::{Connector, SslMode, TlsError, TlsOptions};
use crate::pg::wire::{self, InBand};

#[derive(Debug, Error)]
pub enum TargetError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Libpq(#[from] LibpqError),
    // The DSN itself is not repeated: a malformed one may hold a password in any shape.
    #[error("invalid DSN: {reason}; give a key=value string or a postgres:// URL")]
    BadDsn { reason: String },
}

/// The deadline of the setup connections when `connect_timeout` is not given.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The keywords the postgres crate applies itself; the others are pgstress's (TLS, timeout,
/// `target_session_attrs`, whose primary, standby and prefer-standby the crate lacks).
const WIRE_KEYS: [&str; 11] = [
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "options",
    "keepalives",
    "keepalives_idle",
    "channel_binding",
    "load_balance_hosts",
];

/// A server to connect to, with its password kept out of everything printed.
#[derive(Clone)]
pub struct ConnectTarget {
    config: Config,
    redacted: String,
    tls: TlsOptions,
    connector: Connector,
    /// Where the settings came from, for the header ("from PGSERVICE=lab in ...").
    origin: Option<String>,
    warnings: Vec<String>,
    setup_timeout: Duration,
    /// The settings go in each request's transaction, not in the `options` startup parameter
    /// (a pooler such as PgBouncer refuses it).
    settings_in_band: bool,
    /// How a host of the list is chosen and what a login must be.
    route: Route,
}

impl fmt::Debug for ConnectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl ConnectTarget {
    /// Parses a DSN as libpq would with only `PGPASSWORD` (`fallback_password`) set.
    pub fn parse(dsn: &str, fallback_password: Option<&str>) -> Result<Self, TargetError> {
        let inputs = Inputs {
            dsn: Some((dsn.to_owned(), "the DSN".to_owned())),
            env: fallback_password
                .map(|p| ("PGPASSWORD".to_owned(), p.to_owned()))
                .into_iter()
                .collect(),
            home: None,
            os_user: default_user(),
            socket_dir: "/var/run/postgresql".to_owned(),
        };
        Self::resolve(&inputs)
    }

    /// The target libpq would reach with these inputs.
    pub fn resolve(inputs: &Inputs) -> Result<Self, TargetError> {
        Self::from_resolved(&libpq::resolve(inputs)?)
    }

    pub fn from_resolved(resolved: &Resolved) -> Result<Self, TargetError> {
        let mut config = Config::new();
        let mut text = String::new();
        for key in WIRE_KEYS {
            if let Some(value) = resolved.get(key) {
                text.push_str(&format!("{key}={} ", quote_value(value)));
            }
        }
        if !text.is_empty() {
            config = text
                .parse()
                .map_err(|err: postgres::Error| TargetError::BadDsn {
                    reason: describe_error(&err),
                })?;
        }
        let name = resolved
            .get("application_name")
            .or(resolved.get("fallback_application_name"));
        if let Some(name) = name {
            config.application_name(name);
        }
        let path = |key: &str| resolved.get(key).map(std::path::PathBuf::from);
        let tls = TlsOptions {
            mode: resolved
                .get("sslmode")
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
            root_cert: path("sslrootcert"),
            client_cert: path("sslcert"),
            client_key: path("sslkey"),
        };
        let mut target = Self::from_config(config, tls)?;
        target.setup_timeout = connect_timeout(resolved.get("connect_timeout"))?;
        target.route = Route::from_resolved(resolved)?;
        target.redacted = describe(&target.config, &target.tls, &target.route);
        target.origin = Some(resolved.origin.clone());
        target.warnings = resolved.warnings.clone();
        Ok(target)
    }

    /// Where the settings came from, when the user named the target.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// What the user should know about the settings (an unusable password file, ...).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether a password was found (DSN, service, PGPASSWORD or the password file).
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// The deadline of pgstress's own connections: libpq's `connect_timeout`, else 10 s.
    pub fn setup_timeout(&self) -> Duration {
        self.setup_timeout
    }

    pub fn from_config(config: Config, tls: TlsOptions) -> Result<Self, TargetError> {
        if let Some(path) = &tls.root_cert {
            tls::check_root_cert(path)?;
        }
        let connector = Connector::build(&tls)?;
        let redacted = describe(&config, &tls, &Route::default());
        Ok(ConnectTarget {
            config,
            redacted,
            tls,
            connector,
            origin: None,
            warnings: Vec::new(),
            setup_timeout: DEFAULT_SETUP_TIMEOUT,
            settings_in_band: false,
            route: Route::default(),
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
            ..self.tls
        };
        let target = Self::from_config(self.config, tls)?;
        Ok(ConnectTarget {
            redacted: describe(&target.config, &target.tls, &self.route),
            origin: self.origin,
            warnings: self.warnings,
            setup_timeout: self.setup_timeout,
            route: self.route,
            ..target
        })
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
        self.hosts().all_local()
    }

    /// The hosts of the list, in libpq's order, with how one is chosen.
    pub fn hosts(&self) -> wire::Hosts {
        let mut hosts = wire::Hosts::from_config(&self.config);
        hosts.attrs = self.route.attrs;
        hosts
    }

    pub fn route(&self) -> Route {
        self.route
    }

    /// The lean client's settings for `config` (one of this target's), every libpq keyword
    /// of the route applied.
    pub fn lean_params(&self, config: &Config) -> Result<wire::ConnectParams, TlsError> {
        Ok(self
            .route
            .apply(wire::ConnectParams::from_config(config, &self.tls)?))
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
        // The user's application_name, when given, names every connection of the run.
        if self.config.get_application_name().is_none() {
            config.application_name(application_name);
        }
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
        let config = self.own_config(timeout, application_name);
        let connector = self.connector.clone();
        let hosts = self.hosts();
        match within(timeout, move || {
            route::connect_postgres(&connector, &config, &hosts)
        }) {
            Some(result) => result.map(|(client, _)| client),
            None => Err(ConnectError::NoAnswer(timeout)),
        }
    }

    /// The same on pgstress's lean connection (the monitor's: no runtime per reading), whose
    /// every read and write ends by `timeout`.
    pub fn connect_lean(
        &self,
        timeout: Duration,
        application_name: &str,
    ) -> Result<wire::Connection, ConnectError> {
        let config = self.own_config(timeout, application_name);
        let params = self.lean_params(&config)?;
        Ok(wire::Connection::connect(
            &params,
            Instant::now() + timeout,
        )?)
    }

    /// pgstress's own connections (the demo data, the monitor) are not the load.
    fn own_config(&self, timeout: Duration, application_name: &str) -> Config {
        self.request_config(timeout, application_name, true)
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

/// Why a setup connection failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("{}", describe_error(.0))]
    Server(postgres::Error),
    #[error("no answer within {}: the server accepts connections but does not respond", humantime::format_duration(*.0))]
    NoAnswer(Duration),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
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
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| "postgres".to_owned(), |user| user.name)
}

fn quote_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// libpq's `connect_timeout`: whole seconds, at least 2; 0 (libpq: wait forever) keeps
/// pgstress's default, since every wait here has a deadline.
fn connect_timeout(value: Option<&str>) -> Result<Duration, TargetError> {
    let Some(value) = value else {
        return Ok(DEFAULT_SETUP_TIMEOUT);
    };
    let seconds: i64 = value.trim().parse().map_err(|_| TargetError::BadDsn {
        reason: format!("connect_timeout \"{value}\" is not a whole number of seconds"),
    })?;
    Ok(match seconds {
        ..=0 => DEFAULT_SETUP_TIMEOUT,
        1 => Duration::from_secs(2),
        n => Duration::from_secs(n.unsigned_abs()),
    })
}

/// The target as libpq's keywords, every host shown, the password masked.
fn describe(config: &Config, tls: &TlsOptions, route: &Route) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let addrs: Vec<String> = config
        .get_hostaddrs()
        .iter()
        .map(|ip| ip.to_string())
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let mut parts = Vec::new();
    if !hosts.is_empty() {
        parts.push(format!("host={}", hosts.join(",")));
    }
    if !addrs.is_empty() {
        parts.push(format!("hostaddr={}", addrs.join(",")));
    }
    let mut text = parts.join(" ");
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
    if route.attrs != wire::SessionAttrs::Any {
        text.push_str(&format!(" target_session_attrs={}", route.attrs.name()));
    }
    if config.get_load_balance_hosts() == postgres::config::LoadBalanceHosts::Random {
        text.push_str(" load_balance_hosts=random");
    }
    if route.channel_binding == wire::ChannelBinding::Require {
        text.push_str(" channel_binding=require");
    }
    if tls.mode != SslMode::Prefer {
        text.push_str(&format!(" sslmode={}", tls.mode));
    }
    if let Some(cert) = &tls.client_cert {
        text.push_str(&format!(" sslcert={}", cert.display()));
    }
    text
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
