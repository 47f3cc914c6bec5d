//! Single values as the user writes them (durations, shares, percentages, server settings),
//! each refused with the option it came from.

use std::time::Duration;

use crate::config::error::{ConfigError, invalid};

/// The longest duration any option takes.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

pub(super) fn parse_duration(
    option: &'static str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let duration = humantime::parse_duration(text.trim()).map_err(|_| {
        invalid(
            option,
            text,
            "expected a duration such as 10s, 1.5s or 500ms",
        )
    })?;
    if duration > MAX_DURATION {
        return Err(invalid(
            option,
            text,
            "give at most 24h; longer is a mistake for a stress test (and past what \
             PostgreSQL's statement_timeout takes)",
        ));
    }
    Ok(duration)
}

/// A latency limit, if given: zero would hold every step to an impossible bound.
pub(super) fn optional_latency(
    option: &'static str,
    value: Option<&str>,
) -> Result<Option<Duration>, ConfigError> {
    value
        .map(
            |text| match parse_duration(option, Some(text), Duration::ZERO)? {
                zero if zero.is_zero() => Err(invalid(
                    option,
                    text,
                    "give a latency above zero, e.g. 250ms",
                )),
                limit => Ok(limit),
            },
        )
        .transpose()
}

pub(super) fn share(
    option: &'static str,
    value: Option<f64>,
    default: f64,
) -> Result<f64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Some(v) => Err(invalid(option, v, "give a share between 0 and 1, e.g. 0.5")),
    }
}

pub(super) fn percentage(
    option: &'static str,
    value: Option<f64>,
    default: f64,
) -> Result<f64, ConfigError> {
    match value {
        None => Ok(default),
        Some(pct) if pct > 0.0 && pct <= 100.0 => Ok(pct),
        Some(pct) => Err(invalid(
            option,
            pct,
            "give a percentage above 0, at most 100",
        )),
    }
}

pub(super) fn parse_setting(text: &str) -> Result<(String, String), ConfigError> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(invalid(
            "--server-setting",
            text,
            "expected KEY=VALUE, e.g. max_connections=300",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_setting_needs_key_and_value() {
        assert_eq!(
            parse_setting("max_connections=20").unwrap(),
            ("max_connections".into(), "20".into())
        );
        assert!(parse_setting("max_connections").is_err());
    }
}
