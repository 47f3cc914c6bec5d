//! The pooler's flags, its queue and its limit in the verdict.

use super::*;
use crate::model::outcome::Failure;
use crate::model::step::MeanPeak;
use crate::test_support::{step_result, step_with_failures};

fn busy(pct: f64) -> Option<MeanPeak> {
    Some(MeanPeak {
        mean: pct,
        peak: None,
    })
}

#[test]
fn one_full_core_of_two_saturates_pgbouncer() {
    let t = Thresholds::default();
    let mut step = step_result(1, 50, 0);
    assert!(pooler_flags(&step, Some(1.0), 2.0, &t).is_empty());
    // 46% of a 2-core host is 0.92 of PgBouncer's one core.
    step.pooler.cpu = busy(46.0);
    assert_eq!(
        pooler_flags(&step, Some(1.0), 2.0, &t),
        vec![Flag::PoolerSaturated]
    );
    // A pooler that may use every core is not full at half of them.
    assert!(pooler_flags(&step, None, 2.0, &t).is_empty());
    step.pooler.cpu = busy(44.0);
    assert!(pooler_flags(&step, Some(1.0), 2.0, &t).is_empty());
}

#[test]
fn a_thread_waiting_for_a_cpu_it_never_got_is_saturated_too() {
    let t = Thresholds::default();
    let mut step = step_result(1, 50, 0);
    // 10% of the host, but its thread runnable through the whole step.
    step.pooler.cpu = busy(10.0);
    step.pooler.runnable_pct = Some(95.0);
    assert_eq!(
        pooler_flags(&step, Some(1.0), 2.0, &t),
        vec![Flag::PoolerSaturated]
    );
    step.pooler.runnable_pct = Some(85.0);
    assert!(pooler_flags(&step, Some(1.0), 2.0, &t).is_empty());
    // One process among many (pgpool-II): its leader's thread says nothing of the rest.
    step.pooler.runnable_pct = Some(100.0);
    assert!(pooler_flags(&step, None, 2.0, &t).is_empty());
}

fn process(index: u32, core_pct: f64, runnable_pct: Option<f64>) -> PoolerProcessCpu {
    PoolerProcessCpu {
        index,
        pid: 4240 + index,
        core_pct,
        runnable_pct,
        full: false,
    }
}

#[test]
fn one_full_core_of_two_pgbouncer_processes_saturates_and_is_named() {
    let t = Thresholds::default();
    let mut step = step_result(1, 50, 0);
    // Half the host's two cores in all, but both processes below their own core.
    step.pooler.cpu = busy(50.0);
    step.pooler.processes = vec![process(1, 50.0, Some(60.0)), process(2, 50.0, None)];
    judge_processes(&mut step.pooler, &t);
    assert!(pooler_flags(&step, Some(2.0), 2.0, &t).is_empty());
    // The second fills its core, or its thread waits for a CPU it never gets.
    for second in [process(2, 95.0, None), process(2, 20.0, Some(97.0))] {
        step.pooler.processes = vec![process(1, 5.0, Some(6.0)), second];
        judge_processes(&mut step.pooler, &t);
        step.pooler.cpu = busy(second.core_pct / 2.0);
        assert_eq!(
            pooler_flags(&step, Some(2.0), 2.0, &t),
            vec![Flag::PoolerSaturated]
        );
        step.flags = vec![Flag::PoolerSaturated];
        let limit = with_pooler(None, std::slice::from_ref(&step));
        let Some(Limit::Pooler { process, .. }) = &limit else {
            panic!("{limit:?}")
        };
        assert_eq!(process.as_deref(), Some("process 2 of 2 (pid 4242)"));
        let line = sentence(Flag::PoolerSaturated, (1, 50), process.as_deref(), false);
        assert!(
            line.contains("PgBouncer process 2 of 2 (pid 4242): a full core"),
            "{line}"
        );
    }
    // Both full: both named. One process alone is not named: it is the pooler.
    step.pooler.processes = vec![process(1, 99.0, None), process(2, 99.0, None)];
    judge_processes(&mut step.pooler, &t);
    assert_eq!(
        full_processes(&step).as_deref(),
        Some("processes 1, 2 of 2 (pids 4241, 4242)")
    );
    step.pooler.processes.truncate(1);
    assert_eq!(full_processes(&step), None);
}

#[test]
fn a_short_step_is_not_judged_saturated() {
    let t = Thresholds::default();
    let mut step = step_result(1, 50, 0);
    step.pooler.cpu = busy(46.0);
    step.pooler.runnable_pct = Some(95.0);
    step.wall = t.min_judged_wall;
    assert_eq!(
        pooler_flags(&step, Some(1.0), 2.0, &t),
        vec![Flag::PoolerSaturated]
    );
    step.wall = t.min_judged_wall - std::time::Duration::from_millis(1);
    assert!(pooler_flags(&step, Some(1.0), 2.0, &t).is_empty());
}

fn record(outcome: Result<(), Failure>, started: bool) -> RequestRecord {
    let mut record = RequestRecord::failed_without_running(
        Failure::new(FailureClass::Io, "x"),
        std::time::Duration::from_millis(5),
    );
    record.outcome = outcome;
    record.start_offset = started.then_some(std::time::Duration::ZERO);
    record
}

#[test]
fn unanswered_connections_beside_answered_ones_were_held_in_the_poolers_queue() {
    let unanswered = || record(Err(Failure::unanswered("deadline passed")), true);
    let mut records = vec![unanswered(), record(Ok(()), true), unanswered()];
    assert_eq!(held_in_queue(&mut records), 2);
    let classes: Vec<Option<FailureClass>> = records
        .iter()
        .map(|r| r.outcome.as_ref().err().map(|f| f.class))
        .collect();
    assert_eq!(
        classes,
        [
            Some(FailureClass::PoolerQueued),
            None,
            Some(FailureClass::PoolerQueued)
        ]
    );
    let step = step_with_failures(1, 10, 3, FailureClass::PoolerQueued, 10);
    assert_eq!(
        pooler_flags(&step, None, 2.0, &Thresholds::default()),
        vec![Flag::PoolerQueued]
    );
    assert_eq!(step.server_failed(), 0, "not the server's failure");
}

#[test]
fn with_no_answer_at_all_or_answers_from_nobody_the_timeouts_stay_the_servers() {
    let unanswered = || record(Err(Failure::unanswered("deadline passed")), true);
    let all_silent = &mut [unanswered(), unanswered()];
    assert_eq!(held_in_queue(all_silent), 0);
    assert!(all_silent.iter().all(|r| {
        r.outcome
            .as_ref()
            .is_err_and(|f| f.class == FailureClass::Timeout)
    }));
    // None of these is an answer from the target: a refused or broken socket, the
    // client's own failure, a request that never started.
    for other in [
        record(Err(Failure::new(FailureClass::Refused, "refused")), true),
        record(Err(Failure::new(FailureClass::Io, "reset")), true),
        record(Err(Failure::new(FailureClass::Client, "files")), true),
        record(Err(Failure::new(FailureClass::Timeout, "queue")), false),
    ] {
        assert_eq!(held_in_queue(&mut [unanswered(), other]), 0);
    }
    // A timeout after the first answer, an error or a missing row are answers.
    for answer in [
        record(Err(Failure::new(FailureClass::Timeout, "57014")), true),
        record(Err(Failure::new(FailureClass::Query, "42P01")), true),
        record(Err(Failure::new(FailureClass::NoRow, "no row")), true),
    ] {
        let records = &mut [unanswered(), answer];
        assert_eq!(held_in_queue(records), 1);
        // A timeout that was answered first stays the server's.
        assert!(
            !records[1]
                .outcome
                .as_ref()
                .is_err_and(|f| f.class == FailureClass::PoolerQueued)
        );
    }
}

#[test]
fn refused_clients_are_the_poolers_and_withhold_load() {
    let t = Thresholds::default();
    let step = step_with_failures(1, 101, 1, FailureClass::PoolerTooManyClients, 10);
    assert_eq!(
        pooler_flags(&step, Some(1.0), 2.0, &t),
        vec![Flag::PoolerRefused]
    );
    assert_eq!(step.server_failed(), 0, "not the server's failure");
}

fn flagged(step: u32, flag: Flag) -> StepResult {
    let mut result = step_result(step, 10 * step, 0);
    result.flags.push(flag);
    result
}

#[test]
fn connections_held_in_the_poolers_queue_say_more_than_a_busy_client() {
    let both = {
        let mut step = flagged(1, Flag::ClientSaturated);
        step.flags.push(Flag::PoolerQueued);
        [step]
    };
    let client = Some(Limit::Client {
        flag: Flag::ClientSaturated,
        step: 1,
        requests: 10,
        agent: None,
    });
    let limit = with_pooler(client, &both);
    assert!(
        matches!(
            &limit,
            Some(Limit::Pooler {
                flag: Flag::PoolerQueued,
                step: 1,
                ..
            })
        ),
        "{limit:?}"
    );
    let line = sentence(Flag::PoolerQueued, (1, 120), None, false);
    assert!(
        line.contains("pooler-queued from step 1 (120 requests)")
            && line.contains("num_init_children"),
        "{line}"
    );
}

#[test]
fn the_earlier_side_is_named_and_the_client_wins_a_tie() {
    let pooler_at_2 = [
        flagged(1, Flag::LaunchSpread),
        flagged(2, Flag::PoolerSaturated),
    ];
    let client = Some(Limit::Client {
        flag: Flag::LaunchSpread,
        step: 1,
        requests: 10,
        agent: None,
    });
    assert_eq!(with_pooler(client.clone(), &pooler_at_2), client);
    let steps = [
        flagged(1, Flag::PoolerSaturated),
        flagged(2, Flag::LaunchSpread),
    ];
    let late_client = Some(Limit::Client {
        flag: Flag::LaunchSpread,
        step: 2,
        requests: 20,
        agent: None,
    });
    let pooler = Some(Limit::Pooler {
        flag: Flag::PoolerSaturated,
        step: 1,
        requests: 10,
        process: None,
    });
    assert_eq!(with_pooler(late_client, &steps), pooler);
    assert_eq!(with_pooler(Some(Limit::Server), &steps), pooler);
    assert_eq!(with_pooler(None, &steps), pooler);
    assert_eq!(with_pooler(Some(Limit::Server), &[]), Some(Limit::Server));
    // Refused clients say more than a busy CPU in the same step.
    let refused = [flagged(1, Flag::PoolerRefused)];
    let busy_client = Some(Limit::Client {
        flag: Flag::ClientSaturated,
        step: 1,
        requests: 10,
        agent: None,
    });
    let refused_limit = with_pooler(busy_client, &refused);
    assert!(
        matches!(&refused_limit, Some(Limit::Pooler { flag, .. }) if *flag == Flag::PoolerRefused),
        "{refused_limit:?}"
    );
}

#[test]
fn a_pooler_queue_explains_late_starts() {
    let mut flags = vec![Flag::StartedLate, Flag::PoolerQueued];
    queue_explains_late_starts(&mut flags);
    assert_eq!(flags, vec![Flag::PoolerQueued]);
    let mut late = vec![Flag::StartedLate];
    queue_explains_late_starts(&mut late);
    assert_eq!(
        late,
        vec![Flag::StartedLate],
        "without a queue, the client's"
    );
}
