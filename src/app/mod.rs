//! One file per subcommand, and the per-step loop that `run` drives.

pub mod compare;
pub mod prepare;
pub mod report;
pub mod run;
