//! `pgstress agent --coordinator HOST:PORT`: dial a coordinator, prove the shared token, take
//! its plan within this agent's caps, and send each step's share to this agent's own target
//! with the engines `pgstress run` uses.

use std::sync::Arc;

use anyhow::{Context, bail};

use super::preflight::preflight;
use super::setup::{build_engine, quiet_request_panics, request_spec};
use crate::Status;
use crate::cli::{AgentArgs, RunArgs};
use crate::config::{RunConfig, TargetChoice};
use crate::fleet::agent::{self, Caps, Session};
use crate::fleet::messages::AgentPlan;

pub fn agent(args: AgentArgs) -> anyhow::Result<Status> {
    let max_duration = humantime::parse_duration(&args.max_duration).map_err(|_| {
        anyhow::anyhow!(
            "invalid --max-duration '{}': expected a duration such as 30m or 2h",
            args.max_duration
        )
    })?;
    if args.max_connections == 0 {
        bail!("invalid --max-connections '0': give 1 or more");
    }
    let caps = Caps {
        max_connections: args.max_connections,
        max_duration,
    };
    // The target is checked before dialing: an agent without one has nothing to offer.
    let own = RunConfig::from_args(agent_run_args(&args, &AgentPlan::default()))?;
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
    let prepared = RunConfig::from_args(agent_run_args(args, &session.plan))
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let TargetChoice::Server(target) = &config.target else {
                bail!("this agent has no target");
            };
            let (target, server, _) = preflight(target, &config)?;
            let mut spec = request_spec(&config, &target)?;
            if let Some(source) = args.source_address {
                let Some(lean) = spec.lean.as_mut() else {
                    bail!(
                        "--source-address needs the lean client, and the plan has --client postgres"
                    );
                };
                lean.source = Some(source);
            }
            let engine = build_engine(&config, Arc::new(spec), &server)?;
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

/// The options of `pgstress run` that make this agent's engine: its own target, the plan's
/// request and mode. Validated by the same code as the coordinator's own options.
fn agent_run_args(args: &AgentArgs, plan: &AgentPlan) -> RunArgs {
    let ms = |ms: u64| format!("{ms}ms");
    RunArgs {
        dsn: args.dsn.clone(),
        sslmode: args.sslmode.clone(),
        sslrootcert: args.sslrootcert.clone(),
        steps: Some(1),
        // A pool's queue holds the largest share; the other modes take their size from the
        // parameters each step brings.
        step: Some(match plan.mode.as_str() {
            "pool" => plan.largest_share.max(1),
            _ => 1,
        }),
        query: Some(match plan.query.is_empty() {
            true => "SELECT 1".to_owned(),
            false => plan.query.clone(),
        }),
        allow_writes: plan.allow_writes,
        mode: (!plan.mode.is_empty()).then(|| plan.mode.clone()),
        workers: plan.workers,
        connect_per_request: plan.connect_per_request,
        duration: plan.duration_ms.map(ms),
        arrival: plan.arrival.clone(),
        max_inflight: plan.max_inflight,
        timeout: (plan.timeout_ms > 0).then(|| ms(plan.timeout_ms)),
        sample_every: (plan.sample_every_ms > 0).then(|| ms(plan.sample_every_ms)),
        client: (!plan.client.is_empty()).then(|| plan.client.clone()),
        scram_per_connection: plan.scram_per_connection,
        stack_kib: (plan.stack_kib > 0).then_some(plan.stack_kib),
        prepare: plan.prepare.clone(),
        no_report: true,
        quiet: true,
        ..RunArgs::default()
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "agent".to_owned())
}
