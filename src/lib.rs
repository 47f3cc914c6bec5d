//! pgstress: find how much concurrent load a PostgreSQL server takes before it stops
//! responding, and prove the load generator was not the limit.

pub mod cli;
pub mod compare;
pub mod config;
pub mod data;
pub mod demo;
pub mod engine;
pub mod flags;
pub mod gate;
pub mod interrupt;
pub mod logs;
pub mod outcome;
pub mod pg;
pub mod printer;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod request;
pub mod run_facts;
pub mod runner;
pub mod sampler;
pub mod server;
pub mod stats;
pub mod target;
#[cfg(test)]
mod test_support;
pub mod tls;
pub mod verdict;

use std::path::Path;

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
    /// Ctrl-C: what was measured is on disk.
    Interrupted,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Completed => 0,
            Status::Failed => 1,
            Status::GateBreached => 3,
            Status::Interrupted => 130,
        }
    }
}

/// Runs one parsed command line; the binary's `main` only prints the error and exits.
pub fn run(cli: Cli) -> anyhow::Result<Status> {
    match cli.command {
        Command::Run(args) => {
            let plan = config::RunConfig::from_args(*args)?;
            runner::run(plan)
        }
        Command::Report(args) => {
            let paths = report::write_report(&args.path)?;
            println!("report:  {}", paths.html.display());
            for chart in &paths.charts {
                println!("chart:   {}", chart.display());
            }
            Ok(Status::Completed)
        }
        Command::Compare(args) => {
            let runs = compare::load_runs(&args.runs)?;
            print!("{}", compare::table(&runs));
            if !args.no_charts {
                let out = match args.out {
                    Some(dir) => dir,
                    None => runs[0]
                        .prefix
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                };
                for path in compare::write_charts(&runs, &out)? {
                    println!("chart:   {}", path.display());
                }
            }
            Ok(Status::Completed)
        }
        Command::Prepare(args) => {
            let prepare = config::PrepareConfig::from_args(args)?;
            demo::prepare(&prepare)?;
            Ok(Status::Completed)
        }
    }
}
