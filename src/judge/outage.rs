//! An outage in the verdict. Its line, the same in the terminal and the report: "outage 3.4 s:
//! first failure at 30.01 s, throughput back at 33.43 s; per-client gap p50 2.9 s, p99 3.4 s,
//! max 3.5 s; 1,212 failed: 1,100 refused, 112 shutdown; nothing lost". And what the step is
//! judged on: a fault pgstress caused is never the server's breaking point (the step is judged
//! on its requests before the outage: what follows is the fault's aftermath; a step the fault
//! reached from before its release, on its requests after it), nor is an outage from outside
//! the load came back from (judged on its requests outside the outage).

use std::time::Duration;

use serde::Serialize;

use super::verdict::Figures;
use crate::model::outage::{Apart, Outage};
use crate::model::step::StepResult;

/// What the handled rule and the stop rules read of a step: with a fault pgstress caused, its
/// requests before the outage (after it is the fault's aftermath), or, when the fault began
/// before the step (nothing came before), those after it; with an outage from outside that
/// throughput came back from, its requests outside it; else all of them.
pub fn figures(step: &StepResult) -> Figures {
    let of = |apart: &Apart| Figures {
        server_failed: apart.server_failed,
        sent: apart.sent,
        p99_ms: apart.p99_ms,
    };
    match &step.outage {
        Some(outage) if outage.caused_by.is_some() && outage.fault_began_before => {
            of(&outage.apart)
        }
        Some(outage) if outage.caused_by.is_some() => of(&outage.before),
        Some(outage) if outage.judged_apart() => of(&outage.apart),
        _ => Figures {
            server_failed: step.server_failed(),
            sent: step.sent(),
            p99_ms: step.latency_ms(99.0),
        },
    }
}

/// A step's outage as the verdict states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepOutage {
    pub step: u32,
    /// The outage's line.
    pub line: String,
    /// The fault pgstress caused, as written (`restart@30s`); None: from outside.
    pub caused_by: Option<String>,
    /// Whether the step was judged on its requests outside the outage.
    pub judged_apart: bool,
    /// Whether the step is the run's breaking point all the same.
    pub breaking_point: bool,
    /// The fault began before the step (in the pause before it, or in an earlier step): the
    /// step is judged on its requests after the outage.
    pub fault_began_before: bool,
    /// With a fault pgstress caused: the server's failures after the outage, in its
    /// aftermath, said but not judged.
    pub failed_after: u32,
}

impl StepOutage {
    /// The outages of the steps, the breaking point's step being `breaking_step`.
    pub fn all(steps: &[StepResult], breaking_step: Option<u32>) -> Vec<Self> {
        (steps.iter())
            .filter_map(|step| StepOutage::of(step, breaking_step))
            .collect()
    }

    pub fn of(step: &StepResult, breaking_step: Option<u32>) -> Option<Self> {
        let outage = step.outage.as_ref()?;
        Some(StepOutage {
            step: step.step,
            line: line(outage, step.lost),
            caused_by: outage.caused_by.clone(),
            judged_apart: outage.judged_apart(),
            breaking_point: breaking_step == Some(step.step),
            fault_began_before: outage.fault_began_before,
            failed_after: match outage.caused_by {
                Some(_) if !outage.fault_began_before => {
                    (outage.apart.server_failed).saturating_sub(outage.before.server_failed)
                }
                _ => 0,
            },
        })
    }

    /// The verdict's sentence: the outage, and what it means for the step's judgement.
    pub fn sentence(&self) -> String {
        let step = self.step;
        let after = match self.failed_after {
            0 => String::new(),
            n => format!(" ({n} failed after it, in the fault's aftermath)"),
        };
        let why = match (&self.caused_by, self.breaking_point) {
            (Some(fault), false) if self.fault_began_before => format!(
                "caused by pgstress (--fault {fault}), not the server's breaking point: the fault began before step {step}, which is judged on its requests after the outage"
            ),
            (Some(fault), true) if self.fault_began_before => format!(
                "caused by pgstress (--fault {fault}), which began before step {step}; the step failed after the outage, which makes it the breaking point"
            ),
            (Some(fault), false) => format!(
                "caused by pgstress (--fault {fault}), not the server's breaking point: step {step} is judged on its requests before the outage{after}"
            ),
            (Some(fault), true) => format!(
                "caused by pgstress (--fault {fault}); step {step} failed before the outage, which makes it the breaking point"
            ),
            (None, false) if self.judged_apart => format!(
                "the server stopped answering and throughput came back; not a capacity breaking point: step {step} is judged on its requests outside the outage"
            ),
            (None, true) if self.judged_apart => format!(
                "throughput came back, but step {step} failed outside the outage too, which makes it the breaking point"
            ),
            (None, _) => "the server did not come back within the step".to_owned(),
        };
        format!("step {step}: {}; {why}", self.line)
    }
}

/// The step's outage and whether any of its requests went uncounted.
pub fn line(outage: &Outage, lost: u32) -> String {
    let head = match (outage.duration(), outage.end) {
        (Some(length), Some(end)) => format!(
            "outage {}: first failure at {}, throughput back at {}",
            seconds(length, 1),
            seconds(outage.start, 2),
            seconds(end, 2)
        ),
        _ => format!(
            "outage from {} to the step's end: throughput not back{}",
            seconds(outage.start, 2),
            match outage.first_success {
                Some(first) => format!(" (a first success at {})", seconds(first, 2)),
                None => " (no success after)".to_owned(),
            }
        ),
    };
    let unrecovered = match outage.unrecovered {
        0 => String::new(),
        n => format!(", {n} client{} never back", if n == 1 { "" } else { "s" }),
    };
    let classes: Vec<String> = (outage.failures.iter())
        .map(|(class, n)| format!("{} {class}", thousands(*n)))
        .collect();
    let lost = match lost {
        0 => "nothing lost".to_owned(),
        n => format!("{} lost (uncounted: a pgstress bug)", thousands(n)),
    };
    format!(
        "{head}; per-client gap p50 {}, p99 {}, max {}{unrecovered}; {} failed: {}; {lost}",
        seconds(outage.gap_p50, 1),
        seconds(outage.gap_p99, 1),
        seconds(outage.gap_max, 1),
        thousands(outage.failed()),
        classes.join(", "),
    )
}

/// Seconds, to the millisecond below one (a reconnect's gap is a few of them).
fn seconds(duration: Duration, decimals: usize) -> String {
    let decimals = match duration < Duration::from_secs(1) {
        true => 3,
        false => decimals,
    };
    format!("{:.decimals$} s", duration.as_secs_f64())
}

/// 1212 as "1,212".
pub fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::FailureClass;

    use crate::judge::verdict::{Judging, Verdict};
    use crate::model::outage::Apart;
    use crate::test_support::step_with_failures;

    fn issue_outage() -> Outage {
        let ms = Duration::from_millis;
        Outage {
            start: ms(30_010),
            first_success: Some(ms(33_100)),
            end: Some(ms(33_430)),
            baseline_per_bin: Some(20.0),
            failures: vec![(FailureClass::Refused, 1100), (FailureClass::Shutdown, 112)],
            gap_p50: ms(2_900),
            gap_p99: ms(3_400),
            gap_max: ms(3_500),
            unrecovered: 0,
            ..Outage::default()
        }
    }

    #[test]
    fn an_outage_reads_as_the_issue_shows() {
        let outage = issue_outage();
        assert_eq!(
            line(&outage, 0),
            "outage 3.4 s: first failure at 30.01 s, throughput back at 33.43 s; per-client gap \
             p50 2.9 s, p99 3.4 s, max 3.5 s; 1,212 failed: 1,100 refused, 112 shutdown; nothing lost"
        );
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    /// A step of 10,000 requests, 1,212 of them failed by the server inside an outage, and
    /// some before it and after it.
    fn step_with(outage: Outage, (before, after): (u32, u32)) -> crate::model::step::StepResult {
        let mut step =
            step_with_failures(2, 10_000, 1_212 + before + after, FailureClass::Refused, 10);
        let apart = |sent, server_failed| Apart {
            sent,
            server_failed,
            p99_ms: Some(12.0),
        };
        step.outage = Some(Outage {
            apart: apart(8_000, before + after),
            before: apart(4_000, before),
            ..outage
        });
        step
    }

    fn judge(step: crate::model::step::StepResult) -> Verdict {
        let steps = [crate::test_support::step_result(1, 5_000, 0), step];
        let judging = Judging {
            steps_planned: 2,
            unit: "requests/s",
            ..Judging::default()
        };
        Verdict::judge(&steps, &judging, None)
    }

    #[test]
    fn a_fault_pgstress_caused_is_never_the_breaking_point_and_the_verdict_says_the_outage() {
        let caused = Outage {
            caused_by: Some("restart@30s".to_owned()),
            ..issue_outage()
        };
        let verdict = judge(step_with(caused.clone(), (0, 0)));
        assert_eq!(verdict.breaking_point, None, "{:?}", verdict.sentences());
        assert_eq!(verdict.capacity, Some(10_000));
        let text = verdict.sentences().join("\n");
        assert!(
            text.contains(
                "step 2: outage 3.4 s: first failure at 30.01 s, throughput back at 33.43 s; \
                 per-client gap p50 2.9 s, p99 3.4 s, max 3.5 s; 1,212 failed: 1,100 refused, \
                 112 shutdown; nothing lost; caused by pgstress (--fault restart@30s), not the \
                 server's breaking point"
            ),
            "{text}"
        );
        // Even when throughput never came back: the fault was pgstress's.
        let never_back = Outage {
            end: None,
            ..caused.clone()
        };
        assert_eq!(judge(step_with(never_back, (0, 0))).breaking_point, None);
        // Failures after it are the fault's aftermath, said but not judged...
        let verdict = judge(step_with(caused.clone(), (0, 5)));
        assert_eq!(verdict.breaking_point, None);
        let text = verdict.sentences().join(" ");
        assert!(
            text.contains("(5 failed after it, in the fault's aftermath)"),
            "{text}"
        );
        // ...failures before it, at the step's load before the fault, are the server's.
        let verdict = judge(step_with(caused, (3, 0)));
        assert_eq!(verdict.breaking_point.as_ref().map(|b| b.step), Some(2));
        let text = verdict.sentences().join(" ");
        assert!(
            text.contains("failed before the outage, which makes it the breaking point"),
            "{text}"
        );
    }

    #[test]
    fn a_step_a_fault_reached_from_before_its_release_is_judged_on_its_requests_after_it() {
        let reached = |after: u32, back: bool| {
            let outage = Outage {
                caused_by: Some("freeze@6s:4s".to_owned()),
                fault_began_before: true,
                end: back.then_some(Duration::from_millis(33_430)),
                ..issue_outage()
            };
            let mut step = step_with(outage, (0, after));
            let outage = step.outage.as_mut().unwrap();
            outage.before = Apart::default(); // nothing of the step came before the fault
            if !back {
                outage.apart = Apart::default();
            }
            step
        };
        let verdict = judge(reached(0, true));
        assert_eq!(verdict.breaking_point, None, "{:?}", verdict.sentences());
        assert_eq!(verdict.capacity, Some(10_000));
        let text = verdict.sentences().join("\n");
        assert!(
            text.contains(
                "nothing lost; caused by pgstress (--fault freeze@6s:4s), not the server's \
                 breaking point: the fault began before step 2, which is judged on its requests \
                 after the outage"
            ) && !text.contains("aftermath"),
            "{text}"
        );
        // Its failures after the outage are judged: nothing came before to judge it on.
        let verdict = judge(reached(5, true));
        assert_eq!(verdict.breaking_point.as_ref().map(|b| b.step), Some(2));
        let text = verdict.sentences().join(" ");
        assert!(
            text.contains("which began before step 2; the step failed after the outage"),
            "{text}"
        );
        // Covered whole (never back): not the breaking point, and no capacity shown at its load.
        let verdict = judge(reached(0, false));
        assert_eq!(verdict.breaking_point, None);
        assert_eq!(verdict.capacity, Some(5_000));
    }

    #[test]
    fn an_outage_from_outside_the_load_came_back_from_is_no_capacity_breaking_point() {
        let verdict = judge(step_with(issue_outage(), (0, 0)));
        assert_eq!(verdict.breaking_point, None, "{:?}", verdict.sentences());
        let text = verdict.sentences().join("\n");
        assert!(
            text.contains("step 2: outage 3.4 s")
                && text.contains("throughput came back; not a capacity breaking point"),
            "{text}"
        );
        // Not back within the step: the server stopped responding, and the step broke it.
        let gone = Outage {
            end: None,
            ..issue_outage()
        };
        let verdict = judge(step_with(gone, (0, 0)));
        assert_eq!(verdict.breaking_point.as_ref().map(|b| b.step), Some(2));
        assert!(
            verdict
                .sentences()
                .join(" ")
                .contains("did not come back within the step"),
            "{:?}",
            verdict.sentences()
        );
        // Back, but failures outside it: the breaking point.
        let verdict = judge(step_with(issue_outage(), (0, 1)));
        assert_eq!(verdict.breaking_point.as_ref().map(|b| b.step), Some(2));
    }

    #[test]
    fn the_stop_rules_read_the_step_outside_an_outage_it_is_judged_apart_from() {
        let rules = crate::model::rules::StopRules {
            failure_rate: Some(0.1),
            p99: Some(Duration::from_millis(100)),
            unresponsive: true,
        };
        let mut step = step_with(issue_outage(), (0, 0));
        step.failed = 5_000;
        step.by_class[FailureClass::Refused.index()] = 5_000;
        assert_eq!(crate::judge::verdict::stop_reason(&step, &rules), None);
        step.outage.as_mut().unwrap().end = None;
        assert!(crate::judge::verdict::stop_reason(&step, &rules).is_some());
    }
}
