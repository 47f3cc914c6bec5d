//! Judging measured steps: diagnosis flags, the verdict and the CI gates.

pub mod cpus;
pub mod flags;
pub mod gate;
pub mod outage;
pub mod pooler;
pub mod verdict;
