//! `<ts>_metrics.txt`: the run's metric families as they stand at its end, in the Prometheus
//! text format (0.0.4), beside its logs: what a batch job pushes to a Pushgateway (which takes
//! that format, not OpenMetrics) or a node_exporter's textfile collector reads, and what
//! `promtool check metrics` checks. The live endpoint serves the same families.

use std::path::Path;

use super::{LogError, files};
use crate::output::metrics::RunMetrics;

/// Writes the file whole (beside, then renamed over the name).
pub fn write(path: &Path, metrics: &RunMetrics) -> Result<(), LogError> {
    files::replace(path, metrics.text().as_bytes()).map_err(|cause| LogError::Write {
        path: path.to_owned(),
        cause,
    })
}
