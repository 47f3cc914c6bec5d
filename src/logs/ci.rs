//! A finished run as the reports for CI tell it (`junit`, `markdown`): the steps with whether
//! the server handled each, the gates with what was measured, how the run ended, and the
//! words both reports use for a step.

use std::path::PathBuf;
use std::time::Duration;

use crate::judge::verdict::Verdict;
use crate::model::facts::RunFacts;
use crate::model::step::StepResult;

/// A `--fail-if` gate as judged at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct GateOutcome {
    pub gate: String,
    /// Why it was breached; None: it held.
    pub breached: Option<String>,
    /// What the run measured of it, either way.
    pub measured: String,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Every step of the plan ran, or a stop rule ended the ramp (why, when it did).
    Completed { stopped: Option<String> },
    /// Ctrl-C or a signal after this many steps.
    Interrupted,
    /// An agent was lost during the last step (why).
    AgentLost(String),
    /// A log could not be written (why): the ramp ended there.
    LogsFailed(String),
}

/// Everything the reports say of a run.
pub struct RunReport<'a> {
    pub facts: &'a RunFacts,
    pub run_id: String,
    pub steps: &'a [StepResult],
    /// Whether the server handled each step, in the order of `steps`.
    pub handled: Vec<bool>,
    pub verdict: &'a Verdict,
    pub gates: &'a [GateOutcome],
    pub ending: Ending,
    /// From the run's start to its end.
    pub elapsed: Duration,
    pub hostname: String,
    /// The run's JSON summary, and its HTML report when one is drawn.
    pub summary: PathBuf,
    pub report: Option<PathBuf>,
}

impl RunReport<'_> {
    /// The steps of the plan that never ran, with their loads.
    pub fn not_run(&self) -> Vec<(u32, u32)> {
        let plan = &self.facts.plan;
        let run = self.steps.len() as u32;
        (run + 1..=plan.steps)
            .map(|index| (index, plan.start + (index - 1) * plan.step))
            .collect()
    }

    /// Why the steps after the last one run never ran.
    pub fn why_not_run(&self) -> String {
        let after = self.steps.len();
        match &self.ending {
            Ending::Completed { stopped: Some(why) } => {
                format!("stopped after step {after}: {why}")
            }
            Ending::Completed { stopped: None } => "not run".to_owned(),
            Ending::Interrupted => format!("interrupted after step {after}"),
            Ending::AgentLost(why) => format!("the run stopped after step {after}: {why}"),
            Ending::LogsFailed(why) => format!("the logs failed after step {after}: {why}"),
        }
    }

    pub fn breached(&self) -> usize {
        self.gates.iter().filter(|g| g.breached.is_some()).count()
    }

    /// The run in a few words, and whether it is a pass: what a CI job's headline says.
    pub fn headline(&self) -> (bool, String) {
        let steps = format!("{} of {} steps", self.steps.len(), self.facts.plan.steps);
        match &self.ending {
            Ending::Interrupted => (false, format!("interrupted after {steps}")),
            Ending::AgentLost(_) => (false, format!("an agent was lost, after {steps}")),
            Ending::LogsFailed(_) => (false, format!("the logs failed, after {steps}")),
            Ending::Completed { .. } => match self.breached() {
                0 => (true, format!("completed, {steps}")),
                1 => (false, "a --fail-if gate was breached".to_owned()),
                n => (false, format!("{n} --fail-if gates were breached")),
            },
        }
    }
}

/// A step as the reports name it: `step 3: 150 concurrent requests`.
pub fn step_name(index: u32, load: u32, unit: &str) -> String {
    format!("step {index}: {load} {unit}")
}

/// The step's failures by class, most frequent first: `10 too_many_clients, 2 timeout`.
pub fn failures(step: &StepResult) -> String {
    let classes: Vec<String> = step
        .failure_breakdown()
        .iter()
        .map(|(class, n)| format!("{n} {class}"))
        .collect();
    classes.join(", ")
}

/// The step's flags: `over-max-connections, server-saturated`.
pub fn flags(step: &StepResult) -> String {
    let names: Vec<&str> = step.flags.iter().map(|f| f.name()).collect();
    names.join(", ")
}

/// Why the server did not handle a step: its failures by class and its flags, or its p99
/// over the objective.
pub fn not_handled(step: &StepResult, slo_p99_ms: Option<f64>) -> String {
    let mut why = format!("{} of {} failed", step.failed, step.requests);
    let failures = failures(step);
    if !failures.is_empty() {
        why.push_str(&format!(" ({failures})"));
    }
    if let (Some(p99), Some(slo)) = (step.latency_ms(99.0), slo_p99_ms)
        && p99 > slo
    {
        why.push_str(&format!("; p99 {p99:.1}ms over the {slo}ms SLO"));
    }
    let flags = flags(step);
    if !flags.is_empty() {
        why.push_str(&format!("; flags: {flags}"));
    }
    why
}

/// A latency in milliseconds with one decimal, or `-` when nothing was measured.
pub fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
}
