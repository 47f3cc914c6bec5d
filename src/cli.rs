//! The command line, declared and nothing else: validation lives in `config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::plan::{ARRIVAL_NAMES, MODE_NAMES};

/// libpq's sslmode values (`allow` is taken as `prefer`: pgstress never starts without TLS
/// to retry with it).
const SSLMODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];
const MODES: [&str; 3] = MODE_NAMES;
const ARRIVALS: [&str; 2] = ARRIVAL_NAMES;

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
    /// Print the shell completion script for bash, zsh or fish.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `pgstress man > ~/.local/share/man/man1/pgstress.1`.
    Man,
    /// Run the coordinator and its agents on Kubernetes: print the manifests, or (in the
    /// container) start the role of this pod.
    K8s(K8sArgs),
}

#[derive(Debug, Args)]
pub struct K8sArgs {
    #[command(subcommand)]
    pub command: K8sCommand,
}

#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Print the manifests (YAML) of a run on N agents: a headless Service and an Indexed Job.
    Render(Box<K8sRenderArgs>),
    /// The container's command: run the coordinator (index 0) or an agent, by JOB_COMPLETION_INDEX.
    Entrypoint(K8sEntrypointArgs),
}

#[derive(Debug, Args)]
pub struct K8sRenderArgs {
    /// Agents sending the load, one pod each (the coordinator is one pod more).
    #[arg(long, value_name = "N")]
    pub agents: u32,

    /// Container image holding pgstress, e.g. registry.example.com/pgstress:0.1.0.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,

    /// Name of the Job and of its headless Service (a DNS label).
    #[arg(long, value_name = "NAME", default_value = "pgstress")]
    pub name: String,

    /// Namespace of every object [default: kubectl's current one].
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Port the coordinator listens on for its agents.
    #[arg(long, value_name = "PORT", default_value_t = 7433)]
    pub port: u32,

    /// Secret holding the keys DATABASE_URL and PGSTRESS_TOKEN.
    #[arg(long, value_name = "SECRET", default_value = "pgstress")]
    pub secret: String,

    /// Also print a template of that Secret, with placeholders to replace (never a real value).
    #[arg(long)]
    pub secret_template: bool,

    /// How long the coordinator's pod keeps running after the run, so its logs can be copied
    /// out with `kubectl cp`; 0s to end at once.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub hold: String,

    /// Deadline of the whole Job (activeDeadlineSeconds), hold included.
    #[arg(long, value_name = "DURATION", default_value = "3h")]
    pub deadline: String,

    /// Keep the coordinator's logs on this PersistentVolumeClaim instead of the pod's own
    /// emptyDir (which goes with the pod).
    #[arg(long, value_name = "CLAIM")]
    pub logs_claim: Option<String>,

    /// CPU each pod requests, e.g. 1 or 500m.
    #[arg(long, value_name = "QUANTITY")]
    pub cpu_request: Option<String>,

    /// CPU limit of each pod (a throttled agent measures itself, not the server).
    #[arg(long, value_name = "QUANTITY")]
    pub cpu_limit: Option<String>,

    /// Memory each pod requests, e.g. 512Mi.
    #[arg(long, value_name = "QUANTITY")]
    pub memory_request: Option<String>,

    /// Memory limit of each pod, e.g. 2Gi.
    #[arg(long, value_name = "QUANTITY")]
    pub memory_limit: Option<String>,

    /// Agents' cap: the most connections an agent opens at once for any coordinator.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u32>,

    /// Agents' cap: the longest run an agent takes part in, e.g. 30m.
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<String>,

    /// Options of the coordinator's `pgstress run`, after `--`, e.g. -- --mode pool --steps 20.
    #[arg(last = true, value_name = "RUN OPTIONS")]
    pub run_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct K8sEntrypointArgs {
    /// Agents the coordinator waits for.
    #[arg(long, value_name = "N")]
    pub agents: u32,

    /// The coordinator's address, HOST:PORT: agents dial it, the coordinator listens on PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: String,

    /// Agents' cap on connections, passed to `pgstress agent`.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u32>,

    /// Agents' cap on a run's duration, passed to `pgstress agent`.
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<String>,

    /// How long the coordinator's pod keeps running after the run.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub hold: String,

    /// Options of the coordinator's `pgstress run`.
    #[arg(last = true, value_name = "RUN OPTIONS")]
    pub run_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The coordinator to dial: the HOST:PORT of `pgstress run --agents N --listen ADDR:PORT`.
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: String,

    /// This agent's target: libpq key=value string or postgres:// URL. Default: DATABASE_URL,
    /// then libpq's PG* variables and service file. The coordinator never sends one.
    #[arg(long, value_name = "DSN")]
    pub dsn: Option<String>,

    /// TLS to the target: disable, prefer, require, verify-ca or verify-full [default: prefer].
    #[arg(long, value_name = "MODE", value_parser = SSLMODES)]
    pub sslmode: Option<String>,

    /// CA certificate for verify-ca / verify-full.
    #[arg(long, value_name = "FILE")]
    pub sslrootcert: Option<PathBuf>,

    /// The most connections any coordinator may have this agent hold at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: u32,

    /// The longest this agent works for any coordinator, from joining to the last step.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub max_duration: String,

    /// This agent's name in the coordinator's logs [default: the host name and process id].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The local address the load's connections leave from (e.g. 127.0.0.2), on a host with
    /// several addresses: each has its own ephemeral ports.
    #[arg(long, value_name = "ADDR")]
    pub source_address: Option<std::net::IpAddr>,
}

/// The shells `pgstress completions` writes a script for.
pub const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh or fish.
    #[arg(value_name = "SHELL", value_parser = SHELLS)]
    pub shell: String,
}

/// Every option is also a key of the `--config` TOML file; the command line wins.
#[derive(Debug, Default, Args)]
// `--steps -1` is then a bad value of --steps, not an unknown option `-1`.
#[command(allow_negative_numbers = true)]
pub struct RunArgs {
    /// TOML file whose keys are these options' long names (e.g. `steps = 10`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Target: libpq key=value string or postgres:// URL. Default: DATABASE_URL, then libpq's
    /// PG* variables and service file; with none of them, a throwaway server for this run.
    #[arg(long, value_name = "DSN")]
    pub dsn: Option<String>,

    /// TLS: disable, prefer, require, verify-ca or verify-full (libpq's sslmode; wins over the
    /// DSN's) [default: prefer].
    #[arg(long, value_name = "MODE", value_parser = SSLMODES)]
    pub sslmode: Option<String>,

    /// Root certificate (PEM) to verify the server with (libpq's sslrootcert).
    #[arg(long, value_name = "FILE")]
    pub sslrootcert: Option<PathBuf>,

    /// Number of steps in the ramp [default: 15].
    #[arg(long, value_name = "N")]
    pub steps: Option<u32>,

    /// Requests added at each step: step i sends start + (i-1) * step [default: 50].
    #[arg(long, value_name = "N")]
    pub step: Option<u32>,

    /// Requests of the first step [default: the value of --step].
    #[arg(long, value_name = "N")]
    pub start: Option<u32>,

    /// SQL run by every request; $1 is bound to a value drawn from the data files.
    #[arg(long, value_name = "SQL")]
    pub query: Option<String>,

    /// Folder whose *.csv files (no header) hold the parameter values [default: data].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Zero-based CSV column holding the values [default: 0].
    #[arg(long, value_name = "N")]
    pub column: Option<usize>,

    /// The CSV files start with a header row: read past it.
    #[arg(long)]
    pub skip_header: bool,

    /// Let the query write. Without it every request runs in a read-only transaction, so a
    /// stress test never changes the data it is aimed at.
    #[arg(long)]
    pub allow_writes: bool,

    /// Folder for the run's log files [default: logs].
    #[arg(long, value_name = "DIR")]
    pub logs: Option<PathBuf>,

    /// How the load is sent: burst (a thread and a new connection per request, all released
    /// together), pool (a fixed set of workers take the step's requests from a queue) or rate
    /// (step i offers i * step requests per second, each at its scheduled time) [default: burst].
    #[arg(long, value_name = "MODE", value_parser = MODES)]
    pub mode: Option<String>,

    /// pool: worker threads, each with its own connection [default: the server's usable
    /// connections minus a margin, at most the largest step].
    #[arg(long, value_name = "W")]
    pub workers: Option<u32>,

    /// pool: open a new connection for every request instead of keeping one per worker.
    #[arg(long)]
    pub connect_per_request: bool,

    /// rate: how long each step offers its rate [default: 1s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub duration: Option<String>,

    /// rate: when requests are due within a step: uniform (evenly spaced) or poisson
    /// (random, as independent users arrive) [default: uniform].
    #[arg(long, value_name = "ARRIVAL", value_parser = ARRIVALS)]
    pub arrival: Option<String>,

    /// rate: send requests from this many workers; a request due while all are busy is
    /// dropped and counted [default: a thread per request].
    #[arg(long, value_name = "M")]
    pub max_inflight: Option<u32>,

    /// Deadline of one request, connect plus query, e.g. 10s or 500ms [default: 10s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub timeout: Option<String>,

    /// CPU sampling interval during a step [default: 100ms].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub sample_every: Option<String>,

    /// Pause between steps, to let the server settle, e.g. 2s.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub pause: Option<String>,

    /// Also write <ts>_requests.csv: one row per request (as pgbench --log).
    #[arg(long)]
    pub log_requests: bool,

    /// Client of every request and of the pool's kept connections: lean (pgstress's own: one
    /// socket, no runtime, SCRAM keys derived once) or postgres (the `postgres` crate)
    /// [default: lean].
    #[arg(long, value_name = "CLIENT", value_parser = ["lean", "postgres"])]
    pub client: Option<String>,

    /// Derive SCRAM's keys on every connection, as a libpq client does, instead of once per
    /// run (the server's work is the same either way).
    #[arg(long)]
    pub scram_per_connection: bool,

    /// Stack size of each request thread in KiB, 64 to 1048576 [default: 256].
    #[arg(long, value_name = "KIB")]
    pub stack_kib: Option<usize>,

    /// Latency objective: a step whose p99 exceeds it was not handled, e.g. 250ms.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub slo_p99: Option<String>,

    /// Stop after a step whose failure rate reaches this share [default: 0.5].
    #[arg(long, value_name = "F")]
    pub stop_failure_rate: Option<f64>,

    /// A step is handled while the server fails at most this share of the requests sent,
    /// e.g. 0.001 [default: 0, the original's rule: no failure at all].
    #[arg(long, value_name = "SHARE")]
    pub tolerate: Option<f64>,

    /// Stop after a step whose p99 latency exceeds this [default: off].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub stop_p99: Option<String>,

    /// Run every step: no stop rule, not even "the server stopped responding".
    #[arg(long)]
    pub no_stop: bool,

    /// Exit 3 when the run breaches this gate, e.g. "capacity<200", "p99>250ms@100",
    /// "failure-rate>0.01" (repeatable).
    #[arg(long = "fail-if", value_name = "GATE")]
    pub fail_if: Vec<String>,

    /// launch-spread flag: first-to-last request start above this [default: 100ms].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub spread_max: Option<String>,

    /// launch-spread flag: first-to-last request start above this share of the step's wall
    /// time [default: 0.1].
    #[arg(long, value_name = "F")]
    pub spread_ratio: Option<f64>,

    /// CPU over a step (percent of the CPUs a side may run on) from which the client or the
    /// server counts as saturated [default: 90].
    #[arg(long, value_name = "PCT")]
    pub saturated_cpu: Option<f64>,

    /// CPUs of the throwaway server's processes, e.g. 1 or 2-3 [default: the larger half of
    /// the CPUs pgstress may use, when there are two or more].
    #[arg(long, value_name = "LIST")]
    pub server_cpus: Option<String>,

    /// CPUs of pgstress's own threads, e.g. 0 or 0-1 [default: the CPUs the server does not
    /// take].
    #[arg(long, value_name = "LIST")]
    pub client_cpus: Option<String>,

    /// Leave the throwaway server and pgstress on the same CPUs, competing for them.
    #[arg(long)]
    pub no_pin: bool,
    /// Start a throwaway pooler in front of the target (the throwaway server or --dsn's) and
    /// send the load through it: pgbouncer (the machine's own binary).
    #[arg(long, value_name = "POOLER", value_parser = ["pgbouncer"])]
    pub pooler: Option<String>,

    /// Setting for the throwaway pooler's ini file, e.g. pool_mode=transaction (repeatable).
    #[arg(long = "pooler-setting", value_name = "KEY=VALUE")]
    pub pooler_settings: Vec<String>,

    /// pool: prepare the query once per kept connection (a named statement), or never (the
    /// unnamed statement with every request, as a transaction-mode pooler needs) [default:
    /// once, never when the target is a pooler].
    #[arg(long, value_name = "WHEN", value_parser = ["once", "never"])]
    pub prepare: Option<String>,

    /// Setting for the throwaway server, e.g. max_connections=300 (repeatable).
    #[arg(long = "server-setting", value_name = "KEY=VALUE")]
    pub server_settings: Vec<String>,

    /// Do not draw the charts and the HTML report at the end of the run.
    #[arg(long)]
    pub no_report: bool,

    /// No progress bars, even on a terminal: the plain per-step lines only.
    #[arg(long)]
    pub quiet: bool,

    /// Send each step's load from N agents (`pgstress agent`) instead of this process, which
    /// coordinates: it releases each step on every agent at once and merges what they measured.
    #[arg(long, value_name = "N")]
    pub agents: Option<u32>,

    /// With --agents: the address and port the agents dial, e.g. 0.0.0.0:7777. Beyond loopback
    /// it needs the shared token in PGSTRESS_TOKEN (on the agents too).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,

    /// With --agents: how long to wait for all of them to join [default: 60s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub agents_timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Target server: libpq key=value string or postgres:// URL (else DATABASE_URL / PG*).
    #[arg(long, value_name = "DSN")]
    pub dsn: Option<String>,

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
