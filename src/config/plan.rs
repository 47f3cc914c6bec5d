//! The ramp and the mode checked together: a plan this machine cannot hold, or an option of
//! another mode, is refused before anything connects.

use std::time::Duration;

use crate::cli::RunArgs;
use crate::cli::values::{ModeName, Span, name_of};
use crate::config::error::{ConfigError, invalid};
use crate::config::values::or_default;
use crate::judge::gate::Gate;
use crate::model::plan::{Arrival, Mode, StepPlan};

/// The most requests a pool or rate step may queue or schedule.
const MAX_QUEUED_STEP: u32 = 10_000_000;

pub(super) fn validate_plan(steps: u32, step: u32, start: u32) -> Result<StepPlan, ConfigError> {
    if steps == 0 {
        return Err(invalid("--steps", steps, "run at least 1 step"));
    }
    if step == 0 {
        return Err(invalid(
            "--step",
            step,
            "each step must add at least 1 request",
        ));
    }
    if start == 0 {
        return Err(invalid(
            "--start",
            start,
            "the first step needs at least 1 request",
        ));
    }
    let largest = u64::from(start) + u64::from(steps - 1) * u64::from(step);
    if largest > u64::from(u32::MAX) {
        return Err(plan_error(
            &StepPlan { steps, start, step },
            format!("the last step would send {largest} requests; use fewer or smaller steps"),
        ));
    }
    Ok(StepPlan { steps, start, step })
}

/// The mode options given, whichever mode they belong to.
struct ModeOptions {
    workers: Option<u32>,
    connect_per_request: Option<bool>,
    duration: Option<Span>,
    arrival: Option<Arrival>,
    max_inflight: Option<u32>,
    every: Option<Span>,
}

pub(super) fn merge_mode(options: &RunArgs, plan: &StepPlan) -> Result<Mode, ConfigError> {
    let name = options.mode.unwrap_or(ModeName::Burst);
    let mode_options = ModeOptions {
        workers: options.workers,
        connect_per_request: options.connect_per_request,
        duration: options.duration,
        arrival: options.arrival,
        max_inflight: options.max_inflight,
        every: options.every,
    };
    refuse_misplaced(name, &mode_options)?;
    match name {
        ModeName::Burst => burst_mode(plan),
        ModeName::Pool => pool_mode(&mode_options, plan),
        ModeName::Rate => rate_mode(&mode_options, plan),
        ModeName::Hold => hold_mode(&mode_options, plan),
    }
}

/// An option of another mode is a mistake worth naming, not something to ignore.
fn refuse_misplaced(name: ModeName, options: &ModeOptions) -> Result<(), ConfigError> {
    let misplaced = |option: &'static str, value: String, belongs: &str| {
        invalid(
            option,
            value,
            format!("it applies to --mode {belongs}; add --mode {belongs} or drop it"),
        )
    };
    if name != ModeName::Pool {
        if let Some(w) = options.workers {
            return Err(misplaced("--workers", w.to_string(), "pool"));
        }
        if let Some(connect) = options.connect_per_request {
            return Err(misplaced(
                "--connect-per-request",
                connect.to_string(),
                "pool",
            ));
        }
    }
    if name == ModeName::Burst
        && let Some(d) = options.duration
    {
        return Err(invalid(
            "--duration",
            d,
            "it applies to --mode pool, rate and hold; add one of them or drop it",
        ));
    }
    if name != ModeName::Rate {
        if let Some(a) = options.arrival {
            return Err(misplaced("--arrival", name_of(&a), "rate"));
        }
        if let Some(m) = options.max_inflight {
            return Err(misplaced("--max-inflight", m.to_string(), "rate"));
        }
    }
    if name != ModeName::Hold
        && let Some(every) = options.every
    {
        return Err(misplaced("--every", every.to_string(), "hold"));
    }
    Ok(())
}

fn burst_mode(plan: &StepPlan) -> Result<Mode, ConfigError> {
    check_thread_limit(plan)?;
    Ok(Mode::Burst)
}

fn pool_mode(options: &ModeOptions, plan: &StepPlan) -> Result<Mode, ConfigError> {
    if options.workers == Some(0) {
        return Err(invalid("--workers", 0, "the pool needs at least 1 worker"));
    }
    if let Some(Span(duration)) = options.duration
        && duration.is_zero()
    {
        return Err(invalid(
            "--duration",
            "0s",
            "a timed pool step needs a time above zero, e.g. 10s; leave it out to drain each step's queue once",
        ));
    }
    let mode = Mode::Pool {
        workers: options.workers,
        connect_per_request: options.connect_per_request.unwrap_or(false),
        duration: options.duration.map(|Span(d)| d),
    };
    check_queued_step(&mode, plan)?;
    Ok(mode)
}

fn rate_mode(options: &ModeOptions, plan: &StepPlan) -> Result<Mode, ConfigError> {
    let duration = or_default(options.duration, Duration::from_secs(1));
    let arrival = options.arrival.unwrap_or(Arrival::Uniform);
    if options.max_inflight == Some(0) {
        return Err(invalid(
            "--max-inflight",
            0,
            "use at least 1 worker, or leave it out for a thread per request",
        ));
    }
    let mode = Mode::Rate {
        duration,
        arrival,
        max_inflight: options.max_inflight,
    };
    // Only a rate step can round to nothing: the others send the validated plan's sizes.
    if mode.requests_for(plan.start) == 0 {
        return Err(invalid(
            "--duration",
            humantime::format_duration(duration),
            format!(
                "step 1 would offer no request at {} per second; offer longer",
                plan.start
            ),
        ));
    }
    check_queued_step(&mode, plan)?;
    Ok(mode)
}

/// A held connection sends the query about every `--every` for `--duration`: both above zero,
/// and its threads, one per held connection, within this process's limit.
fn hold_mode(options: &ModeOptions, plan: &StepPlan) -> Result<Mode, ConfigError> {
    let every = or_default(options.every, DEFAULT_EVERY);
    let duration = or_default(options.duration, DEFAULT_HOLD_DURATION);
    for (option, value) in [("--every", every), ("--duration", duration)] {
        if value.is_zero() {
            return Err(invalid(
                option,
                "0s",
                "hold mode needs a time above zero, e.g. 10s",
            ));
        }
    }
    check_thread_limit(plan)?;
    Ok(Mode::Hold { every, duration })
}

/// How often a held connection sends the query unless told (`--every`).
pub(super) const DEFAULT_EVERY: Duration = Duration::from_secs(10);
/// How long a hold step holds its connections unless told (`--duration`).
pub(super) const DEFAULT_HOLD_DURATION: Duration = Duration::from_secs(30);

/// The pool's queue and the rate's schedule hold a whole step in memory.
fn check_queued_step(mode: &Mode, plan: &StepPlan) -> Result<(), ConfigError> {
    let largest = mode.requests_for(plan.largest());
    if largest > MAX_QUEUED_STEP {
        return Err(plan_error(
            plan,
            format!(
                "the last step would hold {largest} requests in memory, above {MAX_QUEUED_STEP}; \
                 use fewer or smaller steps"
            ),
        ));
    }
    Ok(())
}

/// A gate about the step of N requests must name a step the plan has: one that never runs
/// would breach the gate at the end of a run that told nothing.
pub(super) fn check_gate_steps(
    gates: &[Gate],
    plan: &StepPlan,
    mode: &Mode,
) -> Result<(), ConfigError> {
    let sizes: Vec<u32> = (1..=plan.steps)
        .map(|i| mode.requests_for(plan.requests_at(i)))
        .collect();
    for gate in gates {
        if let Some(n) = gate.at_requests
            && !sizes.contains(&n)
        {
            let shown: Vec<String> = sizes.iter().take(5).map(u32::to_string).collect();
            let more = if sizes.len() > 5 { ", ..." } else { "" };
            return Err(invalid(
                "--fail-if",
                gate,
                format!(
                    "the plan has no step of {n} requests; its steps send {}{more}",
                    shown.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A ramp too large: any of its three numbers may be the one to change, so all are named.
fn plan_error(plan: &StepPlan, reason: String) -> ConfigError {
    invalid(
        "--steps, --start, --step",
        format!("{}, {}, {}", plan.steps, plan.start, plan.step),
        reason,
    )
}

/// A burst step runs all its requests' threads at once; a hold step a thread per held
/// connection.
fn check_thread_limit(plan: &StepPlan) -> Result<(), ConfigError> {
    let largest = u64::from(plan.largest());
    let (limit, setting) = crate::sys::limits::thread_limit();
    if largest > limit {
        return Err(plan_error(
            plan,
            format!(
                "the last step would need {largest} threads at once, above this process's \
                 limit of {limit} ({setting}); raise it, or use fewer or smaller steps"
            ),
        ));
    }
    Ok(())
}
