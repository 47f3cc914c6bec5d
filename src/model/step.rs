//! A step's aggregated result: counts by class, latency histograms, CPU and server figures.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::model::outcome::{FailureClass, Side};
use crate::model::rules::Flag;
use crate::model::sample::{CpuSample, PoolerViewSummary, ServerStatsSummary, StepCpu};

/// Latencies are recorded in microseconds to 3 significant digits. The histograms grow to
/// hold any value (a pool's queue wait has no bound, a deadline may be a day): nothing the
/// run can produce is clamped.
const SIGFIG: u8 = 3;
const AN_HOUR_MICROS: u64 = 3_600_000_000;

/// Mean and peak of one CPU series over a step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeanPeak {
    pub mean: f64,
    /// The highest sample; None where the step had fewer than `MIN_SAMPLES_FOR_PEAK` samples
    /// (one or two samples are the mean again, not a peak).
    pub peak: Option<f64>,
}

/// Samples a step needs before its highest one is called a peak.
pub const MIN_SAMPLES_FOR_PEAK: usize = 3;

impl MeanPeak {
    /// The mean of the samples, and their peak when there are enough of them.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let values: Vec<f64> = values.into_iter().collect();
        let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
        mean.map(|mean| MeanPeak::with_mean(mean, &values))
    }

    /// An exact mean (from counters) and the peak of the samples, when there are enough.
    pub fn with_mean(mean: f64, samples: &[f64]) -> Self {
        let peak = (samples.len() >= MIN_SAMPLES_FOR_PEAK)
            .then(|| samples.iter().copied().fold(f64::MIN, f64::max).max(mean));
        MeanPeak { mean, peak }
    }
}

/// The CPU of a step: None where nothing was measured (or the server is not local).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSummary {
    pub host: Option<MeanPeak>,
    pub process: Option<MeanPeak>,
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
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoolerSide {
    pub cpu: Option<MeanPeak>,
    /// The share of the step its main thread was runnable (running or waiting for a CPU).
    pub runnable_pct: Option<f64>,
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
    /// The pooler's CPU and view; empty without a pooler in sight.
    pub pooler: PoolerSide,
    /// Diagnosis flags, set once the step is judged.
    pub flags: Vec<Flag>,
    /// Agents whose share raised a client-limit flag, with the flag (none on one machine).
    pub limiting_agents: Vec<(Flag, String)>,
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
mod tests {
    use super::*;
    use crate::model::sample::StepCpu;
    use crate::test_support::{step_result, step_with_failures};

    #[test]
    fn sent_leaves_out_drops_and_threads_that_never_started() {
        let mut step = step_with_failures(1, 100, 10, FailureClass::Spawn, 5);
        step.dropped = 20;
        step.requests = 120;
        step.by_class[FailureClass::Io.index()] = 5;
        step.failed = 15;
        assert_eq!(step.sent(), 90);
        assert_eq!(step.server_failed(), 5);
        assert_eq!(step.failures(FailureClass::Io), 5);
        assert_eq!(step.failures(FailureClass::Spawn), 10);
    }

    #[test]
    fn throughput_counts_successes_and_attempts_what_was_sent() {
        let mut step = step_result(1, 100, 10);
        step.wall = Duration::from_millis(500);
        step.dropped = 20;
        step.requests = 120;
        assert_eq!(step.throughput(), 180.0, "90 ok in 0.5 s");
        assert_eq!(step.attempts_per_second(), 200.0, "100 sent in 0.5 s");
        step.wall = Duration::ZERO;
        assert_eq!((step.throughput(), step.attempts_per_second()), (0.0, 0.0));
    }

    #[test]
    fn percentiles_and_max_read_their_histogram() {
        let mut step = step_result(1, 1, 0);
        for histogram in [
            &mut step.latency,
            &mut step.connect,
            &mut step.queue_wait,
            &mut step.service,
        ] {
            histogram.reset();
        }
        for us in 1..=1000u64 {
            step.latency.record(us).unwrap();
        }
        step.connect.record(7).unwrap();
        step.queue_wait.record(8).unwrap();
        step.service.record(9).unwrap();
        assert_eq!(step.latency_ms(50.0), Some(0.5));
        assert_eq!(step.latency_ms(90.0), Some(0.9));
        assert_eq!(step.latency_max_ms(), Some(1.0));
        assert_eq!(step.connect_ms(50.0), Some(0.007));
        assert_eq!(step.queue_wait_ms(50.0), Some(0.008));
        assert_eq!(step.service_ms(50.0), Some(0.009));
        step.latency.reset();
        assert_eq!((step.latency_ms(50.0), step.latency_max_ms()), (None, None));
    }

    #[test]
    fn failure_breakdown_puts_the_most_frequent_first() {
        let mut step = step_result(1, 100, 0);
        step.by_class[FailureClass::Refused.index()] = 2;
        step.by_class[FailureClass::Timeout.index()] = 9;
        step.by_class[FailureClass::Io.index()] = 5;
        assert_eq!(
            step.failure_breakdown(),
            vec![
                (FailureClass::Timeout, 9),
                (FailureClass::Io, 5),
                (FailureClass::Refused, 2)
            ]
        );
        assert_eq!(step_result(1, 10, 0).failure_breakdown(), vec![]);
    }

    #[test]
    fn one_sample_gives_a_mean_and_no_peak() {
        let sample = CpuSample {
            elapsed_ms: 0,
            step: 1,
            requests: 1,
            host_cpu_pct: 30.0,
            process_cpu_pct: 20.0,
            server_cpu_pct: None,
            pooler_cpu_pct: None,
        };
        let summary = CpuSummary::of(&[sample], None);
        assert_eq!(summary.host.map(|h| h.peak), Some(None));
        assert_eq!(summary.host.map(|h| h.mean), Some(30.0));
        assert_eq!(summary.process.map(|p| p.mean), Some(20.0));
        assert_eq!(summary.server, None);
    }

    #[test]
    fn a_peak_takes_three_samples_and_is_never_below_the_mean() {
        assert_eq!(MeanPeak::of([]), None);
        let two = MeanPeak::of([10.0, 30.0]).unwrap();
        assert_eq!((two.mean, two.peak), (20.0, None));
        let three = MeanPeak::of([10.0, 50.0, 30.0]).unwrap();
        assert_eq!((three.mean, three.peak), (30.0, Some(50.0)));
        // An exact mean from counters above every sample: the samples missed the busiest
        // moment, and the peak is at least the mean.
        let exact = MeanPeak::with_mean(70.0, &[10.0, 50.0, 30.0]);
        assert_eq!(exact.peak, Some(70.0));
        let below = MeanPeak::with_mean(5.0, &[-3.0, -2.0, -1.0]);
        assert_eq!(below.peak, Some(5.0));
    }

    #[test]
    fn starved_is_the_wait_at_its_threshold_of_the_requests_time() {
        let summary = |wait_ms: Option<f64>| CpuSummary {
            client_wait_ms: wait_ms,
            ..CpuSummary::default()
        };
        let second = Duration::from_secs(1);
        assert!(summary(Some(100.0)).with_wait_over(second).starved(0.1));
        assert!(!summary(Some(99.0)).with_wait_over(second).starved(0.1));
        assert!(!summary(None).with_wait_over(second).starved(0.1));
        assert!(
            !summary(Some(1.0))
                .with_wait_over(Duration::ZERO)
                .starved(0.1)
        );
    }

    #[test]
    fn whole_step_counters_give_the_means_and_samples_the_peaks() {
        let sample = |host: f64, process: f64, server: Option<f64>| CpuSample {
            elapsed_ms: 0,
            step: 1,
            requests: 1,
            host_cpu_pct: host,
            process_cpu_pct: process,
            server_cpu_pct: server,
            pooler_cpu_pct: None,
        };
        let samples = [
            sample(20.0, 10.0, Some(30.0)),
            sample(80.0, 40.0, Some(60.0)),
            sample(50.0, 20.0, None),
        ];
        let whole = StepCpu {
            cpu: sample(45.0, 25.0, Some(35.0)),
            client_wait_ms: Some(12.0),
            client_cpus_busy_pct: Some(66.0),
            pooler_runnable_pct: None,
        };
        let summary = CpuSummary::of(&samples, Some(&whole));
        let series = |mean, peak| Some(MeanPeak { mean, peak });
        assert_eq!(summary.host, series(45.0, Some(80.0)));
        assert_eq!(summary.process, series(25.0, Some(40.0)));
        // Two server samples are too few for a peak.
        assert_eq!(summary.server, series(35.0, None));
        assert_eq!(
            (
                summary.client_wait_ms,
                summary.client_wait_share,
                summary.client_cpus_busy_pct
            ),
            (Some(12.0), None, Some(66.0))
        );
        // Without the counters, the samples give both.
        let sampled = CpuSummary::of(&samples, None);
        assert_eq!(sampled.host, series(50.0, Some(80.0)));
        assert_eq!(sampled.server, series(45.0, None));
        assert_eq!(sampled.client_wait_share, None);
        // No server counters: no server figures, whatever the samples hold.
        let remote = StepCpu {
            cpu: sample(45.0, 25.0, None),
            ..whole
        };
        assert_eq!(CpuSummary::of(&samples, Some(&remote)).server, None);
    }
}
