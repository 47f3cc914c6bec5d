use std::process::ExitCode;

use clap::Parser;
use pgstress::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match pgstress::run(cli) {
        Ok(status) => ExitCode::from(status.code()),
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::from(pgstress::Status::Failed.code())
        }
    }
}
