//! The request every step sends, the engine that sends it, and what a step may need of
//! this process (open files, quiet request panics).

use std::sync::Arc;

use anyhow::Context;

use crate::config::RunConfig;
use crate::engine::Engine;
use crate::engine::burst::Burst;
use crate::engine::hold::{Hold, HoldSides};
use crate::engine::pool::{self, Pool};
use crate::engine::rate::Rate;
use crate::model::plan::Mode;
use crate::output::printer::Printer;
use crate::pg::request::{Prepare, RequestClient, RequestSpec};
use crate::pg::target::ConnectTarget;
use crate::pg::wire::SourceAddresses;

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
    let mut spec = spec.with_settings(target.in_band(config.timeout, config.allow_writes), prepare);
    // The postgres client was refused with --source-address when the options were read.
    if let Some(lean) = spec.lean.as_mut() {
        lean.source = SourceAddresses::new(config.source_addresses.clone());
    }
    Ok(spec)
}

/// The engine of the chosen mode; a pool opens its connections here, before step 1.
/// `clients`: the connections the load can hold at once (the server's usable ones, or a
/// pooler's client limit), which the pool's default workers leave a margin under. `sides`:
/// the local pooler and server whose memory a hold step reads.
pub fn build_engine(
    config: &RunConfig,
    spec: Arc<RequestSpec>,
    clients: u32,
    sides: HoldSides,
) -> anyhow::Result<Box<dyn Engine>> {
    Ok(match &config.mode {
        Mode::Burst => Box::new(Burst::new(spec, config.stack_size)),
        Mode::Pool {
            workers,
            connect_per_request,
            duration,
        } => {
            let largest = config.plan.largest();
            let workers = workers.unwrap_or_else(|| pool::default_workers(clients, largest));
            let pool = Pool::start(
                spec,
                workers,
                *connect_per_request,
                largest as usize,
                config.reconnect,
            )
            .context("cannot start the pool's worker threads")?;
            match duration {
                Some(duration) => Box::new(pool.timed(*duration, config.plan)),
                None => Box::new(pool),
            }
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
        Mode::Hold { every, duration } => Box::new(Hold::new(
            spec,
            (*every, *duration),
            config.plan,
            config.stack_size,
            sides,
        )),
    })
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
    // Every connection to one server address from one source address takes a local port of
    // the ephemeral range, and a closed one keeps it a while (TIME_WAIT): each source address
    // listed adds its own range.
    let addresses = config.source_addresses.len().max(1) as u64;
    if let Some(ports) = crate::sys::limits::ephemeral_ports()
        && u64::from(largest_concurrency) > ports * addresses
    {
        let capacity = ports * addresses;
        let sources = match addresses {
            1 => "one source address has".to_owned(),
            n => format!("{n} source addresses have {ports} each,"),
        };
        printer.note(format!(
            "note: the largest step may hold {largest_concurrency} connections, but {sources} {capacity} local ports \
             (net.ipv4.ip_local_port_range): beyond that connects fail as `client` (pgstress's own limit); \
             widen the range, or spread the connections over more source addresses (`--source-address 127.0.0.2,127.0.0.3`)"
        ));
    }
}

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
