//! A connection kept across requests (pool mode), in the shape the run's `Prepare` asks for:
//! a named statement prepared once, or the unnamed statement parsed with every request so that
//! nothing lives on the server between transactions (a transaction-mode pooler).

use std::time::{Duration, Instant};

use postgres::Client;

use crate::model::outcome::{Failure, FailureClass};
use crate::model::query::highest_placeholder;
use crate::model::record::RequestRecord;
use crate::pg::request::{self, Prepare, RequestSpec, Session};
use crate::pg::wire::{self, WireError};

/// One worker's connection.
pub enum Kept {
    /// The `postgres` crate with the query prepared once (`--prepare once --client postgres`).
    Prepared(Session),
    /// The lean connection with the query prepared once (`--prepare once`, the default), the
    /// settings in each transaction through a pooler that refused them at startup.
    LeanPrepared(wire::Session),
    /// The lean connection, the unnamed statement per request (`--prepare never`).
    Lean(wire::Connection),
    /// The `postgres` crate, the unnamed statement per request (`--prepare never
    /// --client postgres`), and the host of the list it reached.
    Plain(Client, Option<u8>),
}

impl Kept {
    /// Connects (and prepares, for `Prepare::Once`) within the request deadline.
    pub fn open(spec: &RequestSpec) -> Result<Kept, Failure> {
        let deadline = Instant::now() + spec.timeout;
        match (spec.prepare, &spec.lean) {
            // Settings in-band (a pooler) go in one write with the query, one round trip;
            // the postgres crate's session would need three.
            (Prepare::Once, Some(params)) => {
                let has_param = highest_placeholder(&spec.query) > 0;
                wire::Session::open(params, &spec.query, has_param, deadline)
                    .map(Kept::LeanPrepared)
                    .map_err(|err| err.failure())
            }
            (Prepare::Once, None) if spec.in_band.is_some() => Err(Failure::new(
                FailureClass::Io,
                "--prepare once through a pooler needs the lean client: drop --client postgres",
            )),
            (Prepare::Once, None) => Session::open(spec).map(Kept::Prepared),
            (Prepare::Never, Some(params)) => wire::Connection::connect(params, deadline)
                .map(Kept::Lean)
                .map_err(|err| err.failure()),
            (Prepare::Never, None) => spec
                .connect_node()
                .map(|(client, node)| Kept::Plain(client, node)),
        }
    }

    /// One request; the record, and whether the connection may serve the next one.
    pub fn execute(
        &mut self,
        spec: &RequestSpec,
        param: Option<&str>,
        start_offset: Duration,
    ) -> (RequestRecord, bool) {
        match self {
            Kept::Prepared(session) => {
                let record = request::execute_on(session, param, start_offset);
                (record, !session.client.is_closed())
            }
            Kept::Lean(conn) => {
                let started = Instant::now();
                conn.set_deadline(started + spec.timeout);
                let result = conn.request(&spec.query, param, spec.in_band.as_ref());
                let node = spec.hosts.node_of(conn.node());
                lean_record(result, started, start_offset, node)
            }
            Kept::LeanPrepared(session) => {
                let started = Instant::now();
                let deadline = started + spec.timeout;
                let result = session.execute_with(param, spec.in_band.as_ref(), deadline);
                let node = spec.hosts.node_of(session.conn.node());
                lean_record(result, started, start_offset, node)
            }
            Kept::Plain(client, node) => {
                let started = Instant::now();
                let outcome = request::run_query(client, spec, param);
                let record = kept_record(started.elapsed(), outcome, start_offset, *node);
                (record, !client.is_closed())
            }
        }
    }
}

fn lean_record(
    result: Result<u64, WireError>,
    started: Instant,
    start_offset: Duration,
    node: Option<u8>,
) -> (RequestRecord, bool) {
    // After the server's own error the connection is ready again (rolled back), unless the
    // error ended the session (class 57P: terminated, shutting down); after any other (a
    // deadline, a reset) its state is unknown: it is replaced.
    let usable = match &result {
        Ok(_) => true,
        Err(WireError::Server { code, .. }) => !code.starts_with("57P"),
        Err(_) => false,
    };
    let outcome = wire::rows_outcome(result);
    (
        kept_record(started.elapsed(), outcome, start_offset, node),
        usable,
    )
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
