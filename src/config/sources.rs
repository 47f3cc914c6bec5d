//! `--source-address`: the local addresses the run's connections leave from, each with its own
//! ephemeral ports. Only the lean client binds a socket before connecting.

use std::net::IpAddr;

use crate::cli::RunArgs;
use crate::config::error::{ConfigError, invalid};
use crate::pg::request::RequestClient;

pub(super) fn merge_source_addresses(
    options: &RunArgs,
    client: RequestClient,
) -> Result<Vec<IpAddr>, ConfigError> {
    let addresses = options.source_addresses.clone().unwrap_or_default();
    let shown = || {
        let list: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        list.join(",")
    };
    if addresses.is_empty() {
        return Ok(addresses);
    }
    if client == RequestClient::Postgres {
        return Err(invalid(
            "--source-address",
            shown(),
            "it needs the lean client, and the run has --client postgres; drop one of the two",
        ));
    }
    if options.agents.is_some() {
        return Err(invalid(
            "--source-address",
            shown(),
            "with --agents the agents send the load: give each agent its own --source-address",
        ));
    }
    if let Some(twice) =
        (addresses.iter()).find(|a| addresses.iter().filter(|b| b == a).count() > 1)
    {
        return Err(invalid(
            "--source-address",
            shown(),
            format!("{twice} is listed twice; list each address once"),
        ));
    }
    Ok(addresses)
}
