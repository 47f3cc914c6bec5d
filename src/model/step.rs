//! A step's aggregated result: counts by class, latency histograms, CPU and server figures.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::model::outcome::{FailureClass, Side};
use crate::model::rules::Flag;
use crate::model::sample::{
    CpuSample, PoolerProcessCpu, PoolerViewSummary, ServerStatsSummary, StepCpu,
};
use crate::model::server_cpu::ServerCpu;

/// Latencies are recorded in microseconds to 3 significant digits. The histograms grow to
/// hold any value (a pool's queue wait has no bound, a deadline may be a day): nothing the
/// run can produce is clamped.
const SIGFIG: u8 = 3;
const AN_HOUR_MICROS: u64 = 3_600_000_000;

pub use crate::model::mean_peak::{MIN_SAMPLES_FOR_PEAK, MeanPeak};

/// The CPU of a step: None where nothing was measured (or the server is not local).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSummary {
    pub host: Option<MeanPeak>,
    pub process: Option<MeanPeak>,
    /// pgstress's CPU over the CPUs it may use, in percent (as `client-saturated` judges it);
    /// set once those CPUs are known.
    pub process_own: Option<MeanPeak>,
    pub server: Option<MeanPeak>,
    /// How long pgstress's threads waited for a CPU in the step, summed over the threads.
    pub client_wait_ms: Option<f64>,
    /// That wait over the time the step's requests were in flight, summed over the requests:
    /// the share of what was measured that was pgstress waiting for its own CPU.
    pub client_wait_share: Option<f64>,
    /// How busy pgstress's CPUs were over the step, whoever ran on them, in percent.
    pub client_cpus_busy_pct: Option<f64>,
}

impl CpuSummary {
    /// pgstress's threads waited for a CPU `share` of the time its requests were in flight or
    /// more: starved, whoever took the CPU (another process, or pgstress's own threads
    /// released together), since that wait is in every latency the step measured.
    pub fn starved(&self, share: f64) -> bool {
        self.client_wait_share.is_some_and(|wait| wait >= share)
    }

    /// The share of `in_flight` (the requests' time, summed) that pgstress's threads spent
    /// waiting for a CPU; None where the wait was not measured or no request ran.
    pub fn with_wait_over(self, in_flight: Duration) -> Self {
        let in_flight_ms = in_flight.as_secs_f64() * 1000.0;
        let client_wait_share = self
            .client_wait_ms
            .filter(|_| in_flight_ms > 0.0)
            .map(|wait_ms| wait_ms / in_flight_ms);
        CpuSummary {
            client_wait_share,
            ..self
        }
    }
}

impl CpuSummary {
    /// Means from the whole step's counters where there are any (else from the samples),
    /// peaks from the samples where there are enough.
    pub fn of(samples: &[CpuSample], whole: Option<&StepCpu>) -> Self {
        let Some(whole) = whole else {
            let server: Vec<f64> = samples.iter().filter_map(|s| s.server_cpu_pct).collect();
            return CpuSummary {
                host: MeanPeak::of(samples.iter().map(|s| s.host_cpu_pct)),
                process: MeanPeak::of(samples.iter().map(|s| s.process_cpu_pct)),
                process_own: None,
                server: MeanPeak::of(server),
                client_wait_ms: None,
                client_wait_share: None,
                client_cpus_busy_pct: None,
            };
        };
        let series = |mean: f64, pick: fn(&CpuSample) -> Option<f64>| {
            let values: Vec<f64> = samples.iter().filter_map(pick).collect();
            MeanPeak::with_mean(mean, &values)
        };
        let cpu = &whole.cpu;
        CpuSummary {
            host: Some(series(cpu.host_cpu_pct, |s| Some(s.host_cpu_pct))),
            process: Some(series(cpu.process_cpu_pct, |s| Some(s.process_cpu_pct))),
            process_own: None,
            server: cpu
                .server_cpu_pct
                .map(|mean| series(mean, |s| s.server_cpu_pct)),
            client_wait_ms: whole.client_wait_ms,
            client_wait_share: None,
            client_cpus_busy_pct: whole.client_cpus_busy_pct,
        }
    }
}

/// The concurrency a step achieved, from its requests' own instants, beside what it asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Concurrency {
    /// What the mode asked for: the step's size (burst), its workers (pool); None in rate
    /// mode, where it follows from the server's latency.
    pub asked: Option<u32>,
    /// Requests that started (their thread ran), and requests that got a connection.
    pub started: u32,
    pub connected: u32,
    /// The most requests in flight at one moment: from each one's start to its end.
    pub peak_in_flight: u32,
    /// The most requests holding a connection at one moment: from each one's connection
    /// being ready (its start, on a connection kept open) to its end.
    pub peak_connected: u32,
}

/// Share of the concurrency asked for that counts as reached: one request in ten may miss
/// the others (a thread that ran a little early or late) without the step being flagged.
pub const CONCURRENCY_REACHED_SHARE: f64 = 0.9;

/// Why a step did not reach the concurrency it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shortfall {
    /// Its requests did not run at the same time: threads started late (the client's).
    StartedLate,
    /// They ran at the same time but their connections came one after another: the server
    /// accepted them slowly (the server's).
    AcceptedSlowly,
}

impl Concurrency {
    /// Whether, and why, the concurrency asked for was not reached. Only requests that
    /// started count against the in-flight peak, and only those that connected against the
    /// connected one: refusals and threads that never started are flagged by their own classes.
    pub fn shortfall(&self) -> Option<Shortfall> {
        let asked = self.asked?;
        let short = |peak: u32, of: u32| {
            let target = asked.min(of);
            f64::from(peak) < (f64::from(target) * CONCURRENCY_REACHED_SHARE).ceil()
        };
        if short(self.peak_in_flight, self.started) {
            Some(Shortfall::StartedLate)
        } else if short(self.peak_connected, self.connected) {
            Some(Shortfall::AcceptedSlowly)
        } else {
            None
        }
    }
}

/// The pooler's side of a step: its CPU (a local pooler) and its own view (its console).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolerSide {
    pub cpu: Option<MeanPeak>,
    /// The share of the step its main thread was runnable (running or waiting for a CPU):
    /// the most runnable one's, of several processes.
    pub runnable_pct: Option<f64>,
    /// Each of its one-thread processes (PgBouncer's), each on its own core.
    pub processes: Vec<PoolerProcessCpu>,
    pub view: Option<PoolerViewSummary>,
}

impl PoolerSide {
    /// The pooler's CPU as the other sides': the exact mean from the step's counters, the peak
    /// from its samples.
    pub fn cpu_of(samples: &[CpuSample], whole: Option<&StepCpu>) -> Option<MeanPeak> {
        let values: Vec<f64> = samples.iter().filter_map(|s| s.pooler_cpu_pct).collect();
        match whole.and_then(|w| w.cpu.pooler_cpu_pct) {
            Some(mean) => Some(MeanPeak::with_mean(mean, &values)),
            None => MeanPeak::of(values),
        }
    }
}

/// Everything a step measured, aggregated.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub step: u32,
    /// The step's load: its concurrent requests (burst), queued requests (pool) or requests
    /// per second (rate).
    pub load: u32,
    /// Requests the step sent or offered: `ok + failed + dropped`.
    pub requests: u32,
    pub ok: u32,
    pub failed: u32,
    /// Offered but never sent, because the client had no free worker when they were due.
    pub dropped: u32,
    /// Planned but never sent, because the step was cut short (Ctrl-C, a stop): the step is
    /// partial.
    pub unsent: u32,
    /// Failures per class, indexed by `FailureClass::index`.
    pub by_class: [u32; FailureClass::ALL.len()],
    /// The first message of each class seen in the step, for the terminal.
    pub first_messages: Vec<(FailureClass, String)>,
    pub launch: Duration,
    pub wall: Duration,
    /// From the first to the last request start.
    pub launch_spread: Duration,
    /// Total latency of the successful requests, in microseconds.
    pub latency: Histogram<u64>,
    /// Connect time of every request that connected, in microseconds.
    pub connect: Histogram<u64>,
    /// The wait before each request started, in microseconds: its time in the pool's queue,
    /// or its lag behind the rate schedule. Empty in burst mode.
    pub queue_wait: Histogram<u64>,
    /// Start-to-end time of the successful requests that waited, in microseconds: the
    /// latency without the wait (rate mode's uncorrected latency). Empty in burst mode.
    pub service: Histogram<u64>,
    /// How many requests ran, and held a connection, at the same moment.
    pub concurrency: Concurrency,
    pub cpu: CpuSummary,
    /// What the server's own statistics showed; None without a monitoring connection.
    pub server: Option<ServerStatsSummary>,
    /// The server's CPU over its own CPUs, and where it was read: what `server-saturated`
    /// and the verdict judge.
    pub server_cpu: ServerCpu,
    /// What a watcher on the server's host measured beside its CPU (its postmaster, memory,
    /// disks); None without a watcher, or once it was lost.
    pub watched: Option<crate::model::watch::Watched>,
    /// The pooler's CPU and view; empty without a pooler in sight.
    pub pooler: PoolerSide,
    /// Diagnosis flags, set once the step is judged.
    pub flags: Vec<Flag>,
    /// Agents whose share raised a client-limit flag, with the flag (none on one machine).
    pub limiting_agents: Vec<(Flag, String)>,
    /// Requests that reached each host of the target's list, in its order; empty when the
    /// target has one host.
    pub by_node: Vec<u32>,
    /// When the server stopped answering during the step and came back, per client too.
    pub outage: Option<crate::model::outage::Outage>,
    /// Requests of the step's schedule that are neither ok, failed, dropped nor unsent: none,
    /// unless pgstress lost count of one.
    pub lost: u32,
    /// Hold mode: the connections held and what holding them cost each side.
    pub hold: Option<crate::model::hold::HoldStep>,
}

/// An empty histogram of a step's latencies (the one the per-request hot path records into).
pub fn histogram() -> Histogram<u64> {
    // Sized for an hour up front, so the hot path rarely grows it.
    let mut histogram =
        Histogram::new_with_bounds(1, AN_HOUR_MICROS, SIGFIG).expect("valid histogram bounds");
    histogram.auto(true);
    histogram
}

impl StepResult {
    pub fn failures(&self, class: FailureClass) -> u32 {
        self.by_class[class.index()]
    }

    /// Failures of one side: the server's alone can break it; the client's and the data's are
    /// logged, flagged and named, never blamed on the server.
    pub fn failed_on(&self, side: Side) -> u32 {
        FailureClass::ALL
            .iter()
            .filter(|class| class.side() == side)
            .map(|class| self.failures(*class))
            .sum()
    }

    pub fn server_failed(&self) -> u32 {
        self.failed_on(Side::Server)
    }

    /// Requests that left pgstress for the server: all but the dropped ones and the threads
    /// that never started.
    pub fn sent(&self) -> u32 {
        self.requests
            .saturating_sub(self.dropped)
            .saturating_sub(self.unsent)
            .saturating_sub(self.failures(FailureClass::Spawn))
    }

    /// Successful requests per second of wall time.
    pub fn throughput(&self) -> f64 {
        self.per_second(self.ok)
    }

    /// Requests sent per second of wall time, successful or not.
    pub fn attempts_per_second(&self) -> f64 {
        self.per_second(self.sent())
    }

    fn per_second(&self, count: u32) -> f64 {
        let seconds = self.wall.as_secs_f64();
        if seconds > 0.0 {
            f64::from(count) / seconds
        } else {
            0.0
        }
    }

    /// A latency percentile of the successful requests in milliseconds; None when none succeeded.
    pub fn latency_ms(&self, percentile: f64) -> Option<f64> {
        quantile_ms(&self.latency, percentile)
    }

    pub fn connect_ms(&self, percentile: f64) -> Option<f64> {
        quantile_ms(&self.connect, percentile)
    }

    pub fn queue_wait_ms(&self, percentile: f64) -> Option<f64> {
        quantile_ms(&self.queue_wait, percentile)
    }

    pub fn service_ms(&self, percentile: f64) -> Option<f64> {
        quantile_ms(&self.service, percentile)
    }

    pub fn latency_max_ms(&self) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.max() as f64 / 1000.0)
    }

    /// The failure classes that occurred, most frequent first.
    pub fn failure_breakdown(&self) -> Vec<(FailureClass, u32)> {
        let mut classes: Vec<(FailureClass, u32)> = FailureClass::ALL
            .iter()
            .map(|c| (*c, self.failures(*c)))
            .filter(|(_, n)| *n > 0)
            .collect();
        classes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        classes
    }
}

fn quantile_ms(histogram: &Histogram<u64>, percentile: f64) -> Option<f64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(percentile / 100.0) as f64 / 1000.0)
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
