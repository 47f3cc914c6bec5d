//! Single values as the user writes them, turned into their types at the edge: clap parses a
//! command-line value with `FromStr`, serde a config file's with the same `FromStr`, so a value
//! means the same and is refused with the same words wherever it is written.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::deserialize_from_str;

/// The longest duration any option takes.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A duration as written: `10s`, `1.5s`, `500ms`, `2m`; at most a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let duration = humantime::parse_duration(text.trim())
            .map_err(|_| "expected a duration such as 10s, 1.5s or 500ms".to_owned())?;
        if duration > MAX_DURATION {
            return Err(
                "give at most 24h; longer is a mistake for a stress test (and past \
                        what PostgreSQL's statement_timeout takes)"
                    .to_owned(),
            );
        }
        Ok(Span(duration))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl From<Duration> for Span {
    fn from(duration: Duration) -> Self {
        Span(duration)
    }
}

/// CPUs as `taskset -c` takes them: `0`, `2-3`, `0,2`; each one this machine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        crate::sys::affinity::parse_list(text).map(CpuList)
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&cpus.join(","))
    }
}

/// A `KEY=VALUE` setting of a process pgstress starts (the throwaway server, the pooler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

impl FromStr for Setting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(Setting {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            }),
            _ => Err("expected KEY=VALUE, e.g. max_connections=300".to_owned()),
        }
    }
}

/// The address and port a coordinator listens on for its agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.trim().parse().map(ListenAddr).map_err(|_| {
            "give an IP address and port, e.g. 127.0.0.1:7777 or 0.0.0.0:7777".to_owned()
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

deserialize_from_str!(Span, CpuList, Setting, ListenAddr);

/// The name an enumeration's value has on the command line and in the file.
pub fn name_of<T: ValueEnum>(value: &T) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |name| name.get_name().to_owned())
}

/// How the load is sent (`--mode`); its own options make it a `model::plan::Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    /// A thread and a new connection per request, all released together.
    Burst,
    /// A fixed set of workers take the step's requests from a queue.
    Pool,
    /// Step i offers i * step requests per second, each at its scheduled time.
    Rate,
    /// Step i holds its number of client connections, kept from step to step.
    Hold,
}

/// The client library of the requests (`--client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientName {
    /// pgstress's own: one socket, no runtime, SCRAM keys derived once.
    Lean,
    /// The `postgres` crate.
    Postgres,
}

/// The pooler pgstress can start in front of the target (`--pooler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolerName {
    /// The machine's own PgBouncer binary.
    Pgbouncer,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_a_duration_of_at_most_a_day() {
        assert_eq!(
            "1.5s".parse::<Span>(),
            Ok(Span(Duration::from_millis(1500)))
        );
        assert_eq!("24h".parse::<Span>(), Ok(Span(MAX_DURATION)));
        assert!("25h".parse::<Span>().unwrap_err().contains("at most 24h"));
        assert!("-1s".parse::<Span>().unwrap_err().contains("such as 10s"));
        assert_eq!(Span(Duration::from_millis(1500)).to_string(), "1s 500ms");
    }

    #[test]
    fn a_setting_needs_a_key_and_keeps_an_empty_value() {
        assert_eq!(
            "max_connections = 20".parse::<Setting>(),
            Ok(Setting {
                key: "max_connections".into(),
                value: "20".into()
            })
        );
        assert_eq!("a=".parse::<Setting>().unwrap().value, "");
        assert!("max_connections".parse::<Setting>().is_err());
        assert!("=20".parse::<Setting>().is_err());
    }

    #[test]
    fn a_listen_address_names_its_form() {
        assert_eq!(
            "127.0.0.1:7777".parse::<ListenAddr>().unwrap().to_string(),
            "127.0.0.1:7777"
        );
        assert!(
            "localhost"
                .parse::<ListenAddr>()
                .unwrap_err()
                .contains("e.g.")
        );
    }

    #[test]
    fn the_file_reads_a_value_with_the_command_lines_parser() {
        #[derive(Debug, Deserialize)]
        struct File {
            every: Span,
            cpus: CpuList,
        }
        let file: File = toml::from_str("every = \"250ms\"\ncpus = \"0\"").unwrap();
        assert_eq!(file.every, Span(Duration::from_millis(250)));
        assert_eq!(file.cpus, CpuList(vec![0]));
        let err = toml::from_str::<File>("every = \"soon\"\ncpus = \"0\"").unwrap_err();
        assert!(err.message().contains("such as 10s"), "{}", err.message());
    }
}
