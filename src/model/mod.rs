//! Plain data shared by every layer: no I/O, no PostgreSQL, no threads.

pub mod facts;
pub mod fault;
pub mod fleet;
pub mod hdr;
pub mod outage;
pub mod outcome;
pub mod plan;
pub mod query;
pub mod record;
pub mod rules;
pub mod sample;
pub mod step;
pub mod text;
