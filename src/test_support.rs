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
