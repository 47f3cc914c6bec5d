//! Reading a run back from its saved `<ts>_summary.json`: the report is drawn from the saved
//! file alone, both at the end of a run and by `pgstress report`, so the two agree byte for byte.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ReportError;
use crate::judge::verdict::{Figures, handled_figures};
use crate::logs::read::read_steps_log;
use crate::logs::schema;
use crate::logs::{GateResult, StepRow};
use crate::model::facts::{ClientFacts, PlanFacts, RunFacts, ServerFacts};
use crate::model::rules::Flag;
use crate::model::server_cpu::{ServerSource, of_own_cpus};

/// The mode of a run read from its steps log alone, which does not record it.
const STEPS_LOG_ONLY: &str = "unknown";

/// What the report needs of a saved summary; the fields the report does not use (histograms,
/// flag lists) are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedRun {
    #[serde(flatten)]
    pub facts: RunFacts,
    pub complete: bool,
    pub interrupted: bool,
    pub steps: Vec<StepRow>,
    pub verdict: SavedVerdict,
    pub verdict_text: Vec<String>,
    pub gates: Vec<GateResult>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SavedVerdict {
    pub capacity: Option<u32>,
    pub breaking_point: Option<SavedBreakingPoint>,
}

impl SavedVerdict {
    /// The verdict's rules on logged steps: the first step the server did not handle breaks
    /// (the same rule as a live run's, with the run's SLO when it was recorded); capacity is
    /// the largest step before it whose load was all sent.
    fn of_rows(steps: &[StepRow], slo_p99_ms: Option<f64>) -> Self {
        let breaking = steps.iter().position(|s| {
            let sent = (s.requests)
                .saturating_sub(s.dropped + s.unsent)
                .saturating_sub(s.spawn);
            // A log written before `server_failed` was a column: every failure but a spawn.
            let server_failed = match s.server_failed {
                0 => s
                    .failed
                    .saturating_sub(s.spawn + s.client + s.no_row + s.bad_value),
                n => n,
            };
            let figures = Figures {
                server_failed,
                sent,
                p99_ms: s.latency_p99_ms,
            };
            sent > 0 && !handled_figures(&figures, slo_p99_ms, 0.0)
        });
        let withheld_load = |s: &StepRow| {
            s.flags
                .split(';')
                .filter_map(Flag::from_name)
                .any(Flag::withholds_load)
        };
        SavedVerdict {
            capacity: steps[..breaking.unwrap_or(steps.len())]
                .iter()
                .filter(|s| !withheld_load(s))
                .map(|s| s.requests)
                .max(),
            breaking_point: breaking.map(|i| SavedBreakingPoint {
                step: steps[i].step,
                requests: steps[i].requests,
            }),
        }
    }

    fn sentence(&self) -> String {
        let capacity = self
            .capacity
            .map_or_else(|| "none".to_owned(), |n| format!("{n} requests"));
        match self.breaking_point {
            Some(bp) => format!(
                "breaking point: {} requests (step {}); capacity: {capacity} (read again from the steps log)",
                bp.requests, bp.step
            ),
            None => format!(
                "no breaking point in the logged steps; capacity: {capacity} (read again from the steps log)"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct SavedBreakingPoint {
    pub step: u32,
    pub requests: u32,
}

impl SavedRun {
    pub fn load(summary: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(summary).map_err(|cause| ReportError::Read {
            path: summary.to_owned(),
            cause,
        })?;
        let run: SavedRun = serde_json::from_str(&text).map_err(|err| ReportError::Parse {
            path: summary.to_owned(),
            message: err.to_string(),
        })?;
        Ok(run.with_own_cpus())
    }

    /// A run logged before each side's CPU was logged over its own CPUs: those columns
    /// worked out from the shares of the host and the CPUs its facts record.
    fn with_own_cpus(mut self) -> Self {
        let host = self.facts.client.host_cores;
        let client = self.facts.client.allowed_cores;
        let server = self.facts.cpus.server_cores;
        let own = |pct: Option<f64>, cores: f64| pct.map(|pct| of_own_cpus(pct, host, cores));
        for row in &mut self.steps {
            if row.process_cpu_own_mean.is_none() && client > 0.0 {
                row.process_cpu_own_mean = own(row.process_cpu_mean, client);
                row.process_cpu_own_peak = own(row.process_cpu_peak, client);
            }
            if let Some(cores) = server
                && row.server_cpu_own_mean.is_none()
                && row.server_cpu_mean.is_some()
            {
                row.server_source = ServerSource::Local;
                row.server_cores = Some(cores);
                row.server_cpu_own_mean = own(row.server_cpu_mean, cores);
                row.server_cpu_own_peak = own(row.server_cpu_peak, cores);
            }
        }
        self
    }

    /// A run known by its steps log alone (copied from another machine without its summary):
    /// the steps as logged, the breaking point and capacity read again from them, and no
    /// plan, target or server, which only the summary records.
    pub fn from_steps_log(path: &Path) -> Result<Self, ReportError> {
        let steps = read_steps_log(path).map_err(|message| ReportError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let verdict = SavedVerdict::of_rows(&steps, None);
        let verdict_text = vec![verdict.sentence()];
        let first = steps[0].requests;
        let plan = PlanFacts {
            mode: STEPS_LOG_ONLY.to_owned(),
            unit: String::new(),
            engine: String::new(),
            steps: steps.len() as u32,
            start: first,
            step: steps
                .get(1)
                .map_or(first, |second| second.requests.saturating_sub(first)),
            largest_step: steps.iter().map(|s| s.requests).max().unwrap_or(0),
            total_requests: steps.iter().map(|s| u64::from(s.requests)).sum(),
            query: String::new(),
            data: None,
            timeout_ms: 0.0,
            sample_every_ms: 0.0,
            stop_failure_rate: None,
            stop_p99_ms: None,
            stop_when_unresponsive: false,
            slo_p99_ms: None,
            bound_s: 0.0,
            largest_step_bound_s: 0.0,
            saturated_cpu_pct: crate::model::rules::Thresholds::default().saturated_cpu_pct,
            allow_writes: false,
            tolerate: 0.0,
            step_duration_s: None,
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        Ok(SavedRun {
            facts: RunFacts {
                pgstress_version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at: name
                    .as_deref()
                    .and_then(|n| n.strip_suffix(schema::STEPS_LOG))
                    .unwrap_or("an unknown time")
                    .to_owned(),
                plan,
                target: String::new(),
                nodes: Vec::new(),
                throwaway: false,
                pooler: None,
                pooler_limit: None,
                server: ServerFacts::default(),
                server_cpu_visible: steps.iter().any(|s| s.server_cpu_mean.is_some()),
                server_stats_visible: steps.iter().any(|s| s.server_connections_peak.is_some()),
                server_source: steps.first().map(|s| s.server_source).unwrap_or_default(),
                client: ClientFacts {
                    host_cores: 0.0,
                    allowed_cores: 0.0,
                },
                cpus: Default::default(),
            },
            complete: true,
            interrupted: false,
            steps,
            verdict,
            verdict_text,
            gates: Vec::new(),
        })
    }

    /// Whether the run was read from its steps log alone.
    pub fn steps_log_only(&self) -> bool {
        self.facts.plan.mode == STEPS_LOG_ONLY
    }

    /// The requests of the breaking point's step, where the charts draw their vertical line.
    pub fn breaking_requests(&self) -> Option<u32> {
        self.verdict.breaking_point.map(|bp| bp.requests)
    }
}

/// The run's file prefix (`logs/11282026_111515`) from a prefix, a `<ts>_steps.csv` or a
/// `<ts>_summary.json` path.
pub fn run_prefix(path: &Path) -> Result<PathBuf, ReportError> {
    let text = path.to_str().ok_or_else(|| ReportError::NotARun {
        path: path.to_owned(),
    })?;
    if path.is_dir() || text.is_empty() {
        return Err(ReportError::NotARun {
            path: path.to_owned(),
        });
    }
    let prefix = schema::strip_run_suffix(text).unwrap_or(text);
    Ok(PathBuf::from(prefix))
}

/// `<prefix>_summary.json`.
pub fn summary_path(prefix: &Path) -> PathBuf {
    schema::with_suffix(prefix, schema::SUMMARY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_comes_from_any_of_the_three_forms() {
        for given in [
            "logs/11282026_111515",
            "logs/11282026_111515_steps.csv",
            "logs/11282026_111515_summary.json",
        ] {
            assert_eq!(
                run_prefix(Path::new(given)).unwrap(),
                PathBuf::from("logs/11282026_111515"),
                "{given}"
            );
        }
    }

    #[test]
    fn a_steps_log_alone_gives_the_verdicts_breaking_point_and_capacity() {
        let row = |step: u32, requests: u32, failed: u32, spawn: u32, flags: &str| StepRow {
            step,
            requests,
            failed,
            spawn,
            flags: flags.to_owned(),
            ..StepRow::default()
        };
        let steps = [
            row(1, 10, 0, 0, ""),
            row(2, 20, 0, 0, "client-saturated;rate-not-met"),
            row(3, 30, 3, 3, "spawn-failed"),
            row(4, 40, 5, 0, ""),
        ];
        let verdict = SavedVerdict::of_rows(&steps, None);
        let bp = verdict.breaking_point.unwrap();
        assert_eq!(
            (bp.step, bp.requests),
            (4, 40),
            "spawn failures do not break"
        );
        assert_eq!(
            verdict.capacity,
            Some(10),
            "steps whose load was not all sent do not count"
        );
        assert!(
            verdict
                .sentence()
                .starts_with("breaking point: 40 requests (step 4); capacity: 10 requests")
        );
    }

    #[test]
    fn only_a_steps_log_with_steps_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let other = read_steps_log(&file("a_steps.csv", "a,b\n1,2\n")).unwrap_err();
        assert!(other.contains("not a pgstress steps log"), "{other}");
        let empty = read_steps_log(&file("b_steps.csv", "step,requests\n")).unwrap_err();
        assert!(empty.contains("no step was logged"), "{empty}");
        let steps =
            read_steps_log(&file("c_steps.csv", "step,requests,ok\n1,5,5\n2,10,9\n")).unwrap();
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.step, s.requests))
                .collect::<Vec<_>>(),
            [(1, 5), (2, 10)]
        );
    }

    #[test]
    fn an_older_runs_cpu_is_drawn_over_each_sides_own_cpus() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("01012026_000000");
        let steps = schema::with_suffix(&prefix, schema::STEPS_LOG);
        // Written before the own-CPU columns: shares of a 4-core host.
        std::fs::write(
            &steps,
            "step,requests,ok,process_cpu_mean,process_cpu_peak,server_cpu_mean\n1,5,5,20,40,25\n",
        )
        .unwrap();
        let mut run = SavedRun::from_steps_log(&steps).unwrap();
        run.facts.client = ClientFacts {
            host_cores: 4.0,
            allowed_cores: 1.0,
        };
        run.facts.cpus.server_cores = Some(2.0);
        let row = &run.with_own_cpus().steps[0];
        assert_eq!(
            (row.process_cpu_own_mean, row.process_cpu_own_peak),
            (Some(80.0), Some(160.0))
        );
        assert_eq!(row.server_cpu_own_mean, Some(50.0));
        assert_eq!(row.server_cpu_own_peak, None);
        assert_eq!(
            (row.server_source, row.server_cores),
            (ServerSource::Local, Some(2.0))
        );
        // A steps log alone records no cores: nothing is worked out.
        let alone = SavedRun::from_steps_log(&steps).unwrap().with_own_cpus();
        assert_eq!(alone.steps[0].process_cpu_own_mean, None);
        assert_eq!(alone.steps[0].server_cpu_own_mean, None);
    }

    #[test]
    fn a_folder_is_not_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_prefix(dir.path()).unwrap_err().to_string();
        assert!(err.contains("logs/11282026_111515"), "{err}");
    }

    #[test]
    fn summary_sits_beside_the_prefix() {
        assert_eq!(
            summary_path(Path::new("logs/01012026_000000")),
            PathBuf::from("logs/01012026_000000_summary.json")
        );
    }
}
