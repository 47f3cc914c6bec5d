//! The request every step sends, the engine that sends it, and its request threads' panics
//! kept quiet.

use std::sync::Arc;

use anyhow::Context;

use crate::config::RunConfig;
use crate::engine::Engine;
use crate::engine::burst::Burst;
use crate::engine::hold::{Hold, HoldSides};
use crate::engine::pool::{self, Pool};
use crate::engine::rate::Rate;
use crate::model::plan::Mode;
use crate::pg::request::{Prepare, RequestSpec};
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
            // Said before the workers start, where a failure could only be named after.
            let (room, setting) = crate::sys::limits::thread_room();
            if u64::from(workers) > room {
                anyhow::bail!(
                    "the pool's {workers} worker threads are more than the {room} this process                      may still start ({setting}); raise {setting}, or give fewer --workers"
                );
            }
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
