//! `RunConfig::merge` end to end: the command line, a TOML text and an empty environment
//! merged as a run would, each refusal checked for the option it names.

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
