//! `--agents`, `--listen`, `--agents-timeout` and the token: a run whose load comes from agents
//! on other machines; `--watcher-listen` and `--watcher-timeout`: a run whose server's host is
//! read by a watcher. Refused where it could not work or would be open to anyone.

use std::net::SocketAddr;
use std::time::Duration;

use super::TargetChoice;
use super::error::{ConfigError, invalid};
use super::values::or_default;
use crate::cli::RunArgs;
use crate::cli::values::ListenAddr;
use crate::fleet::door::FleetSettings;
use crate::fleet::watched::WatcherSettings;
use crate::model::plan::Mode;

const DEFAULT_AGENTS_TIMEOUT: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_WATCHER_TIMEOUT: Duration = Duration::from_secs(60);
/// The first port of Linux's default ephemeral range: a listener above it may take a port an
/// outgoing connection needs, or find it taken.
const EPHEMERAL_FROM: u16 = 32768;

/// The agents of the run, if it has any.
pub(super) fn merge_fleet(
    options: &RunArgs,
    target: &TargetChoice,
    mode: &Mode,
    pooler: bool,
) -> Result<Option<FleetSettings>, ConfigError> {
    let (agents, listen) = match (options.agents, options.listen) {
        (None, None) => return Ok(None),
        (Some(n), None) => {
            return Err(invalid(
                "--agents",
                n,
                "give --listen ADDR:PORT for the agents to dial",
            ));
        }
        (None, Some(listen)) => {
            return Err(invalid(
                "--listen",
                listen,
                "it is for --agents N; give both or neither",
            ));
        }
        (Some(agents), Some(listen)) => (agents, listen),
    };
    if agents == 0 {
        return Err(invalid("--agents", 0, "give 1 or more agents"));
    }
    if let Mode::Pool {
        workers: Some(workers),
        ..
    } = mode
        && *workers < agents
    {
        return Err(invalid(
            "--workers",
            workers,
            format!("each of the {agents} agents needs a worker at least"),
        ));
    }
    if let Some(duration) = mode.timed_pool() {
        return Err(invalid(
            "--duration",
            humantime::format_duration(duration),
            "a timed pool step is not split among agents yet: drop --duration (each step's queue \
             drained once) or --agents",
        ));
    }
    if matches!(target, TargetChoice::Throwaway { .. }) {
        return Err(invalid(
            "--agents",
            agents,
            "the agents send to their own target, so the run needs the same server named here: give --dsn (or DATABASE_URL, PG* variables)",
        ));
    }
    if pooler {
        return Err(invalid(
            "--pooler",
            "pgbouncer",
            "a throwaway pooler serves this machine only; with --agents point them at your pooler",
        ));
    }
    let timeout = or_default(options.agents_timeout, DEFAULT_AGENTS_TIMEOUT);
    let token = crate::fleet::auth::token_from_env();
    Ok(Some(FleetSettings {
        agents,
        listen: check_listen(listen, token.is_some())?,
        timeout,
        token,
    }))
}

/// The watcher of the run's server, if it has one: for a server pgstress does not start.
pub(super) fn merge_watcher(
    options: &RunArgs,
    target: &TargetChoice,
) -> Result<Option<WatcherSettings>, ConfigError> {
    let Some(listen) = options.watcher_listen else {
        if let Some(timeout) = options.watcher_timeout {
            return Err(invalid(
                "--watcher-timeout",
                timeout,
                "it is for --watcher-listen ADDR:PORT; give both or neither",
            ));
        }
        return Ok(None);
    };
    if matches!(target, TargetChoice::Throwaway { .. }) {
        return Err(invalid(
            "--watcher-listen",
            listen,
            "the throwaway server runs on this machine and its CPU is read directly; a watcher is for a server on another host: give --dsn (or DATABASE_URL, PG* variables)",
        ));
    }
    let token = crate::fleet::auth::token_from_env();
    Ok(Some(WatcherSettings {
        listen: check_address("--watcher-listen", listen, token.is_some())?,
        timeout: or_default(options.watcher_timeout, DEFAULT_WATCHER_TIMEOUT),
        token,
    }))
}

/// The address the agents dial: a port below the ephemeral range, and beyond loopback only
/// with a token.
fn check_listen(listen: ListenAddr, token: bool) -> Result<SocketAddr, ConfigError> {
    check_address("--listen", listen, token)
}

/// A listener's address (`option`'s): a port below the ephemeral range, and beyond loopback
/// only with a token.
fn check_address(
    option: &'static str,
    listen: ListenAddr,
    token: bool,
) -> Result<SocketAddr, ConfigError> {
    let ListenAddr(address) = listen;
    if address.port() == 0 || address.port() >= EPHEMERAL_FROM {
        return Err(invalid(
            option,
            listen,
            format!(
                "give a port from 1 to {}, below the ephemeral ports outgoing connections use",
                EPHEMERAL_FROM - 1
            ),
        ));
    }
    if !address.ip().is_loopback() && !token {
        let (who, where_) = match option {
            "--listen" => ("an agent", "the agents"),
            _ => ("a watcher", "the watcher"),
        };
        return Err(invalid(
            option,
            listen,
            format!(
                "beyond loopback anyone could join as {who}; set {} to a shared secret here and on {where_}",
                crate::fleet::TOKEN_VAR
            ),
        ));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_needs_a_low_port_and_beyond_loopback_a_token() {
        let check = |text: &str, token| check_listen(text.parse().unwrap(), token);
        assert!(check("127.0.0.1:7777", false).is_ok());
        let open = check("0.0.0.0:7777", false).unwrap_err().to_string();
        assert!(open.contains("PGSTRESS_TOKEN"), "{open}");
        assert!(check("0.0.0.0:7777", true).is_ok());
        assert!(check("127.0.0.1:40000", false).is_err());
        assert!(check("127.0.0.1:0", false).is_err());
    }
}
