//! An agent's run: its own target, the coordinator's typed plan, validated by the same code as
//! `pgstress run`'s own options, so a plan this agent cannot hold is refused before any load.

use super::{ConfigError, RunConfig};
use crate::cli::values::{ClientName, ModeName, Span};
use crate::cli::{RunArgs, TargetArgs};
use crate::fleet::messages::AgentPlan;
use crate::model::plan::Mode;
use crate::pg::request::RequestClient;

impl RunConfig {
    /// The run an agent makes of `plan` against its own `target`.
    pub fn for_agent(target: TargetArgs, plan: &AgentPlan) -> Result<Self, ConfigError> {
        Self::from_args(agent_options(target, plan))
    }

    /// The agent's own target, checked before it dials: without one it has nothing to offer.
    pub fn agent_target(target: TargetArgs) -> Result<Self, ConfigError> {
        Self::from_args(RunArgs {
            target,
            steps: Some(1),
            step: Some(1),
            query: Some("SELECT 1".to_owned()),
            ..quiet()
        })
    }
}

/// An agent's options: one step of its share (a pool's queue holds the largest, as does a
/// hold's crowd; every mode takes its size from the parameters each step brings).
fn agent_options(target: TargetArgs, plan: &AgentPlan) -> RunArgs {
    let mut options = RunArgs {
        target,
        steps: Some(1),
        step: Some(match plan.mode {
            // A hold engine's opening waits for its largest share, and the pre-load checks
            // count it.
            Mode::Pool { .. } | Mode::Hold { .. } => plan.largest_share.max(1),
            _ => 1,
        }),
        query: Some(plan.query.clone()),
        allow_writes: Some(plan.allow_writes),
        timeout: Some(Span(plan.timeout)),
        sample_every: Some(Span(plan.sample_every)),
        stack_kib: Some(plan.stack_kib),
        prepare: plan.prepare,
        ..quiet()
    };
    (options.client, options.scram_per_connection) = match plan.client {
        RequestClient::Postgres => (Some(ClientName::Postgres), None),
        RequestClient::Lean {
            scram_per_connection,
        } => (Some(ClientName::Lean), Some(scram_per_connection)),
    };
    match plan.mode {
        Mode::Burst => options.mode = Some(ModeName::Burst),
        Mode::Pool {
            workers,
            connect_per_request,
            duration,
        } => {
            options.mode = Some(ModeName::Pool);
            options.workers = workers;
            options.connect_per_request = Some(connect_per_request);
            options.duration = duration.map(Span);
        }
        Mode::Rate {
            duration,
            arrival,
            max_inflight,
        } => {
            options.mode = Some(ModeName::Rate);
            options.duration = Some(Span(duration));
            options.arrival = Some(arrival);
            options.max_inflight = max_inflight;
        }
        Mode::Hold { every, duration } => {
            options.mode = Some(ModeName::Hold);
            options.every = Some(Span(every));
            options.duration = Some(Span(duration));
        }
    }
    options
}

/// An agent writes no report and draws no bars: the coordinator does.
fn quiet() -> RunArgs {
    RunArgs {
        no_report: Some(true),
        quiet: Some(true),
        ..RunArgs::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::plan::Arrival;
    use crate::pg::request::Prepare;

    #[test]
    fn an_agent_runs_the_plan_it_was_sent() {
        let plan = AgentPlan {
            index: 2,
            mode: Mode::Rate {
                duration: Duration::from_millis(1500),
                arrival: Arrival::Poisson,
                max_inflight: Some(7),
            },
            query: "SELECT $1".to_owned(),
            timeout: Duration::from_millis(750),
            allow_writes: true,
            client: RequestClient::Lean {
                scram_per_connection: true,
            },
            stack_kib: 128,
            prepare: Some(Prepare::Never),
            sample_every: Duration::from_millis(20),
            saturated_cpu_pct: 80.0,
            largest_share: 40,
            bound: Duration::from_secs(60),
        };
        let target = TargetArgs {
            dsn: Some("host=127.0.0.1 port=5 user=u dbname=d".to_owned()),
            ..TargetArgs::default()
        };
        let config = RunConfig::for_agent(target, &plan).unwrap();
        assert_eq!(config.mode, plan.mode);
        assert_eq!(config.client, plan.client);
        assert_eq!(config.prepare, plan.prepare);
        assert_eq!(config.timeout, plan.timeout);
        assert_eq!(config.sample_every, plan.sample_every);
        assert_eq!(config.stack_size, 128 * 1024);
        assert_eq!(config.query, plan.query);
        assert!(config.allow_writes && config.quiet && !config.report);
        let pool = AgentPlan {
            mode: Mode::Pool {
                workers: Some(3),
                connect_per_request: true,
                duration: None,
            },
            client: RequestClient::Postgres,
            ..plan
        };
        let target = TargetArgs {
            dsn: Some("host=127.0.0.1 port=5 user=u dbname=d".to_owned()),
            ..TargetArgs::default()
        };
        let config = RunConfig::for_agent(target, &pool).unwrap();
        assert_eq!(config.mode, pool.mode);
        assert_eq!(
            config.plan.largest(),
            40,
            "the pool's queue holds the share"
        );
    }
}
