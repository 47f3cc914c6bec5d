//! pgstress: find how much concurrent load a PostgreSQL server takes before it stops
//! responding, and prove the load generator was not the limit.

pub mod app;
pub mod cli;
pub mod config;
pub mod engine;
pub mod fleet;
pub mod judge;
pub mod logs;
pub mod measure;
pub mod model;
pub mod output;
pub mod pg;
pub mod report;
pub mod sys;
#[cfg(test)]
mod test_support;

use cli::{Cli, Command};

/// How a command ended, as the process exit code a script can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The command did its job (a breaking point found is a result, not an error).
    Completed,
    /// pgstress could not do its job: bad target, bad input, I/O.
    Failed,
    /// A `--fail-if` gate was breached.
    GateBreached,
    /// Ctrl-C, SIGTERM or SIGHUP: what was measured is on disk.
    Interrupted,
    /// The exit code of the run that `pgstress k8s entrypoint` started in a pod: passed on
    /// as it is, so the Job reports what the run said.
    Run(u8),
    /// An agent was lost during a step: the run stopped there; what was measured is on disk.
    AgentLost,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Completed => 0,
            Status::Failed => 1,
            Status::GateBreached => 3,
            Status::AgentLost => 4,
            Status::Interrupted => sys::interrupt::exit_code(),
            Status::Run(code) => code,
        }
    }
}

/// Runs one parsed command line; the binary's `main` only prints the error and exits.
pub fn run(cli: Cli) -> anyhow::Result<Status> {
    match cli.command {
        Command::Run(args) => app::run::run(config::RunConfig::from_args(*args)?),
        Command::Report(args) => app::report::report(&args),
        Command::Compare(args) => app::compare::compare(args),
        Command::Prepare(args) => app::prepare::prepare(&config::PrepareConfig::from_args(args)?),
        Command::Agent(args) => app::agent::agent(args),
        Command::Watch(args) => app::watch::watch(args),
        Command::Completions(args) => app::manual::completions(&args.shell, &mut std::io::stdout()),
        Command::Man => app::manual::man(&mut std::io::stdout()),
        Command::K8s(args) => app::k8s::k8s(args, &mut std::io::stdout()),
    }
}
