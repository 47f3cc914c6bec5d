//! The target in the `postgres` crate's terms and in the terms it is shown in: its
//! configuration built from libpq's resolved keywords, `connect_timeout` read as libpq reads
//! it, and the target as printed (every host, the password masked).

use std::time::Duration;

use postgres::Config;
use postgres::config::Host;

use super::libpq::Resolved;
use super::route::Route;
use super::tls::{SslMode, TlsOptions};
use super::{DEFAULT_SETUP_TIMEOUT, TargetError};
use crate::pg::wire;

/// The `postgres` crate's configuration of the keywords it applies itself, set through its
/// builder (the others are pgstress's: TLS, timeouts, `target_session_attrs`, whose primary,
/// standby and prefer-standby the crate lacks). A value is never repeated in an error: it may
/// be a password.
pub(super) fn wire_config(resolved: &Resolved) -> Result<Config, TargetError> {
    let bad = |key: &str, what: &str| TargetError::BadDsn {
        reason: format!("{key} is not {what}"),
    };
    let list = |key: &str| {
        resolved
            .get(key)
            .map(|text| text.split(',').map(str::trim).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let mut config = Config::new();
    for host in list("host") {
        match host.starts_with('/') {
            true => config.host_path(host),
            false => config.host(host),
        };
    }
    for addr in list("hostaddr") {
        config.hostaddr(addr.parse().map_err(|_| bad("hostaddr", "an IP address"))?);
    }
    for port in list("port").into_iter().filter(|p| !p.is_empty()) {
        config.port(port.parse().map_err(|_| bad("port", "a port number"))?);
    }
    if let Some(user) = resolved.get("user") {
        config.user(user);
    }
    if let Some(password) = resolved.get("password") {
        config.password(password);
    }
    if let Some(dbname) = resolved.get("dbname") {
        config.dbname(dbname);
    }
    if let Some(options) = resolved.get("options") {
        config.options(options);
    }
    if let Some(on) = resolved.get("keepalives") {
        config.keepalives(on.trim() != "0");
    }
    if let Some(idle) = resolved.get("keepalives_idle") {
        let seconds: u64 = idle
            .trim()
            .parse()
            .map_err(|_| bad("keepalives_idle", "a number of seconds"))?;
        config.keepalives_idle(Duration::from_secs(seconds));
    }
    config.channel_binding(match resolved.get("channel_binding").map(str::trim) {
        Some("disable") => postgres::config::ChannelBinding::Disable,
        Some("require") => postgres::config::ChannelBinding::Require,
        _ => postgres::config::ChannelBinding::Prefer,
    });
    match resolved.get("load_balance_hosts").map(str::trim) {
        None | Some("disable") => {}
        Some("random") => {
            config.load_balance_hosts(postgres::config::LoadBalanceHosts::Random);
        }
        Some(_) => return Err(bad("load_balance_hosts", "disable or random")),
    }
    Ok(config)
}

/// libpq's `connect_timeout`: whole seconds, at least 2; 0 (libpq: wait forever) keeps
/// pgstress's default, since every wait here has a deadline.
pub(super) fn connect_timeout(value: Option<&str>) -> Result<Duration, TargetError> {
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
pub(super) fn describe(config: &Config, tls: &TlsOptions, route: &Route) -> String {
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
