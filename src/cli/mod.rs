//! The command line, declared and nothing else: each option once, typed at the edge
//! (`values`); validation across options lives in `config`.

mod fleet;
mod run;
mod target;
pub mod values;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use fleet::{
    AgentArgs, CapsArgs, K8sArgs, K8sCommand, K8sEntrypointArgs, K8sRenderArgs, WatchArgs,
};
pub use run::RunArgs;
pub use target::TargetArgs;

#[derive(Debug, Parser)]
#[command(
    name = "pgstress",
    version,
    about = "Find how much concurrent load a PostgreSQL server takes before it stops responding",
    after_help = "Exit codes: 0 the run completed (a breaking point found is a result), \
                  1 pgstress could not do its job, 2 usage error, 3 a --fail-if gate was breached, \
                  4 an agent was lost (the run stopped; the steps before are on disk), \
                  130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the stepped ramp against a server (by default a throwaway one it starts itself).
    Run(Box<RunArgs>),
    /// Create the demo table `sharding` on a server and optionally write matching parameter CSVs.
    Prepare(PrepareArgs),
    /// Redraw a run's charts and HTML report from its saved logs.
    Report(ReportArgs),
    /// Print saved runs side by side, step by step (e.g. burst vs pool vs rate).
    Compare(CompareArgs),
    /// Send load for a coordinator (`pgstress run --agents N --listen ADDR:PORT`) to this agent's
    /// own target, each step when the coordinator releases it.
    Agent(AgentArgs),
    /// On the database server's host: find the server's postmaster and send its host's CPU,
    /// the server's, the postmaster's own, memory and disks to a run (`pgstress run
    /// --watcher-listen ADDR:PORT`), which judges the server by them as it judges a local one.
    Watch(WatchArgs),
    /// Print the shell completion script for bash, zsh or fish.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `pgstress man > ~/.local/share/man/man1/pgstress.1`.
    Man,
    /// Run the coordinator and its agents on Kubernetes: print the manifests, or (in the
    /// container) start the role of this pod.
    K8s(K8sArgs),
}

/// The shells `pgstress completions` writes a script for.
pub const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh or fish.
    #[arg(value_name = "SHELL", value_parser = SHELLS)]
    pub shell: String,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Rows in the demo table.
    #[arg(long, value_name = "N", default_value_t = crate::model::plan::DEMO_ROWS)]
    pub rows: u64,

    /// Also write parameter CSVs whose values match the rows, into this folder.
    #[arg(long, value_name = "DIR")]
    pub write_data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run: its file prefix (logs/11282026_111515), its _summary.json or its _steps.csv.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The runs: each a file prefix (logs/11282026_111515), a _summary.json or a _steps.csv.
    #[arg(value_name = "RUN", required = true)]
    pub runs: Vec<PathBuf>,

    /// Folder for the comparison charts [default: the first run's folder].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Print the table only, no charts.
    #[arg(long)]
    pub no_charts: bool,
}
