//! The original tool's two files, kept byte for byte in shape: no header, one row per step.
//! `<ts>_log.csv` is `requests,failed`; `<ts>_log_execution_time.csv` is `requests,seconds`.

use std::path::{Path, PathBuf};

use super::{CsvFile, LogError};
use crate::model::step::StepResult;

pub struct OriginalLogs {
    failures: CsvFile,
    execution_time: CsvFile,
}

impl OriginalLogs {
    pub fn create(failures: PathBuf, execution_time: PathBuf) -> Result<Self, LogError> {
        Ok(OriginalLogs {
            failures: CsvFile::create(failures, None)?,
            execution_time: CsvFile::create(execution_time, None)?,
        })
    }

    pub fn write_step(&mut self, step: &StepResult) -> Result<(), LogError> {
        self.failures
            .write_row([step.requests.to_string(), step.failed.to_string()])?;
        self.failures.flush()?;
        let seconds = format!("{:.6}", step.wall.as_secs_f64());
        self.execution_time
            .write_row([step.requests.to_string(), seconds])?;
        self.execution_time.flush()
    }

    pub fn paths(&self) -> Vec<&Path> {
        vec![&self.failures.path, &self.execution_time.path]
    }
}
