//! libpq's keywords for choosing among the hosts and for what a login must be
//! (`target_session_attrs`, `connect_timeout` per attempt, `channel_binding`, `keepalives`),
//! read once from the resolved settings and applied to every connection pgstress makes, so
//! the pre-flight, the monitor and the load all reach the node psql would.

use std::time::Duration;

use postgres::config::{LoadBalanceHosts, TargetSessionAttrs};
use postgres::{Client, Config};

use super::libpq::Resolved;
use super::tls::Connector;
use super::{ConnectError, TargetError};
use crate::pg::wire::{
    Address, ChannelBinding, ConnectParams, Endpoint, Hosts, NodeKind, SessionAttrs, WireError,
};

/// What libpq's keywords ask of every connection beyond its address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Route {
    pub attrs: SessionAttrs,
    /// `connect_timeout`, when given: each address's attempt bound.
    pub attempt_timeout: Option<Duration>,
    pub channel_binding: ChannelBinding,
    /// `keepalives` / `keepalives_idle`, when given (None: not asked).
    pub keepalives: Option<Option<Duration>>,
}

impl Route {
    pub fn from_resolved(resolved: &Resolved) -> Result<Self, TargetError> {
        let bad = |reason: String| TargetError::BadDsn { reason };
        let attrs = match resolved.get("target_session_attrs") {
            None => SessionAttrs::Any,
            Some(text) => SessionAttrs::parse(text).ok_or_else(|| {
                bad(format!(
                    "target_session_attrs \"{text}\" is not one of {}",
                    SessionAttrs::NAMES.join(", ")
                ))
            })?,
        };
        let channel_binding = match resolved.get("channel_binding").map(str::trim) {
            None | Some("prefer") => ChannelBinding::Prefer,
            Some("disable") => ChannelBinding::Disable,
            Some("require") => ChannelBinding::Require,
            Some(other) => {
                return Err(bad(format!(
                    "channel_binding \"{other}\" is not one of disable, prefer, require"
                )));
            }
        };
        let seconds = |key: &str| -> Result<Option<u64>, TargetError> {
            resolved
                .get(key)
                .map(|text| {
                    text.trim().parse::<u64>().map_err(|_| {
                        bad(format!("{key} \"{text}\" is not a whole number of seconds"))
                    })
                })
                .transpose()
        };
        let idle = seconds("keepalives_idle")?.map(Duration::from_secs);
        let keepalives = match seconds("keepalives")? {
            Some(0) => None,
            Some(_) => Some(idle),
            None => idle.map(Some),
        };
        // libpq: 0 or less waits forever (pgstress keeps its own deadline); 1 is taken as 2.
        let attempt_timeout = seconds("connect_timeout")
            .ok()
            .flatten()
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s.max(2)));
        Ok(Route {
            attrs,
            attempt_timeout,
            channel_binding,
            keepalives,
        })
    }

    /// The lean client's settings for `params`' hosts, as this route asks.
    pub fn apply(&self, mut params: ConnectParams) -> ConnectParams {
        params.hosts.attrs = self.attrs;
        params.hosts.attempt_timeout = self.attempt_timeout;
        params.channel_binding = self.channel_binding;
        params.keepalives = self.keepalives;
        params
    }
}

/// A `postgres` crate client on the server the host list leads to, chosen as the lean client
/// chooses (the crate knows neither primary, standby nor prefer-standby), and which endpoint
/// it is.
pub fn connect_postgres(
    connector: &Connector,
    config: &Config,
    hosts: &Hosts,
) -> Result<(Client, usize), ConnectError> {
    if hosts.single().is_some() {
        return Ok((connector.connect(config).map_err(ConnectError::Server)?, 0));
    }
    let ours = config
        .get_options()
        .is_some_and(|options| options.contains("default_transaction_read_only"));
    let mut last = None;
    for (want, node) in hosts.attempts() {
        let endpoint = &hosts.endpoints[node];
        let mut client = match connector.connect(&single_host(config, endpoint)) {
            Ok(client) => client,
            Err(err) => {
                last = Some(ConnectError::Server(err));
                continue;
            }
        };
        if want == SessionAttrs::Any || want.accepts(kind_of(&mut client, ours)?) {
            return Ok((client, node));
        }
        last = Some(ConnectError::Wire(WireError::WrongNode {
            endpoint: endpoint.describe(),
            wanted: hosts.attrs,
        }));
    }
    Err(last.unwrap_or(ConnectError::Wire(WireError::protocol(
        "the host list is empty",
    ))))
}

/// What kind of server a client reached, asked as libpq asks a server before PostgreSQL 14.
fn kind_of(client: &mut Client, ours: bool) -> Result<NodeKind, ConnectError> {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), \
             pg_catalog.current_setting('default_transaction_read_only') = 'on'",
            &[],
        )
        .map_err(ConnectError::Server)?;
    let read_only: bool = row.get(1);
    Ok(NodeKind::asked(row.get(0), (!ours).then_some(read_only)))
}

/// `config` with one endpoint of its list in place of the list.
pub fn single_host(config: &Config, endpoint: &Endpoint) -> Config {
    let mut one = Config::new();
    match &endpoint.address {
        Address::Tcp { host, port } => {
            one.host(&endpoint.name).port(*port);
            if let Ok(ip) = host.parse() {
                one.hostaddr(ip);
            }
        }
        Address::Unix(path) => {
            let dir = path.parent().unwrap_or(path);
            one.host_path(dir);
            let port = path
                .extension()
                .and_then(|ext| ext.to_str()?.parse().ok())
                .unwrap_or(5432);
            one.port(port);
        }
    }
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    if let Some(timeout) = config.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    one.ssl_mode(config.get_ssl_mode())
        .channel_binding(config.get_channel_binding())
        .keepalives(config.get_keepalives())
        .keepalives_idle(config.get_keepalives_idle())
        .target_session_attrs(TargetSessionAttrs::Any)
        .load_balance_hosts(LoadBalanceHosts::Disable);
    one
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dsn: &str) -> Result<Route, TargetError> {
        let inputs = crate::pg::target::libpq::Inputs {
            dsn: Some((dsn.to_owned(), "the DSN".to_owned())),
            ..Default::default()
        };
        Route::from_resolved(&crate::pg::target::libpq::resolve(&inputs).unwrap())
    }

    #[test]
    fn each_keyword_is_read_as_libpq_reads_it() {
        let all = route(
            "host=a,b target_session_attrs=prefer-standby channel_binding=require \
             keepalives_idle=30 connect_timeout=1",
        )
        .unwrap();
        assert_eq!(all.attrs, SessionAttrs::PreferStandby);
        assert_eq!(all.channel_binding, ChannelBinding::Require);
        assert_eq!(all.keepalives, Some(Some(Duration::from_secs(30))));
        assert_eq!(all.attempt_timeout, Some(Duration::from_secs(2)));
        assert_eq!(route("host=a").unwrap(), Route::default());
        assert_eq!(
            route("host=a keepalives=0 keepalives_idle=9")
                .unwrap()
                .keepalives,
            None
        );
        assert_eq!(route("host=a keepalives=1").unwrap().keepalives, Some(None));
        let bad = route("host=a target_session_attrs=master")
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("\"master\"") && bad.contains("prefer-standby"),
            "{bad}"
        );
        assert!(route("host=a channel_binding=always").is_err());
    }
}
