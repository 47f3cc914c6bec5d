//! A step's aggregated result: counts by class, latency histograms, CPU and server figures.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::model::outcome::{FailureClass, Side};
use crate::model::rules::Flag;
use crate::model::sample::{CpuSample, ServerStatsSummary, StepCpu};

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

    /// The peak where there is one, else the mean: what saturation is judged on.
    pub fn highest(&self) -> f64 {
        self.peak.unwrap_or(self.mean)
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
    /// That wait over the CPU time pgstress's CPUs offered in the step.
    pub client_wait_share: Option<f64>,
    /// How busy pgstress's CPUs were over the step, whoever ran on them, in percent.
    pub client_cpus_busy_pct: Option<f64>,
}

impl CpuSummary {
    /// pgstress's threads waited for a CPU `share` of its CPU time or more while its CPUs were
    /// busy `busy_pct` or more, with others' work: starved. Threads that only wait for each
    /// other (a burst's, released together) leave its CPUs to pgstress, which then shows as
    /// pgstress's own CPU instead.
    pub fn starved(&self, share: f64, busy_pct: f64) -> bool {
        self.client_wait_share.is_some_and(|wait| wait >= share)
            && self
                .client_cpus_busy_pct
                .is_some_and(|busy| busy >= busy_pct)
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
            client_wait_share: whole.client_wait_share,
            client_cpus_busy_pct: whole.client_cpus_busy_pct,
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
    /// The most requests that were running at the same moment.
    pub peak_in_flight: u32,
    pub cpu: CpuSummary,
    /// What the server's own statistics showed; None without a monitoring connection.
    pub server: Option<ServerStatsSummary>,
    /// Diagnosis flags, set once the step is judged.
    pub flags: Vec<Flag>,
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
    fn throughput_counts_what_was_sent_per_second_of_wall_time() {
        let mut step = step_result(1, 100, 0);
        step.wall = Duration::from_millis(500);
        step.dropped = 20;
        step.requests = 120;
        assert_eq!(step.throughput(), 200.0);
        step.wall = Duration::ZERO;
        assert_eq!(step.throughput(), 0.0);
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
        assert_eq!((two.mean, two.peak, two.highest()), (20.0, None, 20.0));
        let three = MeanPeak::of([10.0, 50.0, 30.0]).unwrap();
        assert_eq!(
            (three.mean, three.peak, three.highest()),
            (30.0, Some(50.0), 50.0)
        );
        // An exact mean from counters above every sample: the samples missed the busiest
        // moment, and the peak is at least the mean.
        let exact = MeanPeak::with_mean(70.0, &[10.0, 50.0, 30.0]);
        assert_eq!(exact.peak, Some(70.0));
        let below = MeanPeak::with_mean(5.0, &[-3.0, -2.0, -1.0]);
        assert_eq!(below.peak, Some(5.0));
    }

    #[test]
    fn starved_takes_both_the_wait_and_busy_cpus_each_at_its_threshold() {
        let summary = |wait: Option<f64>, busy: Option<f64>| CpuSummary {
            client_wait_share: wait,
            client_cpus_busy_pct: busy,
            ..CpuSummary::default()
        };
        assert!(summary(Some(0.5), Some(90.0)).starved(0.5, 90.0));
        assert!(!summary(Some(0.49), Some(90.0)).starved(0.5, 90.0));
        assert!(!summary(Some(0.5), Some(89.9)).starved(0.5, 90.0));
        assert!(!summary(None, Some(100.0)).starved(0.5, 90.0));
        assert!(!summary(Some(1.0), None).starved(0.5, 90.0));
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
        };
        let samples = [
            sample(20.0, 10.0, Some(30.0)),
            sample(80.0, 40.0, Some(60.0)),
            sample(50.0, 20.0, None),
        ];
        let whole = StepCpu {
            cpu: sample(45.0, 25.0, Some(35.0)),
            client_wait_ms: Some(12.0),
            client_wait_share: Some(0.25),
            client_cpus_busy_pct: Some(66.0),
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
            (Some(12.0), Some(0.25), Some(66.0))
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
