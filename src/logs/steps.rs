//! `<ts>_steps.csv`: one row per step with everything the step measured.

use std::path::{Path, PathBuf};

use super::{CsvFile, LogError, fixed};
use crate::stats::{MeanPeak, StepResult};
use crate::target::FailureClass;

/// The columns, failure classes in `FailureClass::ALL` order after `failed`.
pub const STEPS_HEADER: [&str; 27] = [
    "step",
    "requests",
    "ok",
    "failed",
    "refused",
    "too_many_clients",
    "auth",
    "timeout",
    "query",
    "no_row",
    "spawn",
    "io",
    "wall_s",
    "throughput_rps",
    "launch_spread_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "connect_p50_ms",
    "connect_p99_ms",
    "host_cpu_mean",
    "host_cpu_peak",
    "process_cpu_mean",
    "process_cpu_peak",
    "server_cpu_mean",
    "server_cpu_peak",
];

pub struct StepsCsv {
    file: CsvFile,
}

impl StepsCsv {
    pub fn create(path: PathBuf) -> Result<Self, LogError> {
        Ok(StepsCsv {
            file: CsvFile::create(path, Some(&STEPS_HEADER))?,
        })
    }

    pub fn write_step(&mut self, step: &StepResult) -> Result<(), LogError> {
        self.file.write_row(row(step))?;
        self.file.flush()
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

fn row(step: &StepResult) -> Vec<String> {
    let ms = |value: Option<f64>| fixed(value, 3);
    let cpu = |series: Option<MeanPeak>| {
        [
            fixed(series.map(|s| s.mean), 1),
            fixed(series.map(|s| s.peak), 1),
        ]
    };
    let mut row = vec![
        step.step.to_string(),
        step.requests.to_string(),
        step.ok.to_string(),
        step.failed.to_string(),
    ];
    row.extend(
        FailureClass::ALL
            .iter()
            .map(|class| step.failures(*class).to_string()),
    );
    row.push(format!("{:.6}", step.wall.as_secs_f64()));
    row.push(format!("{:.1}", step.throughput()));
    row.push(format!("{:.3}", step.launch_spread.as_secs_f64() * 1000.0));
    for percentile in [50.0, 90.0, 99.0] {
        row.push(ms(step.latency_ms(percentile)));
    }
    row.push(ms(step.latency_max_ms()));
    row.push(ms(step.connect_ms(50.0)));
    row.push(ms(step.connect_ms(99.0)));
    row.extend(cpu(step.cpu.host));
    row.extend(cpu(step.cpu.process));
    row.extend(cpu(step.cpu.server));
    debug_assert_eq!(row.len(), STEPS_HEADER.len());
    row
}
