//! The verdict: which steps the server handled, where it broke and whose limit that was, and
//! the stop rules, each judged on the step just finished, never cumulatively (a cumulative
//! rate hides a step that failed completely).

use std::time::Duration;

use serde::Serialize;

use crate::model::outcome::FailureClass;

use crate::model::rules::{Flag, StopRules};
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

pub fn failure_rate(step: &StepResult) -> f64 {
    if step.requests == 0 {
        0.0
    } else {
        f64::from(step.failed) / f64::from(step.requests)
    }
}

/// The share of the step's requests that failed at or because of the server: what the stop
/// rule judges. Threads that never started are the client's (`spawn-failed`), and the run goes on.
fn server_failure_rate(step: &StepResult) -> f64 {
    if step.requests == 0 {
        0.0
    } else {
        f64::from(step.server_failed()) / f64::from(step.requests)
    }
}

/// The rule the step just finished breaks, if any.
pub fn stop_reason(step: &StepResult, rules: &StopRules) -> Option<StopReason> {
    let unanswered = step.failures(FailureClass::Timeout) + step.failures(FailureClass::Refused);
    if rules.unresponsive && step.requests > 0 && unanswered == step.requests {
        return Some(StopReason::Unresponsive);
    }
    let rate = server_failure_rate(step);
    if let Some(limit) = rules.failure_rate
        && step.server_failed() > 0
        && rate >= limit
    {
        return Some(StopReason::FailureRate { rate, limit });
    }
    if let Some(limit) = rules.p99
        && let Some(p99) = step.latency_ms(99.0)
        && p99 > limit.as_secs_f64() * 1000.0
    {
        return Some(StopReason::P99 {
            p99_ms: p99,
            limit_ms: limit.as_secs_f64() * 1000.0,
        });
    }
    None
}

/// Whether the server handled a step: no failure and, with an SLO, p99 within it.
pub fn handled(step: &StepResult, slo_p99: Option<Duration>) -> bool {
    handled_figures(
        step.server_failed(),
        step.latency_ms(99.0),
        slo_p99.map(|slo| slo.as_secs_f64() * 1000.0),
    )
}

/// The same rule over a step's logged figures (a saved run read back has no histograms).
pub fn handled_figures(server_failed: u32, p99_ms: Option<f64>, slo_p99_ms: Option<f64>) -> bool {
    if server_failed > 0 {
        return false;
    }
    match slo_p99_ms {
        None => true,
        Some(slo) => p99_ms.is_some_and(|p99| p99 <= slo),
    }
}

/// What the verdict is judged against besides the steps themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judging {
    pub steps_planned: u32,
    pub slo_p99: Option<Duration>,
    /// What a step's load counts, in the mode's words.
    pub unit: &'static str,
    /// The server runs on the client's machine, so the two compete for its cores.
    pub server_shares_host: bool,
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
    pub dominant_failure: Option<(String, u32)>,
    pub p99_ms: Option<f64>,
}

/// Whose limit the breaking point (or the end of the run) is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "side", rename_all = "kebab-case")]
pub enum Limit {
    Server,
    /// A client flag appeared at or before the breaking point.
    Client {
        flag: String,
        step: u32,
        requests: u32,
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
    pub stopped: Option<(u32, StopReason)>,
    pub steps_run: u32,
    pub steps_planned: u32,
    pub slo_p99_ms: Option<f64>,
    /// The server runs on the client's machine, so the two compete for its cores.
    pub server_shares_host: bool,
}

impl Verdict {
    pub fn judge(
        steps: &[StepResult],
        judging: &Judging,
        stopped: Option<(u32, StopReason)>,
    ) -> Self {
        let slo_p99 = judging.slo_p99;
        let breaking_index = steps.iter().position(|step| !handled(step, slo_p99));
        let before_break = &steps[..breaking_index.unwrap_or(steps.len())];
        // A step whose load the client could not send (requests dropped, threads that never
        // started) did not test the server at that load.
        let capacity = before_break
            .iter()
            .filter(|s| !s.flags.iter().any(|f| f.withholds_load()))
            .map(|s| s.load)
            .max();
        let breaking_point = breaking_index.map(|i| {
            let step = &steps[i];
            BreakingPoint {
                step: step.step,
                load: step.load,
                requests: step.requests,
                failed: step.failed,
                dominant_failure: step
                    .failure_breakdown()
                    .first()
                    .map(|(class, n)| (class.name().to_owned(), *n)),
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
                    flag: flag.name().to_owned(),
                    step: step.step,
                    requests: step.requests,
                })
        });
        let limit = match (&breaking_point, first_client_flag) {
            (_, Some(client)) => Some(client),
            (Some(_), None) => Some(Limit::Server),
            (None, None) => None,
        };
        Verdict {
            capacity,
            unit: judging.unit,
            breaking_point,
            limit,
            client_saturated_from: steps
                .iter()
                .find(|s| s.flags.contains(&Flag::ClientSaturated))
                .map(|s| s.step),
            stopped,
            steps_run: steps.len() as u32,
            steps_planned: judging.steps_planned,
            slo_p99_ms: slo_p99.map(|d| d.as_secs_f64() * 1000.0),
            server_shares_host: judging.server_shares_host,
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
            None => lines.push(format!(
                "no breaking point: the server handled every step run ({} of {} steps); {capacity}",
                self.steps_run, self.steps_planned
            )),
        }
        match &self.limit {
            Some(Limit::Server) => lines.push("whose limit: the server's (no client flag at or before the breaking point)".to_owned()),
            Some(Limit::Client { flag, step, requests }) if self.breaking_point.is_some() => lines.push(format!(
                "whose limit: possibly the client's — {flag} from step {step} ({requests} requests); \
                 the numbers from there on measure pgstress and this machine as much as the server"
            )),
            Some(Limit::Client { flag, step, requests }) => lines.push(format!(
                "the ramp may have measured the client, not the server — {flag} from step {step} \
                 ({requests} requests): the server's capacity may be higher than shown"
            )),
            None => {}
        }
        if let Some(step) = self.client_saturated_from
            && !matches!(&self.limit, Some(Limit::Client { flag, .. }) if flag == Flag::ClientSaturated.name())
        {
            lines.push(format!("the client was saturated from step {step}: results from there on measure pgstress as much as the server"));
        }
        if self.server_shares_host
            && self
                .limit
                .as_ref()
                .is_some_and(|l| matches!(l, Limit::Client { .. }))
        {
            lines.push(
                "the server runs on this machine and shares its cores with pgstress: at the host's CPU \
                 limit neither side's numbers stand alone; run pgstress from another machine for a clean answer"
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::plan::CONCURRENT;

    fn judging(steps_planned: u32, slo_p99: Option<Duration>) -> Judging {
        Judging {
            steps_planned,
            slo_p99,
            unit: CONCURRENT,
            server_shares_host: false,
        }
    }
    use crate::test_support::{step_result, step_with_failures};

    #[test]
    fn breaking_point_is_the_first_step_with_failures() {
        let steps = vec![
            step_result(1, 50, 0),
            step_result(2, 100, 0),
            step_result(3, 150, 41),
        ];
        let verdict = Verdict::judge(&steps, &judging(3, None), None);
        assert_eq!(verdict.capacity, Some(100));
        let bp = verdict.breaking_point.as_ref().unwrap();
        assert_eq!((bp.step, bp.requests, bp.failed), (3, 150, 41));
        assert_eq!(bp.dominant_failure, Some(("too_many_clients".into(), 41)));
        assert_eq!(verdict.limit, Some(Limit::Server));
        let first = &verdict.sentences()[0];
        assert!(first.starts_with("breaking point: 150 concurrent requests (step 3) — 41 of 150 failed, 41 too_many_clients"), "{first}");
    }

    #[test]
    fn capacity_ignores_handled_steps_after_the_break() {
        let steps = vec![
            step_result(1, 50, 0),
            step_result(2, 100, 3),
            step_result(3, 150, 0),
        ];
        assert_eq!(
            Verdict::judge(&steps, &judging(3, None), None).capacity,
            Some(50)
        );
    }

    #[test]
    fn threads_that_never_started_neither_break_the_server_nor_stop_the_run() {
        let mut steps = vec![
            step_result(1, 10, 0),
            step_with_failures(2, 20, 20, FailureClass::Spawn, 0),
        ];
        steps[1].flags.push(Flag::SpawnFailed);
        let verdict = Verdict::judge(&steps, &judging(2, None), None);
        assert!(verdict.breaking_point.is_none());
        assert_eq!(
            verdict.capacity,
            Some(10),
            "step 2 never reached the server"
        );
        let defaults = StopRules {
            failure_rate: Some(0.5),
            p99: None,
            unresponsive: true,
        };
        assert_eq!(stop_reason(&steps[1], &defaults), None);
    }

    #[test]
    fn a_rate_the_client_could_not_send_is_not_capacity() {
        let mut steps = vec![
            step_result(1, 200, 0),
            step_result(2, 400, 0),
            step_result(3, 600, 0),
        ];
        steps[1].flags.push(Flag::RateNotMet);
        steps[2].flags.push(Flag::RateNotMet);
        let verdict = Verdict::judge(&steps, &judging(3, None), None);
        assert!(verdict.breaking_point.is_none());
        assert_eq!(verdict.capacity, Some(200));
    }

    #[test]
    fn slo_breach_without_failures_is_a_breaking_point() {
        let steps = vec![
            step_with_failures(1, 10, 0, FailureClass::Io, 20),
            step_with_failures(2, 20, 0, FailureClass::Io, 400),
        ];
        let verdict = Verdict::judge(&steps, &judging(2, Some(Duration::from_millis(250))), None);
        assert_eq!(verdict.breaking_point.unwrap().step, 2);
        assert_eq!(verdict.capacity, Some(10));
        assert!(
            Verdict::judge(&steps, &judging(2, None), None)
                .breaking_point
                .is_none()
        );
    }

    #[test]
    fn client_flag_before_the_break_names_the_client() {
        let mut steps = vec![
            step_result(1, 50, 0),
            step_result(2, 100, 0),
            step_result(3, 150, 9),
        ];
        steps[1].flags = vec![Flag::ClientSaturated];
        let verdict = Verdict::judge(&steps, &judging(3, None), None);
        assert_eq!(
            verdict.limit,
            Some(Limit::Client {
                flag: "client-saturated".into(),
                step: 2,
                requests: 100
            })
        );
        assert_eq!(verdict.client_saturated_from, Some(2));
    }

    #[test]
    fn the_verdict_names_load_never_sent_before_a_busy_cpu() {
        let mut steps = vec![step_result(1, 50, 0), step_result(2, 100, 0)];
        steps[0].flags = vec![Flag::ClientSaturated, Flag::SpawnFailed];
        let verdict = Verdict::judge(&steps, &judging(2, None), None);
        assert!(
            matches!(&verdict.limit, Some(Limit::Client { flag, step: 1, .. }) if flag == "spawn-failed"),
            "{:?}",
            verdict.limit
        );
    }

    #[test]
    fn client_flag_after_the_break_leaves_it_the_servers() {
        let mut steps = vec![
            step_result(1, 50, 0),
            step_result(2, 100, 5),
            step_result(3, 150, 9),
        ];
        steps[2].flags = vec![Flag::LaunchSpread];
        assert_eq!(
            Verdict::judge(&steps, &judging(3, None), None).limit,
            Some(Limit::Server)
        );
    }

    #[test]
    fn no_failure_means_no_breaking_point() {
        let steps = vec![step_result(1, 50, 0), step_result(2, 100, 0)];
        let verdict = Verdict::judge(&steps, &judging(15, None), None);
        assert_eq!(
            (verdict.capacity, verdict.breaking_point.clone()),
            (Some(100), None)
        );
        assert!(verdict.sentences()[0].starts_with("no breaking point"));
    }

    #[test]
    fn stop_rules_judge_the_step_alone() {
        let rules = StopRules {
            failure_rate: Some(0.5),
            p99: None,
            unresponsive: true,
        };
        assert_eq!(stop_reason(&step_result(3, 100, 49), &rules), None);
        assert_eq!(
            stop_reason(&step_result(3, 100, 50), &rules),
            Some(StopReason::FailureRate {
                rate: 0.5,
                limit: 0.5
            })
        );
        assert_eq!(
            stop_reason(&step_result(3, 100, 100), &StopRules::none()),
            None
        );
        let stop_at_any_failure = StopRules {
            failure_rate: Some(0.0),
            ..rules
        };
        assert_eq!(
            stop_reason(&step_result(3, 100, 0), &stop_at_any_failure),
            None,
            "a clean step breaks no failure-rate rule, not even 0"
        );
        assert!(stop_reason(&step_result(3, 100, 1), &stop_at_any_failure).is_some());
    }

    #[test]
    fn every_request_timed_out_or_refused_means_unresponsive() {
        let rules = StopRules {
            failure_rate: None,
            p99: None,
            unresponsive: true,
        };
        let step = step_with_failures(4, 20, 20, FailureClass::Timeout, 10);
        assert_eq!(stop_reason(&step, &rules), Some(StopReason::Unresponsive));
        let step = step_with_failures(4, 20, 20, FailureClass::TooManyClients, 10);
        assert_eq!(stop_reason(&step, &rules), None);
    }

    #[test]
    fn p99_rule_stops_a_slow_step() {
        let rules = StopRules {
            failure_rate: None,
            p99: Some(Duration::from_millis(100)),
            unresponsive: false,
        };
        let slow = step_with_failures(2, 10, 0, FailureClass::Io, 300);
        assert!(matches!(
            stop_reason(&slow, &rules),
            Some(StopReason::P99 { .. })
        ));
        let fast = step_with_failures(2, 10, 0, FailureClass::Io, 30);
        assert_eq!(stop_reason(&fast, &rules), None);
    }
}
