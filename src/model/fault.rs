//! A fault pgstress causes on its throwaway server during the load, to measure the outage it
//! makes: `restart@30s`, `kill-backends@30s`, `freeze@30s:3s`. The time counts from the start
//! of the load (step 1's release).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What is done to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A fast stop (SIGINT: sessions get 57P01) and a start on the same port and data.
    Restart,
    /// `pg_terminate_backend` of every session of the run.
    KillBackends,
    /// SIGSTOP of the server's processes, SIGCONT after this long.
    Freeze(Duration),
    /// The primary stopped at once (`-m immediate`), the standby promoted (`--standby`).
    Failover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// From the start of the load.
    pub at: Duration,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = humantime::format_duration(self.at);
        match self.kind {
            FaultKind::Restart => write!(f, "restart@{at}"),
            FaultKind::KillBackends => write!(f, "kill-backends@{at}"),
            FaultKind::Failover => write!(f, "failover@{at}"),
            FaultKind::Freeze(down) => {
                write!(f, "freeze@{at}:{}", humantime::format_duration(down))
            }
        }
    }
}

const FORMS: &str = "restart@30s, failover@30s, kill-backends@30s or freeze@30s:3s";

impl FromStr for Fault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, when) =
            (text.split_once('@')).ok_or_else(|| format!("'{text}' has no @TIME; give {FORMS}"))?;
        let duration = |value: &str| {
            humantime::parse_duration(value).map_err(|_| {
                format!("'{value}' in '{text}' is not a duration such as 30s; give {FORMS}")
            })
        };
        let (at, down) = match when.split_once(':') {
            Some((at, down)) => (duration(at)?, Some(duration(down)?)),
            None => (duration(when)?, None),
        };
        let kind = match (kind, down) {
            ("restart", None) => FaultKind::Restart,
            ("kill-backends", None) => FaultKind::KillBackends,
            ("failover", None) => FaultKind::Failover,
            ("freeze", Some(down)) if !down.is_zero() => FaultKind::Freeze(down),
            ("freeze", _) => {
                return Err(format!(
                    "'{text}': a freeze needs how long, e.g. freeze@30s:3s"
                ));
            }
            ("restart" | "kill-backends" | "failover", Some(_)) => {
                return Err(format!(
                    "'{text}': only a freeze takes a length; give {FORMS}"
                ));
            }
            _ => {
                return Err(format!(
                    "'{kind}' is no fault pgstress causes; give {FORMS}"
                ));
            }
        };
        Ok(Fault { kind, at })
    }
}

crate::deserialize_from_str!(Fault);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_reads_and_shows_as_written() {
        for text in [
            "restart@30s",
            "failover@5s",
            "kill-backends@1m 30s",
            "freeze@2s:3s 500ms",
        ] {
            assert_eq!(text.parse::<Fault>().unwrap().to_string(), text);
        }
        let freeze: Fault = "freeze@30s:3s".parse().unwrap();
        assert_eq!(freeze.kind, FaultKind::Freeze(Duration::from_secs(3)));
        assert_eq!(freeze.at, Duration::from_secs(30));
    }

    #[test]
    fn malformed_faults_say_what_to_give() {
        for (text, says) in [
            ("restart", "no @TIME"),
            ("restart@soon", "'soon'"),
            ("freeze@3s", "how long"),
            ("restart@3s:1s", "only a freeze"),
            ("switchover@3s", "'switchover' is no fault"),
        ] {
            let err = text.parse::<Fault>().unwrap_err();
            assert!(err.contains(says) && err.contains("@30s"), "{text}: {err}");
        }
    }
}
