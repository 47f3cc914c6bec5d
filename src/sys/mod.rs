//! The operating system: signals, /proc, resource limits and CPUs.

pub mod interrupt;
pub mod procfs;
