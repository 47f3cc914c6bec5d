//! The CPU probe: the host's CPU, this process's CPU and, when the server runs on this
//! machine, the server's CPU, each as a share of all the host's cores.

use std::time::Instant;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::counters::{self, HostTicks};
use super::{Probe, StepTag};
use crate::model::sample::CpuSample;
use crate::sys::cpus::host_cores;

/// The local server whose CPU is sampled: its postmaster, whose children are the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalServer {
    pub postmaster_pid: u32,
}

impl LocalServer {
    /// Finds the postmaster of a backend seen from a monitoring connection (pg_backend_pid()),
    /// when that backend is a `postgres` process on this machine.
    pub fn from_backend_pid(backend_pid: u32) -> Option<Self> {
        let mut system = System::new().ok()?;
        let pid = Pid::from_u32(backend_pid);
        let is_postgres = |name: &std::ffi::OsStr| name.to_string_lossy().starts_with("postgres");
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing(),
        );
        let backend = system.process(pid)?;
        let (parent, backend_is_postgres) = (backend.parent()?, is_postgres(backend.name()));
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[parent]),
            true,
            ProcessRefreshKind::nothing(),
        );
        let postmaster = system.process(parent)?;
        (backend_is_postgres && is_postgres(postmaster.name())).then(|| LocalServer {
            postmaster_pid: parent.as_u32(),
        })
    }
}

/// Cumulative counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuReading {
    at: Instant,
    host: Option<HostTicks>,
    process_seconds: f64,
    server_seconds: Option<f64>,
}

pub struct CpuProbe {
    server: Option<LocalServer>,
    run_start: Instant,
    system: Option<System>,
    pid: Pid,
    cores: f64,
}

impl CpuProbe {
    pub fn new(server: Option<LocalServer>, run_start: Instant) -> Self {
        CpuProbe {
            server,
            run_start,
            system: System::new().ok(),
            pid: Pid::from_u32(std::process::id()),
            cores: host_cores() as f64,
        }
    }
}

impl Probe for CpuProbe {
    type Reading = CpuReading;
    type Sample = CpuSample;
    const MERGE_SHORT_TAIL: bool = true;

    fn read(&mut self) -> CpuReading {
        let process_seconds = match &mut self.system {
            Some(system) => {
                system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[self.pid]),
                    false,
                    ProcessRefreshKind::nothing().with_cpu(),
                );
                system
                    .process(self.pid)
                    .map_or(0.0, |p| p.accumulated_cpu_time() as f64 / 1000.0)
            }
            None => 0.0,
        };
        CpuReading {
            at: Instant::now(),
            host: HostTicks::read(),
            process_seconds,
            server_seconds: self
                .server
                .and_then(|server| counters::process_cpu_seconds(server.postmaster_pid, true)),
        }
    }

    fn sample(
        &mut self,
        tag: StepTag,
        before: &CpuReading,
        after: &CpuReading,
    ) -> Option<CpuSample> {
        let wall = after.at.duration_since(before.at).as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        let host = match (after.host, before.host) {
            (Some(a), Some(b)) => a.percent_since(&b),
            _ => None,
        };
        // Processes and host are counted in ticks at different moments: a process's share
        // may round above the host's, which contains it. The host's bounds it.
        let ceiling = host.unwrap_or(100.0);
        let share = |seconds: f64| {
            (seconds / (wall * self.cores) * 100.0)
                .clamp(0.0, 100.0)
                .min(ceiling)
        };
        Some(CpuSample {
            elapsed_ms: after.at.duration_since(self.run_start).as_millis() as u64,
            step: tag.step,
            requests: tag.requests,
            host_cpu_pct: host.unwrap_or(0.0),
            process_cpu_pct: share(after.process_seconds - before.process_seconds),
            server_cpu_pct: match (after.server_seconds, before.server_seconds) {
                (Some(a), Some(b)) => Some(share(a - b)),
                _ => None,
            },
        })
    }
}
