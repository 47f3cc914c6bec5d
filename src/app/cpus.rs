//! Each side on its own CPUs: pgstress pins itself before any thread starts, and has the
//! throwaway server pinned to the rest; the run's facts say which CPUs each side had.

use anyhow::{Context, anyhow};

use crate::config::{RunConfig, TargetChoice};
use crate::measure::sampler::cpu::LocalServer;
use crate::model::facts::CpuFacts;
use crate::output::printer::Printer;
use crate::sys::affinity;

/// `(client, server)` CPUs, with pgstress already pinned to the client's; None when nothing
/// is pinned (`--no-pin`, a server pgstress does not start, a single CPU).
pub fn place_sides(config: &RunConfig) -> anyhow::Result<Option<affinity::Placement>> {
    if !matches!(config.target, TargetChoice::Throwaway { .. }) {
        return Ok(None);
    }
    let placement =
        affinity::resolve(&config.cpus, &affinity::available()).map_err(|e| anyhow!(e))?;
    if let Some((client, _)) = &placement {
        affinity::pin_this_process(client).with_context(|| {
            format!(
                "cannot pin pgstress to CPUs {}",
                affinity::format_list(client)
            )
        })?;
    }
    Ok(placement)
}

/// Which CPUs each side has now: pgstress's affinity, and the local server's postmaster's
/// `Cpus_allowed_list` (which its backends inherit), else the count the user gave
/// (`--server-cores`) for a server whose processes are not seen.
pub fn facts(postmaster: Option<u32>, given_cores: Option<f64>, pinned: bool) -> CpuFacts {
    let client = affinity::available();
    let server = postmaster.and_then(affinity::allowed_of);
    let local_cores = server.as_ref().map(|cpus| cpus.len().max(1) as f64);
    CpuFacts {
        client: affinity::format_list(&client),
        server: server.as_deref().map(affinity::format_list),
        server_cores: local_cores.or(given_cores),
        server_cores_given: local_cores.is_none() && given_cores.is_some(),
        pinned,
        shared: server
            .as_deref()
            .is_some_and(|server| affinity::overlap(server, &client)),
    }
}

/// Which CPUs each side has; `--server-cores` where the server's own are not seen, and said
/// to be left unused where they are.
pub fn server_cpus(
    config: &RunConfig,
    local: Option<LocalServer>,
    pinned: bool,
    printer: &mut Printer<std::io::Stdout>,
) -> CpuFacts {
    let facts = facts(local.map(|s| s.postmaster_pid), config.server_cores, pinned);
    if let Some(cores) = config.server_cores
        && !facts.server_cores_given
    {
        printer.note(format!(
            "note: --server-cores {cores} left unused: the server runs on this machine, and its \
             own CPUs ({}) are read",
            facts.server.as_deref().unwrap_or("all")
        ));
    }
    facts
}
