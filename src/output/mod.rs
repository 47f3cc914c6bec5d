//! What the terminal shows: the printed run and the live progress.

pub mod format;
pub mod outage;
pub mod printer;
pub mod progress;
