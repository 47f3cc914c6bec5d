//! Running a step: one module per load model, each taking a step's requests and returning
//! what every request measured. Printing and files are someone else's job.

pub mod burst;

use std::time::Duration;

use crate::target::RequestRecord;

/// What one step measured, before aggregation.
#[derive(Debug)]
pub struct StepRun {
    pub records: Vec<RequestRecord>,
    /// From the first spawn to the release of the gate.
    pub launch: Duration,
    /// From the release to the last request's end (or the step's deadline).
    pub wall: Duration,
}

/// Requests of the step in flight that have ended so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub done: u32,
    pub ok: u32,
    pub failed: u32,
}

impl Tally {
    pub fn count(&mut self, record: &RequestRecord) {
        self.done += 1;
        match record.outcome {
            Ok(()) => self.ok += 1,
            Err(_) => self.failed += 1,
        }
    }
}

/// Told of each request's end while a step runs (live progress); the engine itself never
/// prints. Called on the thread that collects the results, so it must return quickly.
pub trait StepObserver {
    fn request_ended(&self, tally: Tally);
}

/// The most threads this process may hope to run at once: the lowest of RLIMIT_NPROC, the
/// kernel's threads-max and the cgroup's pids.max. An upper bound, since other processes count too.
pub fn thread_limit() -> u64 {
    let rlimit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)
        .map(|(soft, _)| soft)
        .unwrap_or(u64::MAX);
    let read_number = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    };
    [
        Some(rlimit),
        read_number("/proc/sys/kernel/threads-max"),
        read_number("/sys/fs/cgroup/pids.max"),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(u64::MAX)
}
