use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use pgstress::cli::Cli;

/// clap's exit code for a usage error.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    pgstress::pg::target::tls::skip_system_ca_bundle();
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
    let command = help_command(&std::env::args().collect::<Vec<_>>());
    let message = pgstress::pg::target::redact::redact_secrets(&message);
    eprintln!("Error: {message}; see `pgstress{command} --help`");
    if let Some(tip) = tip {
        eprintln!(
            "  tip: {}",
            pgstress::pg::target::redact::redact_secrets(&tip)
        );
    }
    ExitCode::from(USAGE)
}

/// The subcommand whose `--help` to point to: ` run`, ` k8s render`, or none.
fn help_command(args: &[String]) -> String {
    let known = |at: usize, names: &[&str]| args.get(at).filter(|a| names.contains(&a.as_str()));
    let top = [
        "run",
        "agent",
        "prepare",
        "report",
        "compare",
        "completions",
        "k8s",
    ];
    match known(1, &top) {
        Some(k8s) if k8s == "k8s" => match known(2, &["render", "entrypoint"]) {
            Some(nested) => format!(" k8s {nested}"),
            None => " k8s".to_owned(),
        },
        Some(command) => format!(" {command}"),
        None => String::new(),
    }
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
