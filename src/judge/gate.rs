//! `--fail-if` gates for CI: a tiny language, `METRIC OP VALUE[@REQUESTS]`.
//!
//! - `capacity<200`: the capacity is below 200 concurrent requests.
//! - `p99>250ms@100`: the step of 100 requests has a p99 above 250 ms (also p50, p90, max).
//! - `failure-rate>0.01`: some step failed more than 1% of its requests (`@N`: that step only).
//! - `failed>0`: some step had a failure.
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
    Latency { percentile: u8 },
    LatencyMax,
    FailureRate,
    Failed,
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
            _ => {
                return Err(fail(
                    "the metric is one of capacity, p50, p90, p99, max, failure-rate, failed",
                ));
            }
        };
        let value = match metric {
            Metric::Latency { .. } | Metric::LatencyMax => humantime::parse_duration(value_text)
                .map(|d| d.as_secs_f64() * 1000.0)
                .map_err(|_| fail("a latency needs a duration such as 250ms"))?,
            _ => value_text
                .parse::<f64>()
                .map_err(|_| fail("the value must be a number"))?,
        };
        if value < 0.0 {
            return Err(fail("the value cannot be negative"));
        }
        if metric == Metric::FailureRate && value > 1.0 {
            return Err(fail("a failure rate is a share between 0 and 1"));
        }
        if metric == Metric::Capacity && at_requests.is_some() {
            return Err(fail("capacity is a property of the whole run: drop the @"));
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

impl Gate {
    /// Why the gate is breached, or None when it holds.
    pub fn breach(&self, verdict: &Verdict, steps: &[StepResult]) -> Option<String> {
        if self.metric == Metric::Capacity {
            let capacity = f64::from(verdict.capacity.unwrap_or(0));
            return self
                .op
                .holds(capacity, self.value)
                .then(|| format!("{self}: capacity is {capacity}"));
        }
        let chosen: Vec<&StepResult> = match self.at_requests {
            Some(n) => steps.iter().filter(|s| s.requests == n).collect(),
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

    fn value_of(&self, step: &StepResult) -> Option<f64> {
        match self.metric {
            Metric::Capacity => None,
            Metric::Latency { percentile } => step.latency_ms(f64::from(percentile)),
            Metric::LatencyMax => step.latency_max_ms(),
            Metric::FailureRate => Some(failure_rate(step)),
            Metric::Failed => Some(f64::from(step.failed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::verdict::Judging;
    use crate::model::outcome::FailureClass;
    use crate::model::plan::CONCURRENT;
    use crate::test_support::{step_result, step_with_failures};

    fn gate(text: &str) -> Gate {
        text.parse().unwrap()
    }

    #[test]
    fn parses_each_metric_and_operator() {
        let g = gate("capacity<200");
        assert_eq!(
            (g.metric, g.op, g.value, g.at_requests),
            (Metric::Capacity, Op::Less, 200.0, None)
        );
        let g = gate(" p99 > 250ms @ 100 ");
        assert_eq!(
            (g.metric, g.op, g.value, g.at_requests),
            (
                Metric::Latency { percentile: 99 },
                Op::Greater,
                250.0,
                Some(100)
            )
        );
        assert_eq!(gate("failure-rate>=0.01").op, Op::GreaterOrEqual);
        assert_eq!(gate("max<=1s").value, 1000.0);
        assert_eq!(gate("failed>0").metric, Metric::Failed);
    }

    #[test]
    fn malformed_gates_say_why() {
        for (text, reason) in [
            ("capacity", "missing <"),
            ("speed>3", "metric is one of"),
            ("p99>fast", "duration"),
            ("capacity<200@100", "drop the @"),
            ("p99>250ms@many", "step size"),
            ("capacity<-1", "negative"),
            ("failure-rate>2", "between 0 and 1"),
            ("failed>lots", "number"),
        ] {
            let err = text.parse::<Gate>().unwrap_err().to_string();
            assert!(err.contains(text) && err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn capacity_gate_compares_the_verdicts_capacity() {
        let steps = vec![step_result(1, 100, 0), step_result(2, 200, 10)];
        let verdict = Verdict::judge(
            &steps,
            &Judging {
                steps_planned: 2,
                slo_p99: None,
                unit: CONCURRENT,
                server_shares_host: false,
                ..Judging::default()
            },
            None,
        );
        assert!(gate("capacity<200").breach(&verdict, &steps).is_some());
        assert!(gate("capacity<100").breach(&verdict, &steps).is_none());
    }

    #[test]
    fn latency_gate_at_a_step_size() {
        let steps = vec![
            step_with_failures(1, 100, 0, FailureClass::Io, 100),
            step_with_failures(2, 200, 0, FailureClass::Io, 400),
        ];
        let verdict = Verdict::judge(
            &steps,
            &Judging {
                steps_planned: 2,
                slo_p99: None,
                unit: CONCURRENT,
                server_shares_host: false,
                ..Judging::default()
            },
            None,
        );
        assert!(gate("p99>250ms@100").breach(&verdict, &steps).is_none());
        assert!(gate("p99>250ms@200").breach(&verdict, &steps).is_some());
        assert!(gate("p99>250ms").breach(&verdict, &steps).is_some());
        let missing = gate("p99>250ms@300").breach(&verdict, &steps).unwrap();
        assert!(missing.contains("no step of 300"), "{missing}");
    }

    #[test]
    fn failure_rate_gate_checks_every_step() {
        let steps = vec![step_result(1, 100, 0), step_result(2, 100, 2)];
        let verdict = Verdict::judge(
            &steps,
            &Judging {
                steps_planned: 2,
                slo_p99: None,
                unit: CONCURRENT,
                server_shares_host: false,
                ..Judging::default()
            },
            None,
        );
        assert!(gate("failure-rate>0.01").breach(&verdict, &steps).is_some());
        assert!(gate("failure-rate>0.05").breach(&verdict, &steps).is_none());
    }
}
