//! `pgstress watch --run HOST:PORT --pgdata DIR`: on the database server's host, find the
//! postmaster and answer the run's requests for the host's counters until the run ends.

use anyhow::Context;

use crate::Status;
use crate::cli::WatchArgs;
use crate::fleet::watcher;
use crate::measure::sampler::host_watch::{HostWatch, find_postmaster};

pub fn watch(args: WatchArgs) -> anyhow::Result<Status> {
    let postmaster =
        find_postmaster(args.pgdata.as_deref(), args.port).map_err(anyhow::Error::msg)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(crate::sys::procfs::hostname);
    let token = crate::fleet::auth::token_from_env();
    let mut said = |line: String| eprintln!("{line}");
    watcher::serve(
        &args.run,
        &name,
        token.as_deref(),
        HostWatch::new(postmaster),
        &mut said,
    )
    .context("the watcher stopped")?;
    eprintln!("watcher {name}: the run is over");
    Ok(Status::Completed)
}
