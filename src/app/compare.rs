//! `pgstress compare`: several saved runs in one table, step by step side by side, so that the
//! modes (or two servers, or two settings) can be read against each other.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::Status;
use crate::cli::CompareArgs;
use crate::logs::StepRow;
use crate::logs::read::read_steps_log;
use crate::logs::schema;
use crate::output::format::{cpu_mean_peak, one_decimal};
use crate::report::comparison::{ComparisonChart, Metric, Series};
use crate::report::load::{SavedRun, run_prefix, summary_path};
use crate::report::{self, ReportError};

#[derive(Debug, Error)]
pub enum CompareError {
    #[error(transparent)]
    Run(#[from] ReportError),
    #[error(
        "cannot read {path}: {message}; give a run's prefix like logs/11282026_111515 or its _steps.csv"
    )]
    Steps { path: PathBuf, message: String },
    #[error("cannot draw the {chart} comparison chart: {message}")]
    Chart {
        chart: &'static str,
        message: String,
    },
    #[error("cannot write {path}: {cause}; give a writable folder with --out")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// One run as compared: a label, what it was, and its steps.
#[derive(Debug)]
pub struct ComparedRun {
    pub label: char,
    pub prefix: PathBuf,
    /// burst, pool or rate, when the run's summary is there to say.
    pub mode: Option<String>,
    /// The mode and plan in words, when the run's summary is there to say.
    pub description: Option<String>,
    pub verdict: Option<String>,
    /// The step size where the run broke, when the run's summary is there to say.
    pub breaking_requests: Option<u32>,
    /// The CPU share the run counted as saturated, when the run's summary is there to say.
    pub saturated_cpu_pct: Option<f64>,
    pub steps: Vec<StepRow>,
}

impl ComparedRun {
    /// From the run's summary when it is there, else from its steps CSV alone.
    pub fn load(label: char, path: &Path) -> Result<Self, CompareError> {
        let prefix = run_prefix(path)?;
        let summary = summary_path(&prefix);
        if summary.exists() {
            let saved = SavedRun::load(&summary)?;
            let plan = &saved.facts.plan;
            let unit = plan.unit_name();
            return Ok(ComparedRun {
                label,
                prefix,
                mode: Some(plan.mode.clone()),
                description: Some(format!(
                    "{} mode, {} steps of {} to {} {unit}",
                    plan.mode, plan.steps, plan.start, plan.largest_step
                )),
                verdict: saved.verdict_text.first().cloned(),
                breaking_requests: saved.breaking_requests(),
                saturated_cpu_pct: Some(plan.saturated_cpu_pct),
                steps: saved.steps,
            });
        }
        let steps_path = schema::with_suffix(&prefix, schema::STEPS_LOG);
        let steps = read_steps_log(&steps_path).map_err(|message| CompareError::Steps {
            path: steps_path.clone(),
            message,
        })?;
        Ok(ComparedRun {
            label,
            prefix,
            mode: None,
            description: None,
            verdict: None,
            breaking_requests: None,
            saturated_cpu_pct: None,
            steps,
        })
    }
}

/// `pgstress compare`: the table of two or more saved runs, and their charts unless asked not to.
pub fn compare(args: CompareArgs) -> anyhow::Result<Status> {
    let runs = load_runs(&args.runs)?;
    print!("{}", table(&runs));
    if !args.no_charts {
        let out = match args.out {
            Some(dir) => dir,
            None => runs[0]
                .prefix
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        for path in write_charts(&runs, &out)? {
            println!("chart:   {}", path.display());
        }
    }
    Ok(Status::Completed)
}

/// Loads the runs, labelled A, B, C... in the order given.
pub fn load_runs(paths: &[PathBuf]) -> Result<Vec<ComparedRun>, CompareError> {
    paths
        .iter()
        .zip(('A'..='Z').cycle())
        .map(|(path, label)| ComparedRun::load(label, path))
        .collect()
}

/// The table: the runs' legend, then for each step one row per run that reached it.
pub fn table(runs: &[ComparedRun]) -> String {
    let mut out = String::new();
    for run in runs {
        let description = run
            .description
            .as_deref()
            .unwrap_or("(no summary: steps CSV only)");
        let _ = writeln!(
            out,
            "{}  {}  {description}",
            run.label,
            run.prefix.display()
        );
    }
    let _ = writeln!(
        out,
        "\n{:>4} {:>3} {:>8} {:>7} {:>7} {:>8} {:>10} {:>10} {:>11} {:>11} {:>11} {:>11}  flags",
        "step",
        "run",
        "requests",
        "failed",
        "dropped",
        "wall_s",
        "p99_ms",
        "wait_p99",
        "host_cpu",
        "pgstress",
        "server_cpu",
        "pooler_cpu"
    );
    let last_step = runs
        .iter()
        .flat_map(|run| run.steps.iter().map(|s| s.step))
        .max()
        .unwrap_or(0);
    for step in 1..=last_step {
        for run in runs {
            let Some(row) = run.steps.iter().find(|s| s.step == step) else {
                continue;
            };
            let _ = writeln!(
                out,
                "{:>4} {:>3} {:>8} {:>7} {:>7} {:>8.3} {:>10} {:>10} {:>11} {:>11} {:>11} {:>11}  {}",
                row.step,
                run.label,
                row.requests,
                row.failed,
                row.dropped,
                row.wall_s,
                one_decimal(row.latency_p99_ms),
                one_decimal(row.queue_wait_p99_ms),
                cpu_mean_peak(row.host_cpu_mean, row.host_cpu_peak),
                cpu_mean_peak(row.process_cpu_mean, row.process_cpu_peak),
                cpu_mean_peak(row.server_cpu_mean, row.server_cpu_peak),
                cpu_mean_peak(row.pooler_cpu_mean, row.pooler_cpu_peak),
                row.flags
            );
        }
    }
    let verdicts: Vec<_> = runs
        .iter()
        .filter_map(|run| run.verdict.as_ref().map(|v| (run.label, v)))
        .collect();
    if !verdicts.is_empty() {
        out.push('\n');
        for (label, verdict) in verdicts {
            let _ = writeln!(out, "{label}  {verdict}");
        }
    }
    out
}

/// Draws each metric with one line per run, as PNG and SVG in `out` (made if missing), named
/// after the first run: `compare_<ts>_<metric>.png`. Returns the paths written.
pub fn write_charts(runs: &[ComparedRun], out: &Path) -> Result<Vec<PathBuf>, CompareError> {
    let series: Vec<Series> = runs
        .iter()
        .map(|run| Series {
            label: match &run.mode {
                Some(mode) => format!("{} {mode}", run.label),
                None => run.label.to_string(),
            },
            steps: run.steps.clone(),
            breaking_requests: run.breaking_requests,
            saturated_cpu_pct: run.saturated_cpu_pct,
        })
        .collect();
    let stem = runs
        .first()
        .and_then(|run| run.prefix.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::create_dir_all(out).map_err(|cause| CompareError::Write {
        path: out.to_owned(),
        cause,
    })?;
    let mut paths = Vec::new();
    for metric in Metric::ALL {
        let chart = ComparisonChart {
            metric,
            runs: &series,
        };
        let chart_error = |message| CompareError::Chart {
            chart: metric.name(),
            message,
        };
        let png = report::png(&chart).map_err(chart_error)?;
        let svg = report::svg(&chart).map_err(chart_error)?;
        for (extension, bytes) in [("png", png.as_slice()), ("svg", svg.as_bytes())] {
            let path = out.join(format!("compare_{stem}_{}.{extension}", metric.name()));
            crate::logs::files::replace(&path, bytes).map_err(|cause| CompareError::Write {
                path: path.clone(),
                cause,
            })?;
            paths.push(path);
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: char, steps: &[(u32, u32)]) -> ComparedRun {
        ComparedRun {
            label,
            prefix: PathBuf::from(format!("logs/{label}")),
            mode: None,
            description: None,
            verdict: Some(format!("verdict of {label}")),
            breaking_requests: None,
            saturated_cpu_pct: None,
            steps: steps
                .iter()
                .map(|&(step, requests)| StepRow {
                    step,
                    requests,
                    ..StepRow::default()
                })
                .collect(),
        }
    }

    #[test]
    fn steps_interleave_and_a_shorter_run_leaves_no_row() {
        let text = table(&[run('A', &[(1, 50), (2, 100)]), run('B', &[(1, 50)])]);
        let rows: Vec<(String, String)> = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let step = fields.next()?.parse::<u32>().ok()?;
                Some((step.to_string(), fields.next()?.to_owned()))
            })
            .collect();
        let expected = [("1", "A"), ("1", "B"), ("2", "A")];
        assert_eq!(
            rows,
            expected.map(|(s, r)| (s.to_owned(), r.to_owned())).to_vec()
        );
        assert!(text.contains("B  verdict of B"), "{text}");
    }
}
