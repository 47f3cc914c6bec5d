//! One `pgstress run`: check the input, reach (or start) the server, run the ramp step by step,
//! judging and writing each step as soon as it ends, and clean up however the run ends.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::preflight::{SETUP_TIMEOUT, preflight};
use super::step_loop::{Ramp, StepLoop, judge_run, write_summary};
use crate::Status;
use crate::config::data::ParamData;
use crate::config::{RunConfig, TargetChoice};
use crate::engine::Engine;
use crate::engine::burst::Burst;
use crate::engine::pool::{self, Pool};
use crate::engine::rate::Rate;
use crate::logs::{self, RunLogs};
use crate::measure::sampler::Sampler;
use crate::measure::sampler::cpu::{CpuProbe, LocalServer};
use crate::measure::sampler::server_stats::ServerStatsProbe;
use crate::model::facts::{PlanFacts, RunFacts, ServerFacts};
use crate::model::plan::Mode;
use crate::model::sample::{CpuSample, ServerStatsSample};
use crate::output::printer::Printer;
use crate::output::progress::Progress;
use crate::pg::pooler::ThrowawayPooler;
use crate::pg::request::{Prepare, RequestClient, RequestSpec};
use crate::pg::server::ThrowawayServer;
use crate::pg::target::ConnectTarget;
use crate::sys::interrupt;

pub fn run(config: RunConfig) -> anyhow::Result<Status> {
    interrupt::install(crate::pg::server::kill_all_now);
    // Input first: nothing is sent to any server before it is known good.
    let data = match config.takes_parameter {
        true => Some(ParamData::load_skipping(
            &config.data_dir,
            config.column,
            config.skip_header,
        )?),
        false => None,
    };
    logs::check_writable(&config.logs_dir)?;

    let mut printer = Printer::new(std::io::stdout());
    let throwaway = match &config.target {
        TargetChoice::Throwaway { settings } => Some(start_throwaway(settings, &mut printer)?),
        TargetChoice::Server(_) => None,
    };
    let target = match (&config.target, &throwaway) {
        (TargetChoice::Server(target), _) => (**target).clone(),
        (_, Some(server)) => server.target(),
        (TargetChoice::Throwaway { .. }, None) => unreachable!("a throwaway target has a server"),
    };
    let pooler = match &config.pooler {
        Some(choice) => Some(start_pooler(&target, &choice.settings, &mut printer)?),
        None => None,
    };
    let (load_target, pooler_text) = match &pooler {
        Some(pooler) => (
            pooler.target(),
            Some(format!(
                "{}, in front of {}",
                pooler.description(),
                target.redacted()
            )),
        ),
        None => (target, None),
    };
    let outcome = run_against(
        &config,
        &load_target,
        (throwaway.as_ref(), pooler_text),
        data.as_ref(),
        &mut printer,
    );
    if let Some(pooler) = pooler {
        pooler.stop();
        printer.note("throwaway pooler stopped and removed");
    }
    if let Some(server) = throwaway {
        server.stop();
        printer.note("throwaway server stopped and removed");
    }
    let (ramp, breaches) = outcome?;
    if interrupt::requested() {
        printer.note(format!(
            "interrupted after {} of {} steps; their logs are on disk",
            ramp.results.len(),
            config.plan.steps
        ));
        return Ok(Status::Interrupted);
    }
    if breaches.iter().any(|(_, breach)| breach.is_some()) {
        return Ok(Status::GateBreached);
    }
    Ok(Status::Completed)
}

/// Gate texts and, for each, why it was breached (None: it passed).
type Breaches = Vec<(String, Option<String>)>;

/// The run against a server that is up: pre-flight, the samplers, the ramp, the verdict.
fn run_against(
    config: &RunConfig,
    target: &ConnectTarget,
    (throwaway, pooler): (Option<&ThrowawayServer>, Option<String>),
    data: Option<&ParamData>,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<(Ramp, Breaches)> {
    let run_start = Instant::now();
    let started_at = chrono::Local::now();
    let (target, server, visible_server) = preflight(target, config)?;
    let target = &target;
    let local_server = match throwaway {
        Some(server) => Some(LocalServer {
            postmaster_pid: server.postmaster_pid(),
        }),
        None => visible_server,
    };
    let monitor = target
        .connect(SETUP_TIMEOUT, "pgstress-monitor")
        .map_err(|err| {
            printer.note(format!(
                "note: no monitoring connection ({err}); carrying on without server statistics"
            ))
        })
        .ok();
    let spec = Arc::new(request_spec(config, target)?);
    super::preflight::probe_requests(&spec, data)?;
    if let Mode::Pool {
        connect_per_request: false,
        ..
    } = config.mode
    {
        super::preflight::probe_kept(target, &spec, data)?;
    }
    let mut engine = build_engine(config, spec, &server)?;
    warn_if_open_files_short(config, engine.as_ref(), printer);
    let cpus = crate::sys::cpus::this_process();
    let facts = RunFacts {
        pgstress_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: started_at.to_rfc3339(),
        plan: plan_facts(config, data, engine.as_ref()),
        target: target.redacted().to_owned(),
        throwaway: throwaway.is_some(),
        pooler: pooler.or_else(|| {
            target.settings_in_band().then(|| {
                "the target refused the `options` startup parameter, as a pooler does: settings \
                 sent in each request's transaction"
                    .to_owned()
            })
        }),
        server,
        server_cpu_visible: local_server.is_some(),
        server_stats_visible: monitor.is_some(),
        client: cpus.into(),
    };

    let mut logs = RunLogs::create_now(&config.logs_dir, config.log_requests)?;
    printer.header(&facts, &logs.paths());
    let (cpu_sampler, stats_sampler) = start_samplers(config, local_server, monitor, run_start)?;
    let mut progress = Progress::new(config.plan.steps, config.quiet);
    let ramp = StepLoop {
        config,
        facts: &facts,
        cpus,
        data,
        cpu_sampler: &cpu_sampler,
        stats_sampler: stats_sampler.as_ref(),
        logs: &mut logs,
        printer,
        progress: &mut progress,
        stop_requested: &interrupt::requested,
    }
    .run(engine.as_mut())?;
    drop((cpu_sampler, stats_sampler, engine));
    progress.finish();
    let breaches = finish(config, &facts, &ramp, &logs, printer)?;
    Ok((ramp, breaches))
}

/// What every request sends: through a pooler (the target refused the `options` startup
/// parameter) the settings go in each transaction and kept connections prepare nothing.
fn request_spec(config: &RunConfig, target: &ConnectTarget) -> anyhow::Result<RequestSpec> {
    let prepare = config.prepare.unwrap_or(match target.settings_in_band() {
        true => Prepare::Never,
        false => Prepare::Once,
    });
    let spec = RequestSpec::new(
        target.request_config(config.timeout, "pgstress", config.allow_writes),
        target.tls_options(),
        config.query.clone(),
        config.timeout,
        config.client,
    )?;
    Ok(spec.with_settings(target.in_band(config.timeout, config.allow_writes), prepare))
}

/// The CPU sampler and, with a monitoring connection, the server statistics sampler.
fn start_samplers(
    config: &RunConfig,
    local_server: Option<LocalServer>,
    monitor: Option<postgres::Client>,
    run_start: Instant,
) -> anyhow::Result<(Sampler<CpuSample>, Option<Sampler<ServerStatsSample>>)> {
    let cpu_sampler: Sampler<CpuSample> = Sampler::start(
        "pgstress-cpu",
        config.sample_every,
        CpuProbe::new(local_server, run_start),
    )
    .context("cannot start the CPU sampler")?;
    let stats_sampler: Option<Sampler<ServerStatsSample>> = monitor
        .map(|client| {
            Sampler::start(
                "pgstress-monitor",
                config.sample_every,
                ServerStatsProbe::new(client),
            )
        })
        .transpose()
        .context("cannot start the server statistics sampler")?;
    Ok((cpu_sampler, stats_sampler))
}

/// After the last step: the verdict, the gates, the final summary and what to do next.
fn finish(
    config: &RunConfig,
    facts: &RunFacts,
    ramp: &Ramp,
    logs: &RunLogs,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<Breaches> {
    if let Some((step, reason)) = &ramp.stopped
        && *step < config.plan.steps
    {
        printer.note(format!("stopped after step {step}: {}", reason.describe()));
    }
    let verdict = judge_run(ramp, config, facts);
    let breaches: Breaches = config
        .gates
        .iter()
        .map(|gate| (gate.to_string(), gate.breach(&verdict, &ramp.results)))
        .collect();
    let complete = !interrupt::requested() && ramp.log_error.is_none();
    let summary_written = match &ramp.log_error {
        Some(_) => Ok(()),
        None => write_summary(logs, facts, &ramp.summaries, &verdict, &breaches, complete),
    };
    // What was measured is printed even when the disk is full: the terminal may be all there is.
    printer.summary(&ramp.results);
    printer.verdict(&verdict);
    for (gate, breach) in &breaches {
        match breach {
            Some(why) => printer.note(format!("gate breached: {why}")),
            None => printer.note(format!("gate passed: {gate}")),
        }
    }
    if let Some(err) = &ramp.log_error {
        bail!(
            "the logs could not be written after step {} ({err:#}); the steps before it are on disk",
            ramp.results.len()
        );
    }
    summary_written?;
    if config.report {
        printer.note(crate::report::after_run(logs.summary_path()));
    }
    Ok(breaches)
}

/// Connections are files: a step that may hold more than this process may open measures the
/// open-file limit, not the server.
fn warn_if_open_files_short(
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
             but this process may open {open_files}: beyond that requests fail as `io` (too many open files); \
             raise `ulimit -n` for a clean measurement"
        ));
    }
}

/// The engine of the chosen mode; a pool opens its connections here, before step 1.
fn build_engine(
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
            let pool = Pool::start(spec, workers, *connect_per_request, largest as usize)
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
        data: data.map(|d| describe_data(d, &config.data_dir, config.column)),
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

fn describe_data(data: &ParamData, dir: &Path, column: usize) -> String {
    format!(
        "$1 from {} values in {} files of {} (column {column})",
        data.total_values(),
        data.files().len(),
        dir.display()
    )
}

fn start_throwaway(
    settings: &[(String, String)],
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<ThrowawayServer> {
    let server = ThrowawayServer::start(settings)?;
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
        .connect(SETUP_TIMEOUT, "pgstress-setup")
        .context("cannot connect to the throwaway server")?;
    crate::pg::demo::seed(&mut client, crate::pg::demo::DEFAULT_ROWS)
        .context("cannot create the demo data")?;
    Ok(server)
}

fn start_pooler(
    upstream: &ConnectTarget,
    settings: &[(String, String)],
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<ThrowawayPooler> {
    let pooler = ThrowawayPooler::start(upstream, settings)?;
    printer.note(format!(
        "started a throwaway pooler: {} in {}; it is removed after the run",
        pooler.description(),
        pooler.folder().display()
    ));
    Ok(pooler)
}
