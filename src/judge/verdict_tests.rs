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
    assert_eq!(
        bp.dominant_failure,
        Some((FailureClass::TooManyClients, 41))
    );
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
            flag: Flag::ClientSaturated,
            step: 2,
            requests: 100,
            agent: None,
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
        matches!(&verdict.limit, Some(Limit::Client { flag, step: 1, .. }) if *flag == Flag::SpawnFailed),
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
    assert_eq!(verdict.limit, None);
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

#[test]
fn stop_reasons_describe_the_rule_and_the_figure() {
    let rate = StopReason::FailureRate {
        rate: 0.25,
        limit: 0.2,
    };
    assert_eq!(
        rate.describe(),
        "--stop-failure-rate 0.2 (the step's failure rate was 0.25)"
    );
    let p99 = StopReason::P99 {
        p99_ms: 312.04,
        limit_ms: 250.0,
    };
    assert_eq!(
        p99.describe(),
        "--stop-p99 250ms (the step's p99 was 312.0ms)"
    );
    assert!(
        StopReason::Unresponsive
            .describe()
            .starts_with("the server stopped responding")
    );
}

#[test]
fn failure_rate_is_failed_over_requests_sent() {
    assert_eq!(failure_rate(&step_result(1, 200, 50)), 0.25);
    assert_eq!(failure_rate(&step_result(1, 0, 0)), 0.0);
    assert_eq!(server_failure_rate(&step_result(1, 0, 0)), 0.0);
    // Threads that never started are failures, but not the server's.
    let mut step = step_with_failures(1, 100, 20, FailureClass::Spawn, 10);
    step.by_class[FailureClass::Io.index()] = 10;
    step.by_class[FailureClass::Spawn.index()] = 10;
    // 90 sent (10 threads never started): 20 failed of them, 10 the server's.
    assert_eq!(failure_rate(&step), 20.0 / 90.0);
    assert_eq!(server_failure_rate(&step), 10.0 / 90.0);
}

#[test]
fn timeouts_and_refusals_together_are_unresponsive() {
    let rules = StopRules {
        failure_rate: None,
        p99: None,
        unresponsive: true,
    };
    let mut step = step_with_failures(4, 20, 20, FailureClass::Timeout, 10);
    step.by_class[FailureClass::Timeout.index()] = 12;
    step.by_class[FailureClass::Refused.index()] = 8;
    assert_eq!(stop_reason(&step, &rules), Some(StopReason::Unresponsive));
    step.by_class[FailureClass::Refused.index()] = 7;
    assert_eq!(stop_reason(&step, &rules), None);
    let off = StopRules {
        unresponsive: false,
        ..rules
    };
    assert_eq!(
        stop_reason(
            &step_with_failures(4, 20, 20, FailureClass::Timeout, 10),
            &off
        ),
        None
    );
    // A step that sent nothing is not a server that stopped answering.
    assert_eq!(stop_reason(&step_result(4, 0, 0), &rules), None);
}

#[test]
fn p99_rule_stops_only_above_its_limit() {
    let rules = StopRules {
        failure_rate: None,
        p99: Some(Duration::from_millis(1)),
        unresponsive: false,
    };
    // 1 ms is exact in the histogram: a p99 at the limit does not stop the run.
    let at_limit = step_with_failures(2, 10, 0, FailureClass::Io, 1);
    assert_eq!(at_limit.latency_ms(99.0), Some(1.0));
    assert_eq!(stop_reason(&at_limit, &rules), None);
    let over = step_with_failures(2, 10, 0, FailureClass::Io, 2);
    assert_eq!(
        stop_reason(&over, &rules),
        Some(StopReason::P99 {
            p99_ms: 2.0,
            limit_ms: 1.0
        })
    );
}

fn figures(server_failed: u32, p99_ms: Option<f64>) -> Figures {
    Figures {
        server_failed,
        sent: 10,
        p99_ms,
    }
}

#[test]
fn handled_means_no_server_failure_and_p99_within_the_slo() {
    assert!(handled_figures(&figures(0, None), None, 0.0));
    assert!(!handled_figures(&figures(1, Some(1.0)), None, 0.0));
    // A tolerance lets a share of the requests sent fail, and not more.
    assert!(handled_figures(&figures(1, None), None, 0.1));
    assert!(!handled_figures(&figures(2, None), None, 0.1));
    assert!(handled_figures(&figures(0, Some(250.0)), Some(250.0), 0.0));
    assert!(!handled_figures(&figures(0, Some(250.5)), Some(250.0), 0.0));
    assert!(!handled_figures(&figures(0, None), Some(250.0), 0.0));
    let fast = step_with_failures(1, 10, 0, FailureClass::Io, 1);
    assert!(handled(
        &fast,
        &Judging {
            slo_p99: Some(Duration::from_millis(1)),
            ..Judging::default()
        }
    ));
    assert!(!handled(
        &fast,
        &Judging {
            slo_p99: Some(Duration::from_micros(999)),
            ..Judging::default()
        }
    ));
}

#[test]
fn a_client_flag_on_the_breaking_step_names_the_client() {
    let mut steps = vec![step_result(1, 50, 0), step_result(2, 100, 5)];
    steps[1].flags = vec![Flag::OverMaxConnections, Flag::LaunchSpread];
    let verdict = Verdict::judge(&steps, &judging(2, None), None);
    assert_eq!(
        verdict.limit,
        Some(Limit::Client {
            flag: Flag::LaunchSpread,
            step: 2,
            requests: 100,
            agent: None,
        })
    );
    let sentences = verdict.sentences();
    assert_eq!(
        sentences[1],
        "whose limit: possibly the client's — launch-spread from step 2 (100 requests); the \
         numbers from there on measure pgstress and this machine as much as the server"
    );
}

#[test]
fn the_verdict_counts_its_steps_and_its_slo() {
    let mut steps = vec![
        step_result(1, 50, 0),
        step_with_failures(2, 100, 100, FailureClass::Spawn, 10),
        step_result(3, 150, 0),
    ];
    steps[1].flags = vec![Flag::SpawnFailed];
    steps[2].flags = vec![Flag::ClientSaturated];
    let stopped = Some((3, StopReason::Unresponsive));
    let verdict = Verdict::judge(
        &steps,
        &judging(7, Some(Duration::from_millis(250))),
        stopped,
    );
    assert_eq!(verdict.capacity, Some(150));
    assert_eq!(verdict.unit, CONCURRENT);
    assert_eq!(
        (
            verdict.steps_run,
            verdict.steps_without_load,
            verdict.steps_planned
        ),
        (3, 1, 7)
    );
    assert_eq!(verdict.slo_p99_ms, Some(250.0));
    assert_eq!(verdict.client_saturated_from, Some(3));
    assert_eq!(verdict.stopped, stopped);
    assert_eq!(
        verdict.sentences(),
        vec![
            "no breaking point in the steps that reached the server (2 of 3 steps run; 1 sent it \
             nothing: the client could not send their load); capacity: 150 concurrent requests"
                .to_owned(),
            "the ramp may have measured the client, not the server — spawn-failed from step 2 \
             (100 requests): the server's capacity may be higher than shown"
                .to_owned(),
            "the client was saturated from step 3: results from there on measure pgstress as \
             much as the server"
                .to_owned(),
            format!(
                "stopped after step 3 by {}",
                StopReason::Unresponsive.describe()
            ),
        ]
    );
}

#[test]
fn sentences_for_a_run_without_capacity() {
    let failed = vec![step_result(1, 50, 5)];
    let verdict = Verdict::judge(&failed, &judging(3, None), None);
    assert_eq!(
        verdict.sentences(),
        vec![
            "breaking point: 50 concurrent requests (step 1) — 5 of 50 failed, 5 too_many_clients; \
             capacity: none (the first step already failed)"
                .to_owned(),
            "whose limit: the server's (no client flag at or before the breaking point)".to_owned(),
        ]
    );
    let mut unsent = vec![step_with_failures(1, 50, 50, FailureClass::Spawn, 10)];
    unsent[0].flags = vec![Flag::SpawnFailed];
    let verdict = Verdict::judge(&unsent, &judging(3, None), None);
    assert_eq!(verdict.capacity, None);
    assert!(
        verdict.sentences()[0].starts_with("no verdict on the server: no request of any step"),
        "{:?}",
        verdict.sentences()
    );
    let verdict = Verdict::judge(&[], &judging(3, None), None);
    assert_eq!(
        verdict.sentences(),
        vec![
            "no breaking point: the server handled every step run (0 of 3 steps); capacity: not \
             measured (no step's load reached the server in full)"
                .to_owned()
        ]
    );
}

#[test]
fn an_slo_breach_is_told_by_its_p99() {
    let steps = vec![step_with_failures(1, 10, 0, FailureClass::Io, 2)];
    let verdict = Verdict::judge(&steps, &judging(1, Some(Duration::from_millis(1))), None);
    assert_eq!(
        verdict.sentences()[0],
        "breaking point: 10 concurrent requests (step 1) — p99 2.0ms over the 1ms SLO; capacity: \
         none (the first step already failed)"
    );
    let bp = verdict.breaking_point.unwrap();
    assert_eq!(
        (bp.failed, bp.dominant_failure, bp.p99_ms),
        (0, None, Some(2.0))
    );
}

#[test]
fn a_postmaster_saturated_step_is_named_and_is_not_the_clients() {
    let mut steps = vec![step_result(1, 50, 0), step_result(2, 100, 0)];
    let none = Verdict::judge(&steps, &judging(2, None), None);
    assert_eq!(none.postmaster_saturated_from, None);
    assert!(!none.sentences().join("\n").contains("postmaster"));
    steps[1].flags = vec![Flag::PostmasterSaturated];
    let verdict = Verdict::judge(&steps, &judging(2, None), None);
    assert_eq!(verdict.postmaster_saturated_from, Some(2));
    assert_eq!(verdict.client_saturated_from, None);
    assert!(!matches!(verdict.limit, Some(Limit::Client { .. })));
    let text = verdict.sentences().join("\n");
    assert!(
        text.contains("the postmaster was saturated from step 2"),
        "{text}"
    );
}
