//! An agent's caps (`--max-connections`, `--max-duration`): what it takes on for any
//! coordinator, checked once for `pgstress agent` and for the manifests that start agents.

use std::time::Duration;

use crate::cli::CapsArgs;
use crate::cli::values::Span;
use crate::config::error::{ConfigError, invalid};
use crate::fleet::agent::Caps;

const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(3600);

/// The caps given, checked, with the defaults for the rest.
pub fn agent_caps(args: &CapsArgs) -> Result<Caps, ConfigError> {
    if args.max_connections == Some(0) {
        return Err(invalid(
            "--max-connections",
            0,
            "give at least 1: an agent that may open no connection sends no load",
        ));
    }
    if let Some(span @ Span(duration)) = args.max_duration
        && duration.is_zero()
    {
        return Err(invalid(
            "--max-duration",
            span,
            "give more than 0s, e.g. 30m",
        ));
    }
    Ok(Caps {
        max_connections: args.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        max_duration: args.max_duration.map_or(DEFAULT_MAX_DURATION, |Span(d)| d),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_need_a_connection_and_some_time() {
        let caps = |max_connections, max_duration: Option<&str>| {
            agent_caps(&CapsArgs {
                max_connections,
                max_duration: max_duration.map(|d| d.parse().unwrap()),
            })
        };
        let defaults = caps(None, None).unwrap();
        assert_eq!(defaults.max_connections, 10_000);
        assert_eq!(defaults.max_duration, Duration::from_secs(3600));
        assert!(
            caps(Some(0), None)
                .unwrap_err()
                .to_string()
                .contains("--max-connections '0'")
        );
        assert!(
            caps(None, Some("0s"))
                .unwrap_err()
                .to_string()
                .contains("--max-duration '0s'")
        );
        assert_eq!(caps(Some(5), Some("30m")).unwrap().max_connections, 5);
    }
}
