//! The query: parse, bind, execute and sync in one write, then the rows counted up to
//! ReadyForQuery. Once per connection (`run_once`), or prepared once and run many times on a
//! kept connection (`Session`).

use std::time::{Duration, Instant};

use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull;
use postgres_protocol::message::backend::{DataRowBody, Message};
use postgres_protocol::message::frontend;

use super::connect::{ConnectParams, Connection, ReadySocket};
use super::error::WireError;
use super::reader::server_error;
use crate::model::outcome::{Failure, FailureClass};

/// `$1`'s type: 0 lets the server infer it, as for an untyped literal.
const UNKNOWN_TYPE: u32 = 0;

/// Settings sent inside each request's own transaction instead of the `options` startup
/// parameter, which a pooler (PgBouncer) refuses: `SET LOCAL` ends with the transaction, so it
/// cannot leak to the next client of a transaction-mode pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InBand {
    pub read_only: bool,
    pub statement_timeout_ms: u128,
}

impl InBand {
    pub fn begin(&self) -> &'static str {
        match self.read_only {
            true => "BEGIN READ ONLY",
            false => "BEGIN",
        }
    }

    pub fn set_timeout(&self) -> String {
        format!(
            "SET LOCAL statement_timeout = {}",
            self.statement_timeout_ms.max(1)
        )
    }
}

impl Connection {
    /// Parse (when `sql` is given), then Bind, Execute and Sync, written at once; returns the
    /// number of rows, or the server's error once it is ready again.
    pub fn query(
        &mut self,
        statement: &str,
        sql: Option<&str>,
        param: Option<&str>,
    ) -> Result<u64, WireError> {
        self.push_query(statement, sql, param)?;
        frontend::sync(&mut self.out);
        self.send("sending the query")?;
        self.read_result()
    }

    /// The query on the unnamed statement; with `in_band`, inside `BEGIN [READ ONLY]`,
    /// `SET LOCAL statement_timeout` ... `COMMIT`, all in the same single write (one round
    /// trip). A failed transaction is rolled back before the connection is used again.
    pub fn request(
        &mut self,
        sql: &str,
        param: Option<&str>,
        in_band: Option<&InBand>,
    ) -> Result<u64, WireError> {
        self.in_transaction_block("", Some(sql), param, in_band)
    }

    /// `query`, wrapped in a transaction carrying the settings when `in_band` is given.
    fn in_transaction_block(
        &mut self,
        statement: &str,
        sql: Option<&str>,
        param: Option<&str>,
        in_band: Option<&InBand>,
    ) -> Result<u64, WireError> {
        let Some(settings) = in_band else {
            return self.query(statement, sql, param);
        };
        self.push_query("", Some(settings.begin()), None)?;
        self.push_query("", Some(&settings.set_timeout()), None)?;
        self.push_query(statement, sql, param)?;
        self.push_query("", Some("COMMIT"), None)?;
        frontend::sync(&mut self.out);
        self.send("sending the query")?;
        let result = self.read_result();
        if self.in_transaction {
            self.rollback()?;
        }
        result
    }

    /// Leaves a failed transaction (a simple-protocol ROLLBACK, one more round trip).
    fn rollback(&mut self) -> Result<(), WireError> {
        frontend::query("ROLLBACK", &mut self.out)
            .map_err(|err| WireError::protocol(format!("cannot encode ROLLBACK: {err}")))?;
        self.send("rolling back")?;
        self.read_result().map(|_| ())
    }

    /// Parse (when `sql` is given), Bind and Execute into the output buffer, not yet sent.
    fn push_query(
        &mut self,
        statement: &str,
        sql: Option<&str>,
        param: Option<&str>,
    ) -> Result<(), WireError> {
        let bad =
            |err: std::io::Error| WireError::protocol(format!("cannot encode the query: {err}"));
        if let Some(sql) = sql {
            let types = param.map(|_| UNKNOWN_TYPE);
            frontend::parse(statement, sql, types, &mut self.out).map_err(bad)?;
        }
        let values = param.map(str::as_bytes);
        // Text format (0) for the value, so the server parses it for whatever type $1 has.
        frontend::bind(
            "",
            statement,
            values.map(|_| 0),
            values,
            |value, buf| {
                buf.extend_from_slice(value);
                Ok(IsNull::No)
            },
            Some(0),
            &mut self.out,
        )
        .map_err(|_| WireError::protocol("cannot encode the parameter"))?;
        frontend::execute("", 0, &mut self.out).map_err(bad)
    }

    /// The first row of `sql`'s answer for `param`, each value as text (NULL as None); None
    /// when there is no row. One round trip on the unnamed statement, for pgstress's own
    /// queries (the monitor's), not the load.
    pub fn first_row(
        &mut self,
        sql: &str,
        param: Option<&str>,
    ) -> Result<Option<Vec<Option<String>>>, WireError> {
        self.push_query("", Some(sql), param)?;
        frontend::sync(&mut self.out);
        self.send("sending the query")?;
        let mut first = None;
        self.read_answer(|row| {
            if first.is_none() {
                first = Some(row_values(row)?);
            }
            Ok(())
        })?;
        Ok(first)
    }

    /// How many parameters the server finds in `sql`: Parse and Describe on the unnamed
    /// statement, then Sync; nothing runs. A named statement would outlive the check on the
    /// server connection, which a transaction-mode pooler hands to its next client, and a name
    /// another client left there would refuse it; the unnamed one is every session's own.
    pub fn parameters_of(&mut self, sql: &str) -> Result<usize, WireError> {
        let bad =
            |err: std::io::Error| WireError::protocol(format!("cannot encode the query: {err}"));
        frontend::parse("", sql, std::iter::empty(), &mut self.out).map_err(bad)?;
        frontend::describe(b'S', "", &mut self.out).map_err(bad)?;
        frontend::sync(&mut self.out);
        self.send("sending the query")?;
        let (mut parameters, mut error) = (None, None);
        loop {
            let step = "waiting for the query's description";
            match ended_by(self.reader.next(&mut self.stream, step), &mut error)? {
                Message::ParameterDescription(body) => {
                    let count = body.parameters().count();
                    let count =
                        count.map_err(|_| WireError::protocol("a malformed description"))?;
                    parameters = Some(count);
                }
                Message::ReadyForQuery(body) => {
                    self.in_transaction = body.status() != b'I';
                    return match (error, parameters) {
                        (Some(error), _) => Err(error),
                        (None, Some(count)) => Ok(count),
                        (None, None) => Err(WireError::protocol("no description of the query")),
                    };
                }
                Message::ErrorResponse(body) => {
                    error.get_or_insert(server_error(body.fields()));
                }
                Message::ParseComplete
                | Message::RowDescription(_)
                | Message::NoData
                | Message::NoticeResponse(_)
                | Message::ParameterStatus(_)
                | Message::NotificationResponse(_) => {}
                _ => {
                    return Err(WireError::protocol(
                        "unexpected message in a query's description",
                    ));
                }
            }
        }
    }

    /// Counts DataRows up to ReadyForQuery, keeping the first error the server reported.
    fn read_result(&mut self) -> Result<u64, WireError> {
        self.read_answer(|_| Ok(()))
    }

    /// As `read_result`, handing each DataRow to `on_row`.
    fn read_answer(
        &mut self,
        mut on_row: impl FnMut(&DataRowBody) -> Result<(), WireError>,
    ) -> Result<u64, WireError> {
        let (mut rows, mut error) = (0u64, None);
        loop {
            match ended_by(
                self.reader
                    .next(&mut self.stream, "waiting for the query's answer"),
                &mut error,
            )? {
                Message::DataRow(row) => {
                    on_row(&row)?;
                    rows += 1;
                }
                Message::ReadyForQuery(body) => {
                    self.in_transaction = body.status() != b'I';
                    return error.map_or(Ok(rows), Err);
                }
                Message::ErrorResponse(body) => {
                    error.get_or_insert(server_error(body.fields()));
                }
                Message::ParseComplete
                | Message::BindComplete
                | Message::CommandComplete(_)
                | Message::EmptyQueryResponse
                | Message::NoData
                | Message::PortalSuspended
                | Message::NoticeResponse(_)
                | Message::ParameterStatus(_)
                | Message::NotificationResponse(_) => {}
                _ => {
                    return Err(WireError::protocol(
                        "unexpected message in a query's answer",
                    ));
                }
            }
        }
    }
}

/// A DataRow's values in text format.
fn row_values(row: &DataRowBody) -> Result<Vec<Option<String>>, WireError> {
    let bad = || WireError::protocol("a malformed row");
    let buffer = row.buffer();
    let mut ranges = row.ranges();
    let mut values = Vec::new();
    while let Some(range) = ranges.next().map_err(|_| bad())? {
        values.push(match range {
            Some(range) => Some(
                std::str::from_utf8(buffer.get(range).ok_or_else(bad)?)
                    .map_err(|_| bad())?
                    .to_owned(),
            ),
            None => None,
        });
    }
    Ok(values)
}

/// One request on a new connection: connect, run the query on the unnamed statement, count
/// the rows, close without waiting. The whole request ends by `timeout`.
pub fn run_once(
    params: &ConnectParams,
    sql: &str,
    param: Option<&str>,
    timeout: Duration,
) -> Result<u64, WireError> {
    let deadline = Instant::now() + timeout;
    let mut conn = Connection::connect(params, deadline)?;
    let rows = conn.request(sql, param, params.in_band.as_ref());
    conn.close();
    rows
}

/// One request on a new connection, timed as `request::execute` times it: the connect, then
/// the query (closing is not part of either). Everything ends by `deadline`. The connection
/// is made on `ready` when a socket was made ahead.
pub fn timed_request(
    params: &ConnectParams,
    ready: Option<ReadySocket>,
    sql: &str,
    param: Option<&str>,
    deadline: Instant,
) -> Timed {
    let started = Instant::now();
    match Connection::connect_from(params, ready, deadline) {
        Err(err) => Timed {
            connect: None,
            query: None,
            outcome: Err(err.failure()),
            node: None,
        },
        Ok(mut conn) => {
            let connected = Instant::now();
            let outcome = rows_outcome(conn.request(sql, param, params.in_band.as_ref()));
            let query = connected.elapsed();
            let node = params.hosts.node_of(conn.node());
            // Terminate after the answer, not in the query's write: PgBouncer drops a client at
            // its Terminate without passing on the answers still to come.
            conn.close();
            Timed {
                connect: Some(connected - started),
                query: Some(query),
                outcome,
                node,
            }
        }
    }
}

/// What one request on a new connection measured.
#[derive(Debug)]
pub struct Timed {
    pub connect: Option<Duration>,
    pub query: Option<Duration>,
    pub outcome: Result<(), Failure>,
    /// The host of the list it reached, when the list has several.
    pub node: Option<u8>,
}

/// A request's outcome by pgstress's rule: at least one row, or a classified failure.
pub fn rows_outcome(result: Result<u64, WireError>) -> Result<(), Failure> {
    match result {
        Ok(0) => Err(Failure::new(FailureClass::NoRow, "no row came back")),
        Ok(_) => Ok(()),
        Err(err) => Err(err.failure()),
    }
}

/// A kept connection with the query prepared once as a named statement: each request is then
/// Bind, Execute and Sync, one round trip.
pub struct Session {
    pub conn: Connection,
    has_param: bool,
}

/// The prepared statement's name on a session's connection.
const STATEMENT: &str = "pgstress";

impl Session {
    /// Connects and prepares `sql` (with one parameter of inferred type when `has_param`).
    pub fn open(
        params: &ConnectParams,
        sql: &str,
        has_param: bool,
        deadline: Instant,
    ) -> Result<Session, WireError> {
        let mut conn = Connection::connect(params, deadline)?;
        let types = has_param.then_some(UNKNOWN_TYPE);
        frontend::parse(STATEMENT, sql, types, &mut conn.out)
            .map_err(|err| WireError::protocol(format!("cannot encode the query: {err}")))?;
        frontend::sync(&mut conn.out);
        conn.send("preparing the query")?;
        conn.read_result()?;
        Ok(Session { conn, has_param })
    }

    /// One request: the rows of the prepared query for `param`, by `deadline`.
    pub fn execute(&mut self, param: Option<&str>, deadline: Instant) -> Result<u64, WireError> {
        self.execute_with(param, None, deadline)
    }

    /// The same, inside a transaction carrying the settings when `in_band` is given (still
    /// one write, one round trip).
    pub fn execute_with(
        &mut self,
        param: Option<&str>,
        in_band: Option<&InBand>,
        deadline: Instant,
    ) -> Result<u64, WireError> {
        if param.is_some() != self.has_param {
            return Err(WireError::protocol(
                "the parameter does not match the prepared query",
            ));
        }
        self.conn.set_deadline(deadline);
        self.conn
            .in_transaction_block(STATEMENT, None, param, in_band)
    }
}

/// The next message, or why there is none: a connection that ends after an error the server
/// sent (FATAL: a terminated session, a shutdown) ended for the reason the server gave.
fn ended_by<M>(next: Result<M, WireError>, error: &mut Option<WireError>) -> Result<M, WireError> {
    match next {
        Err(WireError::Closed) => Err(error.take().unwrap_or(WireError::Closed)),
        other => other,
    }
}
