//! One file per subcommand, and the per-step loop that `run` drives.

pub mod compare;
pub mod run;
