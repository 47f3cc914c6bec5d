//! The verdict's rules over synthetic steps.

use super::*;
use crate::model::plan::CONCURRENT;

fn judging(steps_planned: u32, slo_p99: Option<Duration>) -> Judging {
    Judging {
        steps_planned,
        slo_p99,
        unit: CONCURRENT,
        server_shares_host: false,
        ..Judging::default()
    }
}
use crate::test_support::{step_result, step_with_failures};

#[test]
fn breaking_point_is_the_first_step_with_failures() {
    let steps = vec![
        step_result(1, 50, 0),
        step_result(2, 100, 0),
        step_result(3, 150, 41),
    ];
    let verdict = Verdict::judge(&steps, &judging(3, None), None);
    assert_eq!(verdict.capacity, Some(100));
    let bp = verdict.breaking_point.as_ref().unwrap();
    assert_eq!((bp.step, bp.requests, bp.failed), (3, 150, 41));
    assert_eq!(bp.dominant_failure, Some(("too_many_clients".into(), 41)));
    assert_eq!(verdict.limit, Some(Limit::Server));
    let first = &verdict.sentences()[0];
    assert!(first.starts_with("breaking point: 150 concurrent requests (step 3) — 41 of 150 failed, 41 too_many_clients"), "{first}");
}

#[test]
fn capacity_ignores_handled_steps_after_the_break() {
    let steps = vec![
        step_result(1, 50, 0),
        step_result(2, 100, 3),
        step_result(3, 150, 0),
    ];
    assert_eq!(
        Verdict::judge(&steps, &judging(3, None), None).capacity,
        Some(50)
    );
}

#[test]
fn threads_that_never_started_neither_break_the_server_nor_stop_the_run() {
    let mut steps = vec![
        step_result(1, 10, 0),
        step_with_failures(2, 20, 20, FailureClass::Spawn, 0),
    ];
    steps[1].flags.push(Flag::SpawnFailed);
    let verdict = Verdict::judge(&steps, &judging(2, None), None);
    assert!(verdict.breaking_point.is_none());
    assert_eq!(
        verdict.capacity,
        Some(10),
        "step 2 never reached the server"
    );
    let defaults = StopRules {
        failure_rate: Some(0.5),
        p99: None,
        unresponsive: true,
    };
    assert_eq!(stop_reason(&steps[1], &defaults), None);
}

#[test]
fn a_rate_the_client_could_not_send_is_not_capacity() {
    let mut steps = vec![
        step_result(1, 200, 0),
        step_result(2, 400, 0),
        step_result(3, 600, 0),
    ];
    steps[1].flags.push(Flag::RateNotMet);
    steps[2].flags.push(Flag::RateNotMet);
    let verdict = Verdict::judge(&steps, &judging(3, None), None);
    assert!(verdict.breaking_point.is_none());
    assert_eq!(verdict.capacity, Some(200));
}

#[test]
fn slo_breach_without_failures_is_a_breaking_point() {
    let steps = vec![
        step_with_failures(1, 10, 0, FailureClass::Io, 20),
        step_with_failures(2, 20, 0, FailureClass::Io, 400),
    ];
    let verdict = Verdict::judge(&steps, &judging(2, Some(Duration::from_millis(250))), None);
    assert_eq!(verdict.breaking_point.unwrap().step, 2);
    assert_eq!(verdict.capacity, Some(10));
    assert!(
        Verdict::judge(&steps, &judging(2, None), None)
            .breaking_point
            .is_none()
    );
}

#[test]
fn client_flag_before_the_break_names_the_client() {
    let mut steps = vec![
        step_result(1, 50, 0),
        step_result(2, 100, 0),
        step_result(3, 150, 9),
    ];
    steps[1].flags = vec![Flag::ClientSaturated];
    let verdict = Verdict::judge(&steps, &judging(3, None), None);
    assert_eq!(
        verdict.limit,
        Some(Limit::Client {
            flag: "client-saturated".into(),
            step: 2,
            requests: 100
        })
    );
    assert_eq!(verdict.client_saturated_from, Some(2));
}

#[test]
fn the_verdict_names_load_never_sent_before_a_busy_cpu() {
    let mut steps = vec![step_result(1, 50, 0), step_result(2, 100, 0)];
    steps[0].flags = vec![Flag::ClientSaturated, Flag::SpawnFailed];
    let verdict = Verdict::judge(&steps, &judging(2, None), None);
    assert!(
        matches!(&verdict.limit, Some(Limit::Client { flag, step: 1, .. }) if flag == "spawn-failed"),
        "{:?}",
        verdict.limit
    );
}

#[test]
fn client_flag_after_the_break_leaves_it_the_servers() {
    let mut steps = vec![
        step_result(1, 50, 0),
        step_result(2, 100, 5),
        step_result(3, 150, 9),
    ];
    steps[2].flags = vec![Flag::LaunchSpread];
    assert_eq!(
        Verdict::judge(&steps, &judging(3, None), None).limit,
        Some(Limit::Server)
    );
}

#[test]
fn no_failure_means_no_breaking_point() {
    let steps = vec![step_result(1, 50, 0), step_result(2, 100, 0)];
    let verdict = Verdict::judge(&steps, &judging(15, None), None);
    assert_eq!(
        (verdict.capacity, verdict.breaking_point.clone()),
        (Some(100), None)
    );
    assert!(verdict.sentences()[0].starts_with("no breaking point"));
}

#[test]
fn stop_rules_judge_the_step_alone() {
    let rules = StopRules {
        failure_rate: Some(0.5),
        p99: None,
        unresponsive: true,
    };
    assert_eq!(stop_reason(&step_result(3, 100, 49), &rules), None);
    assert_eq!(
        stop_reason(&step_result(3, 100, 50), &rules),
        Some(StopReason::FailureRate {
            rate: 0.5,
            limit: 0.5
        })
    );
    assert_eq!(
        stop_reason(&step_result(3, 100, 100), &StopRules::none()),
        None
    );
    let stop_at_any_failure = StopRules {
        failure_rate: Some(0.0),
        ..rules
    };
    assert_eq!(
        stop_reason(&step_result(3, 100, 0), &stop_at_any_failure),
        None,
        "a clean step breaks no failure-rate rule, not even 0"
    );
    assert!(stop_reason(&step_result(3, 100, 1), &stop_at_any_failure).is_some());
}

#[test]
fn every_request_timed_out_or_refused_means_unresponsive() {
    let rules = StopRules {
        failure_rate: None,
        p99: None,
        unresponsive: true,
    };
    let step = step_with_failures(4, 20, 20, FailureClass::Timeout, 10);
    assert_eq!(stop_reason(&step, &rules), Some(StopReason::Unresponsive));
    let step = step_with_failures(4, 20, 20, FailureClass::TooManyClients, 10);
    assert_eq!(stop_reason(&step, &rules), None);
}

#[test]
fn p99_rule_stops_a_slow_step() {
    let rules = StopRules {
        failure_rate: None,
        p99: Some(Duration::from_millis(100)),
        unresponsive: false,
    };
    let slow = step_with_failures(2, 10, 0, FailureClass::Io, 300);
    assert!(matches!(
        stop_reason(&slow, &rules),
        Some(StopReason::P99 { .. })
    ));
    let fast = step_with_failures(2, 10, 0, FailureClass::Io, 30);
    assert_eq!(stop_reason(&fast, &rules), None);
}
