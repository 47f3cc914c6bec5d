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
    pub(super) agents: Option<u32>,
    pub(super) listen: Option<String>,
    pub(super) agents_timeout: Option<String>,
}

impl FileConfig {
    pub(super) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::ReadFile {
            path: path.to_owned(),
            cause,
        })?;
        toml::from_str(&text).map_err(|err| ConfigError::ParseFile {
            path: path.to_owned(),
            // toml's message spans several lines (a source excerpt); keep the one that says why,
            // and name the key it is about (never its value: it may be a DSN with a password).
            message: match err.span().and_then(|span| key_at(&text, span.start)) {
                Some((line, key)) => format!("{} (line {line}, key `{key}`)", err.message()),
                None => err.message().to_owned(),
            },
        })
    }
}

/// The line number and key of the `key = value` line holding byte `at`.
fn key_at(text: &str, at: usize) -> Option<(usize, &str)> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    let number = text[..start].matches('\n').count() + 1;
    (!key.is_empty()).then_some((number, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_file_key_is_rejected() {
        let err = toml::from_str::<FileConfig>("stepz = 3").unwrap_err();
        assert!(err.message().contains("stepz"), "{}", err.message());
    }

    #[test]
    fn a_bad_value_names_its_key_and_line_but_not_the_value() {
        let text = "quiet = true\nsteps = 99999999999999999999\n";
        let at = text.find("9999").unwrap();
        assert_eq!(key_at(text, at), Some((2, "steps")));
        assert_eq!(key_at(text, 0), Some((1, "quiet")));
        assert_eq!(key_at("[steps]\n", 1), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgstress.toml");
        std::fs::write(&path, text).unwrap();
        let err = FileConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("(line 2, key `steps`)"), "{err}");
    }
}
