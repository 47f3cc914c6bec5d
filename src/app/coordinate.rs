//! `pgstress run --agents N --listen ADDR:PORT`: the engine that sends each step to the agents
//! instead of this process, with each agent's plan cut from this run's validated options.

use std::time::Duration;

use crate::config::RunConfig;
use crate::engine::{EXIT_GRACE, Engine, REPORT_GRACE, burst, hold, pool};
use crate::fleet::coordinator;
use crate::fleet::door::FleetSettings;
use crate::fleet::messages::AgentPlan;
use crate::fleet::remote::{Remote, Shape};
use crate::fleet::split;
use crate::model::plan::Mode;
use crate::output::printer::Printer;

/// Waits for the agents, sends them their plans and returns the engine that drives them.
/// `clients`: the connections the load can hold at once (the server's usable ones, or a
/// pooler's client limit), which the pool's default workers leave a margin under.
pub fn remote_engine(
    config: &RunConfig,
    fleet: &FleetSettings,
    clients: u32,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<Box<dyn Engine>> {
    let agents = fleet.agents;
    let workers =
        match config.mode {
            Mode::Pool { workers, .. } => Some(workers.unwrap_or_else(|| {
                pool::default_workers(clients, config.plan.largest()).max(agents)
            })),
            _ => None,
        };
    let shape = shape(config, agents, workers);
    let bound: Duration = (1..=config.plan.steps)
        .map(|i| (shape.step_bound)(config.plan.requests_at(i)) + config.pause)
        .sum();
    let plan_for = |index: u32| plan_for(config, agents, workers, bound, index);
    let (links, engines) = coordinator::assemble(fleet, &plan_for, &mut |note| printer.note(note))?;
    if let Some(first) = engines.first() {
        printer.note(format!("the agents are ready; agent 1: {first}"));
    }
    Ok(Box::new(Remote::new(links, shape)))
}

/// One agent's plan: this run's request and mode, with its share of the workers (pool), of the
/// senders (rate) and of the largest step.
fn plan_for(
    config: &RunConfig,
    agents: u32,
    workers: Option<u32>,
    bound: Duration,
    index: u32,
) -> AgentPlan {
    let share_of = |total: u32| split::shares(total, agents as usize)[index as usize - 1];
    let largest_requests = config.mode.requests_for(config.plan.largest());
    let mode = match config.mode.clone() {
        Mode::Pool {
            connect_per_request,
            duration,
            ..
        } => Mode::Pool {
            workers: workers.map(share_of),
            connect_per_request,
            duration,
        },
        Mode::Rate {
            duration,
            arrival,
            max_inflight,
        } => Mode::Rate {
            duration,
            arrival,
            max_inflight: max_inflight.map(share_of),
        },
        // Each agent's share of a step comes with the step (its parameter values): a burst
        // sends them at once, a hold keeps that many connections.
        mode @ (Mode::Burst | Mode::Hold { .. }) => mode,
    };
    AgentPlan {
        index,
        mode,
        query: config.query.clone(),
        timeout: config.timeout,
        allow_writes: config.allow_writes,
        client: config.client,
        stack_kib: config.stack_size / 1024,
        prepare: config.prepare,
        sample_every: config.sample_every,
        saturated_cpu_pct: config.thresholds.saturated_cpu_pct,
        largest_share: share_of(largest_requests),
        bound,
    }
}

/// How the agents' shares of a step are bounded, as the single-machine engines bound a step.
fn shape(config: &RunConfig, agents: u32, workers: Option<u32>) -> Shape {
    let timeout = config.timeout;
    let describe = format!(
        "{} mode, each agent its share of every step",
        config.mode.name()
    );
    match config.mode.clone() {
        Mode::Burst => Shape {
            describe,
            concurrency: Box::new(Some),
            step_bound: Box::new(move |_| {
                burst::LAUNCH_ALLOWANCE + timeout + REPORT_GRACE + EXIT_GRACE
            }),
        },
        Mode::Pool { .. } => {
            let workers = workers.unwrap_or(agents);
            // The agent with the fewest workers drains its share last.
            let fewest = (workers / agents).max(1);
            Shape {
                describe,
                concurrency: Box::new(move |size| Some(size.min(workers))),
                step_bound: Box::new(move |size| {
                    let share = size.div_ceil(agents);
                    timeout * share.div_ceil(fewest).max(1) + REPORT_GRACE
                }),
            }
        }
        Mode::Hold { duration, .. } => {
            // The agent with the largest share of a step's growth opens its connections last.
            let growth = config.plan.start.max(config.plan.step).div_ceil(agents);
            Shape {
                describe,
                concurrency: Box::new(|_| None),
                step_bound: Box::new(move |_| {
                    hold::opening_bound(timeout, growth) + duration + timeout + REPORT_GRACE
                }),
            }
        }
        Mode::Rate { duration, .. } => Shape {
            describe,
            concurrency: Box::new(|_| None),
            step_bound: Box::new(move |_| duration + timeout + REPORT_GRACE + EXIT_GRACE),
        },
    }
}
