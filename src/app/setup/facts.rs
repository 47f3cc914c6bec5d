//! What the header and the summary say of a run: the target, the plan, the parameters
//! (the demo rows' when the throwaway server was seeded with them).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::config::RunConfig;
use crate::config::data::ParamData;
use crate::engine::Engine;
use crate::measure::sampler::cpu::LocalServer;
use crate::model::facts::PlanFacts;
use crate::model::server_cpu::ServerSource;
use crate::output::printer::Printer;
use crate::pg::target::ConnectTarget;

/// The target as the header shows it, with where it was found.
pub fn describe_target(target: &ConnectTarget) -> String {
    match target.origin() {
        Some(origin) => format!("{} ({origin})", target.redacted()),
        None => target.redacted().to_owned(),
    }
}

pub fn plan_facts(config: &RunConfig, data: Option<&ParamData>, engine: &dyn Engine) -> PlanFacts {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let bound: Duration = (1..=config.plan.steps)
        .map(|i| engine.step_bound(config.plan.requests_at(i)) + config.pause)
        .sum();
    PlanFacts {
        mode: config.mode.name().to_owned(),
        unit: config.mode.unit().to_owned(),
        engine: engine.describe(),
        steps: config.plan.steps,
        start: config.plan.start,
        step: config.plan.step,
        largest_step: config.plan.largest(),
        total_requests: (1..=config.plan.steps)
            .map(|i| u64::from(config.mode.requests_for(config.plan.requests_at(i))))
            .sum(),
        query: config.query.clone(),
        data: data.map(|d| match config.data_from_demo {
            true => format!(
                "$1 from {} values of the demo table (no data/ folder here)",
                d.total_values()
            ),
            false => describe_data(d, &config.data_dir, config.column),
        }),
        timeout_ms: ms(config.timeout),
        sample_every_ms: ms(config.sample_every),
        stop_failure_rate: config.stop.failure_rate,
        stop_p99_ms: config.stop.p99.map(ms),
        stop_when_unresponsive: config.stop.unresponsive,
        slo_p99_ms: config.slo_p99.map(ms),
        bound_s: bound.as_secs_f64(),
        largest_step_bound_s: engine.step_bound(config.plan.largest()).as_secs_f64(),
        saturated_cpu_pct: config.thresholds.saturated_cpu_pct,
        allow_writes: config.allow_writes,
        tolerate: config.tolerate,
        step_duration_s: config.mode.timed().map(|d| d.as_secs_f64()),
    }
}

pub fn describe_data(data: &ParamData, dir: &Path, column: usize) -> String {
    format!(
        "$1 from {} values in {} files of {} (column {column})",
        data.total_values(),
        data.files().len(),
        dir.display()
    )
}

/// With no `--data` and no `data/` against the throwaway server: the parameter values drawn
/// from the demo rows it was seeded with, written to a temporary folder.
pub fn demo_data(
    config: &RunConfig,
    target: &ConnectTarget,
    dir: &mut Option<tempfile::TempDir>,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<Option<ParamData>> {
    if !config.data_from_demo {
        return Ok(None);
    }
    let folder = tempfile::Builder::new()
        .prefix("pgstress-demo-data-")
        .tempdir()
        .context("cannot create a folder for the demo parameters")?;
    let mut client = target
        .connect(target.setup_timeout(), "pgstress-setup")
        .context("cannot connect to the throwaway server")?;
    let values = crate::pg::local::demo::write_data(&mut client, folder.path())?;
    printer.note(format!(
        "no data/ folder here and no --data: drawing the parameters from the demo table's {values} sampled rows"
    ));
    let data = ParamData::load(folder.path(), 0)?;
    *dir = Some(folder);
    Ok(Some(data))
}

/// The hosts of the target's list, named; none with one host.
pub fn node_names(target: &ConnectTarget) -> Vec<String> {
    match target.hosts().endpoints.as_slice() {
        [_] => Vec::new(),
        many => many.iter().map(|e| e.describe()).collect(),
    }
}

/// Where the server side's figures come from at the start: its processes here, else SQL.
pub fn server_source(local: Option<LocalServer>, monitor: bool) -> ServerSource {
    match (local, monitor) {
        (Some(_), _) => ServerSource::Local,
        (None, true) => ServerSource::SqlEstimate,
        (None, false) => ServerSource::None,
    }
}

/// What the header says of a target that turned out to be a pooler.
pub fn detected_pooler(target: &ConnectTarget) -> Option<String> {
    target.settings_in_band().then(|| {
        "the target refused the `options` startup parameter, as a pooler does: settings sent in \
         each request's transaction"
            .to_owned()
    })
}
