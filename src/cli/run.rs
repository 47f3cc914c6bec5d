//! `pgstress run`'s options: the one definition of each, read by clap from the command line
//! and by serde from the `--config` TOML file under the same name, with the same type.
//!
//! Every option is an `Option`: None means "not given here", so the layers (command line over
//! file over default) merge field by field, booleans included (`--quiet=false` undoes a file's
//! `quiet = true`). The defaults live where the plan is validated (`config`), and each is
//! stated in its option's help as `[default: …]`, which tests/options_doc.rs holds to
//! docs/options.md.

use std::path::PathBuf;

use clap::Args;
use merge::Merge;
use serde::Deserialize;

use super::target::TargetArgs;
use super::values::{ClientName, CpuList, ListenAddr, ModeName, PoolerName, Setting, Span};
use crate::judge::gate::Gate;
use crate::model::plan::Arrival;
use crate::pg::request::Prepare;

/// Every option is also a key of the `--config` TOML file; the command line wins.
#[derive(Debug, Clone, Default, Args, Deserialize, Merge)]
#[serde(rename_all = "kebab-case")]
#[merge(strategy = merge::option::overwrite_none)]
// `--steps -1` is then a bad value of --steps, not an unknown option `-1`.
#[command(allow_negative_numbers = true)]
pub struct RunArgs {
    /// TOML file whose keys are these options' long names (e.g. `steps = 10`, `quiet = true`,
    /// `server-setting = ["max_connections=300"]`); the command line wins [default: none].
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    #[serde(flatten)]
    #[merge(strategy = merge::Merge::merge)]
    pub target: TargetArgs,

    /// Number of steps in the ramp [default: 15].
    #[arg(long, value_name = "N")]
    pub steps: Option<u32>,

    /// Requests added at each step: step i sends start + (i-1) * step [default: 50].
    #[arg(long, value_name = "N")]
    pub step: Option<u32>,

    /// Requests of the first step [default: the value of --step].
    #[arg(long, value_name = "N")]
    pub start: Option<u32>,

    /// SQL run by every request; $1 is bound to a value drawn from the data files [default:
    /// the demo table's lookup, SELECT * FROM sharding WHERE url_hash = decode($1, 'hex')].
    #[arg(long, value_name = "SQL")]
    pub query: Option<String>,

    /// Folder whose *.csv files (no header) hold the parameter values [default: data].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Zero-based CSV column holding the values [default: 0].
    #[arg(long, value_name = "N")]
    pub column: Option<usize>,

    /// The CSV files start with a header row: read past it [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub skip_header: Option<bool>,

    /// Let the query write. Without it every request runs in a read-only transaction, so a
    /// stress test never changes the data it is aimed at [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub allow_writes: Option<bool>,

    /// Folder for the run's log files [default: logs].
    #[arg(long, value_name = "DIR")]
    pub logs: Option<PathBuf>,

    /// How the load is sent: burst (a thread and a new connection per request, all released
    /// together), pool (a fixed set of workers take the step's requests from a queue), rate
    /// (step i offers i * step requests per second, each at its scheduled time) or hold (step
    /// i holds start + (i-1) * step client connections, kept from step to step, each sending
    /// the query every --every) [default: burst].
    #[arg(long, value_name = "MODE")]
    pub mode: Option<ModeName>,

    /// pool: worker threads, each with its own connection [default: the server's usable
    /// connections (through pgpool-II or PgBouncer, the pooler's client limit) minus a margin,
    /// at most the largest step].
    #[arg(long, value_name = "W")]
    pub workers: Option<u32>,

    /// pool: open a new connection for every request instead of keeping one per worker
    /// [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub connect_per_request: Option<bool>,

    /// pool: a worker whose connection fails opens a new one (the target's hosts resolved
    /// again, so `target_session_attrs=read-write` finds a new primary) after a backoff that
    /// doubles from 10 ms with jitter; false: the worker stops and fails the requests it takes.
    /// Rate mode opens a connection per request, so it always reconnects [default: true].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub reconnect: Option<bool>,

    /// Start a streaming standby beside the throwaway server (pg_basebackup -R, its own port
    /// and folder, removed like the server); the run's target lists both hosts with
    /// target_session_attrs=read-write, so that the load follows a failover [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub standby: Option<bool>,

    /// On the throwaway server, during the load: restart@30s (a fast stop and a start),
    /// failover@30s (with --standby: the primary stopped -m immediate, the standby promoted),
    /// kill-backends@30s (pg_terminate_backend of the run's sessions) or freeze@30s:3s
    /// (SIGSTOP, then SIGCONT 3 s later); the time counts from the load's start. The outage
    /// is measured the same way without it, whoever causes the fault [default: none].
    #[arg(long, value_name = "FAULT")]
    pub fault: Option<crate::model::fault::Fault>,

    /// pool: the longest wait between two reconnect attempts, e.g. 1s or 250ms [default: 1s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub reconnect_max: Option<Span>,

    /// hold: how often each held connection sends the query, jittered (each wait drawn between
    /// half and one and a half of it), e.g. 10s or 50s [default: 10s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub every: Option<Span>,

    /// rate: how long each step offers its rate; hold: how long each step holds its
    /// connections once they are open; pool: how long each step keeps its size of requests
    /// queued, each answered one replaced by the next, like pgbench -T (without it a pool
    /// step's requests are queued once and drained) [default: rate 1s; hold 30s; pool none].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub duration: Option<Span>,

    /// rate: when requests are due within a step: uniform (evenly spaced) or poisson
    /// (random, as independent users arrive) [default: uniform].
    #[arg(long, value_name = "ARRIVAL")]
    pub arrival: Option<Arrival>,

    /// rate: send requests from this many workers; a request due while all are busy is
    /// dropped and counted [default: a thread per request].
    #[arg(long, value_name = "M")]
    pub max_inflight: Option<u32>,

    /// Deadline of one request, connect plus query, e.g. 10s or 500ms [default: 10s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub timeout: Option<Span>,

    /// CPU sampling interval during a step [default: 100ms].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub sample_every: Option<Span>,

    /// Pause between steps, to let the server settle, e.g. 2s [default: 0s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub pause: Option<Span>,

    /// Also write <ts>_requests.csv: one row per request (as pgbench --log) [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub log_requests: Option<bool>,

    /// Client of every request and of the pool's kept connections: lean (pgstress's own: one
    /// socket, no runtime, SCRAM keys derived once) or postgres (the `postgres` crate)
    /// [default: lean].
    #[arg(long, value_name = "CLIENT")]
    pub client: Option<ClientName>,

    /// Local addresses the run's connections leave from, in turn (round-robin), e.g.
    /// 127.0.0.2,127.0.0.3 (repeatable): each has its own ~28k ephemeral ports. Needs the lean
    /// client [default: the system's choice].
    #[arg(long = "source-address", value_name = "ADDR", value_delimiter = ',')]
    #[serde(rename = "source-address")]
    pub source_addresses: Option<Vec<std::net::IpAddr>>,

    /// Derive SCRAM's keys on every connection, as a libpq client does, instead of once per
    /// run (the server's work is the same either way) [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub scram_per_connection: Option<bool>,

    /// Stack size of each request thread (hold: each held connection's thread) in KiB, 64 to
    /// 1048576 [default: 256; hold 128].
    #[arg(long, value_name = "KIB")]
    pub stack_kib: Option<usize>,

    /// Latency objective: a step whose p99 exceeds it was not handled, e.g. 250ms [default: none].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub slo_p99: Option<Span>,

    /// Stop after a step whose failure rate reaches this share [default: 0.5].
    #[arg(long, value_name = "F")]
    pub stop_failure_rate: Option<f64>,

    /// A step is handled while the server fails at most this share of the requests sent,
    /// e.g. 0.001 [default: 0].
    #[arg(long, value_name = "SHARE")]
    pub tolerate: Option<f64>,

    /// Stop after a step whose p99 latency exceeds this [default: none].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub stop_p99: Option<Span>,

    /// Run every step: no stop rule, not even "the server stopped responding" [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub no_stop: Option<bool>,

    /// Exit 3 when the run breaches this gate, e.g. "capacity<200", "p99>250ms@100",
    /// "failure-rate>0.01", "outage>5s", "gap-p99>4s", "lost>0" (repeatable) [default: none].
    #[arg(long = "fail-if", value_name = "GATE")]
    #[serde(rename = "fail-if")]
    pub fail_if: Option<Vec<Gate>>,

    /// launch-spread flag: first-to-last request start above this [default: 100ms].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub spread_max: Option<Span>,

    /// launch-spread flag: first-to-last request start above this share of the step's wall
    /// time [default: 0.1].
    #[arg(long, value_name = "F")]
    pub spread_ratio: Option<f64>,

    /// CPU over a step (percent of the CPUs a side may run on) from which the client or the
    /// server counts as saturated; a server seen over SQL alone counts when its sessions on CPU
    /// reach --server-cores [default: 90].
    #[arg(long, value_name = "PCT")]
    pub saturated_cpu: Option<f64>,

    /// The server's CPU count, where pgstress cannot see its processes (another machine, a
    /// managed database): a step is server-saturated when the server's sessions on CPU,
    /// sampled from pg_stat_activity, reach it [default: none: the sessions are logged, not
    /// judged].
    #[arg(long, value_name = "N")]
    pub server_cores: Option<f64>,

    /// CPUs of the throwaway server's processes, e.g. 1 or 2-3 [default: the larger half of
    /// the CPUs pgstress may use, when there are two or more].
    #[arg(long, value_name = "LIST")]
    pub server_cpus: Option<CpuList>,

    /// CPUs of pgstress's own threads, e.g. 0 or 0-1 [default: the CPUs the server does not
    /// take].
    #[arg(long, value_name = "LIST")]
    pub client_cpus: Option<CpuList>,

    /// Leave the throwaway server and pgstress on the same CPUs, competing for them
    /// [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub no_pin: Option<bool>,

    /// Start a throwaway pooler in front of the target (the throwaway server or --dsn's) and
    /// send the load through it: pgbouncer (the machine's own binary) [default: none].
    #[arg(long, value_name = "POOLER")]
    pub pooler: Option<PoolerName>,

    /// Setting for the throwaway pooler's ini file, e.g. pool_mode=transaction (repeatable)
    /// [default: none].
    #[arg(long = "pooler-setting", value_name = "KEY=VALUE")]
    #[serde(rename = "pooler-setting")]
    pub pooler_settings: Option<Vec<Setting>>,

    /// PgBouncer processes of the throwaway pooler, sharing its port (so_reuseport), each on
    /// one core with its own descriptor limit [default: 1].
    #[arg(long, value_name = "K")]
    pub pooler_processes: Option<u32>,

    /// pool: prepare the query once per kept connection (a named statement), or never (the
    /// unnamed statement with every request, as a transaction-mode pooler needs) [default:
    /// once, never when the target is a pooler].
    #[arg(long, value_name = "WHEN")]
    pub prepare: Option<Prepare>,

    /// Setting for the throwaway server, e.g. max_connections=300 (repeatable) [default: none].
    #[arg(long = "server-setting", value_name = "KEY=VALUE")]
    // The option's own name, and the plural the README showed first.
    #[serde(rename = "server-setting", alias = "server-settings")]
    pub server_settings: Option<Vec<Setting>>,

    /// Do not draw the charts and the HTML report at the end of the run [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub no_report: Option<bool>,

    /// Write the run as a JUnit XML test report: a test case per step and per --fail-if gate,
    /// for a CI system's test view [default: none].
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Write the run's Markdown summary (verdict, steps, gates) to this file; under GitHub
    /// Actions it is also appended to GITHUB_STEP_SUMMARY [default: none].
    #[arg(long, value_name = "FILE")]
    pub summary_md: Option<PathBuf>,

    /// Serve the run's live metrics on http://ADDR:PORT/metrics for Prometheus, e.g.
    /// 127.0.0.1:9187; beyond loopback only at an address given here, such as 0.0.0.0:9187
    /// [default: none].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<ListenAddr>,

    /// With --metrics-listen: how long the last values are still served after the run ends,
    /// so the last scrape sees the last step [default: 15s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub metrics_linger: Option<Span>,

    /// No progress bars, even on a terminal: the plain per-step lines only [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub quiet: Option<bool>,

    /// Send each step's load from N agents (`pgstress agent`) instead of this process, which
    /// coordinates: it releases each step on every agent at once and merges what they
    /// measured [default: none].
    #[arg(long, value_name = "N")]
    pub agents: Option<u32>,

    /// With --agents: the address and port the agents dial, e.g. 0.0.0.0:7777. Beyond loopback
    /// it needs the shared token in PGSTRESS_TOKEN (on the agents too) [default: none].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<ListenAddr>,

    /// With --agents: how long to wait for all of them to join [default: 60s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub agents_timeout: Option<Span>,

    /// Take the server's CPU from a watcher on its host (`pgstress watch --run HOST:PORT`),
    /// which dials this address, e.g. 0.0.0.0:7434. Beyond loopback it needs the shared token
    /// in PGSTRESS_TOKEN (on the watcher too) [default: none].
    #[arg(long, value_name = "ADDR:PORT")]
    pub watcher_listen: Option<ListenAddr>,

    /// With --watcher-listen: how long to wait for the watcher to join [default: 60s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub watcher_timeout: Option<Span>,
}
