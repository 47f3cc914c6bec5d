//! `pgstress agent --coordinator HOST:PORT`: dial a coordinator, prove the shared token, take
//! its plan within this agent's caps, and send each step's share to this agent's own target
//! with the engines `pgstress run` uses.

use std::sync::Arc;

use anyhow::{Context, bail};

use super::preflight::preflight;
use super::setup::{build_engine, quiet_request_panics, request_spec};
use crate::Status;
use crate::cli::AgentArgs;
use crate::config::{RunConfig, TargetChoice};
use crate::fleet::agent::{self, Session};
use crate::model::facts::clients_at_once;

pub fn agent(args: AgentArgs) -> anyhow::Result<Status> {
    let caps = crate::config::agent_caps(&args.caps)?;
    // The target is checked before dialing: an agent without one has nothing to offer.
    let own = RunConfig::agent_target(args.target.clone())?;
    if matches!(own.target, TargetChoice::Throwaway { .. }) {
        bail!(
            "this agent has no target: give --dsn, DATABASE_URL or PG* variables (the coordinator never sends one)"
        );
    }
    quiet_request_panics();
    crate::sys::limits::raise_open_files_limit();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
    let token = crate::fleet::auth::token_from_env();
    let session = agent::join(&args.coordinator, &name, token.as_deref(), caps)?;
    if let Err(reason) = agent::check_caps(&session.plan, caps) {
        session.refuse(&reason);
        bail!("refused the coordinator's plan: {reason}");
    }
    run_plan(session, &args, &name)?;
    Ok(Status::Completed)
}

/// Builds the engine the plan calls for against this agent's target, then serves the steps.
fn run_plan(session: Session, args: &AgentArgs, name: &str) -> anyhow::Result<()> {
    let prepared = RunConfig::for_agent(args.target.clone(), &session.plan)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let TargetChoice::Server(target) = &config.target else {
                bail!("this agent has no target");
            };
            let (target, server, _, pgpool) = preflight(target, &config)?;
            let mut spec = request_spec(&config, &target)?;
            if let Some(source) = args.source_address {
                let Some(lean) = spec.lean.as_mut() else {
                    bail!(
                        "--source-address needs the lean client, and the plan has --client postgres"
                    );
                };
                lean.source = crate::pg::wire::SourceAddresses::new(vec![source]);
            }
            // The plan names the workers; the limit only sizes a plan that did not.
            let clients = clients_at_once(&server, pgpool.as_ref());
            let engine = build_engine(&config, Arc::new(spec), clients, Default::default())?;
            Ok(engine)
        });
    let mut engine = match prepared {
        Ok(engine) => engine,
        Err(err) => {
            let reason = format!("{err:#}");
            session.refuse(&reason);
            bail!("cannot run the coordinator's plan: {reason}");
        }
    };
    let describe = engine.describe();
    eprintln!(
        "agent {name} joined the coordinator at {} as agent {}: {describe}",
        args.coordinator, session.plan.index
    );
    session
        .serve(engine.as_mut(), describe)
        .context("the agent stopped")?;
    eprintln!("agent {name}: the run is over");
    Ok(())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "agent".to_owned())
}
