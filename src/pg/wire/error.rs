//! What can go wrong on the wire, and the failure class each case is counted as.

use std::fmt;
use std::io;

use crate::model::outcome::{Failure, FailureClass};
use crate::pg::request::classify::{class_of_error, classify_io_error};

/// An error of the lean connection.
#[derive(Debug)]
pub enum WireError {
    /// The socket failed (connect refused, reset, ...): classed by its errno and kind, as the
    /// `postgres` crate's errors are, so a figure does not depend on the client.
    Io(io::Error),
    /// The request's deadline passed while waiting for the named step.
    Timeout(&'static str),
    /// The server closed the connection without a word.
    Closed,
    /// The server said no: an ErrorResponse with its SQLSTATE.
    Server { code: String, message: String },
    /// The server sent something that is not the protocol: garbage, a bad length, a message
    /// out of place.
    Protocol(String),
    /// TLS could not be set up (the server refuses it under `require`, or the handshake failed).
    Tls(String),
    /// Authentication failed on the client's side: an unsupported method, no password, or a
    /// server that could not prove it knows the password.
    Auth(String),
    /// The server is not the kind `target_session_attrs` asks for (the last host tried).
    WrongNode {
        endpoint: String,
        wanted: super::SessionAttrs,
    },
}

impl WireError {
    /// The failure class, the same as `Failure::from_error` gives for the `postgres` crate's
    /// error in the same situation: SQLSTATE first, then the I/O error kind. Protocol, TLS and
    /// client-side authentication errors carry no SQLSTATE and no I/O error there, so they are
    /// `io` here too.
    pub fn class(&self) -> FailureClass {
        match self {
            WireError::Io(err) => classify_io_error(err),
            WireError::Timeout(_) => FailureClass::Timeout,
            WireError::Closed => FailureClass::Refused,
            WireError::Server { code, message } => class_of_error(code, message),
            WireError::Protocol(_) | WireError::Tls(_) | WireError::Auth(_) => FailureClass::Io,
            // Only read-only servers answered a target that asks for writes: the class of a
            // write that reached a standby. Otherwise no server of the kind answered at all.
            WireError::WrongNode { wanted, .. } if wanted.wanted_writes() => FailureClass::ReadOnly,
            WireError::WrongNode { .. } => FailureClass::Refused,
        }
    }

    pub fn failure(&self) -> Failure {
        Failure::new(self.class(), self.to_string())
    }

    pub fn protocol(what: impl Into<String>) -> Self {
        WireError::Protocol(what.into())
    }
}

impl From<WireError> for Failure {
    fn from(err: WireError) -> Failure {
        err.failure()
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(err) => write!(f, "{err}"),
            WireError::Timeout(step) => write!(f, "deadline passed while {step}"),
            WireError::Closed => f.write_str("the server closed the connection unexpectedly"),
            WireError::Server { code, message } => write!(f, "{code}: {message}"),
            WireError::Protocol(what) => write!(f, "protocol error: {what}"),
            WireError::Tls(what) => write!(f, "TLS error: {what}"),
            WireError::Auth(what) => write!(f, "authentication error: {what}"),
            WireError::WrongNode { endpoint, wanted } => write!(
                f,
                "no server of the host list is {} (target_session_attrs={}; the last tried, {endpoint}, is not)",
                wanted.name(),
                wanted.name()
            ),
        }
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> WireError {
        WireError::Server {
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn classes_match_todays_classification() {
        assert_eq!(server("53300").class(), FailureClass::TooManyClients);
        assert_eq!(server("28P01").class(), FailureClass::Auth);
        assert_eq!(server("57014").class(), FailureClass::Timeout);
        assert_eq!(server("42P01").class(), FailureClass::Query);
        assert_eq!(WireError::Closed.class(), FailureClass::Refused);
        assert_eq!(WireError::Timeout("x").class(), FailureClass::Timeout);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(WireError::Io(refused).class(), FailureClass::Refused);
        assert_eq!(WireError::protocol("x").class(), FailureClass::Io);
        assert_eq!(server("28000").failure().message, "28000: m");
    }
}
