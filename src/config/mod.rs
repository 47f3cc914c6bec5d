//! The validated plan: command line, TOML file and environment merged and checked once, so
//! that by the time a step runs every value is known good.

mod agent;
mod caps;
pub mod data;
mod env;
mod error;
mod file;
mod fleet;
mod judging;
pub mod k8s;
pub mod outage;
mod outputs;
mod plan;
mod pooler;
mod prepare;
mod sources;
mod values;

use std::path::PathBuf;
use std::time::Duration;

pub use crate::cli::values::MAX_DURATION;
pub use caps::agent_caps;
pub use env::EnvTarget;
pub use error::ConfigError;
pub use outputs::{GITHUB_STEP_SUMMARY, MetricsSettings, Outputs};
pub use pooler::PoolerChoice;
pub use prepare::PrepareConfig;

use crate::cli::RunArgs;
use crate::cli::values::{ClientName, CpuList};
use crate::config::error::invalid;
use crate::config::judging::Judging;
use crate::config::plan::{check_gate_steps, merge_mode, validate_plan};
use crate::config::values::or_default;
use crate::judge::gate::Gate;
use crate::model::plan::{CpuChoice, Mode, StepPlan};
use crate::model::query::highest_placeholder;
use crate::model::rules::{StopRules, Thresholds};
use crate::pg::request::{Prepare, RequestClient};
use crate::pg::target::ConnectTarget;

pub const DEFAULT_QUERY: &str = "SELECT * FROM sharding WHERE url_hash = decode($1, 'hex')";
const DEFAULT_STEPS: u32 = 15;
const DEFAULT_STEP: u32 = 50;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// A request thread touches at most 14 KiB of stack through the lean connection and 30 KiB
/// through the `postgres` crate over TLS in a release build, but 82 KiB in a debug build (which
/// the tests run), glibc's thread descriptor and TLS included (`examples/stack_depth.rs`,
/// docs/performance.md). Only touched pages cost memory, so the default keeps three times the
/// deepest debug path.
const DEFAULT_STACK_KIB: usize = 256;
/// A held connection's thread lives as long as its connection, and tens of thousands live at
/// once: the smallest stack measured safe, with a margin (`benches/hold.sh stack`,
/// docs/performance.md). The deepest path, the `postgres` crate over TLS, overflowed 32 KiB in
/// a release build (48 held) and 64 KiB in a debug build (96 held); the lean connection held
/// at 16 KiB in both. Only touched pages cost memory: pgstress's RSS per held connection was
/// the same from 256 KiB down to 32.
const HOLD_STACK_KIB: usize = 128;
/// Twice the deepest release path measured.
const MIN_STACK_KIB: usize = 64;
/// Far above what a request thread touches: beyond it a typo, not a need, is the likely cause,
/// and every thread of a step would fail to start.
const MAX_STACK_KIB: usize = 1024 * 1024;
const MIN_SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// More CPUs than any one machine has: beyond it a typo.
const MAX_SERVER_CORES: f64 = 1_000_000.0;

/// Where the load goes.
#[derive(Debug)]
pub enum TargetChoice {
    /// A server the user named.
    Server(Box<ConnectTarget>),
    /// A server pgstress starts for this run and removes afterwards.
    Throwaway { settings: Vec<(String, String)> },
}

/// Everything `pgstress run` needs, validated.
#[derive(Debug)]
pub struct RunConfig {
    pub target: TargetChoice,
    pub mode: Mode,
    pub plan: StepPlan,
    pub query: String,
    /// Whether the query takes `$1` (and so needs parameter data).
    pub takes_parameter: bool,
    pub data_dir: PathBuf,
    /// No `--data` and no `data/` here, against the throwaway server: the parameters are
    /// drawn from the demo rows it was seeded with.
    pub data_from_demo: bool,
    pub column: usize,
    /// The parameter files start with a header row.
    pub skip_header: bool,
    /// Requests may write; else each runs in a read-only transaction.
    pub allow_writes: bool,
    /// What sends the requests that open a connection each.
    pub client: RequestClient,
    /// The local addresses the connections leave from, in turn; empty: the system's choice.
    pub source_addresses: Vec<std::net::IpAddr>,
    /// A throwaway pooler in front of the target, which the load goes through.
    pub pooler: Option<PoolerChoice>,
    /// How pool mode's kept connections run the query; None: once, never through a pooler.
    pub prepare: Option<Prepare>,
    pub logs_dir: PathBuf,
    /// Write one row per request besides the per-step logs.
    pub log_requests: bool,
    pub timeout: Duration,
    pub sample_every: Duration,
    /// Pause between two steps.
    pub pause: Duration,
    pub stack_size: usize,
    /// The share of a step's requests sent that the server may fail and still have handled it.
    pub tolerate: f64,
    /// A step whose p99 exceeds this was not handled.
    pub slo_p99: Option<Duration>,
    pub stop: StopRules,
    /// What a pool worker does when its connection fails.
    pub reconnect: crate::model::plan::Reconnect,
    /// A fault to cause on the throwaway server during the load.
    pub fault: Option<crate::model::fault::Fault>,
    /// A streaming standby beside the throwaway server.
    pub standby: bool,
    pub gates: Vec<Gate>,
    pub thresholds: Thresholds,
    /// Draw the charts and the HTML report at the end of the run.
    pub report: bool,
    /// No progress bars, even on a terminal.
    pub quiet: bool,
    /// Where the throwaway server and pgstress run.
    pub cpus: CpuChoice,
    /// The server's CPU count as the user gave it (`--server-cores`), for a server whose
    /// processes pgstress cannot see.
    pub server_cores: Option<f64>,
    /// The agents that send the load instead of this process, if any.
    pub fleet: Option<crate::fleet::door::FleetSettings>,
    /// The watcher on the server's host (`--watcher-listen`), if any.
    pub watcher: Option<crate::fleet::watched::WatcherSettings>,
    /// The JUnit report, the Markdown summary and the live metrics, where asked for.
    pub outputs: Outputs,
}

impl RunConfig {
    /// The command line's options over the `--config` file's, over the defaults.
    pub fn from_args(args: RunArgs) -> Result<Self, ConfigError> {
        let mut options = args;
        if let Some(path) = options.config.clone() {
            merge::Merge::merge(&mut options, file::load(&path)?);
        }
        let mut config = Self::validate(options, &EnvTarget::from_process())?;
        config.outputs.github_summary = outputs::github_summary_from_env();
        Ok(config)
    }

    /// The checks run in a fixed order, so that of several mistakes the same one is named.
    fn validate(options: RunArgs, env: &EnvTarget) -> Result<Self, ConfigError> {
        let judging = Judging::merge(&options)?;
        let client = merge_client(&options)?;
        let source_addresses = sources::merge_source_addresses(&options, client)?;
        let steps = options.steps.unwrap_or(DEFAULT_STEPS);
        let step = options.step.unwrap_or(DEFAULT_STEP);
        let start = options.start.unwrap_or(step);
        let plan = validate_plan(steps, step, start)?;
        let mode = merge_mode(&options, &plan)?;
        let reconnect = outage::merge_reconnect(&options, &mode)?;
        check_gate_steps(&judging.gates, &plan, &mode)?;
        let (query, takes_parameter) = merge_query(&options)?;
        let timing = Timing::merge(&options, matches!(mode, Mode::Hold { .. }))?;
        let mut judging = judging;
        judging.thresholds.min_judged_wall =
            crate::model::rules::min_judged_wall(timing.sample_every);
        let target = merge_target(&options, env)?;
        let fault = outage::merge_fault(&options, &target)?;
        let pooler = pooler::merge_pooler(&options)?;
        let cpus = merge_cpus(&options, &target)?;
        let server_cores = merge_server_cores(&options, &target)?;
        let fleet = fleet::merge_fleet(&options, &target, &mode, pooler.is_some())?;
        let watcher = fleet::merge_watcher(&options, &target)?;
        let outputs = outputs::merge_outputs(&options)?;
        let data = options.data;
        let data_from_demo = data.is_none()
            && takes_parameter
            && matches!(target, TargetChoice::Throwaway { .. })
            && !std::path::Path::new("data").exists();
        Ok(RunConfig {
            target,
            mode,
            plan,
            query,
            takes_parameter,
            data_dir: data.unwrap_or_else(|| PathBuf::from("data")),
            data_from_demo,
            column: options.column.unwrap_or(0),
            skip_header: options.skip_header.unwrap_or(false),
            allow_writes: options.allow_writes.unwrap_or(false),
            client,
            source_addresses,
            pooler,
            prepare: options.prepare,
            logs_dir: options.logs.unwrap_or_else(|| PathBuf::from("logs")),
            log_requests: options.log_requests.unwrap_or(false),
            timeout: timing.timeout,
            sample_every: timing.sample_every,
            pause: timing.pause,
            stack_size: timing.stack_size,
            slo_p99: judging.slo_p99,
            tolerate: judging.tolerate,
            stop: judging.stop,
            reconnect,
            fault,
            standby: options.standby.unwrap_or(false),
            gates: judging.gates,
            thresholds: judging.thresholds,
            report: !options.no_report.unwrap_or(false),
            quiet: options.quiet.unwrap_or(false),
            cpus,
            server_cores,
            fleet,
            watcher,
            outputs,
        })
    }
}

/// The query and whether it takes `$1`: pgstress binds one parameter, never more.
fn merge_query(options: &RunArgs) -> Result<(String, bool), ConfigError> {
    let query = options
        .query
        .clone()
        .unwrap_or_else(|| DEFAULT_QUERY.to_owned());
    let takes_parameter = match highest_placeholder(&query) {
        0 => false,
        1 => true,
        n => {
            return Err(invalid(
                "--query",
                &query,
                format!("it uses ${n}, but pgstress binds one parameter ($1)"),
            ));
        }
    };
    if query.trim().is_empty() {
        return Err(invalid(
            "--query",
            &query,
            "give the SQL every request runs",
        ));
    }
    Ok((query, takes_parameter))
}

/// The request client: the lean connection unless `--client postgres`.
fn merge_client(options: &RunArgs) -> Result<RequestClient, ConfigError> {
    let scram_per_connection = options.scram_per_connection.unwrap_or(false);
    match options.client.unwrap_or(ClientName::Lean) {
        ClientName::Lean => Ok(RequestClient::Lean {
            scram_per_connection,
        }),
        ClientName::Postgres if scram_per_connection => Err(invalid(
            "--scram-per-connection",
            "true",
            "the postgres client derives SCRAM keys on every connection anyway; drop one of the two",
        )),
        ClientName::Postgres => Ok(RequestClient::Postgres),
    }
}

/// The deadlines, the sampling period, the pause and the request threads' stack.
struct Timing {
    timeout: Duration,
    sample_every: Duration,
    pause: Duration,
    stack_size: usize,
}

impl Timing {
    fn merge(options: &RunArgs, hold: bool) -> Result<Self, ConfigError> {
        let timeout = or_default(options.timeout, DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return Err(invalid(
                "--timeout",
                "0",
                "a request needs a deadline above zero, e.g. 10s",
            ));
        }
        let sample_every = or_default(options.sample_every, DEFAULT_SAMPLE_EVERY);
        if sample_every < MIN_SAMPLE_EVERY {
            return Err(invalid(
                "--sample-every",
                humantime::format_duration(sample_every),
                "sample at most every 10ms; the sampler would disturb the measurement",
            ));
        }
        let pause = or_default(options.pause, Duration::ZERO);
        let stack_kib = (options.stack_kib).unwrap_or(match hold {
            true => HOLD_STACK_KIB,
            false => DEFAULT_STACK_KIB,
        });
        if stack_kib < MIN_STACK_KIB {
            return Err(invalid("--stack-kib", stack_kib, "use at least 64 (KiB)"));
        }
        if stack_kib > MAX_STACK_KIB {
            return Err(invalid(
                "--stack-kib",
                stack_kib,
                "use at most 1048576 (1 GiB); a request thread needs well under 1 MiB",
            ));
        }
        Ok(Timing {
            timeout,
            sample_every,
            pause,
            stack_size: stack_kib * 1024,
        })
    }
}

/// The CPU split: only a server pgstress starts can be pinned.
fn merge_cpus(options: &RunArgs, target: &TargetChoice) -> Result<CpuChoice, ConfigError> {
    let server = options.server_cpus.clone().map(|CpuList(cpus)| cpus);
    let client = options.client_cpus.clone().map(|CpuList(cpus)| cpus);
    let no_pin = options.no_pin.unwrap_or(false);
    let given = server.is_some() || client.is_some();
    if no_pin && given {
        return Err(invalid(
            "--no-pin",
            "true",
            "it shares every CPU, so --server-cpus and --client-cpus cannot be given with it",
        ));
    }
    if given && !matches!(target, TargetChoice::Throwaway { .. }) {
        let (option, list) = match (&options.server_cpus, &options.client_cpus) {
            (Some(list), _) => ("--server-cpus", list.to_string()),
            (None, list) => (
                "--client-cpus",
                list.as_ref().map(ToString::to_string).unwrap_or_default(),
            ),
        };
        return Err(invalid(
            option,
            list,
            "pgstress pins CPUs only for the throwaway server it starts, not for --dsn or PGHOST",
        ));
    }
    Ok(match (no_pin, given) {
        (true, _) => CpuChoice::NoPin,
        (false, true) => CpuChoice::Lists { server, client },
        (false, false) => CpuChoice::Split,
    })
}

/// The server's CPU count: a number of CPUs above zero, for a server pgstress does not start
/// (the throwaway server's own CPUs are known).
fn merge_server_cores(
    options: &RunArgs,
    target: &TargetChoice,
) -> Result<Option<f64>, ConfigError> {
    let Some(cores) = options.server_cores else {
        return Ok(None);
    };
    if !(cores > 0.0 && cores <= MAX_SERVER_CORES) {
        return Err(invalid(
            "--server-cores",
            cores,
            "give the server's CPU count, above 0, e.g. 4 (or 0.5 for half a CPU's quota)",
        ));
    }
    if matches!(target, TargetChoice::Throwaway { .. }) {
        return Err(invalid(
            "--server-cores",
            cores,
            "the throwaway server runs here and its CPUs are read; it is for a --dsn server \
             whose processes pgstress cannot see",
        ));
    }
    Ok(Some(cores))
}

/// The server named by the command line, the file or the environment, else a throwaway one;
/// an option that fits only the other kind is refused rather than ignored.
fn merge_target(options: &RunArgs, env: &EnvTarget) -> Result<TargetChoice, ConfigError> {
    let settings: Vec<(String, String)> = options
        .server_settings
        .iter()
        .flatten()
        .map(|s| (s.key.clone(), s.value.clone()))
        .collect();
    let target = &options.target;
    let inputs = env.inputs(target.dsn.clone().map(|dsn| (dsn, "--dsn")));
    match inputs.names_a_target() {
        true => {
            if let Some((key, _)) = settings.first() {
                return Err(invalid(
                    "--server-setting",
                    key,
                    "it applies to the throwaway server only; set it on your server instead",
                ));
            }
            let resolved = ConnectTarget::resolve(&inputs)?;
            Ok(TargetChoice::Server(Box::new(
                resolved.with_tls(target.sslmode, target.sslrootcert.clone())?,
            )))
        }
        false if target.sslmode.is_some() || target.sslrootcert.is_some() => Err(invalid(
            "--sslmode",
            target.sslmode.unwrap_or_default(),
            "TLS settings apply to a --dsn target; the throwaway server speaks plain TCP on loopback",
        )),
        false => Ok(TargetChoice::Throwaway { settings }),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
