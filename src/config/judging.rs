//! How the steps are judged (SLO, stop rules, gates, flag thresholds), merged from the
//! command line and the file apart from the plan, since none of it changes what is sent.

use std::time::Duration;

use crate::cli::RunArgs;
use crate::config::error::ConfigError;
use crate::config::file::FileConfig;
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
    pub(super) fn merge(args: &RunArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let latency = |option: &'static str, cli: &Option<String>, file: &Option<String>| {
            optional_latency(option, cli.as_deref().or(file.as_deref()))
        };
        let slo_p99 = latency("--slo-p99", &args.slo_p99, &file.slo_p99)?;
        let stop_p99 = latency("--stop-p99", &args.stop_p99, &file.stop_p99)?;
        let failure_rate = share(
            "--stop-failure-rate",
            args.stop_failure_rate.or(file.stop_failure_rate),
            0.5,
        )?;
        let stop = if args.no_stop || file.no_stop == Some(true) {
            StopRules::none()
        } else {
            StopRules {
                failure_rate: Some(failure_rate),
                p99: stop_p99,
                unresponsive: true,
            }
        };
        let gate_texts = if args.fail_if.is_empty() {
            file.fail_if.clone().unwrap_or_default()
        } else {
            args.fail_if.clone()
        };
        let gates = gate_texts
            .iter()
            .map(|text| text.parse())
            .collect::<Result<Vec<Gate>, _>>()?;
        let defaults = Thresholds::default();
        let thresholds = Thresholds {
            saturated_cpu_pct: percentage(
                "--saturated-cpu",
                args.saturated_cpu.or(file.saturated_cpu),
                defaults.saturated_cpu_pct,
            )?,
            spread_ratio: share(
                "--spread-ratio",
                args.spread_ratio.or(file.spread_ratio),
                defaults.spread_ratio,
            )?,
            spread_max: latency("--spread-max", &args.spread_max, &file.spread_max)?
                .unwrap_or(defaults.spread_max),
            starved_wait_share: defaults.starved_wait_share,
        };
        let tolerate = share("--tolerate", args.tolerate.or(file.tolerate), 0.0)?;
        Ok(Judging {
            tolerate,
            slo_p99,
            stop,
            gates,
            thresholds,
        })
    }
}
