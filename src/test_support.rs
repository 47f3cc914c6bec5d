//! Synthetic data for unit tests of the pure logic (flags, verdict, gates).

use std::time::Duration;

use crate::model::outcome::{Failure, FailureClass};
use crate::model::record::RequestRecord;
use crate::model::record::StepRun;
use crate::model::step::StepResult;

/// A step of `requests` requests, `failed` of them `class`, the rest ok with `latency_ms`.
pub fn step_with_failures(
    step: u32,
    requests: u32,
    failed: u32,
    class: FailureClass,
    latency_ms: u64,
) -> StepResult {
    let ok = RequestRecord {
        start_offset: Some(Duration::ZERO),
        queue_wait: None,
        connect: Some(Duration::from_millis(1)),
        query: Some(Duration::from_millis(latency_ms.saturating_sub(1))),
        latency: Duration::from_millis(latency_ms),
        outcome: Ok(()),
        node: None,
        client: None,
    };
    let bad = RequestRecord::failed_without_running(
        Failure::new(class, class.name()),
        Duration::from_millis(1),
    );
    let mut records = vec![ok; (requests - failed) as usize];
    records.extend(std::iter::repeat_n(bad, failed as usize));
    let run = StepRun {
        records,
        dropped: 0,
        unsent: 0,
        launch: Duration::from_millis(1),
        wall: Duration::from_millis(1000),
        ..StepRun::default()
    };
    StepResult::from_run(step, requests, &run, &[], &[])
}

/// A step whose failures are `too_many_clients`, 10 ms latency.
pub fn step_result(step: u32, requests: u32, failed: u32) -> StepResult {
    step_with_failures(step, requests, failed, FailureClass::TooManyClients, 10)
}

/// The facts of a burst run of `steps` steps of `step` more requests each, started at
/// 2026-11-29 09:22:53.
pub fn run_facts(steps: u32, step: u32) -> crate::model::facts::RunFacts {
    serde_json::from_value(serde_json::json!({
        "pgstress_version": "0.1.0",
        "started_at": "2026-11-29T09:22:53.123456+01:00",
        "plan": {
            "mode": "burst", "unit": "concurrent requests", "engine": "burst: a thread each",
            "steps": steps, "start": step, "step": step, "largest_step": steps * step,
            "total_requests": 0, "query": "SELECT 1 WHERE 1 < 2 AND 'a' = \"a\"", "data": null,
            "timeout_ms": 10000.0, "sample_every_ms": 100.0, "stop_failure_rate": 0.5,
            "stop_p99_ms": null, "stop_when_unresponsive": true, "slo_p99_ms": null
        },
        "target": "host=127.0.0.1 port=5432 user=app password=*** dbname=app",
        "throwaway": false,
        "server": {
            "version": "16.4", "max_connections": 100, "superuser_reserved_connections": 3,
            "superuser": false, "sessions_at_start": 1
        },
        "server_cpu_visible": false,
        "server_stats_visible": true,
        "client": { "host_cores": 2.0, "allowed_cores": 1.0 }
    }))
    .expect("valid run facts")
}

/// Three planned steps of 100 more requests: step 1 handled, step 2 with 30 `too_many_clients`
/// failures (the breaking point), step 3 never run (a stop rule); one gate held, one breached.
pub fn ci_report<'a>(
    facts: &'a crate::model::facts::RunFacts,
    steps: &'a [StepResult],
    verdict: &'a crate::judge::verdict::Verdict,
    gates: &'a [crate::logs::ci::GateOutcome],
) -> crate::logs::ci::RunReport<'a> {
    crate::logs::ci::RunReport {
        facts,
        run_id: "11292026_092253".to_owned(),
        steps,
        handled: vec![true, false],
        verdict,
        gates,
        ending: crate::logs::ci::Ending::Completed {
            stopped: Some("--stop-failure-rate 0.1".to_owned()),
        },
        elapsed: Duration::from_millis(2500),
        hostname: "ci-runner".to_owned(),
        summary: "logs/11292026_092253_summary.json".into(),
        report: Some("logs/11292026_092253_report.html".into()),
    }
}

/// The steps, verdict and gates of `ci_report`.
pub fn ci_run() -> (
    Vec<StepResult>,
    crate::judge::verdict::Verdict,
    Vec<crate::logs::ci::GateOutcome>,
) {
    let steps = vec![step_result(1, 100, 0), step_result(2, 200, 30)];
    let judging = crate::judge::verdict::Judging {
        steps_planned: 3,
        unit: crate::model::plan::CONCURRENT,
        ..Default::default()
    };
    let verdict = crate::judge::verdict::Verdict::judge(&steps, &judging, None);
    let gates = vec![
        crate::logs::ci::GateOutcome {
            gate: "capacity<50".to_owned(),
            breached: None,
            measured: "capacity is 100".to_owned(),
        },
        crate::logs::ci::GateOutcome {
            gate: "failure-rate>0.01".to_owned(),
            breached: Some("failure-rate>0.01: step 2 (200 requests) has 0.150".to_owned()),
            measured: "failure-rate is 0.150 at step 2 (200 requests)".to_owned(),
        },
    ];
    (steps, verdict, gates)
}
