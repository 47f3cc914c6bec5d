//! What the samplers saw beside a step: CPU shares and the server's own statistics.

use crate::model::activity::{Activity, ActivitySample, DatabaseCounts};

/// One sample, covering the time since the previous reading.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSample {
    /// Milliseconds since the run started.
    pub elapsed_ms: u64,
    pub step: u32,
    pub requests: u32,
    /// Busy share of all the host's cores.
    pub host_cpu_pct: f64,
    /// This process's share of all the host's cores.
    pub process_cpu_pct: f64,
    /// The server's share of all the host's cores; None when the server is not local.
    pub server_cpu_pct: Option<f64>,
    /// The pooler's share of all the host's cores; None without a local pooler.
    pub pooler_cpu_pct: Option<f64>,
}

/// A whole step's CPU, from cumulative counters read at its start and its end: exact however
/// short the step, where samples of a 20 ms step would be a tick or two.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCpu {
    /// The host, this process and the server over the step, as in a sample.
    pub cpu: CpuSample,
    /// How long pgstress's threads waited for a CPU in the step, summed over the threads.
    pub client_wait_ms: Option<f64>,
    /// How busy pgstress's CPUs were over the step, whoever ran on them, in percent.
    pub client_cpus_busy_pct: Option<f64>,
    /// The share of the step, in percent, that the pooler's main thread was running or ready
    /// to run and waiting for a CPU: at 100 every client waits for it, however busy the host.
    pub pooler_runnable_pct: Option<f64>,
    /// Each process of a pooler of one-thread processes (PgBouncer, one or several sharing
    /// its port), over the step; empty for any other pooler, or none.
    pub pooler_processes: Vec<PoolerProcessCpu>,
}

/// One process of a pooler whose processes each run on one thread (PgBouncer), over a whole
/// step: its own core, judged on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolerProcessCpu {
    /// Its place among the pooler's processes, from 1, in the order they started.
    pub index: u32,
    pub pid: u32,
    /// Its CPU over the step as a share of one core, in percent.
    pub core_pct: f64,
    /// The share of the step its thread was runnable (running or waiting for a CPU).
    pub runnable_pct: Option<f64>,
    /// Judged to have filled its core (`pooler-saturated`), set by the step's judging.
    pub full: bool,
}

/// One sample of the server's sessions: pgstress's own when it was read, and the active
/// sessions of every client, by event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatsSample {
    pub step: u32,
    pub connections: u32,
    pub active: u32,
    /// Every client's active sessions (the monitor left out); None for the reading at the
    /// step's end, taken once its requests had all ended, which would count them all idle.
    pub activity: Option<ActivitySample>,
}

/// What the server saw during one step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerStatsSummary {
    pub connections_peak: u32,
    pub active_peak: u32,
    /// Every client's active sessions over the step's samples.
    pub activity: Option<Activity>,
    /// The server's own counters over the step, from its first reading to its last.
    pub counts: Option<DatabaseCounts>,
}

impl ServerStatsSummary {
    pub fn of(samples: &[ServerStatsSample], counts: Option<DatabaseCounts>) -> Option<Self> {
        if samples.is_empty() && counts.is_none() {
            return None;
        }
        Some(ServerStatsSummary {
            connections_peak: samples.iter().map(|s| s.connections).max().unwrap_or(0),
            active_peak: samples.iter().map(|s| s.active).max().unwrap_or(0),
            activity: Activity::of(samples.iter().filter_map(|s| s.activity.as_ref())),
            counts,
        })
    }
}

/// One reading of a pooler's own view (PgBouncer's `SHOW POOLS`), summed over its pools.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoolerViewSample {
    /// Clients waiting for a server connection.
    pub clients_waiting: u32,
    /// How long the oldest waiting client has waited, in milliseconds.
    pub max_wait_ms: f64,
}

/// A pooler's `SHOW STATS` over a whole step: the time its clients waited for a server
/// connection, and the transactions it passed on.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoolerStatsWhole {
    pub wait_ms: f64,
    pub transactions: u64,
}

/// What a pooler said of one step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoolerViewSummary {
    pub clients_waiting_peak: Option<u32>,
    pub max_wait_ms: Option<f64>,
    /// The clients' wait for a server connection per transaction, on average.
    pub avg_wait_ms: Option<f64>,
}

impl PoolerViewSummary {
    pub fn of(samples: &[PoolerViewSample], whole: Option<&PoolerStatsWhole>) -> Option<Self> {
        if samples.is_empty() && whole.is_none() {
            return None;
        }
        Some(PoolerViewSummary {
            clients_waiting_peak: samples.iter().map(|s| s.clients_waiting).max(),
            max_wait_ms: samples.iter().map(|s| s.max_wait_ms).reduce(f64::max),
            avg_wait_ms: whole
                .filter(|w| w.transactions > 0)
                .map(|w| w.wait_ms / w.transactions as f64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_the_peaks_and_the_activity_of_the_samples_that_have_it() {
        let sample = |connections, active, cpu: Option<u32>| ServerStatsSample {
            step: 1,
            connections,
            active,
            activity: cpu.map(|n| ActivitySample {
                events: vec![("CPU".to_owned(), n)],
            }),
        };
        let samples = [
            sample(4, 4, Some(4)),
            sample(9, 3, Some(2)),
            sample(2, 1, None),
        ];
        let counts = DatabaseCounts {
            xact_commit: Some(12),
            ..DatabaseCounts::default()
        };
        let summary = ServerStatsSummary::of(&samples, Some(counts)).unwrap();
        assert_eq!(summary.connections_peak, 9);
        assert_eq!(summary.active_peak, 4);
        // The end's reading (no activity) is not an idle sample: the mean of 4 and 2.
        let activity = summary.activity.unwrap();
        assert_eq!((activity.samples, activity.mean), (2, 3.0));
        assert_eq!(summary.counts, Some(counts));
        assert_eq!(ServerStatsSummary::of(&[], None), None);
        let counts_only = ServerStatsSummary::of(&[], Some(counts)).unwrap();
        assert_eq!(
            (counts_only.activity, counts_only.connections_peak),
            (None, 0)
        );
    }

    #[test]
    fn a_poolers_view_keeps_the_peaks_and_the_mean_wait() {
        let sample = |clients_waiting, max_wait_ms| PoolerViewSample {
            clients_waiting,
            max_wait_ms,
        };
        let whole = PoolerStatsWhole {
            wait_ms: 300.0,
            transactions: 100,
        };
        let view = PoolerViewSummary::of(&[sample(3, 20.0), sample(7, 5.0)], Some(&whole));
        assert_eq!(
            view,
            Some(PoolerViewSummary {
                clients_waiting_peak: Some(7),
                max_wait_ms: Some(20.0),
                avg_wait_ms: Some(3.0),
            })
        );
        let idle = PoolerStatsWhole {
            wait_ms: 0.0,
            transactions: 0,
        };
        let view = PoolerViewSummary::of(&[], Some(&idle)).unwrap();
        assert_eq!((view.clients_waiting_peak, view.avg_wait_ms), (None, None));
        assert_eq!(PoolerViewSummary::of(&[], None), None);
    }
}
