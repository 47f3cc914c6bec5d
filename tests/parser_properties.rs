//! Property tests (bounded, so they run in CI) of everything that parses user input: DSNs,
//! queries, gates, config files and data files. None may panic, and a DSN error never shows
//! the password it was given.

use std::str::FromStr;

use pgstress::cli::RunArgs;
use pgstress::config::RunConfig;
use pgstress::config::data::ParamData;
use pgstress::judge::gate::Gate;
use pgstress::model::query::highest_placeholder;
use pgstress::pg::target::ConnectTarget;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn dsn_parsing_never_panics_nor_leaks_the_password(
        prefix in "[ -~]{0,40}",
        password in PASSWORD,
        suffix in "[ -~]{0,40}",
    ) {
        for dsn in [
            format!("{prefix} password={password} {suffix}"),
            format!("postgres://u:{password}@{prefix}/{suffix}"),
        ] {
            assert_no_leak(&dsn, &password)?;
        }
    }

    /// Well-formed pairs with a broken one among them: the error comes after the first token.
    #[test]
    fn a_mistake_after_the_password_does_not_show_it(
        before in proptest::collection::vec(keyword_pair(), 0..3),
        password in PASSWORD,
        after in proptest::collection::vec(keyword_pair(), 0..3),
        mistake in "(port=[a-z]{1,5}|nokey=1|host|user='open|sslmode=[a-z]{1,8}|connect_timeout=-[0-9])",
    ) {
        let dsn = format!("{} password={password} {} {mistake}", before.join(" "), after.join(" "));
        assert_no_leak(&dsn, &password)?;
    }

    /// Lists of hosts and ports: refused in one line, naming the port, exactly when no
    /// connection could use them (a port of 0 or past 65535, a list of ports that pairs
    /// neither with each host nor with all); the password never shown.
    #[test]
    fn ports_no_connection_can_use_are_refused(
        hosts in proptest::collection::vec("[a-z]{1,6}", 1..4),
        ports in proptest::collection::vec(prop_oneof!["0", "[1-9][0-9]{0,5}"], 1..4),
        password in PASSWORD,
        url in any::<bool>(),
    ) {
        // The URL form cannot write more ports than hosts: those cases are the string's.
        prop_assume!(!url || ports.len() <= hosts.len());
        let valid = ports
            .iter()
            .all(|p| p.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p)));
        // A URL pairs each port with its host; a string's list must pair, or be one port.
        let usable = valid && (url || ports.len() == 1 || ports.len() == hosts.len());
        let dsn = match url {
            true => {
                let mut netloc: Vec<String> = hosts.clone();
                let first = hosts.len() - ports.len();
                for (host, port) in netloc[first..].iter_mut().zip(&ports) {
                    host.push_str(&format!(":{port}"));
                }
                format!("postgres://u:{password}@{}/db", netloc.join(","))
            }
            false => format!("host={} port={} password={password}", hosts.join(","), ports.join(",")),
        };
        match ConnectTarget::parse(&dsn, None) {
            Ok(target) => {
                prop_assert!(usable, "{} parsed", dsn);
                prop_assert!(!target.redacted().contains(&password));
            }
            Err(err) => {
                let err = err.to_string();
                prop_assert!(!usable, "{}: {}", dsn, err);
                prop_assert!(err.contains("port") && !err.contains('\n') && !err.contains(&password), "{}", err);
            }
        }
    }

    #[test]
    fn placeholder_scan_never_panics(sql in "\\PC{0,80}") {
        let _ = highest_placeholder(&sql);
    }

    #[test]
    fn gate_parsing_never_panics(text in "[a-z0-9<>=@. -]{0,30}") {
        let _ = Gate::from_str(&text);
    }

    /// Gates spelled from the language's own words: what parses can be true, what cannot is
    /// refused in one line naming the gate.
    #[test]
    fn parsed_gates_can_be_true(
        metric in "(capacity|p50|p90|p99|max|failure-rate|failed|p95|speed)",
        op in "(<|<=|>|>=|=|)",
        value in "(0|1|0\\.5|2|250|-1|-0|nan|NaN|inf|-inf|infinity|1e400|1e-400|4294967295|4294967296|1e10|250ms|1s|1e-3)",
        at in proptest::option::of("(0|1|100|-1|x)"),
        spaced in any::<bool>(),
    ) {
        let at = at.map(|n| format!("@{n}")).unwrap_or_default();
        let text = match spaced {
            true => format!("{metric} {op} {value}{at}"),
            false => format!("{metric}{op}{value}{at}"),
        };
        match Gate::from_str(&text) {
            Ok(gate) => {
                let v = gate.value;
                prop_assert!(v.is_finite() && v >= 0.0, "{} -> {}", text, v);
                // Some figure the metric can take breaches it.
                let most = match metric.as_str() {
                    "failure-rate" => 1.0,
                    "capacity" | "failed" => f64::from(u32::MAX),
                    _ => f64::MAX,
                };
                let can_be_true = match op.as_str() {
                    "<" => v > 0.0,
                    "<=" => v >= 0.0,
                    ">" => v < most,
                    _ => v <= most,
                };
                prop_assert!(can_be_true, "{} can never be true", text);
                prop_assert_eq!(gate.to_string(), text);
            }
            Err(err) => {
                let err = err.to_string();
                prop_assert!(err.contains(&text) && !err.contains('\n'), "{}", err);
            }
        }
    }

    #[test]
    fn config_files_never_panic(text in "[a-z_=\"'\\[\\]0-9 .\\n-]{0,120}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgstress.toml");
        std::fs::write(&path, &text).unwrap();
        let args = RunArgs { config: Some(path), ..Default::default() };
        let _ = RunConfig::from_args(args);
    }

    #[test]
    fn data_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), column in 0usize..4) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("values.csv"), &bytes).unwrap();
        if let Ok(data) = ParamData::load(dir.path(), column) {
            prop_assert!(data.total_values() > 0);
        }
    }
}

proptest! {
    // Each parse builds a TLS connector (it reads the system's root certificates): fewer cases.
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Well-formed DSNs get past the first token: they parse, and show no password.
    #[test]
    fn well_formed_dsns_parse_without_showing_the_password(
        pairs in proptest::collection::vec(keyword_pair(), 0..6),
        at in any::<prop::sample::Index>(),
        password in PASSWORD,
        quoted in any::<bool>(),
    ) {
        let mut tokens = pairs;
        let secret = if quoted { format!("password='{password}'") } else { format!("password={password}") };
        tokens.insert(at.index(tokens.len() + 1), secret);
        let dsn = tokens.join(" ");
        let target = ConnectTarget::parse(&dsn, None);
        prop_assert!(target.is_ok(), "{dsn}: {:?}", target.err().map(|e| e.to_string()));
        prop_assert!(!target.unwrap().redacted().contains(&password), "{}", dsn);
    }

    #[test]
    fn well_formed_urls_parse_without_showing_the_password(
        user in "[a-z][a-z0-9_]{0,8}",
        password in PASSWORD,
        host in "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}",
        port in proptest::option::of(1u16..),
        db in proptest::option::of("[a-z][a-z0-9_]{0,10}"),
        params in proptest::collection::vec(("(application_name|connect_timeout)", "[0-9]{1,3}"), 0..3),
    ) {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let db = db.map(|d| format!("/{d}")).unwrap_or_else(|| "/".to_owned());
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
        let dsn = format!("postgres://{user}:{password}@{host}{port}{db}{query}");
        let target = ConnectTarget::parse(&dsn, None);
        prop_assert!(target.is_ok(), "{dsn}: {:?}", target.err().map(|e| e.to_string()));
        prop_assert!(!target.unwrap().redacted().contains(&password), "{}", dsn);
    }
}

const PASSWORD: &str = "[A-Za-z0-9]{12,20}";

/// A DSN key and a value it accepts, plain or quoted.
fn keyword_pair() -> impl Strategy<Value = String> {
    prop_oneof![
        "host=[a-z][a-z0-9.-]{0,12}",
        "port=[1-9][0-9]{0,3}",
        "user=[a-z][a-z0-9_]{0,8}",
        "dbname=[a-z][a-z0-9_]{0,8}",
        "dbname='[a-z ]{0,8}'",
        "application_name='[A-Za-z0-9 ]{0,12}'",
        "connect_timeout=[0-9]{1,2}",
        "sslmode=(disable|prefer|require)",
        "hostaddr=127\\.0\\.0\\.[1-9]",
        "target_session_attrs=(any|read-write)",
        "keepalives=(0|1)",
        "options='-c [a-z_]{1,10}=[0-9]{1,3}'",
        "user = [a-z]{1,8}",
    ]
}

fn assert_no_leak(dsn: &str, password: &str) -> Result<(), TestCaseError> {
    match ConnectTarget::parse(dsn, None) {
        Ok(target) => prop_assert!(!target.redacted().contains(password)),
        Err(err) => prop_assert!(!err.to_string().contains(password), "{}", err),
    }
    Ok(())
}

/// The corpus in tests/corpus: inputs that once needed care, kept so every CI run replays them.
fn corpus(kind: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("the corpus {} is missing: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

#[test]
fn corpus_dsns_never_leak_the_password() {
    const PASSWORD: &str = "SECRETpw1234";
    for file in corpus("dsn") {
        for dsn in std::fs::read_to_string(&file).unwrap().lines() {
            assert!(
                dsn.contains(PASSWORD),
                "a corpus DSN carries the known password: {dsn}"
            );
            let shown = match ConnectTarget::parse(dsn, None) {
                Ok(target) => target.redacted().to_owned(),
                Err(err) => err.to_string(),
            };
            assert!(!shown.contains(PASSWORD), "{dsn} -> {shown}");
        }
    }
}

#[test]
fn corpus_configs_are_refused_with_one_line_naming_the_key() {
    for file in corpus("config") {
        let args = RunArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        let err = RunConfig::from_args(args)
            .map(|_| ())
            .expect_err(&format!("{} should be refused", file.display()))
            .to_string();
        assert!(!err.contains('\n'), "{}: {err}", file.display());
        // Each corpus file has one mistake, in one of the keys (or tables) it sets.
        let text = std::fs::read_to_string(&file).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|line| match line.split_once('=') {
                Some((key, _)) => Some(key.trim()),
                None => line.trim().strip_prefix('[')?.strip_suffix(']'),
            })
            .collect();
        assert!(
            // The key, or the option it stands for (`server-settings`: `--server-setting`).
            keys.iter().any(|key| err.contains(key)
                || err.contains(&format!("--{}", key.trim_end_matches('s')))),
            "{}: the error names none of {keys:?}: {err}",
            file.display()
        );
    }
}

#[test]
fn corpus_data_files_are_refused_or_loaded_without_panic() {
    for file in corpus("data") {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(&file, dir.path().join("values.csv")).unwrap();
        match ParamData::load(dir.path(), 1) {
            Ok(data) => assert!(data.total_values() > 0, "{}", file.display()),
            Err(err) => assert!(!err.to_string().contains('\n'), "{}: {err}", file.display()),
        }
    }
}
