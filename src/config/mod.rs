//! The validated plan: command line, TOML file and environment merged and checked once, so
//! that by the time a step runs every value is known good.

pub mod data;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::cli::{PrepareArgs, RunArgs};
use crate::judge::gate::{Gate, GateError};
use crate::model::plan::{Arrival, Mode, StepPlan};
use crate::model::query::highest_placeholder;
use crate::model::rules::StopRules;
use crate::model::rules::Thresholds;
use crate::pg::target::{ConnectTarget, TargetError};

pub const DEFAULT_QUERY: &str = "SELECT * FROM sharding WHERE url_hash = decode($1, 'hex')";
const DEFAULT_STEPS: u32 = 15;
const DEFAULT_STEP: u32 = 50;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_millis(100);
const DEFAULT_STACK_KIB: usize = 256;
/// Below this a request thread overflows its stack inside the postgres client.
const MIN_STACK_KIB: usize = 64;
/// The most requests a pool or rate step may queue or schedule.
const MAX_QUEUED_STEP: u32 = 10_000_000;
const MIN_SAMPLE_EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}; check the path given to --config")]
    ReadFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("invalid {option} '{value}': {reason}")]
    Invalid {
        option: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Tls(#[from] crate::pg::tls::TlsError),
}

fn invalid(option: &'static str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The keys a `--config` TOML file may hold: the long option names of `pgstress run`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    dsn: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<PathBuf>,
    steps: Option<u32>,
    step: Option<u32>,
    start: Option<u32>,
    query: Option<String>,
    data: Option<PathBuf>,
    column: Option<usize>,
    logs: Option<PathBuf>,
    timeout: Option<String>,
    sample_every: Option<String>,
    pause: Option<String>,
    stack_kib: Option<usize>,
    log_requests: Option<bool>,
    mode: Option<String>,
    workers: Option<u32>,
    connect_per_request: Option<bool>,
    duration: Option<String>,
    arrival: Option<String>,
    max_inflight: Option<u32>,
    // The option's own name, and the plural the README showed first.
    #[serde(alias = "server-settings")]
    server_setting: Option<Vec<String>>,
    slo_p99: Option<String>,
    stop_failure_rate: Option<f64>,
    stop_p99: Option<String>,
    no_stop: Option<bool>,
    fail_if: Option<Vec<String>>,
    spread_max: Option<String>,
    spread_ratio: Option<f64>,
    saturated_cpu: Option<f64>,
    no_report: Option<bool>,
    quiet: Option<bool>,
}

impl FileConfig {
    fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::ReadFile {
            path: path.to_owned(),
            cause,
        })?;
        toml::from_str(&text).map_err(|err| ConfigError::ParseFile {
            path: path.to_owned(),
            // toml's message spans several lines (a source excerpt); keep the one that says why.
            message: err.message().to_owned(),
        })
    }
}

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
    pub column: usize,
    pub logs_dir: PathBuf,
    /// Write one row per request besides the per-step logs.
    pub log_requests: bool,
    pub timeout: Duration,
    pub sample_every: Duration,
    /// Pause between two steps.
    pub pause: Duration,
    pub stack_size: usize,
    /// A step whose p99 exceeds this was not handled.
    pub slo_p99: Option<Duration>,
    pub stop: StopRules,
    pub gates: Vec<Gate>,
    pub thresholds: Thresholds,
    /// Draw the charts and the HTML report at the end of the run.
    pub report: bool,
    /// No progress bars, even on a terminal.
    pub quiet: bool,
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

    fn merge(args: RunArgs, file: FileConfig, env: &EnvTarget) -> Result<Self, ConfigError> {
        let judging = Judging::merge(&args, &file)?;
        let steps = args.steps.or(file.steps).unwrap_or(DEFAULT_STEPS);
        let step = args.step.or(file.step).unwrap_or(DEFAULT_STEP);
        let start = args.start.or(file.start).unwrap_or(step);
        let plan = validate_plan(steps, step, start)?;
        let mode = merge_mode(&args, &file, &plan)?;
        check_gate_steps(&judging.gates, &plan, &mode)?;

        let query = args
            .query
            .or(file.query)
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

        let settings = if args.server_settings.is_empty() {
            file.server_setting.unwrap_or_default()
        } else {
            args.server_settings
        };
        let settings = settings
            .iter()
            .map(|s| parse_setting(s))
            .collect::<Result<Vec<_>, _>>()?;

        let sslmode = args
            .sslmode
            .or(file.sslmode)
            .map(|m| m.parse())
            .transpose()?;
        let sslrootcert = args.sslrootcert.or(file.sslrootcert);
        let dsn = args.dsn.or(file.dsn).or_else(|| env.dsn());
        let target = match dsn {
            Some(dsn) => {
                if !settings.is_empty() {
                    return Err(invalid(
                        "--server-setting",
                        &settings[0].0,
                        "it applies to the throwaway server only; set it on your server instead",
                    ));
                }
                let target = ConnectTarget::parse(&dsn, env.password.as_deref())?;
                TargetChoice::Server(Box::new(target.with_tls(sslmode, sslrootcert)?))
            }
            None if sslmode.is_some() || sslrootcert.is_some() => {
                return Err(invalid(
                    "--sslmode",
                    sslmode.unwrap_or_default(),
                    "TLS settings apply to a --dsn target; the throwaway server speaks plain TCP on loopback",
                ));
            }
            None => TargetChoice::Throwaway { settings },
        };

        Ok(RunConfig {
            target,
            mode,
            plan,
            query,
            takes_parameter,
            data_dir: args
                .data
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from("data")),
            column: args.column.or(file.column).unwrap_or(0),
            logs_dir: args
                .logs
                .or(file.logs)
                .unwrap_or_else(|| PathBuf::from("logs")),
            log_requests: args.log_requests || file.log_requests.unwrap_or(false),
            timeout,
            sample_every,
            pause,
            stack_size: stack_kib * 1024,
            slo_p99: judging.slo_p99,
            stop: judging.stop,
            gates: judging.gates,
            thresholds: judging.thresholds,
            report: !(args.no_report || file.no_report == Some(true)),
            quiet: args.quiet || file.quiet == Some(true),
        })
    }
}

/// How the steps are judged: SLO, stop rules, gates, flag thresholds.
struct Judging {
    slo_p99: Option<Duration>,
    stop: StopRules,
    gates: Vec<Gate>,
    thresholds: Thresholds,
}

impl Judging {
    fn merge(args: &RunArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let optional_duration =
            |option: &'static str, cli: &Option<String>, file: &Option<String>| {
                cli.as_deref()
                    .or(file.as_deref())
                    .map(
                        |text| match parse_duration(option, Some(text), Duration::ZERO)? {
                            zero if zero.is_zero() => Err(invalid(
                                option,
                                text,
                                "give a latency above zero, e.g. 250ms",
                            )),
                            limit => Ok(limit),
                        },
                    )
                    .transpose()
            };
        let share = |option: &'static str, value: Option<f64>, default: f64| match value {
            None => Ok(default),
            Some(v) if (0.0..=1.0).contains(&v) => Ok(v),
            Some(v) => Err(invalid(option, v, "give a share between 0 and 1, e.g. 0.5")),
        };
        let slo_p99 = optional_duration("--slo-p99", &args.slo_p99, &file.slo_p99)?;
        let stop_p99 = optional_duration("--stop-p99", &args.stop_p99, &file.stop_p99)?;
        let failure_rate = share(
            "--stop-failure-rate",
            args.stop_failure_rate.or(file.stop_failure_rate),
            0.5,
        )?;
        let stop = if args.no_stop || file.no_stop == Some(true) {
            StopRules::none()
        } else {
            StopRules {
                failure_rate: Some(failure_rate),
                p99: stop_p99,
                unresponsive: true,
            }
        };
        let gate_texts = if args.fail_if.is_empty() {
            file.fail_if.clone().unwrap_or_default()
        } else {
            args.fail_if.clone()
        };
        let gates = gate_texts
            .iter()
            .map(|text| text.parse())
            .collect::<Result<Vec<Gate>, _>>()?;
        let defaults = Thresholds::default();
        let saturated_cpu_pct = match args.saturated_cpu.or(file.saturated_cpu) {
            None => defaults.saturated_cpu_pct,
            Some(pct) if pct > 0.0 && pct <= 100.0 => pct,
            Some(pct) => {
                return Err(invalid(
                    "--saturated-cpu",
                    pct,
                    "give a percentage above 0, at most 100",
                ));
            }
        };
        let thresholds = Thresholds {
            saturated_cpu_pct,
            spread_ratio: share(
                "--spread-ratio",
                args.spread_ratio.or(file.spread_ratio),
                defaults.spread_ratio,
            )?,
            spread_max: optional_duration("--spread-max", &args.spread_max, &file.spread_max)?
                .unwrap_or(defaults.spread_max),
        };
        Ok(Judging {
            slo_p99,
            stop,
            gates,
            thresholds,
        })
    }
}

fn merge_mode(args: &RunArgs, file: &FileConfig, plan: &StepPlan) -> Result<Mode, ConfigError> {
    let name = args
        .mode
        .as_deref()
        .or(file.mode.as_deref())
        .unwrap_or("burst");
    let workers = args.workers.or(file.workers);
    let connect_per_request = args.connect_per_request || file.connect_per_request.unwrap_or(false);
    let duration = args.duration.as_deref().or(file.duration.as_deref());
    let arrival = args.arrival.as_deref().or(file.arrival.as_deref());
    let max_inflight = args.max_inflight.or(file.max_inflight);
    // An option of another mode is a mistake worth naming, not something to ignore.
    let misplaced = |option: &'static str, value: String, belongs: &str| {
        invalid(
            option,
            value,
            format!("it applies to --mode {belongs}; add --mode {belongs} or drop it"),
        )
    };
    if name != "pool" {
        if let Some(w) = workers {
            return Err(misplaced("--workers", w.to_string(), "pool"));
        }
        if connect_per_request {
            return Err(misplaced("--connect-per-request", "true".into(), "pool"));
        }
    }
    if name != "rate" {
        if let Some(d) = duration {
            return Err(misplaced("--duration", d.to_owned(), "rate"));
        }
        if let Some(a) = arrival {
            return Err(misplaced("--arrival", a.to_owned(), "rate"));
        }
        if let Some(m) = max_inflight {
            return Err(misplaced("--max-inflight", m.to_string(), "rate"));
        }
    }
    let mode = match name {
        "burst" => Mode::Burst,
        "pool" => {
            if workers == Some(0) {
                return Err(invalid("--workers", 0, "the pool needs at least 1 worker"));
            }
            Mode::Pool {
                workers,
                connect_per_request,
            }
        }
        "rate" => {
            let duration = parse_duration("--duration", duration, Duration::from_secs(1))?;
            let arrival = match arrival.unwrap_or("uniform") {
                "uniform" => Arrival::Uniform,
                "poisson" => Arrival::Poisson,
                other => {
                    return Err(invalid("--arrival", other, "expected uniform or poisson"));
                }
            };
            if max_inflight == Some(0) {
                return Err(invalid(
                    "--max-inflight",
                    0,
                    "use at least 1 worker, or leave it out for a thread per request",
                ));
            }
            Mode::Rate {
                duration,
                arrival,
                max_inflight,
            }
        }
        other => {
            return Err(invalid("--mode", other, "expected burst, pool or rate"));
        }
    };
    if mode.requests_for(plan.start) == 0 {
        return Err(invalid(
            "--duration",
            humantime::format_duration(match &mode {
                Mode::Rate { duration, .. } => *duration,
                _ => Duration::ZERO,
            }),
            format!(
                "step 1 would offer no request at {} per second; offer longer",
                plan.start
            ),
        ));
    }
    match mode {
        Mode::Burst => check_thread_limit(plan)?,
        // The pool's queue and the rate's schedule hold a whole step in memory.
        _ if mode.requests_for(plan.largest()) > MAX_QUEUED_STEP => {
            return Err(plan_error(
                plan,
                format!(
                    "the last step would hold {} requests in memory, above {MAX_QUEUED_STEP}; \
                     use fewer or smaller steps",
                    mode.requests_for(plan.largest())
                ),
            ));
        }
        _ => {}
    }
    Ok(mode)
}

fn validate_plan(steps: u32, step: u32, start: u32) -> Result<StepPlan, ConfigError> {
    if steps == 0 {
        return Err(invalid("--steps", steps, "run at least 1 step"));
    }
    if step == 0 {
        return Err(invalid(
            "--step",
            step,
            "each step must add at least 1 request",
        ));
    }
    if start == 0 {
        return Err(invalid(
            "--start",
            start,
            "the first step needs at least 1 request",
        ));
    }
    let largest = u64::from(start) + u64::from(steps - 1) * u64::from(step);
    if largest > u64::from(u32::MAX) {
        return Err(plan_error(
            &StepPlan { steps, start, step },
            format!("the last step would send {largest} requests; use fewer or smaller steps"),
        ));
    }
    Ok(StepPlan { steps, start, step })
}

/// A gate about the step of N requests must name a step the plan has: one that never runs
/// would breach the gate at the end of a run that told nothing.
fn check_gate_steps(gates: &[Gate], plan: &StepPlan, mode: &Mode) -> Result<(), ConfigError> {
    let sizes: Vec<u32> = (1..=plan.steps)
        .map(|i| mode.requests_for(plan.requests_at(i)))
        .collect();
    for gate in gates {
        if let Some(n) = gate.at_requests
            && !sizes.contains(&n)
        {
            let shown: Vec<String> = sizes.iter().take(5).map(u32::to_string).collect();
            let more = if sizes.len() > 5 { ", ..." } else { "" };
            return Err(invalid(
                "--fail-if",
                gate,
                format!(
                    "the plan has no step of {n} requests; its steps send {}{more}",
                    shown.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A ramp too large: any of its three numbers may be the one to change, so all are named.
fn plan_error(plan: &StepPlan, reason: String) -> ConfigError {
    invalid(
        "--steps, --start, --step",
        format!("{}, {}, {}", plan.steps, plan.start, plan.step),
        reason,
    )
}

/// A burst step runs all its requests' threads at once.
fn check_thread_limit(plan: &StepPlan) -> Result<(), ConfigError> {
    let largest = u64::from(plan.largest());
    let limit = crate::sys::limits::thread_limit();
    if largest > limit {
        return Err(plan_error(
            plan,
            format!(
                "the last step would need {largest} threads at once, above this process's \
                 limit of {limit}; use fewer or smaller steps"
            ),
        ));
    }
    Ok(())
}

fn parse_duration(
    option: &'static str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let duration = humantime::parse_duration(text.trim()).map_err(|_| {
        invalid(
            option,
            text,
            "expected a duration such as 10s, 1.5s or 500ms",
        )
    })?;
    if duration > MAX_DURATION {
        return Err(invalid(
            option,
            text,
            "give at most 24h; longer is a mistake for a stress test (and past what \
             PostgreSQL's statement_timeout takes)",
        ));
    }
    Ok(duration)
}

/// The longest duration any option takes.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

fn parse_setting(text: &str) -> Result<(String, String), ConfigError> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(invalid(
            "--server-setting",
            text,
            "expected KEY=VALUE, e.g. max_connections=300",
        )),
    }
}

/// The target named by the environment, the way libpq users expect.
#[derive(Debug, Default)]
pub struct EnvTarget {
    database_url: Option<String>,
    host: Option<String>,
    port: Option<String>,
    user: Option<String>,
    database: Option<String>,
    password: Option<String>,
}

impl EnvTarget {
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        EnvTarget {
            database_url: var("DATABASE_URL"),
            host: var("PGHOST"),
            port: var("PGPORT"),
            user: var("PGUSER"),
            database: var("PGDATABASE"),
            password: var("PGPASSWORD"),
        }
    }

    /// DATABASE_URL, else a key=value DSN from the PG* variables when PGHOST is set.
    fn dsn(&self) -> Option<String> {
        if let Some(url) = &self.database_url {
            return Some(url.clone());
        }
        let host = self.host.as_ref()?;
        let mut parts = vec![format!("host={}", quote_value(host))];
        let keyed = [
            ("port", &self.port),
            ("user", &self.user),
            ("dbname", &self.database),
        ];
        for (key, value) in keyed {
            if let Some(value) = value {
                parts.push(format!("{key}={}", quote_value(value)));
            }
        }
        Some(parts.join(" "))
    }
}

fn quote_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// What `pgstress prepare` needs.
#[derive(Debug)]
pub struct PrepareConfig {
    pub target: ConnectTarget,
    pub rows: u64,
    pub write_data: Option<PathBuf>,
}

impl PrepareConfig {
    pub fn from_args(args: PrepareArgs) -> Result<Self, ConfigError> {
        let env = EnvTarget::from_process();
        let Some(dsn) = args.dsn.or_else(|| env.dsn()) else {
            return Err(invalid(
                "--dsn",
                "(none)",
                "prepare needs a server: give --dsn, DATABASE_URL or PGHOST",
            ));
        };
        if args.rows == 0 {
            return Err(invalid("--rows", 0, "create at least 1 row"));
        }
        Ok(PrepareConfig {
            target: ConnectTarget::parse(&dsn, env.password.as_deref())?,
            rows: args.rows,
            write_data: args.write_data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(args: RunArgs, toml_text: &str) -> Result<RunConfig, ConfigError> {
        let file: FileConfig = toml::from_str(toml_text).unwrap();
        RunConfig::merge(args, file, &EnvTarget::default())
    }

    #[test]
    fn defaults_are_the_original_ramp() {
        let config = merge(RunArgs::default(), "").unwrap();
        assert_eq!(
            config.plan,
            StepPlan {
                steps: 15,
                start: 50,
                step: 50
            }
        );
        assert_eq!(config.plan.largest(), 750);
        assert!(config.takes_parameter);
        assert!(matches!(config.target, TargetChoice::Throwaway { .. }));
    }

    #[test]
    fn command_line_wins_over_file() {
        let args = RunArgs {
            steps: Some(3),
            ..Default::default()
        };
        let config = merge(args, "steps = 7\nstep = 10\ntimeout = '2s'").unwrap();
        assert_eq!(
            config.plan,
            StepPlan {
                steps: 3,
                start: 10,
                step: 10
            }
        );
        assert_eq!(config.timeout, Duration::from_secs(2));
    }

    #[test]
    fn start_sets_first_step_only() {
        let args = RunArgs {
            steps: Some(3),
            step: Some(10),
            start: Some(5),
            ..Default::default()
        };
        let plan = merge(args, "").unwrap().plan;
        assert_eq!(
            (1..=3).map(|i| plan.requests_at(i)).collect::<Vec<_>>(),
            vec![5, 15, 25]
        );
        assert_eq!(plan.total_requests(), 45);
    }

    #[test]
    fn unknown_file_key_is_rejected() {
        let err = toml::from_str::<FileConfig>("stepz = 3").unwrap_err();
        assert!(err.message().contains("stepz"), "{}", err.message());
    }

    #[test]
    fn zero_steps_names_the_option() {
        let args = RunArgs {
            steps: Some(0),
            ..Default::default()
        };
        let err = merge(args, "").unwrap_err().to_string();
        assert!(err.contains("--steps '0'"), "{err}");
    }

    #[test]
    fn bad_duration_names_the_value() {
        let args = RunArgs {
            timeout: Some("ten".into()),
            ..Default::default()
        };
        let err = merge(args, "").unwrap_err().to_string();
        assert!(err.contains("--timeout 'ten'"), "{err}");
    }

    #[test]
    fn second_placeholder_is_rejected() {
        let args = RunArgs {
            query: Some("SELECT $1, $2".into()),
            ..Default::default()
        };
        assert!(merge(args, "").unwrap_err().to_string().contains("$2"));
    }

    #[test]
    fn placeholders_inside_literals_do_not_count() {
        assert_eq!(
            highest_placeholder("SELECT '$2', \"$3\" FROM t WHERE a = $1"),
            1
        );
        assert_eq!(highest_placeholder("SELECT 1"), 0);
        assert_eq!(highest_placeholder("SELECT $12"), 12);
    }

    #[test]
    fn pg_variables_build_a_dsn_when_pghost_is_set() {
        let env = EnvTarget {
            host: Some("127.0.0.1".into()),
            port: Some("5433".into()),
            user: Some("bob".into()),
            ..Default::default()
        };
        assert_eq!(
            env.dsn().unwrap(),
            "host='127.0.0.1' port='5433' user='bob'"
        );
        let env = EnvTarget {
            port: Some("5433".into()),
            ..Default::default()
        };
        assert_eq!(env.dsn(), None);
    }

    #[test]
    fn database_url_comes_before_pg_variables() {
        let env = EnvTarget {
            database_url: Some("postgres://a@127.0.0.1/db".into()),
            host: Some("h".into()),
            ..Default::default()
        };
        assert_eq!(env.dsn().unwrap(), "postgres://a@127.0.0.1/db");
    }

    #[test]
    fn stop_rules_default_to_half_failed_and_no_stop_clears_them() {
        let config = merge(RunArgs::default(), "").unwrap();
        assert_eq!(
            config.stop,
            StopRules {
                failure_rate: Some(0.5),
                p99: None,
                unresponsive: true
            }
        );
        let args = RunArgs {
            no_stop: true,
            ..Default::default()
        };
        assert_eq!(merge(args, "").unwrap().stop, StopRules::none());
        let config = merge(
            RunArgs::default(),
            "stop-p99 = '2s'\nstop-failure-rate = 0.1",
        )
        .unwrap();
        assert_eq!(config.stop.p99, Some(Duration::from_secs(2)));
        assert_eq!(config.stop.failure_rate, Some(0.1));
    }

    #[test]
    fn failure_rate_above_one_is_refused() {
        let args = RunArgs {
            stop_failure_rate: Some(1.5),
            ..Default::default()
        };
        assert!(
            merge(args, "")
                .unwrap_err()
                .to_string()
                .contains("--stop-failure-rate '1.5'")
        );
    }

    #[test]
    fn bad_gate_is_named() {
        let args = RunArgs {
            fail_if: vec!["speed>3".into()],
            ..Default::default()
        };
        assert!(
            merge(args, "")
                .unwrap_err()
                .to_string()
                .contains("--fail-if 'speed>3'")
        );
    }

    #[test]
    fn unknown_mode_is_named() {
        let args = RunArgs {
            mode: Some("warp".into()),
            ..Default::default()
        };
        let err = merge(args, "").unwrap_err().to_string();
        assert!(
            err.contains("--mode 'warp'") && err.contains("burst, pool or rate"),
            "{err}"
        );
    }

    #[test]
    fn an_option_of_another_mode_is_refused() {
        let args = RunArgs {
            workers: Some(5),
            ..Default::default()
        };
        let err = merge(args, "").unwrap_err().to_string();
        assert!(
            err.contains("--workers '5'") && err.contains("--mode pool"),
            "{err}"
        );
        let err = merge(RunArgs::default(), "mode = \"pool\"\nmax-inflight = 3")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--max-inflight") && err.contains("--mode rate"),
            "{err}"
        );
    }

    #[test]
    fn rate_steps_offer_rate_times_duration() {
        let config = merge(
            RunArgs::default(),
            "mode = \"rate\"\nduration = \"2s\"\narrival = \"poisson\"\nsteps = 3\nstep = 10",
        )
        .unwrap();
        assert_eq!(config.mode.requests_for(config.plan.largest()), 60);
        assert_eq!(config.mode.unit(), "requests per second");
        let err = merge(
            RunArgs::default(),
            "mode = \"rate\"\nduration = \"10ms\"\nstep = 5",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--duration '10ms'"), "{err}");
    }

    #[test]
    fn server_setting_needs_key_and_value() {
        assert_eq!(
            parse_setting("max_connections=20").unwrap(),
            ("max_connections".into(), "20".into())
        );
        assert!(parse_setting("max_connections").is_err());
    }
}
