//! A connection kept across requests (pool mode), whichever client holds it, in the shape the
//! run's `Prepare` asks for: a named statement prepared once, or the unnamed statement parsed
//! with every request so that nothing lives on the server between transactions (a
//! transaction-mode pooler). Each client is one implementation of `KeptSession`; the pool
//! and the pre-flight see only the trait.

use std::time::{Duration, Instant};

use postgres::types::Type;
use postgres::{Client, Statement};

use super::{Prepare, RequestSpec, TextParam, classify, rows_outcome, run_query};
use crate::model::outcome::{Failure, FailureClass};
use crate::model::query::highest_placeholder;
use crate::model::record::RequestRecord;
use crate::pg::wire::{self, WireError};

/// One worker's connection, kept from request to request.
pub trait KeptSession: Send {
    /// One request; the record, and whether the connection may serve the next one.
    fn execute(
        &mut self,
        spec: &RequestSpec,
        param: Option<&str>,
        start_offset: Duration,
    ) -> (RequestRecord, bool);
}

pub type Kept = Box<dyn KeptSession>;

/// Connects (and prepares, for `Prepare::Once`) within the request deadline, with the run's
/// client.
pub fn open(spec: &RequestSpec) -> Result<Kept, Failure> {
    match &spec.lean {
        Some(params) => LeanKept::open(spec, params).map(|kept| Box::new(kept) as Kept),
        None => PostgresKept::open(spec).map(|kept| Box::new(kept) as Kept),
    }
}

/// pgstress's own connection: a prepared session, or a connection sending the unnamed
/// statement with every request.
enum LeanKept {
    /// Prepared once; the settings go in each transaction through a pooler that refused them
    /// at startup, in one write with the query (one round trip).
    Prepared(wire::Session),
    Plain(wire::Connection),
}

impl LeanKept {
    fn open(spec: &RequestSpec, params: &wire::ConnectParams) -> Result<Self, Failure> {
        let deadline = Instant::now() + spec.timeout;
        let opened = match spec.prepare {
            Prepare::Once => {
                let has_param = highest_placeholder(&spec.query) > 0;
                wire::Session::open(params, &spec.query, has_param, deadline)
                    .map(LeanKept::Prepared)
            }
            Prepare::Never => wire::Connection::connect(params, deadline).map(LeanKept::Plain),
        };
        opened.map_err(|err| err.failure())
    }
}

impl KeptSession for LeanKept {
    fn execute(
        &mut self,
        spec: &RequestSpec,
        param: Option<&str>,
        start_offset: Duration,
    ) -> (RequestRecord, bool) {
        let started = Instant::now();
        let deadline = started + spec.timeout;
        let (result, node) = match self {
            LeanKept::Plain(conn) => {
                conn.set_deadline(deadline);
                let result = conn.request(&spec.query, param, spec.in_band.as_ref());
                (result, conn.node())
            }
            LeanKept::Prepared(session) => {
                let result = session.execute_with(param, spec.in_band.as_ref(), deadline);
                (result, session.conn.node())
            }
        };
        // After the server's own error the connection is ready again (rolled back), unless the
        // error ended the session (class 57P: terminated, shutting down); after any other (a
        // deadline, a reset) its state is unknown: it is replaced.
        let usable = match &result {
            Ok(_) => true,
            Err(WireError::Server { code, .. }) => !code.starts_with("57P"),
            Err(_) => false,
        };
        let outcome = wire::rows_outcome(result);
        let node = spec.hosts.node_of(node);
        (
            kept_record(started.elapsed(), outcome, start_offset, node),
            usable,
        )
    }
}

/// The `postgres` crate's client, with the query prepared on it once (`Some` statement) or
/// sent unnamed with every request.
struct PostgresKept {
    client: Client,
    statement: Option<Statement>,
    /// The host of the list it reached, when the list has several.
    node: Option<u8>,
}

impl PostgresKept {
    /// Connects and, for `Prepare::Once`, prepares the query with `$1` typed `unknown` so the
    /// server infers its type.
    fn open(spec: &RequestSpec) -> Result<Self, Failure> {
        let (mut client, node) = spec.connect_node()?;
        let statement = match spec.prepare {
            // The crate cannot carry the settings in the prepared statement's transaction.
            Prepare::Once if spec.in_band.is_some() => {
                return Err(Failure::new(
                    FailureClass::Io,
                    "--prepare once through a pooler needs the lean client: drop --client postgres",
                ));
            }
            Prepare::Once => {
                let types: &[Type] = match highest_placeholder(&spec.query) {
                    0 => &[],
                    _ => &[Type::UNKNOWN],
                };
                let prepared = client.prepare_typed(&spec.query, types);
                Some(prepared.map_err(|err| classify::failure_of(&err))?)
            }
            Prepare::Never => None,
        };
        Ok(PostgresKept {
            client,
            statement,
            node,
        })
    }
}

impl KeptSession for PostgresKept {
    fn execute(
        &mut self,
        spec: &RequestSpec,
        param: Option<&str>,
        start_offset: Duration,
    ) -> (RequestRecord, bool) {
        let started = Instant::now();
        // A prepared statement is a single round trip, bind and execute.
        let outcome = match (&self.statement, param) {
            (Some(statement), Some(value)) => {
                rows_outcome(self.client.query(statement, &[&TextParam(value)]))
            }
            (Some(statement), None) => rows_outcome(self.client.query(statement, &[])),
            (None, _) => run_query(&mut self.client, spec, param),
        };
        let record = kept_record(started.elapsed(), outcome, start_offset, self.node);
        (record, !self.client.is_closed())
    }
}

fn kept_record(
    query: Duration,
    outcome: Result<(), Failure>,
    start_offset: Duration,
    node: Option<u8>,
) -> RequestRecord {
    RequestRecord {
        start_offset: Some(start_offset),
        queue_wait: None,
        connect: None,
        query: Some(query),
        latency: query,
        outcome,
        node,
        client: None,
    }
}
