//! The `--config` TOML file: the same options as the command line, which wins over it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::error::ConfigError;

/// The keys a `--config` TOML file may hold: the long option names of `pgstress run`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct FileConfig {
    pub(super) dsn: Option<String>,
    pub(super) sslmode: Option<String>,
    pub(super) sslrootcert: Option<PathBuf>,
    pub(super) steps: Option<u32>,
    pub(super) step: Option<u32>,
    pub(super) start: Option<u32>,
    pub(super) query: Option<String>,
    pub(super) data: Option<PathBuf>,
    pub(super) column: Option<usize>,
    pub(super) skip_header: Option<bool>,
    pub(super) allow_writes: Option<bool>,
    pub(super) client: Option<String>,
    pub(super) scram_per_connection: Option<bool>,
    pub(super) logs: Option<PathBuf>,
    pub(super) timeout: Option<String>,
    pub(super) sample_every: Option<String>,
    pub(super) pause: Option<String>,
    pub(super) stack_kib: Option<usize>,
    pub(super) log_requests: Option<bool>,
    pub(super) mode: Option<String>,
    pub(super) workers: Option<u32>,
    pub(super) connect_per_request: Option<bool>,
    pub(super) duration: Option<String>,
    pub(super) arrival: Option<String>,
    pub(super) max_inflight: Option<u32>,
    // The option's own name, and the plural the README showed first.
    #[serde(alias = "server-settings")]
    pub(super) server_setting: Option<Vec<String>>,
    pub(super) server_cpus: Option<String>,
    pub(super) client_cpus: Option<String>,
    pub(super) no_pin: Option<bool>,
    pub(super) pooler: Option<String>,
    pub(super) pooler_setting: Option<Vec<String>>,
    pub(super) prepare: Option<String>,
    pub(super) slo_p99: Option<String>,
    pub(super) stop_failure_rate: Option<f64>,
    pub(super) tolerate: Option<f64>,
    pub(super) stop_p99: Option<String>,
    pub(super) no_stop: Option<bool>,
    pub(super) fail_if: Option<Vec<String>>,
    pub(super) spread_max: Option<String>,
    pub(super) spread_ratio: Option<f64>,
    pub(super) saturated_cpu: Option<f64>,
    pub(super) no_report: Option<bool>,
    pub(super) quiet: Option<bool>,
}

impl FileConfig {
    pub(super) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::ReadFile {
            path: path.to_owned(),
            cause,
        })?;
        toml::from_str(&text).map_err(|err| ConfigError::ParseFile {
            path: path.to_owned(),
            // toml's message spans several lines (a source excerpt); keep the one that says why.
            message: err.message().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_file_key_is_rejected() {
        let err = toml::from_str::<FileConfig>("stepz = 3").unwrap_err();
        assert!(err.message().contains("stepz"), "{}", err.message());
    }
}
