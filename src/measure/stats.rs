//! Per-step aggregation: counts by failure class, latency percentiles from HDR histograms, and
//! the CPU summary of the step's samples. Pure functions over recorded data.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::engine::StepRun;
use crate::judge::flags::Flag;
use crate::measure::sampler::cpu::CpuSample;
use crate::measure::sampler::server_stats::{ServerStatsSample, ServerStatsSummary};
use crate::model::outcome::FailureClass;
use crate::pg::request::RequestRecord;

/// Latencies are recorded in microseconds, 3 significant digits, up to an hour (a value
/// beyond that is recorded as an hour: no request deadline is that long).
const SIGFIG: u8 = 3;
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// Mean and peak of one CPU series over a step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeanPeak {
    pub mean: f64,
    pub peak: f64,
}

impl MeanPeak {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut count = 0usize;
        let mut sum = 0.0;
        let mut peak = f64::MIN;
        for value in values {
            count += 1;
            sum += value;
            peak = peak.max(value);
        }
        (count > 0).then(|| MeanPeak {
            mean: sum / count as f64,
            peak,
        })
    }
}

/// The CPU of a step: None where nothing was sampled (or the server is not local).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSummary {
    pub host: Option<MeanPeak>,
    pub process: Option<MeanPeak>,
    pub server: Option<MeanPeak>,
}

impl CpuSummary {
    pub fn of(samples: &[CpuSample]) -> Self {
        let server: Vec<f64> = samples.iter().filter_map(|s| s.server_cpu_pct).collect();
        CpuSummary {
            host: MeanPeak::of(samples.iter().map(|s| s.host_cpu_pct)),
            process: MeanPeak::of(samples.iter().map(|s| s.process_cpu_pct)),
            server: MeanPeak::of(server),
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
    Histogram::new_with_bounds(1, HIGHEST_MICROS, SIGFIG).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl StepResult {
    pub fn from_run(
        step: u32,
        run: &StepRun,
        cpu: &[CpuSample],
        server: &[ServerStatsSample],
    ) -> Self {
        let requests = run.records.len() as u32 + run.dropped;
        let mut result = StepResult {
            step,
            load: requests,
            requests,
            ok: 0,
            failed: 0,
            dropped: run.dropped,
            by_class: [0; FailureClass::ALL.len()],
            first_messages: Vec::new(),
            launch: run.launch,
            wall: run.wall,
            launch_spread: launch_spread(&run.records),
            latency: histogram(),
            connect: histogram(),
            queue_wait: histogram(),
            service: histogram(),
            peak_in_flight: peak_in_flight(&run.records),
            cpu: CpuSummary::of(cpu),
            server: ServerStatsSummary::of(server),
            flags: Vec::new(),
        };
        for record in &run.records {
            result.add(record);
        }
        result
    }

    fn add(&mut self, record: &RequestRecord) {
        if let Some(connect) = record.connect {
            self.connect.saturating_record(micros(connect));
        }
        if let Some(wait) = record.queue_wait {
            self.queue_wait.saturating_record(micros(wait));
        }
        match &record.outcome {
            Ok(()) => {
                self.ok += 1;
                self.latency.saturating_record(micros(record.latency));
                if record.queue_wait.is_some() {
                    self.service.saturating_record(micros(record.service()));
                }
            }
            Err(failure) => {
                self.failed += 1;
                self.by_class[failure.class.index()] += 1;
                if !self
                    .first_messages
                    .iter()
                    .any(|(class, _)| *class == failure.class)
                {
                    self.first_messages
                        .push((failure.class, failure.message.clone()));
                }
            }
        }
    }

    pub fn failures(&self, class: FailureClass) -> u32 {
        self.by_class[class.index()]
    }

    /// Failures that reached the server or came from it: all but the threads that never
    /// started, which say nothing about the server.
    pub fn server_failed(&self) -> u32 {
        self.failed
            .saturating_sub(self.failures(FailureClass::Spawn))
    }

    /// Completed requests per second of wall time; requests never sent (dropped) are not.
    pub fn throughput(&self) -> f64 {
        let seconds = self.wall.as_secs_f64();
        if seconds > 0.0 {
            f64::from(self.requests.saturating_sub(self.dropped)) / seconds
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

/// The most requests running at one moment, from their starts and service times.
fn peak_in_flight(records: &[RequestRecord]) -> u32 {
    // Ends sort before starts at the same instant: a request that ended is not in flight.
    let mut events: Vec<(Duration, i32)> = records
        .iter()
        .filter_map(|r| r.start_offset.map(|start| (start, r.service())))
        .flat_map(|(start, service)| [(start, 1), (start + service, -1)])
        .collect();
    events.sort_by_key(|&(at, change)| (at, change));
    let mut running = 0i32;
    let mut peak = 0i32;
    for (_, change) in events {
        running += change;
        peak = peak.max(running);
    }
    peak as u32
}

/// From the first to the last start of the requests that started.
fn launch_spread(records: &[RequestRecord]) -> Duration {
    let starts = records.iter().filter_map(|r| r.start_offset);
    let (min, max) = starts.fold((Duration::MAX, Duration::ZERO), |(min, max), start| {
        (min.min(start), max.max(start))
    });
    max.saturating_sub(min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::Failure;

    fn ok(start_ms: u64, latency_ms: u64) -> RequestRecord {
        RequestRecord {
            start_offset: Some(Duration::from_millis(start_ms)),
            queue_wait: None,
            connect: Some(Duration::from_millis(latency_ms / 2)),
            query: Some(Duration::from_millis(latency_ms / 2)),
            latency: Duration::from_millis(latency_ms),
            outcome: Ok(()),
        }
    }

    fn failed(class: FailureClass) -> RequestRecord {
        RequestRecord::failed_without_running(
            Failure::new(class, class.name()),
            Duration::from_millis(1),
        )
    }

    fn run(records: Vec<RequestRecord>) -> StepRun {
        StepRun {
            records,
            dropped: 0,
            launch: Duration::from_millis(5),
            wall: Duration::from_millis(500),
        }
    }

    #[test]
    fn counts_add_up_by_class() {
        let records = vec![
            ok(0, 10),
            ok(1, 20),
            failed(FailureClass::TooManyClients),
            failed(FailureClass::TooManyClients),
            failed(FailureClass::NoRow),
        ];
        let result = StepResult::from_run(2, &run(records), &[], &[]);
        assert_eq!((result.requests, result.ok, result.failed), (5, 2, 3));
        assert_eq!(result.failures(FailureClass::TooManyClients), 2);
        assert_eq!(
            result.failure_breakdown()[0],
            (FailureClass::TooManyClients, 2)
        );
        assert_eq!(result.first_messages.len(), 2);
        assert_eq!(result.throughput(), 10.0);
    }

    #[test]
    fn latency_percentiles_cover_successful_requests_only() {
        let mut records: Vec<_> = (1..=100).map(|ms| ok(0, ms)).collect();
        records.push(failed(FailureClass::Timeout));
        let result = StepResult::from_run(1, &run(records), &[], &[]);
        let p50 = result.latency_ms(50.0).unwrap();
        let p99 = result.latency_ms(99.0).unwrap();
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=100.0).contains(&p99), "{p99}");
        assert!((99.9..=100.1).contains(&result.latency_max_ms().unwrap()));
    }

    #[test]
    fn no_success_means_no_latency() {
        let result = StepResult::from_run(1, &run(vec![failed(FailureClass::Refused)]), &[], &[]);
        assert_eq!(result.latency_ms(50.0), None);
        assert_eq!(result.connect_ms(50.0), None);
    }

    #[test]
    fn launch_spread_ignores_requests_that_never_started() {
        let records = vec![ok(3, 10), ok(40, 10), failed(FailureClass::Spawn)];
        let result = StepResult::from_run(1, &run(records), &[], &[]);
        assert_eq!(result.launch_spread, Duration::from_millis(37));
    }

    #[test]
    fn waits_are_kept_apart_from_service_and_drops_count_as_requests() {
        let waited = |start_ms: u64, wait_ms: u64, service_ms: u64| {
            ok(start_ms, service_ms).after_waiting(Duration::from_millis(wait_ms))
        };
        let records = vec![waited(0, 0, 10), waited(5, 40, 10), waited(50, 90, 10)];
        let mut run = run(records);
        run.dropped = 2;
        let result = StepResult::from_run(1, &run, &[], &[]);
        assert_eq!((result.requests, result.ok, result.dropped), (5, 3, 2));
        assert!((89.0..=91.0).contains(&result.queue_wait_ms(99.0).unwrap()));
        assert!((9.9..=10.1).contains(&result.service_ms(99.0).unwrap()));
        assert!((99.0..=101.0).contains(&result.latency_ms(99.0).unwrap()));
    }

    #[test]
    fn peak_in_flight_counts_overlapping_requests() {
        // [0,10) [5,15) [10,20) [30,40): at most two overlap; one ending as one starts is not.
        let records = vec![ok(0, 10), ok(5, 10), ok(10, 10), ok(30, 10)];
        assert_eq!(
            StepResult::from_run(1, &run(records), &[], &[]).peak_in_flight,
            2
        );
    }

    #[test]
    fn cpu_summary_keeps_mean_and_peak() {
        let sample = |host: f64, server: Option<f64>| CpuSample {
            elapsed_ms: 0,
            step: 1,
            requests: 10,
            host_cpu_pct: host,
            process_cpu_pct: host / 2.0,
            server_cpu_pct: server,
        };
        let summary = CpuSummary::of(&[sample(20.0, Some(10.0)), sample(80.0, None)]);
        assert_eq!(
            summary.host,
            Some(MeanPeak {
                mean: 50.0,
                peak: 80.0
            })
        );
        assert_eq!(
            summary.process,
            Some(MeanPeak {
                mean: 25.0,
                peak: 40.0
            })
        );
        assert_eq!(
            summary.server,
            Some(MeanPeak {
                mean: 10.0,
                peak: 10.0
            })
        );
        assert_eq!(CpuSummary::of(&[]).host, None);
    }
}
