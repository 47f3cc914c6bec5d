//! Single values checked against what their option allows (shares, percentages, latencies),
//! each refused with the option it came from. Their text was parsed at the edge (`cli::values`).

use std::time::Duration;

use crate::cli::values::Span;
use crate::config::error::{ConfigError, invalid};

/// A duration option's value, or its default.
pub(super) fn or_default(value: Option<Span>, default: Duration) -> Duration {
    value.map_or(default, |Span(duration)| duration)
}

/// A latency limit, if given: zero would hold every step to an impossible bound.
pub(super) fn optional_latency(
    option: &'static str,
    value: Option<Span>,
) -> Result<Option<Duration>, ConfigError> {
    match value {
        Some(span) if span.0.is_zero() => Err(invalid(
            option,
            span,
            "give a latency above zero, e.g. 250ms",
        )),
        other => Ok(other.map(|Span(limit)| limit)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_latency_is_refused_naming_the_option() {
        let zero = optional_latency("--slo-p99", Some(Span(Duration::ZERO)));
        assert!(zero.unwrap_err().to_string().contains("--slo-p99 '0s'"));
        let limit = optional_latency("--slo-p99", Some(Span(Duration::from_millis(5))));
        assert_eq!(limit.unwrap(), Some(Duration::from_millis(5)));
        assert_eq!(optional_latency("--slo-p99", None).unwrap(), None);
    }

    #[test]
    fn shares_and_percentages_keep_their_bounds() {
        assert_eq!(share("--tolerate", Some(1.0), 0.0).unwrap(), 1.0);
        assert!(share("--tolerate", Some(1.5), 0.0).is_err());
        assert!(percentage("--saturated-cpu", Some(0.0), 90.0).is_err());
        assert_eq!(percentage("--saturated-cpu", None, 90.0).unwrap(), 90.0);
    }
}
