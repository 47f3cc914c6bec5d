//! `<ts>_summary.json`: the run's facts, every step's row with its latency histogram
//! (HdrHistogram's interchange encoding, V2 deflate in base64, so that any HdrHistogram decoder
//! reads it and runs from several machines can later be merged exactly), with agents the
//! per-agent breakdown, the verdict and the gates.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{LogError, StepRow};
use crate::judge::verdict::Verdict;
use crate::model::facts::RunFacts;
use crate::model::fleet::AgentStep;
use crate::model::step::StepResult;

#[derive(Debug, Serialize)]
pub struct StepSummary {
    #[serde(flatten)]
    pub row: StepRow,
    pub flag_list: Vec<&'static str>,
    /// Latency of the successful requests in microseconds, HdrHistogram V2 deflate, base64.
    pub latency_histogram_us: String,
    /// What each agent measured of its share, when agents sent the step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentStep>,
    /// When the server stopped answering and came back, per client too (docs/outages.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outage: Option<crate::model::outage::Outage>,
}

impl StepSummary {
    pub fn of(step: &StepResult, agents: &[AgentStep]) -> Self {
        StepSummary {
            row: StepRow::of(step),
            flag_list: step.flags.iter().map(|f| f.name()).collect(),
            latency_histogram_us: crate::model::hdr::encode(&step.latency),
            agents: agents.to_vec(),
            outage: step.outage.clone(),
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
