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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const TAG: StepTag = StepTag {
        step: 3,
        requests: 40,
    };

    /// A probe of a 2-core host whose run started at `start`.
    fn probe(start: Instant) -> CpuProbe {
        CpuProbe {
            server: None,
            run_start: start,
            system: None,
            pid: Pid::from_u32(std::process::id()),
            cores: 2.0,
        }
    }

    /// Readings `seconds` after `start`: host ticks, process and server CPU seconds.
    fn reading(
        start: Instant,
        seconds: u64,
        host: Option<(u64, u64)>,
        process: f64,
        server: Option<f64>,
    ) -> CpuReading {
        CpuReading {
            at: start + Duration::from_secs(seconds),
            host: host.map(|(busy, total)| HostTicks { busy, total }),
            process_seconds: process,
            server_seconds: server,
        }
    }

    #[test]
    fn shares_are_of_all_the_hosts_cores_over_the_window() {
        let start = Instant::now();
        let before = reading(start, 1, Some((0, 1000)), 10.0, Some(5.0));
        let after = reading(start, 3, Some((600, 2000)), 11.0, Some(7.0));
        // Host: 600 of 1000 ticks. Process: 1 s of the 4 core-seconds; server: 2 s of 4.
        assert_eq!(
            probe(start).sample(TAG, &before, &after),
            Some(CpuSample {
                elapsed_ms: 3000,
                step: 3,
                requests: 40,
                host_cpu_pct: 60.0,
                process_cpu_pct: 25.0,
                server_cpu_pct: Some(50.0),
            })
        );
    }

    #[test]
    fn a_process_share_never_exceeds_the_host_nor_goes_below_zero() {
        let start = Instant::now();
        let before = reading(start, 0, Some((0, 1000)), 10.0, Some(5.0));
        let after = reading(start, 1, Some((300, 2000)), 11.0, Some(4.0));
        let sample = probe(start).sample(TAG, &before, &after).unwrap();
        assert_eq!(sample.host_cpu_pct, 30.0);
        assert_eq!(sample.process_cpu_pct, 30.0, "50% capped at the host's 30%");
        assert_eq!(sample.server_cpu_pct, Some(0.0), "a counter that went back");
        // Without host ticks, the share is capped at 100% and the host shows 0.
        let before = reading(start, 0, None, 0.0, None);
        let after = reading(start, 1, None, 5.0, None);
        let sample = probe(start).sample(TAG, &before, &after).unwrap();
        assert_eq!(
            (
                sample.host_cpu_pct,
                sample.process_cpu_pct,
                sample.server_cpu_pct
            ),
            (0.0, 100.0, None)
        );
        let half = reading(start, 1, None, 1.0, Some(1.0));
        let sample = probe(start).sample(TAG, &before, &half).unwrap();
        assert_eq!(sample.process_cpu_pct, 50.0);
        assert_eq!(sample.server_cpu_pct, None, "no server reading before");
    }

    #[test]
    fn no_time_no_sample() {
        let start = Instant::now();
        let at = reading(start, 1, Some((0, 1000)), 1.0, None);
        assert_eq!(probe(start).sample(TAG, &at, &at), None);
    }
}
