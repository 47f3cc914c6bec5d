use super::*;
use crate::model::outcome::Failure;

const MS: Duration = Duration::from_millis(1);

/// A rate step of 100 requests per second over `seconds` from 4 senders in turn, each request
/// 2 ms long, failing (`class`) while it starts inside `down`.
fn trace(seconds: u64, down: std::ops::Range<Duration>, class: FailureClass) -> Vec<RequestRecord> {
    (0..seconds * 100)
        .map(|k| {
            let start = MS * (k as u32 * 10);
            let mut record = RequestRecord::failed_without_running(
                Failure::new(class, "57P01: terminating connection"),
                MS * 2,
            );
            record.start_offset = Some(start);
            record.client = Some((k % 4) as u32);
            if !down.contains(&start) {
                record.outcome = Ok(());
            }
            record
        })
        .collect()
}

fn secs(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[test]
fn a_server_down_for_a_second_and_a_half_is_an_outage_of_as_long_for_the_run_and_each_client() {
    let records = trace(6, secs(3000)..secs(4500), FailureClass::Shutdown);
    let outage = of(&records).expect("an outage");
    // The first failure came back 2 ms after it was sent, at 3.002 s.
    assert_eq!(outage.start, secs(3002));
    assert_eq!(outage.first_success, Some(secs(4502)));
    assert_eq!(outage.end, Some(secs(4500)));
    assert_eq!(outage.duration(), Some(secs(1498)));
    assert_eq!(outage.baseline_per_bin, Some(10.0));
    assert_eq!(outage.failures, [(FailureClass::Shutdown, 150)]);
    assert_eq!(outage.gaps.len(), 4);
    // Client 0 last succeeded at 2960 (ended 2962) and next at 4520 (ended 4522): clients 0
    // and 1 waited one sending round more than the outage, 2 and 3 one interval more.
    assert_eq!(outage.gaps[0].from, secs(2962));
    assert_eq!(outage.gaps[0].to, Some(secs(4522)));
    assert_eq!(outage.gaps[0].failures, [(FailureClass::Shutdown, 38)]);
    let gaps: Vec<u128> = outage.gaps.iter().map(|g| g.gap.as_millis()).collect();
    assert_eq!(gaps, [1560, 1560, 1520, 1520]);
    assert_eq!(
        (outage.gap_p50, outage.gap_p99, outage.gap_max),
        (secs(1520), secs(1560), secs(1560))
    );
    assert_eq!(outage.unrecovered, 0);
    // The timeline: 10 successes a bin, then 10 failures a bin, then successes again.
    assert_eq!(outage.timeline.len(), 60);
    assert_eq!(
        (outage.timeline[29], outage.timeline[30]),
        ([10, 0], [0, 10])
    );
    assert_eq!(
        (outage.timeline[44], outage.timeline[45]),
        ([0, 10], [10, 0])
    );
}

#[test]
fn throughput_is_back_only_when_it_holds_and_a_dead_end_is_no_end() {
    // Back at 4.5 s, but at half the rate until 5 s: the end is at 5 s.
    let mut records = trace(7, secs(3000)..secs(4500), FailureClass::Refused);
    records.retain(|r| {
        let start = r.start_offset.unwrap();
        !(secs(4500)..secs(5000)).contains(&start) || start.as_millis() % 20 == 0
    });
    let outage = of(&records).unwrap();
    assert_eq!(outage.first_success, Some(secs(4502)));
    assert_eq!(outage.end, Some(secs(5000)));
    // Never back: no end, every client unrecovered, its gap running to the step's last request.
    let records = trace(5, secs(3000)..secs(9000), FailureClass::Refused);
    let outage = of(&records).unwrap();
    assert_eq!((outage.end, outage.first_success), (None, None));
    assert_eq!(outage.unrecovered, 4);
    assert_eq!(outage.gaps[3].gap, secs(4990 - 2992));
}

#[test]
fn no_failure_a_server_never_there_or_the_clients_own_failures_are_no_outage() {
    assert_eq!(of(&trace(2, secs(0)..secs(0), FailureClass::Refused)), None);
    assert_eq!(
        of(&trace(2, secs(0)..secs(9000), FailureClass::Refused)),
        None
    );
    assert_eq!(
        of(&trace(2, secs(1000)..secs(1500), FailureClass::Client)),
        None
    );
}

#[test]
fn a_timeout_shows_the_server_gone_from_its_start_others_from_their_end() {
    let outage = of(&trace(6, secs(3000)..secs(4500), FailureClass::Timeout)).unwrap();
    assert_eq!(outage.start, secs(3000));
}

#[test]
fn requests_of_no_named_client_are_one_client() {
    let mut records = trace(6, secs(3000)..secs(4500), FailureClass::Timeout);
    records.iter_mut().for_each(|r| r.client = None);
    let outage = of(&records).unwrap();
    assert_eq!(outage.gaps.len(), 1);
    assert_eq!(outage.gaps[0].client, None);
    assert_eq!(outage.gaps[0].gap, secs(4502 - 2992));
}

#[test]
fn the_requests_apart_from_the_outage_are_those_that_did_not_overlap_it() {
    let mut records = trace(6, secs(3000)..secs(4500), FailureClass::Shutdown);
    // One failure long after the server came back: the server's own, outside the outage.
    records[550].outcome = Err(Failure::new(FailureClass::Query, "ERROR: boom"));
    records[551].outcome = Err(Failure::new(FailureClass::Client, "out of files"));
    let outage = of(&records).expect("an outage");
    // From 3.002 s to 4.5 s: the requests started 3.010 s to 4.490 s overlap it, and the one
    // started at 3.000 s (ending at 3.002 s, when the outage began); 4.500 s is due at its end.
    let inside = (3000..=4500).step_by(10).count() as u32;
    assert_eq!(outage.apart.sent, 600 - inside);
    assert_eq!(
        outage.apart.server_failed, 1,
        "the query error; the client's is not"
    );
    assert_eq!(outage.apart.p99_ms, Some(2.0));
    // Before it: the 300 requests started before 3.000 s.
    assert_eq!((outage.before.sent, outage.before.server_failed), (300, 0));
    assert_eq!(outage.caused_by, None);
}

#[test]
fn a_step_a_fault_reached_from_before_its_release_has_an_outage_from_its_first_request() {
    // The server gone from the step's release to 1.5 s: no success came before the failures.
    let records = trace(4, secs(0)..secs(1500), FailureClass::Timeout);
    assert_eq!(
        of(&records),
        None,
        "no success before: no outage of its own reckoning"
    );
    let outage = through_fault(&records).expect("the fault's outage");
    assert_eq!(outage.start, secs(0));
    assert_eq!(outage.first_success, Some(secs(1502)));
    // No baseline: back at the first success's bin.
    assert_eq!(
        (outage.baseline_per_bin, outage.end),
        (None, Some(secs(1500)))
    );
    assert_eq!(outage.failures, [(FailureClass::Timeout, 150)]);
    // Nothing came before it; the requests sent after every sender was back (the 4th with
    // its request of 1.53 s) are apart.
    assert_eq!((outage.before.sent, outage.apart.sent), (0, 246));
    assert_eq!(
        through_fault(&trace(1, secs(0)..secs(0), FailureClass::Timeout)),
        None
    );
}

#[test]
fn a_pool_whose_sessions_a_fault_closed_before_the_step_is_back_when_each_worker_is() {
    // 4 workers, each request 2 ms; each worker's first request fails (its session closed in
    // the pause) when it comes to it, worker 3 last, at 40 ms, after the others are back.
    let mut records = trace(2, secs(0)..secs(0), FailureClass::Shutdown);
    for (k, record) in records.iter_mut().enumerate().take(4) {
        record.outcome = Err(Failure::new(FailureClass::Shutdown, "57P01"));
        record.start_offset = Some(secs(10 * k as u64 + 10));
        record.client = Some(k as u32);
    }
    let outage = through_fault(&records).expect("the fault's outage");
    assert_eq!(outage.failures, [(FailureClass::Shutdown, 4)]);
    assert_eq!(outage.gaps.len(), 4);
    // Every failed request lies inside the window: none is judged, nor any success before
    // the last worker was back.
    assert_eq!(outage.apart.server_failed, 0);
    assert!(outage.apart.sent < 200 - 4, "{:?}", outage.apart);
}
