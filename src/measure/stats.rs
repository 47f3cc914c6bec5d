//! Per-step aggregation: counts by failure class, latency percentiles from HDR histograms, and
//! the CPU summary of the step's samples. Pure functions over recorded data.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::model::outcome::FailureClass;
use crate::model::record::{RequestRecord, StepRun};
use crate::model::rules::Flag;
use crate::model::sample::{CpuSample, ServerStatsSample, ServerStatsSummary};
use crate::model::step::{Concurrency, CpuSummary, StepResult, histogram};

/// Records into a histogram that grows as needed: only a value past what a u64 of
/// microseconds holds could fail, and that one is kept at the histogram's top.
fn record_micros(histogram: &mut Histogram<u64>, micros: u64) {
    if histogram.record(micros).is_err() {
        histogram.saturating_record(micros);
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl StepResult {
    /// Aggregates a step's records; `load` is the step's size in the mode's unit.
    pub fn from_run(
        step: u32,
        load: u32,
        run: &StepRun,
        cpu: &[CpuSample],
        server: &[ServerStatsSample],
    ) -> Self {
        let requests = run.records.len() as u32 + run.dropped + run.unsent;
        let mut result = StepResult {
            step,
            load,
            requests,
            ok: 0,
            failed: 0,
            dropped: run.dropped,
            unsent: run.unsent,
            by_class: [0; FailureClass::ALL.len()],
            first_messages: Vec::new(),
            launch: run.launch,
            wall: run.wall,
            launch_spread: launch_spread(&run.records),
            latency: histogram(),
            connect: histogram(),
            queue_wait: histogram(),
            service: histogram(),
            concurrency: Concurrency::of(&run.records),
            cpu: CpuSummary::of(cpu, None),
            server: ServerStatsSummary::of(server, None),
            server_cpu: Default::default(),
            watched: None,
            pooler: Default::default(),
            flags: Vec::new(),
            limiting_agents: Vec::new(),
            by_node: Vec::new(),
            outage: crate::measure::outage::of(&run.records),
            lost: 0,
            hold: run.hold.clone(),
        };
        for record in &run.records {
            result.add(record);
        }
        result
    }

    /// The measured step with its diagnosis, which is read from the measured figures.
    pub fn with_flags(self, flags: Vec<Flag>) -> Self {
        StepResult { flags, ..self }
    }

    fn add(&mut self, record: &RequestRecord) {
        if let Some(node) = record.node.map(usize::from) {
            if self.by_node.len() <= node {
                self.by_node.resize(node + 1, 0);
            }
            self.by_node[node] += 1;
        }
        if let Some(connect) = record.connect {
            record_micros(&mut self.connect, micros(connect));
        }
        if let Some(wait) = record.queue_wait {
            record_micros(&mut self.queue_wait, micros(wait));
        }
        match &record.outcome {
            Ok(()) => {
                self.ok += 1;
                record_micros(&mut self.latency, micros(record.latency));
                if record.queue_wait.is_some() {
                    record_micros(&mut self.service, micros(record.service()));
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
}

/// The time the requests that ran were in flight, summed: each one's service time, from its
/// thread's own start to its end, not its wait for a pool worker or behind the rate schedule,
/// when no thread of its own was waiting for a CPU.
pub fn in_flight(records: &[RequestRecord]) -> Duration {
    records
        .iter()
        .filter(|r| r.start_offset.is_some())
        .map(RequestRecord::service)
        .sum()
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
    use crate::model::sample::StepCpu;
    use crate::model::step::MeanPeak;

    fn ok(start_ms: u64, latency_ms: u64) -> RequestRecord {
        RequestRecord {
            start_offset: Some(Duration::from_millis(start_ms)),
            queue_wait: None,
            connect: Some(Duration::from_millis(latency_ms / 2)),
            query: Some(Duration::from_millis(latency_ms / 2)),
            latency: Duration::from_millis(latency_ms),
            outcome: Ok(()),
            node: None,
            client: None,
        }
    }

    fn failed(class: FailureClass) -> RequestRecord {
        RequestRecord::failed_without_running(
            Failure::new(class, class.name()),
            Duration::from_millis(1),
        )
    }

    #[test]
    fn in_flight_sums_the_service_of_the_requests_that_ran() {
        let mut waited = ok(0, 50);
        waited.queue_wait = Some(Duration::from_millis(20));
        let records = [ok(0, 100), waited, failed(FailureClass::Spawn)];
        // 100 ms, and 50 less its 20 ms wait; the request that never ran adds nothing.
        assert_eq!(in_flight(&records), Duration::from_millis(130));
        assert_eq!(in_flight(&[]), Duration::ZERO);
    }

    fn run(records: Vec<RequestRecord>) -> StepRun {
        StepRun {
            records,
            dropped: 0,
            unsent: 0,
            launch: Duration::from_millis(5),
            wall: Duration::from_millis(500),
            ..StepRun::default()
        }
    }

    #[test]
    fn a_latency_past_an_hour_is_recorded_not_clamped() {
        let two_hours = 2 * 3600 * 1000;
        let waited = ok(0, two_hours).after_waiting(Duration::from_secs(3 * 3600));
        let result = StepResult::from_run(1, 1, &run(vec![waited]), &[], &[]);
        let max = result.latency_max_ms().unwrap();
        let expected = (5 * 3600 * 1000) as f64;
        assert!((max - expected).abs() / expected < 0.001, "{max}");
        let wait = result.queue_wait_ms(100.0).unwrap();
        assert!(
            (wait - 3.0 * 3600.0 * 1000.0).abs() < 3600.0 * 1000.0 * 0.003,
            "{wait}"
        );
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
        let result = StepResult::from_run(2, 7, &run(records), &[], &[]);
        assert_eq!((result.requests, result.ok, result.failed), (5, 2, 3));
        assert_eq!(result.failures(FailureClass::TooManyClients), 2);
        assert_eq!(
            result.failure_breakdown()[0],
            (FailureClass::TooManyClients, 2)
        );
        assert_eq!(result.first_messages.len(), 2);
        // 2 successes and 5 sent in 0.5 s.
        assert_eq!(result.throughput(), 4.0);
        assert_eq!(result.attempts_per_second(), 10.0);
    }

    #[test]
    fn latency_percentiles_cover_successful_requests_only() {
        let mut records: Vec<_> = (1..=100).map(|ms| ok(0, ms)).collect();
        records.push(failed(FailureClass::Timeout));
        let result = StepResult::from_run(1, 7, &run(records), &[], &[]);
        let p50 = result.latency_ms(50.0).unwrap();
        let p99 = result.latency_ms(99.0).unwrap();
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=100.0).contains(&p99), "{p99}");
        assert!((99.9..=100.1).contains(&result.latency_max_ms().unwrap()));
    }

    #[test]
    fn no_success_means_no_latency() {
        let result =
            StepResult::from_run(1, 7, &run(vec![failed(FailureClass::Refused)]), &[], &[]);
        assert_eq!(result.latency_ms(50.0), None);
        assert_eq!(result.connect_ms(50.0), None);
    }

    #[test]
    fn launch_spread_ignores_requests_that_never_started() {
        let records = vec![ok(3, 10), ok(40, 10), failed(FailureClass::Spawn)];
        let result = StepResult::from_run(1, 7, &run(records), &[], &[]);
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
        let result = StepResult::from_run(1, 7, &run, &[], &[]);
        assert_eq!((result.requests, result.ok, result.dropped), (5, 3, 2));
        assert!((89.0..=91.0).contains(&result.queue_wait_ms(99.0).unwrap()));
        assert!((9.9..=10.1).contains(&result.service_ms(99.0).unwrap()));
        assert!((99.0..=101.0).contains(&result.latency_ms(99.0).unwrap()));
    }

    #[test]
    fn a_step_cut_short_counts_its_unsent_requests_but_did_not_send_them() {
        let mut run = run(vec![ok(0, 10), ok(1, 10), failed(FailureClass::Io)]);
        (run.dropped, run.unsent) = (2, 4);
        let result = StepResult::from_run(1, 9, &run, &[], &[]);
        assert_eq!((result.requests, result.dropped, result.unsent), (9, 2, 4));
        assert_eq!(result.sent(), 3);
    }

    #[test]
    fn peak_in_flight_counts_overlapping_requests() {
        // [0,10) [5,15) [10,20) [30,40): at most two overlap; one ending as one starts is not.
        let records = vec![ok(0, 10), ok(5, 10), ok(10, 10), ok(30, 10)];
        assert_eq!(
            StepResult::from_run(1, 7, &run(records), &[], &[])
                .concurrency
                .peak_in_flight,
            2
        );
    }

    fn sample(host: f64, server: Option<f64>) -> CpuSample {
        CpuSample {
            elapsed_ms: 0,
            step: 1,
            requests: 10,
            host_cpu_pct: host,
            process_cpu_pct: host / 2.0,
            server_cpu_pct: server,
            pooler_cpu_pct: None,
        }
    }

    #[test]
    fn a_peak_needs_three_samples() {
        let two = CpuSummary::of(&[sample(20.0, Some(10.0)), sample(80.0, None)], None);
        let mean_only = |mean| Some(MeanPeak { mean, peak: None });
        assert_eq!(two.host, mean_only(50.0));
        assert_eq!(two.process, mean_only(25.0));
        assert_eq!(two.server, mean_only(10.0));
        let three = CpuSummary::of(
            &[sample(20.0, None), sample(80.0, None), sample(50.0, None)],
            None,
        );
        assert_eq!(
            three.host,
            Some(MeanPeak {
                mean: 50.0,
                peak: Some(80.0)
            })
        );
        assert_eq!(CpuSummary::of(&[], None).host, None);
    }

    #[test]
    fn means_come_from_the_whole_step_counters() {
        // One sample of a 20 ms step read 0% (no tick yet); the counters saw the server busy.
        let whole = StepCpu {
            cpu: sample(70.0, Some(48.0)),
            client_wait_ms: Some(3.0),
            client_cpus_busy_pct: Some(60.0),
            pooler_runnable_pct: None,
            pooler_processes: Vec::new(),
        };
        let summary = CpuSummary::of(&[sample(0.0, Some(0.0))], Some(&whole));
        assert_eq!(
            summary.server,
            Some(MeanPeak {
                mean: 48.0,
                peak: None
            })
        );
        assert_eq!(
            summary.host,
            Some(MeanPeak {
                mean: 70.0,
                peak: None
            })
        );
        assert_eq!(summary.client_wait_ms, Some(3.0));
        assert_eq!(summary.client_wait_share, None);
        let over = summary.with_wait_over(Duration::from_millis(60));
        assert_eq!(over.client_wait_share, Some(0.05));
        assert_eq!(
            summary.with_wait_over(Duration::ZERO).client_wait_share,
            None
        );
        let samples = [
            sample(60.0, Some(40.0)),
            sample(90.0, Some(60.0)),
            sample(60.0, Some(44.0)),
        ];
        let summary = CpuSummary::of(&samples, Some(&whole));
        assert_eq!(
            summary.server,
            Some(MeanPeak {
                mean: 48.0,
                peak: Some(60.0)
            })
        );
    }

    #[test]
    fn connect_times_count_every_request_that_connected() {
        let mut records = vec![ok(0, 20), ok(0, 40)];
        let mut refused = failed(FailureClass::Refused);
        refused.connect = Some(Duration::from_millis(60));
        records.push(refused);
        records.push(failed(FailureClass::Spawn));
        let result = StepResult::from_run(1, 7, &run(records), &[], &[]);
        assert!((9.9..=10.1).contains(&result.connect_ms(0.0).unwrap()));
        assert!((59.9..=60.1).contains(&result.connect_ms(100.0).unwrap()));
        assert_eq!(result.connect.len(), 3);
        assert_eq!(result.latency.len(), 2);
        assert_eq!(result.service.len(), 0, "no wait, no service time");
        assert_eq!(result.queue_wait_ms(50.0), None);
    }

    #[test]
    fn the_first_message_of_each_class_is_kept() {
        let records = vec![
            RequestRecord::failed_without_running(
                Failure::new(FailureClass::Auth, "first"),
                Duration::ZERO,
            ),
            RequestRecord::failed_without_running(
                Failure::new(FailureClass::Auth, "second"),
                Duration::ZERO,
            ),
            failed(FailureClass::Io),
        ];
        let result = StepResult::from_run(1, 7, &run(records), &[], &[]);
        assert_eq!(
            result.first_messages,
            vec![
                (FailureClass::Auth, "first".to_owned()),
                (FailureClass::Io, "io".to_owned())
            ]
        );
        assert_eq!((result.step, result.load), (1, 7));
        assert_eq!((result.launch, result.wall), run(vec![]).launch_and_wall());
    }

    #[test]
    fn a_zero_latency_is_recorded_as_a_microsecond() {
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_millis(3)), 3000);
        assert_eq!(micros(Duration::MAX), u64::MAX);
        let result = StepResult::from_run(1, 7, &run(vec![ok(0, 0)]), &[], &[]);
        assert_eq!(result.latency_ms(50.0), Some(0.001));
    }

    #[test]
    fn flags_are_kept_as_given() {
        let result = StepResult::from_run(1, 7, &run(vec![]), &[], &[]);
        let flags = vec![Flag::RateNotMet, Flag::LaunchSpread];
        assert_eq!(result.with_flags(flags.clone()).flags, flags);
    }

    #[test]
    fn no_start_means_no_spread_and_no_peak() {
        let records = vec![failed(FailureClass::Spawn)];
        let result = StepResult::from_run(1, 7, &run(records), &[], &[]);
        assert_eq!(result.launch_spread, Duration::ZERO);
        assert_eq!(result.concurrency.peak_in_flight, 0);
        let one = StepResult::from_run(1, 7, &run(vec![ok(9, 5)]), &[], &[]);
        assert_eq!(
            (one.launch_spread, one.concurrency.peak_in_flight),
            (Duration::ZERO, 1)
        );
    }

    impl StepRun {
        fn launch_and_wall(&self) -> (Duration, Duration) {
            (self.launch, self.wall)
        }
    }
}
