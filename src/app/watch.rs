//! `pgstress watch --run HOST:PORT --pgdata DIR`: on the database server's host, find the
//! postmaster and answer the run's requests for the host's counters until the run ends; with
//! `--keep-watching`, then wait for the next run.

use std::time::Duration;

use anyhow::Context;

use crate::Status;
use crate::cli::WatchArgs;
use crate::fleet::watcher;
use crate::measure::sampler::host_watch::{HostWatch, find_postmaster};

/// Between two runs of a watcher that keeps watching: a watcher refused (a wrong token) or
/// without its server must not dial the run's door in a tight loop.
const AGAIN_AFTER: Duration = Duration::from_secs(5);

pub fn watch(args: WatchArgs) -> anyhow::Result<Status> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(crate::sys::procfs::hostname);
    let token = crate::fleet::auth::token_from_env();
    if !args.keep_watching.unwrap_or(false) {
        watch_one_run(&args, &name, token.as_deref())?;
        return Ok(Status::Completed);
    }
    loop {
        if crate::sys::interrupt::requested() {
            return Ok(Status::Completed);
        }
        // The server may have restarted since the last run: it is found again each time.
        if let Err(err) = watch_one_run(&args, &name, token.as_deref()) {
            eprintln!(
                "watcher {name}: {err:#}; dialing again in {}s",
                AGAIN_AFTER.as_secs()
            );
        }
        crate::sys::interrupt::sleep(AGAIN_AFTER);
    }
}

/// Finds the server and serves one run to its end.
fn watch_one_run(args: &WatchArgs, name: &str, token: Option<&str>) -> anyhow::Result<()> {
    let postmaster =
        find_postmaster(args.pgdata.as_deref(), args.port).map_err(anyhow::Error::msg)?;
    let mut said = |line: String| eprintln!("{line}");
    watcher::serve(
        &args.run,
        name,
        token,
        HostWatch::new(postmaster),
        &mut said,
    )
    .context("the watcher stopped")?;
    eprintln!("watcher {name}: the run is over");
    Ok(())
}
