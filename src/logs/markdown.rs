//! The run's Markdown summary, for a CI job's page: the verdict as a headline, the gates with
//! what was measured, a table of the steps and where the logs are. Appended to GitHub Actions'
//! `GITHUB_STEP_SUMMARY` when it is set; written whole with `--summary-md FILE` for any CI.
//! GitHub renders it as CommonMark with tables.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::ci::{self, RunReport};
use super::{LogError, files};

/// Writes the summary as the whole of `path`.
pub fn write(path: &Path, report: &RunReport<'_>) -> Result<(), LogError> {
    files::replace(path, render(report).as_bytes()).map_err(|cause| LogError::Write {
        path: path.to_owned(),
        cause,
    })
}

/// Appends the summary to `path` (GitHub's step summary, which other steps write too).
pub fn append(path: &Path, report: &RunReport<'_>) -> Result<(), LogError> {
    let error = |cause| LogError::Write {
        path: path.to_owned(),
        cause,
    };
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(error)?;
    file.write_all(render(report).as_bytes()).map_err(error)
}

/// The summary as Markdown.
pub fn render(report: &RunReport<'_>) -> String {
    let (pass, headline) = report.headline();
    let mark = match (pass, &report.ending) {
        (true, _) => "✅",
        (false, ci::Ending::Completed { .. }) => "❌",
        (false, _) => "⚠️",
    };
    let mut md = format!("## pgstress: {mark} {}\n\n", escape(&headline));
    let sentences = report.verdict.sentences();
    if let Some((answer, more)) = sentences.split_first() {
        let _ = writeln!(md, "**{}**\n", escape(answer));
        for sentence in more {
            let _ = writeln!(md, "- {}", escape(sentence));
        }
        if !more.is_empty() {
            md.push('\n');
        }
    }
    gates(report, &mut md);
    steps(report, &mut md);
    let facts = report.facts;
    let _ = write!(
        md,
        "{} mode · target {} · PostgreSQL {} · pgstress {} · run {} · summary {}",
        escape(&facts.plan.mode),
        code(&facts.target),
        escape(&facts.server.version),
        escape(&facts.pgstress_version),
        code(&report.run_id),
        code(&report.summary.display().to_string()),
    );
    if let Some(page) = &report.report {
        let _ = write!(md, " · report {}", code(&page.display().to_string()));
    }
    md.push_str("\n\n");
    md
}

fn gates(report: &RunReport<'_>, md: &mut String) {
    if report.gates.is_empty() {
        return;
    }
    md.push_str("| gate | result | measured |\n| --- | --- | --- |\n");
    for gate in report.gates {
        let result = match gate.breached {
            Some(_) => "❌ breached",
            None => "✅ held",
        };
        let _ = writeln!(
            md,
            "| {} | {result} | {} |",
            code(&gate.gate),
            escape(&gate.measured)
        );
    }
    md.push('\n');
}

fn steps(report: &RunReport<'_>, md: &mut String) {
    let unit = report.verdict.unit;
    let _ = writeln!(
        md,
        "| step | {} | requests | ok | failed | failures | p50 ms | p99 ms | ok/s | flags | handled |",
        escape(unit)
    );
    md.push_str("| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |\n");
    for (step, handled) in report.steps.iter().zip(&report.handled) {
        let verdict = match (step.sent(), handled) {
            (0, _) => "⏭️ nothing sent",
            (_, true) => "✅",
            (_, false) => "❌",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {verdict} |",
            step.step,
            step.load,
            step.requests,
            step.ok,
            step.failed,
            escape(&ci::failures(step)),
            ci::ms(step.latency_ms(50.0)),
            ci::ms(step.latency_ms(99.0)),
            step.throughput(),
            escape(&ci::flags(step)),
        );
    }
    let why = escape(&report.why_not_run());
    for (index, load) in report.not_run() {
        let _ = writeln!(
            md,
            "| {index} | {load} |  |  |  |  |  |  |  |  | ⏭️ {why} |"
        );
    }
    md.push('\n');
}

/// Free text in a table cell or a line: the characters Markdown or a table would read as
/// markup, escaped; line breaks as spaces.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text as a code span, its backticks fenced by a longer run, and a table's `|` escaped (GFM
/// splits cells before it reads code spans).
pub fn code(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let text = text.replace('|', "\\|").replace(['\n', '\r'], " ");
    match longest {
        0 => format!("{fence}{text}{fence}"),
        _ => format!("{fence} {text} {fence}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ci_report, ci_run, run_facts};

    #[test]
    fn the_verdict_gates_and_steps_in_order() {
        let facts = run_facts(3, 100);
        let (steps, verdict, gates) = ci_run();
        let md = render(&ci_report(&facts, &steps, &verdict, &gates));
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "## pgstress: ❌ a --fail-if gate was breached");
        assert!(
            lines[2].starts_with("**breaking point: 200 concurrent requests (step 2)"),
            "{md}"
        );
        assert!(
            md.contains("| `capacity<50` | ✅ held | capacity is 100 |"),
            "{md}"
        );
        assert!(
            md.contains("| 2 | 200 | 200 | 170 | 30 | 30 too_many_clients | 10.0 | 10.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| 3 | 300 |  |  |  |  |  |  |  |  | ⏭️ stopped after step 2: --stop-failure-rate 0.1 |"),
            "{md}"
        );
        assert!(md.contains("target `host=127.0.0.1 port=5432 user=app password=*** dbname=app`"));
        assert!(
            md.ends_with("report `logs/11292026_092253_report.html`\n\n"),
            "{md}"
        );
    }

    #[test]
    fn markup_in_text_stays_text() {
        assert_eq!(escape("a|b *c* <d>\nx"), "a\\|b \\*c\\* \\<d\\> x");
        assert_eq!(code("p99>250ms"), "`p99>250ms`");
        assert_eq!(code("a`b|c"), "`` a`b\\|c ``");
    }
}
