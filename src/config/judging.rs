//! How the steps are judged (SLO, stop rules, gates, flag thresholds), merged from the
//! command line and the file apart from the plan, since none of it changes what is sent.

use std::time::Duration;

use crate::cli::RunArgs;
use crate::config::error::ConfigError;
use crate::config::values::{optional_latency, percentage, share};
use crate::judge::gate::Gate;
use crate::model::rules::{StopRules, Thresholds};

/// How the steps are judged: SLO, stop rules, gates, flag thresholds.
pub(super) struct Judging {
    pub(super) slo_p99: Option<Duration>,
    pub(super) stop: StopRules,
    pub(super) gates: Vec<Gate>,
    pub(super) thresholds: Thresholds,
    pub(super) tolerate: f64,
}

impl Judging {
    pub(super) fn merge(options: &RunArgs) -> Result<Self, ConfigError> {
        let slo_p99 = optional_latency("--slo-p99", options.slo_p99)?;
        let stop_p99 = optional_latency("--stop-p99", options.stop_p99)?;
        let failure_rate = share("--stop-failure-rate", options.stop_failure_rate, 0.5)?;
        let stop = match options.no_stop.unwrap_or(false) {
            true => StopRules::none(),
            false => StopRules {
                failure_rate: Some(failure_rate),
                p99: stop_p99,
                unresponsive: true,
            },
        };
        let defaults = Thresholds::default();
        let thresholds = Thresholds {
            saturated_cpu_pct: percentage(
                "--saturated-cpu",
                options.saturated_cpu,
                defaults.saturated_cpu_pct,
            )?,
            spread_ratio: share(
                "--spread-ratio",
                options.spread_ratio,
                defaults.spread_ratio,
            )?,
            spread_max: optional_latency("--spread-max", options.spread_max)?
                .unwrap_or(defaults.spread_max),
            starved_wait_share: defaults.starved_wait_share,
            // Set with the sampling interval, once it is known (`RunConfig::validate`).
            min_judged_wall: defaults.min_judged_wall,
        };
        Ok(Judging {
            tolerate: share("--tolerate", options.tolerate, 0.0)?,
            slo_p99,
            stop,
            gates: options.fail_if.clone().unwrap_or_default(),
            thresholds,
        })
    }
}
