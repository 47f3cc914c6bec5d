//! Plain data shared by every layer: no I/O, no PostgreSQL, no threads.

pub mod activity;
pub mod facts;
pub mod fault;
pub mod fleet;
pub mod hdr;
pub mod hold;
pub mod mean_peak;
pub mod outage;
pub mod outcome;
pub mod plan;
pub mod query;
pub mod record;
pub mod rules;
pub mod sample;
pub mod server_cpu;
pub mod step;
pub mod text;
pub mod watch;
