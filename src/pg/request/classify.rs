//! Why a request failed, read from what the `postgres` client or the server said: SQLSTATE
//! first, then the I/O error underneath.

use std::error::Error as StdError;
use std::io;

use crate::model::outcome::{Failure, FailureClass};

/// The class of a server error, by its SQLSTATE code.
pub fn class_of_sqlstate(code: &str) -> FailureClass {
    match code {
        "53300" => FailureClass::TooManyClients,
        "28P01" | "28000" => FailureClass::Auth,
        "57014" => FailureClass::Timeout,
        // A write reached a standby, or a primary demoted under the load.
        "25006" => FailureClass::ReadOnly,
        // Operator intervention: the server is shutting down or restarting (57P01, 57P02,
        // also a backend terminated by pg_terminate_backend), or not yet accepting
        // connections (57P03): what an outage looks like from the client, in the server's words.
        "57P01" | "57P02" => FailureClass::Shutdown,
        "57P03" => FailureClass::Starting,
        // Class 22, data exception: the value does not fit (a bad hex digit, text for an int).
        code if code.starts_with("22") => FailureClass::BadValue,
        _ => FailureClass::Query,
    }
}

/// The class of a server error by its SQLSTATE and, where a pooler reuses a generic code, its
/// words: PgBouncer refuses clients past `max_client_conn` with 08P01 (protocol violation).
pub fn class_of_error(code: &str, message: &str) -> FailureClass {
    match code {
        "08P01" if message.contains("no more connections allowed") => {
            FailureClass::PoolerTooManyClients
        }
        _ => class_of_sqlstate(code),
    }
}

/// Classifies a client error by SQLSTATE first, then by the I/O error underneath it.
pub fn classify(err: &postgres::Error) -> FailureClass {
    if let Some(db) = err.as_db_error() {
        return class_of_error(db.code().code(), db.message());
    }
    // The server closed the connection without a word: it crashed, or was killed, under us.
    if err.is_closed() {
        return FailureClass::Refused;
    }
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return classify_io_error(io);
        }
        source = cause.source();
    }
    FailureClass::Io
}

/// Errno values that mean pgstress itself ran out of something: open files (EMFILE, ENFILE),
/// memory (ENOMEM), local ports (EADDRNOTAVAIL, EADDRINUSE on connect).
const CLIENT_LIMITS: [i32; 5] = [
    libc::EMFILE,
    libc::ENFILE,
    libc::ENOMEM,
    libc::EADDRNOTAVAIL,
    libc::EADDRINUSE,
];

/// The class of an I/O error: the client's own limits first, then by its kind.
pub fn classify_io_error(err: &io::Error) -> FailureClass {
    match err.raw_os_error() {
        Some(errno) if CLIENT_LIMITS.contains(&errno) => FailureClass::Client,
        _ => classify_io(err.kind()),
    }
}

/// The class of an I/O error on the connection.
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

/// A failure from a `postgres` error: its class, and the server's code and words when it spoke.
pub fn failure_of(err: &postgres::Error) -> Failure {
    let message = match err.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => err.to_string(),
    };
    Failure::new(classify(err), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbouncers_max_client_conn_is_the_poolers_refusal() {
        let refusal = "no more connections allowed (max_client_conn)";
        assert_eq!(
            class_of_error("08P01", refusal),
            FailureClass::PoolerTooManyClients
        );
        assert_eq!(
            class_of_error("08P01", "unsupported startup parameter: options"),
            FailureClass::Query
        );
        assert_eq!(
            class_of_error("53300", "sorry, too many clients already"),
            FailureClass::TooManyClients
        );
    }

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
    fn the_clients_own_limits_are_the_clients() {
        for errno in CLIENT_LIMITS {
            let err = io::Error::from_raw_os_error(errno);
            assert_eq!(classify_io_error(&err), FailureClass::Client, "{err}");
        }
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(classify_io_error(&refused), FailureClass::Refused);
    }

    #[test]
    fn each_sqlstate_arm_has_its_class() {
        let cases = [
            ("53300", FailureClass::TooManyClients),
            ("28P01", FailureClass::Auth),
            ("28000", FailureClass::Auth),
            ("57014", FailureClass::Timeout),
            ("57P01", FailureClass::Shutdown),
            ("57P02", FailureClass::Shutdown),
            ("57P03", FailureClass::Starting),
            ("42P01", FailureClass::Query),
            ("22P02", FailureClass::BadValue),
            ("22023", FailureClass::BadValue),
            ("25006", FailureClass::ReadOnly),
        ];
        for (code, class) in cases {
            assert_eq!(class_of_sqlstate(code), class, "{code}");
        }
    }
}
