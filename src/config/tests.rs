//! `RunConfig::merge` end to end: the command line, a TOML text and an empty environment
//! merged as a run would, each refusal checked for the option it names.

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};

/// The options of `pgstress run ARGS`, as clap reads them, or clap's error.
fn parse(args: &[&str]) -> Result<RunArgs, String> {
    let argv = ["pgstress", "run"].iter().chain(args);
    match Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .command
    {
        Command::Run(options) => Ok(*options),
        other => panic!("{other:?}"),
    }
}

/// A run's config from a command line and a file's text, in an empty environment; any
/// refusal, of a value at the edge or of the merged whole, as its message.
fn merge(args: &[&str], toml_text: &str) -> Result<RunConfig, String> {
    let mut options = parse(args)?;
    merge::Merge::merge(&mut options, file::parse(toml_text)?);
    RunConfig::validate(options, &EnvTarget::default()).map_err(|e| e.to_string())
}

#[test]
fn defaults_are_the_original_ramp() {
    let config = merge(&[], "").unwrap();
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
    let args = &["--steps", "3"];
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
    let args = &["--steps", "3", "--step", "10", "--start", "5"];
    let plan = merge(args, "").unwrap().plan;
    assert_eq!(
        (1..=3).map(|i| plan.requests_at(i)).collect::<Vec<_>>(),
        vec![5, 15, 25]
    );
    assert_eq!(plan.total_requests(), 45);
}

#[test]
fn zero_steps_names_the_option() {
    let args = &["--steps", "0"];
    let err = merge(args, "").unwrap_err();
    assert!(err.contains("--steps '0'"), "{err}");
}

#[test]
fn bad_duration_names_the_value() {
    let args = &["--timeout", "ten"];
    let err = merge(args, "").unwrap_err();
    assert!(err.contains("'ten' for '--timeout <DURATION>'"), "{err}");
}

#[test]
fn second_placeholder_is_rejected() {
    let args = &["--query", "SELECT $1, $2"];
    assert!(merge(args, "").unwrap_err().contains("$2"));
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
fn stop_rules_default_to_half_failed_and_no_stop_clears_them() {
    let config = merge(&[], "").unwrap();
    assert_eq!(
        config.stop,
        StopRules {
            failure_rate: Some(0.5),
            p99: None,
            unresponsive: true
        }
    );
    let args = &["--no-stop"];
    assert_eq!(merge(args, "").unwrap().stop, StopRules::none());
    let config = merge(&[], "stop-p99 = '2s'\nstop-failure-rate = 0.1").unwrap();
    assert_eq!(config.stop.p99, Some(Duration::from_secs(2)));
    assert_eq!(config.stop.failure_rate, Some(0.1));
}

#[test]
fn failure_rate_above_one_is_refused() {
    let args = &["--stop-failure-rate", "1.5"];
    assert!(
        merge(args, "")
            .unwrap_err()
            .contains("--stop-failure-rate '1.5'")
    );
}

#[test]
fn bad_gate_is_named() {
    let args = &["--fail-if", "speed>3"];
    assert!(
        merge(args, "")
            .unwrap_err()
            .contains("'speed>3' for '--fail-if <GATE>'")
    );
}

#[test]
fn unknown_mode_is_named() {
    let args = &["--mode", "warp"];
    let err = merge(args, "").unwrap_err();
    assert!(
        err.contains("'warp' for '--mode <MODE>'") && err.contains("burst, pool, rate"),
        "{err}"
    );
}

#[test]
fn an_option_of_another_mode_is_refused() {
    let args = &["--workers", "5"];
    let err = merge(args, "").unwrap_err();
    assert!(
        err.contains("--workers '5'") && err.contains("--mode pool"),
        "{err}"
    );
    let err = merge(&[], "mode = \"pool\"\nmax-inflight = 3")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--max-inflight") && err.contains("--mode rate"),
        "{err}"
    );
}

#[test]
fn a_pool_step_may_last_a_time_and_a_burst_may_not() {
    let config = merge(&["--mode", "pool", "--duration", "2s", "--step", "10"], "").unwrap();
    assert_eq!(config.mode.timed_pool(), Some(Duration::from_secs(2)));
    // The step's size is what it keeps queued; it draws a deck of values to take in turn.
    assert_eq!(config.mode.requests_for(10), 10);
    assert_eq!(config.mode.values_for(10), crate::model::plan::POOL_DECK);
    assert_eq!(config.mode.unit(), "requests queued at once");
    assert_eq!(
        merge(&["--mode", "pool"], "").unwrap().mode.timed_pool(),
        None
    );
    let err = merge(&["--duration", "2s"], "").unwrap_err();
    assert!(
        err.contains("--duration '2s'") && err.contains("--mode pool, rate and hold"),
        "{err}"
    );
    let err = merge(&["--mode", "pool", "--duration", "0s"], "").unwrap_err();
    assert!(err.contains("--duration '0s'"), "{err}");
}

#[test]
fn the_shortest_step_judged_follows_the_sampling_interval() {
    let judged = |args: &[&str]| merge(args, "").unwrap().thresholds.min_judged_wall;
    assert_eq!(judged(&[]), Duration::from_millis(100));
    assert_eq!(
        judged(&["--sample-every", "20ms"]),
        Duration::from_millis(100)
    );
    assert_eq!(judged(&["--sample-every", "1s"]), Duration::from_secs(1));
}

#[test]
fn rate_steps_offer_rate_times_duration() {
    let config = merge(
        &[],
        "mode = \"rate\"\nduration = \"2s\"\narrival = \"poisson\"\nsteps = 3\nstep = 10",
    )
    .unwrap();
    assert_eq!(config.mode.requests_for(config.plan.largest()), 60);
    assert_eq!(config.mode.unit(), "requests per second");
    let err = merge(&[], "mode = \"rate\"\nduration = \"10ms\"\nstep = 5").unwrap_err();
    assert!(err.contains("--duration '10ms'"), "{err}");
}

#[test]
fn the_command_line_undoes_a_files_boolean() {
    let file = "quiet = true\nno-report = true\nno-stop = true";
    let config = merge(&[], file).unwrap();
    assert!(config.quiet && !config.report);
    assert_eq!(config.stop, StopRules::none());
    let config = merge(
        &["--quiet=false", "--no-report=false", "--no-stop=false"],
        file,
    )
    .unwrap();
    assert!(!config.quiet && config.report);
    assert_eq!(config.stop.failure_rate, Some(0.5));
    assert!(merge(&["--quiet"], "").unwrap().quiet);
    assert!(
        merge(&["--quiet=maybe"], "")
            .unwrap_err()
            .contains("'maybe'")
    );
}

#[test]
fn repeatable_options_on_the_command_line_replace_the_files() {
    let file = "fail-if = ['capacity<10', 'p99>1s']";
    assert_eq!(merge(&[], file).unwrap().gates.len(), 2);
    let gates = merge(&["--fail-if", "failed>3"], file).unwrap().gates;
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0].to_string(), "failed>3");
}

/// The `[default: …]` an option's help states.
fn stated_default(long: &str) -> String {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    cli.build();
    let run = cli.find_subcommand("run").unwrap();
    let arg = run
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .unwrap();
    let help = arg.get_help().unwrap().to_string().replace('\n', " ");
    let (_, default) = help.rsplit_once("[default: ").unwrap();
    default.trim_end_matches(']').to_owned()
}

#[test]
fn the_defaults_the_help_states_are_the_ones_applied() {
    let config = merge(&[], "").unwrap();
    let span = |d: Duration| humantime::format_duration(d).to_string();
    let applied = [
        ("steps", config.plan.steps.to_string()),
        ("step", config.plan.step.to_string()),
        ("column", config.column.to_string()),
        ("data", config.data_dir.display().to_string()),
        ("logs", config.logs_dir.display().to_string()),
        ("mode", config.mode.name().to_owned()),
        ("timeout", span(config.timeout)),
        ("sample-every", span(config.sample_every)),
        ("pause", span(config.pause)),
        (
            "stack-kib",
            format!("{}; hold 128", config.stack_size / 1024),
        ),
        (
            "stop-failure-rate",
            config.stop.failure_rate.unwrap().to_string(),
        ),
        ("tolerate", config.tolerate.to_string()),
        ("spread-max", span(config.thresholds.spread_max)),
        ("spread-ratio", config.thresholds.spread_ratio.to_string()),
        (
            "saturated-cpu",
            config.thresholds.saturated_cpu_pct.to_string(),
        ),
        ("quiet", config.quiet.to_string()),
        ("no-report", (!config.report).to_string()),
        ("allow-writes", config.allow_writes.to_string()),
        ("reconnect", config.reconnect.enabled.to_string()),
        ("standby", config.standby.to_string()),
        ("reconnect-max", span(config.reconnect.max)),
    ];
    for (long, value) in applied {
        assert_eq!(stated_default(long), value, "--{long}");
    }
    assert!(stated_default("query").ends_with(DEFAULT_QUERY));
    let pooled = merge(&["--pooler", "pgbouncer"], "").unwrap();
    assert_eq!(
        stated_default("pooler-processes"),
        pooled.pooler.unwrap().processes.to_string()
    );
    let rate = merge(&["--mode", "rate"], "").unwrap();
    let Mode::Rate { arrival, .. } = rate.mode else {
        panic!("{:?}", rate.mode)
    };
    let pool = merge(&["--mode", "pool"], "").unwrap();
    assert_eq!(pool.mode.timed_pool(), None);
    assert_eq!(
        stated_default("arrival"),
        crate::cli::values::name_of(&arrival)
    );
    let fleet = merge(
        &[
            "--agents",
            "1",
            "--listen",
            "127.0.0.1:7777",
            "--dsn",
            "host=h",
        ],
        "",
    );
    let timeout = fleet.unwrap().fleet.unwrap().timeout;
    let stated: crate::cli::values::Span = stated_default("agents-timeout").parse().unwrap();
    assert_eq!(stated.0, timeout);
    let watched = merge(
        &["--watcher-listen", "127.0.0.1:7434", "--dsn", "host=h"],
        "",
    );
    let timeout = watched.unwrap().watcher.unwrap().timeout;
    let stated: crate::cli::values::Span = stated_default("watcher-timeout").parse().unwrap();
    assert_eq!(stated.0, timeout);
}

#[test]
fn a_watcher_is_for_a_server_pgstress_does_not_start_and_beyond_loopback_needs_a_token() {
    let throwaway = merge(&["--watcher-listen", "127.0.0.1:7434"], "").unwrap_err();
    assert!(
        throwaway.contains("the throwaway server runs on this machine"),
        "{throwaway}"
    );
    let alone = merge(&["--watcher-timeout", "5s", "--dsn", "host=h"], "").unwrap_err();
    assert!(alone.contains("give both or neither"), "{alone}");
    // The tests' environment holds no PGSTRESS_TOKEN.
    let open = merge(&["--watcher-listen", "0.0.0.0:7434", "--dsn", "host=h"], "").unwrap_err();
    assert!(open.contains("anyone could join as a watcher"), "{open}");
    let high = merge(
        &["--watcher-listen", "127.0.0.1:40000", "--dsn", "host=h"],
        "",
    )
    .unwrap_err();
    assert!(
        high.contains("--watcher-listen") && high.contains("below the ephemeral"),
        "{high}"
    );
    let file = merge(&["--dsn", "host=h"], "watcher-listen = \"127.0.0.1:7434\"").unwrap();
    assert_eq!(file.watcher.unwrap().listen.port(), 7434);
}

#[test]
fn server_cores_are_a_count_for_a_server_pgstress_does_not_start() {
    let dsn = ["--dsn", "host=db.example port=5432"];
    let given = |cores: &str| {
        let mut args = dsn.to_vec();
        args.extend(["--server-cores", cores]);
        merge(&args, "")
    };
    assert_eq!(given("4").unwrap().server_cores, Some(4.0));
    assert_eq!(given("0.5").unwrap().server_cores, Some(0.5));
    assert_eq!(merge(&dsn, "").unwrap().server_cores, None);
    assert_eq!(
        merge(&dsn, "server-cores = 2.0").unwrap().server_cores,
        Some(2.0)
    );
    for bad in ["0", "-2", "NaN", "inf"] {
        let err = given(bad).unwrap_err();
        assert!(err.contains("--server-cores"), "{bad}: {err}");
    }
    let err = merge(&["--server-cores", "2"], "").unwrap_err();
    assert!(
        err.contains("--server-cores") && err.contains("throwaway"),
        "{err}"
    );
}

#[test]
fn a_fault_breaks_only_the_throwaway_server() {
    let config = merge(&["--fault", "freeze@2s:1s"], "").unwrap();
    assert_eq!(config.fault.unwrap().to_string(), "freeze@2s:1s");
    let err = merge(&["--dsn", "host=h", "--fault", "restart@1s"], "").unwrap_err();
    assert!(
        err.contains("--fault") && err.contains("throwaway"),
        "{err}"
    );
    let err = merge(&["--fault", "failover@1s"], "").unwrap_err();
    assert!(
        err.contains("failover") && err.contains("--standby"),
        "{err}"
    );
    let config = merge(&["--standby", "--fault", "failover@1s"], "").unwrap();
    assert!(config.standby);
    let err = merge(&["--dsn", "host=h", "--standby"], "").unwrap_err();
    assert!(
        err.contains("--standby") && err.contains("throwaway"),
        "{err}"
    );
}

#[test]
fn pooler_processes_need_the_throwaway_pooler_and_a_sane_count() {
    let two = merge(&["--pooler", "pgbouncer", "--pooler-processes", "2"], "").unwrap();
    assert_eq!(two.pooler.unwrap().processes, 2);
    for bad in ["0", "65"] {
        let args = ["--pooler", "pgbouncer", "--pooler-processes", bad];
        let error = merge(&args, "").unwrap_err();
        assert!(
            error.contains("--pooler-processes") && error.contains("1 to 64"),
            "{error}"
        );
    }
    let alone = merge(&["--pooler-processes", "2"], "").unwrap_err();
    assert!(alone.contains("give --pooler pgbouncer"), "{alone}");
    let reuse = [
        "--pooler",
        "pgbouncer",
        "--pooler-setting",
        "so_reuseport=0",
    ];
    assert!(
        merge(&reuse, "")
            .unwrap_err()
            .contains("--pooler-processes")
    );
}

#[path = "hold_tests.rs"]
mod hold;
