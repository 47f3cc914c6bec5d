//! Unit tests of model/step.rs.

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
        pooler_processes: Vec::new(),
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

#[test]
fn the_poolers_cpu_takes_its_mean_from_the_counters_and_its_peak_from_the_samples() {
    let sample = |pooler: Option<f64>| CpuSample {
        elapsed_ms: 0,
        step: 1,
        requests: 1,
        host_cpu_pct: 50.0,
        process_cpu_pct: 10.0,
        server_cpu_pct: None,
        pooler_cpu_pct: pooler,
    };
    let samples = [
        sample(Some(4.0)),
        sample(Some(9.0)),
        sample(Some(5.0)),
        sample(None),
    ];
    let whole = StepCpu {
        cpu: sample(Some(6.0)),
        client_wait_ms: None,
        client_cpus_busy_pct: None,
        pooler_runnable_pct: None,
        pooler_processes: Vec::new(),
    };
    let mean_peak = |mean, peak| Some(MeanPeak { mean, peak });
    assert_eq!(
        PoolerSide::cpu_of(&samples, Some(&whole)),
        mean_peak(6.0, Some(9.0))
    );
    assert_eq!(
        PoolerSide::cpu_of(&samples, None),
        mean_peak(6.0, Some(9.0))
    );
    let whole_without = StepCpu {
        cpu: sample(None),
        ..whole
    };
    assert_eq!(
        PoolerSide::cpu_of(&samples[..2], Some(&whole_without)),
        mean_peak(6.5, None),
        "the samples' mean without counters; two samples are too few for a peak"
    );
    assert_eq!(
        PoolerSide::cpu_of(&[sample(None)], Some(&whole_without)),
        None
    );
}

#[test]
fn a_series_scales_its_mean_and_its_peak() {
    let series = MeanPeak {
        mean: 20.0,
        peak: Some(30.0),
    };
    assert_eq!(
        series.times(2.0),
        MeanPeak {
            mean: 40.0,
            peak: Some(60.0)
        }
    );
    let no_peak = MeanPeak {
        mean: 20.0,
        peak: None,
    };
    assert_eq!(no_peak.times(0.5).peak, None);
    assert_eq!(no_peak.times(0.5).mean, 10.0);
}
