//! PostgreSQL: where the target is, how to reach it (TLS, the lean wire connection), the
//! throwaway server, one request, and the demo data set.

pub mod classify;
pub mod console;
pub mod demo;
pub mod kept;
pub mod libpq;
pub mod pooler;
pub mod redact;
pub mod request;
pub mod server;
pub mod target;
pub mod throwaway;
pub mod tls;
pub mod watchdog;
pub mod wire;
