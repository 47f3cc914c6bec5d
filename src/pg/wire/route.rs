//! Which server of a host list a connection reaches, chosen as libpq chooses it (libpq's
//! "Specifying Multiple Hosts"): the hosts in order (shuffled under `load_balance_hosts=random`),
//! every address a name resolves to in turn, each attempt bounded by `connect_timeout`, and a
//! server kept only when it is the kind `target_session_attrs` asks for; otherwise the next
//! host. psql and pgbench inherit this from libpq, so pgstress's load reaches the node they
//! would.

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;

use super::connect::{Address, ConnectParams, Connection};
use super::error::WireError;

/// One entry of the host list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// What is dialed: `hostaddr` when given, else `host`.
    pub address: Address,
    /// The host as named (`host`, else `hostaddr`): what TLS's `verify-full` checks the
    /// certificate against, and what is shown.
    pub name: String,
}

impl Endpoint {
    /// `host:port`, or the socket's path.
    pub fn describe(&self) -> String {
        match &self.address {
            Address::Tcp { port, .. } => format!("{}:{port}", self.name),
            Address::Unix(path) => path.display().to_string(),
        }
    }
}

/// libpq's `target_session_attrs`: the kind of server a connection must reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionAttrs {
    #[default]
    Any,
    /// Accepts writes by default: not in hot standby, `default_transaction_read_only` off.
    ReadWrite,
    ReadOnly,
    /// Not in hot standby.
    Primary,
    /// In hot standby.
    Standby,
    /// A standby if any answers, else any server.
    PreferStandby,
}

impl SessionAttrs {
    pub const NAMES: [&'static str; 6] = [
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ];

    pub fn parse(text: &str) -> Option<Self> {
        let all = [
            SessionAttrs::Any,
            SessionAttrs::ReadWrite,
            SessionAttrs::ReadOnly,
            SessionAttrs::Primary,
            SessionAttrs::Standby,
            SessionAttrs::PreferStandby,
        ];
        let at = Self::NAMES.iter().position(|name| *name == text.trim())?;
        Some(all[at])
    }

    pub fn name(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::ReadOnly => "read-only",
            SessionAttrs::Primary => "primary",
            SessionAttrs::Standby => "standby",
            SessionAttrs::PreferStandby => "prefer-standby",
        }
    }

    /// Whether a server of this kind will do. `PreferStandby` takes a standby here; its
    /// second pass asks `Any`.
    pub fn accepts(self, kind: NodeKind) -> bool {
        match self {
            SessionAttrs::Any => true,
            SessionAttrs::ReadWrite => !kind.read_only(),
            SessionAttrs::ReadOnly => kind.read_only(),
            SessionAttrs::Primary => !kind.in_hot_standby,
            SessionAttrs::Standby | SessionAttrs::PreferStandby => kind.in_hot_standby,
        }
    }

    /// Whether a refused kind means the server was read-only (a `read-write` or `primary`
    /// target that found only standbys): the class a request counts it under.
    pub fn wanted_writes(self) -> bool {
        matches!(self, SessionAttrs::ReadWrite | SessionAttrs::Primary)
    }
}

/// What kind of server a connection reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeKind {
    pub in_hot_standby: bool,
    /// The server's own `default_transaction_read_only` (None when pgstress set it itself
    /// for the session, so the session's value says nothing of the server's).
    pub default_read_only: Option<bool>,
}

impl NodeKind {
    /// A server that answered `pg_is_in_recovery()` and, unless pgstress set the session's
    /// own, `default_transaction_read_only` (as libpq asks a server before PostgreSQL 14).
    pub fn asked(in_recovery: bool, default_read_only: Option<bool>) -> Self {
        NodeKind {
            in_hot_standby: in_recovery,
            default_read_only,
        }
    }

    fn read_only(self) -> bool {
        self.in_hot_standby || self.default_read_only == Some(true)
    }
}

/// The host list and how to choose among it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    pub endpoints: Vec<Endpoint>,
    pub attrs: SessionAttrs,
    /// `load_balance_hosts=random`: the hosts, and each one's addresses, in random order.
    pub load_balance: bool,
    /// libpq's `connect_timeout`: the bound of each address's attempt; None: the
    /// connection's own deadline.
    pub attempt_timeout: Option<Duration>,
}

impl Hosts {
    /// One server, taken whatever its kind.
    pub fn one(address: Address) -> Self {
        let name = match &address {
            Address::Tcp { host, .. } => host.clone(),
            Address::Unix(path) => path.display().to_string(),
        };
        Hosts {
            endpoints: vec![Endpoint { address, name }],
            attrs: SessionAttrs::Any,
            load_balance: false,
            attempt_timeout: None,
        }
    }

    /// The hosts of a `postgres` crate configuration (`host`, `hostaddr`, `port` lists),
    /// tried in order, any kind of server.
    pub fn from_config(config: &postgres::Config) -> Hosts {
        let ports = config.get_ports();
        let port_of = |at: usize| match ports {
            [] => 5432,
            [one] => *one,
            many => many.get(at).copied().unwrap_or(5432),
        };
        let addrs = config.get_hostaddrs();
        let mut endpoints: Vec<Endpoint> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(at, host)| {
                let (name, address) = match host {
                    postgres::config::Host::Tcp(name) => {
                        let dialed = addrs.get(at).map_or(name.clone(), |ip| ip.to_string());
                        let address = Address::Tcp {
                            host: dialed,
                            port: port_of(at),
                        };
                        (name.clone(), address)
                    }
                    postgres::config::Host::Unix(dir) => {
                        let path = dir.join(format!(".s.PGSQL.{}", port_of(at)));
                        (path.display().to_string(), Address::Unix(path))
                    }
                };
                Endpoint { address, name }
            })
            .collect();
        // hostaddr alone: the addresses are dialed and named.
        if endpoints.is_empty() {
            endpoints = addrs
                .iter()
                .enumerate()
                .map(|(at, ip)| Endpoint {
                    address: Address::Tcp {
                        host: ip.to_string(),
                        port: port_of(at),
                    },
                    name: ip.to_string(),
                })
                .collect();
        }
        if endpoints.is_empty() {
            endpoints = Hosts::one(Address::Tcp {
                host: "localhost".into(),
                port: port_of(0),
            })
            .endpoints;
        }
        Hosts {
            endpoints,
            attrs: SessionAttrs::Any,
            load_balance: config.get_load_balance_hosts()
                == postgres::config::LoadBalanceHosts::Random,
            attempt_timeout: None,
        }
    }

    /// The only endpoint, when there is one and any kind of server will do.
    pub fn single(&self) -> Option<&Endpoint> {
        match (self.endpoints.as_slice(), self.attrs) {
            ([only], SessionAttrs::Any) => Some(only),
            _ => None,
        }
    }

    /// The endpoint a connection reached, as a request records it: None with a single host.
    pub fn node_of(&self, node: usize) -> Option<u8> {
        (self.endpoints.len() > 1).then(|| u8::try_from(node).unwrap_or(u8::MAX))
    }

    /// Every endpoint's `host:port`, comma-separated.
    pub fn describe(&self) -> String {
        let all: Vec<String> = self.endpoints.iter().map(Endpoint::describe).collect();
        all.join(",")
    }

    /// Whether every endpoint is on this machine (loopback or a Unix socket).
    pub fn all_local(&self) -> bool {
        self.endpoints.iter().all(|e| match &e.address {
            Address::Tcp { host, .. } => {
                host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Address::Unix(_) => true,
        })
    }
}

impl Hosts {
    /// The endpoints to try, in libpq's order, each with the kind it must be:
    /// `prefer-standby` goes through the list twice, a standby first, then any server.
    pub fn attempts(&self) -> Vec<(SessionAttrs, usize)> {
        let mut order: Vec<usize> = (0..self.endpoints.len()).collect();
        if self.load_balance {
            order.shuffle(&mut rand::rng());
        }
        let passes: &[SessionAttrs] = match self.attrs {
            SessionAttrs::PreferStandby => &[SessionAttrs::Standby, SessionAttrs::Any],
            _ => std::slice::from_ref(&self.attrs),
        };
        passes
            .iter()
            .flat_map(|&want| order.iter().map(move |&node| (want, node)))
            .collect()
    }
}

/// Connects to the first server of the list, in libpq's order, that is the kind asked for;
/// all before `deadline`. The connection knows which endpoint it reached (`node`).
pub(super) fn connect(params: &ConnectParams, deadline: Instant) -> Result<Connection, WireError> {
    let mut last = None;
    for (want, node) in params.hosts.attempts() {
        match try_endpoint(params, node, want, deadline) {
            Ok(conn) => return Ok(conn),
            Err(err) => last = Some(err),
        }
        if Instant::now() >= deadline {
            return Err(last.unwrap_or(WireError::Timeout("connecting")));
        }
    }
    Err(last.unwrap_or_else(|| WireError::protocol("the host list is empty")))
}

/// Every address of one endpoint in turn; a server of the wrong kind ends the endpoint, as
/// in libpq (its other addresses are the same server).
fn try_endpoint(
    params: &ConnectParams,
    node: usize,
    want: SessionAttrs,
    deadline: Instant,
) -> Result<Connection, WireError> {
    let endpoint = &params.hosts.endpoints[node];
    let mut last = None;
    for address in addresses(endpoint, params.hosts.load_balance)? {
        let attempt = match params.hosts.attempt_timeout {
            Some(bound) => deadline.min(Instant::now() + bound),
            None => deadline,
        };
        let mut conn = match Connection::open(params, endpoint, &address, attempt) {
            Ok(conn) => conn,
            Err(err) => {
                last = Some(err);
                continue;
            }
        };
        conn.node = node;
        conn.set_deadline(deadline);
        if want == SessionAttrs::Any || want.accepts(conn.kind(params)?) {
            return Ok(conn);
        }
        return Err(WireError::WrongNode {
            endpoint: endpoint.describe(),
            wanted: params.hosts.attrs,
        });
    }
    Err(last.unwrap_or_else(|| {
        WireError::protocol(format!("{} resolves to no address", endpoint.name))
    }))
}

/// The addresses an endpoint's name resolves to (an IP or a socket is its own).
fn addresses(endpoint: &Endpoint, shuffle: bool) -> Result<Vec<Address>, WireError> {
    let Address::Tcp { host, port } = &endpoint.address else {
        return Ok(vec![endpoint.address.clone()]);
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(vec![endpoint.address.clone()]);
    }
    let mut all: Vec<Address> = (host.as_str(), *port)
        .to_socket_addrs()
        .map_err(WireError::Io)?
        .map(|addr| Address::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        })
        .collect();
    if shuffle {
        all.shuffle(&mut rand::rng());
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_taken_as_libpq_takes_it() {
        let primary = NodeKind {
            in_hot_standby: false,
            default_read_only: Some(false),
        };
        let standby = NodeKind {
            in_hot_standby: true,
            default_read_only: Some(false),
        };
        let read_only_primary = NodeKind {
            in_hot_standby: false,
            default_read_only: Some(true),
        };
        let accepted = |attrs: SessionAttrs| {
            [primary, standby, read_only_primary].map(|kind| attrs.accepts(kind))
        };
        assert_eq!(accepted(SessionAttrs::Any), [true, true, true]);
        assert_eq!(accepted(SessionAttrs::ReadWrite), [true, false, false]);
        assert_eq!(accepted(SessionAttrs::ReadOnly), [false, true, true]);
        assert_eq!(accepted(SessionAttrs::Primary), [true, false, true]);
        assert_eq!(accepted(SessionAttrs::Standby), [false, true, false]);
        for name in SessionAttrs::NAMES {
            assert_eq!(SessionAttrs::parse(name).unwrap().name(), name);
        }
        assert_eq!(SessionAttrs::parse("master"), None);
    }

    #[test]
    fn attempts_go_in_order_and_prefer_standby_twice() {
        let mut hosts = Hosts::one(Address::Unix("/a".into()));
        hosts.endpoints.push(Endpoint {
            address: Address::Unix("/b".into()),
            name: "b".into(),
        });
        assert_eq!(
            hosts.attempts(),
            [(SessionAttrs::Any, 0), (SessionAttrs::Any, 1)]
        );
        hosts.attrs = SessionAttrs::PreferStandby;
        let standby_then_any = [
            (SessionAttrs::Standby, 0),
            (SessionAttrs::Standby, 1),
            (SessionAttrs::Any, 0),
            (SessionAttrs::Any, 1),
        ];
        assert_eq!(hosts.attempts(), standby_then_any);
        hosts.load_balance = true;
        let firsts: std::collections::BTreeSet<usize> =
            (0..64).map(|_| hosts.attempts()[0].1).collect();
        assert_eq!(firsts.len(), 2, "random order starts at either host");
    }

    #[test]
    fn a_name_is_every_address_it_resolves_to_and_an_ip_is_itself() {
        let endpoint = |host: &str| Endpoint {
            address: Address::Tcp {
                host: host.into(),
                port: 5,
            },
            name: host.into(),
        };
        assert_eq!(addresses(&endpoint("127.0.0.2"), true).unwrap().len(), 1);
        let localhost = addresses(&endpoint("localhost"), false).unwrap();
        assert!(!localhost.is_empty());
        assert!(
            localhost
                .iter()
                .all(|a| matches!(a, Address::Tcp { port: 5, .. }))
        );
    }
}
