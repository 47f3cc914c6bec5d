//! Bad input ends with a one-line error naming the bad value and a non-zero exit, and sends
//! nothing to any server.

mod common;

use common::*;

fn unused_port() -> u16 {
    pgstress::sys::ports::free_listener_port([127, 0, 0, 1].into()).unwrap()
}

#[test]
fn malformed_dsn_is_a_one_line_error() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", "host=127.0.0.1 port=notaport"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("invalid DSN"), "{error}");
}

#[test]
fn unreachable_port_fails_fast_with_the_cause() {
    let logs = tempfile::tempdir().unwrap();
    let dsn = format!(
        "host=127.0.0.1 port={} user=postgres password=hunter2",
        unused_port()
    );
    let output = pgstress_run(logs.path())
        .args(["--dsn", &dsn])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(
        error.contains("cannot connect") && error.contains("refused"),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "password leaked: {error}");
    assert_eq!(
        std::fs::read_dir(logs.path()).unwrap().count(),
        0,
        "no logs for a run that never started"
    );
}

#[test]
fn wrong_password_is_reported_without_it() {
    let logs = tempfile::tempdir().unwrap();
    let dsn = shared_dsn();
    let wrong = format!(
        "{} password=WrongPassw0rd",
        dsn.rsplit_once(" password=").unwrap().0
    );
    let output = pgstress_run(logs.path())
        .args(["--dsn", &wrong])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("28P01"), "{error}");
    assert!(!error.contains("WrongPassw0rd"), "password leaked: {error}");
}

#[test]
fn missing_data_folder_is_named() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--data", "/no/such/folder"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(one_line_error(&output.stderr).contains("/no/such/folder"));
}

#[test]
fn unknown_option_is_a_usage_error() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .arg("--stepz")
        .arg("3")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let (error, tip) = usage_error(&output.stderr);
    assert!(error.contains("--stepz"), "{error}");
    assert!(error.contains("pgstress run --help"), "{error}");
    let tip = tip.expect("clap's suggestion kept");
    assert!(tip.contains("'--step'"), "{tip}");
}

#[test]
fn a_missing_argument_is_named() {
    let output = assert_cmd::Command::cargo_bin("pgstress")
        .unwrap()
        .arg("compare")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let (error, _) = usage_error(&output.stderr);
    assert!(error.contains("not provided: <RUN>..."), "{error}");
    assert!(error.contains("pgstress compare --help"), "{error}");
}

#[test]
fn a_malformed_value_is_a_usage_error_naming_its_option_and_the_form() {
    // Values are typed where they are read: a duration, a CPU list, a KEY=VALUE or a gate
    // that does not parse is refused by the command line's parser, before any check.
    for (option, value, form) in [
        ("--timeout", "-1s", "such as 10s"),
        ("--server-cpus", "zero", "CPU list"),
        ("--server-setting", "max_connections", "KEY=VALUE"),
        ("--fail-if", "speed>3", "capacity<200"),
        ("--listen", "localhost", "127.0.0.1:7777"),
    ] {
        let logs = tempfile::tempdir().unwrap();
        let output = pgstress_run(logs.path())
            .args([option, value])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{option} {value}");
        let (error, _) = usage_error(&output.stderr);
        assert!(
            error.contains(&format!("'{value}' for '{option} ")) && error.contains(form),
            "{error}"
        );
        assert_eq!(std::fs::read_dir(logs.path()).unwrap().count(), 0);
    }
}

#[test]
fn a_value_outside_the_choices_is_a_usage_error_listing_them() {
    for (option, value, choice) in [
        ("--mode", "foo", "burst"),
        ("--sslmode", "bogus", "verify-full"),
        ("--arrival", "often", "poisson"),
    ] {
        let logs = tempfile::tempdir().unwrap();
        let output = pgstress_run(logs.path())
            .args([option, value])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{option} {value}");
        let (error, _) = usage_error(&output.stderr);
        assert!(
            error.contains(&format!("'{value}'"))
                && error.contains(option)
                && error.contains(choice),
            "{error}"
        );
    }
}

#[test]
fn a_dsn_without_dsn_is_refused_without_its_password() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .arg("postgres://someone:Hunter2Secret@127.0.0.1:1/x")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("someone:***@127.0.0.1"), "{error}");
    assert!(!error.contains("Hunter2Secret"), "password leaked: {error}");
}

#[test]
fn durations_past_a_day_and_negative_counts_are_refused_by_name() {
    for (option, value) in [
        ("--timeout", "30d"),
        ("--pause", "18446744073709551615s"),
        ("--steps", "-1"),
    ] {
        let logs = tempfile::tempdir().unwrap();
        let output = pgstress_run(logs.path())
            .args([option, value])
            .output()
            .unwrap();
        assert!(
            matches!(output.status.code(), Some(1 | 2)),
            "{option} {value}"
        );
        let error = one_line_error(&output.stderr);
        assert!(error.contains(option) && error.contains(value), "{error}");
    }
}

#[test]
fn a_gate_on_a_step_the_plan_lacks_is_refused_before_the_run() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--steps", "3", "--step", "5", "--fail-if", "p99>10ms@7"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(
        error.contains("p99>10ms@7") && error.contains("5, 10, 15"),
        "{error}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("throwaway"),
        "nothing started"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_a_one_line_usage_error() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--steps", "ten"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = one_line_error(&output.stderr);
    assert!(
        error.contains("'ten'") && error.contains("--steps"),
        "{error}"
    );
}

#[test]
fn zero_steps_is_refused_before_any_server_starts() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--steps", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(one_line_error(&output.stderr).contains("--steps '0'"));
    assert!(
        output.stdout.is_empty(),
        "nothing may start: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "stepz = 3\n").unwrap();
    let output = pgstress_run(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(one_line_error(&output.stderr).contains("stepz"));
}

#[test]
fn query_that_does_not_prepare_shows_the_server_error() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--dsn",
            &shared_dsn(),
            "--query",
            "SELEC * FROM sharding WHERE url = $1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(
        error.contains("syntax error") && error.contains("42601"),
        "{error}"
    );
}

#[test]
fn unwritable_logs_folder_fails_before_the_run() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let output = pgstress_run(&file.path().join("logs"))
        .args(["--dsn", &shared_dsn()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(one_line_error(&output.stderr).contains("--logs"));
    assert!(output.stdout.is_empty());
}

#[test]
fn malformed_toml_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "steps = [unclosed\n").unwrap();
    let output = pgstress_run(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(one_line_error(&output.stderr).contains("bad.toml"));
}

#[test]
fn query_with_a_parameter_and_an_empty_data_folder_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let output = pgstress_run(data.path())
        .args(["--query", "SELECT $1::text"])
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(one_line_error(&output.stderr).contains("no *.csv file"));
    assert!(output.stdout.is_empty(), "nothing may start");
}

#[test]
fn parameter_count_is_checked_by_the_server() {
    let logs = tempfile::tempdir().unwrap();
    // $1 inside a dollar-quoted literal is no parameter: the server sees none.
    let output = pgstress_run(logs.path())
        .args(["--dsn", &shared_dsn(), "--query", "SELECT $$ $1 $$"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(
        error.contains("takes 0 parameters but pgstress binds 1"),
        "{error}"
    );
}

#[test]
fn step_beyond_the_thread_limit_is_refused_before_the_run() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--steps", "1", "--start", "4000000000"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(one_line_error(&output.stderr).contains("threads at once"));
    assert!(output.stdout.is_empty());
}
