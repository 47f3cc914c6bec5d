//! What a run hands CI systems and monitoring: the live `/metrics` endpoint (opened before
//! anything is sent, kept a while after the run), the metrics file beside the logs, the JUnit
//! report and the Markdown summary, all written however the run ends, as the summary is.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::step_loop::{Ramp, judging};
use crate::config::{MetricsSettings, RunConfig};
use crate::judge::verdict::{self, Verdict};
use crate::logs::ci::{Ending, GateOutcome, RunReport};
use crate::logs::{self, RunLogs, junit, markdown, schema};
use crate::model::facts::RunFacts;
use crate::output::metrics::endpoint::MetricsEndpoint;
use crate::output::metrics::{RunLabels, RunMetrics};
use crate::output::printer::Printer;
use crate::sys::interrupt;

type Out = Printer<std::io::Stdout>;

/// Before anything is sent: the report files' folders are writable, and the endpoint, when
/// asked for, listens (a port already taken fails the run here, not after the load).
pub fn open(config: &RunConfig, printer: &mut Out) -> anyhow::Result<Option<MetricsEndpoint>> {
    let files = [
        ("--junit", &config.outputs.junit),
        ("--summary-md", &config.outputs.summary_md),
    ];
    for (option, path) in files {
        if let Some(path) = path {
            check_writable(option, path)?;
        }
    }
    let Some(MetricsSettings { listen, .. }) = config.outputs.metrics else {
        return Ok(None);
    };
    let endpoint = MetricsEndpoint::bind(listen)
        .with_context(|| format!("cannot serve metrics on {listen} (--metrics-listen)"))?;
    let beyond = match listen.ip().is_loopback() {
        true => "",
        false => {
            "; beyond loopback: whoever reaches this machine can read the figures (no secret is in them)"
        }
    };
    printer.note(format!(
        "metrics: http://{}/metrics (Prometheus text format, OpenMetrics when asked){beyond}",
        endpoint.address()
    ));
    Ok(Some(endpoint))
}

/// A report's folder exists (made if need be) and takes a new file.
fn check_writable(option: &str, path: &Path) -> anyhow::Result<()> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(folder)
        .and_then(|()| tempfile::NamedTempFile::new_in(folder).map(drop))
        .with_context(|| format!("cannot write {} ({option})", path.display()))
}

/// The run's metrics, served by the endpoint from now on if there is one.
pub fn run_metrics(
    config: &RunConfig,
    facts: &RunFacts,
    logs: &RunLogs,
    endpoint: Option<&MetricsEndpoint>,
) -> Arc<RunMetrics> {
    let metrics = Arc::new(RunMetrics::new(&RunLabels {
        run_id: logs.run_id(),
        mode: facts.plan.mode.clone(),
        version: facts.pgstress_version.clone(),
        load_unit: config.mode.unit().to_owned(),
        steps_planned: config.plan.steps,
        max_connections: facts.server.max_connections,
        usable_connections: facts.server.usable_connections(),
    }));
    if let Some(endpoint) = endpoint {
        endpoint.serve(Arc::clone(&metrics));
    }
    metrics
}

/// The gates as judged, with what the run measured of each.
pub fn judge_gates(config: &RunConfig, verdict: &Verdict, ramp: &Ramp) -> Vec<GateOutcome> {
    // A timed pool step is named by its size (the requests it kept queued), its request
    // count known only after it.
    let size_of: fn(&crate::model::step::StepResult) -> u32 = match config.mode.timed() {
        Some(_) => |step| step.load,
        None => |step| step.requests,
    };
    (config.gates.iter())
        .map(|gate| GateOutcome {
            gate: gate.to_string(),
            breached: gate.breach_by(verdict, &ramp.results, size_of),
            measured: gate.measured(verdict, &ramp.results),
        })
        .collect()
}

/// What the end of the run knows, for its reports.
pub struct Finished<'a> {
    pub config: &'a RunConfig,
    pub facts: &'a RunFacts,
    pub ramp: &'a Ramp,
    pub verdict: &'a Verdict,
    pub gates: &'a [GateOutcome],
    pub logs: &'a RunLogs,
    pub elapsed: Duration,
}

/// The metrics file and the reports asked for: each one tried, the first error returned. A
/// GitHub step summary that cannot be appended to is a warning: the job's own log has it all.
pub fn write_reports(
    end: &Finished<'_>,
    metrics: &RunMetrics,
    printer: &mut Out,
) -> anyhow::Result<()> {
    let breaches: Vec<(String, Option<String>)> = (end.gates.iter())
        .map(|g| (g.gate.clone(), g.breached.clone()))
        .collect();
    metrics.finish(&breaches);
    let mut first_error = end
        .logs
        .write_metrics(metrics)
        .err()
        .map(anyhow::Error::from);
    let report = report(end);
    let outputs = &end.config.outputs;
    let mut keep = |written: Result<(), logs::LogError>, what: &str| match written {
        Ok(()) => Ok(()),
        Err(err) if first_error.is_none() => {
            first_error = Some(anyhow::Error::from(err).context(what.to_owned()));
            Err(())
        }
        Err(_) => Err(()),
    };
    if let Some(path) = &outputs.junit
        && keep(junit::write(path, &report), "--junit").is_ok()
    {
        printer.note(format!("junit:   {}", path.display()));
    }
    if let Some(path) = &outputs.summary_md
        && keep(markdown::write(path, &report), "--summary-md").is_ok()
    {
        printer.note(format!("summary: {} (Markdown)", path.display()));
    }
    // The same file given as --summary-md is not appended to as well.
    if let Some(path) = &outputs.github_summary
        && outputs.summary_md.as_ref() != Some(path)
        && let Err(err) = markdown::append(path, &report)
    {
        printer.note(format!("warning: no GitHub step summary: {err}"));
    }
    first_error.map_or(Ok(()), Err)
}

fn report<'a>(end: &'a Finished<'a>) -> RunReport<'a> {
    let (config, ramp) = (end.config, end.ramp);
    let judging = judging(config, end.facts);
    let handled: Vec<bool> = (ramp.results.iter())
        .map(|step| verdict::handled(step, &judging))
        .collect();
    let ending = match (&ramp.log_error, &ramp.lost) {
        _ if interrupt::requested() => Ending::Interrupted,
        (Some(err), _) => Ending::LogsFailed(format!("{err:#}")),
        (None, Some(why)) => Ending::AgentLost(why.clone()),
        (None, None) => Ending::Completed {
            stopped: (ramp.stopped)
                .filter(|(step, _)| *step < config.plan.steps)
                .map(|(_, reason)| reason.describe()),
        },
    };
    let summary = end.logs.summary_path();
    let report = (config.report).then(|| {
        let name = summary.to_string_lossy();
        let prefix = schema::strip_run_suffix(&name).unwrap_or(&name).to_owned();
        schema::with_suffix(Path::new(&prefix), schema::REPORT_PAGE)
    });
    RunReport {
        facts: end.facts,
        run_id: end.logs.run_id(),
        steps: &ramp.results,
        handled,
        verdict: end.verdict,
        gates: end.gates,
        ending,
        elapsed: end.elapsed,
        hostname: crate::sys::procfs::hostname(),
        summary: summary.to_owned(),
        report,
    }
}

/// After the run: the last values are still served for `--metrics-linger`, so that a scraper
/// on its usual interval sees the last step; a signal ends the wait at once.
pub fn linger(endpoint: &MetricsEndpoint, settings: Option<MetricsSettings>, printer: &mut Out) {
    let Some(MetricsSettings { linger, .. }) = settings else {
        return;
    };
    if linger.is_zero() || interrupt::requested() {
        return;
    }
    printer.note(format!(
        "metrics: the last values stay on http://{}/metrics for {} (Ctrl-C ends it now)",
        endpoint.address(),
        humantime::format_duration(linger)
    ));
    interrupt::sleep(linger);
}
