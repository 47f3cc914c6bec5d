//! The numbers each chart draws, taken from the saved step rows: pure functions, so the
//! choices (axis ranges, log scale, which lines exist) are tested without drawing anything.

use std::ops::Range;

use crate::logs::StepRow;
use crate::model::outcome::FailureClass;
use crate::model::server_cpu::ServerSource;

/// A latency range wider than this ratio (max over min) is drawn on a log scale, else the
/// fast percentiles would be a flat line at the bottom of the chart.
pub const LOG_SCALE_RATIO: f64 = 50.0;

/// A named line of (requests, value) points; steps without a value are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One failure class's part of every step's bar: (requests, bottom, top).
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    pub class: FailureClass,
    pub bars: Vec<(f64, f64, f64)>,
}

pub fn failures(row: &StepRow, class: FailureClass) -> u32 {
    match class {
        FailureClass::Refused => row.refused,
        FailureClass::TooManyClients => row.too_many_clients,
        FailureClass::Auth => row.auth,
        FailureClass::Timeout => row.timeout,
        FailureClass::Query => row.query,
        FailureClass::NoRow => row.no_row,
        FailureClass::Spawn => row.spawn,
        FailureClass::Io => row.io,
        FailureClass::Client => row.client,
        FailureClass::BadValue => row.bad_value,
        FailureClass::PoolerTooManyClients => row.pooler_too_many_clients,
        FailureClass::ReadOnly => row.read_only,
        FailureClass::PoolerQueued => row.pooler_queued,
        FailureClass::Shutdown => row.shutdown,
        FailureClass::Starting => row.starting,
    }
}

/// The gap between neighbouring steps on the requests axis (the plan's `--step`).
pub fn spacing(steps: &[StepRow]) -> f64 {
    let gap = steps
        .windows(2)
        .map(|pair| f64::from(pair[1].requests) - f64::from(pair[0].requests))
        .filter(|gap| *gap > 0.0)
        .fold(f64::INFINITY, f64::min);
    if gap.is_finite() {
        gap
    } else {
        // One step: a bar as wide as a fifth of its requests, at least one request.
        steps
            .first()
            .map_or(1.0, |s| (f64::from(s.requests) * 0.5).max(1.0))
    }
}

/// The requests axis: every step, with half a step of room on either side for the bars.
pub fn requests_axis(steps: &[StepRow]) -> Range<f64> {
    let half = spacing(steps) / 2.0;
    let requests = steps.iter().map(|s| f64::from(s.requests));
    let low = requests.clone().fold(f64::INFINITY, f64::min);
    let high = requests.fold(f64::NEG_INFINITY, f64::max);
    if low.is_finite() {
        (low - half).max(0.0)..high + half
    } else {
        0.0..1.0
    }
}

/// The failed requests of each step, stacked by class in `FailureClass::ALL` order; classes
/// that never failed are left out (and so out of the legend).
pub fn failure_stacks(steps: &[StepRow]) -> Vec<Stack> {
    let mut bottoms = vec![0.0; steps.len()];
    FailureClass::ALL
        .iter()
        .filter(|class| steps.iter().any(|s| failures(s, **class) > 0))
        .map(|class| {
            let bars = steps
                .iter()
                .zip(bottoms.iter_mut())
                .map(|(step, bottom)| {
                    let from = *bottom;
                    *bottom += f64::from(failures(step, *class));
                    (f64::from(step.requests), from, *bottom)
                })
                .collect();
            Stack {
                class: *class,
                bars,
            }
        })
        .collect()
}

pub fn line(name: &str, steps: &[StepRow], value: impl Fn(&StepRow) -> Option<f64>) -> Line {
    Line {
        name: name.to_owned(),
        points: steps
            .iter()
            .filter_map(|s| value(s).map(|v| (f64::from(s.requests), v)))
            .collect(),
    }
}

pub fn wall(steps: &[StepRow]) -> Line {
    line("wall time", steps, |s| Some(s.wall_s))
}

pub fn latency(steps: &[StepRow]) -> Vec<Line> {
    vec![
        line("p50", steps, |s| s.latency_p50_ms),
        line("p90", steps, |s| s.latency_p90_ms),
        line("p99", steps, |s| s.latency_p99_ms),
        line("max", steps, |s| s.latency_max_ms),
    ]
}

/// CPU lines as (mean, peak) pairs per side, each over its own CPUs as the flags judge it: the
/// client's host over all its cores, pgstress over the CPUs it may use, the server over its
/// own (measured, or its sessions on CPU over its cores); a side never sampled (the server
/// seen by no one) has no lines at all.
pub fn cpu(steps: &[StepRow]) -> Vec<(Line, Line)> {
    let server = server_name(steps);
    let sides = [
        (
            line("client host mean", steps, |s| s.host_cpu_mean),
            line("client host peak", steps, |s| s.host_cpu_peak),
        ),
        (
            line("pgstress mean", steps, |s| s.process_cpu_own_mean),
            line("pgstress peak", steps, |s| s.process_cpu_own_peak),
        ),
        (
            line(&format!("{server} mean"), steps, |s| s.server_cpu_own_mean),
            line(&format!("{server} peak"), steps, |s| s.server_cpu_own_peak),
        ),
    ];
    sides
        .into_iter()
        .filter(|(mean, peak)| !mean.points.is_empty() || !peak.points.is_empty())
        .collect()
}

/// Steps whose server's CPU is the sampled estimate, not a measurement.
fn estimated(steps: &[StepRow]) -> impl Iterator<Item = &StepRow> {
    steps
        .iter()
        .filter(|s| s.server_source == ServerSource::SqlEstimate && s.server_cpu_own_mean.is_some())
}

/// The server's lines' name: `server` measured, `server est.` from its sessions on CPU,
/// `server (watcher)` measured on its host.
fn server_name(steps: &[StepRow]) -> &'static str {
    let drawn = || steps.iter().filter(|s| s.server_cpu_own_mean.is_some());
    let measured = drawn().any(|s| s.server_source != ServerSource::SqlEstimate);
    let watcher = drawn().any(|s| s.server_source == ServerSource::Watcher);
    match (estimated(steps).next().is_some(), measured, watcher) {
        (true, true, _) => "server (est. in part)",
        (true, false, _) => "server est.",
        (false, _, true) => "server (watcher)",
        (false, _, false) => "server",
    }
}

/// Where the CPU chart draws its saturation lines: the threshold (`--saturated-cpu`) for the
/// measured sides, and 100% where the server is the sampled estimate (its sessions on CPU
/// reaching its cores).
pub fn saturation_lines(steps: &[StepRow], threshold_pct: f64) -> Vec<f64> {
    let mut lines = vec![threshold_pct];
    if estimated(steps).next().is_some() && threshold_pct != 100.0 {
        lines.push(100.0);
    }
    lines
}

/// The CPU axis's top: a little above 100%, or above the highest line (an estimate of more
/// sessions on CPU than the server has cores passes 100%).
pub fn cpu_axis_top(lines: &[(Line, Line)]) -> f64 {
    let all: Vec<Line> = lines
        .iter()
        .flat_map(|(mean, peak)| [mean.clone(), peak.clone()])
        .collect();
    value_range(&all).map_or(105.0, |(_, high)| (high * 1.05).max(105.0))
}

/// A step's active sessions by wait class, the classes seen: `CPU 2.90, Timeout 0.10`.
pub fn aas_by_class(row: &StepRow) -> String {
    let classes = [
        ("CPU", row.server_aas_cpu),
        ("LWLock", row.server_aas_lwlock),
        ("Lock", row.server_aas_lock),
        ("IO", row.server_aas_io),
        ("IPC", row.server_aas_ipc),
        ("Client", row.server_aas_client),
        ("Timeout", row.server_aas_timeout),
        ("BufferPin", row.server_aas_bufferpin),
        ("Extension", row.server_aas_extension),
        ("Activity", row.server_aas_activity),
        ("Other", row.server_aas_other),
    ];
    let seen: Vec<String> = classes
        .into_iter()
        .filter_map(|(name, aas)| {
            aas.filter(|aas| *aas > 0.0)
                .map(|aas| format!("{name} {aas:.2}"))
        })
        .collect();
    seen.join(", ")
}

/// The lowest and highest value of the lines, if any.
pub fn value_range(lines: &[Line]) -> Option<(f64, f64)> {
    let values = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let low = values.clone().fold(f64::INFINITY, f64::min);
    let high = values.fold(f64::NEG_INFINITY, f64::max);
    low.is_finite().then_some((low, high))
}

/// Whether values from `low` to `high` need a log scale to all be readable.
pub fn use_log_scale(low: f64, high: f64) -> bool {
    low > 0.0 && high / low > LOG_SCALE_RATIO
}

/// A linear axis from zero with 10% headroom, never empty.
pub fn linear_axis(high: f64) -> Range<f64> {
    if high > 0.0 {
        0.0..high * 1.1
    } else {
        0.0..1.0
    }
}

/// A log axis from just below the lowest to just above the highest value.
pub fn log_axis(low: f64, high: f64) -> Range<f64> {
    low / 1.5..high * 1.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u32, requests: u32) -> StepRow {
        StepRow {
            step,
            requests,
            ok: requests,
            wall_s: 0.5,
            throughput_rps: 10.0,
            launch_spread_ms: 1.0,
            latency_p50_ms: Some(10.0),
            latency_p90_ms: Some(20.0),
            latency_p99_ms: Some(30.0),
            latency_max_ms: Some(40.0),
            host_cpu_mean: Some(50.0),
            host_cpu_peak: Some(90.0),
            ..StepRow::default()
        }
    }

    #[test]
    fn log_scale_only_when_the_range_is_wide() {
        assert!(!use_log_scale(10.0, 400.0));
        assert!(use_log_scale(10.0, 600.0));
        assert!(!use_log_scale(0.0, 600.0), "no log of zero");
    }

    #[test]
    fn axis_leaves_half_a_step_around_the_bars() {
        let steps = [row(1, 50), row(2, 100), row(3, 150)];
        assert_eq!(spacing(&steps), 50.0);
        assert_eq!(requests_axis(&steps), 25.0..175.0);
        assert_eq!(requests_axis(&[row(1, 5)]), 3.75..6.25);
    }

    #[test]
    fn failures_stack_in_class_order_and_skip_clean_classes() {
        let mut steps = [row(1, 50), row(2, 100)];
        steps[1].too_many_clients = 7;
        steps[1].timeout = 3;
        let stacks = failure_stacks(&steps);
        let classes: Vec<_> = stacks.iter().map(|s| s.class).collect();
        assert_eq!(
            classes,
            vec![FailureClass::TooManyClients, FailureClass::Timeout]
        );
        assert_eq!(stacks[1].bars[1], (100.0, 7.0, 10.0));
        assert_eq!(stacks[0].bars[0], (50.0, 0.0, 0.0));
    }

    #[test]
    fn steps_without_a_latency_leave_a_gap() {
        let mut steps = [row(1, 50), row(2, 100)];
        steps[1].latency_p99_ms = None;
        assert_eq!(latency(&steps)[2].points, vec![(50.0, 30.0)]);
    }

    #[test]
    fn unsampled_sides_have_no_cpu_lines() {
        let sides = cpu(&[row(1, 50)]);
        let names: Vec<_> = sides.iter().map(|(m, _)| m.name.as_str()).collect();
        assert_eq!(names, vec!["client host mean"]);
        assert_eq!(saturation_lines(&[row(1, 50)], 90.0), [90.0]);
        assert_eq!(cpu_axis_top(&sides), 105.0);
    }

    #[test]
    fn each_side_is_drawn_over_its_own_cpus() {
        // pgstress at 45% of the host is 90% of its one CPU; the server at 45% of the host,
        // 90% of its one: drawn at 90, where the flags judge them, not at 45.
        let mut step = row(1, 50);
        step.process_cpu_mean = Some(45.0);
        step.process_cpu_own_mean = Some(90.0);
        step.server_cpu_mean = Some(45.0);
        step.server_cpu_own_mean = Some(90.0);
        step.server_cpu_own_peak = Some(95.0);
        step.server_source = ServerSource::Local;
        let sides = cpu(&[step.clone()]);
        let names: Vec<_> = sides.iter().map(|(m, _)| m.name.as_str()).collect();
        assert_eq!(names, ["client host mean", "pgstress mean", "server mean"]);
        assert_eq!(sides[1].0.points, [(50.0, 90.0)]);
        assert_eq!(sides[2].0.points, [(50.0, 90.0)]);
        assert_eq!(sides[2].1.points, [(50.0, 95.0)]);
        assert_eq!(saturation_lines(&[step], 90.0), [90.0]);
    }

    #[test]
    fn the_servers_estimate_is_named_and_saturated_at_its_cores() {
        let mut step = row(1, 50);
        step.server_source = ServerSource::SqlEstimate;
        step.server_cpu_own_mean = Some(300.0);
        let sides = cpu(&[step.clone()]);
        assert_eq!(sides[1].0.name, "server est. mean");
        assert_eq!(saturation_lines(&[step.clone()], 90.0), [90.0, 100.0]);
        assert_eq!(saturation_lines(&[step.clone()], 100.0), [100.0]);
        assert_eq!(cpu_axis_top(&sides), 315.0);
        let mut local = row(2, 100);
        local.server_source = ServerSource::Local;
        local.server_cpu_own_mean = Some(50.0);
        assert_eq!(
            cpu(&[step.clone(), local])[1].0.name,
            "server (est. in part) mean"
        );
        let mut watched = row(1, 50);
        watched.server_source = ServerSource::Watcher;
        watched.server_cpu_own_mean = Some(50.0);
        assert_eq!(cpu(&[watched])[1].0.name, "server (watcher) mean");
        // An estimate without the server's cores has no CPU to draw, and no line.
        step.server_cpu_own_mean = None;
        assert_eq!(cpu(&[step.clone()]).len(), 1);
        assert_eq!(saturation_lines(&[step], 90.0), [90.0]);
    }
}
