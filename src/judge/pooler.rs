//! The pooler as a third side: when its one core was full (PgBouncer is one thread) or it
//! refused clients, the step measured the pooler, and the verdict names it, not the server.

use super::flags::{cpu_judged, fills};
use super::verdict::Limit;
use crate::model::outcome::{FailureClass, Side};
use crate::model::record::RequestRecord;
use crate::model::rules::{Flag, Thresholds};
use crate::model::sample::PoolerProcessCpu;
use crate::model::step::{PoolerSide, StepResult};

/// The pooler's flags of one step. `pooler_cores`: the most CPUs the pooler can use (1 for
/// PgBouncer), None for all the host's. A one-thread pooler whose thread was runnable (running,
/// or ready and waiting for a CPU) the threshold's share of the step is saturated too: every
/// client waited for it, and on a host busy with other work it never shows a full core. A
/// step too short to judge a CPU on (`too-short-to-judge`) is not judged saturated.
pub fn pooler_flags(
    step: &StepResult,
    pooler_cores: Option<f64>,
    host_cores: f64,
    t: &Thresholds,
) -> Vec<Flag> {
    let mut flags = Vec::new();
    let cores = pooler_cores.unwrap_or(host_cores);
    let a_process_full = step.pooler.processes.iter().any(|process| process.full);
    let busy = step
        .pooler
        .cpu
        .is_some_and(|cpu| fills(cpu.mean, host_cores, cores, t.saturated_cpu_pct));
    let one_thread = pooler_cores == Some(1.0);
    let runnable = step
        .pooler
        .runnable_pct
        .is_some_and(|pct| one_thread && pct >= t.saturated_cpu_pct);
    if (busy || runnable || a_process_full) && cpu_judged(step, t) {
        flags.push(Flag::PoolerSaturated);
    }
    if step.failures(FailureClass::PoolerTooManyClients) > 0 {
        flags.push(Flag::PoolerRefused);
    }
    if step.failures(FailureClass::PoolerQueued) > 0 {
        flags.push(Flag::PoolerQueued);
    }
    flags
}

/// Marks each of the pooler's one-thread processes that filled its core: its CPU, or the
/// time its thread was runnable, reached the threshold's share of the step. Each process
/// serves the clients the kernel handed it, so one full core limits them however idle the
/// others are.
pub fn judge_processes(pooler: &mut PoolerSide, t: &Thresholds) {
    for process in &mut pooler.processes {
        process.full = process.core_pct >= t.saturated_cpu_pct
            || process
                .runnable_pct
                .is_some_and(|pct| pct >= t.saturated_cpu_pct);
    }
}

/// Which of several processes filled its core, e.g. "process 2 of 2 (pid 4242)"; None for a
/// pooler of one process, or none full.
fn full_processes(step: &StepResult) -> Option<String> {
    let processes = &step.pooler.processes;
    let full: Vec<_> = processes.iter().filter(|p| p.full).collect();
    if processes.len() < 2 || full.is_empty() {
        return None;
    }
    let list = |f: fn(&PoolerProcessCpu) -> u32| {
        (full.iter().map(|p| f(p).to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (noun, pid) = match full.len() {
        1 => ("process", "pid"),
        _ => ("processes", "pids"),
    };
    Some(format!(
        "{noun} {} of {} ({pid} {})",
        list(|p| p.index),
        processes.len(),
        list(|p| p.pid)
    ))
}

/// Whether a request got its target's first answer: it succeeded, or failed on a word from the
/// server or the data after it started (not on pgstress's own limits, a refused or broken
/// socket, or a deadline that passed before any answer).
fn answered(record: &RequestRecord) -> bool {
    match &record.outcome {
        Ok(()) => true,
        Err(failure) => {
            record.start_offset.is_some()
                && !failure.unanswered
                && matches!(failure.class.side(), Side::Server | Side::Data)
                && !matches!(failure.class, FailureClass::Refused | FailureClass::Io)
        }
    }
}

/// Through a pooler, a connection that never got its first answer while others of the step
/// did was held in a queue in front of the server (pgpool-II's children all busy, its
/// listen queue holding the rest): its timeout is the pooler's client limit
/// (`pooler_queued`), not the server's. Returns how many were reclassed.
pub fn held_in_queue(records: &mut [RequestRecord]) -> u32 {
    if !records.iter().any(answered) {
        return 0;
    }
    let mut held = 0;
    for record in records.iter_mut() {
        if let Err(failure) = &mut record.outcome
            && failure.unanswered
            && failure.class == FailureClass::Timeout
        {
            failure.class = FailureClass::PoolerQueued;
            held += 1;
        }
    }
    held
}

/// Connections held in a pooler's queue (`pooler-queued`) keep the requests behind them from
/// starting: a step that shows both did not start late for the client's reasons, and is not
/// flagged `started-late`.
pub fn queue_explains_late_starts(flags: &mut Vec<Flag>) {
    if flags.contains(&Flag::PoolerQueued) {
        flags.retain(|flag| *flag != Flag::StartedLate);
    }
}

/// The first step (of those judged) with a pooler flag; a refusal says more than a busy core.
fn first_pooler_limit(judged: &[StepResult]) -> Option<Limit> {
    judged.iter().find_map(|step| {
        step.flags
            .iter()
            .filter(|f| f.is_pooler_limit())
            .min_by_key(|f| !f.withholds_load())
            .map(|flag| Limit::Pooler {
                flag: *flag,
                step: step.step,
                requests: step.requests,
                process: (*flag == Flag::PoolerSaturated)
                    .then(|| full_processes(step))
                    .flatten(),
            })
    })
}

/// The limit once the pooler is heard: the pooler's in place of the server's, and when its
/// flag came before the client's. In the same step a flag that kept load from the server
/// (clients refused, threads never started) says more than a busy CPU; otherwise the client's
/// wins the tie (a starved client cannot show a pooler's limit either).
pub fn with_pooler(limit: Option<Limit>, judged: &[StepResult]) -> Option<Limit> {
    let Some(pooler) = first_pooler_limit(judged) else {
        return limit;
    };
    let rank = |flag: &Flag, step: u32| (step, !flag.withholds_load());
    match (&limit, &pooler) {
        (
            Some(Limit::Client { flag, step, .. }),
            Limit::Pooler {
                flag: pooler_flag,
                step: pooler_step,
                ..
            },
        ) if rank(flag, *step) <= rank(pooler_flag, *pooler_step) => limit,
        _ => Some(pooler),
    }
}

/// The verdict's sentence for the pooler's limit; `process`, which of its processes filled
/// its core.
pub fn sentence(
    flag: Flag,
    (step, requests): (u32, u32),
    process: Option<&str>,
    broke: bool,
) -> String {
    let full_one;
    let what = match flag {
        Flag::PoolerRefused => "the pooler refused clients (its max_client_conn)",
        Flag::PoolerQueued => {
            "connections waited in the pooler's queue and never got an answer while others \
             did: its client limit (pgpool-II's num_init_children, PgBouncer's max_client_conn), \
             not the server's"
        }
        _ => match process {
            Some(process) => {
                full_one = format!(
                    "PgBouncer {process}: a full core (each process runs on one, and its \
                     clients wait for it)"
                );
                &full_one
            }
            None => "the pooler's CPU was full (PgBouncer runs on one core)",
        },
    };
    match broke {
        true => format!(
            "whose limit: possibly the pooler's — {flag} from step {step} ({requests} requests): \
             {what}; the numbers from there on measure the pooler as much as the server"
        ),
        false => format!(
            "the ramp may have measured the pooler, not the server — {flag} from step {step} \
             ({requests} requests): {what}; the server's capacity may be higher than shown"
        ),
    }
}

#[cfg(test)]
mod tests {
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
}
