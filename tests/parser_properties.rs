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
        password in "[A-Za-z0-9]{12,20}",
        suffix in "[ -~]{0,40}",
    ) {
        for dsn in [
            format!("{prefix} password={password} {suffix}"),
            format!("postgres://u:{password}@{prefix}/{suffix}"),
        ] {
            match ConnectTarget::parse(&dsn, None) {
                Ok(target) => prop_assert!(!target.redacted().contains(&password)),
                Err(err) => prop_assert!(!err.to_string().contains(&password), "{}", err),
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
