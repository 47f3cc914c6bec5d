//! One `pgstress run`: check the input, reach (or start) the server, run the ramp step by step,
//! judging and writing each step as soon as it ends, and clean up however the run ends.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use postgres::Client;

use crate::Status;
use crate::config::{Mode, RunConfig, TargetChoice};
use crate::data::ParamData;
use crate::engine::burst::Burst;
use crate::engine::pool::{self, Pool};
use crate::engine::rate::Rate;
use crate::engine::{self, Engine, StepObserver, Tally};
use crate::flags::{self, ClientCpus};
use crate::interrupt;
use crate::logs::{self, RunLogs, RunSummary, StepSummary};
use crate::printer::Printer;
use crate::progress::Progress;
use crate::request::RequestSpec;
use crate::run_facts::{PlanFacts, RunFacts, ServerFacts};
use crate::sampler::cpu::{CpuProbe, CpuSample, LocalServer};
use crate::sampler::server_stats::{ServerStatsProbe, ServerStatsSample};
use crate::sampler::{Sampler, StepTag};
use crate::server::ThrowawayServer;
use crate::stats::StepResult;
use crate::target::{ConnectTarget, describe_error, within};
use crate::verdict::{self, StopReason, Verdict};

/// Deadline of the setup, pre-flight and monitoring connections.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(config: RunConfig) -> anyhow::Result<Status> {
    interrupt::install();
    // Input first: nothing is sent to any server before it is known good.
    let data = match config.takes_parameter {
        true => Some(ParamData::load(&config.data_dir, config.column)?),
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

    let run_start = Instant::now();
    let started_at = chrono::Local::now();
    let (server, visible_server) = preflight(&target, &config)?;
    let local_server = match &throwaway {
        Some(server) => Some(LocalServer {
            postmaster_pid: server.postmaster_pid(),
        }),
        None => visible_server,
    };
    let monitor = match target.connect(SETUP_TIMEOUT, "pgstress-monitor") {
        Ok(client) => Some(client),
        Err(err) => {
            printer.note(format!(
                "note: no monitoring connection ({err}); carrying on without server statistics"
            ));
            None
        }
    };
    let spec = Arc::new(RequestSpec {
        config: target.request_config(config.timeout, "pgstress"),
        connector: target.connector().clone(),
        query: config.query.clone(),
        timeout: config.timeout,
        lean: true,
    });
    let mut engine = build_engine(&config, spec, &server)?;
    let open_files = engine::raise_open_files_limit();
    let largest_concurrency = engine
        .concurrency(config.plan.largest())
        .unwrap_or_else(|| config.mode.requests_for(config.plan.largest()));
    let files_needed = u64::from(largest_concurrency) * engine::FILES_PER_CONNECTION + 64;
    if files_needed > open_files {
        printer.note(format!(
            "note: the largest step may hold {largest_concurrency} connections, about {files_needed} open files, \
             but this process may open {open_files}: beyond that requests fail as `io` (too many open files); \
             raise `ulimit -n` for a clean measurement"
        ));
    }
    let cpus = ClientCpus::of_this_process();
    let facts = RunFacts {
        pgstress_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: started_at.to_rfc3339(),
        plan: plan_facts(&config, data.as_ref(), engine.as_ref()),
        target: target.redacted().to_owned(),
        throwaway: throwaway.is_some(),
        server,
        server_cpu_visible: local_server.is_some(),
        server_stats_visible: monitor.is_some(),
        client: cpus.into(),
    };

    let mut logs = RunLogs::create_now(&config.logs_dir, config.log_requests)?;
    printer.header(&facts, &logs.paths());
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

    let mut rng = rand::rng();
    let mut progress = Progress::new(config.plan.steps, config.quiet);
    let mut results: Vec<StepResult> = Vec::new();
    let mut summaries: Vec<StepSummary> = Vec::new();
    let mut stopped: Option<(u32, StopReason)> = None;
    for index in 1..=config.plan.steps {
        if index > 1 {
            interrupt::sleep(config.pause);
        }
        if interrupt::requested() {
            break;
        }
        let size = config.plan.requests_at(index);
        let requests = config.mode.requests_for(size);
        let params: Vec<Option<String>> = match &data {
            Some(data) => data
                .draw_step(requests as usize, &mut rng)
                .into_iter()
                .map(Some)
                .collect(),
            None => vec![None; requests as usize],
        };
        let tag = StepTag {
            step: index,
            requests,
        };
        cpu_sampler.begin_step(tag);
        if let Some(sampler) = &stats_sampler {
            sampler.begin_step(tag);
        }
        progress.start_step(index, requests);
        let watch = StepWatch {
            progress: progress.observer(),
            server_stats: stats_sampler.as_ref(),
            first_end_seen: Cell::new(false),
        };
        let step_run = engine.run_step(index, params, Some(&watch));
        progress.finish_step();
        let cpu_samples = cpu_sampler.end_step();
        let server_samples = stats_sampler
            .as_ref()
            .map(Sampler::end_step)
            .unwrap_or_default();

        let mut result = StepResult::from_run(index, &step_run, &cpu_samples, &server_samples);
        result.load = size;
        result.flags = flags::diagnose(
            &result,
            &flags::StepContext {
                starts_together: matches!(config.mode, Mode::Burst),
                scheduled: matches!(config.mode, Mode::Rate { .. }),
                concurrency: engine.concurrency(size),
                usable_connections: Some(facts.server.usable_connections()),
            },
            &cpus,
            &config.thresholds,
        );
        logs.write_step(&result, &cpu_samples, &step_run.records)?;
        progress.suspend(|| printer.step(&result, config.plan.steps));
        stopped = verdict::stop_reason(&result, &config.stop).map(|reason| (index, reason));
        summaries.push(StepSummary::of(&result));
        results.push(result);
        let mut verdict = Verdict::judge(&results, config.plan.steps, config.slo_p99, stopped);
        verdict.server_shares_host = facts.server_cpu_visible;
        verdict.unit = config.mode.unit();
        write_summary(&logs, &facts, &summaries, &verdict, &[], false)?;
        if stopped.is_some() && index < config.plan.steps {
            break;
        }
    }
    drop((cpu_sampler, stats_sampler, engine));
    progress.finish();

    let interrupted = interrupt::requested();
    if let Some((step, reason)) = &stopped
        && *step < config.plan.steps
    {
        printer.note(format!("stopped after step {step}: {}", reason.describe()));
    }
    let mut verdict = Verdict::judge(
        &results,
        config.plan.steps,
        config.slo_p99,
        stopped.filter(|(s, _)| *s < config.plan.steps),
    );
    verdict.server_shares_host = facts.server_cpu_visible;
    verdict.unit = config.mode.unit();
    let breaches: Vec<(String, Option<String>)> = config
        .gates
        .iter()
        .map(|gate| (gate.to_string(), gate.breach(&verdict, &results)))
        .collect();
    write_summary(&logs, &facts, &summaries, &verdict, &breaches, !interrupted)?;
    printer.summary(&results);
    printer.verdict(&verdict);
    for (gate, breach) in &breaches {
        match breach {
            Some(why) => printer.note(format!("gate breached: {why}")),
            None => printer.note(format!("gate passed: {gate}")),
        }
    }

    if config.report {
        printer.note(crate::report::after_run(logs.summary_path()));
    }

    if let Some(server) = throwaway {
        server.stop();
        printer.note("throwaway server stopped and removed");
    }
    if interrupted {
        printer.note(format!(
            "interrupted after {} of {} steps; their logs are on disk",
            results.len(),
            config.plan.steps
        ));
        return Ok(Status::Interrupted);
    }
    if breaches.iter().any(|(_, breach)| breach.is_some()) {
        return Ok(Status::GateBreached);
    }
    Ok(Status::Completed)
}

fn write_summary(
    logs: &RunLogs,
    facts: &RunFacts,
    steps: &[StepSummary],
    verdict: &Verdict,
    gates: &[(String, Option<String>)],
    complete: bool,
) -> anyhow::Result<()> {
    let gates = gates
        .iter()
        .map(|(gate, breached)| logs::GateResult {
            gate: gate.clone(),
            breached: breached.clone(),
        })
        .collect();
    let summary = RunSummary {
        facts,
        complete,
        interrupted: interrupt::requested(),
        steps,
        verdict,
        verdict_text: verdict.sentences(),
        gates,
    };
    Ok(logs.write_summary(&summary)?)
}

/// The engine of the chosen mode; a pool opens its connections here, before step 1.
fn build_engine(
    config: &RunConfig,
    spec: Arc<RequestSpec>,
    server: &ServerFacts,
) -> anyhow::Result<Box<dyn Engine>> {
    Ok(match &config.mode {
        Mode::Burst => Box::new(Burst::new(spec, config.stack_size, config.timeout)),
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
                config.timeout,
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
            config.timeout,
        )),
    })
}

fn plan_facts(config: &RunConfig, data: Option<&ParamData>, engine: &dyn Engine) -> PlanFacts {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let bound: Duration = (1..=config.plan.steps)
        .map(|i| engine.step_bound(config.plan.requests_at(i)) + config.pause)
        .sum();
    PlanFacts {
        mode: engine.name().to_owned(),
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
    crate::demo::seed(&mut client, crate::demo::DEFAULT_ROWS)
        .context("cannot create the demo data")?;
    Ok(server)
}

/// One connection before step 1: reads the server's facts and prepares the query, so that a
/// wrong target or a broken query fails fast with the server's own words, within a deadline.
fn preflight(
    target: &ConnectTarget,
    config: &RunConfig,
) -> anyhow::Result<(ServerFacts, Option<LocalServer>)> {
    let deadline = SETUP_TIMEOUT * 2;
    let redacted = target.redacted().to_owned();
    let (target, query) = (target.clone(), config.query.clone());
    let takes_parameter = config.takes_parameter;
    match within(deadline, move || {
        check_server(&target, &query, takes_parameter)
    }) {
        Some(result) => result,
        None => bail!(
            "no answer from {redacted} within {}: the server accepts connections but does not respond",
            humantime::format_duration(deadline)
        ),
    }
}

fn check_server(
    target: &ConnectTarget,
    query: &str,
    takes_parameter: bool,
) -> anyhow::Result<(ServerFacts, Option<LocalServer>)> {
    let mut client = target
        .connect(SETUP_TIMEOUT, "pgstress-preflight")
        .map_err(|err| anyhow::anyhow!("cannot connect to {}: {err}", target.redacted()))?;
    let facts = read_facts(&mut client).context("cannot read the server's settings")?;
    // Looked up while this connection's backend is alive: its parent is the postmaster.
    let backend_pid = client
        .query_one("SELECT pg_backend_pid()", &[])
        .ok()
        .and_then(|row| u32::try_from(row.get::<_, i32>(0)).ok());
    let statement = client.prepare(query).map_err(|err| {
        let hint = if query == crate::config::DEFAULT_QUERY {
            " or create the demo table with `pgstress prepare --dsn ...`"
        } else {
            ""
        };
        anyhow::anyhow!(
            "the query does not prepare on the server: {}; fix --query{hint}",
            describe_error(&err)
        )
    })?;
    let expected = usize::from(takes_parameter);
    if statement.params().len() != expected {
        bail!(
            "the query takes {} parameters but pgstress binds {expected}; use $1 once for the drawn value",
            statement.params().len()
        );
    }
    let visible_server = match target.is_loopback() {
        true => backend_pid.and_then(LocalServer::from_backend_pid),
        false => None,
    };
    Ok((facts, visible_server))
}

fn read_facts(client: &mut Client) -> Result<ServerFacts, postgres::Error> {
    let row = client.query_one(
        "SELECT current_setting('server_version'),
                current_setting('max_connections')::int,
                current_setting('superuser_reserved_connections')::int",
        &[],
    )?;
    Ok(ServerFacts {
        version: row.get(0),
        max_connections: row.get::<_, i32>(1).max(0) as u32,
        superuser_reserved_connections: row.get::<_, i32>(2).max(0) as u32,
    })
}

/// Watches a step's requests end: moves the progress bar, and when the first one ends has the
/// server statistics read at once, while the step's connections are still open (a step
/// shorter than the sampling interval would be seen only after they closed).
struct StepWatch<'a> {
    progress: Option<&'a dyn StepObserver>,
    server_stats: Option<&'a Sampler<ServerStatsSample>>,
    first_end_seen: Cell<bool>,
}

impl StepObserver for StepWatch<'_> {
    fn request_ended(&self, tally: Tally) {
        if let Some(progress) = self.progress {
            progress.request_ended(tally);
        }
        if !self.first_end_seen.replace(true)
            && let Some(sampler) = self.server_stats
        {
            sampler.read_now();
        }
    }
}
