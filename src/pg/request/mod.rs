//! One request against PostgreSQL, and what it measured; the connections a pool keeps
//! across requests (kept), and why a request failed (classify), whichever client sent it.

pub mod classify;
pub mod kept;

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config};

use crate::model::outcome::{Failure, FailureClass};
use crate::model::record::RequestRecord;
use crate::pg::target::ConnectError;
use crate::pg::target::route::{Route, connect_postgres};
use crate::pg::target::tls::{Connector, TlsError, TlsOptions};
use crate::pg::wire::{self, ConnectParams, Hosts, InBand, ReadySocket};

/// Which client library sends the requests that open a connection each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RequestClient {
    /// pgstress's own blocking connection: one socket, no runtime, SCRAM keys derived once
    /// per run unless `scram_per_connection`.
    Lean { scram_per_connection: bool },
    /// The `postgres` crate, an independent client: to check that a figure does not depend on
    /// pgstress's own wire code.
    Postgres,
}

/// How a kept connection (pool mode) runs the query.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Prepare {
    /// Prepared once per connection as a named statement: one Bind/Execute per request. It
    /// lives on the server connection, so a transaction-mode pooler breaks it.
    Once,
    /// The unnamed statement, parsed with every request (still one round trip): nothing is
    /// left on the server between transactions.
    Never,
}

impl Prepare {
    pub fn name(self) -> &'static str {
        match self {
            Prepare::Once => "once",
            Prepare::Never => "never",
        }
    }
}

/// What every request of a run sends.
#[derive(Clone)]
pub struct RequestSpec {
    pub config: Config,
    /// The hosts of `config`, as the route chooses among them (the `postgres` client's).
    pub hosts: Hosts,
    pub connector: Connector,
    pub query: String,
    /// The deadline of one request, connect plus query. The server and the connect enforce it
    /// each on its part; a request that got through both but took longer in all is late.
    pub timeout: Duration,
    /// Connection per request through pgstress's own lean connection (`pg::wire`), set up
    /// once for the run; None: through the `postgres` crate (`--client postgres`).
    pub lean: Option<ConnectParams>,
    /// The settings (read-only, statement_timeout) sent in each request's transaction, when
    /// the target refuses them as a startup parameter (a pooler); None: in the startup packet.
    pub in_band: Option<InBand>,
    /// How a kept connection runs the query.
    pub prepare: Prepare,
}

impl RequestSpec {
    /// What every request sends, through the chosen client. The lean connection's settings are
    /// read once here from the `postgres` crate's and the target's TLS options and route.
    pub fn new(
        config: Config,
        tls: &TlsOptions,
        route: Route,
        query: String,
        timeout: Duration,
        client: RequestClient,
    ) -> Result<Self, TlsError> {
        let lean = match client {
            RequestClient::Postgres => None,
            RequestClient::Lean {
                scram_per_connection,
            } => {
                let mut params = route.apply(ConnectParams::from_config(&config, tls)?);
                params.scram_per_connection = scram_per_connection;
                Some(params)
            }
        };
        let mut hosts = Hosts::from_config(&config);
        hosts.attrs = route.attrs;
        Ok(RequestSpec {
            connector: Connector::build(tls)?,
            hosts,
            config,
            query,
            timeout,
            lean,
            in_band: None,
            prepare: Prepare::Once,
        })
    }

    /// The same requests with their settings in each transaction (`in_band`) and the kept
    /// connections' statements as `prepare` says.
    pub fn with_settings(mut self, in_band: Option<InBand>, prepare: Prepare) -> Self {
        if let Some(params) = &mut self.lean {
            params.in_band = in_band;
        }
        self.in_band = in_band;
        self.prepare = prepare;
        self
    }

    /// A socket made ahead for one request through the lean connection, where there can be one
    /// (`wire::ReadySocket`).
    pub fn ready_socket(&self) -> Option<ReadySocket> {
        self.lean.as_ref().and_then(ReadySocket::new)
    }

    /// A `postgres` crate connection on the server the host list leads to.
    pub fn connect(&self) -> Result<Client, Failure> {
        self.connect_node().map(|(client, _)| client)
    }

    /// The same, with the host of the list it reached when the list has several.
    pub fn connect_node(&self) -> Result<(Client, Option<u8>), Failure> {
        match connect_postgres(&self.connector, &self.config, &self.hosts) {
            Ok((client, node)) => Ok((client, self.hosts.node_of(node))),
            Err(ConnectError::Server(err)) => Err(classify::failure_of(&err)),
            Err(ConnectError::Wire(err)) => Err(err.failure()),
            Err(other) => Err(Failure::new(FailureClass::Io, other.to_string())),
        }
    }
}

/// One request on a new connection: open, run the query, read the rows, close.
pub fn execute(spec: &RequestSpec, param: Option<&str>, start_offset: Duration) -> RequestRecord {
    execute_ready(spec, None, param, start_offset)
}

/// As `execute`, on a socket made ahead by `RequestSpec::ready_socket` when there is one.
pub fn execute_ready(
    spec: &RequestSpec,
    ready: Option<ReadySocket>,
    param: Option<&str>,
    start_offset: Duration,
) -> RequestRecord {
    let started = Instant::now();
    let wire::Timed {
        connect,
        query,
        outcome,
        node,
    } = match &spec.lean {
        Some(params) => {
            let deadline = started + spec.timeout;
            wire::timed_request(params, ready, &spec.query, param, deadline)
        }
        None => postgres_request(spec, param, started),
    };
    let latency = match (connect, query) {
        (Some(connect), Some(query)) => connect + query,
        _ => started.elapsed(),
    };
    RequestRecord {
        start_offset: Some(start_offset),
        queue_wait: None,
        connect,
        query,
        latency,
        outcome: within_deadline(outcome, latency, spec.timeout),
        node,
        client: None,
    }
}

/// One request through the `postgres` crate: its connect and query times, and its outcome.
fn postgres_request(spec: &RequestSpec, param: Option<&str>, started: Instant) -> wire::Timed {
    match spec.connect_node() {
        Err(failure) => wire::Timed {
            connect: None,
            query: None,
            outcome: Err(failure),
            node: None,
        },
        Ok((mut client, node)) => {
            let connected = Instant::now();
            let outcome = run_query(&mut client, spec, param);
            wire::Timed {
                connect: Some(connected - started),
                query: Some(connected.elapsed()),
                outcome,
                node,
            }
            // The client closes as it drops here: closing is not part of the latency.
        }
    }
}

/// A request whose thread started `lag` after the release: its latency and its deadline run
/// from the release, as for a client that arrived then; the lag is kept as its wait.
pub fn late_by(record: RequestRecord, lag: Duration, deadline: Duration) -> RequestRecord {
    let mut record = record.after_waiting(lag);
    record.outcome = within_deadline(record.outcome, record.latency, deadline);
    record
}

/// A success that came after the deadline is a timeout: the user stopped waiting for it.
pub fn within_deadline(
    outcome: Result<(), Failure>,
    latency: Duration,
    deadline: Duration,
) -> Result<(), Failure> {
    match outcome {
        Ok(()) if latency > deadline => Err(Failure::new(
            FailureClass::Timeout,
            format!(
                "answered after {:.1} ms, past the {} ms deadline",
                latency.as_secs_f64() * 1000.0,
                deadline.as_millis()
            ),
        )),
        other => other,
    }
}

/// Runs the query and reads its rows: success means at least one row (the original's rule).
/// One round trip: parse, bind and execute go together, `$1` typed `unknown` so that the
/// server infers its type as it would for an untyped parameter (a plain `query` would spend
/// two more round trips preparing and closing a statement first).
pub fn run_query(
    client: &mut Client,
    spec: &RequestSpec,
    param: Option<&str>,
) -> Result<(), Failure> {
    let Some(settings) = &spec.in_band else {
        return query_rows(client, spec, param);
    };
    // The postgres crate cannot pipeline the transaction: three round trips.
    let begin = format!("{}; {}", settings.begin(), settings.set_timeout());
    let outcome = client
        .batch_execute(&begin)
        .map_err(|err| crate::pg::request::classify::failure_of(&err))
        .and_then(|()| query_rows(client, spec, param));
    let end = match outcome {
        Ok(()) => "COMMIT",
        Err(_) => "ROLLBACK",
    };
    match client.batch_execute(end) {
        Err(err) if outcome.is_ok() => Err(crate::pg::request::classify::failure_of(&err)),
        _ => outcome,
    }
}

fn query_rows(client: &mut Client, spec: &RequestSpec, param: Option<&str>) -> Result<(), Failure> {
    let result = match param {
        Some(value) => {
            client.query_typed(spec.query.as_str(), &[(&TextParam(value), Type::UNKNOWN)])
        }
        None => client.query_typed(spec.query.as_str(), &[]),
    };
    rows_outcome(result)
}

pub(super) fn rows_outcome(
    result: Result<Vec<postgres::Row>, postgres::Error>,
) -> Result<(), Failure> {
    match result {
        Ok(rows) if rows.is_empty() => Err(Failure::new(FailureClass::NoRow, "no row came back")),
        Ok(_) => Ok(()),
        Err(err) => Err(crate::pg::request::classify::failure_of(&err)),
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
    fn a_late_success_is_a_timeout_and_a_late_failure_keeps_its_class() {
        let deadline = Duration::from_millis(1000);
        assert_eq!(
            within_deadline(Ok(()), Duration::from_millis(1000), deadline),
            Ok(())
        );
        let late = within_deadline(Ok(()), Duration::from_millis(1020), deadline).unwrap_err();
        assert_eq!(late.class, FailureClass::Timeout);
        assert!(
            late.message.contains("1000 ms deadline"),
            "{}",
            late.message
        );
        let refused = Failure::new(FailureClass::TooManyClients, "53300: too many clients");
        assert_eq!(
            within_deadline(Err(refused.clone()), Duration::from_secs(5), deadline),
            Err(refused)
        );
    }
}
