//! `--junit`, `--summary-md`, `--metrics-listen` and `--metrics-linger`, and GitHub Actions'
//! `GITHUB_STEP_SUMMARY`: what CI systems and monitoring read of a run, besides its logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::{ConfigError, invalid};
use super::values::or_default;
use crate::cli::RunArgs;
use crate::cli::values::ListenAddr;

/// The file GitHub Actions gives each job step for its Markdown summary.
pub const GITHUB_STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";
const DEFAULT_METRICS_LINGER: Duration = Duration::from_secs(15);
/// The first port of Linux's default ephemeral range: a listener above it may take a port an
/// outgoing connection needs (a step's connections), or find it taken.
const EPHEMERAL_FROM: u16 = 32768;

/// Where the run's reports for CI and monitoring go; each one is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// The JUnit XML report (`--junit`).
    pub junit: Option<PathBuf>,
    /// The Markdown summary, written whole (`--summary-md`).
    pub summary_md: Option<PathBuf>,
    /// GitHub Actions' step summary, which the Markdown summary is appended to.
    pub github_summary: Option<PathBuf>,
    /// The live `/metrics` endpoint.
    pub metrics: Option<MetricsSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    pub listen: SocketAddr,
    /// How long the last values are served after the run ends.
    pub linger: Duration,
}

/// GitHub Actions' step summary file, when the run is a step of a GitHub Actions job.
pub(super) fn github_summary_from_env() -> Option<PathBuf> {
    std::env::var_os(GITHUB_STEP_SUMMARY)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The outputs the options ask for; GitHub's step summary comes from the environment.
pub(super) fn merge_outputs(options: &RunArgs) -> Result<Outputs, ConfigError> {
    let metrics = match (options.metrics_listen, options.metrics_linger) {
        (None, None) => None,
        (None, Some(linger)) => {
            return Err(invalid(
                "--metrics-linger",
                linger,
                "it is for --metrics-listen ADDR:PORT; give both or neither",
            ));
        }
        (Some(listen), linger) => Some(MetricsSettings {
            listen: check_metrics_listen(listen)?,
            linger: or_default(linger, DEFAULT_METRICS_LINGER),
        }),
    };
    for (option, path) in [
        ("--junit", &options.junit),
        ("--summary-md", &options.summary_md),
    ] {
        if let Some(path) = path
            && (path.as_os_str().is_empty() || path.is_dir())
        {
            return Err(invalid(
                option,
                path.display(),
                "give a file to write, not a folder",
            ));
        }
    }
    Ok(Outputs {
        junit: options.junit.clone(),
        summary_md: options.summary_md.clone(),
        github_summary: None,
        metrics,
    })
}

/// The endpoint's address: a port below the ephemeral range. Its IP is always written out, so
/// an endpoint beyond loopback is one the user named (0.0.0.0, or one of the host's addresses).
fn check_metrics_listen(listen: ListenAddr) -> Result<SocketAddr, ConfigError> {
    let ListenAddr(address) = listen;
    if address.port() == 0 || address.port() >= EPHEMERAL_FROM {
        return Err(invalid(
            "--metrics-listen",
            listen,
            format!(
                "give a port from 1 to {}, below the ephemeral ports outgoing connections use",
                EPHEMERAL_FROM - 1
            ),
        ));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(args: &[&str]) -> Result<Outputs, ConfigError> {
        use clap::Parser;
        #[derive(Parser)]
        struct Line {
            #[command(flatten)]
            run: RunArgs,
        }
        let line =
            Line::try_parse_from(std::iter::once("pgstress").chain(args.iter().copied())).unwrap();
        merge_outputs(&line.run)
    }

    #[test]
    fn no_endpoint_unless_asked_and_the_linger_only_with_it() {
        assert_eq!(outputs(&[]).unwrap(), Outputs::default());
        let metrics = outputs(&["--metrics-listen", "127.0.0.1:9187"])
            .unwrap()
            .metrics
            .unwrap();
        assert_eq!(metrics.listen.to_string(), "127.0.0.1:9187");
        assert_eq!(metrics.linger, DEFAULT_METRICS_LINGER);
        let lingering = ["--metrics-listen", "0.0.0.0:9187", "--metrics-linger", "0s"];
        assert_eq!(
            outputs(&lingering).unwrap().metrics.unwrap().linger,
            Duration::ZERO
        );
        let alone = outputs(&["--metrics-linger", "5s"]).unwrap_err();
        assert!(alone.to_string().contains("--metrics-listen"), "{alone}");
    }

    #[test]
    fn the_endpoint_takes_a_port_below_the_ephemeral_range() {
        for address in ["127.0.0.1:0", "127.0.0.1:40000"] {
            let err = outputs(&["--metrics-listen", address]).unwrap_err();
            assert!(err.to_string().contains("from 1 to 32767"), "{err}");
        }
    }

    #[test]
    fn the_files_are_taken_as_given_but_not_a_folder() {
        let given = outputs(&["--junit", "out/junit.xml", "--summary-md", "summary.md"]).unwrap();
        assert_eq!(given.junit, Some(PathBuf::from("out/junit.xml")));
        assert_eq!(given.summary_md, Some(PathBuf::from("summary.md")));
        assert_eq!(
            given.github_summary, None,
            "the environment's, not an option's"
        );
        let folder = outputs(&["--junit", "/"]).unwrap_err();
        assert!(folder.to_string().contains("not a folder"), "{folder}");
    }
}
