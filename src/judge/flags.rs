//! Diagnosis flags: per step, whether the numbers describe the server or the load generator.

use crate::model::facts::ClientCpus;
use crate::model::outcome::{FailureClass, Side};
use crate::model::rules::{Flag, Thresholds};
use crate::model::step::{Shortfall, StepResult};

/// What the mode promised for a step, against which it is judged.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepContext {
    /// The requests were meant to start together (burst): late starts are a client limit.
    pub starts_together: bool,
    /// The requests had due times (rate): drops and lag behind them are a client limit.
    pub scheduled: bool,
    /// At most this many requests at once, if the mode bounds it; else the measured peak.
    pub concurrency: Option<u32>,
    pub usable_connections: Option<u32>,
}

/// The flags of one step.
pub fn diagnose(
    step: &StepResult,
    context: &StepContext,
    cpus: &ClientCpus,
    t: &Thresholds,
) -> Vec<Flag> {
    let mut flags = Vec::new();
    let judged = cpu_judged(step, t);
    // The host's CPU flags nothing on its own: a full host that does not make pgstress's
    // threads wait has not limited pgstress.
    if judged && client_saturated(step, cpus, t) {
        flags.push(Flag::ClientSaturated);
    }
    let spread = step.launch_spread.as_secs_f64();
    let late_start =
        spread > t.spread_max.as_secs_f64() || spread > t.spread_ratio * step.wall.as_secs_f64();
    if context.starts_together && late_start {
        flags.push(Flag::LaunchSpread);
    }
    let concurrency = context
        .concurrency
        .unwrap_or(step.concurrency.peak_in_flight);
    if context
        .usable_connections
        .is_some_and(|usable| concurrency > usable)
    {
        flags.push(Flag::OverMaxConnections);
    }
    // Measured (its own processes, here or by a watcher) or estimated from its sessions on
    // CPU: `ServerCpu` holds the rule for each.
    if judged && step.server_cpu.saturated(t.saturated_cpu_pct) {
        flags.push(Flag::ServerSaturated);
    }
    if judged && postmaster_saturated(step, t) {
        flags.push(Flag::PostmasterSaturated);
    }
    let lagging = step
        .queue_wait_ms(99.0)
        .is_some_and(|lag| lag > t.spread_max.as_secs_f64() * 1000.0);
    if context.scheduled && (step.dropped > 0 || lagging) {
        flags.push(Flag::RateNotMet);
    }
    if step.failures(FailureClass::Spawn) > 0 {
        flags.push(Flag::SpawnFailed);
    }
    if step.failures(FailureClass::Client) > 0 {
        flags.push(Flag::ClientErrors);
    }
    if step.failed_on(Side::Data) > 0 {
        flags.push(Flag::DataErrors);
    }
    if step.unsent > 0 {
        flags.push(Flag::Partial);
    }
    match step.concurrency.shortfall() {
        Some(Shortfall::StartedLate) => flags.push(Flag::StartedLate),
        Some(Shortfall::AcceptedSlowly) => flags.push(Flag::AcceptedSlowly),
        None => {}
    }
    if !judged {
        flags.push(Flag::TooShortToJudge);
    }
    flags
}

/// Whether the step lasted long enough for its CPU figures to be judged: a side's CPU over a
/// few milliseconds is a handful of the kernel's clock ticks, and its threads' wait over them
/// the instant of the release, not the load (`Thresholds::min_judged_wall`).
pub fn cpu_judged(step: &StepResult, t: &Thresholds) -> bool {
    step.wall >= t.min_judged_wall
}

/// pgstress used the threshold's share of its own CPUs over the step, or its threads waited for
/// a CPU a significant share of the step: starved is saturated. The mean, not the peak: a
/// burst's release fills pgstress's CPUs for an instant by design, and whether that delayed
/// the requests is what `launch-spread` judges.
fn client_saturated(step: &StepResult, cpus: &ClientCpus, t: &Thresholds) -> bool {
    let busy = step.cpu.process.is_some_and(|process| {
        fills(
            process.mean,
            cpus.host_cores,
            cpus.allowed_cores,
            t.saturated_cpu_pct,
        )
    });
    let starved = step.cpu.starved(t.starved_wait_share);
    busy || starved
}

/// The postmaster's thread was busy (running, or ready and waiting for its CPU) the
/// threshold's share of the step: its own work, accepting and forking, is all one thread does,
/// so a postmaster never idle accepts no connection faster, however idle the backends' CPUs.
/// Its runnable time, not its CPU alone: a postmaster sharing its CPU is the limit just the same.
fn postmaster_saturated(step: &StepResult, t: &Thresholds) -> bool {
    step.watched
        .as_ref()
        .and_then(|watched| watched.postmaster_runnable_pct)
        .is_some_and(|busy| busy >= t.saturated_cpu_pct)
}

/// Whether `pct_of_host` (a share of all the host's cores) fills `threshold_pct` of `cores`.
pub fn fills(pct_of_host: f64, host_cores: f64, cores: f64, threshold_pct: f64) -> bool {
    pct_of_host / 100.0 * host_cores >= threshold_pct / 100.0 * cores
}

#[cfg(test)]
#[path = "flags_tests.rs"]
mod tests;
