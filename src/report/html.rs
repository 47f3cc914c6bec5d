//! `<ts>_report.html`: one self-contained page (CSS and SVG charts inline, nothing fetched),
//! written as well-formed XML so that any XML parser, not only a browser, can read it back.
//! Everything that comes from the run (the query above all) is escaped.

use std::fmt::Write;

use super::charts::ChartKind;
use super::load::SavedRun;
use super::series;
use crate::logs::StepRow;
use crate::model::outcome::FailureClass;
use crate::model::server_cpu::ServerSource;
use crate::output::format::{self, cpu_mean_peak, one_decimal};

const STYLE: &str = "
body { font-family: 'DejaVu Sans', Verdana, sans-serif; margin: 24px auto; max-width: 1240px;
       padding: 0 16px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
p.verdict { font-size: 1.25em; font-weight: bold; padding: 12px 16px; background: #eef4fb;
            border-left: 6px solid #1f77b4; }
p.warning { padding: 8px 16px; background: #fff4e0; border-left: 6px solid #ff7f0e; }
table { border-collapse: collapse; font-size: 0.78em; }
th, td { border: 1px solid #ddd; padding: 2px 5px; text-align: right; }
th { background: #f2f2f2; }
table.facts th, table.facts td { text-align: left; }
td.text { text-align: left; }
tr.flagged { background: #fff8d6; }
tr.breaking { background: #fde2e2; }
tr.breaking td:first-child { border-left: 4px solid #000; }
td.failed { color: #b00; font-weight: bold; }
span.flag { display: block; white-space: nowrap; background: #ffd54f; border-radius: 3px;
            padding: 0 4px; margin: 1px; }
code { white-space: pre-wrap; word-break: break-all; }
figure { margin: 16px 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
footer { margin-top: 2em; color: #777; font-size: 0.8em; }
";

/// Text and attribute values from the run, made safe for HTML and XML alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page. `charts` are the SVG documents in `ChartKind::ALL` order.
/// The page; `outages` is the outage timeline's section, drawn before the charts (or empty).
pub fn page(run: &SavedRun, charts: &[(ChartKind, String)], outages: &str) -> String {
    let mut html = String::new();
    let title = format!("pgstress report: run of {}", run.facts.started_at);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\" xmlns=\"http://www.w3.org/1999/xhtml\">\n<head>\n\
         <meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    verdict(&mut html, run);
    plan(&mut html, run);
    steps(&mut html, run);
    html.push_str(outages);
    html.push_str("<h2>Charts</h2>\n");
    for (kind, svg) in charts {
        let _ = writeln!(
            html,
            "<figure id=\"chart-{}\">\n{}\n</figure>",
            kind.name(),
            svg.trim()
        );
    }
    machine(&mut html, run);
    let _ = write!(
        html,
        "<footer>Drawn by pgstress {} from the run's saved {}; \
         <code>pgstress report</code> redraws it from the logs.</footer>\n</body>\n</html>\n",
        escape(&run.facts.pgstress_version),
        if run.steps_log_only() {
            "steps log"
        } else {
            "summary"
        }
    );
    html
}

fn verdict(html: &mut String, run: &SavedRun) {
    let first = run
        .verdict_text
        .first()
        .map_or("no verdict: no step finished", String::as_str);
    let _ = writeln!(html, "<p class=\"verdict\">{}</p>", escape(first));
    if run.verdict_text.len() > 1 {
        html.push_str("<ul>\n");
        for sentence in &run.verdict_text[1..] {
            let _ = writeln!(html, "<li>{}</li>", escape(sentence));
        }
        html.push_str("</ul>\n");
    }
    if run.interrupted {
        html.push_str("<p class=\"warning\">The run was interrupted (Ctrl-C): only the steps below ran.</p>\n");
    } else if !run.complete {
        html.push_str("<p class=\"warning\">The run did not finish: this summary was saved after its last finished step.</p>\n");
    }
    for gate in &run.gates {
        let text = match &gate.breached {
            Some(why) => format!("gate breached: {why}"),
            None => format!("gate passed: {}", gate.gate),
        };
        let _ = writeln!(html, "<p>{}</p>", escape(&text));
    }
}

/// A two-column table of (label, value) rows; values are escaped here.
fn facts_table(html: &mut String, rows: &[(&str, String)]) {
    html.push_str("<table class=\"facts\">\n");
    for (label, value) in rows {
        let _ = writeln!(
            html,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(label),
            escape(value)
        );
    }
    html.push_str("</table>\n");
}

fn plan(html: &mut String, run: &SavedRun) {
    let plan = &run.facts.plan;
    html.push_str("<h2>Plan and target</h2>\n");
    if run.steps_log_only() {
        html.push_str(
            "<p>Drawn from the run's steps log alone: its plan, target, server and verdict were \
             recorded in its <code>_summary.json</code>, which was not beside it. The breaking \
             point and capacity above are read again from the logged steps.</p>\n",
        );
        return;
    }
    let target_kind = if run.facts.throwaway {
        " (throwaway server)"
    } else {
        ""
    };
    let mut rows = vec![
        ("started", run.facts.started_at.clone()),
        (
            "ramp",
            format!(
                "{} mode, {} steps of {} to {} {} (+{} per step), {}",
                plan.mode,
                plan.steps,
                plan.start,
                plan.largest_step,
                plan.unit_name(),
                plan.step,
                plan.requests_in_all()
            ),
        ),
        ("target", format!("{}{target_kind}", run.facts.target)),
        ("query", plan.query.clone()),
        (
            "data",
            plan.data
                .clone()
                .unwrap_or_else(|| "none (the query takes no $1)".to_owned()),
        ),
        (
            "request deadline",
            format!("{}ms (connect + query)", plan.timeout_ms),
        ),
        ("CPU sampled every", format!("{}ms", plan.sample_every_ms)),
        (
            "stop after a step with",
            format::stop_rules(plan).unwrap_or_else(|| "nothing (--no-stop)".to_owned()),
        ),
        ("saturated from", saturated_from(run)),
    ];
    if let Some(slo) = plan.slo_p99_ms {
        rows.push(("latency objective", format!("p99 <= {slo}ms")));
    }
    facts_table(html, &rows);
}

/// The saturation rule: the mean over the step, of each side's own CPUs; and the sampled
/// estimate's, where a step's server was seen over SQL alone.
fn saturated_from(run: &SavedRun) -> String {
    let mut rule = format!(
        "{}% CPU mean over the step, of each side's own CPUs",
        run.facts.plan.saturated_cpu_pct
    );
    if run
        .steps
        .iter()
        .any(|row| row.server_source == ServerSource::SqlEstimate)
    {
        rule.push_str(
            "; the server seen over SQL alone (sql-estimate): its sessions on CPU reaching its \
             cores, on average over the step",
        );
    }
    rule
}

fn steps(html: &mut String, run: &SavedRun) {
    html.push_str("<h2>Steps</h2>\n<table class=\"steps\">\n<thead><tr>");
    // Only pool and rate requests wait (in the queue, behind the schedule): no empty column
    // for a burst run.
    let waits = run.steps.iter().any(|row| row.queue_wait_p99_ms.is_some());
    for head in [
        "step",
        "requests",
        "ok",
        "failed",
        "failures",
        "wall s",
        "req/s",
        "spread ms",
        "wait p99 ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "client host CPU",
        "pgstress CPU",
        "server CPU",
        "server side",
        "flags",
    ] {
        if head == "wait p99 ms" && !waits {
            continue;
        }
        let _ = write!(html, "<th>{head}</th>");
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    let breaking = run.verdict.breaking_point.map(|bp| bp.step);
    for row in &run.steps {
        step_row(html, row, breaking == Some(row.step), waits);
    }
    let wait_note = if waits {
        "Wait: a burst thread's late start after the release, time in the pool's queue, or \
         time behind the rate's schedule; latency includes it. "
    } else {
        ""
    };
    let _ = write!(
        html,
        "</tbody>\n</table>\n<p>CPU is mean%/peak% during the step, each side over its own CPUs as \
         the flags judge it: the client's host over all its cores, pgstress over the CPUs it may \
         use, the server over its own (marked ~ where it is the sampled estimate: its sessions \
         on CPU over its cores, which passes 100% when sessions wait for a CPU). Server side: \
         where the server's figures came from (local, watcher, sql-estimate, none). \
         {wait_note}Highlighted: flagged steps (yellow), the breaking point (red).</p>\n",
    );
    server_view(html, run);
}

fn step_row(html: &mut String, row: &StepRow, breaking: bool, waits: bool) {
    let class = match (breaking, row.flags.is_empty()) {
        (true, _) => " class=\"breaking\"",
        (false, false) => " class=\"flagged\"",
        (false, true) => "",
    };
    // Dropped requests were never sent: listed with the failures so that the counts add up.
    let failures: Vec<String> = FailureClass::ALL
        .iter()
        .filter_map(|c| {
            let n = series::failures(row, *c);
            (n > 0).then(|| format!("{} {n}", c.name()))
        })
        .chain((row.dropped > 0).then(|| format!("dropped (not sent) {}", row.dropped)))
        .collect();
    let failed_class = if row.failed > 0 {
        " class=\"failed\""
    } else {
        ""
    };
    let flags: String = row
        .flags
        .split(';')
        .filter(|f| !f.is_empty())
        .map(|f| format!("<span class=\"flag\">{}</span>", escape(f)))
        .collect();
    let _ = writeln!(
        html,
        "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td{failed_class}>{}</td><td class=\"text\">{}</td>\
         <td>{:.3}</td><td>{:.1}</td><td>{:.1}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{flags}</td></tr>",
        row.step,
        row.requests,
        row.ok,
        row.failed,
        escape(&failures.join(", ")),
        row.wall_s,
        row.throughput_rps,
        row.launch_spread_ms,
        if waits {
            format!("<td>{}</td>", one_decimal(row.queue_wait_p99_ms))
        } else {
            String::new()
        },
        one_decimal(row.latency_p50_ms),
        one_decimal(row.latency_p90_ms),
        one_decimal(row.latency_p99_ms),
        one_decimal(row.latency_max_ms),
        cpu_mean_peak(row.host_cpu_mean, row.host_cpu_peak),
        cpu_mean_peak(row.process_cpu_own_mean, row.process_cpu_own_peak),
        server_cpu(row),
        row.server_source,
    );
}

/// The server's CPU over its own CPUs, `~` for the sampled estimate.
fn server_cpu(row: &StepRow) -> String {
    let text = cpu_mean_peak(row.server_cpu_own_mean, row.server_cpu_own_peak);
    match (row.server_source, row.server_cpu_own_mean) {
        (ServerSource::SqlEstimate, Some(_)) => format!("~{text}"),
        _ => text,
    }
}

/// What the server said of each step itself, over SQL: its active sessions by wait class
/// (`pg_stat_activity`) and its own counters (`pg_stat_database`), beside pgstress's count.
fn server_view(html: &mut String, run: &SavedRun) {
    let seen = |row: &StepRow| row.server_aas_samples.is_some() || row.server_xact_commit.is_some();
    if !run.steps.iter().any(seen) {
        return;
    }
    html.push_str(
        "<h2>The server's own view</h2>\n<p>Every client's active sessions, sampled from \
         <code>pg_stat_activity</code> (the monitor left out): their average over the step \
         (AAS), the most at one sample, by wait class (CPU: active with no wait event), and the \
         busiest events; and the database's counters from <code>pg_stat_database</code> over \
         the step, as the server flushed them (docs/logs.md), beside pgstress's own count of \
         successful requests.</p>\n<table class=\"server\">\n<thead><tr>",
    );
    for head in [
        "step",
        "source",
        "samples",
        "AAS",
        "peak",
        "by class",
        "busiest events",
        "ok",
        "commits",
        "rollbacks",
        "sessions",
        "abandoned",
        "fatal",
        "deadlocks",
        "temp bytes",
    ] {
        let _ = write!(html, "<th>{head}</th>");
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    let number = |n: Option<i64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    for row in run.steps.iter().filter(|row| seen(row)) {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            row.step,
            row.server_source,
            row.server_aas_samples
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            row.server_aas_mean
                .map_or_else(|| "-".to_owned(), |n| format!("{n:.2}")),
            row.server_aas_peak
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            escape(&series::aas_by_class(row)),
            escape(&row.server_wait_events.replace(';', ", ")),
            row.ok,
            number(row.server_xact_commit),
            number(row.server_xact_rollback),
            number(row.server_sessions),
            number(row.server_sessions_abandoned),
            number(row.server_sessions_fatal),
            number(row.server_deadlocks),
            number(row.server_temp_bytes),
        );
    }
    html.push_str("</tbody>\n</table>\n");
}

fn machine(html: &mut String, run: &SavedRun) {
    if run.steps_log_only() {
        return; // nothing is known of either but what the steps say
    }
    let facts = &run.facts;
    let server = &facts.server;
    html.push_str("<h2>Server and client</h2>\n");
    let yes_no = |seen: bool| if seen { "yes" } else { "no" }.to_owned();
    facts_table(
        html,
        &[
            ("server", format!("PostgreSQL {}", server.version)),
            ("max_connections", server.max_connections.to_string()),
            (
                "reserved for superusers",
                server.superuser_reserved_connections.to_string(),
            ),
            ("server CPU visible", yes_no(facts.server_cpu_visible)),
            (
                "server statistics visible",
                yes_no(facts.server_stats_visible),
            ),
            (
                "client cores",
                format!(
                    "{} usable of {} on the host",
                    facts.client.allowed_cores, facts.client.host_cores
                ),
            ),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_makes_markup_text() {
        assert_eq!(
            escape("SELECT * FROM t WHERE a < $1 AND b > 'x' & \"y\""),
            "SELECT * FROM t WHERE a &lt; $1 AND b &gt; &#39;x&#39; &amp; &quot;y&quot;"
        );
    }
}
