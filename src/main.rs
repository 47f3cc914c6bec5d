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

/// Help and version print as clap prints them; a usage error is one line, as every other
/// error is, with where to look next.
fn usage_error(err: clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let command = std::env::args()
        .nth(1)
        .filter(|arg| ["run", "prepare", "report", "compare"].contains(&arg.as_str()))
        .map(|arg| format!(" {arg}"))
        .unwrap_or_default();
    let first = pgstress::pg::target::redact_secrets(first);
    eprintln!("Error: {first}; see `pgstress{command} --help`");
    ExitCode::from(USAGE)
}
