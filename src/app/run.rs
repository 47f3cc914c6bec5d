//! One `pgstress run`: check the input, reach (or start) the server, run the ramp step by step,
//! judging and writing each step as soon as it ends, and clean up however the run ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::cpus::place_sides;
use super::fault::Servers;
use super::preflight::preflight;
use super::setup::{
    build_engine, demo_data, describe_target, load_target, open_monitor, plan_facts,
    quiet_request_panics, request_spec, start_pooler, start_throwaway, warn_before_the_load,
};
use super::setup::{
    describe_pooler, detected_pooler, node_names, pooler_side, server_source, start_console,
};
use super::step_loop::{PoolerWatch, Ramp, StatsSampler, StepLoop, judge_run, write_summary};
use super::watching;
use crate::Status;
use crate::config::data::ParamData;
use crate::config::{RunConfig, TargetChoice};
use crate::engine::Engine;
use crate::engine::hold::HoldSides;
use crate::logs::{self, RunLogs};
use crate::measure::sampler::cpu::{CpuProbe, LocalPooler, LocalServer, Sides};
use crate::measure::sampler::server_stats::ServerStatsProbe;
use crate::measure::sampler::{Sampler, Tap};
use crate::model::facts::{ClientCpus, PoolerLimit, RunFacts, ServerFacts, clients_at_once};
use crate::model::plan::Mode;
use crate::model::sample::{CpuSample, StepCpu};
use crate::output::metrics::RunMetrics;
use crate::output::metrics::endpoint::MetricsEndpoint;
use crate::output::printer::Printer;
use crate::output::progress::Progress;
use crate::pg::local::console;
use crate::pg::local::pooler::ThrowawayPooler;
use crate::pg::local::server::ThrowawayServer;
use crate::pg::request::RequestSpec;
use crate::pg::target::ConnectTarget;
use crate::sys::interrupt;

pub fn run(config: RunConfig) -> anyhow::Result<Status> {
    // Before any thread starts, so that every thread of pgstress runs on its own CPUs.
    let placement = place_sides(&config)?;
    interrupt::install(crate::pg::local::server::kill_all_now);
    quiet_request_panics();
    // Input first: nothing is sent to any server before it is known good.
    let data = match config.takes_parameter && !config.data_from_demo {
        true => Some(ParamData::load_skipping(
            &config.data_dir,
            config.column,
            config.skip_header,
        )?),
        false => None,
    };
    logs::check_writable(&config.logs_dir)?;

    let mut printer = Printer::new(std::io::stdout());
    let endpoint = super::outputs::open(&config, &mut printer)?;
    let throwaway = match &config.target {
        TargetChoice::Throwaway { settings } => {
            let cpus = placement.as_ref().map(|(_, server)| server.as_slice());
            Some(start_throwaway(settings, cpus, &mut printer)?)
        }
        TargetChoice::Server(_) => None,
    };
    // Shared with the thread of a fault (`--fault`), which may restart it.
    let throwaway = match throwaway {
        Some(primary) => Some(with_standby(primary, &config, &mut printer)?),
        None => None,
    };
    let target = match (&config.target, &throwaway) {
        (TargetChoice::Server(target), _) => (**target).clone(),
        (_, Some(servers)) => servers.target(),
        (TargetChoice::Throwaway { .. }, None) => unreachable!("a throwaway target has a server"),
    };
    for warning in target.warnings() {
        printer.note(format!("warning: {warning}"));
    }
    let pooler = match &config.pooler {
        Some(choice) => {
            let cpus = placement.as_ref().map(|(_, server)| server.as_slice());
            Some(start_pooler(&target, &config, choice, cpus, &mut printer)?)
        }
        None => None,
    };
    let (load_target, pooler_text) = load_target(pooler.as_ref(), &target);
    // Kept until the run ends: the demo values are read from it step by step.
    let mut demo_dir = None;
    let pinned = placement.is_some();
    let outcome = demo_data(&config, &target, &mut demo_dir, &mut printer).and_then(|demo| {
        run_against(
            &config,
            &load_target,
            Around {
                throwaway: throwaway.as_ref(),
                pooler: pooler.as_ref(),
                pooler_text,
                endpoint: endpoint.as_ref(),
            },
            demo.as_ref().or(data.as_ref()),
            pinned,
            &mut printer,
        )
    });
    drop(demo_dir);
    if let Some(pooler) = pooler {
        pooler.stop();
        printer.note("throwaway pooler stopped and removed");
    }
    for stopped in throwaway.map(Servers::stop).unwrap_or_default() {
        printer.note(stopped);
    }
    let (ramp, breaches) = outcome?;
    let status = status_of(&ramp, &breaches, &config, &mut printer);
    if let Some(endpoint) = &endpoint {
        super::outputs::linger(endpoint, config.outputs.metrics, &mut printer);
    }
    Ok(status)
}

/// How the run ended, said on the terminal where it was not a plain end.
fn status_of(
    ramp: &Ramp,
    breaches: &Breaches,
    config: &RunConfig,
    printer: &mut Printer<std::io::Stdout>,
) -> Status {
    if interrupt::requested() {
        printer.note(format!(
            "interrupted after {} of {} steps; their logs are on disk",
            ramp.results.len(),
            config.plan.steps
        ));
        return Status::Interrupted;
    }
    if let Some(why) = &ramp.lost {
        printer.note(format!(
            "the run stopped after step {}: {why}; that step is logged incomplete, the steps before it are intact",
            ramp.results.len()
        ));
        return Status::AgentLost;
    }
    if breaches.iter().any(|(_, breach)| breach.is_some()) {
        return Status::GateBreached;
    }
    Status::Completed
}

/// Gate texts and, for each, why it was breached (None: it passed).
type Breaches = Vec<(String, Option<String>)>;

/// What pgstress started around the target, and the pooler as the header names it.
struct Around<'a> {
    throwaway: Option<&'a Servers>,
    pooler: Option<&'a ThrowawayPooler>,
    pooler_text: Option<String>,
    /// The live metrics' endpoint, if asked for.
    endpoint: Option<&'a MetricsEndpoint>,
}

/// The run against a server that is up: pre-flight, the samplers, the ramp, the verdict.
fn run_against(
    config: &RunConfig,
    target: &ConnectTarget,
    around: Around<'_>,
    data: Option<&ParamData>,
    pinned: bool,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<(Ramp, Breaches)> {
    let run_start = Instant::now();
    let started_at = chrono::Local::now();
    let (target, server, visible_server, pgpool) = preflight(target, config)?;
    let target = &target;
    let local_server = local_server(around.throwaway, visible_server);
    let monitor = open_monitor(target, printer);
    let (local_pooler, mut console) = pooler_side(around.pooler, target, local_server);
    // Several PgBouncers on one port (the throwaway ones, or the user's with so_reuseport):
    // the console is one process's, and the others are taken to be alike.
    let processes = (local_pooler.as_ref())
        .filter(|pooler| pooler.cores == Some(1.0))
        .map_or(1, |pooler| pooler.pids.len() as u32);
    let pooler_limit = pgpool.or_else(|| {
        (console.as_mut())
            .and_then(console::pgbouncer_limit)
            .map(|limit| limit.across(processes))
    });
    let spec = Arc::new(request_spec(config, target)?);
    probe(config, target, &spec, data, printer)?;
    // The server's view counts the run's own sessions, named as its requests are.
    let requests_name = (spec.config.get_application_name().unwrap_or("pgstress")).to_owned();
    let limits = (pooler_limit.as_ref(), local_pooler.as_ref());
    let sides = HoldSides {
        pooler_pids: (local_pooler.as_ref()).map_or_else(Vec::new, |pooler| pooler.pids.clone()),
        postmaster_pid: local_server.map(|server| server.postmaster_pid),
    };
    let engine = engine_for(config, spec, (&server, sides), limits, printer)?;
    let watcher = super::watching::accept(config, printer)?;
    let cpus = crate::sys::cpus::this_process();
    let facts = RunFacts {
        pgstress_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: started_at.to_rfc3339(),
        plan: plan_facts(config, data, engine.as_ref()),
        target: describe_target(target),
        nodes: node_names(target),
        throwaway: around.throwaway.is_some(),
        pooler: describe_pooler(
            around.pooler_text.or_else(|| detected_pooler(target)),
            local_pooler.as_ref(),
            console.is_some(),
            pooler_limit.as_ref(),
        ),
        pooler_limit,
        server,
        server_cpu_visible: local_server.is_some() || watcher.is_some(),
        server_stats_visible: monitor.is_some(),
        server_source: watching::source(
            server_source(local_server, monitor.is_some()),
            watcher.as_ref(),
        ),
        client: cpus.into(),
        cpus: watching::cpus(
            super::cpus::server_cpus(config, local_server, pinned, printer),
            watcher.as_ref(),
        ),
    };
    let pooler_cores = local_pooler.as_ref().and_then(LocalPooler::total_cores);
    let sides = Sides {
        client_cpus: crate::sys::affinity::available(),
        client_cores: cpus.allowed_cores,
        server_cores: facts.cpus.server_cores,
        pooler: local_pooler,
    };
    // Armed just before the samplers and step 1: `--fault ...@T` counts from here.
    let fault = super::fault::arm_for(config.fault, around.throwaway, &requests_name);
    let probes = (local_server, monitor, sides, requests_name, watcher);
    let sides = (cpus, probes, console, pooler_cores);
    let end = (data, around.endpoint, run_start, fault);
    run_ramp(config, &facts, sides, engine, end, printer)
}

/// What the samplers read: the local server, the monitoring connection, the sides' CPUs,
/// the name of the run's sessions and the server's watcher.
type Probes = (
    Option<LocalServer>,
    Option<crate::pg::wire::Connection>,
    Sides,
    String,
    Option<crate::fleet::watched::Watcher>,
);

/// The logs, the metrics and the samplers, the steps, and the end of the run.
fn run_ramp(
    config: &RunConfig,
    facts: &RunFacts,
    (cpus, probes, console, pooler_cores): (
        ClientCpus,
        Probes,
        Option<postgres::Client>,
        Option<f64>,
    ),
    mut engine: Box<dyn Engine>,
    (data, endpoint, run_start, fault): (
        Option<&ParamData>,
        Option<&MetricsEndpoint>,
        Instant,
        Option<super::fault::Armed>,
    ),
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<(Ramp, Breaches)> {
    let mut logs = RunLogs::create_now(&config.logs_dir, config.log_requests)?;
    printer.header(facts, &logs.paths());
    let metrics = super::outputs::run_metrics(config, facts, &logs, endpoint);
    let (local_server, monitor, sides, requests_name, watcher) = probes;
    let probes = (local_server, monitor, sides, requests_name);
    let (cpu_sampler, stats_sampler) = start_samplers(config, probes, run_start, &metrics)?;
    let watcher = watching::start(watcher, config, run_start)?;
    let console = start_console(
        config,
        console,
        Some(tap(&metrics, RunMetrics::pooler_sample)),
    )?;
    let mut progress = Progress::new(config.plan.steps, config.quiet);
    let ramp = StepLoop {
        config,
        facts,
        cpus,
        data,
        cpu_sampler: &cpu_sampler,
        stats_sampler: stats_sampler.as_ref(),
        watcher,
        pooler: PoolerWatch {
            console: console.as_ref(),
            cores: pooler_cores,
        },
        logs: &mut logs,
        printer,
        progress: &mut progress,
        metrics: Some((&metrics, endpoint.is_some())),
        stop_requested: &interrupt::requested,
        fault: fault.as_ref().map(super::fault::Armed::mark),
    }
    .run(engine.as_mut());
    let ramp = super::fault::disarm(fault, printer, ramp)?;
    // `pgstress run` ends its process after the report.
    engine.leave_threads_to_exit();
    drop((cpu_sampler, stats_sampler, console, engine));
    progress.finish();
    let ran = (&ramp, &logs, run_start.elapsed());
    let breaches = finish(config, facts, ran, &metrics, printer)?;
    Ok((ramp, breaches))
}

/// Hands a sampler's samples to the run's metrics.
fn tap<S: 'static>(metrics: &Arc<RunMetrics>, take: fn(&RunMetrics, &S)) -> Tap<S> {
    let metrics = Arc::clone(metrics);
    Box::new(move |sample: &S| take(&metrics, sample))
}

/// The engine that sends the load: this process's own, or the agents' (`--agents`).
fn engine_for(
    config: &RunConfig,
    spec: Arc<RequestSpec>,
    (server, sides): (&ServerFacts, HoldSides),
    (pooler_limit, pooler): (Option<&PoolerLimit>, Option<&LocalPooler>),
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<Box<dyn Engine>> {
    let clients = clients_at_once(server, pooler_limit);
    Ok(match &config.fleet {
        Some(fleet) => super::coordinate::remote_engine(config, fleet, clients, printer)?,
        None => {
            let engine = build_engine(config, spec, clients, sides)?;
            warn_before_the_load(config, engine.as_ref(), pooler, printer);
            engine
        }
    })
}

type CpuSampler = Sampler<CpuSample, StepCpu>;

/// The server whose CPU is sampled: the throwaway one, else one pre-flight found on this
/// machine.
fn local_server(throwaway: Option<&Servers>, visible: Option<LocalServer>) -> Option<LocalServer> {
    let throwaway = throwaway.map(|servers| LocalServer {
        postmaster_pid: servers.postmaster_pid(),
    });
    throwaway.or(visible)
}

/// The exact request before the load, and for a pool's kept connections the same request on
/// the same connection twice (what a transaction-mode pooler would break).
fn probe(
    config: &RunConfig,
    target: &ConnectTarget,
    spec: &RequestSpec,
    data: Option<&ParamData>,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<()> {
    for note in super::preflight::probe_requests(spec, data)? {
        printer.note(note);
    }
    if keeps_connections(&config.mode) {
        super::preflight::probe_kept(target, spec, data)?;
    }
    Ok(())
}

/// Whether the mode keeps its connections across requests: a pool's workers (unless each
/// request connects anew) and a hold's crowd.
fn keeps_connections(mode: &Mode) -> bool {
    matches!(
        mode,
        Mode::Pool {
            connect_per_request: false,
            ..
        } | Mode::Hold { .. }
    )
}

/// The CPU sampler and, with a monitoring connection, the server statistics sampler, each
/// handing its samples to the run's metrics as it takes them.
fn start_samplers(
    config: &RunConfig,
    (local_server, monitor, sides, requests_name): (
        Option<LocalServer>,
        Option<crate::pg::wire::Connection>,
        Sides,
        String,
    ),
    run_start: Instant,
    metrics: &Arc<RunMetrics>,
) -> anyhow::Result<(CpuSampler, Option<StatsSampler>)> {
    let cpu_sampler: CpuSampler = Sampler::start_tapped(
        "pgstress-cpu",
        config.sample_every,
        CpuProbe::new(local_server, run_start, sides),
        Some(tap(metrics, RunMetrics::cpu_sample)),
    )
    .context("cannot start the CPU sampler")?;
    let stats_sampler: Option<StatsSampler> = monitor
        .map(|client| {
            Sampler::start_tapped(
                "pgstress-monitor",
                config.sample_every,
                ServerStatsProbe::new(
                    client,
                    requests_name.clone(),
                    config.timeout,
                    // All but a pool's and a hold's kept connections close after each request.
                    !keeps_connections(&config.mode),
                ),
                Some(tap(metrics, RunMetrics::server_sample)),
            )
        })
        .transpose()
        .context("cannot start the server statistics sampler")?;
    Ok((cpu_sampler, stats_sampler))
}

/// After the last step: the verdict, the gates, the final summary, the metrics file and the
/// reports for CI, and what to do next.
fn finish(
    config: &RunConfig,
    facts: &RunFacts,
    (ramp, logs, elapsed): (&Ramp, &RunLogs, Duration),
    metrics: &RunMetrics,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<Breaches> {
    if let Some((step, reason)) = &ramp.stopped
        && *step < config.plan.steps
    {
        printer.note(format!("stopped after step {step}: {}", reason.describe()));
    }
    let verdict = judge_run(ramp, config, facts);
    let gates = super::outputs::judge_gates(config, &verdict, ramp);
    let breaches: Breaches = (gates.iter())
        .map(|g| (g.gate.clone(), g.breached.clone()))
        .collect();
    let complete = !interrupt::requested() && ramp.log_error.is_none() && ramp.lost.is_none();
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
    let end = super::outputs::Finished {
        config,
        facts,
        ramp,
        verdict: &verdict,
        gates: &gates,
        logs,
        elapsed,
    };
    let reports_written = super::outputs::write_reports(&end, metrics, printer);
    if let Some(err) = &ramp.log_error {
        bail!(
            "the logs could not be written after step {} ({err:#}); the steps before it are on disk",
            ramp.results.len()
        );
    }
    summary_written?;
    reports_written?;
    if config.report {
        printer.note(crate::report::after_run(logs.summary_path()));
    }
    Ok(breaches)
}

/// The throwaway server and, with `--standby`, its standby beside it.
fn with_standby(
    primary: ThrowawayServer,
    config: &RunConfig,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<Servers> {
    let standby = match config.standby {
        true => {
            let standby = primary.start_standby();
            let standby = standby.context("cannot start the throwaway standby")?;
            printer.note(format!(
                "throwaway standby streaming on port {}",
                standby.port()
            ));
            Some(standby)
        }
        false => None,
    };
    Ok(Servers::new(primary, standby))
}
