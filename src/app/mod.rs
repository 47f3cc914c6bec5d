//! One file per subcommand, and the per-step loop that `run` drives.

pub mod agent;
pub mod compare;
pub mod coordinate;
pub mod cpus;
pub mod fault;
pub mod k8s;
pub mod manual;
pub mod outputs;
pub mod preflight;
pub mod prepare;
pub mod report;
pub mod run;
pub mod setup;
pub mod step_loop;
pub mod watch;
pub mod watching;
