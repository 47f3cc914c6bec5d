//! The names of a run's files: one timestamp shared by all, one suffix per file. The only
//! place that knows them; the writers, `report` and `compare` ask here.

use std::path::{Path, PathBuf};

/// The run timestamp format of the original tool's file names.
pub const TIMESTAMP_FORMAT: &str = "%m%d%Y_%H%M%S";

/// The original's failure log: `requests,failed_requests` per step, no header.
pub const ORIGINAL_LOG: &str = "_log.csv";
/// The original's time log: `requests,execution_seconds` per step, no header.
pub const ORIGINAL_TIME_LOG: &str = "_log_execution_time.csv";
pub const STEPS_LOG: &str = "_steps.csv";
pub const CPU_LOG: &str = "_cpu.csv";
pub const REQUESTS_LOG: &str = "_requests.csv";
pub const SUMMARY: &str = "_summary.json";
pub const REPORT_PAGE: &str = "_report.html";
/// The run's metrics at its end, in the Prometheus text format (what the Pushgateway takes).
pub const METRICS: &str = "_metrics.txt";

/// `<prefix><suffix>`, e.g. `logs/11282026_111515_report.html`.
pub fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `<prefix>_<chart>.<extension>`, a chart drawn from the run.
pub fn chart_path(prefix: &Path, chart: &str, extension: &str) -> PathBuf {
    with_suffix(prefix, &format!("_{chart}.{extension}"))
}

/// The run's prefix (`logs/11282026_111515`) in a path to its summary or steps log, if it is one.
pub fn strip_run_suffix(path: &str) -> Option<&str> {
    [SUMMARY, STEPS_LOG]
        .iter()
        .find_map(|suffix| path.strip_suffix(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_files_share_its_prefix() {
        let prefix = Path::new("logs/11282026_111515");
        assert_eq!(
            with_suffix(prefix, ORIGINAL_LOG),
            Path::new("logs/11282026_111515_log.csv")
        );
        assert_eq!(
            chart_path(prefix, "latency", "svg"),
            Path::new("logs/11282026_111515_latency.svg")
        );
        assert_eq!(
            strip_run_suffix("logs/11282026_111515_summary.json"),
            Some("logs/11282026_111515")
        );
        assert_eq!(
            strip_run_suffix("logs/11282026_111515_steps.csv"),
            Some("logs/11282026_111515")
        );
        assert_eq!(strip_run_suffix("logs/11282026_111515_cpu.csv"), None);
    }
}
