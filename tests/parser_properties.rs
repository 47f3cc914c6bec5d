//! Property tests (bounded, so they run in CI) of everything that parses user input: DSNs,
//! queries, gates, config files and data files. None may panic, and a DSN error never shows
//! the password it was given.

use std::str::FromStr;

use pgstress::cli::RunArgs;
use pgstress::config::{RunConfig, highest_placeholder};
use pgstress::data::ParamData;
use pgstress::gate::Gate;
use pgstress::target::ConnectTarget;
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
