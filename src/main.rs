use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use pgstress::cli::Cli;

/// clap's exit code for a usage error.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    match pgstress::run(cli) {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::from(pgstress::Status::Failed.code())
        }
    }
}

/// Help and version print as clap prints them; a usage error keeps what helps of clap's words
/// (the arguments it names, its "did you mean") in at most two lines, with where to look next.
fn usage_error(err: clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let (message, tip) = usage_message(&err.render().to_string());
    let command = std::env::args()
        .nth(1)
        .filter(|arg| {
            [
                "run",
                "agent",
                "prepare",
                "report",
                "compare",
                "completions",
            ]
            .contains(&arg.as_str())
        })
        .map(|arg| format!(" {arg}"))
        .unwrap_or_default();
    let message = pgstress::pg::target::redact_secrets(&message);
    eprintln!("Error: {message}; see `pgstress{command} --help`");
    if let Some(tip) = tip {
        eprintln!("  tip: {}", pgstress::pg::target::redact_secrets(&tip));
    }
    ExitCode::from(USAGE)
}

/// clap's rendered error as one line (its first, with the arguments it lists after it) and its
/// tip, if it has one; the usage block and the pointer to --help are left out.
fn usage_message(rendered: &str) -> (String, Option<String>) {
    let mut lines = rendered.lines().filter(|line| !line.trim().is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first).trim_end();
    let mut listed = Vec::new();
    let mut tip = None;
    for line in lines {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        match line.trim().strip_prefix("tip: ") {
            Some(text) => tip = Some(text.to_owned()),
            None => listed.push(line.trim()),
        }
    }
    let message = match listed.is_empty() {
        true => first.to_owned(),
        false => format!("{} {}", first, listed.join(", ")),
    };
    (message, tip)
}
