//! `pgstress completions SHELL` and `pgstress man`: generated from the clap declarations, so
//! they list exactly the options the binary takes.

use std::io::Write;

use anyhow::{Context, bail};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::Status;
use crate::cli::Cli;

/// The completion script for `shell` (bash, zsh or fish).
pub fn completions(shell: &str, out: &mut impl Write) -> anyhow::Result<Status> {
    let shell = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => bail!("no completions for shell '{other}': use bash, zsh or fish"),
    };
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "pgstress", out);
    Ok(Status::Completed)
}

/// The manual page, in roff: the command, then each subcommand with its options.
pub fn man(out: &mut impl Write) -> anyhow::Result<Status> {
    let command = Cli::command();
    let write = |out: &mut dyn Write| -> std::io::Result<()> {
        clap_mangen::Man::new(command.clone()).render(out)?;
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            section(out, sub.get_name(), sub)?;
            // `k8s render` and `k8s entrypoint`: the options are theirs, not `k8s`'s.
            for nested in sub.get_subcommands().filter(|s| s.get_name() != "help") {
                section(
                    out,
                    &format!("{} {}", sub.get_name(), nested.get_name()),
                    nested,
                )?;
            }
        }
        Ok(())
    };
    write(out).context("cannot write the manual page")?;
    Ok(Status::Completed)
}

/// One subcommand's heading, its description and its options.
fn section(out: &mut dyn Write, name: &str, sub: &clap::Command) -> std::io::Result<()> {
    let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
    writeln!(
        out,
        ".SH \"PGSTRESS {}\"\n{}",
        name.to_uppercase(),
        about.replace('\\', "\\\\")
    )?;
    clap_mangen::Man::new(sub.clone()).render_options_section(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_and_man_page_name_the_subcommands() {
        for shell in ["bash", "zsh", "fish"] {
            let mut out = Vec::new();
            completions(shell, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("prepare") && text.contains("dsn"), "{shell}");
        }
        let mut out = Vec::new();
        man(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(".TH pgstress")
                && text.contains("completions")
                && text.contains("PGSTRESS K8S RENDER")
                && text.contains("logs\\-claim"),
            "{text}"
        );
    }
}
