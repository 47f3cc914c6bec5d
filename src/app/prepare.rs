//! `pgstress prepare`: the demo table on the user's server, and matching CSVs if asked.

use std::time::Duration;

use anyhow::Context;

use crate::Status;
use crate::config::PrepareConfig;
use crate::pg::local::demo;

pub fn prepare(config: &PrepareConfig) -> anyhow::Result<Status> {
    for warning in config.target.warnings() {
        println!("warning: {warning}");
    }
    if let Some(origin) = config.target.origin() {
        println!("target {} ({origin})", config.target.redacted());
    }
    let mut client = config
        .target
        .connect(Duration::from_secs(30), "pgstress-prepare")
        .with_context(|| format!("cannot connect to {}", config.target.redacted()))?;
    demo::seed(&mut client, config.rows).context("cannot create the demo table")?;
    println!(
        "demo table sharding ready on {} ({} rows)",
        config.target.redacted(),
        config.rows
    );
    if let Some(dir) = &config.write_data {
        let written = demo::write_data(&mut client, dir)?;
        println!("wrote {written} parameter values to {}", dir.display());
    }
    Ok(Status::Completed)
}
