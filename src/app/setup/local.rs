//! What a run starts or watches on this machine beside the load: the throwaway server and
//! pooler, the pooler's console and CPU, and the monitor connection to the server.

use anyhow::Context;

use crate::config::{PoolerChoice, RunConfig};
use crate::measure::sampler::Sampler;
use crate::measure::sampler::cpu::{LocalPooler, LocalServer};
use crate::measure::sampler::pooler_view::PoolerViewProbe;
use crate::model::facts::PoolerLimit;
use crate::model::sample::{PoolerStatsWhole, PoolerViewSample};
use crate::output::printer::Printer;
use crate::pg::local::pooler::{PoolerPlan, ThrowawayPooler};
use crate::pg::local::server::ThrowawayServer;
use crate::pg::target::ConnectTarget;
use crate::pg::wire;

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

/// The throwaway PgBouncer of `--pooler`, its processes sized to hold the run's largest step,
/// and what it found short said before the load.
pub fn start_pooler(
    upstream: &ConnectTarget,
    config: &RunConfig,
    choice: &PoolerChoice,
    cpus: Option<&[usize]>,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<ThrowawayPooler> {
    let plan = PoolerPlan {
        settings: &choice.settings,
        processes: choice.processes,
        largest_step: Some(config.mode.most_connections(config.plan.largest())),
    };
    let pooler = ThrowawayPooler::start_planned(upstream, plan, cpus)?;
    let folders: Vec<String> = (pooler.folders().iter())
        .map(|folder| folder.display().to_string())
        .collect();
    printer.note(format!(
        "started a throwaway pooler: {} in {}; it is removed after the run",
        pooler.description(),
        folders.join(", ")
    ));
    for warning in pooler.warnings() {
        printer.note(warning);
    }
    if let Some(cpus) = cpus
        && cpus.len() < choice.processes as usize
    {
        let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
        printer.note(format!(
            "note: the {} PgBouncer processes run on the server's CPUs ({}), fewer CPUs than \
             processes: they take turns; --no-pin lets them run anywhere",
            choice.processes,
            list.join(", ")
        ));
    }
    Ok(pooler)
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

/// The sampler of the pooler's console, when it is reachable.
pub fn start_console(
    config: &RunConfig,
    console: Option<postgres::Client>,
    tap: Option<crate::measure::sampler::Tap<PoolerViewSample>>,
) -> anyhow::Result<Option<Sampler<PoolerViewSample, PoolerStatsWhole>>> {
    console
        .map(|client| {
            Sampler::start_tapped(
                "pgstress-console",
                config.sample_every,
                PoolerViewProbe::new(client),
                tap,
            )
        })
        .transpose()
        .context("cannot start the pooler's console sampler")
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
            Some(LocalPooler::of_pids(pooler.pids())),
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
    local: Option<&LocalPooler>,
    console: bool,
    limit: Option<&PoolerLimit>,
) -> Option<String> {
    let text = match (text, local, limit) {
        (Some(text), _, _) => text,
        (None, Some(_), Some(limit)) => format!("{} listens on the target's port", limit.pooler),
        (None, None, Some(limit)) => format!("{} answers on the target", limit.pooler),
        (None, Some(_), None) => "a pooler listens on the target's port".to_owned(),
        (None, None, None) => return None,
    };
    // What sizes the pool's default workers in its place of the server's connections.
    let limit = limit.map(|limit| {
        format!(
            "its client limit: {} at once ({})",
            limit.clients, limit.setting
        )
    });
    let cpu = local.map(|pooler| match (pooler.cores, pooler.pids.as_slice()) {
        (Some(cores), [pid]) => format!("its CPU sampled (pid {pid}, {cores} core)"),
        (Some(cores), pids) => format!(
            "its CPU sampled ({} processes, pids {}, {cores} core each, each judged on its own)",
            pids.len(),
            (pids.iter().map(u32::to_string))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (None, _) => format!("its CPU sampled (pid {} and its children)", pooler.pid()),
    });
    let console = console.then(|| "its console read (SHOW POOLS, SHOW STATS)".to_owned());
    let seen: Vec<String> = cpu.into_iter().chain(console).chain(limit).collect();
    Some(match seen.is_empty() {
        true => text,
        false => format!("{text}; {}", seen.join(", ")),
    })
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
