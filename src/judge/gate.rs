//! `--fail-if` gates for CI: a tiny language, `METRIC OP VALUE[@REQUESTS]`.
//!
//! - `capacity<200`: the capacity is below 200 concurrent requests.
//! - `p99>250ms@100`: the step of 100 requests has a p99 above 250 ms (also p50, p90, max).
//! - `failure-rate>0.01`: some step failed more than 1% of its requests (`@N`: that step only).
//! - `failed>0`: some step had a failure.
//!
//! A fault pgstress caused (`--fault`) is never the server's failure, in the gates as in the
//! verdict: `failure-rate` and `failed` count a step it reached on the requests the verdict
//! judges it on, and its outage is the outage gates' to judge:
//! - `outage>5s`: some step's outage lasted over 5 s, or never ended (docs/outages.md).
//! - `gap-p99>4s`: some step's per-client outage gaps have a p99 above 4 s.
//! - `lost>0`: some step has requests of its schedule neither ok, failed, dropped nor unsent.
//!
//! Without `@N`, a per-step metric is checked on every step run. A gate naming a step size the
//! plan does not have is refused with the options; one the run did not reach (it stopped
//! earlier) counts as breached: the run did not show what the gate asked.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::judge::verdict::{Verdict, failure_rate};
use crate::model::step::StepResult;

#[derive(Debug, Error, PartialEq)]
#[error(
    "invalid --fail-if '{text}': {reason}; examples: capacity<200, p99>250ms@100, failure-rate>0.01"
)]
pub struct GateError {
    text: String,
    reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Capacity,
    Latency {
        percentile: u8,
    },
    LatencyMax,
    FailureRate,
    Failed,
    /// From the first failure to throughput back, in milliseconds; never back: infinite.
    Outage,
    /// The per-client outage gaps' p99, in milliseconds.
    GapP99,
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Op {
    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Less => left < right,
            Op::LessOrEqual => left <= right,
            Op::Greater => left > right,
            Op::GreaterOrEqual => left >= right,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    text: String,
    pub metric: Metric,
    pub op: Op,
    /// Milliseconds for latencies, requests for capacity and failed, a share for failure-rate.
    pub value: f64,
    /// The step size the gate looks at; None: every step.
    pub at_requests: Option<u32>,
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

crate::deserialize_from_str!(Gate);

impl FromStr for Gate {
    type Err = GateError;

    fn from_str(text: &str) -> Result<Self, GateError> {
        let fail = |reason: &str| GateError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let (condition, at_requests) = match compact.split_once('@') {
            Some((condition, at)) => {
                let n = at
                    .parse::<u32>()
                    .map_err(|_| fail("after @ give a step size in requests"))?;
                (condition.to_owned(), Some(n))
            }
            None => (compact.clone(), None),
        };
        let op_start = condition
            .find(['<', '>'])
            .ok_or_else(|| fail("missing <, <=, > or >="))?;
        let (metric_text, rest) = condition.split_at(op_start);
        let (op, value_text) = match rest {
            r if r.starts_with("<=") => (Op::LessOrEqual, &r[2..]),
            r if r.starts_with(">=") => (Op::GreaterOrEqual, &r[2..]),
            r if r.starts_with('<') => (Op::Less, &r[1..]),
            r => (Op::Greater, &r[1..]),
        };
        let metric = match metric_text {
            "capacity" => Metric::Capacity,
            "p50" => Metric::Latency { percentile: 50 },
            "p90" => Metric::Latency { percentile: 90 },
            "p99" => Metric::Latency { percentile: 99 },
            "max" => Metric::LatencyMax,
            "failure-rate" => Metric::FailureRate,
            "failed" => Metric::Failed,
            "outage" => Metric::Outage,
            "gap-p99" => Metric::GapP99,
            "lost" => Metric::Lost,
            _ => {
                return Err(fail(
                    "the metric is one of capacity, p50, p90, p99, max, failure-rate, failed, outage, gap-p99, lost",
                ));
            }
        };
        let value = match metric {
            Metric::Latency { .. } | Metric::LatencyMax | Metric::Outage | Metric::GapP99 => {
                humantime::parse_duration(value_text)
                    .map(|d| d.as_secs_f64() * 1000.0)
                    .map_err(|_| fail("a latency or outage needs a duration such as 250ms"))?
            }
            _ => value_text
                .parse::<f64>()
                .map_err(|_| fail("the value must be a number"))?,
        };
        if let Some(reason) = never_true(metric, op, value, at_requests) {
            return Err(fail(reason));
        }
        Ok(Gate {
            text: text.trim().to_owned(),
            metric,
            op,
            value,
            at_requests,
        })
    }
}

/// Why a gate can never be breached (or is not a gate at all); None when it can.
fn never_true(metric: Metric, op: Op, value: f64, at: Option<u32>) -> Option<&'static str> {
    let above = matches!(op, Op::Greater | Op::GreaterOrEqual);
    // The largest figure the metric can take: counts are u32, a rate a share.
    let most = match metric {
        Metric::FailureRate => 1.0,
        Metric::Capacity | Metric::Failed | Metric::Lost => f64::from(u32::MAX),
        Metric::Latency { .. } | Metric::LatencyMax | Metric::Outage | Metric::GapP99 => {
            f64::INFINITY
        }
    };
    if !value.is_finite() {
        Some("the value must be a finite number, not nan or inf")
    } else if value < 0.0 {
        Some("the value cannot be negative")
    } else if op == Op::Less && value == 0.0 {
        Some("no figure is below 0: use <= 0 or > 0")
    } else if metric == Metric::FailureRate && (value > 1.0 || (op == Op::Greater && value == 1.0))
    {
        Some("a failure rate is a share between 0 and 1, never above 1")
    } else if above && (value > most || (op == Op::Greater && value == most)) {
        Some("no count goes that high (at most 4294967295)")
    } else if metric == Metric::Capacity && at.is_some() {
        Some("capacity is a property of the whole run: drop the @")
    } else {
        None
    }
}

impl Gate {
    /// Why the gate is breached, or None when it holds.
    pub fn breach(&self, verdict: &Verdict, steps: &[StepResult]) -> Option<String> {
        self.breach_by(verdict, steps, |step| step.requests)
    }

    /// As `breach`, with `@N` naming the step whose `size_of` is N: a timed pool step is
    /// named by its size (the requests it kept queued), its request count known only after it.
    pub fn breach_by(
        &self,
        verdict: &Verdict,
        steps: &[StepResult],
        size_of: fn(&StepResult) -> u32,
    ) -> Option<String> {
        if self.metric == Metric::Capacity {
            let capacity = f64::from(verdict.capacity.unwrap_or(0));
            return self
                .op
                .holds(capacity, self.value)
                .then(|| format!("{self}: capacity is {capacity}"));
        }
        let chosen: Vec<&StepResult> = match self.at_requests {
            Some(n) => steps.iter().filter(|s| size_of(s) == n).collect(),
            None => steps.iter().collect(),
        };
        if chosen.is_empty() {
            return Some(format!(
                "{self}: the run has no step of {} requests",
                self.at_requests.unwrap_or(0)
            ));
        }
        chosen.into_iter().find_map(|step| {
            let value = self.value_of(step)?;
            self.op.holds(value, self.value).then(|| {
                format!(
                    "{self}: step {} ({} requests) has {value:.3}",
                    step.step, step.requests
                )
            })
        })
    }

    /// What the run measured of the gate's metric, breached or not: the capacity, or the
    /// figure of the step that comes closest to breaching it (the highest, for a gate on `>`).
    pub fn measured(&self, verdict: &Verdict, steps: &[StepResult]) -> String {
        if self.metric == Metric::Capacity {
            return format!("capacity is {}", verdict.capacity.unwrap_or(0));
        }
        let name = self.text.split(['<', '>']).next().unwrap_or("").trim();
        let chosen = steps
            .iter()
            .filter(|s| self.at_requests.is_none_or(|n| s.requests == n));
        let valued = chosen.filter_map(|step| self.value_of(step).map(|value| (value, step)));
        let above = matches!(self.op, Op::Greater | Op::GreaterOrEqual);
        let closest = valued.reduce(|a, b| match (b.0 > a.0) == above && b.0 != a.0 {
            true => b,
            false => a,
        });
        match (closest, self.at_requests) {
            (Some((value, step)), _) => format!(
                "{name} is {value:.3} at step {} ({} requests)",
                step.step, step.requests
            ),
            (None, Some(n)) if !steps.iter().any(|s| s.requests == n) => {
                format!("the run has no step of {n} requests")
            }
            (None, _) => format!("no step measured {name}"),
        }
    }

    fn value_of(&self, step: &StepResult) -> Option<f64> {
        match self.metric {
            Metric::Capacity => None,
            Metric::Latency { percentile } => step.latency_ms(f64::from(percentile)),
            Metric::LatencyMax => step.latency_max_ms(),
            Metric::FailureRate => Some(match judged_failures(step) {
                Some((failed, sent)) => share(failed, sent),
                None => failure_rate(step),
            }),
            Metric::Failed => Some(f64::from(
                judged_failures(step).map_or(step.failed, |j| j.0),
            )),
            // A step without an outage had one of no length.
            Metric::Outage => Some(step.outage.as_ref().map_or(0.0, |outage| {
                outage
                    .duration()
                    .map_or(f64::INFINITY, |d| d.as_secs_f64() * 1000.0)
            })),
            Metric::GapP99 => {
                Some((step.outage.as_ref()).map_or(0.0, |o| o.gap_p99.as_secs_f64() * 1000.0))
            }
            Metric::Lost => Some(f64::from(step.lost)),
        }
    }
}

/// A step a fault pgstress caused reached, as the failure gates count it: its failures less
/// the server's the verdict does not judge (in the fault's outage and aftermath), over the
/// requests it judges. None: no such fault, every failure counts. An outage from outside
/// counts whole, though the verdict may judge it apart: pgstress cannot tell it from one the
/// load caused (a backend killed by the OOM killer), and a CI gate is where that must show.
fn judged_failures(step: &StepResult) -> Option<(u32, u32)> {
    step.outage.as_ref()?.caused_by.as_ref()?;
    let judged = crate::judge::outage::figures(step);
    let unjudged = step.server_failed().saturating_sub(judged.server_failed);
    Some((step.failed.saturating_sub(unjudged), judged.sent))
}

fn share(failed: u32, sent: u32) -> f64 {
    match sent {
        0 => 0.0,
        sent => f64::from(failed.min(sent)) / f64::from(sent),
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
