//! What each agent of a run spread over several machines measured of a step: the per-agent
//! breakdown the summary keeps beside the merged step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One agent's share of one step, as it measured it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStep {
    /// The agent's name (its host name unless `--name`).
    pub agent: String,
    /// Requests of the share: `ok + failed + dropped + unsent`.
    pub requests: u32,
    pub ok: u32,
    pub failed: u32,
    pub dropped: u32,
    pub unsent: u32,
    /// Failures per class name.
    pub failures: BTreeMap<String, u32>,
    /// The agent's first and last request start, from the coordinator's release time.
    pub first_start_ms: Option<f64>,
    pub last_start_ms: Option<f64>,
    /// The agent's clock minus the coordinator's, as estimated before the step, and the bound
    /// on that estimate's error (half the round trip of the ping it came from).
    pub clock_offset_ms: f64,
    pub clock_error_ms: f64,
    /// How late the agent opened its gate after the release time, on its own clock.
    pub gate_late_ms: f64,
    /// The agent host's and process's CPU over the step, in percent, and the share of its CPU
    /// time its threads waited for a CPU.
    pub host_cpu_pct: Option<f64>,
    pub process_cpu_pct: Option<f64>,
    pub client_wait_share: Option<f64>,
    /// The client-limit flags the agent raised on its own share.
    pub flags: Vec<crate::model::rules::Flag>,
    /// Latency of the share's successful requests in microseconds, HdrHistogram V2 deflate,
    /// base64 (the interchange encoding).
    pub latency_histogram_us: String,
    /// Records of this agent in the step's request list (they come in agent order).
    #[serde(skip)]
    pub records: usize,
    /// Hold mode: the agent's crowd, and what holding it cost the agent (its memory and CPU
    /// per held connection; the pooler and the server are the coordinator's to read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<crate::model::hold::HoldStep>,
    /// The agent was lost during the step: its share's outcome is unknown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

impl AgentStep {
    /// The name of the agent of every record, in the order the records of the step come.
    pub fn record_names(agents: &[AgentStep]) -> impl Iterator<Item = &str> {
        agents
            .iter()
            .flat_map(|agent| std::iter::repeat_n(agent.agent.as_str(), agent.records))
    }
}
