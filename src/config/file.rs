//! The `--config` TOML file: `pgstress run`'s own options (`cli::RunArgs`), read by serde
//! under their long names. The command line wins over it, field by field.

use std::path::Path;

use clap::{Args, Command};

use crate::cli::RunArgs;
use crate::config::error::ConfigError;

/// The file's keys beyond the long options: names a key was once written under.
const ALIASES: [&str; 1] = ["server-settings"];

/// The options a file at `path` gives.
pub(super) fn load(path: &Path) -> Result<RunArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::ReadFile {
        path: path.to_owned(),
        cause,
    })?;
    parse(&text).map_err(|message| ConfigError::ParseFile {
        path: path.to_owned(),
        message,
    })
}

/// The options of a file's text, or why not, naming the key and its line (never the value: it
/// may be a DSN with a password).
pub(super) fn parse(text: &str) -> Result<RunArgs, String> {
    // serde quotes a value of the wrong type: a DSN written under another key keeps its
    // password out of the message.
    let located = |err: toml::de::Error| {
        let message = crate::pg::target::redact::redact_secrets(err.message());
        match err.span().and_then(|span| key_at(text, span.start)) {
            Some((line, key)) => format!("{message} (line {line}, key `{key}`)"),
            None => message,
        }
    };
    let table: toml::Table = toml::from_str(text).map_err(located)?;
    // serde cannot refuse unknown keys of a struct with a flattened group (the target's), so
    // they are refused here against the command line's own list.
    let known = long_options();
    if let Some(unknown) = table
        .keys()
        .find(|key| !known.contains(key) && !ALIASES.contains(&key.as_str()))
    {
        let line = text
            .lines()
            .position(|line| line.split('=').next().is_some_and(|k| k.trim() == unknown))
            .map_or(String::new(), |at| format!(" (line {})", at + 1));
        return Err(format!(
            "unknown key `{unknown}`{line}: the keys are `pgstress run`'s long options, e.g. steps"
        ));
    }
    toml::from_str(text).map_err(located)
}

/// `pgstress run`'s long options but `--config`: the keys a file may hold.
pub(super) fn long_options() -> Vec<String> {
    RunArgs::augment_args(Command::new("run"))
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| *long != "config")
        .map(str::to_owned)
        .collect()
}

/// The line number and key of the `key = value` line holding byte `at`.
fn key_at(text: &str, at: usize) -> Option<(usize, &str)> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    let number = text[..start].matches('\n').count() + 1;
    (!key.is_empty()).then_some((number, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_file_key_is_rejected() {
        let err = parse("steps = 3\nstepz = 3").unwrap_err();
        assert!(err.contains("`stepz` (line 2)"), "{err}");
    }

    #[test]
    fn every_long_option_is_a_key_of_the_same_name() {
        // A table is no option's value: a key serde knows is refused for its type, a key it
        // does not know would pass unread.
        for key in long_options() {
            let err = parse(&format!("{key} = {{ x = 1 }}"));
            assert!(err.is_err(), "`{key}` is not read from the file");
        }
        assert!(parse("server-settings = ['max_connections=5']").is_ok());
    }

    #[test]
    fn a_file_gives_typed_values_and_booleans_either_way() {
        let args = parse("quiet = false\nno-report = true\nmode = 'pool'\ntimeout = '2s'").unwrap();
        assert_eq!(args.quiet, Some(false));
        assert_eq!(args.no_report, Some(true));
        assert_eq!(args.mode, Some(crate::cli::values::ModeName::Pool));
        assert_eq!(
            args.timeout,
            Some(crate::cli::values::Span(std::time::Duration::from_secs(2)))
        );
        assert!(
            parse("mode = 'fast'")
                .unwrap_err()
                .contains("line 1, key `mode`")
        );
    }

    #[test]
    fn a_bad_value_names_its_key_and_line_but_not_the_value() {
        let text = "quiet = true\nsteps = 99999999999999999999\n";
        let at = text.find("9999").unwrap();
        assert_eq!(key_at(text, at), Some((2, "steps")));
        assert_eq!(key_at(text, 0), Some((1, "quiet")));
        assert_eq!(key_at("[steps]\n", 1), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgstress.toml");
        std::fs::write(&path, text).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("(line 2, key `steps`)"), "{err}");
        let dsn_as_steps = parse("steps = 'postgres://u:hunter2@db/x'").unwrap_err();
        assert!(dsn_as_steps.contains("key `steps`"), "{dsn_as_steps}");
        assert!(!dsn_as_steps.contains("hunter2"), "{dsn_as_steps}");
    }
}
