//! The validated plan: command line, TOML file and environment merged and checked once, so
//! that by the time a step runs every value is known good.

pub mod data;
mod env;
mod error;
mod file;
mod fleet;
mod judging;
pub mod k8s;
mod plan;
mod pooler;
mod prepare;
mod values;

use std::path::PathBuf;
use std::time::Duration;

pub use env::EnvTarget;
pub use error::ConfigError;
pub use pooler::PoolerChoice;
pub use prepare::PrepareConfig;
pub use values::MAX_DURATION;

use crate::cli::RunArgs;
use crate::config::error::invalid;
use crate::config::file::FileConfig;
use crate::config::judging::Judging;
use crate::config::plan::{check_gate_steps, merge_mode, validate_plan};
use crate::config::values::{parse_duration, parse_setting};
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
/// Twice the deepest release path measured.
const MIN_STACK_KIB: usize = 64;
/// Far above what a request thread touches: beyond it a typo, not a need, is the likely cause,
/// and every thread of a step would fail to start.
const MAX_STACK_KIB: usize = 1024 * 1024;
const MIN_SAMPLE_EVERY: Duration = Duration::from_millis(10);

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
    pub gates: Vec<Gate>,
    pub thresholds: Thresholds,
    /// Draw the charts and the HTML report at the end of the run.
    pub report: bool,
    /// No progress bars, even on a terminal.
    pub quiet: bool,
    /// Where the throwaway server and pgstress run.
    pub cpus: CpuChoice,
    /// The agents that send the load instead of this process, if any.
    pub fleet: Option<crate::fleet::coordinator::FleetSettings>,
}

impl RunConfig {
    pub fn from_args(args: RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let env = EnvTarget::from_process();
        Self::merge(args, file, &env)
    }

    /// The checks run in a fixed order, so that of several mistakes the same one is named.
    fn merge(args: RunArgs, file: FileConfig, env: &EnvTarget) -> Result<Self, ConfigError> {
        let judging = Judging::merge(&args, &file)?;
        let client = merge_client(&args, &file)?;
        let steps = args.steps.or(file.steps).unwrap_or(DEFAULT_STEPS);
        let step = args.step.or(file.step).unwrap_or(DEFAULT_STEP);
        let start = args.start.or(file.start).unwrap_or(step);
        let plan = validate_plan(steps, step, start)?;
        let mode = merge_mode(&args, &file, &plan)?;
        check_gate_steps(&judging.gates, &plan, &mode)?;
        let (query, takes_parameter) = merge_query(&args, &file)?;
        let timing = Timing::merge(&args, &file)?;
        let target = merge_target(&args, &file, env)?;
        let pooler = pooler::merge_pooler(&args, &file)?;
        let prepare = pooler::merge_prepare(&args, &file)?;
        let cpus = merge_cpus(&args, &file, &target)?;
        let fleet = fleet::merge_fleet(&args, &file, &target, &mode, pooler.is_some())?;
        let data = args.data.or(file.data);
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
            column: args.column.or(file.column).unwrap_or(0),
            skip_header: args.skip_header || file.skip_header.unwrap_or(false),
            allow_writes: args.allow_writes || file.allow_writes.unwrap_or(false),
            client,
            pooler,
            prepare,
            logs_dir: args
                .logs
                .or(file.logs)
                .unwrap_or_else(|| PathBuf::from("logs")),
            log_requests: args.log_requests || file.log_requests.unwrap_or(false),
            timeout: timing.timeout,
            sample_every: timing.sample_every,
            pause: timing.pause,
            stack_size: timing.stack_size,
            slo_p99: judging.slo_p99,
            tolerate: judging.tolerate,
            stop: judging.stop,
            gates: judging.gates,
            thresholds: judging.thresholds,
            report: !(args.no_report || file.no_report == Some(true)),
            quiet: args.quiet || file.quiet == Some(true),
            cpus,
            fleet,
        })
    }
}

/// The query and whether it takes `$1`: pgstress binds one parameter, never more.
fn merge_query(args: &RunArgs, file: &FileConfig) -> Result<(String, bool), ConfigError> {
    let query = args
        .query
        .clone()
        .or_else(|| file.query.clone())
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
fn merge_client(args: &RunArgs, file: &FileConfig) -> Result<RequestClient, ConfigError> {
    let scram_per_connection =
        args.scram_per_connection || file.scram_per_connection.unwrap_or(false);
    match args.client.as_deref().or(file.client.as_deref()) {
        None | Some("lean") => Ok(RequestClient::Lean {
            scram_per_connection,
        }),
        Some("postgres") if scram_per_connection => Err(invalid(
            "--scram-per-connection",
            "true",
            "the postgres client derives SCRAM keys on every connection anyway; drop one of the two",
        )),
        Some("postgres") => Ok(RequestClient::Postgres),
        Some(other) => Err(invalid("--client", other, "use lean or postgres")),
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
    fn merge(args: &RunArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let timeout = parse_duration(
            "--timeout",
            args.timeout.as_deref().or(file.timeout.as_deref()),
            DEFAULT_TIMEOUT,
        )?;
        if timeout.is_zero() {
            return Err(invalid(
                "--timeout",
                "0",
                "a request needs a deadline above zero, e.g. 10s",
            ));
        }
        let sample_every = parse_duration(
            "--sample-every",
            args.sample_every
                .as_deref()
                .or(file.sample_every.as_deref()),
            DEFAULT_SAMPLE_EVERY,
        )?;
        if sample_every < MIN_SAMPLE_EVERY {
            return Err(invalid(
                "--sample-every",
                humantime::format_duration(sample_every),
                "sample at most every 10ms; the sampler would disturb the measurement",
            ));
        }
        let pause = parse_duration(
            "--pause",
            args.pause.as_deref().or(file.pause.as_deref()),
            Duration::ZERO,
        )?;
        let stack_kib = args
            .stack_kib
            .or(file.stack_kib)
            .unwrap_or(DEFAULT_STACK_KIB);
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

/// The server named by the command line, the file or the environment, else a throwaway one;
/// an option that fits only the other kind is refused rather than ignored.
/// The CPU split: lists parse, and only a server pgstress starts can be pinned.
fn merge_cpus(
    args: &RunArgs,
    file: &FileConfig,
    target: &TargetChoice,
) -> Result<CpuChoice, ConfigError> {
    let list = |option: &'static str, text: Option<&String>| {
        text.map(|text| {
            crate::sys::affinity::parse_list(text).map_err(|e| invalid(option, text, e))
        })
        .transpose()
    };
    let server = list(
        "--server-cpus",
        args.server_cpus.as_ref().or(file.server_cpus.as_ref()),
    )?;
    let client = list(
        "--client-cpus",
        args.client_cpus.as_ref().or(file.client_cpus.as_ref()),
    )?;
    let no_pin = args.no_pin || file.no_pin == Some(true);
    let given = server.is_some() || client.is_some();
    if no_pin && given {
        return Err(invalid(
            "--no-pin",
            "true",
            "it shares every CPU, so --server-cpus and --client-cpus cannot be given with it",
        ));
    }
    if given && !matches!(target, TargetChoice::Throwaway { .. }) {
        let given_text = |cli: &Option<String>, file: &Option<String>| {
            cli.clone().or_else(|| file.clone()).unwrap_or_default()
        };
        let (option, text) = match server {
            Some(_) => (
                "--server-cpus",
                given_text(&args.server_cpus, &file.server_cpus),
            ),
            None => (
                "--client-cpus",
                given_text(&args.client_cpus, &file.client_cpus),
            ),
        };
        return Err(invalid(
            option,
            text,
            "pgstress pins CPUs only for the throwaway server it starts, not for --dsn or PGHOST",
        ));
    }
    Ok(match (no_pin, given) {
        (true, _) => CpuChoice::NoPin,
        (false, true) => CpuChoice::Lists { server, client },
        (false, false) => CpuChoice::Split,
    })
}

fn merge_target(
    args: &RunArgs,
    file: &FileConfig,
    env: &EnvTarget,
) -> Result<TargetChoice, ConfigError> {
    let settings = if args.server_settings.is_empty() {
        file.server_setting.clone().unwrap_or_default()
    } else {
        args.server_settings.clone()
    };
    let settings = settings
        .iter()
        .map(|s| parse_setting(s))
        .collect::<Result<Vec<_>, _>>()?;
    let sslmode = args
        .sslmode
        .as_ref()
        .or(file.sslmode.as_ref())
        .map(|m| m.parse())
        .transpose()?;
    let sslrootcert = args
        .sslrootcert
        .clone()
        .or_else(|| file.sslrootcert.clone());
    let given = match (&args.dsn, &file.dsn) {
        (Some(dsn), _) => Some((dsn.clone(), "--dsn")),
        (None, Some(dsn)) => Some((dsn.clone(), "dsn in the config file")),
        (None, None) => None,
    };
    let inputs = env.inputs(given);
    match inputs.names_a_target() {
        true => {
            if !settings.is_empty() {
                return Err(invalid(
                    "--server-setting",
                    &settings[0].0,
                    "it applies to the throwaway server only; set it on your server instead",
                ));
            }
            let target = ConnectTarget::resolve(&inputs)?;
            Ok(TargetChoice::Server(Box::new(
                target.with_tls(sslmode, sslrootcert)?,
            )))
        }
        false if sslmode.is_some() || sslrootcert.is_some() => Err(invalid(
            "--sslmode",
            sslmode.unwrap_or_default(),
            "TLS settings apply to a --dsn target; the throwaway server speaks plain TCP on loopback",
        )),
        false => Ok(TargetChoice::Throwaway { settings }),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
