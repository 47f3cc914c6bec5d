//! `<ts>_summary.json`: the run's facts, every step's row with its latency histogram (HDR V2,
//! base64, so runs from several machines can later be merged exactly), the verdict and the gates.

use std::path::Path;

use base64::Engine;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use super::{LogError, StepRow};
use crate::judge::verdict::Verdict;
use crate::model::facts::RunFacts;
use crate::model::step::StepResult;

#[derive(Debug, Serialize)]
pub struct StepSummary {
    #[serde(flatten)]
    pub row: StepRow,
    pub flag_list: Vec<&'static str>,
    /// Latency of the successful requests in microseconds, HDR histogram V2, base64.
    pub latency_histogram_us: String,
}

impl StepSummary {
    pub fn of(step: &StepResult) -> Self {
        let mut bytes = Vec::new();
        // Serializing into memory fails only for a histogram that cannot be encoded at all.
        let encoded = V2Serializer::new()
            .serialize(&step.latency, &mut bytes)
            .map(|_| bytes);
        StepSummary {
            row: StepRow::of(step),
            flag_list: step.flags.iter().map(|f| f.name()).collect(),
            latency_histogram_us: encoded
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateResult {
    pub gate: String,
    pub breached: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RunSummary<'a> {
    #[serde(flatten)]
    pub facts: &'a RunFacts,
    /// False while the run is going on (the summary is rewritten after every step).
    pub complete: bool,
    pub interrupted: bool,
    pub steps: &'a [StepSummary],
    pub verdict: &'a Verdict,
    pub verdict_text: Vec<String>,
    pub gates: Vec<GateResult>,
}

pub fn write(path: &Path, summary: &RunSummary<'_>) -> Result<(), LogError> {
    let error = |cause: std::io::Error| LogError::Write {
        path: path.to_owned(),
        cause,
    };
    let mut bytes = serde_json::to_vec_pretty(summary).map_err(|err| error(err.into()))?;
    bytes.push(b'\n');
    super::files::replace(path, &bytes).map_err(error)
}
