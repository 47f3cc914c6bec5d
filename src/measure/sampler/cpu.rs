//! The CPU probe: the host's CPU, this process's CPU and, when the server runs on this
//! machine, the server's CPU, each as a share of all the host's cores.

use std::time::Instant;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::counters::{self, HostTicks};
pub use super::pooler_cpu::LocalPooler;
use super::pooler_cpu::{PoolerProcesses, PoolerReading};
use super::{Probe, StepTag};
use crate::model::sample::{CpuSample, StepCpu};
use crate::sys::cpus::host_cores;
use crate::sys::procfs::KeptFile;

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
#[derive(Debug, Clone)]
pub struct CpuReading {
    at: Instant,
    host: Option<HostTicks>,
    process_seconds: f64,
    server_seconds: Option<f64>,
    /// The pooler's processes, each on its own at a step's edges.
    pooler: PoolerReading,
    /// The run-queue wait of pgstress's threads, read at a step's edges only.
    wait_ns: Option<u64>,
    /// pgstress's CPUs' ticks, whoever ran on them, read at a step's edges only.
    client_cpus: Option<HostTicks>,
}

pub struct CpuProbe {
    /// The server's and the pooler's processes, read every sample.
    server_tree: Option<counters::ProcessTree>,
    pooler_processes: Option<PoolerProcesses>,
    /// pgstress's own threads' wait for a CPU, read at the steps' edges.
    waits: crate::sys::schedstat::ProcessWait,
    /// /proc/stat, kept open.
    host_stat: KeptFile,
    /// The thread that made the probe, the one that launches the steps, watched as long as
    /// the probe lives.
    _launcher: crate::sys::schedstat::Watched,
    run_start: Instant,
    cores: f64,
    sides: Sides,
}

/// What each side may run on.
#[derive(Debug, Clone, Default)]
pub struct Sides {
    /// The CPUs pgstress may use, and how many (capped by a cgroup quota): the denominator of
    /// its threads' wait, and the most it can use.
    pub client_cpus: Vec<usize>,
    pub client_cores: f64,
    /// How many CPUs the server may use: the most it can use.
    pub server_cores: Option<f64>,
    /// A pooler on this machine, whose CPU is sampled as the third side.
    pub pooler: Option<LocalPooler>,
}

impl CpuProbe {
    pub fn new(server: Option<LocalServer>, run_start: Instant, sides: Sides) -> Self {
        CpuProbe {
            server_tree: server.map(|server| counters::ProcessTree::new(server.postmaster_pid)),
            pooler_processes: sides.pooler.as_ref().map(PoolerProcesses::new),
            waits: Default::default(),
            host_stat: KeptFile::new("/proc/stat"),
            _launcher: crate::sys::schedstat::watch_this_thread(),
            run_start,
            cores: host_cores() as f64,
            sides,
        }
    }

    /// The counters read at every sample; at a step's edges (`edge`) the server's and
    /// pooler's children are all read, between them only those found by the sample before
    /// (`ProcessTree::cpu_seconds_of_settled`), and pgstress's CPUs' ticks are taken from the
    /// same read of /proc/stat as the host's.
    fn reading(&mut self, edge: bool) -> CpuReading {
        let tree_seconds = |tree: &mut counters::ProcessTree| match edge {
            true => tree.cpu_seconds(),
            false => tree.cpu_seconds_of_settled(),
        };
        let stat = self.host_stat.read();
        let client_cpus = |stat| HostTicks::sum_of(stat, &self.sides.client_cpus);
        CpuReading {
            at: Instant::now(),
            host: stat.and_then(HostTicks::of_stat),
            client_cpus: stat.filter(|_| edge).and_then(client_cpus),
            process_seconds: counters::own_cpu_seconds().unwrap_or(0.0),
            server_seconds: self.server_tree.as_mut().and_then(tree_seconds),
            // Processes and their children, like the server's: PgBouncer has none, pgpool-II forks.
            pooler: (self.pooler_processes.as_mut())
                .map(|processes| processes.read(edge))
                .unwrap_or_default(),
            wait_ns: None,
        }
    }
}

impl Probe for CpuProbe {
    type Reading = CpuReading;
    type Sample = CpuSample;
    type Whole = StepCpu;
    const MERGE_SHORT_TAIL: bool = true;

    fn read(&mut self) -> CpuReading {
        self.reading(false)
    }

    fn read_edge(&mut self) -> CpuReading {
        CpuReading {
            wait_ns: self.waits.wait_ns(),
            ..self.reading(true)
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
        let server = match (after.server_seconds, before.server_seconds) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        let capacity = wall * self.cores;
        // Counters may land in one window for work done over several (a backend's whole CPU
        // is counted when it is reaped): no side reads above the CPUs it may run on.
        let process = (after.process_seconds - before.process_seconds)
            .min(wall * self.sides.client_cores.max(0.01));
        let server = server.map(|seconds| match self.sides.server_cores {
            Some(cores) => seconds.min(wall * cores),
            None => seconds,
        });
        let pooler = match (after.pooler.seconds, before.pooler.seconds) {
            (Some(a), Some(b)) => {
                let cores = (self.sides.pooler.as_ref())
                    .and_then(LocalPooler::total_cores)
                    .unwrap_or(self.cores);
                Some((a - b).min(wall * cores))
            }
            _ => None,
        };
        let shares = Shares::of(capacity, host, process, server);
        let pooler_pct = pooler.map(|seconds| (seconds / capacity * 100.0).clamp(0.0, 100.0));
        Some(CpuSample {
            elapsed_ms: after.at.duration_since(self.run_start).as_millis() as u64,
            step: tag.step,
            requests: tag.requests,
            host_cpu_pct: shares.host,
            process_cpu_pct: shares.process,
            server_cpu_pct: shares.server,
            pooler_cpu_pct: pooler_pct,
        })
    }

    fn whole(&mut self, tag: StepTag, begin: &CpuReading, end: &CpuReading) -> Option<StepCpu> {
        let cpu = self.sample(tag, begin, end)?;
        let wait_ns = match (end.wait_ns, begin.wait_ns) {
            (Some(end), Some(begin)) => Some(end.saturating_sub(begin)),
            _ => None,
        };
        let client_cpus_busy_pct = match (end.client_cpus, begin.client_cpus) {
            (Some(end), Some(begin)) => end.percent_since(&begin),
            _ => None,
        };
        let wall = end.at.duration_since(begin.at).as_secs_f64();
        let pooler_processes = (self.pooler_processes.as_ref())
            .map(|processes| processes.whole(&begin.pooler, &end.pooler, wall))
            .unwrap_or_default();
        // The most runnable process's: at 100 every client of that process waits for it.
        let pooler_runnable_pct = (pooler_processes.iter())
            .filter_map(|process| process.runnable_pct)
            .reduce(f64::max);
        Some(StepCpu {
            pooler_runnable_pct,
            pooler_processes,
            cpu,
            client_wait_ms: wait_ns.map(|ns| ns as f64 / 1e6),
            client_cpus_busy_pct,
        })
    }
}

/// Shares of all the host's cores, in percent, over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    pub host: f64,
    pub process: f64,
    pub server: Option<f64>,
}

impl Shares {
    /// From the host's busy share (ticks) and the CPU seconds of this process and the server
    /// (nanoseconds) over `capacity` core-seconds. The host contains both processes: where its
    /// ticks, coarser and read at other moments, fall short of them, it is at least their sum,
    /// so no process ever reads above the host.
    pub fn of(capacity: f64, host: Option<f64>, process: f64, server: Option<f64>) -> Shares {
        let pct = |seconds: f64| (seconds / capacity * 100.0).clamp(0.0, 100.0);
        let (process, server) = (pct(process), server.map(pct));
        let floor = (process + server.unwrap_or(0.0)).min(100.0);
        Shares {
            host: host.unwrap_or(0.0).max(floor).min(100.0),
            process,
            server,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn no_process_reads_above_the_host() {
        // 20 ms on 2 cores: 40 ms of capacity. The host's ticks saw nothing yet.
        let shares = Shares::of(0.040, Some(0.0), 0.010, Some(0.020));
        assert_eq!(shares.process, 25.0);
        assert_eq!(shares.server, Some(50.0));
        assert_eq!(shares.host, 75.0);
        let busy = Shares::of(1.0, Some(90.0), 0.2, None);
        assert_eq!((busy.host, busy.process, busy.server), (90.0, 20.0, None));
        let over = Shares::of(1.0, Some(100.0), 0.7, Some(0.6));
        assert_eq!(over.host, 100.0);
    }

    /// A probe of a 4-core host, pgstress on 1.5 of them, the server on `server_cores`.
    fn probe(run_start: Instant, server_cores: Option<f64>) -> CpuProbe {
        CpuProbe {
            server_tree: None,
            pooler_processes: None,
            waits: Default::default(),
            host_stat: KeptFile::new("/proc/stat"),
            _launcher: crate::sys::schedstat::watch_this_thread(),
            run_start,
            cores: 4.0,
            sides: Sides {
                client_cpus: vec![0, 1],
                client_cores: 1.5,
                server_cores,
                pooler: None,
            },
        }
    }

    fn reading(at: Instant, busy: u64, process: f64, server: Option<f64>) -> CpuReading {
        CpuReading {
            at,
            host: Some(HostTicks {
                busy,
                total: busy * 2,
            }),
            process_seconds: process,
            server_seconds: server,
            pooler: PoolerReading::default(),
            wait_ns: None,
            client_cpus: None,
        }
    }

    const TAG: StepTag = StepTag {
        step: 3,
        requests: 30,
    };

    #[test]
    fn a_sample_is_each_sides_cpu_over_the_window_capped_at_its_cpus() {
        let start = Instant::now();
        let (t1, t3) = (
            start + Duration::from_secs(1),
            start + Duration::from_secs(3),
        );
        // 2 s on 4 cores: 8 core-seconds. The host's ticks: 600 busy of 1000.
        let before = reading(t1, 400, 1.0, Some(5.0));
        let mut after = reading(t3, 900, 4.2, Some(6.0));
        after.host = Some(HostTicks {
            busy: 1000,
            total: 1800,
        });
        // pgstress used 3.2 s, capped at its 1.5 cores: 3 s, 37.5%; the server 1 s, 12.5%.
        let sample = probe(start, None).sample(TAG, &before, &after).unwrap();
        assert_eq!(
            sample,
            CpuSample {
                elapsed_ms: 3000,
                step: 3,
                requests: 30,
                host_cpu_pct: 60.0,
                process_cpu_pct: 37.5,
                server_cpu_pct: Some(12.5),
                pooler_cpu_pct: None,
            }
        );
        // A server on a quarter of a core: at most 0.5 s of the 2 s window, 6.25%.
        let pinned = probe(start, Some(0.25))
            .sample(TAG, &before, &after)
            .unwrap();
        assert_eq!(pinned.server_cpu_pct, Some(6.25));
        // No server counters on either side, or no time passed: nothing to say.
        let remote = reading(t3, 900, 4.2, None);
        let sample = probe(start, None).sample(TAG, &before, &remote).unwrap();
        assert_eq!(sample.server_cpu_pct, None);
        assert_eq!(probe(start, None).sample(TAG, &before, &before), None);
    }

    #[test]
    fn only_a_steps_edges_read_the_threads_wait_and_the_client_cpus() {
        let sides = Sides {
            client_cpus: vec![0],
            client_cores: 1.0,
            server_cores: None,
            pooler: None,
        };
        let mut probe = CpuProbe::new(None, Instant::now(), sides);
        let edge = probe.read_edge();
        assert!(
            edge.wait_ns.is_some() && edge.client_cpus.is_some(),
            "{edge:?}"
        );
        let inner = probe.read();
        assert!(inner.wait_ns.is_none() && inner.client_cpus.is_none());
        assert!(inner.host.is_some() && inner.process_seconds > 0.0);
    }

    #[test]
    fn a_whole_step_adds_the_threads_wait_and_the_client_cpus_busy_share() {
        let start = Instant::now();
        let mut begin = reading(start, 100, 0.25, None);
        let mut end = reading(start + Duration::from_secs(2), 200, 0.75, None);
        let mut probe = probe(start, None);
        // Without the edge readings, only the sample.
        let whole = probe.whole(TAG, &begin, &end).unwrap();
        assert_eq!(whole.client_wait_ms, None);
        assert_eq!(whole.client_cpus_busy_pct, None);
        assert_eq!(whole.cpu.process_cpu_pct, 6.25);
        // 1.5 s of waiting; the client's CPUs 150 busy of 200.
        begin.wait_ns = Some(1_000_000_000);
        end.wait_ns = Some(2_500_000_000);
        begin.client_cpus = Some(HostTicks {
            busy: 50,
            total: 100,
        });
        end.client_cpus = Some(HostTicks {
            busy: 200,
            total: 300,
        });
        let whole = probe.whole(TAG, &begin, &end).unwrap();
        assert_eq!(whole.client_wait_ms, Some(1500.0));
        assert_eq!(whole.client_cpus_busy_pct, Some(75.0));
        assert_eq!(probe.whole(TAG, &begin, &begin), None);
    }
}
