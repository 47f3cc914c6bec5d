//! The lean blocking connection: PostgreSQL's wire protocol over one blocking socket
//! (TCP, Unix, or TLS through OpenSSL), with no async runtime inside, so a request costs one
//! file descriptor and no threads of its own. Messages are encoded and parsed by the
//! `postgres-protocol` crate; SCRAM is done here so that the salted password is derived once
//! per (password, salt, iterations) and not on every connection.
//!
//! Every blocking read and write has a deadline: a request never waits past it.

mod auth;
mod connect;
mod error;
mod query;
mod reader;
mod route;
mod scram;
mod source;
mod stream;

pub use connect::{Address, ChannelBinding, ConnectParams, Connection, ReadySocket, WireTls};
pub use error::WireError;
pub use query::{InBand, Session, Timed, rows_outcome, run_once, timed_request};
pub use reader::{MAX_MESSAGE_LEN, MessageReader};
pub use route::{Endpoint, Hosts, NodeKind, SessionAttrs};
pub use scram::{ScramClient, clear_key_cache, key_derivations};
pub use source::SourceAddresses;
