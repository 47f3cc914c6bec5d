//! PostgreSQL, one folder a job: where the target is and how to reach it (`target`: libpq's
//! resolution, TLS, masking passwords), the wire client (`wire`), one request and the
//! connections kept across requests with their failures classified (`request`), and the
//! processes pgstress starts and stops on this machine (`local`: the throwaway server, the
//! pooler, the watchdog that removes them).

pub mod local;
pub mod request;
pub mod target;
pub mod wire;
