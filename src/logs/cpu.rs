//! `<ts>_cpu.csv`: every CPU sample of the run, the "CPU load against request count" series.

use std::path::{Path, PathBuf};

use super::{CsvFile, LogError};
use crate::model::sample::CpuSample;

const HEADER: [&str; 7] = [
    "elapsed_ms",
    "step",
    "requests",
    "host_cpu_pct",
    "process_cpu_pct",
    "server_cpu_pct",
    "pooler_cpu_pct",
];

pub struct CpuCsv {
    file: CsvFile,
}

impl CpuCsv {
    pub fn create(path: PathBuf) -> Result<Self, LogError> {
        Ok(CpuCsv {
            file: CsvFile::create(path, Some(&HEADER))?,
        })
    }

    pub fn write_samples(&mut self, samples: &[CpuSample]) -> Result<(), LogError> {
        for sample in samples {
            self.file.write_row([
                sample.elapsed_ms.to_string(),
                sample.step.to_string(),
                sample.requests.to_string(),
                fixed(Some(sample.host_cpu_pct), 1),
                fixed(Some(sample.process_cpu_pct), 1),
                fixed(sample.server_cpu_pct, 1),
                fixed(sample.pooler_cpu_pct, 1),
            ])?;
        }
        self.file.flush()
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

/// A percentage with one decimal, or an empty field when there is no value.
fn fixed(value: Option<f64>, decimals: usize) -> String {
    value.map(|v| format!("{v:.decimals$}")).unwrap_or_default()
}
