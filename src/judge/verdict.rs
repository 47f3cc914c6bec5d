//! The verdict: which steps the server handled, where it broke and whose limit that was, and
//! the stop rules, each judged on the step just finished, never cumulatively (a cumulative
//! rate hides a step that failed completely).

use std::time::Duration;

use serde::Serialize;

use crate::model::outcome::FailureClass;

use crate::model::rules::{Flag, StopRules};
use crate::model::server_cpu::ServerSource;
use crate::model::step::StepResult;

/// Why a run stopped before its last step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum StopReason {
    FailureRate { rate: f64, limit: f64 },
    P99 { p99_ms: f64, limit_ms: f64 },
    Unresponsive,
}

impl StopReason {
    pub fn describe(&self) -> String {
        match self {
            StopReason::FailureRate { rate, limit } => {
                format!("--stop-failure-rate {limit} (the step's failure rate was {rate:.2})")
            }
            StopReason::P99 { p99_ms, limit_ms } => {
                format!("--stop-p99 {limit_ms}ms (the step's p99 was {p99_ms:.1}ms)")
            }
            StopReason::Unresponsive => {
                "the server stopped responding (every request timed out or was refused)".to_owned()
            }
        }
    }
}

/// A count over the requests actually sent (never the dropped or never-started ones).
fn share_of_sent(count: u32, sent: u32) -> f64 {
    if sent == 0 {
        0.0
    } else {
        f64::from(count) / f64::from(sent)
    }
}

/// The share of the requests sent that failed, for whatever reason.
pub fn failure_rate(step: &StepResult) -> f64 {
    share_of_sent(step.failed.min(step.sent()), step.sent())
}

/// The share of the requests sent that failed at or because of the server: what the stop
/// rule judges, outside an outage the server is not blamed for, as the handled rule. The
/// client's failures (threads that never started, its own limits) and the data's are not the
/// server's, and the run goes on.
fn server_failure_rate(step: &StepResult) -> f64 {
    let judged = super::outage::figures(step);
    share_of_sent(judged.server_failed, judged.sent)
}

/// The rule the step just finished breaks, if any.
pub fn stop_reason(step: &StepResult, rules: &StopRules) -> Option<StopReason> {
    // A server shutting down or starting up answers only to say it will not serve.
    let unanswered = [
        FailureClass::Timeout,
        FailureClass::Refused,
        FailureClass::Shutdown,
        FailureClass::Starting,
    ]
    .map(|class| step.failures(class))
    .iter()
    .sum::<u32>();
    if rules.unresponsive && step.sent() > 0 && unanswered >= step.sent() {
        return Some(StopReason::Unresponsive);
    }
    let judged = super::outage::figures(step);
    let rate = server_failure_rate(step);
    if let Some(limit) = rules.failure_rate
        && judged.server_failed > 0
        && rate >= limit
    {
        return Some(StopReason::FailureRate { rate, limit });
    }
    if let Some(limit) = rules.p99
        && let Some(p99) = judged.p99_ms
        && p99 > limit.as_secs_f64() * 1000.0
    {
        return Some(StopReason::P99 {
            p99_ms: p99,
            limit_ms: limit.as_secs_f64() * 1000.0,
        });
    }
    None
}

/// Whether the server handled a step: its failures at most `tolerate` of the requests sent
/// (none, by default: the original's rule) and, with an SLO, p99 within it; a hold step also
/// kept every connection it held (`crowd_kept`). A step with an outage the server is not
/// blamed for is judged on its requests outside it (`judge::outage`).
pub fn handled(step: &StepResult, judging: &Judging) -> bool {
    crowd_kept(step)
        && handled_figures(
            &super::outage::figures(step),
            judging.slo_p99.map(|slo| slo.as_secs_f64() * 1000.0),
            judging.tolerate,
        )
}

/// A hold step kept its crowd when no held connection dropped and every connection it asked
/// for is up, or failed to open for a reason that is not the server's (pgstress's own limit,
/// a pooler's `max_client_conn`: flagged as theirs, never the server's breaking point).
fn crowd_kept(step: &StepResult) -> bool {
    let Some(hold) = &step.hold else {
        return true;
    };
    let not_the_servers = step.failed.saturating_sub(step.server_failed());
    hold.dropped == 0 && hold.held + not_the_servers >= step.load
}

/// What the handled rule reads of a step: the same from a live step or a logged row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub server_failed: u32,
    pub sent: u32,
    pub p99_ms: Option<f64>,
}

/// The same rule over a step's logged figures (a saved run read back has no histograms).
pub fn handled_figures(step: &Figures, slo_p99_ms: Option<f64>, tolerate: f64) -> bool {
    if share_of_sent(step.server_failed, step.sent) > tolerate {
        return false;
    }
    let p99_ms = step.p99_ms;
    match slo_p99_ms {
        None => true,
        Some(slo) => p99_ms.is_some_and(|p99| p99 <= slo),
    }
}

/// What the verdict is judged against besides the steps themselves.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Judging {
    pub steps_planned: u32,
    pub slo_p99: Option<Duration>,
    /// What a step's load counts, in the mode's words.
    pub unit: &'static str,
    /// The server and pgstress may run on the same CPUs, so the two compete for them.
    pub server_shares_host: bool,
    /// The share of a step's requests sent that the server may fail and still have handled
    /// it (`--tolerate`; 0, the original's rule, by default).
    pub tolerate: f64,
    /// All the host's cores: the denominator of the logged CPU percentages.
    pub host_cores: f64,
    /// The CPUs pgstress may use.
    pub client_cores: f64,
    /// CPU share from which a side counts as saturated.
    pub saturated_cpu_pct: f64,
    /// Steps shorter than this were too short to judge a CPU on (`too-short-to-judge`).
    pub min_judged_wall: Duration,
}

/// Whose CPUs filled in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filled {
    Server,
    Client,
    Both,
    /// Neither: the figures are the busiest step's.
    Neither,
    /// No step lasted long enough to judge a CPU on: the figures are the busiest step's,
    /// and stand for nothing.
    Unjudged,
}

/// Which side's CPUs filled first, with both sides' figures in that step: each side's CPU
/// over its own CPUs, in percent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpusFilled {
    pub side: Filled,
    pub step: u32,
    pub server_pct: Option<f64>,
    pub server_cores: Option<f64>,
    /// What the server's figures were read from: a measurement or the sampled estimate.
    pub server_source: ServerSource,
    /// Its sessions on CPU on average, where they were sampled.
    pub server_sessions_on_cpu: Option<f64>,
    pub client_pct: Option<f64>,
    pub client_cores: f64,
    /// pgstress's threads' wait for a CPU over the CPU time its CPUs offered.
    pub client_wait_share: Option<f64>,
    /// pgstress's threads waited for CPUs that were full (`client-saturated`).
    pub client_starved: bool,
    /// Steps with CPU figures that were too short to judge them (`too-short-to-judge`),
    /// and the shortest step judged, in milliseconds.
    pub too_short: u32,
    pub min_judged_ms: f64,
}

/// The first step the server did not handle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakingPoint {
    pub step: u32,
    /// The step's load, in the verdict's unit.
    pub load: u32,
    pub requests: u32,
    pub failed: u32,
    /// The most frequent failure class and its count.
    pub dominant_failure: Option<(FailureClass, u32)>,
    pub p99_ms: Option<f64>,
}

/// Whose limit the breaking point (or the end of the run) is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "side", rename_all = "kebab-case")]
pub enum Limit {
    Server,
    /// A client flag appeared at or before the breaking point.
    Client {
        flag: Flag,
        step: u32,
        requests: u32,
        /// The agent whose share raised it, when agents sent the load.
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    /// A pooler flag appeared at or before the breaking point, before any client flag.
    Pooler {
        flag: Flag,
        step: u32,
        requests: u32,
        /// Which of several processes filled its core, for `pooler-saturated`.
        #[serde(skip_serializing_if = "Option::is_none")]
        process: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The load of the largest step handled before the breaking point, in `unit`.
    pub capacity: Option<u32>,
    /// What a step's load counts: concurrent requests, queued requests, requests per second.
    pub unit: &'static str,
    pub breaking_point: Option<BreakingPoint>,
    pub limit: Option<Limit>,
    /// The first step flagged client-saturated: from there on results measure pgstress too.
    pub client_saturated_from: Option<u32>,
    /// The first step flagged postmaster-saturated (a watcher's): from there on every new
    /// connection waited for the postmaster's one thread.
    pub postmaster_saturated_from: Option<u32>,
    pub stopped: Option<(u32, StopReason)>,
    pub steps_run: u32,
    /// Steps in which no request reached the server (no thread could start, nothing was sent).
    pub steps_without_load: u32,
    pub steps_planned: u32,
    pub slo_p99_ms: Option<f64>,
    /// The server and pgstress ran on the same CPUs, so the two competed for them.
    pub server_shares_host: bool,
    /// Which side's CPUs filled first; None when no step measured the CPU.
    pub cpus_filled: Option<CpusFilled>,
    /// The steps' outages, and how each step was judged for it.
    pub outages: Vec<super::outage::StepOutage>,
}

/// The first step carrying `flag`.
fn first_flagged(steps: &[StepResult], flag: Flag) -> Option<u32> {
    steps
        .iter()
        .find(|s| s.flags.contains(&flag))
        .map(|s| s.step)
}

impl Verdict {
    pub fn judge(
        steps: &[StepResult],
        judging: &Judging,
        stopped: Option<(u32, StopReason)>,
    ) -> Self {
        let slo_p99 = judging.slo_p99;
        // A step that sent the server nothing says nothing about it, handled or not.
        let breaking_index = steps
            .iter()
            .position(|step| step.sent() > 0 && !handled(step, judging));
        let before_break = &steps[..breaking_index.unwrap_or(steps.len())];
        // A step whose load the client could not send (requests dropped, threads that never
        // started) did not test the server at that load; nor did one a fault of pgstress's
        // covered whole (nothing outside its outage to judge).
        let capacity = before_break
            .iter()
            .filter(|s| !s.flags.iter().any(|f| f.withholds_load()))
            .filter(|s| super::outage::figures(s).sent > 0)
            .map(|s| s.load)
            .max();
        let breaking_point = breaking_index.map(|i| {
            let step = &steps[i];
            BreakingPoint {
                step: step.step,
                load: step.load,
                requests: step.requests,
                failed: step.failed,
                dominant_failure: step.failure_breakdown().first().copied(),
                p99_ms: step.latency_ms(99.0),
            }
        });
        let judged = &steps[..breaking_index.map_or(steps.len(), |i| i + 1)];
        let first_client_flag = judged.iter().find_map(|step| {
            // The most specific cause first: threads that never started or requests never
            // sent say more than a busy CPU, which they often cause.
            step.flags
                .iter()
                .filter(|f| f.is_client_limit())
                .min_by_key(|f| !f.withholds_load())
                .map(|flag| Limit::Client {
                    flag: *flag,
                    step: step.step,
                    requests: step.requests,
                    agent: (step.limiting_agents.iter())
                        .find(|(raised, _)| raised == flag)
                        .map(|(_, agent)| agent.clone()),
                })
        });
        let cpus_filled = super::cpus::filled_first(steps, judging);
        // With no breaking point, the server is still the limit when its CPUs alone filled:
        // the load only made it slower.
        let server_filled = cpus_filled
            .as_ref()
            .is_some_and(|f| f.side == Filled::Server);
        let limit = match (&breaking_point, first_client_flag) {
            (_, Some(client)) => Some(client),
            (Some(_), None) => Some(Limit::Server),
            (None, None) if server_filled => Some(Limit::Server),
            (None, None) => None,
        };
        let limit = super::pooler::with_pooler(limit, judged);
        Verdict {
            capacity,
            unit: judging.unit,
            breaking_point,
            limit,
            client_saturated_from: first_flagged(steps, Flag::ClientSaturated),
            postmaster_saturated_from: first_flagged(steps, Flag::PostmasterSaturated),
            stopped,
            steps_run: steps.len() as u32,
            steps_without_load: steps.iter().filter(|s| s.sent() == 0).count() as u32,
            steps_planned: judging.steps_planned,
            slo_p99_ms: slo_p99.map(|d| d.as_secs_f64() * 1000.0),
            server_shares_host: judging.server_shares_host,
            cpus_filled,
            outages: super::outage::StepOutage::all(steps, breaking_index.map(|i| steps[i].step)),
        }
    }

    /// The verdict in sentences, the first one the answer.
    pub fn sentences(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let capacity = match (self.capacity, &self.breaking_point) {
            (Some(n), _) => format!("capacity: {n} {}", self.unit),
            (None, Some(_)) => "capacity: none (the first step already failed)".to_owned(),
            (None, None) => {
                "capacity: not measured (no step's load reached the server in full)".to_owned()
            }
        };
        match &self.breaking_point {
            Some(bp) => {
                let mut why = format!("{} of {} failed", bp.failed, bp.requests);
                if let Some((class, n)) = &bp.dominant_failure {
                    why.push_str(&format!(", {n} {class}"));
                }
                if bp.failed == 0
                    && let (Some(p99), Some(slo)) = (bp.p99_ms, self.slo_p99_ms)
                {
                    why = format!("p99 {p99:.1}ms over the {slo}ms SLO");
                }
                lines.push(format!(
                    "breaking point: {} {} (step {}) — {why}; {capacity}",
                    bp.load, self.unit, bp.step
                ));
            }
            None if self.steps_run > 0 && self.steps_without_load == self.steps_run => lines.push(
                "no verdict on the server: no request of any step reached it, the client could \
                 not send the load"
                    .to_owned(),
            ),
            None if self.steps_without_load > 0 => lines.push(format!(
                "no breaking point in the steps that reached the server ({} of {} steps run; {} \
                 sent it nothing: the client could not send their load); {capacity}",
                self.steps_run - self.steps_without_load,
                self.steps_run,
                self.steps_without_load
            )),
            None => lines.push(format!(
                "no breaking point: the server handled every step run ({} of {} steps); {capacity}",
                self.steps_run, self.steps_planned
            )),
        }
        lines.extend(self.outages.iter().map(super::outage::StepOutage::sentence));
        lines.extend(self.limit_sentence());
        if let Some(step) = self.client_saturated_from
            && !matches!(
                &self.limit,
                Some(Limit::Client {
                    flag: Flag::ClientSaturated,
                    ..
                })
            )
        {
            lines.push(format!("the client was saturated from step {step}: results from there on measure pgstress as much as the server"));
        }
        lines.extend(self.cpus_filled.as_ref().map(super::cpus::sentence));
        if let Some(step) = self.postmaster_saturated_from {
            lines.push(format!(
                "the postmaster was saturated from step {step} (its one thread never idle, by                  its watcher): new connections queued for it, whatever the backends' CPUs;                  fewer new connections (a pool, or a pooler) lift this limit"
            ));
        }
        if self.server_shares_host {
            lines.push(
                "the server and pgstress shared CPUs and competed for them: at their limit neither \
                 side's numbers stand alone; pin them apart (drop --no-pin) or run pgstress from \
                 another machine for a clean answer"
                    .to_owned(),
            );
        }
        if let Some((step, reason)) = &self.stopped {
            lines.push(format!(
                "stopped after step {step} by {}",
                reason.describe()
            ));
        }
        lines
    }

    /// Whose limit, in a sentence.
    fn limit_sentence(&self) -> Option<String> {
        let broke = self.breaking_point.is_some();
        Some(match self.limit.as_ref()? {
            Limit::Server if broke => {
                "whose limit: the server's (no client flag at or before the breaking point)"
                    .to_owned()
            }
            Limit::Server => format!(
                "whose limit: the server's CPUs{}, which filled while pgstress's did not (no \
                 client flag in the run); no request failed: more load only made the server slower",
                match self.cpus_filled.as_ref().map(|f| f.server_source) {
                    Some(ServerSource::SqlEstimate) => {
                        " (by the sampled estimate: its sessions on CPU reached its cores)"
                    }
                    _ => "",
                }
            ),
            Limit::Client {
                flag,
                step,
                requests,
                agent,
            } if broke => format!(
                "whose limit: possibly the client's — {flag} from step {step} ({requests} \
                 requests{}); the numbers from there on measure pgstress and this machine as much \
                 as the server",
                on_agent(agent)
            ),
            Limit::Client {
                flag,
                step,
                requests,
                agent,
            } => format!(
                "the ramp may have measured the client, not the server — {flag} from step {step} \
                 ({requests} requests{}): the server's capacity may be higher than shown",
                on_agent(agent)
            ),
            Limit::Pooler {
                flag,
                step,
                requests,
                process,
            } => super::pooler::sentence(*flag, (*step, *requests), process.as_deref(), broke),
        })
    }
}

/// ", on agent NAME" where an agent's share raised the flag.
fn on_agent(agent: &Option<String>) -> String {
    agent
        .as_deref()
        .map(|name| format!(", on agent {name}"))
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "limit_tests.rs"]
mod limit_tests;
