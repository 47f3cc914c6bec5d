//! What a watcher (`pgstress watch`, on the server's host) reads and what the run makes of it:
//! cumulative counters at one instant on the watcher's host (`WatchReading`), and the shares
//! the run computes between two of them (`WatchSample`), as it does for a local server.

use serde::{Deserialize, Serialize};

use crate::model::mean_peak::MeanPeak;

/// The server's host as the watcher found it, sent once when it joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchedHost {
    /// The host's name, for the header.
    pub host: String,
    /// The postmaster's pid, as the watcher sees it (in its own PID namespace).
    pub postmaster_pid: u32,
    /// All the host's CPUs: the denominator of its busy share.
    pub host_cores: f64,
    /// The CPUs the postmaster (and so every backend) may run on, as a list, and how many.
    pub server_cpus: String,
    pub server_cores: f64,
}

/// One disk's cumulative busy time (`/proc/diskstats`' time spent doing I/O).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskTicks {
    pub name: String,
    pub busy_ms: u64,
}

/// Cumulative counters on the server's host at one instant of the watcher's clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchReading {
    /// The watcher's monotonic clock, in nanoseconds from its start: the wall time between two
    /// readings is taken where the counters were read, whatever the network did.
    pub at_ns: u64,
    /// The host's busy and total ticks over all its CPUs (/proc/stat).
    pub host_busy: Option<u64>,
    pub host_total: Option<u64>,
    /// CPU seconds of the postmaster and every backend, reaped ones included.
    pub server_seconds: Option<f64>,
    /// The postmaster's own thread: its CPU time, and its time waiting for a CPU (schedstat).
    pub postmaster_run_ns: Option<u64>,
    pub postmaster_wait_ns: Option<u64>,
    /// The backends' time waiting for a CPU, summed over them; read at a step's edges only
    /// (one file per backend).
    pub backends_wait_ns: Option<u64>,
    /// Memory available for new work, in KiB (/proc/meminfo's MemAvailable).
    pub mem_available_kib: Option<u64>,
    pub disks: Vec<DiskTicks>,
}

/// The server's host over one window, as percentages; what a sample or a whole step shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchSample {
    /// Milliseconds since the run started (the run's clock).
    pub elapsed_ms: u64,
    pub step: u32,
    /// Busy share of all the server host's CPUs.
    pub host_cpu_pct: Option<f64>,
    /// The server's processes over the CPUs they may run on.
    pub server_cpu_pct: Option<f64>,
    /// The postmaster's thread over one CPU: its CPU, and its CPU plus its wait for one (at
    /// 100, it was never idle: no connection was accepted faster).
    pub postmaster_cpu_pct: Option<f64>,
    pub postmaster_runnable_pct: Option<f64>,
    /// The backends' wait for a CPU over the window, in milliseconds (edges only).
    pub backends_wait_ms: Option<f64>,
    pub mem_available_mb: Option<f64>,
    /// The busiest disk's busy share.
    pub disk_busy_pct: Option<f64>,
}

impl WatchSample {
    /// The window from `before` to `after` on a host of `host`'s CPUs; None when no time
    /// passed between them on the watcher's clock.
    pub fn between(
        before: &WatchReading,
        after: &WatchReading,
        host: &WatchedHost,
    ) -> Option<Self> {
        let wall = after.at_ns.checked_sub(before.at_ns)? as f64 / 1e9;
        if wall <= 0.0 {
            return None;
        }
        let pct = |part: f64, whole: f64| (part / whole * 100.0).clamp(0.0, 100.0);
        let host_cpu_pct = match (
            after.host_busy,
            before.host_busy,
            after.host_total,
            before.host_total,
        ) {
            (Some(ab), Some(bb), Some(at), Some(bt)) if at > bt => {
                Some(pct(ab.saturating_sub(bb) as f64, (at - bt) as f64))
            }
            _ => None,
        };
        let delta = |a: Option<u64>, b: Option<u64>| Some(a?.checked_sub(b?)? as f64 / 1e9);
        let server = delta_f(after.server_seconds, before.server_seconds);
        let run = delta(after.postmaster_run_ns, before.postmaster_run_ns);
        let wait = delta(after.postmaster_wait_ns, before.postmaster_wait_ns);
        let backends = delta(after.backends_wait_ns, before.backends_wait_ns);
        Some(WatchSample {
            elapsed_ms: 0,
            step: 0,
            host_cpu_pct,
            server_cpu_pct: server.map(|s| pct(s, wall * host.server_cores.max(0.01))),
            postmaster_cpu_pct: run.map(|r| pct(r, wall)),
            postmaster_runnable_pct: run.zip(wait).map(|(r, w)| pct(r + w, wall)),
            backends_wait_ms: backends.map(|s| s * 1000.0),
            mem_available_mb: after.mem_available_kib.map(|kib| kib as f64 / 1024.0),
            disk_busy_pct: busiest_disk(before, after, wall),
        })
    }
}

fn delta_f(after: Option<f64>, before: Option<f64>) -> Option<f64> {
    Some((after? - before?).max(0.0))
}

/// The busy share of the busiest disk read at both ends.
fn busiest_disk(before: &WatchReading, after: &WatchReading, wall: f64) -> Option<f64> {
    after
        .disks
        .iter()
        .filter_map(|disk| {
            let earlier = before.disks.iter().find(|d| d.name == disk.name)?;
            let busy = disk.busy_ms.checked_sub(earlier.busy_ms)? as f64 / 1000.0;
            Some((busy / wall * 100.0).clamp(0.0, 100.0))
        })
        .reduce(f64::max)
}

/// What the watcher measured over one step: the whole step's figures (from its edges' readings)
/// with the peaks of its samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watched {
    pub host_cpu: Option<MeanPeak>,
    pub postmaster_cpu_pct: Option<f64>,
    pub postmaster_runnable_pct: Option<f64>,
    pub backends_wait_ms: Option<f64>,
    /// The least memory available at any reading of the step.
    pub mem_available_mb_min: Option<f64>,
    pub disk_busy: Option<MeanPeak>,
}

impl Watched {
    /// From the step's samples and its whole window.
    pub fn of(samples: &[WatchSample], whole: &WatchSample) -> Self {
        let series = |mean: Option<f64>, pick: fn(&WatchSample) -> Option<f64>| {
            let values: Vec<f64> = samples.iter().filter_map(pick).collect();
            mean.map(|mean| MeanPeak::with_mean(mean, &values))
        };
        let mem = samples
            .iter()
            .chain(std::iter::once(whole))
            .filter_map(|s| s.mem_available_mb)
            .reduce(f64::min);
        Watched {
            host_cpu: series(whole.host_cpu_pct, |s| s.host_cpu_pct),
            postmaster_cpu_pct: whole.postmaster_cpu_pct,
            postmaster_runnable_pct: whole.postmaster_runnable_pct,
            backends_wait_ms: whole.backends_wait_ms,
            mem_available_mb_min: mem,
            disk_busy: series(whole.disk_busy_pct, |s| s.disk_busy_pct),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> WatchedHost {
        WatchedHost {
            host: "db".to_owned(),
            postmaster_pid: 1,
            host_cores: 4.0,
            server_cpus: "0,1".to_owned(),
            server_cores: 2.0,
        }
    }

    #[test]
    fn a_window_is_each_counter_over_the_watchers_own_wall_time() {
        let before = WatchReading {
            at_ns: 1_000_000_000,
            host_busy: Some(100),
            host_total: Some(400),
            server_seconds: Some(10.0),
            postmaster_run_ns: Some(0),
            postmaster_wait_ns: Some(0),
            backends_wait_ns: Some(5_000_000),
            mem_available_kib: Some(4096),
            disks: vec![DiskTicks {
                name: "sda".to_owned(),
                busy_ms: 100,
            }],
        };
        // Two seconds later: 800 ticks of which 400 busy; the server 3 s on its 2 CPUs; the
        // postmaster ran 1.5 s and waited 0.3 s; sda busy 500 ms.
        let after = WatchReading {
            at_ns: 3_000_000_000,
            host_busy: Some(500),
            host_total: Some(1200),
            server_seconds: Some(13.0),
            postmaster_run_ns: Some(1_500_000_000),
            postmaster_wait_ns: Some(300_000_000),
            backends_wait_ns: Some(25_000_000),
            mem_available_kib: Some(2048),
            disks: vec![DiskTicks {
                name: "sda".to_owned(),
                busy_ms: 600,
            }],
        };
        let sample = WatchSample::between(&before, &after, &host()).unwrap();
        assert_eq!(sample.host_cpu_pct, Some(50.0));
        assert_eq!(sample.server_cpu_pct, Some(75.0));
        assert_eq!(sample.postmaster_cpu_pct, Some(75.0));
        assert_eq!(sample.postmaster_runnable_pct, Some(90.0));
        assert_eq!(sample.backends_wait_ms, Some(20.0));
        assert_eq!(sample.mem_available_mb, Some(2.0));
        assert_eq!(sample.disk_busy_pct, Some(25.0));
        assert_eq!(WatchSample::between(&after, &after, &host()), None);
        // Counters missing at either end say nothing, never zero.
        let bare = WatchReading {
            at_ns: 5_000_000_000,
            ..WatchReading::default()
        };
        let sample = WatchSample::between(&after, &bare, &host()).unwrap();
        assert_eq!(sample.server_cpu_pct, None);
        assert_eq!(sample.postmaster_runnable_pct, None);
        assert_eq!(sample.disk_busy_pct, None);
    }

    #[test]
    fn a_step_keeps_the_whole_windows_means_and_its_samples_peaks() {
        let sample = |host: f64, mem: f64| WatchSample {
            host_cpu_pct: Some(host),
            mem_available_mb: Some(mem),
            ..WatchSample::default()
        };
        let samples: Vec<WatchSample> = [10.0, 90.0, 20.0, 30.0, 40.0]
            .iter()
            .map(|&h| sample(h, 100.0 - h))
            .collect();
        let whole = WatchSample {
            postmaster_runnable_pct: Some(95.0),
            ..sample(38.0, 50.0)
        };
        let watched = Watched::of(&samples, &whole);
        let host = watched.host_cpu.unwrap();
        assert_eq!(host.mean, 38.0);
        assert_eq!(host.peak, Some(90.0));
        assert_eq!(watched.mem_available_mb_min, Some(10.0));
        assert_eq!(watched.postmaster_runnable_pct, Some(95.0));
        assert_eq!(watched.disk_busy, None);
    }
}
