//! The run's log files, one writer per file, all sharing the run's timestamp. Each step's rows
//! are written and flushed as soon as the step ends, so a crash loses at most the step in flight.

pub mod ci;
mod cpu;
pub mod files;
pub mod junit;
pub mod markdown;
mod metrics;
mod original;
pub mod read;
mod requests;
pub mod schema;
mod steps;
mod steps_header;
mod summary;

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::model::record::RequestRecord;
use crate::model::sample::CpuSample;
use crate::model::step::StepResult;

pub use steps::{STEPS_HEADER, StepRow};
pub use summary::{GateResult, RunSummary, StepSummary};

pub use schema::TIMESTAMP_FORMAT;

/// Names a run may take within one second before pgstress gives up on the folder.
const MAX_RUNS_PER_SECOND: u32 = 1000;

#[derive(Debug, Error)]
pub enum LogError {
    #[error("cannot write logs in {dir}: {cause}; give a writable folder with --logs")]
    Folder { dir: PathBuf, cause: io::Error },
    #[error("cannot create {path}: {cause}")]
    Create { path: PathBuf, cause: io::Error },
    #[error("cannot write {path}: {cause}")]
    Write { path: PathBuf, cause: io::Error },
}

/// Checks that the logs folder exists (creating it) and is writable, before anything is sent.
pub fn check_writable(dir: &Path) -> Result<(), LogError> {
    let folder_error = |cause| LogError::Folder {
        dir: dir.to_owned(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(folder_error)?;
    tempfile::NamedTempFile::new_in(dir)
        .map(drop)
        .map_err(folder_error)
}

/// Opens a new file for writing; never overwrites an earlier run's logs.
fn create(path: PathBuf) -> Result<(PathBuf, BufWriter<File>), LogError> {
    match files::create_new(&path) {
        Ok(file) => Ok((path, BufWriter::new(file))),
        Err(cause) => Err(LogError::Create { path, cause }),
    }
}

/// All the log files of one run.
pub struct RunLogs {
    original: original::OriginalLogs,
    steps: steps::StepsCsv,
    cpu: cpu::CpuCsv,
    /// Only with `--log-requests`.
    requests: Option<requests::RequestsCsv>,
    summary: PathBuf,
    /// Written once, at the end.
    metrics: PathBuf,
}

impl RunLogs {
    /// Creates the files under the current second's timestamp. Runs that start in the same
    /// second in the same folder each claim their own name, `<ts>`, then `<ts>-2`, `<ts>-3`…:
    /// the first file is created exclusively, so two runs can never take the same one.
    pub fn create_now(dir: &Path, log_requests: bool) -> Result<Self, LogError> {
        let timestamp = chrono::Local::now().format(TIMESTAMP_FORMAT).to_string();
        let mut last = None;
        for n in 1..=MAX_RUNS_PER_SECOND {
            let name = match n {
                1 => timestamp.clone(),
                n => format!("{timestamp}-{n}"),
            };
            match Self::create(dir, &name, log_requests) {
                Err(LogError::Create { path, cause })
                    if cause.kind() == io::ErrorKind::AlreadyExists
                        && path.to_string_lossy().ends_with(schema::ORIGINAL_LOG) =>
                {
                    last = Some(LogError::Create { path, cause });
                }
                other => return other,
            }
        }
        Err(last.expect("at least one name was tried"))
    }

    /// Creates `<dir>/<timestamp>_*.csv`.
    pub fn create(dir: &Path, timestamp: &str, log_requests: bool) -> Result<Self, LogError> {
        let prefix = dir.join(timestamp);
        let path = |suffix: &str| schema::with_suffix(&prefix, suffix);
        Ok(RunLogs {
            original: original::OriginalLogs::create(
                path(schema::ORIGINAL_LOG),
                path(schema::ORIGINAL_TIME_LOG),
            )?,
            steps: steps::StepsCsv::create(path(schema::STEPS_LOG))?,
            cpu: cpu::CpuCsv::create(path(schema::CPU_LOG))?,
            requests: match log_requests {
                true => Some(requests::RequestsCsv::create(path(schema::REQUESTS_LOG))?),
                false => None,
            },
            summary: path(schema::SUMMARY),
            metrics: path(schema::METRICS),
        })
    }

    /// Writes and flushes one finished step in every file.
    pub fn write_step(
        &mut self,
        step: &StepResult,
        samples: &[CpuSample],
        records: &[RequestRecord],
        agents: &[crate::model::fleet::AgentStep],
    ) -> Result<(), LogError> {
        if crate::sys::interrupt::abandoned() {
            return Ok(());
        }
        self.original.write_step(step)?;
        self.steps.write_step(step)?;
        if let Some(requests) = &mut self.requests {
            requests.write_step(step.step, records, agents)?;
        }
        self.cpu.write_samples(samples)
    }

    /// Replaces the JSON summary (written whole to a temporary file, then renamed, so a
    /// crash leaves the previous step's summary, never half a file).
    pub fn write_summary(&self, summary: &RunSummary<'_>) -> Result<(), LogError> {
        if crate::sys::interrupt::abandoned() {
            return Ok(());
        }
        summary::write(&self.summary, summary)
    }

    pub fn summary_path(&self) -> &Path {
        &self.summary
    }

    /// The run's id: the timestamp its files share, `11292026_092253` (`-2` and on for a
    /// second run in the same second).
    pub fn run_id(&self) -> String {
        let name = self
            .summary
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let id = name.strip_suffix(schema::SUMMARY).unwrap_or(&name);
        id.to_owned()
    }

    /// Writes `<ts>_metrics.txt`: the run's metric families as they stand, whole.
    pub fn write_metrics(
        &self,
        metrics: &crate::output::metrics::RunMetrics,
    ) -> Result<(), LogError> {
        if crate::sys::interrupt::abandoned() {
            return Ok(());
        }
        metrics::write(&self.metrics, metrics)
    }

    pub fn metrics_path(&self) -> &Path {
        &self.metrics
    }

    pub fn paths(&self) -> Vec<&Path> {
        let mut paths = self.original.paths();
        paths.push(self.steps.path());
        paths.push(self.cpu.path());
        if let Some(requests) = &self.requests {
            paths.push(requests.path());
        }
        paths.push(&self.summary);
        paths.push(&self.metrics);
        paths
    }
}

/// A CSV file that is flushed after every step.
struct CsvFile {
    path: PathBuf,
    writer: csv::Writer<BufWriter<File>>,
}

impl CsvFile {
    fn create(path: PathBuf, header: Option<&[&str]>) -> Result<Self, LogError> {
        let (path, file) = create(path)?;
        let writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        let mut csv_file = CsvFile { path, writer };
        if let Some(header) = header {
            csv_file.write_row(header.iter().map(|h| h.to_string()))?;
            csv_file.flush()?;
        }
        Ok(csv_file)
    }

    fn write_row(&mut self, fields: impl IntoIterator<Item = String>) -> Result<(), LogError> {
        self.writer
            .write_record(fields)
            .map_err(|err| LogError::Write {
                path: self.path.clone(),
                cause: err.into(),
            })
    }

    fn serialize(&mut self, row: &impl serde::Serialize) -> Result<(), LogError> {
        self.writer.serialize(row).map_err(|err| LogError::Write {
            path: self.path.clone(),
            cause: err.into(),
        })
    }

    fn flush(&mut self) -> Result<(), LogError> {
        self.writer.flush().map_err(|cause| LogError::Write {
            path: self.path.clone(),
            cause,
        })
    }
}
