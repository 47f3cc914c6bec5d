//! Living through an outage: whether and how fast a pool worker reconnects.

use crate::cli::RunArgs;
use crate::config::error::{ConfigError, invalid};
use crate::config::values::or_default;
// The first wait after a failed connect: `--reconnect-max` below it would never back off.
use crate::engine::pool::FIRST_BACKOFF;
use crate::model::fault::{Fault, FaultKind};
use crate::model::plan::{Mode, Reconnect};

pub(super) fn merge_reconnect(options: &RunArgs, mode: &Mode) -> Result<Reconnect, ConfigError> {
    let default = Reconnect::default();
    let max = or_default(options.reconnect_max, default.max);
    if max < FIRST_BACKOFF {
        return Err(invalid(
            "--reconnect-max",
            humantime::format_duration(max),
            "the first reconnect waits 10ms; give at least 10ms",
        ));
    }
    let enabled = options.reconnect.unwrap_or(default.enabled);
    let pool = matches!(mode, Mode::Pool { .. });
    if !pool && (options.reconnect_max.is_some() || options.reconnect == Some(false)) {
        let (option, value) = match options.reconnect {
            Some(false) => ("--reconnect", "false".to_owned()),
            _ => (
                "--reconnect-max",
                humantime::format_duration(max).to_string(),
            ),
        };
        return Err(invalid(
            option,
            value,
            "only pool mode keeps connections to reconnect (burst and rate open one per request); add --mode pool or drop it",
        ));
    }
    Ok(Reconnect { enabled, max })
}

/// A fault pgstress causes: only on the server it started, which it may break.
pub(super) fn merge_fault(
    options: &RunArgs,
    target: &crate::config::TargetChoice,
) -> Result<Option<Fault>, ConfigError> {
    let throwaway = matches!(target, crate::config::TargetChoice::Throwaway { .. });
    if options.standby == Some(true) && !throwaway {
        return Err(invalid(
            "--standby",
            true,
            "pgstress starts a standby only beside the throwaway server it starts; drop --dsn",
        ));
    }
    let Some(fault) = options.fault else {
        return Ok(None);
    };
    if fault.kind == FaultKind::Failover && options.standby != Some(true) {
        return Err(invalid(
            "--fault",
            fault,
            "a failover needs a standby to promote; add --standby",
        ));
    }
    if !matches!(target, crate::config::TargetChoice::Throwaway { .. }) {
        return Err(invalid(
            "--fault",
            fault,
            "pgstress breaks only the throwaway server it starts; drop --dsn, or cause the fault yourself (the outage is measured the same way)",
        ));
    }
    Ok(Some(fault))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::values::Span;
    use std::time::Duration;

    fn pool() -> Mode {
        Mode::Pool {
            workers: None,
            connect_per_request: false,
            duration: None,
        }
    }

    #[test]
    fn reconnecting_is_on_with_a_one_second_cap_unless_told_otherwise() {
        let options = RunArgs::default();
        assert_eq!(
            merge_reconnect(&options, &pool()).unwrap(),
            Reconnect {
                enabled: true,
                max: Duration::from_secs(1)
            }
        );
        let options = RunArgs {
            reconnect: Some(false),
            reconnect_max: Some(Span(Duration::from_millis(250))),
            ..RunArgs::default()
        };
        let reconnect = merge_reconnect(&options, &pool()).unwrap();
        assert_eq!((reconnect.enabled, reconnect.max.as_millis()), (false, 250));
    }

    #[test]
    fn a_cap_below_the_first_wait_or_outside_pool_mode_is_refused() {
        let options = RunArgs {
            reconnect_max: Some(Span(Duration::from_millis(5))),
            ..RunArgs::default()
        };
        let err = merge_reconnect(&options, &pool()).unwrap_err().to_string();
        assert!(
            err.contains("--reconnect-max") && err.contains("5ms"),
            "{err}"
        );
        let options = RunArgs {
            reconnect: Some(false),
            ..RunArgs::default()
        };
        let err = merge_reconnect(&options, &Mode::Burst)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--reconnect") && err.contains("--mode pool"),
            "{err}"
        );
    }
}
