//! What a run sets up before its first step: the throwaway server and pooler, the demo
//! parameters, the request every step sends and the engine that sends it, and the plan's facts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::RunConfig;
use crate::config::data::ParamData;
use crate::engine::Engine;
use crate::engine::burst::Burst;
use crate::engine::pool::{self, Pool};
use crate::engine::rate::Rate;
use crate::measure::sampler::Sampler;
use crate::measure::sampler::cpu::{LocalPooler, LocalServer};
use crate::measure::sampler::pooler_view::PoolerViewProbe;
use crate::model::facts::{PlanFacts, ServerFacts};
use crate::model::plan::Mode;
use crate::model::sample::{PoolerStatsWhole, PoolerViewSample};
use crate::output::printer::Printer;
use crate::pg::local::pooler::ThrowawayPooler;
use crate::pg::local::server::ThrowawayServer;
use crate::pg::request::{Prepare, RequestClient, RequestSpec};
use crate::pg::target::ConnectTarget;
use crate::pg::wire;

/// A panic in a request thread (or a pool worker's) is that request's failure (`client`), counted and shown in the
/// step's first messages: a backtrace per request would bury the run's output.
pub fn quiet_request_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !crate::engine::runs_requests(std::thread::current().name()) {
            default(info);
        }
    }));
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

/// The monitoring connection, pgstress's lean one; without one the run goes on, without
/// server statistics.
pub fn open_monitor(
    target: &ConnectTarget,
    printer: &mut Printer<std::io::Stdout>,
) -> Option<wire::Connection> {
    target
        .connect_lean(target.setup_timeout(), "pgstress-monitor")
        .map_err(|err| {
            printer.note(format!(
                "note: no monitoring connection ({err}); carrying on without server statistics"
            ))
        })
        .ok()
}

/// The target as the header shows it, with where it was found.
pub fn describe_target(target: &ConnectTarget) -> String {
    match target.origin() {
        Some(origin) => format!("{} ({origin})", target.redacted()),
        None => target.redacted().to_owned(),
    }
}

/// What every request sends: through a pooler (the target refused the `options` startup
/// parameter) the settings go in each transaction and kept connections prepare nothing.
pub fn request_spec(config: &RunConfig, target: &ConnectTarget) -> anyhow::Result<RequestSpec> {
    let prepare = config.prepare.unwrap_or(match target.settings_in_band() {
        true => Prepare::Never,
        false => Prepare::Once,
    });
    let spec = RequestSpec::new(
        target.request_config(config.timeout, "pgstress", config.allow_writes),
        target.tls_options(),
        target.route(),
        config.query.clone(),
        config.timeout,
        config.client,
    )?;
    Ok(spec.with_settings(target.in_band(config.timeout, config.allow_writes), prepare))
}

/// Connections are files: a step that may hold more than this process may open measures the
/// open-file limit, not the server.
pub fn warn_if_open_files_short(
    config: &RunConfig,
    engine: &dyn Engine,
    printer: &mut Printer<std::io::Stdout>,
) {
    let open_files = crate::sys::limits::raise_open_files_limit();
    let largest_concurrency = engine
        .concurrency(config.plan.largest())
        .unwrap_or_else(|| config.mode.requests_for(config.plan.largest()));
    // The lean connection holds its socket only; the postgres crate adds its runtime's epoll
    // and eventfd.
    let per_connection = match config.client {
        RequestClient::Lean { .. } => 1,
        RequestClient::Postgres => crate::sys::limits::FILES_PER_CONNECTION,
    };
    let files_needed = u64::from(largest_concurrency) * per_connection + 64;
    if files_needed > open_files {
        printer.note(format!(
            "note: the largest step may hold {largest_concurrency} connections, about {files_needed} open files, \
             but this process may open {open_files}: beyond that requests fail as `client` (too many open files, pgstress's own limit); \
             raise `ulimit -n` for a clean measurement"
        ));
    }
}

/// The engine of the chosen mode; a pool opens its connections here, before step 1.
pub fn build_engine(
    config: &RunConfig,
    spec: Arc<RequestSpec>,
    server: &ServerFacts,
) -> anyhow::Result<Box<dyn Engine>> {
    Ok(match &config.mode {
        Mode::Burst => Box::new(Burst::new(spec, config.stack_size)),
        Mode::Pool {
            workers,
            connect_per_request,
        } => {
            let largest = config.plan.largest();
            let workers = workers
                .unwrap_or_else(|| pool::default_workers(server.usable_connections(), largest));
            let pool = Pool::start(
                spec,
                workers,
                *connect_per_request,
                largest as usize,
                config.reconnect,
            )
            .context("cannot start the pool's worker threads")?;
            Box::new(pool)
        }
        Mode::Rate {
            duration,
            arrival,
            max_inflight,
        } => Box::new(Rate::new(
            spec,
            *duration,
            *arrival,
            *max_inflight,
            config.stack_size,
        )),
    })
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

pub fn start_throwaway(
    settings: &[(String, String)],
    cpus: Option<&[usize]>,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<ThrowawayServer> {
    let server = ThrowawayServer::start_on(settings, cpus)?;
    for removed in server.removed_leftovers() {
        printer.note(removed);
    }
    printer.note(format!(
        "started a throwaway PostgreSQL server on 127.0.0.1:{} in {} (binaries: {}); it is removed after the run",
        server.port(),
        server.folder().display(),
        server.bin_dir().display()
    ));
    let mut client = server
        .target()
        .connect(crate::pg::target::DEFAULT_SETUP_TIMEOUT, "pgstress-setup")
        .context("cannot connect to the throwaway server")?;
    crate::pg::local::demo::seed(&mut client, crate::pg::local::demo::DEFAULT_ROWS)
        .context("cannot create the demo data")?;
    Ok(server)
}

pub fn start_pooler(
    upstream: &ConnectTarget,
    settings: &[(String, String)],
    cpus: Option<&[usize]>,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<ThrowawayPooler> {
    let pooler = ThrowawayPooler::start_on(upstream, settings, cpus)?;
    printer.note(format!(
        "started a throwaway pooler: {} in {}; it is removed after the run",
        pooler.description(),
        pooler.folder().display()
    ));
    Ok(pooler)
}

/// The pooler as a third side: its process on this machine (the throwaway one, or whatever
/// listens on a loopback target's port that is not PostgreSQL) and its console, where the
/// login may read it.
pub fn pooler_side(
    pooler: Option<&ThrowawayPooler>,
    target: &ConnectTarget,
    server: Option<LocalServer>,
) -> (Option<LocalPooler>, Option<postgres::Client>) {
    match pooler {
        Some(pooler) => (
            Some(LocalPooler::of_pid(pooler.pid())),
            crate::pg::local::console::open(&pooler.console_target()),
        ),
        None => {
            let local = target
                .is_loopback()
                .then(|| LocalPooler::listening_on(target.first_address().1, server))
                .flatten();
            let console = match local.is_some() || target.settings_in_band() {
                true => crate::pg::local::console::open(target),
                false => None,
            };
            (local, console)
        }
    }
}

/// The header's pooler line, with what pgstress could see of it.
pub fn describe_pooler(
    text: Option<String>,
    local: Option<LocalPooler>,
    console: bool,
) -> Option<String> {
    let text = match (text, local) {
        (Some(text), _) => text,
        (None, Some(_)) => "a pooler listens on the target's port".to_owned(),
        (None, None) => return None,
    };
    let cpu = local.map(|pooler| match pooler.cores {
        Some(cores) => format!("its CPU sampled (pid {}, {cores} core)", pooler.pid),
        None => format!("its CPU sampled (pid {} and its children)", pooler.pid),
    });
    let console = console.then(|| "its console read (SHOW POOLS, SHOW STATS)".to_owned());
    let seen: Vec<String> = cpu.into_iter().chain(console).collect();
    Some(match seen.is_empty() {
        true => text,
        false => format!("{text}; {}", seen.join(", ")),
    })
}

/// The sampler of the pooler's console, when it is reachable.
pub fn start_console(
    config: &RunConfig,
    console: Option<postgres::Client>,
) -> anyhow::Result<Option<Sampler<PoolerViewSample, PoolerStatsWhole>>> {
    console
        .map(|client| {
            Sampler::start(
                "pgstress-console",
                config.sample_every,
                PoolerViewProbe::new(client),
            )
        })
        .transpose()
        .context("cannot start the pooler's console sampler")
}

/// The target the load goes to (the throwaway pooler's, when there is one) and the pooler as
/// the header names it.
pub fn load_target(
    pooler: Option<&ThrowawayPooler>,
    target: &ConnectTarget,
) -> (ConnectTarget, Option<String>) {
    match pooler {
        Some(pooler) => (
            pooler.target(),
            Some(format!(
                "{}, in front of {}",
                pooler.description(),
                target.redacted()
            )),
        ),
        None => (target.clone(), None),
    }
}
