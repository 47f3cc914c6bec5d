//! How a request ended: success, or a failure and its class (why it failed).

use std::fmt;

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
    /// pgstress's own limit, not the server's: open files, ephemeral ports or memory ran out,
    /// or the request's code panicked.
    Client,
    /// The server rejected the value as malformed (SQLSTATE class 22, data exception): the
    /// parameter data does not fit the query.
    BadValue,
    /// A pooler in front of the server refused the client: PgBouncer's "no more connections
    /// allowed (max_client_conn)". The pooler's limit, not the server's.
    PoolerTooManyClients,
    /// The request reached a read-only server where it needed one that writes: SQLSTATE 25006
    /// (a write sent to a standby, or to a primary that was demoted under the load), or a
    /// `target_session_attrs=read-write` target whose every host answered read-only.
    ReadOnly,
    /// A connection through a pooler that never got its first answer while others on the same
    /// target did: held in the pooler's queue until its deadline (pgpool-II with every child
    /// busy). The pooler's client limit, not the server's.
    PoolerQueued,
    /// SQLSTATE 57P01 / 57P02: the server is shutting down (a fast stop, a terminated backend)
    /// or crashing, and said so before it dropped the connection.
    Shutdown,
    /// SQLSTATE 57P03: the server is starting up (or recovering) and takes no connection yet.
    Starting,
}

/// Whose failure a class is: only the server's make a breaking point or trip a stop rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
    Data,
    /// A pooler between pgstress and the server.
    Pooler,
}

/// Written under its name, as in the logs.
impl serde::Serialize for FailureClass {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl FailureClass {
    pub const ALL: [FailureClass; 15] = [
        FailureClass::Refused,
        FailureClass::TooManyClients,
        FailureClass::Auth,
        FailureClass::Timeout,
        FailureClass::Query,
        FailureClass::NoRow,
        FailureClass::Spawn,
        FailureClass::Io,
        FailureClass::Client,
        FailureClass::BadValue,
        FailureClass::PoolerTooManyClients,
        FailureClass::ReadOnly,
        FailureClass::PoolerQueued,
        FailureClass::Shutdown,
        FailureClass::Starting,
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
            FailureClass::Client => "client",
            FailureClass::BadValue => "bad_value",
            FailureClass::PoolerTooManyClients => "pooler_too_many_clients",
            FailureClass::ReadOnly => "read_only",
            FailureClass::PoolerQueued => "pooler_queued",
            FailureClass::Shutdown => "shutdown",
            FailureClass::Starting => "starting",
        }
    }

    /// Whose failure this is. A request the server refused, timed out or answered with an
    /// error is the server's; one pgstress could not send is the client's; a value the table
    /// lacks or the server cannot read is the data's.
    pub fn side(self) -> Side {
        match self {
            FailureClass::Spawn | FailureClass::Client => Side::Client,
            FailureClass::NoRow | FailureClass::BadValue => Side::Data,
            FailureClass::PoolerTooManyClients | FailureClass::PoolerQueued => Side::Pooler,
            _ => Side::Server,
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

/// A failure: its class and the first line of what the server or the client said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
    /// The target never said a word on this connection: its deadline passed before the
    /// first answer (the connect itself, the answer to TLS, or to the startup message), as
    /// for a connection held in a queue in front of the server.
    pub unanswered: bool,
}

impl Failure {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
            unanswered: false,
        }
    }

    /// A timeout before the target's first answer.
    pub fn unanswered(message: impl Into<String>) -> Self {
        Failure {
            unanswered: true,
            ..Failure::new(FailureClass::Timeout, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_unique_and_indexed_in_order() {
        for (i, class) in FailureClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i);
        }
        let mut names: Vec<_> = FailureClass::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FailureClass::ALL.len());
    }

    #[test]
    fn each_class_has_its_name() {
        let names: Vec<String> = FailureClass::ALL.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            names,
            [
                "refused",
                "too_many_clients",
                "auth",
                "timeout",
                "query",
                "no_row",
                "spawn",
                "io",
                "client",
                "bad_value",
                "pooler_too_many_clients",
                "read_only",
                "pooler_queued",
                "shutdown",
                "starting"
            ]
        );
        let failure = Failure::new(FailureClass::Auth, "28P01: no");
        assert_eq!(
            (failure.class, failure.message.as_str()),
            (FailureClass::Auth, "28P01: no")
        );
        assert!(!failure.unanswered);
        let queued = Failure::unanswered("deadline passed while connecting");
        assert!(queued.unanswered && queued.class == FailureClass::Timeout);
        assert_eq!(FailureClass::PoolerQueued.side(), Side::Pooler);
    }
}
