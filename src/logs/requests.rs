//! `<ts>_requests.csv` (with `--log-requests`): one row per request, as pgbench's `--log`,
//! for analysis the per-step aggregates cannot answer.

use std::path::{Path, PathBuf};

use super::{CsvFile, LogError};
use crate::model::fleet::AgentStep;
use crate::model::record::RequestRecord;

pub const REQUESTS_HEADER: [&str; 11] = [
    "step",
    "start_ms",
    "wait_ms",
    "connect_ms",
    "query_ms",
    "latency_ms",
    "service_ms",
    "outcome",
    "agent",
    "node",
    "client",
];

pub struct RequestsCsv {
    file: CsvFile,
}

fn ms(duration: std::time::Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1000.0)
}

impl RequestsCsv {
    pub fn create(path: PathBuf) -> Result<Self, LogError> {
        Ok(RequestsCsv {
            file: CsvFile::create(path, Some(&REQUESTS_HEADER))?,
        })
    }

    /// A step's requests; `latency_ms` counts from when the request was due (its wait
    /// included), `service_ms` from when it started (rate mode's uncorrected latency); `agent`
    /// names the agent that sent it (empty on one machine); `node` the host of the target's
    /// list it reached, from 0 (empty with one host); `client` the worker or sender that sent
    /// it, as its outage gap names it (empty with a thread per request).
    pub fn write_step(
        &mut self,
        step: u32,
        records: &[RequestRecord],
        agents: &[AgentStep],
    ) -> Result<(), LogError> {
        let names = AgentStep::record_names(agents).chain(std::iter::repeat(""));
        for (record, agent) in records.iter().zip(names) {
            let optional = |value: Option<std::time::Duration>| value.map(ms).unwrap_or_default();
            let outcome = match &record.outcome {
                Ok(()) => "ok".to_owned(),
                Err(failure) => failure.class.name().to_owned(),
            };
            self.file.write_row([
                step.to_string(),
                optional(record.start_offset),
                optional(record.queue_wait),
                optional(record.connect),
                optional(record.query),
                ms(record.latency),
                ms(record.service()),
                outcome,
                agent.to_owned(),
                record.node.map(|n| n.to_string()).unwrap_or_default(),
                record.client.map(|c| c.to_string()).unwrap_or_default(),
            ])?;
        }
        self.file.flush()
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }
}
