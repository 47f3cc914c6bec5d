//! `--pooler`, `--pooler-setting` and `--prepare`: the pooler pgstress starts in front of the
//! target, and how kept connections run the query.

use crate::cli::RunArgs;
use crate::config::error::{ConfigError, invalid};
use crate::config::file::FileConfig;
use crate::config::values::parse_setting;
use crate::pg::request::Prepare;

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
}

pub(super) fn merge_pooler(
    args: &RunArgs,
    file: &FileConfig,
) -> Result<Option<PoolerChoice>, ConfigError> {
    let settings = match args.pooler_settings.is_empty() {
        true => file.pooler_setting.clone().unwrap_or_default(),
        false => args.pooler_settings.clone(),
    };
    let settings = settings
        .iter()
        .map(|text| check_setting(text))
        .collect::<Result<Vec<_>, _>>()?;
    match args.pooler.as_deref().or(file.pooler.as_deref()) {
        Some("pgbouncer") => Ok(Some(PoolerChoice { settings })),
        Some(other) => Err(invalid("--pooler", other, "use pgbouncer")),
        None if !settings.is_empty() => Err(invalid(
            "--pooler-setting",
            &settings[0].0,
            "it applies to the throwaway pooler only; give --pooler pgbouncer",
        )),
        None => Ok(None),
    }
}

fn check_setting(text: &str) -> Result<(String, String), ConfigError> {
    let (key, value) = parse_setting(text).map_err(|_| {
        invalid(
            "--pooler-setting",
            text,
            "expected KEY=VALUE, e.g. pool_mode=transaction",
        )
    })?;
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
    if LOCKED.contains(&key.as_str()) {
        return Err(invalid(
            "--pooler-setting",
            &key,
            "pgstress sets it to keep the throwaway pooler private (loopback, SCRAM, its own folder)",
        ));
    }
    Ok((key, value))
}

pub(super) fn merge_prepare(
    args: &RunArgs,
    file: &FileConfig,
) -> Result<Option<Prepare>, ConfigError> {
    match args.prepare.as_deref().or(file.prepare.as_deref()) {
        None => Ok(None),
        Some("once") => Ok(Some(Prepare::Once)),
        Some("never") => Ok(Some(Prepare::Never)),
        Some(other) => Err(invalid("--prepare", other, "use once or never")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_or_malformed_setting_is_refused() {
        assert!(check_setting("pool_mode=transaction").is_ok());
        assert!(check_setting("listen_addr=0.0.0.0").is_err());
        assert!(check_setting("auth_type=trust").is_err());
        assert!(check_setting("pool mode=x").is_err());
        assert!(check_setting("nokey").is_err());
    }
}
