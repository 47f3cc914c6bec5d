//! Before step 1: one connection that reads the server's facts and prepares the query, so that a
//! wrong target or a broken query fails fast with the server's own words, within a deadline.

use std::time::Duration;

use anyhow::{Context, bail};
use postgres::Client;

use crate::config::RunConfig;
use crate::measure::sampler::cpu::LocalServer;
use crate::model::facts::ServerFacts;
use crate::pg::target::{ConnectTarget, describe_error, within};

/// Deadline of the setup, pre-flight and monitoring connections.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection before step 1: reads the server's facts and prepares the query, so that a
/// wrong target or a broken query fails fast with the server's own words, within a deadline.
pub fn preflight(
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
