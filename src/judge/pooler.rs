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
#[path = "pooler_tests.rs"]
mod tests;
