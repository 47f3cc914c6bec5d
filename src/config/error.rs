//! The one error type of configuration, so that every refusal names the option, the value
//! and what to give instead.

use std::path::PathBuf;

use thiserror::Error;

use crate::judge::gate::GateError;
use crate::pg::target::TargetError;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}; check the path given to --config")]
    ReadFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("invalid {option} '{value}': {reason}")]
    Invalid {
        option: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Tls(#[from] crate::pg::target::tls::TlsError),
}

pub(super) fn invalid(
    option: &'static str,
    value: impl ToString,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        option,
        value: value.to_string(),
        reason: reason.into(),
    }
}
