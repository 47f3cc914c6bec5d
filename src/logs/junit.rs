//! `--junit FILE`: the run as a JUnit XML test report, in the Apache Ant format that Jenkins,
//! GitLab and GitHub's test reporters read (tests/junit.xsd holds its schema): one test suite,
//! a test case per step of the plan (handled; failed with the step's failures and flags; or
//! skipped, never run) and one per `--fail-if` gate (failed when breached), the run's settings
//! as properties, the verdict as the suite's output.

use std::fmt::Write as _;
use std::path::Path;

use super::ci::{self, RunReport};
use super::{LogError, files};

/// The test cases' class names, so a CI groups them: the steps, and the gates.
pub const STEPS_CLASS: &str = "pgstress.steps";
pub const GATES_CLASS: &str = "pgstress.gates";

/// Writes the report whole (beside, then renamed over the name).
pub fn write(path: &Path, report: &RunReport<'_>) -> Result<(), LogError> {
    files::replace(path, render(report).as_bytes()).map_err(|cause| LogError::Write {
        path: path.to_owned(),
        cause,
    })
}

/// The report as XML.
pub fn render(report: &RunReport<'_>) -> String {
    let mut cases = String::new();
    let mut counts = Counts::default();
    steps(report, &mut cases, &mut counts);
    gates(report, &mut cases, &mut counts);
    let started = chrono::DateTime::parse_from_rfc3339(&report.facts.started_at)
        .map(|at| at.naive_local().format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00".to_owned());
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuite name=\"{}\" timestamp=\"{started}\" hostname=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">",
        escape(&format!("pgstress run {}", report.run_id)),
        escape(&report.hostname),
        counts.tests,
        counts.failures,
        counts.skipped,
        report.elapsed.as_secs_f64()
    );
    xml.push_str("  <properties>\n");
    for (name, value) in properties(report) {
        let _ = writeln!(
            xml,
            "    <property name=\"{}\" value=\"{}\"/>",
            escape(&name),
            escape(&value)
        );
    }
    xml.push_str("  </properties>\n");
    xml.push_str(&cases);
    let _ = writeln!(
        xml,
        "  <system-out>{}</system-out>",
        escape_text(&output(report))
    );
    xml.push_str("  <system-err></system-err>\n</testsuite>\n");
    xml
}

#[derive(Default)]
struct Counts {
    tests: usize,
    failures: usize,
    skipped: usize,
}

/// One test case: passed (no outcome), failed or skipped.
fn case(
    out: &mut String,
    counts: &mut Counts,
    (class, name, seconds): (&str, &str, f64),
    outcome: Outcome,
) {
    counts.tests += 1;
    let _ = write!(
        out,
        "  <testcase name=\"{}\" classname=\"{class}\" time=\"{seconds:.3}\"",
        escape(name)
    );
    match outcome {
        Outcome::Passed => out.push_str("/>\n"),
        Outcome::Failed {
            kind,
            message,
            detail,
        } => {
            counts.failures += 1;
            let _ = write!(
                out,
                ">\n    <failure message=\"{}\" type=\"{kind}\">{}</failure>\n  </testcase>\n",
                escape(&message),
                escape_text(&detail)
            );
        }
        Outcome::Skipped(why) => {
            counts.skipped += 1;
            let _ = write!(
                out,
                ">\n    <skipped message=\"{}\"/>\n  </testcase>\n",
                escape(&why)
            );
        }
    }
}

enum Outcome {
    Passed,
    Failed {
        kind: &'static str,
        message: String,
        detail: String,
    },
    Skipped(String),
}

fn steps(report: &RunReport<'_>, out: &mut String, counts: &mut Counts) {
    let unit = report.verdict.unit;
    for (step, handled) in report.steps.iter().zip(&report.handled) {
        let name = ci::step_name(step.step, step.load, unit);
        let outcome = match (handled, step.sent()) {
            (_, 0) => Outcome::Skipped(format!(
                "no request reached the server ({} of {} failed: {})",
                step.failed,
                step.requests,
                ci::failures(step)
            )),
            (true, _) => Outcome::Passed,
            (false, _) => Outcome::Failed {
                kind: "not-handled",
                message: format!(
                    "not handled: {}",
                    ci::not_handled(step, report.verdict.slo_p99_ms)
                ),
                detail: step_detail(step),
            },
        };
        let seconds = step.wall.as_secs_f64();
        case(out, counts, (STEPS_CLASS, &name, seconds), outcome);
    }
    let why = report.why_not_run();
    for (index, load) in report.not_run() {
        let name = ci::step_name(index, load, unit);
        case(
            out,
            counts,
            (STEPS_CLASS, &name, 0.0),
            Outcome::Skipped(why.clone()),
        );
    }
}

/// What a failed step's case holds besides its message: latency, throughput, CPU, and the
/// first message of each failure class.
fn step_detail(step: &crate::model::step::StepResult) -> String {
    let mut detail = format!(
        "{} requests: {} ok, {} failed, {} dropped, {} unsent\nlatency p50 {} ms, p99 {} ms; {:.1} ok/s over {:.3} s\n",
        step.requests,
        step.ok,
        step.failed,
        step.dropped,
        step.unsent,
        ci::ms(step.latency_ms(50.0)),
        ci::ms(step.latency_ms(99.0)),
        step.throughput(),
        step.wall.as_secs_f64()
    );
    for (class, message) in &step.first_messages {
        let _ = writeln!(detail, "{class}: {message}");
    }
    detail
}

fn gates(report: &RunReport<'_>, out: &mut String, counts: &mut Counts) {
    for gate in report.gates {
        let outcome = match &gate.breached {
            None => Outcome::Passed,
            Some(why) => Outcome::Failed {
                kind: "gate-breached",
                message: format!("breached: {why}"),
                detail: format!("{}: {}\n", gate.gate, gate.measured),
            },
        };
        case(out, counts, (GATES_CLASS, &gate.gate, 0.0), outcome);
    }
}

/// The run's settings and facts, flattened (`plan.mode`, `server.max_connections`), and what
/// each gate measured.
fn properties(report: &RunReport<'_>) -> Vec<(String, String)> {
    let mut properties = vec![
        ("run_id".to_owned(), report.run_id.clone()),
        ("summary".to_owned(), report.summary.display().to_string()),
    ];
    if let Some(page) = &report.report {
        properties.push(("report".to_owned(), page.display().to_string()));
    }
    let facts = serde_json::to_value(report.facts).unwrap_or_default();
    flatten("", &facts, &mut properties);
    for gate in report.gates {
        let state = if gate.breached.is_some() {
            "breached"
        } else {
            "held"
        };
        properties.push((
            format!("gate {}", gate.gate),
            format!("{state}: {}", gate.measured),
        ));
    }
    properties
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    let key = |name: &str| match prefix {
        "" => name.to_owned(),
        _ => format!("{prefix}.{name}"),
    };
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                flatten(&key(name), field, out);
            }
        }
        Value::Null => {}
        Value::String(text) => out.push((prefix.to_owned(), text.clone())),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|item| item.to_string()).collect();
            out.push((prefix.to_owned(), items.join(", ")));
        }
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// The suite's output: the verdict and the gates, as the terminal said them.
fn output(report: &RunReport<'_>) -> String {
    let mut text = String::new();
    for sentence in report.verdict.sentences() {
        let _ = writeln!(text, "{sentence}");
    }
    for gate in report.gates {
        let _ = match &gate.breached {
            Some(why) => writeln!(text, "gate breached: {why}"),
            None => writeln!(text, "gate passed: {} ({})", gate.gate, gate.measured),
        };
    }
    text
}

/// Text as XML 1.0 takes it in an attribute: the markup characters and quotes escaped, a
/// line break kept as a character reference (a parser turns a bare one into a space), and
/// the control characters XML cannot hold at all dropped.
pub fn escape(text: &str) -> String {
    escaped(text, true)
}

/// Text as XML 1.0 takes it in an element: the same, with quotes and line breaks as they are.
pub fn escape_text(text: &str) -> String {
    escaped(text, false)
}

fn escaped(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' | '\r' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "junit_tests.rs"]
mod tests;
