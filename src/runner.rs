//! One `pgstress run`: check the input, reach (or start) the server, run the ramp step by step,
//! writing each step's logs as soon as it ends, and clean up however the run ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use postgres::Client;

use crate::Status;
use crate::config::{RunConfig, TargetChoice};
use crate::data::ParamData;
use crate::engine::burst::{self, BurstSettings};
use crate::interrupt;
use crate::logs::{self, RunLogs};
use crate::printer::{Header, Printer, ServerFacts};
use crate::sampler::{LocalServer, Sampler};
use crate::server::ThrowawayServer;
use crate::stats::StepResult;
use crate::target::{ConnectTarget, RequestSpec};

/// Deadline of the pre-flight connection that reads the server's facts.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(config: RunConfig) -> anyhow::Result<Status> {
    interrupt::install();
    // Input first: nothing is sent to any server before it is known good.
    let data = if config.takes_parameter {
        Some(ParamData::load(&config.data_dir, config.column)?)
    } else {
        None
    };
    logs::check_writable(&config.logs_dir)?;

    let mut printer = Printer::new(std::io::stdout());
    let (target, throwaway) = match config.target {
        TargetChoice::Server(ref target) => ((**target).clone(), None),
        TargetChoice::Throwaway { ref settings } => {
            let server = start_throwaway(settings)?;
            printer.note(format!(
                "started a throwaway PostgreSQL server on 127.0.0.1:{} in {} (binaries: {}); it is removed after the run",
                server.port(),
                server.folder().display(),
                server.bin_dir().display()
            ));
            (server.target(), Some(server))
        }
    };

    let run_start = Instant::now();
    let (facts, backend_pid) = preflight(&target, &config)?;
    let local_server = match &throwaway {
        Some(server) => Some(LocalServer {
            postmaster_pid: server.postmaster_pid(),
        }),
        None if target.is_loopback() => backend_pid.and_then(LocalServer::from_backend_pid),
        None => None,
    };

    let mut logs = RunLogs::create_now(&config.logs_dir)?;
    printer.header(&Header {
        plan: &config.plan,
        target: target.redacted(),
        throwaway: throwaway.is_some(),
        server: &facts,
        query: &config.query,
        data: data.as_ref().map(|d| {
            format!(
                "$1 from {} values in {} files of {} (column {})",
                d.total_values(),
                d.files().len(),
                config.data_dir.display(),
                config.column
            )
        }),
        timeout: config.timeout,
        server_cpu_visible: local_server.is_some(),
        log_paths: logs.paths(),
    });

    let sampler = Sampler::start(config.sample_every, local_server, run_start)
        .context("cannot start the CPU sampler")?;
    let spec = Arc::new(RequestSpec {
        config: target.request_config(config.timeout, "pgstress"),
        query: config.query.clone(),
    });
    let settings = BurstSettings {
        stack_size: config.stack_size,
        timeout: config.timeout,
    };
    let mut rng = rand::rng();
    let mut results: Vec<StepResult> = Vec::new();
    for index in 1..=config.plan.steps {
        if interrupt::requested() {
            break;
        }
        let requests = config.plan.requests_at(index);
        let params: Vec<Option<String>> = match &data {
            Some(data) => data
                .draw_step(requests as usize, &mut rng)
                .into_iter()
                .map(Some)
                .collect(),
            None => vec![None; requests as usize],
        };
        sampler.begin_step(index, requests);
        let step_run = burst::run_step(&spec, params, &settings);
        let samples = sampler.end_step();
        let result = StepResult::from_run(index, &step_run, &samples);
        logs.write_step(&result, &samples)?;
        printer.step(&result, config.plan.steps);
        results.push(result);
    }
    drop(sampler);
    printer.summary(&results);

    if let Some(server) = throwaway {
        server.stop();
        printer.note("throwaway server stopped and removed");
    }
    if interrupt::requested() {
        printer.note(format!(
            "interrupted after {} of {} steps; their logs are on disk",
            results.len(),
            config.plan.steps
        ));
        return Ok(Status::Interrupted);
    }
    Ok(Status::Completed)
}

fn start_throwaway(settings: &[(String, String)]) -> anyhow::Result<ThrowawayServer> {
    let server = ThrowawayServer::start(settings)?;
    let mut client = server
        .target()
        .connect(PREFLIGHT_TIMEOUT, "pgstress-setup")
        .context("cannot connect to the throwaway server")?;
    crate::demo::seed(&mut client, crate::demo::DEFAULT_ROWS)
        .context("cannot create the demo data")?;
    Ok(server)
}

/// One connection before step 1: reads the server's facts and prepares the query, so that a
/// wrong target or a broken query fails fast with the server's own words.
fn preflight(
    target: &ConnectTarget,
    config: &RunConfig,
) -> anyhow::Result<(ServerFacts, Option<u32>)> {
    let mut client = target
        .connect(PREFLIGHT_TIMEOUT, "pgstress-preflight")
        .map_err(|err| {
            anyhow::anyhow!(
                "cannot connect to {}: {}",
                target.redacted(),
                describe_error(&err)
            )
        })?;
    let facts = read_facts(&mut client).context("cannot read the server's settings")?;
    let backend_pid = client
        .query_one("SELECT pg_backend_pid()", &[])
        .ok()
        .and_then(|row| u32::try_from(row.get::<_, i32>(0)).ok());
    let statement = client.prepare(&config.query).map_err(|err| {
        anyhow::anyhow!(
            "the query does not prepare on the server: {}; fix --query{}",
            describe_error(&err),
            if config.query == crate::config::DEFAULT_QUERY {
                " or create the demo table with `pgstress prepare --dsn ...`"
            } else {
                ""
            }
        )
    })?;
    let expected = usize::from(config.takes_parameter);
    if statement.params().len() != expected {
        bail!(
            "the query takes {} parameters but pgstress binds {expected}; use $1 once for the drawn value",
            statement.params().len()
        );
    }
    Ok((facts, backend_pid))
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

/// The server's message when there is one (with its SQLSTATE), else the client's.
fn describe_error(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}
