//! Bad input ends with a one-line error naming the bad value and a non-zero exit, and sends
//! nothing to any server.

mod common;

use common::*;

fn unused_port() -> u16 {
    pgstress::sys::ports::free_listener_port([127, 0, 0, 1].into()).unwrap()
}

/// The port of a key=value DSN.
fn port_of(dsn: &str) -> u16 {
    let port = dsn
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("port="));
    port.and_then(|p| p.parse().ok())
        .expect("a DSN with its port")
}

/// How the refusal must read.
#[derive(Clone, Copy)]
enum Error {
    /// Exactly one line, starting with "Error:".
    OneLine,
    /// clap's usage error: one line, and its tip on a second line when it has one.
    Usage,
    /// A usage error whose tip must be there and contain this.
    UsageWithTip(&'static str),
}

/// What the run may print to stdout before it is refused.
#[derive(Clone, Copy)]
enum Stdout {
    Any,
    /// Nothing at all: nothing may have started.
    Empty,
    /// Not this, e.g. no throwaway server started.
    Lacks(&'static str),
}

/// One bad input and how it must be refused.
struct Case {
    /// The arguments after `pgstress`; `{dir}` stands for the case's own empty folder.
    args: Vec<String>,
    /// Files written into that folder first: (name, contents).
    files: &'static [(&'static str, &'static str)],
    /// The exit codes allowed.
    exit: &'static [i32],
    error: Error,
    /// Words the error must contain, every one of them.
    says: &'static [&'static str],
    /// Words it must not contain: the passwords of the command line.
    hides: &'static [&'static str],
    stdout: Stdout,
    /// The folder is still empty afterwards: no logs for a run that never started.
    no_logs: bool,
}

/// `pgstress run` logging into the case's folder, refused with a one-line error and exit 1
/// unless the row says otherwise.
fn run(args: &[&str]) -> Case {
    let mut all = vec!["run", "--logs", "{dir}"];
    all.extend_from_slice(args);
    pgstress_with(&all)
}

/// Any other command line, after `pgstress`.
fn pgstress_with(args: &[&str]) -> Case {
    Case {
        args: args.iter().map(|a| a.to_string()).collect(),
        files: &[],
        exit: &[1],
        error: Error::OneLine,
        says: &[],
        hides: &[],
        stdout: Stdout::Any,
        no_logs: false,
    }
}

fn cases() -> Vec<(&'static str, Case)> {
    let unreachable = format!(
        "host=127.0.0.1 port={} user=postgres password=hunter2",
        unused_port()
    );
    let dsn = shared_dsn();
    let wrong_password = format!(
        "{} password=WrongPassw0rd",
        dsn.rsplit_once(" password=").unwrap().0
    );
    vec![
        (
            "a malformed DSN",
            Case {
                exit: &[1],
                says: &["invalid DSN"],
                ..run(&["--dsn", "host=127.0.0.1 port=notaport"])
            },
        ),
        (
            "an unreachable port fails fast with the cause",
            Case {
                exit: &[1],
                says: &["cannot connect", "refused"],
                hides: &["hunter2"],
                no_logs: true,
                ..run(&["--dsn", &unreachable])
            },
        ),
        (
            "a wrong password is reported without it",
            Case {
                exit: &[1],
                says: &["28P01"],
                hides: &["WrongPassw0rd"],
                ..run(&["--dsn", &wrong_password])
            },
        ),
        (
            "a missing data folder is named",
            Case {
                exit: &[1],
                says: &["/no/such/folder"],
                ..run(&["--data", "/no/such/folder"])
            },
        ),
        (
            "an unknown option is a usage error with clap's suggestion",
            Case {
                exit: &[2],
                error: Error::UsageWithTip("'--step'"),
                says: &["--stepz", "pgstress run --help"],
                ..run(&["--stepz", "3"])
            },
        ),
        (
            "a missing argument is named",
            Case {
                exit: &[2],
                error: Error::Usage,
                says: &["not provided: <RUN>...", "pgstress compare --help"],
                ..pgstress_with(&["compare"])
            },
        ),
        // Values are typed where they are read: one that does not parse is refused by the
        // command line's parser, naming the option and the form it takes.
        (
            "a negative duration names its option",
            Case {
                exit: &[2],
                error: Error::Usage,
                says: &["'-1s' for '--timeout <DURATION>'", "such as 10s"],
                no_logs: true,
                ..run(&["--timeout", "-1s"])
            },
        ),
        (
            "a CPU list that is not one names its form",
            Case {
                exit: &[2],
                error: Error::Usage,
                says: &["'zero' for '--server-cpus <LIST>'", "CPU list"],
                no_logs: true,
                ..run(&["--server-cpus", "zero"])
            },
        ),
        (
            "a setting without its value names the form",
            Case {
                exit: &[2],
                error: Error::Usage,
                says: &["'--server-setting <KEY=VALUE>'", "KEY=VALUE"],
                no_logs: true,
                ..run(&["--server-setting", "max_connections"])
            },
        ),
        (
            "a gate that does not parse shows examples",
            Case {
                exit: &[2],
                error: Error::Usage,
                says: &["'speed>3' for '--fail-if <GATE>'", "capacity<200"],
                no_logs: true,
                ..run(&["--fail-if", "speed>3"])
            },
        ),
        (
            "a listen address without a port names the form",
            Case {
                exit: &[2],
                error: Error::Usage,
                says: &["'localhost' for '--listen <ADDR:PORT>'", "127.0.0.1:7777"],
                no_logs: true,
                ..run(&["--listen", "localhost"])
            },
        ),
        (
            "a metrics address without a port names the form",
            Case {
                exit: &[2],
                error: Error::Usage,
                says: &[
                    "'9187' for '--metrics-listen <ADDR:PORT>'",
                    "127.0.0.1:7777",
                ],
                no_logs: true,
                ..run(&["--metrics-listen", "9187"])
            },
        ),
        (
            "a metrics port among the ephemeral ones is refused before anything starts",
            Case {
                exit: &[1],
                says: &["--metrics-listen", "from 1 to 32767"],
                stdout: Stdout::Empty,
                no_logs: true,
                ..run(&["--metrics-listen", "127.0.0.1:40000"])
            },
        ),
        (
            "a linger without the endpoint is refused",
            Case {
                exit: &[1],
                says: &["--metrics-linger", "--metrics-listen"],
                stdout: Stdout::Empty,
                ..run(&["--metrics-linger", "5s"])
            },
        ),
        (
            "a metrics port already taken fails before any server starts",
            Case {
                exit: &[1],
                says: &["cannot serve metrics on 127.0.0.1:", "--metrics-listen"],
                stdout: Stdout::Lacks("throwaway"),
                no_logs: true,
                // The shared cluster's own port, taken as long as this test binary runs.
                ..run(&["--metrics-listen", &format!("127.0.0.1:{}", port_of(&dsn))])
            },
        ),
        (
            "a JUnit report in a folder that cannot be made fails before the run",
            Case {
                files: &[("file", "")],
                exit: &[1],
                says: &["cannot write", "junit.xml (--junit)"],
                stdout: Stdout::Empty,
                ..run(&["--dsn", &dsn, "--junit", "{dir}/file/junit.xml"])
            },
        ),
        (
            "a mode outside the choices lists them",
            Case {
                exit: &[2],
                error: Error::Usage,
                says: &["'foo'", "--mode", "burst"],
                ..run(&["--mode", "foo"])
            },
        ),
        (
            "an sslmode outside the choices lists them",
            Case {
                exit: &[2],
                error: Error::Usage,
                says: &["'bogus'", "--sslmode", "verify-full"],
                ..run(&["--sslmode", "bogus"])
            },
        ),
        (
            "an arrival outside the choices lists them",
            Case {
                exit: &[2],
                error: Error::Usage,
                says: &["'often'", "--arrival", "poisson"],
                ..run(&["--arrival", "often"])
            },
        ),
        (
            "a DSN without --dsn is refused without its password",
            Case {
                exit: &[2],
                says: &["someone:***@127.0.0.1"],
                hides: &["Hunter2Secret"],
                ..run(&["postgres://someone:Hunter2Secret@127.0.0.1:1/x"])
            },
        ),
        (
            "a timeout past a day",
            Case {
                exit: &[1, 2],
                says: &["--timeout", "30d"],
                ..run(&["--timeout", "30d"])
            },
        ),
        (
            "a pause past a day",
            Case {
                exit: &[1, 2],
                says: &["--pause", "18446744073709551615s"],
                ..run(&["--pause", "18446744073709551615s"])
            },
        ),
        (
            "a negative count of steps",
            Case {
                exit: &[1, 2],
                says: &["--steps", "-1"],
                ..run(&["--steps", "-1"])
            },
        ),
        (
            "a gate on a step the plan lacks is refused before the run",
            Case {
                exit: &[1],
                says: &["p99>10ms@7", "5, 10, 15"],
                stdout: Stdout::Lacks("throwaway"),
                ..run(&["--steps", "3", "--step", "5", "--fail-if", "p99>10ms@7"])
            },
        ),
        (
            "a value of the wrong type is a one-line usage error",
            Case {
                exit: &[2],
                says: &["'ten'", "--steps"],
                ..run(&["--steps", "ten"])
            },
        ),
        (
            "zero steps is refused before any server starts",
            Case {
                exit: &[1],
                says: &["--steps '0'"],
                stdout: Stdout::Empty,
                ..run(&["--steps", "0"])
            },
        ),
        (
            "an unknown config key is named",
            Case {
                files: &[("bad.toml", "stepz = 3\n")],
                exit: &[1],
                says: &["stepz"],
                ..run(&["--config", "{dir}/bad.toml"])
            },
        ),
        (
            "a query that does not prepare shows the server's error",
            Case {
                exit: &[1],
                says: &["syntax error", "42601"],
                ..run(&[
                    "--dsn",
                    &dsn,
                    "--query",
                    "SELEC * FROM sharding WHERE url = $1",
                ])
            },
        ),
        (
            "an unwritable logs folder fails before the run",
            Case {
                files: &[("file", "")],
                exit: &[1],
                says: &["--logs"],
                stdout: Stdout::Empty,
                ..pgstress_with(&["run", "--logs", "{dir}/file/logs", "--dsn", &dsn])
            },
        ),
        (
            "malformed TOML is named",
            Case {
                files: &[("bad.toml", "steps = [unclosed\n")],
                exit: &[1],
                says: &["bad.toml"],
                ..run(&["--config", "{dir}/bad.toml"])
            },
        ),
        (
            "a query with a parameter and an empty data folder",
            Case {
                exit: &[1],
                says: &["no *.csv file"],
                stdout: Stdout::Empty,
                ..run(&["--query", "SELECT $1::text", "--data", "{dir}"])
            },
        ),
        (
            // $1 inside a dollar-quoted literal is no parameter: the server sees none.
            "the parameter count is checked by the server",
            Case {
                exit: &[1],
                says: &["takes 0 parameters but pgstress binds 1"],
                ..run(&["--dsn", &dsn, "--query", "SELECT $$ $1 $$"])
            },
        ),
        (
            "a step beyond the thread limit is refused before the run",
            Case {
                exit: &[1],
                // The kernel bounds it at pid_max (at most 4,194,304) if nothing lower does:
                // the setting is named, whichever it is.
                says: &["threads at once", "); raise it"],
                stdout: Stdout::Empty,
                ..run(&["--steps", "1", "--start", "4000000000"])
            },
        ),
    ]
}

/// Runs one case in a folder of its own and checks every part of its refusal.
fn check(what: &str, case: &Case) {
    // The shared helpers' own assertions do not know the case: this names it in the output.
    eprintln!("case: {what}");
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in case.files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    let folder = dir.path().to_str().unwrap();
    let args: Vec<String> = case
        .args
        .iter()
        .map(|a| a.replace("{dir}", folder))
        .collect();
    let output = pgstress().args(&args).output().unwrap();
    let code = output.status.code();
    assert!(
        code.is_some_and(|c| case.exit.contains(&c)),
        "{what}: exit {code:?}, not one of {:?}\n{}",
        case.exit,
        output_text(&output)
    );
    let error = match case.error {
        Error::OneLine => one_line_error(&output.stderr),
        Error::Usage => usage_error(&output.stderr).0,
        Error::UsageWithTip(expected) => {
            let (error, tip) = usage_error(&output.stderr);
            let tip = tip.expect("clap's suggestion kept");
            assert!(tip.contains(expected), "{what}: {tip}");
            error
        }
    };
    for word in case.says {
        assert!(error.contains(word), "{what}: no {word:?} in {error}");
    }
    for secret in case.hides {
        assert!(!error.contains(secret), "{what}: password leaked: {error}");
    }
    let stdout = text(&output.stdout);
    match case.stdout {
        Stdout::Any => {}
        Stdout::Empty => assert!(stdout.is_empty(), "{what}: nothing may start: {stdout}"),
        Stdout::Lacks(word) => assert!(!stdout.contains(word), "{what}: nothing started"),
    }
    if case.no_logs {
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{what}: no logs for a run that never started"
        );
    }
}

#[test]
fn each_bad_input_is_refused_naming_it() {
    for (what, case) in cases() {
        check(what, &case);
    }
}
