//! `--pooler`, `--pooler-setting` and `--prepare`: the pooler pgstress starts in front of the
//! target, and how kept connections run the query.

use crate::cli::RunArgs;
use crate::cli::values::{PoolerName, Setting};
use crate::config::error::{ConfigError, invalid};

/// Settings pgstress sets itself to lock the throwaway pooler down: not the user's to change.
const LOCKED: [&str; 13] = [
    "listen_addr",
    "listen_port",
    "unix_socket_dir",
    "unix_socket_mode",
    "auth_type",
    "auth_file",
    "auth_hba_file",
    "auth_query",
    "auth_user",
    "pidfile",
    "logfile",
    "admin_users",
    "stats_users",
];

/// A throwaway PgBouncer in front of the target, with the user's ini settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolerChoice {
    pub settings: Vec<(String, String)>,
    /// PgBouncer processes sharing the port (`so_reuseport`), 1 or more.
    pub processes: u32,
}

/// `--pooler-processes`' default: one PgBouncer, as PgBouncer runs by default.
pub const DEFAULT_POOLER_PROCESSES: u32 = 1;

/// More processes than this would not be the few cores a pooler is given, but a typo.
const MOST_POOLER_PROCESSES: u32 = 64;

pub(super) fn merge_pooler(options: &RunArgs) -> Result<Option<PoolerChoice>, ConfigError> {
    let settings = options
        .pooler_settings
        .iter()
        .flatten()
        .map(check_setting)
        .collect::<Result<Vec<_>, _>>()?;
    let processes = options.pooler_processes.unwrap_or(DEFAULT_POOLER_PROCESSES);
    if !(1..=MOST_POOLER_PROCESSES).contains(&processes) {
        return Err(invalid(
            "--pooler-processes",
            processes,
            format!("give 1 to {MOST_POOLER_PROCESSES} PgBouncer processes"),
        ));
    }
    match options.pooler {
        Some(PoolerName::Pgbouncer) => Ok(Some(PoolerChoice {
            settings,
            processes,
        })),
        None => match (settings.first(), options.pooler_processes) {
            (Some((key, _)), _) => Err(invalid(
                "--pooler-setting",
                key,
                "it applies to the throwaway pooler only; give --pooler pgbouncer",
            )),
            (None, Some(processes)) => Err(invalid(
                "--pooler-processes",
                processes,
                "it applies to the throwaway pooler only; give --pooler pgbouncer",
            )),
            (None, None) => Ok(None),
        },
    }
}

/// A setting pgstress may write into PgBouncer's ini file: one line, a plain key, none of the
/// settings that keep the pooler private.
fn check_setting(setting: &Setting) -> Result<(String, String), ConfigError> {
    let Setting { key, value } = setting.clone();
    let word = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !word(&key) {
        return Err(invalid(
            "--pooler-setting",
            &key,
            "a key is letters, digits and _",
        ));
    }
    if value.contains(['\n', '\r']) {
        return Err(invalid("--pooler-setting", &key, "a value is one line"));
    }
    if key == "so_reuseport" {
        return Err(invalid(
            "--pooler-setting",
            &key,
            "pgstress sets it for --pooler-processes",
        ));
    }
    if LOCKED.contains(&key.as_str()) {
        return Err(invalid(
            "--pooler-setting",
            &key,
            "pgstress sets it to keep the throwaway pooler private (loopback, SCRAM, its own folder)",
        ));
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_or_malformed_setting_is_refused() {
        let check = |text: &str| check_setting(&text.parse().unwrap());
        assert!(check("pool_mode=transaction").is_ok());
        assert!(check("listen_addr=0.0.0.0").is_err());
        assert!(check("auth_type=trust").is_err());
        assert!(check("pool mode=x").is_err());
        assert!(check("max_client_conn=5\nauth_type=trust").is_err());
    }
}
