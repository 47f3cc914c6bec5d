//! The operating system: signals, /proc, resource limits and CPUs.

pub mod affinity;
pub mod cpus;
pub mod interrupt;
pub mod limits;
pub mod memory;
pub mod ports;
pub mod procfs;
pub mod schedstat;
