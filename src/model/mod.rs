//! Plain data shared by every layer: no I/O, no PostgreSQL, no threads.

pub mod facts;
pub mod outcome;
