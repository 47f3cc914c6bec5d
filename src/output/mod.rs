//! What the terminal shows (the printed run, the live progress) and what a monitoring system
//! reads while the run goes on (the metrics, and their endpoint).

pub mod format;
pub mod metrics;
pub mod printer;
pub mod progress;
