//! How a request ended: success, or a failure and its class (why it failed).

use std::error::Error as StdError;
use std::fmt;
use std::io;

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
}

impl FailureClass {
    pub const ALL: [FailureClass; 8] = [
        FailureClass::Refused,
        FailureClass::TooManyClients,
        FailureClass::Auth,
        FailureClass::Timeout,
        FailureClass::Query,
        FailureClass::NoRow,
        FailureClass::Spawn,
        FailureClass::Io,
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

/// Classifies a client error by SQLSTATE first, then by the I/O error underneath it.
pub fn classify(err: &postgres::Error) -> FailureClass {
    if let Some(db) = err.as_db_error() {
        return classify_sqlstate(db.code().code());
    }
    // The server closed the connection without a word: it crashed, or was killed, under us.
    if err.is_closed() {
        return FailureClass::Refused;
    }
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return classify_io(io.kind());
        }
        source = cause.source();
    }
    FailureClass::Io
}

/// The class of a server error, by its SQLSTATE code.
pub fn classify_sqlstate(code: &str) -> FailureClass {
    match code {
        "53300" => FailureClass::TooManyClients,
        "28P01" | "28000" => FailureClass::Auth,
        "57014" => FailureClass::Timeout,
        // Operator intervention: the server is shutting down or restarting (57P01, 57P02),
        // or not yet accepting connections (57P03): it dropped or refused us.
        "57P01" | "57P02" | "57P03" => FailureClass::Refused,
        _ => FailureClass::Query,
    }
}

/// The class of an I/O error underneath a client error.
pub fn classify_io(kind: io::ErrorKind) -> FailureClass {
    use io::ErrorKind::*;
    match kind {
        ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => {
            FailureClass::Refused
        }
        TimedOut | WouldBlock => FailureClass::Timeout,
        _ => FailureClass::Io,
    }
}

/// A failure: its class and the first line of what the server or the client said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
}

impl Failure {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }

    pub fn from_error(err: &postgres::Error) -> Self {
        let message = match err.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => err.to_string(),
        };
        Failure::new(classify(err), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_classes() {
        assert_eq!(
            classify_io(io::ErrorKind::ConnectionRefused),
            FailureClass::Refused
        );
        assert_eq!(
            classify_io(io::ErrorKind::ConnectionReset),
            FailureClass::Refused
        );
        assert_eq!(classify_io(io::ErrorKind::TimedOut), FailureClass::Timeout);
        assert_eq!(
            classify_io(io::ErrorKind::PermissionDenied),
            FailureClass::Io
        );
    }

    #[test]
    fn class_names_are_unique_and_indexed_in_order() {
        for (i, class) in FailureClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i);
        }
        let mut names: Vec<_> = FailureClass::ALL.iter().map(|c| c.name()).collect();
        names.dedup();
        assert_eq!(names.len(), FailureClass::ALL.len());
    }
}
