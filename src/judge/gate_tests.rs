//! The gate language and its breaches over synthetic steps.

use super::*;
use crate::judge::verdict::Judging;
use crate::model::outcome::FailureClass;
use crate::model::plan::CONCURRENT;
use crate::test_support::{step_result, step_with_failures};

fn gate(text: &str) -> Gate {
    text.parse().unwrap()
}

#[test]
fn parses_each_metric_and_operator() {
    let g = gate("capacity<200");
    assert_eq!(
        (g.metric, g.op, g.value, g.at_requests),
        (Metric::Capacity, Op::Less, 200.0, None)
    );
    let g = gate(" p99 > 250ms @ 100 ");
    assert_eq!(
        (g.metric, g.op, g.value, g.at_requests),
        (
            Metric::Latency { percentile: 99 },
            Op::Greater,
            250.0,
            Some(100)
        )
    );
    assert_eq!(gate("failure-rate>=0.01").op, Op::GreaterOrEqual);
    assert_eq!(gate("max<=1s").value, 1000.0);
    assert_eq!(gate("failed>0").metric, Metric::Failed);
}

#[test]
fn malformed_gates_say_why() {
    for (text, reason) in [
        ("capacity", "missing <"),
        ("speed>3", "metric is one of"),
        ("p99>fast", "duration"),
        ("capacity<200@100", "drop the @"),
        ("p99>250ms@many", "step size"),
        ("capacity<-1", "negative"),
        ("failure-rate>2", "between 0 and 1"),
        ("failed>lots", "number"),
    ] {
        let err = text.parse::<Gate>().unwrap_err().to_string();
        assert!(err.contains(text) && err.contains(reason), "{text}: {err}");
    }
}

#[test]
fn capacity_gate_compares_the_verdicts_capacity() {
    let steps = vec![step_result(1, 100, 0), step_result(2, 200, 10)];
    let verdict = Verdict::judge(
        &steps,
        &Judging {
            steps_planned: 2,
            slo_p99: None,
            unit: CONCURRENT,
            server_shares_host: false,
            ..Judging::default()
        },
        None,
    );
    assert!(gate("capacity<200").breach(&verdict, &steps).is_some());
    assert!(gate("capacity<100").breach(&verdict, &steps).is_none());
}

#[test]
fn latency_gate_at_a_step_size() {
    let steps = vec![
        step_with_failures(1, 100, 0, FailureClass::Io, 100),
        step_with_failures(2, 200, 0, FailureClass::Io, 400),
    ];
    let verdict = Verdict::judge(
        &steps,
        &Judging {
            steps_planned: 2,
            slo_p99: None,
            unit: CONCURRENT,
            server_shares_host: false,
            ..Judging::default()
        },
        None,
    );
    assert!(gate("p99>250ms@100").breach(&verdict, &steps).is_none());
    assert!(gate("p99>250ms@200").breach(&verdict, &steps).is_some());
    assert!(gate("p99>250ms").breach(&verdict, &steps).is_some());
    let missing = gate("p99>250ms@300").breach(&verdict, &steps).unwrap();
    assert!(missing.contains("no step of 300"), "{missing}");
}

#[test]
fn failure_rate_gate_checks_every_step() {
    let steps = vec![step_result(1, 100, 0), step_result(2, 100, 2)];
    let verdict = Verdict::judge(
        &steps,
        &Judging {
            steps_planned: 2,
            slo_p99: None,
            unit: CONCURRENT,
            server_shares_host: false,
            ..Judging::default()
        },
        None,
    );
    assert!(gate("failure-rate>0.01").breach(&verdict, &steps).is_some());
    assert!(gate("failure-rate>0.05").breach(&verdict, &steps).is_none());
}

fn judging(steps_planned: u32) -> Judging {
    Judging {
        steps_planned,
        slo_p99: None,
        unit: CONCURRENT,
        server_shares_host: false,
        ..Judging::default()
    }
}

#[test]
fn values_that_can_never_be_true_are_refused() {
    for text in [
        "failed>nan",
        "failure-rate>NaN",
        "capacity<inf",
        "failed>=infinity",
        "capacity>-inf",
        "failed<0",
        "p99<0ms",
    ] {
        let err = text.parse::<Gate>().unwrap_err().to_string();
        assert!(
            err.contains(text) && (err.contains("finite") || err.contains("below 0")),
            "{text}: {err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn values_past_the_largest_figure_are_refused_above_it() {
    // A failure rate is never above 1, a count never above u32::MAX: such gates never fire.
    for (text, says) in [
        ("failure-rate>1", "never above 1"),
        ("failure-rate>=1.5", "never above 1"),
        ("failure-rate<=2", "never above 1"),
        ("failed>4294967295", "at most 4294967295"),
        ("capacity>=4294967296", "at most 4294967295"),
        ("failed>=1e10", "at most 4294967295"),
    ] {
        let err = text.parse::<Gate>().unwrap_err().to_string();
        assert!(err.contains(text) && err.contains(says), "{text}: {err}");
    }
}

#[test]
fn boundaries_are_accepted() {
    assert_eq!(gate("failed>0").value, 0.0);
    assert_eq!(gate("failure-rate<=1").value, 1.0);
    assert_eq!(gate("failure-rate>=1").value, 1.0);
    assert_eq!(gate("failure-rate>=0").value, 0.0);
    assert_eq!(gate("p99>0ms").value, 0.0);
    assert_eq!(gate("failed>=4294967295").value, 4294967295.0);
    assert_eq!(gate("capacity>4294967294").value, 4294967294.0);
    // Always breached, but true: refusing is for gates that never are.
    assert_eq!(gate("failed<=1e10").value, 1e10);
    assert_eq!(gate("p99>10000000000ms").value, 1e10);
}

#[test]
fn every_operator_holds_only_on_its_side() {
    // (left < right, left == right, left > right)
    for (op, expected) in [
        (Op::Less, [true, false, false]),
        (Op::LessOrEqual, [true, true, false]),
        (Op::Greater, [false, false, true]),
        (Op::GreaterOrEqual, [false, true, true]),
    ] {
        let got = [op.holds(1.0, 2.0), op.holds(2.0, 2.0), op.holds(3.0, 2.0)];
        assert_eq!(got, expected, "{op:?}");
    }
    assert_eq!(gate("capacity<1").op, Op::Less);
    assert_eq!(gate("capacity<=1").op, Op::LessOrEqual);
    assert_eq!(gate("capacity>1").op, Op::Greater);
    assert_eq!(gate("capacity>=1").op, Op::GreaterOrEqual);
}

#[test]
fn each_metric_name_is_its_metric() {
    for (text, metric) in [
        ("capacity<1", Metric::Capacity),
        ("p50>1ms", Metric::Latency { percentile: 50 }),
        ("p90>1ms", Metric::Latency { percentile: 90 }),
        ("p99>1ms", Metric::Latency { percentile: 99 }),
        ("max>1ms", Metric::LatencyMax),
        ("failure-rate>0.5", Metric::FailureRate),
        ("failed>1", Metric::Failed),
    ] {
        assert_eq!(gate(text).metric, metric, "{text}");
    }
    assert_eq!(gate("p50 > 2s").value, 2000.0);
    assert_eq!(gate("failed>3@10").at_requests, Some(10));
}

#[test]
fn a_gate_shows_as_it_was_written() {
    assert_eq!(gate(" p99 > 250ms @ 100 ").to_string(), "p99 > 250ms @ 100");
}

/// A step whose 100 requests took 1..=100 ms, `failed` more of them failing.
fn spread_step(step: u32, failed: u32) -> StepResult {
    let mut result = step_with_failures(step, 100 + failed, failed, FailureClass::Io, 1);
    result.latency.reset();
    for ms in 1..=100u64 {
        result.latency.record(ms * 1000).unwrap();
    }
    result
}

#[test]
fn each_metric_reads_its_own_figure() {
    let steps = vec![spread_step(1, 0)];
    let verdict = Verdict::judge(&steps, &judging(1), None);
    // p50 is 50 ms, p90 90 ms, p99 99 ms, max 100 ms (within the histogram's precision).
    for (holds, breached) in [
        ("p50>51ms", "p50>49ms"),
        ("p90>91ms", "p90>89ms"),
        ("p99>99.5ms", "p99>98ms"),
        ("max>100.5ms", "max>99.5ms"),
        ("failed>0", "failed<1"),
        ("failure-rate>0", "failure-rate<0.5"),
    ] {
        assert_eq!(gate(holds).breach(&verdict, &steps), None, "{holds}");
        let why = gate(breached).breach(&verdict, &steps);
        assert!(why.is_some(), "{breached}");
    }
    let why = gate("p90>89ms").breach(&verdict, &steps).unwrap();
    assert!(
        why.starts_with("p90>89ms: step 1 (100 requests) has 90."),
        "{why}"
    );
}

#[test]
fn failed_counts_and_failure_rate_share_the_failures() {
    let steps = vec![spread_step(1, 25)];
    let verdict = Verdict::judge(&steps, &judging(1), None);
    let why = gate("failed>=25").breach(&verdict, &steps).unwrap();
    assert!(why.ends_with("has 25.000"), "{why}");
    assert_eq!(gate("failed>25").breach(&verdict, &steps), None);
    let why = gate("failure-rate>=0.2").breach(&verdict, &steps).unwrap();
    assert!(why.ends_with("has 0.200"), "{why}");
    assert_eq!(gate("failure-rate>0.2").breach(&verdict, &steps), None);
}

#[test]
fn a_capacity_gate_says_the_capacity() {
    let steps = vec![step_result(1, 100, 0), step_result(2, 200, 10)];
    let verdict = Verdict::judge(&steps, &judging(2), None);
    let why = gate("capacity<=100").breach(&verdict, &steps).unwrap();
    assert_eq!(why, "capacity<=100: capacity is 100");
    assert_eq!(gate("capacity>100").breach(&verdict, &steps), None);
    // No capacity counts as 0.
    let broken = vec![step_result(1, 100, 10)];
    let verdict = Verdict::judge(&broken, &judging(1), None);
    let why = gate("capacity<1").breach(&verdict, &broken).unwrap();
    assert_eq!(why, "capacity<1: capacity is 0");
}

#[test]
fn a_step_gate_looks_at_that_step_only() {
    let steps = vec![spread_step(1, 50), step_result(2, 200, 0)];
    let verdict = Verdict::judge(&steps, &judging(2), None);
    assert_eq!(gate("failed>0@200").breach(&verdict, &steps), None);
    let why = gate("failed>0@150").breach(&verdict, &steps).unwrap();
    assert!(
        why.starts_with("failed>0@150: step 1 (150 requests)"),
        "{why}"
    );
    let why = gate("failed>0@7").breach(&verdict, &steps).unwrap();
    assert_eq!(why, "failed>0@7: the run has no step of 7 requests");
}

#[test]
fn a_latency_gate_over_steps_without_success_holds() {
    let steps = vec![step_with_failures(1, 10, 10, FailureClass::Io, 1)];
    let verdict = Verdict::judge(&steps, &judging(1), None);
    assert_eq!(gate("p99>=0ms").breach(&verdict, &steps), None);
    assert_eq!(gate("max>=0ms").breach(&verdict, &steps), None);
}

#[test]
fn a_gate_says_what_was_measured_whether_it_held_or_not() {
    let steps = vec![
        step_with_failures(1, 100, 0, FailureClass::Io, 100),
        step_with_failures(2, 200, 4, FailureClass::Io, 400),
    ];
    let verdict = Verdict::judge(
        &steps,
        &Judging {
            steps_planned: 2,
            unit: CONCURRENT,
            ..Judging::default()
        },
        None,
    );
    let measured = |text: &str| gate(text).measured(&verdict, &steps);
    assert_eq!(measured("capacity<50"), "capacity is 100");
    // The figure closest to breaching: the highest for `>`, the lowest for `<`.
    assert_eq!(
        measured("p99>1s"),
        "p99 is 400.127 at step 2 (200 requests)"
    );
    assert_eq!(
        measured("p50<1ms"),
        "p50 is 100.031 at step 1 (100 requests)"
    );
    assert_eq!(
        measured("failed>10@100"),
        "failed is 0.000 at step 1 (100 requests)"
    );
    assert_eq!(
        measured("p99>1s@300"),
        "the run has no step of 300 requests"
    );
}

#[test]
fn outage_gates_read_the_steps_outage_and_lost_count() {
    use crate::model::outage::Outage;
    use std::time::Duration;
    let ms = Duration::from_millis;
    let outage = |end: Option<u64>| Outage {
        start: ms(1_000),
        first_success: end.map(ms),
        end: end.map(ms),
        baseline_per_bin: Some(10.0),
        failures: vec![(FailureClass::Shutdown, 3)],
        gap_p50: ms(3_000),
        gap_p99: ms(4_500),
        gap_max: ms(4_600),
        unrecovered: 0,
        ..Outage::default()
    };
    let mut step = step_result(1, 100, 3);
    let verdict = Verdict::judge(&[], &judging(1), None);
    assert!(
        gate("outage>5s")
            .breach(&verdict, &[step.clone()])
            .is_none(),
        "none"
    );
    step.outage = Some(outage(Some(7_000)));
    let steps = [step.clone()];
    assert!(gate("outage>5s").breach(&verdict, &steps).is_some(), "6 s");
    assert!(gate("outage>6s").breach(&verdict, &steps).is_none());
    assert!(gate("gap-p99>4s").breach(&verdict, &steps).is_some());
    assert!(gate("gap-p99>5s").breach(&verdict, &steps).is_none());
    step.outage = Some(outage(None));
    assert!(
        gate("outage>1h")
            .breach(&verdict, &[step.clone()])
            .is_some(),
        "never back is longer than any limit"
    );
    assert!(gate("lost>0").breach(&verdict, &[step.clone()]).is_none());
    step.lost = 1;
    assert!(gate("lost>0").breach(&verdict, &[step]).is_some());
    assert!(
        "outage>5".parse::<Gate>().is_err(),
        "a duration, not a number"
    );
}

#[test]
fn a_fault_pgstress_caused_is_judged_by_the_outage_gates_not_by_the_failure_gates() {
    use crate::model::outage::{Apart, Outage};
    use std::time::Duration;
    let ms = Duration::from_millis;
    // 1,000 requests, 100 refused in a 2 s outage the fault caused, `before` failed before it
    // (of 500 that ended before it), `after` in its aftermath (of 400 after it).
    let step = |caused: bool, began_before: bool, (before, after): (u32, u32)| {
        let mut step =
            step_with_failures(1, 1_000, 100 + before + after, FailureClass::Refused, 10);
        let apart = |sent, server_failed| Apart {
            sent,
            server_failed,
            p99_ms: Some(10.0),
        };
        step.outage = Some(Outage {
            start: ms(1_000),
            first_success: Some(ms(2_500)),
            end: Some(ms(3_000)),
            failures: vec![(FailureClass::Refused, 100)],
            gap_p99: ms(1_500),
            before: apart(500, before),
            apart: apart(900, before + after),
            caused_by: caused.then(|| "restart@1s".to_owned()),
            fault_began_before: began_before,
            ..Outage::default()
        });
        vec![step]
    };
    let verdict = Verdict::judge(&[], &judging(1), None);
    let breached = |text: &str, steps: &[StepResult]| gate(text).breach(&verdict, steps);
    // The fault's own outage and aftermath: no failure gate breached, the outage gates read it.
    let steps = step(true, false, (0, 5));
    assert_eq!(breached("failure-rate>0", &steps), None);
    assert_eq!(breached("failed>0", &steps), None);
    assert!(breached("outage>1.5s", &steps).is_some());
    assert!(breached("gap-p99>1s", &steps).is_some());
    assert_eq!(breached("outage>2.5s", &steps), None);
    // Failures before the fault are the server's: 2 of the 500 judged.
    let steps = step(true, false, (2, 5));
    let why = breached("failure-rate>0.001", &steps).unwrap();
    assert!(why.ends_with("has 0.004"), "{why}");
    let why = breached("failed>0", &steps).unwrap();
    assert!(why.ends_with("has 2.000"), "{why}");
    // A fault that began before the step: judged on its requests after the outage, the
    // aftermath included (nothing came before it).
    let steps = step(true, true, (0, 9));
    let why = breached("failure-rate>0", &steps).unwrap();
    assert!(why.ends_with("has 0.010"), "{why}");
    // An outage from outside counts whole: pgstress cannot tell it from one the load caused.
    let steps = step(false, false, (0, 0));
    let why = breached("failure-rate>0.05", &steps).unwrap();
    assert!(why.ends_with("has 0.100"), "{why}");
    assert!(breached("failed>99", &steps).is_some());
}
