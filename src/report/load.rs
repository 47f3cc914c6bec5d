//! Reading a run back from its saved `<ts>_summary.json`: the report is drawn from the saved
//! file alone, both at the end of a run and by `pgstress report`, so the two agree byte for byte.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ReportError;
use crate::logs::{GateResult, StepRow};
use crate::run_facts::RunFacts;

const SUMMARY_SUFFIX: &str = "_summary.json";
const STEPS_SUFFIX: &str = "_steps.csv";

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
        serde_json::from_str(&text).map_err(|err| ReportError::Parse {
            path: summary.to_owned(),
            message: err.to_string(),
        })
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
    let prefix = [SUMMARY_SUFFIX, STEPS_SUFFIX]
        .iter()
        .find_map(|suffix| text.strip_suffix(suffix))
        .unwrap_or(text);
    Ok(PathBuf::from(prefix))
}

/// `<prefix>_summary.json`.
pub fn summary_path(prefix: &Path) -> PathBuf {
    with_suffix(prefix, SUMMARY_SUFFIX)
}

/// `<prefix><suffix>`, e.g. `logs/11282026_111515_report.html`.
pub fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
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
